/** Commands that change a running agent: pod add/del, apply. */
import * as fs from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { Command } from './registry'
import { servicesFromManifests } from '../service/k8s-manifests'
import { defaultSocket, request, table } from './client'

interface Parsed { socket: string; json: boolean; positional: string[]; opts: Map<string, string> }

function parse(args: string[], valued: string[], usage: string): Parsed {
  const p: Parsed = { socket: '', json: false, positional: [], opts: new Map() }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    const eq = a.indexOf('=')
    const key = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined
    if (key === '--json') p.json = true
    else if (key === '--socket') p.socket = inline ?? args[++i] ?? ''
    else if (valued.includes(key)) {
      const v = inline ?? args[++i]
      if (v === undefined) throw new Error(`${key} needs a value\nUsage: ${usage}`)
      p.opts.set(key, v)
    } else if (a.startsWith('-')) throw new Error(`unknown option ${a}\nUsage: ${usage}`)
    else p.positional.push(a)
  }
  if (!p.socket) p.socket = defaultSocket()
  return p
}

async function guarded(fn: () => Promise<string>): Promise<number> {
  try {
    process.stdout.write(await fn())
    return 0
  } catch (err) {
    process.stderr.write(`tapestry: ${(err as Error).message}\n`)
    return (err as { usage?: boolean }).usage ? 2 : 1
  }
}

const ADD_USAGE = 'tapestry pod add NAME --netns NS [--ip CIDR] [--network N] [--mac MAC] [--ifname IF] [--json] [--socket PATH]'
const DEL_USAGE = 'tapestry pod del NAME [--json] [--socket PATH]'

export async function podAdd(args: string[]): Promise<number> {
  let p: Parsed
  try { p = parse(args, ['--netns', '--ip', '--network', '--mac', '--ifname'], ADD_USAGE) } catch (err) { process.stderr.write(`tapestry: ${(err as Error).message}\n`); return 2 }
  if (p.positional.length !== 1 || !p.opts.get('--netns')) { process.stderr.write(`Usage: ${ADD_USAGE}\n`); return 2 }
  return guarded(async () => {
    const body = {
      name: p.positional[0], netns: p.opts.get('--netns'), ip: p.opts.get('--ip'), network: p.opts.get('--network'),
      mac: p.opts.get('--mac'), ifname: p.opts.get('--ifname'),
    }
    const row = await request<Record<string, unknown>>(p.socket, 'POST', '/v1/pods', body)
    return p.json ? JSON.stringify(row, null, 2) + '\n' : table([row], ['name', 'network', 'ip', 'mac', 'netns', 'ifname'])
  })
}

export async function podDel(args: string[]): Promise<number> {
  let p: Parsed
  try { p = parse(args, [], DEL_USAGE) } catch (err) { process.stderr.write(`tapestry: ${(err as Error).message}\n`); return 2 }
  if (p.positional.length !== 1) { process.stderr.write(`Usage: ${DEL_USAGE}\n`); return 2 }
  return guarded(async () => {
    const r = await request<{ deleted: boolean }>(p.socket, 'DELETE', `/v1/pods/${encodeURIComponent(p.positional[0])}`)
    return p.json ? JSON.stringify(r) + '\n' : r.deleted ? `pod ${p.positional[0]} deleted\n` : `pod ${p.positional[0]} did not exist\n`
  })
}

const APPLY_USAGE = 'tapestry apply -f FILE [--json] [--socket PATH]'

export const applyCommand: Command = {
  summary: 'Apply a whole config file to the running agent: only the differences change.',
  usage: APPLY_USAGE,
  async run(args: string[]): Promise<number> {
    let p: Parsed
    try { p = parse(args, ['-f', '--file'], APPLY_USAGE) } catch (err) { process.stderr.write(`tapestry: ${(err as Error).message}\n`); return 2 }
    const file = p.opts.get('-f') ?? p.opts.get('--file')
    if (!file) { process.stderr.write(`Usage: ${APPLY_USAGE}\n`); return 2 }
    return guarded(async () => {
      const config = parseYaml(fs.readFileSync(file, 'utf8')) as unknown
      const r = await request<{ added: string[]; removed: string[]; changed: string[] }>(p.socket, 'POST', '/v1/apply', { config })
      if (p.json) return JSON.stringify(r, null, 2) + '\n'
      return `applied ${file}: pods added ${r.added.length ? r.added.join(', ') : 'none'}; removed ${r.removed.length ? r.removed.join(', ') : 'none'}; changed ${r.changed.length ? r.changed.join(', ') : 'none'}\n`
    })
  },
}

const SVC_APPLY_USAGE = 'tapestry svc apply -f FILE [--json] [--socket PATH]'

/** Reads services from a file: Tapestry's own YAML (a `services:` list or one service) or Kubernetes Service/EndpointSlice manifests. */
export function servicesFromFile(file: string): unknown[] {
  return servicesFromManifests(fs.readFileSync(file, 'utf8'))
}

export const svcCommand: Command = {
  summary: 'Services: `tapestry svc list|apply -f FILE|del NAME [--namespace NS]`.',
  usage: `tapestry svc list [--json]\n       ${SVC_APPLY_USAGE}\n       tapestry svc del NAME [--namespace NS]`,
  async run(args: string[]): Promise<number> {
    const sub = args[0]
    let p: Parsed
    try { p = parse(args.slice(1), ['-f', '--file', '--namespace', '-n'], this.usage) } catch (err) { process.stderr.write(`tapestry: ${(err as Error).message}\n`); return 2 }
    if (sub === 'list') {
      return guarded(async () => {
        const rows = await request<Record<string, unknown>[]>(p.socket, 'GET', '/v1/services')
        if (p.json) return JSON.stringify(rows, null, 2) + '\n'
        return table(rows.map((r) => ({
          ...r,
          ports: (r.ports as { port: number; targetPort: number; protocol: string }[]).map((x) => `${x.port}->${x.targetPort}/${x.protocol}`).join(','),
          endpoints: (r.endpoints as { ip: string; state: string; picked: number }[]).map((e) => `${e.ip}${e.state === 'eligible' ? '' : `(${e.state})`}:${e.picked}`).join(' '),
        })), ['namespace', 'name', 'clusterIP', 'ports', 'algorithm', 'endpoints'])
      })
    }
    if (sub === 'apply') {
      const file = p.opts.get('-f') ?? p.opts.get('--file')
      if (!file) { process.stderr.write(`Usage: ${SVC_APPLY_USAGE}\n`); return 2 }
      return guarded(async () => {
        const services = servicesFromFile(file)
        const r = await request<{ applied: string[] }>(p.socket, 'POST', '/v1/services', { services })
        return p.json ? JSON.stringify(r, null, 2) + '\n' : `applied ${r.applied.join(', ') || 'nothing'}\n`
      })
    }
    if (sub === 'del' || sub === 'delete') {
      if (p.positional.length !== 1) { process.stderr.write(`Usage: ${this.usage}\n`); return 2 }
      const ns = p.opts.get('--namespace') ?? p.opts.get('-n') ?? 'default'
      return guarded(async () => {
        const r = await request<{ deleted: boolean }>(p.socket, 'DELETE', `/v1/services/${encodeURIComponent(ns)}/${encodeURIComponent(p.positional[0])}`)
        return p.json ? JSON.stringify(r) + '\n' : r.deleted ? `service ${ns}/${p.positional[0]} deleted\n` : `service ${ns}/${p.positional[0]} did not exist\n`
      })
    }
    process.stderr.write(`Usage: ${this.usage}\n`)
    return 2
  },
}

export const conntrackCommand: Command = {
  summary: 'Connection tracking of service flows: `tapestry conntrack list [--service NS/NAME]|flush`.',
  usage: 'tapestry conntrack list [--service [NS/]NAME] [--json]\n       tapestry conntrack flush [--json]',
  async run(args: string[]): Promise<number> {
    const sub = args[0]
    let p: Parsed
    try { p = parse(args.slice(1), ['--service'], this.usage) } catch (err) { process.stderr.write(`tapestry: ${(err as Error).message}\n`); return 2 }
    if (sub === 'list') {
      return guarded(async () => {
        const svc = p.opts.get('--service')
        const rows = await request<Record<string, unknown>[]>(p.socket, 'GET', `/v1/conntrack${svc ? `?service=${encodeURIComponent(svc)}` : ''}`)
        return p.json ? JSON.stringify(rows, null, 2) + '\n' : table(rows, ['proto', 'state', 'client', 'vip', 'backend', 'service', 'idleMs'])
      })
    }
    if (sub === 'flush') {
      return guarded(async () => {
        const r = await request<{ flushed: number }>(p.socket, 'POST', '/v1/conntrack/flush')
        return p.json ? JSON.stringify(r) + '\n' : `flushed ${r.flushed} connections\n`
      })
    }
    process.stderr.write(`Usage: ${this.usage}\n`)
    return 2
  },
}

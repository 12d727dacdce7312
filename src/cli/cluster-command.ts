/**
 * `tapestry cluster ...`: what cluster mode keeps in etcd, read and written
 * directly (no agent needed).
 *
 *   tapestry cluster svc put -f FILE   store services (YAML or JSON: one object or a list)
 *   tapestry cluster svc del NAME [--namespace NS]
 *   tapestry cluster svc list
 *   tapestry cluster nodes             registered nodes, their pod blocks and pods
 *
 * Each takes --etcd URL (repeatable or comma separated; else $TAPESTRY_ETCD,
 * else cluster.etcd of --config FILE), --prefix P (else the config's, else
 * /tapestry) and --json. Every agent watching the prefix applies a service
 * change within a second.
 */
import * as fs from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { Command } from './registry'
import { table } from './client'
import { CLUSTER_DEFAULT_PREFIX, clusterSchema, etcdEndpointField } from '../control/config-schema'
import { clusterKeys, decodeNode, decodePod, parseKey } from '../control/cluster-model'
import { ServiceError, validateService } from '../service/service-model'
import type { ServiceSpec } from '../service/service-model'

const USAGE = `tapestry cluster svc put -f FILE [--etcd URL] [--prefix P] [--json]
       tapestry cluster svc del NAME [--namespace NS] [--etcd URL] [--prefix P] [--json]
       tapestry cluster svc list [--etcd URL] [--prefix P] [--json]
       tapestry cluster nodes [--etcd URL] [--prefix P] [--json]
  --etcd URL may repeat or be comma separated; default $TAPESTRY_ETCD, or cluster.etcd of --config FILE`

class UsageError extends Error {}

interface Args { positional: string[]; etcd: string[]; prefix: string | null; config: string | null; file: string | null; namespace: string; json: boolean }

function parseArgs(args: string[]): Args {
  const a: Args = { positional: [], etcd: [], prefix: null, config: null, file: null, namespace: 'default', json: false }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    const eq = arg.indexOf('=')
    const key = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg
    const value = (): string => {
      const v = arg.startsWith('--') && eq > 0 ? arg.slice(eq + 1) : args[++i]
      if (v === undefined) throw new UsageError(`${key} needs a value`)
      return v
    }
    if (key === '--json') a.json = true
    else if (key === '--etcd') a.etcd.push(...value().split(',').filter(Boolean))
    else if (key === '--prefix') a.prefix = value()
    else if (key === '--config' || key === '-c') a.config = value()
    else if (key === '-f' || key === '--file') a.file = value()
    else if (key === '--namespace' || key === '-n') a.namespace = value()
    else if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown option ${arg}`)
    else a.positional.push(arg)
  }
  return a
}

/** Endpoints and prefix from the flags, the environment or an agent config, checked like the config's. */
function target(a: Args): { endpoints: string[]; prefix: string } {
  let endpoints = a.etcd
  let prefix = a.prefix
  if (a.config) {
    const raw = parseYaml(fs.readFileSync(a.config, 'utf8')) as { cluster?: unknown } | null
    const c = clusterSchema.safeParse(raw?.cluster)
    if (!c.success) throw new UsageError(`${a.config} has no valid cluster section`)
    if (endpoints.length === 0) endpoints = c.data.etcd
    prefix ??= c.data.prefix
  }
  if (endpoints.length === 0 && process.env.TAPESTRY_ETCD) endpoints = process.env.TAPESTRY_ETCD.split(',').filter(Boolean)
  if (endpoints.length === 0) throw new UsageError('say where etcd is: --etcd URL (or $TAPESTRY_ETCD, or --config FILE)')
  const checked = endpoints.map((e) => {
    const r = etcdEndpointField.safeParse(e)
    if (!r.success) throw new UsageError(r.error.issues[0]?.message ?? `${e} is not an etcd endpoint URL`)
    return r.data
  })
  prefix ??= CLUSTER_DEFAULT_PREFIX
  if (!/^(\/[A-Za-z0-9._-]+)+$/.test(prefix)) throw new UsageError(`--prefix ${prefix} is not /NAME[/NAME...]`)
  return { endpoints: checked, prefix }
}

/** A name usable as one key segment. */
function keySegment(what: string, v: string): string {
  if (v === '' || /[/\s]/.test(v)) throw new UsageError(`${what} ${JSON.stringify(v)} cannot be part of a key (no '/', no spaces)`)
  return v
}

function readServices(file: string): ServiceSpec[] {
  const text = file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file, 'utf8')
  const doc = parseYaml(text) as unknown
  const list = Array.isArray(doc) ? doc : [doc]
  const problems: string[] = []
  const out: ServiceSpec[] = []
  list.forEach((s, i) => {
    if (s === null || typeof s !== 'object' || Array.isArray(s)) { problems.push(`item ${i}: not a service object`); return }
    const spec = { ...(s as Record<string, unknown>) } as unknown as ServiceSpec
    spec.namespace ??= 'default'
    try {
      validateService(spec)
      keySegment('name', spec.name)
      keySegment('namespace', spec.namespace)
      out.push(spec)
    } catch (err) {
      problems.push(err instanceof ServiceError || err instanceof UsageError ? err.message : String(err))
    }
  })
  if (problems.length > 0) throw new Error(`${file}: nothing stored:\n  ${problems.join('\n  ')}`)
  return out
}

async function withClient<T>(endpoints: string[], fn: (c: import('etcd3').Etcd3) => Promise<T>): Promise<T> {
  const { etcdClient } = await import('../control/cluster')
  const client = etcdClient(endpoints)
  try {
    return await fn(client)
  } catch (err) {
    throw new Error(`etcd at ${endpoints.join(', ')}: ${(err as Error).message}`)
  } finally {
    client.close()
  }
}

async function svc(a: Args): Promise<string> {
  const [, verb, name] = a.positional
  const { endpoints, prefix } = target(a)
  const keys = clusterKeys(prefix)
  if (verb === 'put') {
    if (!a.file) throw new UsageError('svc put needs -f FILE (YAML or JSON; - for stdin)')
    const services = readServices(a.file)
    const stored = await withClient(endpoints, async (c) => {
      const out: { key: string; revision: string }[] = []
      for (const s of services) {
        const key = keys.service(s.namespace!, s.name)
        const r = await c.put(key).value(JSON.stringify(s)).exec()
        out.push({ key, revision: r.header.revision })
      }
      return out
    })
    return a.json ? JSON.stringify(stored, null, 2) + '\n' : stored.map((s) => `stored ${s.key} (revision ${s.revision})\n`).join('')
  }
  if (verb === 'del' || verb === 'delete') {
    if (!name) throw new UsageError('svc del needs the service NAME')
    const key = keys.service(keySegment('namespace', a.namespace), keySegment('name', name))
    const deleted = await withClient(endpoints, async (c) => Number((await c.delete().key(key).exec()).deleted))
    return a.json ? JSON.stringify({ key, deleted: deleted > 0 }) + '\n' : `${deleted > 0 ? 'deleted' : 'no such service:'} ${key}\n`
  }
  if (verb === 'list' || verb === 'ls') {
    const rows = await withClient(endpoints, async (c) => {
      const all = await c.getAll().prefix(keys.services).strings()
      return Object.entries(all).map(([key, v]) => {
        try { return JSON.parse(v) as Record<string, unknown> } catch { return { key, invalid: v } }
      })
    })
    if (a.json) return JSON.stringify(rows, null, 2) + '\n'
    return table(rows.map((s) => ({
      namespace: s.namespace, name: s.name, clusterIP: s.clusterIP,
      ports: Array.isArray(s.ports) ? s.ports.map((p: { port?: number; protocol?: string }) => `${p.port}/${p.protocol ?? 'TCP'}`).join(',') : '-',
      endpoints: Array.isArray(s.endpoints) ? s.endpoints.map((e: { ip?: string }) => e.ip).join(',') : '-',
    })), ['namespace', 'name', 'clusterIP', 'ports', 'endpoints'])
  }
  throw new UsageError(`unknown svc command ${verb ?? '(none)'}`)
}

async function nodes(a: Args): Promise<string> {
  const { endpoints, prefix } = target(a)
  const keys = clusterKeys(prefix)
  const rows = await withClient(endpoints, async (c) => {
    const all = await c.getAll().prefix(keys.root).strings()
    const byNode = new Map<string, { node: string; underlayIP: string | null; vxlanPort: number | null; registered: boolean; blocks: string[]; pods: string[] }>()
    const row = (n: string) => {
      let r = byNode.get(n)
      if (!r) byNode.set(n, r = { node: n, underlayIP: null, vxlanPort: null, registered: false, blocks: [], pods: [] })
      return r
    }
    for (const [key, v] of Object.entries(all)) {
      const k = parseKey(keys, key)
      if (k?.kind === 'node') {
        const n = decodeNode(k.name, v)
        const r = row(k.name)
        r.registered = n !== null
        r.underlayIP = n?.underlayIP ?? null
        r.vxlanPort = n?.vxlanPort ?? null
      } else if (k?.kind === 'block') {
        try { row((JSON.parse(v) as { node: string }).node).blocks.push(`${k.network}:${(JSON.parse(v) as { block: string }).block}`) } catch { /* not a block record */ }
      } else if (k?.kind === 'pod') {
        const p = decodePod(k.node, k.pod, v)
        if (p) row(k.node).pods.push(`${p.name}=${p.ip}`)
      }
    }
    return [...byNode.values()].sort((x, y) => (x.node < y.node ? -1 : 1))
  })
  if (a.json) return JSON.stringify(rows, null, 2) + '\n'
  return table(rows.map((r) => ({ ...r, blocks: r.blocks.join(' ') || '-', pods: r.pods.length })), ['node', 'underlayIP', 'registered', 'blocks', 'pods'])
}

export const clusterCommand: Command = {
  summary: 'Cluster mode state in etcd: `tapestry cluster svc put|del|list`, `tapestry cluster nodes`.',
  usage: USAGE,
  async run(args: string[]): Promise<number> {
    let a: Args
    try {
      a = parseArgs(args)
    } catch (err) {
      process.stderr.write(`tapestry cluster: ${(err as Error).message}\nUsage: ${USAGE}\n`)
      return 2
    }
    try {
      const [sub] = a.positional
      let out: string
      if (sub === 'svc' || sub === 'service' || sub === 'services') out = await svc(a)
      else if (sub === 'nodes') out = await nodes(a)
      else throw new UsageError(`unknown cluster command ${sub ?? '(none)'}`)
      process.stdout.write(out)
      return 0
    } catch (err) {
      if (err instanceof UsageError) {
        process.stderr.write(`tapestry cluster: ${err.message}\nUsage: ${USAGE}\n`)
        return 2
      }
      process.stderr.write(`tapestry cluster: ${(err as Error).message}\n`)
      return 1
    }
  },
}

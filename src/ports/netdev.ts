/**
 * Network device set-up outside the data path, through iproute2: moving a TAP
 * into a pod's network namespace and configuring it there. Every failure names
 * the command and carries its stderr.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { TapestryError } from '../lib/errors'

export class CommandError extends TapestryError {
  constructor(readonly command: string, readonly stderr: string, readonly exitCode: number | null) {
    super('TAPESTRY_COMMAND_FAILED', `\`${command}\` failed${exitCode !== null ? ` (exit ${exitCode})` : ''}: ${stderr.trim() || 'no output'}`)
  }
}

export function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 10_000, maxBuffer: 8 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const code = typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null
        reject(new CommandError([cmd, ...args].join(' ') + (input ? ` <<< ${JSON.stringify(input)}` : ''), String(stderr || err.message), code))
      } else resolve(String(stdout))
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

/**
 * Resolves a pod's netns setting to what `ip` understands: a name under
 * /var/run/netns (a path there is reduced to its name), or a PID for
 * /proc/PID/ns/net. Returns null for a path ip cannot address.
 */
export function netnsRef(netns: string): { name?: string; pid?: number } | null {
  if (!netns.includes('/')) return { name: netns }
  const real = path.resolve(netns)
  for (const dir of ['/var/run/netns', '/run/netns']) {
    if (path.dirname(real) === dir) return { name: path.basename(real) }
  }
  const m = /^\/proc\/(\d+)\/ns\/net$/.exec(real)
  if (m) return { pid: Number(m[1]) }
  return null
}

export function netnsExists(netns: string): boolean {
  if (!netns.includes('/')) return fs.existsSync(path.join('/var/run/netns', netns))
  return fs.existsSync(netns)
}

export interface PodInterface {
  netns: string
  /** Name of the TAP in the agent's namespace before the move. */
  tapName: string
  /** Name inside the pod, usually eth0. */
  ifname: string
  mac: string
  cidr: string
  mtu: number
  gateway?: string
}

function nsArgs(netns: string): string[] {
  const ref = netnsRef(netns)
  if (!ref) throw new TapestryError('TAPESTRY_NETNS_UNSUPPORTED', `netns ${netns}: give a name under /var/run/netns or /proc/PID/ns/net`)
  return ref.name !== undefined ? ['-n', ref.name] : ['-n', String(ref.pid)]
}

/** Moves the TAP into the pod namespace and configures it there (the fd stays valid). */
export async function setupPodInterface(p: PodInterface): Promise<void> {
  const ref = netnsRef(p.netns)
  if (!ref) throw new TapestryError('TAPESTRY_NETNS_UNSUPPORTED', `netns ${p.netns}: give a name under /var/run/netns or /proc/PID/ns/net`)
  await run('ip', ['link', 'set', 'dev', p.tapName, 'netns', ref.name ?? String(ref.pid)])
  await run('ip', [...nsArgs(p.netns), 'link', 'set', 'dev', p.tapName, 'name', p.ifname])
  await configurePodInterface(p)
}

/**
 * Sets MAC, MTU, address and default route of the pod interface, idempotently
 * (also used on a TAP re-attached after an agent restart).
 */
export async function configurePodInterface(p: PodInterface): Promise<void> {
  const cmds = [
    `link set dev lo up`,
    `link set dev ${p.ifname} address ${p.mac} mtu ${p.mtu}`,
    `addr replace ${p.cidr} dev ${p.ifname}`,
    `link set dev ${p.ifname} up`,
  ]
  if (p.gateway) cmds.push(`route replace default via ${p.gateway} dev ${p.ifname} onlink`)
  await run('ip', [...nsArgs(p.netns), '-batch', '-'], cmds.join('\n') + '\n')
}

/** What kind of device `ifname` is in the namespace: 'tap', another kind, or null when absent. */
export async function linkKind(netns: string, ifname: string): Promise<string | null> {
  let out: string
  try {
    out = await run('ip', [...nsArgs(netns), '-d', '-j', 'link', 'show', 'dev', ifname])
  } catch {
    return null
  }
  const info = (JSON.parse(out) as { linkinfo?: { info_kind?: string; info_data?: { type?: string } } }[])[0]?.linkinfo
  if (info?.info_kind === 'tun') return info.info_data?.type === 'tap' ? 'tap' : 'tun'
  return info?.info_kind ?? 'device'
}

/** Whether a device of that name exists in the pod namespace. */
export async function podInterfaceExists(netns: string, ifname: string): Promise<boolean> {
  try {
    await run('ip', [...nsArgs(netns), 'link', 'show', 'dev', ifname])
    return true
  } catch {
    return false
  }
}

/** Deletes a device inside a namespace (a persistent TAP must be deleted explicitly). */
export async function deleteLink(netns: string | null, ifname: string): Promise<void> {
  await run('ip', [...(netns ? nsArgs(netns) : []), 'link', 'del', 'dev', ifname])
}

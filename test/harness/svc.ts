/**
 * Helpers for the service (VIP) e2e tests: a cluster laid out as hosts with
 * named pods, the backend/client fixtures run in pod namespaces, and the
 * tapestry CLI pointed at a host's API socket.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { stringify } from 'yaml'
import { Lab, Proc, waitFor } from './lab'
import { Cluster, Host, TAPESTRY_BIN, hostConfig } from './overlay'

export const SVC_BACKEND = path.join(__dirname, '..', 'e2e', 'fixtures', 'svc-backend.js')
export const SVC_CLIENT = path.join(__dirname, '..', 'e2e', 'fixtures', 'svc-client.js')

export const NET = { name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }

export interface Pod { name: string; ns: string; ip: string; host: Host }

export interface SvcCluster {
  c: Cluster
  hosts: Record<string, Host>
  pods: Record<string, Pod>
  /** The API socket of a host's agent. */
  sock: (h: Host) => string
  /** The config each host's agent was started with (for apply -f / reload). */
  configs: Map<string, Record<string, unknown>>
}

/**
 * Hosts (tag -> pod names) on one underlay, one agent each, pods of host k
 * (k from 1) at 10.244.k.(2+i)/16. `extra(host)` adds config keys per host;
 * `network(host, k)` is the host's one network (default NET; e.g. with a hostIP).
 */
export async function svcCluster(
  lab: Lab, layout: Record<string, string[]>, extra: (h: Host) => Record<string, unknown> = () => ({}),
  network: (h: Host, k: number) => Record<string, unknown> = () => NET,
): Promise<SvcCluster> {
  const c = new Cluster(lab)
  const hosts: Record<string, Host> = {}
  const pods: Record<string, Pod> = {}
  Object.entries(layout).forEach(([tag, names], k) => {
    const h = c.addHost(tag, k + 1)
    hosts[tag] = h
    names.forEach((n, i) => { pods[n] = { name: n, ns: c.podNs(n), ip: `10.244.${k + 1}.${i + 2}`, host: h } })
  })
  const configs = new Map<string, Record<string, unknown>>()
  const sock = (h: Host): string => path.join(c.dir, `${h.name}.sock`)
  await Promise.all(Object.entries(layout).map(([tag, names], k) => {
    const h = hosts[tag]
    const net = network(h, k + 1)
    const podCfg = names.map((n) => ({ name: n, network: net.name, netns: pods[n].ns, ip: `${pods[n].ip}/16` }))
    const cfg = { ...hostConfig(h, c.hosts, [net], podCfg, extra(h)), api: { socket: sock(h) } }
    configs.set(h.name, cfg)
    return c.startAgent(h, cfg)
  }))
  return { c, hosts, pods, sock, configs }
}

/** Starts the backend fixture in a pod and waits until it listens. */
export async function startBackend(lab: Lab, pod: Pod, opts: { http?: number; udp?: number; sink?: number; source?: number }): Promise<Proc> {
  const args = Object.entries(opts).flatMap(([k, v]) => [`--${k}`, String(v)])
  const p = lab.spawn(pod.ns, [process.execPath, SVC_BACKEND, pod.name, ...args])
  await waitFor(`backend ${pod.name} ready`, () => {
    if (p.child.exitCode !== null) throw new Error(`backend ${pod.name} exited ${p.child.exitCode}: ${p.stderr()}`)
    return p.stdout().includes('ready')
  })
  return p
}

/** Runs the client fixture in a pod (or any namespace: a host's); returns its (last) JSON line. */
export async function client<T = Record<string, unknown>>(lab: Lab, pod: { name: string; ns: string }, args: (string | number)[], timeoutMs = 60_000): Promise<T> {
  const r = await lab.execAsync(pod.ns, [process.execPath, SVC_CLIENT, ...args.map(String)], timeoutMs)
  if (r.code !== 0) throw new Error(`svc-client ${args.join(' ')} in ${pod.name} exited ${r.code}: ${r.stderr}${r.stdout}`)
  const lines = r.stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]) as T
}

export interface HttpResult { ok: number; failed: number; counts: Record<string, number>; errors: Record<string, number> }

/** A long-lived connection through the stream mode of the client fixture; stop() ends it and gives the summary. */
export interface Stream {
  proc: Proc
  backend: string
  localPort: number
  stop: () => Promise<{ sent: { bytes: number; sha256: string }; reply: { name: string; bytes: number; sha256: string } }>
}

export async function openStream(lab: Lab, pod: Pod, host: string, port: number, chunk: number, everyMs: number): Promise<Stream> {
  const proc = lab.spawn(pod.ns, [process.execPath, SVC_CLIENT, 'stream', host, String(port), String(chunk), String(everyMs)], { stdio: ['pipe', 'pipe', 'pipe'] })
  const events = (): Record<string, unknown>[] => proc.stdout().trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
  const first = await waitFor(`stream from ${pod.name} to ${host}:${port} connected`, () => {
    const ev = events()
    const bad = ev.find((e) => e.event === 'error')
    if (bad || proc.child.exitCode !== null) throw new Error(`stream failed: ${proc.stdout()}${proc.stderr()}`)
    return ev.find((e) => e.event === 'connected')
  }, 20_000) as Record<string, unknown>
  return {
    proc,
    backend: first.backend as string,
    localPort: first.localPort as number,
    stop: async () => {
      proc.child.stdin?.end('stop\n')
      let timer: NodeJS.Timeout | undefined
      const code = await Promise.race([proc.exited, new Promise<string>((r) => { timer = setTimeout(() => r('timeout'), 30_000) })])
      clearTimeout(timer)
      const done = events().find((e) => e.event === 'done')
      if (code !== 0 || !done) throw new Error(`stream did not finish cleanly (exit ${code}): ${proc.stdout()}${proc.stderr()}`)
      return done as unknown as Awaited<ReturnType<Stream['stop']>>
    },
  }
}

/** Runs `tapestry ARGS --socket <host's socket>` (not in a namespace: the socket is a file). */
export async function tapestry(lab: Lab, sc: SvcCluster, h: Host, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return lab.execAsync(null, [process.execPath, TAPESTRY_BIN, ...args, '--socket', sc.sock(h)], 30_000)
}

/** Same, expecting success and JSON output (adds --json). */
export async function tapestryJson<T = unknown>(lab: Lab, sc: SvcCluster, h: Host, args: string[]): Promise<T> {
  const r = await tapestry(lab, sc, h, [...args, '--json'])
  if (r.code !== 0) throw new Error(`tapestry ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout) as T
}

let fileSeq = 0
/** `tapestry svc apply -f FILE` with the services written as a Tapestry `services:` YAML file. */
export async function applyServices(lab: Lab, sc: SvcCluster, h: Host, services: unknown[]): Promise<{ applied: string[] }> {
  const file = path.join(sc.c.dir, `svc-${h.name}-${++fileSeq}.yaml`)
  fs.writeFileSync(file, stringify({ services }))
  return tapestryJson(lab, sc, h, ['svc', 'apply', '-f', file])
}

/** A TCP service: port -> targetPort on the given endpoints. */
export function svc(name: string, clusterIP: string, endpoints: (string | { ip: string; ready?: boolean; terminating?: boolean })[], extra: Record<string, unknown> = {}, ports: unknown[] = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }]): Record<string, unknown> {
  return { name, namespace: 'default', clusterIP, ports, endpoints: endpoints.map((e) => (typeof e === 'string' ? { ip: e } : e)), ...extra }
}

export interface SvcInfo {
  name: string
  namespace: string
  clusterIP: string
  algorithm: string
  endpoints: { ip: string; state: string; ready: boolean; terminating: boolean; connections: number; picked: number }[]
}

export async function svcList(lab: Lab, sc: SvcCluster, h: Host): Promise<SvcInfo[]> {
  return tapestryJson<SvcInfo[]>(lab, sc, h, ['svc', 'list'])
}

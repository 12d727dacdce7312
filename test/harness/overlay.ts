/**
 * Builds Tapestry clusters for e2e tests: hosts are network namespaces joined by
 * an underlay bridge (in its own namespace), each host runs a real agent process
 * (bin/tapestry agent) on a generated config, and pods are namespaces whose eth0
 * the agent creates.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { stringify } from 'yaml'
import { Lab, Proc, waitFor } from './lab'

export const TAPESTRY_BIN = path.join(__dirname, '..', '..', '..', 'bin', 'tapestry')

export interface HostSpec {
  name: string
  /** Last octet of the underlay address 192.168.250.X. */
  octet: number
}

export interface Host {
  name: string
  ns: string
  underlayIP: string
  /** Underlay interface name inside the host namespace. */
  ifname: string
}

export class Cluster {
  readonly hosts: Host[] = []
  readonly dir: string
  readonly underlayNs: string
  private agents = new Map<string, Proc>()

  constructor(readonly lab: Lab, readonly subnet = '192.168.250') {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tapestry-e2e-'))
    lab.onCleanup(() => fs.rmSync(this.dir, { recursive: true, force: true }))
    this.underlayNs = lab.netns('ul')
    lab.bridge(this.underlayNs, 'br0')
  }

  addHost(tag: string, octet: number, mtu?: number): Host {
    const ns = this.lab.netns(tag)
    const underlayIP = `${this.subnet}.${octet}`
    this.lab.veth(ns, 'ul0', this.underlayNs, `p${tag}`, `${underlayIP}/24`, undefined, mtu)
    this.lab.exec(this.underlayNs, ['ip', 'link', 'set', `p${tag}`, 'master', 'br0'])
    const h = { name: tag, ns, underlayIP, ifname: 'ul0' }
    this.hosts.push(h)
    return h
  }

  /** A pod namespace (empty: the agent creates its interface). */
  podNs(tag: string): string {
    return this.lab.netns(tag)
  }

  writeConfig(host: Host, cfg: Record<string, unknown>): string {
    const file = path.join(this.dir, `${host.name}.yaml`)
    fs.writeFileSync(file, stringify(cfg))
    return file
  }

  /** Starts the agent of a host and waits until it logs that it is ready. `env`: added to this process's environment. */
  async startAgent(host: Host, cfg: Record<string, unknown>, env?: Record<string, string>): Promise<Proc> {
    // The API socket goes under this cluster's directory unless the test chose one:
    // the default /run/tapestry/<node>.sock would be shared with other runs.
    if (cfg.api === undefined) cfg = { ...cfg, api: { socket: path.join(this.dir, `${host.name}.sock`) } }
    const file = this.writeConfig(host, cfg)
    const p = this.lab.spawn(host.ns, [process.execPath, TAPESTRY_BIN, 'agent', '--config', file], env ? { env: { ...process.env, ...env } } : {})
    this.agents.set(host.name, p)
    await waitFor(`agent ${host.name} ready`, () => {
      if (p.child.exitCode !== null) throw new Error(`agent ${host.name} exited ${p.child.exitCode}: ${p.stderr()}${p.stdout()}`)
      return p.stdout().includes('"agent ready"')
    }, 20_000)
    return p
  }

  agent(host: Host): Proc | undefined {
    return this.agents.get(host.name)
  }

  async stopAgent(host: Host): Promise<number | null> {
    const p = this.agents.get(host.name)
    if (!p) return null
    p.child.kill('SIGTERM')
    const code = await p.exited
    this.agents.delete(host.name)
    return code
  }

  /** Sends SIGHUP after rewriting the config file, and waits for the agent to log the result. */
  async reload(host: Host, cfg: Record<string, unknown>): Promise<void> {
    if (cfg.api === undefined) cfg = { ...cfg, api: { socket: path.join(this.dir, `${host.name}.sock`) } }
    const p = this.agents.get(host.name)!
    const before = (p.stdout().match(/"config applied"/g) ?? []).length
    this.writeConfig(host, cfg)
    p.child.kill('SIGHUP')
    await waitFor(`agent ${host.name} applied config`, () => (p.stdout().match(/"config applied"/g) ?? []).length > before, 10_000)
  }
}

/**
 * TAPESTRY_E2E_OFFLOADS=off: every agent a test starts runs with `offloads:
 * false` (no vnet headers' TSO/GSO/GRO work) unless the test sets the key
 * itself; scripts/test.sh runs the data-moving suites a second time so.
 */
export const E2E_OFFLOADS = process.env.TAPESTRY_E2E_OFFLOADS !== 'off'

export function hostConfig(host: Host, peers: Host[], networks: unknown[], pods: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    node: { name: host.name, underlayIP: host.underlayIP, vxlanPort: 4789, mtu: 1500, ...(extra.node as object ?? {}) },
    networks,
    peers: peers.filter((p) => p !== host).map((p) => p.underlayIP),
    pods,
    log: { level: 'info' },
    ...(E2E_OFFLOADS ? {} : { offloads: false }),
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'node')),
  }
}

/**
 * A real single-member etcd server for cluster-mode e2e tests (Debian's
 * etcd-server package), in a namespace of its own attached to a Cluster's
 * underlay bridge, with a temporary data dir kept across restarts.
 *
 * start('underlay') serves on the underlay address (and loopback), where the
 * agents reach it; start('loopback') serves on 127.0.0.1 inside its namespace
 * only, so a change can be made while the agents cannot see etcd.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Lab, Proc, waitFor } from './lab'
import { Cluster } from './overlay'

export const ETCD_BIN = process.env.TAPESTRY_ETCD_BIN ?? '/usr/bin/etcd'
export const ETCD_CLIENT_PORT = 2379

/** Throws with the install hint when no etcd binary is there. */
export function requireEtcd(): void {
  if (!fs.existsSync(ETCD_BIN)) {
    throw new Error(`no etcd at ${ETCD_BIN}: install Debian's etcd-server (apt-get install --no-install-recommends etcd-server) or set TAPESTRY_ETCD_BIN`)
  }
}

export class EtcdServer {
  readonly ns: string
  readonly ip: string
  readonly dataDir: string
  private proc: Proc | null = null
  private listening: 'underlay' | 'loopback' | null = null

  constructor(readonly lab: Lab, cluster: Cluster, octet = 100) {
    requireEtcd()
    this.ns = lab.netns('et')
    this.ip = `${cluster.subnet}.${octet}`
    lab.veth(this.ns, 'ul0', cluster.underlayNs, 'pet', `${this.ip}/24`)
    lab.exec(cluster.underlayNs, ['ip', 'link', 'set', 'pet', 'master', 'br0'])
    this.dataDir = path.join(cluster.dir, 'etcd-data')
  }

  /** The URL the agents use. */
  get url(): string {
    return `http://${this.ip}:${ETCD_CLIENT_PORT}`
  }

  /** The URL that works from inside the etcd namespace, whichever way it listens. */
  get localUrl(): string {
    return `http://127.0.0.1:${ETCD_CLIENT_PORT}`
  }

  get running(): boolean {
    return this.proc !== null && this.proc.child.exitCode === null && this.proc.child.signalCode === null
  }

  /** Starts etcd and waits until it answers /health. */
  async start(on: 'underlay' | 'loopback' = 'underlay'): Promise<void> {
    if (this.running) throw new Error('etcd is already running')
    fs.mkdirSync(this.dataDir, { recursive: true, mode: 0o700 })
    const clientUrls = on === 'underlay' ? `${this.url},${this.localUrl}` : this.localUrl
    const peer = 'http://127.0.0.1:2380'
    const p = this.lab.spawn(this.ns, [
      ETCD_BIN, '--name', 'tapestry-e2e', '--data-dir', this.dataDir,
      '--listen-client-urls', clientUrls, '--advertise-client-urls', on === 'underlay' ? this.url : this.localUrl,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `tapestry-e2e=${peer}`, '--initial-cluster-state', 'new',
      '--heartbeat-interval', '50', '--election-timeout', '500',
      '--logger', 'zap', '--log-level', 'warn',
    ])
    this.proc = p
    this.listening = on
    await waitFor(`etcd answering on ${on === 'underlay' ? this.url : this.localUrl}`, async () => {
      if (p.child.exitCode !== null) throw new Error(`etcd exited ${p.child.exitCode}: ${p.stderr().slice(-2000)}`)
      const r = await this.lab.execAsync(this.ns, ['curl', '-s', '-m', '1', `${this.localUrl}/health`], 3000)
      return r.code === 0 && /"health":\s*"true"/.test(r.stdout)
    }, 15_000, 100)
  }

  /** Stops etcd (SIGTERM: a clean stop; SIGKILL: a crash) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc
    if (!p) return
    this.proc = null
    this.listening = null
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill(signal)
      await p.exited
    }
  }

  /** etcdctl-free look at what is stored: the keys under a prefix (v3 gRPC gateway over HTTP). */
  async keys(prefix: string): Promise<string[]> {
    const b64 = (s: string) => Buffer.from(s).toString('base64')
    const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)
    const r = await this.lab.execAsync(this.ns, ['curl', '-s', '-m', '2', '-X', 'POST', `${this.localUrl}/v3/kv/range`,
      '-d', JSON.stringify({ key: b64(prefix), range_end: b64(end), keys_only: true })], 5000)
    if (r.code !== 0) throw new Error(`etcd range failed: ${r.stderr}`)
    const kvs = (JSON.parse(r.stdout) as { kvs?: { key: string }[] }).kvs ?? []
    return kvs.map((kv) => Buffer.from(kv.key, 'base64').toString()).sort()
  }

  /** What etcd logged (for failure messages). */
  logs(): string {
    return this.proc ? this.proc.stderr().slice(-4000) : ''
  }

  get mode(): 'underlay' | 'loopback' | null {
    return this.listening
  }
}


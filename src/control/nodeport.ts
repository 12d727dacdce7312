/**
 * NodePorts: a service with `nodePort` is reachable at underlayIP:nodePort from
 * other hosts. A userspace L4 proxy in the agent accepts there and connects to
 * the service's VIP through the host TAP, so the connection is balanced by the
 * datapath like any other (the client the balancer sees is this node's host
 * address: ClientIP affinity then groups by node, as with kube-proxy's SNAT).
 */
import * as net from 'node:net'
import * as dgram from 'node:dgram'
import { Logger } from '../observe/log'

export interface NodePortTarget {
  key: string
  nodePort: number
  vip: string
  port: number
  protocol: 'TCP' | 'UDP'
}

interface Listener { target: NodePortTarget; close(): Promise<void> }

/** Idle UDP flows are forgotten after this long. */
const UDP_IDLE_MS = 30_000

export class NodePortProxy {
  private listeners = new Map<string, Listener>()

  constructor(readonly listenAddr: string, readonly log: Logger) {}

  /** Opens listeners for new targets and closes those gone or changed. */
  async sync(targets: NodePortTarget[]): Promise<void> {
    const want = new Map(targets.map((t) => [`${t.protocol}/${t.nodePort}`, t]))
    for (const [k, l] of this.listeners) {
      const t = want.get(k)
      if (!t || t.vip !== l.target.vip || t.port !== l.target.port) {
        await l.close()
        this.listeners.delete(k)
      }
    }
    for (const [k, t] of want) {
      if (this.listeners.has(k)) continue
      try {
        this.listeners.set(k, t.protocol === 'TCP' ? await this.tcp(t) : await this.udp(t))
        this.log.info({ service: t.key, nodePort: t.nodePort, protocol: t.protocol, vip: `${t.vip}:${t.port}` }, 'nodePort open')
      } catch (err) {
        this.log.error({ service: t.key, nodePort: t.nodePort, reason: (err as Error).message }, 'nodePort could not be opened')
      }
    }
  }

  async close(): Promise<void> {
    for (const l of this.listeners.values()) await l.close()
    this.listeners.clear()
  }

  private tcp(t: NodePortTarget): Promise<Listener> {
    const sockets = new Set<net.Socket>()
    const server = net.createServer((client) => {
      const upstream = net.connect({ host: t.vip, port: t.port })
      sockets.add(client)
      sockets.add(upstream)
      const done = (): void => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream) }
      client.on('error', done)
      upstream.on('error', done)
      client.on('close', done)
      upstream.on('close', done)
      client.pipe(upstream)
      upstream.pipe(client)
    })
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(t.nodePort, this.listenAddr, () => {
        server.off('error', reject)
        resolve({
          target: t,
          close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()) }),
        })
      })
    })
  }

  private udp(t: NodePortTarget): Promise<Listener> {
    const sock = dgram.createSocket('udp4')
    const flows = new Map<string, { up: dgram.Socket; last: number }>()
    sock.on('message', (msg, rinfo) => {
      const k = `${rinfo.address}:${rinfo.port}`
      let f = flows.get(k)
      if (!f) {
        const up = dgram.createSocket('udp4')
        up.connect(t.port, t.vip)
        up.on('message', (reply) => sock.send(reply, rinfo.port, rinfo.address))
        up.on('error', () => { up.close(); flows.delete(k) })
        f = { up, last: Date.now() }
        flows.set(k, f)
        up.once('connect', () => f!.up.send(msg))
        return
      }
      f.last = Date.now()
      f.up.send(msg)
    })
    const timer = setInterval(() => {
      const now = Date.now()
      for (const [k, f] of flows) if (now - f.last > UDP_IDLE_MS) { f.up.close(); flows.delete(k) }
    }, 5000)
    timer.unref()
    return new Promise((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(t.nodePort, this.listenAddr, () => {
        sock.off('error', reject)
        resolve({
          target: t,
          close: async () => { clearInterval(timer); for (const f of flows.values()) f.up.close(); flows.clear(); sock.close() },
        })
      })
    })
  }
}

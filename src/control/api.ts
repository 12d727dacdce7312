/**
 * The agent's runtime API: HTTP/1.1 with JSON bodies on a unix socket (mode 0600,
 * root only). The CLI is its client. Read-only views for now: pods, FDB, peers,
 * stats.
 */
import * as http from 'node:http'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Agent } from '../agent'
import { DROP_NAMES } from '../datapath/drops'
import { isPeerPort, PEER_PORT_BASE } from '../overlay/peers'
import { FdbCounter } from '../switch/fdb'
import { ipv4Format } from '../wire/addr'
import { STAT_RX_BYTES, STAT_RX_FRAMES, STAT_TX_BYTES, STAT_TX_FRAMES, UNDERLAY_PORT } from '../datapath/datapath'

export interface FdbRow {
  vni: number
  mac: string
  port: number
  type: 'static' | 'learned'
  ageMs: number
  remote: string | null
  pod: string | null
}

export function fdbRows(agent: Agent, vni?: number): FdbRow[] {
  const dp = agent.datapath
  const pods = new Map(agent.podStates().map((p) => [p.port, p.name]))
  const now = performance.now()
  return dp.fdb.entries(now)
    .filter((e) => vni === undefined || e.vni === vni)
    .map((e) => ({
      vni: e.vni,
      mac: e.mac,
      port: e.port,
      type: e.isStatic ? 'static' as const : 'learned' as const,
      ageMs: Math.round(e.ageMs),
      remote: isPeerPort(e.port) ? ipv4Format(dp.peers.addr[e.port - PEER_PORT_BASE]) : null,
      pod: isPeerPort(e.port) ? null : pods.get(e.port) ?? null,
    }))
}

export function statsView(agent: Agent): Record<string, unknown> {
  const dp = agent.datapath
  const drops: Record<string, number> = {}
  DROP_NAMES.forEach((n, i) => { drops[n] = dp.drops[i] })
  const port = (id: number) => ({
    rxFrames: dp.stats[id * 4 + STAT_RX_FRAMES], rxBytes: dp.stats[id * 4 + STAT_RX_BYTES],
    txFrames: dp.stats[id * 4 + STAT_TX_FRAMES], txBytes: dp.stats[id * 4 + STAT_TX_BYTES],
  })
  const c = dp.fdb.counters
  return {
    node: agent.config.node.name,
    underlay: port(UNDERLAY_PORT),
    pods: Object.fromEntries(agent.podStates().map((p) => [p.name, port(p.port)])),
    drops,
    fdb: {
      entries: dp.fdb.size, learned: c[FdbCounter.Learned], moved: c[FdbCounter.Moved], aged: c[FdbCounter.Aged],
      staticMoveRefused: c[FdbCounter.StaticMoveRefused],
      limitDrops: c[FdbCounter.LimitTable] + c[FdbCounter.LimitVni] + c[FdbCounter.LimitPort],
    },
    arp: { entries: dp.arp.size, answered: dp.arpAnswered },
    batches: dp.batches,
    meanBatch: dp.batches > 0 ? dp.batchFrames / dp.batches : 0,
  }
}

export class ApiServer {
  private server: http.Server | null = null

  constructor(readonly agent: Agent, readonly socketPath: string) {}

  async listen(): Promise<void> {
    fs.mkdirSync(path.dirname(this.socketPath), { recursive: true, mode: 0o700 })
    try { fs.unlinkSync(this.socketPath) } catch { /* none left over */ }
    const server = http.createServer((req, res) => this.handle(req, res))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      const mask = process.umask(0o177)
      server.listen(this.socketPath, () => { process.umask(mask); resolve() })
    })
    fs.chmodSync(this.socketPath, 0o600)
    this.server = server
  }

  async close(): Promise<void> {
    const s = this.server
    this.server = null
    if (s) await new Promise<void>((r) => s.close(() => r()))
    try { fs.unlinkSync(this.socketPath) } catch { /* already gone */ }
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://agent')
    const send = (code: number, body: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    try {
      if (req.method === 'GET' && url.pathname === '/v1/fdb') {
        const v = url.searchParams.get('vni')
        return send(200, fdbRows(this.agent, v === null ? undefined : Number(v)))
      }
      if (req.method === 'GET' && url.pathname === '/v1/pods') {
        return send(200, this.agent.podStates().map((p) => ({
          name: p.name, network: p.cfg.network, vni: p.cfg.vni, netns: p.cfg.netns, ifname: p.cfg.ifname,
          ip: p.cfg.ip, mac: p.cfg.mac, port: p.port, tap: p.tap,
        })))
      }
      if (req.method === 'GET' && url.pathname === '/v1/peers') {
        const dp = this.agent.datapath
        return send(200, dp.peers.list().map((a) => ({ address: ipv4Format(a), configured: dp.peers.configured[dp.peers.indexOf(a)] === 1 })))
      }
      if (req.method === 'GET' && url.pathname === '/v1/stats') return send(200, statsView(this.agent))
      send(404, { error: { code: 'TAPESTRY_API_NOT_FOUND', message: `no such endpoint: ${req.method} ${url.pathname}` } })
    } catch (err) {
      send(500, { error: { code: 'TAPESTRY_API_INTERNAL', message: String((err as Error).message) } })
    }
  }
}

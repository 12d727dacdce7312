/**
 * The agent's runtime API: HTTP/1.1 with JSON bodies on a unix socket (mode 0600,
 * root only). The CLI is its client. Besides the JSON endpoints there is one
 * stream, POST /v1/capture, whose response body is a pcap file.
 *
 * POST /v1/capture takes JSON
 *   { pod: NAME | vni: N | underlay: true,   exactly one
 *     filter?: EXPR, count?: N, durationS?: S, snaplen?: N, bufferBytes?: N }
 * and answers 200 with `application/vnd.tcpdump.pcap`, chunked: the file header
 * at once, then whole records as frames pass (see observe/capture.ts). It ends
 * after `count` records, after `durationS`, when the client disconnects, or
 * when the agent stops (close() below ends every capture and waits until its
 * last bytes are sent), and the trailers x-tapestry-captured,
 * x-tapestry-dropped and x-tapestry-end say how many records were sent, how
 * many were lost to a slow reader, and why it ended. Bad parameters answer 400
 * (unknown pod or VNI 404) with the usual JSON error before any pcap byte.
 */
import * as http from 'node:http'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Agent } from '../agent'
import { ConfigError } from './config'
import { peerHealthOf, UNKNOWN_VIEW } from './peer-health'
import { TapestryError } from '../lib/errors'
import { DROP_NAMES, OFFLOAD_NAMES } from '../datapath/drops'
import { MISC_ARP_ANSWERED, MISC_BATCHES, MISC_BATCH_FRAMES, MISC_CAPTURE_LOST, MISC_CT_SIZE } from '../datapath/counters'
import { SERVICE_DROP_NAMES, SERVICE_STAT_NAMES } from '../service/service-path'
import { CT_COUNTER_NAMES } from '../service/conntrack'
import { isPeerPort, PEER_PORT_BASE } from '../overlay/peers'
import { FdbCounter } from '../switch/fdb'
import { ipv4Format } from '../wire/addr'
import { CapturePoint, STAT_RX_BYTES, STAT_RX_FRAMES, STAT_TX_BYTES, STAT_TX_FRAMES, UNDERLAY_PORT } from '../datapath/datapath'
import {
  CAPTURE_MAX_BUFFER_BYTES, CAPTURE_MIN_BUFFER_BYTES, CaptureEnd, CaptureHub, CaptureOptions, CaptureSession,
  POD_POINTS, UNDERLAY_POINTS, pointBit,
} from '../observe/capture'
import { FilterError, compileFilter } from '../observe/filter'
import { PCAP_DEFAULT_SNAPLEN } from '../observe/pcap'

export interface FdbRow {
  vni: number
  mac: string
  port: number
  type: 'static' | 'learned'
  ageMs: number
  remote: string | null
  pod: string | null
}

/**
 * The FDB as the API shows it: the main thread's entries, and with workers
 * the entries they learned that it has not (each worker learns from the flows
 * it reads; one row per VNI and MAC, the youngest).
 */
export async function fdbRows(agent: Agent, vni?: number): Promise<FdbRow[]> {
  const dp = agent.datapath
  const pods = new Map(agent.podStates().map((p) => [p.port, p.name]))
  const now = performance.now()
  const rows = new Map<string, FdbRow>()
  const add = (e: { vni: number; mac: string; port: number; isStatic: boolean; ageMs: number }, remote: number | null): void => {
    if (vni !== undefined && e.vni !== vni) return
    const key = `${e.vni}/${e.mac}`
    const had = rows.get(key)
    if (had !== undefined && had.ageMs <= e.ageMs) return
    rows.set(key, {
      vni: e.vni, mac: e.mac, port: e.port,
      type: e.isStatic ? 'static' : 'learned', ageMs: Math.round(e.ageMs),
      remote: remote === null ? null : ipv4Format(remote),
      pod: remote === null ? pods.get(e.port) ?? null : null,
    })
  }
  for (const e of dp.fdb.entries(now)) add(e, isPeerPort(e.port) ? dp.peers.addr[e.port - PEER_PORT_BASE] : null)
  for (const e of await agent.workerFdb()) add(e, e.remote)
  return [...rows.values()]
}

export function statsView(agent: Agent): Record<string, unknown> {
  const dp = agent.datapath
  // With workers, the sum over every datapath thread (datapath/counters.ts).
  const t = dp.totals()
  const drops: Record<string, number> = {}
  DROP_NAMES.forEach((n, i) => { drops[n] = t.drops[i] })
  const port = (id: number) => ({
    rxFrames: t.stats[id * 4 + STAT_RX_FRAMES], rxBytes: t.stats[id * 4 + STAT_RX_BYTES],
    txFrames: t.stats[id * 4 + STAT_TX_FRAMES], txBytes: t.stats[id * 4 + STAT_TX_BYTES],
  })
  const c = t.fdb
  const batches = t.misc[MISC_BATCHES]
  // Each thread's share of what was read: whether flows spread over the workers.
  const workers = [dp.counters, ...dp.workerCounters].map((w, i) => ({
    worker: i, batches: w.misc[MISC_BATCHES], frames: w.misc[MISC_BATCH_FRAMES],
    underlayRxFrames: w.stats[UNDERLAY_PORT * 4 + STAT_RX_FRAMES], connections: w.misc[MISC_CT_SIZE],
    captureLost: w.misc[MISC_CAPTURE_LOST],
  }))
  return {
    node: agent.config.node.name,
    // priorityRx*: what of rx came through the priority lane (overlay/steering.ts): datagrams, or a pod TAP's frames.
    underlay: { ...port(UNDERLAY_PORT), priorityRxFrames: t.priorityRx[0], priorityRxBytes: t.priorityRx[1] },
    pods: Object.fromEntries(agent.podStates().map((p) => {
      const q = dp.pod(p.port)?.prioRx
      return [p.name, { ...port(p.port), priorityRxFrames: q?.[0] ?? 0, priorityRxBytes: q?.[1] ?? 0 }]
    })),
    drops,
    fdb: {
      entries: dp.fdb.size, learned: c[FdbCounter.Learned], moved: c[FdbCounter.Moved], aged: c[FdbCounter.Aged],
      staticMoveRefused: c[FdbCounter.StaticMoveRefused],
      limitDrops: c[FdbCounter.LimitTable] + c[FdbCounter.LimitVni] + c[FdbCounter.LimitPort],
    },
    arp: { entries: dp.arp.size, answered: t.misc[MISC_ARP_ANSWERED] },
    services: {
      count: dp.services.list().length,
      drops: Object.fromEntries(SERVICE_DROP_NAMES.map((n, i) => [n, t.svcDrops[i]])),
      events: Object.fromEntries(SERVICE_STAT_NAMES.map((n, i) => [n, t.svcStats[i]])),
    },
    conntrack: Object.fromEntries(CT_COUNTER_NAMES.map((n, i) => [n, t.ct[i]])),
    batches,
    meanBatch: batches > 0 ? t.misc[MISC_BATCH_FRAMES] / batches : 0,
    workers,
    offloads: Object.fromEntries(OFFLOAD_NAMES.map((n, i) => [n, t.offloads[i]])),
  }
}

type PodState = ReturnType<Agent['podStates']>[number]

/** A pod as the API shows it: its config, its network's gateway and MTU, and its port when running. */
function podRow(agent: Agent, pod: PodState['cfg'], st?: PodState): Record<string, unknown> {
  const cfg = agent.config
  return {
    name: pod.name, network: pod.network, vni: pod.vni, netns: pod.netns, ifname: pod.ifname,
    ip: pod.ip, mac: pod.mac, gateway: cfg.networks[pod.networkIndex]?.gateway ?? null, mtu: cfg.node.podMtu,
    port: st?.port ?? null, tap: st?.tap ?? null, containerId: st?.containerId ?? null, source: st?.source ?? null,
  }
}

/** Reads a JSON request body (at most 4 MiB). */
function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let text = ''
    let tooLarge = false
    req.setEncoding('utf8')
    req.on('data', (c: string) => {
      if (tooLarge) return // the rest is read and discarded, so the 400 reaches the client
      text += c
      if (text.length > 4 << 20) {
        tooLarge = true
        text = ''
        reject(new TapestryError('TAPESTRY_API_TOO_LARGE', 'request body over 4 MiB'))
      }
    })
    req.on('end', () => {
      if (tooLarge) return
      if (text.trim() === '') return resolve({})
      try { resolve(JSON.parse(text)) } catch { reject(new TapestryError('TAPESTRY_API_BAD_REQUEST', 'the request body is not JSON')) }
    })
    req.on('error', reject)
  })
}

function sendError(send: (code: number, body: unknown) => void, err: unknown): void {
  if (err instanceof ConfigError) {
    return send(400, { error: { code: err.code, message: err.message, problems: err.problems } })
  }
  if (err instanceof TapestryError) {
    const code = err.code === 'TAPESTRY_API_NOT_FOUND' ? 404 : err.code.startsWith('TAPESTRY_API_') ? 400 : 500
    return send(code, { error: { code: err.code, message: err.message } })
  }
  send(500, { error: { code: 'TAPESTRY_API_INTERNAL', message: String((err as Error)?.message ?? err) } })
}

function str(body: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const v = body[key]
  if (v === undefined || v === null) {
    if (required) throw new ConfigError([{ path: key, message: 'is required' }])
    return undefined
  }
  if (typeof v !== 'string') throw new ConfigError([{ path: key, message: `${JSON.stringify(v)} is not a string` }])
  return v
}

/** How long close() waits for running captures to send their last bytes. */
const CAPTURE_FLUSH_TIMEOUT_MS = 5000

/** A request the API refuses, with its HTTP status. */
class ApiError extends TapestryError {
  constructor(readonly status: number, code: string, message: string) {
    super(code, message)
  }
}

export interface CaptureRequest {
  pod?: string
  vni?: number
  underlay?: boolean
  filter?: string
  count?: number
  durationS?: number
  snaplen?: number
  bufferBytes?: number
}

/** Checks a capture request and turns it into session options; throws ApiError. */
export function captureOptions(agent: Agent, body: unknown): CaptureOptions {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiError(400, 'TAPESTRY_CAPTURE_INVALID', 'the capture request must be a JSON object')
  }
  const r = body as Record<string, unknown>
  const known = ['pod', 'vni', 'underlay', 'filter', 'count', 'durationS', 'snaplen', 'bufferBytes']
  for (const k of Object.keys(r)) {
    if (!known.includes(k)) throw new ApiError(400, 'TAPESTRY_CAPTURE_INVALID', `unknown capture parameter ${k} (known: ${known.join(', ')})`)
  }
  const int = (k: string, min: number, max: number): number | undefined => {
    const v = r[k]
    if (v === undefined) return undefined
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new ApiError(400, 'TAPESTRY_CAPTURE_INVALID', `${k} must be an integer in ${min}..${max} (got ${JSON.stringify(v)})`)
    }
    return v
  }
  const chosen = ['pod', 'vni', 'underlay'].filter((k) => r[k] !== undefined && r[k] !== false)
  if (chosen.length !== 1) {
    throw new ApiError(400, 'TAPESTRY_CAPTURE_INVALID', `say where to capture with exactly one of pod, vni or underlay (got ${chosen.length === 0 ? 'none' : chosen.join(' and ')})`)
  }
  const opts: CaptureOptions = { points: 0 }
  if (r.pod !== undefined) {
    if (typeof r.pod !== 'string') throw new ApiError(400, 'TAPESTRY_CAPTURE_INVALID', 'pod must be a pod name')
    const pods = agent.podStates()
    const p = pods.find((x) => x.name === r.pod)
    if (!p) throw new ApiError(404, 'TAPESTRY_POD_UNKNOWN', `no pod ${r.pod} on this node (pods: ${pods.map((x) => x.name).join(', ') || 'none'})`)
    opts.points = POD_POINTS
    opts.port = p.port
  } else if (r.vni !== undefined) {
    const vni = int('vni', 1, 0xffffff) as number
    if (!agent.datapath.hasNetwork(vni)) {
      throw new ApiError(404, 'TAPESTRY_VNI_UNKNOWN', `no network with VNI ${vni} on this node (VNIs: ${agent.config.networks.map((n) => n.vni).join(', ') || 'none'})`)
    }
    // Every frame that enters the VNI's switch, once: sent by its local pods, or
    // received from the underlay (the inner frame, VXLAN removed).
    opts.points = pointBit(CapturePoint.PodRx) | pointBit(CapturePoint.UnderlayRx)
    opts.vni = vni
    opts.outerHeaders = false
  } else {
    if (r.underlay !== true) throw new ApiError(400, 'TAPESTRY_CAPTURE_INVALID', 'underlay must be true')
    opts.points = UNDERLAY_POINTS
    opts.outerHeaders = true
  }
  if (r.filter !== undefined) {
    if (typeof r.filter !== 'string') throw new ApiError(400, 'TAPESTRY_CAPTURE_INVALID', 'filter must be a string')
    try {
      opts.filter = compileFilter(r.filter)
    } catch (err) {
      if (err instanceof FilterError) throw new ApiError(400, err.code, err.message)
      throw err
    }
  }
  opts.count = int('count', 0, Number.MAX_SAFE_INTEGER)
  if (r.durationS !== undefined && (typeof r.durationS !== 'number' || !(r.durationS >= 0) || r.durationS > 7 * 86400)) {
    throw new ApiError(400, 'TAPESTRY_CAPTURE_INVALID', `durationS must be a number of seconds in 0..604800 (got ${JSON.stringify(r.durationS)})`)
  }
  opts.durationS = r.durationS as number | undefined
  opts.snaplen = int('snaplen', 64, PCAP_DEFAULT_SNAPLEN)
  opts.bufferBytes = int('bufferBytes', CAPTURE_MIN_BUFFER_BYTES, CAPTURE_MAX_BUFFER_BYTES)
  return opts
}

/** decodeURIComponent, with a malformed escape answered as a bad request. */
function decodePart(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    throw new TapestryError('TAPESTRY_API_BAD_REQUEST', `malformed percent-encoding in ${JSON.stringify(s.slice(0, 100))}`)
  }
}

export class ApiServer {
  private server: http.Server | null = null
  readonly captures: CaptureHub
  /** Running capture responses; each promise settles when its response is done or its client gone. */
  private readonly streams = new Set<Promise<void>>()
  /** Set by close(): no new capture starts. */
  private stopping = false

  constructor(readonly agent: Agent, readonly socketPath: string) {
    this.captures = new CaptureHub(agent, agent.config.node.underlayAddr)
  }

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

  /**
   * Ends every capture (each stream gets its last whole records and its end),
   * waits until they are sent (at most CAPTURE_FLUSH_TIMEOUT_MS), then closes.
   */
  async close(): Promise<void> {
    this.stopping = true
    this.captures.stopAll('shutdown')
    if (this.streams.size > 0) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        Promise.all(this.streams),
        new Promise<void>((r) => { timer = setTimeout(r, CAPTURE_FLUSH_TIMEOUT_MS) }),
      ])
      clearTimeout(timer)
    }
    const s = this.server
    this.server = null
    if (s) {
      s.closeIdleConnections()
      // A capture client that stopped reading must not hold the agent's stop up.
      if (this.streams.size > 0) s.closeAllConnections()
      await new Promise<void>((r) => s.close(() => r()))
    }
    try { fs.unlinkSync(this.socketPath) } catch { /* already gone */ }
  }

  private async handleWrite(method: string, url: URL, body: unknown, send: (code: number, body: unknown) => void): Promise<void> {
    const b = (body !== null && typeof body === 'object' ? body : {}) as Record<string, unknown>
    if (method === 'POST' && url.pathname === '/v1/pods') {
      const ps = b.portSecurity
      if (ps !== undefined && typeof ps !== 'boolean') throw new ConfigError([{ path: 'portSecurity', message: `${JSON.stringify(ps)} is not a boolean` }])
      const pod = await this.agent.addDynamicPod({
        name: str(b, 'name', true)!, netns: str(b, 'netns', true)!, ip: str(b, 'ip', false), network: str(b, 'network', false),
        mac: str(b, 'mac', false), ifname: str(b, 'ifname', false), containerId: str(b, 'containerId', false),
        portSecurity: ps as boolean | undefined,
      })
      return send(201, podRow(this.agent, pod, this.agent.podStates().find((p) => p.name === pod.name)))
    }
    const m = /^\/v1\/pods\/([^/]+)$/.exec(url.pathname)
    if (method === 'DELETE' && m) {
      return send(200, { deleted: await this.agent.delDynamicPod(decodePart(m[1])) })
    }
    if (method === 'POST' && url.pathname === '/v1/services') {
      const list = b.services
      if (!Array.isArray(list)) throw new ConfigError([{ path: 'services', message: 'is required (a list of services)' }])
      return send(200, this.agent.applyServices(list))
    }
    const sm = /^\/v1\/services\/([^/]+)\/([^/]+)$/.exec(url.pathname)
    if (method === 'DELETE' && sm) {
      return send(200, { deleted: this.agent.deleteService(decodePart(sm[2]), decodePart(sm[1])) })
    }
    if (method === 'POST' && url.pathname === '/v1/conntrack/flush') {
      return send(200, { flushed: await this.agent.flushConnections() })
    }
    if (method === 'POST' && url.pathname === '/v1/apply') {
      const cfg = b.config
      if (cfg === null || typeof cfg !== 'object') throw new ConfigError([{ path: 'config', message: 'is required (the whole config as an object)' }])
      return send(200, await this.agent.applyFile(cfg as Record<string, unknown>))
    }
    throw new TapestryError('TAPESTRY_API_NOT_FOUND', `no such endpoint: ${method} ${url.pathname}`)
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://agent')
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { code: 'TAPESTRY_API_BAD_REQUEST', message: `not a valid request target: ${String(req.url).slice(0, 200)}` } }))
      return
    }
    const send = (code: number, body: unknown): void => {
      if (res.headersSent) return
      res.writeHead(code, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    if (req.method === 'POST' && url.pathname === '/v1/capture') {
      readJson(req).then((body) => this.startCapture(body, res), (err) => this.fail(res, err))
      return
    }
    if (req.method === 'POST' || req.method === 'DELETE' || req.method === 'PUT') {
      readJson(req).then((body) => this.handleWrite(req.method!, url, body, send)).catch((err) => sendError(send, err))
      return
    }
    if (req.method === 'GET' && ['/v1/fdb', '/v1/conntrack', '/v1/stats', '/v1/services'].includes(url.pathname)) {
      // Read from every datapath thread (config workers), so answered asynchronously.
      this.listing(url).then((r) => send(r.code, r.body), (err) => sendError(send, err))
      return
    }
    try {
      if (req.method === 'GET' && url.pathname === '/v1/pods') {
        return send(200, this.agent.podStates().map((p) => podRow(this.agent, p.cfg, p)))
      }
      if (req.method === 'GET' && url.pathname === '/v1/peers') {
        // Health fields (state, rttMs, lastSeenMs, pathMtuOk, pathMtu, lossPct) come from the prober (control/peer-health.ts).
        const dp = this.agent.datapath
        const health = peerHealthOf(this.agent)
        return send(200, dp.peers.list().map((a) => ({
          address: ipv4Format(a), configured: dp.peers.configured[dp.peers.indexOf(a)] === 1,
          ...(health ? health.view(a) : UNKNOWN_VIEW),
        })))
      }
      send(404, { error: { code: 'TAPESTRY_API_NOT_FOUND', message: `no such endpoint: ${req.method} ${url.pathname}` } })
    } catch (err) {
      sendError(send, err)
    }
  }

  /** GET /v1/fdb, /v1/conntrack, /v1/stats and /v1/services: rows and counters of every datapath thread. */
  private async listing(url: URL): Promise<{ code: number; body: unknown }> {
    if (url.pathname === '/v1/services') return { code: 200, body: await this.agent.serviceList() }
    if (url.pathname === '/v1/stats') {
      await this.agent.syncCounters()
      return { code: 200, body: statsView(this.agent) }
    }
    if (url.pathname === '/v1/fdb') {
      const v = url.searchParams.get('vni')
      return { code: 200, body: await fdbRows(this.agent, v === null ? undefined : Number(v)) }
    }
    const dp = this.agent.datapath
    const want = url.searchParams.get('service')
    let id = -1
    if (want) {
      const [ns, name] = want.includes('/') ? want.split('/', 2) : ['default', want]
      id = dp.services.idOf(name, ns)
      if (id < 0) return { code: 404, body: { error: { code: 'TAPESTRY_API_NOT_FOUND', message: `no service ${ns}/${name}` } } }
    }
    const names = new Map(dp.services.list().map((sv) => [sv.id, `${sv.namespace}/${sv.name}`]))
    const rows = (await this.agent.connections()).filter((c) => id < 0 || c.serviceId === id)
      .map((c) => ({ ...c, service: names.get(c.serviceId) ?? null }))
    return { code: 200, body: rows }
  }

  /** A capture request refused before its stream started (ApiError carries its status). */
  private fail(res: http.ServerResponse, err: unknown): void {
    if (res.headersSent) { res.destroy(); return }
    if (!(err instanceof ApiError)) {
      sendError((code, body) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)) }, err)
      return
    }
    res.writeHead(err.status, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: { code: err.code, message: err.message } }))
  }

  /** Streams a capture as the response body (see the top of this file). */
  private startCapture(body: unknown, res: http.ServerResponse): void {
    if (this.stopping) return this.fail(res, new ApiError(503, 'TAPESTRY_API_STOPPING', 'the agent is stopping'))
    let opts: CaptureOptions
    try {
      opts = captureOptions(this.agent, body)
    } catch (err) {
      return this.fail(res, err)
    }
    const log = this.agent.log
    const what = body as CaptureRequest
    res.writeHead(200, {
      'content-type': 'application/vnd.tcpdump.pcap',
      'x-tapestry-vxlan-port': String(this.agent.config.node.vxlanPort),
      trailer: 'x-tapestry-captured, x-tapestry-dropped, x-tapestry-end',
    })
    let session: CaptureSession | null = null
    let settle = (): void => undefined
    const done = new Promise<void>((r) => { settle = r })
    this.streams.add(done)
    const ended = (reason: CaptureEnd): void => {
      const s = session
      log.info({ pod: what.pod, vni: what.vni, underlay: what.underlay, filter: what.filter, captured: s?.captured, dropped: s?.dropped, reason }, 'capture ended')
    }
    session = this.captures.start(opts, {
      write: (chunk) => res.write(chunk),
      end: (reason) => {
        res.addTrailers({ 'x-tapestry-captured': String(session?.captured ?? 0), 'x-tapestry-dropped': String(session?.dropped ?? 0), 'x-tapestry-end': reason })
        res.end()
        ended(reason)
      },
    })
    log.info({ pod: what.pod, vni: what.vni, underlay: what.underlay, filter: what.filter, count: what.count, durationS: what.durationS }, 'capture started')
    const s = session
    res.on('drain', () => s.resume())
    res.on('close', () => {
      // The client went away before the capture ended: stop copying frames.
      if (s.running) { s.abort(); ended('closed') }
      this.streams.delete(done)
      settle()
    })
  }
}

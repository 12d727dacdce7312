/**
 * Prometheus metrics (text exposition, prom-client) served over HTTP at
 * GET /metrics on the configured address (config `metrics.listen`, default
 * 127.0.0.1:9464; '' turns the endpoint off).
 *
 * Nothing here runs per packet: every value is read at scrape time, in
 * collect() callbacks, from the counters the datapath already keeps in typed
 * arrays (stats, drops, fdb.counters) and a few plain fields.
 *
 *   tapestry_frames_total{port,direction}   port = pod name | "underlay"; direction = rx | tx
 *   tapestry_bytes_total{port,direction}    as seen by the dataplane: rx = read from the port
 *                                           (a pod's rx is what the pod sent), tx = written to it
 *   tapestry_drops_total{reason}            every reason of datapath/drops.ts, zeros included
 *   tapestry_fdb_entries                    gauge; tapestry_fdb_max_entries its limit
 *   tapestry_fdb_learned_total, _moved_total, _aged_total, _static_move_refused_total
 *   tapestry_fdb_limit_drops_total{limit}   limit = table | vni | port
 *   tapestry_arp_entries, tapestry_arp_answered_total
 *   tapestry_batches_total, tapestry_batch_frames_total, tapestry_batch_size_mean
 *   tapestry_offload_total{kind}            kind = tso_frames | tso_segments | gso_runs | gso_run_datagrams |
 *                                           gro_tcp_merges | gro_tcp_segments | gro_udp_merges | gro_udp_datagrams
 *                                           mean batch size over an interval is
 *                                           rate(batch_frames) / rate(batches)
 *   tapestry_event_loop_delay_seconds{quantile}, _mean_seconds, _max_seconds
 *                                           perf_hooks.monitorEventLoopDelay over the
 *                                           time since the previous scrape (reset after each)
 *   tapestry_pods, tapestry_peers           gauges
 *   tapestry_peer_up{peer}                  1 up, 0 down (peer health probing; absent while unknown)
 *   tapestry_peer_rtt_seconds{peer}         RTT of the latest answered small probe
 *   tapestry_peer_path_mtu_ok{peer}         1: full-size VXLAN packets get through, 0: MTU black hole
 *   tapestry_peer_probe_loss_ratio{peer}    unanswered small probes over the loss window (0..1)
 *   tapestry_peer_mtu_blackhole_total       MTU black holes detected (and logged) since start
 */
import * as http from 'node:http'
import { monitorEventLoopDelay, IntervalHistogram } from 'node:perf_hooks'
import { Counter, Gauge, Registry } from 'prom-client'
import { TapestryError } from '../lib/errors'
import { Datapath, STAT_RX_BYTES, STAT_RX_FRAMES, STAT_TX_BYTES, STAT_TX_FRAMES, UNDERLAY_PORT } from '../datapath/datapath'
import { CT_COUNTER_NAMES } from '../service/conntrack'
import { SERVICE_DROP_NAMES, SERVICE_STAT_NAMES } from '../service/service-path'
import { DROP_NAMES, OFFLOAD_NAMES } from '../datapath/drops'
import { DatapathCounters, MISC_ARP_ANSWERED, MISC_BATCHES, MISC_BATCH_FRAMES, MISC_CT_SIZE } from '../datapath/counters'
import { FdbCounter } from '../switch/fdb'
import { parseListen } from './listen-address'

export const METRICS_DEFAULT_LISTEN = '127.0.0.1:9464'
export const METRICS_PATH = '/metrics'

/** Peer health as metrics read it (control/peer-health.ts's PeerHealth.reading() fits). */
export interface PeerHealthReading {
  peers: { address: string; state: string; rttMs: number | null; pathMtuOk: boolean | null; lossPct: number | null }[]
  blackholes: number
}

/** What metrics read: the datapath and the names of its pod ports (the Agent fits), and peer health when probed. */
export interface MetricsSource {
  readonly datapath: Datapath
  podStates(): { name: string; port: number }[]
  peerHealth?(): PeerHealthReading | null
  /** The services with every datapath thread's picks summed (with workers); absent: the datapath's own table. */
  services?(): Promise<ReturnType<Datapath['services']['list']>>
}

export interface AgentMetrics {
  readonly registry: Registry
  /** Stops the event-loop delay monitor. */
  close(): void
}

/** Builds the registry; values are read from `src` at each scrape. */
export function createAgentMetrics(src: MetricsSource): AgentMetrics {
  const registry = new Registry()
  const reg = [registry]
  const dp = (): Datapath => src.datapath
  // Counters summed over every datapath thread (config workers; datapath/counters.ts).
  const tot = (): DatapathCounters => src.datapath.totals()
  const ports = (): { name: string; port: number }[] =>
    [{ name: 'underlay', port: UNDERLAY_PORT }, ...src.podStates().map((p) => ({ name: p.name, port: p.port }))]

  const perPort = (name: string, help: string, rx: number, tx: number): void => {
    new Counter({
      name, help, labelNames: ['port', 'direction'], registers: reg,
      collect() {
        this.reset()
        const s = tot().stats
        for (const p of ports()) {
          this.inc({ port: p.name, direction: 'rx' }, s[p.port * 4 + rx])
          this.inc({ port: p.name, direction: 'tx' }, s[p.port * 4 + tx])
        }
      },
    })
  }
  perPort('tapestry_frames_total', 'Frames per port and direction (rx = read from the port, tx = written to it).', STAT_RX_FRAMES, STAT_TX_FRAMES)
  perPort('tapestry_bytes_total', 'Bytes per port and direction (pod ports count the virtio-net header).', STAT_RX_BYTES, STAT_TX_BYTES)

  /** One counter family over a named counter array of the summed counters, the names as `label`'s values. */
  const named = (name: string, help: string, label: string, names: readonly string[], values: (t: DatapathCounters) => Float64Array): void => {
    new Counter({
      name, help, labelNames: [label], registers: reg,
      collect() {
        this.reset()
        const v = values(tot())
        names.forEach((n, i) => this.inc({ [label]: n }, v[i]))
      },
    })
  }
  named('tapestry_drops_total', 'Frames dropped by the dataplane, by reason.', 'reason', DROP_NAMES, (t) => t.drops)

  // Services: connections tracked, conntrack events, service-path drops, picks per endpoint.
  new Gauge({ name: 'tapestry_conntrack_connections', help: 'Connections in the service connection tracking table.', registers: reg, collect() { this.set(tot().misc[MISC_CT_SIZE]) } })
  named('tapestry_conntrack_events_total', 'Connection tracking events (created, expired, evicted, full, ...).', 'event', CT_COUNTER_NAMES, (t) => t.ct)
  named('tapestry_service_drops_total', 'Frames to service VIPs dropped by the service path, by reason.', 'reason', SERVICE_DROP_NAMES, (t) => t.svcDrops)
  named('tapestry_service_events_total',
    'What the service path did: connections made, picked up mid-stream, hairpin; packets forwarded and reversed; RST/port unreachable answers; ICMP errors translated and handed to another worker; ...',
    'event', SERVICE_STAT_NAMES, (t) => t.svcStats)
  new Counter({
    name: 'tapestry_service_endpoint_picks_total', help: 'New connections balanced to each endpoint.', labelNames: ['service', 'endpoint'], registers: reg,
    async collect() {
      this.reset()
      const list = src.services !== undefined ? await src.services() : dp().services.list()
      for (const sv of list) for (const e of sv.endpoints) this.inc({ service: `${sv.namespace}/${sv.name}`, endpoint: e.ip }, e.picked)
    },
  })

  const fdbCounter = (name: string, help: string, c: FdbCounter): void => {
    new Counter({ name, help, registers: reg, collect() { this.reset(); this.inc(tot().fdb[c]) } })
  }
  fdbCounter('tapestry_fdb_learned_total', 'MAC addresses learned.', FdbCounter.Learned)
  fdbCounter('tapestry_fdb_moved_total', 'Learned MAC addresses that moved to another port.', FdbCounter.Moved)
  fdbCounter('tapestry_fdb_aged_total', 'Learned MAC addresses removed after expiry.', FdbCounter.Aged)
  fdbCounter('tapestry_fdb_static_move_refused_total', 'Moves of static entries refused.', FdbCounter.StaticMoveRefused)
  new Counter({
    name: 'tapestry_fdb_limit_drops_total', help: 'MAC addresses not learned because a limit was reached.', labelNames: ['limit'], registers: reg,
    collect() {
      this.reset()
      const c = tot().fdb
      this.inc({ limit: 'table' }, c[FdbCounter.LimitTable])
      this.inc({ limit: 'vni' }, c[FdbCounter.LimitVni])
      this.inc({ limit: 'port' }, c[FdbCounter.LimitPort])
    },
  })
  new Gauge({ name: 'tapestry_fdb_entries', help: 'Entries in the forwarding database (static and learned).', registers: reg, collect() { this.set(dp().fdb.size) } })
  new Gauge({ name: 'tapestry_fdb_max_entries', help: 'Limit on FDB entries (fdb.maxEntries).', registers: reg, collect() { this.set(dp().fdb.maxEntries) } })
  new Gauge({ name: 'tapestry_arp_entries', help: 'Entries in the ARP suppression table.', registers: reg, collect() { this.set(dp().arp.size) } })
  new Counter({ name: 'tapestry_arp_answered_total', help: 'ARP requests the agent answered itself (gateway or suppression).', registers: reg,
    collect() { this.reset(); this.inc(tot().misc[MISC_ARP_ANSWERED]) } })
  new Counter({ name: 'tapestry_batches_total', help: 'Batches processed (pod and underlay reads).', registers: reg,
    collect() { this.reset(); this.inc(tot().misc[MISC_BATCHES]) } })
  new Counter({ name: 'tapestry_batch_frames_total', help: 'Frames in those batches.', registers: reg,
    collect() { this.reset(); this.inc(tot().misc[MISC_BATCH_FRAMES]) } })
  named('tapestry_offload_total', 'What the offloads did: super-frames segmented and their segments, GSO runs sent and their datagrams, GRO merges written to pods and what they hold.',
    'kind', OFFLOAD_NAMES, (t) => t.offloads)
  const laneCounter = (name: string, help: string, k: number): void => {
    new Counter({
      name, help, labelNames: ['port'], registers: reg,
      collect() {
        this.reset()
        const d = dp()
        this.inc({ port: 'underlay' }, tot().priorityRx[k])
        for (const p of src.podStates()) this.inc({ port: p.name }, d.pod(p.port)?.prioRx[k] ?? 0)
      },
    })
  }
  laneCounter('tapestry_priority_lane_frames_total', 'Frames read through the priority lane (ARP, ICMP, ICMPv6 ahead of bulk traffic; priorityLane): VXLAN datagrams on the underlay, frames from a pod TAP\'s second queue.', 0)
  laneCounter('tapestry_priority_lane_bytes_total', 'Bytes of those frames.', 1)
  new Gauge({ name: 'tapestry_batch_size_mean', help: 'Mean frames per batch since the agent started.', registers: reg,
    collect() { const m = tot().misc; this.set(m[MISC_BATCHES] > 0 ? m[MISC_BATCH_FRAMES] / m[MISC_BATCHES] : 0) } })
  new Gauge({ name: 'tapestry_pods', help: 'Pods attached to this agent.', registers: reg, collect() { this.set(src.podStates().length) } })
  new Gauge({ name: 'tapestry_peers', help: 'Remote VTEPs known.', registers: reg, collect() { this.set(dp().peers.size) } })

  // Peer health: read at scrape time from the prober's state (nothing per packet).
  const health = (): PeerHealthReading['peers'] => src.peerHealth?.()?.peers ?? []
  const perPeer = (name: string, help: string, value: (p: PeerHealthReading['peers'][number]) => number | null): void => {
    new Gauge({
      name, help, labelNames: ['peer'], registers: reg,
      collect() {
        this.reset()
        for (const p of health()) {
          const v = value(p)
          if (v !== null) this.set({ peer: p.address }, v)
        }
      },
    })
  }
  perPeer('tapestry_peer_up', 'Whether the peer answers ICMP echo on its underlay address (1 up, 0 down).',
    (p) => (p.state === 'up' ? 1 : p.state === 'down' ? 0 : null))
  perPeer('tapestry_peer_rtt_seconds', 'RTT of the latest answered small probe to the peer.', (p) => (p.rttMs === null ? null : p.rttMs / 1000))
  perPeer('tapestry_peer_path_mtu_ok', 'Whether full-size VXLAN packets (node.podMtu + 50 bytes, DF) reach the peer (0: MTU black hole).',
    (p) => (p.pathMtuOk === null ? null : p.pathMtuOk ? 1 : 0))
  perPeer('tapestry_peer_probe_loss_ratio', 'Share of unanswered small probes to the peer over the loss window.', (p) => (p.lossPct === null ? null : p.lossPct / 100))
  new Counter({ name: 'tapestry_peer_mtu_blackhole_total', help: 'MTU black holes toward peers detected since the agent started.', registers: reg,
    collect() { this.reset(); this.inc(src.peerHealth?.()?.blackholes ?? 0) } })

  const loop: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  const ns = (v: number): number => (Number.isFinite(v) ? v / 1e9 : 0)
  // Quantiles, mean and max are read together, then the histogram restarts for the next interval.
  let snapshot = { p50: 0, p90: 0, p99: 0, mean: 0, max: 0 }
  new Gauge({
    name: 'tapestry_event_loop_delay_seconds', help: 'Event-loop delay quantiles since the previous scrape.', labelNames: ['quantile'], registers: reg,
    collect() {
      snapshot = loop.count > 0
        ? { p50: ns(loop.percentile(50)), p90: ns(loop.percentile(90)), p99: ns(loop.percentile(99)), mean: ns(loop.mean), max: ns(loop.max) }
        : { p50: 0, p90: 0, p99: 0, mean: 0, max: 0 }
      loop.reset()
      this.set({ quantile: '0.5' }, snapshot.p50)
      this.set({ quantile: '0.9' }, snapshot.p90)
      this.set({ quantile: '0.99' }, snapshot.p99)
    },
  })
  // Registered after the quantiles, so they read the snapshot of the same scrape.
  new Gauge({ name: 'tapestry_event_loop_delay_mean_seconds', help: 'Mean event-loop delay since the previous scrape.', registers: reg, collect() { this.set(snapshot.mean) } })
  new Gauge({ name: 'tapestry_event_loop_delay_max_seconds', help: 'Largest event-loop delay since the previous scrape.', registers: reg, collect() { this.set(snapshot.max) } })

  return { registry, close: () => loop.disable() }
}

/** The HTTP server of GET /metrics. */
export class MetricsServer {
  private constructor(private readonly server: http.Server, private readonly metrics: AgentMetrics, readonly address: string) {}

  /** Listens on `listen` ("HOST:PORT"); throws a TapestryError naming the address when it cannot. */
  static async start(listen: string, src: MetricsSource): Promise<MetricsServer> {
    const where = parseListen(listen)
    if (!where) throw new TapestryError('TAPESTRY_METRICS_LISTEN', `metrics.listen ${JSON.stringify(listen)} is not HOST:PORT (as ${METRICS_DEFAULT_LISTEN})`)
    const metrics = createAgentMetrics(src)
    const server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' })
        res.end('only GET\n')
        return
      }
      if (path !== METRICS_PATH) {
        res.writeHead(404, { 'content-type': 'text/plain' })
        res.end(`Tapestry agent metrics are at ${METRICS_PATH}\n`)
        return
      }
      metrics.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType })
        res.end(req.method === 'HEAD' ? undefined : text)
      }, (err: Error) => {
        res.writeHead(500, { 'content-type': 'text/plain' })
        res.end(`collecting metrics failed: ${err.message}\n`)
      })
    })
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(where.port, where.host, () => { server.off('error', reject); resolve() })
      })
    } catch (err) {
      metrics.close()
      const e = err as NodeJS.ErrnoException
      const why = e.code === 'EADDRINUSE' ? 'the address is in use (another agent in this network namespace?)'
        : e.code === 'EADDRNOTAVAIL' ? 'no interface here has that address'
          : e.code === 'EACCES' ? 'permission denied' : e.message
      throw new TapestryError('TAPESTRY_METRICS_LISTEN', `cannot serve metrics on ${listen}: ${why}; set metrics.listen to another HOST:PORT, or '' to turn metrics off`, { cause: err })
    }
    return new MetricsServer(server, metrics, listen)
  }

  async close(): Promise<void> {
    this.metrics.close()
    this.server.closeAllConnections()
    await new Promise<void>((r) => this.server.close(() => r()))
  }
}

/**
 * Peer health: every `health.intervalSeconds` the agent sends each peer VTEP
 * two ICMP echo requests to its underlay address (control/icmp-probe.ts),
 * both with Don't Fragment set:
 *
 *   - a small one (SMALL_PROBE_SIZE bytes): is the peer up, and its RTT;
 *   - a full-size one: an IP packet exactly as large as the VXLAN datagram
 *     that carries a pod frame of node.podMtu bytes (podMtu + 50: outer IPv4
 *     20 + UDP 8 + VXLAN 8 + inner Ethernet 14). If small ones get through
 *     and this one does not, pod packets near the pod MTU are lost while
 *     small ones pass: an MTU black hole, the classic overlay failure.
 *
 * The peer's kernel answers, so this works toward any VTEP, a kernel VXLAN
 * host included. Nothing runs on the datapath: a few packets per peer and
 * interval on a socket of their own.
 *
 * What is reported per peer (GET /v1/peers, `tapestry peers`, metrics):
 *   state      'up' | 'down' | 'unknown' (not probed yet, or probing off).
 *              Down after `downAfter` rounds in a row without any answer;
 *              up at the first answer.
 *   rttMs      RTT of the latest answered small probe (null while down); it
 *              is measured in the agent, so it includes its event-loop delay.
 *   lastSeenMs how long ago the peer last answered (null: never).
 *   pathMtuOk  true: the full-size probe got through; false: it did not while
 *              the peer answered small ones (`downAfter` rounds in a row, or
 *              at once when refused here or by ICMP "fragmentation needed");
 *              null: not known yet, or the peer is down.
 *   pathMtu    when pathMtuOk is false: the largest probe that got through,
 *              found by a search after the black hole is detected.
 *   lossPct    share of the small probes of the latest `lossWindow` rounds
 *              left unanswered.
 *
 * Down and up transitions are logged once each; a black hole is logged once
 * (with what to change: node.podMtu or the underlay MTU) until the full-size
 * probe gets through again, which is logged too.
 *
 * The state machine (PeerTracker), the loss window and the messages are pure;
 * PeerHealth schedules rounds and follows the agent's peers.
 */
import type { Agent } from '../agent'
import type { Logger } from '../observe/log'
import { ipv4Format } from '../wire/addr'
import type { HealthConfig } from './config'
import { IPV4_MTU_MIN, VXLAN_OVERHEAD_LEN } from './config-schema'
import { EchoTransport, ProbeResult, RawIcmpTransport } from './icmp-probe'

/** IP bytes of the small probe: as `ping`'s default (20 + 8 + 56). */
export const SMALL_PROBE_SIZE = 84

/** The IP packet size of the VXLAN datagram that carries a pod frame of `podMtu` bytes. */
export function fullProbeSize(podMtu: number): number {
  return podMtu + VXLAN_OVERHEAD_LEN
}

// ---- Loss window

/** Whether each of the latest `size` probes was lost, as a ring. */
export class LossWindow {
  private bits: Uint8Array
  private n = 0
  private at = 0
  private lost = 0

  constructor(size: number) {
    this.bits = new Uint8Array(Math.max(1, size))
  }

  get size(): number {
    return this.bits.length
  }

  /** Probes recorded (at most size). */
  get count(): number {
    return this.n
  }

  push(lost: boolean): void {
    if (this.n === this.bits.length) this.lost -= this.bits[this.at]
    else this.n++
    this.bits[this.at] = lost ? 1 : 0
    if (lost) this.lost++
    this.at = (this.at + 1) % this.bits.length
  }

  /** Percent lost over the recorded probes, one decimal; null before the first. */
  get lossPct(): number | null {
    return this.n === 0 ? null : Math.round((1000 * this.lost) / this.n) / 10
  }

  /** Changes the size, keeping the newest entries that fit. */
  resize(size: number): void {
    size = Math.max(1, size)
    if (size === this.bits.length) return
    const newest: number[] = []
    for (let k = 1; k <= this.n; k++) newest.push(this.bits[(this.at - k + this.bits.length * 2) % this.bits.length])
    this.bits = new Uint8Array(size)
    this.n = 0
    this.at = 0
    this.lost = 0
    for (const b of newest.slice(0, size).reverse()) this.push(b === 1)
  }

  clear(): void {
    this.bits.fill(0)
    this.n = 0
    this.at = 0
    this.lost = 0
  }
}

// ---- State machine

export type PeerState = 'unknown' | 'up' | 'down'

/** How a full-size probe failed: refused by this host, ICMP fragmentation needed, or no answer. */
export type MtuFailure = 'refused-here' | 'frag-needed' | 'no-answer'

export type HealthEvent =
  | { type: 'down'; reason: string; missed: number }
  | { type: 'up'; downForMs: number | null }
  | { type: 'mtu-blackhole'; how: MtuFailure; hintMtu: number | null; from: string | null }
  | { type: 'mtu-recovered' }

/** The two probes of one round to one peer. */
export interface RoundResult {
  small: ProbeResult
  large: ProbeResult
}

export interface PeerHealthView {
  state: PeerState
  rttMs: number | null
  lastSeenMs: number | null
  pathMtuOk: boolean | null
  pathMtu: number | null
  lossPct: number | null
}

export const UNKNOWN_VIEW: Readonly<PeerHealthView> = Object.freeze({
  state: 'unknown', rttMs: null, lastSeenMs: null, pathMtuOk: null, pathMtu: null, lossPct: null,
})

/** A failed probe in words. */
export function describeFailure(r: ProbeResult): string {
  if (r.ok) return 'answered'
  switch (r.why) {
    case 'timeout': return 'no echo reply'
    case 'unreachable': return r.detail
    case 'too-big': return r.from === null ? 'refused here: too big for an interface MTU' : `ICMP fragmentation needed from ${r.from}${r.mtu !== null ? ` (next-hop MTU ${r.mtu})` : ''}`
    case 'aborted': return 'aborted'
  }
}

/** One peer's health, from the results of its probe rounds. */
export class PeerTracker {
  state: PeerState = 'unknown'
  rttMs: number | null = null
  lastSeenAt: number | null = null
  pathMtuOk: boolean | null = null
  /** Largest size that got through while the full size did not (set by the prober's search). */
  pathMtu: number | null = null
  /** A black hole was detected and the full-size probe has not got through since. */
  blackhole = false
  /** That black hole was logged: its recovery will be too. */
  announced = false
  /** Rounds in a row without any answer. */
  missed = 0
  /** Rounds in a row in which the peer answered but the full-size probe did not get through. */
  largeFails = 0
  downSince: number | null = null
  readonly loss: LossWindow

  constructor(lossWindow: number) {
    this.loss = new LossWindow(lossWindow)
  }

  /** Takes one round's results; returns the transitions it caused (each happens once). */
  record(r: RoundResult, now: number, downAfter: number): HealthEvent[] {
    const { small, large } = r
    if ((!small.ok && small.why === 'aborted') || (!large.ok && large.why === 'aborted')) return []
    const events: HealthEvent[] = []
    const answered = small.ok || large.ok
    this.loss.push(!small.ok)
    if (answered) {
      this.lastSeenAt = now
      if (small.ok) this.rttMs = round3(small.rttMs)
      this.missed = 0
      if (this.state !== 'up') {
        events.push({ type: 'up', downForMs: this.downSince === null ? null : now - this.downSince })
        this.state = 'up'
        this.downSince = null
      }
    } else {
      this.missed++
      if (this.missed >= downAfter && this.state !== 'down') {
        this.state = 'down'
        this.downSince = now
        events.push({ type: 'down', reason: `${this.missed} probe round${this.missed === 1 ? '' : 's'} in a row without an answer (${describeFailure(small)})`, missed: this.missed })
      }
    }

    if (large.ok) {
      this.largeFails = 0
      this.pathMtuOk = true
      this.pathMtu = null
      if (this.blackhole) {
        this.blackhole = false
        if (this.announced) events.push({ type: 'mtu-recovered' })
        this.announced = false
      }
    } else if (large.why === 'too-big') {
      // Refused here, or a router said so: no need to wait for more rounds.
      this.largeFails = Math.max(this.largeFails + 1, downAfter)
      this.markBlackhole(events, large.from === null ? 'refused-here' : 'frag-needed', large.mtu, large.from)
    } else if (answered) {
      this.largeFails++
      if (this.largeFails >= downAfter) this.markBlackhole(events, 'no-answer', null, null)
    }
    return events
  }

  private markBlackhole(events: HealthEvent[], how: MtuFailure, hintMtu: number | null, from: string | null): void {
    this.pathMtuOk = false
    if (this.blackhole) return
    this.blackhole = true
    events.push({ type: 'mtu-blackhole', how, hintMtu, from })
  }

  view(now: number): PeerHealthView {
    const down = this.state === 'down'
    return {
      state: this.state,
      rttMs: down ? null : this.rttMs,
      lastSeenMs: this.lastSeenAt === null ? null : Math.max(0, Math.round(now - this.lastSeenAt)),
      pathMtuOk: down ? null : this.pathMtuOk,
      pathMtu: this.pathMtuOk === false ? this.pathMtu : null,
      lossPct: this.loss.lossPct,
    }
  }
}

function round3(v: number): number {
  return Math.round(v * 1000) / 1000
}

// ---- Messages

export interface BlackholeInfo {
  /** This node's underlay address and the peer's. */
  local: string
  peer: string
  /** Size of the full-size probe (podMtu + 50). */
  probeBytes: number
  podMtu: number
  how: MtuFailure
  /** The router that sent "fragmentation needed", and its next-hop MTU. */
  from: string | null
  hintMtu: number | null
  /** Largest probe that got through (search), or null when not found. */
  pathMtu: number | null
}

/** The pod MTU that fits a path MTU, or null when none can. */
export function podMtuFor(pathMtu: number | null): number | null {
  if (pathMtu === null) return null
  const m = pathMtu - VXLAN_OVERHEAD_LEN
  return m >= IPV4_MTU_MIN ? m : null
}

/** The one-time log message of a black hole: what happens and what to change. */
export function blackholeMessage(i: BlackholeInfo): string {
  const what = i.how === 'refused-here'
    ? `this host refuses to send them because an interface MTU here is below ${i.probeBytes}`
    : i.how === 'frag-needed'
      ? `${i.from ?? 'a router'} answered "fragmentation needed"${i.hintMtu !== null ? ` with next-hop MTU ${i.hintMtu}` : ''}`
      : 'they get no answer while small probes do'
  const largest = i.pathMtu !== null ? `; the largest that got through: ${i.pathMtu} bytes` : ''
  const pod = podMtuFor(i.pathMtu)
  const lower = pod !== null
    ? `lower the pod MTU (node.podMtu, now ${i.podMtu}) to ${pod} or less`
    : `lower the pod MTU (node.podMtu, now ${i.podMtu}) to the path MTU minus ${VXLAN_OVERHEAD_LEN}`
  return `MTU black hole toward peer ${i.peer}: full-size VXLAN packets (${i.probeBytes}-byte IP packets, Don't Fragment set) ` +
    `do not get through (${what}${largest}), so pod packets near the pod MTU are lost while small ones pass. ` +
    `Fix: ${lower}, or raise the MTU of every underlay link between ${i.local} and ${i.peer} to at least ${i.probeBytes}`
}

export function recoveredMessage(peer: string, probeBytes: number): string {
  return `path to peer ${peer} carries full-size VXLAN packets (${probeBytes} bytes) again`
}

export function downMessage(peer: string, reason: string): string {
  return `peer ${peer} is down: ${reason}`
}

export function upMessage(peer: string, downForMs: number | null): string {
  return downForMs === null ? `peer ${peer} is up` : `peer ${peer} is up again after ${(downForMs / 1000).toFixed(1)} s down`
}

// ---- The prober

export interface PeerHealthOptions {
  log: Logger
  /** Read at every round, so a reload applies (the agent's config fits). */
  config: () => { health: HealthConfig; node: { podMtu: number; underlayIP: string } }
  /** The peers to probe, read at every round: configured, cluster and learned ones. */
  peers: () => number[]
  /** Opens the transport (default: the raw ICMP socket); throws when it cannot. */
  openTransport?: (onError: (err: Error) => void) => EchoTransport
  now?: () => number
  /** No timer: rounds run only when round() is called (tests). */
  manual?: boolean
}

interface Tracked {
  addr: number
  text: string
  tracker: PeerTracker
  inFlight: boolean
  searching: boolean
  removed: boolean
}

/** How often the prober looks at the config while probing is off (a reload may turn it on). */
const OFF_RECHECK_MS = 1000

export class PeerHealth {
  private readonly peers = new Map<number, Tracked>()
  private transport: EchoTransport | null = null
  private timer: NodeJS.Timeout | null = null
  private running = false
  private readonly stopHooks: (() => void)[] = []
  private readonly now: () => number
  /** Why probing cannot run (logged once), or null. */
  unavailable: string | null = null
  /** Black holes detected and logged since start. */
  blackholes = 0

  constructor(private readonly opts: PeerHealthOptions) {
    this.now = opts.now ?? (() => performance.now())
  }

  get enabled(): boolean {
    return this.running && this.opts.config().health.intervalSeconds > 0
  }

  /** Starts probing (a first round at once). Never throws: a missing raw socket is logged and probing stays off. */
  start(): void {
    if (this.running) return
    this.running = true
    if (!this.opts.manual) this.schedule(0)
  }

  /** Runs `fn` at stop(). */
  onStop(fn: () => void): void {
    this.stopHooks.push(fn)
  }

  stop(): void {
    for (const fn of this.stopHooks.splice(0)) fn()
    this.running = false
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.transport?.close()
    this.transport = null
    for (const t of this.peers.values()) t.removed = true
    this.peers.clear()
  }

  /** A peer was added: probe it now rather than at the next round. */
  peerAdded(addr: number): void {
    if (!this.enabled || !this.ensureTransport()) return
    const t = this.track(addr >>> 0)
    this.probe(t)
  }

  peerRemoved(addr: number): void {
    const t = this.peers.get(addr >>> 0)
    if (!t) return
    t.removed = true
    this.peers.delete(addr >>> 0)
  }

  /** The health of one peer (UNKNOWN_VIEW when not probed). */
  view(addr: number): PeerHealthView {
    const t = this.peers.get(addr >>> 0)
    return t ? t.tracker.view(this.now()) : { ...UNKNOWN_VIEW }
  }

  /** Every probed peer, for metrics. */
  reading(): { peers: (PeerHealthView & { address: string })[]; blackholes: number } {
    const now = this.now()
    return { peers: [...this.peers.values()].map((t) => ({ address: t.text, ...t.tracker.view(now) })), blackholes: this.blackholes }
  }

  /** One round: both probes to every peer whose previous round has ended. The timer calls it; tests may too. */
  round(): void {
    if (!this.ensureTransport()) return
    const want = new Set(this.opts.peers().map((a) => a >>> 0))
    for (const [addr, t] of this.peers) if (!want.has(addr)) { t.removed = true; this.peers.delete(addr) }
    for (const addr of want) this.probe(this.track(addr))
  }

  private schedule(ms: number): void {
    if (!this.running) return
    this.timer = setTimeout(() => this.tick(), ms)
    this.timer.unref()
  }

  private tick(): void {
    this.timer = null
    if (!this.running) return
    const h = this.opts.config().health
    if (h.intervalSeconds <= 0) {
      if (this.transport || this.peers.size > 0) {
        this.transport?.close()
        this.transport = null
        for (const t of this.peers.values()) t.removed = true
        this.peers.clear()
        this.opts.log.info('peer health probing off (health.intervalSeconds: 0)')
      }
      this.schedule(OFF_RECHECK_MS)
      return
    }
    this.round()
    this.schedule(h.intervalSeconds * 1000)
  }

  /** Opens the transport when there is none (or it died); false when it cannot be (logged once per reason). */
  private ensureTransport(): boolean {
    if (this.transport?.open) return true
    this.transport = null
    const open = this.opts.openTransport ?? ((onError) => new RawIcmpTransport(onError))
    try {
      this.transport = open((err) => this.opts.log.warn({ reason: err.message }, 'peer health: ICMP socket error'))
    } catch (err) {
      const why = (err as Error).message
      if (this.unavailable !== why) {
        this.unavailable = why
        this.opts.log.warn({ reason: why }, `peer health probing unavailable: ${why}; peers are reported with state unknown`)
      }
      return false
    }
    this.unavailable = null
    const { health, node } = this.opts.config()
    const df = (this.transport as { pmtuMode?: string }).pmtuMode
    this.opts.log.info({ intervalSeconds: health.intervalSeconds, timeoutMs: health.timeoutMs, probeBytes: [SMALL_PROBE_SIZE, fullProbeSize(node.podMtu)], df }, 'peer health probing on')
    return true
  }

  private track(addr: number): Tracked {
    const lossWindow = this.opts.config().health.lossWindow
    let t = this.peers.get(addr)
    if (!t) {
      t = { addr, text: ipv4Format(addr), tracker: new PeerTracker(lossWindow), inFlight: false, searching: false, removed: false }
      this.peers.set(addr, t)
    } else {
      t.tracker.loss.resize(lossWindow)
    }
    return t
  }

  private probe(t: Tracked): void {
    const tr = this.transport
    if (t.inFlight || !tr) return
    const { health, node } = this.opts.config()
    t.inFlight = true
    let small: ProbeResult | null = null
    let large: ProbeResult | null = null
    const end = (): void => {
      if (small === null || large === null) return
      t.inFlight = false
      if (t.removed || !this.running) return
      this.handle(t, t.tracker.record({ small, large }, this.now(), health.downAfter))
    }
    tr.send(t.addr, SMALL_PROBE_SIZE, health.timeoutMs, (r) => { small = r; end() })
    tr.send(t.addr, fullProbeSize(node.podMtu), health.timeoutMs, (r) => { large = r; end() })
  }

  private handle(t: Tracked, events: HealthEvent[]): void {
    const log = this.opts.log
    for (const ev of events) {
      if (ev.type === 'down') log.warn({ peer: t.text, reason: ev.reason, lossPct: t.tracker.loss.lossPct }, downMessage(t.text, ev.reason))
      else if (ev.type === 'up') log.info({ peer: t.text, downForMs: ev.downForMs === null ? null : Math.round(ev.downForMs), rttMs: t.tracker.rttMs }, upMessage(t.text, ev.downForMs))
      else if (ev.type === 'mtu-recovered') log.info({ peer: t.text, probeBytes: fullProbeSize(this.opts.config().node.podMtu) }, recoveredMessage(t.text, fullProbeSize(this.opts.config().node.podMtu)))
      else this.announceBlackhole(t, ev)
    }
  }

  /** Looks for the largest size that gets through, then logs the black hole once. */
  private announceBlackhole(t: Tracked, ev: Extract<HealthEvent, { type: 'mtu-blackhole' }>): void {
    if (t.searching) return
    t.searching = true
    this.searchPathMtu(t, ev.hintMtu).then((found) => {
      t.searching = false
      const tr = t.tracker
      if (t.removed || !this.running || !tr.blackhole || tr.announced) return
      // A peer that went down during the search makes its result meaningless.
      tr.pathMtu = tr.state === 'down' ? null : found
      tr.announced = true
      this.blackholes++
      const { node } = this.opts.config()
      const info: BlackholeInfo = {
        local: node.underlayIP, peer: t.text, probeBytes: fullProbeSize(node.podMtu), podMtu: node.podMtu,
        how: ev.how, from: ev.from, hintMtu: ev.hintMtu, pathMtu: tr.pathMtu,
      }
      this.opts.log.warn({
        peer: t.text, probeBytes: info.probeBytes, how: ev.how, pathMtu: tr.pathMtu, podMtu: node.podMtu,
        suggestedPodMtu: podMtuFor(tr.pathMtu), underlayMtuNeeded: info.probeBytes,
      }, blackholeMessage(info))
    }, (err: unknown) => {
      t.searching = false
      this.opts.log.warn({ peer: t.text, reason: String(err) }, 'peer health: path MTU search failed')
    })
  }

  /**
   * Binary search for the largest probe size that gets through, between the
   * small size (got through) and the full size (did not); a timed-out probe
   * is tried twice. Null when the search was cut short.
   */
  private async searchPathMtu(t: Tracked, hint: number | null): Promise<number | null> {
    const { health, node } = this.opts.config()
    let lo = SMALL_PROBE_SIZE
    let hi = fullProbeSize(node.podMtu)
    const tryAt = async (size: number): Promise<ProbeResult> => {
      const r = await this.probeOnce(t.addr, size, health.timeoutMs)
      return !r.ok && r.why === 'timeout' ? this.probeOnce(t.addr, size, health.timeoutMs) : r
    }
    if (hint !== null && hint > lo && hint < hi) {
      // The router's next-hop MTU: if it gets through, it is the answer (one more byte does not, there).
      const r = await tryAt(hint)
      if (r.ok) return hint
      if (r.why === 'aborted') return null
      hi = hint
    }
    while (hi - lo > 1) {
      if (t.removed || !this.running || !t.tracker.blackhole) return null
      const mid = (lo + hi) >>> 1
      const r = await tryAt(mid)
      if (r.ok) lo = mid
      else if (r.why === 'aborted') return null
      else {
        hi = mid
        if (r.why === 'too-big' && r.mtu !== null && r.mtu > lo && r.mtu < hi) hi = r.mtu + 1
      }
    }
    return lo
  }

  private probeOnce(addr: number, size: number, timeoutMs: number): Promise<ProbeResult> {
    const tr = this.transport
    if (!tr || !this.running) return Promise.resolve({ ok: false, why: 'aborted' })
    return new Promise((resolve) => tr.send(addr, size, timeoutMs, resolve))
  }
}

// ---- The agent's prober

const byAgent = new WeakMap<object, PeerHealth>()

/**
 * Starts probing the agent's peers (call after agent.start()): follows its
 * 'peer-added' and 'peer-removed' events, and re-reads its peer table and
 * config at every round. stop() it before agent.stop().
 */
export function startPeerHealth(agent: Agent, opts: Partial<Pick<PeerHealthOptions, 'openTransport' | 'now'>> = {}): PeerHealth {
  const health = new PeerHealth({
    log: agent.log,
    config: () => agent.config,
    peers: () => agent.datapath.peers.list(),
    ...opts,
  })
  const added = (addr: number): void => health.peerAdded(addr)
  const removed = (addr: number): void => health.peerRemoved(addr)
  agent.on('peer-added', added)
  agent.on('peer-removed', removed)
  health.onStop(() => {
    agent.off('peer-added', added)
    agent.off('peer-removed', removed)
    if (byAgent.get(agent) === health) byAgent.delete(agent)
  })
  byAgent.set(agent, health)
  health.start()
  return health
}

/** The prober started for an agent, or null (probing never started, or stopped). */
export function peerHealthOf(agent: object): PeerHealth | null {
  return byAgent.get(agent) ?? null
}

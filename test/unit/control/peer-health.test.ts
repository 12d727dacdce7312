import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Logger } from '../../../src/observe/log'
import { createAgentMetrics } from '../../../src/observe/metrics'
import { Datapath } from '../../../src/datapath/datapath'
import { peerTableRow } from '../../../src/cli/inspect-commands'
import { ipv4Parse } from '../../../src/wire/addr'
import {
  ECHO_MIN_SIZE, EchoTransport, ProbeResult, buildEchoRequest, errorResult, parseIcmpPacket, sendErrorResult,
} from '../../../src/control/icmp-probe'
import {
  BlackholeInfo, HealthEvent, LossWindow, PeerHealth, PeerTracker, RoundResult, SMALL_PROBE_SIZE, UNKNOWN_VIEW,
  blackholeMessage, downMessage, fullProbeSize, podMtuFor, recoveredMessage, upMessage,
} from '../../../src/control/peer-health'
import { ConfigError, parseConfig } from '../../../src/control/config'
import type { HealthConfig } from '../../../src/control/config'
import { anyNetns, validConfig } from './config-fixture'

const OK = (rttMs = 0.5): ProbeResult => ({ ok: true, rttMs })
const LOST: ProbeResult = { ok: false, why: 'timeout' }
const round = (small: ProbeResult, large: ProbeResult): RoundResult => ({ small, large })

// ---- loss window

test('loss window: percent over the probes recorded, then over the latest N', () => {
  const w = new LossWindow(4)
  assert.equal(w.lossPct, null)
  w.push(false)
  assert.equal(w.lossPct, 0)
  w.push(true)
  assert.equal(w.lossPct, 50)
  w.push(false)
  assert.equal(w.lossPct, 33.3)
  w.push(true)
  assert.equal(w.lossPct, 50)
  // The oldest (false) falls out: 3 lost of the latest 4.
  w.push(true)
  assert.equal(w.lossPct, 75)
  assert.equal(w.count, 4)
  // Then the first lost one, the false one, ...
  for (let i = 0; i < 4; i++) w.push(false)
  assert.equal(w.lossPct, 0)
})

test('loss window: resizing keeps the newest entries', () => {
  const w = new LossWindow(5)
  for (const lost of [true, true, false, false, true]) w.push(lost)
  assert.equal(w.lossPct, 60)
  w.resize(2) // newest two: false, true
  assert.equal(w.size, 2)
  assert.equal(w.count, 2)
  assert.equal(w.lossPct, 50)
  w.resize(10)
  assert.equal(w.count, 2)
  w.push(false)
  assert.equal(w.lossPct, 33.3)
  w.clear()
  assert.equal(w.lossPct, null)
})

// ---- state machine

test('tracker: unknown until the first round, up at the first answer (once), with RTT and last seen', () => {
  const tr = new PeerTracker(10)
  assert.deepEqual(tr.view(0), { ...UNKNOWN_VIEW })
  assert.deepEqual(tr.record(round(OK(0.4567), OK()), 1000, 3), [{ type: 'up', downForMs: null }])
  assert.deepEqual(tr.view(1250), { state: 'up', rttMs: 0.457, lastSeenMs: 250, pathMtuOk: true, pathMtu: null, lossPct: 0 })
  assert.deepEqual(tr.record(round(OK(0.3), OK()), 2000, 3), [], 'no event while nothing changes')
  assert.equal(tr.view(2000).rttMs, 0.3)
})

test('tracker: down after downAfter rounds without any answer, logged once; up again with how long it was down', () => {
  const tr = new PeerTracker(10)
  tr.record(round(OK(), OK()), 0, 3)
  assert.deepEqual(tr.record(round(LOST, LOST), 1000, 3), [])
  assert.deepEqual(tr.record(round(LOST, LOST), 2000, 3), [])
  const ev = tr.record(round(LOST, LOST), 3000, 3)
  assert.equal(ev.length, 1)
  assert.equal(ev[0].type, 'down')
  assert.match((ev[0] as Extract<HealthEvent, { type: 'down' }>).reason, /^3 probe rounds in a row without an answer \(no echo reply\)$/)
  assert.deepEqual(tr.record(round(LOST, LOST), 4000, 3), [], 'down is reported once')
  const v = tr.view(4500)
  assert.equal(v.state, 'down')
  assert.equal(v.rttMs, null, 'no RTT while down')
  assert.equal(v.pathMtuOk, null, 'the path MTU is not known while down')
  assert.equal(v.lastSeenMs, 4500)
  assert.equal(v.lossPct, 80)
  assert.deepEqual(tr.record(round(OK(), OK()), 6000, 3), [{ type: 'up', downForMs: 3000 }])
  assert.equal(tr.view(6000).pathMtuOk, true)
})

test('tracker: the reason of a down peer names an ICMP error or a send error', () => {
  const tr = new PeerTracker(10)
  const ev = tr.record(round({ ok: false, why: 'unreachable', detail: 'ICMP host unreachable from 10.0.0.1' }, LOST), 0, 1)
  assert.deepEqual(ev, [{ type: 'down', reason: '1 probe round in a row without an answer (ICMP host unreachable from 10.0.0.1)', missed: 1 }])
  assert.equal(tr.view(0).state, 'down')
})

test('tracker: an answer to the full-size probe alone keeps the peer up; the small one still counts as lost', () => {
  const tr = new PeerTracker(10)
  tr.record(round(OK(), OK()), 0, 2)
  for (let i = 1; i <= 5; i++) assert.deepEqual(tr.record(round(LOST, OK()), i * 1000, 2), [])
  const v = tr.view(5000)
  assert.equal(v.state, 'up')
  assert.equal(v.lossPct, 83.3)
})

test('tracker: full-size probes unanswered while small ones are: a black hole after downAfter rounds, once', () => {
  const tr = new PeerTracker(10)
  tr.record(round(OK(), OK()), 0, 3)
  assert.deepEqual(tr.record(round(OK(), LOST), 1000, 3), [])
  assert.deepEqual(tr.record(round(OK(), LOST), 2000, 3), [])
  assert.equal(tr.view(2000).pathMtuOk, true, 'not yet: a full-size probe may be lost like any other')
  assert.deepEqual(tr.record(round(OK(), LOST), 3000, 3), [{ type: 'mtu-blackhole', how: 'no-answer', hintMtu: null, from: null }])
  assert.equal(tr.view(3000).pathMtuOk, false)
  assert.equal(tr.view(3000).state, 'up')
  tr.announced = true // the prober logged it
  for (let i = 4; i < 10; i++) assert.deepEqual(tr.record(round(OK(), LOST), i * 1000, 3), [], 'reported once')
  tr.pathMtu = 1400
  assert.equal(tr.view(10_000).pathMtu, 1400)
  assert.equal(tr.view(10_000).lossPct, 0, 'lost full-size probes are not loss')
  assert.deepEqual(tr.record(round(OK(), OK()), 11_000, 3), [{ type: 'mtu-recovered' }])
  assert.equal(tr.view(11_000).pathMtuOk, true)
  assert.equal(tr.view(11_000).pathMtu, null)
  assert.deepEqual(tr.record(round(OK(), LOST), 12_000, 3), [], 'the count starts again')
})

test('tracker: refused here or "fragmentation needed" is a black hole at once', () => {
  const here = new PeerTracker(10)
  here.record(round(OK(), OK()), 0, 3)
  assert.deepEqual(here.record(round(OK(), { ok: false, why: 'too-big', mtu: null, from: null }), 1000, 3),
    [{ type: 'mtu-blackhole', how: 'refused-here', hintMtu: null, from: null }])
  const router = new PeerTracker(10)
  assert.deepEqual(router.record(round(OK(), { ok: false, why: 'too-big', mtu: 1400, from: '10.1.1.1' }), 0, 3),
    [{ type: 'up', downForMs: null }, { type: 'mtu-blackhole', how: 'frag-needed', hintMtu: 1400, from: '10.1.1.1' }])
})

test('tracker: full-size probes lost while the peer is down say nothing about the MTU', () => {
  const tr = new PeerTracker(10)
  tr.record(round(OK(), OK()), 0, 2)
  for (let i = 1; i < 6; i++) tr.record(round(LOST, LOST), i * 1000, 2)
  assert.equal(tr.blackhole, false)
  const ev = tr.record(round(OK(), OK()), 7000, 2)
  assert.deepEqual(ev.map((e) => e.type), ['up'])
})

test('tracker: a recovery that was never logged is not logged either', () => {
  const tr = new PeerTracker(10)
  tr.record(round(OK(), { ok: false, why: 'too-big', mtu: null, from: null }), 0, 3)
  assert.equal(tr.blackhole, true)
  assert.deepEqual(tr.record(round(OK(), OK()), 1000, 3), [])
  assert.equal(tr.blackhole, false)
})

test('tracker: aborted probes (the socket closed) are no result', () => {
  const tr = new PeerTracker(10)
  assert.deepEqual(tr.record(round({ ok: false, why: 'aborted' }, OK()), 0, 1), [])
  assert.deepEqual(tr.view(0), { ...UNKNOWN_VIEW })
})

// ---- messages

const info = (over: Partial<BlackholeInfo> = {}): BlackholeInfo => ({
  local: '192.168.250.1', peer: '192.168.250.2', probeBytes: 1500, podMtu: 1450, how: 'no-answer', from: null, hintMtu: null, pathMtu: 1400, ...over,
})

test('the black hole message says what happens and what to change', () => {
  assert.equal(fullProbeSize(1450), 1500, 'IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14 + podMtu')
  assert.equal(blackholeMessage(info()),
    'MTU black hole toward peer 192.168.250.2: full-size VXLAN packets (1500-byte IP packets, Don\'t Fragment set) do not get through ' +
    '(they get no answer while small probes do; the largest that got through: 1400 bytes), so pod packets near the pod MTU are lost while small ones pass. ' +
    'Fix: lower the pod MTU (node.podMtu, now 1450) to 1350 or less, or raise the MTU of every underlay link between 192.168.250.1 and 192.168.250.2 to at least 1500')
  assert.match(blackholeMessage(info({ how: 'refused-here' })), /\(this host refuses to send them because an interface MTU here is below 1500; the largest/)
  assert.match(blackholeMessage(info({ how: 'frag-needed', from: '10.9.9.9', hintMtu: 1280, pathMtu: 1280 })),
    /\(10\.9\.9\.9 answered "fragmentation needed" with next-hop MTU 1280; the largest that got through: 1280 bytes\).*to 1230 or less/)
  const unknown = blackholeMessage(info({ pathMtu: null }))
  assert.doesNotMatch(unknown, /largest/)
  assert.match(unknown, /lower the pod MTU \(node\.podMtu, now 1450\) to the path MTU minus 50, or raise .* to at least 1500$/)
  // A path too small for any pod MTU: only raising the underlay MTU helps, and the message still says both.
  assert.equal(podMtuFor(100), null)
  assert.equal(podMtuFor(118), 68)
  assert.match(blackholeMessage(info({ pathMtu: 100 })), /to the path MTU minus 50/)
})

test('down, up and recovery messages', () => {
  assert.equal(downMessage('10.0.0.2', '3 probe rounds in a row without an answer (no echo reply)'), 'peer 10.0.0.2 is down: 3 probe rounds in a row without an answer (no echo reply)')
  assert.equal(upMessage('10.0.0.2', null), 'peer 10.0.0.2 is up')
  assert.equal(upMessage('10.0.0.2', 12_345), 'peer 10.0.0.2 is up again after 12.3 s down')
  assert.equal(recoveredMessage('10.0.0.2', 9000), 'path to peer 10.0.0.2 carries full-size VXLAN packets (9000 bytes) again')
})

// ---- ICMP packets

/** An IPv4 header (20 bytes, proto ICMP) from src to dst, followed by `body`. */
function ipv4(src: string, dst: string, body: Buffer): Buffer {
  const h = Buffer.alloc(20)
  h[0] = 0x45
  h.writeUInt16BE(20 + body.length, 2)
  h[8] = 64
  h[9] = 1
  h.writeUInt32BE(ipv4Parse(src), 12)
  h.writeUInt32BE(ipv4Parse(dst), 16)
  return Buffer.concat([h, body])
}

test('echo request: the ICMP part of an IP packet of the asked size, with id, seq, magic and token, checksummed', () => {
  const req = buildEchoRequest(1500, 0x1234, 7, 0xdeadbeef)
  assert.equal(req.length, 1480)
  assert.deepEqual([req[0], req[1], req.readUInt16BE(4), req.readUInt16BE(6)], [8, 0, 0x1234, 7])
  let sum = 0
  for (let i = 0; i < req.length; i += 2) sum += req.readUInt16BE(i)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  assert.equal(sum, 0xffff, 'checksum verifies')
  assert.equal(buildEchoRequest(10, 1, 1, 1).length, ECHO_MIN_SIZE - 20, 'never shorter than headers, magic and token')
})

test('parse: an echo reply to our request, with its token', () => {
  const req = buildEchoRequest(100, 0x1234, 9, 42)
  const reply = Buffer.from(req)
  reply[0] = 0 // echo reply
  const pkt = ipv4('192.168.250.2', '192.168.250.1', reply)
  assert.deepEqual(parseIcmpPacket(pkt, pkt.length), { kind: 'echo-reply', from: ipv4Parse('192.168.250.2'), id: 0x1234, seq: 9, token: 42 })
  // Someone else's reply (no magic): no token.
  const other = Buffer.from(reply)
  other.fill(0, 8)
  const p2 = ipv4('192.168.250.2', '192.168.250.1', other)
  assert.equal((parseIcmpPacket(p2, p2.length) as { token: number | null }).token, null)
  // Truncated, not IPv4, not ICMP, or an echo request: nothing.
  assert.equal(parseIcmpPacket(pkt, 20), null)
  const v6 = Buffer.from(pkt); v6[0] = 0x60
  assert.equal(parseIcmpPacket(v6, v6.length), null)
  const udp = Buffer.from(pkt); udp[9] = 17
  assert.equal(parseIcmpPacket(udp, udp.length), null)
  const request = ipv4('192.168.250.2', '192.168.250.1', req)
  assert.equal(parseIcmpPacket(request, request.length), null)
})

test('parse: "fragmentation needed" quoting our request gives the next-hop MTU and the probe', () => {
  const req = buildEchoRequest(1500, 0x1234, 11, 5)
  const quoted = ipv4('192.168.250.1', '10.7.0.2', req).subarray(0, 28)
  const err = Buffer.alloc(8)
  err[0] = 3
  err[1] = 4
  err.writeUInt16BE(1400, 6)
  const pkt = ipv4('10.0.0.254', '192.168.250.1', Buffer.concat([err, quoted]))
  const m = parseIcmpPacket(pkt, pkt.length)
  assert.deepEqual(m, { kind: 'error', from: ipv4Parse('10.0.0.254'), type: 3, code: 4, mtu: 1400, to: ipv4Parse('10.7.0.2'), id: 0x1234, seq: 11 })
  assert.deepEqual(errorResult(m as Extract<typeof m, { kind: 'error' }>), { ok: false, why: 'too-big', mtu: 1400, from: '10.0.0.254' })
  err[1] = 1
  const host = ipv4('10.0.0.254', '192.168.250.1', Buffer.concat([err, quoted]))
  const h = parseIcmpPacket(host, host.length)!
  assert.deepEqual(errorResult(h as Extract<typeof h, { kind: 'error' }>), { ok: false, why: 'unreachable', detail: 'ICMP host unreachable from 10.0.0.254' })
  // An error about something else than an echo request: nothing.
  const udpQuote = Buffer.from(quoted); udpQuote[9] = 17
  const e2 = ipv4('10.0.0.254', '192.168.250.1', Buffer.concat([err, udpQuote]))
  assert.equal(parseIcmpPacket(e2, e2.length), null)
})

test('send errors: EMSGSIZE is too big here, anything else unreachable', () => {
  assert.deepEqual(sendErrorResult(new Error('Message too long')), { ok: false, why: 'too-big', mtu: null, from: null })
  assert.deepEqual(sendErrorResult(new Error('Network is unreachable')), { ok: false, why: 'unreachable', detail: 'send failed: Network is unreachable' })
})

// ---- the prober, with a fake transport

interface LogLine { level: 'info' | 'warn'; obj: Record<string, unknown>; msg: string }
function fakeLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const at = (level: 'info' | 'warn') => (a: unknown, b?: string) => {
    if (typeof a === 'string') lines.push({ level, obj: {}, msg: a })
    else lines.push({ level, obj: a as Record<string, unknown>, msg: b ?? '' })
  }
  return { log: { info: at('info'), warn: at('warn'), debug: () => undefined, error: at('warn') } as unknown as Logger, lines }
}

/** Answers at once: `answer(addr, size)` says what happens to each probe. */
class FakeTransport implements EchoTransport {
  open = true
  sent: { addr: number; size: number }[] = []
  constructor(public answer: (addr: number, size: number) => ProbeResult) {}
  send(addr: number, size: number, _timeoutMs: number, done: (r: ProbeResult) => void): void {
    this.sent.push({ addr, size })
    done(this.open ? this.answer(addr, size) : { ok: false, why: 'aborted' })
  }
  close(): void { this.open = false }
}

const HEALTH: HealthConfig = { intervalSeconds: 2, timeoutMs: 100, downAfter: 2, lossWindow: 10 }
const A = ipv4Parse('192.168.250.2')
const B = ipv4Parse('192.168.250.3')

function prober(transport: FakeTransport, peers: number[], health: HealthConfig = HEALTH) {
  const { log, lines } = fakeLog()
  let now = 0
  const cfg = { health, node: { podMtu: 1450, underlayIP: '192.168.250.1' } }
  const h = new PeerHealth({ log, config: () => cfg, peers: () => peers, openTransport: () => transport, now: () => now, manual: true })
  return { h, lines, cfg, advance: (ms: number) => { now += ms } }
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r))

test('prober: each round sends a small and a full-size probe to every peer, and follows the peer list', async () => {
  const tr = new FakeTransport(() => OK(0.2))
  const peers = [A, B]
  const { h, lines } = prober(tr, peers)
  h.start()
  h.round()
  assert.deepEqual(tr.sent, [{ addr: A, size: SMALL_PROBE_SIZE }, { addr: A, size: 1500 }, { addr: B, size: 84 }, { addr: B, size: 1500 }])
  assert.equal(h.view(A).state, 'up')
  assert.equal(h.view(B).pathMtuOk, true)
  assert.equal(lines.filter((l) => /^peer .* is up$/.test(l.msg)).length, 2)
  peers.splice(1, 1)
  h.round()
  assert.deepEqual(h.view(B), { ...UNKNOWN_VIEW }, 'a removed peer is forgotten')
  assert.deepEqual(h.reading().peers.map((p) => p.address), ['192.168.250.2'])
  h.stop()
})

test('prober: a silent black hole is searched (largest size through) and logged once; its recovery too', async () => {
  let limit = 1500
  const tr = new FakeTransport((_a, size) => (size <= limit ? OK() : LOST))
  const { h, lines } = prober(tr, [A])
  h.start()
  h.round()
  limit = 1404
  h.round()
  h.round() // downAfter = 2: black hole now, search starts
  await settle()
  const holes = lines.filter((l) => l.msg.startsWith('MTU black hole'))
  assert.equal(holes.length, 1)
  assert.equal(holes[0].level, 'warn')
  assert.equal(holes[0].obj.pathMtu, 1404)
  assert.equal(holes[0].obj.suggestedPodMtu, 1354)
  assert.match(holes[0].msg, /to 1354 or less, or raise the MTU of every underlay link between 192\.168\.250\.1 and 192\.168\.250\.2 to at least 1500$/)
  assert.deepEqual({ ...h.view(A), lastSeenMs: 0 }, { state: 'up', rttMs: 0.5, lastSeenMs: 0, pathMtuOk: false, pathMtu: 1404, lossPct: 0 })
  assert.equal(h.blackholes, 1)
  for (let i = 0; i < 5; i++) h.round()
  await settle()
  assert.equal(lines.filter((l) => l.msg.startsWith('MTU black hole')).length, 1, 'once until it recovers')
  limit = 1500
  h.round()
  assert.equal(lines.filter((l) => l.msg === 'path to peer 192.168.250.2 carries full-size VXLAN packets (1500 bytes) again').length, 1)
  assert.equal(h.view(A).pathMtuOk, true)
  // A second black hole is a new one: logged again.
  limit = 1000
  h.round()
  h.round()
  await settle()
  assert.equal(lines.filter((l) => l.msg.startsWith('MTU black hole')).length, 2)
  assert.equal(h.view(A).pathMtu, 1000)
  assert.equal(h.reading().blackholes, 2)
  h.stop()
})

test('prober: a router\'s next-hop MTU is tried first', async () => {
  const tr = new FakeTransport((_a, size) => (size <= 1300 ? OK() : { ok: false, why: 'too-big', mtu: 1300, from: '10.0.0.254' }))
  const { h, lines } = prober(tr, [A])
  h.start()
  h.round()
  await settle()
  const hole = lines.find((l) => l.msg.startsWith('MTU black hole'))!
  assert.match(hole.msg, /10\.0\.0\.254 answered "fragmentation needed" with next-hop MTU 1300; the largest that got through: 1300 bytes/)
  // Small, full size, then one probe at 1300: no binary search needed.
  assert.deepEqual(tr.sent.map((s) => s.size), [84, 1500, 1300])
  h.stop()
})

test('prober: down once, up once, and the loss it saw', () => {
  let reachable = true
  const tr = new FakeTransport(() => (reachable ? OK() : LOST))
  const { h, lines, advance } = prober(tr, [A])
  h.start()
  h.round()
  reachable = false
  for (let i = 0; i < 4; i++) { advance(500); h.round() }
  assert.equal(h.view(A).state, 'down')
  assert.equal(h.view(A).lossPct, 80)
  assert.equal(h.view(A).lastSeenMs, 2000)
  reachable = true
  advance(500)
  h.round()
  const msgs = lines.map((l) => l.msg)
  assert.deepEqual(msgs.filter((m) => /^peer 192/.test(m)), [
    'peer 192.168.250.2 is up',
    'peer 192.168.250.2 is down: 2 probe rounds in a row without an answer (no echo reply)',
    'peer 192.168.250.2 is up again after 1.5 s down',
  ])
  assert.equal(lines.find((l) => l.msg.includes('is down'))!.level, 'warn')
  h.stop()
})

test('prober: without a raw socket it says why once and reports peers unknown', () => {
  const { log, lines } = fakeLog()
  let tries = 0
  const h = new PeerHealth({
    log, config: () => ({ health: HEALTH, node: { podMtu: 1450, underlayIP: '10.0.0.1' } }), peers: () => [A],
    openTransport: () => { tries++; throw new Error('cannot open an ICMP raw socket: Operation not permitted (the agent needs CAP_NET_RAW)') },
    manual: true,
  })
  h.start()
  h.round()
  h.round()
  assert.equal(tries, 2, 'tried again each round')
  assert.equal(lines.filter((l) => l.msg.startsWith('peer health probing unavailable')).length, 1)
  assert.match(h.unavailable!, /CAP_NET_RAW/)
  assert.deepEqual(h.view(A), { ...UNKNOWN_VIEW })
  h.stop()
})

test('prober: intervalSeconds 0 never opens the socket', async () => {
  let opened = 0
  const { log } = fakeLog()
  const h = new PeerHealth({
    log, config: () => ({ health: { ...HEALTH, intervalSeconds: 0 }, node: { podMtu: 1450, underlayIP: '10.0.0.1' } }), peers: () => [A],
    openTransport: () => { opened++; return new FakeTransport(() => OK()) },
  })
  h.start()
  await new Promise((r) => setTimeout(r, 30))
  assert.equal(opened, 0)
  assert.equal(h.enabled, false)
  h.stop()
})

test('prober: results arriving after stop() change nothing', () => {
  const pending: ((r: ProbeResult) => void)[] = []
  const tr: EchoTransport = { open: true, send: (_a, _s, _t, done) => { pending.push(done) }, close: () => undefined }
  const { log, lines } = fakeLog()
  const h = new PeerHealth({ log, config: () => ({ health: HEALTH, node: { podMtu: 1450, underlayIP: '10.0.0.1' } }), peers: () => [A], openTransport: () => tr, manual: true })
  h.start()
  h.round()
  h.stop()
  for (const d of pending) d(OK())
  assert.equal(lines.filter((l) => /is up/.test(l.msg)).length, 0)
})

// ---- metrics and the CLI table

test('metrics: peer gauges and the black hole counter are read from the prober at scrape time', async (t) => {
  const datapath = new Datapath({ vxlanPort: 4789 })
  let reading = {
    peers: [
      { address: '192.168.250.2', state: 'up', rttMs: 0.25, pathMtuOk: false, lossPct: 10 },
      { address: '192.168.250.3', state: 'down', rttMs: null, pathMtuOk: null, lossPct: 100 },
      { address: '192.168.250.4', state: 'unknown', rttMs: null, pathMtuOk: null, lossPct: null },
    ],
    blackholes: 3,
  }
  const m = createAgentMetrics({ datapath, podStates: () => [], peerHealth: () => reading })
  t.after(() => m.close())
  const lines = new Set((await m.registry.metrics()).split('\n'))
  for (const want of [
    'tapestry_peer_up{peer="192.168.250.2"} 1',
    'tapestry_peer_up{peer="192.168.250.3"} 0',
    'tapestry_peer_rtt_seconds{peer="192.168.250.2"} 0.00025',
    'tapestry_peer_path_mtu_ok{peer="192.168.250.2"} 0',
    'tapestry_peer_probe_loss_ratio{peer="192.168.250.2"} 0.1',
    'tapestry_peer_probe_loss_ratio{peer="192.168.250.3"} 1',
    'tapestry_peer_mtu_blackhole_total 3',
    '# TYPE tapestry_peer_mtu_blackhole_total counter',
  ]) assert.ok(lines.has(want), `missing ${want}`)
  const text = [...lines].join('\n')
  assert.doesNotMatch(text, /peer="192\.168\.250\.4"/, 'an unknown peer has no values yet')
  assert.doesNotMatch(text, /tapestry_peer_path_mtu_ok\{peer="192\.168\.250\.3"\}/)
  reading = { peers: [], blackholes: 3 }
  assert.doesNotMatch(await m.registry.metrics(), /tapestry_peer_up\{/, 'removed peers disappear')
  // Without a prober, the counter reads 0.
  const bare = createAgentMetrics({ datapath, podStates: () => [] })
  t.after(() => bare.close())
  assert.match(await bare.registry.metrics(), /^tapestry_peer_mtu_blackhole_total 0$/m)
})

test('peers table: RTT, loss, full-size verdict and last answer', () => {
  assert.deepEqual(peerTableRow({ address: '10.0.0.2', configured: true, state: 'up', rttMs: 0.4321, lastSeenMs: 420, pathMtuOk: true, pathMtu: null, lossPct: 0 }),
    { address: '10.0.0.2', configured: true, state: 'up', rtt: '0.43ms', loss: '0%', fullsize: 'ok', seen: '0.4s ago' })
  assert.deepEqual(peerTableRow({ address: '10.0.0.2', configured: false, state: 'up', rttMs: 25.55, lastSeenMs: 1000, pathMtuOk: false, pathMtu: 1400, lossPct: 5 }),
    { address: '10.0.0.2', configured: false, state: 'up', rtt: '25.6ms', loss: '5%', fullsize: 'BLACKHOLE (max 1400)', seen: '1.0s ago' })
  assert.deepEqual(peerTableRow({ address: '10.0.0.2', configured: true }),
    { address: '10.0.0.2', configured: true, state: 'unknown', rtt: null, loss: null, fullsize: null, seen: null }, 'an older agent without health fields')
})

// ---- config

test('health config: defaults, explicit values, 0 turns probing off, bad values named', () => {
  assert.deepEqual(parseConfig(validConfig(), anyNetns).health, { intervalSeconds: 2, timeoutMs: 1000, downAfter: 3, lossWindow: 20 })
  const cfg = validConfig()
  cfg.health = { intervalSeconds: 0.5, timeoutMs: 300, downAfter: 2, lossWindow: 10 }
  assert.deepEqual(parseConfig(cfg, anyNetns).health, { intervalSeconds: 0.5, timeoutMs: 300, downAfter: 2, lossWindow: 10 })
  cfg.health = { intervalSeconds: 0 }
  assert.equal(parseConfig(cfg, anyNetns).health.intervalSeconds, 0)
  const bad: [Record<string, unknown>, string, RegExp][] = [
    [{ intervalSeconds: -1 }, 'health.intervalSeconds', /-1 is not 0 \(off\) or a number of seconds from 0\.1 to 3600/],
    [{ intervalSeconds: 0.01 }, 'health.intervalSeconds', /0\.01 is not 0 \(off\)/],
    [{ intervalSeconds: '2s' }, 'health.intervalSeconds', /"2s" is not 0 \(off\)/],
    [{ timeoutMs: 0 }, 'health.timeoutMs', /is not an integer in 10\.\.60000/],
    [{ downAfter: 1.5 }, 'health.downAfter', /is not an integer in 1\.\.100/],
    [{ lossWindow: 0 }, 'health.lossWindow', /is not an integer in 1\.\.1000/],
    [{ interval: 2 }, 'health.interval', /unknown key/],
  ]
  for (const [health, path, reason] of bad) {
    const c = validConfig()
    c.health = health
    assert.throws(() => parseConfig(c, anyNetns), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      const p = err.problems.find((x) => x.path === path)
      assert.ok(p, `a problem at ${path}: ${err.message}`)
      assert.match(p.message, reason)
      return true
    })
  }
})

test('prober: follows the config at every round (a reload): interval 0 stops probing and forgets the peers', async () => {
  const tr = new FakeTransport(() => OK())
  const { log, lines } = fakeLog()
  const cfg = { health: { ...HEALTH, intervalSeconds: 0.1 }, node: { podMtu: 1450, underlayIP: '10.0.0.1' } }
  const h = new PeerHealth({ log, config: () => cfg, peers: () => [A], openTransport: () => tr })
  h.start()
  await new Promise((r) => setTimeout(r, 250))
  assert.ok(tr.sent.length >= 4, `rounds ran: ${tr.sent.length} probes`)
  assert.equal(h.view(A).state, 'up')
  cfg.health = { ...cfg.health, intervalSeconds: 0 }
  await new Promise((r) => setTimeout(r, 250))
  assert.deepEqual(h.view(A), { ...UNKNOWN_VIEW })
  assert.equal(tr.open, false, 'the socket is closed')
  assert.equal(lines.filter((l) => l.msg.startsWith('peer health probing off')).length, 1)
  const sent = tr.sent.length
  await new Promise((r) => setTimeout(r, 150))
  assert.equal(tr.sent.length, sent)
  h.stop()
})

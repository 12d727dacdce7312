/**
 * Helpers of the hardening e2e tests (test/e2e/harden-*.test.ts) and of the
 * soak bench: the agent's counters and memory as an operator reads them,
 * small traffic generators that run inside a test's own namespaces (python3
 * scripts passed with -c: raw UDP datagrams, raw Ethernet frames through
 * AF_PACKET, counting receivers), and underlay impairment (tc netem, or a
 * userspace relay that does the same where the kernel has no netem).
 *
 * Every generator is bounded: a count or a duration is a required argument,
 * and every process belongs to the Lab, which kills it on cleanup.
 */
import * as fs from 'node:fs'
import { Lab, Proc, sh, waitFor } from './lab'
import { Cluster, Host, TAPESTRY_BIN } from './overlay'

// ---- the agent, as an operator sees it

/** `tapestry <args> --socket SOCK` in the host's namespace; returns stdout, throws with stderr on failure. */
export async function tapestry(lab: Lab, host: Host, socket: string, ...args: string[]): Promise<string> {
  const r = await lab.execAsync(host.ns, [process.execPath, TAPESTRY_BIN, ...args, '--socket', socket], 20_000)
  if (r.code !== 0) throw new Error(`tapestry ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`)
  return r.stdout
}

export interface AgentStats {
  node: string
  underlay: { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; priorityRxFrames: number; priorityRxBytes: number }
  pods: Record<string, { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; priorityRxFrames: number; priorityRxBytes: number }>
  drops: Record<string, number>
  fdb: { entries: number; learned: number; moved: number; aged: number; staticMoveRefused: number; limitDrops: number }
  arp: { entries: number; answered: number }
}

/** `tapestry stats --json`. */
export async function stats(lab: Lab, host: Host, socket: string): Promise<AgentStats> {
  return JSON.parse(await tapestry(lab, host, socket, 'stats', '--json')) as AgentStats
}

/** Drop counters that grew between two readings, by reason. */
export function dropDelta(before: AgentStats, after: AgentStats): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(after.drops)) {
    const d = v - (before.drops[k] ?? 0)
    if (d !== 0) out[k] = d
  }
  return out
}

/** Resident memory of a process in KiB (VmRSS in /proc/PID/status), or null once it is gone. */
export function rssKiB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

/** Samples `fn` every `everyMs` until stop() is called; returns the samples. */
export function sampler<T>(fn: () => T, everyMs: number): { samples: { t: number; v: T }[]; stop: () => { t: number; v: T }[] } {
  const samples: { t: number; v: T }[] = []
  const t0 = Date.now()
  const take = () => samples.push({ t: Date.now() - t0, v: fn() })
  take()
  const timer = setInterval(take, everyMs)
  return { samples, stop: () => { clearInterval(timer); take(); return samples } }
}

/** The pid of a host's agent (`ip netns exec` execs, so the child is the agent itself). */
export function agentPid(c: Cluster, host: Host): number {
  const p = c.agent(host)
  if (!p || p.child.pid === undefined) throw new Error(`no agent running on ${host.name}`)
  return p.child.pid
}

/** Fails if the agent process has exited (with its output, for the report). */
export function assertAgentAlive(c: Cluster, host: Host): void {
  const p = c.agent(host)
  if (!p) throw new Error(`no agent on ${host.name}`)
  if (p.child.exitCode !== null || p.child.signalCode !== null) {
    throw new Error(`the agent of ${host.name} exited (code ${p.child.exitCode}, signal ${p.child.signalCode}): ${p.stderr().slice(-2000)}`)
  }
}

// ---- python3 traffic generators (run inside a namespace)

/**
 * Sends UDP datagrams from the namespace it runs in. argv: DST_IP DST_PORT
 * JSON [{hex, count}] GAP_S. Prints {"sent": N}.
 */
const UDP_SEND_PY = `
import json, socket, sys, time
dst, port, items, gap = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
sent = 0
for it in items:
    data = bytes.fromhex(it['hex'])
    for _ in range(it['count']):
        s.sendto(data, (dst, port))
        sent += 1
        if gap > 0:
            time.sleep(gap)
print(json.dumps({'sent': sent}))
`

export interface Datagram { hex: string; count: number }

/** Sends each datagram `count` times to dst:port from `ns`, `gapMs` apart; resolves with the number sent. */
export async function sendUdp(lab: Lab, ns: string, dst: string, port: number, items: Datagram[], gapMs = 2): Promise<number> {
  const r = await lab.execAsync(ns, ['python3', '-c', UDP_SEND_PY, dst, String(port), JSON.stringify(items), String(gapMs / 1000)], 60_000)
  if (r.code !== 0) throw new Error(`UDP sender failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!).sent as number
}

/**
 * Sends raw Ethernet frames on an interface through AF_PACKET. argv: IFACE
 * JSON spec DURATION_S MAX_FRAMES. spec: {frames: [hex...]} sent round robin,
 * or {randomSrc: true, dst, type, len} for frames with a fresh random
 * locally administered source MAC each. Stops at the duration or the count,
 * whichever first; prints {"sent": N, "seconds": S}.
 */
const RAW_SEND_PY = `
import json, os, socket, sys, time
ifname, spec, duration, maxn = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
frames = [bytes.fromhex(h) for h in spec.get('frames', [])]
rnd = spec.get('randomSrc', False)
if rnd:
    dst = bytes.fromhex(spec['dst'].replace(':', ''))
    tail = bytes.fromhex(spec['type']) + bytes(spec.get('len', 46))
sent = 0
t0 = time.monotonic()
end = t0 + duration
pace = spec.get('perSecond', 0)
while sent < maxn:
    now = time.monotonic()
    if now >= end:
        break
    if pace and sent > (now - t0) * pace:
        time.sleep(0.001)
        continue
    if rnd:
        src = bytearray(os.urandom(6))
        src[0] = (src[0] & 0xfc) | 0x02
        f = dst + bytes(src) + tail
    else:
        f = frames[sent % len(frames)]
    try:
        s.send(f)
        sent += 1
    except OSError:
        time.sleep(0.0005)
print(json.dumps({'sent': sent, 'seconds': time.monotonic() - t0}))
`

export interface RawSpec {
  frames?: string[]
  randomSrc?: boolean
  dst?: string
  /** EtherType as 4 hex digits. */
  type?: string
  len?: number
  /** Pace (frames per second); 0 or absent: as fast as the socket takes them. */
  perSecond?: number
}

/** Starts a raw sender in `ns` (stops by itself after `seconds` or `maxFrames`); resolves with what it sent. */
export async function sendRaw(lab: Lab, ns: string, iface: string, spec: RawSpec, seconds: number, maxFrames: number): Promise<{ sent: number; seconds: number }> {
  const r = await lab.execAsync(ns, ['python3', '-c', RAW_SEND_PY, iface, JSON.stringify(spec), String(seconds), String(maxFrames)], (seconds + 30) * 1000)
  if (r.code !== 0) throw new Error(`raw sender failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!)
}

/**
 * Counts frames of one EtherType arriving on an interface (AF_PACKET, incoming
 * only) until SIGTERM or the deadline; prints {"count": N} and writes "ready"
 * first. argv: IFACE ETHERTYPE_HEX DEADLINE_S.
 */
const RAW_COUNT_PY = `
import json, signal, socket, sys, time
ifname, etype, deadline = sys.argv[1], int(sys.argv[2], 16), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(etype))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((ifname, 0))
s.settimeout(0.2)
count = 0
stop = False
def done(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, done)
signal.signal(signal.SIGINT, done)
print('ready', flush=True)
end = time.monotonic() + deadline
while not stop and time.monotonic() < end:
    try:
        data, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    count += 1
print(json.dumps({'count': count}), flush=True)
`

export interface Counter { proc: Proc; stop: () => Promise<number> }

/** Starts counting frames of `etherType` (4 hex digits) arriving on `iface` in `ns`; stop() returns the count. */
export async function countFrames(lab: Lab, ns: string, iface: string, etherType: string, deadlineS = 120): Promise<Counter> {
  const proc = lab.spawn(ns, ['python3', '-u', '-c', RAW_COUNT_PY, iface, etherType, String(deadlineS)])
  await waitFor(`frame counter in ${ns}`, () => {
    if (proc.child.exitCode !== null) throw new Error(`counter exited ${proc.child.exitCode}: ${proc.stderr()}`)
    return proc.stdout().includes('ready')
  }, 10_000)
  return {
    proc,
    async stop(): Promise<number> {
      if (proc.child.exitCode === null) proc.child.kill('SIGTERM')
      await proc.exited
      const line = proc.stdout().trim().split('\n').pop() ?? ''
      return (JSON.parse(line) as { count: number }).count
    },
  }
}

// ---- frames, as bytes

export function macHex(mac: string): string {
  return mac.split(':').join('')
}

function ipHex(ip: string): string {
  return ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join('')
}

/** An ARP frame (RFC 826) as hex: op 1 request, 2 reply; broadcast by default. */
export function arpHex(o: { op: number; srcMac: string; sha: string; spa: string; tha?: string; tpa: string; dstMac?: string }): string {
  return macHex(o.dstMac ?? 'ff:ff:ff:ff:ff:ff') + macHex(o.srcMac) + '0806' + '0001' + '0800' + '06' + '04' +
    o.op.toString(16).padStart(4, '0') + macHex(o.sha) + ipHex(o.spa) + macHex(o.tha ?? '00:00:00:00:00:00') + ipHex(o.tpa)
}

// ---- underlay impairment

export interface Impairment {
  /** Loss in percent, delay and jitter in ms, and netem's `reorder PCT CORR` (PCT of packets sent at once, the rest delayed). */
  lossPct: number
  delayMs: number
  jitterMs: number
  reorderPct: number
  reorderCorrPct: number
}

export interface Impaired {
  mode: 'netem' | 'relay'
  /** What the relay did (netem: the qdisc statistics text). */
  stop(): Promise<Record<string, number> | string>
}

/**
 * A userspace netem: relays frames between the host's bridge port (A side)
 * and a new port of the underlay bridge (B side). Frames from A (the host's
 * egress) are lost, delayed with jitter and reordered as netem would; frames
 * toward A pass at once. argv: A_IFACE B_IFACE JSON_IMPAIRMENT SEED.
 */
const RELAY_PY = `
import heapq, json, random, select, signal, socket, sys, time
ia, ib, imp, seed = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
def open_(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 20)
    s.bind((name, 0))
    s.setblocking(False)
    return s
sa, sb = open_(ia), open_(ib)
loss, delay, jitter = imp['lossPct'] / 100.0, imp['delayMs'] / 1000.0, imp['jitterMs'] / 1000.0
rpct, rcorr = imp['reorderPct'] / 100.0, imp['reorderCorrPct'] / 100.0
heap = []
seq = 0
last_sent = -1
st = {'fromA': 0, 'fromB': 0, 'lost': 0, 'immediate': 0, 'delayed': 0, 'reordered': 0, 'sendErrors': 0}
corr_state = rng.random()
stop = False
def done(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, done)
signal.signal(signal.SIGINT, done)
def send(s, f, n):
    global last_sent
    try:
        s.send(f)
    except OSError:
        st['sendErrors'] += 1
    if n >= 0:
        if n < last_sent:
            st['reordered'] += 1
        last_sent = max(last_sent, n)
print('ready', flush=True)
while not stop:
    now = time.monotonic()
    timeout = 0.5 if not heap else max(0.0, heap[0][0] - now)
    try:
        r, _, _ = select.select([sa, sb], [], [], timeout)
    except InterruptedError:
        continue
    for s in r:
        for _ in range(256):
            try:
                f, addr = s.recvfrom(65535)
            except BlockingIOError:
                break
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            if s is sb:
                st['fromB'] += 1
                send(sa, f, -1)
                continue
            st['fromA'] += 1
            n = seq
            seq += 1
            if rng.random() < loss:
                st['lost'] += 1
                continue
            corr_state = rcorr * corr_state + (1 - rcorr) * rng.random()
            if rpct > 0 and corr_state < rpct:
                st['immediate'] += 1
                send(sb, f, n)
                continue
            st['delayed'] += 1
            d = delay + rng.uniform(-jitter, jitter)
            heapq.heappush(heap, (time.monotonic() + max(0.0, d), n, f))
    now = time.monotonic()
    while heap and heap[0][0] <= now:
        _, n, f = heapq.heappop(heap)
        send(sb, f, n)
print(json.dumps(st), flush=True)
`

/**
 * Impairs what `host` sends on the underlay: `tc qdisc add dev ul0 root netem
 * loss L delay D J reorder R C` in the host's namespace when the kernel has
 * netem; otherwise the same done by RELAY_PY between the host's bridge port and
 * a new bridge port, with offloads off on the hosts' underlay interfaces (the
 * relay moves plain frames) and `others` the hosts whose frames cross it.
 */
export async function impairEgress(lab: Lab, c: Cluster, host: Host, imp: Impairment, others: Host[]): Promise<Impaired> {
  const netem = ['qdisc', 'add', 'dev', host.ifname, 'root', 'netem', 'loss', `${imp.lossPct}%`, 'delay', `${imp.delayMs}ms`, `${imp.jitterMs}ms`,
    'reorder', `${imp.reorderPct}%`, `${imp.reorderCorrPct}%`]
  const r = await lab.execAsync(host.ns, ['tc', ...netem], 10_000)
  if (r.code === 0) {
    return { mode: 'netem', stop: async () => lab.exec(host.ns, ['tc', '-s', 'qdisc', 'show', 'dev', host.ifname]) }
  }
  if (!/qdisc kind is unknown|Unknown qdisc|No such file/i.test(r.stderr)) throw new Error(`tc netem failed: ${r.stderr}`)
  // No netem in this kernel (CONFIG_NET_SCH_NETEM unset): relay in userspace.
  for (const h of [host, ...others]) {
    lab.exec(h.ns, ['ethtool', '-K', h.ifname, 'tx', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off'], { allowFail: true })
  }
  // Take the host's port off the bridge and put the relay between it and a new bridge port.
  const port = `p${host.name}`
  const relayA = port
  const relayB = `rly${host.name}`.slice(0, 15)
  const bridgeSide = `rlb${host.name}`.slice(0, 15)
  lab.exec(c.underlayNs, ['ip', 'link', 'set', port, 'nomaster'])
  lab.veth(c.underlayNs, relayB, c.underlayNs, bridgeSide)
  lab.exec(c.underlayNs, ['ip', 'link', 'set', bridgeSide, 'master', 'br0'])
  for (const i of [port, relayB, bridgeSide]) lab.exec(c.underlayNs, ['ethtool', '-K', i, 'gro', 'off', 'tx', 'off'], { allowFail: true })
  const proc = lab.spawn(c.underlayNs, ['python3', '-u', '-c', RELAY_PY, relayA, relayB, JSON.stringify(imp), '4242'])
  await waitFor('impairment relay ready', () => {
    if (proc.child.exitCode !== null) throw new Error(`relay exited ${proc.child.exitCode}: ${proc.stderr()}`)
    return proc.stdout().includes('ready')
  }, 10_000)
  return {
    mode: 'relay',
    async stop(): Promise<Record<string, number>> {
      if (proc.child.exitCode === null) proc.child.kill('SIGTERM')
      await proc.exited
      const line = proc.stdout().trim().split('\n').pop() ?? '{}'
      return JSON.parse(line) as Record<string, number>
    },
  }
}

/** Kernel counters of an interface in a namespace (`ip -s -j link`): rx/tx packets and drops. */
export function linkStats(ns: string, iface: string): { rxPackets: number; rxDropped: number; txPackets: number; txDropped: number } {
  const j = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', iface]))[0]
  const s = j.stats64 ?? j.stats
  return { rxPackets: s.rx.packets, rxDropped: s.rx.dropped, txPackets: s.tx.packets, txDropped: s.tx.dropped }
}

/** UDP counters of a namespace (/proc/net/snmp): datagrams in, receive buffer and send buffer errors. */
export function udpSnmp(lab: Lab, ns: string): Record<string, number> {
  const text = lab.exec(ns, ['cat', '/proc/net/snmp'])
  const lines = text.split('\n').filter((l) => l.startsWith('Udp:'))
  const keys = lines[0].split(/\s+/).slice(1)
  const vals = lines[1].split(/\s+/).slice(1).map(Number)
  return Object.fromEntries(keys.map((k, i) => [k, vals[i]]))
}

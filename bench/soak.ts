/**
 * Soak: two hosts (network namespaces, one agent each) with two pods each,
 * under mixed traffic for N minutes, watching for slow failures: memory that
 * keeps growing, an event loop that stalls, drops that pile up, connections
 * that fail.
 *
 *   node dist/bench/soak.js --minutes N [--tcp-mbit M] [--udp-mbit M] [--churn-s S]
 *
 * Traffic, all of it between namespaces made here and stopped at the deadline:
 *   - TCP streams: iperf3 a1 -> b1 and b2 -> a2 (paced at --tcp-mbit, default 200 Mbit/s each);
 *   - UDP: iperf3 -u a2 -> b2 at a modest rate (--udp-mbit, default 20 Mbit/s);
 *   - many short TCP connections: two loops (a2 -> b1 across hosts, b2 -> b1 on one host)
 *     of 16 KiB transfers, each answered with its SHA-256 and checked;
 *   - pod churn: every --churn-s seconds (default 3) a pod is added on one host with
 *     `tapestry pod add` (its IP from the network's podRange), pings a pod on the
 *     other host, and is deleted with `tapestry pod del` two periods later.
 *
 * Sampled every second on both hosts: the agent's RSS (VmRSS), the event-loop
 * delay (p99 and max since the previous scrape, from the metrics endpoint),
 * the drop counters and underlay bytes (GET /v1/stats, what `tapestry stats
 * --json` prints).
 *
 * Fails (exit 1) when an agent exits, when RSS grows without bound (the median
 * of the last 5 samples above 2x the median after warm-up, or, on runs of 10
 * minutes or more, a least-squares slope over the second half above 2 MiB/min:
 * on shorter runs the GC sawtooth swamps the slope), or when a legitimate
 * connection fails (an iperf3 run, a short connection, a churn pod's ping) or
 * UDP loses more than 1%. Prints a summary table on stdout (progress on stderr)
 * and writes every sample to bench/results/soak-<date>.json.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { Lab, Proc, sh, waitFor } from '../test/harness/lab'
import { Cluster, Host, TAPESTRY_BIN, hostConfig } from '../test/harness/overlay'
import { apiSocket } from '../test/harness/fdb'
import { agentPid, rssKiB } from '../test/harness/harden'

const REPO = path.join(__dirname, '..', '..')
const t0 = Date.now()
const VNI = 42
/** Warm-up excluded from the RSS baseline: the first 10 s, or 20% of a short run. */
const WARMUP_FRACTION = 0.2
const WARMUP_MAX_S = 10
const RSS_GROWTH_FACTOR = 2
const RSS_SLOPE_LIMIT_KIB_PER_MIN = 2048
const RSS_SLOPE_MIN_RUN_MIN = 10
const UDP_LOSS_LIMIT_PCT = 1

function progress(msg: string): void {
  process.stderr.write(`[soak +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`)
}

interface Options { minutes: number; tcpMbit: number; udpMbit: number; churnS: number }

function usage(): never {
  process.stderr.write('usage: node dist/bench/soak.js --minutes N [--tcp-mbit M] [--udp-mbit M] [--churn-s S]\n')
  process.exit(2)
}

function parseArgs(argv: string[]): Options {
  const o: Options = { minutes: NaN, tcpMbit: 200, udpMbit: 20, churnS: 3 }
  for (let i = 0; i < argv.length; i++) {
    const v = Number(argv[i + 1])
    if (argv[i] === '--minutes') o.minutes = v
    else if (argv[i] === '--tcp-mbit') o.tcpMbit = v
    else if (argv[i] === '--udp-mbit') o.udpMbit = v
    else if (argv[i] === '--churn-s') o.churnS = v
    else usage()
    i++
    if (!(v > 0)) usage()
  }
  if (!(o.minutes > 0)) usage()
  return o
}

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, TAP devices)'
  for (const [cmd, args] of [['ip', ['-V']], ['iperf3', ['--version']], ['ping', ['-V']], ['curl', ['--version']]] as const) {
    if (!sh(cmd, [...args], { allowFail: true })) return `${cmd} is not installed (run scripts/setup.sh)`
  }
  if (!fs.existsSync(path.join(REPO, 'dist', 'src', 'cli', 'main.js'))) return 'Tapestry is not built: run npm run build'
  return null
}

// ---- small programs run inside the pods

/** Answers each connection with the byte count and SHA-256 of what it sent. argv: PORT. */
const SHORT_SERVER_JS = `
const net = require('net'), crypto = require('crypto')
const srv = net.createServer({ allowHalfOpen: true }, (s) => {
  const h = crypto.createHash('sha256'); let n = 0
  s.on('data', (d) => { h.update(d); n += d.length })
  s.on('end', () => s.end(JSON.stringify({ n, sha: h.digest('hex') })))
  s.on('error', () => {})
})
srv.listen(Number(process.argv[1]), () => console.log('listening'))
`

/**
 * Opens connections until the deadline, `conc` at a time, each sending SIZE
 * random bytes and checking the answer; prints {"ok","failed","errors"}.
 * argv: HOST PORT SECONDS CONCURRENCY SIZE.
 */
const SHORT_CLIENT_JS = `
const net = require('net'), crypto = require('crypto')
const [host, port, secs, conc, size] = process.argv.slice(1)
const end = Date.now() + Number(secs) * 1000
let ok = 0, failed = 0
const errors = []
const one = () => new Promise((resolve) => {
  const buf = crypto.randomBytes(Number(size))
  const want = crypto.createHash('sha256').update(buf).digest('hex')
  const s = net.connect(Number(port), host)
  let reply = '', lastErr = ''
  const timer = setTimeout(() => s.destroy(new Error('no answer in 10 s')), 10000)
  s.on('connect', () => s.end(buf))
  s.on('data', (d) => { reply += d })
  s.on('error', (e) => { lastErr = e.message })
  s.on('close', () => {
    clearTimeout(timer)
    let r = null
    try { r = JSON.parse(reply) } catch {}
    if (r && r.n === buf.length && r.sha === want) ok++
    else { failed++; if (errors.length < 20) errors.push(lastErr || (r ? 'hash mismatch' : 'no answer')) }
    setTimeout(resolve, 10)
  })
})
const worker = async () => { while (Date.now() < end) await one() }
Promise.all(Array.from({ length: Number(conc) }, worker)).then(() => console.log(JSON.stringify({ ok, failed, errors })))
`

// ---- reading the agents

function getJson<T>(socketPath: string, urlPath: string): Promise<T | null> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath, path: urlPath, method: 'GET', timeout: 2000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { text += d })
      res.on('end', () => { try { resolve(JSON.parse(text) as T) } catch { resolve(null) } })
    })
    req.on('error', () => resolve(null))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}

interface StatsView { drops: Record<string, number>; underlay: { rxBytes: number; txBytes: number }; fdb: { entries: number }; pods: Record<string, unknown> }

/** p99 and max event-loop delay (ms) since the previous scrape, from the host's metrics endpoint; null if unreachable. */
async function loopDelay(lab: Lab, host: Host): Promise<{ p99: number; max: number } | null> {
  const r = await lab.execAsync(host.ns, ['curl', '-s', '-m', '2', 'http://127.0.0.1:9464/metrics'], 5000)
  if (r.code !== 0) return null
  const p99 = /tapestry_event_loop_delay_seconds\{quantile="0\.99"\} ([0-9.e+-]+)/.exec(r.stdout)
  const max = /tapestry_event_loop_delay_max_seconds ([0-9.e+-]+)/.exec(r.stdout)
  if (!p99 || !max) return null
  return { p99: Number(p99[1]) * 1000, max: Number(max[1]) * 1000 }
}

interface Sample {
  t: number
  host: string
  rssKiB: number | null
  loopP99Ms: number | null
  loopMaxMs: number | null
  drops: Record<string, number> | null
  underlayTxBytes: number | null
  underlayRxBytes: number | null
  fdbEntries: number | null
  pods: number | null
}

// ---- RSS verdict

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** Least-squares slope of (t s, v KiB) in KiB per minute. */
function slopePerMin(points: { t: number; v: number }[]): number {
  const n = points.length
  if (n < 2) return 0
  const mt = points.reduce((s, p) => s + p.t, 0) / n
  const mv = points.reduce((s, p) => s + p.v, 0) / n
  let num = 0
  let den = 0
  for (const p of points) { num += (p.t - mt) * (p.v - mv); den += (p.t - mt) ** 2 }
  return den === 0 ? 0 : (num / den) * 60
}

interface RssVerdict { warmupKiB: number; maxKiB: number; finalKiB: number; slopeKiBPerMin: number; slopeJudged: boolean; grew: string | null }

function rssVerdict(samples: Sample[], runS: number, minutes: number): RssVerdict {
  const pts = samples.filter((s) => s.rssKiB !== null).map((s) => ({ t: s.t, v: s.rssKiB as number }))
  const warmEnd = Math.min(WARMUP_MAX_S, runS * WARMUP_FRACTION)
  const warm = pts.filter((p) => p.t >= warmEnd).slice(0, 5).map((p) => p.v)
  const warmupKiB = median(warm)
  const finalKiB = median(pts.slice(-5).map((p) => p.v))
  const slope = slopePerMin(pts.filter((p) => p.t >= runS / 2))
  const slopeJudged = minutes >= RSS_SLOPE_MIN_RUN_MIN
  let grew: string | null = null
  if (finalKiB > RSS_GROWTH_FACTOR * warmupKiB) grew = `final RSS ${finalKiB} KiB > ${RSS_GROWTH_FACTOR} x ${warmupKiB} KiB after warm-up`
  else if (slopeJudged && slope > RSS_SLOPE_LIMIT_KIB_PER_MIN) grew = `RSS slope over the second half ${slope.toFixed(0)} KiB/min > ${RSS_SLOPE_LIMIT_KIB_PER_MIN}`
  return { warmupKiB, maxKiB: Math.max(...pts.map((p) => p.v)), finalKiB, slopeKiBPerMin: slope, slopeJudged, grew }
}

// ---- the run

interface Pod { name: string; ns: string; ip: string; mac: string }

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2))
  const why = unavailable()
  if (why) { process.stderr.write(`soak: cannot run: ${why}\n`); return 2 }
  const runS = Math.round(opts.minutes * 60)
  const lab = new Lab()
  const failures: string[] = []
  try {
    const c = new Cluster(lab)
    const a = c.addHost('ha', 1)
    const b = c.addHost('hb', 2)
    const net = (range: string) => [{ name: 'blue', vni: VNI, subnet: '10.244.0.0/16', gateway: '10.244.0.1', podRange: range }]
    const mk = (name: string, host: number, n: number): Pod => ({ name, ns: c.podNs(name), ip: `10.244.${host}.${n}`, mac: `02:00:0a:f4:0${host}:0${n}` })
    const a1 = mk('a1', 1, 2), a2 = mk('a2', 1, 3), b1 = mk('b1', 2, 2), b2 = mk('b2', 2, 3)
    const pod = (p: Pod) => ({ name: p.name, network: 'blue', netns: p.ns, ip: `${p.ip}/16`, mac: p.mac })
    const sock = { [a.name]: apiSocket(c.dir, a.name), [b.name]: apiSocket(c.dir, b.name) }
    progress('starting agents')
    await c.startAgent(a, hostConfig(a, c.hosts, net('10.244.1.128/25'), [pod(a1), pod(a2)], { api: { socket: sock[a.name] } }))
    await c.startAgent(b, hostConfig(b, c.hosts, net('10.244.2.128/25'), [pod(b1), pod(b2)], { api: { socket: sock[b.name] } }))
    const churnNs = { [a.name]: [c.podNs('ca0'), c.podNs('ca1'), c.podNs('ca2')], [b.name]: [c.podNs('cb0'), c.podNs('cb1'), c.podNs('cb2')] }
    for (const [p, q] of [[a1, b1], [a2, b2], [b1, a2], [b2, a1]]) {
      const r = await lab.execAsync(p.ns, ['ping', '-c', '2', '-i', '0.1', '-W', '2', q.ip])
      if (r.code !== 0) throw new Error(`warm-up ping ${p.name} -> ${q.name} failed: ${r.stdout}${r.stderr}`)
    }
    for (const p of [a1, a2, b1, b2]) lab.exec(p.ns, ['sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1'])
    const pids = { [a.name]: agentPid(c, a), [b.name]: agentPid(c, b) }

    // Servers.
    const servers: Proc[] = [
      lab.spawn(b1.ns, ['iperf3', '-s', '-p', '5201', '-1', '-J']),
      lab.spawn(a2.ns, ['iperf3', '-s', '-p', '5202', '-1', '-J']),
      lab.spawn(b2.ns, ['iperf3', '-s', '-p', '5203', '-1', '-J']),
      lab.spawn(b1.ns, [process.execPath, '-e', SHORT_SERVER_JS, '7100']),
    ]
    await waitFor('servers listening', () =>
      lab.exec(b1.ns, ['ss', '-ltn']).includes(':5201') && lab.exec(a2.ns, ['ss', '-ltn']).includes(':5202') &&
      lab.exec(b2.ns, ['ss', '-ltn']).includes(':5203') && servers[3].stdout().includes('listening'), 15_000)
    const deadline = Date.now() + runS * 1000
    progress(`traffic for ${runS} s: TCP 2 x ${opts.tcpMbit} Mbit/s, UDP ${opts.udpMbit} Mbit/s, short connections, pod churn every ${opts.churnS} s`)
    const secs = String(runS)
    const loads = {
      tcp1: lab.execAsync(a1.ns, ['iperf3', '-c', b1.ip, '-p', '5201', '-t', secs, '-b', `${opts.tcpMbit}M`, '-J'], (runS + 60) * 1000),
      tcp2: lab.execAsync(b2.ns, ['iperf3', '-c', a2.ip, '-p', '5202', '-t', secs, '-b', `${opts.tcpMbit}M`, '-J'], (runS + 60) * 1000),
      udp: lab.execAsync(a2.ns, ['iperf3', '-c', b2.ip, '-p', '5203', '-u', '-b', `${opts.udpMbit}M`, '-l', '1200', '-t', secs, '-J'], (runS + 60) * 1000),
      shortCross: lab.execAsync(a2.ns, [process.execPath, '-e', SHORT_CLIENT_JS, b1.ip, '7100', secs, '2', '16384'], (runS + 60) * 1000),
      shortLocal: lab.execAsync(b2.ns, [process.execPath, '-e', SHORT_CLIENT_JS, b1.ip, '7100', secs, '2', '16384'], (runS + 60) * 1000),
    }

    // Pod churn.
    const churn = { added: 0, deleted: 0, pingOk: 0, failures: [] as string[] }
    const churnLoop = (async () => {
      const live: { host: Host; name: string; ns: string; at: number }[] = []
      const target = { [a.name]: b1, [b.name]: a1 }
      let i = 0
      while (Date.now() + opts.churnS * 1000 < deadline) {
        const host = i % 2 === 0 ? a : b
        for (const old of live.filter((p) => p.at <= i - 2)) {
          const r = await lab.execAsync(old.host.ns, [process.execPath, TAPESTRY_BIN, 'pod', 'del', old.name, '--json', '--socket', sock[old.host.name]], 20_000)
          if (r.code === 0 && JSON.parse(r.stdout).deleted === true) churn.deleted++
          else churn.failures.push(`pod del ${old.name}: ${r.stderr.trim()}`)
          live.splice(live.indexOf(old), 1)
        }
        const used = new Set(live.map((p) => p.ns))
        const ns = churnNs[host.name].find((n) => !used.has(n))
        if (ns) {
          const name = `churn-${host.name}-${i}`
          const r = await lab.execAsync(host.ns, [process.execPath, TAPESTRY_BIN, 'pod', 'add', name, '--netns', ns, '--network', 'blue', '--json', '--socket', sock[host.name]], 20_000)
          if (r.code !== 0) churn.failures.push(`pod add ${name}: ${r.stderr.trim()}`)
          else {
            churn.added++
            live.push({ host, name, ns, at: i })
            const p = await lab.execAsync(ns, ['ping', '-c', '3', '-i', '0.2', '-W', '2', target[host.name].ip], 20_000)
            const m = /(\d+) received/.exec(p.stdout)
            if (m && Number(m[1]) > 0) churn.pingOk++
            else churn.failures.push(`${name} (${JSON.parse(r.stdout).ip}) -> ${target[host.name].name}: ${p.stdout.trim().split('\n').slice(-2).join(' ')}`)
          }
        }
        i++
        const wait = Math.min(opts.churnS * 1000, deadline - Date.now())
        if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      }
      for (const old of live) {
        const r = await lab.execAsync(old.host.ns, [process.execPath, TAPESTRY_BIN, 'pod', 'del', old.name, '--json', '--socket', sock[old.host.name]], 20_000)
        if (r.code === 0) churn.deleted++
        else churn.failures.push(`pod del ${old.name}: ${r.stderr.trim()}`)
      }
    })()

    // Sampling, every second, until the loads are done.
    const samples: Sample[] = []
    let sampling = true
    const sampleLoop = (async () => {
      while (sampling) {
        const tick = Date.now()
        const t = Math.round((tick - (deadline - runS * 1000)) / 100) / 10
        for (const h of [a, b]) {
          const [st, lag] = await Promise.all([getJson<StatsView>(sock[h.name], '/v1/stats'), loopDelay(lab, h)])
          samples.push({
            t, host: h.name, rssKiB: rssKiB(pids[h.name]), loopP99Ms: lag?.p99 ?? null, loopMaxMs: lag?.max ?? null,
            drops: st?.drops ?? null, underlayTxBytes: st?.underlay.txBytes ?? null, underlayRxBytes: st?.underlay.rxBytes ?? null,
            fdbEntries: st?.fdb.entries ?? null, pods: st ? Object.keys(st.pods).length : null,
          })
        }
        if (Math.round(t) % 10 === 0) {
          const last = samples.slice(-2)
          progress(`t=${t}s rss ${last.map((s) => `${s.host} ${((s.rssKiB ?? 0) / 1024).toFixed(0)} MiB`).join(', ')}; churn +${churn.added}/-${churn.deleted}`)
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - tick))))
      }
    })()

    const done = Object.fromEntries(await Promise.all(Object.entries(loads).map(async ([k, p]) => [k, await p] as const)))
    await churnLoop
    sampling = false
    await sampleLoop
    for (const s of servers.slice(0, 3)) await Promise.race([s.exited, new Promise((r) => setTimeout(r, 5000))])
    progress('loads finished')

    // ---- verdicts
    for (const h of [a, b]) {
      const p = c.agent(h)
      if (!p || p.child.exitCode !== null || p.child.signalCode !== null) failures.push(`the agent of ${h.name} exited: ${p?.stderr().slice(-500)}`)
    }
    const iperf = (name: string, r: { code: number | null; stdout: string; stderr: string }) => {
      if (r.code !== 0) { failures.push(`${name}: iperf3 exited ${r.code}: ${r.stderr.slice(-300)}${r.stdout.slice(-300)}`); return null }
      try { return JSON.parse(r.stdout) } catch { failures.push(`${name}: iperf3 printed no JSON`); return null }
    }
    const tcp1 = iperf('TCP a1 -> b1', done.tcp1)
    const tcp2 = iperf('TCP b2 -> a2', done.tcp2)
    const udp = iperf('UDP a2 -> b2', done.udp)
    let udpServer: { end?: { sum?: { lost_percent?: number; packets?: number; lost_packets?: number } } } | null = null
    try { udpServer = JSON.parse(servers[2].stdout()) } catch { /* reported below */ }
    const udpLoss = udpServer?.end?.sum?.lost_percent ?? udp?.end?.sum?.lost_percent ?? NaN
    if (!(udpLoss <= UDP_LOSS_LIMIT_PCT)) failures.push(`UDP a2 -> b2 lost ${udpLoss}% (limit ${UDP_LOSS_LIMIT_PCT}%)`)
    const short = (name: string, r: { code: number | null; stdout: string; stderr: string }) => {
      let j: { ok: number; failed: number; errors: string[] } | null = null
      try { j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') } catch { /* below */ }
      if (r.code !== 0 || !j) { failures.push(`${name}: client exited ${r.code}: ${r.stderr.slice(-300)}`); return { ok: 0, failed: 0, errors: [] as string[] } }
      if (j.failed > 0) failures.push(`${name}: ${j.failed} of ${j.ok + j.failed} short connections failed (${[...new Set(j.errors)].join('; ')})`)
      if (j.ok === 0) failures.push(`${name}: no short connection completed`)
      return j
    }
    const shortCross = short('short connections a2 -> b1', done.shortCross)
    const shortLocal = short('short connections b2 -> b1', done.shortLocal)
    if (churn.failures.length > 0) failures.push(`pod churn: ${churn.failures.length} failure(s): ${churn.failures.slice(0, 5).join(' | ')}`)
    if (churn.added === 0) failures.push('pod churn: no pod was added')

    const perHost = [a, b].map((h) => {
      const hs = samples.filter((s) => s.host === h.name)
      const rss = rssVerdict(hs, runS, opts.minutes)
      if (rss.grew) failures.push(`${h.name}: ${rss.grew}`)
      const lagP99 = hs.map((s) => s.loopP99Ms).filter((v): v is number => v !== null)
      const lagMax = hs.map((s) => s.loopMaxMs).filter((v): v is number => v !== null)
      const first = hs.find((s) => s.drops !== null)
      const last = [...hs].reverse().find((s) => s.drops !== null)
      const drops: Record<string, number> = {}
      if (first?.drops && last?.drops) for (const [k, v] of Object.entries(last.drops)) if (v - (first.drops[k] ?? 0) > 0) drops[k] = v - (first.drops[k] ?? 0)
      const spanS = last && first ? last.t - first.t : 0
      const txMbit = last && first && spanS > 0 ? (((last.underlayTxBytes ?? 0) - (first.underlayTxBytes ?? 0)) * 8) / spanS / 1e6 : NaN
      const rxMbit = last && first && spanS > 0 ? (((last.underlayRxBytes ?? 0) - (first.underlayRxBytes ?? 0)) * 8) / spanS / 1e6 : NaN
      const maxOf = (xs: number[]) => (xs.length > 0 ? Math.max(...xs) : NaN)
      return { host: h.name, rss, lag: { p99MedianMs: median(lagP99), p99MaxMs: maxOf(lagP99), maxMs: maxOf(lagMax), samples: lagP99.length }, drops, underlayTxMbit: txMbit, underlayRxMbit: rxMbit, fdbEntriesMax: Math.max(...hs.map((s) => s.fdbEntries ?? 0)) }
    })

    const mbit = (j: { end?: { sum_received?: { bits_per_second?: number }; sum?: { bits_per_second?: number } } } | null) =>
      j ? ((j.end?.sum_received?.bits_per_second ?? j.end?.sum?.bits_per_second ?? 0) / 1e6) : NaN
    const summary = {
      tcpA1B1Mbit: mbit(tcp1), tcpB2A2Mbit: mbit(tcp2), udpMbit: mbit(udp), udpLossPct: udpLoss,
      shortConnections: { crossHost: { ok: shortCross.ok, failed: shortCross.failed }, sameHost: { ok: shortLocal.ok, failed: shortLocal.failed } },
      churn: { added: churn.added, deleted: churn.deleted, pingOk: churn.pingOk, failures: churn.failures },
    }

    // ---- report
    const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-')
    const lines = [
      `# Soak: ${opts.minutes} min, 2 hosts x 2 pods (${new Date().toISOString()})`,
      '',
      '| host | RSS after warm-up MiB | RSS max MiB | RSS final MiB | RSS slope 2nd half MiB/min | loop delay p99 median / max ms | loop delay max ms | underlay tx / rx Mbit/s | drops |',
      '|---|---|---|---|---|---|---|---|---|',
      ...perHost.map((h) => `| ${h.host} | ${f(h.rss.warmupKiB / 1024, 1)} | ${f(h.rss.maxKiB / 1024, 1)} | ${f(h.rss.finalKiB / 1024, 1)} | ${f(h.rss.slopeKiBPerMin / 1024, 2)}${h.rss.slopeJudged ? '' : ' (not judged)'} | ${f(h.lag.p99MedianMs, 1)} / ${f(h.lag.p99MaxMs, 1)} | ${f(h.lag.maxMs, 1)} | ${f(h.underlayTxMbit)} / ${f(h.underlayRxMbit)} | ${Object.entries(h.drops).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'} |`),
      '',
      '| traffic | result |',
      '|---|---|',
      `| TCP a1 -> b1 (iperf3, paced ${opts.tcpMbit} Mbit/s) | ${f(summary.tcpA1B1Mbit)} Mbit/s |`,
      `| TCP b2 -> a2 (iperf3, paced ${opts.tcpMbit} Mbit/s) | ${f(summary.tcpB2A2Mbit)} Mbit/s |`,
      `| UDP a2 -> b2 (iperf3 -u ${opts.udpMbit} Mbit/s) | ${f(summary.udpMbit)} Mbit/s, loss ${f(udpLoss, 3)}% |`,
      `| short TCP connections a2 -> b1 (cross-host) | ${shortCross.ok} ok, ${shortCross.failed} failed |`,
      `| short TCP connections b2 -> b1 (same host) | ${shortLocal.ok} ok, ${shortLocal.failed} failed |`,
      `| pod churn (add, ping across, delete) | ${churn.added} added, ${churn.deleted} deleted, ${churn.pingOk} pinged, ${churn.failures.length} failures |`,
      '',
      failures.length === 0 ? 'verdict: PASS' : `verdict: FAIL\n${failures.map((x) => `- ${x}`).join('\n')}`,
    ]
    process.stdout.write(lines.join('\n') + '\n')
    const dir = path.join(REPO, 'bench', 'results')
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, `soak-${new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')}.json`)
    const commit = sh('git', ['-C', REPO, 'rev-parse', '--short=12', 'HEAD'], { allowFail: true }).trim()
    fs.writeFileSync(file, JSON.stringify({ options: opts, commit, node: process.version, verdict: failures.length === 0 ? 'pass' : 'fail', failures, summary, perHost, samples }, null, 2))
    progress(`results in ${path.relative(REPO, file)}`)
  } finally {
    await lab.cleanup()
  }
  return failures.length === 0 ? 0 : 1
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`soak: ${(err as Error).stack ?? err}\n`)
  process.exit(1)
})

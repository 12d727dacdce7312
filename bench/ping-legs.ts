/**
 * Where a ping waits on the Tapestry path: the round trip split into its legs.
 *
 *   node dist/bench/ping-legs.js [--pings N] [--idle] [--config JSON]
 *
 * Builds the path of bench/e2e.ts (two hosts, one pod each; `--config` adds
 * agent config keys, e.g. '{"priorityLane":false,"rxBatchBytes":0}'), warms it
 * up, starts tcpdump on the client pod's eth0, both hosts' underlay interfaces
 * and the server pod's eth0, then pings N times 10 ms apart (default 300)
 * beside a 1-stream TCP transfer in the same direction (`--idle`: without it).
 * Each echo request and reply is found in every capture by its ICMP id and
 * sequence number (inside the VXLAN packet on the underlay), and the time from
 * one capture point to the next is a leg:
 *
 *   request: pod A eth0 -> host A underlay   agent A (TAP read, encap, send)
 *            host A underlay -> host B underlay   the wire (a veth pair)
 *            host B underlay -> pod B eth0   agent B (socket read, decap, TAP write)
 *   reply:   the same backwards.
 *
 * Prints p50, p90 and p99 of each leg in ms, and the ping's own p50/p99. The four
 * tcpdumps cost CPU on this 2-core machine, so the ping is slower than in
 * bench/latency.ts; compare legs of one run, or runs of this tool. Needs root,
 * tcpdump, iperf3; cleans up like bench/e2e.ts.
 */
import { Lab, sh } from '../test/harness/lab'
import { buildTapestry } from './lib/e2e-paths'
import { iperfTcp, percentile, pingRtt, pingUnderLoad } from './lib/e2e-loads'
import { echoTimes, lastEchoId } from './lib/echo-times'

function usage(): never {
  process.stderr.write('usage: node dist/bench/ping-legs.js [--pings N] [--idle] [--config JSON]\n')
  process.exit(2)
}

/** The namespace a process lives in (`ip netns identify`). */
function netnsOf(pid: number): string {
  const ns = sh('ip', ['netns', 'identify', String(pid)]).trim()
  if (ns === '') throw new Error(`process ${pid} is in no named namespace`)
  return ns
}

/** The namespace's one interface that is neither loopback nor a TAP of the agent's. */
function underlayIf(lab: Lab, ns: string): string {
  const names = lab.exec(ns, ['ip', '-o', 'link']).split('\n').map((l) => (l.split(': ')[1] ?? '').split('@')[0])
  const found = names.filter((n) => n !== '' && n !== 'lo' && !n.startsWith('tap'))
  if (found.length !== 1) throw new Error(`underlay interface of ${ns}: ${found.join(', ') || 'none'}`)
  return found[0]
}

async function main(): Promise<number> {
  const args = process.argv.slice(2)
  let pings = 300
  let idle = false
  let config: Record<string, unknown> = {}
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--pings') pings = Number(args[++i])
    else if (args[i] === '--idle') idle = true
    else if (args[i] === '--config') config = JSON.parse(args[++i] ?? usage()) as Record<string, unknown>
    else usage()
  }
  if (!Number.isInteger(pings) || pings < 10) usage()
  if (process.getuid?.() !== 0) { process.stderr.write('bench ping-legs: needs root\n'); return 1 }
  const lab = new Lab()
  try {
    const p = await buildTapestry(lab, config)
    await iperfTcp(lab, p.ep, 2, 1).catch(() => undefined)
    await pingRtt(lab, p.ep, 100).catch(() => undefined)
    const [ha, hb] = p.dataplanePids.map(netnsOf)
    const points = [
      { name: 'pod A eth0', ns: p.ep.clientNs, dev: 'eth0', filter: 'icmp' },
      { name: 'host A underlay', ns: ha, dev: underlayIf(lab, ha), filter: 'udp and udp[39] = 1' },
      { name: 'host B underlay', ns: hb, dev: underlayIf(lab, hb), filter: 'udp and udp[39] = 1' },
      { name: 'pod B eth0', ns: p.ep.serverNs, dev: 'eth0', filter: 'icmp' },
    ]
    const dumps = points.map((pt) => lab.spawn(pt.ns, ['tcpdump', '-l', '-n', '-tt', '-i', pt.dev, pt.filter]))
    await new Promise((r) => setTimeout(r, 1000))
    const ping = idle ? await pingRtt(lab, p.ep, pings) : await pingUnderLoad(lab, p.ep, pings)
    await new Promise((r) => setTimeout(r, 500))
    for (const d of dumps) d.child.kill('SIGINT')
    await Promise.all(dumps.map((d) => d.exited))
    // The measured ping's id: the last echo id pod A's capture saw.
    const id = lastEchoId(dumps[0].stdout())
    if (id === null) throw new Error(`no echo request captured on pod A: ${dumps[0].stderr()}`)
    const rows: string[] = []
    for (const kind of ['request', 'reply'] as const) {
      const order = kind === 'request' ? [0, 1, 2, 3] : [3, 2, 1, 0]
      const times = dumps.map((d) => echoTimes(d.stdout(), kind, id))
      for (let k = 0; k < 3; k++) {
        const from = times[order[k]]
        const to = times[order[k + 1]]
        const d: number[] = []
        for (const [seq, t] of from) { const u = to.get(seq); if (u !== undefined) d.push((u - t) * 1000) }
        d.sort((a, b) => a - b)
        const cell = d.length === 0 ? '- | - | -' : [50, 90, 99].map((q) => percentile(d, q).toFixed(3)).join(' | ')
        rows.push(`| ${kind} | ${points[order[k]].name} -> ${points[order[k + 1]].name} | ${d.length} | ${cell} |`)
      }
    }
    const bulk = ping.bulk ? `, beside ${ping.bulk.gbitPerSec.toFixed(2)} Gbit/s of TCP` : ''
    process.stdout.write([
      `## Ping legs (${pings} pings, ${idle ? 'idle' : 'under a 1-stream TCP transfer'}; config ${JSON.stringify(config)})`,
      '',
      `ping p50 ${ping.p50Ms.toFixed(3)} ms, p99 ${ping.p99Ms.toFixed(3)} ms${bulk}`,
      '',
      '| echo | leg | matched | p50 ms | p90 ms | p99 ms |',
      '|:--|:--|--:|--:|--:|--:|',
      ...rows,
      '',
    ].join('\n'))
    return 0
  } finally {
    await lab.cleanup()
  }
}

main().then((code) => process.exit(code), (err) => { process.stderr.write(`bench ping-legs: ${err instanceof Error ? err.stack : err}\n`); process.exit(1) })

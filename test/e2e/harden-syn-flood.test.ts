/**
 * SYN flood to a service VIP. Host A has a client pod and an attacker pod and
 * runs with a small conntrack.maxConnections; two backends on host B sit
 * behind a Maglev VIP. The client holds long-lived connections through the
 * VIP, some sending all the time and some idle (established, last spoke a few
 * seconds ago). The attacker sends tens of thousands of SYNs to VIP:80 from
 * its own address and random source ports, many times maxConnections, in a
 * few seconds (its kernel resets the SYN-ACKs: those entries become CLOSE).
 *
 * Then, as conntrack.ts promises (eviction takes the cheap LRU list first:
 * half-open, unassured, TIME_WAIT/CLOSE):
 *  - the table never holds more than maxConnections (sampled from the
 *    tapestry_conntrack_connections gauge during the flood, and
 *    `conntrack list --json` during and after); nothing was refused (full);
 *    the flood's entries were evicted and recycled;
 *  - every held connection keeps its own conntrack row, ESTABLISHED and
 *    assured, on the same backend, during and after the flood (none was
 *    evicted and picked up again mid-stream: picked_up does not move);
 *  - data keeps flowing on the active ones during the flood (bytes acked by
 *    the peer grow), and every held connection ends cleanly with the backend
 *    it started on having received exactly what was sent;
 *  - new connections through the VIP succeed after the flood.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { Lab, waitFor } from '../harness/lab'
import { HttpResult, Stream, applyServices, client, openStream, startBackend, svc, svcCluster, tapestryJson } from '../harness/svc'
import { assertAgentAlive } from '../harness/harden'

/** The python fixture is not compiled: read it from the source tree (dist/test/e2e -> test/e2e/fixtures). */
const SYN_FLOOD = path.join(__dirname, '..', '..', '..', 'test', 'e2e', 'fixtures', 'syn-flood.py')

const MAX_CONN = 512
const VIP = '10.96.7.10'
const PORTS = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'sink', port: 9000, targetPort: 9000, protocol: 'TCP' }]
const FLOOD_SYNS = 40_000
const FLOOD_RATE = 10_000
const FLOOD_MAX_S = 8

interface CtRow { id: number; proto: string; state: string; assured: boolean; client: string; vip: string; backend: string; service: string | null }
interface Stats { conntrack: Record<string, number>; services: { drops: Record<string, number>; events: Record<string, number> } }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

test('a SYN flood to a VIP cannot grow conntrack past maxConnections; established connections keep working', { timeout: 60_000 }, async (t) => {
  const t0 = Date.now()
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const sc = await svcCluster(lab, { sfa: ['sfc', 'sfx'], sfb: ['sb1', 'sb2'] },
    (h) => (h.name === 'sfa' ? { conntrack: { maxConnections: MAX_CONN } } : {}))
  const host = sc.hosts.sfa
  const cli = sc.pods.sfc
  const attacker = sc.pods.sfx
  const backends = [sc.pods.sb1, sc.pods.sb2]
  await Promise.all(backends.map((p) => startBackend(lab, p, { http: 8080, sink: 9000 })))
  await applyServices(lab, sc, host, [svc('flood', VIP, backends.map((p) => p.ip), { algorithm: 'maglev' }, PORTS)])

  const statsOf = (): Promise<Stats> => tapestryJson<Stats>(lab, sc, host, ['stats'])
  const ctList = (): Promise<CtRow[]> => tapestryJson<CtRow[]>(lab, sc, host, ['conntrack', 'list'])
  const gauge = async (): Promise<number> => {
    const r = await lab.execAsync(host.ns, ['curl', '-sS', '--max-time', '3', 'http://127.0.0.1:9464/metrics'], 10_000)
    if (r.code !== 0) throw new Error(`metrics scrape failed (${r.code}): ${r.stderr}`)
    const line = r.stdout.split('\n').find((l) => l.startsWith('tapestry_conntrack_connections '))
    if (line === undefined) throw new Error(`no tapestry_conntrack_connections in the scrape`)
    return Number(line.split(' ')[1])
  }
  /** bytes_acked of the client's TCP sockets to the VIP, by local port (`ss -ti` in the client pod). */
  const acked = (): Map<number, number> => {
    const out = lab.exec(cli.ns, ['ss', '-tinH', 'state', 'established', 'dst', VIP])
    const m = new Map<number, number>()
    let port = -1
    for (const line of out.split('\n')) {
      const sock = new RegExp(`^\\s*\\d+\\s+\\d+\\s+${cli.ip.replace(/\./g, '\\.')}:(\\d+)\\s+`).exec(line)
      if (sock) { port = Number(sock[1]); continue }
      const b = /bytes_acked:(\d+)/.exec(line)
      if (b && port >= 0) { m.set(port, Number(b[1])); port = -1 }
    }
    return m
  }

  // 1) Held connections: 4 sending 1 KiB every 50 ms, 3 idle once established.
  const active: Stream[] = []
  const idle: Stream[] = []
  for (let i = 0; i < 4; i++) active.push(await openStream(lab, cli, VIP, 9000, 1024, 50))
  for (let i = 0; i < 3; i++) idle.push(await openStream(lab, cli, VIP, 9000, 0, 100))
  const held = [...active, ...idle]
  const rowOf = (rows: CtRow[], s: Stream): CtRow | undefined => rows.find((r) => r.client === `${cli.ip}:${s.localPort}` && r.vip === `${VIP}:9000`)
  const checkHeld = (rows: CtRow[], when: string, ids?: Map<Stream, number>): void => {
    for (const s of held) {
      const r = rowOf(rows, s)
      assert.ok(r, `${when}: the held connection from port ${s.localPort} lost its conntrack row (${rows.length} rows)`)
      assert.deepEqual({ state: r.state, assured: r.assured, backend: r.backend }, { state: 'ESTABLISHED', assured: true, backend: `${sc.pods[s.backend].ip}:9000` },
        `${when}: the held connection from port ${s.localPort}`)
      if (ids) assert.equal(r.id, ids.get(s), `${when}: the held connection from port ${s.localPort} is a new record (evicted and picked up again?)`)
    }
  }
  const rows0 = await ctList()
  checkHeld(rows0, 'before the flood')
  const ids = new Map(held.map((s) => [s, rowOf(rows0, s)!.id]))
  await waitFor('the active streams have sent data', () => { const a = acked(); return active.every((s) => (a.get(s.localPort) ?? 0) > 0) }, 5_000)
  const acked0 = acked()
  const before = await statsOf()

  // 2) The flood, with the table size sampled while it runs.
  const floodStart = Date.now()
  const floodRun = lab.execAsync(attacker.ns, ['python3', SYN_FLOOD, attacker.ip, VIP, '80', String(FLOOD_SYNS), String(FLOOD_MAX_S), String(FLOOD_RATE)], (FLOOD_MAX_S + 20) * 1000)
  let flooding = true
  void floodRun.finally(() => { flooding = false })
  const samples: number[] = []
  const sampling = (async () => {
    while (flooding) {
      samples.push(await gauge())
      await sleep(100)
    }
  })()
  // Mid-flood: the table as listed, and the held connections in it.
  await sleep(Math.min(2_000, (FLOOD_SYNS / FLOOD_RATE) * 500))
  const rowsMid = await ctList()
  const ackedMid = acked()
  const flood = await floodRun
  await sampling
  const floodMs = Date.now() - floodStart
  assert.equal(flood.code, 0, `syn-flood.py failed: ${flood.stderr}`)
  const sent = JSON.parse(flood.stdout.trim().split('\n').pop()!) as { sent: number; seconds: number; errors: number }
  samples.push(await gauge())
  const after = await statsOf()
  const rowsAfter = await ctList()
  const acked1 = acked()
  assertAgentAlive(sc.c, host)

  const delta = (k: string): number => after.conntrack[k] - before.conntrack[k]
  const ev = (k: string): number => after.services.events[k] - before.services.events[k]
  t.diagnostic(JSON.stringify({
    flood: sent, floodMs, created: delta('created'), evicted: delta('evicted'), expired: delta('expired'), deleted: delta('deleted'),
    full: delta('full'), newConnections: ev('new_connections'), pickedUp: ev('picked_up'), reopened: ev('reopened'), strayRst: ev('stray_rst'),
    samples: samples.length, maxSample: Math.max(...samples), rowsMid: rowsMid.length, rowsAfter: rowsAfter.length,
    states: rowsAfter.reduce<Record<string, number>>((m, r) => { m[r.state] = (m[r.state] ?? 0) + 1; return m }, {}),
  }))

  // 3) The flood was real and went through the service path: many times the table's size.
  assert.ok(sent.sent >= 20_000, `the flood sent only ${sent.sent} SYNs`)
  assert.ok(delta('created') >= 4 * MAX_CONN, `only ${delta('created')} connections created by ${sent.sent} SYNs (max ${MAX_CONN})`)

  // The table never grew past its limit, and made room by evicting (the flood's own) entries; nothing was refused.
  assert.ok(samples.length >= 5, `only ${samples.length} samples of the table size during the flood`)
  assert.ok(Math.max(...samples) <= MAX_CONN, `conntrack held ${Math.max(...samples)} connections (max ${MAX_CONN}): ${samples.join(' ')}`)
  assert.ok(Math.max(...samples) >= MAX_CONN * 0.9, `the flood never filled the table: ${samples.join(' ')}`)
  assert.ok(rowsMid.length <= MAX_CONN && rowsAfter.length <= MAX_CONN, `rows listed: ${rowsMid.length} mid-flood, ${rowsAfter.length} after (max ${MAX_CONN})`)
  assert.ok(delta('evicted') > 0, `nothing evicted: ${JSON.stringify(after.conntrack)}`)
  assert.ok(delta('evicted') + delta('expired') + delta('deleted') >= delta('created') - MAX_CONN,
    `the flood's entries were not recycled: ${JSON.stringify({ before: before.conntrack, after: after.conntrack })}`)
  assert.equal(delta('full'), 0, 'a new connection was refused: the cheap list should always have had room')
  assert.equal(after.services.drops.conntrack_full - before.services.drops.conntrack_full, 0)

  // Held connections kept their rows (same record: not evicted and picked up again).
  checkHeld(rowsMid, 'mid-flood', ids)
  checkHeld(rowsAfter, 'after the flood', ids)
  assert.equal(ev('picked_up'), 0, 'a connection was picked up mid-stream: an established entry was lost')

  // Data flowed on the active connections during the flood.
  for (const s of active) {
    const [a0, am, a1] = [acked0.get(s.localPort), ackedMid.get(s.localPort), acked1.get(s.localPort)]
    assert.ok(a0 !== undefined && am !== undefined && a1 !== undefined, `the client socket from port ${s.localPort} is still established`)
    assert.ok(am > a0 && a1 > am, `bytes acked on port ${s.localPort} during the flood: ${a0} -> ${am} -> ${a1}`)
  }

  // 4) New connections through the VIP work after the flood.
  const fresh = await client<HttpResult>(lab, cli, ['http', VIP, 80, 10])
  assert.equal(fresh.ok, 10, `new connections after the flood: ${JSON.stringify(fresh)}`)

  // Every held connection ends cleanly on its backend, which got exactly what was sent.
  const done = await Promise.all(held.map((s) => s.stop()))
  held.forEach((s, i) => {
    const d = done[i]
    assert.equal(d.reply.name, s.backend, `port ${s.localPort}: ${JSON.stringify(d)}`)
    assert.equal(d.reply.bytes, d.sent.bytes, `port ${s.localPort}: ${JSON.stringify(d)}`)
    assert.equal(d.reply.sha256, d.sent.sha256, `port ${s.localPort}: ${JSON.stringify(d)}`)
    if (active.includes(s)) assert.ok(d.sent.bytes > 0)
    else assert.equal(d.sent.bytes, 0)
  })
  t.diagnostic(`test body ${Date.now() - t0} ms; active streams sent ${done.slice(0, active.length).map((d) => d.sent.bytes).join(', ')} bytes`)
})

/**
 * Hardening: established TCP connections through a Maglev VIP survive a
 * `kill -9` of the client's agent (the one that does the DNAT and holds the
 * only conntrack state).
 *
 * Client pod on host A, three backends on host B, one Maglev service applied
 * over A's API (so it is restored from the state file beside the socket, not
 * from the config). 20 connections through the VIP: 12 send a chunk every
 * 250 ms, 8 are idle. Host A's agent is killed with SIGKILL and started again
 * on the same config. Its conntrack, FDB and ARP tables start empty, so:
 *  - the service is back (restored from the state file), Maglev again;
 *  - the first packet of each flow after the restart (a retransmitted data
 *    segment, or the idle ones' FIN) is an ACK of an unknown flow: it is
 *    balanced by hash, not dropped, and lands on the same backend; the first
 *    one may still be lost while the agent ARPs for the backend, TCP
 *    retransmits;
 *  - `tapestry conntrack list --json` shows the active flows rebuilt as
 *    ESTABLISHED (assured once the backend answered) on their old backends;
 *  - every connection then finishes with the byte count and hash it sent,
 *    answered by the backend it had before (>= 80% required; all expected);
 *  - `tapestry stats --json` counts them as picked_up;
 *  - a fresh connection works.
 * Run with one datapath thread and with workers: 2, where a connection's
 * source port may be remapped so its replies reach the worker that holds it
 * (Conntrack.pin): the restarted agent must choose the same port again.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, waitFor } from '../harness/lab'
import { HttpResult, Stream, applyServices, client, openStream, startBackend, svc, svcCluster, svcList, tapestryJson } from '../harness/svc'

interface CtRow { proto: string; state: string; assured: boolean; client: string; vip: string; backend: string; source: string; service: string | null }
interface Stats { services: { events: Record<string, number>; drops: Record<string, number> } }

const PORTS = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'sink', port: 9000, targetPort: 9000, protocol: 'TCP' }]
const ACTIVE = 12
const IDLE = 8

for (const workers of [1, 2]) test(`kill -9 of the client's agent (workers: ${workers}): established Maglev connections through a VIP survive the restart`, { timeout: 90_000 }, async (t) => {
  const t0 = Date.now()
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const sc = await svcCluster(lab, { rva: ['rc1'], rvb: ['rb1', 'rb2', 'rb3'] }, () => (workers > 1 ? { workers } : {}))
  const hostA = sc.hosts.rva
  const cli = sc.pods.rc1
  const backends = [sc.pods.rb1, sc.pods.rb2, sc.pods.rb3]
  await Promise.all(backends.map((p) => startBackend(lab, p, { http: 8080, sink: 9000 })))
  const VIP = '10.96.7.10'
  await applyServices(lab, sc, hostA, [svc('web', VIP, backends.map((p) => p.ip), { algorithm: 'maglev' }, PORTS)])

  const streams: { s: Stream; active: boolean }[] = await Promise.all([
    ...Array.from({ length: ACTIVE }, async () => ({ s: await openStream(lab, cli, VIP, 9000, 1000, 250), active: true })),
    ...Array.from({ length: IDLE }, async () => ({ s: await openStream(lab, cli, VIP, 9000, 0, 250), active: false })),
  ])
  const key = (s: Stream): string => `${cli.ip}:${s.localPort}`
  const spread: Record<string, number> = {}
  for (const { s } of streams) spread[s.backend] = (spread[s.backend] ?? 0) + 1
  t.diagnostic(`backends before the restart: ${JSON.stringify(spread)}`)
  // Before: every connection tracked on the backend that greeted it.
  const before = await tapestryJson<CtRow[]>(lab, sc, hostA, ['conntrack', 'list', '--service', 'web'])
  // The source port each backend sees (the client's own, or with workers one chosen for the connection's worker).
  const seen = new Map<string, string>()
  for (const { s } of streams) {
    const row = before.find((r) => r.client === key(s) && r.vip === `${VIP}:9000`)
    assert.equal(row?.backend, `${sc.pods[s.backend].ip}:9000`, `${key(s)} before the restart: ${JSON.stringify(row)}`)
    if (workers === 1) assert.equal(row.source, key(s))
    seen.set(key(s), row.source)
  }
  t.diagnostic(`source ports remapped: ${streams.filter(({ s }) => seen.get(key(s)) !== key(s)).length}/${streams.length}`)
  // Let the active ones carry some data.
  await new Promise((r) => setTimeout(r, 1000))

  // kill -9: no cleanup at all; the pod keeps its TAP.
  const agentA = sc.c.agent(hostA)!
  agentA.child.kill('SIGKILL')
  await agentA.exited
  assert.match(lab.exec(cli.ns, ['ip', '-d', 'link', 'show', 'dev', 'eth0']), /tun type tap/)
  // A short outage with the active clients still writing (their segments are lost and retransmitted).
  await new Promise((r) => setTimeout(r, 500))
  const restartedAt = Date.now()
  const again = await sc.c.startAgent(hostA, sc.configs.get(hostA.name)!)
  t.diagnostic(`agent restarted in ${Date.now() - restartedAt} ms`)
  assert.match(again.stdout(), /"pod re-attached"/)

  // The API-applied service is back, from the state file beside the socket.
  const web = (await svcList(lab, sc, hostA)).find((s) => s.name === 'web')
  assert.equal(web?.algorithm, 'maglev', `service restored: ${JSON.stringify(web)}`)
  assert.deepEqual(web.endpoints.map((e) => e.ip).sort(), backends.map((p) => p.ip).sort())

  // The active flows are rebuilt from their first packet after the restart (no SYN: picked up).
  const active = streams.filter((x) => x.active).map((x) => x.s)
  const idle = streams.filter((x) => !x.active).map((x) => x.s)
  const rowsOf = async (): Promise<CtRow[]> => tapestryJson<CtRow[]>(lab, sc, hostA, ['conntrack', 'list', '--service', 'web'])
  let rows: CtRow[] = []
  const rebuiltAt = await waitFor('active connections rebuilt and answered', async () => {
    rows = await rowsOf()
    return active.every((s) => rows.some((r) => r.client === key(s) && r.vip === `${VIP}:9000` && r.assured)) ? Date.now() : null
  }, 25_000, 200).catch(() => null)
  t.diagnostic(rebuiltAt === null ? 'not every active connection was rebuilt within 25 s' : `active connections rebuilt ${rebuiltAt - restartedAt} ms after the restart`)
  let rebuilt = 0
  for (const s of active) {
    const row = rows.find((r) => r.client === key(s) && r.vip === `${VIP}:9000`)
    if (!row) continue
    rebuilt++
    // The same flow hashes to the same backend: a different one would reset the connection.
    assert.deepEqual({ proto: row.proto, state: row.state, backend: row.backend, source: row.source, service: row.service }, {
      proto: 'tcp', state: 'ESTABLISHED', backend: `${sc.pods[s.backend].ip}:9000`, source: seen.get(key(s)), service: 'default/web',
    }, `${key(s)} after the restart`)
  }
  assert.ok(rebuilt >= Math.ceil(0.8 * ACTIVE), `only ${rebuilt}/${ACTIVE} active connections rebuilt: ${JSON.stringify(rows)}`)
  // The idle ones have not spoken yet: nothing to rebuild.
  const idleSeen = idle.filter((s) => rows.some((r) => r.client === key(s))).length
  t.diagnostic(`idle connections in conntrack before they speak: ${idleSeen}/${IDLE}`)

  // Every connection finishes (the idle ones are picked up by their FIN): same backend, all bytes.
  const results = await Promise.all(streams.map(async ({ s, active: isActive }) => {
    try {
      const done = await s.stop()
      const ok = done.reply.name === s.backend && done.reply.bytes === done.sent.bytes && done.reply.sha256 === done.sent.sha256 &&
        (!isActive || done.sent.bytes > 0)
      if (!ok) t.diagnostic(`${key(s)} finished wrong: was on ${s.backend}, ${JSON.stringify(done)}`)
      return ok
    } catch (err) {
      t.diagnostic(`${key(s)} (${isActive ? 'active' : 'idle'}, on ${s.backend}) failed: ${(err as Error).message.slice(0, 300)}`)
      return false
    }
  }))
  const survivors = results.filter(Boolean).length
  t.diagnostic(`survivors: ${survivors}/${streams.length}`)
  assert.ok(survivors >= Math.ceil(0.8 * streams.length), `only ${survivors}/${streams.length} connections survived the restart`)

  // The restarted agent counted them as picked up mid-stream (its counters start at 0).
  const stats = await tapestryJson<Stats>(lab, sc, hostA, ['stats'])
  const ev = stats.services.events
  t.diagnostic(`service events after the restart: ${JSON.stringify(ev)}; drops: ${JSON.stringify(stats.services.drops)}`)
  assert.ok(ev.picked_up >= survivors && ev.picked_up <= streams.length, `picked_up ${ev.picked_up}, survivors ${survivors}`)
  assert.equal(ev.new_connections, ev.picked_up, 'no connection was opened afresh (no SYN) after the restart')

  // A fresh connection (a SYN, balanced as new) works too.
  const fresh = await client<HttpResult>(lab, cli, ['http', VIP, 80, 6])
  assert.equal(fresh.ok, 6, JSON.stringify(fresh))
  const ev2 = (await tapestryJson<Stats>(lab, sc, hostA, ['stats'])).services.events
  assert.equal(ev2.new_connections - ev2.picked_up, 6, JSON.stringify(ev2))
  t.diagnostic(`test took ${Date.now() - t0} ms`)
})

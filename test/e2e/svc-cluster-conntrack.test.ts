/**
 * Inspecting service state with the CLI on the client's host:
 *  - `tapestry conntrack list --service web --json` shows an established
 *    connection with its client, VIP and backend (and not another service's);
 *  - `tapestry svc list --json` has per-endpoint `picked` counts equal to the
 *    connections each backend answered;
 *  - `tapestry conntrack flush` empties the table; an idle Maglev connection
 *    is then picked up mid-stream on the same backend when it speaks again;
 *  - the same should hold when the backend is the first to speak after the flush
 *    (a stalled download: the backend's zero-window probe comes first): the
 *    service path documents that an unknown mid-stream TCP flow is picked up
 *    and "lives on" with Maglev (after a restart or an eviction).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, waitFor } from '../harness/lab'
import { HttpResult, SVC_CLIENT, SvcInfo, applyServices, client, openStream, startBackend, svc, svcCluster, svcList, tapestryJson } from '../harness/svc'

interface CtRow { proto: string; state: string; client: string; vip: string; backend: string; source: string; service: string | null }

const PORTS = [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'sink', port: 9000, targetPort: 9000, protocol: 'TCP' }]

test('svc conntrack: list by service, picked counts, flush', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const sc = await svcCluster(lab, { cta: ['cc1'], ctb: ['cb1', 'cb2'] })
  const host = sc.hosts.cta
  const cli = sc.pods.cc1
  const backends = [sc.pods.cb1, sc.pods.cb2]
  await Promise.all(backends.map((p) => startBackend(lab, p, { http: 8080, sink: 9000 })))
  const WEB = '10.96.6.10'
  const OTHER = '10.96.6.11'
  await applyServices(lab, sc, host, [
    svc('web', WEB, backends.map((p) => p.ip), { algorithm: 'maglev' }, PORTS),
    svc('ct-other', OTHER, backends.map((p) => p.ip), {}, PORTS),
  ])

  // An idle connection held open to web, one to the other service, and 30 short ones to web.
  const held = await openStream(lab, cli, WEB, 9000, 0, 100)
  const heldOther = await openStream(lab, cli, OTHER, 9000, 0, 100)
  const short = await client<HttpResult>(lab, cli, ['http', WEB, 80, 30])
  assert.equal(short.ok, 30, JSON.stringify(short))

  const rows = await tapestryJson<CtRow[]>(lab, sc, host, ['conntrack', 'list', '--service', 'web'])
  t.diagnostic(`conntrack rows for web: ${rows.length}`)
  assert.ok(rows.every((r) => r.service === 'default/web' && r.vip.startsWith(`${WEB}:`)), `only web's connections: ${JSON.stringify(rows)}`)
  const heldIp = sc.pods[held.backend].ip
  // (Match the VIP too: a short connection to WEB:80 may use the same local port.)
  const row = rows.find((r) => r.client === `${cli.ip}:${held.localPort}` && r.vip === `${WEB}:9000`)
  assert.ok(row, `the held connection is listed: ${JSON.stringify(rows)}`)
  assert.deepEqual({ proto: row.proto, state: row.state, vip: row.vip, backend: row.backend, source: row.source }, {
    proto: 'tcp', state: 'ESTABLISHED', vip: `${WEB}:9000`, backend: `${heldIp}:9000`, source: `${cli.ip}:${held.localPort}`,
  })
  assert.ok(!rows.some((r) => r.vip === `${OTHER}:9000`), 'the other service\'s connection is not listed under web')
  const all = await tapestryJson<CtRow[]>(lab, sc, host, ['conntrack', 'list'])
  assert.ok(all.some((r) => r.client === `${cli.ip}:${heldOther.localPort}` && r.vip === `${OTHER}:9000` && r.service === 'default/ct-other'), 'unfiltered list has both services')

  // picked = connections each backend answered (the 30 requests plus the held one).
  const web = (await svcList(lab, sc, host)).find((s) => s.name === 'web') as SvcInfo
  for (const p of backends) {
    const ep = web.endpoints.find((e) => e.ip === p.ip)
    const want = (short.counts[p.name] ?? 0) + (held.backend === p.name ? 1 : 0)
    assert.equal(ep?.picked, want, `picked of ${p.name}: ${JSON.stringify(web.endpoints)} vs answers ${JSON.stringify(short.counts)} + held on ${held.backend}`)
  }
  assert.equal(web.endpoints.reduce((s, e) => s + e.picked, 0), 31)

  // Flush: nothing left, for any service.
  const flushed = await tapestryJson<{ flushed: number }>(lab, sc, host, ['conntrack', 'flush'])
  assert.ok(flushed.flushed >= 2, JSON.stringify(flushed))
  assert.deepEqual(await tapestryJson<CtRow[]>(lab, sc, host, ['conntrack', 'list', '--service', 'web']), [])
  assert.deepEqual(await tapestryJson<CtRow[]>(lab, sc, host, ['conntrack', 'list']), [])

  // The idle Maglev connection speaks again (its FIN): picked up on the same backend, answered through the VIP.
  const done = await held.stop()
  assert.equal(done.reply.name, held.backend, JSON.stringify(done))
  assert.equal(done.reply.bytes, 0)
})

// Known limitation, kept visible as a todo: after the client's agent loses a connection's
// entry (restart, eviction, flush), a reply-direction packet that the BACKEND sends first
// is delivered un-NATed and the client's kernel resets the connection. A pick-up on the
// reply side needs an endpoint -> service index; flows where the client speaks first are
// picked up (see the first test).
test('svc conntrack: a download flushed while stalled lives on when the backend speaks first', { todo: 'reply-side pick-up of unknown flows is not implemented: the client resets' }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const sc = await svcCluster(lab, { cfa: ['fc1'], cfb: ['fb1', 'fb2'] })
  const host = sc.hosts.cfa
  const cli = sc.pods.fc1
  await Promise.all([sc.pods.fb1, sc.pods.fb2].map((p) => startBackend(lab, p, { source: 9001 })))
  const VIP = '10.96.6.20'
  await applyServices(lab, sc, host, [svc('dl', VIP, [sc.pods.fb1.ip, sc.pods.fb2.ip], { algorithm: 'maglev' }, [{ name: 'source', port: 9001, targetPort: 9001, protocol: 'TCP' }])])

  const N = 100_000_000
  const proc = lab.spawn(cli.ns, [process.execPath, SVC_CLIENT, 'download', VIP, '9001', String(N)], { stdio: ['pipe', 'pipe', 'pipe'] })
  const events = (): Record<string, unknown>[] => proc.stdout().trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
  const conn = await waitFor('download connected', () => events().find((e) => e.event === 'connected'), 20_000) as Record<string, unknown>
  const backend = sc.pods[conn.backend as string]
  proc.child.stdin?.write('pause\n')
  // Stalled: the client's window is full and it is silent; only the backend's zero-window probes still pass.
  await waitFor('download stalled', async () => (await tapestryJson<(CtRow & { idleMs: number })[]>(lab, sc, host, ['conntrack', 'list', '--service', 'dl']))
    .some((r) => r.client === `${cli.ip}:${conn.localPort}` && r.idleMs > 300), 20_000)
  await tapestryJson(lab, sc, host, ['conntrack', 'flush'])
  // The next packet is the backend's probe. Give it time to arrive (and see whether the backend's socket survives it).
  const established = (): boolean => lab.exec(backend.ns, ['ss', '-tnH', 'state', 'established', '( sport = :9001 )']).trim() !== ''
  const reset = await waitFor('backend connection reset', () => !established(), 6_000).then(() => true, () => false)
  t.diagnostic(`backend ${backend.name}'s connection ${reset ? 'was reset after the flush' : 'survived the flush'}`)
  proc.child.stdin?.end('resume\n')
  const end = await waitFor('download finished', () => events().find((e) => e.event === 'done' || e.event === 'error'), 60_000) as Record<string, unknown>
  t.diagnostic(JSON.stringify(end))
  assert.equal(end.event, 'done', `the download must survive the flush: ${JSON.stringify(end)}`)
  assert.equal(end.bytes, N)
  assert.equal(end.sha256, (end.reply as { sha256: string }).sha256)
})

/**
 * Services with datapath workers (workers: 2 on both agents): a connection's
 * NAT entry lives in the worker that read the client's first packet, and its
 * reply tuple is chosen so the replies hash to that worker (Conntrack.pin).
 * Hundreds of short connections through a VIP (to a local, a remote and both
 * endpoints) all succeed and land on both workers; bulk transfers up and down
 * to a local, a remote and a hairpin endpoint keep their bytes; UDP answers
 * come from the VIP; cluster DNS answers in every worker; `conntrack list`
 * and `conntrack flush` cover every thread; a capture sees the frames of
 * every worker; an endpoint's ICMP port unreachable reaches the client as
 * ECONNREFUSED whichever worker holds the connection (the error is read by
 * worker 0, through the priority lane, and handed to the flow's worker).
 * All of it again with the priority lane off (ICMP then read by the worker
 * of its addresses' hash, and handed over through the main thread).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { HttpResult, applyServices, client, startBackend, svc, svcCluster, tapestryJson } from '../harness/svc'
import * as path from 'node:path'
import { spawnSync } from 'node:child_process'
import { Lab, waitFor } from '../harness/lab'
import { TAPESTRY_BIN } from '../harness/overlay'
import { stats } from '../harness/harden'
import { steerWorkerV4 } from '../../src/wire/steer-hash'
import { ipv4Parse } from '../../src/wire/addr'

interface Bulk { backend: string; bytes: number; sha256: string; reply: { name: string; bytes: number; sha256: string } }
interface UdpResult { ok: number; failed: number; counts: Record<string, number>; sources: Record<string, number> }
interface DnsResult { q: string; rcode?: string; answers?: { type: string; data: string }[] }
interface WorkerRow { worker: number; connections: number; captureLost: number }

const DNS_IP = '10.96.0.53'
const LOCAL = '10.96.9.10'
const REMOTE = '10.96.9.11'
const BOTH = '10.96.9.12'
const ECHO = '10.96.9.13'
const CLOSED_LOCAL = '10.96.9.14'
const CLOSED_REMOTE = '10.96.9.15'
/** A UDP service port whose endpoints' target port nothing listens on. */
const CLOSED_PORTS = [{ name: 'closed', port: 5399, targetPort: 9399, protocol: 'UDP' }]
const BULK_PORTS = [{ name: 'sink', port: 9000, targetPort: 9000, protocol: 'TCP' }, { name: 'source', port: 9001, targetPort: 9001, protocol: 'TCP' }]

for (const lane of [true, false]) {
  test(`services with workers: 2${lane ? '' : ', priority lane off'} — NAT entries pinned to their worker, every path intact`, { timeout: 240_000 }, async (t) => {
    const lab = new Lab()
    t.after(() => lab.cleanup())
    const sc = await svcCluster(lab, { wka: ['wc1', 'wl1'], wkb: ['wr1'] }, () => ({ workers: 2, priorityLane: lane, dns: { ip: DNS_IP, clusterDomain: 'cluster.local' } }))
    const [cli, local, remote] = [sc.pods.wc1, sc.pods.wl1, sc.pods.wr1]
    const ha = sc.hosts.wka
    await Promise.all([local, remote].map((p) => startBackend(lab, p, { http: 8080, udp: 9053, sink: 9000, source: 9001 })))
    await applyServices(lab, sc, ha, [
      svc('local', LOCAL, [local.ip]), svc('remote', REMOTE, [remote.ip]), svc('both', BOTH, [local.ip, remote.ip]),
      svc('bulk-local', LOCAL, [local.ip], {}, BULK_PORTS), svc('bulk-remote', REMOTE, [remote.ip], {}, BULK_PORTS),
      svc('echo', ECHO, [local.ip, remote.ip], {}, [{ name: 'echo', port: 5353, targetPort: 9053, protocol: 'UDP' }]),
      svc('closed-local', CLOSED_LOCAL, [local.ip], {}, CLOSED_PORTS), svc('closed-remote', CLOSED_REMOTE, [remote.ip], {}, CLOSED_PORTS),
    ])

    // Short connections: random client ports spread them over both workers.
    for (const [vip, want] of [[LOCAL, [local.name]], [REMOTE, [remote.name]], [BOTH, [local.name, remote.name]]] as const) {
      const r = await client<HttpResult>(lab, cli, ['http', vip, 80, 150, 8], 90_000)
      assert.equal(r.ok, 150, `${vip}: ${JSON.stringify(r)}`)
      assert.deepEqual(Object.keys(r.counts).sort(), [...want].sort(), `${vip}: ${JSON.stringify(r.counts)}`)
    }
    const s = await stats(lab, ha, sc.sock(ha))
    const rows = (s as unknown as { workers: WorkerRow[] }).workers
    const ct = (s as unknown as { conntrack: Record<string, number> }).conntrack
    t.diagnostic(`connections per worker ${JSON.stringify(rows.map((w) => w.connections))}, conntrack ${JSON.stringify(ct)}`)
    assert.equal(rows.length, 2)
    for (const w of rows) assert.ok(w.connections > 50, `worker ${w.worker} holds ${w.connections} of 450 connections`)
    assert.ok(ct.created >= 450, `created ${ct.created}`)
    // About half of the clients' ports hash their replies to the other worker and are remapped.
    assert.ok(ct.port_remapped > 50, `port_remapped ${ct.port_remapped}`)
    // svc list sums each thread's picks: 150 connections to each VIP's port 80, whichever worker balanced them.
    const svcs = await tapestryJson<{ name: string; endpoints: { ip: string; picked: number }[] }[]>(lab, sc, ha, ['svc', 'list'])
    for (const name of ['local', 'remote', 'both']) {
      const picked = svcs.find((x) => x.name === name)!.endpoints.reduce((a, e) => a + e.picked, 0)
      assert.equal(picked, 150, `${name}: ${picked} picks for 150 connections`)
    }
    const listed = await tapestryJson<unknown[]>(lab, sc, ha, ['conntrack', 'list'])
    assert.equal(listed.length, rows[0].connections + rows[1].connections, 'conntrack list shows both workers\' connections')

    // Bulk, both ways, local, remote and hairpin: offloaded frames through the NAT of either worker.
    for (const [what, from, vip, backend] of [['local', cli, LOCAL, local], ['remote', cli, REMOTE, remote], ['hairpin', local, LOCAL, local]] as const) {
      for (let i = 0; i < 2; i++) {
        const up = await client<Bulk>(lab, from, ['bulk', 'up', vip, 9000, 8_000_000], 60_000)
        assert.equal(up.backend, backend.name, `${what} upload: ${JSON.stringify(up)}`)
        assert.equal(up.reply.sha256, up.sha256, `${what} upload: data differs`)
        const down = await client<Bulk>(lab, from, ['bulk', 'down', vip, 9001, 8_000_000], 60_000)
        assert.equal(down.bytes, 8_000_000, `${what} download`)
        assert.equal(down.sha256, down.reply.sha256, `${what} download: data differs`)
      }
    }

    // UDP: each run is a new client port; the answers always come from the VIP.
    for (let i = 0; i < 6; i++) {
      const u = await client<UdpResult>(lab, cli, ['udp', ECHO, 5353, 10])
      assert.equal(u.ok, 10, JSON.stringify(u))
      assert.deepEqual(Object.keys(u.sources), [`${ECHO}:5353`])
    }

    // UDP to an endpoint port nothing listens on: the endpoint's ICMP port unreachable comes back
    // through the lane (worker 0; without the lane, the worker of its addresses' hash), which hands
    // it to the worker holding the connection, whose NAT entry makes it about the VIP, so the
    // client's socket gets ECONNREFUSED. Each VIP is tried from both workers: one of the two is
    // handed over whichever worker reads the error.
    const handedBefore = (await stats(lab, ha, sc.sock(ha)) as unknown as { services: { events: Record<string, number> } }).services.events.icmp_handed_over
    for (const vip of [CLOSED_LOCAL, CLOSED_REMOTE]) {
      for (const w of [0, 1]) {
        let lport = 21000
        while (steerWorkerV4(ipv4Parse(cli.ip), ipv4Parse(vip), lport, 5399, 2) !== w) lport++
        const u = await client<{ code: string; ms: number }>(lab, cli, ['udp-refused', vip, 5399, lport])
        assert.equal(u.code, 'ECONNREFUSED', `${vip} from port ${lport} (worker ${w}): ${JSON.stringify(u)}`)
      }
    }
    const handed = (await stats(lab, ha, sc.sock(ha)) as unknown as { services: { events: Record<string, number> } }).services.events.icmp_handed_over - handedBefore
    // Connections on worker 1: their errors were handed over (more than one each when the client sent again before the answer).
    assert.ok(handed >= 2, `icmp_handed_over grew by ${handed}`)

    // DNS: each run a new socket, so the queries are answered by either worker.
    for (let i = 0; i < 6; i++) {
      const [a] = (await client<{ results: DnsResult[] }>(lab, cli, ['dns', DNS_IP, 'A:both.default.svc.cluster.local'])).results
      assert.equal(a.rcode, 'NOERROR', JSON.stringify(a))
      assert.deepEqual(a.answers?.filter((x) => x.type === 'A').map((x) => x.data), [BOTH])
    }

    const flushed = await tapestryJson<{ flushed: number }>(lab, sc, ha, ['conntrack', 'flush'])
    assert.ok(flushed.flushed >= listed.length, `flushed ${flushed.flushed}`)
    assert.deepEqual(await tapestryJson(lab, sc, ha, ['conntrack', 'list']), [])

    // A capture sees every worker's frames: the client's SYN of each of 150 connections, whichever worker read it.
    const pcap = path.join(sc.c.dir, 'workers.pcap')
    const cap = lab.spawn(null, [process.execPath, TAPESTRY_BIN, 'capture', '--socket', sc.sock(ha), '--pod', 'wc1', '-w', pcap, 'tcp'])
    await waitFor('capture started', () => sc.c.agent(ha)!.stdout().includes('"capture started"'), 15_000)
    const before = (await stats(lab, ha, sc.sock(ha)) as unknown as { workers: WorkerRow[] }).workers
    const r = await client<HttpResult>(lab, cli, ['http', BOTH, 80, 150, 8], 90_000)
    assert.equal(r.ok, 150)
    await new Promise((res) => setTimeout(res, 300))
    cap.child.kill('SIGINT')
    assert.equal(await cap.exited, 0, cap.stderr())
    const syns = spawnSync('tcpdump', ['-nr', pcap, `dst host ${BOTH} and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn`], { encoding: 'utf8' })
    assert.equal(syns.status, 0, syns.stderr)
    const n = syns.stdout.trim().split('\n').filter(Boolean).length
    const after = (await stats(lab, ha, sc.sock(ha)) as unknown as { workers: WorkerRow[] }).workers
    t.diagnostic(`capture: ${n} SYNs to ${BOTH}; new connections per worker ${JSON.stringify(after.map((w, i) => w.connections - before[i].connections))}`)
    for (let w = 0; w < 2; w++) assert.ok(after[w].connections > before[w].connections, `worker ${w} took some of the connections`)
    assert.ok(n >= 150 && n < 170, `${n} SYNs captured for 150 connections`)
    assert.ok(after.every((w) => w.captureLost === 0))
  })
}

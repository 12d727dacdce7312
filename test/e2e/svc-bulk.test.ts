/**
 * Bulk data through a VIP, both ways, hashed at both ends: NAT on full-size
 * and offloaded (TSO / GRO) frames, for a backend on the client's host, one
 * on another host, and hairpin (the client is the backend).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab } from '../harness/lab'
import { applyServices, client, startBackend, svc, svcCluster } from '../harness/svc'

interface Bulk { backend: string; bytes: number; sha256: string; reply: { name: string; bytes: number; sha256: string } }

const BYTES = 30_000_000
const PORTS = [{ name: 'sink', port: 9000, targetPort: 9000, protocol: 'TCP' }, { name: 'source', port: 9001, targetPort: 9001, protocol: 'TCP' }]

test('svc bulk: 30 MB up and down through a VIP to a local, a remote and a hairpin backend', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const sc = await svcCluster(lab, { bka: ['kc1', 'kl1'], bkb: ['kr1'] })
  const [cli, local, remote] = [sc.pods.kc1, sc.pods.kl1, sc.pods.kr1]
  await Promise.all([local, remote].map((p) => startBackend(lab, p, { sink: 9000, source: 9001 })))
  const LOCAL = '10.96.8.10'
  const REMOTE = '10.96.8.11'
  await applyServices(lab, sc, sc.hosts.bka, [svc('bulk-local', LOCAL, [local.ip], {}, PORTS), svc('bulk-remote', REMOTE, [remote.ip], {}, PORTS)])

  for (const [what, from, vip, backend] of [['local', cli, LOCAL, local], ['remote', cli, REMOTE, remote], ['hairpin', local, LOCAL, local]] as const) {
    const up = await client<Bulk>(lab, from, ['bulk', 'up', vip, 9000, BYTES], 60_000)
    assert.equal(up.backend, backend.name, `${what} upload: ${JSON.stringify(up)}`)
    assert.equal(up.reply.bytes, BYTES, `${what} upload: bytes at the backend`)
    assert.equal(up.reply.sha256, up.sha256, `${what} upload: data differs`)
    const down = await client<Bulk>(lab, from, ['bulk', 'down', vip, 9001, BYTES], 60_000)
    assert.equal(down.backend, backend.name, `${what} download: ${JSON.stringify(down)}`)
    assert.equal(down.bytes, BYTES, `${what} download: bytes at the client`)
    assert.equal(down.sha256, down.reply.sha256, `${what} download: data differs`)
  }
})

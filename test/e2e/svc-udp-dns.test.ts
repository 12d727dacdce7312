/**
 * UDP through a VIP and cluster DNS.
 *  - A UDP echo service answers through its VIP. The client's socket is
 *    connect()ed to VIP:port, so the kernel delivers only datagrams from that
 *    address: every answer arriving proves the reply was reverse-NATed.
 *  - With `dns: {ip: 10.96.0.53, clusterDomain: cluster.local}` the agent
 *    answers queries sent explicitly to 10.96.0.53 (the pod's resolv.conf is
 *    left alone): web.default.svc.cluster.local -> its ClusterIP, an unknown
 *    name in the domain -> NXDOMAIN, PTR of the ClusterIP -> the name; through
 *    raw queries and node's stub resolver. A deleted service's name is gone.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab } from '../harness/lab'
import { applyServices, client, startBackend, svc, svcCluster, tapestryJson } from '../harness/svc'

interface UdpResult { ok: number; failed: number; counts: Record<string, number>; sources: Record<string, number>; errors: Record<string, number> }
interface DnsAnswer { type: string; name: string; data: unknown }
interface DnsResult { q: string; rcode?: string; aa?: boolean; from?: string; answers?: DnsAnswer[]; addresses?: string[]; names?: string[]; error?: string }

const DNS_IP = '10.96.0.53'
const WEB = '10.96.4.20'
const ECHO = '10.96.4.10'
const SHOP = '10.96.4.30'
const FQDN = 'web.default.svc.cluster.local'

test('svc udp + dns: UDP answers come from the VIP; cluster DNS answers A, NXDOMAIN and PTR', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const sc = await svcCluster(lab, { uda: ['uc1'], udb: ['ub1', 'ub2'] }, () => ({ dns: { ip: DNS_IP, clusterDomain: 'cluster.local' } }))
  const host = sc.hosts.uda
  const cli = sc.pods.uc1
  const backends = [sc.pods.ub1, sc.pods.ub2]
  await Promise.all(backends.map((p) => startBackend(lab, p, { http: 8080, udp: 9053 })))
  await applyServices(lab, sc, host, [
    svc('echo', ECHO, backends.map((p) => p.ip), {}, [{ name: 'echo', port: 5353, targetPort: 9053, protocol: 'UDP' }]),
    svc('web', WEB, backends.map((p) => p.ip)),
    { ...svc('web', SHOP, backends.map((p) => p.ip)), namespace: 'shop' },
  ])

  // UDP: 40 exchanges on one connected socket, and 4 more clients (other source ports).
  const runs = [await client<UdpResult>(lab, cli, ['udp', ECHO, 5353, 40])]
  for (let i = 0; i < 4; i++) runs.push(await client<UdpResult>(lab, cli, ['udp', ECHO, 5353, 5]))
  const used = new Set<string>()
  for (const r of runs) {
    assert.equal(r.failed, 0, `every UDP request answered: ${JSON.stringify(r)}`)
    assert.deepEqual(Object.keys(r.sources), [`${ECHO}:5353`], `answers come from the VIP: ${JSON.stringify(r.sources)}`)
    assert.equal(Object.keys(r.counts).length, 1, `one UDP flow, one backend: ${JSON.stringify(r.counts)}`)
    for (const k of Object.keys(r.counts)) used.add(k)
  }
  for (const k of used) assert.ok(k === 'ub1' || k === 'ub2', `answer from an endpoint: ${k}`)
  t.diagnostic(`udp backends used: ${[...used].join(' ')}`)
  const udpCt = await tapestryJson<{ proto: string; vip: string; backend: string }[]>(lab, sc, host, ['conntrack', 'list', '--service', 'echo'])
  assert.ok(udpCt.length >= 1 && udpCt.every((r) => r.vip === `${ECHO}:5353` && /:9053$/.test(r.backend)), JSON.stringify(udpCt))

  // One UDP flow (fixed source port) whose endpoint leaves the service: its conntrack
  // entry is flushed, so the same flow's next datagrams go to the remaining endpoint.
  const LPORT = 40123
  const before = await client<UdpResult>(lab, cli, ['udp', ECHO, 5353, 5, LPORT])
  assert.equal(before.failed, 0, JSON.stringify(before))
  const first = Object.keys(before.counts)[0]
  const again = await client<UdpResult>(lab, cli, ['udp', ECHO, 5353, 5, LPORT])
  assert.deepEqual(again.counts, { [first]: 5 }, 'the same UDP flow stays on its endpoint')
  const left = backends.find((p) => p.name !== first)!
  await applyServices(lab, sc, host, [svc('echo', ECHO, [left.ip], {}, [{ name: 'echo', port: 5353, targetPort: 9053, protocol: 'UDP' }])])
  const moved = await client<UdpResult>(lab, cli, ['udp', ECHO, 5353, 5, LPORT])
  assert.deepEqual(moved.counts, { [left.name]: 5 }, `after ${first} left the service, the flow moves to ${left.name}: ${JSON.stringify(moved)}`)
  assert.deepEqual(Object.keys(moved.sources), [`${ECHO}:5353`])

  // DNS, with the server named explicitly: raw queries, then node's stub resolver.
  const dns = async (...qs: string[]): Promise<DnsResult[]> => (await client<{ results: DnsResult[] }>(lab, cli, ['dns', DNS_IP, ...qs])).results
  const [a, nx, ptr, r4, rptr, r4nx, aaaa, shop] = await dns(`A:${FQDN}`, 'A:nope.default.svc.cluster.local', 'PTR:20.4.96.10.in-addr.arpa',
    `R4:${FQDN}`, `RPTR:${WEB}`, 'R4:nope.default.svc.cluster.local', `AAAA:${FQDN}`, 'A:web.shop.svc.cluster.local')
  t.diagnostic(JSON.stringify([a, nx, ptr, r4, rptr, r4nx, aaaa, shop]))
  assert.equal(a.rcode, 'NOERROR', JSON.stringify(a))
  assert.equal(a.from, `${DNS_IP}:53`)
  assert.equal(a.aa, true)
  assert.deepEqual(a.answers?.filter((x) => x.type === 'A').map((x) => x.data), [WEB])
  assert.equal(nx.rcode, 'NXDOMAIN', JSON.stringify(nx))
  assert.deepEqual(nx.answers, [])
  assert.equal(ptr.rcode, 'NOERROR', JSON.stringify(ptr))
  assert.deepEqual(ptr.answers?.filter((x) => x.type === 'PTR').map((x) => x.data), [FQDN])
  assert.deepEqual(r4.addresses, [WEB], JSON.stringify(r4))
  assert.deepEqual(rptr.names, [FQDN], JSON.stringify(rptr))
  assert.equal(r4nx.error, 'ENOTFOUND', JSON.stringify(r4nx))
  assert.equal(aaaa.rcode, 'NOERROR', `AAAA of an existing name: NOERROR, no data (${JSON.stringify(aaaa)})`)
  assert.deepEqual(aaaa.answers, [])
  assert.deepEqual(shop.answers?.map((x) => x.data), [SHOP], `a service in another namespace: ${JSON.stringify(shop)}`)

  // Deleting the service takes its name away.
  await tapestryJson(lab, sc, host, ['svc', 'del', 'web'])
  const [gone] = await dns(`A:${FQDN}`)
  assert.equal(gone.rcode, 'NXDOMAIN', JSON.stringify(gone))
})

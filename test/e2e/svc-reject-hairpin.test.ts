/**
 * A VIP without endpoints refuses at once: TCP connect gets ECONNREFUSED (a
 * RST from the agent, well before the 1 s SYN retransmit a silent drop would
 * show), UDP gets an ICMP port unreachable (ECONNREFUSED on a connected
 * socket); so does a VIP port no service uses and a service whose endpoints
 * are all unready. A VIP answers no ping. Hairpin: a pod reaching a VIP whose
 * only endpoint is itself gets its answer.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, parsePing } from '../harness/lab'
import { HttpResult, applyServices, client, startBackend, svc, svcCluster, tapestryJson } from '../harness/svc'

interface ConnectResult { code: string; ms: number }
interface Stats { services: { drops: Record<string, number>; events: Record<string, number> } }

/** "At once, not a timeout": far under the 1 s SYN retransmit, generous for a loaded machine. */
const AT_ONCE_MS = 900

test('svc reject + hairpin: refused at once without endpoints, no ping, hairpin answered', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const sc = await svcCluster(lab, { rja: ['rc1', 'rh1'], rjb: ['rb1'] })
  const host = sc.hosts.rja
  const [cli, self, remote] = [sc.pods.rc1, sc.pods.rh1, sc.pods.rb1]
  await Promise.all([startBackend(lab, self, { http: 8080 }), startBackend(lab, remote, { http: 8080 })])
  const EMPTY = '10.96.5.10'
  const SELF = '10.96.5.20'
  const UNREADY = '10.96.5.30'
  await applyServices(lab, sc, host, [
    svc('rj-empty', EMPTY, [], {}, [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }, { name: 'dns', port: 5353, targetPort: 9053, protocol: 'UDP' }]),
    svc('rj-self', SELF, [self.ip]),
    svc('rj-unready', UNREADY, [{ ip: remote.ip, ready: false }]),
  ])

  for (const [what, ip, port] of [['no endpoints', EMPTY, 80], ['unserved VIP port', SELF, 81], ['unready endpoints only', UNREADY, 80]] as const) {
    const r = await client<ConnectResult>(lab, cli, ['connect', ip, port, 5000])
    t.diagnostic(`${what}: ${JSON.stringify(r)}`)
    assert.equal(r.code, 'ECONNREFUSED', `${what} (${ip}:${port}): ${JSON.stringify(r)}`)
    assert.ok(r.ms < AT_ONCE_MS, `${what}: refused after ${r.ms} ms, not at once`)
  }

  const u = await client<ConnectResult & { messages: number }>(lab, cli, ['udp-refused', EMPTY, 5353])
  t.diagnostic(`udp: ${JSON.stringify(u)}`)
  assert.equal(u.code, 'ECONNREFUSED', `UDP to a VIP without endpoints: ICMP port unreachable (${JSON.stringify(u)})`)
  assert.equal(u.messages, 0)

  const ping = await lab.execAsync(cli.ns, ['ping', '-c', '2', '-i', '0.2', '-W', '1', SELF])
  assert.notEqual(ping.code, 0, `ping to a VIP must fail: ${ping.stdout}`)
  assert.equal(parsePing(ping.stdout).received, 0, ping.stdout)
  const stats = await tapestryJson<Stats>(lab, sc, host, ['stats'])
  assert.ok(stats.services.drops.vip_ping >= 2, `pings counted as vip_ping drops: ${JSON.stringify(stats.services)}`)
  assert.ok(stats.services.events.rejected >= 4, `rejections counted: ${JSON.stringify(stats.services)}`)

  // The VIP's endpoint is the client itself.
  const hp = await client<HttpResult>(lab, self, ['http', SELF, 80, 20])
  assert.deepEqual(hp, { ok: 20, failed: 0, counts: { rh1: 20 }, errors: {} }, `hairpin: ${JSON.stringify(hp)}`)
  // And another pod reaches the same VIP normally.
  const other = await client<HttpResult>(lab, cli, ['http', SELF, 80, 5])
  assert.deepEqual(other.counts, { rh1: 5 })
  const after = await tapestryJson<Stats>(lab, sc, host, ['stats'])
  assert.ok(after.services.events.hairpin >= 20, `hairpin connections counted: ${JSON.stringify(after.services.events)}`)
})

/**
 * Host access and NodePort. Each host's network has `hostIP: 10.244.K.1` (a
 * host-side TAP in the agent's namespace) and the config a `serviceRange`
 * routed through the gateway, so processes on the host reach pods and VIPs.
 * A service with `nodePort` answers on node.underlayIP:nodePort from another
 * host's namespace, with a backend's answer (TCP and UDP).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab } from '../harness/lab'
import { HttpResult, NET, client, startBackend, svc, svcCluster } from '../harness/svc'

const VIP = '10.96.7.10'
const NODE_PORT = 30080
const ECHO_VIP = '10.96.7.11'
const UDP_NODE_PORT = 30053

test('svc host access + nodePort: host reaches pods and VIPs; underlayIP:nodePort answers from another host', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const ips = { nb1: '10.244.1.2', nb2: '10.244.2.2' }
  const sc = await svcCluster(lab, { npa: ['nb1'], npb: ['nb2'] }, () => ({
    serviceRange: '10.96.0.0/12',
    services: [
      svc('np-web', VIP, [ips.nb1, ips.nb2], { algorithm: 'roundRobin', nodePort: NODE_PORT }),
      svc('np-echo', ECHO_VIP, [ips.nb1, ips.nb2], { nodePort: UDP_NODE_PORT }, [{ name: 'echo', port: 5353, targetPort: 9053, protocol: 'UDP' }]),
    ],
  }), (_h, k) => ({ ...NET, hostIP: `10.244.${k}.1` }))
  const [a, b] = [sc.hosts.npa, sc.hosts.npb]
  await Promise.all([startBackend(lab, sc.pods.nb1, { http: 8080, udp: 9053 }), startBackend(lab, sc.pods.nb2, { http: 8080, udp: 9053 })])

  // The host TAP has its address, and the service range is routed to the gateway.
  assert.match(lab.exec(a.ns, ['ip', '-o', 'addr', 'show']), /inet 10\.244\.1\.1\/16 /)
  assert.match(lab.exec(a.ns, ['ip', 'route', 'get', VIP]), /via 10\.244\.0\.1 /)

  const hostA = { name: 'host-npa', ns: a.ns }
  const hostB = { name: 'host-npb', ns: b.ns }
  // From host A's namespace: a local pod, a remote pod, and the VIP.
  for (const [what, ip, port] of [['local pod', ips.nb1, 8080], ['remote pod', ips.nb2, 8080]] as const) {
    const r = await client<HttpResult>(lab, hostA, ['http', ip, port, 3], 30_000)
    assert.deepEqual(r.counts, { [what === 'local pod' ? 'nb1' : 'nb2']: 3 }, `host -> ${what}: ${JSON.stringify(r)}`)
  }
  const viaVip = await client<HttpResult>(lab, hostA, ['http', VIP, 80, 10], 30_000)
  assert.equal(viaVip.ok, 10, `host -> VIP: ${JSON.stringify(viaVip)}`)
  assert.deepEqual(viaVip.counts, { nb1: 5, nb2: 5 }, `host -> VIP balanced round robin: ${JSON.stringify(viaVip)}`)
  // curl too, as a user would.
  const curl = await lab.execAsync(a.ns, ['curl', '-s', '--max-time', '10', `http://${VIP}/`], 20_000)
  assert.equal(curl.code, 0, curl.stderr)
  assert.match(curl.stdout, /^nb[12]$/)

  // From host B's namespace: host A's underlay address on the nodePort.
  const np = await client<HttpResult>(lab, hostB, ['http', a.underlayIP, NODE_PORT, 10], 30_000)
  assert.equal(np.ok, 10, `nodePort on ${a.underlayIP}:${NODE_PORT} from host B: ${JSON.stringify(np)}`)
  for (const k of Object.keys(np.counts)) assert.ok(k === 'nb1' || k === 'nb2', `answered by a backend: ${k}`)
  t.diagnostic(`nodePort answers: ${JSON.stringify(np.counts)}`)

  // A UDP nodePort, from host B: answers come back from A's underlay address and port.
  const u = await client<{ ok: number; failed: number; counts: Record<string, number>; sources: Record<string, number> }>(lab, hostB, ['udp', a.underlayIP, UDP_NODE_PORT, 10], 30_000)
  assert.equal(u.failed, 0, `UDP nodePort on ${a.underlayIP}:${UDP_NODE_PORT}: ${JSON.stringify(u)}`)
  assert.deepEqual(Object.keys(u.sources), [`${a.underlayIP}:${UDP_NODE_PORT}`])
  for (const k of Object.keys(u.counts)) assert.ok(k === 'nb1' || k === 'nb2', `answered by a backend: ${k}`)
})

/**
 * The Prometheus endpoint of a running agent, scraped with curl inside the
 * agent's host namespace: frame counters move with traffic, and a datagram
 * that is not VXLAN shows up under its drop reason (from a peer: the VXLAN
 * check; from a host that is not a peer: unknown_peer). `metrics.listen: ''`
 * turns the endpoint off.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, parsePing, waitFor } from '../harness/lab'
import { Cluster, hostConfig } from '../harness/overlay'
import { apiSocket } from '../harness/fdb'

const URL = 'http://127.0.0.1:9464/metrics'

/** Sends one UDP datagram of `bytes` from inside `ns` to addr:port. */
async function sendDatagram(lab: Lab, ns: string, addr: string, port: number, bytes: number[]): Promise<void> {
  const js = `const s=require('dgram').createSocket('udp4');s.send(Buffer.from(${JSON.stringify(bytes)}),${port},'${addr}',(e)=>{s.close();if(e)throw e})`
  const r = await lab.execAsync(ns, [process.execPath, '-e', js], 10_000)
  assert.equal(r.code, 0, r.stderr)
}

test('metrics: frame counters after traffic, drop reasons after bad datagrams, off with listen ""', { timeout: 90_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const stranger = c.addHost('hc', 3) // on the underlay, but nobody's peer
  const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  const a1 = c.podNs('a1')
  const b1 = c.podNs('b1')
  await c.startAgent(a, hostConfig(a, [a, b], nets, [{ name: 'a1', network: 'blue', netns: a1, ip: '10.244.1.2/16' }],
    { api: { socket: apiSocket(c.dir, a.name) } }))
  await c.startAgent(b, hostConfig(b, [a, b], nets, [{ name: 'b1', network: 'blue', netns: b1, ip: '10.244.2.2/16' }],
    { api: { socket: apiSocket(c.dir, b.name) }, metrics: { listen: '' } }))

  const scrape = async (ns: string): Promise<string> => {
    const r = await lab.execAsync(ns, ['curl', '-sS', '--max-time', '5', URL], 10_000)
    if (r.code !== 0) throw new Error(`curl ${URL} in ${ns} exited ${r.code}: ${r.stderr}`)
    return r.stdout
  }
  const value = (text: string, series: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `))
    if (line === undefined) throw new Error(`no ${series} in the scrape:\n${text}`)
    return Number(line.slice(series.length + 1))
  }

  const before = await scrape(a.ns)
  // The pod's own kernel may already have sent something (IPv6 neighbour discovery): compare with this.
  const rx0 = value(before, 'tapestry_frames_total{port="a1",direction="rx"}')
  const tx0 = value(before, 'tapestry_frames_total{port="a1",direction="tx"}')
  assert.equal(value(before, 'tapestry_drops_total{reason="unknown_peer"}'), 0)
  assert.equal(value(before, 'tapestry_pods'), 1)

  const ping = await lab.execAsync(a1, ['ping', '-c', '5', '-i', '0.05', '-W', '2', '10.244.2.2'])
  assert.equal(parsePing(ping.stdout).received, 5, ping.stdout + ping.stderr)
  const after = await scrape(a.ns)
  for (const series of [
    'tapestry_frames_total{port="a1",direction="rx"}', 'tapestry_frames_total{port="a1",direction="tx"}',
    'tapestry_frames_total{port="underlay",direction="rx"}', 'tapestry_frames_total{port="underlay",direction="tx"}',
    'tapestry_bytes_total{port="a1",direction="rx"}', 'tapestry_bytes_total{port="underlay",direction="tx"}',
    'tapestry_batches_total', 'tapestry_fdb_entries',
  ]) {
    assert.ok(value(after, series) > 0, `${series} should have moved:\n${after}`)
  }
  // At least the 5 echo requests from the pod, the 5 replies to it.
  assert.ok(value(after, 'tapestry_frames_total{port="a1",direction="rx"}') - rx0 >= 5)
  assert.ok(value(after, 'tapestry_frames_total{port="a1",direction="tx"}') - tx0 >= 5)
  assert.ok(Number.isFinite(value(after, 'tapestry_arp_answered_total')))
  assert.match(after, /tapestry_event_loop_delay_seconds\{quantile="0\.99"\} /)

  // From the peer: 8 zero bytes (no I flag) and 3 bytes (shorter than a VXLAN header).
  await sendDatagram(lab, b.ns, a.underlayIP, 4789, [0, 0, 0, 0, 0, 0, 0, 0])
  await sendDatagram(lab, b.ns, a.underlayIP, 4789, [8, 0, 0])
  // From a host that is not a peer: a well-formed VXLAN header does not help.
  await sendDatagram(lab, stranger.ns, a.underlayIP, 4789, [8, 0, 0, 0, 0, 0, 42, 0])
  const drops = await waitFor('the three drops counted', async () => {
    const text = await scrape(a.ns)
    return value(text, 'tapestry_drops_total{reason="unknown_peer"}') >= 1 ? text : ''
  })
  assert.equal(value(drops, 'tapestry_drops_total{reason="vxlan_no_i_flag"}'), 1)
  assert.equal(value(drops, 'tapestry_drops_total{reason="malformed"}'), 1)
  assert.equal(value(drops, 'tapestry_drops_total{reason="unknown_peer"}'), 1)
  assert.equal(value(drops, 'tapestry_drops_total{reason="unknown_vni"}'), 0)

  // Host B's agent runs with metrics.listen '': nothing listens there.
  const off = await lab.execAsync(b.ns, ['curl', '-sS', '--max-time', '5', URL], 10_000)
  assert.notEqual(off.code, 0)
  assert.match(off.stderr, /Connection refused|Failed to connect/)
  assert.doesNotMatch(c.agent(b)!.stdout(), /metrics endpoint open/)
})

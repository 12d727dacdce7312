import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import { Datapath, STAT_RX_BYTES, STAT_RX_FRAMES, STAT_TX_BYTES, STAT_TX_FRAMES } from '../../../src/datapath/datapath'
import { DROP_NAMES, Drop, OFFLOAD_NAMES, Offload } from '../../../src/datapath/drops'
import { FdbCounter } from '../../../src/switch/fdb'
import { MetricsServer, createAgentMetrics } from '../../../src/observe/metrics'
import { parseListen } from '../../../src/observe/listen-address'
import { SERVICE_STAT_NAMES, ServiceStat } from '../../../src/service/service-path'

function source() {
  const datapath = new Datapath({ vxlanPort: 4789 })
  return { datapath, podStates: () => [{ name: 'web-1', port: 1 }] }
}

test('scrape reads the datapath counters as they are at that moment', async (t) => {
  const src = source()
  const m = createAgentMetrics(src)
  t.after(() => m.close())
  const dp = src.datapath
  dp.stats[0 * 4 + STAT_RX_FRAMES] = 10
  dp.stats[0 * 4 + STAT_TX_BYTES] = 5000
  dp.stats[1 * 4 + STAT_RX_FRAMES] = 7
  dp.stats[1 * 4 + STAT_RX_BYTES] = 700
  dp.stats[1 * 4 + STAT_TX_FRAMES] = 3
  dp.drops[Drop.UnknownPeer] = 2
  dp.drops[Drop.VxlanNoIFlag] = 1
  dp.fdb.counters[FdbCounter.Learned] = 4
  dp.fdb.counters[FdbCounter.LimitVni] = 6
  dp.arpAnswered = 9
  dp.batches = 4
  dp.batchFrames = 10
  dp.offloads[Offload.GroUdpMerges] = 3
  dp.offloads[Offload.GroUdpDatagrams] = 40
  dp.priorityRx[0] = 12
  dp.priorityRx[1] = 1300
  const text = await m.registry.metrics()
  const want = [
    'tapestry_frames_total{port="underlay",direction="rx"} 10',
    'tapestry_frames_total{port="underlay",direction="tx"} 0',
    'tapestry_frames_total{port="web-1",direction="rx"} 7',
    'tapestry_frames_total{port="web-1",direction="tx"} 3',
    'tapestry_bytes_total{port="underlay",direction="tx"} 5000',
    'tapestry_bytes_total{port="web-1",direction="rx"} 700',
    'tapestry_drops_total{reason="unknown_peer"} 2',
    'tapestry_drops_total{reason="vxlan_no_i_flag"} 1',
    'tapestry_drops_total{reason="malformed"} 0',
    'tapestry_fdb_learned_total 4',
    'tapestry_fdb_limit_drops_total{limit="vni"} 6',
    'tapestry_fdb_limit_drops_total{limit="table"} 0',
    'tapestry_arp_answered_total 9',
    'tapestry_batches_total 4',
    'tapestry_batch_frames_total 10',
    'tapestry_batch_size_mean 2.5',
    'tapestry_offload_total{kind="gro_udp_merges"} 3',
    'tapestry_offload_total{kind="gro_udp_datagrams"} 40',
    'tapestry_offload_total{kind="tso_frames"} 0',
    'tapestry_priority_lane_frames_total{port="underlay"} 12',
    'tapestry_priority_lane_bytes_total{port="underlay"} 1300',
    'tapestry_priority_lane_frames_total{port="web-1"} 0',
    'tapestry_pods 1',
    '# TYPE tapestry_frames_total counter',
    '# TYPE tapestry_fdb_entries gauge',
  ]
  const lines = new Set(text.split('\n'))
  for (const w of want) assert.ok(lines.has(w), `missing ${w} in\n${text}`)
  for (const reason of DROP_NAMES) assert.match(text, new RegExp(`tapestry_drops_total\\{reason="${reason}"\\} \\d+`))
  for (const kind of OFFLOAD_NAMES) assert.match(text, new RegExp(`tapestry_offload_total\\{kind="${kind}"\\} \\d+`))
  assert.match(text, /tapestry_event_loop_delay_seconds\{quantile="0.99"\} [\d.e-]+/)
  assert.match(text, /tapestry_event_loop_delay_max_seconds [\d.e-]+/)

  // Services: a service with two endpoints shows picks per endpoint; conntrack and service drops are exported.
  dp.services.upsert({ name: 'web', clusterIP: '10.96.0.10', ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }], endpoints: [{ ip: '10.244.1.2' }, { ip: '10.244.1.3' }] })
  dp.conntrack.counters[0] = 3
  const svcText = await m.registry.metrics()
  assert.match(svcText, /tapestry_service_endpoint_picks_total\{service="default\/web",endpoint="10\.244\.1\.2"\} 0/)
  assert.match(svcText, /tapestry_conntrack_events_total\{event="created"\} 3/)
  assert.match(svcText, /tapestry_conntrack_connections 0/)
  assert.match(svcText, /tapestry_service_drops_total\{reason="vip_ping"\} 0/)
  for (const event of SERVICE_STAT_NAMES) assert.match(svcText, new RegExp(`tapestry_service_events_total\\{event="${event}"\\} \\d+`))
  dp.servicePath.stats[ServiceStat.IcmpHandedOver] = 4
  assert.match(await m.registry.metrics(), /tapestry_service_events_total\{event="icmp_handed_over"\} 4\n/)

  // The next scrape sees the new values: nothing is cached.
  dp.drops[Drop.UnknownPeer] = 5
  assert.match(await m.registry.metrics(), /tapestry_drops_total\{reason="unknown_peer"\} 5\n/)
})

test('listen addresses', () => {
  assert.deepEqual(parseListen('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 })
  assert.deepEqual(parseListen('[::1]:9464'), { host: '::1', port: 9464 })
  assert.deepEqual(parseListen('localhost:80'), { host: 'localhost', port: 80 })
  for (const bad of ['', '127.0.0.1', ':9464', '127.0.0.1:0', '127.0.0.1:70000', '::1:9464', 'a b:1']) {
    assert.equal(parseListen(bad), null, bad)
  }
})

function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      let body = ''
      res.on('data', (c) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }))
    }).on('error', reject)
  })
}

test('the server answers GET /metrics in the text format and refuses a port in use', async (t) => {
  const src = source()
  src.datapath.drops[Drop.Malformed] = 3
  // Port 0 is refused by the config; here the test asks for a free port by listening first.
  const probe = http.createServer()
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()))
  const port = (probe.address() as { port: number }).port
  await new Promise<void>((r) => probe.close(() => r()))
  const s = await MetricsServer.start(`127.0.0.1:${port}`, src)
  t.after(() => s.close())
  const ok = await get(port, '/metrics')
  assert.equal(ok.status, 200)
  assert.match(ok.type, /^text\/plain; version=0\.0\.4/)
  assert.match(ok.body, /tapestry_drops_total\{reason="malformed"\} 3\n/)
  assert.equal((await get(port, '/')).status, 404)
  await assert.rejects(MetricsServer.start(`127.0.0.1:${port}`, src), /cannot serve metrics on 127\.0\.0\.1:\d+: the address is in use/)
  await assert.rejects(MetricsServer.start('nonsense', src), /metrics.listen "nonsense" is not HOST:PORT/)
})

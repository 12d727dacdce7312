/**
 * Peer health probing between two hosts (health.intervalSeconds 0.5):
 *  - `tapestry peers --json` shows the peer up, with an RTT, and full-size
 *    VXLAN packets (podMtu 1450 + 50 = 1500 bytes, DF) getting through;
 *  - a silent MTU black hole (the peer's bridge port on the underlay at MTU
 *    1400: bigger frames are dropped without any ICMP) turns pathMtuOk false
 *    within a few intervals; the agent logs it once, with the largest size
 *    that got through and what to change, counts it in metrics, and logs the
 *    recovery when the MTU is restored;
 *  - this host's own underlay link at MTU 1400: the kernel refuses the
 *    full-size probe because it carries DF (without DF it would fragment it);
 *  - the peer's link down: reported down within a few intervals, up again
 *    after it comes back.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Lab, waitFor } from '../harness/lab'
import { Cluster, Host, TAPESTRY_BIN, hostConfig } from '../harness/overlay'
import { apiSocket } from '../harness/fdb'

interface PeerRow {
  address: string
  configured: boolean
  state: 'up' | 'down' | 'unknown'
  rttMs: number | null
  lastSeenMs: number | null
  pathMtuOk: boolean | null
  pathMtu: number | null
  lossPct: number | null
}

const METRICS_URL = 'http://127.0.0.1:9464/metrics'

test('peer health: up with RTT, MTU black hole reported once with advice and recovered, down and up again', { timeout: 180_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  const health = { intervalSeconds: 0.5, timeoutMs: 300, downAfter: 2, lossWindow: 10 }
  const agentA = await c.startAgent(a, hostConfig(a, c.hosts, nets, [], { api: { socket: apiSocket(c.dir, a.name) }, health }))
  await c.startAgent(b, hostConfig(b, c.hosts, nets, [], { api: { socket: apiSocket(c.dir, b.name) }, health, metrics: { listen: '' } }))

  const cli = async (h: Host, args: string[]): Promise<string> => {
    const r = await lab.execAsync(null, [process.execPath, TAPESTRY_BIN, ...args, '--socket', apiSocket(c.dir, h.name)], 15_000)
    if (r.code !== 0) throw new Error(`tapestry ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`)
    return r.stdout
  }
  const peer = async (h: Host, of: Host): Promise<PeerRow> => {
    const rows = JSON.parse(await cli(h, ['peers', '--json'])) as PeerRow[]
    const row = rows.find((r) => r.address === of.underlayIP)
    if (!row) throw new Error(`no peer ${of.underlayIP} in ${JSON.stringify(rows)}`)
    return row
  }
  const until = (what: string, h: Host, of: Host, ok: (r: PeerRow) => boolean, timeoutMs = 15_000): Promise<PeerRow> =>
    waitFor(what, async () => { const r = await peer(h, of); return ok(r) ? r : null }, timeoutMs, 100) as Promise<PeerRow>
  /** The agent's log lines (JSON) whose msg matches. */
  const logged = (re: RegExp): Record<string, unknown>[] => agentA.stdout().split('\n').filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>).filter((o) => typeof o.msg === 'string' && re.test(o.msg))
  const scrape = async (): Promise<string> => {
    const r = await lab.execAsync(a.ns, ['curl', '-sS', '--max-time', '5', METRICS_URL], 10_000)
    if (r.code !== 0) throw new Error(`curl exited ${r.code}: ${r.stderr}`)
    return r.stdout
  }
  const series = (text: string, name: string): number | null => {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `))
    return line === undefined ? null : Number(line.slice(name.length + 1))
  }
  const peerLabel = `{peer="${b.underlayIP}"}`

  // 1. Up, with an RTT, and the full-size probe gets through.
  const up = await until('a sees b up with a full-size path', a, b, (r) => r.state === 'up' && r.pathMtuOk === true && r.rttMs !== null)
  assert.equal(up.configured, true)
  assert.ok(up.rttMs! > 0 && up.rttMs! < 300, `rttMs ${up.rttMs}`)
  assert.ok(up.lastSeenMs !== null && up.lastSeenMs >= 0 && up.lastSeenMs < 3000, `lastSeenMs ${up.lastSeenMs}`)
  assert.equal(up.lossPct, 0)
  assert.equal(up.pathMtu, null)
  assert.deepEqual(Object.keys(up).sort(), ['address', 'configured', 'lastSeenMs', 'lossPct', 'pathMtu', 'pathMtuOk', 'rttMs', 'state'])
  const table = await cli(a, ['peers'])
  assert.match(table, /^ADDRESS\s+CONFIGURED\s+STATE\s+RTT\s+LOSS\s+FULLSIZE\s+SEEN$/m)
  assert.match(table, new RegExp(`^${b.underlayIP.replace(/\./g, '\\.')}\\s+true\\s+up\\s+[\\d.]+ms\\s+0%\\s+ok\\s+[\\d.]+s ago$`, 'm'), table)
  assert.equal(logged(/is up$/).length, 1, 'the first answer is logged once')
  let m = await scrape()
  assert.equal(series(m, `tapestry_peer_up${peerLabel}`), 1)
  assert.equal(series(m, `tapestry_peer_path_mtu_ok${peerLabel}`), 1)
  assert.ok((series(m, `tapestry_peer_rtt_seconds${peerLabel}`) ?? -1) > 0)
  assert.equal(series(m, 'tapestry_peer_mtu_blackhole_total'), 0)

  // 2. A silent black hole: b's bridge port at MTU 1400 drops bigger frames, no ICMP comes back.
  lab.exec(c.underlayNs, ['ip', 'link', 'set', `p${b.name}`, 'mtu', '1400'])
  const bad = await until('a reports the black hole', a, b, (r) => r.pathMtuOk === false && r.pathMtu !== null)
  assert.equal(bad.state, 'up', 'small probes still get through')
  // The veth and bridge let a frame 4 bytes over the MTU through (VLAN slack): 1400..1404.
  assert.ok(bad.pathMtu! >= 1400 && bad.pathMtu! <= 1404, `pathMtu ${bad.pathMtu}`)
  await waitFor('black hole logged', () => logged(/^MTU black hole toward peer /).length > 0)
  const holes = logged(/^MTU black hole toward peer /)
  assert.equal(holes.length, 1)
  const msg = holes[0].msg as string
  assert.equal(holes[0].level, 40, 'a warning')
  assert.match(msg, new RegExp(`toward peer ${b.underlayIP.replace(/\./g, '\\.')}`))
  assert.match(msg, /full-size VXLAN packets \(1500-byte IP packets, Don't Fragment set\) do not get through \(they get no answer while small probes do; the largest that got through: 14\d\d bytes\)/)
  assert.match(msg, new RegExp(`lower the pod MTU \\(node\\.podMtu, now 1450\\) to ${bad.pathMtu! - 50} or less`))
  assert.match(msg, /raise the MTU of every underlay link between 192\.168\.250\.1 and 192\.168\.250\.2 to at least 1500/)
  assert.equal(holes[0].suggestedPodMtu, bad.pathMtu! - 50)
  m = await scrape()
  assert.equal(series(m, `tapestry_peer_path_mtu_ok${peerLabel}`), 0)
  assert.equal(series(m, `tapestry_peer_up${peerLabel}`), 1)
  assert.equal(series(m, 'tapestry_peer_mtu_blackhole_total'), 1)
  // Logged once: more rounds go by (still a black hole) without another message.
  await new Promise((r) => setTimeout(r, 2000))
  assert.equal((await peer(a, b)).pathMtuOk, false)
  assert.equal(logged(/^MTU black hole toward peer /).length, 1, 'the black hole is logged once')

  // 3. The MTU is restored: full-size probes get through again, and that is logged.
  lab.exec(c.underlayNs, ['ip', 'link', 'set', `p${b.name}`, 'mtu', '1500'])
  const healed = await until('a sees the path healed', a, b, (r) => r.pathMtuOk === true)
  assert.equal(healed.pathMtu, null)
  await waitFor('recovery logged', () => logged(/carries full-size VXLAN packets \(1500 bytes\) again$/).length === 1)

  // 4. This host's own link at MTU 1400: DF makes its kernel refuse the 1500-byte probe (it would fragment it otherwise).
  lab.exec(a.ns, ['ip', 'link', 'set', 'ul0', 'mtu', '1400'])
  const refused = await until('a reports the local MTU', a, b, (r) => r.pathMtuOk === false && r.pathMtu !== null)
  assert.equal(refused.pathMtu, 1400, 'refused here above the interface MTU, exactly')
  await waitFor('second black hole logged', () => logged(/^MTU black hole toward peer /).length === 2)
  const second = logged(/^MTU black hole toward peer /)[1].msg as string
  assert.match(second, /this host refuses to send them because an interface MTU here is below 1500; the largest that got through: 1400 bytes/)
  assert.match(second, /to 1350 or less/)
  lab.exec(a.ns, ['ip', 'link', 'set', 'ul0', 'mtu', '1500'])
  await until('a sees the path healed again', a, b, (r) => r.pathMtuOk === true)
  assert.equal((await scrape()).includes('tapestry_peer_mtu_blackhole_total 2'), true)

  // 5. The peer's link goes down: down within a few intervals, logged once; up again when it returns.
  lab.exec(c.underlayNs, ['ip', 'link', 'set', `p${b.name}`, 'down'])
  const down = await until('a reports b down', a, b, (r) => r.state === 'down', 10_000)
  assert.equal(down.rttMs, null)
  assert.equal(down.pathMtuOk, null)
  assert.ok((down.lossPct ?? 0) > 0, `lossPct ${down.lossPct}`)
  assert.match(await cli(a, ['peers']), new RegExp(`^${b.underlayIP.replace(/\./g, '\\.')}\\s+true\\s+down\\s+-\\s+\\d`, 'm'))
  assert.equal(series(await scrape(), `tapestry_peer_up${peerLabel}`), 0)
  await waitFor('down logged', () => logged(/^peer 192\.168\.250\.2 is down: /).length > 0)
  const downs = logged(/^peer 192\.168\.250\.2 is down: /)
  assert.equal(downs.length, 1)
  assert.equal(downs[0].level, 40)
  lab.exec(c.underlayNs, ['ip', 'link', 'set', `p${b.name}`, 'up'])
  const back = await until('a reports b up again', a, b, (r) => r.state === 'up' && r.pathMtuOk === true, 20_000)
  assert.ok(back.rttMs !== null)
  await waitFor('up again logged', () => logged(/^peer 192\.168\.250\.2 is up again after [\d.]+ s down$/).length === 1)
  assert.equal(logged(/^peer 192\.168\.250\.2 is down: /).length, 1, 'down logged once')
})

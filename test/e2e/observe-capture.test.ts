/**
 * `tapestry capture` against running agents: two hosts, one pod each, ping and
 * TCP between them while nine captures run at once on host A, one per point
 * (pod, VNI, underlay) and per way of ending (-c, --duration, SIGINT). tshark
 * reads every file and decodes what each point should hold. Then a live
 * `capture -w - | tcpdump -nr -`, and a capture that the agent ends by stopping
 * (SIGTERM): every file is complete and valid.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { Lab, Proc, parsePing, waitFor } from '../harness/lab'
import { Cluster, TAPESTRY_BIN, hostConfig } from '../harness/overlay'
import { apiSocket } from '../harness/fdb'
import { tcpTransfer } from '../harness/xfer'

const A1 = '10.244.1.2'
const B1 = '10.244.2.2'
const XFER_PORT = 7001

interface Fields { vni: string; ipSrc: string; ipProto: string; tcpPort: string; icmpType: string }

/** Reads a pcap with tshark: one row of fields per packet. Fails on any sign of a damaged file. */
function tshark(file: string): Fields[] {
  const r = spawnSync('tshark', ['-n', '-r', file, '-T', 'fields', '-e', 'vxlan.vni', '-e', 'ip.src', '-e', 'ip.proto', '-e', 'tcp.port', '-e', 'icmp.type'],
    { encoding: 'utf8', timeout: 60_000 })
  assert.equal(r.status, 0, `tshark -r ${file} exited ${r.status}: ${r.stderr}`)
  assert.doesNotMatch(r.stderr, /cut short|truncated|corrupt|isn't a capture file/i, `tshark on ${file}: ${r.stderr}`)
  return r.stdout.split('\n').filter((l) => l !== '').map((l) => {
    const [vni, ipSrc, ipProto, tcpPort, icmpType] = l.split('\t')
    return { vni, ipSrc, ipProto, tcpPort, icmpType }
  })
}

/** TCP checksum verdicts by tshark (Good/Bad) over a file: the pods' partial checksums must arrive completed. */
function tcpChecksums(file: string): { good: number; bad: number } {
  const r = spawnSync('tshark', ['-n', '-r', file, '-o', 'tcp.check_checksum:TRUE', '-Y', 'tcp', '-T', 'fields', '-e', 'tcp.checksum.status'],
    { encoding: 'utf8', timeout: 60_000 })
  assert.equal(r.status, 0, r.stderr)
  const v = r.stdout.split('\n').filter((l) => l !== '')
  return { good: v.filter((x) => x === '1').length, bad: v.filter((x) => x === '0').length }
}

test('capture: pod, vni and underlay files ended by -c, --duration, SIGINT and agent stop; live pipe to tcpdump', { timeout: 180_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  const a1 = c.podNs('a1')
  const b1 = c.podNs('b1')
  const sock = apiSocket(c.dir, a.name)
  await c.startAgent(a, hostConfig(a, c.hosts, nets, [{ name: 'a1', network: 'blue', netns: a1, ip: `${A1}/16` }], { api: { socket: sock } }))
  await c.startAgent(b, hostConfig(b, c.hosts, nets, [{ name: 'b1', network: 'blue', netns: b1, ip: `${B1}/16` }], { api: { socket: apiSocket(c.dir, b.name) } }))
  const agentA = c.agent(a)!
  const started = (): number => (agentA.stdout().match(/"capture started"/g) ?? []).length

  // Neighbours and FDBs warm, so the captures see the traffic itself.
  const warm = await lab.execAsync(a1, ['ping', '-c', '2', '-i', '0.1', '-W', '2', B1])
  assert.equal(parsePing(warm.stdout).received, 2, warm.stdout + warm.stderr)

  const capture = (args: string[]): Proc => lab.spawn(null, [process.execPath, TAPESTRY_BIN, 'capture', '--socket', sock, ...args])
  const file = (n: string): string => path.join(c.dir, `${n}.pcap`)

  await t.test('nine captures at once, read by tshark', async () => {
    const points = { pod: ['--pod', 'a1'], vni: ['--vni', '42'], underlay: ['--underlay'] }
    // -c captures: each with its own filter, so each also checks the filter through the API.
    const countFilter = { pod: 'icmp', vni: 'icmp and src host 10.244.2.2', underlay: 'tcp port 7001' }
    const caps: Record<string, Proc> = {}
    for (const [p, where] of Object.entries(points) as [keyof typeof points, string[]][]) {
      caps[`${p}-count`] = capture([...where, '-c', '20', '--filter', countFilter[p], '-w', file(`${p}-count`)])
      caps[`${p}-duration`] = capture([...where, '--duration', '4', '-w', file(`${p}-duration`)])
      caps[`${p}-sigint`] = capture([...where, '-w', file(`${p}-sigint`), 'tcp', 'or', 'icmp'])
    }
    await waitFor('9 captures started in the agent', () => started() >= 9, 15_000)

    // Traffic: ping, then TCP, inside the 4 seconds of the --duration captures.
    const ping = await lab.execAsync(a1, ['ping', '-c', '30', '-i', '0.02', '-W', '2', B1])
    assert.equal(parsePing(ping.stdout).received, 30, ping.stdout + ping.stderr)
    const x = await tcpTransfer(lab, a1, b1, B1, 2_000_000, XFER_PORT)
    assert.equal(x.received.sha256, x.sent.sha256)

    for (const p of Object.keys(points)) {
      for (const end of ['count', 'duration']) {
        const proc = caps[`${p}-${end}`]
        const code = await proc.exited
        assert.equal(code, 0, `${p}-${end}: ${proc.stderr()}`)
        assert.match(proc.stderr(), end === 'count' ? /20 packets captured \(count reached\)/ : /captured \(duration elapsed\)/)
      }
      const s = caps[`${p}-sigint`]
      assert.equal(s.child.exitCode, null, `${p}-sigint still running`)
      s.child.kill('SIGINT')
      assert.equal(await s.exited, 0, s.stderr())
      assert.match(s.stderr(), /packets captured \(interrupted\)/)
    }

    // pod a1: its own frames (ICMP both ways, TCP both ways), no VXLAN.
    const podCount = tshark(file('pod-count'))
    assert.equal(podCount.length, 20)
    assert.ok(podCount.every((f) => f.ipProto === '1' && f.vni === ''), 'icmp only, inner frames')
    assert.deepEqual(new Set(podCount.map((f) => f.icmpType)), new Set(['8', '0']), 'requests and replies')
    for (const end of ['duration', 'sigint']) {
      const rows = tshark(file(`pod-${end}`))
      assert.ok(rows.every((f) => f.vni === ''), `pod-${end}: no VXLAN`)
      assert.deepEqual(new Set(rows.filter((f) => f.ipSrc !== '').map((f) => f.ipSrc)), new Set([A1, B1]), `pod-${end}`)
      assert.ok(rows.some((f) => f.ipProto === '1'), `pod-${end}: ICMP`)
      assert.ok(rows.some((f) => f.tcpPort.split(',').includes(String(XFER_PORT))), `pod-${end}: TCP to ${XFER_PORT}`)
      const sums = tcpChecksums(file(`pod-${end}`))
      assert.ok(sums.good > 0 && sums.bad === 0, `pod-${end}: TCP checksums ${JSON.stringify(sums)}`)
    }

    // VNI 42: every frame entering the switch, inner only.
    const vniCount = tshark(file('vni-count'))
    assert.equal(vniCount.length, 20)
    assert.ok(vniCount.every((f) => f.ipSrc === B1 && f.ipProto === '1' && f.vni === ''), 'the filter kept ICMP from b1')
    for (const end of ['duration', 'sigint']) {
      const rows = tshark(file(`vni-${end}`))
      assert.ok(rows.every((f) => f.vni === ''), `vni-${end}: VXLAN removed`)
      assert.deepEqual(new Set(rows.filter((f) => f.ipSrc !== '').map((f) => f.ipSrc)), new Set([A1, B1]), `vni-${end}`)
      assert.ok(rows.some((f) => f.tcpPort.split(',').includes(String(XFER_PORT))), `vni-${end}: TCP`)
    }

    // Underlay: outer IPv4/UDP rebuilt, Wireshark decodes VXLAN 42 and the inner packet.
    const ulCount = tshark(file('underlay-count'))
    assert.equal(ulCount.length, 20)
    for (const f of ulCount) {
      assert.equal(f.vni, '42')
      assert.ok([`192.168.250.1,${A1}`, `192.168.250.2,${B1}`].includes(f.ipSrc), `outer and inner source: ${f.ipSrc}`)
      assert.equal(f.ipProto, '17,6', 'UDP outside, TCP inside')
      assert.ok(f.tcpPort.split(',').includes(String(XFER_PORT)))
    }
    for (const end of ['duration', 'sigint']) {
      const rows = tshark(file(`underlay-${end}`))
      assert.ok(rows.length > 0 && rows.every((f) => f.vni === '42'), `underlay-${end}: VXLAN 42 throughout`)
      assert.ok(rows.some((f) => f.ipSrc === `192.168.250.1,${A1}`) && rows.some((f) => f.ipSrc === `192.168.250.2,${B1}`), `underlay-${end}: both directions`)
      assert.ok(rows.some((f) => f.ipProto === '17,1'), `underlay-${end}: ICMP inside`)
    }
  })

  await t.test('capture --pod a1 -w - | tcpdump -nr - shows packets live', async () => {
    const before = started()
    const cap = spawn(process.execPath, [TAPESTRY_BIN, 'capture', '--socket', sock, '--pod', 'a1', '-w', '-'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const td = spawn('tcpdump', ['-l', '-n', '-r', '-'], { stdio: ['pipe', 'pipe', 'pipe'] })
    t.after(() => { cap.kill('SIGKILL'); td.kill('SIGKILL') })
    cap.stdout.pipe(td.stdin)
    let out = ''
    let capErr = ''
    td.stdout.on('data', (d: Buffer) => { out += d.toString() })
    cap.stderr.on('data', (d: Buffer) => { capErr += d.toString() })
    const tdExit = new Promise<number | null>((r) => td.on('exit', (code) => r(code)))
    const capExit = new Promise<number | null>((r) => cap.on('exit', (code) => r(code)))
    await waitFor('capture started', () => started() > before, 10_000)
    const ping = lab.execAsync(a1, ['ping', '-c', '20', '-i', '0.1', '-W', '2', B1])
    // Lines appear while the capture still runs.
    await waitFor('tcpdump printing echo requests', () => /IP 10\.244\.1\.2 > 10\.244\.2\.2: ICMP echo request/.test(out), 10_000)
    assert.equal(cap.exitCode, null, 'the capture is still running')
    await waitFor('tcpdump printing echo replies', () => /IP 10\.244\.2\.2 > 10\.244\.1\.2: ICMP echo reply/.test(out), 10_000)
    await ping
    cap.kill('SIGINT')
    assert.equal(await capExit, 0, capErr)
    assert.equal(await tdExit, 0, 'tcpdump read a valid stream to its end')
  })

  await t.test('without -w: one decoded line per packet; bad requests are refused before any byte', async () => {
    const before = started()
    const cap = capture(['--underlay', '-c', '4', 'icmp'])
    await waitFor('capture started', () => started() > before, 10_000)
    const ping = await lab.execAsync(a1, ['ping', '-c', '3', '-i', '0.05', '-W', '2', B1])
    assert.equal(parsePing(ping.stdout).received, 3)
    assert.equal(await cap.exited, 0, cap.stderr())
    const lines = cap.stdout().split('\n').filter((l) => l !== '')
    assert.equal(lines.length, 4)
    assert.match(lines[0], /^\d\d:\d\d:\d\d\.\d{6} 192\.168\.250\.1\.\d+ > 192\.168\.250\.2\.4789 VXLAN vni 42: \S+ > \S+ IPv4 10\.244\.1\.2 > 10\.244\.2\.2 ICMP echo request id \d+ seq 1$/)
    assert.match(lines[1], /192\.168\.250\.2\.\d+ > 192\.168\.250\.1\.4789 VXLAN vni 42: .* ICMP echo reply id \d+ seq 1$/)

    for (const [args, status, message] of [
      [['--pod', 'nosuch', '-w', file('x')], 1, /no pod nosuch on this node \(pods: a1\)/],
      [['--vni', '7', '-w', file('x')], 1, /no network with VNI 7 on this node \(VNIs: 42\)/],
      [['--pod', 'a1', '--underlay'], 2, /--pod and --underlay cannot be combined/],
      [['--pod', 'a1', 'port', 'x'], 2, /'x' is not a port number/],
    ] as [string[], number, RegExp][]) {
      const p = capture(args)
      assert.equal(await p.exited, status, `${args.join(' ')}: ${p.stderr()}`)
      assert.match(p.stderr(), message)
    }
    assert.ok(!fs.existsSync(file('x')), 'no file for a refused capture')
  })

  await t.test('the agent stopping (SIGTERM) ends captures with valid files', async () => {
    const before = started()
    const f = file('agent-stop')
    const cap = capture(['--underlay', '-w', f])
    await waitFor('capture started', () => started() > before, 10_000)
    const ping = lab.execAsync(a1, ['ping', '-c', '10', '-i', '0.05', '-W', '1', B1])
    await waitFor('packets in the file', () => fs.statSync(f).size > 24 + 10 * (16 + 42 + 50 + 84), 10_000)
    await ping
    assert.equal(await c.stopAgent(a), 0)
    assert.equal(await cap.exited, 0, cap.stderr())
    assert.match(cap.stderr(), /packets captured \(the agent stopped\)/)
    const rows = tshark(f)
    assert.ok(rows.length >= 10 && rows.every((r) => r.vni === '42'), `${rows.length} VXLAN packets`)
    assert.match(agentA.stdout(), /"reason":"shutdown","msg":"capture ended"/)
  })
})

/**
 * `tapestry sniff` on hosts that run the Linux kernel's VXLAN, no agent at all:
 * two host namespaces, each with `vx0` (VNI 42, dstport 4789, unicast to the
 * other); sniff on one host decodes the outer addresses, the VNI and the inner
 * frames (MACs, ICMP, TCP flags), and -w writes pcap that tshark reads.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { spawnSync } from 'node:child_process'
import { Lab, Proc, parsePing, waitFor } from '../harness/lab'
import { Cluster, Host, TAPESTRY_BIN } from '../harness/overlay'
import { tcpTransfer } from '../harness/xfer'

const VNI = 42

test('sniff decodes a kernel vxlan device\'s traffic: lines and pcap', { timeout: 90_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const ka = c.addHost('ka', 1)
  const kb = c.addHost('kb', 2)
  const overlay: Record<string, string> = { [ka.name]: '10.9.0.1', [kb.name]: '10.9.0.2' }
  const mac: Record<string, string> = { [ka.name]: '02:00:0a:09:00:01', [kb.name]: '02:00:0a:09:00:02' }
  for (const [h, other] of [[ka, kb], [kb, ka]] as [Host, Host][]) {
    lab.exec(h.ns, ['ip', 'link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VNI), 'dstport', '4789',
      'remote', other.underlayIP, 'local', h.underlayIP, 'dev', h.ifname])
    lab.exec(h.ns, ['ip', 'link', 'set', 'vx0', 'address', mac[h.name]])
    lab.exec(h.ns, ['ip', 'addr', 'add', `${overlay[h.name]}/24`, 'dev', 'vx0'])
    lab.exec(h.ns, ['ip', 'link', 'set', 'vx0', 'up'])
  }
  const sniff = (args: string[]): Proc => lab.spawn(ka.ns, [process.execPath, TAPESTRY_BIN, 'sniff', ...args])
  const listening = (p: Proc): Promise<boolean> => waitFor('sniff listening', () => {
    if (p.child.exitCode !== null) throw new Error(`sniff exited ${p.child.exitCode}: ${p.stderr()}`)
    return p.stderr().includes('listening on')
  }, 10_000)

  await t.test('one line per packet: outer, VNI, inner MACs, ICMP, TCP flags', async () => {
    const s = sniff(['--interface', ka.ifname])
    await listening(s)
    const ping = await lab.execAsync(ka.ns, ['ping', '-c', '3', '-i', '0.1', '-W', '2', overlay[kb.name]])
    assert.equal(parsePing(ping.stdout).received, 3, ping.stdout + ping.stderr)
    const x = await tcpTransfer(lab, kb.ns, ka.ns, overlay[ka.name], 20_000)
    assert.equal(x.received.bytes, 20_000)
    await waitFor('the TCP handshake and echo replies printed', () => / TCP \[S\.\] /.test(s.stdout()) && /ICMP echo reply/.test(s.stdout()), 10_000)
    s.child.kill('SIGINT')
    assert.equal(await s.exited, 0, s.stderr())
    const lines = s.stdout().split('\n').filter((l) => l !== '')
    const ua = ka.underlayIP.replace(/\./g, '\\.')
    const ub = kb.underlayIP.replace(/\./g, '\\.')
    const request = new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{6} ${ua}\\.\\d+ > ${ub}\\.4789 VXLAN vni ${VNI}: ${mac[ka.name]} > ${mac[kb.name]} IPv4 10\\.9\\.0\\.1 > 10\\.9\\.0\\.2 ICMP echo request id \\d+ seq 1$`)
    assert.ok(lines.some((l) => request.test(l)), `no echo request line like ${request} in:\n${lines.join('\n')}`)
    const reply = new RegExp(`${ub}\\.\\d+ > ${ua}\\.4789 VXLAN vni ${VNI}: ${mac[kb.name]} > ${mac[ka.name]} IPv4 10\\.9\\.0\\.2 > 10\\.9\\.0\\.1 ICMP echo reply`)
    assert.ok(lines.some((l) => reply.test(l)), `no echo reply line in:\n${lines.join('\n')}`)
    assert.ok(lines.some((l) => /VXLAN vni 42: .* IPv4 10\.9\.0\.2\.\d+ > 10\.9\.0\.1\.7001 TCP \[S\] len 0$/.test(l)), 'SYN')
    assert.ok(lines.some((l) => /IPv4 10\.9\.0\.1\.7001 > 10\.9\.0\.2\.\d+ TCP \[S\.\] len 0$/.test(l)), 'SYN-ACK')
    assert.ok(lines.some((l) => / TCP \[F\.\] /.test(l)), 'FIN')
    assert.ok(lines.every((l) => l.includes(`VXLAN vni ${VNI}: `)), 'every line is VXLAN (the kernel filter is udp port 4789)')
    assert.match(s.stderr(), new RegExp(`${lines.length} packets \\(interrupted\\)`))
  })

  await t.test('-w FILE -c N on the "any" device: pcap that tshark decodes as VXLAN', async () => {
    const file = path.join(c.dir, 'sniff.pcap')
    const s = sniff(['-c', '4', '-w', file])
    await listening(s)
    const ping = await lab.execAsync(ka.ns, ['ping', '-c', '2', '-i', '0.1', '-W', '2', overlay[kb.name]])
    assert.equal(parsePing(ping.stdout).received, 2, ping.stdout + ping.stderr)
    assert.equal(await s.exited, 0, s.stderr())
    assert.match(s.stderr(), /4 packets \(count reached\)/)
    const r = spawnSync('tshark', ['-n', '-r', file, '-T', 'fields', '-e', 'sll.pkttype', '-e', 'vxlan.vni', '-e', 'ip.src', '-e', 'icmp.type'], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    const rows = r.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'))
    assert.equal(rows.length, 4)
    for (const [, vni, src] of rows) {
      assert.equal(vni, String(VNI))
      // An inner ARP (the kernel re-checking its neighbour) has only the outer source.
      assert.ok([`${ka.underlayIP},10.9.0.1`, `${kb.underlayIP},10.9.0.2`, ka.underlayIP, kb.underlayIP].includes(src), src)
    }
    assert.ok(rows.filter((x) => x[3] === '8' || x[3] === '0').length >= 2, `ICMP echo inside: ${r.stdout}`)
  })

  await t.test('bad arguments and interfaces are refused clearly', async () => {
    const r = await lab.execAsync(ka.ns, [process.execPath, TAPESTRY_BIN, 'sniff', '--interface', 'nosuch0'], 10_000)
    assert.equal(r.code, 1)
    assert.match(r.stderr, /nosuch0/)
    const u = await lab.execAsync(ka.ns, [process.execPath, TAPESTRY_BIN, 'sniff', '--port', '99999'], 10_000)
    assert.equal(u.code, 2)
    assert.match(u.stderr, /--port needs an integer in 1\.\.65535/)
  })
})

/**
 * Interoperability with the Linux kernel's VXLAN: host A runs the Tapestry
 * agent, host B a kernel vxlan device (unicast to A, learning) in a Linux bridge
 * with a pod's veth. Both UDP ports in use: 4789 (IANA) and 8472 (Linux's
 * historical default). Ping both ways, a hashed TCP transfer both ways, and
 * iperf3 forward and reverse.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parsePing, waitFor } from '../harness/lab'
import { tcpTransfer } from '../harness/xfer'
import { twoHosts, VNI } from '../harness/two-hosts'

for (const port of [4789, 8472]) {
  test(`Tapestry <-> kernel vxlan (UDP port ${port}): ping, TCP and iperf3 both ways`, { timeout: 60_000 }, async (t) => {
    const { lab, c, a, b, start } = twoHosts(t)
    const b1 = { ns: c.podNs('b1'), ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }

    // Host B: kernel VXLAN in a bridge, and a pod behind a veth on the same bridge.
    // B's underlay is a veth with checksum offload on, so B's kernel sends the inner
    // TCP checksum unfinished (CHECKSUM_PARTIAL survives veth), as in nested setups:
    // Tapestry must hand such frames to its pod as partial, or TCP never connects.
    lab.exec(b.ns, ['ip', 'link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VNI), 'dstport', String(port),
      'local', b.underlayIP, 'remote', a.underlayIP, 'dev', b.ifname, 'learning'])
    lab.bridge(b.ns, 'br0')
    lab.exec(b.ns, ['ip', 'link', 'set', 'vx0', 'master', 'br0', 'up'])
    lab.veth(b1.ns, 'eth0', b.ns, 'vb1', `${b1.ip}/16`, undefined, 1450)
    lab.exec(b1.ns, ['ip', 'link', 'set', 'eth0', 'address', b1.mac])
    lab.exec(b.ns, ['ip', 'link', 'set', 'vb1', 'master', 'br0'])
    assert.match(lab.exec(b.ns, ['ip', '-d', 'link', 'show', 'vx0']), new RegExp(`vxlan id ${VNI} remote ${a.underlayIP.replace(/\./g, '\\.')} .*dstport ${port}`))

    // Host A: the agent, with B as its only peer on the same port.
    const { a1 } = await start({ a: [{ name: 'a1', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }], extra: { node: { vxlanPort: port } } })

    for (const [from, to] of [[a1, b1], [b1, a1]]) {
      const r = await lab.execAsync(from.ns, ['ping', '-c', '3', '-i', '0.05', '-W', '2', to.ip])
      assert.equal(parsePing(r.stdout).received, 3, `${from.ip} -> ${to.ip}: ${r.stdout}${r.stderr}`)
    }
    // The kernel learned a1's MAC behind Tapestry's VTEP.
    const kfdb = lab.exec(b.ns, ['bridge', 'fdb', 'show', 'dev', 'vx0'])
    assert.match(kfdb, new RegExp(`${a1.mac} dst ${a.underlayIP.replace(/\./g, '\\.')}`), `kernel vxlan fdb:\n${kfdb}`)

    for (const [client, server] of [[a1, b1], [b1, a1]]) {
      const x = await tcpTransfer(lab, client.ns, server.ns, server.ip, 20_000_000)
      assert.equal(x.received.bytes, 20_000_000, `${client.ip} -> ${server.ip}`)
      assert.equal(x.received.sha256, x.sent.sha256, `${client.ip} -> ${server.ip}: data differs`)
    }

    for (const reverse of [false, true]) {
      const srv = lab.spawn(b1.ns, ['iperf3', '-s', '-1', '-J'])
      await waitFor('iperf3 server listening', () => lab.exec(b1.ns, ['ss', '-ltn']).includes(':5201'))
      const cli = await lab.execAsync(a1.ns, ['iperf3', '-c', b1.ip, '-t', '2', '-J', ...(reverse ? ['-R'] : [])], 30_000)
      assert.equal(cli.code, 0, `iperf3${reverse ? ' -R' : ''}: ${cli.stdout}${cli.stderr}`)
      const end = JSON.parse(cli.stdout).end
      assert.ok(end.sum_received.bytes > 1_000_000, `iperf3${reverse ? ' -R' : ''} moved ${end.sum_received.bytes} bytes`)
      await srv.exited
    }
  })
}

/**
 * Port security against a pod that forges another pod's identity. The victim
 * v is on host A; the attacker x and the peer p are on host B, so a forged
 * frame that got through would teach B's switch (and p's ARP table) that the
 * victim lives behind x. The attacker, in its own namespace:
 *   1. adds the victim's IP to its eth0 and pings p from it (-I);
 *   2. sends gratuitous ARP (request and reply) claiming the victim's IP;
 *   3. takes the victim's MAC on its eth0 and pings p as the victim, MAC and IP.
 * With port security (the default): the victim's own pings keep being
 * answered, B's FDB still has the victim's MAC behind A, p's ARP entry for the
 * victim keeps the victim's MAC, and the forged frames are counted as spoofed.
 * With portSecurity: false on x, the same frames are forwarded (p sees them,
 * B's FDB moves the victim's MAC to x): the check is what blocks them.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parsePing } from '../harness/lab'
import { fdbFind, fdbShow } from '../harness/fdb'
import { startCapture, quietPeriod } from '../harness/capture'
import { arpHex, assertAgentAlive, dropDelta, sendRaw, stats } from '../harness/harden'
import { twoHosts, VNI } from '../harness/two-hosts'

async function scenario(t: { after: (fn: () => Promise<void>) => void }, portSecurity: boolean) {
  const { lab, c, a, b, sockA, sockB, start } = twoHosts(t)
  const { v, x, p } = await start({
    a: [{ name: 'v', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }],
    b: [{ name: 'p', ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }, { name: 'x', ip: '10.244.2.3', mac: '02:00:0a:f4:02:03', config: { portSecurity } }],
  })
  // Everyone knows everyone: ARP entries and FDB entries exist before the attack.
  for (const [from, to] of [[p, v], [v, p], [x, p]] as const) {
    const r = await lab.execAsync(from.ns, ['ping', '-c', '2', '-i', '0.1', '-W', '2', to.ip])
    assert.equal(parsePing(r.stdout).received, 2, `warm-up ${from.name} -> ${to.name}: ${r.stdout}${r.stderr}`)
  }
  const beforeB = await stats(lab, b, sockB)
  // p sees what reaches it claiming to be the victim, from another MAC than the victim's.
  const capP = await startCapture(lab, p.ns, ['(icmp', 'or', 'arp)', 'and', 'not', 'ether', 'src', v.mac], { direction: 'in' })
  // The victim's traffic, running through the whole attack.
  const victimPing = lab.execAsync(p.ns, ['ping', '-c', '150', '-i', '0.05', '-W', '2', v.ip], 60_000)

  // 1. The victim's IP on the attacker's eth0, and pings from it.
  lab.exec(x.ns, ['ip', 'addr', 'add', `${v.ip}/32`, 'dev', 'eth0'])
  const forgedIp = await lab.execAsync(x.ns, ['ping', '-c', '20', '-i', '0.05', '-W', '1', '-I', v.ip, p.ip], 30_000)
  // 2. Gratuitous ARP claiming the victim's IP with the attacker's MAC: request to all, reply to p.
  const garp = [
    arpHex({ op: 1, srcMac: x.mac, sha: x.mac, spa: v.ip, tpa: v.ip }),
    arpHex({ op: 2, srcMac: x.mac, sha: x.mac, spa: v.ip, tha: p.mac, tpa: p.ip, dstMac: p.mac }),
  ]
  const arpSent = await sendRaw(lab, x.ns, 'eth0', { frames: garp, perSecond: 200 }, 10, 40)
  // 3. The victim's MAC and IP, both.
  lab.exec(x.ns, ['ip', 'link', 'set', 'dev', 'eth0', 'address', v.mac])
  lab.exec(x.ns, ['ip', 'neigh', 'replace', p.ip, 'lladdr', p.mac, 'dev', 'eth0'])
  const forgedBoth = await lab.execAsync(x.ns, ['ping', '-c', '20', '-i', '0.05', '-W', '1', '-I', v.ip, p.ip], 30_000)

  const vp = parsePing((await victimPing).stdout)
  await quietPeriod(300)
  const afterB = await stats(lab, b, sockB)
  const seenAtP = await capP.stop()
  const fdbB = await fdbShow(lab, b.ns, sockB)
  const fdbA = await fdbShow(lab, a.ns, sockA)
  const neigh = lab.exec(p.ns, ['ip', 'neigh', 'show', v.ip, 'dev', 'eth0'])
  assertAgentAlive(c, a)
  assertAgentAlive(c, b)
  return { c, a, b, v, x, p, vp, forgedIp, forgedBoth, arpSent, seenAtP, fdbA, fdbB, neigh, drops: dropDelta(beforeB, afterB), movedB: afterB.fdb.moved - beforeB.fdb.moved }
}

test('port security: a pod forging another pod\'s IP, MAC and ARP steals nothing and poisons nothing', { timeout: 180_000 }, async (t) => {
  const r = await scenario(t, true)
  assert.equal(r.arpSent.sent, 40)
  assert.equal(r.vp.received, 150, `the victim lost ${150 - r.vp.received} of its 150 pings during the attack`)
  assert.equal(parsePing(r.forgedIp.stdout).received, 0, `a ping from the stolen IP was answered: ${r.forgedIp.stdout}`)
  assert.equal(parsePing(r.forgedBoth.stdout).received, 0, `a ping as the victim (MAC and IP) was answered: ${r.forgedBoth.stdout}`)
  // Nothing forged reached p: no ICMP from the victim's IP, no ARP for it, from any MAC but the victim's.
  const forged = r.seenAtP.filter((l) => l.includes(r.v.ip))
  assert.deepEqual(forged, [], 'forged frames reached p')
  // Host A: the victim's MAC is its own static entry; host B: still behind A.
  const onA = fdbFind(r.fdbA, VNI, r.v.mac)
  assert.deepEqual(onA && { type: onA.type, pod: onA.pod }, { type: 'static', pod: 'v' })
  const onB = fdbFind(r.fdbB, VNI, r.v.mac)
  assert.deepEqual(onB && { remote: onB.remote, pod: onB.pod }, { remote: r.a.underlayIP, pod: null }, `B's FDB entry for the victim's MAC: ${JSON.stringify(onB)}`)
  assert.match(r.neigh, new RegExp(`lladdr ${r.v.mac}`), `p's ARP entry for the victim: ${r.neigh}`)
  // 20 + 20 echo requests and 40 ARP frames at least (x's kernel adds ARP and IPv6 of its own).
  assert.ok((r.drops.spoofed ?? 0) >= 80, `spoofed drops on B: ${JSON.stringify(r.drops)}`)
})

test('without port security the same forged frames are forwarded (the check is what blocks them)', { timeout: 180_000 }, async (t) => {
  const r = await scenario(t, false)
  assert.equal(r.vp.received > 0, true)
  // p received ICMP from the victim's IP and ARP claiming it, from the attacker's MAC.
  const icmp = r.seenAtP.filter((l) => l.includes(`${r.v.ip} > ${r.p.ip}`) && l.includes('ICMP echo request'))
  const arp = r.seenAtP.filter((l) => /ARP/.test(l) && l.includes(r.v.ip))
  assert.ok(icmp.length >= 20, `p saw ${icmp.length} forged echo requests:\n${r.seenAtP.slice(0, 10).join('\n')}`)
  assert.ok(arp.length >= 20, `p saw ${arp.length} forged ARP frames`)
  assert.equal(r.drops.spoofed ?? 0, 0, `spoofed drops with port security off: ${JSON.stringify(r.drops)}`)
  // Once x sent as the victim's MAC, B's switch moved that MAC to x (and back, as the
  // victim keeps pinging from A meanwhile: the entry at the end may point either way).
  assert.ok(r.movedB > 0, `B's FDB recorded no move of the victim's MAC: ${JSON.stringify(fdbFind(r.fdbB, VNI, r.v.mac))}`)
})

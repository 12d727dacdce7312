/**
 * The priority lane's classic BPF program (overlay/steering.ts), run by a small
 * interpreter of the instructions it uses, with the kernel's semantics: a load
 * past the end of the datagram ends the program with 0. The kernel's own run of
 * it is checked on real sockets (test/e2e/udp-lanes.test.ts) and in running
 * agents (test/e2e/overlay-priority-lane.test.ts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BPF_JEQ_K, BPF_LD_B_ABS, BPF_LD_H_ABS, BPF_RET_K, LANE_BULK, LANE_PRIORITY, assemble, priorityLaneProgram } from '../../../src/overlay/steering'
import { BROADCAST, arpFrame, tcpFrame, udpFrame, vxlanPacket } from '../wire/frames'

/** Runs a program over `pkt` (offset 0 = the UDP payload, as SO_ATTACH_REUSEPORT_CBPF sees it). */
function run(prog: Uint8Array, pkt: Uint8Array, littleEndian = true): number {
  const dv = new DataView(prog.buffer, prog.byteOffset, prog.byteLength)
  let a = 0
  for (let pc = 0; pc < prog.length / 8;) {
    const code = dv.getUint16(pc * 8, littleEndian)
    const jt = dv.getUint8(pc * 8 + 2)
    const jf = dv.getUint8(pc * 8 + 3)
    const k = dv.getUint32(pc * 8 + 4, littleEndian)
    pc++
    switch (code) {
      case BPF_LD_H_ABS:
        if (k + 2 > pkt.length) return 0
        a = (pkt[k] << 8) | pkt[k + 1]
        break
      case BPF_LD_B_ABS:
        if (k + 1 > pkt.length) return 0
        a = pkt[k]
        break
      case BPF_JEQ_K:
        pc += a === k ? jt : jf
        break
      case BPF_RET_K:
        return k
      default:
        throw new Error(`opcode ${code} not expected`)
    }
  }
  throw new Error('ran off the end of the program')
}

const PROG = priorityLaneProgram(true)
const VNI = 42

function withProto(f: Uint8Array, off: number, proto: number): Uint8Array {
  const g = f.slice()
  g[off] = proto
  return g
}

const tcp4 = tcpFrame({ payload: new Uint8Array(100) })
const udp4 = udpFrame({ payload: new Uint8Array(100) })
const icmp4 = withProto(udp4, 14 + 9, 1)
const tcp6 = tcpFrame({ v6: true, payload: new Uint8Array(100) })
const icmp6 = withProto(udpFrame({ v6: true, payload: new Uint8Array(40) }), 14 + 6, 58)
const arp = arpFrame({ ethSrc: '02:00:00:00:00:01', ethDst: BROADCAST, op: 1, sha: '02:00:00:00:00:01', spa: '10.0.0.1', tha: '00:00:00:00:00:00', tpa: '10.0.0.2' })

test('ARP, ICMP and ICMPv6 go to the priority lane', () => {
  for (const [name, f] of [['arp', arp], ['icmp', icmp4], ['icmpv6', icmp6]] as const) {
    assert.equal(run(PROG, vxlanPacket(VNI, f)), LANE_PRIORITY, name)
  }
})

test('TCP and UDP over IPv4 and IPv6 stay on the bulk lane: no flow is split across lanes', () => {
  const udp6 = udpFrame({ v6: true, payload: new Uint8Array(100) })
  for (const [name, f] of [['tcp', tcp4], ['udp', udp4], ['tcp6', tcp6], ['udp6', udp6]] as const) {
    assert.equal(run(PROG, vxlanPacket(VNI, f)), LANE_BULK, name)
  }
})

test('what the program does not parse goes to the bulk lane', () => {
  // ICMP behind a VLAN tag, ICMPv6 behind an extension header (next header 0), another ethertype.
  const tagged = udpFrame({ vlan: 7, payload: new Uint8Array(20) })
  tagged[18 + 9] = 1
  const hopByHop = withProto(icmp6, 14 + 6, 0)
  const other = tcp4.slice()
  other[12] = 0x88; other[13] = 0xcc
  for (const [name, f] of [['vlan', tagged], ['ext header', hopByHop], ['lldp', other]] as const) {
    assert.equal(run(PROG, vxlanPacket(VNI, f)), LANE_BULK, name)
  }
})

test('a datagram too short for a load ends the program with 0: the bulk lane', () => {
  const full = vxlanPacket(VNI, icmp4)
  for (const len of [0, 8, 21, 22, 31]) assert.equal(run(PROG, full.subarray(0, len)), LANE_BULK, `length ${len}`)
  assert.equal(run(PROG, full.subarray(0, 32)), LANE_PRIORITY, 'length 32 reaches the protocol byte')
})

test('the program is encoded in the byte order asked for', () => {
  const be = priorityLaneProgram(false)
  assert.equal(be.length, PROG.length)
  assert.notDeepEqual(be, PROG)
  for (const f of [arp, icmp4, icmp6, tcp4]) assert.equal(run(be, vxlanPacket(VNI, f), false), run(PROG, vxlanPacket(VNI, f)))
})

test('assemble resolves forward labels and refuses a jump backwards or to a missing label', () => {
  const p = assemble([{ code: BPF_JEQ_K, k: 0, jt: 'yes' }, { code: BPF_RET_K, k: 5 }, { code: BPF_RET_K, k: 9, label: 'yes' }], true)
  assert.equal(run(p, new Uint8Array(0)), 9)
  assert.throws(() => assemble([{ code: BPF_RET_K, k: 0, label: 'top' }, { code: BPF_JEQ_K, k: 0, jt: 'top' }], true), /bad jump to top/)
  assert.throws(() => assemble([{ code: BPF_JEQ_K, k: 0, jt: 'nowhere' }], true), /bad jump to nowhere/)
})

/**
 * The priority lane's programs (overlay/steering.ts): the classic BPF one for the
 * underlay socket and the eBPF one for pod TAPs, each run by a small interpreter
 * of the instructions it uses, with the kernel's semantics: a load past the end
 * of the packet ends the program with 0. The kernel's own runs of them are
 * checked on real sockets (test/e2e/udp-lanes.test.ts), on a real multi-queue
 * TAP (test/e2e/tap-lanes.test.ts) and in running agents
 * (test/e2e/overlay-priority-lane.test.ts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  BPF_JEQ_K, BPF_LD_B_ABS, BPF_LD_H_ABS, BPF_RET_K, EBPF_EXIT, EBPF_JA, EBPF_JEQ_K, EBPF_LD_ABS_B, EBPF_LD_ABS_H, EBPF_MOV64_K, EBPF_MOV64_X,
  LANE_BULK, LANE_PRIORITY, QUEUE_BULK, QUEUE_PRIORITY, assemble, assembleEbpf, podLaneProgram, priorityLaneProgram,
} from '../../../src/overlay/steering'
import { BROADCAST, arpFrame, icmpLikeFrame, tcpFrame, udpFrame, vxlanPacket } from '../wire/frames'

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

const tcp4 = tcpFrame({ payload: new Uint8Array(100) })
const udp4 = udpFrame({ payload: new Uint8Array(100) })
const icmp4 = icmpLikeFrame({ payload: new Uint8Array(100) })
const tcp6 = tcpFrame({ v6: true, payload: new Uint8Array(100) })
const icmp6 = icmpLikeFrame({ v6: true, payload: new Uint8Array(40) })
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
  const tagged = icmpLikeFrame({ vlan: 7, payload: new Uint8Array(20) })
  const hopByHop = icmp6.slice()
  hopByHop[14 + 6] = 0
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

/** Runs the eBPF subset podLaneProgram uses over a frame (LD_ABS past the end: return 0, as the kernel does). */
function runEbpf(prog: Uint8Array, frame: Uint8Array, littleEndian = true): number {
  const dv = new DataView(prog.buffer, prog.byteOffset, prog.byteLength)
  const r = new Array<number>(11).fill(0)
  r[1] = -1 // the context; LD_ABS reads the packet through r6 = ctx
  for (let pc = 0; pc < prog.length / 8;) {
    const code = dv.getUint8(pc * 8)
    const regs = dv.getUint8(pc * 8 + 1)
    const dst = littleEndian ? regs & 0xf : regs >> 4
    const src = littleEndian ? regs >> 4 : regs & 0xf
    const off = dv.getInt16(pc * 8 + 2, littleEndian)
    const imm = dv.getInt32(pc * 8 + 4, littleEndian)
    pc++
    switch (code) {
      case EBPF_MOV64_X: r[dst] = r[src]; break
      case EBPF_MOV64_K: r[dst] = imm; break
      case EBPF_LD_ABS_H:
        assert.equal(r[6], -1, 'LD_ABS needs the context in r6')
        if (imm + 2 > frame.length) return 0
        r[0] = (frame[imm] << 8) | frame[imm + 1]
        break
      case EBPF_LD_ABS_B:
        assert.equal(r[6], -1, 'LD_ABS needs the context in r6')
        if (imm + 1 > frame.length) return 0
        r[0] = frame[imm]
        break
      case EBPF_JEQ_K: if (r[dst] === imm) pc += off; break
      case EBPF_JA: pc += off; break
      case EBPF_EXIT: return r[0]
      default: throw new Error(`opcode ${code} not expected`)
    }
  }
  throw new Error('ran off the end of the program')
}

test('the pod TAP program picks the same lanes from the Ethernet header, in either byte order', () => {
  const udp6 = udpFrame({ v6: true, payload: new Uint8Array(100) })
  const cases: [string, Uint8Array, number][] = [
    ['arp', arp, QUEUE_PRIORITY], ['icmp', icmp4, QUEUE_PRIORITY], ['icmpv6', icmp6, QUEUE_PRIORITY],
    ['tcp', tcp4, QUEUE_BULK], ['udp', udp4, QUEUE_BULK], ['tcp6', tcp6, QUEUE_BULK], ['udp6', udp6, QUEUE_BULK],
    ['icmp cut before the protocol byte', icmp4.subarray(0, 23), QUEUE_BULK], ['empty', new Uint8Array(0), QUEUE_BULK],
  ]
  for (const le of [true, false]) {
    const prog = podLaneProgram(le)
    for (const [name, f, want] of cases) assert.equal(runEbpf(prog, f, le), want, `${name}, ${le ? 'little' : 'big'} endian`)
    // And it agrees with the underlay program on the same frames behind a VXLAN header.
    for (const [name, f] of cases) if (f.length > 0) assert.equal(runEbpf(prog, f, le), run(PROG, vxlanPacket(VNI, f)), name)
  }
})

test('assembleEbpf encodes registers by byte order and refuses a jump backwards', () => {
  assert.deepEqual([...assembleEbpf([{ code: EBPF_MOV64_X, dst: 6, src: 1 }], true)], [0xbf, 0x16, 0, 0, 0, 0, 0, 0])
  assert.deepEqual([...assembleEbpf([{ code: EBPF_MOV64_X, dst: 6, src: 1 }], false)], [0xbf, 0x61, 0, 0, 0, 0, 0, 0])
  assert.throws(() => assembleEbpf([{ code: EBPF_EXIT, label: 'top' }, { code: EBPF_JA, to: 'top' }], true), /bad jump to top/)
})

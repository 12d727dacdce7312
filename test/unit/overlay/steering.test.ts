/**
 * The steering programs (overlay/steering.ts): the classic BPF one for the
 * underlay socket group and the eBPF one for pod TAPs, each run by a small
 * interpreter of the instructions they use, with the kernel's semantics: A, X
 * and ALU32 results are u32, a load past the end of the packet ends the program
 * with 0, and what the kernel's checker or verifier would refuse (scratch
 * memory or a register read before it is written, r1-r5 after LD_ABS/LD_IND, a
 * zero divisor, a shift of 32 or more) throws. Beyond the priority lane, the
 * workers' flow hash is checked against flowWorker, its TypeScript reference:
 * all three agree on thousands of random TCP, UDP, ICMP, ARP, IPv4-fragment,
 * IPv6-extension-header, VLAN-tagged and non-IP frames and on every truncation
 * of a few, for several layouts in both byte orders; the choice is symmetric
 * (a flow's reply lands on the same worker), spreads flows across workers, and
 * the lane and the layout checks hold. The kernel's own runs of the programs
 * are checked on real sockets (test/e2e/udp-lanes.test.ts), on a real
 * multi-queue TAP (test/e2e/tap-lanes.test.ts) and in running agents
 * (test/e2e/overlay-priority-lane.test.ts).
 */
import { test } from 'node:test'
import { steerWorkerV4 } from '../../../src/wire/steer-hash'
import assert from 'node:assert/strict'
import {
  BPF_ALU_MOD_K, BPF_ALU_MUL_K, BPF_ALU_RSH_K, BPF_ALU_XOR_X, BPF_JA, BPF_JEQ_K, BPF_JSET_K, BPF_LDX_B_MSH, BPF_LDX_MEM, BPF_LD_B_ABS, BPF_LD_H_ABS,
  BPF_LD_H_IND, BPF_LD_MEM, BPF_LD_W_ABS, BPF_RET_A, BPF_RET_K, BPF_ST, BPF_TAX,
  EBPF_AND32_K, EBPF_EXIT, EBPF_JA, EBPF_JEQ_K, EBPF_JSET_K, EBPF_LD_ABS_B, EBPF_LD_ABS_H, EBPF_LD_ABS_W, EBPF_LD_IND_H, EBPF_LSH32_K,
  EBPF_MOD32_K, EBPF_MUL32_K, EBPF_MOV32_X, EBPF_MOV64_K, EBPF_MOV64_X, EBPF_RSH32_K, EBPF_XOR32_X,
  LANE_BULK, LANE_PRIORITY, QUEUE_BULK, QUEUE_PRIORITY, type SteeringLayout,
  assemble, assembleEbpf, flowWorker, podLaneProgram, podProgram, priorityLaneProgram, underlayProgram,
} from '../../../src/overlay/steering'
import { BROADCAST, type TcpOpts, arpFrame, hexOf, icmpLikeFrame, tcpFrame, udpFrame, vxlanPacket } from '../wire/frames'
import { type Rng, below, chance, mulberry32, pick } from '../../harness/fuzz'

/**
 * The big-endian value of `size` bytes at `off`, or undefined when they run past
 * the end (the program then returns 0). Negative offsets are the kernel's
 * SKF_NET_OFF/SKF_LL_OFF areas, which no program here uses.
 */
function loadBE(pkt: Uint8Array, off: number, size: number): number | undefined {
  if (off < 0) throw new Error(`negative load offset ${off} (SKF_* areas) not expected`)
  if (off + size > pkt.length) return undefined
  let v = 0
  for (let i = 0; i < size; i++) v = v * 256 + pkt[off + i]
  return v
}

/** Runs a program over `pkt` (offset 0 = the UDP payload, as SO_ATTACH_REUSEPORT_CBPF sees it). */
function run(prog: Uint8Array, pkt: Uint8Array, littleEndian = true): number {
  const dv = new DataView(prog.buffer, prog.byteOffset, prog.byteLength)
  let a = 0
  let x = 0
  const mem = new Array<number | undefined>(16).fill(undefined)
  const slot = (k: number): number => {
    if (k >= mem.length) throw new Error(`scratch slot M[${k}] out of range`)
    return k
  }
  const readMem = (k: number): number => {
    const v = mem[slot(k)]
    if (v === undefined) throw new Error(`M[${k}] read before a store (the checker refuses it)`)
    return v
  }
  for (let pc = 0; pc < prog.length / 8;) {
    const code = dv.getUint16(pc * 8, littleEndian)
    const jt = dv.getUint8(pc * 8 + 2)
    const jf = dv.getUint8(pc * 8 + 3)
    const k = dv.getUint32(pc * 8 + 4, littleEndian)
    pc++
    let v: number | undefined
    switch (code) {
      case BPF_LD_W_ABS:
      case BPF_LD_H_ABS:
      case BPF_LD_B_ABS:
        v = loadBE(pkt, k | 0, code === BPF_LD_W_ABS ? 4 : code === BPF_LD_H_ABS ? 2 : 1)
        if (v === undefined) return 0
        a = v
        break
      case BPF_LD_H_IND:
        v = loadBE(pkt, (x + k) | 0, 2)
        if (v === undefined) return 0
        a = v
        break
      case BPF_LDX_B_MSH:
        v = loadBE(pkt, k | 0, 1)
        if (v === undefined) return 0
        x = 4 * (v & 0xf)
        break
      case BPF_LD_MEM: a = readMem(k); break
      case BPF_LDX_MEM: x = readMem(k); break
      case BPF_ST: mem[slot(k)] = a; break
      case BPF_TAX: x = a; break
      case BPF_ALU_XOR_X: a = (a ^ x) >>> 0; break
      case BPF_ALU_MUL_K:
        a = Math.imul(a, k) >>> 0
        break
      case BPF_ALU_RSH_K:
        if (k >= 32) throw new Error(`shift by ${k}`)
        a = a >>> k
        break
      case BPF_ALU_MOD_K:
        if (k === 0) throw new Error('modulo by 0 (the checker refuses it)')
        a = a % k
        break
      case BPF_JEQ_K: pc += a === k ? jt : jf; break
      case BPF_JSET_K: pc += (a & k) !== 0 ? jt : jf; break
      case BPF_JA: pc += k; break
      case BPF_RET_K: return k
      case BPF_RET_A: return a
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

/** The context pointer r1 holds at entry (a pointer, not a number: ALU on it throws). */
const CTX = Symbol('ctx')

/**
 * Runs the eBPF subset the pod programs use over a frame (offset 0 = the
 * Ethernet header). Registers hold 64-bit values as signed numbers (MOV64_K
 * sign-extends its immediate, ALU32 results are zero-extended u32s); r1 starts
 * as the context and the rest unset. LD_ABS/LD_IND read through r6 = ctx, leave
 * their result in r0 and clobber r1-r5; past the end they return 0.
 */
function runEbpf(prog: Uint8Array, frame: Uint8Array, littleEndian = true): number {
  const dv = new DataView(prog.buffer, prog.byteOffset, prog.byteLength)
  const r = new Array<number | typeof CTX | undefined>(11).fill(undefined)
  r[1] = CTX
  const scalar = (i: number): number => {
    const v = r[i]
    if (typeof v !== 'number') throw new Error(`r${i} used as a number but holds ${String(v)}`)
    return v
  }
  const u32 = (i: number): number => scalar(i) >>> 0
  const load = (off: number, size: number): boolean => {
    assert.equal(r[6], CTX, 'LD_ABS and LD_IND need the context in r6')
    const v = loadBE(frame, off, size)
    if (v === undefined) return false
    r.fill(undefined, 1, 6)
    r[0] = v
    return true
  }
  const shift = (imm: number): number => {
    if (imm < 0 || imm >= 32) throw new Error(`shift by ${imm}`)
    return imm
  }
  for (let pc = 0; pc < prog.length / 8;) {
    const code = dv.getUint8(pc * 8)
    const regs = dv.getUint8(pc * 8 + 1)
    const dst = littleEndian ? regs & 0xf : regs >> 4
    const src = littleEndian ? regs >> 4 : regs & 0xf
    const off = dv.getInt16(pc * 8 + 2, littleEndian)
    const imm = dv.getInt32(pc * 8 + 4, littleEndian)
    pc++
    switch (code) {
      case EBPF_MOV64_X:
        if (r[src] === undefined) throw new Error(`r${src} read before it is written`)
        r[dst] = r[src]
        break
      case EBPF_MOV64_K: r[dst] = imm; break
      case EBPF_LD_ABS_W: if (!load(imm, 4)) return 0; break
      case EBPF_LD_ABS_H: if (!load(imm, 2)) return 0; break
      case EBPF_LD_ABS_B: if (!load(imm, 1)) return 0; break
      case EBPF_LD_IND_H: if (!load((scalar(src) + imm) | 0, 2)) return 0; break
      case EBPF_MOV32_X: r[dst] = u32(src); break
      case EBPF_XOR32_X: r[dst] = (u32(dst) ^ u32(src)) >>> 0; break
      case EBPF_RSH32_K: r[dst] = u32(dst) >>> shift(imm); break
      case EBPF_MUL32_K: r[dst] = Math.imul(u32(dst), imm) >>> 0; break
      case EBPF_LSH32_K: r[dst] = (u32(dst) << shift(imm)) >>> 0; break
      case EBPF_AND32_K: r[dst] = (u32(dst) & imm) >>> 0; break
      case EBPF_MOD32_K:
        if (imm === 0) throw new Error('modulo by 0 (the verifier refuses it)')
        r[dst] = u32(dst) % (imm >>> 0)
        break
      case EBPF_JEQ_K: if (scalar(dst) === imm) pc += off; break
      case EBPF_JSET_K: if ((BigInt(scalar(dst)) & BigInt(imm)) !== 0n) pc += off; break
      case EBPF_JA: pc += off; break
      case EBPF_EXIT: return u32(0)
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

// ---- workers: the flow hash (flowWorker, podProgram, underlayProgram) ----

/** Where the inner frame starts in a VXLAN packet, and the IP header in an untagged frame. */
const VXLAN_OFF = 8
const ETH_HLEN = 14

const LAYOUTS: SteeringLayout[] = [1, 2, 3, 4, 7].flatMap((workers) => [true, false].map((lane) => ({ workers, lane })))

/** Both programs of a layout, in one byte order. */
interface Programs { layout: SteeringLayout; le: boolean; pod: Uint8Array; underlay: Uint8Array }

function programs(layout: SteeringLayout, le: boolean): Programs {
  return { layout, le, pod: podProgram(le, layout), underlay: underlayProgram(le, layout) }
}

const PROGRAMS: Programs[] = LAYOUTS.flatMap((layout) => [true, false].map((le) => programs(layout, le)))

/**
 * Asserts that flowWorker (on frame[0, len) with the rest of the frame present,
 * and at offset 8 of the VXLAN packet), the pod program (on the frame cut to
 * len) and the underlay program (on that cut frame behind a VXLAN header) make
 * the same choice, an index the layout has; returns it.
 */
function assertAgree(p: Programs, frame: Uint8Array, name: string, len = frame.length): number {
  const cut = frame.subarray(0, len)
  const vx = vxlanPacket(VNI, cut)
  const want = flowWorker(frame, 0, len, p.layout)
  const atOffset = flowWorker(vx, VXLAN_OFF, len, p.layout)
  const pod = runEbpf(p.pod, cut, p.le)
  const underlay = run(p.underlay, vx, p.le)
  const inRange = Number.isInteger(want) && want >= 0 && want < p.layout.workers + (p.layout.lane ? 1 : 0)
  if (atOffset !== want || pod !== want || underlay !== want || !inRange) {
    assert.fail(`${name}, length ${len}, layout ${JSON.stringify(p.layout)}, ${p.le ? 'little' : 'big'} endian: ` +
      `flowWorker ${want}, flowWorker at offset ${VXLAN_OFF} ${atOffset}, podProgram ${pod}, underlayProgram ${underlay}\nframe ${hexOf(cut)}`)
  }
  return want
}

interface Flow { v6: boolean; src: string; dst: string; sport: number; dport: number }

function hex16(rng: Rng): string { return below(rng, 0x10000).toString(16) }

/** A random address, half of them in a pod-like prefix. */
function randomIp4(rng: Rng): string {
  const tail = `${below(rng, 256)}.${below(rng, 256)}`
  return chance(rng, 0.5) ? `10.244.${tail}` : `${below(rng, 256)}.${below(rng, 256)}.${tail}`
}

function randomIp6(rng: Rng): string {
  const tail = Array.from({ length: 4 }, () => hex16(rng)).join(':')
  return chance(rng, 0.5) ? `fd00:0:0:1:${tail}` : `${Array.from({ length: 4 }, () => hex16(rng)).join(':')}:${tail}`
}

/** A random flow; now and then with equal addresses or equal ports (their xor is 0). */
function randomFlow(rng: Rng, v6: boolean): Flow {
  const addr = v6 ? randomIp6 : randomIp4
  const src = addr(rng)
  const dst = chance(rng, 0.03) ? src : addr(rng)
  const sport = below(rng, 0x10000)
  const dport = chance(rng, 0.03) ? sport : pick(rng, [80, 443, 53, 5201, below(rng, 0x10000), below(rng, 0x10000)])
  return { v6, src, dst, sport, dport }
}

function reply(f: Flow): Flow {
  return { v6: f.v6, src: f.dst, dst: f.src, sport: f.dport, dport: f.sport }
}

const KINDS = ['tcp', 'tcp', 'tcp', 'udp', 'udp', 'icmp', 'arp', 'other protocol', 'other ethertype'] as const

/**
 * A random frame of the kinds the programs tell apart, named for a failure
 * message: TCP, UDP, ICMP(v6)-like, ARP, another IP protocol or another
 * ethertype; IPv4 with options, without DF or a fragment (MF, an offset or
 * both); IPv6 behind an extension header; now and then VLAN-tagged.
 */
function randomFrame(rng: Rng): { name: string; frame: Uint8Array } {
  const kind = pick(rng, KINDS)
  const flow = randomFlow(rng, chance(rng, 0.4))
  const o: TcpOpts = { ...flow, payload: new Uint8Array(below(rng, 48)) }
  const notes: string[] = [kind, flow.v6 ? 'IPv6' : 'IPv4']
  if (chance(rng, 0.05)) { o.vlan = below(rng, 4096); notes.push('VLAN-tagged') }
  if (!flow.v6) {
    if (chance(rng, 0.15)) { o.ipOptions = new Uint8Array(4 * (1 + below(rng, 10))).fill(1); notes.push('IP options') }
    if (chance(rng, 0.2)) o.df = false
    if (chance(rng, 0.25)) {
      const which = below(rng, 3) // MF only (a first fragment), an offset only (the last), both (a middle one)
      o.mf = which !== 1
      o.fragOffset = which === 0 ? 0 : 1 + below(rng, 0x1fff)
      notes.push('fragment')
    }
  } else if (chance(rng, 0.1)) {
    o.nextHeader = pick(rng, [0, 43, 44, 60])
    notes.push('extension header')
  }
  const l3 = ETH_HLEN + (o.vlan !== undefined ? 4 : 0)
  let frame: Uint8Array
  switch (kind) {
    case 'tcp': frame = tcpFrame(o); break
    case 'udp': frame = udpFrame(o); break
    case 'icmp': frame = icmpLikeFrame(o); break
    case 'arp': frame = arpFrame({ vlan: o.vlan, spa: randomIp4(rng), tpa: randomIp4(rng) }); break
    case 'other protocol':
      frame = udpFrame(o)
      frame[l3 + (flow.v6 ? 6 : 9)] = pick(rng, [0, 2, 4, 41, 47, 50, 89, 132, 255])
      break
    case 'other ethertype': {
      frame = tcpFrame(o)
      const type = pick(rng, [0x88cc, 0x8847, 0x88a8, 0x0805, 0x0801, 0x86dc, 0x0000, 0xffff])
      frame[12] = type >>> 8
      frame[13] = type & 0xff
      break
    }
  }
  return { name: notes.join(' '), frame }
}

test('flowWorker and both programs choose alike on random frames, for every layout, in both byte orders', () => {
  const rng = mulberry32(0x5eed_f10e)
  const seen = PROGRAMS.map(() => new Set<number>())
  for (let i = 0; i < 3000; i++) {
    const { name, frame } = randomFrame(rng)
    PROGRAMS.forEach((p, j) => seen[j].add(assertAgree(p, frame, `frame ${i} (${name})`)))
  }
  // Every index of every layout was chosen: the frames reached each branch.
  PROGRAMS.forEach((p, j) => assert.equal(seen[j].size, p.layout.workers + (p.layout.lane ? 1 : 0), JSON.stringify(p.layout)))
})

test('they agree on every truncation of a few frames, and on fragments, VLAN tags and other ethertypes', () => {
  const rng = mulberry32(7)
  const flow4 = randomFlow(rng, false)
  const flow6 = randomFlow(rng, true)
  const tagged = tcpFrame({ ...flow4, vlan: 7 })
  const lldp = tcpFrame(flow4)
  lldp[12] = 0x88; lldp[13] = 0xcc
  const samples: [string, Uint8Array][] = [
    ['TCP/IPv4 with IP options', tcpFrame({ ...flow4, ipOptions: new Uint8Array(8).fill(1), payload: new Uint8Array(10) })],
    ['UDP/IPv6', udpFrame({ ...flow6, payload: new Uint8Array(10) })],
    ['UDP/IPv6 behind a hop-by-hop header', udpFrame({ ...flow6, nextHeader: 0 })],
    ['ICMP', icmpLikeFrame(flow4)], ['ICMPv6', icmpLikeFrame(flow6)], ['ARP', arp],
    ['TCP/IPv4 first fragment (MF)', tcpFrame({ ...flow4, mf: true })],
    ['UDP/IPv4 last fragment (an offset)', udpFrame({ ...flow4, df: false, fragOffset: 185 })],
    ['VLAN-tagged TCP/IPv4', tagged], ['LLDP', lldp],
  ]
  for (const [name, f] of samples) for (let len = 0; len <= f.length; len++) for (const p of PROGRAMS) assertAgree(p, f, name, len)
  // What the programs do not parse goes to worker 0.
  for (const p of PROGRAMS) for (const [name, f] of [['VLAN-tagged', tagged], ['LLDP', lldp]] as const) assert.equal(assertAgree(p, f, name), 0, name)

  // A fragment's ports are not hashed (only a first fragment has them); DF alone does not make a fragment.
  const p7 = PROGRAMS.find((p) => p.layout.workers === 7 && !p.layout.lane && p.le)
  assert.ok(p7)
  let portsMattered = 0
  for (let i = 0; i < 100; i++) {
    const f = randomFlow(rng, false)
    const ports = { sport: below(rng, 0x10000), dport: below(rng, 0x10000) }
    for (const frag of [{ mf: true }, { fragOffset: 1 + below(rng, 0x1fff) }, { mf: true, fragOffset: 1 + below(rng, 0x1fff) }]) {
      const name = `fragment ${JSON.stringify({ ...f, ...frag })}`
      assert.equal(assertAgree(p7, tcpFrame({ ...f, ...ports, ...frag }), name), assertAgree(p7, tcpFrame({ ...f, ...frag }), name), name)
    }
    if (assertAgree(p7, tcpFrame({ ...f, ...ports, df: true }), 'DF') !== assertAgree(p7, tcpFrame({ ...f, df: true }), 'DF')) portsMattered++
  }
  assert.ok(portsMattered > 50, `ports changed the worker of only ${portsMattered} of 100 unfragmented flows`)
})

test('a flow and its reply land on the same worker: TCP and UDP, IPv4 and IPv6', () => {
  const rng = mulberry32(0x5e1f)
  for (let i = 0; i < 400; i++) {
    const v6 = i % 2 === 1
    const [proto, build] = i % 4 < 2 ? ['TCP', tcpFrame] as const : ['UDP', udpFrame] as const
    const there = randomFlow(rng, v6)
    const a = build(there)
    const b = build(reply(there))
    for (const layout of LAYOUTS) {
      assert.equal(flowWorker(b, 0, b.length, layout), flowWorker(a, 0, a.length, layout), `${proto} ${JSON.stringify(there)} ${JSON.stringify(layout)}`)
    }
  }
})

test('random TCP/IPv4 flows spread over every worker', () => {
  const rng = mulberry32(0x5b7ead)
  const flows = 1000
  for (const [workers, most] of [[2, 0.65], [4, 0.4]]) {
    const count = new Array<number>(workers).fill(0)
    for (let i = 0; i < flows; i++) {
      const f = tcpFrame(randomFlow(rng, false))
      count[flowWorker(f, 0, f.length, { workers, lane: false })]++
    }
    for (const [w, n] of count.entries()) {
      assert.ok(n > 0 && n <= most * flows, `worker ${w} of ${workers} got ${n} of ${flows} flows (${count.join(', ')})`)
    }
  }
})

test('with the lane, ARP, ICMP and ICMPv6 go to index `workers`; without it, to a worker', () => {
  const rng = mulberry32(0x1a4e)
  for (const p of PROGRAMS) {
    for (let i = 0; i < 20; i++) {
      const frames = [
        ['ARP', arpFrame({ spa: randomIp4(rng), tpa: randomIp4(rng) })],
        ['ICMP', icmpLikeFrame(randomFlow(rng, false))],
        ['ICMPv6', icmpLikeFrame(randomFlow(rng, true))],
      ] as const
      for (const [name, f] of frames) {
        const got = assertAgree(p, f, name)
        const where = `${name}, ${JSON.stringify(p.layout)}`
        if (p.layout.lane) assert.equal(got, p.layout.workers, where)
        else assert.ok(got < p.layout.workers, `${where}: ${got}`)
      }
    }
  }
})

test('a layout of other than 1..64 whole workers is refused by both program builders', () => {
  for (const workers of [0, 65, 1.5, -1, NaN]) {
    for (const lane of [true, false]) {
      for (const build of [podProgram, underlayProgram]) {
        assert.throws(() => build(true, { workers, lane }), RangeError, `${build.name} ${workers} ${lane}`)
      }
    }
  }
  // The largest layout assembles (its jumps fit) and puts the lane at index 64.
  for (const le of [true, false]) assert.equal(assertAgree(programs({ workers: 64, lane: true }, le), arp, 'ARP'), 64)
})

test('the mix spreads a client\'s consecutive even connect() ports (Linux), and agrees with steerWorkerV4', () => {
  // iperf3 -P 4 opens its streams from ports p, p+2, p+4, p+6: a bare xor fold put them all in one worker.
  const rand = mulberry32(7)
  for (const workers of [2, 4]) {
    let together = 0
    for (let run = 0; run < 1000; run++) {
      const p = 32768 + 2 * below(rand, 14000)
      const picks = new Set([0, 2, 4, 6].map((d) => {
        const f = tcpFrame({ src: '10.244.1.2', dst: '10.244.2.2', sport: p + d, dport: 5201 })
        const w = flowWorker(f, 0, f.length, { workers, lane: false })
        assert.equal(steerWorkerV4(0x0af40102, 0x0af40202, p + d, 5201, workers), w)
        return w
      }))
      if (picks.size === 1) together++
    }
    // Independent picks put all four in one worker 1/8 (2 workers) or 1/64 (4) of the time.
    assert.ok(together < (workers === 2 ? 250 : 60), `${together} of 1000 runs had all four streams in one of ${workers} workers`)
  }
})

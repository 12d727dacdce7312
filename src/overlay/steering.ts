/**
 * The underlay's priority lane: which VXLAN datagrams the kernel hands to the
 * agent's priority socket instead of its bulk socket.
 *
 * Both sockets are bound to the VXLAN port in one SO_REUSEPORT group, and a
 * classic BPF program attached to the group (SO_ATTACH_REUSEPORT_CBPF) picks
 * one per datagram: its return value is the index of the socket in the order
 * the sockets joined. The bulk socket joins first (index 0), the priority
 * socket second (index 1).
 *
 * Why: when a bulk transfer makes the receiving agent the bottleneck, the queue
 * in front of it is megabytes of the transfer's own segments, and a ping or an
 * ARP request behind it waits milliseconds. Datagrams of the priority lane wait
 * only for the batch being processed. The lane holds traffic in which order
 * across the lanes does not matter: ARP, ICMP and ICMPv6 (echo, errors,
 * neighbour discovery). TCP and UDP stay on the bulk socket, so no flow's
 * segments are ever reordered by the split.
 *
 * The program reads the inner frame at fixed offsets from the VXLAN header
 * (offset 0 is the UDP payload): Ethernet type at 8 + 12, IPv4 protocol at
 * 8 + 14 + 9, IPv6 next header at 8 + 14 + 6. A VLAN-tagged inner frame, IPv6
 * extension headers or a datagram too short for a load go to the bulk socket
 * (a load past the end makes a classic BPF program return 0).
 */
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HLEN, ETH_OFF_TYPE } from '../wire/ethernet'
import { IPV4_FRAGMENT_BITS, IPV4_OFF_DST, IPV4_OFF_FRAG, IPV4_OFF_PROTO, IPV4_OFF_SRC, PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipv4IsFragment } from '../wire/ipv4'
import { u16, u32 } from '../wire/byteorder'
import { IPV6_HLEN, IPV6_OFF_NEXT_HEADER, IPV6_OFF_SRC, IPV6_OFF_DST, PROTO_ICMPV6 } from '../wire/ipv6'
import { VXLAN_HLEN } from '../wire/vxlan'
import { STEER_MUL1, STEER_MUL2, steerMix } from '../wire/steer-hash'

/** Socket indices in the reuseport group, by join order. */
export const LANE_BULK = 0
export const LANE_PRIORITY = 1

/** Classic BPF opcodes used here (include/uapi/linux/bpf_common.h). */
export const BPF_LD_H_ABS = 0x28
export const BPF_LD_B_ABS = 0x30
export const BPF_JEQ_K = 0x15
export const BPF_RET_K = 0x06

/** Where the lane's programs read, from the Ethernet header at `base`. */
function offsets(base: number): { type: number; v4proto: number; v6next: number } {
  return { type: base + ETH_OFF_TYPE, v4proto: base + ETH_HLEN + IPV4_OFF_PROTO, v6next: base + ETH_HLEN + IPV6_OFF_NEXT_HEADER }
}

/**
 * A jump resolver for a program with labels: rel(label, i) is the forward
 * distance from instruction i (0 for no label), at most `max`.
 */
function labels(insns: { label?: string }[], max: number): (l: string | undefined, i: number) => number {
  const at = new Map<string, number>()
  insns.forEach((ins, i) => { if (ins.label !== undefined) at.set(ins.label, i) })
  return (l, i) => {
    if (l === undefined) return 0
    const to = at.get(l)
    if (to === undefined || to <= i || to - i - 1 > max) throw new RangeError(`bad jump to ${l} at ${i}`)
    return to - i - 1
  }
}

/** One instruction; jt/jf name labels (or are 0: the next instruction); `ja` names an unconditional jump's target (its k). */
interface Insn { code: number; k: number; jt?: string; jf?: string; ja?: string; label?: string }

/** Resolves labels into relative jumps and encodes struct sock_filter entries (host byte order). */
export function assemble(insns: Insn[], littleEndian: boolean): Uint8Array {
  const rel = labels(insns, 255)
  const far = labels(insns, 0xffff)
  const out = new Uint8Array(insns.length * 8)
  const dv = new DataView(out.buffer)
  insns.forEach((ins, i) => {
    dv.setUint16(i * 8, ins.code, littleEndian)
    dv.setUint8(i * 8 + 2, rel(ins.jt, i))
    dv.setUint8(i * 8 + 3, rel(ins.jf, i))
    dv.setUint32(i * 8 + 4, ins.ja !== undefined ? far(ins.ja, i) : ins.k >>> 0, littleEndian)
  })
  return out
}

/** The priority lane's program: ARP, ICMP and ICMPv6 -> LANE_PRIORITY, the rest -> LANE_BULK. */
export function priorityLaneProgram(littleEndian: boolean): Uint8Array {
  return underlayProgram(littleEndian, { workers: 1, lane: true })
}

/*
 * Workers (config `workers` > 1): the datapath runs in that many threads, each
 * with its own socket in the group and its own queue of every pod TAP. A flow
 * must always be read by the same worker, in both directions and on both hosts,
 * so its learning, GRO and order stay in one thread: the programs pick the
 * worker from a symmetric hash of the inner packet (flowWorker below is the
 * reference, and tests run both programs against it):
 *
 *   IPv4: src ^ dst; IPv6: the xor of the eight address words;
 *   TCP or UDP (not a fragment, no IPv6 extension header): ^ (sport ^ dport);
 *   mixed (wire/steer-hash.ts); worker = h % workers.
 *
 * Anything else (not IP, truncated, VLAN-tagged) goes to worker 0. With the
 * priority lane the priority socket or queue is index `workers`, after every
 * worker's, and takes ARP, ICMP and ICMPv6 as above.
 */

/** What a steering program chooses between. */
export interface SteeringLayout {
  /** Bulk sockets or queues, one per worker (indices 0 .. workers-1). */
  workers: number
  /** Whether a priority socket or queue follows them (index `workers`). */
  lane: boolean
}

/** More classic BPF opcodes, for the workers' hash. */
export const BPF_LD_W_ABS = 0x20
export const BPF_LD_H_IND = 0x48
export const BPF_LDX_B_MSH = 0xb1
export const BPF_LD_MEM = 0x60
export const BPF_LDX_MEM = 0x61
export const BPF_ST = 0x02
export const BPF_TAX = 0x07
export const BPF_ALU_XOR_X = 0xac
export const BPF_ALU_RSH_K = 0x74
export const BPF_ALU_MOD_K = 0x94
export const BPF_ALU_MUL_K = 0x24
export const BPF_JSET_K = 0x45
export const BPF_JA = 0x05
export const BPF_RET_A = 0x16

/**
 * The reference of the programs' choice for the Ethernet frame at buf[eth, eth+len):
 * the bulk socket or queue index of its flow's worker, or `workers` (the priority
 * lane) for ARP, ICMP and ICMPv6 when `lane` is set. Bytes past `len` end the
 * choice with 0, as a load past the end ends a program.
 */
export function flowWorker(buf: Uint8Array, eth: number, len: number, layout: SteeringLayout): number {
  const end = eth + len
  const at = offsets(eth)
  if (at.type + 2 > end) return 0
  const type = u16(buf, at.type)
  const ip = eth + ETH_HLEN
  let h = 0
  let proto = 0
  let l4 = 0
  if (type === ETHERTYPE_ARP) return layout.lane ? layout.workers : 0
  if (type === ETHERTYPE_IPV4) {
    if (at.v4proto + 1 > end) return 0
    proto = buf[at.v4proto]
    if (layout.lane && proto === PROTO_ICMP) return layout.workers
    if (layout.workers === 1) return 0
    if (ip + IPV4_OFF_DST + 4 > end) return 0
    h = (u32(buf, ip + IPV4_OFF_SRC) ^ u32(buf, ip + IPV4_OFF_DST)) >>> 0
    // A fragment carries no ports (or not all its datagram's fragments do).
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      if (ip + IPV4_OFF_FRAG + 2 > end) return 0
      if (!ipv4IsFragment(buf, ip)) l4 = ip + (buf[ip] & 0xf) * 4
    }
  } else if (type === ETHERTYPE_IPV6) {
    if (at.v6next + 1 > end) return 0
    proto = buf[at.v6next]
    if (layout.lane && proto === PROTO_ICMPV6) return layout.workers
    if (layout.workers === 1) return 0
    if (ip + IPV6_OFF_DST + 16 > end) return 0
    for (let k = 0; k < 8; k++) h = (h ^ u32(buf, ip + IPV6_OFF_SRC + 4 * k)) >>> 0
    if (proto === PROTO_TCP || proto === PROTO_UDP) l4 = ip + IPV6_HLEN
  } else {
    return 0
  }
  if (l4 > 0) {
    if (l4 + 4 > end) return 0
    h = (h ^ u16(buf, l4) ^ u16(buf, l4 + 2)) >>> 0
  }
  return steerMix(h) % layout.workers
}

/**
 * The underlay group's program (offset 0 is the UDP payload, the VXLAN header):
 * the lane and, with workers, the flow's worker. Scratch memory: M[0] protocol,
 * M[1] hash, M[2] a port.
 */
export function underlayProgram(littleEndian: boolean, layout: SteeringLayout): Uint8Array {
  checkLayout(layout)
  const base = VXLAN_HLEN
  const at = offsets(base)
  const ip = base + ETH_HLEN
  const { workers, lane } = layout
  const prio = lane ? 'prio' : 'bulk'
  const hashing = workers > 1
  const v4rest = hashing ? 'v4hash' : 'bulk'
  const v6rest = hashing ? 'v6hash' : 'bulk'
  const insns: Insn[] = [
    { code: BPF_LD_H_ABS, k: at.type },
    { code: BPF_JEQ_K, k: ETHERTYPE_ARP, jt: prio },
    { code: BPF_JEQ_K, k: ETHERTYPE_IPV4, jt: 'v4' },
    { code: BPF_JEQ_K, k: ETHERTYPE_IPV6, jt: 'v6', jf: 'bulk' },
    { code: BPF_LD_B_ABS, k: at.v4proto, label: 'v4' },
    lane ? { code: BPF_JEQ_K, k: PROTO_ICMP, jt: 'prio', jf: v4rest } : { code: BPF_JA, k: 0, ja: v4rest },
    { code: BPF_LD_B_ABS, k: at.v6next, label: 'v6' },
    lane ? { code: BPF_JEQ_K, k: PROTO_ICMPV6, jt: 'prio', jf: v6rest } : { code: BPF_JA, k: 0, ja: v6rest },
  ]
  if (hashing) {
    const xorWord = (k: number): Insn[] => [{ code: BPF_TAX, k: 0 }, { code: BPF_LD_W_ABS, k }, { code: BPF_ALU_XOR_X, k: 0 }]
    insns.push(
      // IPv4: M[0] = protocol, M[1] = src ^ dst; ports unless a fragment.
      { code: BPF_ST, k: 0, label: 'v4hash' },
      { code: BPF_LD_W_ABS, k: ip + IPV4_OFF_SRC },
      ...xorWord(ip + IPV4_OFF_DST),
      { code: BPF_ST, k: 1 },
      { code: BPF_LD_MEM, k: 0 },
      { code: BPF_JEQ_K, k: PROTO_TCP, jt: 'v4frag' },
      { code: BPF_JEQ_K, k: PROTO_UDP, jt: 'v4frag', jf: 'fold' },
      { code: BPF_LD_H_ABS, k: ip + IPV4_OFF_FRAG, label: 'v4frag' },
      { code: BPF_JSET_K, k: IPV4_FRAGMENT_BITS, jt: 'fold' },
      { code: BPF_LDX_B_MSH, k: ip },
      { code: BPF_LD_H_IND, k: ip },
      { code: BPF_ST, k: 2 },
      { code: BPF_LD_H_IND, k: ip + 2 },
      { code: BPF_JA, k: 0, ja: 'ports' },
      // IPv6: the xor of the address words; ports right after the fixed header.
      { code: BPF_ST, k: 0, label: 'v6hash' },
      { code: BPF_LD_W_ABS, k: ip + IPV6_OFF_SRC },
      ...[1, 2, 3, 4, 5, 6, 7].flatMap((w) => xorWord(ip + IPV6_OFF_SRC + 4 * w)),
      { code: BPF_ST, k: 1 },
      { code: BPF_LD_MEM, k: 0 },
      { code: BPF_JEQ_K, k: PROTO_TCP, jt: 'v6ports' },
      { code: BPF_JEQ_K, k: PROTO_UDP, jt: 'v6ports', jf: 'fold' },
      { code: BPF_LD_H_ABS, k: ip + IPV6_HLEN, label: 'v6ports' },
      { code: BPF_ST, k: 2 },
      { code: BPF_LD_H_ABS, k: ip + IPV6_HLEN + 2 },
      // A = dport: hash ^= sport ^ dport.
      { code: BPF_LDX_MEM, k: 2, label: 'ports' },
      { code: BPF_ALU_XOR_X, k: 0 },
      { code: BPF_LDX_MEM, k: 1 },
      { code: BPF_ALU_XOR_X, k: 0 },
      { code: BPF_ST, k: 1 },
      { code: BPF_LD_MEM, k: 1, label: 'fold' },
      // steerMix: h ^= h >> 16; h *= MUL1; h ^= h >> 15; h *= MUL2; h ^= h >> 16.
      { code: BPF_TAX, k: 0 },
      { code: BPF_ALU_RSH_K, k: 16 },
      { code: BPF_ALU_XOR_X, k: 0 },
      { code: BPF_ALU_MUL_K, k: STEER_MUL1 },
      { code: BPF_TAX, k: 0 },
      { code: BPF_ALU_RSH_K, k: 15 },
      { code: BPF_ALU_XOR_X, k: 0 },
      { code: BPF_ALU_MUL_K, k: STEER_MUL2 },
      { code: BPF_TAX, k: 0 },
      { code: BPF_ALU_RSH_K, k: 16 },
      { code: BPF_ALU_XOR_X, k: 0 },
      { code: BPF_ALU_MOD_K, k: workers },
      { code: BPF_RET_A, k: 0 },
    )
  }
  insns.push({ code: BPF_RET_K, k: LANE_BULK, label: 'bulk' })
  if (lane) insns.push({ code: BPF_RET_K, k: workers, label: 'prio' })
  return assemble(insns, littleEndian)
}

function checkLayout(l: SteeringLayout): void {
  if (!Number.isInteger(l.workers) || l.workers < 1 || l.workers > 64) throw new RangeError(`workers must be 1..64, not ${l.workers}`)
}

/*
 * The same lane for frames a pod sends. A pod's TAP is multi-queue with two
 * queues, read by two fds of the agent: 0 (bulk) and 1 (priority). An eBPF
 * program the device runs for every frame the pod transmits (TUNSETSTEERINGEBPF,
 * a socket-filter program; its result modulo the queue count picks the queue)
 * sends ARP, ICMP and ICMPv6 to queue 1, so a ping does not wait in the TAP's
 * ring behind the pod's own bulk transfer. Offsets are from the Ethernet header.
 */

/** TAP queue indices the pod steering program returns. */
export const QUEUE_BULK = 0
export const QUEUE_PRIORITY = 1

/** eBPF opcodes used here (include/uapi/linux/bpf.h). */
export const EBPF_MOV64_X = 0xbf
export const EBPF_MOV64_K = 0xb7
export const EBPF_LD_ABS_H = 0x28
export const EBPF_LD_ABS_B = 0x30
export const EBPF_JEQ_K = 0x15
export const EBPF_JA = 0x05
export const EBPF_EXIT = 0x95

/** One eBPF instruction; `to` names a label (a jump's target), `k` the immediate. */
interface EInsn { code: number; dst?: number; src?: number; k?: number; to?: string; label?: string }

/** Resolves labels and encodes struct bpf_insn entries (host byte order; the register nibbles follow it). */
export function assembleEbpf(insns: EInsn[], littleEndian: boolean): Uint8Array {
  const rel = labels(insns, 32767)
  const out = new Uint8Array(insns.length * 8)
  const dv = new DataView(out.buffer)
  insns.forEach((ins, i) => {
    const off = rel(ins.to, i)
    const dst = ins.dst ?? 0
    const src = ins.src ?? 0
    dv.setUint8(i * 8, ins.code)
    dv.setUint8(i * 8 + 1, littleEndian ? (src << 4) | dst : (dst << 4) | src)
    dv.setInt16(i * 8 + 2, off, littleEndian)
    dv.setInt32(i * 8 + 4, ins.k ?? 0, littleEndian)
  })
  return out
}

/** More eBPF opcodes, for the workers' hash (ALU32: results wrap at 32 bits). */
export const EBPF_LD_ABS_W = 0x20
export const EBPF_LD_IND_H = 0x48
export const EBPF_MOV32_X = 0xbc
export const EBPF_XOR32_X = 0xac
export const EBPF_RSH32_K = 0x74
export const EBPF_LSH32_K = 0x64
export const EBPF_AND32_K = 0x54
export const EBPF_MOD32_K = 0x94
export const EBPF_MUL32_K = 0x24
export const EBPF_JSET_K = 0x45

/** The pod TAP's steering program: ARP, ICMP and ICMPv6 -> QUEUE_PRIORITY, the rest -> QUEUE_BULK. */
export function podLaneProgram(littleEndian: boolean): Uint8Array {
  return podProgram(littleEndian, { workers: 1, lane: true })
}

/**
 * The pod TAP's program for a layout: the same choice as underlayProgram (and
 * flowWorker), read from the Ethernet header at offset 0. Registers: r6 the
 * context (LD_ABS/LD_IND read through it), r7 the hash, r8 the protocol, r9
 * the IPv4 header length; LD_ABS and LD_IND leave their result in r0.
 */
export function podProgram(littleEndian: boolean, layout: SteeringLayout): Uint8Array {
  checkLayout(layout)
  const at = offsets(0)
  const ip = ETH_HLEN
  const { workers, lane } = layout
  const hashing = workers > 1
  const prio = lane ? 'prio' : 'bulk'
  const xor7 = { code: EBPF_XOR32_X, dst: 7, src: 0 }
  const insns: EInsn[] = [
    { code: EBPF_MOV64_X, dst: 6, src: 1 },
    { code: EBPF_LD_ABS_H, k: at.type },
    { code: EBPF_JEQ_K, k: ETHERTYPE_ARP, to: prio },
    { code: EBPF_JEQ_K, k: ETHERTYPE_IPV4, to: 'v4' },
    { code: EBPF_JEQ_K, k: ETHERTYPE_IPV6, to: 'v6' },
    { code: EBPF_JA, to: 'bulk' },
    { code: EBPF_LD_ABS_B, k: at.v4proto, label: 'v4' },
    ...(lane ? [{ code: EBPF_JEQ_K, k: PROTO_ICMP, to: 'prio' }] : []),
    { code: EBPF_JA, to: hashing ? 'v4hash' : 'bulk' },
    { code: EBPF_LD_ABS_B, k: at.v6next, label: 'v6' },
    ...(lane ? [{ code: EBPF_JEQ_K, k: PROTO_ICMPV6, to: 'prio' }] : []),
    { code: EBPF_JA, to: hashing ? 'v6hash' : 'bulk' },
  ]
  if (hashing) {
    insns.push(
      { code: EBPF_MOV64_X, dst: 8, src: 0, label: 'v4hash' },
      { code: EBPF_LD_ABS_W, k: ip + IPV4_OFF_SRC },
      { code: EBPF_MOV32_X, dst: 7, src: 0 },
      { code: EBPF_LD_ABS_W, k: ip + IPV4_OFF_DST },
      xor7,
      { code: EBPF_JEQ_K, dst: 8, k: PROTO_TCP, to: 'v4frag' },
      { code: EBPF_JEQ_K, dst: 8, k: PROTO_UDP, to: 'v4frag' },
      { code: EBPF_JA, to: 'fold' },
      { code: EBPF_LD_ABS_H, k: ip + IPV4_OFF_FRAG, label: 'v4frag' },
      { code: EBPF_JSET_K, k: IPV4_FRAGMENT_BITS, to: 'fold' },
      { code: EBPF_LD_ABS_B, k: ip },
      { code: EBPF_AND32_K, k: 0xf },
      { code: EBPF_LSH32_K, k: 2 },
      { code: EBPF_MOV64_X, dst: 9, src: 0 },
      { code: EBPF_LD_IND_H, src: 9, k: ip },
      xor7,
      { code: EBPF_LD_IND_H, src: 9, k: ip + 2 },
      xor7,
      { code: EBPF_JA, to: 'fold' },
      { code: EBPF_MOV64_X, dst: 8, src: 0, label: 'v6hash' },
      { code: EBPF_LD_ABS_W, k: ip + IPV6_OFF_SRC },
      { code: EBPF_MOV32_X, dst: 7, src: 0 },
      ...[1, 2, 3, 4, 5, 6, 7].flatMap((w) => [{ code: EBPF_LD_ABS_W, k: ip + IPV6_OFF_SRC + 4 * w }, xor7]),
      { code: EBPF_JEQ_K, dst: 8, k: PROTO_TCP, to: 'v6ports' },
      { code: EBPF_JEQ_K, dst: 8, k: PROTO_UDP, to: 'v6ports' },
      { code: EBPF_JA, to: 'fold' },
      { code: EBPF_LD_ABS_H, k: ip + IPV6_HLEN, label: 'v6ports' },
      xor7,
      { code: EBPF_LD_ABS_H, k: ip + IPV6_HLEN + 2 },
      xor7,
      // steerMix, as in the underlay program (ALU32: the multiplies wrap at 32 bits).
      { code: EBPF_MOV32_X, dst: 0, src: 7, label: 'fold' },
      { code: EBPF_RSH32_K, k: 16 },
      xor7,
      { code: EBPF_MUL32_K, dst: 7, k: STEER_MUL1 | 0 },
      { code: EBPF_MOV32_X, dst: 0, src: 7 },
      { code: EBPF_RSH32_K, k: 15 },
      xor7,
      { code: EBPF_MUL32_K, dst: 7, k: STEER_MUL2 | 0 },
      { code: EBPF_MOV32_X, dst: 0, src: 7 },
      { code: EBPF_RSH32_K, k: 16 },
      xor7,
      { code: EBPF_MOD32_K, dst: 7, k: workers },
      { code: EBPF_MOV64_X, dst: 0, src: 7 },
      { code: EBPF_EXIT },
    )
  }
  insns.push(
    { code: EBPF_MOV64_K, k: QUEUE_BULK, label: 'bulk' },
    { code: EBPF_EXIT },
  )
  if (lane) insns.push({ code: EBPF_MOV64_K, k: workers, label: 'prio' }, { code: EBPF_EXIT })
  return assembleEbpf(insns, littleEndian)
}

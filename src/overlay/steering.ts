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
import { IPV4_OFF_PROTO, PROTO_ICMP } from '../wire/ipv4'
import { IPV6_OFF_NEXT_HEADER, PROTO_ICMPV6 } from '../wire/ipv6'
import { VXLAN_HLEN } from '../wire/vxlan'

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

/** One instruction; jt/jf name labels (or are 0: the next instruction). */
interface Insn { code: number; k: number; jt?: string; jf?: string; label?: string }

/** Resolves labels into relative jumps and encodes struct sock_filter entries (host byte order). */
export function assemble(insns: Insn[], littleEndian: boolean): Uint8Array {
  const rel = labels(insns, 255)
  const out = new Uint8Array(insns.length * 8)
  const dv = new DataView(out.buffer)
  insns.forEach((ins, i) => {
    dv.setUint16(i * 8, ins.code, littleEndian)
    dv.setUint8(i * 8 + 2, rel(ins.jt, i))
    dv.setUint8(i * 8 + 3, rel(ins.jf, i))
    dv.setUint32(i * 8 + 4, ins.k >>> 0, littleEndian)
  })
  return out
}

/** The priority lane's program: ARP, ICMP and ICMPv6 -> LANE_PRIORITY, the rest -> LANE_BULK. */
export function priorityLaneProgram(littleEndian: boolean): Uint8Array {
  const at = offsets(VXLAN_HLEN)
  return assemble([
    { code: BPF_LD_H_ABS, k: at.type },
    { code: BPF_JEQ_K, k: ETHERTYPE_ARP, jt: 'prio' },
    { code: BPF_JEQ_K, k: ETHERTYPE_IPV4, jt: 'v4' },
    { code: BPF_JEQ_K, k: ETHERTYPE_IPV6, jt: 'v6', jf: 'bulk' },
    { code: BPF_LD_B_ABS, k: at.v4proto, label: 'v4' },
    { code: BPF_JEQ_K, k: PROTO_ICMP, jt: 'prio', jf: 'bulk' },
    { code: BPF_LD_B_ABS, k: at.v6next, label: 'v6' },
    { code: BPF_JEQ_K, k: PROTO_ICMPV6, jt: 'prio', jf: 'bulk' },
    { code: BPF_RET_K, k: LANE_BULK, label: 'bulk' },
    { code: BPF_RET_K, k: LANE_PRIORITY, label: 'prio' },
  ], littleEndian)
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

/** The pod TAP's steering program: ARP, ICMP and ICMPv6 -> QUEUE_PRIORITY, the rest -> QUEUE_BULK. */
export function podLaneProgram(littleEndian: boolean): Uint8Array {
  const at = offsets(0)
  return assembleEbpf([
    // LD_ABS takes the packet from the context in r6.
    { code: EBPF_MOV64_X, dst: 6, src: 1 },
    { code: EBPF_LD_ABS_H, k: at.type },
    { code: EBPF_JEQ_K, k: ETHERTYPE_ARP, to: 'prio' },
    { code: EBPF_JEQ_K, k: ETHERTYPE_IPV4, to: 'v4' },
    { code: EBPF_JEQ_K, k: ETHERTYPE_IPV6, to: 'v6' },
    { code: EBPF_JA, to: 'bulk' },
    { code: EBPF_LD_ABS_B, k: at.v4proto, label: 'v4' },
    { code: EBPF_JEQ_K, k: PROTO_ICMP, to: 'prio' },
    { code: EBPF_JA, to: 'bulk' },
    { code: EBPF_LD_ABS_B, k: at.v6next, label: 'v6' },
    { code: EBPF_JEQ_K, k: PROTO_ICMPV6, to: 'prio' },
    { code: EBPF_MOV64_K, k: QUEUE_BULK, label: 'bulk' },
    { code: EBPF_EXIT },
    { code: EBPF_MOV64_K, k: QUEUE_PRIORITY, label: 'prio' },
    { code: EBPF_EXIT },
  ], littleEndian)
}

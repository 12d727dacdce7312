/**
 * The flow hash that picks a packet's datapath worker (config `workers`): the
 * steering programs compute it in the kernel (overlay/steering.ts, whose
 * flowWorker is the frame-level reference), and connection tracking computes
 * it for a reply it expects (service/conntrack.ts pins a NATed connection's
 * replies to the worker that holds its entry).
 *
 *   h = src ^ dst [^ (sport ^ dport)]   (IPv6: the xor of the eight address words)
 *   h = mix(h);                         worker = h % workers
 *
 * Symmetric (A->B and B->A give the same worker), so both directions of a flow
 * meet in one thread. The mix is a 32-bit finalizer (xor-shift, multiply,
 * twice: "lowbias32"), so every input bit reaches the low bits `% workers`
 * reads: a client's connect() ports are all even and often consecutive
 * (Linux), and a bare xor of them would put iperf3 -P 4's streams in one
 * worker. Not a defence against chosen collisions: it only spreads.
 */

/** The mix's multipliers (uint32). */
export const STEER_MUL1 = 0x7feb352d
export const STEER_MUL2 = 0x846ca68b

/** The mix both programs end with; h is an unsigned 32-bit xor of the fields. */
export function steerMix(h: number): number {
  h = Math.imul((h ^ (h >>> 16)) >>> 0, STEER_MUL1) >>> 0
  h = Math.imul((h ^ (h >>> 15)) >>> 0, STEER_MUL2) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}

/** The worker (of `workers`) of an IPv4 TCP or UDP packet between a:pa and b:pb, either way. */
export function steerWorkerV4(a: number, b: number, pa: number, pb: number, workers: number): number {
  return steerMix((a ^ b ^ pa ^ pb) >>> 0) % workers
}

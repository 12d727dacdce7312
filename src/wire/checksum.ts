/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * The checksum is the 16-bit ones' complement of the ones' complement sum of
 * the data taken as big-endian 16-bit words. RFC 1071 §2(D): carries can be
 * deferred, summing in a wider register and folding them back at the end;
 * §2(A): the order of the words does not matter, so pieces sum separately:
 *
 *   let sum = csumPseudoV4(src, dst, PROTO_UDP, l4len)  // optional pseudo-header
 *   sum = csumAdd(buf, off, len, sum)                   // any number of pieces
 *   const stored = csumFinish(sum)                      // fold + complement
 *
 * An "accumulator" here is a non-negative integer not yet folded to 16 bits.
 * `csumAdd` accepts any accumulator up to 2^53 and returns one below 2^17, so
 * pieces chain forever without losing precision. Only the last piece may have
 * an odd length (the last byte is "padded on the right with zeros", RFC
 * 9293 §3.1 and RFC 768); an odd piece in the middle would shift every later
 * word.
 *
 * Hot path: no allocation, no exceptions; integer arithmetic stays in 31 bits
 * inside the loop so V8 keeps it on int32 fast paths.
 */

/** Bytes summed between folds: 16384 words * 0xffff + 0x1ffff < 2^31 stays an int32. */
const FOLD_EVERY_BYTES = 32768

/**
 * Folds an accumulator (any integer in [0, 2^53]) to 16 bits with end-around
 * carry. Returns 0 only for 0; a nonzero sum that is a multiple of 0xffff
 * folds to 0xffff ("negative zero"), as RFC 1071 arithmetic does.
 */
export function csumFold(sum: number): number {
  while (sum > 0xffffffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000)
  sum = (sum & 0xffff) + (sum >>> 16)
  sum = (sum & 0xffff) + (sum >>> 16)
  return sum
}

/**
 * Adds `len` bytes at `off` to the accumulator `sum` (pass 0 to start) and
 * returns the new accumulator, below 2^17. Reads only [off, off + len).
 */
export function csumAdd(buf: Uint8Array, off: number, len: number, sum: number): number {
  if (sum > 0x1ffff) sum = csumFold(sum)
  if (len <= 0) return sum
  const end = off + len - (len & 1)
  let i = off
  while (i < end) {
    let stop = i + FOLD_EVERY_BYTES
    if (stop > end) stop = end
    for (; i < stop; i += 2) sum += (buf[i] << 8) | buf[i + 1]
    sum = (sum & 0xffff) + (sum >>> 16)
  }
  // RFC 9293 §3.1 / RFC 1071 §4.1: an odd last byte is the high half of a zero-padded word.
  if ((len & 1) !== 0) sum += buf[end] << 8
  return sum
}

/**
 * The bulk summer: csumAdd, or a faster twin that produces the same checksum
 * (the native addon installs one; a test compares them byte for byte). Used
 * for payloads (TSO segments, GRO verification) where it pays.
 */
export let csumAddBulk: (buf: Uint8Array, off: number, len: number, sum: number) => number = csumAdd

/** Below this many bytes the call into a twin costs more than it saves. */
export const CSUM_BULK_MIN = 256

export function setBulkChecksum(fn: ((buf: Uint8Array, off: number, len: number, sum: number) => number) | null): void {
  csumAddBulk = fn === null ? csumAdd : (buf, off, len, sum) => (len < CSUM_BULK_MIN ? csumAdd(buf, off, len, sum) : fn(buf, off, len, sum))
}

/** Folds and complements: the 16-bit value to store in the checksum field. */
export function csumFinish(sum: number): number {
  return ~csumFold(sum) & 0xffff
}

/**
 * RFC 768: a computed UDP checksum of 0 is transmitted as 0xffff, because 0
 * in the field means "no checksum". (Both are zero in ones' complement, so
 * receivers verify either.) Use for UDP over IPv4 and IPv6 (RFC 8200 §8.1).
 */
export function udpCsumFinish(sum: number): number {
  const c = ~csumFold(sum) & 0xffff
  return c === 0 ? 0xffff : c
}

/**
 * True if data that *includes* its checksum field sums to ones' complement
 * zero (0xffff after folding), RFC 1071 §1(3). `sum` carries a pseudo-header.
 */
export function csumVerify(buf: Uint8Array, off: number, len: number, sum: number): boolean {
  return csumFold(csumAdd(buf, off, len, sum)) === 0xffff
}

/**
 * IPv4 pseudo-header (RFC 768, RFC 9293 §3.1): src, dst, zero + protocol,
 * and the L4 length. Returns an accumulator for `csumAdd`.
 */
export function csumPseudoV4(src: number, dst: number, proto: number, l4len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + (proto & 0xff) + (l4len & 0xffff)
}

/**
 * IPv6 pseudo-header (RFC 8200 §8.1): 16-byte src and dst read in place, a
 * 32-bit upper-layer length and three zero bytes + next header.
 */
export function csumPseudoV6(buf: Uint8Array, srcOff: number, dstOff: number, proto: number, l4len: number): number {
  let sum = csumAdd(buf, srcOff, 16, 0)
  sum = csumAdd(buf, dstOff, 16, sum)
  return sum + (l4len >>> 16) + (l4len & 0xffff) + (proto & 0xff)
}

/**
 * RFC 1624 eqn 3: HC' = ~(~HC + ~m + m'), the new stored checksum after one
 * 16-bit word changes from `oldWord` to `newWord`. Eqn 3 rather than RFC
 * 1141's eqn 2 because it never yields 0xffff from nonzero data, so it
 * agrees exactly with a full recompute (RFC 1624 §3).
 */
export function csumUpdate16(csum: number, oldWord: number, newWord: number): number {
  const sum = (~csum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff)
  return ~csumFold(sum) & 0xffff
}

/** RFC 1624 eqn 3 over two adjacent words, e.g. an IPv4 address or TCP seq. */
export function csumUpdate32(csum: number, oldU32: number, newU32: number): number {
  const sum = (~csum & 0xffff) +
    (~(oldU32 >>> 16) & 0xffff) + (~oldU32 & 0xffff) +
    ((newU32 >>> 16) & 0xffff) + (newU32 & 0xffff)
  return ~csumFold(sum) & 0xffff
}

/**
 * `csumUpdate16` for a UDP checksum field (RFC 768): 0 means the sender sent
 * no checksum, so it stays 0 (there is nothing to keep correct), and a result
 * of 0 is stored as 0xffff.
 */
export function udpCsumUpdate16(csum: number, oldWord: number, newWord: number): number {
  if (csum === 0) return 0
  const c = csumUpdate16(csum, oldWord, newWord)
  return c === 0 ? 0xffff : c
}

/** `csumUpdate32` with the UDP rules of `udpCsumUpdate16`. */
export function udpCsumUpdate32(csum: number, oldU32: number, newU32: number): number {
  if (csum === 0) return 0
  const c = csumUpdate32(csum, oldU32, newU32)
  return c === 0 ? 0xffff : c
}

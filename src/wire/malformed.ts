/**
 * Why a `*Check` refused a header.
 *
 * Every `xxxCheck(buf, off, len)` in wire/ returns either the header length in
 * bytes (> 0) or one of these negative codes, so one `number` carries both and
 * the hot path needs no object or exception: `if (hlen < 0) drop(hlen)`.
 *
 * How the codes are used, the same way in every codec:
 * - `Truncated`: the fixed part of the header, or the options a length field in
 *   it announces (IPv4 IHL, TCP data offset, 802.1Q tags), does not fit in the
 *   bytes we have.
 * - `BadHeaderLength`: a header-length field below the protocol minimum.
 * - `BadTotalLength` / `BadLength`: a length field that covers the *payload*
 *   too (IPv4 total length, IPv6 payload length, UDP length) is smaller than
 *   the header or claims more bytes than we have. Less than we have is fine:
 *   Ethernet pads short frames up to 60 bytes (IEEE 802.3 §3.2.8).
 *
 * Plain `enum`, not `const enum`: the reverse mapping gives `malformedName`
 * for free and the codes survive isolated compilation.
 * Values are stable: they index drop counters, so append, never renumber.
 */
export enum Malformed {
  /** Fewer bytes than the header (or the options it announces) needs. */
  Truncated = -1,
  /** IP version nibble is not the one this codec parses. */
  BadVersion = -2,
  /** Header-length field below the minimum (IPv4 IHL < 5, TCP data offset < 5). */
  BadHeaderLength = -3,
  /** IPv4 total length < IHL*4 or > bytes we have; IPv6 payload length > bytes we have. */
  BadTotalLength = -4,
  /** Checksum does not verify (only from the `*CheckWithChecksum` variants). */
  BadChecksum = -5,
  /** RFC 7348 §5: the I flag must be set for the VNI to be valid. */
  VxlanNoIFlag = -6,
  /** ARP that is not Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4). */
  BadArp = -7,
  /** UDP length field < 8 or > bytes we have. */
  BadLength = -8,
}

/** How many codes there are; codes run from -1 to -MALFORMED_COUNT (size a counter array indexed by `-code` as MALFORMED_COUNT + 1). */
export const MALFORMED_COUNT = 8

/** Human-readable name for logs and the CLI ("Truncated"); not for the hot path. */
export function malformedName(code: number): string {
  const name = (Malformed as unknown as Record<number, string | undefined>)[code]
  return name ?? `Malformed(${code})`
}

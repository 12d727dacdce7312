/**
 * Network byte order (big-endian, RFC 1700 "Data Notations") integer reads and
 * writes on a Uint8Array. Plain indexing instead of DataView: no view object
 * per buffer, and V8 inlines these into the codecs (settle with a bench before
 * changing). 32-bit reads return unsigned numbers (`>>> 0`).
 *
 * Writes keep only the low bits (a Uint8Array store truncates mod 256), so a
 * caller passing 0x12345 to `putU16` stores 0x2345.
 */

export function u16(buf: Uint8Array, o: number): number {
  return (buf[o] << 8) | buf[o + 1]
}

export function u32(buf: Uint8Array, o: number): number {
  return ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) >>> 0
}

export function putU16(buf: Uint8Array, o: number, v: number): void {
  buf[o] = v >>> 8
  buf[o + 1] = v
}

export function putU32(buf: Uint8Array, o: number, v: number): void {
  buf[o] = v >>> 24
  buf[o + 1] = v >>> 16
  buf[o + 2] = v >>> 8
  buf[o + 3] = v
}

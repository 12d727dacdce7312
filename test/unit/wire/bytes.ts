/**
 * Byte helpers for the wire tests (not a test file itself).
 * Fixtures are written as commented hex so each byte group can cite its field:
 *
 *   hex(`
 *     45 00        # version 4, IHL 5; TOS 0
 *     00 73        # total length 115
 *   `)
 */

/** Parses hex pairs, ignoring whitespace and `#` comments to end of line. */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/#[^\n]*/g, '').replace(/\s+/g, '')
  if (!/^([0-9a-fA-F]{2})*$/.test(digits)) throw new Error(`bad hex fixture: ${digits}`)
  const out = new Uint8Array(digits.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16)
  return out
}

/** Space-separated lowercase hex, for assertion messages. */
export function toHex(buf: Uint8Array, off = 0, len = buf.length - off): string {
  return Array.from(buf.subarray(off, off + len), (b) => b.toString(16).padStart(2, '0')).join(' ')
}

/** A buffer of `n` bytes all set to `byte` (0xa5 by default): a forgotten field shows up. */
export function filled(n: number, byte = 0xa5): Uint8Array {
  return new Uint8Array(n).fill(byte)
}

/** `parts` concatenated into one new buffer. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

/** A copy of `pkt` placed at `off` inside `total` bytes of `fill`. */
export function embed(pkt: Uint8Array, off: number, total: number, fill = 0xa5): Uint8Array {
  const out = filled(total, fill)
  out.set(pkt, off)
  return out
}

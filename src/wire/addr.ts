/**
 * Address text <-> number conversions. Not for the hot path: these allocate
 * strings. The data path keeps IPv4 addresses as unsigned 32-bit numbers and
 * MACs as a (hi16, lo32) pair.
 */

/** Parses dotted-quad IPv4 text into an unsigned 32-bit number, or -1 if it is not one. */
export function ipv4Parse(text: string): number {
  const parts = text.split('.')
  if (parts.length !== 4) return -1
  let v = 0
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return -1
    const n = Number(p)
    if (n > 255) return -1
    v = v * 256 + n
  }
  return v >>> 0
}

export function ipv4Format(addr: number): string {
  return `${(addr >>> 24) & 255}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}`
}

export interface Cidr { addr: number; prefix: number }

/** Parses "a.b.c.d/len"; returns null if it is not an IPv4 CIDR. */
export function cidrParse(text: string): Cidr | null {
  const slash = text.indexOf('/')
  if (slash < 0) return null
  const addr = ipv4Parse(text.slice(0, slash))
  const pfx = text.slice(slash + 1)
  if (addr < 0 || !/^(0|[1-9][0-9]?)$/.test(pfx)) return null
  const prefix = Number(pfx)
  if (prefix > 32) return null
  return { addr, prefix }
}

export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
}

export function cidrContains(net: Cidr, addr: number): boolean {
  const m = prefixMask(net.prefix)
  return ((net.addr & m) >>> 0) === ((addr & m) >>> 0)
}

export function cidrFormat(c: Cidr): string {
  return `${ipv4Format(c.addr)}/${c.prefix}`
}

export interface Mac { hi: number; lo: number }

/** Parses "aa:bb:cc:dd:ee:ff" (or '-' separated) into hi16/lo32; null if not a MAC. */
export function macParse(text: string): Mac | null {
  const m = /^([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})$/.exec(text)
  if (!m) return null
  const b = m.slice(1).map((h) => parseInt(h, 16))
  return { hi: (b[0] << 8) | b[1], lo: ((b[2] << 24) | (b[3] << 16) | (b[4] << 8) | b[5]) >>> 0 }
}

export function macFormat(hi: number, lo: number): string {
  const b = [(hi >>> 8) & 255, hi & 255, (lo >>> 24) & 255, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255]
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':')
}

export function macBytes(mac: Mac): Uint8Array {
  const out = new Uint8Array(6)
  out[0] = mac.hi >>> 8; out[1] = mac.hi & 255
  out[2] = mac.lo >>> 24; out[3] = (mac.lo >>> 16) & 255; out[4] = (mac.lo >>> 8) & 255; out[5] = mac.lo & 255
  return out
}

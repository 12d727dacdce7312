/**
 * Capture filters: a small subset of pcap-filter(7), parsed once into a
 * predicate over an Ethernet frame `(buf, off, len)` and the frame's VNI.
 *
 *   expr      := factor (('and' | '&&' | 'or' | '||') factor)*
 *   factor    := ('not' | '!') factor | '(' expr ')' | primitive
 *   primitive := [src | dst] host A.B.C.D        IPv4 source/destination, or ARP sender/target
 *              | [src | dst] net A.B.C.D/N
 *              | [tcp | udp] [src | dst] port N    TCP or UDP port (IPv4 or IPv6)
 *              | tcp | udp | icmp | arp | ip | ip6
 *              | vni N                             the frame's VXLAN network
 *
 * As in pcap-filter, `and` and `or` have EQUAL precedence and group left to
 * right (`tcp or udp and port 53` is `(tcp or udp) and port 53`); `not` binds
 * tightest. Use parentheses when in doubt.
 *
 * Frames are read leniently, since captures also see frames the datapath will
 * drop: an address only needs its bytes present, not a valid header checksum
 * or total length. A non-first IPv4 fragment has no ports. IPv6 extension
 * headers are not followed (ports of such packets do not match).
 *
 * Hot-path shape: compile builds the closures once; per frame the predicate
 * parses the headers into one preallocated view and walks the closures. No
 * allocation per frame.
 */
import { TapestryError } from '../lib/errors'
import { cidrParse, ipv4Parse, prefixMask } from '../wire/addr'
import { u16, u32 } from '../wire/byteorder'
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ethCheck, ethTypeAfterTags } from '../wire/ethernet'
import { IPV4_HLEN_MIN, IPV4_OFF_DST, IPV4_OFF_FRAG, IPV4_OFF_PROTO, IPV4_OFF_SRC, PROTO_ICMP, PROTO_TCP, PROTO_UDP } from '../wire/ipv4'
import { IPV6_HLEN, IPV6_OFF_NEXT_HEADER } from '../wire/ipv6'
import { ARP_LEN, ARP_OFF_SPA, ARP_OFF_TPA } from '../wire/arp'
import { VXLAN_VNI_MAX } from '../wire/vxlan'

/** True when the frame matches. `vni` is the VNI the frame travels in (-1 if unknown). */
export type FramePredicate = (buf: Uint8Array, off: number, len: number, vni: number) => boolean

export const FILTER_INVALID = 'TAPESTRY_CAPTURE_FILTER_INVALID'

export class FilterError extends TapestryError {
  constructor(message: string) {
    super(FILTER_INVALID, message)
  }
}

export type Dir = 'src' | 'dst' | 'any'
export type ProtoName = 'tcp' | 'udp' | 'icmp' | 'arp' | 'ip' | 'ip6'

export type FilterNode =
  | { kind: 'and' | 'or'; left: FilterNode; right: FilterNode }
  | { kind: 'not'; arg: FilterNode }
  | { kind: 'host'; dir: Dir; addr: number }
  | { kind: 'net'; dir: Dir; addr: number; prefix: number }
  | { kind: 'port'; dir: Dir; port: number; proto: 'tcp' | 'udp' | null }
  | { kind: 'proto'; proto: ProtoName }
  | { kind: 'vni'; vni: number }

interface Token { text: string; col: number }

const PROTOS: readonly string[] = ['tcp', 'udp', 'icmp', 'arp', 'ip', 'ip6']
const KEYWORDS: readonly string[] = ['and', 'or', 'not', 'src', 'dst', 'host', 'net', 'port', 'vni', ...PROTOS]

function tokenize(expr: string): Token[] {
  const out: Token[] = []
  // Every character is either whitespace or part of exactly one token, so this never skips text.
  for (const m of expr.matchAll(/\(|\)|&&|\|\||!|[&|]|[^\s()!&|]+/g)) {
    const text = m[0]
    const col = (m.index ?? 0) + 1
    if (text === '&' || text === '|') throw new FilterError(`bad capture filter: '${text}' at column ${col} (use 'and'/'&&' or 'or'/'||')`)
    out.push({ text: text === '&&' ? 'and' : text === '||' ? 'or' : text === '!' ? 'not' : text.toLowerCase(), col })
  }
  return out
}

class Parser {
  private i = 0
  constructor(private readonly toks: Token[]) {}

  parse(): FilterNode {
    const n = this.expr()
    const t = this.peek()
    if (t) throw this.error(t, t.text === ')' ? 'a \')\' without its \'(\'' : `expected 'and' or 'or' before '${t.text}'`)
    return n
  }

  private peek(k = 0): Token | undefined { return this.toks[this.i + k] }
  private next(): Token | undefined { return this.toks[this.i++] }

  private error(t: Token | undefined, what: string): FilterError {
    if (!t) return new FilterError(`bad capture filter: ${what} at the end of the expression`)
    return new FilterError(`bad capture filter: ${what} (token '${t.text}' at column ${t.col})`)
  }

  private expr(): FilterNode {
    let left = this.factor()
    for (let t = this.peek(); t && (t.text === 'and' || t.text === 'or'); t = this.peek()) {
      this.next()
      left = { kind: t.text, left, right: this.factor() }
    }
    return left
  }

  private factor(): FilterNode {
    const t = this.next()
    if (!t) throw this.error(undefined, 'expected a filter term')
    if (t.text === 'not') return { kind: 'not', arg: this.factor() }
    if (t.text === '(') {
      const n = this.expr()
      const close = this.next()
      if (!close || close.text !== ')') throw this.error(close, `expected ')' to close the '(' at column ${t.col}`)
      return n
    }
    if (t.text === 'src' || t.text === 'dst') return this.qualified(t.text, null, t)
    if (t.text === 'tcp' || t.text === 'udp') {
      const a = this.peek()
      const b = this.peek(1)
      if (a && (a.text === 'port' || ((a.text === 'src' || a.text === 'dst') && b?.text === 'port'))) {
        if (a.text !== 'port') this.next()
        return this.qualified(a.text === 'port' ? 'any' : a.text as Dir, t.text, t)
      }
      return { kind: 'proto', proto: t.text }
    }
    if (PROTOS.includes(t.text)) return { kind: 'proto', proto: t.text as ProtoName }
    if (t.text === 'host' || t.text === 'net' || t.text === 'port') {
      this.i--
      return this.qualified('any', null, t)
    }
    if (t.text === 'vni') {
      const v = this.next()
      return { kind: 'vni', vni: this.integer(v, VXLAN_VNI_MAX, 'a VNI (0-16777215)', 'vni') }
    }
    if (t.text === ')') throw this.error(t, 'expected a filter term')
    throw this.error(t, `unknown word '${t.text}' (expected one of: ${KEYWORDS.join(', ')}, '(')`)
  }

  /** After an optional src/dst (and tcp/udp): host, net or port and its value. */
  private qualified(dir: Dir, proto: 'tcp' | 'udp' | null, first: Token): FilterNode {
    const kw = this.next()
    if (!kw || (kw.text !== 'host' && kw.text !== 'net' && kw.text !== 'port') || (proto !== null && kw.text !== 'port')) {
      throw this.error(kw, `expected ${proto ? "'port'" : "'host', 'net' or 'port'"} after '${first.text}'`)
    }
    const v = this.next()
    if (kw.text === 'port') return { kind: 'port', dir, port: this.integer(v, 65535, 'a port number (0-65535)', 'port'), proto }
    if (!v) throw this.error(v, `expected an address after '${kw.text}'`)
    if (v.text.includes(':')) throw this.error(v, `IPv6 addresses are not supported in capture filters`)
    if (kw.text === 'host') {
      const addr = ipv4Parse(v.text)
      if (addr < 0) throw this.error(v, `'${v.text}' is not an IPv4 address`)
      return { kind: 'host', dir, addr }
    }
    const c = cidrParse(v.text)
    if (!c) throw this.error(v, `'${v.text}' is not an IPv4 network (as 10.244.0.0/16)`)
    const mask = prefixMask(c.prefix)
    if (((c.addr & mask) >>> 0) !== c.addr) throw this.error(v, `'${v.text}' has host bits set`)
    return { kind: 'net', dir, addr: c.addr, prefix: c.prefix }
  }

  private integer(t: Token | undefined, max: number, what: string, after: string): number {
    if (!t) throw this.error(t, `expected ${what} after '${after}'`)
    if (!/^\d+$/.test(t.text) || Number(t.text) > max) throw this.error(t, `'${t.text}' is not ${what}`)
    return Number(t.text)
  }
}

/** Parses a filter expression; throws FilterError naming the bad token. An empty expression gives null (match all). */
export function parseFilter(expr: string): FilterNode | null {
  const toks = tokenize(expr)
  if (toks.length === 0) return null
  return new Parser(toks).parse()
}

/** The headers of the frame under test, parsed once per frame into this reused object. */
class FrameView {
  ip4 = false
  ip6 = false
  arp = false
  /** IPv4 source/destination, or ARP sender/target protocol address. */
  src = 0
  dst = 0
  /** IP protocol / IPv6 next header, -1 if none. */
  proto = -1
  /** TCP/UDP ports, -1 when absent (not TCP/UDP, truncated, later fragment). */
  sport = -1
  dport = -1
  vni = -1

  load(buf: Uint8Array, off: number, len: number, vni: number): void {
    this.ip4 = this.ip6 = this.arp = false
    this.src = this.dst = 0
    this.proto = this.sport = this.dport = -1
    this.vni = vni
    if (len > buf.length - off) len = buf.length - off
    const hlen = ethCheck(buf, off, len)
    if (hlen < 0) return
    const type = ethTypeAfterTags(buf, off, hlen)
    const l3 = off + hlen
    const end = off + len
    let l4 = -1
    if (type === ETHERTYPE_IPV4) {
      if (l3 + IPV4_HLEN_MIN > end || buf[l3] >>> 4 !== 4) return
      this.ip4 = true
      this.src = u32(buf, l3 + IPV4_OFF_SRC)
      this.dst = u32(buf, l3 + IPV4_OFF_DST)
      this.proto = buf[l3 + IPV4_OFF_PROTO]
      if ((u16(buf, l3 + IPV4_OFF_FRAG) & 0x1fff) === 0) l4 = l3 + (buf[l3] & 15) * 4
    } else if (type === ETHERTYPE_IPV6) {
      if (l3 + IPV6_HLEN > end || buf[l3] >>> 4 !== 6) return
      this.ip6 = true
      this.proto = buf[l3 + IPV6_OFF_NEXT_HEADER]
      l4 = l3 + IPV6_HLEN
    } else if (type === ETHERTYPE_ARP) {
      if (l3 + ARP_LEN > end) return
      this.arp = true
      this.src = u32(buf, l3 + ARP_OFF_SPA)
      this.dst = u32(buf, l3 + ARP_OFF_TPA)
      return
    } else {
      return
    }
    if (l4 >= 0 && l4 + 4 <= end && (this.proto === PROTO_TCP || this.proto === PROTO_UDP)) {
      this.sport = u16(buf, l4)
      this.dport = u16(buf, l4 + 2)
    }
  }
}

type ViewTest = (v: FrameView) => boolean

function compileNode(n: FilterNode): ViewTest {
  switch (n.kind) {
    case 'and': { const a = compileNode(n.left); const b = compileNode(n.right); return (v) => a(v) && b(v) }
    case 'or': { const a = compileNode(n.left); const b = compileNode(n.right); return (v) => a(v) || b(v) }
    case 'not': { const a = compileNode(n.arg); return (v) => !a(v) }
    case 'host': {
      const x = n.addr
      if (n.dir === 'src') return (v) => (v.ip4 || v.arp) && v.src === x
      if (n.dir === 'dst') return (v) => (v.ip4 || v.arp) && v.dst === x
      return (v) => (v.ip4 || v.arp) && (v.src === x || v.dst === x)
    }
    case 'net': {
      const m = prefixMask(n.prefix)
      const x = n.addr
      if (n.dir === 'src') return (v) => (v.ip4 || v.arp) && ((v.src & m) >>> 0) === x
      if (n.dir === 'dst') return (v) => (v.ip4 || v.arp) && ((v.dst & m) >>> 0) === x
      return (v) => (v.ip4 || v.arp) && (((v.src & m) >>> 0) === x || ((v.dst & m) >>> 0) === x)
    }
    case 'port': {
      const p = n.port
      const want = n.proto === 'tcp' ? PROTO_TCP : n.proto === 'udp' ? PROTO_UDP : -1
      const proto: ViewTest = want < 0 ? () => true : (v) => v.proto === want
      if (n.dir === 'src') return (v) => v.sport === p && proto(v)
      if (n.dir === 'dst') return (v) => v.dport === p && proto(v)
      return (v) => (v.sport === p || v.dport === p) && proto(v)
    }
    case 'proto':
      switch (n.proto) {
        case 'tcp': return (v) => (v.ip4 || v.ip6) && v.proto === PROTO_TCP
        case 'udp': return (v) => (v.ip4 || v.ip6) && v.proto === PROTO_UDP
        case 'icmp': return (v) => v.ip4 && v.proto === PROTO_ICMP
        case 'arp': return (v) => v.arp
        case 'ip': return (v) => v.ip4
        case 'ip6': return (v) => v.ip6
      }
      break
    case 'vni': { const x = n.vni; return (v) => v.vni === x }
  }
  throw new Error(`BUG: filter node ${(n as FilterNode).kind} not compiled`)
}

/** Parses and compiles a filter; null for an empty expression (every frame matches). Throws FilterError. */
export function compileFilter(expr: string): FramePredicate | null {
  const tree = parseFilter(expr)
  if (tree === null) return null
  const test = compileNode(tree)
  const view = new FrameView()
  return (buf, off, len, vni) => {
    view.load(buf, off, len, vni)
    return test(view)
  }
}

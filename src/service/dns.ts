/**
 * A DNS responder for the cluster domain, answering a pod's query frame in
 * place: what CoreDNS's kubernetes plugin does for ClusterIP services, with
 * no upstream. Messages are decoded and encoded with the `dns-packet`
 * library; this file only decides what to answer and frames it.
 *
 * What it answers (RFC 1034/1035; names compare case-insensitively, RFC 4343,
 * and the question's spelling is echoed)
 *   <svc>.<ns>.svc.<domain>     A: the ClusterIP (ANY also gets it; other
 *                               types, AAAA included: NOERROR, no answers).
 *                               A headless service (ClusterIP 0) exists but
 *                               has no A record here (NOERROR, no answers).
 *   d.c.b.a.in-addr.arpa        PTR for a ClusterIP a.b.c.d: the FQDN of each
 *                               service with that address.
 *   <domain>, svc.<domain>,     exist (the apex, and empty non-terminals,
 *   <ns>.svc.<domain>           RFC 8020): NOERROR, no answers; SOA at the apex.
 *   other names in <domain>     NXDOMAIN.
 *   names outside <domain> and  REFUSED: not ours, and there is no recursion
 *   in-addr.arpa names that     (RA is clear). Search domains are the stub
 *   are no ClusterIP            resolver's business: "web.default" is outside
 *                               the domain and refused like any other name.
 * Negative answers in the domain (NXDOMAIN, NOERROR without data) carry the
 * zone's SOA in the authority section for negative caching (RFC 2308 §3),
 * its minimum field being the TTL, as CoreDNS does.
 *
 * Header: the query's id, opcode and RD are copied; QR is set; AA is set for
 * the domain and the ClusterIP reverse names, clear for REFUSED and errors;
 * RA is clear. EDNS (RFC 6891): a query with an OPT record gets one back
 * (payload size 1232, no options, DO clear) and may receive up to its
 * advertised size; EDNS version > 0 gets BADVERS; two OPT records FORMERR.
 * Without EDNS a reply is at most 512 bytes (RFC 1035 §4.2.1). An answer that
 * does not fit goes out with TC and no records (RFC 2181 §9).
 *
 * Malformed queries: fewer than 12 bytes, or a message with QR set (never
 * answer an answer), gets nothing (0). A header we can read but a message we
 * cannot decode, QDCOUNT other than 1, or a question that does not re-encode
 * to the same bytes (compression, non-ASCII labels, a class dns-packet does
 * not know), gets FORMERR without a question section; an opcode other than
 * QUERY gets NOTIMP. `answer` never throws.
 *
 * Framing: like reject.ts, the frame becomes the answer in place: the
 * Ethernet header keeps its length (tags stay), the client's MAC becomes the
 * destination and the router MAC the source; a 20-byte IPv4 header (options
 * dropped, TTL 64, DF, id 0) from the DNS address to the client; UDP from 53
 * to the client's port, with a complete checksum (a query whose checksum was
 * left partial by virtio offload still gets a full one back).
 *
 * Not the hot path: every query allocates (dns-packet objects and Buffers).
 * UDP only: a query over TCP is not this module's (the caller may refuse it).
 */
import * as dnsPacket from 'dns-packet'
import { TapestryError } from '../lib/errors'
import { ipv4Format } from '../wire/addr'
import { u16 } from '../wire/byteorder'
import { ETH_OFF_DST, ETH_OFF_SRC, macCopy, macWrite } from '../wire/ethernet'
import {
  IPV4_HLEN_MIN, IPV4_OFF_PROTO, IPV4_TTL_DEFAULT, PROTO_UDP,
  ipv4Check, ipv4Dst, ipv4IsFragment, ipv4Src, ipv4TotalLen, ipv4WriteHeader,
} from '../wire/ipv4'
import { UDP_HLEN, udpCheck, udpDstPort, udpFillChecksumV4, udpLen, udpSrcPort, udpWriteHeader } from '../wire/udp'

export const DNS_PORT = 53
/** The TTL of answers unless set: what kubeadm's Corefile gives the kubernetes plugin. */
export const DNS_DEFAULT_TTL = 30
/** RFC 1035 §4.2.1: a reply to a query without EDNS. */
export const DNS_UDP_MAX_PLAIN = 512
/** The payload size we advertise in our OPT record (DNS flag day 2020). */
export const DNS_EDNS_PAYLOAD = 1232
export const DNS_HEADER_LEN = 12

/** Header RCODE values (RFC 1035 §4.1.1, RFC 6891 §9 for BADVERS = 16). */
export const DnsRcode = {
  NoError: 0,
  FormErr: 1,
  ServFail: 2,
  NxDomain: 3,
  NotImp: 4,
  Refused: 5,
  BadVers: 16,
} as const

const FLAG_QR = 0x8000
const OPCODE_SHIFT = 11
const OPCODE_MASK = 0xf
const FLAG_RD = 0x0100

/** A service as DNS sees it. */
export interface DnsService {
  name: string
  namespace: string
  /** Unsigned IPv4; 0 for a headless service (the name exists, no A record). */
  clusterIP: number
}

export interface DnsResponderOptions {
  /** The DNS service address (unsigned IPv4): queries go to it, answers come from it. */
  ip: number
  /** The cluster domain, e.g. "cluster.local" (a trailing dot is fine). */
  clusterDomain: string
  /** TTL of answers and the SOA minimum, seconds. Default DNS_DEFAULT_TTL. */
  ttl?: number
}

/** What setServices took. */
export interface DnsServicesResult {
  served: number
  /** "namespace/name" of services whose name or namespace is not a DNS label (RFC 1123). */
  skipped: string[]
}

/** RFC 1123 label as Kubernetes requires of service names and namespaces (lowercase). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

interface Reply {
  rcode: number
  aa: boolean
  question: dnsPacket.Question | null
  answers: dnsPacket.Answer[]
  authorities: dnsPacket.Answer[]
}

export class DnsResponder {
  readonly ip: number
  /** Lowercase, no trailing dot. */
  readonly clusterDomain: string
  readonly ttl: number
  /** The RCODE of the last answer (extended, so 16 for BADVERS), or -1 if the last call returned 0. */
  lastRcode = -1
  /**
   * Whether the last call dropped a frame that was addressed to this server
   * (ip, UDP port 53) but could not be answered: unreadable, a response, no
   * room. The datapath counts those as dns_invalid, apart from frames that are
   * simply not DNS.
   */
  dropped = false
  /** The SOA serial: bumped by every setServices. */
  serial = 1

  /** "name.namespace" (lowercase) -> ClusterIP. */
  private byName = new Map<string, number>()
  /** Namespaces with at least one service. */
  private namespaces = new Set<string>()
  /** ClusterIP -> FQDNs. */
  private byIp = new Map<number, string[]>()

  constructor(opts: DnsResponderOptions) {
    const issues: string[] = []
    const ip = opts?.ip
    if (typeof ip !== 'number' || !Number.isInteger(ip) || ip <= 0 || ip >= 0xffffffff) {
      issues.push(`ip must be a unicast IPv4 address as an unsigned 32-bit number (got ${String(ip)})`)
    }
    const domain = typeof opts?.clusterDomain === 'string' ? opts.clusterDomain.toLowerCase().replace(/\.$/, '') : ''
    if (domain === '' || domain.length > 253 || !domain.split('.').every((l) => DNS_LABEL.test(l))) {
      issues.push(`clusterDomain must be a DNS name such as "cluster.local" (got ${JSON.stringify(opts?.clusterDomain)})`)
    }
    const ttl = opts?.ttl ?? DNS_DEFAULT_TTL
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > 0x7fffffff) issues.push(`ttl must be an integer in [0, 2147483647] (got ${String(ttl)})`)
    if (issues.length > 0) throw new TapestryError('TAPESTRY_DNS_INVALID', `DNS responder: ${issues.join('; ')}`)
    this.ip = ip >>> 0
    this.clusterDomain = domain
    this.ttl = ttl
  }

  /** The FQDN of a service (no trailing dot). */
  fqdn(name: string, namespace: string): string {
    return `${name}.${namespace}.svc.${this.clusterDomain}`
  }

  /**
   * Replaces the set of services answered for. Services whose name or
   * namespace is not a lowercase DNS label are skipped (Kubernetes never
   * creates them; a dot would make the FQDN ambiguous).
   */
  setServices(list: readonly DnsService[]): DnsServicesResult {
    const byName = new Map<string, number>()
    const namespaces = new Set<string>()
    const byIp = new Map<number, string[]>()
    const skipped: string[] = []
    for (const s of list) {
      const name = typeof s?.name === 'string' ? s.name : ''
      const ns = typeof s?.namespace === 'string' && s.namespace !== '' ? s.namespace : 'default'
      if (!DNS_LABEL.test(name) || !DNS_LABEL.test(ns)) { skipped.push(`${ns}/${name}`); continue }
      const vip = typeof s.clusterIP === 'number' && Number.isInteger(s.clusterIP) ? s.clusterIP >>> 0 : 0
      byName.set(`${name}.${ns}`, vip)
      namespaces.add(ns)
      if (vip !== 0) {
        const names = byIp.get(vip)
        const fq = this.fqdn(name, ns)
        if (names === undefined) byIp.set(vip, [fq])
        else if (!names.includes(fq)) names.push(fq)
      }
    }
    this.byName = byName
    this.namespaces = namespaces
    this.byIp = byIp
    this.serial = (this.serial + 1) >>> 0 || 1
    return { served: byName.size, skipped }
  }

  /**
   * This responder as a datapath's `responder` (datapath.ts): the answer's length,
   * 0 when the frame is not for it, -1 when it was but is dropped (dns_invalid).
   * `routerMacHi/Lo`: the gateway MAC the answer comes from.
   */
  datapathResponder(routerMacHi: number, routerMacLo: number): (buf: Uint8Array, frame: number, l3: number, len: number, capacity: number) => number {
    return (buf, frame, l3, len, capacity) => {
      const n = this.answer(buf, frame, l3, len, capacity, routerMacHi, routerMacLo)
      return n > 0 ? n : this.dropped ? -1 : 0
    }
  }

  /**
   * Answers the Ethernet/IPv4/UDP query of `len` bytes at `frame` (IPv4
   * header at `l3`) in place; see the file comment. `capacity` is how many
   * bytes from `frame` may be written. Returns the answer's frame length, or
   * 0 if there is nothing to answer (not a query to ip:53, unreadable, or no
   * room): drop the frame then.
   */
  answer(
    buf: Uint8Array, frame: number, l3: number, len: number, capacity: number,
    routerMacHi: number, routerMacLo: number,
  ): number {
    this.lastRcode = -1
    this.dropped = false
    try {
      return this.answerFrame(buf, frame, l3, len, capacity, routerMacHi, routerMacLo)
    } catch {
      // dns-packet throws on what it cannot read or write; the datapath never sees it.
      this.lastRcode = -1
      this.dropped = true
      return 0
    }
  }

  private answerFrame(
    buf: Uint8Array, frame: number, l3: number, len: number, capacity: number,
    routerMacHi: number, routerMacLo: number,
  ): number {
    if (!Number.isInteger(frame) || !Number.isInteger(l3) || frame < 0 || l3 <= frame || len > buf.length - frame) return 0
    const room = Math.min(capacity, buf.length - frame)
    const ihl = ipv4Check(buf, l3, frame + len - l3)
    if (ihl < 0 || buf[l3 + IPV4_OFF_PROTO] !== PROTO_UDP || ipv4IsFragment(buf, l3)) return 0
    if (ipv4Dst(buf, l3) !== this.ip) return 0
    const l4 = l3 + ihl
    const end = l3 + ipv4TotalLen(buf, l3)
    if (udpCheck(buf, l4, end - l4) < 0 || udpDstPort(buf, l4) !== DNS_PORT) return 0
    // From here on the frame is for this server: not answering it is a drop.
    this.dropped = true
    const client = ipv4Src(buf, l3)
    const cport = udpSrcPort(buf, l4)
    if (cport === 0) return 0
    const dns = l4 + UDP_HLEN
    const dnsLen = udpLen(buf, l4) - UDP_HLEN
    if (dnsLen < DNS_HEADER_LEN) return 0
    const id = u16(buf, dns)
    const qflags = u16(buf, dns + 2)
    if ((qflags & FLAG_QR) !== 0) return 0

    const opcode = (qflags >>> OPCODE_SHIFT) & OPCODE_MASK
    const headerFlags = (opcode << OPCODE_SHIFT) | (qflags & FLAG_RD)
    const outDns = l3 + IPV4_HLEN_MIN + UDP_HLEN
    const maxOut = room - (outDns - frame)

    const query = Buffer.from(buf.buffer, buf.byteOffset + dns, dnsLen)
    const reply = this.resolve(query, opcode)
    const opt = reply.opt
    const limit = Math.min(maxOut, opt === null ? DNS_UDP_MAX_PLAIN : Math.max(DNS_UDP_MAX_PLAIN, opt.size))
    const rcode = reply.rcode
    const packet: dnsPacket.Packet = {
      type: 'response',
      id,
      flags: headerFlags | (reply.aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) | (rcode & 0xf),
      questions: reply.question === null ? [] : [reply.question],
      answers: reply.answers,
      authorities: reply.authorities,
      additionals: opt === null ? [] : [ednsRecord(rcode)],
    }
    let n = dnsPacket.encodingLength(packet)
    if (n > limit) {
      packet.flags = (packet.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE
      packet.answers = []
      packet.authorities = []
      n = dnsPacket.encodingLength(packet)
      if (n > limit) return 0
    }

    // Everything needed from the query is read: overwrite it.
    const out = Buffer.from(buf.buffer, buf.byteOffset + outDns, n)
    dnsPacket.encode(packet, out, 0)
    if (dnsPacket.encode.bytes !== n) return 0
    macCopy(buf, frame + ETH_OFF_DST, buf, frame + ETH_OFF_SRC)
    macWrite(buf, frame + ETH_OFF_SRC, routerMacHi, routerMacLo)
    ipv4WriteHeader(buf, l3, IPV4_HLEN_MIN + UDP_HLEN + n, 0, true, IPV4_TTL_DEFAULT, PROTO_UDP, this.ip, client)
    const udp = l3 + IPV4_HLEN_MIN
    udpWriteHeader(buf, udp, DNS_PORT, cport, UDP_HLEN + n, 0)
    udpFillChecksumV4(buf, l3, udp)
    this.lastRcode = rcode
    this.dropped = false
    return outDns - frame + n
  }

  /** Decides the answer to the message in `query` (header already known to be a query). */
  private resolve(query: Buffer, opcode: number): Reply & { opt: { size: number } | null } {
    const fail = (rcode: number): Reply & { opt: null } =>
      ({ rcode, aa: false, question: null, answers: [], authorities: [], opt: null })
    if (opcode !== 0) return fail(DnsRcode.NotImp)
    if (u16(query, 4) !== 1) return fail(DnsRcode.FormErr)
    // A record takes at least 11 bytes (root name, type, class, TTL, RDLENGTH), the question 5: record
    // counts that cannot fit are FORMERR before decoding, as decoding would find. dns-packet allocates
    // an array of each count's size first, so a 12-byte query with counts of 65535 cost about 1.5 MB
    // of garbage (seen in the fuzz test, test/unit/fuzz/dns-queries.test.ts, as GC time).
    if (u16(query, 6) + u16(query, 8) + u16(query, 10) > (query.length - DNS_HEADER_LEN - 5) / 11) return fail(DnsRcode.FormErr)
    let msg: dnsPacket.DecodedPacket
    try {
      msg = dnsPacket.decode(query)
    } catch {
      return fail(DnsRcode.FormErr)
    }
    const q = msg.questions?.[0]
    if (q === undefined || typeof q.name !== 'string' || !sameQuestion(query, q)) return fail(DnsRcode.FormErr)

    const opts = (msg.additionals ?? []).filter((a): a is dnsPacket.OptAnswer => a.type === 'OPT')
    if (opts.length > 1) return fail(DnsRcode.FormErr)
    const opt = opts.length === 1 ? { size: opts[0].udpPayloadSize } : null
    const question: dnsPacket.Question = { name: q.name, type: q.type, class: q.class }
    if (opts.length === 1 && opts[0].ednsVersion !== 0) {
      return { rcode: DnsRcode.BadVers, aa: false, question, answers: [], authorities: [], opt }
    }
    return { ...this.lookup(question), opt }
  }

  private lookup(q: dnsPacket.Question): Reply {
    const refused: Reply = { rcode: DnsRcode.Refused, aa: false, question: q, answers: [], authorities: [] }
    if (q.class !== 'IN' && q.class !== 'ANY') return refused
    const lname = q.name.toLowerCase()
    const domain = this.clusterDomain
    const type = q.type
    const any = (type as string) === 'ANY'
    if (lname === domain || lname.endsWith('.' + domain)) {
      const rel = lname === domain ? [] : lname.slice(0, lname.length - domain.length - 1).split('.')
      const found = (answers: dnsPacket.Answer[]): Reply => ({
        rcode: DnsRcode.NoError, aa: true, question: q, answers, authorities: answers.length > 0 ? [] : [this.soa()],
      })
      if (rel.length === 0) return found(type === 'SOA' || any ? [this.soa()] : [])
      if (rel[rel.length - 1] === 'svc') {
        if (rel.length === 1) return found([])
        if (rel.length === 2 && this.namespaces.has(rel[0])) return found([])
        if (rel.length === 3) {
          const vip = this.byName.get(`${rel[0]}.${rel[1]}`)
          if (vip !== undefined) {
            return found(vip !== 0 && (type === 'A' || any) ? [{ type: 'A', name: q.name, ttl: this.ttl, data: ipv4Format(vip) }] : [])
          }
        }
      }
      return { rcode: DnsRcode.NxDomain, aa: true, question: q, answers: [], authorities: [this.soa()] }
    }
    // Octets as decimal numbers without leading zeros (RFC 1035 §3.5): "020.0.96.10.in-addr.arpa" is
    // another name than "20.0.96.10.in-addr.arpa", one with no record, and was answered as if it were
    // the same (found by the fuzz test, test/unit/fuzz/dns-queries.test.ts). Now refused like any
    // in-addr.arpa name that is no ClusterIP.
    const m = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.in-addr\.arpa$/.exec(lname)
    if (m !== null) {
      const b = [m[4], m[3], m[2], m[1]].map(Number)
      if (b.every((x) => x <= 255)) {
        const names = this.byIp.get(((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0)
        if (names !== undefined) {
          const answers: dnsPacket.Answer[] = type === 'PTR' || any
            ? names.map((data) => ({ type: 'PTR' as const, name: q.name, ttl: this.ttl, data }))
            : []
          return { rcode: DnsRcode.NoError, aa: true, question: q, answers, authorities: [] }
        }
      }
    }
    return refused
  }

  /** The zone's SOA record (CoreDNS's field values; minimum = TTL for negative caching). */
  private soa(): dnsPacket.Answer {
    const d = this.clusterDomain
    return {
      type: 'SOA', name: d, ttl: this.ttl,
      data: {
        mname: `ns.dns.${d}`, rname: `hostmaster.${d}`, serial: this.serial,
        refresh: 7200, retry: 1800, expire: 86400, minimum: this.ttl,
      },
    }
  }
}

/** Our OPT record (RFC 6891 §6.1.3): the upper 8 bits of a 12-bit RCODE go here. */
function ednsRecord(rcode: number): dnsPacket.Answer {
  return {
    type: 'OPT', name: '.', udpPayloadSize: DNS_EDNS_PAYLOAD, extendedRcode: rcode >>> 4,
    ednsVersion: 0, flags: 0, flag_do: false, options: [],
  }
}

/**
 * True if `q` encodes back to the question bytes of `query`: then the echo
 * in the answer is the question the client asked (dns-packet joins labels
 * with dots and reads them as UTF-8, so a label with a dot or bytes that are
 * not UTF-8 would come back different).
 */
function sameQuestion(query: Buffer, q: dnsPacket.Question): boolean {
  const enc = dnsPacket.encode({ id: 0, flags: 0, questions: [q] })
  const n = enc.length - DNS_HEADER_LEN
  if (DNS_HEADER_LEN + n > query.length) return false
  return enc.subarray(DNS_HEADER_LEN).equals(query.subarray(DNS_HEADER_LEN, DNS_HEADER_LEN + n))
}

/**
 * The per-packet entry points of the service layer: what kube-proxy does with
 * iptables/IPVS, done on frames in the dataplane.
 *
 * Where the datapath calls in
 *   outbound()  an IPv4 frame a pod sent to the router MAC (pods reach every
 *               off-subnet address, service VIPs included, through the anycast
 *               gateway that every agent answers ARP for).
 *   inbound()   an IPv4 frame about to be delivered to a local pod, whatever it
 *               came from (another local pod, or a VTEP).
 *
 * The life of a connection (client C, VIP V:vp, endpoint B:bp on any host)
 *   C -> V:vp      outbound on C's agent: conntrack miss, V:vp is a service
 *                  port, the balancer picks B, a connection is created, the
 *                  frame is DNATed to C -> B:bp with the router MAC as source;
 *                  the datapath resolves B's MAC (nextHopIp) and forwards it,
 *                  to a local pod or over VXLAN. B's agent does nothing special.
 *   B:bp -> C      B answers C directly on the L2 overlay (same subnet), so the
 *                  answer reaches C's agent, which calls inbound before
 *                  delivering it: reply-direction hit, reverse NAT to
 *                  V:vp -> C with the router MAC as source. The NAT state lives
 *                  only on the client's agent.
 *   Hairpin        C is its own endpoint (B = C): the frame would reach C with
 *                  C as source and C would answer itself, so the source is
 *                  also rewritten to the network's gateway address
 *                  (setGateway). C answers the gateway, i.e. the router MAC, so
 *                  the answer comes back through outbound, which matches it as
 *                  a reply and reverses both rewrites.
 *   TCP without SYN for an unknown flow (the agent restarted, or the entry was
 *                  evicted) is balanced like a new one and picked up mid-stream:
 *                  with Maglev it lands on the same endpoint, so the flow lives
 *                  on. A RST for an unknown flow is balanced and forwarded
 *                  without creating an entry.
 *   No eligible endpoint, or a VIP on a port no service uses: the frame is
 *                  turned in place into a TCP RST or an ICMP port unreachable
 *                  for the client (Verdict.Reply): "connection refused" at once.
 *   ICMP errors about a tracked connection, either way (fragmentation needed,
 *                  port unreachable from an endpoint, ...) are translated,
 *                  outer and embedded headers, so the sender's stack matches
 *                  them to its socket (RFC 5508 §4). Other ICMP to a VIP (ping)
 *                  is dropped and counted: a VIP is not a host.
 *
 * Not handled: fragments to a VIP are dropped (no reassembly; TCP never
 * fragments with PMTU discovery, and large UDP datagrams to services are
 * rare); TTL is not decremented (the service hop is transparent, as on the
 * L2 overlay); IP options pass through untouched.
 *
 * Results of a call are left in fields, not returned objects: nextHopIp for
 * Verdict.Forward (the address whose MAC the datapath must put as
 * destination), replyLen for Verdict.Reply (the new frame length from
 * frameOff; the answer goes back to the port the frame came from and has
 * complete checksums, so a virtio-net header must say "no offload").
 *
 * Partial checksums: pass l4Partial = true when the frame's virtio-net header
 * has NEEDS_CSUM (the L4 checksum field holds the pseudo-header sum only; see
 * nat.ts). GSO super-frames are rewritten as one packet; their segments share
 * the tuple.
 *
 * Hot path: no allocation, no exceptions; drops are counted in `drops`
 * (ServiceDrop), events in `stats` (ServiceStat).
 */
import { flatHash } from '../lib/flat-table'
import { u16, u32 } from '../wire/byteorder'
import { ICMP_HLEN } from '../wire/icmp'
import {
  IPV4_OFF_DST, IPV4_OFF_PROTO, IPV4_OFF_SRC, PROTO_ICMP, PROTO_TCP, PROTO_UDP,
  ipv4Check, ipv4IsFragment, ipv4TotalLen,
} from '../wire/ipv4'
import { TCP_ACK, TCP_OFF_FLAGS, TCP_RST, TCP_SYN, tcpCheck } from '../wire/tcp'
import { udpCheck } from '../wire/udp'
import { CT_DIR_ORIG, CT_DIR_REPLY, Conntrack, CtState } from './conntrack'
import { icmpIsError, icmpQuotedL4, natIcmpError, natRewrite, natSetEthSrc } from './nat'
import { rejectTcp, rejectUdp } from './reject'
import { ServiceTable } from './service-table'

export enum Verdict {
  /** Not for a service: the datapath carries on (and drops it as unroutable). */
  NotService = 0,
  /** Rewritten: send to the MAC of `nextHopIp`. */
  Forward = 1,
  /** Turned into an answer to the sender (`replyLen` bytes from frameOff). */
  Reply = 2,
  /** Dropped; the reason is counted in `drops`. */
  Drop = 3,
}

export enum ServiceDrop {
  /** A frame for a VIP whose TCP/UDP header did not check. */
  Malformed,
  /** A fragment for a VIP (not reassembled). */
  Fragment,
  /** ICMP other than an error for a VIP (a VIP answers no ping). */
  VipPing,
  /** A protocol other than TCP, UDP, ICMP for a VIP. */
  Protocol,
  /** No room for a new connection (conntrack full with nothing evictable, or a tuple clash). */
  ConntrackFull,
  /** Hairpin without a gateway address for the client's port. */
  NoGateway,
  /** No endpoint and no answer due (a RST), or no room to build it. */
  NoEndpoint,
  /** An ICMP error for a VIP about no known connection. */
  IcmpUnmatched,
}
export const SERVICE_DROP_COUNT = ServiceDrop.IcmpUnmatched + 1
export const SERVICE_DROP_NAMES: readonly string[] = [
  'malformed', 'fragment', 'vip_ping', 'protocol', 'conntrack_full', 'no_gateway', 'no_endpoint', 'icmp_unmatched',
]

export enum ServiceStat {
  /** Connections created. */
  NewConnections,
  /** ... of which picked up mid-stream (TCP without SYN). */
  PickedUp,
  /** ... of which hairpin (client is the endpoint). */
  Hairpin,
  /** Original-direction packets of known connections rewritten. */
  Forwarded,
  /** Reply-direction packets reverse-NATed. */
  Reversed,
  /** RST / port unreachable answers built. */
  Rejected,
  /** ICMP errors translated. */
  IcmpTranslated,
  /** SYNs that reopened a TIME_WAIT/CLOSE tuple. */
  Reopened,
  /** RSTs of unknown flows forwarded without an entry. */
  StrayRst,
  /** ICMP errors to a local pod handed to the datapath worker whose flow they are about (workers > 1). */
  IcmpHandedOver,
}
export const SERVICE_STAT_COUNT = ServiceStat.IcmpHandedOver + 1
export const SERVICE_STAT_NAMES: readonly string[] = [
  'new_connections', 'picked_up', 'hairpin', 'forwarded', 'reversed', 'rejected', 'icmp_translated', 'reopened',
  'stray_rst', 'icmp_handed_over',
]

/** Default anycast router MAC 02:74:61:70:00:01 (the datapath's ROUTER_MAC_*). */
export const SERVICE_ROUTER_MAC_HI = 0x0274
export const SERVICE_ROUTER_MAC_LO = 0x61700001
/**
 * Seed of the 5-tuple hash Maglev looks up. A constant, not per host: every
 * agent must send a flow to the same endpoint, also after a restart.
 */
export const SERVICE_FLOW_HASH_SEED = 0x74617073

export interface ServicePathOptions {
  routerMacHi?: number
  routerMacLo?: number
  /** Gateway address used for hairpin SNAT on ports without setGateway(). Default 0 (none). */
  defaultGatewayIp?: number
  /** Must be equal on every agent. Default SERVICE_FLOW_HASH_SEED. */
  flowHashSeed?: number
}

export class ServicePath {
  readonly drops = new Float64Array(SERVICE_DROP_COUNT)
  readonly stats = new Float64Array(SERVICE_STAT_COUNT)
  readonly routerMacHi: number
  readonly routerMacLo: number
  readonly flowHashSeed: number
  defaultGatewayIp: number
  /** After Verdict.Forward: the address to resolve for the destination MAC. */
  nextHopIp = 0
  /** After Verdict.Reply: the answer's length from frameOff. */
  replyLen = 0

  private gateways = new Uint32Array(64)
  private readonly tuple = new Uint32Array(4)

  /**
   * Wires the three together: conntrack's create/close hooks keep the
   * endpoints' connection counts, and endpoints leaving a service flush their
   * UDP conntrack entries (the hooks set before are replaced).
   */
  constructor(readonly services: ServiceTable, readonly conntrack: Conntrack, opts: ServicePathOptions = {}) {
    this.routerMacHi = opts.routerMacHi ?? SERVICE_ROUTER_MAC_HI
    this.routerMacLo = opts.routerMacLo ?? SERVICE_ROUTER_MAC_LO
    this.defaultGatewayIp = (opts.defaultGatewayIp ?? 0) >>> 0
    this.flowHashSeed = opts.flowHashSeed ?? SERVICE_FLOW_HASH_SEED
    const eps = services.eps
    conntrack.onCreate = (slot) => eps.acquire(slot)
    conntrack.onClose = (slot) => eps.release(slot)
    services.onEndpointsRemoved = (slots) => { conntrack.flushEndpointSlots(slots, PROTO_UDP) }
  }

  /** The gateway address of the network behind pod port `portId` (hairpin SNAT source). */
  setGateway(portId: number, gatewayIp: number): void {
    if (portId >= this.gateways.length) {
      let n = this.gateways.length
      while (n <= portId) n *= 2
      const g = new Uint32Array(n)
      g.set(this.gateways)
      this.gateways = g
    }
    this.gateways[portId] = gatewayIp >>> 0
  }

  /** The 5-tuple hash Maglev uses (unsigned). */
  flowHash(src: number, dst: number, sport: number, dport: number, proto: number): number {
    const t = this.tuple
    t[0] = src
    t[1] = dst
    t[2] = ((sport << 16) | dport) >>> 0
    t[3] = proto
    return flatHash(t, 0, 4, this.flowHashSeed) >>> 0
  }

  /**
   * An IPv4 frame from pod port `portId` to the router MAC: `len` bytes from
   * `frameOff`, IPv4 header at `l3Off`. See the file comment.
   */
  outbound(
    buf: Uint8Array, frameOff: number, l3Off: number, len: number, portId: number, now: number,
    l4Partial = false,
  ): Verdict {
    this.nextHopIp = 0
    this.replyLen = 0
    const svcs = this.services
    const ct = this.conntrack
    if (svcs.vipCount === 0 && ct.size === 0) return Verdict.NotService
    const ihl = ipv4Check(buf, l3Off, frameOff + len - l3Off)
    if (ihl < 0) return Verdict.NotService
    const proto = buf[l3Off + IPV4_OFF_PROTO]
    const src = u32(buf, l3Off + IPV4_OFF_SRC)
    const dst = u32(buf, l3Off + IPV4_OFF_DST)
    const l4 = l3Off + ihl
    const end = l3Off + ipv4TotalLen(buf, l3Off)

    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      if (ipv4IsFragment(buf, l3Off)) return this.notOurs(dst, ServiceDrop.Fragment)
      const hl = proto === PROTO_TCP ? tcpCheck(buf, l4, end - l4) : udpCheck(buf, l4, end - l4)
      if (hl < 0) return this.notOurs(dst, ServiceDrop.Malformed)
      const sport = u16(buf, l4)
      const dport = u16(buf, l4 + 2)
      const flags = proto === PROTO_TCP ? buf[l4 + TCP_OFF_FLAGS] : 0
      const e = ct.lookup(src, dst, sport, dport, proto, now)
      if (e >= 0) {
        const c = ct.connOf(e)
        const dir = ct.dirOf(e)
        const st = ct.state(c)
        if (dir === CT_DIR_ORIG && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN && proto === PROTO_TCP &&
            (st === CtState.TcpTimeWait || st === CtState.TcpClose)) {
          // A new connection on an old tuple: balance it afresh.
          ct.delete(c)
          this.stats[ServiceStat.Reopened]++
        } else {
          ct.update(c, dir, flags, now)
          ct.translate(e)
          natRewrite(buf, l3Off, l4, proto, ct.natSrc, ct.natDst, ct.natSport, ct.natDport, l4Partial)
          natSetEthSrc(buf, frameOff, this.routerMacHi, this.routerMacLo)
          this.nextHopIp = ct.natDst
          this.stats[dir === CT_DIR_ORIG ? ServiceStat.Forwarded : ServiceStat.Reversed]++
          return Verdict.Forward
        }
      }
      const pe = svcs.lookup(dst, proto, dport)
      if (pe < 0) {
        if (!svcs.isVip(dst)) return Verdict.NotService
        return this.reject(buf, frameOff, l3Off, proto)
      }
      return this.newConnection(buf, frameOff, l3Off, l4, proto, src, dst, sport, dport, flags, pe, portId, now, l4Partial)
    }

    if (proto === PROTO_ICMP) {
      if (ipv4IsFragment(buf, l3Off) || end - l4 < ICMP_HLEN) return this.notOurs(dst, ServiceDrop.Malformed)
      if (icmpIsError(buf[l4])) {
        if (this.icmpError(buf, l3Off, l4, end, now, true)) {
          natSetEthSrc(buf, frameOff, this.routerMacHi, this.routerMacLo)
          this.nextHopIp = this.conntrack.natDst
          return Verdict.Forward
        }
        return this.notOurs(dst, ServiceDrop.IcmpUnmatched)
      }
      return this.notOurs(dst, ServiceDrop.VipPing)
    }
    return this.notOurs(dst, ServiceDrop.Protocol)
  }

  /**
   * An IPv4 frame about to be delivered to a local pod: reverse-NATs it if it
   * answers a tracked connection (or is an ICMP error about one). Returns
   * true if it rewrote the frame. One check when there are no connections.
   */
  inbound(buf: Uint8Array, frameOff: number, l3Off: number, len: number, now: number, l4Partial = false): boolean {
    const ct = this.conntrack
    if (ct.size === 0) return false
    const ihl = ipv4Check(buf, l3Off, frameOff + len - l3Off)
    if (ihl < 0) return false
    const proto = buf[l3Off + IPV4_OFF_PROTO]
    const l4 = l3Off + ihl
    const end = l3Off + ipv4TotalLen(buf, l3Off)
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      if (ipv4IsFragment(buf, l3Off)) return false
      const hl = proto === PROTO_TCP ? tcpCheck(buf, l4, end - l4) : udpCheck(buf, l4, end - l4)
      if (hl < 0) return false
      const e = ct.lookup(u32(buf, l3Off + IPV4_OFF_SRC), u32(buf, l3Off + IPV4_OFF_DST), u16(buf, l4), u16(buf, l4 + 2), proto, now)
      if (e < 0 || ct.dirOf(e) !== CT_DIR_REPLY) return false
      ct.update(ct.connOf(e), CT_DIR_REPLY, proto === PROTO_TCP ? buf[l4 + TCP_OFF_FLAGS] : 0, now)
      ct.translate(e)
      natRewrite(buf, l3Off, l4, proto, ct.natSrc, ct.natDst, ct.natSport, ct.natDport, l4Partial)
      natSetEthSrc(buf, frameOff, this.routerMacHi, this.routerMacLo)
      this.stats[ServiceStat.Reversed]++
      return true
    }
    if (proto === PROTO_ICMP && !ipv4IsFragment(buf, l3Off) && end - l4 >= ICMP_HLEN && icmpIsError(buf[l4]) &&
        this.icmpError(buf, l3Off, l4, end, now, false)) {
      natSetEthSrc(buf, frameOff, this.routerMacHi, this.routerMacLo)
      return true
    }
    return false
  }

  /** Sweeps expired connections and affinity entries (call on a timer, not per packet). */
  sweep(now: number, maxVisits?: number): number {
    this.services.affinity.sweep(now)
    return this.conntrack.sweep(now, maxVisits)
  }

  // ---- internals --------------------------------------------------------------

  /** A frame we cannot serve: counted and dropped if it was for a VIP, else not ours. */
  private notOurs(dst: number, why: ServiceDrop): Verdict {
    if (!this.services.isVip(dst)) return Verdict.NotService
    this.drops[why]++
    return Verdict.Drop
  }

  private reject(buf: Uint8Array, frameOff: number, l3: number, proto: number): Verdict {
    const n = proto === PROTO_TCP
      ? rejectTcp(buf, frameOff, l3, this.routerMacHi, this.routerMacLo)
      : rejectUdp(buf, frameOff, l3, this.routerMacHi, this.routerMacLo)
    if (n === 0) {
      this.drops[ServiceDrop.NoEndpoint]++
      return Verdict.Drop
    }
    this.replyLen = n
    this.stats[ServiceStat.Rejected]++
    return Verdict.Reply
  }

  private newConnection(
    buf: Uint8Array, frameOff: number, l3: number, l4: number, proto: number,
    src: number, dst: number, sport: number, dport: number, flags: number,
    pe: number, portId: number, now: number, l4Partial: boolean,
  ): Verdict {
    const svcs = this.services
    const svc = svcs.portSvc[pe]
    const target = svcs.portTarget[pe]
    const bal = svcs.balancers[svc]
    const slot = bal === null ? -1 : bal.pick(this.flowHash(src, dst, sport, dport, proto), src, now)
    if (slot < 0) return this.reject(buf, frameOff, l3, proto)
    const backend = svcs.eps.ip[slot]
    let snat = src
    if (backend === src) {
      snat = portId >= 0 && portId < this.gateways.length && this.gateways[portId] !== 0
        ? this.gateways[portId] : this.defaultGatewayIp
      if (snat === 0) {
        this.drops[ServiceDrop.NoGateway]++
        return Verdict.Drop
      }
    }
    const ct = this.conntrack
    if (proto === PROTO_TCP && (flags & TCP_RST) !== 0) {
      // Nothing to track: let the endpoint (the same one, with Maglev) hear it.
      natRewrite(buf, l3, l4, proto, snat, backend, sport, target, l4Partial)
      this.stats[ServiceStat.StrayRst]++
    } else {
      const c = ct.create(src, dst, sport, dport, proto, backend, target, snat, svc, slot, flags, now)
      if (c < 0) {
        this.drops[ServiceDrop.ConntrackFull]++
        return Verdict.Drop
      }
      ct.translate(ct.origEntry(c))
      natRewrite(buf, l3, l4, proto, ct.natSrc, ct.natDst, ct.natSport, ct.natDport, l4Partial)
      this.stats[ServiceStat.NewConnections]++
      if (proto === PROTO_TCP && (flags & (TCP_SYN | TCP_ACK)) !== TCP_SYN) this.stats[ServiceStat.PickedUp]++
      if (snat !== src) this.stats[ServiceStat.Hairpin]++
    }
    natSetEthSrc(buf, frameOff, this.routerMacHi, this.routerMacLo)
    this.nextHopIp = backend
    return Verdict.Forward
  }

  /**
   * Translates the ICMP error at `icmp` if its embedded packet belongs to a
   * tracked connection (reply direction only unless `allowOrig`). Leaves the
   * error's new destination in conntrack.natDst.
   */
  private icmpError(buf: Uint8Array, l3: number, icmp: number, end: number, now: number, allowOrig: boolean): boolean {
    const l4 = icmpQuotedL4(buf, icmp, end)
    if (l4 < 0) return false
    const ip = icmp + ICMP_HLEN
    const proto = buf[ip + IPV4_OFF_PROTO]
    const ct = this.conntrack
    // The embedded packet went the other way: look up its reverse.
    const e = ct.lookup(u32(buf, ip + IPV4_OFF_DST), u32(buf, ip + IPV4_OFF_SRC), u16(buf, l4 + 2), u16(buf, l4), proto, now)
    if (e < 0) return false
    if (!allowOrig && ct.dirOf(e) === CT_DIR_ORIG) return false
    ct.translate(e)
    if (!natIcmpError(buf, l3, icmp, end, ct.natSrc, ct.natDst, ct.natSport, ct.natDport)) return false
    this.stats[ServiceStat.IcmpTranslated]++
    return true
  }
}

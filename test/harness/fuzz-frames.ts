/**
 * Valid packets the fuzz tests mutate (not a test file itself): Ethernet frames
 * of every kind the datapath parses, built with the hand-written builders of
 * test/unit/wire/frames.ts (RFC layouts, not the codecs under test), and the
 * same frames cut at each layer so every `*Check` gets templates of its own.
 */
import {
  ETHERTYPE_IPV4, arpFrame, concatBytes, ethFrame, pattern, tcpFrame, tsOption, udpFrame, vxlanPacket,
  TCP_ACK, TCP_PSH, TCP_SYN,
} from '../unit/wire/frames'
import { csumAdd, csumFinish } from '../../src/wire/checksum'

/** An ICMP echo request over IPv4 (RFC 792), checksums filled. */
export function icmpEchoFrame(o: { ethSrc?: string; ethDst?: string; src?: string; dst?: string; payload?: number } = {}): Uint8Array {
  const data = pattern(o.payload ?? 32, 7)
  const icmp = new Uint8Array(8 + data.length)
  icmp[0] = 8
  icmp[4] = 0x12; icmp[5] = 0x34; icmp[6] = 0; icmp[7] = 1
  icmp.set(data, 8)
  const c = csumFinish(csumAdd(icmp, 0, icmp.length, 0))
  icmp[2] = c >>> 8; icmp[3] = c & 255
  const ip = new Uint8Array(20 + icmp.length)
  ip[0] = 0x45; ip[2] = ip.length >>> 8; ip[3] = ip.length & 255; ip[6] = 0x40; ip[8] = 64; ip[9] = 1
  const put = (at: number, text: string) => text.split('.').forEach((x, i) => { ip[at + i] = Number(x) })
  put(12, o.src ?? '10.0.0.1')
  put(16, o.dst ?? '10.0.0.2')
  const h = csumFinish(csumAdd(ip, 0, 20, 0))
  ip[10] = h >>> 8; ip[11] = h & 255
  ip.set(icmp, 20)
  return ethFrame({ ethSrc: o.ethSrc, ethDst: o.ethDst }, ETHERTYPE_IPV4, ip)
}

/** Addresses a frame template is built for. */
export interface Station { mac: string; ip: string }

const SOMEONE: Station = { mac: '02:00:00:00:00:01', ip: '10.0.0.1' }
const OTHER: Station = { mac: '02:00:00:00:00:02', ip: '10.0.0.2' }

/**
 * One of each kind of frame from `src` to `dst`: TCP (with options and payload,
 * a SYN, IPv6), UDP (IPv4, IPv6, VLAN-tagged, QinQ), ICMP, ARP request and
 * reply, broadcast, and a jumbo-ish TCP segment.
 */
export function frameTemplates(src: Station = SOMEONE, dst: Station = OTHER): Uint8Array[] {
  const e = { ethSrc: src.mac, ethDst: dst.mac, src: src.ip, dst: dst.ip }
  const qinq = (() => {
    const f = udpFrame({ ...e, payload: pattern(20, 3) })
    // 802.1ad outer tag + 802.1Q inner tag in front of the EtherType.
    return concatBytes(f.subarray(0, 12), Uint8Array.from([0x88, 0xa8, 0x00, 0x05, 0x81, 0x00, 0x00, 0x07]), f.subarray(12))
  })()
  return [
    tcpFrame({ ...e, payload: pattern(100, 1), tcpOptions: tsOption(1, 2), flags: TCP_ACK | TCP_PSH }),
    tcpFrame({ ...e, flags: TCP_SYN, tcpOptions: tsOption(5, 0) }),
    tcpFrame({ ethSrc: src.mac, ethDst: dst.mac, v6: true, payload: pattern(64, 2) }),
    tcpFrame({ ...e, payload: pattern(1400, 4), ipOptions: Uint8Array.from([1, 1, 1, 0]) }),
    udpFrame({ ...e, payload: pattern(48, 5) }),
    udpFrame({ ethSrc: src.mac, ethDst: dst.mac, v6: true, payload: pattern(30, 6) }),
    udpFrame({ ...e, vlan: 10, payload: pattern(12, 8) }),
    udpFrame({ ...e, ethDst: 'ff:ff:ff:ff:ff:ff', dst: '10.0.255.255', payload: pattern(16, 9) }),
    qinq,
    icmpEchoFrame({ ethSrc: src.mac, ethDst: dst.mac, src: src.ip, dst: dst.ip }),
    arpFrame({ ethSrc: src.mac, spa: src.ip, tpa: dst.ip }),
    arpFrame({ ethSrc: src.mac, ethDst: dst.mac, op: 2, spa: src.ip, tha: dst.mac, tpa: dst.ip }),
    ethFrame({ ethSrc: src.mac, ethDst: '01:80:c2:00:00:00' }, 0x88cc, pattern(40, 10)),
  ]
}

/** Offsets of the layers of a template frame, found by walking it (templates only: no checks). */
export function layersOf(f: Uint8Array): { l3: number; type: number; l4: number; proto: number } {
  let o = 12
  let type = (f[o] << 8) | f[o + 1]
  while (type === 0x8100 || type === 0x88a8) { o += 4; type = (f[o] << 8) | f[o + 1] }
  const l3 = o + 2
  if (type === 0x0800) return { l3, type, l4: l3 + (f[l3] & 15) * 4, proto: f[l3 + 9] }
  if (type === 0x86dd) return { l3, type, l4: l3 + 40, proto: f[l3 + 6] }
  return { l3, type, l4: -1, proto: -1 }
}

/** Templates cut at layer 3 of the given EtherType, or at layer 4 of the given IP protocol. */
export function l3Templates(frames: Uint8Array[], type: number): Uint8Array[] {
  return frames.map((f) => ({ f, l: layersOf(f) })).filter((x) => x.l.type === type).map((x) => x.f.slice(x.l.l3))
}

export function l4Templates(frames: Uint8Array[], proto: number): Uint8Array[] {
  return frames.map((f) => ({ f, l: layersOf(f) })).filter((x) => x.l.proto === proto && x.l.l4 > 0).map((x) => x.f.slice(x.l.l4))
}

/** VXLAN packets (RFC 7348 §5: header + inner frame) for `vni` carrying each frame. */
export function vxlanTemplates(vni: number, frames: Uint8Array[]): Uint8Array[] {
  return frames.map((f) => vxlanPacket(vni, f))
}


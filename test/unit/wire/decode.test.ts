import { test } from 'node:test'
import assert from 'node:assert/strict'
import { describeFrame, ipv6Format, tcpFlagsText } from '../../../src/wire/decode'
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ethWriteHeader } from '../../../src/wire/ethernet'
import { ARP_OP_REPLY, ARP_OP_REQUEST, arpWrite } from '../../../src/wire/arp'
import { IPV4_FLAG_MF, PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipv4WriteHeader, setIpv4Frag } from '../../../src/wire/ipv4'
import { TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, tcpWriteHeader } from '../../../src/wire/tcp'
import { udpWriteHeader } from '../../../src/wire/udp'
import { ICMP_CODE_FRAG_NEEDED, ICMP_CODE_PORT_UNREACH, ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, icmpWriteEcho, icmpWriteHeader } from '../../../src/wire/icmp'
import { concat, hex } from './bytes'
import { mulberry32, randomBytes, below } from './fuzz'

const A = '02:00:00:00:00:01'
const B = '02:00:00:00:00:02'

/** Ethernet A > B + IPv4 10.0.0.1 > 10.0.0.2 with `l4` as payload. */
function ip4(proto: number, l4: Uint8Array): Uint8Array {
  const f = new Uint8Array(34 + l4.length)
  ethWriteHeader(f, 0, 0x0200, 2, 0x0200, 1, ETHERTYPE_IPV4)
  ipv4WriteHeader(f, 14, 20 + l4.length, 0, true, 64, proto, 0x0a000001, 0x0a000002)
  f.set(l4, 34)
  return f
}

function tcp(flags: number, payload: number): Uint8Array {
  const t = new Uint8Array(20 + payload)
  tcpWriteHeader(t, 0, 1234, 80, 1, 0, flags, 1000)
  return t
}

function arp(op: number): Uint8Array {
  const f = new Uint8Array(42)
  ethWriteHeader(f, 0, op === ARP_OP_REQUEST ? 0xffff : 0x0200, op === ARP_OP_REQUEST ? 0xffffffff : 1, 0x0200, 2, ETHERTYPE_ARP)
  if (op === ARP_OP_REQUEST) arpWrite(f, 14, op, 0x0200, 1, 0x0a000001, 0, 0, 0x0a000002)
  else arpWrite(f, 14, op, 0x0200, 2, 0x0a000002, 0x0200, 1, 0x0a000001)
  return f
}

test('TCP segments read like tcpdump', () => {
  const syn = ip4(PROTO_TCP, tcp(TCP_SYN, 0))
  assert.equal(describeFrame(syn, 0, syn.length), `${A} > ${B} IPv4 10.0.0.1.1234 > 10.0.0.2.80 TCP [S] len 0`)
  const data = ip4(PROTO_TCP, tcp(TCP_PSH | TCP_ACK, 3))
  assert.equal(describeFrame(data, 0, data.length), `${A} > ${B} IPv4 10.0.0.1.1234 > 10.0.0.2.80 TCP [P.] len 3`)
})

test('Ethernet padding is not counted as TCP payload', () => {
  const syn = concat(ip4(PROTO_TCP, tcp(TCP_SYN | TCP_ACK, 0)), new Uint8Array(6)) // padded to 60
  assert.equal(describeFrame(syn, 0, syn.length), `${A} > ${B} IPv4 10.0.0.1.1234 > 10.0.0.2.80 TCP [S.] len 0`)
})

test('UDP', () => {
  const u = new Uint8Array(13)
  udpWriteHeader(u, 0, 1234, 53, 13, 0)
  const f = ip4(PROTO_UDP, u)
  assert.equal(describeFrame(f, 0, f.length), `${A} > ${B} IPv4 10.0.0.1.1234 > 10.0.0.2.53 UDP len 5`)
})

test('ICMP echo, port unreachable, fragmentation needed', () => {
  const echo = new Uint8Array(12)
  icmpWriteEcho(echo, 0, ICMP_ECHO_REQUEST, 0x1234, 1)
  let f = ip4(PROTO_ICMP, echo)
  assert.equal(describeFrame(f, 0, f.length), `${A} > ${B} IPv4 10.0.0.1 > 10.0.0.2 ICMP echo request id 4660 seq 1`)
  icmpWriteEcho(echo, 0, ICMP_ECHO_REPLY, 7, 2)
  f = ip4(PROTO_ICMP, echo)
  assert.equal(describeFrame(f, 0, f.length), `${A} > ${B} IPv4 10.0.0.1 > 10.0.0.2 ICMP echo reply id 7 seq 2`)
  const un = new Uint8Array(8)
  icmpWriteHeader(un, 0, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, 0)
  f = ip4(PROTO_ICMP, un)
  assert.equal(describeFrame(f, 0, f.length), `${A} > ${B} IPv4 10.0.0.1 > 10.0.0.2 ICMP port unreachable`)
  icmpWriteHeader(un, 0, ICMP_DEST_UNREACH, ICMP_CODE_FRAG_NEEDED, 1450)
  f = ip4(PROTO_ICMP, un)
  assert.equal(describeFrame(f, 0, f.length), `${A} > ${B} IPv4 10.0.0.1 > 10.0.0.2 ICMP frag needed mtu 1450`)
})

test('IPv4 fragments', () => {
  const first = ip4(PROTO_UDP, hex('04d2 0035 0010 0000'))
  setIpv4Frag(first, 14, IPV4_FLAG_MF, 0)
  // The UDP length (0x10) counts the whole datagram, more than this fragment holds.
  assert.equal(describeFrame(first, 0, first.length), `${A} > ${B} IPv4 10.0.0.1.1234 > 10.0.0.2.53 UDP len 8 (first fragment)`)
  const later = ip4(PROTO_UDP, hex('00 00 00 00'))
  setIpv4Frag(later, 14, 0, 1480)
  assert.equal(describeFrame(later, 0, later.length), `${A} > ${B} IPv4 10.0.0.1 > 10.0.0.2 proto 17 frag off 1480 len 4`)
})

test('ARP who-has and reply', () => {
  const req = arp(ARP_OP_REQUEST)
  assert.equal(describeFrame(req, 0, req.length), `${B} > ff:ff:ff:ff:ff:ff ARP who-has 10.0.0.2 tell 10.0.0.1`)
  const rep = arp(ARP_OP_REPLY)
  assert.equal(describeFrame(rep, 0, rep.length), `${B} > ${A} ARP reply 10.0.0.2 is-at ${B}`)
})

test('VLAN tags are listed outermost first', () => {
  const req = arp(ARP_OP_REQUEST)
  const tagged = concat(req.subarray(0, 12), hex('88a8 00c8  8100 0064'), req.subarray(12))
  assert.equal(describeFrame(tagged, 0, tagged.length),
    `${B} > ff:ff:ff:ff:ff:ff vlan 200 vlan 100 ARP who-has 10.0.0.2 tell 10.0.0.1`)
})

test('IPv6 neighbour solicitation', () => {
  const f = hex(`
    33 33 ff 00 00 02  02 00 00 00 00 01  86 dd               # Ethernet, IPv6
    60 00 00 00  00 08 3a ff                                 # payload 8, ICMPv6, hop limit 255
    fe 80 00 00 00 00 00 00 02 00 00 ff fe 00 00 01          # src fe80::200:ff:fe00:1
    ff 02 00 00 00 00 00 00 00 00 00 01 ff 00 00 02          # dst ff02::1:ff00:2
    87 00 00 00  00 00 00 00                                 # ICMPv6 135
  `)
  assert.equal(describeFrame(f, 0, f.length),
    `${A} > 33:33:ff:00:00:02 IPv6 fe80::200:ff:fe00:1 > ff02::1:ff00:2 ICMPv6 neighbor solicitation`)
})

test('malformed layers and unknown EtherTypes are named, never thrown', () => {
  assert.equal(describeFrame(hex('01 02 03 04 05'), 0, 5), 'Ethernet malformed (Truncated) len 5')
  const bad = ip4(PROTO_TCP, tcp(TCP_SYN, 0))
  bad[17] = 200 // total length 200 > what we have
  assert.equal(describeFrame(bad, 0, bad.length), `${A} > ${B} IPv4 malformed (BadTotalLength)`)
  const short = ip4(PROTO_TCP, hex('04 d2 00 50 00 00'))
  assert.equal(describeFrame(short, 0, short.length), `${A} > ${B} IPv4 10.0.0.1 > 10.0.0.2 TCP malformed (Truncated)`)
  const lldp = hex('01 80 c2 00 00 0e  02 00 00 00 00 01  88 cc  02 07 04')
  assert.equal(describeFrame(lldp, 0, lldp.length), `${A} > 01:80:c2:00:00:0e ethertype 0x88cc len 3`)
  const rng = mulberry32(99)
  for (let i = 0; i < 5000; i++) {
    const b = randomBytes(rng, below(rng, 120))
    if (b.length > 14 && (i & 1) === 0) { b[12] = 0x08; b[13] = i & 2 ? 0x00 : 0x06 }
    assert.equal(typeof describeFrame(b, 0, b.length), 'string')
  }
})

test('ipv6Format follows RFC 5952', () => {
  const cases: [string, string][] = [
    ['20010db8000000000000000000000001', '2001:db8::1'],
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'], // §4.2.2: one zero group stays
    ['20010000000000010000000000000001', '2001:0:0:1::1'], // §4.2.3: the longest run
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'], // §4.2.3: the first of equal runs
    ['fe800000000000000000000000000000', 'fe80::'],
    ['ff0200000000000000000001ff000002', 'ff02::1:ff00:2'],
  ]
  for (const [bytes, text] of cases) assert.equal(ipv6Format(hex(bytes), 0), text)
})

test('tcpFlagsText uses tcpdump letters and order', () => {
  assert.equal(tcpFlagsText(0), 'none')
  assert.equal(tcpFlagsText(TCP_ACK), '.')
  assert.equal(tcpFlagsText(TCP_SYN | TCP_ACK), 'S.')
  assert.equal(tcpFlagsText(TCP_FIN | TCP_ACK), 'F.')
  assert.equal(tcpFlagsText(TCP_RST), 'R')
  assert.equal(tcpFlagsText(TCP_FIN | TCP_SYN | TCP_RST | TCP_PSH | TCP_ACK | TCP_URG | TCP_ECE | TCP_CWR), 'FSRP.UEW')
})

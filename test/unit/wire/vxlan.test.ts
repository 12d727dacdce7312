import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  VXLAN_FLAG_I, VXLAN_HLEN, VXLAN_OFF_FLAGS, VXLAN_OFF_VNI, VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6,
  VXLAN_PORT_IANA, VXLAN_PORT_LINUX, VXLAN_VNI_MAX, vxlanCheck, vxlanVni, vxlanWrite,
} from '../../../src/wire/vxlan'
import { ETHERTYPE_IPV4, ETH_HLEN, ethWriteHeader } from '../../../src/wire/ethernet'
import { IPV4_HLEN_MIN, PROTO_UDP, ipv4CheckWithChecksum, ipv4WriteHeader } from '../../../src/wire/ipv4'
import { UDP_HLEN, udpCheck, udpWriteHeader } from '../../../src/wire/udp'
import { Malformed } from '../../../src/wire/malformed'
import { concat, filled, hex, toHex } from './bytes'
import { fuzzCheck, mulberry32 } from './fuzz'

// RFC 7348 §5, VXLAN header for VNI 42.
const VXLAN_42 = hex(`
  08           # flags: I set, R bits 0
  00 00 00     # reserved (24 bits)
  00 00 2a     # VNI 42
  00           # reserved (8 bits)
`)

test('layout, ports and overheads (RFC 7348 §5)', () => {
  assert.deepEqual([VXLAN_OFF_FLAGS, VXLAN_OFF_VNI, VXLAN_HLEN, VXLAN_FLAG_I, VXLAN_VNI_MAX], [0, 4, 8, 0x08, 0xffffff])
  assert.deepEqual([VXLAN_PORT_IANA, VXLAN_PORT_LINUX], [4789, 8472])
  assert.equal(VXLAN_OVERHEAD_V4, 14 + 20 + 8 + 8)
  assert.equal(VXLAN_OVERHEAD_V6, 14 + 40 + 8 + 8)
})

test('reads the VNI', () => {
  assert.equal(vxlanCheck(VXLAN_42, 0, 8), VXLAN_HLEN)
  assert.equal(vxlanVni(VXLAN_42, 0), 42)
  assert.equal(vxlanVni(hex('08000000 ffffff00'), 0), 0xffffff) // 24 bits, unsigned
  assert.equal(vxlanVni(hex('08000000 123456ff'), 0), 0x123456) // low reserved byte is not VNI
})

test('reserved bits are ignored on receipt (RFC 7348 §5), only I matters', () => {
  const noisy = hex(`
    ff           # every flag bit set, I included
    ab cd ef     # reserved, nonzero
    00 00 2a     # VNI 42
    99           # reserved, nonzero
  `)
  assert.equal(vxlanCheck(noisy, 0, 8), VXLAN_HLEN)
  assert.equal(vxlanVni(noisy, 0), 42)
})

test('Malformed.VxlanNoIFlag: I clear, whatever else is set', () => {
  for (const flags of [0x00, 0xf7, 0x80, 0x01]) {
    const h = VXLAN_42.slice()
    h[0] = flags
    assert.equal(vxlanCheck(h, 0, 8), Malformed.VxlanNoIFlag, flags.toString(16))
  }
})

test('Malformed.Truncated: fewer than 8 bytes, or a bad offset', () => {
  assert.equal(vxlanCheck(VXLAN_42, 0, 7), Malformed.Truncated)
  assert.equal(vxlanCheck(VXLAN_42, 1, 8), Malformed.Truncated) // 7 left
  assert.equal(vxlanCheck(VXLAN_42, -1, 8), Malformed.Truncated)
})

test('vxlanWrite sets all 8 bytes, reserved ones zero, and nothing else', () => {
  const buf = filled(12)
  assert.equal(vxlanWrite(buf, 2, 42), VXLAN_HLEN)
  assert.equal(toHex(buf), toHex(concat(hex('a5 a5'), VXLAN_42, hex('a5 a5'))))
  const max = filled(8)
  vxlanWrite(max, 0, 0xffffff)
  assert.equal(toHex(max), '08 00 00 00 ff ff ff 00')
  const wide = filled(8)
  vxlanWrite(wide, 0, 0x7f123456) // only 24 bits fit
  assert.equal(toHex(wide), '08 00 00 00 12 34 56 00')
})

test('round-trip: random VNIs', () => {
  const rng = mulberry32(7348)
  const buf = filled(8)
  for (let i = 0; i < 5000; i++) {
    const vni = rng() & VXLAN_VNI_MAX
    vxlanWrite(buf, 0, vni)
    assert.equal(vxlanCheck(buf, 0, 8), VXLAN_HLEN)
    assert.equal(vxlanVni(buf, 0), vni)
  }
})

test('an outer header stack written into headroom is exactly VXLAN_OVERHEAD_V4 bytes', () => {
  const inner = hex(`
    02 00 00 00 00 02  02 00 00 00 00 01  08 06   # inner Ethernet, ARP
    00 01 08 00 06 04 00 01                       # ARP request ...
  `)
  const buf = filled(VXLAN_OVERHEAD_V4 + inner.length)
  buf.set(inner, VXLAN_OVERHEAD_V4)
  const ip = ETH_HLEN
  const udp = ip + IPV4_HLEN_MIN
  const vx = udp + UDP_HLEN
  ethWriteHeader(buf, 0, 0x0200, 0x0000000b, 0x0200, 0x0000000a, ETHERTYPE_IPV4)
  ipv4WriteHeader(buf, ip, buf.length - ip, 7, true, 64, PROTO_UDP, 0xc0a80101, 0xc0a80102)
  udpWriteHeader(buf, udp, 49152, VXLAN_PORT_IANA, buf.length - udp, 0)
  vxlanWrite(buf, vx, 42)
  assert.equal(vx + VXLAN_HLEN, VXLAN_OVERHEAD_V4)
  assert.equal(toHex(buf, 0, VXLAN_OVERHEAD_V4), toHex(hex(`
    02 00 00 00 00 0b  02 00 00 00 00 0a  08 00   # outer Ethernet, IPv4
    45 00 00 3a  00 07 40 00  40 11 b7 58         # IPv4: len 58, id 7, DF, TTL 64, UDP, checksum (Python)
    c0 a8 01 01  c0 a8 01 02                      # 192.168.1.1 > 192.168.1.2
    c0 00 12 b5  00 26 00 00                      # UDP 49152 > 4789, len 38, no checksum
    08 00 00 00  00 00 2a 00                      # VXLAN VNI 42
  `)))
  assert.equal(ipv4CheckWithChecksum(buf, ip, buf.length - ip), IPV4_HLEN_MIN)
  assert.equal(udpCheck(buf, udp, buf.length - udp), UDP_HLEN)
  assert.equal(vxlanCheck(buf, vx, buf.length - vx), VXLAN_HLEN)
  assert.equal(toHex(buf, VXLAN_OVERHEAD_V4), toHex(inner))
})

test('property: vxlanCheck never throws, never exceeds len, never reads outside the window', () => {
  const accepted = fuzzCheck(vxlanCheck, [VXLAN_42, concat(VXLAN_42, hex('0200000000020200000000010800'))], 0x4789)
  assert.ok(accepted > 1000, `only ${accepted} accepted`)
})

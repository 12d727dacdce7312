import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  ETH_ALEN, ETH_HLEN, ETH_HLEN_QINQ, ETH_HLEN_VLAN, ETH_OFF_DST, ETH_OFF_SRC, ETH_OFF_TYPE,
  ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN, VLAN_TAG_LEN,
  ethCheck, ethType, ethTypeAfterTags, ethVlanVid, ethWriteHeader, macCopy, macEquals, macHi, macIs,
  macIsBroadcast, macIsMulticast, macIsZero, macLo, macWrite, setEthType,
} from '../../../src/wire/ethernet'
import { Malformed } from '../../../src/wire/malformed'
import { macFormat, macParse } from '../../../src/wire/addr'
import { embed, filled, hex } from './bytes'
import { fuzzCheck, mulberry32 } from './fuzz'

const UNTAGGED = hex(`
  02 00 00 00 00 02   # dst 02:00:00:00:00:02
  02 00 00 00 00 01   # src 02:00:00:00:00:01
  08 00               # EtherType IPv4
  45 00               # start of the payload
`)

const DOT1Q = hex(`
  ff ff ff ff ff ff   # dst broadcast
  0a 0b 0c 0d 0e 0f   # src 0a:0b:0c:0d:0e:0f
  81 00               # TPID 802.1Q
  20 64               # TCI: PCP 1, DEI 0, VID 100
  08 06               # EtherType ARP
`)

const QINQ = hex(`
  01 00 5e 00 00 fb   # dst 01:00:5e:00:00:fb (IPv4 multicast)
  fe dc ba 98 76 54   # src fe:dc:ba:98:76:54
  88 a8               # TPID 802.1ad S-tag
  00 c8               # TCI: VID 200
  81 00               # TPID 802.1Q C-tag
  e0 64               # TCI: PCP 7, VID 100
  86 dd               # EtherType IPv6
`)

test('layout constants follow IEEE 802.3 / 802.1Q', () => {
  assert.deepEqual([ETH_OFF_DST, ETH_OFF_SRC, ETH_OFF_TYPE, ETH_HLEN, ETH_ALEN], [0, 6, 12, 14, 6])
  assert.deepEqual([VLAN_TAG_LEN, ETH_HLEN_VLAN, ETH_HLEN_QINQ], [4, 18, 22])
  assert.deepEqual([ETHERTYPE_IPV4, ETHERTYPE_ARP, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETHERTYPE_QINQ],
    [0x0800, 0x0806, 0x86dd, 0x8100, 0x88a8])
})

test('reads every field of an untagged frame', () => {
  assert.equal(ethCheck(UNTAGGED, 0, UNTAGGED.length), 14)
  assert.equal(ethType(UNTAGGED, 0), 0x0800)
  assert.equal(ethTypeAfterTags(UNTAGGED, 0, 14), 0x0800)
  assert.equal(macHi(UNTAGGED, ETH_OFF_DST), 0x0200)
  assert.equal(macLo(UNTAGGED, ETH_OFF_DST), 0x00000002)
  assert.equal(macHi(UNTAGGED, ETH_OFF_SRC), 0x0200)
  assert.equal(macLo(UNTAGGED, ETH_OFF_SRC), 0x00000001)
  assert.equal(macIsMulticast(UNTAGGED, ETH_OFF_DST), false)
  assert.equal(macIsBroadcast(UNTAGGED, ETH_OFF_DST), false)
})

test('one 802.1Q tag: hlen 18, VID and inner EtherType', () => {
  assert.equal(ethCheck(DOT1Q, 0, DOT1Q.length), 18)
  assert.equal(ethType(DOT1Q, 0), ETHERTYPE_VLAN)
  assert.equal(ethVlanVid(DOT1Q, 0), 100)
  assert.equal(ethTypeAfterTags(DOT1Q, 0, 18), ETHERTYPE_ARP)
  assert.equal(macHi(DOT1Q, ETH_OFF_SRC), 0x0a0b)
  assert.equal(macLo(DOT1Q, ETH_OFF_SRC), 0x0c0d0e0f)
})

test('QinQ (802.1ad + 802.1Q): hlen 22, outer VID, inner EtherType', () => {
  assert.equal(ethCheck(QINQ, 0, QINQ.length), 22)
  assert.equal(ethType(QINQ, 0), ETHERTYPE_QINQ)
  assert.equal(ethVlanVid(QINQ, 0), 200)
  assert.equal(ethTypeAfterTags(QINQ, 0, 22), ETHERTYPE_IPV6)
  // The high bytes decide signedness: lo must still be unsigned.
  assert.equal(macHi(QINQ, ETH_OFF_SRC), 0xfedc)
  assert.equal(macLo(QINQ, ETH_OFF_SRC), 0xba987654)
})

test('double 802.1Q is two tags too; a third tag is passed through as the EtherType', () => {
  const double = hex('000000000002 000000000001  8100 0001  8100 0002  0800')
  assert.equal(ethCheck(double, 0, double.length), 22)
  assert.equal(ethTypeAfterTags(double, 0, 22), 0x0800)
  const triple = hex('000000000002 000000000001  88a8 0001  8100 0002  8100 0003  0800')
  assert.equal(ethCheck(triple, 0, triple.length), 22)
  assert.equal(ethTypeAfterTags(triple, 0, 22), ETHERTYPE_VLAN)
})

test('an 802.3 length field (< 0x0600) is not malformed', () => {
  const llc = hex('000000000002 000000000001 0026 4242')
  assert.equal(ethCheck(llc, 0, llc.length), 14)
  assert.equal(ethTypeAfterTags(llc, 0, 14), 0x0026)
})

test('Malformed.Truncated: short untagged, tagged and QinQ headers, bad offset', () => {
  assert.equal(ethCheck(UNTAGGED, 0, 13), Malformed.Truncated)
  assert.equal(ethCheck(UNTAGGED, 0, 0), Malformed.Truncated)
  assert.equal(ethCheck(DOT1Q, 0, 17), Malformed.Truncated)
  assert.equal(ethCheck(QINQ, 0, 21), Malformed.Truncated)
  assert.equal(ethCheck(QINQ, 0, 17), Malformed.Truncated)
  assert.equal(ethCheck(UNTAGGED, -1, 16), Malformed.Truncated)
  // len larger than the buffer is clamped to what the buffer holds.
  assert.equal(ethCheck(DOT1Q.subarray(0, 17), 0, 100), Malformed.Truncated)
  assert.equal(ethCheck(UNTAGGED, 4, 100), Malformed.Truncated)
})

test('checks at an offset inside a larger buffer', () => {
  const buf = embed(DOT1Q, 7, DOT1Q.length + 20)
  assert.equal(ethCheck(buf, 7, DOT1Q.length), 18)
  assert.equal(ethVlanVid(buf, 7), 100)
  assert.equal(ethTypeAfterTags(buf, 7, 18), ETHERTYPE_ARP)
})

test('group bit: multicast includes broadcast; the locally administered bit is not it', () => {
  const cases: [string, boolean, boolean][] = [
    ['ff:ff:ff:ff:ff:ff', true, true],
    ['01:00:5e:00:00:01', true, false], // IPv4 multicast (RFC 1112 §6.4)
    ['33:33:00:00:00:01', true, false], // IPv6 multicast (RFC 2464 §7)
    ['02:00:00:00:00:01', false, false], // locally administered unicast
    ['00:00:00:00:00:00', false, false],
    ['ff:ff:ff:ff:ff:fe', true, false],
  ]
  for (const [text, multi, bcast] of cases) {
    const m = macParse(text)!
    const b = new Uint8Array(6)
    macWrite(b, 0, m.hi, m.lo)
    assert.equal(macIsMulticast(b, 0), multi, text)
    assert.equal(macIsBroadcast(b, 0), bcast, text)
  }
})

test('macEquals, macIs and macIsZero compare in place', () => {
  const buf = hex('02 00 00 00 00 01  02 00 00 00 00 01  02 00 00 00 00 02  00 00 00 00 00 00')
  assert.equal(macEquals(buf, 0, buf, 6), true)
  assert.equal(macEquals(buf, 0, buf, 12), false)
  for (let i = 0; i < 6; i++) {
    const other = buf.slice(0, 6)
    other[i] ^= 0x80
    assert.equal(macEquals(buf, 0, other, 0), false, `byte ${i}`)
  }
  assert.equal(macIs(buf, 12, 0x0200, 0x00000002), true)
  assert.equal(macIs(buf, 12, 0x0200, 0x00000001), false)
  assert.equal(macIs(buf, 12, 0x0201, 0x00000002), false)
  assert.equal(macIsZero(buf, 18), true)
  assert.equal(macIsZero(buf, 12), false)
})

test('ethWriteHeader sets all 14 bytes and nothing else', () => {
  const buf = filled(14 + 6)
  const dst = macParse('02:00:00:00:00:02')!
  const src = macParse('02:00:00:00:00:01')!
  assert.equal(ethWriteHeader(buf, 3, dst.hi, dst.lo, src.hi, src.lo, ETHERTYPE_IPV4), ETH_HLEN)
  assert.deepEqual(buf, hex(`
    a5 a5 a5            # untouched before
    02 00 00 00 00 02   # dst
    02 00 00 00 00 01   # src
    08 00               # EtherType IPv4
    a5 a5 a5            # untouched after
  `))
})

test('macWrite, macCopy and setEthType set exactly their bytes', () => {
  const buf = filled(10)
  macWrite(buf, 2, 0xfedc, 0xba987654)
  assert.deepEqual(buf, hex('a5 a5 fe dc ba 98 76 54 a5 a5'))
  const dst = filled(8)
  macCopy(dst, 1, buf, 2)
  assert.deepEqual(dst, hex('a5 fe dc ba 98 76 54 a5'))
  const frame = filled(16)
  setEthType(frame, 1, ETHERTYPE_ARP)
  assert.deepEqual(frame, hex('a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 08 06 a5'))
})

test('round-trip: random MACs and EtherTypes written then read back', () => {
  const rng = mulberry32(14)
  const buf = filled(14)
  for (let i = 0; i < 2000; i++) {
    const dHi = rng() & 0xffff; const dLo = rng(); const sHi = rng() & 0xffff; const sLo = rng()
    let type = rng() & 0xffff
    if (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ) type = ETHERTYPE_IPV4
    ethWriteHeader(buf, 0, dHi, dLo, sHi, sLo, type)
    assert.equal(ethCheck(buf, 0, 14), 14)
    assert.equal(macHi(buf, ETH_OFF_DST), dHi)
    assert.equal(macLo(buf, ETH_OFF_DST), dLo)
    assert.equal(macHi(buf, ETH_OFF_SRC), sHi)
    assert.equal(macLo(buf, ETH_OFF_SRC), sLo)
    assert.equal(ethType(buf, 0), type)
    assert.equal(macFormat(macHi(buf, 0), macLo(buf, 0)), macFormat(dHi, dLo))
  }
})

test('property: ethCheck never throws, never exceeds len, never reads outside the window', () => {
  const accepted = fuzzCheck(ethCheck, [UNTAGGED, DOT1Q, QINQ], 0xe7)
  assert.ok(accepted > 1000, `only ${accepted} accepted`)
})

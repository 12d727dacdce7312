/**
 * The virtio-net header codec (struct virtio_net_hdr, include/uapi/linux/virtio_net.h)
 * and completion of a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_HLEN, vnetCompleteChecksum, vnetCsumOffset, vnetCsumStart, vnetFlags,
  vnetGsoSize, vnetGsoType, vnetHdrLen, vnetWrite, vnetWriteNone,
} from '../../../src/wire/vnet'
import { csumAdd, csumFold, csumPseudoV4 } from '../../../src/wire/checksum'
import { hex } from './bytes'
import { get16, l4ChecksumOk, pattern, tcpFrame, udpFrame, view } from './frames'

// flags, gso_type, then hdr_len, gso_size, csum_start, csum_offset as little-endian u16.
const HDR = hex(`
  01           # flags: NEEDS_CSUM
  01           # gso_type: TCPV4
  42 00        # hdr_len 66
  a8 05        # gso_size 1448
  22 00        # csum_start 34
  10 00        # csum_offset 16
`)

test('vnet header: every field read from known bytes', () => {
  const b = new Uint8Array(3 + VNET_HLEN)
  b.set(HDR, 3)
  assert.deepEqual(
    [vnetFlags(b, 3), vnetGsoType(b, 3), vnetHdrLen(b, 3), vnetGsoSize(b, 3), vnetCsumStart(b, 3), vnetCsumOffset(b, 3)],
    [1, 1, 66, 1448, 34, 16],
  )
})

test('vnet header: vnetWrite sets all 10 bytes, vnetWriteNone zeroes them', () => {
  const b = new Uint8Array(VNET_HLEN + 4).fill(0xa5)
  vnetWrite(b, 2, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, 66, 1448, 34, 16)
  assert.deepEqual(b, Uint8Array.of(0xa5, 0xa5, ...HDR, 0xa5, 0xa5))
  vnetWriteNone(b, 2)
  assert.deepEqual(b, Uint8Array.of(0xa5, 0xa5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa5, 0xa5))
})

test('vnetCompleteChecksum turns a partial TCP and UDP checksum into a full one', () => {
  for (const [full, partial, off] of [
    [tcpFrame({ payload: pattern(1001) }), tcpFrame({ payload: pattern(1001), csum: 'partial' }), 16],
    [tcpFrame({ v6: true, payload: pattern(77) }), tcpFrame({ v6: true, payload: pattern(77), csum: 'partial' }), 16],
    [udpFrame({ payload: pattern(333) }), udpFrame({ payload: pattern(333), csum: 'partial' }), 6],
  ] as const) {
    const v = view(partial)
    assert.ok(!l4ChecksumOk(partial))
    const buf = new Uint8Array(partial.length + 10).fill(0xa5)
    buf.set(partial, 5)
    assert.equal(vnetCompleteChecksum(buf, 5, partial.length, v.l4Off, off), true)
    assert.deepEqual(buf.subarray(5, 5 + partial.length), full)
    assert.ok(buf.subarray(0, 5).every((x) => x === 0xa5) && buf.subarray(5 + partial.length).every((x) => x === 0xa5))
  }
})

test('vnetCompleteChecksum refuses offsets outside the frame and writes nothing', () => {
  const f = tcpFrame({ payload: pattern(10), csum: 'partial' })
  for (const [start, off] of [[f.length, 0], [f.length - 1, 0], [34, f.length - 34 - 1], [34, 60000]]) {
    const c = f.slice()
    assert.equal(vnetCompleteChecksum(c, 0, c.length, start, off), false, `start ${start} offset ${off}`)
    assert.deepEqual(c, f)
  }
  // Inside the frame but not the L4 checksum: refused, so a pod cannot aim the
  // write at its IPv4 source address (offset 26) after port security checked it.
  for (const [start, off] of [[34, f.length - 34 - 2], [14, 12], [26, 0], [34, 6]]) {
    const c = f.slice()
    assert.equal(vnetCompleteChecksum(c, 0, c.length, start, off), false, `start ${start} offset ${off}`)
    assert.deepEqual(c, f)
  }
  // The TCP checksum field itself is completed.
  const c = f.slice()
  assert.equal(vnetCompleteChecksum(c, 0, c.length, 34, 16), true)
  assert.notEqual(get16(c, 34 + 16), get16(f, 34 + 16))
})

test('vnetCompleteChecksum stores a computed 0 as 0xffff (UDP: 0 would mean "no checksum")', () => {
  // Choose the last two payload bytes so that the datagram sums to 0xffff: its checksum computes to 0.
  const payload = pattern(64)
  payload[62] = 0
  payload[63] = 0
  const probe = udpFrame({ payload, csum: 0 })
  const sum = csumFold(csumAdd(probe, 34, probe.length - 34, csumPseudoV4(0x0a000001, 0x0a000002, 17, probe.length - 34)))
  const w = 0xffff - sum
  payload[62] = w >>> 8
  payload[63] = w & 255
  const f = udpFrame({ payload, csum: 'partial' })
  assert.equal(vnetCompleteChecksum(f, 0, f.length, 34, 6), true)
  assert.equal(get16(f, 34 + 6), 0xffff)
  assert.ok(l4ChecksumOk(f))
})

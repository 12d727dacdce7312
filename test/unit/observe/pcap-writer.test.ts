import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  LINKTYPE_ETHERNET, PCAP_FILE_HLEN, PCAP_MAGIC_USEC, PCAP_REC_HLEN, PcapFormatError, PcapFramer, PcapRecord,
  pcapFileHeader, pcapTimestamp, pcapWriteFileHeader, pcapWriteRecordHeader,
} from '../../../src/observe/pcap'
import { filled, hex, toHex } from '../wire/bytes'

// pcap-savefile(5): little-endian, microsecond magic, version 2.4, snaplen 262144, Ethernet.
const FILE_HEADER = hex(`
  d4 c3 b2 a1   # magic 0xa1b2c3d4, little-endian: microsecond timestamps
  02 00         # version major 2
  04 00         # version minor 4
  00 00 00 00   # thiszone 0 (UTC)
  00 00 00 00   # sigfigs 0
  00 00 04 00   # snaplen 262144
  01 00 00 00   # linktype 1 (Ethernet)
`)

// A record for a 4-byte packet at 1700000000.123456 s, 4 of 60 bytes stored.
const RECORD = hex(`
  00 f1 53 65   # ts_sec 1700000000
  40 e2 01 00   # ts_usec 123456
  04 00 00 00   # incl_len 4
  3c 00 00 00   # orig_len 60
  de ad be ef   # packet bytes
`)

test('file header: every byte, over a buffer of 0xa5', () => {
  const buf = filled(PCAP_FILE_HLEN + 2)
  assert.equal(pcapWriteFileHeader(buf, 1, 262144, LINKTYPE_ETHERNET), PCAP_FILE_HLEN)
  assert.equal(toHex(buf, 1, PCAP_FILE_HLEN), toHex(FILE_HEADER))
  assert.deepEqual([buf[0], buf[PCAP_FILE_HLEN + 1]], [0xa5, 0xa5], 'writes nothing outside its 24 bytes')
  assert.equal(toHex(pcapFileHeader(262144, LINKTYPE_ETHERNET)), toHex(FILE_HEADER))
  assert.equal(PCAP_MAGIC_USEC, 0xa1b2c3d4)
})

test('record header: every byte, then the packet', () => {
  const buf = filled(PCAP_REC_HLEN + 4)
  assert.equal(pcapWriteRecordHeader(buf, 0, 1700000000, 123456, 4, 60), PCAP_REC_HLEN)
  buf.set([0xde, 0xad, 0xbe, 0xef], PCAP_REC_HLEN)
  assert.equal(toHex(buf), toHex(RECORD))
})

test('timestamps: milliseconds to seconds and microseconds, rounding never gives 1000000 us', () => {
  const ts = new Uint32Array(2)
  const rows: { ms: number; want: [number, number] }[] = [
    { ms: 1700000000123.456, want: [1700000000, 123456] },
    { ms: 1700000000000, want: [1700000000, 0] },
    { ms: 1700000000999.9996, want: [1700000001, 0] }, // rounds up into the next second
    { ms: 0.001, want: [0, 1] },
  ]
  for (const r of rows) {
    pcapTimestamp(r.ms, ts)
    assert.deepEqual([ts[0], ts[1]], r.want, `${r.ms} ms`)
  }
})

test('framer: passes whole records only, whatever the chunking', () => {
  const stream = Buffer.concat([Buffer.from(FILE_HEADER), Buffer.from(RECORD), Buffer.from(RECORD)])
  for (let cut1 = 0; cut1 <= stream.length; cut1++) {
    for (const cut2 of [cut1, Math.min(stream.length, cut1 + 7), stream.length]) {
      const f = new PcapFramer()
      const recs: PcapRecord[] = []
      const out = [stream.subarray(0, cut1), stream.subarray(cut1, cut2), stream.subarray(cut2)]
        .map((c) => Buffer.from(f.push(Buffer.from(c), (r) => recs.push({ ...r, data: Buffer.from(r.data) }))))
      // Each output ends on a record boundary: the bytes so far always form a valid file.
      let sofar = 0
      for (const o of out) {
        sofar += o.length
        assert.ok([0, PCAP_FILE_HLEN, PCAP_FILE_HLEN + RECORD.length, stream.length].includes(sofar), `cut ${cut1}/${cut2}: ${sofar} bytes out`)
      }
      assert.equal(sofar, stream.length)
      assert.equal(f.records, 2)
      assert.equal(f.pendingBytes, 0)
      assert.deepEqual(recs.map((r) => [r.tsSec, r.tsFrac, r.origLen, toHex(r.data)]), [
        [1700000000, 123456, 60, 'de ad be ef'], [1700000000, 123456, 60, 'de ad be ef'],
      ])
      assert.deepEqual(f.header, { littleEndian: true, nanoseconds: false, snaplen: 262144, linktype: 1 })
    }
  }
})

test('framer: holds back a partial record', () => {
  const f = new PcapFramer()
  const out = f.push(Buffer.concat([Buffer.from(FILE_HEADER), Buffer.from(RECORD.subarray(0, 18))]))
  assert.equal(out.length, PCAP_FILE_HLEN)
  assert.equal(f.pendingBytes, 18)
  assert.equal(f.records, 0)
})

test('framer: reads big-endian and nanosecond files, refuses what is not pcap', () => {
  const be = hex('a1 b2 3c 4d 0002 0004 00000000 00000000 0000ffff 00000001')
  const f = new PcapFramer()
  f.push(Buffer.from(be))
  assert.deepEqual(f.header, { littleEndian: false, nanoseconds: true, snaplen: 65535, linktype: 1 })
  assert.throws(() => new PcapFramer().push(Buffer.from(filled(24, 0))), PcapFormatError)
})

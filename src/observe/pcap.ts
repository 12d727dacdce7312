/**
 * The classic libpcap file format (https://www.tcpdump.org/manpages/pcap-savefile.5.html,
 * draft-ietf-opsawg-pcap): a 24-byte file header, then one 16-byte record header
 * before each packet.
 *
 *   file header                         record header
 *   0  magic          u32               0  ts_sec    u32  seconds since the epoch
 *   4  version major  u16  = 2          4  ts_usec   u32  microseconds in that second
 *   6  version minor  u16  = 4          8  incl_len  u32  bytes stored (<= snaplen)
 *   8  thiszone       i32  = 0         12  orig_len  u32  bytes on the wire
 *  12  sigfigs        u32  = 0         16  packet bytes (incl_len)
 *  16  snaplen        u32
 *  20  linktype       u32  (1 = Ethernet)
 *
 * We write little-endian with the MICROSECOND magic 0xa1b2c3d4 (readers detect
 * the byte order from the magic). Why microseconds: our timestamps come from
 * performance.timeOrigin + performance.now(), a double in milliseconds whose
 * resolution near today's epoch is about a quarter of a microsecond, so the
 * nanosecond format (0xa1b23c4d) would only record noise; and every tool reads
 * the microsecond format, including old tcpdumps and Python's dpkt.
 *
 * The reader (PcapFramer) splits a byte stream into whole records, so whoever
 * writes a file from a stream can stop at any moment and leave a valid file.
 */
export const PCAP_MAGIC_USEC = 0xa1b2c3d4
/** The nanosecond variant, recognised by the reader only. */
export const PCAP_MAGIC_NSEC = 0xa1b23c4d
export const PCAP_VERSION_MAJOR = 2
export const PCAP_VERSION_MINOR = 4

export const PCAP_OFF_MAGIC = 0
export const PCAP_OFF_VERSION_MAJOR = PCAP_OFF_MAGIC + 4
export const PCAP_OFF_VERSION_MINOR = PCAP_OFF_VERSION_MAJOR + 2
export const PCAP_OFF_THISZONE = PCAP_OFF_VERSION_MINOR + 2
export const PCAP_OFF_SIGFIGS = PCAP_OFF_THISZONE + 4
export const PCAP_OFF_SNAPLEN = PCAP_OFF_SIGFIGS + 4
export const PCAP_OFF_LINKTYPE = PCAP_OFF_SNAPLEN + 4
export const PCAP_FILE_HLEN = PCAP_OFF_LINKTYPE + 4

export const PCAP_REC_OFF_TS_SEC = 0
export const PCAP_REC_OFF_TS_FRAC = PCAP_REC_OFF_TS_SEC + 4
export const PCAP_REC_OFF_INCL_LEN = PCAP_REC_OFF_TS_FRAC + 4
export const PCAP_REC_OFF_ORIG_LEN = PCAP_REC_OFF_INCL_LEN + 4
export const PCAP_REC_HLEN = PCAP_REC_OFF_ORIG_LEN + 4

/** LINKTYPE_ETHERNET (https://www.tcpdump.org/linktypes.html). */
export const LINKTYPE_ETHERNET = 1
/** LINKTYPE_RAW: raw IPv4/IPv6, no link header. */
export const LINKTYPE_RAW = 101
/** LINKTYPE_LINUX_SLL: Linux "cooked" capture, what libpcap's "any" device gives. */
export const LINKTYPE_LINUX_SLL = 113

/** tcpdump's default snapshot length since 4.99: whole packets, even 64 KiB TSO super-frames. */
export const PCAP_DEFAULT_SNAPLEN = 262144

function putLe32(buf: Uint8Array, o: number, v: number): void {
  buf[o] = v & 255
  buf[o + 1] = (v >>> 8) & 255
  buf[o + 2] = (v >>> 16) & 255
  buf[o + 3] = (v >>> 24) & 255
}

function putLe16(buf: Uint8Array, o: number, v: number): void {
  buf[o] = v & 255
  buf[o + 1] = (v >>> 8) & 255
}

function le32(buf: Uint8Array, o: number): number {
  return (buf[o] | (buf[o + 1] << 8) | (buf[o + 2] << 16) | (buf[o + 3] << 24)) >>> 0
}

function be32(buf: Uint8Array, o: number): number {
  return ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) >>> 0
}

/** Writes the 24-byte file header (every byte); returns PCAP_FILE_HLEN. */
export function pcapWriteFileHeader(buf: Uint8Array, off: number, snaplen: number, linktype: number): number {
  putLe32(buf, off + PCAP_OFF_MAGIC, PCAP_MAGIC_USEC)
  putLe16(buf, off + PCAP_OFF_VERSION_MAJOR, PCAP_VERSION_MAJOR)
  putLe16(buf, off + PCAP_OFF_VERSION_MINOR, PCAP_VERSION_MINOR)
  putLe32(buf, off + PCAP_OFF_THISZONE, 0)
  putLe32(buf, off + PCAP_OFF_SIGFIGS, 0)
  putLe32(buf, off + PCAP_OFF_SNAPLEN, snaplen)
  putLe32(buf, off + PCAP_OFF_LINKTYPE, linktype)
  return PCAP_FILE_HLEN
}

/** A fresh file header as a Buffer (for the start of a stream). */
export function pcapFileHeader(snaplen: number, linktype: number): Buffer {
  const b = Buffer.alloc(PCAP_FILE_HLEN)
  pcapWriteFileHeader(b, 0, snaplen, linktype)
  return b
}

/** Writes a 16-byte record header; returns PCAP_REC_HLEN. The packet bytes follow it. */
export function pcapWriteRecordHeader(buf: Uint8Array, off: number, tsSec: number, tsUsec: number, inclLen: number, origLen: number): number {
  putLe32(buf, off + PCAP_REC_OFF_TS_SEC, tsSec)
  putLe32(buf, off + PCAP_REC_OFF_TS_FRAC, tsUsec)
  putLe32(buf, off + PCAP_REC_OFF_INCL_LEN, inclLen)
  putLe32(buf, off + PCAP_REC_OFF_ORIG_LEN, origLen)
  return PCAP_REC_HLEN
}

/** Splits a wall-clock time in milliseconds (performance.timeOrigin + performance.now()) into pcap seconds and microseconds. */
export function pcapTimestamp(ms: number, out: Uint32Array): void {
  const sec = Math.floor(ms / 1000)
  let usec = Math.round((ms - sec * 1000) * 1000)
  let s = sec
  if (usec >= 1_000_000) { s++; usec -= 1_000_000 }
  out[0] = s
  out[1] = usec
}

export interface PcapFileHeader {
  littleEndian: boolean
  nanoseconds: boolean
  snaplen: number
  linktype: number
}

export interface PcapRecord {
  tsSec: number
  /** Microseconds or nanoseconds (see the file header). */
  tsFrac: number
  origLen: number
  /** The stored packet bytes (a view into the framer's buffer: copy to keep). */
  data: Buffer
}

export class PcapFormatError extends Error {
  readonly code = 'TAPESTRY_PCAP_INVALID'
}

/**
 * Splits a pcap byte stream, fed in chunks of any size, into the file header
 * and whole records. `push` returns the bytes of the whole records (and the
 * file header the first time) that the chunk completed, ready to append to a
 * file; a partial record stays inside until the rest arrives.
 */
export class PcapFramer {
  header: PcapFileHeader | null = null
  records = 0
  private pending: Buffer = Buffer.alloc(0)

  /** Feeds a chunk; calls onRecord for each record it completes; returns the whole bytes completed. */
  push(chunk: Buffer, onRecord?: (r: PcapRecord) => void): Buffer {
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    let o = 0
    if (this.header === null) {
      if (buf.length < PCAP_FILE_HLEN) { this.pending = buf; return Buffer.alloc(0) }
      this.header = parseFileHeader(buf)
      o = PCAP_FILE_HLEN
    }
    const rd = this.header.littleEndian ? le32 : be32
    for (;;) {
      if (buf.length - o < PCAP_REC_HLEN) break
      const incl = rd(buf, o + PCAP_REC_OFF_INCL_LEN)
      if (incl > Math.max(this.header.snaplen, PCAP_DEFAULT_SNAPLEN)) throw new PcapFormatError(`record ${this.records + 1} claims ${incl} bytes, more than the snapshot length ${this.header.snaplen}`)
      if (buf.length - o < PCAP_REC_HLEN + incl) break
      if (onRecord) {
        onRecord({
          tsSec: rd(buf, o + PCAP_REC_OFF_TS_SEC), tsFrac: rd(buf, o + PCAP_REC_OFF_TS_FRAC),
          origLen: rd(buf, o + PCAP_REC_OFF_ORIG_LEN), data: buf.subarray(o + PCAP_REC_HLEN, o + PCAP_REC_HLEN + incl),
        })
      }
      o += PCAP_REC_HLEN + incl
      this.records++
    }
    this.pending = Buffer.from(buf.subarray(o))
    return buf.subarray(0, o)
  }

  /** Bytes of an incomplete record held back. */
  get pendingBytes(): number {
    return this.pending.length
  }
}

function parseFileHeader(buf: Buffer): PcapFileHeader {
  const le = le32(buf, 0)
  const be = be32(buf, 0)
  let littleEndian: boolean
  let nanoseconds: boolean
  if (le === PCAP_MAGIC_USEC || le === PCAP_MAGIC_NSEC) { littleEndian = true; nanoseconds = le === PCAP_MAGIC_NSEC }
  else if (be === PCAP_MAGIC_USEC || be === PCAP_MAGIC_NSEC) { littleEndian = false; nanoseconds = be === PCAP_MAGIC_NSEC }
  else throw new PcapFormatError(`not a pcap stream (magic 0x${be.toString(16).padStart(8, '0')})`)
  const rd = littleEndian ? le32 : be32
  return { littleEndian, nanoseconds, snaplen: rd(buf, PCAP_OFF_SNAPLEN), linktype: rd(buf, PCAP_OFF_LINKTYPE) }
}

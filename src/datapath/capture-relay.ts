/**
 * Captures with datapath workers: while a capture runs, each worker's datapath
 * hook is a CaptureRelay, which copies every frame it is shown into a buffer
 * and hands the records to the main thread once per turn of its event loop
 * (a copy of their length, transferred). The main thread replays the
 * records into its capture hook (relayFrames), where the capture sessions
 * filter and record them as they do the main thread's own frames.
 *
 * Record (little-endian, 8-byte aligned):
 *   0 point u8, 1 reserved, 2 port u16, 4 vni u32, 8 frame length u32,
 *   12 addr u32, 16 udpPort u16, 18 localPort u16, 20 virtio-net header
 *   distance before the frame u16 (0: none), 22 reserved, 24 bytes copied u32,
 *   28 reserved; then the virtio-net header (if any) and the frame.
 *
 * A buffer holds at most RELAY_BUFFER_BYTES; frames past it in one turn are
 * not captured and counted (`lost`, shown per worker by `stats`).
 */
import { CaptureHook, CapturePoint } from './datapath'

export const RELAY_BUFFER_BYTES = 8 << 20
const HDR = 32

export class CaptureRelay implements CaptureHook {
  private buf: Uint8Array | null = null
  private dv: DataView | null = null
  private used = 0
  /** Frames not relayed because the turn's buffer was full. */
  lost = 0
  /** flush, made once (not a closure per turn). */
  private readonly flushSoon = (): void => this.flush()

  constructor(private readonly send: (records: Uint8Array) => void) {}

  frame(point: CapturePoint, port: number, vni: number, buf: Uint8Array, off: number, len: number,
    vnetOff: number, addr: number, udpPort: number, localPort: number): void {
    const gap = vnetOff >= 0 && vnetOff < off && off - vnetOff <= 64 ? off - vnetOff : 0
    const bytes = gap + len
    const need = HDR + ((bytes + 7) & ~7)
    if (this.buf === null) {
      this.buf = new Uint8Array(RELAY_BUFFER_BYTES)
      this.dv = new DataView(this.buf.buffer)
    }
    if (this.used === 0) setImmediate(this.flushSoon)
    if (this.used + need > this.buf.length) { this.lost++; return }
    const dv = this.dv!
    const at = this.used
    dv.setUint8(at, point)
    dv.setUint16(at + 2, port, true)
    dv.setUint32(at + 4, vni >>> 0, true)
    dv.setUint32(at + 8, len, true)
    dv.setUint32(at + 12, addr >>> 0, true)
    dv.setUint16(at + 16, udpPort, true)
    dv.setUint16(at + 18, localPort, true)
    dv.setUint16(at + 20, gap, true)
    dv.setUint32(at + 24, bytes, true)
    this.buf.set(buf.subarray(off - gap, off + len), at + HDR)
    this.used += need
  }

  /** Hands over the turn's records in a buffer of their own (sent by transfer) and reuses this one. */
  private flush(): void {
    const n = this.used
    this.used = 0
    if (this.buf !== null && n > 0) this.send(this.buf.slice(0, n))
  }
}

/** Replays a relayed buffer's records into `hook`. */
export function relayFrames(records: Uint8Array, hook: CaptureHook): void {
  const dv = new DataView(records.buffer, records.byteOffset, records.byteLength)
  for (let at = 0; at + HDR <= records.length;) {
    const gap = dv.getUint16(at + 20, true)
    const bytes = dv.getUint32(at + 24, true)
    const data = at + HDR
    if (data + bytes > records.length) return
    hook.frame(dv.getUint8(at) as CapturePoint, dv.getUint16(at + 2, true), dv.getUint32(at + 4, true), records,
      data + gap, dv.getUint32(at + 8, true), gap > 0 ? data : -1, dv.getUint32(at + 12, true), dv.getUint16(at + 16, true), dv.getUint16(at + 18, true))
    at = data + ((bytes + 7) & ~7)
  }
}

/**
 * A Batch is the unit that crosses the JS/native boundary: `slots` frames in one
 * preallocated slab, each slot `slotSize` bytes, the frame starting HEADROOM bytes
 * into its slot so that headers (VXLAN, virtio-net) can be written in front of it
 * without a copy.
 *
 *   slot i:  [ headroom (HEADROOM) | frame bytes (len[i]) ............ ]
 *            ^ i*slotSize           ^ off(i)
 *
 * A batch is allocated once when a port opens and reused for every read. Nothing
 * may keep a reference into a slot past the processing of its batch. So one batch
 * may serve every port of a thread: each read is processed to its end (and its
 * frames sent) before the loop reads anything else. The datapath does that, with
 * its batches and scratch slab in one arena (copies between them are copyWithin:
 * see wire/bytes.ts).
 */
export const HEADROOM = 64

/** Slot size for ports that carry TSO/GRO super-frames: 64 KiB frame + virtio-net header + headroom. */
export const SLOT_SUPER = 65536 + 128
/** Slot size for ports without offloads (a 9000-byte jumbo frame fits). */
export const SLOT_PLAIN = 9216 + 128
/** Default number of frames per batch. */
export const BATCH_FRAMES = 64

export class Batch {
  readonly data: Uint8Array
  readonly len: Uint32Array
  /** Per-frame metadata, 3 words a slot (UDP: source address, source port, GRO segment size). */
  readonly meta: Uint32Array
  /** Frames valid in the current round. */
  count = 0

  /** `data`: memory to use (at least slots * slotSize bytes) instead of a new slab. */
  constructor(readonly slots: number = BATCH_FRAMES, readonly slotSize: number = SLOT_PLAIN, data?: Uint8Array) {
    if (data !== undefined && data.length < slots * slotSize) throw new RangeError(`batch memory of ${data.length} bytes is smaller than ${slots} slots of ${slotSize}`)
    this.data = data !== undefined ? data.subarray(0, slots * slotSize) : new Uint8Array(slots * slotSize)
    this.len = new Uint32Array(slots)
    this.meta = new Uint32Array(slots * 3)
  }

  /** Byte offset of frame i in `data`. */
  off(i: number): number {
    return i * this.slotSize + HEADROOM
  }

  /** Largest frame a slot holds. */
  get maxFrame(): number {
    return this.slotSize - HEADROOM
  }
}

/**
 * A list of frames to transmit: offsets and lengths into some slab (usually an rx
 * batch's data). Fixed capacity, reused every round.
 */
export class TxList {
  readonly offs: Uint32Array
  readonly lens: Uint32Array
  /** 3 words per entry for UDP: destination IPv4, port, GSO segment size. */
  readonly dst: Uint32Array
  count = 0

  constructor(readonly capacity: number) {
    this.offs = new Uint32Array(capacity)
    this.lens = new Uint32Array(capacity)
    this.dst = new Uint32Array(capacity * 3)
  }

  /** Appends a frame; returns false when full (the caller drops and counts). */
  push(off: number, len: number): boolean {
    const n = this.count
    if (n === this.capacity) return false
    this.offs[n] = off
    this.lens[n] = len
    this.count = n + 1
    return true
  }

  pushTo(off: number, len: number, addr: number, port: number, gsoSize: number): boolean {
    const n = this.count
    if (n === this.capacity) return false
    this.offs[n] = off
    this.lens[n] = len
    const d = n * 3
    this.dst[d] = addr
    this.dst[d + 1] = port
    this.dst[d + 2] = gsoSize
    this.count = n + 1
    return true
  }
}

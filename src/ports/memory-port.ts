/**
 * In-memory doubles of a TAP (MemoryFrameIo) and of the underlay UDP socket
 * (MemoryDatagramIo), so the datapath runs in unit tests without root or
 * devices.
 *
 * They implement the datapath's FrameIo and DatagramIo interfaces
 * (datapath/datapath.ts) structurally: ports/ sits below datapath/ in the layer
 * rule, so the interfaces are not imported here; the datapath tests assign a
 * double to each interface, so a drift fails the typecheck.
 *
 * Like the real ports, a double owns one rx Batch allocated at construction and
 * calls back with a count; the receiver reads the frames in place. A test
 * fills the batch with inject() and runs the callback with deliver(), so a
 * "read" happens exactly when the test says. Whatever the datapath writes is
 * copied (the datapath reuses its slabs after the call) into `sent`.
 *
 * The doubles allocate per frame and throw on misuse: they are test code that
 * happens to live beside the ports it imitates.
 */
import { Batch, BATCH_FRAMES, SLOT_SUPER, TxList } from '../lib/batch'

/** Linux UDP_MAX_SEGMENTS (include/linux/udp.h): most segments one GSO send may carry. */
export const UDP_MAX_SEGMENTS = 64
/** Largest UDP payload over IPv4: 65535 - 20 (IP) - 8 (UDP). */
export const UDP_MAX_PAYLOAD_V4 = 65507
/** errnos of the sends the kernel refuses: a GSO request the socket cannot honour, a datagram too large. */
const EINVAL = 22
const EMSGSIZE = 90

export interface MemoryPortOptions {
  /** Frames per rx batch (default BATCH_FRAMES). */
  slots?: number
  /** Bytes per rx slot including headroom (default SLOT_SUPER: a 64 KiB super-frame fits). */
  slotSize?: number
  /** Read into this batch instead of a new one, as TapOptions.rx (a datapath's podRx); slots and slotSize are then its. */
  rx?: Batch
}

function fill(rx: Batch, items: readonly Uint8Array[], what: string): void {
  if (items.length > rx.slots) throw new RangeError(`${what}: ${items.length} frames do not fit a batch of ${rx.slots}`)
  for (let i = 0; i < items.length; i++) {
    const b = items[i]
    if (b.length > rx.maxFrame) throw new RangeError(`${what}: frame ${i} has ${b.length} bytes, a slot holds ${rx.maxFrame}`)
    rx.data.set(b, rx.off(i))
    rx.len[i] = b.length
  }
  rx.count = items.length
}

/**
 * What both doubles share: the rx batch, the tx counters, and the callback
 * start() registers and deliver() runs. `label` (the class) names the double in
 * the error of a deliver() before start().
 */
abstract class MemoryPort {
  readonly rx: Batch
  /** As the real port: [items not sent on EAGAIN, items refused, last errno]. */
  readonly txCounters = new Float64Array(3)
  private onBatch: ((n: number) => void) | null = null

  constructor(opts: MemoryPortOptions, private readonly label: string) {
    this.rx = opts.rx ?? new Batch(opts.slots ?? BATCH_FRAMES, opts.slotSize ?? SLOT_SUPER)
  }

  get started(): boolean {
    return this.onBatch !== null
  }

  start(onBatch: (n: number) => void): void {
    if (this.onBatch === null) this.onBatch = onBatch
  }

  stop(): void {
    this.onBatch = null
  }

  /** Runs the callback start() registered with the injected count; returns it. */
  deliver(): number {
    const cb = this.onBatch
    if (cb === null) throw new Error(`${this.label}.deliver: not started (start() was not called, or stop() was)`)
    const n = this.rx.count
    cb(n)
    return n
  }
}

/**
 * A TAP double. Frames are exactly what a TAP read returns, so for a pod with
 * vnet headers each injected frame starts with its 10-byte virtio-net header.
 * txCounters as TapPort's; the double never refuses.
 */
export class MemoryFrameIo extends MemoryPort {
  /** Copies of every frame written, in order. */
  readonly sent: Uint8Array[] = []
  /** Calls of write(), one per tx list the datapath flushed. */
  writes = 0

  constructor(opts: MemoryPortOptions = {}) {
    super(opts, 'MemoryFrameIo')
  }

  /** Puts `frames` into the rx batch (slots 0..n-1), as one TAP read would. */
  inject(frames: readonly Uint8Array[]): void {
    fill(this.rx, frames, 'MemoryFrameIo.inject')
  }

  write(buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, n: number): number {
    this.writes++
    for (let i = 0; i < n; i++) this.sent.push(buf.slice(offs[i], offs[i] + lens[i]))
    return n
  }

  /** Returns the frames sent so far and forgets them. */
  take(): Uint8Array[] {
    return this.sent.splice(0, this.sent.length)
  }
}

/** A datagram handed to MemoryDatagramIo.inject. */
export interface InboundDatagram {
  /** UDP payload (for the underlay: VXLAN header + inner frame, or a GRO run of them). */
  bytes: Uint8Array
  /** Source IPv4 address (u32) and UDP port. */
  addr: number
  port: number
  /** UDP GRO segment size the kernel reported (0 or absent: one datagram). */
  gso?: number
}

/** A datagram (or a GSO run of equal-sized datagrams when gso > 0) the datapath sent. */
export interface SentDatagram {
  bytes: Uint8Array
  addr: number
  port: number
  gso: number
}

export interface MemoryDatagramOptions extends MemoryPortOptions {
  /** Local UDP port (default 4789). */
  port?: number
  /** Whether sends may carry a GSO segment size (default false). */
  gsoEnabled?: boolean
}

/**
 * An underlay UDP socket double. rx.meta carries, per datagram, the source
 * address, source port and GRO segment size, as UdpPort fills them.
 *
 * send() checks a GSO run the way the kernel does and refuses what it would
 * refuse (counted in txCounters[1], errno in txCounters[2], not recorded in
 * `sent`): more than UDP_MAX_PAYLOAD_V4 bytes (EMSGSIZE), or a segment size on
 * a socket without GSO or for more than UDP_MAX_SEGMENTS segments (EINVAL).
 */
export class MemoryDatagramIo extends MemoryPort {
  readonly port: number
  readonly gsoEnabled: boolean
  /** Copies of everything sent, in order. */
  readonly sent: SentDatagram[] = []
  /** Calls of send(). */
  sends = 0

  constructor(opts: MemoryDatagramOptions = {}) {
    super(opts, 'MemoryDatagramIo')
    this.port = opts.port ?? 4789
    this.gsoEnabled = opts.gsoEnabled ?? false
  }

  /** Puts `datagrams` into the rx batch with their metadata, as one recvmmsg would. */
  inject(datagrams: readonly InboundDatagram[]): void {
    fill(this.rx, datagrams.map((d) => d.bytes), 'MemoryDatagramIo.inject')
    const meta = this.rx.meta
    for (let i = 0; i < datagrams.length; i++) {
      const d = datagrams[i]
      meta[3 * i] = d.addr >>> 0
      meta[3 * i + 1] = d.port
      meta[3 * i + 2] = d.gso ?? 0
    }
  }

  send(buf: Uint8Array, tx: TxList): number {
    this.sends++
    let ok = 0
    for (let j = 0; j < tx.count; j++) {
      const len = tx.lens[j]
      const gso = tx.dst[3 * j + 2]
      const errno = len > UDP_MAX_PAYLOAD_V4 ? EMSGSIZE
        : gso > 0 && (!this.gsoEnabled || Math.ceil(len / gso) > UDP_MAX_SEGMENTS) ? EINVAL : 0
      if (errno !== 0) {
        this.txCounters[1]++
        this.txCounters[2] = errno
        continue
      }
      this.sent.push({ bytes: buf.slice(tx.offs[j], tx.offs[j] + len), addr: tx.dst[3 * j], port: tx.dst[3 * j + 1], gso })
      ok++
    }
    return ok
  }

  /** Returns the datagrams sent so far and forgets them. */
  take(): SentDatagram[] {
    return this.sent.splice(0, this.sent.length)
  }
}

/**
 * A TAP device opened by the agent: frames in and out in batches. With vnet
 * headers on, every frame read or written is preceded by a 10-byte
 * virtio_net_hdr (include/uapi/linux/virtio_net.h) that carries checksum and
 * segmentation offload state.
 */
import { Batch, HEADROOM, SLOT_PLAIN, SLOT_SUPER, BATCH_FRAMES } from '../lib/batch'
import {
  native, TAP_MULTI_QUEUE, TAP_VNET_HDR, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6,
  NativeError,
} from './native'

/** sizeof(struct virtio_net_hdr): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset. */
export const VNET_HDR_LEN = 10

export interface TapOptions {
  /** Interface name; an existing persistent TAP of that name is attached to. */
  name: string
  /** Prepend a virtio-net header to every frame (needed for offloads). */
  vnetHdr?: boolean
  /** Offer checksum and TSO offloads to the kernel (implies vnetHdr). */
  offloads?: boolean
  multiQueue?: boolean
  /** Keep the device when the fd closes (TUNSETPERSIST). */
  persist?: boolean
  batchFrames?: number
  /**
   * Read into this batch instead of a new one (shared by the ports of a
   * datapath; see lib/batch.ts). Its slots must hold super-frames when the
   * offloads include TSO.
   */
  rx?: Batch
  /**
   * Open the device inside this network namespace (a path such as
   * /var/run/netns/pod1) instead of the agent's: used to re-attach to a pod's
   * persistent TAP, which lives in the pod's namespace under its pod-side name.
   */
  netnsPath?: string
  /** A receive batch ends once it holds this many bytes (0 or absent: only its slot count bounds it). */
  rxBudget?: number
}

export class TapPort {
  readonly rx: Batch
  /** writeBatch counters: [frames not written on EAGAIN, frames refused, last errno]. */
  readonly txCounters = new Float64Array(3)
  /** Offload bits the kernel accepted (0 when offloads are off). */
  readonly offloadFlags: number
  private handle: object | null = null
  private closed = false
  /** False for a port made by adopt(): its fd belongs to another thread's port. */
  private owned = true
  /** False for a port that only writes (adopt() with read false): start() does nothing. */
  private readable = true

  private constructor(
    readonly fd: number,
    readonly name: string,
    readonly vnetHdr: boolean,
    offloadFlags: number,
    batchFrames: number,
    rx: Batch | undefined,
    private readonly rxBudget: number,
  ) {
    this.offloadFlags = offloadFlags
    this.rx = rx ?? new Batch(batchFrames, offloadFlags & (TUN_F_TSO4 | TUN_F_TSO6) ? SLOT_SUPER : SLOT_PLAIN)
  }

  static open(opts: TapOptions): TapPort {
    if (opts.rx !== undefined && opts.rx.slotSize < (opts.offloads ? SLOT_SUPER : SLOT_PLAIN)) {
      throw new RangeError(`shared rx batch slots of ${opts.rx.slotSize} bytes cannot hold this TAP's frames`)
    }
    const vnet = opts.vnetHdr === true || opts.offloads === true
    const flags = (vnet ? TAP_VNET_HDR : 0) | (opts.multiQueue ? TAP_MULTI_QUEUE : 0)
    const [fd, name] = opts.netnsPath ? native.tapOpenInNetns(opts.netnsPath, opts.name, flags) : native.tapOpen(opts.name, flags)
    let offload = 0
    try {
      if (vnet) native.tapSetVnetHdrSize(fd, VNET_HDR_LEN)
      if (opts.offloads) offload = enableOffloads(fd)
      else if (vnet) native.tapSetOffload(fd, 0)
      if (opts.persist !== undefined) native.tapSetPersist(fd, opts.persist ? 1 : 0)
    } catch (err) {
      native.closeFd(fd)
      throw err
    }
    return new TapPort(fd, name, vnet, offload, opts.batchFrames ?? BATCH_FRAMES, opts.rx, opts.rxBudget ?? 0)
  }

  /**
   * A port over a TAP queue another port of this process owns (a worker
   * thread's view of it): close() leaves the fd open. With `read` false it only
   * writes (a single-queue TAP the main thread reads; any fd of a TAP may write).
   */
  static adopt(fd: number, name: string, opts: { vnetHdr: boolean; offloadFlags: number; rx: Batch; rxBudget?: number; read: boolean }): TapPort {
    const t = new TapPort(fd, name, opts.vnetHdr, opts.offloadFlags, opts.rx.slots, opts.rx, opts.rxBudget ?? 0)
    t.owned = false
    t.readable = opts.read
    return t
  }

  /** Whether the kernel took UDP segmentation offload (USO4): the TAP accepts GSO_UDP_L4 frames. */
  get uso(): boolean {
    return (this.offloadFlags & TUN_F_USO4) !== 0
  }

  /** Starts batched receive: onBatch(n) runs once per batch with rx.len[0..n) filled; n < 0 is -errno. */
  start(onBatch: (n: number) => void): void {
    if (this.handle || !this.readable) return
    const b = this.rx
    this.handle = native.rxStart(this.fd, b.data, b.slotSize, HEADROOM, b.len, b.slots, onBatch)
    if (this.rxBudget > 0) native.rxBudget(this.handle, this.rxBudget)
  }

  stop(): void {
    if (this.handle) native.rxStop(this.handle)
    this.handle = null
  }

  /** Writes n frames; returns how many went out. The rest are counted in txCounters. */
  write(buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, n: number): number {
    return native.writeBatch(this.fd, buf, offs, lens, n, this.txCounters)
  }

  /** Reads one batch without a poller (tests, tools). */
  readNow(): number {
    const b = this.rx
    const n = native.readBatch(this.fd, b.data, b.slotSize, HEADROOM, b.len, b.slots)
    b.count = n
    return n
  }

  /**
   * Makes an eBPF program the queue selector of this multi-queue TAP: it picks,
   * per frame the device transmits, which queue (which fd) reads it. See
   * overlay/steering.ts.
   */
  setSteering(program: Uint8Array): void {
    native.tapSetSteering(this.fd, program)
  }

  setPersist(on: boolean): void {
    native.tapSetPersist(this.fd, on ? 1 : 0)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.stop()
    if (this.owned) native.closeFd(this.fd)
  }
}

/** Checksum + TSO, and USO where the kernel has it (Linux 6.2+); falls back once. */
function enableOffloads(fd: number): number {
  const base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
  try {
    native.tapSetOffload(fd, base | TUN_F_USO4 | TUN_F_USO6)
    return base | TUN_F_USO4 | TUN_F_USO6
  } catch (err) {
    if (!(err instanceof NativeError) || err.code !== 'EINVAL') throw err
  }
  native.tapSetOffload(fd, base)
  return base
}

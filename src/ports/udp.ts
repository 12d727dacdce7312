/**
 * The underlay UDP socket: batched receive (recvmmsg, optional UDP GRO) and
 * batched send (sendmmsg, optional UDP GSO per datagram).
 */
import { Batch, HEADROOM, SLOT_PLAIN, SLOT_SUPER, BATCH_FRAMES, TxList } from '../lib/batch'
import { native, UDP_REUSEPORT } from './native'

export interface UdpOptions {
  addr: number
  port: number
  reusePort?: boolean
  /** Ask for UDP GRO: the kernel may hand over several datagrams of one flow as one. */
  gro?: boolean
  batchFrames?: number
  /** Probe UDP GSO (UDP_SEGMENT) for sends of equal-sized segment runs. */
  gso?: boolean
  /** Send UDP checksum 0 (allowed over IPv4, RFC 7348 §5; ignored with GSO, which needs checksums). */
  noChecksum?: boolean
  /** Socket buffer sizes in bytes (SO_RCVBUFFORCE/SO_SNDBUFFORCE; needs root). */
  rcvbuf?: number
  sndbuf?: number
  /** Read into this batch instead of a new one (see TapOptions.rx); super-frame slots with gro. */
  rx?: Batch
  /** A receive batch ends once it holds this many bytes (0 or absent: only its slot count bounds it). */
  rxBudget?: number
}

export class UdpPort {
  readonly rx: Batch
  readonly txCounters = new Float64Array(3)
  /** Whether the kernel accepted UDP_GRO on this socket. */
  readonly gro: boolean
  /** Whether sends may carry a UDP_SEGMENT size (probed at open). */
  gsoEnabled = false
  private handle: object | null = null
  private closed = false
  private readonly rxBudget: number
  /** False for a port made by adopt(): its fd belongs to another thread's port. */
  private owned = true

  private constructor(readonly fd: number, readonly addr: number, readonly port: number, gro: boolean, batchFrames: number, rx: Batch | undefined, rxBudget: number) {
    this.gro = gro
    this.rxBudget = rxBudget
    this.rx = rx ?? new Batch(batchFrames, gro ? SLOT_SUPER : SLOT_PLAIN)
  }

  static open(opts: UdpOptions): UdpPort {
    if (opts.rx !== undefined && opts.rx.slotSize < (opts.gro ? SLOT_SUPER : SLOT_PLAIN)) {
      throw new RangeError(`shared rx batch slots of ${opts.rx.slotSize} bytes cannot hold this socket's datagrams`)
    }
    const [fd, port] = native.udpOpen(opts.addr >>> 0, opts.port, opts.reusePort ? UDP_REUSEPORT : 0)
    let gro = false
    try {
      if (opts.gro) gro = native.udpSetOption(fd, 'gro', 1)
      if (opts.noChecksum) native.udpSetOption(fd, 'nocheck', 1)
      if (opts.rcvbuf) native.udpSetOption(fd, 'rcvbuf', opts.rcvbuf)
      if (opts.sndbuf) native.udpSetOption(fd, 'sndbuf', opts.sndbuf)
    } catch (err) {
      native.closeFd(fd)
      throw err
    }
    const u = new UdpPort(fd, opts.addr >>> 0, port, gro, opts.batchFrames ?? BATCH_FRAMES, opts.rx, opts.rxBudget ?? 0)
    if (opts.gso && !opts.noChecksum) u.gsoEnabled = u.gsoSupported()
    return u
  }

  /**
   * A port over a socket another port of this process owns (a worker thread's
   * view of the main thread's socket): it reads and sends, and close() leaves
   * the fd open.
   */
  static adopt(fd: number, addr: number, port: number, opts: { gro: boolean; gsoEnabled: boolean; rx: Batch; rxBudget?: number }): UdpPort {
    const u = new UdpPort(fd, addr >>> 0, port, opts.gro, opts.rx.slots, opts.rx, opts.rxBudget ?? 0)
    u.gsoEnabled = opts.gsoEnabled
    u.owned = false
    return u
  }

  /** Whether this kernel supports UDP GSO on this socket (probes UDP_SEGMENT). */
  gsoSupported(): boolean {
    return native.udpSetOption(this.fd, 'gso', 0)
  }

  /** onBatch(n): rx.len and rx.meta (source addr, port, GRO size) filled for n datagrams; n < 0 is -errno. */
  start(onBatch: (n: number) => void): void {
    if (this.handle) return
    const b = this.rx
    this.handle = native.udpRxStart(this.fd, b.data, b.slotSize, HEADROOM, b.len, b.meta, b.slots, onBatch)
    if (this.rxBudget > 0) native.rxBudget(this.handle, this.rxBudget)
  }

  /**
   * Attaches a classic BPF program that picks, per datagram, the socket of this
   * socket's SO_REUSEPORT group (index by join order): see overlay/steering.ts.
   */
  attachSteering(program: Uint8Array): void {
    native.udpAttachSteering(this.fd, program)
  }

  stop(): void {
    if (this.handle) native.rxStop(this.handle)
    this.handle = null
  }

  /** Sends a TxList (offsets into `buf`, per-entry destinations); returns datagrams sent. */
  send(buf: Uint8Array, tx: TxList): number {
    return native.udpSendBatch(this.fd, buf, tx.offs, tx.lens, tx.dst, tx.count, this.txCounters)
  }

  recvNow(): number {
    const b = this.rx
    const n = native.udpRecvBatch(this.fd, b.data, b.slotSize, HEADROOM, b.len, b.meta, b.slots)
    b.count = n
    return n
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.stop()
    if (this.owned) native.closeFd(this.fd)
  }
}

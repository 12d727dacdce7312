/**
 * The only module that loads the native addon. It turns the addon's errno errors
 * into NativeError with a sentence a person can act on; wording is policy and
 * lives here, not in C.
 */
import * as path from 'node:path'
import { TapestryError } from '../lib/errors'
import { setBulkChecksum } from '../wire/checksum'
import { setTsoTwin } from '../wire/tso'

export interface NativeAddon {
  tapOpen(name: string, flags: number): [number, string]
  tapOpenInNetns(netnsPath: string, name: string, flags: number): [number, string]
  tapSetPersist(fd: number, on: number): void
  tapSetOffload(fd: number, flags: number): void
  tapSetVnetHdrSize(fd: number, size: number): void
  closeFd(fd: number): void
  readBatch(fd: number, buf: Uint8Array, slotSize: number, headroom: number, lens: Uint32Array, max: number): number
  writeBatch(fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, n: number, counters: Float64Array): number
  udpOpen(addr: number, port: number, flags: number): [number, number]
  udpSetOption(fd: number, name: 'gro' | 'gso' | 'nocheck' | 'rcvbuf' | 'sndbuf', value: number): boolean
  udpRecvBatch(fd: number, buf: Uint8Array, slotSize: number, headroom: number, lens: Uint32Array, meta: Uint32Array, max: number): number
  udpSendBatch(fd: number, buf: Uint8Array, offs: Uint32Array, lens: Uint32Array, dst: Uint32Array, n: number, counters: Float64Array): number
  rxStart(fd: number, buf: Uint8Array, slotSize: number, headroom: number, lens: Uint32Array, max: number, cb: (n: number) => void): object
  udpRxStart(fd: number, buf: Uint8Array, slotSize: number, headroom: number, lens: Uint32Array, meta: Uint32Array, max: number, cb: (n: number) => void): object
  rxStop(handle: object): void
  /** A UDP poller's batches end once they hold this many bytes (0 = the slot count alone bounds them). */
  rxBudget(handle: object, bytes: number): void
  /** Attaches a classic BPF program (8-byte sock_filter entries) that picks the socket of fd's SO_REUSEPORT group for each datagram. */
  udpAttachSteering(fd: number, program: Uint8Array): void
  /** Loads an eBPF socket-filter program (8-byte bpf_insn entries) as the multi-queue TAP's queue selector. */
  tapSetSteering(fd: number, program: Uint8Array): void
  /** Busy-poll window of this thread's loop after each received batch, us (0 = off). */
  busyPoll(us: number): void
  /** Names the calling thread (at most 15 bytes; longer throws), as top -H shows it. */
  threadName(name: string): void
  csumAdd(buf: Uint8Array, off: number, len: number, sum: number): number
  /** The twin of wire/tso.ts tsoSegment; info receives hdrLen, payloadLen, lastLen, l4Off, ethLen. */
  tsoSegment(buf: Uint8Array, frame: number, len: number, isUdp: boolean, gsoSize: number,
    out: Uint8Array, outOff: number, prefix: number, maxSegments: number, info: Uint32Array): number
}

/** TAP open flags (native/tap.c). */
export const TAP_VNET_HDR = 1
export const TAP_MULTI_QUEUE = 2
/** UDP open flags (native/udp.c). */
export const UDP_REUSEPORT = 1

/** TUNSETOFFLOAD bits, include/uapi/linux/if_tun.h. */
export const TUN_F_CSUM = 0x01
export const TUN_F_TSO4 = 0x02
export const TUN_F_TSO6 = 0x04
export const TUN_F_TSO_ECN = 0x08
export const TUN_F_UFO = 0x10
export const TUN_F_USO4 = 0x20
export const TUN_F_USO6 = 0x40

/** Counter slots of writeBatch/udpSendBatch. */
export const TX_EAGAIN = 0
export const TX_ERROR = 1
export const TX_LAST_ERRNO = 2

export class NativeError extends TapestryError {
  readonly errno: number
  readonly syscall: string
  constructor(code: string, message: string, errno: number, syscall: string, cause: unknown) {
    super(code, message, { cause })
    this.errno = errno
    this.syscall = syscall
  }
}

const HINTS: Record<string, string> = {
  'EPERM:open /dev/net/tun': 'creating a TAP needs root or CAP_NET_ADMIN',
  'EACCES:open /dev/net/tun': 'creating a TAP needs root or CAP_NET_ADMIN',
  'ENOENT:open /dev/net/tun': '/dev/net/tun is missing: load the tun module (modprobe tun) or, in a container, pass --device /dev/net/tun',
  'EPERM:ioctl TUNSETIFF': 'creating a TAP needs root or CAP_NET_ADMIN',
  'ENOENT:open netns': 'the network namespace file does not exist',
  'EPERM:setns': 'entering a network namespace needs root or CAP_SYS_ADMIN',
  'EBUSY:ioctl TUNSETIFF': 'the TAP device is already attached to another process (or its queues are all taken)',
  'EINVAL:ioctl TUNSETIFF': 'an interface of that name exists but is not a TAP with the same flags (multi-queue must match), or the name is invalid',
  'EEXIST:ioctl TUNSETIFF': 'an interface of that name exists and is not a TAP',
  'EINVAL:ioctl TUNSETOFFLOAD': 'the kernel refused these TAP offload flags (an older kernel may lack USO)',
  'EADDRNOTAVAIL:bind': 'the underlay address is not configured on any interface of this host (check node.underlayIP)',
  'EADDRINUSE:bind': 'another process already uses this UDP port on that address (a kernel vxlan device or another agent?)',
  'EACCES:bind': 'binding a port below 1024 needs root or CAP_NET_BIND_SERVICE',
  'EINVAL:ioctl TUNSETSTEERINGEBPF': 'the TAP is not multi-queue, or the kernel refused the steering program',
  'EPERM:bpf BPF_PROG_LOAD': 'loading a BPF program needs root or CAP_BPF',
  'EBADF:read': 'the device was closed',
  'EBADFD:read': 'the TAP is not attached to a device any more',
  'EIO:read': 'the TAP device was removed or is down',
}

function humanize(err: unknown): unknown {
  const e = err as { code?: string; errno?: number; syscall?: string; message?: string }
  if (!e || typeof e.errno !== 'number' || typeof e.syscall !== 'string' || typeof e.code !== 'string') return err
  const hint = HINTS[`${e.code}:${e.syscall}`]
  const msg = hint ? `${hint} (${e.message})` : (e.message ?? e.code)
  return new NativeError(e.code, msg, e.errno, e.syscall, err)
}

function load(): NativeAddon {
  const candidates = [
    path.join(__dirname, '..', '..', 'build', 'Release', 'tapestry_native.node'),
    path.join(__dirname, '..', '..', '..', 'build', 'Release', 'tapestry_native.node'),
  ]
  let lastErr: unknown
  for (const c of candidates) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return require(c) as NativeAddon
    } catch (err) {
      lastErr = err
    }
  }
  throw new TapestryError('TAPESTRY_NATIVE_MISSING',
    'the native addon is not built: run `npm run build` (or `npm test`, which sets everything up)', { cause: lastErr })
}

const raw = load()

// The native checksum twin takes over bulk checksums (see wire/checksum.ts).
setBulkChecksum(raw.csumAdd)
// And segmentation of TSO super-frames (wire/tso.ts).
setTsoTwin(raw.tsoSegment)

/**
 * The addon with errors humanized. Only the set-up calls are wrapped; the batch
 * calls go straight to the addon, since they sit on the hot path and report
 * errors as return values and counters.
 */
export const native: NativeAddon = {
  ...raw,
  tapOpen: wrap(raw.tapOpen),
  tapOpenInNetns: wrap(raw.tapOpenInNetns),
  tapSetPersist: wrap(raw.tapSetPersist),
  tapSetOffload: wrap(raw.tapSetOffload),
  tapSetVnetHdrSize: wrap(raw.tapSetVnetHdrSize),
  closeFd: wrap(raw.closeFd),
  udpOpen: wrap(raw.udpOpen),
  udpSetOption: wrap(raw.udpSetOption),
  rxStart: wrap(raw.rxStart),
  udpRxStart: wrap(raw.udpRxStart),
  udpAttachSteering: wrap(raw.udpAttachSteering),
  tapSetSteering: wrap(raw.tapSetSteering),
  busyPoll: wrap(raw.busyPoll),
}

function wrap<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  return (...args: A): R => {
    try {
      return fn(...args)
    } catch (err) {
      throw humanize(err)
    }
  }
}

export function humanizeNativeError(err: unknown): unknown {
  return humanize(err)
}

/**
 * Sniffing the underlay with libpcap (through the `cap` npm package), outside
 * the dataplane: it sees VXLAN on the wire whoever sends it, Tapestry or a
 * kernel vxlan device, and needs no agent. The kernel filters with the BPF
 * program `udp port N`, so only VXLAN datagrams reach JavaScript.
 *
 * `cap` is loaded on first use, so the rest of the CLI works where it is not
 * installed or did not build; the error then says what to install.
 */
import { TapestryError } from '../lib/errors'
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW } from './pcap'

/** What `cap` exposes that we use (it ships no types). */
interface CapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string
  close(): void
  on(event: 'packet', fn: (nbytes: number, truncated: boolean) => void): void
}
interface CapModule {
  Cap: { new(): CapHandle; findDevice(ip?: string): string | undefined; deviceList(): { name: string }[] }
}

/** libpcap snapshot length `cap` uses (binding.cc: pcap_set_snaplen 65535). */
export const CAP_SNAPLEN = 65535
const KERNEL_BUFFER_BYTES = 8 << 20

const LINKTYPES: Record<string, number> = {
  ETHERNET: LINKTYPE_ETHERNET,
  LINKTYPE_LINUX_SLL: LINKTYPE_LINUX_SLL,
  RAW: LINKTYPE_RAW,
}

function loadCap(): CapModule {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('cap') as CapModule
  } catch (err) {
    throw new TapestryError('TAPESTRY_SNIFF_UNAVAILABLE',
      `sniffing needs the \`cap\` package (a libpcap binding): run \`npm install cap\` with libpcap-dev installed (${(err as Error).message})`)
  }
}

export interface SniffOptions {
  /** Interface name; "any" for all (Linux cooked link type). */
  device: string
  /** UDP port of the VXLAN traffic to capture. */
  port: number
  /** Called per packet with a view of the shared buffer (valid during the call only). */
  onPacket(data: Buffer, truncated: boolean): void
}

export class Sniffer {
  /** pcap link type of the device (LINKTYPE_*). */
  readonly linktype: number
  private handle: CapHandle | null

  private constructor(handle: CapHandle, linktype: number) {
    this.handle = handle
    this.linktype = linktype
  }

  static open(opts: SniffOptions): Sniffer {
    const { Cap } = loadCap()
    const c = new Cap()
    const buf = Buffer.alloc(CAP_SNAPLEN)
    let lt: string
    try {
      lt = c.open(opts.device, `udp port ${opts.port}`, KERNEL_BUFFER_BYTES, buf)
    } catch (err) {
      const msg = (err as Error).message
      if (/permitted|permission/i.test(msg)) {
        throw new TapestryError('TAPESTRY_SNIFF_DENIED', `cannot capture on ${opts.device}: sniffing needs root or CAP_NET_RAW (${msg})`)
      }
      if (/no such device|doesn't exist/i.test(msg)) {
        const names = Cap.deviceList().map((d) => d.name).join(', ')
        throw new TapestryError('TAPESTRY_SNIFF_NO_DEVICE', `no interface ${opts.device} here (interfaces: ${names})`)
      }
      throw new TapestryError('TAPESTRY_SNIFF_FAILED', `cannot capture on ${opts.device}: ${msg}`)
    }
    const linktype = LINKTYPES[lt]
    if (linktype === undefined) {
      c.close()
      throw new TapestryError('TAPESTRY_SNIFF_LINKTYPE', `${opts.device} has a link type sniff does not decode (${lt}); try --interface any`)
    }
    c.on('packet', (n, truncated) => opts.onPacket(buf.subarray(0, n), truncated))
    return new Sniffer(c, linktype)
  }

  close(): void {
    this.handle?.close()
    this.handle = null
  }
}

/**
 * `tapestry sniff`: live VXLAN on the underlay through libpcap (`cap`), outside
 * the dataplane, so it also shows a kernel vxlan device's traffic and needs no
 * agent. One line per packet (outer src > dst, VNI, inner MACs, IPs, ports,
 * TCP flags), or pcap with -w.
 */
import { Command } from './registry'
import { onInterrupt, openOutput } from './capture-output'
import { Sniffer, CAP_SNAPLEN } from '../observe/sniff'
import { PCAP_REC_HLEN, pcapFileHeader, pcapTimestamp, pcapWriteRecordHeader } from '../observe/pcap'
import { VXLAN_PORT_IANA } from '../wire/vxlan'

const USAGE = `tapestry sniff [--interface IF] [--port N] [-c COUNT] [-w FILE|-]

  --interface IF    interface to listen on (default any: every interface, Linux cooked headers)
  --port N          UDP port of the VXLAN traffic (default 4789); the kernel filter is 'udp port N'
  -c COUNT          stop after COUNT packets
  -w FILE           write pcap to FILE (or stdout with -w -) instead of printing lines`

interface SniffArgs { device: string; port: number; count: number; file?: string }

function parseArgs(args: string[]): SniffArgs {
  const out: SniffArgs = { device: 'any', port: VXLAN_PORT_IANA, count: 0 }
  for (let i = 0; i < args.length; i++) {
    let a = args[i]
    let val: string | undefined
    const eq = a.startsWith('--') ? a.indexOf('=') : -1
    if (eq > 0) { val = a.slice(eq + 1); a = a.slice(0, eq) }
    const value = (): string => {
      const v = val !== undefined ? val : args[++i]
      if (v === undefined || v === '') throw new Error(`${a} needs a value`)
      return v
    }
    const int = (v: string, min: number, max: number): number => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${a} needs an integer in ${min}..${max} (got ${JSON.stringify(v)})`)
      return n
    }
    switch (a) {
      case '-i': case '--interface': out.device = value(); break
      case '--port': out.port = int(value(), 1, 65535); break
      case '-c': case '--count': out.count = int(value(), 1, Number.MAX_SAFE_INTEGER); break
      case '-w': out.file = value(); break
      default: throw new Error(`unknown argument ${args[i]}`)
    }
  }
  return out
}

export const sniffCommand: Command = {
  summary: 'Sniff VXLAN on the underlay with libpcap and decode outer and inner headers.',
  usage: USAGE,
  async run(args: string[]): Promise<number> {
    let a: SniffArgs
    try {
      a = parseArgs(args)
    } catch (err) {
      process.stderr.write(`tapestry sniff: ${(err as Error).message}\nUsage: ${USAGE}\n`)
      return 2
    }
    const ports = [a.port]
    let out
    try {
      out = openOutput(a.file, () => ports)
    } catch (err) {
      process.stderr.write(`tapestry sniff: cannot write ${a.file}: ${(err as Error).message}\n`)
      return 1
    }
    const output = out
    return new Promise<number>((resolve) => {
      let seen = 0
      let done = false
      let sniffer: Sniffer | null = null
      const ts = new Uint32Array(2)
      const rec = Buffer.alloc(PCAP_REC_HLEN)
      const finish = (code: number, why: string): void => {
        if (done) return
        done = true
        removeSignals()
        sniffer?.close()
        output.close()
        process.stderr.write(`tapestry sniff: ${seen} packet${seen === 1 ? '' : 's'} (${why})\n`)
        resolve(code)
      }
      const removeSignals = onInterrupt((sig) => finish(0, sig === 'SIGINT' ? 'interrupted' : 'terminated'))
      output.onGone(() => finish(0, 'the reader closed its end'))
      try {
        sniffer = Sniffer.open({
          device: a.device,
          port: a.port,
          onPacket: (data, truncated) => {
            if (done) return
            seen++
            pcapTimestamp(performance.timeOrigin + performance.now(), ts)
            if (output.text) {
              output.writeLine(ts[0], ts[1], data, sniffer!.linktype)
            } else {
              // libpcap does not tell the original length of a truncated packet; it is at least the snapshot.
              pcapWriteRecordHeader(rec, 0, ts[0], ts[1], data.length, truncated ? Math.max(data.length, CAP_SNAPLEN) : data.length)
              output.writePcap(Buffer.concat([rec, data]))
            }
            if (a.count > 0 && seen >= a.count) finish(0, 'count reached')
          },
        })
      } catch (err) {
        done = true
        removeSignals()
        output.close()
        process.stderr.write(`tapestry sniff: ${(err as Error).message}\n`)
        resolve(1)
        return
      }
      if (!output.text) output.writePcap(pcapFileHeader(CAP_SNAPLEN, sniffer.linktype))
      process.stderr.write(`tapestry sniff: listening on ${a.device} for udp port ${a.port}\n`)
    })
  },
}

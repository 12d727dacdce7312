/**
 * `tapestry capture`: packet capture from inside the dataplane, as pcap.
 *
 *   tapestry capture --pod web-1 -w web-1.pcap              until Ctrl-C
 *   tapestry capture --pod web-1 -w - | tcpdump -nr -        live, through tcpdump
 *   tapestry capture --underlay -c 100 -w ul.pcap            outer headers + VXLAN
 *   tapestry capture --vni 42 --duration 10 'tcp port 80'    text lines, 10 seconds
 *
 * The agent streams pcap over the API (POST /v1/capture); this command keeps
 * only whole records, so the file is valid however the capture ends: -c,
 * --duration, Ctrl-C, the agent stopping, or the stream breaking.
 */
import { Command } from './registry'
import { defaultSocket, openStream } from './client'
import { onInterrupt, openOutput } from './capture-output'
import { compileFilter } from '../observe/filter'
import { LINKTYPE_ETHERNET, PcapFramer } from '../observe/pcap'
import { VXLAN_PORT_IANA, VXLAN_PORT_LINUX } from '../wire/vxlan'

const USAGE = `tapestry capture (--pod NAME | --vni N | --underlay) [--filter EXPR | EXPR...]
                        [-c COUNT] [--duration SECONDS] [-s SNAPLEN] [-B KIB] [-w FILE|-] [--socket PATH]

  --pod NAME        frames the pod sends and receives (its eth0's view)
  --vni N           every frame entering network N's switch: sent by its local pods or
                    received from peers (inner frame, VXLAN removed)
  --underlay        VXLAN datagrams to and from peers, with outer Ethernet/IPv4/UDP
                    headers rebuilt (placeholder MACs 02:00:<IPv4>)
  --filter EXPR     host A, src/dst host A, net CIDR, [tcp|udp] [src|dst] port N, tcp, udp,
                    icmp, arp, ip, ip6, vni N; and/or/not, parentheses (as pcap-filter:
                    'and' and 'or' have equal precedence). On --underlay it tests the inner frame.
  -c COUNT          stop after COUNT packets
  --duration S      stop after S seconds
  -s SNAPLEN        bytes kept per packet (default 262144: whole packets)
  -B KIB            the agent's buffer for this capture in KiB (default 4096); when the
                    reader is slower than the traffic, packets past it are dropped and counted
  -w FILE           write pcap to FILE, or to stdout with -w -; without -w, print one line per packet`

interface CaptureArgs {
  socket: string
  body: Record<string, unknown>
  file?: string
}

function parseArgs(args: string[]): CaptureArgs {
  const body: Record<string, unknown> = {}
  let socket = ''
  let file: string | undefined
  const words: string[] = []
  const num = (flag: string, v: string | undefined, min: number, integer = true): number => {
    const n = Number(v)
    if (v === undefined || v.trim() === '' || !Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
      throw new Error(`${flag} needs ${integer ? 'an integer' : 'a number'} >= ${min} (got ${v === undefined ? 'nothing' : JSON.stringify(v)})`)
    }
    return n
  }
  for (let i = 0; i < args.length; i++) {
    let a = args[i]
    let val: string | undefined
    const eq = a.startsWith('--') ? a.indexOf('=') : -1
    if (eq > 0) { val = a.slice(eq + 1); a = a.slice(0, eq) }
    const value = (): string | undefined => (val !== undefined ? val : args[++i])
    switch (a) {
      case '--pod': body.pod = value(); if (!body.pod) throw new Error('--pod needs a pod name'); break
      case '--vni': body.vni = num('--vni', value(), 1); break
      case '--underlay': body.underlay = true; break
      case '--filter': body.filter = value() ?? ''; break
      case '-c': case '--count': body.count = num('-c', value(), 1); break
      case '--duration': body.durationS = num('--duration', value(), 0, false); break
      case '-s': case '--snaplen': body.snaplen = num('-s', value(), 64); break
      case '-B': case '--buffer-size': body.bufferBytes = num('-B', value(), 64) * 1024; break
      case '-w': file = value(); if (file === undefined || file === '') throw new Error('-w needs a file name, or - for stdout'); break
      case '--socket': socket = value() ?? ''; break
      default:
        if (a.startsWith('-') && a !== '-') throw new Error(`unknown option ${a}`)
        words.push(args[i])
    }
  }
  if (words.length > 0) {
    if (body.filter !== undefined) throw new Error(`give the filter either with --filter or as words, not both (extra: ${words.join(' ')})`)
    body.filter = words.join(' ')
  }
  const where = ['pod', 'vni', 'underlay'].filter((k) => body[k] !== undefined)
  if (where.length !== 1) throw new Error(where.length === 0 ? 'say where to capture: --pod NAME, --vni N or --underlay' : `--${where.join(' and --')} cannot be combined: choose one`)
  // Checked here too, so a typo is reported before connecting.
  if (typeof body.filter === 'string') compileFilter(body.filter)
  return { socket: socket || defaultSocket(), body, file }
}

export const captureCommand: Command = {
  summary: 'Capture packets inside the dataplane (pod, VNI or underlay) as pcap.',
  usage: USAGE,
  async run(args: string[]): Promise<number> {
    let a: CaptureArgs
    try {
      a = parseArgs(args)
    } catch (err) {
      process.stderr.write(`tapestry capture: ${(err as Error).message}\nUsage: ${USAGE}\n`)
      return 2
    }
    let stream
    try {
      stream = await openStream(a.socket, 'POST', '/v1/capture', a.body)
    } catch (err) {
      process.stderr.write(`tapestry capture: ${(err as Error).message}\n`)
      return 1
    }
    const { req, res } = stream
    const vxlanPort = Number(res.headers['x-tapestry-vxlan-port'] ?? VXLAN_PORT_IANA)
    let out
    try {
      out = openOutput(a.file, () => [vxlanPort, VXLAN_PORT_IANA, VXLAN_PORT_LINUX])
    } catch (err) {
      req.destroy()
      process.stderr.write(`tapestry capture: cannot write ${a.file}: ${(err as Error).message}\n`)
      return 1
    }
    const output = out
    const framer = new PcapFramer()
    return new Promise<number>((resolve) => {
      let done = false
      const finish = (code: number, why: string): void => {
        if (done) return
        done = true
        removeSignals()
        req.destroy()
        output.close()
        const t = res.trailers
        const dropped = Number(t['x-tapestry-dropped'] ?? 0)
        let msg = `${framer.records} packet${framer.records === 1 ? '' : 's'} captured`
        if (dropped > 0) msg += `, ${dropped} dropped by the agent (the reader was slower than the traffic; a larger -B helps)`
        process.stderr.write(`tapestry capture: ${msg} (${why})\n`)
        resolve(code)
      }
      const removeSignals = onInterrupt((sig) => finish(0, sig === 'SIGINT' ? 'interrupted' : 'terminated'))
      output.onGone(() => finish(0, 'the reader closed its end'))
      res.on('data', (chunk: Buffer) => {
        if (done) return
        let whole: Buffer
        try {
          whole = framer.push(chunk, output.text ? (r) => output.writeLine(r.tsSec, r.tsFrac, r.data, LINKTYPE_ETHERNET) : undefined)
        } catch (err) {
          finish(1, `the agent sent something that is not pcap: ${(err as Error).message}`)
          return
        }
        if (!output.text && whole.length > 0 && !output.writePcap(whole)) {
          res.pause()
          output.onDrain(() => res.resume())
        }
      })
      res.on('end', () => {
        const why = res.trailers['x-tapestry-end']
        if (why === undefined) finish(1, 'the stream from the agent broke off; the file holds every whole packet received')
        else finish(0, why === 'count' ? 'count reached' : why === 'duration' ? 'duration elapsed' : why === 'shutdown' ? 'the agent stopped' : why)
      })
      res.on('aborted', () => finish(1, 'the stream from the agent broke off; the file holds every whole packet received'))
      res.on('error', () => finish(1, 'the stream from the agent broke off; the file holds every whole packet received'))
    })
  },
}

/**
 * Where `tapestry capture` and `tapestry sniff` put what they capture: a pcap
 * file (-w FILE), a pcap stream on stdout (-w -, for `| tcpdump -nr -`), or
 * one text line per packet on stdout (no -w).
 *
 * Files are written with synchronous writes of whole records only, so a
 * capture stopped at any moment (Ctrl-C, the agent stopping, the stream
 * breaking) leaves a valid file: the header and every record written in full.
 */
import * as fs from 'node:fs'
import { describePacket, formatTimeOfDay } from '../observe/describe-packet'

export interface PacketOutput {
  /** Whole pcap bytes (file header first). Returns false when the reader wants a pause (stdout only). */
  writePcap(bytes: Buffer): boolean
  /** One packet as a text line (text mode). */
  writeLine(tsSec: number, tsUsec: number, data: Uint8Array, linktype: number): void
  /** True for text mode: records are decoded and printed instead of written. */
  readonly text: boolean
  /** Calls fn once when a paused writer can take more. */
  onDrain(fn: () => void): void
  /** Calls fn if the reader went away (EPIPE on stdout). */
  onGone(fn: () => void): void
  close(): void
}

export function openOutput(file: string | undefined, vxlanPorts: () => readonly number[]): PacketOutput {
  if (file === undefined) {
    let gone: (() => void) | null = null
    process.stdout.on('error', () => gone?.())
    return {
      text: true,
      writePcap: () => true,
      writeLine(sec, usec, data, linktype) {
        process.stdout.write(`${formatTimeOfDay(sec, usec)} ${describePacket(data, 0, data.length, linktype, vxlanPorts())}\n`)
      },
      onDrain: (fn) => { process.stdout.once('drain', fn) },
      onGone: (fn) => { gone = fn },
      close: () => undefined,
    }
  }
  if (file === '-') {
    let gone: (() => void) | null = null
    process.stdout.on('error', () => gone?.())
    return {
      text: false,
      writePcap: (b) => process.stdout.write(b),
      writeLine: () => undefined,
      onDrain: (fn) => { process.stdout.once('drain', fn) },
      onGone: (fn) => { gone = fn },
      close: () => undefined,
    }
  }
  const fd = fs.openSync(file, 'w', 0o644)
  return {
    text: false,
    writePcap(b) {
      for (let o = 0; o < b.length;) o += fs.writeSync(fd, b, o, b.length - o)
      return true
    },
    writeLine: () => undefined,
    onDrain: () => undefined,
    onGone: () => undefined,
    close: () => fs.closeSync(fd),
  }
}

/** Installs handlers for SIGINT/SIGTERM (Ctrl-C ends the capture cleanly); returns the function that removes them. */
export function onInterrupt(fn: (signal: string) => void): () => void {
  const int = (): void => fn('SIGINT')
  const term = (): void => fn('SIGTERM')
  process.on('SIGINT', int)
  process.on('SIGTERM', term)
  return () => {
    process.off('SIGINT', int)
    process.off('SIGTERM', term)
  }
}

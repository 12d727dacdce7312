/**
 * Packet captures for e2e tests: tcpdump running inside a namespace, started
 * and confirmed listening before the traffic, stopped with SIGINT (which makes
 * tcpdump flush and exit) and read back as lines. The process belongs to the
 * Lab, so cleanup kills it if a test fails first.
 */
import { Lab, Proc, waitFor } from './lab'

export interface Capture {
  proc: Proc
  /** Lines printed so far (one per packet, -l line buffering). */
  lines(): string[]
  /** Stops tcpdump and returns every line it printed. */
  stop(): Promise<string[]>
}

/**
 * Starts `tcpdump -l -n [-e] [-Q dir] -i IFACE FILTER...` in `ns` and waits until it
 * says it is listening, so nothing sent afterwards is missed.
 */
export async function startCapture(lab: Lab, ns: string, filter: string[], opts: { iface?: string; direction?: 'in' | 'out'; ether?: boolean } = {}): Promise<Capture> {
  const args = ['tcpdump', '-l', '-n', '-U']
  if (opts.ether !== false) args.push('-e')
  if (opts.direction) args.push('-Q', opts.direction)
  args.push('-i', opts.iface ?? 'eth0', ...filter)
  const proc = lab.spawn(ns, args)
  await waitFor(`tcpdump listening in ${ns}`, () => {
    if (proc.child.exitCode !== null) throw new Error(`tcpdump exited ${proc.child.exitCode}: ${proc.stderr()}`)
    return proc.stderr().includes('listening on')
  }, 10_000)
  const lines = (): string[] => proc.stdout().split('\n').filter((l) => l.trim() !== '')
  return {
    proc,
    lines,
    async stop(): Promise<string[]> {
      if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGINT')
      await proc.exited
      return lines()
    },
  }
}

/** Lets captures run for a quiet period: the only way to observe that something does NOT arrive. */
export function quietPeriod(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

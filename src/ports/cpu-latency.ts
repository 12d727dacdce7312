/**
 * A PM QoS CPU latency request (Documentation/power/pm_qos_interface.rst):
 * while /dev/cpu_dma_latency is held open with a value written to it, no CPU
 * enters an idle state whose exit latency exceeds that many microseconds. With
 * 0 idle CPUs only poll, so a thread woken by a packet runs at once instead of
 * after the CPU (or, in a virtual machine, the host) brings it out of a halt.
 * The request is dropped when the file is closed, also when the process dies.
 * It is host-wide and costs power (or the host's CPU time): an opt-in for
 * hosts that want the latency (config key cpuLatencyUs), as tuned's
 * network-latency profile does for the kernel's own datapath.
 */
import * as fs from 'node:fs'
import { TapestryError } from '../lib/errors'

export const CPU_LATENCY_DEVICE = '/dev/cpu_dma_latency'

export class CpuLatencyRequest {
  private fd: number | null
  /** The value asked for. */
  us = -1

  private constructor(fd: number, readonly device: string) {
    this.fd = fd
  }

  /** Opens the device and asks for `us`; throws a TapestryError naming the device and the reason. */
  static open(us: number, device = CPU_LATENCY_DEVICE): CpuLatencyRequest {
    let fd: number
    try {
      fd = fs.openSync(device, 'w')
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error'
      throw new TapestryError('TAPESTRY_CPU_LATENCY', `cpuLatencyUs: cannot open ${device} (${code}): ${code === 'ENOENT' ? 'this kernel has no PM QoS device' : code === 'EACCES' || code === 'EPERM' ? 'it needs root' : (err as Error).message}`, { cause: err })
    }
    const r = new CpuLatencyRequest(fd, device)
    try {
      r.set(us)
    } catch (err) {
      r.close()
      throw err
    }
    return r
  }

  /** Changes the request (the same open file keeps it). */
  set(us: number): void {
    if (this.fd === null) throw new TapestryError('TAPESTRY_CPU_LATENCY', 'cpuLatencyUs: the request is closed')
    // The device takes a binary s32 in host byte order.
    fs.writeSync(this.fd, new Uint8Array(new Int32Array([us]).buffer))
    this.us = us
  }

  close(): void {
    if (this.fd === null) return
    fs.closeSync(this.fd)
    this.fd = null
  }
}

/** The limit in force now (the smallest of all requests; 2000000000 when there is none), in microseconds. */
export function readCpuLatency(device = CPU_LATENCY_DEVICE): number {
  const b = new Int32Array(1)
  const fd = fs.openSync(device, 'r')
  try {
    fs.readSync(fd, new Uint8Array(b.buffer), 0, 4, null)
  } finally {
    fs.closeSync(fd)
  }
  return b[0]
}

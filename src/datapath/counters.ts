/**
 * A datapath's counters, all in one buffer: per-port stats, drops, offloads,
 * the priority lane's rx, the FDB's, conntrack's and the service path's
 * counters and a few totals. With
 * workers (config `workers` > 1) each worker's datapath counts into a
 * SharedArrayBuffer the main thread reads, and the API and metrics show the
 * sum (totals()); a single datapath counts into an ordinary buffer.
 */
import { FDB_COUNTER_COUNT } from '../switch/fdb'
import { CT_COUNTER_COUNT } from '../service/conntrack'
import { SERVICE_DROP_COUNT, SERVICE_STAT_COUNT } from '../service/service-path'
import { DROP_COUNT, OFFLOAD_COUNT } from './drops'

/** Most ports a datapath has (pods and host ports; 0 is the underlay). */
export const MAX_PORTS = 4096

/** Slots of `misc`, copied from the datapath's plain fields by Datapath.syncCounters(). */
export const MISC_BATCHES = 0
export const MISC_BATCH_FRAMES = 1
export const MISC_ARP_ANSWERED = 2
/** Connections in the conntrack table. */
export const MISC_CT_SIZE = 3
/** Frames a worker could not relay to a running capture (capture-relay.ts). */
export const MISC_CAPTURE_LOST = 4
const MISC_COUNT = 5

const SIZES = [MAX_PORTS * 4, DROP_COUNT, OFFLOAD_COUNT, 2, MISC_COUNT, FDB_COUNTER_COUNT, CT_COUNTER_COUNT, SERVICE_DROP_COUNT, SERVICE_STAT_COUNT]
const TOTAL = SIZES.reduce((a, b) => a + b, 0)

export class DatapathCounters {
  /** Bytes of the buffer a set needs. */
  static readonly BYTES = TOTAL * 8
  readonly all: Float64Array
  /** Per port (id * 4 + STAT_*): rx frames, rx bytes, tx frames, tx bytes. */
  readonly stats: Float64Array
  readonly drops: Float64Array
  readonly offloads: Float64Array
  /** Datagrams and bytes read from the priority lane's socket. */
  readonly priorityRx: Float64Array
  readonly misc: Float64Array
  readonly fdb: Float64Array
  /** Connection tracking's counters (CtCounter), the service path's drops and events. */
  readonly ct: Float64Array
  readonly svcDrops: Float64Array
  readonly svcStats: Float64Array

  constructor(buffer: ArrayBufferLike = new ArrayBuffer(DatapathCounters.BYTES)) {
    if (buffer.byteLength < DatapathCounters.BYTES) throw new RangeError(`a counter buffer needs ${DatapathCounters.BYTES} bytes`)
    this.all = new Float64Array(buffer, 0, TOTAL)
    const parts: Float64Array[] = []
    let at = 0
    for (const n of SIZES) { parts.push(this.all.subarray(at, at + n)); at += n }
    ;[this.stats, this.drops, this.offloads, this.priorityRx, this.misc, this.fdb, this.ct, this.svcDrops, this.svcStats] = parts
  }

  /** A set whose buffer another thread can count into. */
  static shared(): DatapathCounters {
    return new DatapathCounters(new SharedArrayBuffer(DatapathCounters.BYTES))
  }

  /** this = the sum of `sets`. */
  sum(sets: DatapathCounters[]): this {
    const out = this.all
    out.fill(0)
    for (const s of sets) {
      const a = s.all
      for (let i = 0; i < TOTAL; i++) out[i] += a[i]
    }
    return this
  }
}

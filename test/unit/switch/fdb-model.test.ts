import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Fdb, FdbCounter, FdbOptions, LearnResult as R } from '../../../src/switch/fdb'
import { mulberry32 } from '../lib/prng'

// The FDB against a plain Map model under random traffic and control-plane
// calls, with small caps so every limit is hit. The model recounts sizes by
// scanning, so drift in the FDB's per-VNI/per-port counts shows up here.

interface ModelEntry { port: number; exp: number }

class Model {
  readonly m = new Map<string, ModelEntry>()
  readonly counters = new Float64Array(FdbCounter.Flushed + 1)
  constructor(readonly o: Required<Omit<FdbOptions, 'seed'>>) {}

  k(vni: number, hi: number, lo: number): string { return `${vni}/${hi}/${lo}` }
  count(pred: (key: string, e: ModelEntry) => boolean): number {
    let n = 0
    for (const [key, e] of this.m) if (pred(key, e)) n++
    return n
  }
  sizeOfVni(vni: number): number { return this.count((key) => key.startsWith(`${vni}/`)) }
  sizeOfPort(port: number): number { return this.count((_, e) => e.port === port) }

  learn(vni: number, hi: number, lo: number, port: number, now: number): R {
    if ((hi & 0x100) !== 0) return R.Multicast
    const key = this.k(vni, hi, lo)
    const e = this.m.get(key)
    if (e !== undefined) {
      if (e.exp > now) {
        if (e.port === port) { if (e.exp !== Infinity) e.exp = now + this.o.ageMs; return R.Refreshed }
        if (e.exp === Infinity) { this.counters[FdbCounter.StaticMoveRefused]++; return R.StaticKept }
        if (this.o.maxPerPort > 0 && this.sizeOfPort(port) >= this.o.maxPerPort) { this.counters[FdbCounter.LimitPort]++; return R.LimitPort }
        e.port = port; e.exp = now + this.o.ageMs
        this.counters[FdbCounter.Moved]++
        return R.Moved
      }
      this.m.delete(key)
      this.counters[FdbCounter.Aged]++
    }
    if (hi === 0 && lo === 0) return R.Invalid
    if (this.m.size >= this.o.maxEntries) { this.counters[FdbCounter.LimitTable]++; return R.LimitTable }
    if (this.o.maxPerVni > 0 && this.sizeOfVni(vni) >= this.o.maxPerVni) { this.counters[FdbCounter.LimitVni]++; return R.LimitVni }
    if (this.o.maxPerPort > 0 && this.sizeOfPort(port) >= this.o.maxPerPort) { this.counters[FdbCounter.LimitPort]++; return R.LimitPort }
    this.m.set(key, { port, exp: now + this.o.ageMs })
    this.counters[FdbCounter.Learned]++
    return R.Learned
  }

  lookup(vni: number, hi: number, lo: number, now: number): number {
    if ((hi & 0x100) !== 0) return -1
    const key = this.k(vni, hi, lo)
    const e = this.m.get(key)
    if (e === undefined) return -1
    if (e.exp > now) return e.port
    this.m.delete(key)
    this.counters[FdbCounter.Aged]++
    return -1
  }

  addStatic(vni: number, hi: number, lo: number, port: number): boolean {
    const key = this.k(vni, hi, lo)
    if (!this.m.has(key) && this.m.size >= this.o.maxEntries) return false
    this.m.set(key, { port, exp: Infinity })
    return true
  }

  removeStatic(vni: number, hi: number, lo: number): boolean {
    const key = this.k(vni, hi, lo)
    if (this.m.get(key)?.exp !== Infinity) return false
    this.m.delete(key)
    return true
  }

  removeWhere(pred: (key: string, e: ModelEntry) => boolean): number {
    let n = 0
    for (const [key, e] of [...this.m]) if (pred(key, e)) { this.m.delete(key); n++ }
    return n
  }
}

const rows: { name: string; seed: number; opts: Required<Omit<FdbOptions, 'seed'>> }[] = [
  { name: 'no caps', seed: 11, opts: { ageMs: 1000, maxEntries: 1 << 20, maxPerVni: 0, maxPerPort: 0 } },
  { name: 'tight table', seed: 12, opts: { ageMs: 1000, maxEntries: 24, maxPerVni: 0, maxPerPort: 0 } },
  { name: 'all caps', seed: 13, opts: { ageMs: 1000, maxEntries: 40, maxPerVni: 15, maxPerPort: 8 } },
]

const VNIS = 3
const PORTS = 6
const MACS = 40

for (const row of rows) {
  test(`fdb matches a Map model under random traffic: ${row.name}`, () => {
    const rnd = mulberry32(row.seed)
    const fdb = new Fdb({ ...row.opts, seed: row.seed })
    const model = new Model(row.opts)
    const buf = new Uint8Array(8)
    let now = 0
    for (let op = 0; op < 30_000; op++) {
      now += rnd() % 40
      const vni = rnd() % VNIS
      const port = rnd() % PORTS
      // MAC 0 is the zero MAC and every 13th is a group MAC.
      const n = rnd() % MACS
      const hi = n % 13 === 12 ? 0x0100 : n === 0 ? 0 : 0x0200
      const lo = n === 0 ? 0 : (0x80000000 + n) >>> 0
      buf[2] = hi >>> 8; buf[3] = hi & 255
      buf[4] = lo >>> 24; buf[5] = (lo >>> 16) & 255; buf[6] = (lo >>> 8) & 255; buf[7] = lo & 255
      const r = rnd() % 1000
      const ctx = `op ${op} at ${now}: vni ${vni} mac ${n} port ${port}`
      if (r < 550) {
        assert.equal(R[fdb.learn(vni, buf, 2, port, now)], R[model.learn(vni, hi, lo, port, now)], `learn ${ctx}`)
      } else if (r < 950) {
        assert.equal(fdb.lookup(vni, buf, 2, now), model.lookup(vni, hi, lo, now), `lookup ${ctx}`)
      } else if (r < 965) {
        if (hi === 0x0200) assert.equal(fdb.addStatic(vni, hi, lo, port), model.addStatic(vni, hi, lo, port), `addStatic ${ctx}`)
      } else if (r < 980) {
        assert.equal(fdb.removeStatic(vni, hi, lo), model.removeStatic(vni, hi, lo), `removeStatic ${ctx}`)
      } else if (r < 990) {
        const got = fdb.sweep(now)
        const want = model.removeWhere((_, e) => e.exp <= now)
        model.counters[FdbCounter.Aged] += want
        assert.equal(got, want, `sweep ${ctx}`)
      } else if (r < 995) {
        const want = model.removeWhere((_, e) => e.port === port)
        model.counters[FdbCounter.Flushed] += want
        assert.equal(fdb.removePort(port), want, `removePort ${ctx}`)
      } else {
        const want = model.removeWhere((key) => key.startsWith(`${vni}/`))
        model.counters[FdbCounter.Flushed] += want
        assert.equal(fdb.removeVni(vni), want, `removeVni ${ctx}`)
      }
      assert.equal(fdb.size, model.m.size, `size after ${ctx}`)
      if (op % 50 === 0) {
        for (let v = 0; v < VNIS; v++) assert.equal(fdb.sizeOfVni(v), model.sizeOfVni(v), `sizeOfVni ${v} after ${ctx}`)
        for (let p = 0; p < PORTS; p++) assert.equal(fdb.sizeOfPort(p), model.sizeOfPort(p), `sizeOfPort ${p} after ${ctx}`)
      }
    }
    assert.deepEqual([...fdb.counters], [...model.counters])
    // Every counter moved at least once in the capped rows.
    if (row.opts.maxPerPort > 0) assert.ok(fdb.counters.every((c) => c > 0), `counters ${fdb.counters.join(',')}`)
  })
}

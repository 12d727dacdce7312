/**
 * The allocation benchmark runs in CI in its short mode so it cannot rot. It
 * needs no root (every port is in memory). Checked: the run completes, its
 * report has every mix with its figures, every mix did what it says (no
 * drops, the same counters every round), the exit code agrees with the
 * verdict, and both controls, which allocate per frame on purpose, are
 * caught. And the hot path's claim itself, on the figure that does not depend
 * on the collector's timing: no real mix allocates more than
 * MAX_ALLOCATED_BYTES_PER_FRAME per frame (every byte allocated while the
 * frames went through, garbage included). Scavenge counts and heap growth are
 * the full benchmark's verdict (`npm run bench` fails on them).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  MAX_ALLOCATED_BYTES_PER_FRAME, MAX_RETAINED_BYTES_PER_FRAME, MAX_SCAVENGES_PER_MILLION, MixResult,
} from '../../bench/alloc'

const ROOT = path.join(__dirname, '..', '..', '..')

const MIXES = [
  'pod -> pod (local)', 'pod -> VXLAN (encap)', 'VXLAN -> pod (decap)', 'VXLAN -> pod, GRO merge',
  'TSO super-frame -> VXLAN', 'service DNAT + reverse NAT', 'ARP', 'broadcast flood', 'all of the above, interleaved',
  'control: Buffer.from per frame', 'control: kept per frame',
]

interface Report {
  pass: boolean
  valid: boolean
  failures: string[]
  settings: { framesPerMix: number; warmupFrames: number }
  mixes: MixResult[]
}

test('bench/alloc.js --short measures every mix and catches both controls', () => {
  const r = spawnSync(process.execPath, ['--expose-gc', path.join(ROOT, 'dist', 'bench', 'alloc.js'), '--short'], {
    cwd: ROOT, encoding: 'utf8', timeout: 240_000,
  })
  const out = `${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`
  assert.ok(r.status === 0 || r.status === 1, `exit ${r.status} (signal ${r.signal}):\n${out}`)
  const m = /^results: (.+\.json)$/m.exec(r.stdout)
  assert.ok(m, `no results line:\n${out}`)
  const file = path.resolve(ROOT, m[1])
  try {
    const rep = JSON.parse(fs.readFileSync(file, 'utf8')) as Report
    assert.equal(r.status, rep.pass ? 0 : 1, 'the exit code follows the verdict')
    assert.deepEqual(rep.mixes.map((x) => x.name), MIXES)
    assert.equal(rep.settings.framesPerMix, 300_000)
    for (const x of rep.mixes) {
      assert.equal(x.error, null, `${x.name}: ${x.error}`)
      assert.ok(x.frames >= 300_000 && x.frames === x.rounds * x.framesPerRound, `${x.name}: ${x.frames} frames`)
      assert.ok(x.warmupFrames >= 100_000, `${x.name}: warm-up of ${x.warmupFrames} frames`)
      for (const h of [x.before, x.after, x.afterGc]) assert.ok(h.used > 0 && h.arrayBuffers >= 0, `${x.name}: heap figures`)
      for (const v of [x.retainedBytesPerFrame, x.allocatedBytesPerFrame, x.scavengesPerMillion]) assert.ok(Number.isFinite(v), `${x.name}: figures`)
      for (const k of ['scavenges', 'markSweeps', 'incremental', 'weak'] as const) assert.ok(Number.isInteger(x.gc[k]) && x.gc[k] >= 0)
      // What the mix did: frames read and sent, no drop.
      assert.ok(x.counters['frames read'] > 0, `${x.name}: nothing read`)
      assert.equal(x.counters['datapath drops'], 0, `${x.name}: drops`)
      assert.equal(x.counters['service drops'], 0, `${x.name}: service drops`)
      if (x.control === null) assert.ok(x.allocatedBytesPerFrame <= MAX_ALLOCATED_BYTES_PER_FRAME, `${x.name} allocates ${x.allocatedBytesPerFrame.toFixed(2)} B per frame (bench/alloc.js --only '${x.name}' --where shows where)`)
      if (x.control !== null) assert.ok(x.allocates.length > 0, `${x.name} was not caught`)
      else assert.equal(rep.failures.some((f) => f.startsWith(`${x.name} allocates`)), x.allocates.length > 0, `${x.name}: verdict and failures agree`)
    }
    const garbage = rep.mixes.find((x) => x.control === 'garbage')!
    assert.ok(garbage.scavengesPerMillion > MAX_SCAVENGES_PER_MILLION, `garbage control: ${garbage.scavengesPerMillion} scavenges/M`)
    assert.ok(garbage.allocatedBytesPerFrame > MAX_ALLOCATED_BYTES_PER_FRAME, `garbage control: ${garbage.allocatedBytesPerFrame} B/frame`)
    assert.ok(garbage.gc.scavenges > 0)
    const kept = rep.mixes.find((x) => x.control === 'retained')!
    assert.ok(kept.retainedBytesPerFrame > MAX_RETAINED_BYTES_PER_FRAME, `kept control: ${kept.retainedBytesPerFrame} B/frame`)
    assert.equal(rep.valid, true, rep.failures.join('\n'))
    assert.match(r.stdout, /\| mix +\| frames \|/)
    assert.match(r.stdout, /control: caught/)
    assert.match(r.stdout, rep.pass ? /^PASS: /m : /^FAIL: /m)
  } finally {
    fs.rmSync(file, { force: true })
  }
})

/**
 * The benchmarks run in CI in their short mode so they cannot rot: both must
 * finish, print their tables with the kernel baseline beside Tapestry, and
 * write their result files. The figures themselves are not checked (shared,
 * noisy machines); bench/RESULTS.md records measured runs.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Lab } from '../harness/lab'

const ROOT = path.join(__dirname, '..', '..', '..')
const RESULTS = path.join(ROOT, 'bench', 'results')

function newFiles(before: Set<string>): string[] {
  return fs.existsSync(RESULTS) ? fs.readdirSync(RESULTS).filter((f) => !before.has(f)) : []
}

test('npm run bench (short mode) runs the microbenchmarks beside the kernel veth', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const before = new Set(fs.existsSync(RESULTS) ? fs.readdirSync(RESULTS) : [])
  const r = await lab.execAsync(null, [process.execPath, path.join(ROOT, 'dist', 'bench', 'micro.js'), '--short'], 240_000)
  assert.equal(r.code, 0, r.stdout.slice(-2000) + r.stderr.slice(-2000))
  assert.match(r.stdout, /vxlan parse/)
  assert.match(r.stdout, /fdb lookup/)
  assert.match(r.stdout, /kernel: veth pair/)
  const files = newFiles(before).filter((f) => f.startsWith('micro-'))
  assert.ok(files.length >= 1, 'no result file written')
  for (const f of files) fs.rmSync(path.join(RESULTS, f))
})

test('npm run bench:e2e (short mode) measures Tapestry and the kernel path in one run', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const before = new Set(fs.existsSync(RESULTS) ? fs.readdirSync(RESULTS) : [])
  const r = await lab.execAsync(null, [process.execPath, path.join(ROOT, 'dist', 'bench', 'e2e.js'), '--short'], 300_000)
  assert.equal(r.code, 0, r.stdout.slice(-2000) + r.stderr.slice(-2000))
  assert.match(r.stdout, /kernel/)
  assert.match(r.stdout, /Tapestry/)
  assert.match(r.stdout, /TCP, 1 stream/)
  const files = newFiles(before).filter((f) => f.startsWith('e2e-'))
  assert.ok(files.some((f) => f.endsWith('.json')) && files.some((f) => f.endsWith('.svg')) && files.some((f) => f.endsWith('.md')), `result files: ${files}`)
  for (const f of files) fs.rmSync(path.join(RESULTS, f))
})

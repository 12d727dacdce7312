/**
 * The end-to-end report's comparison lines: Tapestry's TCP 1-stream figure
 * against each other userspace overlay in the run (the "at least 5x"),
 * and VIP against direct requests; paths without a figure are left out.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { overlayLines, vipLines, Results } from '../../../bench/lib/e2e-report'
import { BenchPath } from '../../../bench/lib/e2e-paths'

const path = (id: BenchPath['id'], label: string): BenchPath =>
  ({ id, label, description: '', ep: { clientNs: '', serverNs: '', serverIp: '' }, dataplanePids: [], details: {} }) as BenchPath

const PATHS = [path('kernel', 'kernel vxlan'), path('tapestry', 'Tapestry'), path('tinc', 'tinc'), path('ovs', 'OVS userspace'), path('veth', 'veth')]

test('overlayLines: one line per other overlay with a figure, with the ratio', () => {
  const r: Results = { 'tcp-1': { kernel: { value: 15 }, tapestry: { value: 8 }, tinc: { value: 1.6 }, ovs: { value: 2 }, veth: { value: 18 } } }
  assert.deepEqual(overlayLines(r, PATHS), [
    'TCP 1 stream: Tapestry 8.00 Gbit/s vs tinc 1.60 Gbit/s (5.0x).',
    'TCP 1 stream: Tapestry 8.00 Gbit/s vs OVS userspace 2.00 Gbit/s (4.0x).',
  ])
  // A failed or missing figure: no line for that path, none at all without Tapestry's.
  assert.deepEqual(overlayLines({ 'tcp-1': { tapestry: { value: 8 }, tinc: { error: 'x' } } }, PATHS), [])
  assert.deepEqual(overlayLines({ 'tcp-1': { tinc: { value: 1 }, ovs: { value: 1 } } }, PATHS), [])
})

test('vipLines: VIP against direct for paths that have both', () => {
  const r: Results = { 'rr-direct': { tapestry: { value: 20000 }, kernel: { value: 120000 } }, 'rr-vip': { tapestry: { value: 19000 } } }
  assert.deepEqual(vipLines(r, PATHS), ['Tapestry: via service VIP 19000 req/s vs direct to pod IP 20000 req/s (VIP / direct = 0.95).'])
})

import assert from 'node:assert/strict'
import { Fdb, FdbCounter, FDB_COUNTER_COUNT, LearnResult } from '../../../src/switch/fdb'
import { macBytes, macParse } from '../../../src/wire/addr'

/**
 * Table-driven FDB tests: a case is a list of learn/lookup steps, each with
 * the answer it must get. MACs sit at byte 6 of a 0xa5-filled buffer (the
 * Ethernet source position), so every read goes through a non-zero offset.
 */

export const MAC_OFF = 6

export function frameWith(mac: string): Uint8Array {
  const m = macParse(mac)
  if (m === null) throw new Error(`bad MAC in test: ${mac}`)
  const buf = new Uint8Array(MAC_OFF + 6 + 2).fill(0xa5)
  buf.set(macBytes(m), MAC_OFF)
  return buf
}

export function mac(text: string): { hi: number; lo: number } {
  const m = macParse(text)
  if (m === null) throw new Error(`bad MAC in test: ${text}`)
  return m
}

export interface LearnStep { op: 'learn'; vni: number; mac: string; port: number; now: number; want: LearnResult }
export interface LookupStep { op: 'lookup'; vni: number; mac: string; now: number; want: number }
export interface SweepStep { op: 'sweep'; now: number; want: number }
export type Step = LearnStep | LookupStep | SweepStep

export const learn = (vni: number, mac: string, port: number, now: number, want: LearnResult): LearnStep =>
  ({ op: 'learn', vni, mac, port, now, want })
export const lookup = (vni: number, mac: string, now: number, want: number): LookupStep =>
  ({ op: 'lookup', vni, mac, now, want })
export const sweep = (now: number, want: number): SweepStep => ({ op: 'sweep', now, want })

export function runSteps(fdb: Fdb, steps: Step[]): void {
  steps.forEach((s, i) => {
    switch (s.op) {
      case 'learn': {
        const got = fdb.learn(s.vni, frameWith(s.mac), MAC_OFF, s.port, s.now)
        assert.equal(LearnResult[got], LearnResult[s.want], `step ${i}: learn vni ${s.vni} ${s.mac} port ${s.port} at ${s.now}`)
        break
      }
      case 'lookup':
        assert.equal(fdb.lookup(s.vni, frameWith(s.mac), MAC_OFF, s.now), s.want, `step ${i}: lookup vni ${s.vni} ${s.mac} at ${s.now}`)
        break
      case 'sweep':
        assert.equal(fdb.sweep(s.now), s.want, `step ${i}: sweep at ${s.now}`)
        break
    }
  })
}

/** Non-zero counters by name, so a test states every counter it expects. */
export function counters(fdb: Fdb): Record<string, number> {
  const out: Record<string, number> = {}
  for (let i = 0; i < FDB_COUNTER_COUNT; i++) if (fdb.counters[i] !== 0) out[FdbCounter[i]] = fdb.counters[i]
  return out
}

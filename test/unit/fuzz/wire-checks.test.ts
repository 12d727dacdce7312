/**
 * Every wire `*Check` against random and mutated input (STYLE.md §4): it never
 * throws, returns an integer that is either a known Malformed code or a header
 * length in (0, min(len, buf.length - off)], reads only [off, off + len) (an
 * exact copy of those bytes gets the same answer), and refuses negative
 * offsets. Each check gets fuzzCases() inputs (100,000 in CI, TAPESTRY_FUZZ_N
 * for more) plus every truncation of every template.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ethCheck } from '../../../src/wire/ethernet'
import { arpCheck } from '../../../src/wire/arp'
import { ipv4Check, ipv4CheckWithChecksum } from '../../../src/wire/ipv4'
import { ipv6Check } from '../../../src/wire/ipv6'
import { tcpCheck } from '../../../src/wire/tcp'
import { udpCheck } from '../../../src/wire/udp'
import { icmpCheck } from '../../../src/wire/icmp'
import { vxlanCheck } from '../../../src/wire/vxlan'
import { Malformed } from '../../../src/wire/malformed'
import { assertReached, baseSeed, below, chance, forEachCase, fuzzCases, fuzzInput, hexHead, randomBytes } from '../../harness/fuzz'
import { frameTemplates, l3Templates, l4Templates, vxlanTemplates } from '../../harness/fuzz-frames'

type Check = (buf: Uint8Array, off: number, len: number) => number

const N = fuzzCases()
const BASE = baseSeed(0x7a9e5701)
/** Seeds of failures found so far (none: every check held). */
const REGRESSION_SEEDS: Record<string, number[]> = {}

const FRAMES = frameTemplates()
const ARP = 0x0806

const CHECKS: { name: string; check: Check; templates: Uint8Array[] }[] = [
  { name: 'ethCheck', check: ethCheck, templates: FRAMES },
  { name: 'arpCheck', check: arpCheck, templates: l3Templates(FRAMES, ARP) },
  { name: 'ipv4Check', check: ipv4Check, templates: l3Templates(FRAMES, 0x0800) },
  { name: 'ipv4CheckWithChecksum', check: ipv4CheckWithChecksum, templates: l3Templates(FRAMES, 0x0800) },
  { name: 'ipv6Check', check: ipv6Check, templates: l3Templates(FRAMES, 0x86dd) },
  { name: 'tcpCheck', check: tcpCheck, templates: l4Templates(FRAMES, 6) },
  { name: 'udpCheck', check: udpCheck, templates: l4Templates(FRAMES, 17) },
  { name: 'icmpCheck', check: icmpCheck, templates: l4Templates(FRAMES, 1) },
  { name: 'vxlanCheck', check: vxlanCheck, templates: vxlanTemplates(42, FRAMES.slice(0, 4)) },
]

function fail(name: string, why: string, buf: Uint8Array, off: number, len: number, r: number): never {
  throw new Error(`${name}(buf, ${off}, ${len}) = ${r}: ${why}; buf ${hexHead(buf)}`)
}

/** The safety property for one call; returns the result. */
function checkSafe(name: string, check: Check, buf: Uint8Array, off: number, len: number): number {
  let r: number
  try {
    r = check(buf, off, len)
  } catch (err) {
    return fail(name, `threw ${(err as Error).message}`, buf, off, len, NaN)
  }
  if (!Number.isInteger(r) || r === 0) fail(name, 'not a length or a Malformed code', buf, off, len, r)
  if (r < 0) {
    if (Malformed[r] === undefined) fail(name, 'unknown Malformed code', buf, off, len, r)
  } else {
    if (off < 0) fail(name, 'accepted a negative offset', buf, off, len, r)
    if (r > len) fail(name, 'length beyond len', buf, off, len, r)
    if (r > buf.length - off) fail(name, 'length beyond the buffer', buf, off, len, r)
  }
  if (off >= 0) {
    const avail = Math.max(0, Math.min(len, buf.length - off))
    const exact = buf.slice(off, off + avail)
    const again = check(exact, 0, exact.length)
    if (again !== r) fail(name, `reads outside [off, off+len): on an exact copy it answers ${again}`, buf, off, len, r)
  }
  return r
}

for (const { name, check, templates } of CHECKS) {
  test(`${name}: never throws, never reports a length beyond the buffer (${N} random and mutated inputs)`, () => {
    assert.ok(templates.length > 0, 'templates')
    for (const t of templates) assert.ok(check(t, 0, t.length) > 0, `${name}: a template does not check: ${hexHead(t)}`)
    // Every truncation of every template, alone and inside garbage.
    for (const t of templates) {
      for (let k = 0; k <= t.length; k++) {
        checkSafe(name, check, t, 0, k)
        const g = new Uint8Array(k + 11).fill(0xa5)
        g.set(t.subarray(0, k), 3)
        checkSafe(name, check, g, 3, k)
      }
    }
    let accepted = 0
    let refused = 0
    forEachCase(name, BASE, N, REGRESSION_SEEDS[name] ?? [], (rng) => {
      const body = fuzzInput(rng, templates)
      const pre = chance(rng, 0.5) ? 0 : below(rng, 9)
      const post = chance(rng, 0.5) ? 0 : below(rng, 9)
      const buf = pre === 0 && post === 0 ? body : new Uint8Array(pre + body.length + post)
      if (buf !== body) { buf.set(randomBytes(rng, buf.length), 0); buf.set(body, pre) }
      let off = pre
      let len = body.length
      switch (below(rng, 8)) {
        case 0: len = below(rng, buf.length - off + 64); break // len past the buffer
        case 1: len = 0x7fffffff; break // a huge length
        case 2: off = buf.length + below(rng, 4); len = below(rng, 64); break // offset at or past the end
        case 3: off = -1 - below(rng, 8); break // negative offset: must be refused
        case 4: len = -below(rng, 100); break // negative length
        default: break
      }
      const r = checkSafe(name, check, buf, off, len)
      if (r > 0) accepted++
      else refused++
    })
    // The fuzzer reached both paths (else it proves nothing).
    assertReached(accepted > N / 50, N, `${name}: only ${accepted} of ${N} inputs accepted`)
    assertReached(refused > N / 50, N, `${name}: only ${refused} of ${N} inputs refused`)
  })
}

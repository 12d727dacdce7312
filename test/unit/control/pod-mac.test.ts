import { test } from 'node:test'
import assert from 'node:assert/strict'
import { derivePodMac } from '../../../src/control/config'
import { macFormat } from '../../../src/wire/addr'

const format = (name: string): string => { const m = derivePodMac(name); return macFormat(m.hi, m.lo) }

test('derivePodMac is pinned: FNV-1a 64 of the name, low 40 bits, behind 0x02', () => {
  // FNV-1a 64 of "" is the offset basis cbf29ce484222325; of "a" it is af63dc4c8601ec8c.
  // These values are a contract: changing them changes every pod's MAC on upgrade.
  assert.equal(format(''), '02:e4:84:22:23:25')
  assert.equal(format('a'), '02:4c:86:01:ec:8c')
})

test('derivePodMac is deterministic', () => {
  assert.deepEqual(derivePodMac('web-1'), derivePodMac('web-1'))
  assert.deepEqual(derivePodMac('web-1'), { hi: derivePodMac('web-1').hi, lo: derivePodMac('web-1').lo })
})

test('derivePodMac gives locally administered unicast MACs in range', () => {
  const seen = new Set<string>()
  for (let i = 0; i < 1000; i++) {
    const name = `pod-${i}`
    const { hi, lo } = derivePodMac(name)
    assert.equal(hi >>> 8, 0x02, `${name}: first octet`)
    assert.equal((hi >>> 8) & 1, 0, 'I/G bit clear: unicast')
    assert.equal((hi >>> 8) & 2, 2, 'U/L bit set: locally administered')
    assert.ok(Number.isInteger(hi) && hi >= 0 && hi <= 0xffff)
    assert.ok(Number.isInteger(lo) && lo >= 0 && lo <= 0xffffffff)
    seen.add(macFormat(hi, lo))
  }
  assert.equal(seen.size, 1000, 'no collisions among 1000 similar names')
})

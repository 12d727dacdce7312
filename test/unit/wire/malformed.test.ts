import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MALFORMED_COUNT, Malformed, malformedName } from '../../../src/wire/malformed'

test('codes are stable negative numbers (they index drop counters)', () => {
  assert.deepEqual(
    [Malformed.Truncated, Malformed.BadVersion, Malformed.BadHeaderLength, Malformed.BadTotalLength,
      Malformed.BadChecksum, Malformed.VxlanNoIFlag, Malformed.BadArp, Malformed.BadLength],
    [-1, -2, -3, -4, -5, -6, -7, -8],
  )
})

test('MALFORMED_COUNT covers every code, contiguous from -1', () => {
  const codes = Object.values(Malformed).filter((v): v is number => typeof v === 'number').sort((a, b) => b - a)
  assert.equal(codes.length, MALFORMED_COUNT)
  codes.forEach((c, i) => assert.equal(c, -(i + 1)))
})

test('malformedName names every code and survives unknown ones', () => {
  assert.equal(malformedName(Malformed.Truncated), 'Truncated')
  assert.equal(malformedName(Malformed.VxlanNoIFlag), 'VxlanNoIFlag')
  assert.equal(malformedName(Malformed.BadLength), 'BadLength')
  for (let c = -1; c >= -MALFORMED_COUNT; c--) assert.match(malformedName(c), /^[A-Z][A-Za-z]+$/)
  assert.equal(malformedName(-99), 'Malformed(-99)')
  assert.equal(malformedName(20), 'Malformed(20)')
})

/**
 * The config parser's object entry point, parseConfig, against random values
 * and mutations of a valid config (as YAML or JSON parse to; keys deleted,
 * values of every type and boundary, unknown keys, containers where scalars
 * were, duplicated list items, holes): the only exception it may throw is
 * ConfigError, with at least one problem, each a string path and message; an
 * accepted config comes back normalized. fuzzCases() inputs (100,000 in CI).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseConfig } from '../../../src/control/config'
import { assertReached, baseSeed, chance, forEachCaseCollect, fuzzCases } from '../../harness/fuzz'
import { mutateConfig, netnsOpt, onlyConfigError, randomValue, richConfig } from '../../harness/fuzz-config'

const N = fuzzCases()
const BASE = baseSeed(0xc0f16)
/** Seeds of failures found so far (none). */
const REGRESSION_SEEDS: number[] = []

test(`parseConfig: mutated configs throw only ConfigError (${N} inputs)`, () => {
  let accepted = 0
  forEachCaseCollect('object', BASE, N, REGRESSION_SEEDS, (rng) => {
    const input = chance(rng, 0.05) ? randomValue(rng) : mutateConfig(rng, richConfig(rng))
    if (onlyConfigError('parseConfig', () => parseConfig(input, netnsOpt(rng)))) accepted++
  })
  assertReached(accepted > N / 100, N, `only ${accepted} configs accepted: mutations too blunt to reach normalization`)
})

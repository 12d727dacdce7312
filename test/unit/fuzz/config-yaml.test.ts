/**
 * The config parser's text entry point, parseConfigText, against YAML
 * structure rather than config content: anchors built on anchors (the
 * billion-laughs shape), aliases, tags (!!set, !!omap, !!binary, custom),
 * directives, merge keys, block scalars, and soups of YAML syntax and random
 * text. The only exception it may throw is ConfigError. 60% of
 * parseConfigText's fuzzCases() budget (see config-text.test.ts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, parseConfigText } from '../../../src/control/config'
import { baseSeed, below, chance, forEachCaseCollect, fuzzCases, pick } from '../../harness/fuzz'
import { YAML_BITS, aliasChain, netnsOpt, onlyConfigError, randomString, textMutate } from '../../harness/fuzz-config'
import { anyNetns } from '../control/config-fixture'

/** This file's share of parseConfigText's budget (60%; config-text.test.ts has the rest). */
const HALF = fuzzCases() - Math.ceil(fuzzCases() * 0.4)
const BASE = baseSeed(0x9a41)
/**
 * Seeds of failures found so far (see the deterministic tests at the end):
 * - 0x71a89f22: aliases nested past the yaml library's limit: ReferenceError
 *   "Excessive alias count indicates a resource exhaustion attack";
 * - 0x9960500: an alias with no anchor: ReferenceError "Unresolved alias (the
 *   anchor must be set before the alias)".
 */
const REGRESSION_SEEDS: number[] = [0x71a89f22, 0x9960500]

process.removeAllListeners('warning')

const NODE = 'node: {name: host-a, underlayIP: 192.168.250.1}'
const SHAPES: ((r: () => number) => string)[] = [
  (r) => aliasChain(r),
  (r) => `${NODE}\npeers: &p [192.168.250.2]\nx: *${pick(r, ['p', 'q', 'P', 'p '])}\n`,
  (r) => `%YAML 1.1\n---\n${NODE}\n${pick(r, ['peers', 'networks', 'pods', 'fdb'])}: !!${pick(r, ['set', 'omap', 'binary', 'timestamp', 'pairs', 'int', 'float', 'bool'])} ${pick(r, ['{a, b}', '[a: 1]', 'aGVsbG8=', '2001-12-14', '0x1f', 'yes'])}\n`,
  (r) => `${NODE}\n<<: {${pick(r, ['peers: [1.2.3.4]', 'node: 1', 'learnPeers: yes'])}}\n`,
  (r) => `${NODE}\nlog: {level: ${pick(r, ['|\n  debug', '>-\n  info', '!foo bar', '"\\u0000"', '&x debug', '*x'])}}\n`,
  (r) => `--- ${NODE}\n${pick(r, ['---\n', '...\n', '%TAG ! tag:x,2000:\n---\n', ''])}${NODE}\n`,
  (r) => `? ${pick(r, ['[a, b]', '{a: 1}', 'node'])}\n: ${pick(r, ['c', NODE, '*a'])}\n`,
  (r) => Array.from({ length: below(r, 30) }, () => pick(r, YAML_BITS) + randomString(r)).join(''),
]

test(`parseConfigText: YAML structure throws only ConfigError (${HALF} inputs)`, () => {
  forEachCaseCollect('yaml', BASE, HALF, REGRESSION_SEEDS, (rng) => {
    let text = pick(rng, SHAPES)(rng)
    if (chance(rng, 0.3)) text = textMutate(rng, text)
    onlyConfigError('parseConfigText', () => parseConfigText(text, netnsOpt(rng)))
  })
})

/**
 * Was a bug, fixed in config.ts since (seed 0x71a89f22): a YAML file whose aliases expand past the yaml
 * library's limit (a billion-laughs shape, here 6 levels of 9) makes
 * doc.toJS() throw ReferenceError "Excessive alias count indicates a resource
 * exhaustion attack" out of parseConfigText/loadConfigFile, so `tapestry agent
 * --config` dies with a stack trace instead of "config refused" (agent-command
 * catches only ConfigError and ConfigReadError). Expected: a ConfigError
 * naming the problem.
 */
test('parseConfigText: an alias bomb is a ConfigError, not a ReferenceError', () => {
  const lines = ['node: {name: host-a, underlayIP: 192.168.250.1}', 'a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]']
  for (let i = 1; i < 6; i++) lines.push(`a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]`)
  let thrown: unknown
  try { parseConfigText(lines.join('\n') + '\n', anyNetns) } catch (err) { thrown = err }
  assert.ok(thrown instanceof ConfigError, `threw ${(thrown as Error)?.constructor?.name}: ${(thrown as Error)?.message}`)
})

/**
 * Was a bug, fixed since (seed 0x9960500), same cause: an alias whose anchor does not exist, as
 * a typo makes (`peers: *peer`), is not in doc.errors; doc.toJS() throws
 * ReferenceError "Unresolved alias (the anchor must be set before the alias)".
 * Expected: a ConfigError with the line of the alias.
 */
test('parseConfigText: an alias without its anchor is a ConfigError, not a ReferenceError', () => {
  let thrown: unknown
  try { parseConfigText('node: {name: host-a, underlayIP: 192.168.250.1}\npeers: *peer\n', anyNetns) } catch (err) { thrown = err }
  assert.ok(thrown instanceof ConfigError, `threw ${(thrown as Error)?.constructor?.name}: ${(thrown as Error)?.message}`)
})

/**
 * Generators for the config fuzz tests (not a test file itself): random values
 * of the kinds YAML and JSON produce, mutations of a valid config object, and
 * YAML-ish text (syntax bits, anchors, aliases, tags, directives).
 */
import assert from 'node:assert/strict'
import { ConfigError } from '../../src/control/config'
import { Rng, below, chance, pick, randomBytes } from './fuzz'
import { anyNetns, validConfig } from '../unit/control/config-fixture'

/** Whether netns exists: a fixed answer per case, so rules that look at it run both ways. */
export function netnsOpt(rng: Rng): { netnsExists: (s: string) => boolean } {
  return chance(rng, 0.8) ? anyNetns : { netnsExists: () => false }
}

// ---- values

const STRINGS = [
  '', ' ', 'host-a', 'blue', 'red', 'web-1', 'eth0', 'pA', '/proc/1/ns/net', '/', '..', '.', 'a/b', 'x'.repeat(300),
  '10.244.0.1', '10.244.1.2/16', '10.244.0.0/16', '10.244.1.0/24', '192.168.250.1', '0.0.0.0', '255.255.255.255', '224.0.0.1',
  '10.244.1.300/16', '10.244.1.2/33', '1.2.3', '01.2.3.4', '1.2.3.4/', '/16', '::1', '[::1]:9464', '127.0.0.1:9464', ':0',
  '02:00:0a:f4:01:03', '03:00:00:00:00:01', '00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff', '02-00-0a-f4-01-03', 'zz:zz:zz:zz:zz:zz',
  'http://127.0.0.1:2379', 'https://etcd', 'ftp://x', 'http://user@h:1/p', '/tapestry', '/t/', 'debug', 'silent', 'LOUD',
  '__proto__', 'constructor', 'toString', 'hasOwnProperty', '\u0000', 'é', '\u{1f600}', 'a\nb', '0x10', '1e3', 'true', 'null',
]
const NUMBERS = [0, 1, -1, 2, 42, 43, 4789, 8472, 65535, 65536, 0xffffff, 0x1000000, 1500, 576, 575, 68, 1.5, -0.5, 1e21, -1e21,
  Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2, Number.MIN_VALUE, NaN, Infinity, -Infinity, -0, 2 ** 32, 2 ** 31 - 1]

export function randomString(rng: Rng): string {
  if (chance(rng, 0.6)) {
    let s = pick(rng, STRINGS)
    if (chance(rng, 0.3) && s.length > 0) {
      const i = below(rng, s.length)
      s = s.slice(0, i) + String.fromCharCode(below(rng, 128)) + s.slice(i + (chance(rng, 0.5) ? 1 : 0))
    }
    return s
  }
  return Array.from(randomBytes(rng, below(rng, 20)), (b) => String.fromCharCode(b % 2 === 0 ? 32 + (b % 95) : b)).join('')
}

/** A random value of the kinds YAML or JSON produce (and a few they do not: -0, NaN, Infinity, holes). */
export function randomValue(rng: Rng, depth = 0): unknown {
  switch (below(rng, depth > 2 ? 5 : 8)) {
    case 0: return null
    case 1: return chance(rng, 0.5)
    case 2: return chance(rng, 0.7) ? pick(rng, NUMBERS) : (rng() | 0) / pick(rng, [1, 7, 1000])
    case 3: case 4: return randomString(rng)
    case 5: return Array.from({ length: below(rng, 4) }, () => randomValue(rng, depth + 1))
    case 6: {
      const o: Record<string, unknown> = {}
      for (let i = below(rng, 4); i > 0; i--) o[randomString(rng)] = randomValue(rng, depth + 1)
      return o
    }
    default: return undefined
  }
}

// ---- object mutations

type Container = Record<string, unknown> | unknown[]

/** Every (container, key) in the value, to pick one to change. */
function slots(v: unknown, out: [Container, string | number][] = []): [Container, string | number][] {
  if (Array.isArray(v)) v.forEach((x, i) => { out.push([v, i]); slots(x, out) })
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) { out.push([v as Record<string, unknown>, k]); slots((v as Record<string, unknown>)[k], out) }
  return out
}

export function mutateConfig(rng: Rng, cfg: Record<string, unknown>): unknown {
  const rounds = 1 + below(rng, 4)
  for (let r = 0; r < rounds; r++) {
    const all = slots(cfg)
    const [c, k] = pick(rng, all)
    const obj = c as Record<string | number, unknown>
    switch (below(rng, 8)) {
      case 0: if (Array.isArray(c)) c.splice(k as number, 1); else delete obj[k]; break
      case 1: case 2: obj[k] = randomValue(rng); break
      case 3: if (typeof obj[k] === 'string') obj[k] = randomString(rng); else obj[k] = pick(rng, NUMBERS); break
      case 4: if (!Array.isArray(c)) obj[randomString(rng)] = randomValue(rng); else c.push(structuredClone(c[below(rng, c.length)] ?? null)); break
      case 5: if (Array.isArray(c)) c.push(randomValue(rng)); else obj[k] = [obj[k]]; break
      case 6: obj[k] = structuredClone(pick(rng, all)[0]); break // a container where a value was (pods inside pods...)
      default: if (Array.isArray(c)) { c.length += 2 } else obj[k] = { ...(typeof obj[k] === 'object' && obj[k] !== null ? obj[k] as object : {}), extra: randomValue(rng) }
    }
  }
  if (chance(rng, 0.02)) return randomValue(rng)
  if (chance(rng, 0.02)) return pick(rng, [[], 'node: x', 42, null, undefined, Object.create(null)])
  return cfg
}

/** A config with more sections filled in than the fixture, so their rules run too. */
export function richConfig(rng: Rng): Record<string, unknown> {
  const c = validConfig()
  if (chance(rng, 0.5)) c.networks[0].podRange = '10.244.1.0/24'
  if (chance(rng, 0.3)) c.fdb = { ageSeconds: 300, maxEntries: 1000, maxPerVni: 100, maxPerPort: 10 }
  if (chance(rng, 0.3)) c.storm = { floodPerSecond: 100, burst: 10 }
  if (chance(rng, 0.3)) c.vxlan = { srcPortMin: 40000, srcPortMax: 50000 }
  if (chance(rng, 0.2)) c.cluster = { etcd: ['http://127.0.0.1:2379'], prefix: '/tapestry', leaseTTL: 10, blockPrefix: 24 }
  if (chance(rng, 0.2)) c.metrics = { listen: '127.0.0.1:9464' }
  if (chance(rng, 0.2)) c.api = { socket: '/run/tapestry/x.sock' }
  if (chance(rng, 0.2)) c.node.podMtu = 1400
  return c
}

/** Parses, and allows only success or a well-formed ConfigError. Returns whether it was accepted. */
export function onlyConfigError(what: string, parse: () => unknown): boolean {
  let r: unknown
  try {
    r = parse()
  } catch (err) {
    if (!(err instanceof ConfigError)) {
      const e = err as Error
      const kind = `${e?.constructor?.name ?? typeof err} ${String(e?.message ?? err).split(/\s+/).slice(0, 4).join(' ')}`.replace(/[^A-Za-z0-9 -]/g, '')
      throw new Error(`[${kind}] ${what} threw ${e?.constructor?.name}: ${String(e?.message ?? err).slice(0, 300)}`)
    }
    assert.equal(err.code, 'TAPESTRY_CONFIG_INVALID')
    assert.ok(err.problems.length > 0, `[empty problems] ${what}: a ConfigError without problems`)
    for (const p of err.problems) assert.ok(typeof p.path === 'string' && typeof p.message === 'string' && p.message !== '', `[bad problem] ${what}: ${JSON.stringify(p)}`)
    return false
  }
  const c = r as { node?: { name?: unknown }; pods?: unknown }
  assert.ok(typeof c?.node?.name === 'string' && Array.isArray(c.pods), `[bad result] ${what}: accepted but not normalized`)
  return true
}

// ---- YAML-ish text

export const YAML_BITS = [
  ': ', ':', '- ', '-', '? ', '{', '}', '[', ']', ',', '#', '&a ', '*a', '&b ', '*b', '!!str ', '!!int ', '!!float ', '!!map ',
  '!!seq ', '!!set ', '!!omap ', '!!binary ', '!!timestamp ', '!!null ', '!foo ', '<<: ', '---\n', '...\n', '%YAML 1.1\n',
  '%TAG ! tag:x,2000:\n', '|\n  ', '>\n  ', '"', "'", '\\', '\t', '\n', '\n  ', '\r\n', '~', '.nan', '.inf', '-.inf', '0x1f',
  '0o17', '1_000', '2001-12-14', 'yes', 'no', 'on', '\u00a0', '\ufeff', '\u0085',
]

export function textMutate(rng: Rng, s: string): string {
  const rounds = 1 + below(rng, 5)
  for (let r = 0; r < rounds; r++) {
    const at = below(rng, s.length + 1)
    switch (below(rng, 6)) {
      case 0: s = s.slice(0, at) + pick(rng, YAML_BITS) + s.slice(at); break
      case 1: s = s.slice(0, at) + s.slice(Math.min(s.length, at + 1 + below(rng, 10))); break
      case 2: s = s.slice(0, at); break
      case 3: { const b = below(rng, s.length + 1); s = s.slice(0, at) + s.slice(Math.min(at, b), Math.max(at, b)) + s.slice(at); break } // duplicate a run (repeated keys)
      case 4: s = s.slice(0, at) + String.fromCharCode(below(rng, 0x3000)) + s.slice(at + 1); break
      default: s = s.replace(/\n/, `\n${' '.repeat(below(rng, 4))}`)
    }
  }
  return s
}

/**
 * Anchors built on anchors: `a0: &a0 [x, x]`, `a1: &a1 [*a0, *a0, ...]`, and
 * so on. Expanded, this is fanout^depth nodes: the billion-laughs shape.
 */
export function aliasChain(rng: Rng): string {
  const depth = 2 + below(rng, 6)
  const fanout = 2 + below(rng, 9)
  const lines = [`a0: &a0 [${Array(fanout).fill('1').join(', ')}]`]
  for (let i = 1; i < depth; i++) lines.push(`a${i}: &a${i} [${Array(fanout).fill(`*a${i - 1}`).join(', ')}]`)
  const where = pick(rng, ['top', 'peers', 'pods'])
  const node = 'node: {name: host-a, underlayIP: 192.168.250.1}'
  if (where === 'top') return [node, ...lines].join('\n') + '\n'
  return `${node}\nx: [${lines.map((l) => `{${l}}`).join(', ')}]\n${where}: *a${depth - 1}\n`
}


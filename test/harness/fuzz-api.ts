/**
 * Random requests for the runtime API (not a test file itself), shared by the
 * unit fuzz test (in-memory requests) and the e2e test (a real agent's socket).
 */
import { Rng, below, chance, pick, randomBytes } from './fuzz'
import { mutateConfig, randomString, randomValue } from './fuzz-config'

export interface ApiRequest { method: string; url: string; body: Buffer | null }

export interface RequestOptions {
  /** The config file the agent runs, as parsed YAML (apply bodies mutate it). */
  fileConfig: () => Record<string, unknown>
  /** Namespaces pod requests name: some exist (so requests can pass validation), the rest are made up. */
  netns: readonly string[]
  /**
   * Whether to use request-targets the WHATWG URL parser refuses (`http://a:99999/`,
   * `//a:99999`, `/\\a:99999`): they crash the agent (see api-bodies.test.ts), which
   * the e2e test checks on its own so that the body fuzzing is not cut short.
   */
  absoluteTargets: boolean
}

// ---- request generators

const PATHS = ['/v1/pods', '/v1/apply', '/v1/pods/web-1', '/v1/pods/x', '/v1/pods/', '/v1/pods/a/b', '/v1/fdb', '/v1/stats', '/v1/peers', '/', '/v1', '/v2/pods', '/v1/pods?x=1', '/v1/fdb?vni=abc', '/v1/fdb?vni=42']

function randomPath(rng: Rng, o: RequestOptions): string {
  const k = below(rng, 10)
  if (k < 6) return pick(rng, PATHS)
  if (k === 6) return `/v1/pods/${encodeURIComponent(randomString(rng).replace(/[\ud800-\udfff]/g, '?'))}`
  if (k === 7) return `/v1/pods/${pick(rng, ['%', '%zz', '%E0%A4%A', '%00', '%2F', '..', '%ff'])}`
  const p = k === 8 ? pick(rng, ['http://agent/v1/pods', '//v1/pods', 'v1/pods', '*', 'http://a:99999/', 'http://[::1/', 'http://%zz/', 'https://x:0/v1/pods']) : '/' + randomString(rng)
  if (o.absoluteTargets) return p
  try { new URL(p, 'http://agent'); return p } catch { return '/v1/pods' }
}

function podBody(rng: Rng, o: RequestOptions): unknown {
  const b: Record<string, unknown> = {}
  const field = (k: string, good: () => unknown): void => {
    const r = below(rng, 10)
    if (r < 6) b[k] = good()
    else if (r < 9) b[k] = randomValue(rng)
  }
  field('name', () => pick(rng, ['x1', 'x2', 'web-1', 'a', randomString(rng)]))
  field('netns', () => pick(rng, [...o.netns, 'tpy-no-such', randomString(rng)]))
  if (chance(rng, 0.5)) field('ip', () => pick(rng, ['10.244.1.9/16', '10.244.1.2/16', '10.250.0.9/24', '10.244.1.300/16', randomString(rng)]))
  if (chance(rng, 0.5)) field('network', () => pick(rng, ['blue', 'red', 'green', randomString(rng)]))
  if (chance(rng, 0.3)) field('mac', () => pick(rng, ['02:00:0a:f4:01:09', '03:00:00:00:00:01', randomString(rng)]))
  if (chance(rng, 0.3)) field('ifname', () => pick(rng, ['eth1', 'x'.repeat(20), 'a/b', randomString(rng)]))
  if (chance(rng, 0.3)) field('portSecurity', () => chance(rng, 0.5))
  if (chance(rng, 0.3)) field('containerId', () => randomString(rng))
  if (chance(rng, 0.1)) b[randomString(rng)] = randomValue(rng)
  return b
}

function applyBody(rng: Rng, o: RequestOptions): unknown {
  if (chance(rng, 0.1)) return { config: randomValue(rng) }
  if (chance(rng, 0.05)) return randomValue(rng)
  const cfg = o.fileConfig()
  return { config: chance(rng, 0.2) ? cfg : mutateConfig(rng, cfg) }
}

function bodyBytes(rng: Rng, v: unknown): Buffer | null {
  const k = below(rng, 20)
  if (k === 0) return null
  if (k === 1) return Buffer.from(randomBytes(rng, below(rng, 64)))
  if (k === 2) return Buffer.from(pick(rng, ['', ' ', '{', '[1,', '{"name":', 'null', '"x"', '1e999', '{"__proto__":{"name":"x"}}', '\ufeff{}']))
  const text = JSON.stringify(v) ?? 'null'
  if (k === 3 && text.length > 2) return Buffer.from(text.slice(0, below(rng, text.length)))
  return Buffer.from(text)
}

export function randomRequest(rng: Rng, o: RequestOptions): ApiRequest {
  const method = pick(rng, ['POST', 'POST', 'POST', 'DELETE', 'PUT', 'GET', 'PATCH'])
  const url = chance(rng, 0.6) ? pick(rng, ['/v1/pods', '/v1/apply']) : randomPath(rng, o)
  const v = url.startsWith('/v1/apply') ? applyBody(rng, o) : podBody(rng, o)
  return { method, url, body: bodyBytes(rng, v) }
}


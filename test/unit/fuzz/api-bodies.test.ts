/**
 * The runtime API's request handling against random requests, without a
 * socket or a started agent: ApiServer's request listener is called with an
 * in-memory request (a stream carrying the body) and response, on an Agent
 * that was never started and whose addPod only records (no TAP, no netns is
 * touched). Covered: URL parsing, the JSON body reader, POST /v1/pods (pod
 * add), DELETE /v1/pods/NAME, POST /v1/apply, unknown endpoints, and the
 * capture request checker (captureOptions).
 *
 * Property: the listener never throws (in the agent an exception there is
 * uncaught and ends the process); every request is answered once, 2xx or 4xx,
 * never 5xx; a 4xx body is JSON { error: { code, message } } with a string
 * code and message. fuzzCases() requests per test (100,000 in CI).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Agent } from '../../../src/agent'
import { ApiServer, captureOptions } from '../../../src/control/api'
import { parseConfig, PodConfig } from '../../../src/control/config'
import { TapestryError } from '../../../src/lib/errors'
import { silentLogger } from '../../../src/observe/log'
import { assertReached, baseSeed, caseSeed, chance, forEachCaseCollect, fuzzCases, mulberry32, pick } from '../../harness/fuzz'
import { randomValue } from '../../harness/fuzz-config'
import { randomRequest } from '../../harness/fuzz-api'

const N = fuzzCases()
const BASE = baseSeed(0xa91b0d1e)
/**
 * Seeds of failures found so far, by test (see the deterministic tests at the
 * end; both were fixed in api.ts while these tests were written, and stay as
 * regression cases):
 * - requests 0xd2ae9243: a request-target that is an absolute URL with a bad
 *   authority (`http://[::1/`, `http://a:99999/`) makes `new URL(req.url,
 *   'http://agent')` throw in the request listener, outside any try: in the
 *   agent, an uncaught exception;
 * - requests 0x9ad70d77: DELETE /v1/pods/%zz: decodeURIComponent throws
 *   URIError, answered 500 TAPESTRY_API_INTERNAL instead of 400.
 */
const REGRESSION_SEEDS: Record<string, number[]> = { requests: [0xd2ae9243, 0x9ad70d77] }

/** Namespaces that exist on any Linux host, so some pod requests pass validation (addPod is stubbed: nothing is created). */
const REAL_NETNS = ['/proc/self/ns/net', '/proc/1/ns/net']

/** An Agent whose pods are only recorded: no TAP, no namespace is touched. */
class RecordingAgent extends Agent {
  readonly added: string[] = []
  override async addPod(p: PodConfig): Promise<void> {
    this.added.push(p.name)
  }
}

function fileConfig(): Record<string, unknown> {
  return {
    node: { name: 'fuzz', underlayIP: '192.168.250.1' },
    networks: [
      { name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1', podRange: '10.244.1.0/24' },
      { name: 'red', vni: 43, subnet: '10.250.0.0/24' },
    ],
    peers: ['192.168.250.2'],
    pods: [{ name: 'web-1', network: 'blue', netns: REAL_NETNS[0], ip: '10.244.1.2/16' }],
    api: { socket: '/nonexistent/fuzz.sock' },
  }
}

function newServer(): { server: ApiServer; agent: RecordingAgent } {
  const raw = fileConfig()
  const agent = new RecordingAgent(parseConfig(raw), silentLogger(), raw, null)
  return { server: new ApiServer(agent, '/nonexistent/fuzz.sock'), agent }
}

interface Answer { status: number; body: string }

/**
 * Calls the server's request listener with an in-memory request and response;
 * resolves with the answer, or rejects if the listener throws or nothing is
 * answered within `ms`.
 */
function call(server: ApiServer, method: string, url: string, body: Buffer | null, ms = 2000): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const req = new PassThrough() as unknown as IncomingMessage & PassThrough
    Object.assign(req, { method, url, headers: {} })
    let status = 0
    let sent = false
    const timer = setTimeout(() => reject(new Error(`[no answer] ${method} ${url}: nothing answered in ${ms} ms`)), ms)
    const res = {
      get headersSent() { return sent },
      writeHead(code: number) { status = code; sent = true; return res },
      end(text?: string) { clearTimeout(timer); resolve({ status, body: text ?? '' }) },
      write() { return true },
      on() { return res },
      addTrailers() {},
      destroy() { clearTimeout(timer); resolve({ status: -1, body: '' }) },
    } as unknown as ServerResponse
    try {
      (server as unknown as { handle(q: IncomingMessage, s: ServerResponse): void }).handle(req, res)
    } catch (err) {
      clearTimeout(timer)
      reject(new Error(`[crash] ${method} ${url}: the request listener threw ${(err as Error).constructor.name}: ${(err as Error).message} (uncaught in the agent)`))
      return
    }
    if (body !== null) req.end(body)
    else req.end()
  })
}

function checkAnswer(what: string, a: Answer): void {
  if (a.status === -1) return // the server gave up on the connection (oversized body)
  assert.ok(a.status >= 200 && a.status < 500, `[${a.status}] ${what}: answered ${a.status}: ${a.body.slice(0, 300)}`)
  if (a.status >= 400) {
    let j: { error?: { code?: unknown; message?: unknown } }
    try { j = JSON.parse(a.body) } catch { return assert.fail(`[not json] ${what}: ${a.status} with a body that is not JSON: ${a.body.slice(0, 200)}`) }
    assert.ok(typeof j.error?.code === 'string' && typeof j.error?.message === 'string', `[bad error] ${what}: ${a.body.slice(0, 200)}`)
  }
}

test(`API requests: the listener never throws, answers 2xx or 4xx with a JSON error (${N} requests)`, async () => {
  let { server } = newServer()
  const seen = new Map<number, number>()
  let k = 0
  const failures: string[] = []
  // The listener answers asynchronously, so the cases run here rather than in forEachCase: the same seeds,
  // regression ones first, each request drawn from its own PRNG just before it is sent.
  const opts = { fileConfig, netns: REAL_NETNS, absoluteTargets: true }
  const seeds = function* (): Generator<number> {
    for (const s of REGRESSION_SEEDS.requests ?? []) yield s
    for (let i = 0; i < N; i++) yield caseSeed(BASE, i)
  }
  const kinds = new Map<string, { seed: number; count: number; message: string }>()
  for (const seed of seeds()) {
    const req = randomRequest(mulberry32(seed), opts)
    // A fresh agent now and then, so accepted pods do not pile up.
    if (k++ % 2000 === 0) ({ server } = newServer())
    try {
      const a = await call(server, req.method, req.url, req.body)
      seen.set(a.status, (seen.get(a.status) ?? 0) + 1)
      checkAnswer(`${req.method} ${req.url} ${req.body?.toString('utf8').slice(0, 120) ?? '(no body)'}`, a)
    } catch (err) {
      const m = (err as Error).message
      const kind = /^\[[^\]]+\]/.exec(m)?.[0] ?? m.slice(0, 60)
      const known = kinds.get(kind)
      if (known) known.count++
      else kinds.set(kind, { seed, count: 1, message: m })
    }
  }
  for (const [kind, f] of kinds) failures.push(`- ${kind} ${f.count} case(s), seed 0x${f.seed.toString(16)}: ${f.message.slice(0, 400)}`)
  assert.equal(failures.length, 0, `${failures.length} kind(s) of failure (statuses ${JSON.stringify(Object.fromEntries(seen))}):\n${failures.join('\n')}`)
  assertReached((seen.get(201) ?? 0) > 0, N, `no pod was added (statuses ${JSON.stringify([...seen])}): the generator never reaches the accepting path`)
})

test(`captureOptions: random capture requests are refused with a 4xx TapestryError, nothing else (${N} requests)`, () => {
  const { agent } = newServer()
  let accepted = 0
  forEachCaseCollect('capture', BASE ^ 0xca7, N, REGRESSION_SEEDS.capture ?? [], (rng) => {
    const r: Record<string, unknown> = {}
    for (const k of ['pod', 'vni', 'underlay', 'filter', 'count', 'durationS', 'snaplen', 'bufferBytes', 'extra']) {
      if (!chance(rng, 0.35)) continue
      r[k] = chance(rng, 0.5) ? randomValue(rng) : pick(rng, [
        'web-1', 42, 43, 7, true, false, 'tcp port 80', 'host 10.244.1.2 and not arp', '(((', 'vni 99999999', 0, 1, 64, 65535, -1, 1.5, 1e9, NaN,
      ])
    }
    const body = chance(rng, 0.05) ? randomValue(rng) : r
    try {
      captureOptions(agent, body)
      accepted++
    } catch (err) {
      const status = (err as { status?: number }).status
      assert.ok(err instanceof TapestryError, `[not a TapestryError] ${JSON.stringify(body)}: ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
      assert.ok(status === 400 || status === 404 || status === undefined, `[status ${status}] ${JSON.stringify(body)}`)
    }
  })
  assertReached(accepted > 0, N, 'no capture request accepted')
})

// ---- Regressions: bugs this fuzzer found (fixed in api.ts since), as deterministic tests

/**
 * Was a bug: ApiServer.handle() started with `new URL(req.url ?? '/', 'http://agent')`
 * outside any try. An HTTP request whose target is an absolute URL with an
 * invalid authority (`GET http://a:99999/ HTTP/1.1`, which Node's parser
 * accepts) makes it throw TypeError "Invalid URL" inside the 'request' event:
 * an uncaught exception that ends the agent (and with it the dataplane).
 * Expected: 400 with a JSON error. (test/e2e/harden-api.test.ts shows the
 * agent process exiting.)
 */
test('API: a request-target that is not a valid URL is answered 400, the listener does not throw', async () => {
  const { server } = newServer()
  const a = await call(server, 'GET', 'http://a:99999/', null)
  assert.equal(a.status, 400)
})

/**
 * Was a bug: DELETE /v1/pods/%zz: decodeURIComponent threw URIError in
 * handleWrite, which sendError mapped to 500 TAPESTRY_API_INTERNAL. Expected:
 * 400 (a bad pod name), like any other refused request.
 */
test('API: DELETE /v1/pods/ with a malformed percent-encoding is answered 400, not 500', async () => {
  const { server } = newServer()
  const a = await call(server, 'DELETE', '/v1/pods/%zz', null)
  assert.equal(a.status, 400, a.body)
})

/**
 * The runtime API of a real agent under random requests: a few thousand pod
 * add / delete / apply requests with random and mutated JSON bodies (and some
 * that are not JSON, or too large) over the agent's unix socket. The agent
 * keeps running and forwarding, and answers each request 2xx or 4xx with a
 * JSON error, never 5xx. A request whose target is not a valid URL must not
 * end the agent either.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import * as net from 'node:net'
import { Lab, parsePing, waitFor } from '../harness/lab'
import { Cluster, hostConfig } from '../harness/overlay'
import { apiSocket } from '../harness/fdb'
import { assertAgentAlive } from '../harness/harden'
import { baseSeed, caseSeed, mulberry32 } from '../harness/fuzz'
import { randomRequest } from '../harness/fuzz-api'

const VNI = 42
const REQUESTS = 3000

/** Node's client refuses paths with spaces and control or non-ASCII characters: send those percent-encoded. */
function clientSafe(path: string): string {
  return path.replace(/[^\x21-\x7e]/gu, (ch) => encodeURIComponent(ch.replace(/[\ud800-\udfff]/g, '?')))
}

function send(socketPath: string, method: string, path: string, body: Buffer | null): Promise<{ status: number; text: string }> {
  return new Promise((resolve) => {
    // Content-Length always: Node's client sends a DELETE body without framing otherwise (then the body reads as a bad next request).
    const headers = body === null ? {} : { 'content-length': String(body.length) }
    const req = http.request({ socketPath, method, path: clientSafe(path), headers, agent: false, timeout: 10_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { text += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      res.on('error', (e) => resolve({ status: -1, text: String(e) }))
    })
    req.on('error', (e) => resolve({ status: -1, text: String(e) }))
    req.on('timeout', () => { req.destroy(new Error('timeout')) })
    if (body !== null) req.end(body)
    else req.end()
  })
}

async function cluster(t: { after: (fn: () => Promise<void>) => void }) {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const nets = [{ name: 'blue', vni: VNI, subnet: '10.244.0.0/16', gateway: '10.244.0.1', podRange: '10.244.1.0/24' }]
  const p1 = { name: 'p1', ns: c.podNs('p1'), ip: '10.244.1.2' }
  const p2 = { name: 'p2', ns: c.podNs('p2'), ip: '10.244.1.3' }
  // Namespaces pod requests may name: made by this test, so a request that passes validation changes only them.
  const spare = [c.podNs('s1'), c.podNs('s2')]
  const sock = apiSocket(c.dir, a.name)
  const file = hostConfig(a, c.hosts, nets, [p1, p2].map((p) => ({ name: p.name, network: 'blue', netns: p.ns, ip: `${p.ip}/16` })), { api: { socket: sock } })
  await c.startAgent(a, file)
  return { lab, c, a, p1, p2, spare, sock, file }
}

test(`API: ${REQUESTS} random requests to a running agent are answered 2xx/4xx with a JSON error; the agent keeps forwarding`, { timeout: 300_000 }, async (t) => {
  const { lab, c, a, p1, p2, spare, sock, file } = await cluster(t)
  const opts = { fileConfig: () => structuredClone(file), netns: spare, absoluteTargets: false }
  const base = baseSeed(0xa91e2e)
  const statuses = new Map<number, number>()
  const bad: string[] = []
  const applied: string[] = []
  for (let i = 0; i < REQUESTS; i++) {
    const seed = caseSeed(base, i)
    const req = randomRequest(mulberry32(seed), opts)
    const r = await send(sock, req.method, req.url, req.body)
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
    let ok = r.status >= 200 && r.status < 500
    // A target that is not origin-form (`v1/pods`, `*`) is refused by Node's HTTP parser before the agent sees it: a bare 400.
    const httpLevel = !req.url.startsWith('/') && r.status === 400 && r.text === ''
    if (ok && r.status >= 400 && !httpLevel) {
      try { const j = JSON.parse(r.text); ok = typeof j.error?.code === 'string' && typeof j.error?.message === 'string' } catch { ok = false }
    }
    if (!ok && bad.length < 10) bad.push(`seed 0x${seed.toString(16)}: ${req.method} ${req.url} -> ${r.status} ${r.text.slice(0, 200)}`)
    if (r.status === -1) break // the agent is gone: stop and report
    if (r.status === 200 && req.url.startsWith('/v1/apply')) {
      // A mutated config can be valid: then it is applied, and may remove or change the running pods.
      const j = JSON.parse(r.text) as { added: string[]; removed: string[]; changed: string[] }
      if (j.removed.length + j.changed.length > 0) applied.push(`removed [${j.removed.join(',')}] changed [${j.changed.join(',')}]`)
    }
  }
  t.diagnostic(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}; applies that removed or changed pods: ${applied.length}`)
  assertAgentAlive(c, a)
  // Back to the original config (valid applies may have removed p1 and p2), then the pods talk without loss.
  const restore = await send(sock, 'POST', '/v1/apply', Buffer.from(JSON.stringify({ config: file })))
  assert.equal(restore.status, 200, `re-applying the original config: ${restore.text}`)
  const ping = await lab.execAsync(p1.ns, ['ping', '-c', '50', '-i', '0.05', '-W', '2', p2.ip], 60_000)
  assert.equal(parsePing(ping.stdout).received, 50, `p1 -> p2 after the requests: ${ping.stdout}`)
  assert.deepEqual(bad, [], `answers that were not 2xx/4xx JSON (statuses ${JSON.stringify(Object.fromEntries(statuses))})`)
})

/**
 * BUG (minor): a body over the 4 MiB limit gets no answer at all: readJson()
 * rejects and calls req.destroy(), which closes the connection before the 400
 * is written (the client sees ECONNRESET). Expected: 413 or 400 with a JSON
 * error. (DELETE /v1/pods/%zz was answered 500; fixed in api.ts since.)
 */
test('API: an oversized body and a malformed pod name are answered 4xx with a JSON error', { timeout: 120_000 }, async (t) => {
  const { c, a, sock } = await cluster(t)
  const huge = await send(sock, 'POST', '/v1/pods', Buffer.alloc(5 << 20, 0x20))
  const pct = await send(sock, 'DELETE', '/v1/pods/%zz', null)
  assertAgentAlive(c, a)
  const is4xxJson = (r: { status: number; text: string }) => {
    if (r.status < 400 || r.status >= 500) return false
    try { return typeof JSON.parse(r.text).error?.code === 'string' } catch { return false }
  }
  assert.deepEqual(
    { oversized: is4xxJson(huge), percent: is4xxJson(pct) }, { oversized: true, percent: true },
    `5 MiB body: ${huge.status} ${huge.text.slice(0, 160)}; DELETE /v1/pods/%zz: ${pct.status} ${pct.text.slice(0, 160)}`,
  )
})

/**
 * Regression (see test/unit/fuzz/api-bodies.test.ts): `GET http://a:99999/
 * HTTP/1.1` (or `GET //a:99999`) on the API socket made `new URL(...)` in
 * ApiServer.handle() throw outside any try: the agent process exited (code 1,
 * TypeError: Invalid URL), and with it every pod's connectivity. Fixed in api.ts since.
 */
test('API: a request-target that is not a valid URL does not end the agent', { timeout: 120_000 }, async (t) => {
  const { lab, c, a, p1, p2, sock } = await cluster(t)
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(sock, () => s.write('GET http://a:99999/ HTTP/1.1\r\nHost: x\r\n\r\n'))
    let text = ''
    s.on('data', (d) => { text += d.toString() })
    s.on('close', () => resolve(text))
    s.on('error', (e) => resolve(`error: ${e.message}`))
    s.setTimeout(3000, () => s.destroy())
  })
  // Give a dying agent the time to die, then look.
  await waitFor('the agent answers or exits', async () => c.agent(a)!.child.exitCode !== null || (await lab.execAsync(p1.ns, ['ping', '-c', '1', '-W', '1', p2.ip])).code === 0, 10_000)
  t.diagnostic(`reply: ${JSON.stringify(reply.slice(0, 200))}`)
  assertAgentAlive(c, a)
  assert.match(reply, /^HTTP\/1\.1 4\d\d/, 'answered with a 4xx')
})

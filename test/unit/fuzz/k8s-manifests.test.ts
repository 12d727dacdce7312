/**
 * The Kubernetes manifest reader, service/k8s-manifests.ts readManifests (what
 * `tapestry svc apply -f FILE` reads, then sends to the agent as JSON),
 * against fuzzCases() inputs in all (100,000 in CI, TAPESTRY_FUZZ_N for
 * more), in three shares:
 *
 * - objects (30%): valid Service, EndpointSlice, List and Tapestry-shape
 *   documents built as objects, then mutated (keys deleted, wrong types,
 *   huge, negative and fractional numbers, bad IPs, extra keys, deep nesting,
 *   unicode, containers moved where scalars were), written as YAML or JSON and
 *   joined with document separators. Some are written both ways (JSON-safe
 *   values), and the two readings must agree;
 * - text (35%): valid manifest text (kubectl's block form, flow form, JSON)
 *   with YAML syntax, values, separators and anchors spliced in, aliases
 *   that refer to their own node among them;
 * - random (35%): soups of YAML syntax and manifest words, random JSON
 *   values, random bytes as text.
 *
 * Properties: readManifests returns or throws a ManifestError (code
 * TAPESTRY_MANIFEST_INVALID, at least one issue, every issue naming its
 * document, issues in document order, the message the issues joined with
 * "; "), never anything else. What it returns is well typed: every service
 * passes validateService, so ports and target ports are integers in
 * [1, 65535] (named target ports resolved), the clusterIP is a unicast IPv4
 * address or headless, endpoints are unicast IPv4; no two services share a
 * key; every skipped document names where it was; and the services survive
 * the trip to the agent (JSON.stringify, then validateService gives the same
 * result).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { stringify as yamlStringify } from 'yaml'
import { ALGORITHM_ANNOTATION, ManifestError, ManifestResult, SERVICE_NAME_LABEL, readManifests } from '../../../src/service/k8s-manifests'
import { ValidService, validateService } from '../../../src/service/service-model'
import { ipv4Parse } from '../../../src/wire/addr'
import { Rng, assertReached, baseSeed, below, chance, forEachCaseCollect, fuzzCases, mulberry32, pick, randomBytes } from '../../harness/fuzz'
import { YAML_BITS, randomString, randomValue, textMutate } from '../../harness/fuzz-config'

const N = fuzzCases()
const N_OBJECTS = Math.ceil(N * 0.3)
const N_TEXT = Math.ceil(N * 0.35)
const N_RANDOM = Math.max(1, N - N_OBJECTS - N_TEXT)
const BASE = baseSeed(0x6b8a11f3)
/**
 * Seeds of failures found so far, by test (see the deterministic tests at the end):
 * - text 0xbb301afd: an alias inside the node it names (`&d` on a document, `*d` within it): readManifests
 *   threw TypeError "Converting circular structure to JSON" (from show(), writing an issue);
 * - text 0xd70ff6e: the same in a key nothing reads: the service was accepted holding itself, and
 *   could not be sent to the agent as JSON.
 */
const REGRESSION_SEEDS: Record<string, number[]> = { text: [0xbb301afd, 0xd70ff6e] }

// yaml warns on process for keys that are collections ("? [a, b]: c"); thousands of those are noise here.
process.removeAllListeners('warning')

type Obj = Record<string, unknown>

// ---- values a manifest holds, right and wrong

const PORTS: unknown[] = [-1, 0, 1, 53, 80, 443, 8080, 9090, 30080, 65535, 65536, 70000, 1.5, -0.5, 1e21, -1e21, 2 ** 31, 2 ** 32,
  2 ** 53 + 2, '80', '8080', 'http', 'metrics', '', '0x50', '1e2']
const IPS = ['10.96.0.10', '10.96.120.15', '10.244.1.5', '10.244.1.6', '192.168.1.1', '0.0.0.0', '255.255.255.255', '224.0.0.1',
  '10.96.0.256', '10.96.0', '10.96.0.10.1', ' 10.96.0.10', '10.96.0.10 ', '010.96.0.10', '10.96.0.-1', '::1', 'fd00::10',
  '::ffff:10.96.0.10', '10.96.0.10/32', 'None', 'none', '', '\uff11.\uff12.\uff13.\uff14', '1.2.3.4\u0000']
const WORDS = ['TCP', 'UDP', 'SCTP', 'tcp', 'Service', 'EndpointSlice', 'List', 'ServiceList', 'EndpointSliceList', 'Deployment',
  'ConfigMap', 'v1', 'discovery.k8s.io/v1', 'discovery.k8s.io/v1beta1', 'apps/v1', 'IPv4', 'IPv6', 'FQDN', 'ClusterIP', 'NodePort',
  'LoadBalancer', 'ExternalName', 'ClientIP', 'None', 'maglev', 'roundRobin', 'random', 'leastConnections', 'web', 'api', 'shop',
  'default', 'kube-system', 'http', 'metrics', SERVICE_NAME_LABEL, ALGORITHM_ANNOTATION, '__proto__', 'constructor', 'toString',
  'hasOwnProperty', 'valueOf', '\u00e9', '\u{1f600}', '\u202e', '\u200b', '\u0000', '\ufeff', 'a'.repeat(300), 'a: b', '- x', '---',
  '"', "'", '#', '&a', '*a', '{', '[', 'null', 'true', '~', 'yes']
const KEYS = ['apiVersion', 'kind', 'metadata', 'name', 'namespace', 'labels', 'annotations', 'spec', 'clusterIP', 'clusterIPs',
  'type', 'ports', 'port', 'targetPort', 'nodePort', 'protocol', 'sessionAffinity', 'sessionAffinityConfig', 'clientIP',
  'timeoutSeconds', 'addressType', 'endpoints', 'addresses', 'conditions', 'ready', 'terminating', 'items', 'services', 'ip',
  'algorithm', SERVICE_NAME_LABEL, ALGORITHM_ANNOTATION, '__proto__', 'constructor', 'toJSON', '', ' ', '\u00e9', 'x'.repeat(200)]

/** A value of a kind a manifest field holds (ports, addresses, words), or any YAML value. */
function k8sValue(rng: Rng, depth = 0): unknown {
  switch (below(rng, depth > 1 ? 7 : 9)) {
    case 0: case 1: return pick(rng, PORTS)
    case 2: case 3: return pick(rng, IPS)
    case 4: return pick(rng, WORDS)
    case 5: return pick(rng, [null, true, false, 0, -0, NaN, Infinity, -Infinity, [], {}, undefined])
    case 6: return randomValue(rng)
    case 7: return Array.from({ length: below(rng, 4) }, () => k8sValue(rng, depth + 1))
    default: {
      const o: Obj = {}
      for (let i = below(rng, 4); i > 0; i--) o[pick(rng, KEYS)] = k8sValue(rng, depth + 1)
      return o
    }
  }
}

/** `v` inside `depth` arrays or objects. */
function nest(rng: Rng, v: unknown): unknown {
  const depth = pick(rng, [2, 4, 8, 16, 30, 60, 100, 300])
  const asList = chance(rng, 0.5)
  const key = pick(rng, ['a', 'spec', 'ports', 'metadata', '0'])
  for (let i = 0; i < depth; i++) v = asList ? [v] : { [key]: v }
  return v
}

// ---- valid documents, as objects

const SVC_NAMES = ['web', 'api', 'db', 'cache', 'kube-dns', 'metrics-server', 'a']
const NAMESPACES = ['default', 'shop', 'kube-system', undefined]

function endpointIps(rng: Rng, n: number): string[] {
  return Array.from({ length: n }, () => `10.244.${1 + below(rng, 3)}.${2 + below(rng, 250)}`)
}

/** A Service (as kubectl prints it, more or less of it) and EndpointSlices for it. */
function k8sService(rng: Rng, name: string, ns: string | undefined): Obj[] {
  const named = chance(rng, 0.4)
  const proto = chance(rng, 0.8) ? 'TCP' : 'UDP'
  const ports: Obj[] = [{ name: 'http', port: 80, protocol: proto, targetPort: named ? 'http' : 8080 }]
  if (chance(rng, 0.3)) ports.push({ name: 'metrics', port: 9090, ...(chance(rng, 0.5) ? { targetPort: 9090 } : {}) })
  if (chance(rng, 0.1)) ports[0].nodePort = 30080
  const meta: Obj = { name, ...(ns === undefined ? {} : { namespace: ns }) }
  if (chance(rng, 0.2)) meta.annotations = { [ALGORITHM_ANNOTATION]: pick(rng, ['maglev', 'roundRobin', 'random', 'leastConnections']) }
  if (chance(rng, 0.1)) meta.labels = { app: name }
  const variant = below(rng, 10)
  const spec: Obj = { clusterIP: `10.96.${below(rng, 256)}.${1 + below(rng, 250)}`, ports }
  if (variant === 0) spec.clusterIP = 'None'
  if (variant === 1) { spec.clusterIPs = ['fd00::10', spec.clusterIP]; spec.clusterIP = 'fd00::10' }
  if (variant === 2) { spec.type = 'ExternalName'; spec.externalName = 'db.example.com'; delete spec.clusterIP }
  if (variant === 3) spec.type = pick(rng, ['ClusterIP', 'NodePort', 'LoadBalancer'])
  if (chance(rng, 0.2)) { spec.sessionAffinity = 'ClientIP'; spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: pick(rng, [1, 600, 86400]) } } }
  if (chance(rng, 0.1)) spec.selector = { app: name }
  const svc: Obj = { apiVersion: 'v1', kind: 'Service', metadata: meta, spec }
  if (chance(rng, 0.1)) svc.status = { loadBalancer: {} }
  const out = [svc]
  // Small files (a service and a slice or two): the YAML parser's time grows with the text, and each case is one file.
  for (let s = pick(rng, [0, 0, 0, 1, 1, 2]); s > 0; s--) {
    const addressType = chance(rng, 0.85) ? 'IPv4' : pick(rng, ['IPv6', 'FQDN'])
    const endpoints = below(rng, 5) === 0 ? null : Array.from({ length: 1 + below(rng, 2) }, () => {
      const e: Obj = { addresses: addressType === 'IPv4' ? endpointIps(rng, chance(rng, 0.8) ? 1 : 2) : ['fd00::1'] }
      const cond: Obj = {}
      if (chance(rng, 0.4)) cond.ready = pick(rng, [true, false, null])
      if (chance(rng, 0.2)) cond.terminating = chance(rng, 0.5)
      if (chance(rng, 0.5)) e.conditions = cond
      if (chance(rng, 0.1)) e.nodeName = 'node-a'
      return e
    })
    const slicePorts: Obj[] = [{ name: 'http', port: 8080, protocol: proto }]
    if (chance(rng, 0.3)) slicePorts.push({ name: 'metrics', port: 9090, protocol: 'TCP' })
    out.push({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType, endpoints, ports: slicePorts,
      metadata: { name: `${name}-${s}`, ...(ns === undefined ? {} : { namespace: ns }), labels: { [SERVICE_NAME_LABEL]: name } },
    })
  }
  return out
}

/** A service in Tapestry's own shape. */
function tapestryService(rng: Rng, name: string, ns: string | undefined): Obj {
  const s: Obj = {
    name, clusterIP: `10.96.0.${1 + below(rng, 250)}`,
    ports: [{ port: 80, targetPort: 8080, ...(chance(rng, 0.3) ? { protocol: 'UDP' } : {}) }],
    endpoints: endpointIps(rng, below(rng, 3)).map((ip) => ({ ip, ...(chance(rng, 0.3) ? { ready: false } : {}) })),
  }
  if (ns !== undefined) s.namespace = ns
  if (chance(rng, 0.2)) s.algorithm = 'roundRobin'
  if (chance(rng, 0.2)) s.nodePort = 30081
  return s
}

/** The documents of a valid manifest file (before mutation). */
function validDocs(rng: Rng): unknown[] {
  const docs: unknown[] = []
  const n = chance(rng, 0.85) ? 1 : 2
  const tapestry: Obj[] = []
  for (let i = 0; i < n; i++) {
    const name = `${pick(rng, SVC_NAMES)}${i === 0 ? '' : i}`
    const ns = pick(rng, NAMESPACES)
    if (chance(rng, 0.2)) tapestry.push(tapestryService(rng, name, ns))
    else docs.push(...k8sService(rng, name, ns))
  }
  if (tapestry.length > 0) {
    const shape = below(rng, 3)
    if (shape === 0) docs.push({ services: tapestry })
    else if (shape === 1) docs.push(tapestry)
    else docs.push(...tapestry)
  }
  if (chance(rng, 0.15)) docs.push({ apiVersion: 'apps/v1', kind: pick(rng, ['Deployment', 'ConfigMap', 'Pod']), metadata: { name: 'x' } })
  if (chance(rng, 0.1)) docs.reverse() // slices before their service: still fine
  if (chance(rng, 0.2)) {
    const k8s = docs.filter((d) => (d as Obj)?.kind !== undefined)
    return [{ apiVersion: 'v1', kind: pick(rng, ['List', 'ServiceList']), items: k8s }, ...docs.filter((d) => !k8s.includes(d))]
  }
  return docs
}

// ---- object mutations

type Container = Obj | unknown[]

function slots(v: unknown, out: [Container, string | number][] = []): [Container, string | number][] {
  if (Array.isArray(v)) v.forEach((x, i) => { out.push([v, i]); slots(x, out) })
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) { out.push([v as Obj, k]); slots((v as Obj)[k], out) }
  return out
}

/** Mutates the documents in place (1 to 4 changes); returns whether a change nested deeply. */
function mutateDocs(rng: Rng, docs: unknown[]): boolean {
  let deep = false
  for (let r = 1 + below(rng, 4); r > 0; r--) {
    const all = slots(docs)
    if (all.length === 0) { docs.push(k8sValue(rng)); continue }
    const [c, k] = pick(rng, all)
    const o = c as Record<string | number, unknown>
    const old = o[k]
    switch (below(rng, 11)) {
      case 0: if (Array.isArray(c)) c.splice(k as number, 1); else delete o[k]; break // a missing key
      case 1: case 2: o[k] = k8sValue(rng); break // a wrong or odd value
      case 3: // a value of its own kind, wrong: a port for a port, an address for an address
        o[k] = typeof old === 'number' ? pick(rng, PORTS) : typeof old === 'string' && /^\d/.test(old) ? pick(rng, IPS) : pick(rng, WORDS)
        break
      case 4: o[k] = chance(rng, 0.5) ? [old] : { [pick(rng, KEYS)]: old }; break // the right value one level down
      case 5: // an extra key, or another element
        if (Array.isArray(c)) c.push(structuredClone(c[below(rng, c.length)] ?? null))
        else o[chance(rng, 0.5) ? pick(rng, KEYS) : randomString(rng)] = k8sValue(rng)
        break
      case 6: o[k] = nest(rng, old); deep = true; break
      case 7: o[k] = structuredClone(pick(rng, all)[0]); break // a container where a value was
      case 8: // numbers at their limits
        o[k] = typeof old === 'number' ? pick(rng, [-old, old * 65536, old + 0.5, old - 65536, 1e308, -1e308, 2 ** 64]) : pick(rng, PORTS)
        break
      case 9: // unicode in a string
        if (typeof old === 'string') {
          const at = below(rng, old.length + 1)
          o[k] = old.slice(0, at) + pick(rng, ['\u00e9', '\u0130', '\u{1f600}', '\u200b', '\u202e', '\u0000', '\ufeff', '\ud800', '\u2028']) + old.slice(at)
        } else o[k] = pick(rng, WORDS)
        break
      default: // the same document twice, or one dropped
        if (chance(rng, 0.5) && docs.length > 0) docs.push(structuredClone(docs[below(rng, docs.length)]))
        else docs.splice(below(rng, docs.length), 1)
    }
  }
  if (chance(rng, 0.03)) docs.push(k8sValue(rng))
  return deep
}

// ---- writing documents

const SEPARATORS = ['---\n', '---\n', '\n---\n', '--- \n', '--- # next\n', '...\n---\n', '---\n---\n', '---\r\n']

function writeYaml(v: unknown): string {
  return yamlStringify(v) ?? ''
}

function writeJson(rng: Rng, v: unknown): string {
  return (chance(rng, 0.85) ? JSON.stringify(v) : JSON.stringify(v, null, 2)) ?? ''
}

/** How documents are put together: what comes first, what goes between. */
interface Layout { start: string; sep: string }

function layout(rng: Rng): Layout {
  return { start: pick(rng, ['', '', '', '---\n', '%YAML 1.2\n---\n', '# manifest\n']), sep: pick(rng, SEPARATORS) }
}

function joinDocs(rng: Rng, texts: string[], how = layout(rng)): string {
  return how.start + texts.map((t) => (t.endsWith('\n') ? t : t + '\n')).join(how.sep)
}

// ---- valid text, to mutate as text

function kubectlText(rng: Rng): string {
  return joinDocs(rng, validDocs(rng).map(writeYaml))
}

/** The flow style people write by hand (and JSON, which is YAML too). */
function flowText(rng: Rng): string {
  return joinDocs(rng, validDocs(rng).map((d) => (chance(rng, 0.5)
    ? (chance(rng, 0.8) ? JSON.stringify(d) : JSON.stringify(d, null, 2))
    : yamlStringify(d, { collectionStyle: 'flow', lineWidth: chance(rng, 0.5) ? 0 : 80 }) ?? '')))
}

/** YAML values to put where a value was: scalars, flow collections, anchors, aliases to their own node. */
const YAML_VALUES = [
  '-1', '0', '65536', '1e400', '-.inf', '.nan', '0x50', '0o17', '1_000', '80.0', '"80"', "'http'", 'http', '~', 'null', 'true', 'yes',
  '10.96.0.256', '"::1"', '0.0.0.0', 'None', '""', '[]', '{}', '[80]', '{port: 80}', '[[[[1]]]]', '!!str 80', '!!int "80"',
  '!!binary aGVsbG8=', '!!timestamp 2001-12-14', '!!set {a}', '!!omap [a: 1]', '!foo bar', '&x 80', '*x', '&a [*a]',
  '&a {x: *a}', '&a [1, [2, *a]]', '&a {clientIP: *a}', '|\n  block', '>-\n  folded', '"\\u0000"', '"\\ud800"', '\u00e9',
]

/** Replaces the value after one "key: " or "- " of the text. */
function valueSwap(rng: Rng, s: string): string {
  const spots: number[] = []
  const re = /(?:: |- )/g
  for (let m = re.exec(s); m !== null; m = re.exec(s)) spots.push(m.index + m[0].length)
  if (spots.length === 0) return s
  const at = pick(rng, spots)
  let end = s.indexOf('\n', at)
  if (end < 0) end = s.length
  const v = chance(rng, 0.7) ? pick(rng, YAML_VALUES) : JSON.stringify(k8sValue(rng)) ?? 'null'
  // Inside a flow collection, replace only up to the next separator so the rest of the line stays.
  const flowEnd = s.slice(at, end).search(/[,}\]]/)
  return s.slice(0, at) + v + s.slice(flowEnd >= 0 ? at + flowEnd : end)
}

/** A whole document anchored and referred to from inside itself. */
function selfAlias(rng: Rng, s: string): string {
  const docs = s.split(/^---.*$/m)
  const i = below(rng, docs.length)
  const body = docs[i].replace(/^\n+/, '')
  if (body.trim() === '' || body.trimStart().startsWith('{') || body.trimStart().startsWith('[')) return s
  docs[i] = `&d\n${body}${body.endsWith('\n') ? '' : '\n'}${pick(rng, ['extra', 'spec', 'metadata', 'items', 'services', 'endpoints'])}: ${pick(rng, ['*d', '[*d]', '{x: *d}'])}\n`
  return docs.map((d, j) => (j === 0 ? d : `--- ${d}`)).join('')
}

function manifestTextMutate(rng: Rng, s: string): string {
  for (let r = 1 + below(rng, 3); r > 0; r--) {
    switch (below(rng, 6)) {
      case 0: case 1: s = valueSwap(rng, s); break
      case 2: s = textMutate(rng, s); break
      case 3: { // a separator or a document boundary somewhere
        const at = below(rng, s.length + 1)
        s = s.slice(0, at) + pick(rng, ['\n---\n', '---', '\n...\n', '\n--- |\n', '\n--- >\n', '\n---\n%YAML 1.1\n---\n']) + s.slice(at)
        break
      }
      case 4: s = selfAlias(rng, s); break
      default: { // a line duplicated (a repeated key) or dropped (a missing key)
        const lines = s.split('\n')
        const i = below(rng, lines.length)
        if (chance(rng, 0.5)) lines.splice(i, 0, lines[i])
        else lines.splice(i, 1)
        s = lines.join('\n')
      }
    }
  }
  return s
}

// ---- random text

const K8S_TOKENS = ['apiVersion: v1\n', 'kind: Service\n', 'kind: EndpointSlice\n', 'kind: List\n', 'items:\n', 'metadata:\n',
  '  name: web\n', 'spec:\n', '  clusterIP: 10.96.0.1\n', '  ports:\n', '  - port: 80\n', '    targetPort: http\n', 'endpoints:\n',
  '- addresses: [10.244.1.5]\n', 'addressType: IPv4\n', 'services:\n', '- name: web\n', `  ${SERVICE_NAME_LABEL}: web\n`, '---\n']

function randomText(rng: Rng): string {
  switch (below(rng, 4)) {
    case 0: return Array.from({ length: below(rng, 40) }, () => (chance(rng, 0.5) ? pick(rng, K8S_TOKENS) : pick(rng, YAML_BITS)) +
      (chance(rng, 0.3) ? randomString(rng) : '')).join('')
    case 1: return JSON.stringify(k8sValue(rng)) ?? ''
    case 2: return Buffer.from(randomBytes(rng, below(rng, 200))).toString(chance(rng, 0.5) ? 'utf8' : 'latin1')
    default: return Array.from({ length: 1 + below(rng, 4) }, () => writeYaml(k8sValue(rng))).join(pick(rng, SEPARATORS))
  }
}

// ---- the properties

const isPort = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535
const unicast = (a: number): boolean => a > 0 && a < 0xffffffff

/** The comparable part of a validated service. */
const validated = (v: ValidService): unknown => ({ ...v })

/** The result for one input: throws a [tagged] Error when a property fails. */
function readChecked(text: string): { ok: true; r: ManifestResult } | { ok: false; issues: string[] } {
  let r: ManifestResult
  // The stacks of the errors made inside (the yaml library's, ManifestError's) are never looked at here, and
  // capturing them is a seventh of the time of a case.
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    r = readManifests(text)
  } catch (err) {
    Error.stackTraceLimit = limit
    if (!(err instanceof ManifestError)) {
      const e = err as Error
      const kind = `${e?.constructor?.name ?? typeof err} ${String(e?.message ?? err).split(/\s+/).slice(0, 4).join(' ')}`.replace(/[^A-Za-z0-9 -]/g, '')
      // Once more with stacks, to say where it was thrown.
      let where = '?'
      try { readManifests(text) } catch (again) { where = (String((again as Error)?.stack).split('\n').find((l) => /^\s+at .*\.js:/.test(l)) ?? '?').trim() }
      throw new Error(`[${kind}] readManifests threw ${e?.constructor?.name} (${where}): ${String(e?.message ?? err).slice(0, 300)}; input ${JSON.stringify(text.slice(0, 300))}`)
    }
    const at = `input ${JSON.stringify(text.slice(0, 200))}`
    assert.equal(err.code, 'TAPESTRY_MANIFEST_INVALID', `[code] ${at}`)
    assert.ok(Array.isArray(err.issues) && err.issues.length > 0, `[no issues] a ManifestError without issues; ${at}`)
    assert.equal(err.message, err.issues.join('; '), `[message] not the issues joined; ${at}`)
    let last = 0
    for (const i of err.issues) {
      assert.ok(typeof i === 'string' && i.length > 0, `[issue type] ${JSON.stringify(i)}; ${at}`)
      const m = /^document (\d+)[ :]/.exec(i)
      assert.ok(m !== null || /^YAML: ./.test(i), `[issue names no document] ${JSON.stringify(i.slice(0, 200))}; ${at}`)
      const doc = m === null ? 0 : Number(m[1])
      assert.ok(doc >= last, `[issue order] document ${doc} after document ${last}; ${at}`)
      assert.ok(m === null || doc >= 1, `[document number] ${i.slice(0, 100)}`)
      last = doc
    }
    return { ok: false, issues: err.issues }
  } finally {
    Error.stackTraceLimit = limit
  }
  const at = `input ${JSON.stringify(text.slice(0, 200))}`
  assert.ok(r !== null && typeof r === 'object' && Array.isArray(r.services) && Array.isArray(r.skipped), `[result shape] ${at}`)
  const keys = new Set<string>()
  for (const s of r.services) {
    let v: ValidService
    try {
      v = validateService(s)
    } catch (err) {
      throw new Error(`[accepted an invalid service] ${(err as Error).message.slice(0, 300)}; ${at}`)
    }
    assert.ok(!keys.has(v.key), `[duplicate service] ${v.key}; ${at}`)
    keys.add(v.key)
    assert.ok(typeof s.name === 'string' && s.name !== '' && typeof s.namespace === 'string' && s.namespace !== '', `[name] ${JSON.stringify(s.name)}/${JSON.stringify(s.namespace)}; ${at}`)
    assert.ok(s.clusterIP === 'None' || s.clusterIP === '' || unicast(ipv4Parse(s.clusterIP)), `[clusterIP] ${JSON.stringify(s.clusterIP)}; ${at}`)
    for (const p of s.ports) {
      // null is "not set" to validateService (Tapestry's shape passes through as written).
      assert.ok(isPort(p.port) && (p.targetPort === undefined || p.targetPort === null || isPort(p.targetPort)), `[port] ${JSON.stringify(p)}; ${at}`)
      assert.ok(p.protocol === undefined || p.protocol === null || p.protocol === 'TCP' || p.protocol === 'UDP', `[protocol] ${JSON.stringify(p)}; ${at}`)
    }
    for (const p of v.ports) assert.ok(isPort(p.port) && isPort(p.targetPort), `[valid port] ${JSON.stringify(p)}; ${at}`)
    for (const e of s.endpoints) assert.ok(typeof e.ip === 'string' && unicast(ipv4Parse(e.ip)), `[endpoint] ${JSON.stringify(e)}; ${at}`)
    // `svc apply` sends the services to the agent as JSON, which validates them again.
    let json: string
    try {
      json = JSON.stringify(s)
    } catch (err) {
      throw new Error(`[not JSON] an accepted service cannot be sent to the agent: ${(err as Error).message.split('\n')[0]}; ${at}`)
    }
    let again: ValidService
    try {
      again = validateService(JSON.parse(json))
    } catch (err) {
      throw new Error(`[JSON round trip] the agent would refuse an accepted service: ${(err as Error).message.slice(0, 200)}; ${at}`)
    }
    assert.deepEqual(validated(again), validated(v), `[JSON round trip] the agent would read another service; ${at}`)
  }
  for (const k of r.skipped) {
    assert.ok(/^document \d+( items\[\d+\])*$/.test(k.where), `[skipped where] ${JSON.stringify(k)}; ${at}`)
    assert.ok(typeof k.kind === 'string' && typeof k.name === 'string' && typeof k.reason === 'string' && k.reason !== '', `[skipped] ${JSON.stringify(k)}; ${at}`)
  }
  return { ok: true, r }
}

function outcome(o: ReturnType<typeof readChecked>): string {
  return o.ok ? `${o.r.services.length} service(s)` : JSON.stringify(o.issues).slice(0, 300)
}

test(`readManifests: mutated Service/EndpointSlice objects as YAML and JSON give services or a ManifestError (${N_OBJECTS} inputs)`, () => {
  let accepted = 0
  let refused = 0
  let compared = 0
  let deeply = 0
  forEachCaseCollect('objects', BASE, N_OBJECTS, REGRESSION_SEEDS.objects ?? [], (rng) => {
    const docs = validDocs(rng)
    const deep = below(rng, 10) < 8 ? mutateDocs(rng, docs) : false
    if (deep) deeply++
    const safeText = JSON.stringify(docs)
    // (Not with a BOM in a string: the yaml library writes it bare at the start of a document, where a reader drops it.)
    if (!deep && chance(rng, 0.1) && !safeText.includes('\ufeff')) {
      // The same JSON-safe documents written as YAML and as JSON read the same.
      const safe = JSON.parse(safeText) as unknown[]
      const how = layout(rng)
      const y = readChecked(joinDocs(rng, safe.map(writeYaml), how))
      const j = readChecked(joinDocs(rng, safe.map((d) => writeJson(rng, d)), how))
      compared++
      assert.deepEqual(j, y, `[YAML and JSON differ] ${outcome(y)} as YAML, ${outcome(j)} as JSON: ${JSON.stringify(safe).slice(0, 400)}`)
      if (y.ok) accepted++; else refused++
      return
    }
    // Deeply nested values mostly as compact JSON: block YAML indents them quadratically.
    const yaml = chance(rng, deep ? 0.1 : 0.2)
    const text = joinDocs(rng, docs.map((d) => (yaml ? writeYaml(d) : deep ? JSON.stringify(d) ?? '' : writeJson(rng, d))))
    if (readChecked(text).ok) accepted++; else refused++
  })
  assertReached(accepted > N_OBJECTS / 20 && refused > N_OBJECTS / 4, N_OBJECTS, `accepted ${accepted}, refused ${refused}`)
  assertReached(compared > N_OBJECTS / 20, N_OBJECTS, `only ${compared} YAML/JSON comparisons`)
  assertReached(deeply > N_OBJECTS / 50, N_OBJECTS, `only ${deeply} deeply nested values`)
})

/** Valid manifest texts to mutate, made once (writing YAML costs as much as reading it). */
const TEXTS: string[] = (() => {
  const rng = mulberry32(0x7e475eed)
  return Array.from({ length: 512 }, (_, i) => (i % 2 === 0 ? kubectlText(rng) : flowText(rng)))
})()

test(`readManifests: mutated manifest text (YAML syntax, values, separators, anchors) gives services or a ManifestError (${N_TEXT} inputs)`, () => {
  let accepted = 0
  let recursive = 0
  forEachCaseCollect('text', BASE ^ 0x7e47, N_TEXT, REGRESSION_SEEDS.text ?? [], (rng) => {
    const valid = pick(rng, TEXTS)
    const text = chance(rng, 0.1) ? valid : manifestTextMutate(rng, valid)
    const r = readChecked(text)
    if (r.ok) accepted++
    else if (r.issues.some((i) => i.includes('recursive structure'))) recursive++
  })
  assertReached(accepted > N_TEXT / 20, N_TEXT, `only ${accepted} accepted`)
  assertReached(recursive > 0, N_TEXT, 'no alias inside its own node was refused')
})

test(`readManifests: random text gives services or a ManifestError (${N_RANDOM} inputs)`, () => {
  forEachCaseCollect('random', BASE ^ 0x4a4d, N_RANDOM, REGRESSION_SEEDS.random ?? [], (rng) => {
    readChecked(randomText(rng))
  })
})

/** The issues of `text`, which must be refused with a ManifestError. */
function refused(text: string): string[] {
  try {
    readManifests(text)
  } catch (err) {
    assert.ok(err instanceof ManifestError, `threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
    return err.issues
  }
  return assert.fail('accepted')
}

const RECURSIVE = 'document 1: YAML: an alias refers to a node that contains it (a recursive structure)'

/**
 * Was a bug, fixed in k8s-manifests.ts since (seed text 0xbb301afd): a YAML alias inside the node
 * it names builds a value that contains itself; the issue about it was written with JSON.stringify,
 * which threw TypeError "Converting circular structure to JSON" out of readManifests, so `tapestry
 * svc apply` died with a TypeError instead of listing the problems. Expected: a ManifestError.
 */
test('readManifests: an alias inside the node it names is a ManifestError, not a TypeError', () => {
  assert.deepEqual(refused('&a [*a]\n'), [RECURSIVE])
  assert.deepEqual(refused('apiVersion: v1\nkind: Service\nmetadata: &m {name: web, annotations: {a: *m}}\nspec: {clusterIP: 10.96.0.1}\n'), [RECURSIVE])
  assert.deepEqual(refused('apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: &s {clusterIP: 10.96.0.1, ports: [{port: *s}]}\n'), [RECURSIVE])
  // Only the recursive document is refused; the others are read and reported as usual.
  const issues = refused('services: []\n---\nname: web\nclusterIP: &c [*c]\nports: []\nendpoints: []\n---\nservices: 3\n')
  assert.deepEqual(issues, [RECURSIVE.replace('document 1', 'document 2'), 'document 3: services: must be a list (got 3)'])
})

/**
 * Was a bug, fixed with the one above (seed text 0xd70ff6e): the recursion in a key nothing
 * checks (here a Tapestry service's extra key, or its sessionAffinityConfig) was accepted, and the
 * service then could not be sent to the agent (JSON.stringify threw). Expected: refused the same way.
 */
test('readManifests: a service that contains itself is refused, not accepted', () => {
  assert.deepEqual(refused('&d\nname: web\nclusterIP: 10.96.0.1\nports: [{port: 80}]\nendpoints: []\nextra: {x: *d}\n'), [RECURSIVE])
  assert.deepEqual(refused('name: web\nclusterIP: 10.96.0.1\nports: [{port: 80}]\nendpoints: []\nsessionAffinity: ClientIP\nsessionAffinityConfig: &c {clientIP: *c}\n'), [RECURSIVE])
})

test('readManifests: aliases that only share a node (no recursion) are still read', () => {
  const r = readManifests('name: web\nclusterIP: 10.96.0.1\nports: &p [{port: 80, targetPort: 8080}]\nendpoints: [{ip: 10.244.1.5}]\nalso: [*p, *p, {x: *p}]\n')
  assert.equal(r.services.length, 1)
  assert.deepEqual(validateService(r.services[0]).ports, [{ name: '', port: 80, targetPort: 8080, proto: 6 }])
  assert.doesNotThrow(() => JSON.stringify(r.services))
})

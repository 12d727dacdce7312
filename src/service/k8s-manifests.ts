/**
 * Services from Kubernetes manifests: `Service` (v1) and `EndpointSlice`
 * (discovery.k8s.io/v1) objects as `kubectl get svc,endpointslices -o yaml`
 * prints them or as they sit in a manifest file, turned into ServiceSpecs.
 * Tapestry's own service shape is accepted too, so one reader serves
 * `tapestry svc apply -f FILE` whatever the file holds.
 *
 * Input: YAML, one or more documents (`---`). A document is
 *   - a Kubernetes object (`kind`): Service and EndpointSlice are read, a
 *     `List` (or any `...List` kind with `items`) is read item by item, and
 *     every other kind (Deployment, ConfigMap...) is skipped and reported;
 *   - Tapestry's shape: a `services:` list (other top-level keys ignored), a
 *     top-level list of services, or one service object (it has `clusterIP`).
 *
 * Service -> ServiceSpec
 *   metadata.name, metadata.namespace (default "default");
 *   spec.clusterIP ("None" for headless; an IPv6 clusterIP is replaced by the
 *   first IPv4 address of spec.clusterIPs when there is one). A missing
 *   clusterIP is an error: nothing here allocates one, as the API server would;
 *   spec.ports[]: name, port, protocol, targetPort (default: port), nodePort
 *   (the spec keeps one: the first port's that has one, for display);
 *   a named targetPort is resolved the way kube-proxy sees it: an EndpointSlice
 *   port carries the *service* port's name and the number the name resolved to
 *   in the pods, so the slices' port with the service port's name and
 *   protocol gives the number. No slice listing it, or slices disagreeing
 *   (pods exposing the name on different numbers; a ServiceSpec has one
 *   target port per port), is an error;
 *   spec.sessionAffinity, spec.sessionAffinityConfig;
 *   annotation `tapestry.io/algorithm` -> algorithm;
 *   spec.type ExternalName: skipped (a DNS alias, nothing to balance).
 *   Selectors, status, ipFamilies and the traffic policies are ignored.
 *
 * EndpointSlice -> the endpoints of its Service
 *   Matched by the label `kubernetes.io/service-name` in the slice's
 *   namespace; several slices of one service are concatenated in document
 *   order (an address listed twice keeps its first listing). addressType IPv4
 *   only: IPv6 and FQDN slices are skipped (a dual-stack service has both).
 *   endpoints[].addresses[] (each address one endpoint), conditions.ready
 *   (unset or null means ready, as the API says consumers should read it)
 *   and conditions.terminating (default false); conditions.serving is not
 *   modelled. `endpoints: null` (an empty slice) is fine. A slice whose
 *   Service is not among the documents is an error.
 *
 * Errors: every problem of every document is collected, then one
 * ManifestError is thrown (code TAPESTRY_MANIFEST_INVALID, `issues` in
 * document order, the message joining them with "; "), each issue naming the document (counted from 1), the list item if any, the
 * object and the key path:
 *   document 2 (Service web): spec.ports[0].targetPort: "http" is a named port ...
 * The produced specs are checked with validateService, whose issues are
 * reported with the manifest's key paths.
 */
import { parseAllDocuments } from 'yaml'
import { TapestryError } from '../lib/errors'
import { ipv4Parse } from '../wire/addr'
import { EndpointSpec, ServicePortSpec, ServiceSpec, ServiceError, serviceKey, validateService } from './service-model'

/** The annotation that picks the balancing algorithm of a Kubernetes Service. */
export const ALGORITHM_ANNOTATION = 'tapestry.io/algorithm'
/** The label that ties an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'

export class ManifestError extends TapestryError {
  readonly issues: string[]
  constructor(issues: string[]) {
    super('TAPESTRY_MANIFEST_INVALID', issues.join('; '))
    this.issues = issues
  }
}

/** A document (or list item) that was read but holds no service. */
export interface ManifestSkip {
  /** "document 3" or "document 1 items[4]". */
  where: string
  kind: string
  name: string
  reason: string
}

export interface ManifestResult {
  services: ServiceSpec[]
  skipped: ManifestSkip[]
}

type Obj = Record<string, unknown>

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v)
const show = (v: unknown): string => JSON.stringify(v) ?? String(v)
const key = (k: string): string => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`)

interface SlicePort { name: string; port: number; protocol: string }

interface K8sService {
  label: string
  key: string
  spec: ServiceSpec
  /** Per spec port: the named targetPort to resolve, or null. */
  named: (string | null)[]
  /** Index in spec.ports of the port whose nodePort was kept, or -1. */
  nodePortFrom: number
  /** Where each endpoint came from, for validateService issues. */
  endpointFrom: string[]
  slices: { label: string; ports: SlicePort[] }[]
}

interface Slice {
  label: string
  service: string
  ports: SlicePort[]
  endpoints: EndpointSpec[]
  endpointFrom: string[]
}

/** The services of `text`, or a ManifestError with every problem. See the file comment. */
export function servicesFromManifests(text: string): ServiceSpec[] {
  return readManifests(text).services
}

/** servicesFromManifests, also saying which documents were skipped and why. */
export function readManifests(text: string): ManifestResult {
  const issues: string[] = []
  const skipped: ManifestSkip[] = []
  /** In document order; K8sService entries are completed after all slices are read. */
  const out: (ServiceSpec | K8sService)[] = []
  const defined = new Map<string, string>()
  const k8s = new Map<string, K8sService>()
  const slices: Slice[] = []
  const externalNames = new Set<string>()

  const define = (label: string, svcKey: string): boolean => {
    const before = defined.get(svcKey)
    if (before !== undefined) {
      issues.push(`${label}: service ${svcKey} is also defined in ${before}`)
      return false
    }
    defined.set(svcKey, label)
    return true
  }

  const tapestryService = (where: string, v: unknown): void => {
    if (!isObj(v)) { issues.push(`${where}: not a service object (got ${show(v)})`); return }
    const spec = { ...v } as unknown as ServiceSpec
    if (spec.namespace === undefined) spec.namespace = 'default'
    const label = `${where} (${typeof spec.name === 'string' ? spec.name : '?'})`
    try {
      validateService(spec)
    } catch (err) {
      if (!(err instanceof ServiceError)) throw err
      for (const i of err.issues) issues.push(`${label}: ${pathStyle(i, (p) => p)}`)
      return
    }
    if (define(label, serviceKey(spec.name, spec.namespace))) out.push(spec)
  }

  const object = (where: string, v: Obj): void => {
    const kind = v.kind
    if (kind === undefined) {
      if (Array.isArray(v.services)) v.services.forEach((s, j) => tapestryService(`${where} services[${j}]`, s))
      else if ('services' in v) issues.push(`${where}: services: must be a list (got ${show(v.services)})`)
      else if ('clusterIP' in v) tapestryService(where, v)
      else issues.push(`${where}: neither a Kubernetes object (no kind) nor a Tapestry service (no clusterIP) or services list`)
      return
    }
    const meta = isObj(v.metadata) ? v.metadata : {}
    const name = typeof meta.name === 'string' ? meta.name : ''
    if (typeof kind !== 'string') { issues.push(`${where}: kind: must be a string (got ${show(kind)})`); return }
    if (kind.endsWith('List') && 'items' in v) {
      if (!Array.isArray(v.items)) { issues.push(`${where} (${kind}): items: must be a list (got ${show(v.items)})`); return }
      v.items.forEach((item, j) => {
        const at = `${where} items[${j}]`
        if (!isObj(item)) issues.push(`${at}: not an object (got ${show(item)})`)
        else object(at, item)
      })
      return
    }
    const ns = typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : 'default'
    const label = `${where} (${kind} ${name === '' ? '?' : meta.namespace === undefined ? name : `${ns}/${name}`})`
    if (kind === 'Service') {
      if (v.apiVersion !== 'v1') { issues.push(`${label}: apiVersion: expected "v1" (got ${show(v.apiVersion)})`); return }
      const s = service(label, v, issues)
      if (s === 'ExternalName') {
        skipped.push({ where, kind, name, reason: 'type ExternalName: a DNS alias, nothing to balance' })
        externalNames.add(serviceKey(name, ns))
      } else if (s !== null && define(label, s.key)) {
        k8s.set(s.key, s)
        out.push(s)
      }
      return
    }
    if (kind === 'EndpointSlice') {
      if (v.apiVersion !== 'discovery.k8s.io/v1') {
        issues.push(`${label}: apiVersion: expected "discovery.k8s.io/v1" (got ${show(v.apiVersion)})`)
        return
      }
      const s = endpointSlice(label, v, issues)
      if (typeof s === 'string') skipped.push({ where, kind, name, reason: s })
      else if (s !== null) slices.push(s)
      return
    }
    skipped.push({ where, kind, name, reason: `kind ${kind} holds no service` })
  }

  let docs: ReturnType<typeof parseAllDocuments>
  try {
    docs = parseAllDocuments(text)
  } catch (err) {
    throw new ManifestError([`YAML: ${(err as Error).message.split('\n')[0].replace(/:$/, '')}`])
  }
  docs.forEach((doc, i) => {
    const where = `document ${i + 1}`
    if (doc.errors.length > 0) {
      for (const e of doc.errors) issues.push(`${where}: YAML: ${e.message.split('\n')[0].replace(/:$/, '')}`)
      return
    }
    let v: unknown
    try {
      v = doc.toJS({ maxAliasCount: 100 })
    } catch (err) {
      issues.push(`${where}: YAML: ${(err as Error).message.split('\n')[0].replace(/:$/, '')}`)
      return
    }
    if (v === null || v === undefined) return // an empty document
    // An alias inside the node it names (`&a [*a]`, `metadata: &m {x: *m}`) makes a value that contains
    // itself: JSON.stringify (issue messages, and the agent, which gets the services as JSON) cannot take
    // it, and readManifests threw a TypeError instead of a ManifestError (found by the fuzz test,
    // test/unit/fuzz/k8s-manifests.test.ts). Refuse such a document.
    if (containsItself(v)) {
      issues.push(`${where}: YAML: an alias refers to a node that contains it (a recursive structure)`)
      return
    }
    if (Array.isArray(v)) v.forEach((s, j) => tapestryService(`${where} [${j}]`, s))
    else if (isObj(v)) object(where, v)
    else issues.push(`${where}: not an object or a list (got ${show(v)})`)
  })

  for (const sl of slices) {
    const s = k8s.get(sl.service)
    if (s === undefined) {
      if (!externalNames.has(sl.service)) {
        issues.push(`${sl.label}: metadata.labels${key(SERVICE_NAME_LABEL)}: no Service ${sl.service} among the documents`)
      }
      continue
    }
    s.spec.endpoints.push(...sl.endpoints)
    s.endpointFrom.push(...sl.endpointFrom)
    s.slices.push({ label: sl.label, ports: sl.ports })
  }

  const services: ServiceSpec[] = []
  for (const o of out) {
    if (!('label' in o)) { services.push(o); continue }
    if (!resolveNamedPorts(o, issues)) continue
    try {
      validateService(o.spec)
    } catch (err) {
      if (!(err instanceof ServiceError)) throw err
      for (const i of err.issues) issues.push(`${o.label}: ${pathStyle(i, (p) => k8sPath(o, p))}`)
      continue
    }
    services.push(o.spec)
  }
  if (issues.length > 0) {
    // Document order (stable: within a document, the order they were found in).
    const docOf = (i: string): number => Number(/^document (\d+)/.exec(i)?.[1] ?? 0)
    throw new ManifestError(issues.sort((a, b) => docOf(a) - docOf(b)))
  }
  return { services, skipped }
}

/**
 * True if `root` contains itself through arrays and plain objects (what JSON.stringify walks). A node
 * reached twice by plain aliases is not a cycle; each node is walked once, without recursion, so deep
 * nesting and shared nodes cost no more than their size.
 */
function containsItself(root: unknown): boolean {
  const walkable = (v: unknown): v is object => v !== null && typeof v === 'object' &&
    (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)
  if (!walkable(root)) return false
  const open = new Set<object>([root]) // on the current path
  const done = new Set<object>()
  const path: { node: object; kids: unknown[]; next: number }[] = [{ node: root, kids: Object.values(root), next: 0 }]
  while (path.length > 0) {
    const top = path[path.length - 1]
    if (top.next === top.kids.length) {
      path.pop()
      open.delete(top.node)
      done.add(top.node)
      continue
    }
    const kid = top.kids[top.next++]
    if (!walkable(kid) || done.has(kid)) continue
    if (open.has(kid)) return true
    open.add(kid)
    path.push({ node: kid, kids: Object.values(kid), next: 0 })
  }
  return false
}

/** A Service object; null after pushing issues, or 'ExternalName'. */
function service(label: string, v: Obj, issues: string[]): K8sService | 'ExternalName' | null {
  const bad = (path: string, msg: string): null => { issues.push(`${label}: ${path}: ${msg}`); return null }
  const n0 = issues.length
  if (!isObj(v.metadata)) return bad('metadata', `must be an object (got ${show(v.metadata)})`)
  const meta = v.metadata
  if (typeof meta.name !== 'string' || meta.name === '') bad('metadata.name', `must be a non-empty string (got ${show(meta.name)})`)
  if (meta.namespace !== undefined && (typeof meta.namespace !== 'string' || meta.namespace === '')) {
    bad('metadata.namespace', `must be a non-empty string (got ${show(meta.namespace)})`)
  }
  if (!isObj(v.spec)) return bad('spec', `must be an object (got ${show(v.spec)})`)
  const spec = v.spec
  const type = spec.type ?? 'ClusterIP'
  if (type === 'ExternalName') return 'ExternalName'
  if (type !== 'ClusterIP' && type !== 'NodePort' && type !== 'LoadBalancer') {
    bad('spec.type', `must be ClusterIP, NodePort, LoadBalancer or ExternalName (got ${show(spec.type)})`)
  }

  let clusterIP = spec.clusterIP
  if (clusterIP === undefined || clusterIP === null) {
    bad('spec.clusterIP', 'missing: Tapestry does not allocate ClusterIPs; give one, or "None" for a headless service')
  } else if (typeof clusterIP !== 'string') {
    bad('spec.clusterIP', `must be a string (got ${show(clusterIP)})`)
  } else if (clusterIP.includes(':')) {
    const v4 = Array.isArray(spec.clusterIPs) ? spec.clusterIPs.find((a) => typeof a === 'string' && ipv4Parse(a) >= 0) : undefined
    if (v4 === undefined) bad('spec.clusterIP', `${show(clusterIP)} is IPv6; Tapestry balances IPv4 only and spec.clusterIPs has no IPv4 address`)
    else clusterIP = v4
  }

  let algorithm: unknown
  if (meta.annotations !== undefined && meta.annotations !== null) {
    if (!isObj(meta.annotations)) bad('metadata.annotations', `must be an object (got ${show(meta.annotations)})`)
    else algorithm = meta.annotations[ALGORITHM_ANNOTATION]
  }

  const ports: ServicePortSpec[] = []
  const named: (string | null)[] = []
  let nodePort: unknown
  let nodePortFrom = -1
  const rawPorts = spec.ports ?? []
  if (!Array.isArray(rawPorts)) {
    bad('spec.ports', `must be a list (got ${show(spec.ports)})`)
  } else {
    rawPorts.forEach((p, i) => {
      if (!isObj(p)) { bad(`spec.ports[${i}]`, `must be an object (got ${show(p)})`); return }
      const port: Obj = {}
      for (const k of ['name', 'port', 'protocol'] as const) if (p[k] !== undefined && p[k] !== null) port[k] = p[k]
      if (port.name !== undefined && typeof port.name !== 'string') bad(`spec.ports[${i}].name`, `must be a string (got ${show(port.name)})`)
      const t = p.targetPort
      if (typeof t === 'string') {
        named.push(t)
      } else {
        named.push(null)
        if (t !== undefined && t !== null) port.targetPort = t
      }
      if (p.nodePort !== undefined && p.nodePort !== null && nodePortFrom < 0) { nodePort = p.nodePort; nodePortFrom = i }
      ports.push(port as unknown as ServicePortSpec)
    })
  }
  if (issues.length > n0) return null

  const out: ServiceSpec = { name: meta.name as string, namespace: (meta.namespace as string | undefined) ?? 'default', clusterIP: clusterIP as string, ports, endpoints: [] }
  if (algorithm !== undefined) out.algorithm = algorithm as ServiceSpec['algorithm']
  if (spec.sessionAffinity !== undefined && spec.sessionAffinity !== null) out.sessionAffinity = spec.sessionAffinity as ServiceSpec['sessionAffinity']
  if (spec.sessionAffinityConfig !== undefined && spec.sessionAffinityConfig !== null) {
    out.sessionAffinityConfig = spec.sessionAffinityConfig as ServiceSpec['sessionAffinityConfig']
  }
  if (nodePort !== undefined) out.nodePort = nodePort as number
  return {
    label, key: serviceKey(out.name, out.namespace as string), spec: out, named, nodePortFrom, endpointFrom: [], slices: [],
  }
}

/** An EndpointSlice; null after pushing issues, or why it is skipped. */
function endpointSlice(label: string, v: Obj, issues: string[]): Slice | string | null {
  const bad = (path: string, msg: string): null => { issues.push(`${label}: ${path}: ${msg}`); return null }
  const n0 = issues.length
  if (!isObj(v.metadata)) return bad('metadata', `must be an object (got ${show(v.metadata)})`)
  const meta = v.metadata
  const ns = meta.namespace === undefined ? 'default' : meta.namespace
  if (typeof ns !== 'string' || ns === '') bad('metadata.namespace', `must be a non-empty string (got ${show(meta.namespace)})`)
  const labels = isObj(meta.labels) ? meta.labels : {}
  const svc = labels[SERVICE_NAME_LABEL]
  if (typeof svc !== 'string' || svc === '') {
    bad(`metadata.labels${key(SERVICE_NAME_LABEL)}`, `missing: cannot tell which Service this EndpointSlice belongs to (got ${show(svc)})`)
  }
  const at = v.addressType
  if (at === 'IPv6' || at === 'FQDN') return issues.length > n0 ? null : `addressType ${at}: Tapestry balances IPv4 only`
  if (at !== 'IPv4') bad('addressType', `must be IPv4, IPv6 or FQDN (got ${show(at)})`)

  const ports: SlicePort[] = []
  const rawPorts = v.ports ?? []
  if (!Array.isArray(rawPorts)) {
    bad('ports', `must be a list (got ${show(v.ports)})`)
  } else {
    rawPorts.forEach((p, i) => {
      if (!isObj(p)) { bad(`ports[${i}]`, `must be an object (got ${show(p)})`); return }
      const name = p.name ?? ''
      const protocol = p.protocol ?? 'TCP'
      if (typeof name !== 'string') bad(`ports[${i}].name`, `must be a string (got ${show(p.name)})`)
      if (typeof protocol !== 'string') bad(`ports[${i}].protocol`, `must be a string (got ${show(p.protocol)})`)
      // port null: "all ports" (RFC-less corner of the API); nothing to resolve with.
      if (p.port === undefined || p.port === null) return
      if (typeof p.port !== 'number' || !Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
        bad(`ports[${i}].port`, `must be an integer in [1, 65535] (got ${show(p.port)})`)
        return
      }
      ports.push({ name: name as string, port: p.port, protocol: protocol as string })
    })
  }

  const endpoints: EndpointSpec[] = []
  const endpointFrom: string[] = []
  const rawEps = v.endpoints ?? []
  if (!Array.isArray(rawEps)) {
    bad('endpoints', `must be a list (got ${show(v.endpoints)})`)
  } else {
    rawEps.forEach((e, i) => {
      const ep = `endpoints[${i}]`
      if (!isObj(e)) { bad(ep, `must be an object (got ${show(e)})`); return }
      const cond = e.conditions ?? {}
      let ready = true
      let terminating = false
      if (!isObj(cond)) {
        bad(`${ep}.conditions`, `must be an object (got ${show(e.conditions)})`)
      } else {
        if (cond.ready !== undefined && cond.ready !== null) {
          if (typeof cond.ready !== 'boolean') bad(`${ep}.conditions.ready`, `must be a boolean (got ${show(cond.ready)})`)
          else ready = cond.ready
        }
        if (cond.terminating !== undefined && cond.terminating !== null) {
          if (typeof cond.terminating !== 'boolean') bad(`${ep}.conditions.terminating`, `must be a boolean (got ${show(cond.terminating)})`)
          else terminating = cond.terminating
        }
      }
      if (!Array.isArray(e.addresses) || e.addresses.length === 0) {
        bad(`${ep}.addresses`, `must be a non-empty list (got ${show(e.addresses)})`)
        return
      }
      e.addresses.forEach((a, j) => {
        const ip = typeof a === 'string' ? ipv4Parse(a) : -1
        if (ip <= 0 || ip === 0xffffffff) { bad(`${ep}.addresses[${j}]`, `${show(a)} is not an IPv4 address`); return }
        endpoints.push({ ip: a as string, ready, terminating })
        endpointFrom.push(`${label} ${ep}.addresses[${j}]`)
      })
    })
  }
  if (issues.length > n0) return null
  return { label, service: serviceKey(svc as string, ns as string), ports, endpoints, endpointFrom }
}

/** Replaces named targetPorts with the number the service's slices give; false after pushing issues. */
function resolveNamedPorts(s: K8sService, issues: string[]): boolean {
  let ok = true
  s.named.forEach((target, i) => {
    if (target === null) return
    const p = s.spec.ports[i]
    const portName = typeof p.name === 'string' ? p.name : ''
    const proto = typeof p.protocol === 'string' ? p.protocol : 'TCP'
    const found = new Map<number, string[]>()
    for (const sl of s.slices) {
      for (const sp of sl.ports) {
        if (sp.name !== portName || sp.protocol !== proto) continue
        const at = found.get(sp.port)
        if (at === undefined) found.set(sp.port, [sl.label])
        else if (!at.includes(sl.label)) at.push(sl.label)
      }
    }
    const at = `${s.label}: spec.ports[${i}].targetPort`
    const which = portName === '' ? 'the unnamed port' : `port ${show(portName)}`
    if (found.size === 0) {
      issues.push(`${at}: ${show(target)} is a named port; Tapestry resolves it only from the ports of the service's EndpointSlices, and none lists ${which}/${proto}`)
      ok = false
    } else if (found.size > 1) {
      const list = Array.from(found, ([n, labels]) => `${n} in ${labels.join(', ')}`).join('; ')
      issues.push(`${at}: ${show(target)} resolves to different numbers in the EndpointSlices (${list}); Tapestry needs one target port per service port`)
      ok = false
    } else {
      p.targetPort = found.keys().next().value as number
    }
  })
  return ok
}

/** The manifest key path of a ServiceSpec path in a validateService issue. */
function k8sPath(s: K8sService, p: string): string {
  if (p === 'name') return 'metadata.name'
  if (p === 'namespace') return 'metadata.namespace'
  if (p === 'clusterIP') return 'spec.clusterIP'
  if (p === 'algorithm') return `metadata.annotations${key(ALGORITHM_ANNOTATION)}`
  if (p === 'nodePort') return s.nodePortFrom >= 0 ? `spec.ports[${s.nodePortFrom}].nodePort` : 'spec.ports[].nodePort'
  if (p.startsWith('ports') || p.startsWith('sessionAffinity')) return `spec.${p}`
  const m = /^endpoints\[(\d+)\](.*)$/.exec(p)
  if (m !== null) return s.endpointFrom[Number(m[1])] ?? p
  return p
}

/** "ports[0].port must be ..." -> "<mapped path>: must be ...". */
function pathStyle(issue: string, map: (path: string) => string): string {
  const m = /^([A-Za-z]+(?:\[\d+\])?(?:\.[A-Za-z]+(?:\[\d+\])?)*) (.*)$/s.exec(issue)
  return m === null ? issue : `${map(m[1])}: ${m[2]}`
}

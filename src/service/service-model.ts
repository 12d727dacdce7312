/**
 * The service model as the control plane hands it over (Kubernetes field
 * names), and its validation into the numeric form the service table uses.
 *
 * Supported: ClusterIP services (TCP and UDP ports, numeric targetPort),
 * endpoints with ready/terminating conditions, the balancing algorithm, and
 * ClientIP session affinity. Headless services (clusterIP "None" or empty)
 * are accepted and get no VIP. `nodePort` is accepted and kept for display;
 * the service layer does not answer on node ports (traffic to the node's
 * address never reaches the pod-facing path this layer serves).
 *
 * Validation checks the whole service and throws one ServiceError listing
 * every problem, with its key path; a bad service changes nothing.
 */
import { TapestryError } from '../lib/errors'
import { ipv4Parse } from '../wire/addr'
import { PROTO_TCP, PROTO_UDP } from '../wire/ipv4'
import { ALGORITHM_NAMES, Algorithm } from './balancer'

export interface ServicePortSpec {
  name?: string
  port: number
  /** Numeric only: named ports (a container port name) are not resolved here. */
  targetPort?: number
  protocol?: 'TCP' | 'UDP'
}

export interface EndpointSpec {
  ip: string
  /** Default true. */
  ready?: boolean
  /** Default false. */
  terminating?: boolean
}

export interface ServiceSpec {
  name: string
  namespace?: string
  /** IPv4 dotted quad; "None" or "" for a headless service. */
  clusterIP: string
  ports: ServicePortSpec[]
  algorithm?: 'maglev' | 'random' | 'roundRobin' | 'leastConnections'
  sessionAffinity?: 'None' | 'ClientIP'
  sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } }
  nodePort?: number
  endpoints: EndpointSpec[]
}

/** Kubernetes' default ClientIP affinity timeout (3 hours). */
export const AFFINITY_DEFAULT_TIMEOUT_S = 10800
/** Kubernetes' upper bound for timeoutSeconds (one day). */
export const AFFINITY_MAX_TIMEOUT_S = 86400

export interface ValidPort { name: string; port: number; targetPort: number; proto: number }
export interface ValidEndpoint { ip: number; text: string; ready: boolean; terminating: boolean }

export interface ValidService {
  /** "namespace/name". */
  key: string
  name: string
  namespace: string
  /** Unsigned IPv4, or 0 for a headless service. */
  vip: number
  clusterIP: string
  ports: ValidPort[]
  algorithm: Algorithm
  algorithmName: string
  /** 0 when sessionAffinity is None. */
  affinityTimeoutMs: number
  nodePort: number | null
  /** Deduplicated by address (the first listing wins). */
  endpoints: ValidEndpoint[]
}

export class ServiceError extends TapestryError {
  readonly issues: string[]
  constructor(service: string, issues: string[]) {
    super('TAPESTRY_SERVICE_INVALID', `service ${service}: ${issues.join('; ')}`)
    this.issues = issues
  }
}

export function serviceKey(name: string, namespace: string): string {
  return `${namespace}/${name}`
}

function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535
}

const show = (v: unknown): string => JSON.stringify(v) ?? String(v)

/** Checks `spec`; returns its numeric form or throws a ServiceError with every issue. */
export function validateService(spec: ServiceSpec): ValidService {
  const issues: string[] = []
  const s = (spec ?? {}) as Partial<ServiceSpec>
  const name = typeof s.name === 'string' ? s.name : ''
  const namespace = s.namespace === undefined ? 'default' : typeof s.namespace === 'string' ? s.namespace : ''
  if (name === '') issues.push(`name must be a non-empty string (got ${show(s.name)})`)
  if (namespace === '') issues.push(`namespace must be a non-empty string (got ${show(s.namespace)})`)

  let vip = 0
  const cip = s.clusterIP
  if (cip !== 'None' && cip !== '') {
    const a = typeof cip === 'string' ? ipv4Parse(cip) : -1
    if (a <= 0 || a === 0xffffffff) issues.push(`clusterIP must be an IPv4 address, "None" or "" (got ${show(cip)})`)
    else vip = a
  }

  const ports: ValidPort[] = []
  if (!Array.isArray(s.ports)) {
    issues.push(`ports must be a list (got ${show(s.ports)})`)
  } else {
    const seen = new Set<number>()
    s.ports.forEach((p, i) => {
      const at = `ports[${i}]`
      if (p === null || typeof p !== 'object') { issues.push(`${at} must be an object`); return }
      const protoName = p.protocol ?? 'TCP'
      const proto = protoName === 'TCP' ? PROTO_TCP : protoName === 'UDP' ? PROTO_UDP : -1
      if (proto < 0) issues.push(`${at}.protocol must be "TCP" or "UDP" (got ${show(p.protocol)})`)
      if (!isPort(p.port)) issues.push(`${at}.port must be an integer in [1, 65535] (got ${show(p.port)})`)
      const target = p.targetPort ?? p.port
      if (typeof target === 'string') {
        issues.push(`${at}.targetPort must be a number: named ports are not supported (got ${show(target)})`)
      } else if (!isPort(target)) {
        issues.push(`${at}.targetPort must be an integer in [1, 65535] (got ${show(target)})`)
      }
      if (proto < 0 || !isPort(p.port) || !isPort(target)) return
      const k = (proto << 16) | p.port
      if (seen.has(k)) { issues.push(`${at} repeats port ${p.port}/${protoName}`); return }
      seen.add(k)
      ports.push({ name: typeof p.name === 'string' ? p.name : '', port: p.port, targetPort: target, proto })
    })
  }

  const algorithmName = s.algorithm ?? 'maglev'
  const algorithm = Object.prototype.hasOwnProperty.call(ALGORITHM_NAMES, algorithmName) ? ALGORITHM_NAMES[algorithmName] : -1
  if (algorithm < 0) {
    issues.push(`algorithm must be one of ${Object.keys(ALGORITHM_NAMES).join(', ')} (got ${show(s.algorithm)})`)
  }

  let affinityTimeoutMs = 0
  const aff = s.sessionAffinity ?? 'None'
  if (aff === 'ClientIP') {
    const t = s.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? AFFINITY_DEFAULT_TIMEOUT_S
    if (!Number.isInteger(t) || t < 1 || t > AFFINITY_MAX_TIMEOUT_S) {
      issues.push(`sessionAffinityConfig.clientIP.timeoutSeconds must be an integer in [1, ${AFFINITY_MAX_TIMEOUT_S}] (got ${show(t)})`)
    } else {
      affinityTimeoutMs = t * 1000
    }
  } else if (aff !== 'None') {
    issues.push(`sessionAffinity must be "None" or "ClientIP" (got ${show(s.sessionAffinity)})`)
  }

  let nodePort: number | null = null
  if (s.nodePort !== undefined) {
    if (!isPort(s.nodePort)) issues.push(`nodePort must be an integer in [1, 65535] (got ${show(s.nodePort)})`)
    else nodePort = s.nodePort
  }

  const endpoints: ValidEndpoint[] = []
  if (!Array.isArray(s.endpoints)) {
    issues.push(`endpoints must be a list (got ${show(s.endpoints)})`)
  } else {
    const seen = new Set<number>()
    s.endpoints.forEach((e, i) => {
      const at = `endpoints[${i}]`
      if (e === null || typeof e !== 'object') { issues.push(`${at} must be an object`); return }
      const ip = typeof e.ip === 'string' ? ipv4Parse(e.ip) : -1
      if (ip <= 0 || ip === 0xffffffff) { issues.push(`${at}.ip must be an IPv4 address (got ${show(e.ip)})`); return }
      if (e.ready !== undefined && typeof e.ready !== 'boolean') issues.push(`${at}.ready must be a boolean (got ${show(e.ready)})`)
      if (e.terminating !== undefined && typeof e.terminating !== 'boolean') {
        issues.push(`${at}.terminating must be a boolean (got ${show(e.terminating)})`)
      }
      if (seen.has(ip)) return
      seen.add(ip)
      endpoints.push({ ip, text: e.ip, ready: e.ready !== false, terminating: e.terminating === true })
    })
  }

  if (issues.length > 0) throw new ServiceError(name !== '' ? serviceKey(name, namespace || '?') : '(unnamed)', issues)
  return {
    key: serviceKey(name, namespace), name, namespace, vip, clusterIP: String(cip), ports,
    algorithm: algorithm as Algorithm, algorithmName, affinityTimeoutMs, nodePort, endpoints,
  }
}

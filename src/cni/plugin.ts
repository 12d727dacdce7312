#!/usr/bin/env -S -u NODE_OPTIONS -u NODE_EXTRA_CA_CERTS node
/**
 * The `tapestry` CNI plugin (CNI spec 1.0.0 and 1.1.0; results also in the
 * 0.3.x/0.4.0 format). A container runtime (podman, containerd, cnitool)
 * executes it with CNI_COMMAND and the other CNI_* variables set and the
 * network config on stdin; it asks the host's Tapestry agent over the runtime
 * API (HTTP+JSON on the agent's unix socket) and prints the result.
 *
 *   ADD     POST /v1/pods {name, netns, ifname, network, containerId[, ip, mac]}:
 *           the agent creates the TAP, moves it into CNI_NETNS as CNI_IFNAME and
 *           configures address (from the network's podRange, or from a delegated
 *           IPAM plugin), MAC, MTU and default route. Asking again returns the
 *           same result (the pod name is derived from the container id).
 *   DEL     deletes every pod the agent has for CNI_CONTAINERID + CNI_IFNAME.
 *           Deleting twice, or a container the agent never saw, succeeds. When
 *           the agent is not running, DEL succeeds if the agent's state file
 *           (beside its socket) holds no pod for the container, or only one whose
 *           netns is gone (the agent drops such pods when it starts); otherwise
 *           it fails with code 11 (try again later) and says to start the agent.
 *   CHECK   the agent still has the pod, and in the netns the interface exists,
 *           is up, has prevResult's MAC and address and the default route.
 *   GC      (1.1.0) deletes the pods of this network whose container id and
 *           ifname are not in cni.dev/valid-attachments (needs "network").
 *   STATUS  (1.1.0) succeeds when the agent answers, else code 50.
 *   VERSION the versions below.
 *
 * Network config keys: cniVersion, name, type "tapestry", network (the agent's
 * network name; optional when the agent has one network), socket (default: the
 * only /run/tapestry/*.sock, else /run/tapestry/agent.sock), ipam (optional: an
 * IPAM plugin found in CNI_PATH gives the address instead of the podRange),
 * dns (copied to the result). A static address or MAC may come from CNI_ARGS
 * (IP=a.b.c.d/len, MAC=...) or runtimeConfig (ips, mac capabilities). It is
 * meant to be the first plugin of a list (it makes the interface); after
 * another one, its result is appended to prevResult.
 *
 * The shebang drops NODE_OPTIONS and NODE_EXTRA_CA_CERTS, which runtimes pass
 * on from their environment: the plugin needs neither, and loading a CA bundle
 * alone costs ~30 ms of start-up.
 *
 * This file is copied on its own into the CNI plugin directory by
 * `tapestry cni install`: it must import nothing but Node built-ins.
 */
import * as http from 'node:http'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { spawn } from 'node:child_process'

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']
const LATEST_VERSION = '1.1.0'

/** Error codes: 1-99 are the spec's well-known ones, 100+ this plugin's. */
export const CNI_ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot add containers now (spec 1.1). */
  NOT_AVAILABLE: 50,
  /** The agent refused or failed the request; details carry its error code. */
  AGENT_REFUSED: 100,
  /** CHECK found the attachment different from prevResult. */
  CHECK_FAILED: 101,
} as const

/** How long one request to the agent may take (adding a pod runs a few `ip` commands). */
const AGENT_TIMEOUT_MS = 30_000
const DEFAULT_SOCKET_DIR = '/run/tapestry'
const DEFAULT_IFNAME = 'eth0'
/** The agent's pod name rule (RFC 1123 label). */
const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

export class CniError extends Error {
  constructor(readonly code: number, message: string, readonly details = '') {
    super(message)
  }
}

interface Attachment { containerID: string; ifname: string }

interface NetConf {
  cniVersion: string
  name: string
  type?: string
  network?: string
  socket?: string
  ipam?: { type: string } & Record<string, unknown>
  dns?: Record<string, unknown>
  prevResult?: CniResult
  runtimeConfig?: { mac?: unknown; ips?: unknown }
  'cni.dev/valid-attachments'?: Attachment[]
}

interface CniInterface { name?: string; mac?: string; sandbox?: string; mtu?: number }
interface CniIp { version?: string; address?: string; gateway?: string; interface?: number }

interface CniResult {
  cniVersion?: string
  interfaces?: CniInterface[]
  ips?: CniIp[]
  routes?: { dst?: string; gw?: string }[]
  dns?: Record<string, unknown>
}

/** A pod as the agent shows it (GET /v1/pods; POST adds gateway and mtu). */
interface PodRow {
  name: string
  network: string
  netns: string
  ifname: string
  ip: string
  mac: string
  gateway?: string | null
  mtu?: number
  containerId: string | null
  source?: string
}

type Env = Record<string, string | undefined>

// ---- versions

function versionParts(v: string): number[] | null {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v)
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null
}

export function versionAtLeast(v: string, min: string): boolean {
  const a = versionParts(v)
  const b = versionParts(min)!
  if (!a) return false
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i]
  return true
}

// ---- naming

function sanitize(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/-{2,}/g, '-').replace(/^-+|-+$/g, '')
}

function hash12(s: string): string {
  // Loaded only for unusual ids: crypto costs a little start-up time.
  const crypto = require('node:crypto') as typeof import('node:crypto')
  return crypto.createHash('sha256').update(s).digest('hex').slice(0, 12)
}

/**
 * The agent's pod name for a container's interface: `<K8S_POD_NAME>-<id>` or
 * `cni-<id>`, where id is the first 12 characters of the container id (a hash
 * of it when those are not all [a-z0-9]), plus `-<ifname>` for an interface
 * other than eth0. At most 63 characters, an RFC 1123 label.
 */
export function podNameFor(containerId: string, ifname: string, k8sPodName?: string): string {
  const head = containerId.slice(0, 12)
  const id = /^[a-z0-9]{12}$/.test(head) ? head : hash12(containerId)
  let suffix = ''
  if (ifname !== DEFAULT_IFNAME) suffix = '-' + (sanitize(ifname) === ifname ? ifname : hash12(`ifname:${ifname}`).slice(0, 8))
  let base = (k8sPodName ? sanitize(k8sPodName) : '') || 'cni'
  base = base.slice(0, 63 - 1 - id.length - suffix.length).replace(/-+$/, '') || 'cni'
  const name = `${base}-${id}${suffix}`
  return NAME_RE.test(name) ? name : `cni-${hash12(`${containerId}/${ifname}`)}`
}

/** CNI_ARGS: `K=V;K=V`. */
export function parseCniArgs(s: string | undefined): Map<string, string> {
  const out = new Map<string, string>()
  if (!s) return out
  for (const pair of s.split(';')) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_ARGS has "${pair}", which is not KEY=VALUE (expected pairs separated by ';')`)
    out.set(pair.slice(0, eq), pair.slice(eq + 1))
  }
  return out
}

// ---- the agent's API

export function defaultSocket(): string {
  try {
    const socks = fs.readdirSync(DEFAULT_SOCKET_DIR).filter((f) => f.endsWith('.sock'))
    if (socks.length === 1) return `${DEFAULT_SOCKET_DIR}/${socks[0]}`
  } catch { /* no directory */ }
  return `${DEFAULT_SOCKET_DIR}/agent.sock`
}

interface AgentError { status: number; code: string; message: string; problems?: { path: string; message: string }[] }

class AgentRefused extends Error {
  constructor(readonly err: AgentError) {
    super(err.message)
  }
}

function unreachable(socket: string, netName: string, why: string): CniError {
  return new CniError(CNI_ERR.TRY_AGAIN_LATER,
    `the Tapestry agent is not reachable on ${socket} (${why}): start it (\`tapestry agent --config FILE\`) and retry, or set "socket" in network config "${netName}" to the agent's API socket`,
    why)
}

function agentCall<T>(socket: string, netName: string, method: string, urlPath: string, body?: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body)
    const headers: Record<string, string> = { connection: 'close' }
    if (data !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(Buffer.byteLength(data))
    }
    const req = http.request({ socketPath: socket, method, path: urlPath, headers, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => {
        let parsed: unknown
        try {
          parsed = JSON.parse(text)
        } catch {
          return reject(new CniError(CNI_ERR.AGENT_REFUSED, `the Tapestry agent on ${socket} answered ${method} ${urlPath} with something that is not JSON (HTTP ${res.statusCode}); is it a Tapestry agent socket?`, text.slice(0, 300)))
        }
        const status = res.statusCode ?? 500
        if (status >= 400) {
          const e = (parsed as { error?: { code?: string; message?: string; problems?: { path: string; message: string }[] } }).error
          return reject(new AgentRefused({ status, code: e?.code ?? 'HTTP_' + status, message: e?.message ?? `HTTP ${status}`, problems: e?.problems }))
        }
        resolve(parsed as T)
      })
      res.on('error', (err) => reject(unreachable(socket, netName, err.message)))
    })
    req.setTimeout(AGENT_TIMEOUT_MS, () => req.destroy(Object.assign(new Error(`no answer within ${AGENT_TIMEOUT_MS / 1000} s`), { code: 'ETIMEDOUT' })))
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EACCES' || err.code === 'EPERM') {
        return reject(new CniError(CNI_ERR.IO_FAILURE, `permission denied on the Tapestry agent socket ${socket}: the API socket is root-only, run the plugin as root`, err.code))
      }
      reject(unreachable(socket, netName, err.code ?? err.message))
    })
    req.end(data)
  })
}

/** Maps an agent refusal to a CNI error: a bad `network` is the network config's fault (7). */
function refused(e: AgentRefused, what: string): CniError {
  const problems = e.err.problems ?? []
  const details = JSON.stringify({ agentCode: e.err.code, status: e.err.status, problems: problems.length ? problems : undefined })
  if (problems.some((p) => /^(pods\[\d+\]\.)?network$/.test(p.path))) {
    return new CniError(CNI_ERR.INVALID_CONFIG, `${what}: ${e.err.message} (fix "network" in the CNI network config)`, details)
  }
  if (problems.some((p) => /^pods\[\d+\]\.netns$/.test(p.path))) {
    return new CniError(CNI_ERR.INVALID_ENV, `${what}: ${e.err.message} (CNI_NETNS must be a network namespace path under /run/netns or /proc/PID/ns/net)`, details)
  }
  return new CniError(CNI_ERR.AGENT_REFUSED, `${what}: the Tapestry agent refused: ${e.err.message}`, details)
}

// ---- delegated IPAM

interface ExecOut { code: number | null; stdout: string; stderr: string }

function execPlugin(file: string, env: Env, stdin: string): Promise<ExecOut> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], { env: env as NodeJS.ProcessEnv, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.on('error', () => undefined)
    child.stdin.end(stdin)
  })
}

function findInPath(type: string, cniPath: string | undefined): string {
  if (!cniPath) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_PATH is required to run the IPAM plugin "${type}"`)
  if (type.includes('/')) throw new CniError(CNI_ERR.INVALID_CONFIG, `ipam.type "${type}" must be a plugin name, not a path`)
  const dirs = cniPath.split(':').filter(Boolean)
  for (const d of dirs) {
    const f = path.join(d, type)
    try {
      fs.accessSync(f, fs.constants.X_OK)
      return f
    } catch { /* next */ }
  }
  throw new CniError(CNI_ERR.INVALID_CONFIG, `IPAM plugin "${type}" not found in CNI_PATH (${dirs.join(', ')}): install it or fix ipam.type`)
}

/** Runs the IPAM plugin for `command` with our stdin and environment; returns its parsed stdout (ADD) or null. */
async function delegateIpam(conf: NetConf, raw: string, env: Env, command: string): Promise<CniResult | null> {
  const file = findInPath(conf.ipam!.type, env.CNI_PATH)
  const out = await execPlugin(file, { ...env, CNI_COMMAND: command }, raw)
  if (out.code !== 0) {
    let e: { code?: number; msg?: string; details?: string } = {}
    try { e = JSON.parse(out.stdout) } catch { /* not JSON */ }
    throw new CniError(typeof e.code === 'number' ? e.code : CNI_ERR.IO_FAILURE,
      `IPAM plugin ${conf.ipam!.type} ${command} failed: ${e.msg ?? (out.stderr.trim() || out.stdout.trim() || `exit ${out.code}`)}`, e.details ?? '')
  }
  if (command !== 'ADD') return null
  try {
    return JSON.parse(out.stdout) as CniResult
  } catch {
    throw new CniError(CNI_ERR.DECODE_FAILURE, `IPAM plugin ${conf.ipam!.type} printed a result that is not JSON`, out.stdout.slice(0, 300))
  }
}

// ---- config and environment

function parseConf(raw: string): NetConf {
  let v: unknown
  try {
    v = JSON.parse(raw)
  } catch (err) {
    throw new CniError(CNI_ERR.DECODE_FAILURE, `the network config on stdin is not JSON: ${(err as Error).message}`)
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new CniError(CNI_ERR.DECODE_FAILURE, 'the network config on stdin must be a JSON object')
  const c = v as Record<string, unknown>
  const bad = (key: string, why: string): never => { throw new CniError(CNI_ERR.INVALID_CONFIG, `network config: "${key}" ${why}`) }
  if (typeof c.cniVersion !== 'string' || c.cniVersion === '') bad('cniVersion', 'is required (a version such as "1.0.0")')
  if (!SUPPORTED_VERSIONS.includes(c.cniVersion as string)) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION,
      `incompatible CNI version ${JSON.stringify(c.cniVersion)}: the tapestry plugin supports ${SUPPORTED_VERSIONS.join(', ')}; set "cniVersion" to one of them`)
  }
  if (typeof c.name !== 'string' || c.name === '') bad('name', 'is required (the network name)')
  if (c.network !== undefined && (typeof c.network !== 'string' || c.network === '')) bad('network', 'must be the name of a network of the Tapestry agent')
  if (c.socket !== undefined && (typeof c.socket !== 'string' || !c.socket.startsWith('/'))) bad('socket', "must be the absolute path of the agent's API socket")
  if (c.ipam !== undefined && c.ipam !== null) {
    const ipam = c.ipam as Record<string, unknown>
    if (typeof ipam !== 'object' || Array.isArray(ipam)) bad('ipam', 'must be an object')
    if (Object.keys(ipam).length === 0) delete c.ipam
    else if (typeof ipam.type !== 'string' || ipam.type === '') bad('ipam.type', 'is required when ipam is given (an IPAM plugin such as "host-local")')
  } else delete c.ipam
  if (c.dns !== undefined && (c.dns === null || typeof c.dns !== 'object' || Array.isArray(c.dns))) bad('dns', 'must be an object')
  if (c.prevResult !== undefined && (c.prevResult === null || typeof c.prevResult !== 'object')) bad('prevResult', 'must be an object')
  const va = c['cni.dev/valid-attachments']
  if (va !== undefined && (!Array.isArray(va) || va.some((a) => a === null || typeof a !== 'object'))) bad('cni.dev/valid-attachments', 'must be a list of {containerID, ifname}')
  return c as unknown as NetConf
}

function requireEnv(env: Env, names: string[], command: string): void {
  const missing = names.filter((n) => !env[n])
  if (missing.length > 0) {
    throw new CniError(CNI_ERR.INVALID_ENV, `required environment variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')} missing for CNI_COMMAND=${command} (the container runtime sets them; see the CNI spec)`)
  }
  const id = env.CNI_CONTAINERID
  if (id !== undefined && id !== '' && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(id)) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_CONTAINERID ${JSON.stringify(id)} is not a container id (letters, digits, '_', '.', '-', starting with a letter or digit)`)
  }
  const ifn = env.CNI_IFNAME
  if (ifn !== undefined && ifn !== '' && (Buffer.byteLength(ifn) > 15 || ifn === '.' || ifn === '..' || /[/:\s]/.test(ifn))) {
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_IFNAME ${JSON.stringify(ifn)} is not a valid interface name (at most 15 bytes, no '/', ':' or whitespace)`)
  }
}

// ---- results

export function buildResult(version: string, row: PodRow, netns: string, ifname: string, dns: Record<string, unknown> | undefined): CniResult {
  const iface: CniInterface = { name: ifname, mac: row.mac, sandbox: netns }
  if (versionAtLeast(version, '1.1.0') && typeof row.mtu === 'number') iface.mtu = row.mtu
  const ip: CniIp = {}
  // Before 1.0.0 each address says its family.
  if (!versionAtLeast(version, '1.0.0')) ip.version = '4'
  ip.address = row.ip
  if (row.gateway) ip.gateway = row.gateway
  ip.interface = 0
  return {
    cniVersion: version,
    interfaces: [iface],
    ips: [ip],
    routes: row.gateway ? [{ dst: '0.0.0.0/0', gw: row.gateway }] : [],
    dns: dns ?? {},
  }
}

// ---- commands

interface Ctx { conf: NetConf; raw: string; env: Env; socket: string }

function attachmentOf(p: PodRow, id: string, ifname: string): boolean {
  return p.containerId === id && (p.ifname ?? DEFAULT_IFNAME) === ifname
}

async function listPods(ctx: Ctx): Promise<PodRow[]> {
  try {
    return await agentCall<PodRow[]>(ctx.socket, ctx.conf.name, 'GET', '/v1/pods')
  } catch (err) {
    if (err instanceof AgentRefused) throw refused(err, 'listing pods')
    throw err
  }
}

async function deletePod(ctx: Ctx, name: string): Promise<void> {
  try {
    await agentCall<{ deleted: boolean }>(ctx.socket, ctx.conf.name, 'DELETE', `/v1/pods/${encodeURIComponent(name)}`)
  } catch (err) {
    if (err instanceof AgentRefused) throw refused(err, `deleting pod ${name}`)
    throw err
  }
}

function staticAddressing(ctx: Ctx, args: Map<string, string>): { ip?: string; mac?: string } {
  const rc = ctx.conf.runtimeConfig ?? {}
  const out: { ip?: string; mac?: string } = {}
  const ips = Array.isArray(rc.ips) ? rc.ips.filter((x): x is string => typeof x === 'string') : []
  const ip = ips[0] ?? args.get('IP')
  if (ip !== undefined) {
    if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(ip)) {
      throw new CniError(CNI_ERR.INVALID_ENV, `static IP ${JSON.stringify(ip)}: give an IPv4 address with its prefix length, as 10.244.1.20/16 (the agent needs the subnet's prefix)`)
    }
    out.ip = ip
  }
  const mac = typeof rc.mac === 'string' ? rc.mac : args.get('MAC')
  if (mac !== undefined) out.mac = mac
  return out
}

async function cmdAdd(ctx: Ctx): Promise<CniResult> {
  const { env, conf } = ctx
  requireEnv(env, ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'], 'ADD')
  const id = env.CNI_CONTAINERID!
  const netns = env.CNI_NETNS!
  const ifname = env.CNI_IFNAME!
  if (!netns.startsWith('/')) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS ${JSON.stringify(netns)} must be an absolute path to a network namespace (as /run/netns/NAME)`)
  if (!fs.existsSync(netns)) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS ${netns} does not exist: the runtime must create the container's network namespace before ADD`)
  const args = parseCniArgs(env.CNI_ARGS)
  const name = podNameFor(id, ifname, args.get('K8S_POD_NAME'))
  const req: Record<string, unknown> = { name, netns, ifname, containerId: id, ...staticAddressing(ctx, args) }
  if (conf.network) req.network = conf.network

  let ipamResult: CniResult | null = null
  if (conf.ipam && req.ip === undefined) {
    // ADD again for an attachment the agent has: its address stands; asking the
    // IPAM plugin again would allocate a second one (host-local refuses).
    const existing = (await listPods(ctx)).find((p) => attachmentOf(p, id, ifname) && p.netns === netns)
    if (existing) req.ip = existing.ip
    else {
      ipamResult = await delegateIpam(conf, ctx.raw, env, 'ADD')
      const v4 = (ipamResult?.ips ?? []).find((x) => typeof x.address === 'string' && /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(x.address))
      if (!v4) {
        await delegateIpam(conf, ctx.raw, env, 'DEL').catch(() => undefined)
        throw new CniError(CNI_ERR.INVALID_CONFIG, `IPAM plugin ${conf.ipam.type} gave no IPv4 address: Tapestry networks are IPv4`, JSON.stringify(ipamResult))
      }
      req.ip = v4.address
    }
  }
  let row: PodRow
  try {
    row = await addPod(ctx, req)
  } catch (err) {
    if (ipamResult) await delegateIpam(conf, ctx.raw, env, 'DEL').catch(() => undefined)
    throw err
  }
  return mergePrev(buildResult(conf.cniVersion, row, netns, ifname, conf.dns ?? ipamResult?.dns), conf.prevResult)
}

/** After another plugin in a list (unusual: tapestry makes the interface), its result comes first, ours appended. */
export function mergePrev(ours: CniResult, prev: CniResult | undefined): CniResult {
  if (!prev) return ours
  const base = prev.interfaces?.length ?? 0
  const hasDns = prev.dns && Object.keys(prev.dns).length > 0
  return {
    cniVersion: ours.cniVersion,
    interfaces: [...(prev.interfaces ?? []), ...(ours.interfaces ?? [])],
    ips: [...(prev.ips ?? []), ...(ours.ips ?? []).map((ip) => ({ ...ip, interface: (ip.interface ?? 0) + base }))],
    routes: [...(prev.routes ?? []), ...(ours.routes ?? [])],
    dns: hasDns ? prev.dns : ours.dns,
  }
}

async function addPod(ctx: Ctx, req: Record<string, unknown>): Promise<PodRow> {
  const post = (): Promise<PodRow> => agentCall<PodRow>(ctx.socket, ctx.conf.name, 'POST', '/v1/pods', req)
  try {
    return await post()
  } catch (err) {
    if (!(err instanceof AgentRefused)) throw err
    // The name is taken by this container's pod in a namespace that is gone (a
    // DEL that never came, say): that pod is stale; replace it.
    if (err.err.problems?.some((p) => p.path === 'name')) {
      const old = (await listPods(ctx)).find((p) => p.name === req.name)
      if (old && old.containerId === req.containerId && old.netns !== req.netns && !fs.existsSync(old.netns.startsWith('/') ? old.netns : `/run/netns/${old.netns}`)) {
        await deletePod(ctx, old.name)
        try {
          return await post()
        } catch (again) {
          if (again instanceof AgentRefused) throw refused(again, `adding pod ${req.name}`)
          throw again
        }
      }
    }
    throw refused(err, `adding pod ${req.name}`)
  }
}

/** Pods the agent's state files (beside its socket) hold for this attachment, read while the agent is down. */
function recordedPods(socket: string, id: string, ifname: string): { file: string; pod: { name: string; netns: string } }[] {
  const dir = path.dirname(socket)
  let files: string[]
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.pods.json'))
  } catch {
    return []
  }
  const out: { file: string; pod: { name: string; netns: string } }[] = []
  for (const f of files) {
    const file = path.join(dir, f)
    try {
      const pods = (JSON.parse(fs.readFileSync(file, 'utf8')) as { pods?: { name: string; netns: string; ifname?: string; containerId?: string }[] }).pods ?? []
      for (const p of pods) if (p.containerId === id && (p.ifname ?? DEFAULT_IFNAME) === ifname) out.push({ file, pod: p })
    } catch { /* unreadable: the agent ignores it too */ }
  }
  return out
}

function netnsGone(netns: string): boolean {
  return !fs.existsSync(netns.startsWith('/') ? netns : `/run/netns/${netns}`)
}

async function cmdDel(ctx: Ctx): Promise<void> {
  const { env, conf } = ctx
  requireEnv(env, ['CNI_CONTAINERID', 'CNI_IFNAME'], 'DEL')
  const id = env.CNI_CONTAINERID!
  const ifname = env.CNI_IFNAME!
  let pods: PodRow[] | null = null
  try {
    pods = await listPods(ctx)
  } catch (err) {
    if (!(err instanceof CniError) || err.code !== CNI_ERR.TRY_AGAIN_LATER) throw err
    // No agent. Nothing to clean when it holds no pod for the container, or only
    // pods whose namespace is gone (it drops those when it starts).
    const held = recordedPods(ctx.socket, id, ifname).filter((r) => !netnsGone(r.pod.netns))
    if (held.length > 0) {
      throw new CniError(CNI_ERR.TRY_AGAIN_LATER,
        `the Tapestry agent is not reachable on ${ctx.socket} (${err.details}) and still holds pod ${held[0].pod.name} for this container (recorded in ${held[0].file}): start the agent, then retry DEL so it releases the pod's address and TAP`,
        err.details)
    }
  }
  for (const p of pods ?? []) if (attachmentOf(p, id, ifname)) await deletePod(ctx, p.name)
  if (conf.ipam) await delegateIpam(conf, ctx.raw, env, 'DEL')
}

/** Runs `ip` in a network namespace given by path. */
function ipIn(netns: string, args: string[]): Promise<ExecOut> {
  const dir = path.dirname(netns)
  const argv = dir === '/run/netns' || dir === '/var/run/netns'
    ? ['ip', '-n', path.basename(netns), ...args]
    : ['nsenter', `--net=${netns}`, 'ip', ...args]
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    child.on('error', (err) => reject(new CniError(CNI_ERR.IO_FAILURE, `cannot run ${argv[0]}: ${err.message}`)))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

async function cmdCheck(ctx: Ctx): Promise<void> {
  const { env, conf } = ctx
  if (!versionAtLeast(conf.cniVersion, '0.4.0')) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `CHECK needs cniVersion 0.4.0 or later; the network config says ${conf.cniVersion}`)
  }
  requireEnv(env, ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'], 'CHECK')
  const prev = conf.prevResult
  if (!prev) throw new CniError(CNI_ERR.INVALID_CONFIG, 'CHECK needs prevResult in the network config (the result ADD printed)')
  const id = env.CNI_CONTAINERID!
  const netns = env.CNI_NETNS!
  const ifname = env.CNI_IFNAME!
  if (!fs.existsSync(netns)) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `CNI_NETNS ${netns} does not exist: the container is gone`)
  const fail = (what: string): never => { throw new CniError(CNI_ERR.CHECK_FAILED, `CHECK ${ifname} of container ${id}: ${what}; DEL and ADD the container's network again to repair it`) }

  const idx = (prev.interfaces ?? []).findIndex((i) => i.name === ifname && (i.sandbox === undefined || i.sandbox === netns))
  if (idx < 0) fail(`prevResult has no interface ${ifname} in ${netns}`)
  const want = prev.interfaces![idx]
  const addrs = (prev.ips ?? []).filter((x) => x.interface === idx && typeof x.address === 'string').map((x) => x.address!)
  if (addrs.length === 0) fail('prevResult has no address for the interface')
  const gw = (prev.ips ?? []).find((x) => x.interface === idx && x.gateway)?.gateway

  const pod = (await listPods(ctx)).find((p) => attachmentOf(p, id, ifname))
  if (!pod) fail(`the Tapestry agent on ${ctx.socket} has no pod for it`)
  if (!addrs.includes(pod!.ip)) fail(`the agent gives it ${pod!.ip}, prevResult ${addrs.join(', ')}`)
  if (want.mac && pod!.mac.toLowerCase() !== want.mac.toLowerCase()) fail(`the agent gives it MAC ${pod!.mac}, prevResult ${want.mac}`)

  const link = await ipIn(netns, ['-j', 'addr', 'show', 'dev', ifname])
  if (link.code !== 0) fail(`no interface ${ifname} in ${netns} (${link.stderr.trim()})`)
  const info = (JSON.parse(link.stdout) as { flags?: string[]; address?: string; addr_info?: { family: string; local: string; prefixlen: number }[] }[])[0] ?? {}
  if (want.mac && (info.address ?? '').toLowerCase() !== want.mac.toLowerCase()) fail(`its MAC is ${info.address}, prevResult says ${want.mac}`)
  if (!(info.flags ?? []).includes('UP')) fail('it is down')
  const have = (info.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`)
  for (const a of addrs) if (!have.includes(a)) fail(`it lacks address ${a} (has ${have.join(', ') || 'none'})`)
  if (gw) {
    const r = await ipIn(netns, ['-j', 'route', 'show', 'default'])
    const routes = r.code === 0 ? (JSON.parse(r.stdout) as { gateway?: string; dev?: string }[]) : []
    if (!routes.some((x) => x.gateway === gw && x.dev === ifname)) fail(`no default route via ${gw} dev ${ifname}`)
  }
  if (conf.ipam) await delegateIpam(conf, ctx.raw, env, 'CHECK')
}

async function cmdGc(ctx: Ctx): Promise<void> {
  const { conf } = ctx
  if (!versionAtLeast(conf.cniVersion, '1.1.0')) throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `GC needs cniVersion 1.1.0; the network config says ${conf.cniVersion}`)
  const valid = conf['cni.dev/valid-attachments'] ?? []
  // Without "network" the pods of this config cannot be told from other networks' pods: leave them.
  if (conf.network) {
    const pods = await listPods(ctx)
    for (const p of pods) {
      if (!p.containerId || p.network !== conf.network || p.source === 'config') continue
      if (valid.some((a) => a.containerID === p.containerId && (a.ifname ?? DEFAULT_IFNAME) === p.ifname)) continue
      await deletePod(ctx, p.name)
    }
  }
  if (conf.ipam) await delegateIpam(conf, ctx.raw, ctx.env, 'GC')
}

async function cmdStatus(ctx: Ctx): Promise<void> {
  const { conf } = ctx
  if (!versionAtLeast(conf.cniVersion, '1.1.0')) throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `STATUS needs cniVersion 1.1.0; the network config says ${conf.cniVersion}`)
  try {
    await listPods(ctx)
  } catch (err) {
    if (err instanceof CniError && err.code === CNI_ERR.TRY_AGAIN_LATER) {
      throw new CniError(CNI_ERR.NOT_AVAILABLE, `the Tapestry agent is not reachable on ${ctx.socket}: containers cannot be added until it runs (\`tapestry agent --config FILE\`)`, err.details)
    }
    throw err
  }
  if (conf.ipam) await delegateIpam(conf, ctx.raw, ctx.env, 'STATUS')
}

// ---- entry point

function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return Promise.resolve('')
  return new Promise((resolve, reject) => {
    let text = ''
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', (c: string) => { text += c })
    process.stdin.on('end', () => resolve(text))
    process.stdin.on('error', (err) => reject(new CniError(CNI_ERR.IO_FAILURE, `cannot read the network config from stdin: ${err.message}`)))
  })
}

/** Runs one CNI command; returns what to print on stdout and the exit code. */
export async function run(env: Env, stdin: string): Promise<{ out: string; code: number }> {
  let version = LATEST_VERSION
  try {
    const command = env.CNI_COMMAND
    if (!command) throw new CniError(CNI_ERR.INVALID_ENV, 'CNI_COMMAND is not set: this is a CNI plugin, run by a container runtime with CNI_COMMAND=ADD|DEL|CHECK|GC|STATUS|VERSION')
    if (command === 'VERSION') {
      let asked: unknown
      try { asked = (JSON.parse(stdin || '{}') as { cniVersion?: unknown }).cniVersion } catch { /* answer anyway */ }
      const v = typeof asked === 'string' && SUPPORTED_VERSIONS.includes(asked) ? asked : LATEST_VERSION
      return { out: JSON.stringify({ cniVersion: v, supportedVersions: SUPPORTED_VERSIONS }) + '\n', code: 0 }
    }
    if (!['ADD', 'DEL', 'CHECK', 'GC', 'STATUS'].includes(command)) {
      throw new CniError(CNI_ERR.INVALID_ENV, `unknown CNI_COMMAND ${JSON.stringify(command)} (known: ADD, DEL, CHECK, GC, STATUS, VERSION)`)
    }
    const conf = parseConf(stdin)
    version = conf.cniVersion
    const ctx: Ctx = { conf, raw: stdin, env, socket: conf.socket ?? defaultSocket() }
    if (command === 'ADD') return { out: JSON.stringify(await cmdAdd(ctx), null, 2) + '\n', code: 0 }
    if (command === 'DEL') await cmdDel(ctx)
    else if (command === 'CHECK') await cmdCheck(ctx)
    else if (command === 'GC') await cmdGc(ctx)
    else await cmdStatus(ctx)
    return { out: '', code: 0 }
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CNI_ERR.IO_FAILURE, `tapestry CNI plugin: ${(err as Error)?.message ?? String(err)}`)
    const body: Record<string, unknown> = { cniVersion: version, code: e.code, msg: e.message }
    if (e.details) body.details = e.details
    return { out: JSON.stringify(body, null, 2) + '\n', code: 1 }
  }
}

if (require.main === module) {
  readStdin()
    .then((stdin) => run(process.env, stdin))
    .catch((err: unknown) => ({ out: JSON.stringify({ cniVersion: LATEST_VERSION, code: CNI_ERR.IO_FAILURE, msg: String((err as Error)?.message ?? err) }) + '\n', code: 1 }))
    .then(({ out, code }) => {
      // Synchronous, so that all of it is out before exit.
      const buf = Buffer.from(out)
      for (let off = 0; off < buf.length;) {
        try {
          off += fs.writeSync(1, buf, off)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') break
        }
      }
      process.exit(code)
    })
}

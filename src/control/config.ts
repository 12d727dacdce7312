/**
 * Loads and validates the agent's config, then hands back one normalized,
 * fully defaulted object that also carries the numeric forms the data path
 * uses (IPv4 as u32, MAC as hi16/lo32).
 *
 * Validation runs in two passes and reports every problem of both:
 * 1. the schema (config-schema.ts) checks each value on its own;
 * 2. the rules (config-rules.ts) check values against each other, on what
 *    survived the first pass (config-salvage.ts).
 * Any problem throws a ConfigError and nothing is returned: the agent
 * validates the whole config before it changes anything.
 */
import * as fs from 'node:fs'
import { LineCounter, parseDocument } from 'yaml'
import type { Document } from 'yaml'
import { ipv4Format, macFormat, prefixMask } from '../wire/addr'
import { ConfigError, ConfigReadError } from './config-error'
import type { ConfigProblem } from './config-error'
import { configErrorMap, formatPath, issuesToProblems } from './config-issues'
import type { PathProblem } from './config-issues'
import { checkRules, netnsPath } from './config-rules'
import { salvage } from './config-salvage'
import type { Salvaged } from './config-salvage'
import { configSchema, VXLAN_OVERHEAD_LEN } from './config-schema'
import type { LogLevel, RawConfig, RawNetwork, RawPod } from './config-schema'
import { derivePodMac } from './pod-mac'

export { CONFIG_INVALID, CONFIG_UNREADABLE, ConfigError, ConfigReadError, formatProblem } from './config-error'
export type { ConfigProblem } from './config-error'
export { derivePodMac } from './pod-mac'
import type { ServiceSpec } from '../service/service-model'
export { netnsPath } from './config-rules'
export {
  CLUSTER_DEFAULT_BLOCK_PREFIX, CLUSTER_DEFAULT_LEASE_TTL_S, CLUSTER_DEFAULT_PREFIX, ETCD_DEFAULT_PORT, FDB_DEFAULT_AGE_S, FDB_DEFAULT_MAX_ENTRIES, HEALTH_DEFAULT_DOWN_AFTER, HEALTH_DEFAULT_INTERVAL_S, HEALTH_DEFAULT_LOSS_WINDOW, HEALTH_DEFAULT_TIMEOUT_MS, LOG_LEVELS, METRICS_DEFAULT_LISTEN, NETNS_RUN_DIR, POD_DEFAULT_IFNAME,
  VNI_MAX, VXLAN_DEFAULT_SRC_PORT_MAX, VXLAN_DEFAULT_SRC_PORT_MIN, VXLAN_IANA_PORT, VXLAN_OVERHEAD_LEN,
} from './config-schema'
export type { LogLevel } from './config-schema'

// ---- The normalized config

export interface NodeConfig {
  name: string
  underlayIP: string
  /** underlayIP as an unsigned 32-bit number. */
  underlayAddr: number
  vxlanPort: number
  /** Underlay MTU. */
  mtu: number
  /** MTU of pod interfaces: as configured, or mtu - VXLAN_OVERHEAD_LEN. */
  podMtu: number
}

export interface NetworkConfig {
  name: string
  vni: number
  /** Canonical text, as `10.244.0.0/16`. */
  subnet: string
  subnetAddr: number
  subnetPrefix: number
  subnetMask: number
  broadcastAddr: number
  /** The address every agent answers ARP for in this network, or null. */
  gateway: string | null
  gatewayAddr: number | null
  /** Addresses this node gives pods added without an IP, or null. */
  podRange: { addr: number; prefix: number } | null
  /** This node's address on the network's host-side TAP, or null (no host access). */
  hostIP: string | null
  hostAddr: number | null
}

export interface PodConfig {
  name: string
  /** Name of the pod's network, and its index in Config.networks and VNI. */
  network: string
  networkIndex: number
  vni: number
  /** As configured: a name under NETNS_RUN_DIR or an absolute path. */
  netns: string
  /** The absolute path of the namespace file. */
  netnsPath: string
  ifname: string
  /** Address with prefix, as `10.244.1.2/16`. */
  ip: string
  ipAddr: number
  prefix: number
  /** Lowercase, colon separated. */
  mac: string
  macHi: number
  macLo: number
  /** True when mac was not configured and came from derivePodMac(name). */
  macDerived: boolean
  portSecurity: boolean
}

export interface VxlanConfig {
  /** Range of the outer UDP source port, chosen per inner flow for underlay ECMP. */
  srcPortMin: number
  srcPortMax: number
  /** Receive buffer of the VXLAN socket, bytes. */
  rcvbufBytes: number
}

export interface FdbConfig {
  ageSeconds: number
  maxEntries: number
  /** 0 means unlimited. */
  maxPerVni: number
  /** 0 means unlimited. */
  maxPerPort: number
}

export interface DnsConfig {
  ip: string
  ipAddr: number
  clusterDomain: string
}

export interface ConntrackConfig {
  maxConnections: number
}

export interface StormConfig {
  /** Flooded frames per second per pod; 0 = unlimited. */
  floodPerSecond: number
  burst: number
}

export interface LogConfig {
  level: LogLevel
}

export interface Config {
  node: NodeConfig
  networks: NetworkConfig[]
  /** Remote VTEP addresses as text, and the same as u32 in peerAddrs (same order). */
  peers: string[]
  peerAddrs: number[]
  learnPeers: boolean
  arpSuppression: boolean
  vxlan: VxlanConfig
  fdb: FdbConfig
  storm: StormConfig
  offloads: boolean
  /** Busy-poll window after each received batch, microseconds (0 = off). */
  busyPollUs: number
  /** ARP, ICMP and ICMPv6 are read through a socket and TAP queues of their own, ahead of bulk traffic (overlay/steering.ts). */
  priorityLane: boolean
  /** A receive batch (a pod's TAP, the VXLAN socket) ends once it holds this many bytes (0 = 64 frames, whatever their size). */
  rxBatchBytes: number
  /** Threads the datapath runs in (datapath/workers.ts). */
  workers: number
  /** PM QoS CPU latency limit held while the agent runs, microseconds (null = none). */
  cpuLatencyUs: number | null
  log: LogConfig
  api: ApiConfig
  metrics: MetricsConfig
  /** Peer health probing (ICMP echo to each peer, small and full-size with DF). */
  health: HealthConfig
  /** Services as written (checked by the service layer's validator). */
  services: ServiceSpec[]
  dns: DnsConfig | null
  /** CIDR routed to the gateway from host TAPs, or null. */
  serviceRange: string | null
  conntrack: ConntrackConfig
  /** Cluster mode (etcd), or null when peers come from the config alone. */
  cluster: ClusterConfig | null
  pods: PodConfig[]
}

export interface ClusterConfig {
  /** etcd client endpoints, normalized to http(s)://HOST:PORT. */
  etcd: string[]
  /** Key prefix, as `/tapestry` (no trailing '/'). */
  prefix: string
  /** Seconds the node's registration outlives a dead agent. */
  leaseTTL: number
  /** Prefix length of the block of each network's subnet this node leases. */
  blockPrefix: number
}

export interface HealthConfig {
  /** Seconds between probe rounds to each peer; 0 when probing is off. Default 2. */
  intervalSeconds: number
  /** How long a probe waits for its echo reply. Default 1000. */
  timeoutMs: number
  /** Probes lost in a row before a peer is down (full-size ones: before its path is a black hole). Default 3. */
  downAfter: number
  /** Number of latest probes lossPct covers. Default 20. */
  lossWindow: number
}

export interface MetricsConfig {
  /** HOST:PORT of the Prometheus endpoint (GET /metrics); '' when metrics are off. Default 127.0.0.1:9464. */
  listen: string
}

export interface ApiConfig {
  /** Unix socket of the runtime API; default /run/tapestry/<node>.sock. */
  socket: string
}

export interface ParseOptions {
  /**
   * Whether a pod's netns exists; given the configured text (a name or an
   * absolute path). The default looks in NETNS_RUN_DIR or at the path.
   */
  netnsExists?: (nameOrPath: string) => boolean
}

export function defaultNetnsExists(nameOrPath: string): boolean {
  return fs.existsSync(netnsPath(nameOrPath))
}

// ---- Entry points

/** Validates a parsed config object (from YAML, JSON or a test) and returns it normalized; throws ConfigError. */
export function parseConfig(obj: unknown, opts: ParseOptions = {}): Config {
  const { config, problems } = validate(obj, opts)
  if (!config) throw new ConfigError(problems.map((p) => ({ path: formatPath(p.path), message: p.message })))
  return config
}

/** Parses YAML text and validates it; problems carry the line and column of their key. */
export function parseConfigText(text: string, opts: ParseOptions = {}): Config {
  return parseYaml(text, opts, undefined)
}

/** Reads a YAML config file and validates it; throws ConfigReadError if it cannot be read, ConfigError if it is invalid. */
export function loadConfigFile(path: string, opts: ParseOptions = {}): Config {
  let text: string
  try {
    text = fs.readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigReadError(path, err)
  }
  return parseYaml(text, opts, path)
}

function parseYaml(text: string, opts: ParseOptions, file: string | undefined): Config {
  const lines = new LineCounter()
  // uniqueKeys (the default) makes a repeated key an error rather than a silent overwrite.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e): ConfigProblem => {
      const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0])
      return { path: '', message: `invalid YAML: ${e.message}`, line: pos.line, column: pos.col }
    }), file)
  }
  let obj: unknown
  try {
    obj = doc.toJS()
  } catch (err) {
    // yaml refuses alias bombs and dangling aliases here (ReferenceError).
    throw new ConfigError([{ path: '', message: `invalid YAML: ${(err as Error).message}` }], file)
  }
  const { config, problems } = validate(obj, opts)
  if (!config) throw new ConfigError(problems.map((p) => locate(p, doc, lines)), file)
  return config
}

/** Adds the line and column of the nearest key of `p.path` that the YAML has (a missing key: its parent). */
function locate(p: PathProblem, doc: Document, lines: LineCounter): ConfigProblem {
  const out: ConfigProblem = { path: formatPath(p.path), message: p.message }
  for (let n = p.path.length; n > 0; n--) {
    const node = doc.getIn(p.path.slice(0, n), true) as { range?: [number, number, number] } | undefined
    if (node && typeof node === 'object' && node.range) {
      const pos = lines.linePos(node.range[0])
      out.line = pos.line
      out.column = pos.col
      break
    }
  }
  return out
}

function validate(obj: unknown, opts: ParseOptions): { config?: Config; problems: PathProblem[] } {
  const parsed = configSchema.safeParse(obj, { reportInput: true, error: configErrorMap })
  const problems = parsed.success ? [] : issuesToProblems(parsed.error.issues, configSchema)
  const partial = (parsed.success ? parsed.data : salvage(configSchema, obj) ?? {}) as Salvaged<RawConfig>
  problems.push(...checkRules(partial, { netnsExists: opts.netnsExists ?? defaultNetnsExists }))
  if (!parsed.success || problems.length > 0) return { problems }
  return { config: normalize(parsed.data), problems }
}

// ---- Normalization (only ever sees a config that passed every check)

function normalize(raw: RawConfig): Config {
  const networks = raw.networks.map(normalizeNetwork)
  const networkIndex = new Map(networks.map((n, i) => [n.name, i]))
  return {
    node: {
      name: raw.node.name,
      underlayIP: raw.node.underlayIP.text,
      underlayAddr: raw.node.underlayIP.addr,
      vxlanPort: raw.node.vxlanPort,
      mtu: raw.node.mtu,
      podMtu: raw.node.podMtu ?? raw.node.mtu - VXLAN_OVERHEAD_LEN,
    },
    networks,
    peers: raw.peers.map((p) => p.text),
    peerAddrs: raw.peers.map((p) => p.addr),
    learnPeers: raw.learnPeers,
    arpSuppression: raw.arpSuppression,
    vxlan: { ...raw.vxlan },
    fdb: { ...raw.fdb },
    storm: { ...raw.storm },
    offloads: raw.offloads,
    busyPollUs: raw.busyPollUs,
    rxBatchBytes: raw.rxBatchBytes,
    workers: raw.workers,
    priorityLane: raw.priorityLane,
    cpuLatencyUs: raw.cpuLatencyUs ?? null,
    log: { ...raw.log },
    api: { socket: raw.api.socket ?? `/run/tapestry/${raw.node.name}.sock` },
    metrics: { listen: raw.metrics.listen },
    health: { ...raw.health },
    services: raw.services as ServiceSpec[],
    serviceRange: raw.serviceRange ? `${ipv4Format(raw.serviceRange.addr)}/${raw.serviceRange.prefix}` : null,
    dns: raw.dns ? { ip: raw.dns.ip.text, ipAddr: raw.dns.ip.addr, clusterDomain: raw.dns.clusterDomain } : null,
    conntrack: { ...raw.conntrack },
    cluster: raw.cluster ? { etcd: [...raw.cluster.etcd], prefix: raw.cluster.prefix, leaseTTL: raw.cluster.leaseTTL, blockPrefix: raw.cluster.blockPrefix } : null,
    pods: raw.pods.map((p) => {
      const index = networkIndex.get(p.network)
      // checkRules reported any unknown network, so this cannot happen.
      if (index === undefined) throw new Error(`BUG: pod ${p.name}'s network ${p.network} vanished after validation`)
      return normalizePod(p, networks[index], index)
    }),
  }
}

function normalizeNetwork(n: RawNetwork): NetworkConfig {
  const mask = prefixMask(n.subnet.prefix)
  return {
    name: n.name,
    vni: n.vni,
    subnet: `${ipv4Format(n.subnet.addr)}/${n.subnet.prefix}`,
    subnetAddr: n.subnet.addr,
    subnetPrefix: n.subnet.prefix,
    subnetMask: mask,
    broadcastAddr: (n.subnet.addr | ~mask) >>> 0,
    gateway: n.gateway?.text ?? null,
    gatewayAddr: n.gateway?.addr ?? null,
    podRange: n.podRange ? { addr: n.podRange.addr, prefix: n.podRange.prefix } : null,
    hostIP: n.hostIP?.text ?? null,
    hostAddr: n.hostIP?.addr ?? null,
  }
}

function normalizePod(p: RawPod, net: NetworkConfig, networkIndex: number): PodConfig {
  const mac = p.mac ?? derivePodMac(p.name)
  return {
    name: p.name,
    network: net.name,
    networkIndex,
    vni: net.vni,
    netns: p.netns,
    netnsPath: netnsPath(p.netns),
    ifname: p.ifname,
    ip: `${ipv4Format(p.ip.addr)}/${p.ip.prefix}`,
    ipAddr: p.ip.addr,
    prefix: p.ip.prefix,
    mac: macFormat(mac.hi, mac.lo),
    macHi: mac.hi,
    macLo: mac.lo,
    macDerived: p.mac === undefined,
    portSecurity: p.portSecurity,
  }
}

/**
 * The shape of the agent's YAML config: every key, its type, range, format and
 * default. Each value is checked here on its own; rules that relate values to
 * each other (a pod IP inside its network's subnet, unique VNIs) live in
 * config-rules.ts, and the normalized form handed to the agent in config.ts.
 *
 * Address fields parse once here and carry their numeric form on: an IPv4
 * field yields `{ text, addr }`, a CIDR `{ text, addr, prefix }`, a MAC
 * `{ text, hi, lo }`. Every message names the bad value and why it is bad.
 *
 * Adding a section (services, dns, cluster, api, metrics): write its schema
 * below, add one line to `configSchema`, its normalized type and normalizer in
 * config.ts, and a rule in config-rules.ts if it refers to other sections.
 */
import { z } from 'zod'
import { cidrParse, ipv4Format, ipv4Parse, macFormat, macParse, prefixMask } from '../wire/addr'
import { showText, showValue } from './config-issues'
import { parseListen } from '../observe/listen-address'

// ---- Specification constants

/** RFC 7348 §5: the IANA-assigned VXLAN UDP port. (Linux's historical default is 8472.) */
export const VXLAN_IANA_PORT = 4789
/** RFC 7348 §5: the VNI is a 24-bit field. */
export const VNI_MAX = 0xffffff
/** Bytes encapsulation adds to an inner IP packet: outer IPv4 20 + UDP 8 + VXLAN 8 (RFC 7348 §5) + inner Ethernet 14. */
export const VXLAN_OVERHEAD_LEN = 50
/** RFC 791: every IPv4 host must accept 576-byte datagrams; an underlay below that cannot carry them. */
export const UNDERLAY_MTU_MIN = 576
/** RFC 791: the IPv4 total length field is 16 bits. */
export const IPV4_MTU_MAX = 65535
/** RFC 791: the smallest MTU an IPv4 link may have. */
export const IPV4_MTU_MIN = 68
/** include/uapi/linux/if.h: IFNAMSIZ, including the terminating NUL. */
export const IFNAMSIZ = 16

// ---- Implementation defaults

export const DEFAULT_UNDERLAY_MTU = 1500
/** Linux's default for the VXLAN outer source port range (net.ipv4.ip_local_port_range). */
export const VXLAN_DEFAULT_SRC_PORT_MIN = 32768
export const VXLAN_DEFAULT_SRC_PORT_MAX = 61000
/** Linux bridge default ageing time (BR_DEFAULT_AGEING_TIME, 300 s). */
export const FDB_DEFAULT_AGE_S = 300
export const FDB_DEFAULT_MAX_ENTRIES = 1 << 20
export const POD_DEFAULT_IFNAME = 'eth0'
/** Where `ip netns add` puts named namespaces; a pod's `netns` without a '/' is looked up here. */
export const NETNS_RUN_DIR = '/var/run/netns'
/** pino's levels, plus 'silent'. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]
/** Where the agent serves Prometheus metrics unless told otherwise (loopback: scraped by a local agent or a port-forward). */
export const METRICS_DEFAULT_LISTEN = '127.0.0.1:9464'

// ---- Parsed field values

export interface Ipv4Value { text: string; addr: number }
export interface CidrValue { text: string; addr: number; prefix: number }
export interface MacValue { text: string; hi: number; lo: number }

// ---- Field schemas

/** An error function for a whole schema: "is required" when absent, else "<value> is not <what>". */
function notA(what: string) {
  return (iss: { input?: unknown }) => (iss.input === undefined ? 'is required' : `${showValue(iss.input)} is not ${what}`)
}

/** An integer in [min, max], with one message for every way it can fail. */
function intIn(min: number, max: number) {
  const error = notA(`an integer in ${min}..${max}`)
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error })
}

const port = intIn(1, 65535)

const bool = z.boolean({ error: notA('true or false') })

/** Reports a format error on a text field from inside a transform. */
function reject(ctx: z.RefinementCtx<string>, input: string, message: string): never {
  ctx.issues.push({ code: 'custom', input, message })
  return z.NEVER
}

/** RFC 1123 label: also what Kubernetes accepts as a name, and short enough for a DNS label. */
const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

const nameField = z.string({ error: notA('a name') }).refine((s) => NAME_RE.test(s), {
  error: (iss) =>
    `${showValue(iss.input)} is not a valid name: use 1-63 characters from a-z, 0-9 and '-', starting and ending with a letter or digit`,
})

export const ipv4Field = z.string({ error: notA('an IPv4 address') }).transform((s, ctx): Ipv4Value => {
  const addr = ipv4Parse(s)
  if (addr < 0) return reject(ctx, s, `${showText(s)} is not an IPv4 address`)
  return { text: s, addr }
})

/** A VTEP address (ours or a peer's): a unicast IPv4 address, since outer packets are sent to and from it. */
export const vtepAddrField = z.string({ error: notA('an IPv4 address') }).transform((s, ctx): Ipv4Value => {
  const addr = ipv4Parse(s)
  if (addr < 0) return reject(ctx, s, `${showText(s)} is not an IPv4 address`)
  // 0.0.0.0, 224.0.0.0/4 (RFC 5771 multicast) and the limited broadcast cannot be a tunnel endpoint.
  if (addr === 0 || addr >>> 28 === 0xe || addr === 0xffffffff) {
    return reject(ctx, s, `${s} is not a unicast IPv4 address (a VTEP address must be one)`)
  }
  return { text: s, addr }
})

/** A host address with its prefix length, as a pod's `ip`. */
export const cidrField = z.string({ error: notA('an IPv4 CIDR') }).transform((s, ctx): CidrValue => {
  const c = cidrParse(s)
  if (!c) return reject(ctx, s, `${showText(s)} is not an IPv4 CIDR`)
  return { text: s, addr: c.addr, prefix: c.prefix }
})

/**
 * A network's subnet: host bits clear, and a prefix of /1 to /30, since the
 * network and broadcast addresses are never given to a pod and /30 is the
 * smallest subnet with two usable addresses.
 */
export const subnetField = z.string({ error: notA('an IPv4 CIDR') }).transform((s, ctx): CidrValue => {
  const c = cidrParse(s)
  if (!c) return reject(ctx, s, `${showText(s)} is not an IPv4 CIDR`)
  if (c.prefix < 1 || c.prefix > 30) return reject(ctx, s, `${s} has prefix /${c.prefix}; a subnet needs a prefix from /1 to /30`)
  const net = (c.addr & prefixMask(c.prefix)) >>> 0
  if (net !== c.addr) return reject(ctx, s, `${s} has host bits set (did you mean ${ipv4Format(net)}/${c.prefix}?)`)
  return { text: s, addr: c.addr, prefix: c.prefix }
})

/** A pod's MAC: unicast (I/G bit clear, IEEE 802-2014 §8.2) and not all zeros, since it is used as a source address. */
export const podMacField = z.string({ error: notA('a MAC address') }).transform((s, ctx): MacValue => {
  const mac = macParse(s)
  if (!mac) return reject(ctx, s, `${showText(s)} is not a MAC address (use the form 02:00:0a:f4:01:02)`)
  const text = macFormat(mac.hi, mac.lo)
  if ((mac.hi >>> 8) & 1) return reject(ctx, s, `${text} is a multicast MAC; a pod needs a unicast MAC (first octet even)`)
  if (mac.hi === 0 && mac.lo === 0) return reject(ctx, s, `${text} is the all-zero MAC, which cannot be a source address`)
  return { text, hi: mac.hi, lo: mac.lo }
})

/** net/core/dev.c dev_valid_name(): shorter than IFNAMSIZ, not "." or "..", no '/', ':' or whitespace. */
function isValidIfname(s: string): boolean {
  return s.length > 0 && Buffer.byteLength(s) < IFNAMSIZ && s !== '.' && s !== '..' && !/[/:\s]/.test(s)
}

const ifnameField = z.string({ error: notA('an interface name') }).refine(isValidIfname, {
  error: (iss) =>
    `${showValue(iss.input)} is not a valid interface name: at most ${IFNAMSIZ - 1} bytes, no '/', ':' or whitespace, not "." or ".."`,
})

/** A name under NETNS_RUN_DIR (as `ip netns` makes) or an absolute path to a namespace file (/proc/<pid>/ns/net). */
function isValidNetns(s: string): boolean {
  if (s.includes('\0')) return false
  if (s.startsWith('/')) return true
  return s.length > 0 && s !== '.' && s !== '..' && !s.includes('/')
}

const netnsField = z.string({ error: notA('a network namespace') }).refine(isValidNetns, {
  error: (iss) => `${showValue(iss.input)} is neither a name under ${NETNS_RUN_DIR} nor an absolute path`,
})

// ---- Sections

export const nodeSchema = z.strictObject({
  name: nameField,
  underlayIP: vtepAddrField,
  vxlanPort: port.default(VXLAN_IANA_PORT),
  mtu: intIn(UNDERLAY_MTU_MIN, IPV4_MTU_MAX).default(DEFAULT_UNDERLAY_MTU),
  /** Defaults to mtu - VXLAN_OVERHEAD_LEN; config-rules.ts checks it fits. */
  podMtu: intIn(IPV4_MTU_MIN, IPV4_MTU_MAX - VXLAN_OVERHEAD_LEN).optional(),
}, { error: notA('a mapping') })

export const networkSchema = z.strictObject({
  name: nameField,
  vni: intIn(1, VNI_MAX),
  subnet: subnetField,
  gateway: ipv4Field.optional(),
  /** The block of the subnet this node hands out to pods added without an IP (API, CNI). */
  podRange: subnetField.optional(),
  /** This node's address on a host-side TAP (host access to pods and VIPs; NodePorts). */
  hostIP: ipv4Field.optional(),
}, { error: notA('a mapping') })

export const podSchema = z.strictObject({
  name: nameField,
  /** Any text: an unknown name is reported by config-rules.ts with the known ones. */
  network: z.string({ error: notA('a network name') }),
  netns: netnsField,
  ip: cidrField,
  mac: podMacField.optional(),
  ifname: ifnameField.default(POD_DEFAULT_IFNAME),
  portSecurity: bool.default(true),
}, { error: notA('a mapping') })

/** The byte budget of a receive batch (see rxBatchBytes). */
export const DEFAULT_RX_BATCH_BYTES = 64 << 10
const rxBatchWhat = '0 or an integer number of bytes from 16384 to 67108864'

/** Most datapath threads (config `workers`). */
export const MAX_WORKERS = 16
const workersWhat = `an integer from 1 to ${MAX_WORKERS}`

/** The VXLAN socket's receive buffer: the queue in front of the agent when it is the bottleneck. */
export const VXLAN_DEFAULT_RCVBUF = 8 << 20
const rcvbufWhat = 'an integer number of bytes from 65536 to 1073741824'

export const vxlanSchema = z.strictObject({
  srcPortMin: port.default(VXLAN_DEFAULT_SRC_PORT_MIN),
  srcPortMax: port.default(VXLAN_DEFAULT_SRC_PORT_MAX),
  /**
   * SO_RCVBUF of the VXLAN socket. Smaller bounds the delay a bulk transfer adds
   * to other traffic (the queue builds here when the agent is the bottleneck),
   * at the cost of more drops for TCP to recover from: see bench/RESULTS.md.
   */
  rcvbufBytes: z.number({ error: notA(rcvbufWhat) }).int({ error: notA(rcvbufWhat) })
    .min(65536, { error: notA(rcvbufWhat) }).max(1 << 30, { error: notA(rcvbufWhat) }).default(VXLAN_DEFAULT_RCVBUF),
}, { error: notA('a mapping') })

const positiveInt = z.number({ error: notA('a positive integer') })
  .int({ error: notA('a positive integer') })
  .min(1, { error: notA('a positive integer') })
/** Per-VNI and per-port FDB limits, where 0 means unlimited. */
const limit = z.number({ error: notA('a non-negative integer (0 = unlimited)') })
  .int({ error: notA('a non-negative integer (0 = unlimited)') })
  .min(0, { error: notA('a non-negative integer (0 = unlimited)') })

export const fdbSchema = z.strictObject({
  ageSeconds: z.number({ error: notA('a positive number of seconds') })
    .positive({ error: notA('a positive number of seconds') })
    .default(FDB_DEFAULT_AGE_S),
  maxEntries: positiveInt.default(FDB_DEFAULT_MAX_ENTRIES),
  maxPerVni: limit.default(0),
  maxPerPort: limit.default(0),
}, { error: notA('a mapping') })

export const logSchema = z.strictObject({
  level: z.enum(LOG_LEVELS, { error: notA(`one of ${LOG_LEVELS.join(', ')}`) }).default('info'),
}, { error: notA('a mapping') })

export const apiSchema = z.strictObject({
  socket: z.string({ error: notA('an absolute path') })
    .regex(/^\//, { error: notA('an absolute path') }).optional(),
}, { error: notA('a mapping') })

/** `listen: ''` turns the metrics endpoint off. */
export const metricsSchema = z.strictObject({
  listen: z.string({ error: notA("HOST:PORT or '' (off)") })
    .refine((s) => s === '' || parseListen(s) !== null, {
      error: (iss) => `${showValue(iss.input)} is not HOST:PORT (as ${METRICS_DEFAULT_LISTEN}, [::1]:9464) or '' to turn metrics off`,
    })
    .default(METRICS_DEFAULT_LISTEN),
}, { error: notA('a mapping') })

/** Peer health probing (control/peer-health.ts): ICMP echo to each peer's underlay address. */
export const HEALTH_DEFAULT_INTERVAL_S = 2
export const HEALTH_DEFAULT_TIMEOUT_MS = 1000
/** Probes lost in a row before a peer is down (or, for the full-size probe, before its path is a black hole). */
export const HEALTH_DEFAULT_DOWN_AFTER = 3
/** How many of the latest probes lossPct is computed over. */
export const HEALTH_DEFAULT_LOSS_WINDOW = 20
/** The shortest probe interval other than 0 (off). */
export const HEALTH_MIN_INTERVAL_S = 0.1

export const healthSchema = z.strictObject({
  /** Seconds between probe rounds; 0 turns probing off. */
  intervalSeconds: z.number({ error: notA(`0 (off) or a number of seconds from ${HEALTH_MIN_INTERVAL_S} to 3600`) })
    .refine((v) => Number.isFinite(v) && (v === 0 || (v >= HEALTH_MIN_INTERVAL_S && v <= 3600)), {
      error: (iss) => `${showValue(iss.input)} is not 0 (off) or a number of seconds from ${HEALTH_MIN_INTERVAL_S} to 3600`,
    })
    .default(HEALTH_DEFAULT_INTERVAL_S),
  /** How long a probe waits for its answer. */
  timeoutMs: intIn(10, 60000).default(HEALTH_DEFAULT_TIMEOUT_MS),
  downAfter: intIn(1, 100).default(HEALTH_DEFAULT_DOWN_AFTER),
  lossWindow: intIn(1, 1000).default(HEALTH_DEFAULT_LOSS_WINDOW),
}, { error: notA('a mapping') })

/** Storm control: flooded frames (broadcast, multicast, unknown unicast) a pod may send. */
export const stormSchema = z.strictObject({
  floodPerSecond: z.number({ error: notA('a non-negative integer (0 = unlimited)') }).int({ error: notA('a non-negative integer (0 = unlimited)') })
    .min(0, { error: notA('a non-negative integer (0 = unlimited)') }).default(2000),
  burst: z.number({ error: notA('a positive integer') }).int({ error: notA('a positive integer') })
    .min(1, { error: notA('a positive integer') }).default(2000),
}, { error: notA('a mapping') })

/** etcd's client port (IANA), used when an endpoint URL names none. */
export const ETCD_DEFAULT_PORT = 2379
export const CLUSTER_DEFAULT_PREFIX = '/tapestry'
export const CLUSTER_DEFAULT_LEASE_TTL_S = 10
/** Like flannel's default SubnetLen: a /24 of the network's subnet per node. */
export const CLUSTER_DEFAULT_BLOCK_PREFIX = 24

/** An etcd client endpoint: http(s)://HOST[:PORT], nothing after the authority. Normalized with the port. */
export const etcdEndpointField = z.string({ error: notA('an etcd endpoint URL') }).transform((s, ctx): string => {
  let u: URL
  try {
    u = new URL(s)
  } catch {
    return reject(ctx, s, `${showText(s)} is not a URL (use http://HOST:PORT, as http://192.168.250.100:2379)`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return reject(ctx, s, `${showText(s)} is not an http:// or https:// URL`)
  if (!u.hostname) return reject(ctx, s, `${showText(s)} names no host`)
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash || u.username || u.password) {
    return reject(ctx, s, `${showText(s)} has more than http(s)://HOST:PORT (no path, query or user)`)
  }
  return `${u.protocol}//${u.hostname}:${u.port || ETCD_DEFAULT_PORT}`
})

/** Key prefix in etcd: '/' then segments of letters, digits, '.', '_', '-'; no trailing '/'. */
const etcdPrefixField = z.string({ error: notA('a key prefix') }).refine((s) => /^(\/[A-Za-z0-9._-]+)+$/.test(s), {
  error: (iss) => `${showValue(iss.input)} is not a key prefix: use /NAME[/NAME...] with letters, digits, '.', '_' or '-', without a trailing '/'`,
})

/** Cluster mode: nodes, pod blocks, pods and services kept in etcd (see control/cluster.ts). */
export const clusterSchema = z.strictObject({
  etcd: z.array(etcdEndpointField, { error: notA('a list of etcd endpoint URLs') })
    .min(1, { error: 'needs at least one etcd endpoint URL' }),
  prefix: etcdPrefixField.default(CLUSTER_DEFAULT_PREFIX),
  /** Seconds the node's registration outlives its agent; etcd's own minimum is about 2. */
  leaseTTL: intIn(2, 3600).default(CLUSTER_DEFAULT_LEASE_TTL_S),
  /** Prefix length of the block of each network's subnet a node leases for its pods. */
  blockPrefix: intIn(2, 30).default(CLUSTER_DEFAULT_BLOCK_PREFIX),
}, { error: notA('a mapping') })

/** Cluster DNS: the agent answers <service>.<namespace>.svc.<clusterDomain> at `ip`. */
export const dnsSchema = z.strictObject({
  ip: ipv4Field,
  clusterDomain: z.string({ error: notA('a domain name') })
    .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, { error: notA('a domain name') }).default('cluster.local'),
}, { error: notA('a mapping') })

/** Connection tracking of service flows. */
export const conntrackSchema = z.strictObject({
  maxConnections: z.number({ error: notA('a positive integer') }).int({ error: notA('a positive integer') })
    .min(1, { error: notA('a positive integer') }).default(262144),
}, { error: notA('a mapping') })

/** The whole file. Sections are in the order the README documents them. */
export const configSchema = z.strictObject({
  node: nodeSchema,
  networks: z.array(networkSchema, { error: notA('a list') }).default(() => []),
  peers: z.array(vtepAddrField, { error: notA('a list') }).default(() => []),
  learnPeers: bool.default(false),
  arpSuppression: bool.default(true),
  vxlan: vxlanSchema.prefault({}),
  fdb: fdbSchema.prefault({}),
  storm: stormSchema.prefault({}),
  offloads: bool.default(true),
  /**
   * ARP, ICMP and ICMPv6 get a queue of their own, read ahead of bulk traffic:
   * a second socket on the VXLAN port and a second queue on each pod's TAP
   * (overlay/steering.ts).
   */
  priorityLane: bool.default(true),
  /**
   * Bytes after which a receive batch, from a pod's TAP or the VXLAN socket,
   * ends (0: 64 frames or datagrams, which with offloads can be 4 MiB,
   * milliseconds of work that everything else waits behind).
   */
  rxBatchBytes: z.number({ error: notA(rxBatchWhat) }).int({ error: notA(rxBatchWhat) })
    .refine((v) => v === 0 || (v >= 16384 && v <= 1 << 26), { error: notA(rxBatchWhat) }).default(DEFAULT_RX_BATCH_BYTES),
  /**
   * Threads the datapath runs in (1: the agent's own). With more, every pod TAP
   * has a queue per worker and the VXLAN port a socket per worker, and each flow
   * is read by one worker chosen by a hash of its addresses and ports
   * (overlay/steering.ts, datapath/workers.ts).
   */
  workers: z.number({ error: notA(workersWhat) }).int({ error: notA(workersWhat) })
    .min(1, { error: notA(workersWhat) }).max(MAX_WORKERS, { error: notA(workersWhat) }).default(1),
  /** Microseconds the agent keeps polling without sleeping after it received a batch (0 = off). */
  busyPollUs: z.number({ error: notA('an integer from 0 to 100000 (microseconds)') }).int({ error: notA('an integer from 0 to 100000 (microseconds)') })
    .min(0, { error: notA('an integer from 0 to 100000 (microseconds)') }).max(100000, { error: notA('an integer from 0 to 100000 (microseconds)') }).default(0),
  /** A PM QoS CPU latency limit held while the agent runs (ports/cpu-latency.ts), microseconds; absent: none. */
  cpuLatencyUs: z.number({ error: notA('an integer from 0 to 1000000 (microseconds)') }).int({ error: notA('an integer from 0 to 1000000 (microseconds)') })
    .min(0, { error: notA('an integer from 0 to 1000000 (microseconds)') }).max(1_000_000, { error: notA('an integer from 0 to 1000000 (microseconds)') }).optional(),
  log: logSchema.prefault({}),
  api: apiSchema.prefault({}),
  metrics: metricsSchema.prefault({}),
  health: healthSchema.prefault({}),
  /** Service objects are checked by the service layer's own validator (config-rules.ts). */
  services: z.array(z.unknown(), { error: notA('a list') }).default(() => []),
  dns: dnsSchema.optional(),
  /** Where service VIPs live: routed from the host TAPs through the gateway. */
  serviceRange: subnetField.optional(),
  conntrack: conntrackSchema.prefault({}),
  cluster: clusterSchema.optional(),
  pods: z.array(podSchema, { error: notA('a list') }).default(() => []),
}, { error: (iss) => (iss.input === undefined || iss.input === null ? 'is empty (expected a mapping with at least node)' : `${showValue(iss.input)} is not a mapping`) })

/** The config after the schema alone: fields checked and defaulted, relations not yet. */
export type RawConfig = z.output<typeof configSchema>
export type RawNetwork = z.output<typeof networkSchema>
export type RawPod = z.output<typeof podSchema>

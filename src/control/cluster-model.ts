/**
 * The pure half of cluster mode (control/cluster.ts does the etcd I/O): the
 * key layout, the records kept under it and their checks, pod-block
 * arithmetic, and the desired agent state computed from what etcd holds.
 *
 * Key layout, under the configured prefix P (as `/tapestry`):
 *
 *   P/nodes/<node>                 {name, underlayIP, vxlanPort}      under the node's lease
 *   P/pods/<node>/<pod>            {name, node, network, vni, ip, mac} under the node's lease
 *   P/blocks/<network>/<a.b.c.d>-<len>  {node, network, block, underlayIP}  no lease: kept, so a
 *                                  restarted node gets its block back
 *   P/services/<namespace>/<name>  the service model as JSON (see service/service-model.ts)
 *
 * Names are RFC 1123 labels (config-schema.ts), so they never contain '/'.
 */
import type { RemotePod } from '../agent'
import type { PodConfig } from './config'
import { ipv4Format, ipv4Parse, macFormat, macParse, prefixMask } from '../wire/addr'

// ---- Keys

export interface ClusterKeys {
  /** Every key of the cluster starts with this (prefix + '/'). */
  root: string
  nodes: string
  node(name: string): string
  pods: string
  podsOf(node: string): string
  pod(node: string, pod: string): string
  blocks(network: string): string
  block(network: string, addr: number, prefix: number): string
  services: string
  service(namespace: string, name: string): string
}

export function clusterKeys(prefix: string): ClusterKeys {
  const root = `${prefix.replace(/\/+$/, '')}/`
  return {
    root,
    nodes: `${root}nodes/`,
    node: (name) => `${root}nodes/${name}`,
    pods: `${root}pods/`,
    podsOf: (node) => `${root}pods/${node}/`,
    pod: (node, pod) => `${root}pods/${node}/${pod}`,
    blocks: (network) => `${root}blocks/${network}/`,
    block: (network, addr, len) => `${root}blocks/${network}/${ipv4Format(addr)}-${len}`,
    services: `${root}services/`,
    service: (namespace, name) => `${root}services/${namespace}/${name}`,
  }
}

export type ParsedKey =
  | { kind: 'node'; name: string }
  | { kind: 'pod'; node: string; pod: string }
  | { kind: 'block'; network: string; addr: number; prefix: number }
  | { kind: 'service'; namespace: string; name: string }

/** What a key under the prefix names; null for anything else (other prefixes, unknown kinds, bad shapes). */
export function parseKey(keys: ClusterKeys, key: string): ParsedKey | null {
  if (!key.startsWith(keys.root)) return null
  const parts = key.slice(keys.root.length).split('/')
  if (parts.some((p) => p === '')) return null
  const [kind, a, b] = parts
  if (kind === 'nodes' && parts.length === 2) return { kind: 'node', name: a }
  if (kind === 'pods' && parts.length === 3) return { kind: 'pod', node: a, pod: b }
  if (kind === 'services' && parts.length === 3) return { kind: 'service', namespace: a, name: b }
  if (kind === 'blocks' && parts.length === 3) {
    const m = /^(\d+\.\d+\.\d+\.\d+)-(\d{1,2})$/.exec(b)
    if (!m) return null
    const addr = ipv4Parse(m[1])
    const len = Number(m[2])
    if (addr < 0 || len > 32 || ((addr & prefixMask(len)) >>> 0) !== addr) return null
    return { kind: 'block', network: a, addr, prefix: len }
  }
  return null
}

// ---- Records

export interface NodeRecord {
  name: string
  underlayIP: string
  /** underlayIP as u32 (not stored: derived on decode). */
  underlayAddr: number
  vxlanPort: number
}

export interface PodRecord {
  name: string
  node: string
  network: string
  vni: number
  /** Dotted quad, no prefix. */
  ip: string
  mac: string
}

export interface BlockRecord {
  node: string
  network: string
  /** CIDR text, as 10.244.3.0/24. */
  block: string
  underlayIP: string
}

function obj(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text) as unknown
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null
  } catch {
    return null
  }
}

export function encodeNode(n: Omit<NodeRecord, 'underlayAddr'>): string {
  return JSON.stringify({ name: n.name, underlayIP: n.underlayIP, vxlanPort: n.vxlanPort })
}

/** A node record from its key's name and its JSON value; null when it does not hold together. */
export function decodeNode(name: string, text: string): NodeRecord | null {
  const o = obj(text)
  if (!o || o.name !== name || typeof o.underlayIP !== 'string') return null
  const addr = ipv4Parse(o.underlayIP)
  if (addr <= 0) return null
  const port = o.vxlanPort
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return null
  return { name, underlayIP: o.underlayIP, underlayAddr: addr, vxlanPort: port }
}

/** The record a local pod is published as. */
export function podRecord(node: string, p: PodConfig): PodRecord {
  return { name: p.name, node, network: p.network, vni: p.vni, ip: ipv4Format(p.ipAddr), mac: p.mac }
}

export function encodePod(p: PodRecord): string {
  return JSON.stringify({ name: p.name, node: p.node, network: p.network, vni: p.vni, ip: p.ip, mac: p.mac })
}

export function decodePod(node: string, pod: string, text: string): PodRecord | null {
  const o = obj(text)
  if (!o || o.name !== pod || o.node !== node) return null
  if (typeof o.vni !== 'number' || !Number.isInteger(o.vni) || o.vni < 1 || o.vni > 0xffffff) return null
  if (typeof o.ip !== 'string' || ipv4Parse(o.ip) < 0) return null
  if (typeof o.mac !== 'string') return null
  const mac = macParse(o.mac)
  if (!mac || (mac.hi >>> 8) & 1 || (mac.hi === 0 && mac.lo === 0)) return null
  return { name: pod, node, network: typeof o.network === 'string' ? o.network : '', vni: o.vni, ip: o.ip, mac: macFormat(mac.hi, mac.lo) }
}

export function encodeBlock(b: BlockRecord): string {
  return JSON.stringify({ node: b.node, network: b.network, block: b.block, underlayIP: b.underlayIP })
}

/** The owner of a block record; null when the value is not one. */
export function blockOwner(text: string): string | null {
  const o = obj(text)
  return o && typeof o.node === 'string' && o.node !== '' ? o.node : null
}

/**
 * A service from its key and JSON value: an object whose name and namespace
 * (filled in from the key when missing) agree with the key; null otherwise.
 * Its fields are left to the agent's service layer to check.
 */
export function decodeService(namespace: string, name: string, text: string): Record<string, unknown> | null {
  const o = obj(text)
  if (!o) return null
  if (o.name !== undefined && o.name !== name) return null
  if (o.namespace !== undefined && o.namespace !== namespace) return null
  return { ...o, name, namespace }
}

// ---- Pod blocks

export interface Subnet { addr: number; prefix: number }

/** How many /blockPrefix blocks a subnet holds (0 when the block is not smaller than the subnet). */
export function blockCount(subnet: Subnet, blockPrefix: number): number {
  return blockPrefix > subnet.prefix && blockPrefix <= 32 ? 2 ** (blockPrefix - subnet.prefix) : 0
}

/** The i-th block of a subnet. */
export function blockAt(subnet: Subnet, blockPrefix: number, i: number): number {
  return (subnet.addr + i * 2 ** (32 - blockPrefix)) >>> 0
}

/** Whether `addr/prefix` is one of the subnet's /blockPrefix blocks. */
export function isBlockOf(subnet: Subnet, blockPrefix: number, addr: number, prefix: number): boolean {
  return prefix === blockPrefix && blockPrefix > subnet.prefix &&
    ((addr & prefixMask(subnet.prefix)) >>> 0) === subnet.addr && ((addr & prefixMask(prefix)) >>> 0) === addr
}

/**
 * The blocks to try claiming, in order: `preferred` first (the block this node
 * had before, when it is a block of the subnet), then every block from the
 * start of the subnet; taken blocks are skipped. Lazy, since a /8 split
 * into /30s has four million.
 */
export function* freeBlocks(subnet: Subnet, blockPrefix: number, taken: ReadonlySet<number> | ((addr: number) => boolean), preferred: number | null = null): Generator<number> {
  const isTaken = typeof taken === 'function' ? taken : (a: number) => taken.has(a)
  if (preferred !== null && isBlockOf(subnet, blockPrefix, preferred, blockPrefix) && !isTaken(preferred)) yield preferred
  const n = blockCount(subnet, blockPrefix)
  for (let i = 0; i < n; i++) {
    const b = blockAt(subnet, blockPrefix, i)
    if (b !== preferred && !isTaken(b)) yield b
  }
}

export interface BlockEntry { addr: number; prefix: number; owner: string | null; modRevision: string }

/**
 * Whether a /blockPrefix block overlaps any listed block, whatever that one's
 * size (a node configured with another blockPrefix must not get an
 * overlapping block).
 */
export function blockTaken(entries: BlockEntry[], blockPrefix: number): (addr: number) => boolean {
  const same = new Set<number>()
  const other: BlockEntry[] = []
  for (const e of entries) {
    if (e.prefix === blockPrefix) same.add(e.addr)
    else other.push(e)
  }
  return (addr) => {
    if (same.has(addr)) return true
    for (const e of other) {
      const p = Math.min(e.prefix, blockPrefix)
      if (((e.addr & prefixMask(p)) >>> 0) === ((addr & prefixMask(p)) >>> 0)) return true
    }
    return false
  }
}

/**
 * The block this node already holds in a subnet (the lowest, if it somehow
 * holds several), from the listed block keys of one network.
 */
export function ownedBlock(entries: BlockEntry[], subnet: Subnet, blockPrefix: number, node: string): number | null {
  const mine = entries.filter((e) => e.owner === node && isBlockOf(subnet, blockPrefix, e.addr, e.prefix)).map((e) => e.addr)
  return mine.length > 0 ? Math.min(...mine) : null
}

/**
 * Blocks that may be taken over when every block is held: their owner is not
 * a registered node and publishes no pod. Oldest first.
 */
export function reclaimableBlocks(entries: BlockEntry[], subnet: Subnet, blockPrefix: number, liveNodes: ReadonlySet<string>, nodesWithPods: ReadonlySet<string>): BlockEntry[] {
  return entries
    .filter((e) => isBlockOf(subnet, blockPrefix, e.addr, e.prefix) && (e.owner === null || (!liveNodes.has(e.owner) && !nodesWithPods.has(e.owner))))
    .sort((a, b) => (BigInt(a.modRevision) < BigInt(b.modRevision) ? -1 : BigInt(a.modRevision) > BigInt(b.modRevision) ? 1 : 0))
}

// ---- Desired agent state

/** Underlay addresses of every registered node but this one. */
export function peerAddrs(nodes: ReadonlyMap<string, NodeRecord>, self: string): number[] {
  return [...nodes.values()].filter((n) => n.name !== self).map((n) => n.underlayAddr).sort((a, b) => a - b)
}

/**
 * The remote pods to install: every published pod of another registered node,
 * named `<node>/<pod>` (pod names are unique per node only). Pods of unknown
 * nodes wait until their node registers.
 */
export function remotePods(nodes: ReadonlyMap<string, NodeRecord>, pods: Iterable<PodRecord>, self: string): RemotePod[] {
  const out: RemotePod[] = []
  for (const p of pods) {
    if (p.node === self) continue
    const n = nodes.get(p.node)
    if (!n) continue
    const mac = macParse(p.mac)
    const ip = ipv4Parse(p.ip)
    if (!mac || ip < 0) continue
    out.push({ name: `${p.node}/${p.name}`, vni: p.vni, ip, macHi: mac.hi, macLo: mac.lo, node: n.underlayAddr })
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/**
 * What to write so that etcd holds exactly the local pods: records to put
 * (new or different) and pod names to delete. `published` maps pod name to
 * its stored JSON.
 */
export function podSyncPlan(published: ReadonlyMap<string, string>, local: PodRecord[]): { put: PodRecord[]; del: string[] } {
  const want = new Map(local.map((p) => [p.name, p]))
  const put = local.filter((p) => published.get(p.name) !== encodePod(p))
  const del = [...published.keys()].filter((name) => !want.has(name)).sort()
  return { put, del }
}

/** Sorted service list for the agent (stable order: namespace, then name). */
export function serviceList(services: ReadonlyMap<string, Record<string, unknown>>): Record<string, unknown>[] {
  return [...services.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, s]) => s)
}

/**
 * Cluster mode: the agent's view of the cluster kept in etcd (v3 API, through
 * the `etcd3` client). Key layout and the pure parts are in cluster-model.ts.
 *
 * One session at a time, each on a fresh client:
 *  1. grant a lease of `leaseTTL` seconds, kept alive (every TTL/3);
 *  2. register the node (name, underlay IP, VXLAN port) under the lease;
 *  3. claim a block of each network's subnet by compare-and-swap (the block
 *     this node already holds, else the one it had last time, else the first
 *     free one), with no lease, so a restarted agent gets the same one back;
 *     agent.setPodRange() then makes `pod add` without an IP allocate from it;
 *  4. publish the local pods under the lease (and remove stale ones);
 *  5. read everything under the prefix at one revision and apply it: peers
 *     (agent.setClusterPeers), remote pods as static FDB/ARP entries
 *     (agent.setRemotePods), services (agent.applyClusterServices, if the
 *     agent has it);
 *  6. watch the prefix from the next revision and apply each change.
 * Local pod changes (the agent's 'pod-added'/'pod-removed') are published as
 * they happen, in order.
 *
 * When etcd cannot be reached (a failed keep-alive, a broken watch, a failed
 * write) the session is dropped, one warning is logged, and the agent keeps
 * forwarding with the last state it applied; a new session is tried every
 * second, quietly, and its step 5 resyncs everything that changed meanwhile.
 * stop() revokes the lease, so the node and its pods leave the cluster at once.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Etcd3, IKeyValue, Lease, Watcher, isRecoverableError } from 'etcd3'
import { ConstantBackoff, handleWhen, noop, retry } from 'cockatiel'
import type { Agent } from '../agent'
import type { ClusterConfig, PodConfig } from './config'
import type { Logger } from '../observe/log'
import { cidrParse, ipv4Format } from '../wire/addr'
import {
  BlockEntry, ClusterKeys, NodeRecord, PodRecord, Subnet, blockCount, blockTaken, blockOwner, clusterKeys, decodeNode, decodePod,
  decodeService, encodeBlock, encodeNode, encodePod, freeBlocks, isBlockOf, ownedBlock, parseKey, peerAddrs, podRecord,
  podSyncPlan, reclaimableBlocks, remotePods, serviceList,
} from './cluster-model'

/** Deadline of each unary etcd call. */
export const ETCD_CALL_TIMEOUT_MS = 3000
/** Pause between two attempts to reach etcd again. */
export const ETCD_RETRY_MS = 1000
/** Changes seen within this window are applied to the agent together. */
const APPLY_DELAY_MS = 20

/**
 * An etcd client that fails fast: unary calls have a deadline, no circuit
 * breaker holds a host back after it returns, and gRPC reconnects within a
 * second. A second endpoint is tried when the first fails.
 */
export function etcdClient(endpoints: string[], callTimeoutMs = ETCD_CALL_TIMEOUT_MS): Etcd3 {
  return new Etcd3({
    hosts: endpoints,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    faultHandling: {
      host: () => noop,
      global: endpoints.length > 1 ? retry(handleWhen(isRecoverableError), { maxAttempts: endpoints.length - 1 }) : noop,
      watchBackoff: new ConstantBackoff(500).next(),
    },
    grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 1000 },
  })
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms) }),
  ]).finally(() => clearTimeout(timer))
}

function reason(err: unknown): string {
  return String((err as Error)?.message ?? err)
}

/** Thrown inside a session's steps once it has been replaced or dropped. */
class StaleSession extends Error {}

interface Session {
  client: Etcd3
  lease: Lease | null
  leaseId: string
  watcher: Watcher | null
  /** Set once the local pods were published: from then on pod events are written as they come. */
  podsSynced: boolean
}

type State = 'idle' | 'connecting' | 'up' | 'down' | 'stopped'

export interface ClusterStoreOptions {
  /** JSON file remembering the leased blocks, so a restart without etcd allocates from them; null: not kept. */
  statePath?: string | null
  retryMs?: number
}

export interface ClusterStatus {
  state: State
  etcd: string[]
  nodes: string[]
  remotePods: number
  services: number
  blocks: Record<string, string>
}

export class ClusterStore {
  readonly keys: ClusterKeys
  private state: State = 'idle'
  private session: Session | null = null
  private readonly nodes = new Map<string, NodeRecord>()
  /** Published pods of every node, by `<node>/<pod>`. */
  private readonly pods = new Map<string, PodRecord>()
  /** Services by `<namespace>/<name>`. */
  private readonly services = new Map<string, Record<string, unknown>>()
  private servicesDirty = false
  /** Leased block of each network, as CIDR text. */
  private readonly blocks = new Map<string, string>()
  /** Peers last handed to the agent. */
  private lastPeers = new Set<number>()
  private applyTimer: NodeJS.Timeout | null = null
  private retryTimer: NodeJS.Timeout | null = null
  private downSince = 0
  /** Local pod writes, one after the other. */
  private writes: Promise<void> = Promise.resolve()
  private readyWaiters: (() => void)[] = []
  private readonly warned = new Set<string>()
  private readonly statePath: string | null
  private readonly retryMs: number
  private readonly log: Logger

  constructor(readonly agent: Agent, readonly cfg: ClusterConfig, opts: ClusterStoreOptions = {}) {
    this.keys = clusterKeys(cfg.prefix)
    this.statePath = opts.statePath ?? null
    this.retryMs = opts.retryMs ?? ETCD_RETRY_MS
    this.log = agent.log.child({ component: 'cluster' })
  }

  private get me(): string {
    return this.agent.config.node.name
  }

  /**
   * Starts the first session and waits for it (at most `waitMs`): when etcd is
   * reachable the node is registered, its blocks leased and the cluster state
   * applied when this returns; otherwise it goes on trying in the background.
   */
  async start(waitMs = 2 * ETCD_CALL_TIMEOUT_MS): Promise<void> {
    if (this.state !== 'idle') return
    this.loadCachedBlocks()
    this.agent.on('pod-added', this.onPodAdded)
    this.agent.on('pod-removed', this.onPodRemoved)
    this.state = 'connecting'
    this.log.info({ etcd: this.cfg.etcd, prefix: this.cfg.prefix, leaseTTL: this.cfg.leaseTTL }, 'cluster store starting')
    const ready = new Promise<void>((r) => this.readyWaiters.push(r))
    void this.connect()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([ready, new Promise<void>((r) => { timer = setTimeout(r, waitMs) })])
    clearTimeout(timer)
  }

  /** Revokes the lease (the node and its pods leave at once) and closes the client. */
  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'idle') { this.state = 'stopped'; return }
    const wasUp = this.state === 'up'
    this.state = 'stopped'
    if (this.retryTimer) clearTimeout(this.retryTimer)
    if (this.applyTimer) clearTimeout(this.applyTimer)
    this.retryTimer = this.applyTimer = null
    this.agent.off('pod-added', this.onPodAdded)
    this.agent.off('pod-removed', this.onPodRemoved)
    for (const r of this.readyWaiters.splice(0)) r()
    const s = this.session
    this.session = null
    if (s) {
      if (wasUp && s.lease) {
        try {
          await within(s.lease.revoke(), ETCD_CALL_TIMEOUT_MS, 'lease revoke')
          this.log.info({ node: this.me }, 'left the cluster (lease revoked)')
        } catch (err) {
          this.log.warn({ reason: reason(err) }, `could not revoke the lease: the node leaves the cluster when it expires (${this.cfg.leaseTTL} s)`)
        }
      }
      this.teardown(s)
    }
  }

  status(): ClusterStatus {
    return {
      state: this.state,
      etcd: this.cfg.etcd,
      nodes: [...this.nodes.keys()].sort(),
      remotePods: [...this.pods.values()].filter((p) => p.node !== this.me).length,
      services: this.services.size,
      blocks: Object.fromEntries(this.blocks),
    }
  }

  // ---- sessions

  private async connect(): Promise<void> {
    this.retryTimer = null
    if (this.state === 'stopped') return
    const s: Session = { client: etcdClient(this.cfg.etcd), lease: null, leaseId: '', watcher: null, podsSynced: false }
    this.session = s
    try {
      const lease = s.client.lease(this.cfg.leaseTTL)
      s.lease = lease
      lease.on('lost', (err: unknown) => this.lost(s, 'lease lost', err))
      lease.on('keepaliveFailed', (err: unknown) => this.lost(s, 'lease keep-alive failed', err))
      s.leaseId = String(await lease.grant())
      this.check(s)
      const node = this.agent.config.node
      await s.client.put(this.keys.node(node.name)).value(encodeNode({ name: node.name, underlayIP: node.underlayIP, vxlanPort: node.vxlanPort })).lease(s.leaseId).exec()
      this.check(s)
      await this.claimBlocks(s)
      await this.serial(() => this.syncLocalPods(s))
      this.check(s)
      const snap = await s.client.getAll().prefix(this.keys.root).exec()
      this.check(s)
      this.loadSnapshot(snap.kvs)
      s.watcher = await this.watch(s, BigInt(snap.header.revision) + 1n)
      this.check(s)
      const wasDown = this.state === 'down'
      this.state = 'up'
      const summary = { nodes: this.nodes.size, pods: this.pods.size, services: this.services.size, blocks: Object.fromEntries(this.blocks) }
      if (wasDown) this.log.info({ ...summary, downForMs: Date.now() - this.downSince }, 'etcd reachable again: node re-registered and cluster state resynced')
      else this.log.info(summary, 'joined the cluster')
      this.applyNow()
      for (const r of this.readyWaiters.splice(0)) r()
    } catch (err) {
      if (!(err instanceof StaleSession)) this.lost(s, 'connect', err)
    }
  }

  private check(s: Session): void {
    if (this.session !== s || this.state === 'stopped') throw new StaleSession('stale')
  }

  /** Drops a session that failed; logs the first failure of an outage only, and retries. */
  private lost(s: Session, what: string, err: unknown): void {
    if (this.session !== s) return
    this.session = null
    this.teardown(s)
    if (this.state === 'stopped') return
    if (this.state === 'up' || this.state === 'connecting') {
      this.downSince = Date.now()
      const kept = { peers: this.lastPeers.size, remotePods: [...this.pods.values()].filter((p) => p.node !== this.me).length, services: this.services.size }
      this.log.warn({ etcd: this.cfg.etcd, reason: `${what}: ${reason(err)}`, kept },
        this.state === 'up'
          ? 'etcd unreachable: forwarding goes on with the last known cluster state; reconnecting in the background'
          : 'etcd unreachable: running without cluster state for now; connecting in the background')
    } else {
      this.log.debug({ reason: `${what}: ${reason(err)}` }, 'etcd still unreachable')
    }
    this.state = 'down'
    // start() does not wait for an etcd that is not there: the agent runs, and joins when it can.
    for (const r of this.readyWaiters.splice(0)) r()
    if (!this.retryTimer) this.retryTimer = setTimeout(() => void this.connect(), this.retryMs)
  }

  private teardown(s: Session): void {
    const w = s.watcher
    if (w) {
      w.removeAllListeners()
      w.on('error', () => undefined)
      w.cancel().catch(() => undefined)
    }
    if (s.lease) {
      s.lease.removeAllListeners()
      s.lease.release()
    }
    try { s.client.close() } catch { /* already closed */ }
  }

  private async watch(s: Session, fromRevision: bigint): Promise<Watcher> {
    const w = s.client.watch().prefix(this.keys.root).startRevision(fromRevision.toString()).watcher()
    s.watcher = w
    const connected = new Promise<void>((resolve, reject) => {
      w.once('connected', () => resolve())
      w.once('error', reject)
      w.once('disconnected', reject)
    })
    w.on('error', (err: unknown) => this.lost(s, 'watch', err))
    w.on('disconnected', (err: unknown) => this.lost(s, 'watch disconnected', err))
    w.on('end', () => this.lost(s, 'watch', new Error('ended')))
    w.on('put', (kv: IKeyValue) => this.onChange(s, kv, true))
    w.on('delete', (kv: IKeyValue) => this.onChange(s, kv, false))
    await within(connected, ETCD_CALL_TIMEOUT_MS, 'watch')
    return w
  }

  private onChange(s: Session, kv: IKeyValue, put: boolean): void {
    if (this.session !== s) return
    const key = kv.key.toString()
    if (!put && key === this.keys.node(this.me)) {
      // Our lease expired (a long partition) or someone removed us: register again.
      this.lost(s, 'registration', new Error(`${key} was deleted`))
      return
    }
    this.store(key, put ? kv.value.toString() : null)
    this.scheduleApply()
  }

  // ---- state

  /** Records one key's value (null: deleted). */
  private store(key: string, value: string | null): void {
    const k = parseKey(this.keys, key)
    if (!k) return
    if (k.kind === 'node') {
      if (value === null) { this.nodes.delete(k.name); return }
      const n = decodeNode(k.name, value)
      if (!n) { this.warnOnce(`bad:${key}`, { key }, 'ignoring a node record that is not {name, underlayIP, vxlanPort}'); this.nodes.delete(k.name); return }
      if (n.vxlanPort !== this.agent.config.node.vxlanPort && n.name !== this.me) {
        this.warnOnce(`port:${n.name}:${n.vxlanPort}`, { node: n.name, vxlanPort: n.vxlanPort, ours: this.agent.config.node.vxlanPort }, 'a node uses another VXLAN port: traffic to it is sent to ours')
      }
      this.nodes.set(k.name, n)
    } else if (k.kind === 'pod') {
      const id = `${k.node}/${k.pod}`
      if (value === null) { this.pods.delete(id); return }
      const p = decodePod(k.node, k.pod, value)
      if (!p) { this.warnOnce(`bad:${key}`, { key }, 'ignoring a pod record that is not {name, node, vni, ip, mac}'); this.pods.delete(id); return }
      this.pods.set(id, p)
    } else if (k.kind === 'service') {
      const id = `${k.namespace}/${k.name}`
      this.servicesDirty = true
      if (value === null) { this.services.delete(id); return }
      const svc = decodeService(k.namespace, k.name, value)
      if (!svc) { this.warnOnce(`bad:${key}:${value}`, { key }, 'ignoring a service that is not a JSON object matching its key'); this.services.delete(id); return }
      this.services.set(id, svc)
    }
  }

  /** Replaces the whole state with a snapshot (a resync). */
  private loadSnapshot(kvs: IKeyValue[]): void {
    this.nodes.clear()
    this.pods.clear()
    this.services.clear()
    for (const kv of kvs) this.store(kv.key.toString(), kv.value.toString())
    this.servicesDirty = true
  }

  private scheduleApply(): void {
    if (this.applyTimer || this.state === 'stopped') return
    this.applyTimer = setTimeout(() => { this.applyTimer = null; this.applyNow() }, APPLY_DELAY_MS)
  }

  /** Hands the desired state to the agent: peers, remote pods, services. */
  private applyNow(): void {
    if (this.applyTimer) { clearTimeout(this.applyTimer); this.applyTimer = null }
    if (this.state === 'stopped') return
    const next = new Set(peerAddrs(this.nodes, this.me))
    const wanted = remotePods(this.nodes, this.pods.values(), this.me)
    // Pods of departing nodes go first, through setRemotePods, so their ARP entries go with them.
    if ([...this.lastPeers].some((a) => !next.has(a))) this.agent.setRemotePods(wanted.filter((p) => this.lastPeers.has(p.node)))
    this.agent.setClusterPeers([...next])
    this.agent.setRemotePods(wanted)
    this.lastPeers = next
    if (this.servicesDirty) this.applyServices()
  }

  private applyServices(): void {
    this.servicesDirty = false
    const target = this.agent as unknown as { applyClusterServices?: (services: unknown[]) => unknown }
    if (typeof target.applyClusterServices !== 'function') {
      if (this.services.size > 0) this.warnOnce('no-services', { services: this.services.size }, 'services in etcd are ignored: this agent has no service support')
      return
    }
    const list = serviceList(this.services)
    const failed = (err: unknown): void => { this.log.warn({ reason: reason(err), services: list.length }, 'cluster services not applied') }
    try {
      const r = target.applyClusterServices.call(this.agent, list)
      if (r && typeof (r as Promise<unknown>).then === 'function') (r as Promise<unknown>).then(() => undefined, failed)
    } catch (err) {
      failed(err)
    }
  }

  private warnOnce(id: string, fields: Record<string, unknown>, msg: string): void {
    if (this.warned.has(id)) return
    this.warned.add(id)
    this.log.warn(fields, msg)
  }

  // ---- pod blocks

  private async claimBlocks(s: Session): Promise<void> {
    let changed = false
    for (const net of this.agent.config.networks) {
      const subnet = { addr: net.subnetAddr, prefix: net.subnetPrefix }
      if (blockCount(subnet, this.cfg.blockPrefix) === 0) {
        this.warnOnce(`noblock:${net.name}`, { network: net.name, subnet: net.subnet, blockPrefix: this.cfg.blockPrefix }, 'network too small to split into blocks: no pod range leased')
        continue
      }
      const addr = await this.claimBlock(s, net.name, subnet)
      this.check(s)
      if (addr === null) {
        this.warnOnce(`full:${net.name}`, { network: net.name, subnet: net.subnet, blockPrefix: this.cfg.blockPrefix }, 'every pod block of the network is held by another node: pods need an explicit IP')
        continue
      }
      const cidr = `${ipv4Format(addr)}/${this.cfg.blockPrefix}`
      const cur = this.agent.podRange(net.name)
      if (this.blocks.get(net.name) !== cidr || !cur || cur.addr !== addr || cur.prefix !== this.cfg.blockPrefix) {
        this.agent.setPodRange(net.name, { addr, prefix: this.cfg.blockPrefix })
        changed = true
      }
      this.blocks.set(net.name, cidr)
    }
    if (changed) this.saveCachedBlocks()
  }

  /** This node's block of a network: the one it holds, or a free one claimed by compare-and-swap. */
  private async claimBlock(s: Session, network: string, subnet: Subnet): Promise<number | null> {
    const bp = this.cfg.blockPrefix
    const listed = await s.client.getAll().prefix(this.keys.blocks(network)).exec()
    this.check(s)
    const entries: BlockEntry[] = []
    for (const kv of listed.kvs) {
      const k = parseKey(this.keys, kv.key.toString())
      if (k?.kind === 'block') entries.push({ addr: k.addr, prefix: k.prefix, owner: blockOwner(kv.value.toString()), modRevision: kv.mod_revision })
    }
    const mine = ownedBlock(entries, subnet, bp, this.me)
    if (mine !== null) return mine
    const record = (addr: number): string => encodeBlock({ node: this.me, network, block: `${ipv4Format(addr)}/${bp}`, underlayIP: this.agent.config.node.underlayIP })
    const cached = cidrParse(this.blocks.get(network) ?? '')
    const preferred = cached && isBlockOf(subnet, bp, cached.addr, cached.prefix) ? cached.addr : null
    for (const addr of freeBlocks(subnet, bp, blockTaken(entries, bp), preferred)) {
      const key = this.keys.block(network, addr, bp)
      // Create only if absent: of two nodes racing for a block, one wins and the other moves on.
      const r = await s.client.if(key, 'Create', '==', 0).then(s.client.put(key).value(record(addr))).commit()
      this.check(s)
      if (r.succeeded) {
        this.log.info({ network, block: `${ipv4Format(addr)}/${bp}` }, 'pod block claimed')
        return addr
      }
    }
    // Every block is held: take over one whose node is gone and publishes no pod.
    const [nodeKeys, podKeys] = await Promise.all([s.client.getAll().prefix(this.keys.nodes).keys(), s.client.getAll().prefix(this.keys.pods).keys()])
    this.check(s)
    const live = new Set<string>()
    const withPods = new Set<string>()
    for (const key of nodeKeys) { const k = parseKey(this.keys, key); if (k?.kind === 'node') live.add(k.name) }
    for (const key of podKeys) { const k = parseKey(this.keys, key); if (k?.kind === 'pod') withPods.add(k.node) }
    for (const e of reclaimableBlocks(entries, subnet, bp, live, withPods)) {
      const key = this.keys.block(network, e.addr, bp)
      const r = await s.client.if(key, 'Mod', '==', e.modRevision).then(s.client.put(key).value(record(e.addr))).commit()
      this.check(s)
      if (r.succeeded) {
        this.log.warn({ network, block: `${ipv4Format(e.addr)}/${bp}`, from: e.owner }, 'pod block taken over from a node that is gone')
        return e.addr
      }
    }
    return null
  }

  private loadCachedBlocks(): void {
    if (!this.statePath || !fs.existsSync(this.statePath)) return
    try {
      const saved = JSON.parse(fs.readFileSync(this.statePath, 'utf8')) as { node?: string; prefix?: string; blocks?: Record<string, string> }
      if (saved.node !== this.me || saved.prefix !== this.cfg.prefix) return
      for (const net of this.agent.config.networks) {
        const c = cidrParse(saved.blocks?.[net.name] ?? '')
        if (!c || !isBlockOf({ addr: net.subnetAddr, prefix: net.subnetPrefix }, this.cfg.blockPrefix, c.addr, c.prefix)) continue
        this.blocks.set(net.name, `${ipv4Format(c.addr)}/${c.prefix}`)
        // Until etcd confirms it, allocate from the block this node had.
        this.agent.setPodRange(net.name, { addr: c.addr, prefix: c.prefix })
      }
    } catch (err) {
      this.log.warn({ file: this.statePath, reason: reason(err) }, 'cached pod blocks unreadable; waiting for etcd')
    }
  }

  private saveCachedBlocks(): void {
    if (!this.statePath) return
    try {
      fs.mkdirSync(path.dirname(this.statePath), { recursive: true, mode: 0o700 })
      const tmp = `${this.statePath}.tmp`
      fs.writeFileSync(tmp, JSON.stringify({ node: this.me, prefix: this.cfg.prefix, blocks: Object.fromEntries(this.blocks) }, null, 2), { mode: 0o600 })
      fs.renameSync(tmp, this.statePath)
    } catch (err) {
      this.log.warn({ file: this.statePath, reason: reason(err) }, 'could not cache the pod blocks')
    }
  }

  // ---- local pods

  private serial(fn: () => Promise<void>): Promise<void> {
    const run = this.writes.then(fn)
    this.writes = run.catch(() => undefined)
    return run
  }

  /** Makes P/pods/<me>/ hold exactly the local pods, under the current lease. */
  private async syncLocalPods(s: Session): Promise<void> {
    this.check(s)
    const listed = await s.client.getAll().prefix(this.keys.podsOf(this.me)).exec()
    this.check(s)
    const published = new Map<string, string>()
    for (const kv of listed.kvs) {
      const k = parseKey(this.keys, kv.key.toString())
      // A record under an older lease is written again under this one.
      if (k?.kind === 'pod') published.set(k.pod, kv.lease === s.leaseId ? kv.value.toString() : '')
    }
    const local = this.agent.podStates().map((p) => podRecord(this.me, p.cfg))
    const plan = podSyncPlan(published, local)
    await Promise.all([
      ...plan.put.map((p) => s.client.put(this.keys.pod(this.me, p.name)).value(encodePod(p)).lease(s.leaseId).exec()),
      ...plan.del.map((name) => s.client.delete().key(this.keys.pod(this.me, name)).exec()),
    ])
    this.check(s)
    s.podsSynced = true
  }

  private readonly onPodAdded = (p: PodConfig): void => {
    const rec = podRecord(this.me, p)
    void this.serial(async () => {
      const s = this.session
      if (!s?.podsSynced) return // the next session publishes it
      try {
        await s.client.put(this.keys.pod(this.me, rec.name)).value(encodePod(rec)).lease(s.leaseId).exec()
      } catch (err) {
        this.lost(s, `publishing pod ${rec.name}`, err)
      }
    })
  }

  private readonly onPodRemoved = (name: string): void => {
    void this.serial(async () => {
      const s = this.session
      if (!s?.podsSynced) return
      try {
        await s.client.delete().key(this.keys.pod(this.me, name)).exec()
      } catch (err) {
        this.lost(s, `unpublishing pod ${name}`, err)
      }
    })
  }
}

/**
 * The per-host agent, composition root: config -> ports -> datapath -> control.
 *
 * start(): opens the underlay sockets, then creates every pod's TAP, moves it
 * into the pod's namespace and configures it. apply(): takes a new validated
 * config and changes only what differs (pods, peers, networks), so flows it does
 * not touch keep going. stop(): closes every TAP it created (the kernel removes a
 * non-persistent TAP with its last fd, inside the pod namespace too) and the
 * sockets.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import { EventEmitter } from 'node:events'
import * as path from 'node:path'
import { Config, PodConfig, parseConfig, ConfigError } from './control/config'
import { CaptureHook, Datapath, PodSpec } from './datapath/datapath'
import { relayFrames } from './datapath/capture-relay'
import { TapPort } from './ports/tap'
import { UdpPort } from './ports/udp'
import { podProgram, underlayProgram } from './overlay/steering'
import { FdbView, HandOver, WorkerOp, WorkerPool } from './datapath/workers'
import { Batch } from './lib/batch'
import { NativeError, native } from './ports/native'
import { CpuLatencyRequest } from './ports/cpu-latency'
import { setupPodInterface, configurePodInterface, linkKind } from './ports/netdev'
import { ipv4Format, ipv4Parse } from './wire/addr'
import { Logger } from './observe/log'
import { TapestryError } from './lib/errors'
import { ServiceSpec, ServiceError, validateService, serviceKey } from './service/service-model'
import { DnsResponder } from './service/dns'
import { NodePortProxy, NodePortTarget } from './control/nodeport'
import { derivePodMac } from './control/config'
import { run } from './ports/netdev'
import { macFormat } from './wire/addr'

/** Number of transmit sockets; a flow's hash picks one, and so its UDP source port. */
export const TX_POOL_SIZE = 4

/** A pod TAP's open queues: the main thread's, the workers', the priority lane's. */
interface PodQueues {
  tap: TapPort
  /** The queues of workers 1 .. workers-1 (empty: one worker, or a single-queue TAP the main thread alone reads). */
  queues: TapPort[]
  /** The TAP's priority queue (priorityLane), or null. */
  prio: TapPort | null
}

interface PodState extends PodQueues {
  cfg: PodConfig
  portId: number
}

/** A pod added at run time (API, CNI), in config-file form plus who asked for it. */
export interface DynamicPod {
  name: string
  network: string
  netns: string
  ip: string
  mac?: string
  ifname?: string
  portSecurity?: boolean
  containerId?: string
}

/** A pod on another host, as the cluster store publishes it. */
export interface RemotePod {
  name: string
  vni: number
  ip: number
  macHi: number
  macLo: number
  /** Underlay address of the pod's host. */
  node: number
}

/** What `pod add` sends; `ip` and `network` may be left to the agent. */
export interface PodRequest {
  name: string
  netns: string
  ip?: string
  network?: string
  mac?: string
  ifname?: string
  portSecurity?: boolean
  containerId?: string
}

/**
 * Events: 'pod-added' (PodConfig, containerId | null) and 'pod-removed' (name,
 * PodConfig) for every local pod change, whatever its source; the cluster store
 * publishes from them.
 */
export class Agent extends EventEmitter {
  readonly datapath: Datapath
  private cfg: Config
  private rx: UdpPort | null = null
  /** The priority lane's socket (priorityLane), or null. */
  private prio: UdpPort | null = null
  private tx: UdpPort[] = []
  private gsoTx: UdpPort[] = []
  /** The VXLAN port's sockets of workers 1 .. workers-1. */
  private rxWorkers: UdpPort[] = []
  /** Datapath threads beside this one (config workers > 1), or null. */
  private pool: WorkerPool | null = null
  private readonly pods = new Map<string, PodState>()
  private sweepTimer: NodeJS.Timeout | null = null
  /** The PM QoS CPU latency request held while cpuLatencyUs is set. */
  private cpuLatency: CpuLatencyRequest | null = null
  /** The config file's contents as parsed YAML: the base of every re-validation. */
  private fileRaw: Record<string, unknown>
  /** Pods added at run time; kept in `statePath` so they survive restarts. */
  private dynamic: DynamicPod[] = []

  /**
   * `fileRaw` is the config file as parsed (unvalidated) YAML, `cfg` its validated
   * form; `statePath` is where pods added at run time are remembered (null: not kept).
   */
  /** Peers found through the cluster store (config peers are in cfg.peerAddrs). */
  private clusterPeers = new Set<number>()
  /** Remote pods installed as static entries, by name. */
  private remotePods = new Map<string, RemotePod>()
  /** Services by source: the API (`svc apply`) and the cluster store; config ones are in cfg.services. */
  private apiServices = new Map<string, ServiceSpec>()
  private clusterServices = new Map<string, ServiceSpec>()
  /** Keys of the services installed in the datapath. */
  private installedServices = new Set<string>()
  /** Host-side TAPs (host access to pods and VIPs), by network name. */
  private hostPorts = new Map<string, { tap: TapPort; portId: number }>()
  private nodePorts: NodePortProxy
  /** Called with the installed services after every change (DNS). */
  onServicesChanged: ((list: ServiceSpec[]) => void) | null = null
  /** Pod ranges leased at run time (cluster mode), by network name; they override the config's. */
  private leasedRanges = new Map<string, { addr: number; prefix: number }>()

  constructor(cfg: Config, readonly log: Logger, fileRaw: Record<string, unknown> = {}, readonly statePath: string | null = null) {
    super()
    this.cfg = cfg
    this.fileRaw = fileRaw
    this.datapath = new Datapath({
      vxlanPort: cfg.node.vxlanPort,
      fdb: {
        ageMs: cfg.fdb.ageSeconds * 1000,
        maxEntries: cfg.fdb.maxEntries,
        maxPerVni: cfg.fdb.maxPerVni,
        maxPerPort: cfg.fdb.maxPerPort,
      },
      arpSuppression: cfg.arpSuppression,
      learnPeers: cfg.learnPeers,
      conntrack: { maxConnections: cfg.conntrack.maxConnections },
      floodPerSecond: cfg.storm.floodPerSecond,
      floodBurst: cfg.storm.burst,
      // With workers this thread is worker 0; ARP is read here only, so the workers are told what it learns.
      ...(cfg.workers > 1 ? {
        steer: { workers: cfg.workers, worker: 0 },
        onArpLearn: (vni: number, ip: number, hi: number, lo: number) => this.queueArp(vni, ip, hi, lo),
        onHandOver: (worker: number, pod: number, frame: Uint8Array, fromPod: boolean) => this.handOver({ worker, pod, frame, fromPod }),
      } : {}),
    })
    this.nodePorts = new NodePortProxy(cfg.node.underlayIP, log)
    if (cfg.dns) {
      // Cluster DNS: queries to the DNS IP reach the agent through the gateway and are answered in place.
      const dns = new DnsResponder({ ip: cfg.dns.ipAddr, clusterDomain: cfg.dns.clusterDomain })
      this.datapath.responder = dns.datapathResponder(this.datapath.routerMacHi, this.datapath.routerMacLo)
      this.onServicesChanged = (list) => {
        const names = list.map((sv) => ({ name: sv.name, namespace: sv.namespace ?? 'default', clusterIP: ipv4Parse(sv.clusterIP) })).filter((x) => x.clusterIP > 0)
        dns.setServices(names)
        this.toWorkers({ op: 'dnsServices', list: names })
      }
    }
  }

  get config(): Config {
    return this.cfg
  }

  async start(): Promise<void> {
    const { node } = this.cfg
    const offloads = this.cfg.offloads
    native.busyPoll(this.cfg.busyPollUs)
    this.applyCpuLatency(this.cfg.cpuLatencyUs)
    const vx = this.cfg.vxlan
    const rxOpts = { addr: node.underlayAddr, port: node.vxlanPort, sndbuf: 8 << 20, noChecksum: true, gro: offloads, rx: this.datapath.underlayRx, rxBudget: this.cfg.rxBatchBytes }
    const workers = this.cfg.workers
    if (workers > 1) {
      this.pool = await WorkerPool.start(workers - 1, {
        options: {
          vxlanPort: node.vxlanPort,
          fdb: { ageMs: this.cfg.fdb.ageSeconds * 1000, maxEntries: this.cfg.fdb.maxEntries, maxPerVni: this.cfg.fdb.maxPerVni, maxPerPort: this.cfg.fdb.maxPerPort },
          arpSuppression: this.cfg.arpSuppression, learnPeers: this.cfg.learnPeers, floodPerSecond: this.cfg.storm.floodPerSecond, floodBurst: this.cfg.storm.burst,
        },
        busyPollUs: this.cfg.busyPollUs, rxBatchBytes: this.cfg.rxBatchBytes, sweepMs: this.sweepMs(),
      }, {
        onFatal: (err) => this.fatal(err),
        onCapture: (records) => { if (this.capture !== null) relayFrames(records, this.capture) },
        onHandOver: (h) => this.handOver(h),
      })
      this.datapath.workerCounters.push(...this.pool.counters)
      if (this.cfg.dns) await this.pool.all({ op: 'dns', ip: this.cfg.dns.ipAddr, clusterDomain: this.cfg.dns.clusterDomain })
    }
    if (this.cfg.priorityLane || workers > 1) {
      // The sockets share the port through SO_REUSEPORT, which would also let a second agent
      // (same user) bind it without an error: a plain bind first keeps "port in use" an error.
      UdpPort.open({ addr: node.underlayAddr, port: node.vxlanPort }).close()
      this.rx = UdpPort.open({ ...rxOpts, rcvbuf: vx.rcvbufBytes, reusePort: true })
      for (let k = 1; k < workers; k++) this.rxWorkers.push(UdpPort.open({ ...rxOpts, rcvbuf: vx.rcvbufBytes, reusePort: true }))
      if (this.cfg.priorityLane) this.prio = UdpPort.open({ ...rxOpts, reusePort: true })
      // Group order: worker 0 .. workers-1, then the priority lane. The program returns only
      // those indices: a socket that joins the group later gets nothing.
      this.rx.attachSteering(underlayProgram(os.endianness() === 'LE', { workers, lane: this.cfg.priorityLane }))
    } else {
      this.rx = UdpPort.open({ ...rxOpts, rcvbuf: vx.rcvbufBytes })
    }
    this.tx = openTxPool(node.underlayAddr, this.cfg.vxlan.srcPortMin, this.cfg.vxlan.srcPortMax, node.vxlanPort, offloads, this.datapath.underlayRx)
    // With offloads, each pool port has a twin socket with UDP checksums on for GSO sends.
    this.gsoTx = offloads ? this.tx.map((t) => UdpPort.open({ addr: node.underlayAddr, port: t.port, reusePort: true, sndbuf: 8 << 20, gso: true, rx: this.datapath.underlayRx })) : []
    this.datapath.attachUnderlay(this.rx, this.tx, this.gsoTx.map((g) => (g.gsoEnabled ? g : null)), this.prio)
    const txFds = this.tx.map((t, i) => ({ fd: t.fd, port: t.port, gsoFd: this.gsoTx[i]?.gsoEnabled ? this.gsoTx[i].fd : -1, gsoEnabled: this.gsoTx[i]?.gsoEnabled ?? false }))
    for (let k = 1; k < workers; k++) {
      const r = this.rxWorkers[k - 1]
      await this.pool!.one(k, { op: 'underlay', addr: node.underlayAddr, rx: { fd: r.fd, port: r.port, gro: r.gro }, tx: txFds })
    }
    this.log.info({ underlay: `${node.underlayIP}:${node.vxlanPort}`, sourcePorts: this.datapath.sourcePorts(), offloads, udpGro: this.rx.gro, udpGso: this.gsoTx.some((g) => g.gsoEnabled), priorityLane: this.prio !== null, rxBatchBytes: this.cfg.rxBatchBytes, workers }, 'underlay socket open')
    for (const n of this.cfg.networks) this.addNetwork(n.vni, n.gatewayAddr ?? 0)
    for (const p of this.cfg.peerAddrs) this.addPeer(p)
    for (const n of this.cfg.networks) if (n.hostAddr !== null) await this.addHostPort(n.name)
    for (const p of this.cfg.pods) await this.addPod(p)
    // API services first: restoreDynamicPods() rewrites the state file from memory
    // (pods and services), which would otherwise save an empty service list over
    // the saved one before it is read, losing `svc apply` services on a restart.
    this.restoreApiServices()
    await this.restoreDynamicPods()
    this.syncServices()
    this.sweepTimer = setInterval(() => this.datapath.sweep(), this.sweepMs())
    this.log.info({ pods: this.pods.size, peers: this.datapath.peers.size, networks: this.cfg.networks.length }, 'dataplane started')
  }

  private sweepMs(): number {
    return Math.max(100, Math.min(1000, this.cfg.fdb.ageSeconds * 250))
  }

  /** An ICMP error one thread read about another worker's flow, to that worker (0: this thread). */
  private handOver(h: HandOver): void {
    if (h.worker === 0) { this.datapath.deliverHandedOver(h.pod, h.frame, h.fromPod); return }
    this.pool?.one(h.worker, { op: 'icmp', pod: h.pod, frame: h.frame, fromPod: h.fromPod }).catch(() => undefined)
  }

  /** Sends a control operation to every worker, in order with the ones before it (failures are logged). */
  private toWorkers(op: WorkerOp): void {
    this.pool?.all(op).catch((err) => this.log.error({ op: op.op, reason: (err as Error).message }, 'datapath worker refused an operation'))
  }

  private addNetwork(vni: number, gatewayIp: number): void {
    this.datapath.addNetwork(vni, gatewayIp)
    this.toWorkers({ op: 'network', vni, gatewayIp, add: true })
  }

  private removeNetwork(vni: number): void {
    this.datapath.removeNetwork(vni)
    this.toWorkers({ op: 'network', vni, gatewayIp: 0, add: false })
  }

  /**
   * The running captures' hook (observe/capture.ts), or null: what the capture
   * hub attaches to. It is the main datapath's; with workers, theirs relay every
   * frame they see to it while a capture runs.
   */
  get capture(): CaptureHook | null {
    return this.datapath.capture
  }

  set capture(h: CaptureHook | null) {
    const was = this.datapath.capture !== null
    this.datapath.capture = h
    if (was !== (h !== null)) this.toWorkers({ op: 'capture', on: h !== null })
  }

  /** ARP entries learned since the last hand-over to the workers, [vni, ip, macHi, macLo] after each other. */
  private arpQueue: number[] = []

  /** Passes an ARP entry the main thread learned to the workers, batched per turn of the event loop. */
  private queueArp(vni: number, ip: number, hi: number, lo: number): void {
    if (this.pool === null || this.arpQueue.length >= 4 * 4096) return
    if (this.arpQueue.length === 0) setImmediate(() => { const entries = this.arpQueue; this.arpQueue = []; this.toWorkers({ op: 'arp', entries }) })
    this.arpQueue.push(vni, ip, hi, lo)
  }

  /** Brings the workers' copied counters (conntrack, FDB, batches) up to date; their packet counters always are. */
  async syncCounters(): Promise<void> {
    await this.pool?.all({ op: 'sync' })
  }

  /** Connections of every datapath thread (conntrack list). */
  async connections(): Promise<ReturnType<Datapath['conntrack']['list']>> {
    const own = this.datapath.conntrack.list(performance.now())
    if (this.pool === null) return own
    const theirs = await this.pool.ask({ op: 'query', what: 'conntrack' }) as typeof own[]
    return own.concat(...theirs)
  }

  /** Empties every datapath thread's conntrack; returns how many connections there were. */
  async flushConnections(): Promise<number> {
    let n = this.datapath.conntrack.flush()
    if (this.pool !== null) for (const k of await this.pool.ask({ op: 'conntrackFlush' }) as number[]) n += k
    return n
  }

  /**
   * The services, with each endpoint's connections and picks summed over every
   * datapath thread (each balances the connections it reads).
   */
  async serviceList(): Promise<ReturnType<Datapath['services']['list']>> {
    const own = this.datapath.services.list()
    if (this.pool === null) return own
    const theirs = await this.pool.ask({ op: 'query', what: 'services' }) as typeof own[]
    const byKey = new Map(own.map((sv) => [`${sv.namespace}/${sv.name}`, sv]))
    for (const list of theirs) {
      for (const sv of list) {
        const mine = byKey.get(`${sv.namespace}/${sv.name}`)
        if (mine === undefined) continue
        for (const e of sv.endpoints) {
          const m = mine.endpoints.find((x) => x.ip === e.ip)
          if (m !== undefined) { m.connections += e.connections; m.picked += e.picked }
        }
      }
    }
    return own
  }

  /** Learned FDB entries of the workers (each learns from the flows it reads), or [] without workers. */
  async workerFdb(): Promise<FdbView[]> {
    if (this.pool === null) return []
    return (await this.pool.ask({ op: 'query', what: 'fdb' }) as FdbView[][]).flat()
  }

  /** A datapath worker died: its share of every flow is gone, so the agent must stop (agent-command). */
  private fatal(err: Error): void {
    this.log.fatal({ reason: err.message }, 'datapath worker failed; stopping')
    this.emit('fatal', err)
  }

  /** Validates a new config file (with the run-time pods) and applies the difference. */
  async applyFile(fileRaw: Record<string, unknown>): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
    const next = this.candidate(fileRaw, this.dynamic)
    const fixed: [string, unknown, unknown][] = [
      ['node.name', this.cfg.node.name, next.node.name], ['node.underlayIP', this.cfg.node.underlayIP, next.node.underlayIP],
      ['node.vxlanPort', this.cfg.node.vxlanPort, next.node.vxlanPort], ['node.mtu', this.cfg.node.mtu, next.node.mtu],
      ['node.podMtu', this.cfg.node.podMtu, next.node.podMtu], ['offloads', this.cfg.offloads, next.offloads],
      ['vxlan.srcPortMin', this.cfg.vxlan.srcPortMin, next.vxlan.srcPortMin], ['vxlan.srcPortMax', this.cfg.vxlan.srcPortMax, next.vxlan.srcPortMax],
      ['vxlan.rcvbufBytes', this.cfg.vxlan.rcvbufBytes, next.vxlan.rcvbufBytes],
      ['priorityLane', this.cfg.priorityLane, next.priorityLane], ['rxBatchBytes', this.cfg.rxBatchBytes, next.rxBatchBytes],
      ['workers', this.cfg.workers, next.workers],
      ['api.socket', this.cfg.api.socket, next.api.socket],
      ['serviceRange', this.cfg.serviceRange, next.serviceRange],
      ['networks[].hostIP', JSON.stringify(this.cfg.networks.map((n) => [n.name, n.hostIP])), JSON.stringify(next.networks.filter((n) => this.cfg.networks.some((m) => m.name === n.name)).map((n) => [n.name, n.hostIP]))],
      ['metrics.listen', this.cfg.metrics.listen, next.metrics.listen],
    ]
    const problems = fixed.filter(([, a, b]) => a !== b).map(([k, a, b]) => ({ path: k, message: `${JSON.stringify(b)} differs from the running ${JSON.stringify(a)}: changing it needs an agent restart` }))
    if (problems.length > 0) throw new ConfigError(problems)
    this.checkServiceSet(this.effectiveServices(next.services))
    const result = await this.apply(next)
    this.fileRaw = fileRaw
    return result
  }

  /** Applies a new (validated) config: only the differences are changed. */
  async apply(next: Config): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
    // First: the one change that can fail on the host's side (the PM QoS device), before anything else changed.
    this.applyCpuLatency(next.cpuLatencyUs)
    const added: string[] = []
    const removed: string[] = []
    const changed: string[] = []
    for (const n of next.networks) if (!this.datapath.hasNetwork(n.vni)) this.addNetwork(n.vni, n.gatewayAddr ?? 0)
    const nextPods = new Map(next.pods.map((p) => [p.name, p]))
    for (const [name, st] of this.pods) {
      const np = nextPods.get(name)
      if (!np) { await this.removePod(name); removed.push(name) }
      else if (podKey(np) !== podKey(st.cfg)) { await this.removePod(name); changed.push(name) }
    }
    const nextPeers = new Set([...next.peerAddrs, ...this.clusterPeers])
    for (const p of this.datapath.peers.list()) if (!nextPeers.has(p) && this.datapath.peers.configured[this.datapath.peers.indexOf(p)] === 1) this.removePeer(p)
    for (const p of next.peerAddrs) this.addPeer(p)
    for (const n of this.cfg.networks) if (!next.networks.some((m) => m.vni === n.vni)) this.removeNetwork(n.vni)
    this.cfg = next
    this.syncServices()
    this.datapath.arpSuppression = next.arpSuppression
    this.datapath.learnPeers = next.learnPeers
    this.datapath.floodPerSecond = next.storm.floodPerSecond
    this.datapath.floodBurst = next.storm.burst
    native.busyPoll(next.busyPollUs)
    this.toWorkers({ op: 'settings', arpSuppression: next.arpSuppression, learnPeers: next.learnPeers, floodPerSecond: next.storm.floodPerSecond, floodBurst: next.storm.burst, busyPollUs: next.busyPollUs })
    for (const p of next.pods) {
      if (!this.pods.has(p.name)) {
        await this.addPod(p)
        if (!changed.includes(p.name)) added.push(p.name)
      }
    }
    this.log.info({ added, removed, changed }, 'config applied')
    return { added, removed, changed }
  }

  /** Holds, changes or drops the PM QoS CPU latency request (cpuLatencyUs). */
  private applyCpuLatency(us: number | null): void {
    if (us === null) {
      if (this.cpuLatency !== null) this.log.info('cpu latency request dropped')
      this.cpuLatency?.close()
      this.cpuLatency = null
      return
    }
    if (this.cpuLatency?.us === us) return
    if (this.cpuLatency === null) this.cpuLatency = CpuLatencyRequest.open(us)
    else this.cpuLatency.set(us)
    this.log.info({ cpuLatencyUs: us, device: this.cpuLatency.device }, 'cpu latency request held')
  }

  async addPod(p: PodConfig): Promise<void> {
    if (this.pods.has(p.name)) throw new TapestryError('TAPESTRY_POD_EXISTS', `pod ${p.name} already exists`)
    const iface = {
      netns: p.netns, tapName: tapNameFor(this.cfg.node.name, p.name), ifname: p.ifname, mac: p.mac, cidr: p.ip,
      mtu: this.cfg.node.podMtu, gateway: this.cfg.networks[p.networkIndex].gateway ?? undefined,
    }
    // Pod TAPs are persistent: they outlive the agent (a restart or a crash leaves
    // the pod's interface and addresses in place) and are re-attached on start.
    const kind = await linkKind(p.netns, p.ifname)
    let q: PodQueues
    let reattached = false
    if (kind === 'tap') {
      q = this.openPodQueues(p.ifname, p.netnsPath)
      reattached = true
      try {
        await configurePodInterface(iface)
      } catch (err) {
        closeQueues(q)
        throw err
      }
    } else if (kind !== null) {
      throw new TapestryError('TAPESTRY_POD_IFNAME_TAKEN', `pod ${p.name}: netns ${p.netns} already has an interface ${p.ifname} (a ${kind}, not a Tapestry TAP); choose another ifname or remove it`)
    } else {
      q = this.openPodQueues(iface.tapName, undefined)
      try {
        await setupPodInterface(iface)
      } catch (err) {
        q.tap.setPersist(false)
        closeQueues(q)
        throw err
      }
    }
    const { tap, prio, queues } = q
    const spec: PodSpec = {
      name: p.name, vni: p.vni, macHi: p.macHi, macLo: p.macLo, ip: p.ipAddr, mtu: this.cfg.node.podMtu,
      portSecurity: p.portSecurity, vnetHdr: tap.vnetHdr, uso: tap.uso,
    }
    const port = this.datapath.addPod(spec, tap, prio)
    this.pods.set(p.name, { cfg: p, tap, prio, queues, portId: port.id })
    try {
      await this.addPodToWorkers(port.id, spec, tap, queues)
    } catch (err) {
      await this.removePod(p.name, !reattached)
      throw err
    }
    // Announce it: an address handed out again must not stay mapped to the old pod's MAC elsewhere.
    this.datapath.announce(port)
    this.emit('pod-added', p, this.dynamic.find((d) => d.name === p.name)?.containerId ?? null)
    this.log.info({ pod: p.name, netns: p.netns, ip: p.ip, mac: p.mac, vni: p.vni, port: port.id, reattached }, reattached ? 'pod re-attached' : 'pod added')
  }

  /**
   * The pod joins every worker's datapath with the main thread's port id: worker k
   * reads queue k, or (a single-queue TAP) only writes to the TAP the main thread reads.
   */
  private async addPodToWorkers(id: number, spec: PodSpec, tap: TapPort, queues: TapPort[]): Promise<void> {
    if (this.pool === null) return
    for (let k = 1; k <= this.pool.size; k++) {
      const own = queues[k - 1]
      await this.pool.one(k, { op: 'addPod', id, spec, fd: (own ?? tap).fd, name: tap.name, vnetHdr: tap.vnetHdr, offloadFlags: tap.offloadFlags, read: own !== undefined })
    }
  }

  /**
   * Opens a pod's TAP (creating it, or attaching to the persistent one, by name in
   * the agent's namespace or in `netnsPath`). With priorityLane or workers it is
   * multi-queue: queue k for worker k, then the priority lane's, and the steering
   * program set, so each flow is read by its worker and the pod's ARP and ICMP
   * apart from its bulk traffic (overlay/steering.ts). A persistent TAP made the
   * other way (by an agent with other settings, or an older one) is attached as
   * it is: queue flags must match, so the other kind is tried; a single-queue one
   * is read by the main thread alone.
   */
  private openPodQueues(name: string, netnsPath: string | undefined): PodQueues {
    const open = (multiQueue: boolean) => TapPort.open({ name, netnsPath, multiQueue, vnetHdr: true, offloads: this.cfg.offloads, persist: true, rx: this.datapath.podRx, rxBudget: this.cfg.rxBatchBytes })
    const workers = this.cfg.workers
    const steer = this.cfg.priorityLane || workers > 1
    let multiQueue = steer
    let tap: TapPort
    try {
      tap = open(multiQueue)
    } catch (err) {
      if (!(err instanceof NativeError) || err.code !== 'EINVAL' || err.syscall !== 'ioctl TUNSETIFF') throw err
      multiQueue = !multiQueue
      tap = open(multiQueue)
      this.log.info({ tap: name, multiQueue }, 'persistent TAP attached with its own queue setting')
    }
    const q: PodQueues = { tap, queues: [], prio: null }
    if (!multiQueue || !steer) return q
    try {
      for (let k = 1; k < workers; k++) q.queues.push(open(true))
      if (this.cfg.priorityLane) q.prio = open(true)
      tap.setSteering(podProgram(os.endianness() === 'LE', { workers, lane: this.cfg.priorityLane }))
      return q
    } catch (err) {
      // A TAP made just now (not one re-attached in a pod) must not outlive the failure.
      if (netnsPath === undefined) try { tap.setPersist(false) } catch { /* closing below removes it or reports nothing more */ }
      closeQueues(q)
      throw err
    }
  }

  /**
   * Removes a pod from the datapath. `forGood` also deletes its TAP (pod deleted);
   * otherwise the persistent TAP stays in the pod for the next agent (stop).
   */
  async removePod(name: string, forGood = true): Promise<void> {
    const st = this.pods.get(name)
    if (!st) return
    this.datapath.removePod(st.portId)
    // The workers stop reading its queues before they are closed.
    await this.pool?.all({ op: 'removePod', id: st.portId }).catch((err) => this.log.error({ pod: name, reason: (err as Error).message }, 'datapath worker could not remove the pod'))
    if (forGood) {
      try { st.tap.setPersist(false) } catch (err) { this.log.warn({ pod: name, err }, 'could not clear persist on the pod TAP') }
    }
    closeQueues(st)
    this.pods.delete(name)
    if (forGood) this.emit('pod-removed', name, st.cfg)
    this.log.info({ pod: name, deleted: forGood }, forGood ? 'pod removed' : 'pod detached')
  }

  // ---- services ----

  /** Every service the agent should run: config, then API, then cluster store (first definition wins). */
  private effectiveServices(configServices: ServiceSpec[] = this.cfg.services): Map<string, ServiceSpec> {
    const out = new Map<string, ServiceSpec>()
    const add = (spec: ServiceSpec): void => {
      const key = serviceKey(spec.name, spec.namespace ?? 'default')
      if (!out.has(key)) out.set(key, spec)
    }
    for (const s of configServices) add(s)
    for (const s of this.apiServices.values()) add(s)
    for (const s of this.clusterServices.values()) add(s)
    return out
  }

  /**
   * Refuses a set of services in which two claim the same VIP, protocol and
   * port, before anything changes.
   */
  private checkServiceSet(set: Map<string, ServiceSpec>): void {
    const owner = new Map<string, string>()
    const issues: { path: string; message: string }[] = []
    for (const [key, spec] of set) {
      const v = validateService(spec)
      if (v.vip === 0) continue
      for (const p of v.ports) {
        const k = `${v.vip}/${p.proto}/${p.port}`
        const other = owner.get(k)
        if (other !== undefined && other !== key) issues.push({ path: key, message: `${v.clusterIP}:${p.port} is already served by ${other}` })
        else owner.set(k, key)
      }
    }
    if (issues.length > 0) throw new ConfigError(issues)
  }

  /** Makes the datapath's service table match effectiveServices(): only differences change. */
  private syncServices(): void {
    const want = this.effectiveServices()
    const table = this.datapath.services
    for (const key of this.installedServices) {
      if (!want.has(key)) {
        const [ns, name] = key.split('/')
        table.remove(name, ns)
        this.toWorkers({ op: 'serviceRemove', name, namespace: ns })
        this.installedServices.delete(key)
        this.log.info({ service: key }, 'service removed')
      }
    }
    for (const [key, spec] of want) {
      try {
        const r = table.upsert(spec)
        this.toWorkers({ op: 'service', spec })
        if (!this.installedServices.has(key)) this.log.info({ service: key, clusterIP: spec.clusterIP, endpoints: spec.endpoints.length }, 'service added')
        else if ((r as { changed?: boolean }).changed !== false) this.log.debug({ service: key }, 'service updated')
        this.installedServices.add(key)
      } catch (err) {
        this.log.error({ service: key, reason: (err as Error).message }, 'service not installed')
      }
    }
    this.onServicesChanged?.([...want.values()])
    this.syncNodePorts(want)
  }

  private syncNodePorts(want: Map<string, ServiceSpec>): void {
    const targets: NodePortTarget[] = []
    for (const [key, spec] of want) {
      if (!spec.nodePort) continue
      if (this.hostPorts.size === 0) {
        this.log.warn({ service: key }, 'nodePort needs host access: set networks[].hostIP (and serviceRange)')
        continue
      }
      const p = spec.ports[0]
      targets.push({ key, nodePort: spec.nodePort, vip: spec.clusterIP, port: p.port, protocol: (p.protocol ?? 'TCP') as 'TCP' | 'UDP' })
    }
    this.nodePorts.sync(targets).catch((err) => this.log.error({ reason: (err as Error).message }, 'nodePort sync failed'))
  }

  /**
   * The host side of a network: a TAP in the agent's own namespace with this
   * node's hostIP, a port of the switch like a pod's, and a route to the
   * service range through the gateway, so processes on the host reach pods and
   * VIPs (and NodePorts can be proxied to VIPs).
   */
  private async addHostPort(network: string): Promise<void> {
    const n = this.cfg.networks.find((x) => x.name === network)!
    const mac = derivePodMac(`host:${this.cfg.node.name}:${network}`)
    const name = `tph${n.vni}`.slice(0, 15)
    const tap = TapPort.open({ name, vnetHdr: true, offloads: this.cfg.offloads, persist: false, rx: this.datapath.podRx, rxBudget: this.cfg.rxBatchBytes })
    try {
      const cmds = [
        `link set dev ${name} address ${macFormat(mac.hi, mac.lo)} mtu ${this.cfg.node.podMtu} up`,
        `addr replace ${n.hostIP}/${n.subnetPrefix} dev ${name}`,
      ]
      if (this.cfg.serviceRange && n.gateway) cmds.push(`route replace ${this.cfg.serviceRange} via ${n.gateway} dev ${name} onlink`)
      await run('ip', ['-batch', '-'], cmds.join('\n') + '\n')
    } catch (err) {
      tap.close()
      throw err
    }
    const port = this.datapath.addPod({
      name: `host:${network}`, vni: n.vni, macHi: mac.hi, macLo: mac.lo, ip: n.hostAddr!, mtu: this.cfg.node.podMtu,
      portSecurity: true, vnetHdr: tap.vnetHdr, uso: tap.uso,
    }, tap)
    this.hostPorts.set(network, { tap, portId: port.id })
    await this.addPodToWorkers(port.id, port.spec, tap, [])
    this.log.info({ network, tap: name, ip: n.hostIP, serviceRange: this.cfg.serviceRange }, 'host access added')
  }

  /** Adds or replaces services from the API (all or nothing). */
  applyServices(specs: ServiceSpec[]): { applied: string[] } {
    const problems: { path: string; message: string }[] = []
    const keys: string[] = []
    specs.forEach((spec, i) => {
      try {
        const v = validateService(spec)
        keys.push(v.key)
      } catch (err) {
        if (err instanceof ServiceError) for (const m of err.issues) problems.push({ path: `services[${i}]`, message: m })
        else throw err
      }
    })
    if (problems.length > 0) throw new ConfigError(problems)
    const next = new Map(this.apiServices)
    specs.forEach((spec, i) => next.set(keys[i], { ...spec, namespace: spec.namespace ?? 'default' }))
    const saved = this.apiServices
    this.apiServices = next
    try {
      this.checkServiceSet(this.effectiveServices())
    } catch (err) {
      this.apiServices = saved
      throw err
    }
    this.syncServices()
    this.saveDynamicPods()
    return { applied: keys }
  }

  /** Deletes a service added over the API; false when there was none. */
  deleteService(name: string, namespace = 'default'): boolean {
    const key = serviceKey(name, namespace)
    if (!this.apiServices.delete(key)) {
      if (this.cfg.services.some((s) => serviceKey(s.name, s.namespace ?? 'default') === key)) {
        throw new ConfigError([{ path: key, message: 'comes from the config file: remove it there and reload' }])
      }
      return false
    }
    this.syncServices()
    this.saveDynamicPods()
    return true
  }

  /** Services from the cluster store (replaces the previous set from there). */
  applyClusterServices(list: unknown[]): void {
    const next = new Map<string, ServiceSpec>()
    for (const item of list) {
      try {
        const v = validateService(item as ServiceSpec)
        next.set(v.key, item as ServiceSpec)
      } catch (err) {
        this.log.warn({ reason: (err as Error).message }, 'cluster service ignored')
      }
    }
    this.clusterServices = next
    this.syncServices()
  }

  private restoreApiServices(): void {
    if (!this.statePath || !fs.existsSync(this.statePath)) return
    try {
      const saved = (JSON.parse(fs.readFileSync(this.statePath, 'utf8')) as { services?: ServiceSpec[] }).services ?? []
      for (const s of saved) this.apiServices.set(serviceKey(s.name, s.namespace ?? 'default'), s)
    } catch {
      /* reported by restoreDynamicPods */
    }
  }

  // ---- cluster store hooks ----

  /** Sets the peers found through the cluster store; configured peers are never removed here. */
  setClusterPeers(addrs: number[]): void {
    const next = new Set(addrs.map((a) => a >>> 0).filter((a) => a !== this.cfg.node.underlayAddr))
    const configured = new Set(this.cfg.peerAddrs)
    for (const a of this.clusterPeers) {
      if (!next.has(a) && !configured.has(a)) {
        this.removePeer(a)
        for (const [name, rp] of this.remotePods) if (rp.node === a) this.remotePods.delete(name)
      }
    }
    for (const a of next) if (!this.clusterPeers.has(a)) this.addPeer(a)
    this.clusterPeers = next
  }

  /** Installs remote pods as static FDB and ARP entries (replacing the previous set). */
  setRemotePods(pods: RemotePod[]): void {
    const next = new Map(pods.map((p) => [p.name, p]))
    for (const [name, old] of this.remotePods) {
      const n = next.get(name)
      if (!n || n.macHi !== old.macHi || n.macLo !== old.macLo || n.ip !== old.ip || n.vni !== old.vni || n.node !== old.node) {
        this.datapath.removeRemotePod(old.vni, old.macHi, old.macLo, old.ip)
        this.toWorkers({ op: 'remotePod', vni: old.vni, macHi: old.macHi, macLo: old.macLo, ip: old.ip, peer: old.node, add: false })
        this.remotePods.delete(name)
      }
    }
    for (const [name, p] of next) {
      if (this.remotePods.has(name) || this.pods.has(name)) continue
      if (this.datapath.addRemotePod(p.vni, p.macHi, p.macLo, p.ip, p.node)) {
        this.remotePods.set(name, p)
        this.toWorkers({ op: 'remotePod', vni: p.vni, macHi: p.macHi, macLo: p.macLo, ip: p.ip, peer: p.node, add: true })
      }
    }
  }

  /** The block of a network's subnet this node hands out (leased from the cluster store). */
  setPodRange(network: string, range: { addr: number; prefix: number }): void {
    this.leasedRanges.set(network, range)
    this.log.info({ network, range: `${ipv4Format(range.addr)}/${range.prefix}` }, 'pod range leased')
  }

  podRange(network: string): { addr: number; prefix: number } | null {
    return this.leasedRanges.get(network) ?? this.cfg.networks.find((n) => n.name === network)?.podRange ?? null
  }

  podStates(): { name: string; port: number; tap: string; cfg: PodConfig; containerId: string | null; source: 'config' | 'api' }[] {
    return [...this.pods.values()].map((s) => {
      const d = this.dynamic.find((x) => x.name === s.cfg.name)
      return { name: s.cfg.name, port: s.portId, tap: s.tap.name, cfg: s.cfg, containerId: d?.containerId ?? null, source: d ? 'api' as const : 'config' as const }
    })
  }

  /** The config file plus run-time pods, validated as one (throws ConfigError). */
  private candidate(fileRaw: Record<string, unknown>, dynamic: DynamicPod[]): Config {
    const filePods = Array.isArray(fileRaw.pods) ? fileRaw.pods : []
    const pods = [...filePods, ...dynamic.map(({ containerId: _c, ...p }) => p)]
    return parseConfig({ ...fileRaw, pods })
  }

  /**
   * Adds a pod at run time (API, CNI). Idempotent: asking again for a pod that
   * exists with the same namespace and interface returns it unchanged. Without
   * an IP, the next free address of the network's podRange is taken.
   */
  async addDynamicPod(req: PodRequest): Promise<PodConfig> {
    const existing = this.pods.get(req.name)
    if (existing) {
      if (existing.cfg.netns === req.netns && existing.cfg.ifname === (req.ifname ?? existing.cfg.ifname)) return existing.cfg
      throw new ConfigError([{ path: 'name', message: `pod ${req.name} already exists in netns ${existing.cfg.netns}` }])
    }
    const network = req.network ?? (this.cfg.networks.length === 1 ? this.cfg.networks[0].name : undefined)
    if (!network) throw new ConfigError([{ path: 'network', message: `is required: this agent has ${this.cfg.networks.length} networks (${this.cfg.networks.map((n) => n.name).join(', ') || 'none'})` }])
    const ip = req.ip ?? this.allocateIp(network)
    const pod: DynamicPod = { name: req.name, network, netns: req.netns, ip }
    if (req.mac !== undefined) pod.mac = req.mac
    if (req.ifname !== undefined) pod.ifname = req.ifname
    if (req.portSecurity !== undefined) pod.portSecurity = req.portSecurity
    if (req.containerId !== undefined) pod.containerId = req.containerId
    const next = this.candidate(this.fileRaw, [...this.dynamic, pod])
    const cfg = next.pods.find((p) => p.name === req.name)!
    this.cfg = next
    this.dynamic.push(pod)
    try {
      await this.addPod(cfg)
    } catch (err) {
      this.dynamic = this.dynamic.filter((d) => d !== pod)
      this.cfg = this.candidate(this.fileRaw, this.dynamic)
      throw err
    }
    this.saveDynamicPods()
    return cfg
  }

  /** Deletes a pod added at run time; false when there was none (deleting twice is fine). */
  async delDynamicPod(name: string): Promise<boolean> {
    const d = this.dynamic.find((x) => x.name === name)
    if (!d) {
      if (this.pods.has(name)) throw new ConfigError([{ path: 'name', message: `pod ${name} comes from the config file: remove it there and reload` }])
      return false
    }
    await this.removePod(name, true)
    this.dynamic = this.dynamic.filter((x) => x !== d)
    this.cfg = this.candidate(this.fileRaw, this.dynamic)
    this.saveDynamicPods()
    return true
  }

  /** The pod a container was given (CNI), if any. */
  podByContainer(containerId: string, ifname?: string): PodConfig | null {
    const d = this.dynamic.find((x) => x.containerId === containerId && (ifname === undefined || (x.ifname ?? 'eth0') === ifname))
    return d ? this.pods.get(d.name)?.cfg ?? null : null
  }

  private allocateIp(network: string): string {
    const net = this.cfg.networks.find((n) => n.name === network)
    if (!net) throw new ConfigError([{ path: 'network', message: `unknown network "${network}" (known: ${this.cfg.networks.map((n) => n.name).join(', ')})` }])
    const range = this.leasedRanges.get(network) ?? net.podRange
    if (!range) throw new ConfigError([{ path: 'ip', message: `is required: network ${network} has no podRange to allocate from` }])
    const used = new Set(this.cfg.pods.filter((p) => p.network === network).map((p) => p.ipAddr))
    const size = 2 ** (32 - range.prefix)
    for (let i = 1; i < size - 1; i++) {
      const a = (range.addr + i) >>> 0
      if (a === net.gatewayAddr || a === net.subnetAddr || a === net.broadcastAddr || used.has(a)) continue
      return `${ipv4Format(a)}/${net.subnetPrefix}`
    }
    throw new ConfigError([{ path: 'ip', message: `network ${network}'s podRange ${ipv4Format(range.addr)}/${range.prefix} is full` }])
  }

  private saveDynamicPods(): void {
    if (!this.statePath) return
    fs.mkdirSync(path.dirname(this.statePath), { recursive: true, mode: 0o700 })
    const tmp = `${this.statePath}.tmp`
    fs.writeFileSync(tmp, JSON.stringify({ pods: this.dynamic, services: [...this.apiServices.values()] }, null, 2), { mode: 0o600 })
    fs.renameSync(tmp, this.statePath)
  }

  /** Re-adds pods added at run time before a restart; a pod whose namespace is gone is dropped. */
  private async restoreDynamicPods(): Promise<void> {
    if (!this.statePath || !fs.existsSync(this.statePath)) return
    let saved: DynamicPod[]
    try {
      saved = (JSON.parse(fs.readFileSync(this.statePath, 'utf8')) as { pods: DynamicPod[] }).pods ?? []
    } catch (err) {
      this.log.warn({ file: this.statePath, err: String(err) }, 'run-time pod state unreadable; starting without it')
      return
    }
    for (const pod of saved) {
      try {
        const next = this.candidate(this.fileRaw, [...this.dynamic, pod])
        const cfg = next.pods.find((p) => p.name === pod.name)!
        await this.addPod(cfg)
        this.cfg = next
        this.dynamic.push(pod)
      } catch (err) {
        this.log.warn({ pod: pod.name, reason: (err as Error).message }, 'run-time pod not restored')
      }
    }
    this.saveDynamicPods()
  }

  private addPeer(addr: number): void {
    if (this.datapath.peers.indexOf(addr) >= 0) return
    this.datapath.addPeer(addr)
    this.toWorkers({ op: 'peer', addr, add: true })
    this.emit('peer-added', addr)
    this.log.info({ peer: ipv4Format(addr) }, 'peer added')
  }

  private removePeer(addr: number): void {
    this.datapath.removePeer(addr)
    this.toWorkers({ op: 'peer', addr, add: false })
    this.emit('peer-removed', addr)
    this.log.info({ peer: ipv4Format(addr) }, 'peer removed')
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = null
    await this.nodePorts.close()
    // Workers stop reading first: every fd they use is closed below.
    await this.pool?.stop()
    this.pool = null
    for (const name of [...this.pods.keys()]) await this.removePod(name, false)
    for (const h of this.hostPorts.values()) { this.datapath.removePod(h.portId); h.tap.close() }
    this.hostPorts.clear()
    this.datapath.detachUnderlay()
    this.rx?.close()
    for (const r of this.rxWorkers) r.close()
    this.rxWorkers = []
    this.prio?.close()
    this.prio = null
    for (const t of this.tx) t.close()
    for (const t of this.gsoTx) t.close()
    this.rx = null
    this.tx = []
    this.gsoTx = []
    this.cpuLatency?.close()
    this.cpuLatency = null
    this.log.info('agent stopped')
  }
}

/** The TAP's name in the agent's namespace before it moves: stable per node and pod, 13 characters. */
export function tapNameFor(node: string, pod: string): string {
  let h = 0x811c9dc5
  for (const ch of `${node}/${pod}`) {
    h ^= ch.charCodeAt(0)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return `tap${h.toString(16).padStart(8, '0')}${pod.length.toString(36).slice(-2).padStart(2, '0')}`
}

/** Sockets bound to source ports spread over [min, max]; a port in use is skipped. */
function openTxPool(addr: number, min: number, max: number, avoid: number, reusePort: boolean, rx: Batch): UdpPort[] {
  const pool: UdpPort[] = []
  const span = max - min + 1
  const want = Math.min(TX_POOL_SIZE, span)
  for (let k = 0; k < want; k++) {
    let port = min + Math.floor(((k + 0.5) * span) / want)
    for (let tries = 0; tries < 64; tries++, port = port >= max ? min : port + 1) {
      if (port === avoid) continue
      try {
        pool.push(UdpPort.open({ addr, port, reusePort, sndbuf: 8 << 20, noChecksum: true, rx }))
        break
      } catch (err) {
        if (!(err instanceof NativeError) || err.code !== 'EADDRINUSE') throw err
      }
    }
  }
  return pool
}

function closeQueues(q: PodQueues): void {
  q.prio?.close()
  for (const t of q.queues) t.close()
  q.tap.close()
}

function podKey(p: PodConfig): string {
  return JSON.stringify([p.network, p.netns, p.ifname, p.ip, p.mac, p.portSecurity])
}

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
import { Config, PodConfig } from './control/config'
import { Datapath, PodSpec } from './datapath/datapath'
import { TapPort } from './ports/tap'
import { UdpPort } from './ports/udp'
import { NativeError } from './ports/native'
import { setupPodInterface, configurePodInterface, linkKind } from './ports/netdev'
import { ipv4Format } from './wire/addr'
import { Logger } from './observe/log'
import { TapestryError } from './lib/errors'

/** Number of transmit sockets; a flow's hash picks one, and so its UDP source port. */
export const TX_POOL_SIZE = 4

interface PodState {
  cfg: PodConfig
  tap: TapPort
  portId: number
}

export class Agent {
  readonly datapath: Datapath
  private cfg: Config
  private rx: UdpPort | null = null
  private tx: UdpPort[] = []
  private gsoTx: UdpPort[] = []
  private readonly pods = new Map<string, PodState>()
  private sweepTimer: NodeJS.Timeout | null = null

  constructor(cfg: Config, readonly log: Logger) {
    this.cfg = cfg
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
    })
  }

  get config(): Config {
    return this.cfg
  }

  async start(): Promise<void> {
    const { node } = this.cfg
    const offloads = this.cfg.offloads
    this.rx = UdpPort.open({ addr: node.underlayAddr, port: node.vxlanPort, rcvbuf: 8 << 20, sndbuf: 8 << 20, noChecksum: true, gro: offloads })
    this.tx = openTxPool(node.underlayAddr, this.cfg.vxlan.srcPortMin, this.cfg.vxlan.srcPortMax, node.vxlanPort, offloads)
    // With offloads, each pool port has a twin socket with UDP checksums on for GSO sends.
    this.gsoTx = offloads ? this.tx.map((t) => UdpPort.open({ addr: node.underlayAddr, port: t.port, reusePort: true, sndbuf: 8 << 20, gso: true })) : []
    this.datapath.attachUnderlay(this.rx, this.tx, this.gsoTx.map((g) => (g.gsoEnabled ? g : null)))
    this.log.info({ underlay: `${node.underlayIP}:${node.vxlanPort}`, sourcePorts: this.datapath.sourcePorts(), offloads, udpGro: this.rx.gro, udpGso: this.gsoTx.some((g) => g.gsoEnabled) }, 'underlay socket open')
    for (const n of this.cfg.networks) this.datapath.addNetwork(n.vni, n.gatewayAddr ?? 0)
    for (const p of this.cfg.peerAddrs) this.addPeer(p)
    for (const p of this.cfg.pods) await this.addPod(p)
    this.sweepTimer = setInterval(() => this.datapath.sweep(), Math.max(100, Math.min(1000, this.cfg.fdb.ageSeconds * 250)))
    this.log.info({ pods: this.pods.size, peers: this.datapath.peers.size, networks: this.cfg.networks.length }, 'dataplane started')
  }

  /** Applies a new (validated) config: only the differences are changed. */
  async apply(next: Config): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
    const added: string[] = []
    const removed: string[] = []
    const changed: string[] = []
    for (const n of next.networks) if (!this.datapath.hasNetwork(n.vni)) this.datapath.addNetwork(n.vni, n.gatewayAddr ?? 0)
    const nextPods = new Map(next.pods.map((p) => [p.name, p]))
    for (const [name, st] of this.pods) {
      const np = nextPods.get(name)
      if (!np) { await this.removePod(name); removed.push(name) }
      else if (podKey(np) !== podKey(st.cfg)) { await this.removePod(name); changed.push(name) }
    }
    const nextPeers = new Set(next.peerAddrs)
    for (const p of this.datapath.peers.list()) if (!nextPeers.has(p)) this.removePeer(p)
    for (const p of next.peerAddrs) this.addPeer(p)
    for (const n of this.cfg.networks) if (!next.networks.some((m) => m.vni === n.vni)) this.datapath.removeNetwork(n.vni)
    this.datapath.arpSuppression = next.arpSuppression
    this.datapath.learnPeers = next.learnPeers
    this.cfg = next
    for (const p of next.pods) {
      if (!this.pods.has(p.name)) {
        await this.addPod(p)
        if (!changed.includes(p.name)) added.push(p.name)
      }
    }
    this.log.info({ added, removed, changed }, 'config applied')
    return { added, removed, changed }
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
    let tap: TapPort
    let reattached = false
    if (kind === 'tap') {
      tap = TapPort.open({ name: p.ifname, netnsPath: p.netnsPath, vnetHdr: true, offloads: this.cfg.offloads, persist: true })
      reattached = true
      try {
        await configurePodInterface(iface)
      } catch (err) {
        tap.close()
        throw err
      }
    } else if (kind !== null) {
      throw new TapestryError('TAPESTRY_POD_IFNAME_TAKEN', `pod ${p.name}: netns ${p.netns} already has an interface ${p.ifname} (a ${kind}, not a Tapestry TAP); choose another ifname or remove it`)
    } else {
      tap = TapPort.open({ name: iface.tapName, vnetHdr: true, offloads: this.cfg.offloads, persist: true })
      try {
        await setupPodInterface(iface)
      } catch (err) {
        tap.setPersist(false)
        tap.close()
        throw err
      }
    }
    const spec: PodSpec = {
      name: p.name, vni: p.vni, macHi: p.macHi, macLo: p.macLo, ip: p.ipAddr, mtu: this.cfg.node.podMtu,
      portSecurity: p.portSecurity, vnetHdr: tap.vnetHdr,
    }
    const port = this.datapath.addPod(spec, tap)
    this.pods.set(p.name, { cfg: p, tap, portId: port.id })
    this.log.info({ pod: p.name, netns: p.netns, ip: p.ip, mac: p.mac, vni: p.vni, port: port.id, reattached }, reattached ? 'pod re-attached' : 'pod added')
  }

  /**
   * Removes a pod from the datapath. `forGood` also deletes its TAP (pod deleted);
   * otherwise the persistent TAP stays in the pod for the next agent (stop).
   */
  async removePod(name: string, forGood = true): Promise<void> {
    const st = this.pods.get(name)
    if (!st) return
    this.datapath.removePod(st.portId)
    if (forGood) {
      try { st.tap.setPersist(false) } catch (err) { this.log.warn({ pod: name, err }, 'could not clear persist on the pod TAP') }
    }
    st.tap.close()
    this.pods.delete(name)
    this.log.info({ pod: name, deleted: forGood }, forGood ? 'pod removed' : 'pod detached')
  }

  podStates(): { name: string; port: number; tap: string; cfg: PodConfig }[] {
    return [...this.pods.values()].map((s) => ({ name: s.cfg.name, port: s.portId, tap: s.tap.name, cfg: s.cfg }))
  }

  private addPeer(addr: number): void {
    if (this.datapath.peers.indexOf(addr) >= 0) return
    this.datapath.addPeer(addr)
    this.log.info({ peer: ipv4Format(addr) }, 'peer added')
  }

  private removePeer(addr: number): void {
    this.datapath.removePeer(addr)
    this.log.info({ peer: ipv4Format(addr) }, 'peer removed')
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = null
    for (const name of [...this.pods.keys()]) await this.removePod(name, false)
    this.datapath.detachUnderlay()
    this.rx?.close()
    for (const t of this.tx) t.close()
    for (const t of this.gsoTx) t.close()
    this.rx = null
    this.tx = []
    this.gsoTx = []
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
function openTxPool(addr: number, min: number, max: number, avoid: number, reusePort: boolean): UdpPort[] {
  const pool: UdpPort[] = []
  const span = max - min + 1
  const want = Math.min(TX_POOL_SIZE, span)
  for (let k = 0; k < want; k++) {
    let port = min + Math.floor(((k + 0.5) * span) / want)
    for (let tries = 0; tries < 64; tries++, port = port >= max ? min : port + 1) {
      if (port === avoid) continue
      try {
        pool.push(UdpPort.open({ addr, port, reusePort, sndbuf: 8 << 20, noChecksum: true }))
        break
      } catch (err) {
        if (!(err instanceof NativeError) || err.code !== 'EADDRINUSE') throw err
      }
    }
  }
  return pool
}

function podKey(p: PodConfig): string {
  return JSON.stringify([p.network, p.netns, p.ifname, p.ip, p.mac, p.portSecurity])
}

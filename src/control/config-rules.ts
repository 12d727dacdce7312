/**
 * Rules that relate config values to each other, run after the schema has
 * checked each value on its own. They see the salvaged config (see
 * config-salvage.ts), so any value may be missing: a rule checks only what it
 * has, and a value the schema rejected is not reported again here.
 *
 * Networks are isolated L2 domains: the same pod IP may appear in two
 * networks, and subnets may overlap. MACs must be unique across all pods,
 * whatever their network, so a MAC names one local port.
 */
import { ipv4Format, prefixMask } from '../wire/addr'
import type { ConfigPath, PathProblem } from './config-issues'
import type { Salvaged } from './config-salvage'
import { NETNS_RUN_DIR, VXLAN_OVERHEAD_LEN } from './config-schema'
import type { RawConfig, RawNetwork } from './config-schema'
import { derivePodMac } from './pod-mac'
import { validateService, ServiceError, ServiceSpec } from '../service/service-model'

export interface RuleContext {
  /** Whether a pod's `netns` (a name under NETNS_RUN_DIR or an absolute path) exists. */
  netnsExists: (nameOrPath: string) => boolean
}

type Report = (path: ConfigPath, message: string) => void
type Rule = (cfg: Salvaged<RawConfig>, ctx: RuleContext, report: Report) => void

/** The absolute path of a pod's namespace file. */
export function netnsPath(nameOrPath: string): string {
  return nameOrPath.startsWith('/') ? nameOrPath : `${NETNS_RUN_DIR}/${nameOrPath}`
}

const podMtuFitsUnderlay: Rule = ({ node }, _ctx, report) => {
  if (node?.mtu === undefined || node.podMtu === undefined) return
  const max = node.mtu - VXLAN_OVERHEAD_LEN
  if (node.podMtu > max) {
    report(['node', 'podMtu'], `${node.podMtu} is more than mtu - ${VXLAN_OVERHEAD_LEN} = ${max} (VXLAN adds ${VXLAN_OVERHEAD_LEN} bytes to each packet)`)
  }
}

const srcPortRangeOrdered: Rule = ({ vxlan }, _ctx, report) => {
  if (vxlan?.srcPortMin === undefined || vxlan.srcPortMax === undefined) return
  if (vxlan.srcPortMin > vxlan.srcPortMax) {
    report(['vxlan', 'srcPortMin'], `${vxlan.srcPortMin} is more than vxlan.srcPortMax ${vxlan.srcPortMax}`)
  }
}

const networksDistinct: Rule = ({ networks = [] }, _ctx, report) => {
  const byName = new Map<string, number>()
  const byVni = new Map<number, number>()
  networks.forEach((n, i) => {
    if (n?.name !== undefined) {
      const first = byName.get(n.name)
      if (first === undefined) byName.set(n.name, i)
      else report(['networks', i, 'name'], `"${n.name}" is already used by networks[${first}]`)
    }
    if (n?.vni !== undefined) {
      const first = byVni.get(n.vni)
      if (first === undefined) byVni.set(n.vni, i)
      else report(['networks', i, 'vni'], `${n.vni} is already used by networks[${first}]`)
    }
  })
}

const gatewayInSubnet: Rule = ({ networks = [] }, _ctx, report) => {
  networks.forEach((n, i) => {
    if (!n?.gateway || !n.subnet) return
    const misfit = hostMisfit(n.gateway.addr, n.subnet.addr, n.subnet.prefix)
    if (misfit) report(['networks', i, 'gateway'], `${n.gateway.text} ${MISFIT_PHRASE[misfit]} the subnet ${n.subnet.text}`)
  })
}

const podRangeInSubnet: Rule = ({ networks = [] }, _ctx, report) => {
  networks.forEach((n, i) => {
    if (!n?.podRange || !n.subnet) return
    const inside = n.podRange.prefix >= n.subnet.prefix &&
      ((n.podRange.addr & prefixMask(n.subnet.prefix)) >>> 0) === n.subnet.addr
    if (!inside) report(['networks', i, 'podRange'], `${n.podRange.text} is not inside the subnet ${n.subnet.text}`)
  })
}

const hostIpValid: Rule = ({ networks = [], pods = [] }, _ctx, report) => {
  networks.forEach((n, i) => {
    if (!n?.hostIP || !n.subnet) return
    const misfit = hostMisfit(n.hostIP.addr, n.subnet.addr, n.subnet.prefix)
    if (misfit) report(['networks', i, 'hostIP'], `${n.hostIP.text} ${MISFIT_PHRASE[misfit]} the subnet ${n.subnet.text}`)
    else if (n.gateway && n.gateway.addr === n.hostIP.addr) report(['networks', i, 'hostIP'], `${n.hostIP.text} is the gateway: give the host its own address`)
    pods.forEach((p, j) => {
      if (p && p.network === n.name && p.ip && p.ip.addr === n.hostIP!.addr) report(['pods', j, 'ip'], `${p.ip.text} is network ${n.name}'s hostIP`)
    })
  })
}

/** Each service passes the service layer's validator; VIP ports are not shared. */
const servicesValid: Rule = (cfg, _ctx, report) => {
  const list = (cfg as { services?: unknown[] }).services
  if (!Array.isArray(list)) return
  const seen = new Map<string, number>()
  list.forEach((spec, i) => {
    try {
      const v = validateService(spec as ServiceSpec)
      const first = seen.get(v.key)
      if (first !== undefined) report(['services', i, 'name'], `${v.key} is already defined by services[${first}]`)
      else seen.set(v.key, i)
    } catch (err) {
      if (err instanceof ServiceError) for (const issue of err.issues) report(['services', i], issue)
      else throw err
    }
  })
}

/** Why an address cannot be a host of a subnet: outside it, or its network or broadcast address. */
type HostMisfit = 'outside' | 'network' | 'broadcast'

const MISFIT_PHRASE: Record<HostMisfit, string> = {
  outside: 'is outside',
  network: 'is the network address of',
  broadcast: 'is the broadcast address of',
}

function hostMisfit(addr: number, subnetAddr: number, prefix: number): HostMisfit | null {
  const mask = prefixMask(prefix)
  if (((addr & mask) >>> 0) !== subnetAddr) return 'outside'
  if (addr === subnetAddr) return 'network'
  if (addr === (subnetAddr | ~mask) >>> 0) return 'broadcast'
  return null
}

const peersDistinct: Rule = ({ node, peers = [] }, _ctx, report) => {
  const seen = new Map<number, number>()
  peers.forEach((p, i) => {
    if (!p) return
    if (node?.underlayIP && p.addr === node.underlayIP.addr) {
      report(['peers', i], `${p.text} is this node's node.underlayIP; a node must not list itself as a peer`)
      return
    }
    const first = seen.get(p.addr)
    if (first === undefined) seen.set(p.addr, i)
    else report(['peers', i], `${p.text} is already listed as peers[${first}]`)
  })
}

type SalvagedNetwork = Salvaged<RawNetwork>

const podsValid: Rule = ({ networks, pods = [] }, ctx, report) => {
  // The first network of each name; a duplicate name is reported by networksDistinct.
  const netByName = new Map<string, { index: number; net: SalvagedNetwork }>()
  networks?.forEach((net, index) => {
    if (net?.name !== undefined && !netByName.has(net.name)) netByName.set(net.name, { index, net })
  })
  const known = [...netByName.keys()].join(', ') || 'none'
  const byName = new Map<string, number>()
  const byIp = new Map<string, number>() // `${network index}/${addr}`
  const byMac = new Map<string, number>() // `${hi}/${lo}`
  const byIfname = new Map<string, number>() // `${netns path}\0${ifname}`
  const netnsFound = new Map<string, boolean>()

  pods.forEach((pod, i) => {
    if (!pod) return
    let nameTaken = false
    if (pod.name !== undefined) {
      const first = byName.get(pod.name)
      if (first === undefined) byName.set(pod.name, i)
      else report(['pods', i, 'name'], `"${pod.name}" is already used by pods[${first}]`)
      nameTaken = first !== undefined
    }

    const found = pod.network === undefined ? undefined : netByName.get(pod.network)
    // If `networks` itself is broken, no network is known and the schema has said so.
    if (pod.network !== undefined && !found && networks) {
      report(['pods', i, 'network'], `unknown network "${pod.network}" (known: ${known})`)
    }

    const subnet = found?.net.subnet
    if (pod.ip && found && subnet) {
      const { net, index } = found
      const ip = pod.ip
      const where = `network ${net.name}'s subnet ${subnet.text}`
      const misfit = hostMisfit(ip.addr, subnet.addr, subnet.prefix)
      if (misfit) report(['pods', i, 'ip'], `${ip.text} ${MISFIT_PHRASE[misfit]} ${where}`)
      else if (ip.prefix < subnet.prefix) {
        report(['pods', i, 'ip'], `${ip.text} has a shorter prefix than ${where} (use /${subnet.prefix})`)
      } else if (net.gateway && ip.addr === net.gateway.addr) {
        report(['pods', i, 'ip'], `${ip.text} is network ${net.name}'s gateway`)
      } else {
        const key = `${index}/${ip.addr}`
        const first = byIp.get(key)
        if (first === undefined) byIp.set(key, i)
        else report(['pods', i, 'ip'], `${ipv4Format(ip.addr)} is already used by pods[${first}] in network ${net.name}`)
      }
    }

    // A pod without `mac` gets one derived from its name; it must not collide either.
    // A repeated name would derive a repeated MAC: that is one problem, reported above.
    const mac = pod.mac ?? (pod.name !== undefined && !nameTaken ? derivePodMac(pod.name) : undefined)
    if (mac) {
      const key = `${mac.hi}/${mac.lo}`
      const first = byMac.get(key)
      if (first === undefined) byMac.set(key, i)
      else if (pod.mac) report(['pods', i, 'mac'], `${pod.mac.text} is already used by pods[${first}]`)
      else report(['pods', i, 'mac'], `the MAC derived from name "${pod.name}" is already used by pods[${first}]; set mac explicitly`)
    }

    if (pod.netns !== undefined) {
      let exists = netnsFound.get(pod.netns)
      if (exists === undefined) {
        exists = ctx.netnsExists(pod.netns)
        netnsFound.set(pod.netns, exists)
      }
      if (!exists) {
        report(['pods', i, 'netns'], pod.netns.startsWith('/')
          ? `network namespace file ${pod.netns} does not exist`
          : `network namespace "${pod.netns}" does not exist (looked in ${NETNS_RUN_DIR})`)
      }
      if (pod.ifname !== undefined) {
        const key = `${netnsPath(pod.netns)}\0${pod.ifname}`
        const first = byIfname.get(key)
        if (first === undefined) byIfname.set(key, i)
        else report(['pods', i, 'ifname'], `${pod.ifname} is already used in netns ${pod.netns} by pods[${first}]`)
      }
    }
  })
}

/**
 * Cluster mode leases each node a block of every network's subnet: the block
 * must be smaller than the subnet, or one node would take it all.
 */
const clusterBlocksFit: Rule = ({ cluster, networks = [] }, _ctx, report) => {
  if (!cluster) return
  if (cluster.blockPrefix !== undefined) {
    networks.forEach((n) => {
      if (!n?.subnet || n.name === undefined) return
      if (cluster.blockPrefix! <= n.subnet.prefix) {
        report(['cluster', 'blockPrefix'], `/${cluster.blockPrefix} blocks do not split network ${n.name}'s subnet ${n.subnet.text}: use a prefix longer than /${n.subnet.prefix}`)
      }
    })
  }
  const seen = new Map<string, number>()
  cluster.etcd?.forEach((e, i) => {
    if (e === undefined) return
    const first = seen.get(e)
    if (first === undefined) seen.set(e, i)
    else report(['cluster', 'etcd', i], `${e} is already listed as cluster.etcd[${first}]`)
  })
}

/** Every rule, in the order its problems are listed. A new section's rules go here. */
const RULES: Rule[] = [servicesValid, hostIpValid, podMtuFitsUnderlay, srcPortRangeOrdered, networksDistinct, gatewayInSubnet, podRangeInSubnet, peersDistinct, clusterBlocksFit, podsValid]

export function checkRules(cfg: Salvaged<RawConfig>, ctx: RuleContext): PathProblem[] {
  const problems: PathProblem[] = []
  const report: Report = (path, message) => { problems.push({ path, message }) }
  for (const rule of RULES) rule(cfg, ctx, report)
  return problems
}

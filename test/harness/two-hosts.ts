/**
 * The set-up most e2e tests of two hosts share: a Lab torn down after the
 * test, a Cluster with hosts ha (underlay .1) and hb (.2), the 'blue' network
 * (VNI 42, 10.244.0.0/16, gateway 10.244.0.1), and agents whose pods are
 * given as {name, ip, mac}.
 *
 *   const h = twoHosts(t)                     // lab, cluster, hosts; no agent yet
 *   const { a1, b1 } = await h.start({ a: [{ name: 'a1', ip, mac }], b: [...], extra: { fdb } })
 *
 * Anything a test needs before the agents start (another host on the
 * underlay, a kernel VXLAN device on hb) goes between the two calls.
 */
import { Lab } from './lab'
import { Cluster, Host, hostConfig } from './overlay'
import { apiSocket } from './fdb'

export const VNI = 42
export const BLUE = { name: 'blue', vni: VNI, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }

/** A pod as the tests use it: its namespace, address and MAC. */
export interface PodDef { name: string; ns: string; ip: string; mac: string }

/** A pod to create: `config` is added to its entry in the agent's config (e.g. { portSecurity: false }). */
export interface PodSpec { name: string; ip: string; mac: string; config?: Record<string, unknown> }

export interface StartOptions {
  /** The pods of ha's agent (which always starts). */
  a: PodSpec[]
  /** The pods of hb's agent; without it hb runs no agent. */
  b?: PodSpec[]
  /** Config sections for both agents besides `api` (e.g. { fdb }, { storm }, { node: { vxlanPort } }). */
  extra?: Record<string, unknown>
}

export interface TwoHosts {
  lab: Lab
  c: Cluster
  a: Host
  b: Host
  nets: (typeof BLUE)[]
  /** The agents' API sockets. */
  sockA: string
  sockB: string
  /**
   * Creates the pods' namespaces, then starts ha's agent and (with `b`) hb's,
   * each peering with the other only (hosts added to the cluster meanwhile
   * are not peers). Resolves with the pods by name.
   */
  start(o: StartOptions): Promise<Record<string, PodDef>>
}

/** A Lab (cleaned up after the test), a Cluster and its hosts ha and hb. */
export function twoHosts(t: { after: (fn: () => Promise<void>) => void }): TwoHosts {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const b = c.addHost('hb', 2)
  const nets = [BLUE]
  const sockA = apiSocket(c.dir, a.name)
  const sockB = apiSocket(c.dir, b.name)
  const podConfig = (d: PodDef, extra: Record<string, unknown> = {}) =>
    ({ name: d.name, network: BLUE.name, netns: d.ns, ip: `${d.ip}/16`, mac: d.mac, ...extra })
  return {
    lab, c, a, b, nets, sockA, sockB,
    async start(o: StartOptions): Promise<Record<string, PodDef>> {
      const pods: Record<string, PodDef> = {}
      const make = (specs: PodSpec[]) => specs.map((s) => {
        const d = { name: s.name, ns: c.podNs(s.name), ip: s.ip, mac: s.mac }
        pods[s.name] = d
        return podConfig(d, s.config)
      })
      const podsA = make(o.a)
      const podsB = o.b && make(o.b)
      await c.startAgent(a, hostConfig(a, [a, b], nets, podsA, { ...o.extra, api: { socket: sockA } }))
      if (podsB) await c.startAgent(b, hostConfig(b, [a, b], nets, podsB, { ...o.extra, api: { socket: sockB } }))
      return pods
    },
  }
}

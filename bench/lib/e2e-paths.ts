/**
 * The pod-to-pod paths of the end-to-end benchmark, all built in one
 * Lab (namespaces named tpy<run id><tag>, removed by Lab.cleanup):
 *
 *   kernel    pod ka eth0 =veth= br0 + vxlan vx0 (id 42, dstport 4789)  [host kha]
 *                                   | underlay 192.168.251.0/24, bridge in ns kul
 *             pod kb eth0 =veth= br0 + vxlan vx0                         [host khb]
 *   tapestry  pod ta eth0 (TAP) - agent [host ha] - VXLAN over 192.168.250.0/24 (ns ul) - agent [host hb] - pod tb eth0 (TAP)
 *   ovs       pod oa eth0 =veth= OVS userspace datapath [host oha] - VXLAN over 192.168.253.0/24 (ns oul) - [host ohb] ... pod ob eth0
 *             (built in ovs-path.ts)
 *   veth      ns vpa eth0 ===== veth pair ===== ns vpb eth0              (no overlay: the ceiling)
 *
 * Pods have MTU 1450 on every path: Tapestry's default (underlay 1500 - 50
 * bytes of VXLAN), the kernel vxlan device's own default on a 1500 underlay,
 * and set explicitly on the veth pair so each path carries the same segment
 * sizes. Each host's underlay is a veth into a bridge namespace, as in the
 * e2e tests (test/harness/overlay.ts).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { execFileSync } from 'node:child_process'
import { Lab, Proc, parsePing } from '../../test/harness/lab'
import { Cluster, hostConfig } from '../../test/harness/overlay'
import { Endpoints, RR_PORT } from './e2e-loads'
import { buildOvs } from './ovs-path'

export type PathId = 'kernel' | 'tapestry' | 'tinc' | 'ovs' | 'veth'

export interface BenchPath {
  id: PathId
  /** Short name for tables. */
  label: string
  description: string
  ep: Endpoints
  /**
   * Processes that forward the traffic in userspace (the Tapestry agents);
   * their CPU time is the dataplane's. Empty for the kernel paths.
   */
  dataplanePids: number[]
  /**
   * A service (virtual IP) in front of the server pod's request/response
   * port: the "requests/s via service VIP" figure is measured only when it is
   * set, with the client connecting to serviceVip:servicePort. Set on the
   * Tapestry path; the kernel and veth paths have no service path.
   */
  serviceVip?: string
  /** Port of the service at serviceVip (default: the request/response port itself). */
  servicePort?: number
  /** What was checked while building it (MTUs, pids, device details); saved in the JSON. */
  details: Record<string, unknown>
}

export const PATH_ORDER: PathId[] = ['kernel', 'tapestry', 'tinc', 'ovs', 'veth']

/** Whether tinc (the userspace VPN, switch mode) is installed for the side-by-side run. */
export function tincAvailable(): boolean {
  try {
    execFileSync('tincd', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
const VNI = 42
const VXLAN_PORT = 4789
export const POD_MTU = 1450
/** The service the Tapestry path puts in front of the server pod: VIP:80 -> pod:RR_PORT. */
export const SERVICE_VIP = '10.96.0.10'
export const SERVICE_PORT = 80

function linkMtu(lab: Lab, ns: string, dev: string): number {
  const m = / mtu (\d+)/.exec(lab.exec(ns, ['ip', '-o', 'link', 'show', 'dev', dev]))
  if (!m) throw new Error(`no MTU for ${dev} in ${ns}`)
  return Number(m[1])
}

export function expectMtu(lab: Lab, ns: string, dev: string, what: string): number {
  const mtu = linkMtu(lab, ns, dev)
  if (mtu !== POD_MTU) throw new Error(`${what}: ${dev} has MTU ${mtu}, expected ${POD_MTU}`)
  return mtu
}

/** Pings both ways until answered: checks the path works and fills ARP caches and FDBs before anything is measured. */
export async function warmUp(lab: Lab, a: { ns: string; ip: string }, b: { ns: string; ip: string }, what: string): Promise<void> {
  for (const [from, to] of [[a, b], [b, a]]) {
    const r = await lab.execAsync(from.ns, ['ping', '-n', '-c', '3', '-i', '0.05', '-W', '2', to.ip], 15_000)
    const s = parsePing(r.stdout)
    if (s.received === 0) throw new Error(`${what}: ${from.ip} cannot reach ${to.ip}: ${r.stdout}${r.stderr}`)
  }
}

// ---- kernel: Linux bridge + vxlan device per host

export async function buildKernel(lab: Lab): Promise<BenchPath> {
  const ulNs = lab.netns('kul')
  lab.bridge(ulNs, 'br0')
  const hosts = [
    { tag: 'kha', ip: '192.168.251.1', pod: { tag: 'ka', ip: '10.245.1.2' } },
    { tag: 'khb', ip: '192.168.251.2', pod: { tag: 'kb', ip: '10.245.2.2' } },
  ].map((h) => ({ ...h, ns: lab.netns(h.tag), podNs: lab.netns(h.pod.tag) }))
  for (const h of hosts) {
    lab.veth(h.ns, 'ul0', ulNs, `p${h.tag}`, `${h.ip}/24`)
    lab.exec(ulNs, ['ip', 'link', 'set', `p${h.tag}`, 'master', 'br0'])
  }
  let vxlanDetails = ''
  for (const [i, h] of hosts.entries()) {
    const other = hosts[1 - i]
    lab.exec(h.ns, ['ip', 'link', 'add', 'vx0', 'type', 'vxlan', 'id', String(VNI), 'dstport', String(VXLAN_PORT),
      'local', h.ip, 'remote', other.ip, 'dev', 'ul0'])
    lab.bridge(h.ns, 'br0')
    lab.exec(h.ns, ['ip', 'link', 'set', 'vx0', 'master', 'br0', 'up'])
    lab.veth(h.podNs, 'eth0', h.ns, 'vpod', `${h.pod.ip}/16`, undefined, POD_MTU)
    lab.exec(h.ns, ['ip', 'link', 'set', 'vpod', 'master', 'br0'])
    expectMtu(lab, h.podNs, 'eth0', 'kernel path')
    expectMtu(lab, h.ns, 'vx0', 'kernel path') // 1500 underlay - 50
    if (i === 0) vxlanDetails = lab.exec(h.ns, ['ip', '-d', '-o', 'link', 'show', 'dev', 'vx0']).trim()
  }
  const [a, b] = hosts
  await warmUp(lab, { ns: a.podNs, ip: a.pod.ip }, { ns: b.podNs, ip: b.pod.ip }, 'kernel path')
  return {
    id: 'kernel',
    label: 'kernel vxlan',
    description: `Linux bridge + kernel vxlan device (id ${VNI}, dstport ${VXLAN_PORT}, remote = the other host, local = own underlay IP) + veth to the pod, on each of 2 hosts`,
    ep: { clientNs: a.podNs, serverNs: b.podNs, serverIp: b.pod.ip },
    dataplanePids: [],
    details: { podMtu: POD_MTU, clientIp: a.pod.ip, serverIp: b.pod.ip, vxlanDevice: vxlanDetails },
  }
}

// ---- Tapestry: one agent per host, pods created by the agents

/** The pid to read CPU time from: `ip netns exec` execs its command, so it should be the agent's own. */
function agentPid(p: Proc): { pid: number; check: string } {
  const pid = p.child.pid
  if (!pid) throw new Error('agent has no pid')
  const cmdline = (q: number): string[] => fs.readFileSync(`/proc/${q}/cmdline`, 'utf8').split('\0').filter(Boolean)
  const argv = cmdline(pid)
  const isAgent = (a: string[]): boolean => a.some((x) => x.endsWith('tapestry')) && a.includes('agent')
  if (isAgent(argv) && !/(^|\/)ip$/.test(argv[0])) {
    return { pid, check: `pid ${pid} is the agent itself (ip netns exec replaced itself): ${argv.slice(0, 3).join(' ')} ...` }
  }
  // Should `ip` ever fork instead of exec, the agent is its child.
  const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  const child = children.find((c) => isAgent(cmdline(c)))
  if (!child) throw new Error(`cannot find the agent process under pid ${pid} (${argv.join(' ')})`)
  return { pid: child, check: `pid ${pid} is ${argv[0]}; the agent is its child ${child}` }
}

/** `extra`: config keys merged into both agents' configs (bench/latency.ts varies vxlan.rcvbufBytes and busyPollUs). */
export async function buildTapestry(lab: Lab, extra: Record<string, unknown> = {}): Promise<BenchPath> {
  const c = new Cluster(lab)
  const ha = c.addHost('ha', 1)
  const hb = c.addHost('hb', 2)
  const nets = [{ name: 'blue', vni: VNI, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  const pa = { ns: c.podNs('ta'), ip: '10.244.1.2' }
  const pb = { ns: c.podNs('tb'), ip: '10.244.2.2' }
  // One TCP service, VIP:80 -> the server pod's request/response port, on both agents (as every
  // node has every service). The client's agent is the one that balances and NATs (service-path.ts).
  const services = [{
    name: 'rr', namespace: 'default', clusterIP: SERVICE_VIP,
    ports: [{ name: 'rr', port: SERVICE_PORT, targetPort: RR_PORT, protocol: 'TCP' }],
    endpoints: [{ ip: pb.ip }],
  }]
  // Default config otherwise (offloads on, pod MTU = 1500 - 50); log level info is what tells us the agent is ready.
  const agA = await c.startAgent(ha, hostConfig(ha, c.hosts, nets, [{ name: 'ta', network: 'blue', netns: pa.ns, ip: `${pa.ip}/16` }], { services, ...extra }))
  const agB = await c.startAgent(hb, hostConfig(hb, c.hosts, nets, [{ name: 'tb', network: 'blue', netns: pb.ns, ip: `${pb.ip}/16` }], { services, ...extra }))
  expectMtu(lab, pa.ns, 'eth0', 'tapestry path')
  expectMtu(lab, pb.ns, 'eth0', 'tapestry path')
  const pids = [agentPid(agA), agentPid(agB)]
  await warmUp(lab, pa, pb, 'tapestry path')
  return {
    id: 'tapestry',
    label: 'Tapestry',
    description: `one Tapestry agent per host (default config: offloads on, pod MTU 1450${Object.keys(extra).length > 0 ? `; with ${JSON.stringify(extra)}` : ''}), pods are TAPs the agents created, VXLAN id 42 on port 4789; service ${SERVICE_VIP}:${SERVICE_PORT} -> ${pb.ip}:${RR_PORT} (TCP, Maglev)`,
    ep: { clientNs: pa.ns, serverNs: pb.ns, serverIp: pb.ip },
    dataplanePids: pids.map((p) => p.pid),
    serviceVip: SERVICE_VIP,
    servicePort: SERVICE_PORT,
    details: { podMtu: POD_MTU, clientIp: pa.ip, serverIp: pb.ip, agentPids: pids, services },
  }
}

// ---- tinc: another userspace overlay, for comparison

/**
 * tinc 1.0 in switch mode (an Ethernet switch over UDP, like Tapestry) with
 * encryption and authentication off (Cipher/Digest none, Compression 0), one
 * tincd per host whose tap device is bridged with the pod's veth.
 */
export async function buildTinc(lab: Lab): Promise<BenchPath> {
  const ulNs = lab.netns('nul')
  lab.bridge(ulNs, 'br0')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tapestry-tinc-'))
  lab.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }))
  const hosts = [
    { tag: 'nha', name: 'nha', ip: '192.168.252.1', pod: { tag: 'na', ip: '10.247.1.2' } },
    { tag: 'nhb', name: 'nhb', ip: '192.168.252.2', pod: { tag: 'nb', ip: '10.247.2.2' } },
  ].map((h) => ({ ...h, ns: lab.netns(h.tag), podNs: lab.netns(h.pod.tag), conf: path.join(dir, h.tag) }))
  for (const [i, h] of hosts.entries()) {
    lab.veth(h.ns, 'ul0', ulNs, `p${h.tag}`, `${h.ip}/24`)
    lab.exec(ulNs, ['ip', 'link', 'set', `p${h.tag}`, 'master', 'br0'])
    fs.mkdirSync(path.join(h.conf, 'hosts'), { recursive: true })
    fs.writeFileSync(path.join(h.conf, 'tinc.conf'), [
      `Name = ${h.name}`, 'Mode = switch', 'DeviceType = tap', 'Interface = tnc0', 'AddressFamily = ipv4',
      `BindToAddress = ${h.ip}`, ...(i === 0 ? [`ConnectTo = ${hosts[1].name}`] : []), '',
    ].join('\n'))
    fs.writeFileSync(path.join(h.conf, 'hosts', h.name), [`Address = ${h.ip}`, 'Port = 655', 'Cipher = none', 'Digest = none', 'Compression = 0', ''].join('\n'))
    execFileSync('tincd', ['-c', h.conf, '-K2048'], { input: '\n\n', stdio: ['pipe', 'ignore', 'ignore'] })
  }
  for (const h of hosts) for (const o of hosts) if (o !== h) fs.copyFileSync(path.join(o.conf, 'hosts', o.name), path.join(h.conf, 'hosts', o.name))
  const pids: number[] = []
  for (const h of hosts) {
    const p = lab.spawn(h.ns, ['tincd', '-c', h.conf, '-D', '--pidfile', path.join(h.conf, 'pid'), '--logfile', path.join(h.conf, 'log')])
    if (p.child.pid) pids.push(p.child.pid)
    const up = Date.now() + 10_000
    while (!lab.exec(h.ns, ['ip', '-o', 'link']).includes('tnc0')) {
      if (p.child.exitCode !== null || Date.now() > up) throw new Error(`tinc path: tincd in ${h.ns} did not create tnc0 (exit ${p.child.exitCode}): ${p.stderr()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    lab.bridge(h.ns, 'br0')
    lab.exec(h.ns, ['ip', 'link', 'set', 'tnc0', 'master', 'br0', 'up'])
    lab.veth(h.podNs, 'eth0', h.ns, 'vpod', `${h.pod.ip}/16`, undefined, POD_MTU)
    lab.exec(h.ns, ['ip', 'link', 'set', 'vpod', 'master', 'br0'])
    expectMtu(lab, h.podNs, 'eth0', 'tinc path')
  }
  const [a, b] = hosts
  // The meta connection takes a moment: ping until it answers.
  const until = Date.now() + 20_000
  for (;;) {
    try {
      await warmUp(lab, { ns: a.podNs, ip: a.pod.ip }, { ns: b.podNs, ip: b.pod.ip }, 'tinc path')
      break
    } catch (err) {
      if (Date.now() > until) throw err
    }
  }
  return {
    id: 'tinc',
    label: 'tinc (switch, no crypto)',
    description: `tinc ${execFileSync('tincd', ['--version']).toString().split('\n')[0].trim()} in switch mode over UDP, Cipher/Digest none, Compression 0: one tincd per host, its tap bridged with the pod's veth (MTU 1450)`,
    ep: { clientNs: a.podNs, serverNs: b.podNs, serverIp: b.pod.ip },
    dataplanePids: pids,
    details: { podMtu: POD_MTU, clientIp: a.pod.ip, serverIp: b.pod.ip },
  }
}

// ---- veth: the ceiling

export async function buildVeth(lab: Lab): Promise<BenchPath> {
  const a = { ns: lab.netns('vpa'), ip: '10.246.0.1' }
  const b = { ns: lab.netns('vpb'), ip: '10.246.0.2' }
  lab.veth(a.ns, 'eth0', b.ns, 'eth0', `${a.ip}/24`, `${b.ip}/24`, POD_MTU)
  expectMtu(lab, a.ns, 'eth0', 'veth path')
  await warmUp(lab, a, b, 'veth path')
  return {
    id: 'veth',
    label: 'veth (ceiling)',
    description: 'two namespaces joined by one veth pair (MTU 1450): no bridge, no overlay',
    ep: { clientNs: a.ns, serverNs: b.ns, serverIp: b.ip },
    dataplanePids: [],
    details: { podMtu: POD_MTU, clientIp: a.ip, serverIp: b.ip },
  }
}

export const BUILDERS: Record<PathId, (lab: Lab) => Promise<BenchPath>> = {
  kernel: buildKernel,
  tapestry: buildTapestry,
  tinc: buildTinc,
  // Called through a closure: ovs-path.ts imports this module's helpers, so its export may not exist yet when this object is built.
  ovs: (lab) => buildOvs(lab),
  veth: buildVeth,
}

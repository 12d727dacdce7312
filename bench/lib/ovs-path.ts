/**
 * Open vSwitch's userspace datapath (datapath_type=netdev, no DPDK, no kernel
 * module) as one more pod-to-pod path of the end-to-end benchmark:
 *
 *   ovs  pod oa eth0 =veth= vpod ─ br-int ─ vx0 (vxlan, key 42, dst_port 4789, remote_ip = the other host)   [host oha]
 *                                  br-phy ─ ul0 (its internal port br-phy holds 192.168.253.1/24)
 *                                    | underlay 192.168.253.0/24, bridge in ns oul
 *        pod ob eth0 =veth= vpod ─ br-int ─ vx0 ... br-phy ─ ul0 (192.168.253.2/24)                        [host ohb]
 *
 * Each host namespace runs its own ovsdb-server and ovs-vswitchd, started
 * with Lab.spawn (so Lab.cleanup kills them) and pointed at a directory of
 * their own under a mkdtemp directory: the database, the sockets (the
 * database's punix: socket, each daemon's unixctl socket, the bridges'
 * management sockets), pidfiles and logs. OVS_RUNDIR, OVS_DBDIR, OVS_LOGDIR
 * and OVS_SYSCONFDIR point there too, for every OVS command, so nothing
 * reads or writes /var/run/openvswitch and a system-wide Open vSwitch, if
 * any, is neither used nor touched. ovs-vswitchd runs with --disable-system:
 * only the userspace datapath (dpif-netdev) is registered, the kernel one
 * (dpif-netlink) is never opened.
 *
 * Userspace tunnelling (OVS documentation: "Connecting VMs Using Tunnels
 * (Userspace)"): the VXLAN port lives on br-int; its encapsulated packets go
 * out through a second netdev bridge, br-phy, that holds the underlay port,
 * and the host's underlay address sits on br-phy's internal port. OVS's own
 * tunnel route table learns 192.168.253.0/24 dev br-phy from the kernel's
 * routes in the namespace (checked with ovs/route/show) and its neighbour
 * table learns the other host's MAC by snooping the ARP reply to a ping of
 * its underlay address (checked with tnl/neigh/show). Received datagrams to
 * the local underlay address and UDP port 4789 are decapsulated (tnl_pop) on
 * br-phy and switched on br-int.
 *
 * The ports on Linux devices (vpod, ul0) are read and written through
 * AF_PACKET sockets, which carry no checksum offload information in this
 * configuration (userspace-tso-enable is off, its default): a TCP segment
 * the pod's stack left for the device to checksum would cross the tunnel
 * with a wrong checksum. So each pod's eth0 has tx checksumming (and with it
 * TSO) off, the usual setting for pods behind the userspace datapath; the
 * pods' stacks then checksum and segment in software.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { execFileSync } from 'node:child_process'
import { Lab, Proc, waitFor } from '../../test/harness/lab'
import { BenchPath, expectMtu, POD_MTU, warmUp } from './e2e-paths'

const VNI = 42
const VXLAN_PORT = 4789
const UNDERLAY_MTU = 1500
const BINARIES = ['ovsdb-tool', 'ovsdb-server', 'ovs-vswitchd', 'ovs-vsctl', 'ovs-appctl']

/** Whether Open vSwitch (the daemons and their command-line tools) is installed for the side-by-side run. */
export function ovsAvailable(): boolean {
  try {
    for (const b of BINARIES) execFileSync(b, ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

interface OvsHost {
  tag: string
  ip: string
  pod: { tag: string; ip: string }
  ns: string
  podNs: string
  /** This host's own run/db/log/sysconf directory. */
  dir: string
}

function files(h: OvsHost): { db: string; dbSock: string; dbCtl: string; vsCtl: string } {
  return {
    db: path.join(h.dir, 'conf.db'),
    dbSock: path.join(h.dir, 'db.sock'),
    dbCtl: path.join(h.dir, 'ovsdb-server.ctl'),
    vsCtl: path.join(h.dir, 'ovs-vswitchd.ctl'),
  }
}

/** The OVS_* variables that keep every OVS program of this host inside its directory. */
function ovsEnv(h: OvsHost): Record<string, string> {
  return { OVS_RUNDIR: h.dir, OVS_DBDIR: h.dir, OVS_LOGDIR: h.dir, OVS_SYSCONFDIR: h.dir }
}

/** Runs an OVS command-line tool in the host's namespace with the host's environment. */
function ovs(lab: Lab, h: OvsHost, cmd: string, args: string[]): string {
  return lab.exec(h.ns, ['env', ...Object.entries(ovsEnv(h)).map(([k, v]) => `${k}=${v}`), cmd, ...args])
}

function vsctl(lab: Lab, h: OvsHost, args: string[]): string {
  // --timeout bounds the wait for ovs-vswitchd to apply a change (ovs-vsctl waits for it by default).
  return ovs(lab, h, 'ovs-vsctl', [`--db=unix:${files(h).dbSock}`, '--timeout=20', ...args])
}

function appctl(lab: Lab, h: OvsHost, args: string[]): string {
  return ovs(lab, h, 'ovs-appctl', ['-t', files(h).vsCtl, '--timeout=20', ...args])
}

function logTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-15).join('\n')
  } catch {
    return `(no ${path.basename(file)})`
  }
}

/** Starts one OVS daemon in the host's namespace, in the foreground (no --detach), so Lab owns and kills it. */
function daemon(lab: Lab, h: OvsHost, name: 'ovsdb-server' | 'ovs-vswitchd', args: string[]): Proc {
  return lab.spawn(h.ns, [name, ...args,
    `--pidfile=${path.join(h.dir, `${name}.pid`)}`, `--log-file=${path.join(h.dir, `${name}.log`)}`,
    '--no-chdir', '-vconsole:err', '-vsyslog:off'],
  { env: { ...process.env, ...ovsEnv(h) } })
}

/** Waits until a daemon has written its pidfile and opened its sockets; fails with its log if it exits first. */
async function started(h: OvsHost, name: string, p: Proc, sockets: string[]): Promise<void> {
  const pidfile = path.join(h.dir, `${name}.pid`)
  const until = Date.now() + 15_000
  while (!(fs.existsSync(pidfile) && sockets.every((s) => fs.existsSync(s)))) {
    const exited = p.child.exitCode !== null || p.child.signalCode !== null
    if (exited || Date.now() > until) {
      throw new Error(`ovs path: ${name} in ${h.ns} ${exited ? `exited (${p.child.exitCode ?? p.child.signalCode})` : 'did not start in 15 s'}: ${p.stderr()}\n${logTail(path.join(h.dir, `${name}.log`))}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * The pid to read CPU time from. `ip netns exec` execs its command, so the
 * spawned child is ovs-vswitchd itself; checked against the pidfile
 * ovs-vswitchd wrote and against /proc/<pid>/comm.
 */
function vswitchdPid(h: OvsHost, p: Proc): { pid: number; check: string } {
  const pid = p.child.pid
  if (!pid) throw new Error(`ovs path: ovs-vswitchd in ${h.ns} has no pid`)
  const fromFile = Number(fs.readFileSync(path.join(h.dir, 'ovs-vswitchd.pid'), 'utf8').trim())
  const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  if (fromFile !== pid || comm !== 'ovs-vswitchd') {
    throw new Error(`ovs path: the spawned pid ${pid} (${comm}) is not ovs-vswitchd's own (pidfile: ${fromFile})`)
  }
  return { pid, check: `pid ${pid} is ovs-vswitchd itself (its pidfile and /proc/${pid}/comm agree)` }
}

/** Interface name -> ofport and error column, from the host's database. */
function interfaces(lab: Lab, h: OvsHost): Map<string, { ofport: number; error: string }> {
  const out = vsctl(lab, h, ['--format=csv', '--data=bare', '--no-headings', '--columns=name,ofport,error', 'list', 'Interface'])
  const m = new Map<string, { ofport: number; error: string }>()
  for (const line of out.trim().split('\n').filter(Boolean)) {
    const [name, ofport, ...error] = line.split(',')
    m.set(name, { ofport: Number(ofport), error: error.join(',').replace(/^"|"$/g, '') })
  }
  return m
}

export async function buildOvs(lab: Lab): Promise<BenchPath> {
  const ulNs = lab.netns('oul')
  lab.bridge(ulNs, 'br0')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tapestry-ovs-'))
  lab.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }))
  const hosts: OvsHost[] = [
    { tag: 'oha', ip: '192.168.253.1', pod: { tag: 'oa', ip: '10.248.1.2' } },
    { tag: 'ohb', ip: '192.168.253.2', pod: { tag: 'ob', ip: '10.248.2.2' } },
  ].map((h) => ({ ...h, ns: lab.netns(h.tag), podNs: lab.netns(h.pod.tag), dir: path.join(dir, h.tag) }))

  // Devices first: the underlay veth (no address on ul0: the address goes on br-phy) and the pod's veth.
  for (const h of hosts) {
    fs.mkdirSync(h.dir)
    lab.veth(h.ns, 'ul0', ulNs, `p${h.tag}`)
    lab.exec(ulNs, ['ip', 'link', 'set', `p${h.tag}`, 'master', 'br0'])
    lab.veth(h.podNs, 'eth0', h.ns, 'vpod', `${h.pod.ip}/16`, undefined, POD_MTU)
    lab.exec(h.podNs, ['ethtool', '-K', 'eth0', 'tx', 'off'])
    const feat = lab.exec(h.podNs, ['ethtool', '-k', 'eth0'])
    if (!/^tx-checksumming: off/m.test(feat)) throw new Error(`ovs path: tx checksumming still on for eth0 in ${h.podNs}`)
    expectMtu(lab, h.podNs, 'eth0', 'ovs path')
  }

  // One ovsdb-server and one ovs-vswitchd per host, each with its own database and sockets.
  const vswitchd: Array<{ pid: number; check: string }> = []
  for (const h of hosts) {
    const f = files(h)
    ovs(lab, h, 'ovsdb-tool', ['create', f.db])
    const db = daemon(lab, h, 'ovsdb-server', [f.db, `--remote=punix:${f.dbSock}`, `--unixctl=${f.dbCtl}`])
    await started(h, 'ovsdb-server', db, [f.dbSock, f.dbCtl])
    vsctl(lab, h, ['--no-wait', 'init'])
    const vs = daemon(lab, h, 'ovs-vswitchd', [`unix:${f.dbSock}`, `--unixctl=${f.vsCtl}`, '--disable-system'])
    await started(h, 'ovs-vswitchd', vs, [f.vsCtl])
    vswitchd.push(vswitchdPid(h, vs))
  }

  for (const [i, h] of hosts.entries()) {
    const other = hosts[1 - i]
    vsctl(lab, h, ['add-br', 'br-phy', '--', 'set', 'Bridge', 'br-phy', 'datapath_type=netdev', '--', 'add-port', 'br-phy', 'ul0'])
    vsctl(lab, h, ['add-br', 'br-int', '--', 'set', 'Bridge', 'br-int', 'datapath_type=netdev',
      '--', 'add-port', 'br-int', 'vpod',
      '--', 'add-port', 'br-int', 'vx0', '--', 'set', 'Interface', 'vx0', 'type=vxlan',
      `options:remote_ip=${other.ip}`, `options:key=${VNI}`, `options:dst_port=${VXLAN_PORT}`])
    const ifs = interfaces(lab, h)
    for (const name of ['ul0', 'vpod', 'vx0', 'br-phy', 'br-int']) {
      const x = ifs.get(name)
      if (!x || !(x.ofport > 0) || x.error) throw new Error(`ovs path: port ${name} in ${h.ns} did not come up (ofport ${x?.ofport}, error ${x?.error || 'none'})\n${logTail(path.join(h.dir, 'ovs-vswitchd.log'))}`)
    }
    // The host's underlay address on br-phy's internal port (a tap device of ovs-vswitchd's).
    lab.exec(h.ns, ['ip', 'addr', 'add', `${h.ip}/24`, 'dev', 'br-phy'])
    lab.exec(h.ns, ['ip', 'link', 'set', 'br-phy', 'up'])
    for (const dev of ['ul0', 'br-phy']) {
      const m = / mtu (\d+)/.exec(lab.exec(h.ns, ['ip', '-o', 'link', 'show', 'dev', dev]))
      if (Number(m?.[1]) !== UNDERLAY_MTU) throw new Error(`ovs path: ${dev} in ${h.ns} has MTU ${m?.[1]}, expected ${UNDERLAY_MTU}`)
    }
  }

  // OVS's tunnel route to the other host, learnt from the namespace's kernel routes.
  const routes: string[] = []
  for (const h of hosts) {
    const want = `${h.ip.replace(/\.\d+$/, '.0')}/24 dev br-phy`
    routes.push(await waitFor(`ovs tunnel route ${want} in ${h.ns}`, () => {
      const out = appctl(lab, h, ['ovs/route/show'])
      return out.includes(want) ? out.split('\n').find((l) => l.includes(want))!.trim() : ''
    }, 10_000))
  }
  // The other host's MAC in OVS's tunnel neighbour table: snooped from the ARP reply to this ping.
  const neighbours: string[] = []
  for (const [i, h] of hosts.entries()) {
    const other = hosts[1 - i]
    neighbours.push(await waitFor(`ovs tunnel neighbour ${other.ip} in ${h.ns}`, async () => {
      await lab.execAsync(h.ns, ['ping', '-n', '-c', '1', '-W', '1', other.ip], 5_000)
      const line = appctl(lab, h, ['tnl/neigh/show']).split('\n').find((l) => l.startsWith(`${other.ip} `))
      return line ? line.replace(/\s+/g, ' ').trim() : ''
    }, 15_000))
  }

  const [a, b] = hosts
  // The first packets of a flow go through ovs-vswitchd's upcall path: ping until both ways answer.
  const until = Date.now() + 20_000
  for (;;) {
    try {
      await warmUp(lab, { ns: a.podNs, ip: a.pod.ip }, { ns: b.podNs, ip: b.pod.ip }, 'ovs path')
      break
    } catch (err) {
      if (Date.now() > until) throw err
    }
  }
  // Full-sized packets, don't fragment, both ways: a pod MTU of 1450 fits the tunnel end to end.
  for (const [from, to] of [[a, b], [b, a]]) {
    const r = await lab.execAsync(from.podNs, ['ping', '-n', '-M', 'do', '-s', String(POD_MTU - 28), '-c', '3', '-i', '0.05', '-W', '2', to.pod.ip], 15_000)
    if (!/ 3 received/.test(r.stdout)) throw new Error(`ovs path: ${POD_MTU}-byte packets from ${from.pod.ip} do not all reach ${to.pod.ip}: ${r.stdout}${r.stderr}`)
  }

  const version = execFileSync('ovs-vswitchd', ['--version']).toString().split('\n')[0].trim()
  const datapath = appctl(lab, a, ['dpif/show']).trim()
  if (!/netdev@ovs-netdev/.test(datapath)) throw new Error(`ovs path: the bridges are not on the userspace datapath: ${datapath}`)
  return {
    id: 'ovs',
    label: 'OVS userspace (netdev)',
    description: `${version}, userspace datapath (datapath_type=netdev, no DPDK), one ovsdb-server and ovs-vswitchd per host: `
      + `bridge br-int with the pod's veth and a vxlan port (key ${VNI}, dst_port ${VXLAN_PORT}, remote_ip = the other host), `
      + `bridge br-phy with the underlay veth and the host's underlay IP on its internal port (OVS's own tunnel route and ARP tables); `
      + `default flows (NORMAL switching); pods' eth0 MTU ${POD_MTU} with tx checksum offload off (the AF_PACKET ports carry no offload information)`,
    ep: { clientNs: a.podNs, serverNs: b.podNs, serverIp: b.pod.ip },
    dataplanePids: vswitchd.map((v) => v.pid),
    details: { podMtu: POD_MTU, underlayMtu: UNDERLAY_MTU, clientIp: a.pod.ip, serverIp: b.pod.ip, version, vswitchdPids: vswitchd, tunnelRoutes: routes, tunnelNeighbours: neighbours, datapath },
  }
}

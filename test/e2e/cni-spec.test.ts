/**
 * The CNI plugin, driven as a container runtime drives it: the installed
 * executable run with CNI_COMMAND and the other CNI_* variables and the network
 * config on stdin, against a real agent in a host namespace. Every command
 * (ADD, DEL, CHECK, VERSION, GC, STATUS), both result formats, idempotence,
 * the agent restarting or absent, delegated IPAM, and every error code the
 * plugin documents. Prints the ADD latency it measures (no assertion on it).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { Lab, parsePing, sh } from '../harness/lab'
import { Cluster, hostConfig, Host, TAPESTRY_BIN } from '../harness/overlay'

const nets = [
  { name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1', podRange: '10.244.1.0/24' },
  { name: 'red', vni: 43, subnet: '10.245.0.0/16', gateway: '10.245.0.1', podRange: '10.245.1.0/24' },
]

interface CniRun {
  code: number | null
  stdout: string
  stderr: string
  /** stdout parsed, or null when empty. */
  out: Record<string, any> | null
  ms: number
}

/** Runs the plugin once, as a runtime does: a small environment, the config on stdin. */
function runPlugin(plugin: string, env: Record<string, string | undefined>, stdin: string): Promise<CniRun> {
  return new Promise((resolve, reject) => {
    const clean: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' }
    for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v
    const t0 = process.hrtime.bigint()
    const child = spawn(plugin, [], { env: clean, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      let out: Record<string, any> | null = null
      if (stdout.trim() !== '') {
        try { out = JSON.parse(stdout) } catch { return reject(new Error(`plugin stdout is not JSON: ${stdout}\nstderr: ${stderr}`)) }
      }
      resolve({ code, stdout, stderr, out, ms })
    })
    child.stdin.on('error', () => undefined)
    child.stdin.end(stdin)
  })
}

function containerId(): string {
  return crypto.randomBytes(32).toString('hex')
}

function shortId(id: string): string {
  return id.slice(0, 18)
}

/** One request to the agent's API from this process. */
function apiCall(socketPath: string, method: string, urlPath: string, body?: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body)
    const req = http.request({ socketPath, method, path: urlPath, agent: false, headers: data ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => { text += c }).on('end', () => {
        if ((res.statusCode ?? 500) >= 400) reject(new Error(`${method} ${urlPath}: HTTP ${res.statusCode} ${text}`))
        else resolve(JSON.parse(text))
      })
    })
    req.on('error', reject)
    req.end(data)
  })
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** Asserts a spec error: non-zero exit, {cniVersion, code, msg} on stdout. */
function assertError(r: CniRun, code: number, msg?: RegExp): void {
  assert.notEqual(r.code, 0, `expected a failure, got exit 0: ${r.stdout}`)
  assert.ok(r.out, `no error JSON on stdout (stderr: ${r.stderr})`)
  assert.equal(r.out!.code, code, `expected code ${code}: ${r.stdout}`)
  assert.equal(typeof r.out!.cniVersion, 'string')
  assert.equal(typeof r.out!.msg, 'string')
  if (msg) assert.match(r.out!.msg, msg)
}

test('the CNI plugin, run as a runtime runs it, against a live agent', async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a: Host = c.addHost('ha', 1)
  const sock = path.join(c.dir, 'a.sock')
  const cfg = hostConfig(a, c.hosts, nets, [], { api: { socket: sock }, metrics: { listen: '' } })
  await c.startAgent(a, cfg)
  const cli = async (...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    lab.execAsync(null, [process.execPath, TAPESTRY_BIN, ...args])
  const podList = async (): Promise<Record<string, any>[]> => {
    const r = await cli('pod', 'list', '--socket', sock, '--json')
    assert.equal(r.code, 0, r.stderr)
    return JSON.parse(r.stdout)
  }

  // ---- install, as an operator does
  const binDir = path.join(c.dir, 'bin')
  const confDir = path.join(c.dir, 'net.d')
  const inst = await cli('cni', 'install', '--dir', binDir, '--conf-dir', confDir, '--network', 'blue', '--socket', sock, '--json')
  assert.equal(inst.code, 0, inst.stderr)
  const plugin = path.join(binDir, 'tapestry')
  assert.equal(JSON.parse(inst.stdout).plugin, plugin)
  assert.equal(fs.statSync(plugin).mode & 0o777, 0o755)
  assert.match(fs.readFileSync(plugin, 'utf8').split('\n')[0], /^#!\/usr\/bin\/env .*node$/)
  const list = JSON.parse(fs.readFileSync(path.join(confDir, 'tapestry-blue.conflist'), 'utf8'))
  assert.deepEqual(list, { cniVersion: '1.0.0', name: 'blue', plugins: [{ type: 'tapestry', network: 'blue', socket: sock }] })
  // A second install keeps the same config; a different one needs --force.
  assert.equal((await cli('cni', 'install', '--dir', binDir, '--conf-dir', confDir, '--network', 'blue', '--socket', sock)).code, 0)
  const other = await cli('cni', 'install', '--dir', binDir, '--conf-dir', confDir, '--network', 'blue', '--socket', '/run/elsewhere.sock')
  assert.equal(other.code, 1)
  assert.match(other.stderr, /--force/)

  /** The network config one plugin of the list gets, as libcni builds it. */
  const conf = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ cniVersion: list.cniVersion, name: list.name, ...list.plugins[0], ...over })
  const cni = (command: string | undefined, env: Record<string, string | undefined>, stdin: Record<string, unknown> | string): Promise<CniRun> =>
    runPlugin(plugin, { CNI_COMMAND: command, CNI_PATH: '/usr/lib/cni', ...env }, typeof stdin === 'string' ? stdin : JSON.stringify(stdin))
  const container = (tag: string): { id: string; ns: string; netns: string; env: Record<string, string> } => {
    const ns = c.podNs(tag)
    const id = containerId()
    const netns = `/run/netns/${ns}`
    return { id, ns, netns, env: { CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'eth0' } }
  }
  const linkIn = (ns: string, dev = 'eth0'): string => lab.exec(ns, ['ip', '-o', 'addr', 'show', 'dev', dev], { allowFail: true })

  await t.test('VERSION lists the supported versions', async () => {
    const r = await cni('VERSION', {}, { cniVersion: '1.0.0' })
    assert.equal(r.code, 0, r.stdout)
    for (const v of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) assert.ok(r.out!.supportedVersions.includes(v), v)
    assert.equal(r.out!.cniVersion, '1.0.0')
    // Without stdin too.
    assert.equal((await cni('VERSION', {}, '')).code, 0)
  })

  const c1 = container('c1')
  const c2 = container('c2')
  let res1: Record<string, any>
  let res2: Record<string, any>
  await t.test('ADD attaches a container and prints a 1.0.0 result', async () => {
    const r = await cni('ADD', { ...c1.env, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=Web_Server.1' }, conf())
    assert.equal(r.code, 0, r.stdout + r.stderr)
    res1 = r.out!
    assert.equal(res1.cniVersion, '1.0.0')
    assert.equal(res1.interfaces.length, 1)
    assert.deepEqual(Object.keys(res1.interfaces[0]).sort(), ['mac', 'name', 'sandbox'])
    assert.equal(res1.interfaces[0].name, 'eth0')
    assert.equal(res1.interfaces[0].sandbox, c1.netns)
    assert.match(res1.interfaces[0].mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/)
    assert.equal(res1.ips.length, 1)
    assert.match(res1.ips[0].address, /^10\.244\.1\.\d+\/16$/)
    assert.equal(res1.ips[0].gateway, '10.244.0.1')
    assert.equal(res1.ips[0].interface, 0)
    assert.equal(res1.ips[0].version, undefined, '1.0.0 results have no ips[].version')
    assert.deepEqual(res1.routes, [{ dst: '0.0.0.0/0', gw: '10.244.0.1' }])
    assert.deepEqual(res1.dns, {})
    // The interface is there, with the address and MAC, and the default route.
    assert.match(linkIn(c1.ns), new RegExp(`inet ${res1.ips[0].address.replace(/\./g, '\\.')} `))
    assert.match(lab.exec(c1.ns, ['ip', 'link', 'show', 'dev', 'eth0']), new RegExp(res1.interfaces[0].mac))
    assert.match(lab.exec(c1.ns, ['ip', 'route', 'show', 'default']), /default via 10\.244\.0\.1 dev eth0/)

    const r2 = await cni('ADD', c2.env, conf({ dns: { nameservers: ['10.244.0.53'], search: ['svc.local'] } }))
    assert.equal(r2.code, 0, r2.stdout)
    res2 = r2.out!
    assert.deepEqual(res2.dns, { nameservers: ['10.244.0.53'], search: ['svc.local'] })
    assert.notEqual(res2.ips[0].address, res1.ips[0].address)
    // The two containers reach each other through the agent.
    const ping = await lab.execAsync(c1.ns, ['ping', '-c', '2', '-i', '0.2', '-W', '2', res2.ips[0].address.split('/')[0]])
    assert.equal(parsePing(ping.stdout).received, 2, ping.stdout + ping.stderr)
  })

  await t.test('pods added through CNI show in `tapestry pod list` with their container id', async () => {
    const pods = await podList()
    const p1 = pods.find((p) => p.containerId === c1.id)
    const p2 = pods.find((p) => p.containerId === c2.id)
    assert.ok(p1 && p2, JSON.stringify(pods))
    // K8S_POD_NAME, made a valid name, then the container id's first 12 characters.
    assert.equal(p1.name, `web-server-1-${c1.id.slice(0, 12)}`)
    assert.equal(p2.name, `cni-${c2.id.slice(0, 12)}`)
    assert.equal(p1.network, 'blue')
    assert.equal(p1.ip, res1.ips[0].address)
    const table = await cli('pod', 'list', '--socket', sock)
    assert.match(table.stdout, /CONTAINERID/)
    assert.match(table.stdout, new RegExp(c1.id))
  })

  await t.test('ADD again for the same container returns the same result', async () => {
    const r = await cni('ADD', { ...c1.env, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=Web_Server.1' }, conf())
    assert.equal(r.code, 0, r.stdout)
    assert.deepEqual(r.out, res1)
    assert.equal((await podList()).filter((p) => p.containerId === c1.id).length, 1)
  })

  await t.test('CHECK passes for a healthy attachment and fails when it is broken', async () => {
    const ok = await cni('CHECK', c1.env, conf({ prevResult: res1 }))
    assert.equal(ok.code, 0, ok.stdout)
    assert.equal(ok.stdout, '')
    assertError(await cni('CHECK', c1.env, conf()), 7, /prevResult/)
    assertError(await cni('CHECK', c1.env, conf({ cniVersion: '0.3.1', prevResult: res1 })), 1, /0\.4\.0/)
    assertError(await cni('CHECK', { ...c1.env, CNI_NETNS: '/run/netns/tpy-no-such-ns' }, conf({ prevResult: res1 })), 3)
    // prevResult says another address than the agent gave.
    const wrong = structuredClone(res1)
    wrong.ips[0].address = '10.244.1.250/16'
    assertError(await cni('CHECK', c1.env, conf({ prevResult: wrong })), 101, /10\.244\.1\.250/)
    // The address removed inside the container.
    lab.exec(c2.ns, ['ip', 'addr', 'flush', 'dev', 'eth0'])
    assertError(await cni('CHECK', c2.env, conf({ prevResult: res2 })), 101, /lacks address/)
    // The interface down.
    lab.exec(c1.ns, ['ip', 'link', 'set', 'dev', 'eth0', 'down'])
    assertError(await cni('CHECK', c1.env, conf({ prevResult: res1 })), 101, /down/)
    lab.exec(c1.ns, ['ip', 'link', 'set', 'dev', 'eth0', 'up'])
    lab.exec(c1.ns, ['ip', 'route', 'replace', 'default', 'via', '10.244.0.1', 'dev', 'eth0', 'onlink'])
    assert.equal((await cni('CHECK', c1.env, conf({ prevResult: res1 }))).code, 0)
  })

  await t.test('a 0.4.0 or 0.3.1 config gets the 0.4.0 result format', async () => {
    for (const v of ['0.4.0', '0.3.1']) {
      const x = container(v === '0.4.0' ? 'c3' : 'c3b')
      const r = await cni('ADD', x.env, conf({ cniVersion: v }))
      assert.equal(r.code, 0, r.stdout)
      assert.equal(r.out!.cniVersion, v)
      assert.equal(r.out!.ips[0].version, '4')
      assert.equal(r.out!.ips[0].interface, 0)
      assert.equal(r.out!.interfaces[0].sandbox, x.netns)
      if (v === '0.4.0') assert.equal((await cni('CHECK', x.env, conf({ cniVersion: v, prevResult: r.out! }))).code, 0)
      assert.equal((await cni('DEL', x.env, conf({ cniVersion: v, prevResult: r.out! }))).code, 0)
    }
  })

  await t.test('every error is a spec error object with a well-known code', async () => {
    const x = container('ce')
    // 1: incompatible version.
    assertError(await cni('ADD', x.env, conf({ cniVersion: '0.2.0' })), 1, /0\.2\.0.*supports/)
    assertError(await cni('ADD', x.env, conf({ cniVersion: '9.0.0' })), 1)
    // 4: invalid or missing environment.
    assertError(await cni(undefined, x.env, conf()), 4, /CNI_COMMAND/)
    assertError(await cni('FROB', x.env, conf()), 4, /unknown CNI_COMMAND/)
    assertError(await cni('ADD', { ...x.env, CNI_NETNS: undefined }, conf()), 4, /CNI_NETNS/)
    assertError(await cni('ADD', { ...x.env, CNI_CONTAINERID: undefined }, conf()), 4, /CNI_CONTAINERID/)
    assertError(await cni('DEL', { ...x.env, CNI_IFNAME: undefined }, conf()), 4, /CNI_IFNAME/)
    assertError(await cni('ADD', { ...x.env, CNI_IFNAME: 'a/b' }, conf()), 4, /interface name/)
    assertError(await cni('ADD', { ...x.env, CNI_CONTAINERID: '-bad id' }, conf()), 4, /container id/)
    assertError(await cni('ADD', { ...x.env, CNI_NETNS: '/run/netns/tpy-no-such-ns' }, conf()), 4, /does not exist/)
    assertError(await cni('ADD', { ...x.env, CNI_ARGS: 'K8S_POD_NAME' }, conf()), 4, /KEY=VALUE/)
    assertError(await cni('ADD', { ...x.env, CNI_ARGS: 'IP=10.244.1.77' }, conf()), 4, /prefix length/)
    // 6: stdin that is not a JSON object.
    assertError(await cni('ADD', x.env, 'cniVersion: 1.0.0'), 6, /not JSON/)
    assertError(await cni('ADD', x.env, '[1, 2]'), 6)
    // 7: invalid network config (checked here, or by the agent).
    assertError(await cni('ADD', x.env, conf({ name: undefined })), 7, /"name"/)
    assertError(await cni('ADD', x.env, conf({ cniVersion: undefined })), 7, /cniVersion/)
    assertError(await cni('ADD', x.env, conf({ socket: 'a.sock' })), 7, /socket/)
    assertError(await cni('ADD', x.env, conf({ ipam: { subnet: '10.0.0.0/8' } })), 7, /ipam\.type/)
    assertError(await cni('ADD', x.env, conf({ network: 'green' })), 7, /green.*network/s)
    assertError(await cni('ADD', x.env, conf({ ipam: { type: 'tpy-no-such-ipam' } })), 7, /not found in CNI_PATH/)
    // 11: the agent's socket is not there.
    const gone = await cni('ADD', x.env, conf({ socket: path.join(c.dir, 'nobody.sock') }))
    assertError(gone, 11, /not reachable.*start it/)
    assert.equal(gone.out!.cniVersion, '1.0.0')
    // 100: the agent refuses (a static address already taken).
    assertError(await cni('ADD', { ...x.env, CNI_ARGS: `IP=${res1.ips[0].address}` }, conf()), 100, /already used/)
    // None of it left a pod behind.
    assert.equal((await podList()).filter((p) => p.containerId === x.id).length, 0)
    assert.equal(linkIn(x.ns), '')
  })

  await t.test('a static address and MAC from CNI_ARGS', async () => {
    const x = container('cs')
    const r = await cni('ADD', { ...x.env, CNI_ARGS: 'IgnoreUnknown=1;IP=10.244.3.3/16;MAC=02:42:0a:f4:03:03' }, conf())
    assert.equal(r.code, 0, r.stdout)
    assert.equal(r.out!.ips[0].address, '10.244.3.3/16')
    assert.equal(r.out!.interfaces[0].mac, '02:42:0a:f4:03:03')
    assert.equal((await cni('DEL', x.env, conf())).code, 0)
  })

  await t.test('DEL removes the attachment; deleting twice or an unknown container succeeds', async () => {
    const r = await cni('DEL', c1.env, conf({ prevResult: res1 }))
    assert.equal(r.code, 0, r.stdout)
    assert.equal(r.stdout, '')
    assert.equal(linkIn(c1.ns), '', 'the TAP is gone from the container')
    assert.ok(!(await podList()).some((p) => p.containerId === c1.id))
    assert.equal((await cni('DEL', c1.env, conf({ prevResult: res1 }))).code, 0)
    // No CNI_NETNS (the runtime lost it), and a container never added.
    assert.equal((await cni('DEL', { ...c2.env, CNI_NETNS: undefined }, conf())).code, 0)
    assert.equal(linkIn(c2.ns), '')
    assert.equal((await cni('DEL', { CNI_CONTAINERID: containerId(), CNI_IFNAME: 'eth0' }, conf())).code, 0)
  })

  await t.test('the agent down, then restarted: ADD/STATUS wait, DEL cleans up once it is back', async () => {
    const x = container('cr')
    const y = container('cq')
    const rx = await cni('ADD', x.env, conf())
    assert.equal(rx.code, 0, rx.stdout)
    const ry = await cni('ADD', y.env, conf())
    assert.equal(ry.code, 0, ry.stdout)
    await c.stopAgent(a)
    // The TAP stays in the container while the agent is away.
    assert.notEqual(linkIn(x.ns), '')
    assertError(await cni('ADD', container('cw').env, conf()), 11, /not reachable/)
    assertError(await cni('STATUS', x.env, conf({ cniVersion: '1.1.0' })), 50, /not reachable/)
    // Nothing to clean for a container the agent never had: DEL succeeds.
    assert.equal((await cni('DEL', { CNI_CONTAINERID: containerId(), CNI_IFNAME: 'eth0' }, conf())).code, 0)
    // A container whose netns is gone: the agent drops its pod when it starts.
    sh('ip', ['netns', 'del', y.ns])
    assert.equal((await cni('DEL', y.env, conf())).code, 0)
    // A container the agent still holds: try again later.
    assertError(await cni('DEL', x.env, conf({ prevResult: rx.out! })), 11, /still holds pod .*start the agent/)

    await c.startAgent(a, cfg)
    const pods = await podList()
    assert.ok(pods.some((p) => p.containerId === x.id), 'restored after the restart')
    assert.ok(!pods.some((p) => p.containerId === y.id), 'dropped: its namespace is gone')
    const del = await cni('DEL', x.env, conf({ prevResult: rx.out! }))
    assert.equal(del.code, 0, del.stdout)
    assert.equal(linkIn(x.ns), '')
    assert.ok(!(await podList()).some((p) => p.containerId === x.id))
  })

  await t.test('GC (1.1.0) removes the pods of this network that are not valid attachments; STATUS', async () => {
    const v11 = (over: Record<string, unknown> = {}) => conf({ cniVersion: '1.1.0', ...over })
    const keep = container('g1')
    const stale = container('g2')
    const red = container('g3')
    const rk = await cni('ADD', keep.env, v11())
    assert.equal(rk.code, 0, rk.stdout)
    assert.equal(rk.out!.interfaces[0].mtu, 1450, '1.1.0 results carry the MTU')
    assert.equal((await cni('ADD', stale.env, v11())).code, 0)
    const rr = await cni('ADD', red.env, v11({ name: 'red', network: 'red' }))
    assert.equal(rr.code, 0, rr.stdout)
    assert.match(rr.out!.ips[0].address, /^10\.245\.1\.\d+\/16$/)
    // A pod added by hand (no container id) is never collected.
    const hand = c.podNs('gh')
    assert.equal((await cli('pod', 'add', 'byhand', '--netns', hand, '--network', 'blue', '--socket', sock)).code, 0)

    assertError(await cni('GC', {}, conf({ 'cni.dev/valid-attachments': [] })), 1, /1\.1\.0/)
    const gc = await cni('GC', {}, v11({ 'cni.dev/valid-attachments': [{ containerID: keep.id, ifname: 'eth0' }] }))
    assert.equal(gc.code, 0, gc.stdout)
    const pods = await podList()
    assert.ok(pods.some((p) => p.containerId === keep.id), 'a valid attachment stays')
    assert.ok(!pods.some((p) => p.containerId === stale.id), 'a stale attachment goes')
    assert.ok(pods.some((p) => p.containerId === red.id), "another network's pod stays")
    assert.ok(pods.some((p) => p.name === 'byhand'))
    assert.equal(linkIn(stale.ns), '')

    assert.equal((await cni('STATUS', {}, v11())).code, 0)
    assertError(await cni('STATUS', {}, conf()), 1)
    for (const x of [keep, red]) assert.equal((await cni('DEL', x.env, v11(x === red ? { name: 'red', network: 'red' } : {}))).code, 0)
    assert.equal((await cli('pod', 'del', 'byhand', '--socket', sock)).code, 0)
  })

  await t.test('a second interface of one container, on another network', async () => {
    const x = container('ci')
    const r0 = await cni('ADD', x.env, conf())
    assert.equal(r0.code, 0, r0.stdout)
    const r1 = await cni('ADD', { ...x.env, CNI_IFNAME: 'net1' }, conf({ name: 'red', network: 'red' }))
    assert.equal(r1.code, 0, r1.stdout)
    assert.equal(r1.out!.interfaces[0].name, 'net1')
    assert.notEqual(linkIn(x.ns, 'net1'), '')
    const names = (await podList()).filter((p) => p.containerId === x.id).map((p) => p.name).sort()
    assert.deepEqual(names, [`cni-${x.id.slice(0, 12)}`, `cni-${x.id.slice(0, 12)}-net1`])
    // DEL of one interface leaves the other.
    assert.equal((await cni('DEL', { ...x.env, CNI_IFNAME: 'net1' }, conf({ name: 'red', network: 'red' }))).code, 0)
    assert.equal(linkIn(x.ns, 'net1'), '')
    assert.notEqual(linkIn(x.ns, 'eth0'), '')
    assert.equal((await cni('DEL', x.env, conf())).code, 0)
  })

  await t.test('delegated IPAM (host-local) gives the address', { skip: fs.existsSync('/usr/lib/cni/host-local') ? false : 'no /usr/lib/cni/host-local (containernetworking-plugins)' }, async () => {
    const dataDir = path.join(c.dir, 'ipam')
    const ipam = { type: 'host-local', ranges: [[{ subnet: '10.244.0.0/16', rangeStart: '10.244.9.10', rangeEnd: '10.244.9.20', gateway: '10.244.0.1' }]], dataDir }
    const x = container('ch')
    const r = await cni('ADD', x.env, conf({ ipam }))
    assert.equal(r.code, 0, r.stdout)
    assert.equal(r.out!.ips[0].address, '10.244.9.10/16')
    assert.ok(fs.existsSync(path.join(dataDir, 'blue', '10.244.9.10')))
    const again = await cni('ADD', x.env, conf({ ipam }))
    assert.deepEqual(again.out, r.out)
    assert.equal((await cni('CHECK', x.env, conf({ ipam, prevResult: r.out! }))).code, 0)
    // The agent refusing the pod gives the address back.
    const y = container('cj')
    assertError(await cni('ADD', y.env, conf({ ipam, network: 'green' })), 7)
    assert.ok(!fs.existsSync(path.join(dataDir, 'blue', '10.244.9.11')))
    assert.equal((await cni('DEL', x.env, conf({ ipam }))).code, 0)
    assert.ok(!fs.existsSync(path.join(dataDir, 'blue', '10.244.9.10')))
    // No CNI_PATH: the IPAM plugin cannot be found.
    assertError(await cni('ADD', { ...x.env, CNI_PATH: undefined }, conf({ ipam })), 4, /CNI_PATH/)
  })

  await t.test('ADD and DEL latency', async () => {
    const n = 10
    const xs = Array.from({ length: n }, (_, i) => container(`l${i}`))
    const add: number[] = []
    const del: number[] = []
    for (const x of xs) {
      const r = await cni('ADD', x.env, conf())
      assert.equal(r.code, 0, r.stdout)
      add.push(r.ms)
    }
    for (const x of xs) {
      const r = await cni('DEL', x.env, conf())
      assert.equal(r.code, 0, r.stdout)
      del.push(r.ms)
    }
    const version: number[] = []
    for (let i = 0; i < n; i++) version.push((await cni('VERSION', {}, { cniVersion: '1.0.0' })).ms)
    const fmt = (xs: number[]) => `median ${median(xs).toFixed(1)} ms, min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)}`
    const line = `CNI latency over ${n} containers: ADD ${fmt(add)}; DEL ${fmt(del)}; VERSION (process start only) ${fmt(version)}`
    t.diagnostic(line)
    // The agent's share: the same request straight to the API, without the plugin process.
    const api: number[] = []
    const ys = Array.from({ length: n }, (_, i) => container(`m${i}`))
    for (const y of ys) {
      const t0 = process.hrtime.bigint()
      await apiCall(sock, 'POST', '/v1/pods', { name: `lat-${shortId(y.id)}`, netns: y.netns, network: 'blue', containerId: y.id })
      api.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    for (const y of ys) await apiCall(sock, 'DELETE', `/v1/pods/lat-${shortId(y.id)}`)
    t.diagnostic(`the agent alone (POST /v1/pods from this process): ${fmt(api)}`)
  })
})

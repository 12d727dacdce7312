/**
 * A real container runtime on Tapestry: podman (CNI backend, runc) runs two
 * busybox containers on a Tapestry network through the `tapestry` CNI plugin.
 * They ping each other, one serves HTTP and the other fetches the page, the
 * agent lists both with their container ids, and removing the containers
 * removes their TAPs and pods.
 *
 * Nothing of the machine's container setup is used or changed: podman gets a
 * containers.conf and a storage.conf of its own (CONTAINERS_CONF,
 * CONTAINERS_STORAGE_CONF) that put storage, run, lock, temporary and runc
 * state directories, the CNI network config and the plugin under a temporary
 * directory, containers and their conmon in a cgroup of their own (removed
 * after), and no events log. The image is built offline from the
 * busybox-static package (a root filesystem tar, `podman import`); the import
 * runs in a private mount namespace with a tmpfs on /var/lib, since podman 4
 * writes its blob cache to /var/lib/containers/cache whatever --root says.
 * Outside the temporary directory stays only what a runtime must create: the
 * containers' namespaces under /run/netns (podman removes them with the
 * containers) and libcni's result cache under /var/lib/cni (our entries are
 * removed after, and the directory too when this test created it).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Lab, parsePing, uniqueName } from '../harness/lab'
import { Cluster, hostConfig, TAPESTRY_BIN } from '../harness/overlay'

const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1', podRange: '10.244.1.0/24' }]
const BUSYBOX = '/bin/busybox'
const CNI_CACHE = '/var/lib/cni'

function whichPath(cmd: string): string | null {
  for (const d of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    try { fs.accessSync(path.join(d, cmd), fs.constants.X_OK); return path.join(d, cmd) } catch { /* next */ }
  }
  return null
}

function which(cmd: string): boolean {
  return whichPath(cmd) !== null
}

function missingTools(): string | false {
  const missing = ['podman', 'runc', 'conmon', 'unshare'].filter((c) => !which(c) && !fs.existsSync(`/usr/libexec/podman/${c}`))
  if (!fs.existsSync(BUSYBOX)) missing.push('busybox-static (/bin/busybox)')
  if (process.getuid?.() !== 0) missing.push('root')
  return missing.length ? `needs ${missing.join(', ')} (apt-get install podman runc containernetworking-plugins busybox-static)` : false
}

interface Out { code: number | null; stdout: string; stderr: string }

/** A podman that keeps everything under one temporary directory. */
class Podman {
  readonly dir: string
  readonly env: NodeJS.ProcessEnv
  readonly pluginDir: string
  readonly confDir: string
  /** The cgroup (cgroupfs) containers and their conmon go under, instead of /libpod_parent. */
  readonly cgroupParent = `/${uniqueName('cg')}`
  private cleaned = false
  private readonly cniCacheExisted = fs.existsSync(CNI_CACHE)

  constructor(readonly lab: Lab, readonly network: string) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tapestry-podman-'))
    this.pluginDir = path.join(this.dir, 'cni-bin')
    this.confDir = path.join(this.dir, 'net.d')
    for (const d of ['storage', 'run', 'tmp', 'runc', 'cni-bin', 'net.d']) fs.mkdirSync(path.join(this.dir, d), { recursive: true })
    // runc through a wrapper that keeps its state here, not in /run/runc (podman's
    // --runtime-flag is not passed on to the cleanup process conmon starts).
    const wrapper = path.join(this.dir, 'bin', 'runc')
    fs.mkdirSync(path.dirname(wrapper))
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${whichPath('runc')} --root ${path.join(this.dir, 'runc')} "$@"\n`, { mode: 0o755 })
    const q = (s: string) => JSON.stringify(s)
    fs.writeFileSync(path.join(this.dir, 'containers.conf'), [
      '[containers]',
      // The defaults exceed what this kind of machine allows.
      'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
      '[network]',
      'network_backend = "cni"',
      `cni_plugin_dirs = [${q(this.pluginDir)}]`,
      `network_config_dir = ${q(this.confDir)}`,
      `default_network = ${q(network)}`,
      '[engine]',
      // crun refuses the hybrid cgroup layout found here.
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "none"',
      // File locks in tmp_dir, not the host-wide /dev/shm/libpod_lock.
      'lock_type = "file"',
      `tmp_dir = ${q(path.join(this.dir, 'tmp'))}`,
      `static_dir = ${q(path.join(this.dir, 'storage', 'libpod'))}`,
      `volume_path = ${q(path.join(this.dir, 'storage', 'volumes'))}`,
      `image_copy_tmp_dir = ${q(path.join(this.dir, 'tmp'))}`,
      '[engine.runtimes]',
      `runc = [${q(wrapper)}]`,
      '',
    ].join('\n'))
    fs.writeFileSync(path.join(this.dir, 'storage.conf'), [
      '[storage]',
      'driver = "vfs"',
      `runroot = ${q(path.join(this.dir, 'run'))}`,
      `graphroot = ${q(path.join(this.dir, 'storage'))}`,
      '',
    ].join('\n'))
    this.env = {
      ...process.env,
      CONTAINERS_CONF: path.join(this.dir, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: path.join(this.dir, 'storage.conf'),
      // Image import's big temporary files, otherwise in /var/tmp.
      TMPDIR: path.join(this.dir, 'tmp'),
    }
    lab.onCleanup(() => this.cleanupSync())
  }

  /** Runs podman (or another command with podman's environment) without blocking the event loop. */
  run(args: string[], opts: { cmd?: string[]; timeoutMs?: number } = {}): Promise<Out> {
    const argv = [...(opts.cmd ?? ['podman']), ...args]
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0], argv.slice(1), { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
      child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
      child.on('error', reject)
      child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
    })
  }

  async ok(args: string[], what = `podman ${args.join(' ')}`): Promise<string> {
    const r = await this.run(args)
    assert.equal(r.code, 0, `${what} failed (exit ${r.code}): ${r.stderr}${r.stdout}`)
    return r.stdout
  }

  /** A busybox image from the busybox-static package: /bin/busybox, a link per applet, /www/index.html. */
  async buildImage(tag: string, page: string): Promise<string> {
    const root = path.join(this.dir, 'rootfs')
    for (const d of ['bin', 'etc', 'www', 'tmp', 'root']) fs.mkdirSync(path.join(root, d), { recursive: true })
    fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'))
    fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755)
    const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox')
    for (const a of applets) fs.symlinkSync('busybox', path.join(root, 'bin', a))
    fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
    fs.writeFileSync(path.join(root, 'etc', 'group'), 'root:x:0:\n')
    fs.writeFileSync(path.join(root, 'www', 'index.html'), page)
    const tar = path.join(this.dir, 'rootfs.tar')
    execFileSync('tar', ['-C', root, '-cf', tar, '.'])
    const image = `localhost/${tag}:latest`
    // A private mount namespace with a tmpfs on /var/lib: podman's blob cache lands there, not in the host's /var/lib/containers.
    const script = 'mount -t tmpfs tmpfs /var/lib && exec podman import --change "CMD [\\"/bin/sh\\"]" "$0" "$1"'
    const r = await this.run(['-m', '--propagation', 'private', 'sh', '-c', script, tar, image], { cmd: ['unshare'] })
    assert.equal(r.code, 0, `podman import failed: ${r.stderr}${r.stdout}`)
    return image
  }

  /** Removes containers, images, mounts and files; safe to call twice, never throws. */
  cleanupSync(): void {
    if (this.cleaned) return
    this.cleaned = true
    const pm = (args: string[]) => {
      try { execFileSync('podman', args, { env: this.env, stdio: 'ignore', timeout: 60_000 }) } catch { /* keep cleaning */ }
    }
    pm(['rm', '--all', '--force', '--time', '0'])
    pm(['rmi', '--all', '--force'])
    // Anything podman left mounted under the directory (container shm, for one).
    try {
      const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && m.startsWith(this.dir + '/'))
      for (const m of mounts.sort((x, y) => y.length - x.length)) execFileSync('umount', ['-l', m], { stdio: 'ignore' })
    } catch { /* keep cleaning */ }
    fs.rmSync(this.dir, { recursive: true, force: true })
    // libcni's cached results: ours are named after our network.
    try {
      const results = path.join(CNI_CACHE, 'results')
      for (const f of fs.readdirSync(results)) if (f.startsWith(`${this.network}-`)) fs.rmSync(path.join(results, f), { force: true })
    } catch { /* none */ }
    if (!this.cniCacheExisted) removeEmptyTree(CNI_CACHE)
    removeCgroups(this.cgroupParent)
  }
}

/** Removes a cgroupfs group and its children in every hierarchy, waiting (2 s at most) for their last processes to exit. */
function removeCgroups(group: string): void {
  let roots: string[]
  try { roots = fs.readdirSync('/sys/fs/cgroup').map((h) => path.join('/sys/fs/cgroup', h)) } catch { return }
  const end = Date.now() + 2000
  for (const dir of roots.map((r) => path.join(r, group)).filter((d) => fs.existsSync(d))) {
    const rm = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rm(path.join(d, e.name))
      for (;;) {
        try { fs.rmdirSync(d); return } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > end) return
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50)
        }
      }
    }
    try { rm(dir) } catch { /* keep cleaning */ }
  }
}

/** Removes a directory tree that holds only empty directories. */
function removeEmptyTree(dir: string): boolean {
  let entries: fs.Dirent[]
  try { entries = fs.readdirSync(dir, { withFileTypes: true }) } catch { return false }
  let empty = true
  for (const e of entries) {
    if (!e.isDirectory() || !removeEmptyTree(path.join(dir, e.name))) empty = false
  }
  if (empty) {
    try { fs.rmdirSync(dir) } catch { return false }
  }
  return empty
}

test('podman runs busybox containers on a Tapestry network through the CNI plugin', { skip: missingTools() }, async (t) => {
  const lab = new Lab()
  const network = uniqueName('net')
  const pm = new Podman(lab, network)
  // Containers go first, while the agent still answers their CNI DEL.
  t.after(async () => { pm.cleanupSync(); await lab.cleanup() })
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const sock = path.join(c.dir, 'a.sock')
  await c.startAgent(a, hostConfig(a, c.hosts, nets, [], { api: { socket: sock }, metrics: { listen: '' } }))
  const cli = (...args: string[]) => lab.execAsync(null, [process.execPath, TAPESTRY_BIN, ...args])
  const podList = async (): Promise<Record<string, any>[]> => {
    const r = await cli('pod', 'list', '--socket', sock, '--json')
    assert.equal(r.code, 0, r.stderr)
    return JSON.parse(r.stdout)
  }

  const inst = await cli('cni', 'install', '--dir', pm.pluginDir, '--conf-dir', pm.confDir, '--network', 'blue', '--name', network, '--socket', sock)
  assert.equal(inst.code, 0, inst.stderr)
  const nets0 = await pm.ok(['network', 'ls', '--format', '{{.Name}} {{.Driver}}'])
  assert.match(nets0, new RegExp(`^${network} tapestry$`, 'm'), 'podman sees the Tapestry network')

  const page = `hello from tapestry ${network}\n`
  const image = await pm.buildImage(uniqueName('bb'), page)
  const srv = uniqueName('srv')
  const cl = uniqueName('cli')
  const runArgs = (name: string, ...cmd: string[]) =>
    ['run', '-d', '--name', name, '--network', network, '--cap-add', 'NET_RAW', '--cgroup-parent', pm.cgroupParent, image, ...cmd]
  await pm.ok(runArgs(srv, 'busybox', 'httpd', '-f', '-p', '80', '-h', '/www'))
  await pm.ok(runArgs(cl, 'sleep', '600'))

  const inspect = async (name: string) => {
    const j = JSON.parse(await pm.ok(['inspect', name]))[0]
    const n = j.NetworkSettings.Networks[network]
    assert.ok(n, `podman inspect ${name}: no network ${network}: ${JSON.stringify(j.NetworkSettings)}`)
    return { id: j.Id as string, ip: n.IPAddress as string, prefix: n.IPPrefixLen as number, mac: n.MacAddress as string, gateway: n.Gateway as string, netns: j.NetworkSettings.SandboxKey as string }
  }
  const s = await inspect(srv)
  const k = await inspect(cl)
  t.diagnostic(`server ${s.ip} in ${s.netns}, client ${k.ip} in ${k.netns}`)

  // The agent has both, with their container ids, in podman's namespaces.
  const pods = await podList()
  for (const [ctr, name] of [[s, srv], [k, cl]] as const) {
    const p = pods.find((x) => x.containerId === ctr.id)
    assert.ok(p, `no pod for container ${name} (${ctr.id}): ${JSON.stringify(pods)}`)
    assert.equal(p.ip, `${ctr.ip}/${ctr.prefix}`)
    assert.equal(p.mac, ctr.mac)
    assert.equal(p.netns, ctr.netns)
    assert.equal(ctr.gateway, '10.244.0.1')
    // podman passes the container name as K8S_POD_NAME.
    assert.equal(p.name, `${name}-${ctr.id.slice(0, 12)}`)
    // The container's eth0 is the agent's TAP.
    assert.match(execFileSync('ip', ['-n', path.basename(ctr.netns), '-d', 'link', 'show', 'dev', 'eth0'], { encoding: 'utf8' }), /tun type tap/)
  }

  // They ping each other.
  const ping1 = await pm.run(['exec', cl, 'ping', '-c', '3', '-i', '0.2', '-W', '2', s.ip])
  assert.equal(parsePing(ping1.stdout).received, 3, ping1.stdout + ping1.stderr)
  const ping2 = await pm.run(['exec', srv, 'ping', '-c', '3', '-i', '0.2', '-W', '2', k.ip])
  assert.equal(parsePing(ping2.stdout).received, 3, ping2.stdout + ping2.stderr)
  // One serves HTTP, the other fetches the page.
  assert.equal(await pm.ok(['exec', cl, 'wget', '-qO-', `http://${s.ip}/`]), page)

  // Removing the containers removes their TAPs and pods.
  await pm.ok(['rm', '--force', '--time', '0', srv, cl])
  const after = await podList()
  assert.deepEqual(after.filter((p) => p.containerId === s.id || p.containerId === k.id), [])
  for (const ctr of [s, k]) assert.ok(!fs.existsSync(ctr.netns), `${ctr.netns} is gone`)
  assert.equal(lab.exec(a.ns, ['ip', '-o', 'link', 'show', 'type', 'tun']), '', 'no TAP left in the agent namespace')
  const cache = path.join(CNI_CACHE, 'results')
  const left = fs.existsSync(cache) ? fs.readdirSync(cache).filter((f) => f.startsWith(`${network}-`)) : []
  assert.deepEqual(left, [], 'libcni removed its cached results')
})

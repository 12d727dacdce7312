/**
 * End-to-end test harness: network namespaces, veth pairs, bridges and processes
 * with names unique to this run, all torn down by `cleanup()` — registered with
 * `t.after` before use so it runs when a test fails, and again on process exit
 * or SIGINT/SIGTERM as a last resort. `npm run clean:netns` sweeps leftovers of
 * earlier runs by their prefix only.
 *
 * Names: PREFIX + 4-character run id + a short tag, at most 15 characters (the
 * kernel's IFNAMSIZ), e.g. "tpy3fk0ha".
 */
import { execFileSync, spawn, ChildProcess, SpawnOptions } from 'node:child_process'
import * as crypto from 'node:crypto'

export const PREFIX = 'tpy'
export const RUN_ID = crypto.randomBytes(3).toString('hex').slice(0, 4)

export function uniqueName(tag: string): string {
  const n = `${PREFIX}${RUN_ID}${tag}`
  if (n.length > 15) throw new Error(`name ${n} is longer than 15 characters: use a shorter tag`)
  return n
}

export function sh(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
  try {
    return execFileSync(cmd, args, { input: opts.input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 })
  } catch (err) {
    if (opts.allowFail) return ''
    const e = err as { stderr?: string; status?: number }
    throw new Error(`\`${cmd} ${args.join(' ')}\` failed (exit ${e.status}): ${e.stderr ?? err}`)
  }
}

export interface Proc {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<number | null>
}

const live = new Set<Lab>()
let hooked = false
function hookExit(): void {
  if (hooked) return
  hooked = true
  process.on('exit', () => { for (const l of live) l.cleanupSync() })
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => { for (const l of live) l.cleanupSync(); process.exit(130) })
  }
}

export class Lab {
  private namespaces: string[] = []
  private rootLinks: string[] = []
  private procs: ChildProcess[] = []
  private extra: Array<() => void> = []

  constructor() {
    live.add(this)
    hookExit()
  }

  /** Creates a network namespace with lo up. */
  netns(tag: string): string {
    const name = uniqueName(tag)
    sh('ip', ['netns', 'add', name])
    this.namespaces.push(name)
    sh('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
    return name
  }

  /** A veth pair between two namespaces (null = the test's own namespace), each end with an optional address. */
  veth(aNs: string | null, aName: string, bNs: string | null, bName: string, aAddr?: string, bAddr?: string, mtu?: number): void {
    const tmpA = uniqueName('va' + this.rootLinks.length)
    const tmpB = uniqueName('vb' + this.rootLinks.length)
    sh('ip', ['link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB])
    this.rootLinks.push(tmpA)
    for (const [tmp, ns, name, addr] of [[tmpA, aNs, aName, aAddr], [tmpB, bNs, bName, bAddr]] as const) {
      if (ns) sh('ip', ['link', 'set', tmp, 'netns', ns])
      const n = ns ? ['-n', ns] : []
      sh('ip', [...n, 'link', 'set', tmp, 'name', name])
      if (name.startsWith(PREFIX)) this.rootLinks.push(name)
      if (mtu) sh('ip', [...n, 'link', 'set', name, 'mtu', String(mtu)])
      if (addr) sh('ip', [...n, 'addr', 'add', addr, 'dev', name])
      sh('ip', [...n, 'link', 'set', name, 'up'])
    }
  }

  /** A Linux bridge inside a namespace. */
  bridge(ns: string, name: string, addr?: string): void {
    sh('ip', ['-n', ns, 'link', 'add', name, 'type', 'bridge'])
    if (addr) sh('ip', ['-n', ns, 'addr', 'add', addr, 'dev', name])
    sh('ip', ['-n', ns, 'link', 'set', name, 'up'])
  }

  /** Runs a command in a namespace and returns stdout (throws with stderr on failure). */
  exec(ns: string, cmd: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
    return sh('ip', ['netns', 'exec', ns, ...cmd], opts)
  }

  /** Same, without blocking the event loop (needed when this process forwards the traffic). */
  execAsync(ns: string | null, cmd: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const p = this.spawn(ns, cmd)
    const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs)
    return p.exited.then((code) => {
      clearTimeout(timer)
      return { code, stdout: p.stdout(), stderr: p.stderr() }
    })
  }

  /** Starts a process in a namespace (null = here); killed by cleanup. */
  spawn(ns: string | null, cmd: string[], opts: SpawnOptions = {}): Proc {
    const argv = ns ? ['ip', 'netns', 'exec', ns, ...cmd] : cmd
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    this.procs.push(child)
    let out = ''
    let errOut = ''
    child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { errOut += d.toString() })
    // Resolves once the output is read to its end ('close'), not at 'exit', which can
    // come before the last stdout lines are read. A grandchild that keeps the pipes
    // open cannot hold it up for more than a second after the exit.
    const exited = new Promise<number | null>((resolve) => {
      child.on('exit', (code, sig) => {
        const c = code ?? (sig ? -1 : null)
        const t = setTimeout(() => resolve(c), 1000)
        child.once('close', () => { clearTimeout(t); resolve(c) })
      })
      child.on('error', () => resolve(-1))
    })
    return { child, stdout: () => out, stderr: () => errOut, exited }
  }

  /** Registers an extra cleanup step (run first, synchronously). */
  onCleanup(fn: () => void): void {
    this.extra.push(fn)
  }

  /** Kills processes, deletes namespaces and links. Safe to call twice. */
  async cleanup(): Promise<void> {
    const waits = this.procs.filter((p) => p.exitCode === null && p.signalCode === null).map((p) => new Promise<void>((r) => {
      const t = setTimeout(r, 2000)
      p.once('exit', () => { clearTimeout(t); r() })
    }))
    for (const p of this.procs) if (p.exitCode === null) p.kill('SIGKILL')
    await Promise.all(waits)
    this.cleanupSync()
  }

  cleanupSync(): void {
    for (const fn of this.extra.splice(0)) {
      try { fn() } catch { /* keep cleaning */ }
    }
    for (const p of this.procs.splice(0)) if (p.exitCode === null) p.kill('SIGKILL')
    for (const ns of this.namespaces.splice(0).reverse()) {
      for (const pid of sh('ip', ['netns', 'pids', ns], { allowFail: true }).split(/\s+/).filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL') } catch { /* gone */ }
      }
      sh('ip', ['netns', 'del', ns], { allowFail: true })
    }
    for (const l of this.rootLinks.splice(0)) sh('ip', ['link', 'del', l], { allowFail: true })
    live.delete(this)
  }
}

/** Polls `check` until it returns a truthy value or the deadline passes (no fixed sleeps). */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ''}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** Parses ping's summary: transmitted, received, and rtt min/avg/max when present. */
export function parsePing(out: string): { sent: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(out)
  if (!m) throw new Error(`no ping summary in: ${out.slice(-500)}`)
  return { sent: Number(m[1]), received: Number(m[2]) }
}

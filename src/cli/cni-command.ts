/**
 * `tapestry cni install|uninstall`: puts the CNI plugin into a runtime's plugin
 * directory and writes a network config list for one Tapestry network, so that
 * podman (CNI backend), containerd or cnitool can attach containers to it.
 *
 * The plugin is dist/src/cni/plugin.js, a script that needs only Node: it is
 * copied as `tapestry` (mode 0755, shebang kept, written beside and renamed so
 * a runtime never executes half a file).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Command } from './registry'
import { defaultSocket } from './client'

/** The compiled plugin (src/cni/plugin.ts). */
export const PLUGIN_SOURCE = path.join(__dirname, '..', 'cni', 'plugin.js')
/** Where Debian's CNI plugins live and podman looks first (containerd uses /opt/cni/bin: pass --dir). */
export const DEFAULT_PLUGIN_DIR = '/usr/lib/cni'
export const DEFAULT_CONF_DIR = '/etc/cni/net.d'
export const PLUGIN_NAME = 'tapestry'
/** Config versions the plugin accepts (src/cni/plugin.ts SUPPORTED_VERSIONS). */
const CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']
const DEFAULT_CNI_VERSION = '1.0.0'

const INSTALL_USAGE = 'tapestry cni install [--dir DIR] [--conf-dir DIR] [--network NAME] [--socket PATH] [--name CNI_NAME] [--cni-version V] [--force] [--json]'
const UNINSTALL_USAGE = 'tapestry cni uninstall [--dir DIR] [--conf-dir DIR] [--network NAME] [--json]'

class UsageError extends Error {}

interface Opts { values: Map<string, string>; flags: Set<string> }

function parse(args: string[], valued: string[], flags: string[], usage: string): Opts {
  const o: Opts = { values: new Map(), flags: new Set() }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    const eq = a.indexOf('=')
    const key = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a
    if (valued.includes(key)) {
      const v = eq > 0 && a.startsWith('--') ? a.slice(eq + 1) : args[++i]
      if (v === undefined || v === '') throw new UsageError(`${key} needs a value\nUsage: ${usage}`)
      o.values.set(key, v)
    } else if (flags.includes(a)) o.flags.add(a)
    else throw new UsageError(`unknown ${a.startsWith('-') ? 'option' : 'argument'} ${a}\nUsage: ${usage}`)
  }
  return o
}

/** The network config list for one Tapestry network. */
export function conflist(cniName: string, network: string, socket: string, cniVersion: string): Record<string, unknown> {
  return {
    cniVersion,
    name: cniName,
    plugins: [{ type: PLUGIN_NAME, network, socket }],
  }
}

export function conflistPath(confDir: string, network: string): string {
  return path.join(confDir, `${PLUGIN_NAME}-${network}.conflist`)
}

/** Writes `text` to `file` through a temporary file in the same directory and a rename. */
function writeAtomic(file: string, text: string, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`)
  try {
    fs.writeFileSync(tmp, text, { mode })
    fs.chmodSync(tmp, mode)
    fs.renameSync(tmp, file)
  } catch (err) {
    try { fs.unlinkSync(tmp) } catch { /* not written */ }
    throw err
  }
}

/** The plugin as installed: the compiled script with its shebang, without the source map reference. */
export function pluginText(): string {
  let text: string
  try {
    text = fs.readFileSync(PLUGIN_SOURCE, 'utf8')
  } catch {
    throw new Error(`the CNI plugin is not built (${PLUGIN_SOURCE} missing): run \`npm run build\``)
  }
  text = text.replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n')
  if (!text.startsWith('#!')) text = '#!/usr/bin/env node\n' + text
  return text
}

async function install(args: string[]): Promise<number> {
  const o = parse(args, ['--dir', '--conf-dir', '--network', '--socket', '--name', '--cni-version'], ['--force', '--json'], INSTALL_USAGE)
  const dir = path.resolve(o.values.get('--dir') ?? DEFAULT_PLUGIN_DIR)
  const confDir = path.resolve(o.values.get('--conf-dir') ?? DEFAULT_CONF_DIR)
  const network = o.values.get('--network')
  const socket = o.values.get('--socket') ?? defaultSocket()
  const cniVersion = o.values.get('--cni-version') ?? DEFAULT_CNI_VERSION
  if (!CNI_VERSIONS.includes(cniVersion)) throw new UsageError(`--cni-version ${cniVersion}: the plugin supports ${CNI_VERSIONS.join(', ')}`)
  if (!socket.startsWith('/')) throw new UsageError(`--socket ${socket}: give the absolute path of the agent's API socket`)
  const nameRe = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
  if (network !== undefined && !nameRe.test(network)) throw new UsageError(`--network ${network} is not a Tapestry network name (1-63 of a-z, 0-9 and '-')`)
  const cniName = o.values.get('--name') ?? network
  if (cniName !== undefined && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(cniName)) throw new UsageError(`--name ${cniName} is not a CNI network name (letters, digits, '_', '.', '-')`)

  fs.mkdirSync(dir, { recursive: true, mode: 0o755 })
  const plugin = path.join(dir, PLUGIN_NAME)
  writeAtomic(plugin, pluginText(), 0o755)

  let confFile: string | null = null
  let confStatus: 'written' | 'unchanged' | null = null
  if (network !== undefined) {
    fs.mkdirSync(confDir, { recursive: true, mode: 0o755 })
    confFile = conflistPath(confDir, network)
    const text = JSON.stringify(conflist(cniName!, network, socket, cniVersion), null, 2) + '\n'
    let old: string | null = null
    try { old = fs.readFileSync(confFile, 'utf8') } catch { /* none */ }
    if (old === text) confStatus = 'unchanged'
    else if (old !== null && !o.flags.has('--force')) {
      throw new Error(`${confFile} exists with other contents; keep it, or run again with --force to replace it`)
    } else {
      writeAtomic(confFile, text, 0o644)
      confStatus = 'written'
    }
  }
  if (o.flags.has('--json')) {
    process.stdout.write(JSON.stringify({ plugin, conflist: confFile, conflistStatus: confStatus, name: cniName ?? null, network: network ?? null, socket, cniVersion }, null, 2) + '\n')
    return 0
  }
  const lines = [`installed the CNI plugin as ${plugin}`]
  if (confFile) {
    lines.push(`${confStatus === 'unchanged' ? 'kept' : 'wrote'} ${confFile}: CNI network "${cniName}" is Tapestry network ${network} through the agent on ${socket}`)
    lines.push(`try: podman run --rm --network ${cniName} IMAGE ip addr   (podman needs network_backend = "cni" and ${dir} in cni_plugin_dirs)`)
  } else {
    lines.push('no network config written: give --network NAME to write one')
  }
  process.stdout.write(lines.join('\n') + '\n')
  return 0
}

async function uninstall(args: string[]): Promise<number> {
  const o = parse(args, ['--dir', '--conf-dir', '--network'], ['--json'], UNINSTALL_USAGE)
  const dir = path.resolve(o.values.get('--dir') ?? DEFAULT_PLUGIN_DIR)
  const confDir = path.resolve(o.values.get('--conf-dir') ?? DEFAULT_CONF_DIR)
  const network = o.values.get('--network')
  const removed: string[] = []
  const files = [path.join(dir, PLUGIN_NAME), ...(network !== undefined ? [conflistPath(confDir, network)] : [])]
  for (const f of files) {
    try {
      fs.unlinkSync(f)
      removed.push(f)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  if (o.flags.has('--json')) process.stdout.write(JSON.stringify({ removed }, null, 2) + '\n')
  else process.stdout.write(removed.length ? removed.map((f) => `removed ${f}\n`).join('') : 'nothing to remove\n')
  return 0
}

export const cniCommand: Command = {
  summary: 'CNI plugin: `tapestry cni install` puts it where podman or containerd find it, with a network config.',
  usage: `${INSTALL_USAGE}\n       ${UNINSTALL_USAGE}\n\n` +
    `  --dir DIR          CNI plugin directory (default ${DEFAULT_PLUGIN_DIR})\n` +
    `  --conf-dir DIR     network config directory (default ${DEFAULT_CONF_DIR}); writes ${PLUGIN_NAME}-NETWORK.conflist\n` +
    '  --network NAME     the Tapestry network containers join (without it only the plugin is installed)\n' +
    "  --socket PATH      the agent's API socket (default: the only /run/tapestry/*.sock)\n" +
    '  --name CNI_NAME    the CNI network name runtimes use, as in `podman run --network CNI_NAME` (default: NAME)\n' +
    `  --cni-version V    cniVersion of the network config (default ${DEFAULT_CNI_VERSION})\n` +
    '  --force            replace a network config file that differs',
  async run(args: string[]): Promise<number> {
    const [sub, ...rest] = args
    try {
      if (sub === 'install') return await install(rest)
      if (sub === 'uninstall') return await uninstall(rest)
      process.stderr.write(`Usage: ${INSTALL_USAGE}\n       ${UNINSTALL_USAGE}\n`)
      return 2
    } catch (err) {
      process.stderr.write(`tapestry cni: ${(err as Error).message}\n`)
      return err instanceof UsageError ? 2 : 1
    }
  },
}

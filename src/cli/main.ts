/**
 * The tapestry command line. Subcommands are listed here and loaded on use, so
 * `tapestry --help` stays fast; each returns an exit code.
 */
import * as path from 'node:path'
import * as fs from 'node:fs'
import { commands, register } from './registry'

export type { Command } from './registry'

export const VERSION: string = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version

register('agent', async () => (await import('./agent-command')).agentCommand, 'agent --config FILE     run the per-host agent (pods, switch, VXLAN)')
register('pod', async () => (await import('./inspect-commands')).podCommand, 'pod list|add|del        list, add or delete pods')
register('svc', async () => (await import('./change-commands')).svcCommand, 'svc list|apply|del        services (VIPs) and their endpoints')
register('conntrack', async () => (await import('./change-commands')).conntrackCommand, 'conntrack list|flush     connections through service VIPs')
register('apply', async () => (await import('./change-commands')).applyCommand, 'apply -f FILE           apply a whole config: only the differences change')
register('fdb', async () => (await import('./inspect-commands')).fdbCommand, 'fdb show [--vni N]      show the forwarding database')
register('peers', async () => (await import('./inspect-commands')).peersCommand, 'peers                   list remote VTEPs')
register('stats', async () => (await import('./inspect-commands')).statsCommand, 'stats                   counters: frames, bytes, drops by reason')
register('capture', async () => (await import('./capture-command')).captureCommand, 'capture --pod NAME ...  pcap from inside the dataplane (--pod, --vni, --underlay)')
register('sniff', async () => (await import('./sniff-command')).sniffCommand, 'sniff [--interface IF]  live VXLAN on the underlay (libpcap), decoded')
register('cni', async () => (await import('./cni-command')).cniCommand, 'cni install|uninstall   the CNI plugin (podman, containerd) and a network config')
register('cluster', async () => (await import('./cluster-command')).clusterCommand, 'cluster svc|nodes       services and nodes kept in etcd (cluster mode)')

function help(): string {
  const lines = [...commands.values()].map((c) => `  ${c.summary}`)
  return `tapestry ${VERSION}: a userspace VXLAN/bridge dataplane for container networks

Usage: tapestry <command> [options]

Commands:
${lines.join('\n')}

Every inspection command takes --json and --socket PATH (default /run/tapestry/<node>.sock).

Options:
  -h, --help              show this help (or: tapestry <command> --help)
  -V, --version           print the version
`
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(help())
    return 0
  }
  if (cmd === '-V' || cmd === '--version') {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  const entry = commands.get(cmd)
  if (!entry) {
    process.stderr.write(`tapestry: unknown command "${cmd}" (see tapestry --help)\n`)
    return 2
  }
  const c = await entry.load()
  if (rest.includes('-h') || rest.includes('--help')) {
    process.stdout.write(`${c.summary}\n\nUsage: ${c.usage}\n`)
    return 0
  }
  return c.run(rest)
}

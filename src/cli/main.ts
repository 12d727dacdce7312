/**
 * The tapestry command line. Subcommands register here; each returns an exit code.
 */
import * as path from 'node:path'
import * as fs from 'node:fs'

export const VERSION: string = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version

export interface Command {
  summary: string
  usage: string
  run(args: string[]): Promise<number>
}

const commands = new Map<string, () => Promise<Command>>()

export function register(name: string, load: () => Promise<Command>): void {
  commands.set(name, load)
}

register('agent', async () => (await import('./agent-command')).agentCommand)

const HELP = `tapestry ${VERSION}: a userspace VXLAN/bridge dataplane for container networks

Usage: tapestry <command> [options]

Commands:
  agent --config FILE     run the per-host agent (pods, switch, VXLAN)

Options:
  -h, --help              show this help (or: tapestry <command> --help)
  -V, --version           print the version
`

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(HELP)
    return 0
  }
  if (cmd === '-V' || cmd === '--version') {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  const load = commands.get(cmd)
  if (!load) {
    process.stderr.write(`tapestry: unknown command "${cmd}" (see tapestry --help)\n`)
    return 2
  }
  const c = await load()
  if (rest.includes('-h') || rest.includes('--help')) {
    process.stdout.write(`${c.summary}\n\nUsage: ${c.usage}\n`)
    return 0
  }
  return c.run(rest)
}

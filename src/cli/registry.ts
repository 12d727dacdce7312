/** The table of CLI subcommands. Each command module registers itself here; loading is lazy. */
export interface Command {
  summary: string
  usage: string
  run(args: string[]): Promise<number>
}

export const commands = new Map<string, { summary: string; load: () => Promise<Command> }>()

export function register(name: string, load: () => Promise<Command>, summary = ''): void {
  commands.set(name, { summary, load })
}

import { TapestryError } from '../lib/errors'

export const CONFIG_INVALID = 'TAPESTRY_CONFIG_INVALID'
export const CONFIG_UNREADABLE = 'TAPESTRY_CONFIG_UNREADABLE'

/**
 * One thing wrong with a config. `path` is the key, as `pods[2].ip`; it is ''
 * for the config as a whole and for YAML syntax errors. `line` and `column`
 * (1-based) are set when the config came from YAML text and the key was found.
 */
export interface ConfigProblem {
  path: string
  message: string
  line?: number
  column?: number
}

/** `<path>: <reason>`; a YAML syntax error has no key, so it shows where it is instead. */
export function formatProblem(p: ConfigProblem): string {
  if (p.path !== '') return `${p.path}: ${p.message}`
  if (p.line !== undefined) return `line ${p.line}, column ${p.column ?? 1}: ${p.message}`
  return `config: ${p.message}`
}

/**
 * A config that breaks one or more rules. `problems` lists all of them, and
 * the message has one `<path>: <reason>` line per problem. Nothing was applied.
 */
export class ConfigError extends TapestryError {
  readonly problems: ConfigProblem[]
  /** The file the config was read from, when it came from one. */
  readonly file: string | undefined
  constructor(problems: ConfigProblem[], file?: string) {
    super(CONFIG_INVALID, problems.map(formatProblem).join('\n'))
    this.problems = problems
    this.file = file
  }
}

/** The config file could not be read at all (missing, unreadable); `cause` is the fs error. */
export class ConfigReadError extends TapestryError {
  readonly file: string
  constructor(file: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause)
    super(CONFIG_UNREADABLE, `cannot read config file ${file}: ${why}`, { cause })
    this.file = file
  }
}

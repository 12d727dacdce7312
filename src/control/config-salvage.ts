/**
 * Keeps the parts of a config that pass the schema when the whole does not,
 * so the cross-field rules can still run and one pass reports every problem:
 * a pod with a bad `ip` still has its netns checked and its name counted for
 * duplicates.
 *
 * Objects and lists are salvaged member by member; anything else (a number, an
 * address) is kept whole or dropped. Unknown keys are dropped. Defaults apply
 * as usual, so a missing `vxlan` section salvages to its defaults.
 */
import type { z } from 'zod'
import { safeParse } from 'zod'
import { schemaDef } from './config-issues'
import type { CidrValue, Ipv4Value, MacValue } from './config-schema'

/** Values the schema parses whole: they are present and valid, or absent. */
type Leaf = string | number | boolean | Ipv4Value | CidrValue | MacValue

/** What survives of a `T`: every member optional, every list element possibly missing. */
export type Salvaged<T> = T extends Leaf
  ? T
  : T extends readonly (infer E)[]
    ? (Salvaged<E> | undefined)[]
    : { [K in keyof T]?: Salvaged<T[K]> }

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function salvage(schema: z.core.$ZodType, input: unknown): unknown {
  const r = safeParse(schema, input)
  if (r.success) return r.data
  const def = schemaDef(schema)
  switch (def.type) {
    case 'default':
    case 'prefault':
    case 'optional':
      return def.innerType ? salvage(def.innerType, input) : undefined
    case 'object': {
      if (!isMapping(input) || !def.shape) return undefined
      const out: Record<string, unknown> = {}
      for (const [key, member] of Object.entries(def.shape)) {
        const v = salvage(member, input[key])
        if (v !== undefined) out[key] = v
      }
      return out
    }
    case 'array':
      if (!Array.isArray(input) || !def.element) return undefined
      return input.map((e) => salvage(def.element as z.core.$ZodType, e))
    default:
      return undefined
  }
}

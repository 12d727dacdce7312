/**
 * Turns zod issues into config problems of the form `<path>: <reason>`, where
 * the reason names the bad value ("70000 is not an integer in 1..65535").
 *
 * Two pieces work together:
 * - `configErrorMap` is passed to `safeParse` and words every issue a schema
 *   did not word itself (type errors, ranges, enums). Schemas that know better
 *   (addresses, names) set their own message and this map is not consulted.
 * - `issuesToProblems` flattens the issues: one problem per unknown key, with
 *   a "did you mean" hint when a known key is close.
 */
import type { z } from 'zod'

export type ConfigPath = readonly (string | number)[]

/** A problem before its path is rendered; the path is kept as segments so the YAML loader can find its line. */
export interface PathProblem { path: ConfigPath; message: string }

/** `['pods', 2, 'ip']` -> `pods[2].ip`; keys that are not plain words are quoted: `node["a b"]`. */
export function formatPath(path: ConfigPath): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`
    else out += `[${JSON.stringify(seg)}]`
  }
  return out
}

/** A value as it appears in a type error: strings quoted, so `"1500"` reads differently from `1500`. */
export function showValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v)
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return String(v)
}

/** Text that failed a format check, bare when that is unambiguous (`10.244.1.300/16 is not ...`). */
export function showText(s: string): string {
  return /^[\x21-\x7e]+$/.test(s) && !s.includes('"') ? s : JSON.stringify(s)
}

const EXPECTED: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
}

/** Words the issues that schemas leave to zod; returns undefined for codes it does not know (zod's wording then). */
export const configErrorMap: z.core.$ZodErrorMap = (iss) => {
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return 'is required'
      return `${showValue(iss.input)} is not ${EXPECTED[iss.expected] ?? iss.expected}`
    case 'too_small':
      if (iss.origin !== 'number' && iss.origin !== 'int') return `${showValue(iss.input)} is too short (minimum length ${String(iss.minimum)})`
      return iss.inclusive
        ? `${showValue(iss.input)} is less than the minimum ${String(iss.minimum)}`
        : `${showValue(iss.input)} is not greater than ${String(iss.minimum)}`
    case 'too_big':
      if (iss.origin !== 'number' && iss.origin !== 'int') return `${showValue(iss.input)} is too long (maximum length ${String(iss.maximum)})`
      return iss.inclusive
        ? `${showValue(iss.input)} is more than the maximum ${String(iss.maximum)}`
        : `${showValue(iss.input)} is not less than ${String(iss.maximum)}`
    case 'invalid_value':
      return `${showValue(iss.input)} is not one of ${iss.values.map((v) => String(v)).join(', ')}`
    case 'unrecognized_keys':
      return 'unknown key'
    default:
      return undefined
  }
}

/** Flattens zod issues into problems; `root` is the schema that was parsed, used to suggest a key for a misspelt one. */
export function issuesToProblems(issues: readonly z.core.$ZodIssue[], root: z.core.$ZodType): PathProblem[] {
  const out: PathProblem[] = []
  for (const iss of issues) {
    const path = iss.path.map((p) => (typeof p === 'symbol' ? String(p) : p))
    if (iss.code === 'unrecognized_keys') {
      const known = objectKeysAt(root, path)
      for (const key of iss.keys) {
        const near = known.find((k) => isNear(k, key))
        out.push({ path: [...path, key], message: near ? `unknown key (did you mean ${near}?)` : 'unknown key' })
      }
    } else {
      out.push({ path, message: iss.message })
    }
  }
  return out
}

/** The subset of zod's schema definitions the walkers need; zod exposes them on `_zod.def`. */
export interface SchemaDef {
  type: string
  innerType?: z.core.$ZodType
  element?: z.core.$ZodType
  shape?: Record<string, z.core.$ZodType>
}

export function schemaDef(s: z.core.$ZodType): SchemaDef {
  return s._zod.def as unknown as SchemaDef
}

/** Wrappers that do not change the shape of a value (defaults, optional). */
const WRAPPERS = new Set(['default', 'prefault', 'optional', 'nullable', 'readonly'])

function unwrap(s: z.core.$ZodType): z.core.$ZodType {
  let def = schemaDef(s)
  while (WRAPPERS.has(def.type) && def.innerType) { s = def.innerType; def = schemaDef(s) }
  return s
}

/** The keys the object schema at `path` accepts, or [] if there is none. */
function objectKeysAt(root: z.core.$ZodType, path: ConfigPath): string[] {
  let s = unwrap(root)
  for (const seg of path) {
    const def = schemaDef(s)
    const next = typeof seg === 'number' ? def.element : def.shape?.[seg]
    if (!next) return []
    s = unwrap(next)
  }
  return Object.keys(schemaDef(s).shape ?? {})
}

/** Same key up to case, or a typo away: one edit for short keys, two for keys of six or more letters. */
function isNear(known: string, given: string): boolean {
  const a = known.toLowerCase(), b = given.toLowerCase()
  if (a === b) return true
  const shorter = Math.min(a.length, b.length)
  if (shorter < 3) return false
  const limit = shorter >= 6 ? 2 : 1
  if (Math.abs(a.length - b.length) > limit) return false
  // Levenshtein distance, one row at a time.
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length] <= limit
}

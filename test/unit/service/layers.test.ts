import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'

const NPM_ALLOWED = new Set(['dns-packet', 'yaml'])

// The service layer imports only wire/ and lib/ (and itself): no I/O, no
// datapath, no switch or overlay. Node built-ins are not allowed either; of npm
// packages only the DNS codec and the YAML parser (for manifests).
const SRC = path.join(__dirname, '..', '..', '..', '..', 'src')

test('src/service imports only src/wire, src/lib and itself', () => {
  const dir = path.join(SRC, 'service')
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.ts'))
  assert.ok(files.length >= 8)
  const bad: string[] = []
  for (const f of files) {
    const text = fs.readFileSync(path.join(dir, f), 'utf8')
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|require\(\s*)['"]([^'"]+)['"]/g)) {
      const spec = m[1]
      if (!spec.startsWith('.')) { if (!NPM_ALLOWED.has(spec)) bad.push(`${f}: ${spec}`); continue }
      const to = path.relative(SRC, path.resolve(dir, spec)).split(path.sep)[0]
      if (!['wire', 'lib', 'service'].includes(to)) bad.push(`${f}: ${spec}`)
    }
  }
  assert.deepEqual(bad, [])
})

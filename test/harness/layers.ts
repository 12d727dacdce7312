/**
 * The layer rule, checked: a module under src/<layer>/ imports only from layers
 * below it. Run by `npm run lint` and by the unit test layers.test.ts.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

/** Each layer with the layers it may import (itself always allowed). */
export const LAYERS: Record<string, string[]> = {
  wire: [],
  lib: ['wire'],
  switch: ['wire', 'lib'],
  overlay: ['wire', 'lib'],
  service: ['wire', 'lib'],
  ports: ['wire', 'lib'],
  datapath: ['wire', 'lib', 'switch', 'overlay', 'service', 'ports'],
  observe: ['wire', 'lib', 'switch', 'overlay', 'service', 'ports', 'datapath'],
  control: ['wire', 'lib', 'switch', 'overlay', 'service', 'ports', 'datapath', 'observe', 'agent'],
  cli: ['wire', 'lib', 'switch', 'overlay', 'service', 'ports', 'datapath', 'observe', 'control', 'agent'],
  cni: ['wire', 'lib', 'control', 'cli'],
}

export interface Violation { file: string; imports: string; from: string; to: string }

export function checkLayers(srcDir: string): Violation[] {
  const out: Violation[] = []
  const walk = (dir: string): string[] => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [])
  for (const file of walk(srcDir)) {
    const rel = path.relative(srcDir, file)
    const from = rel.includes(path.sep) ? rel.split(path.sep)[0] : path.basename(rel, '.ts')
    const allowed = LAYERS[from]
    const text = fs.readFileSync(file, 'utf8')
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|require\(\s*)['"](\.[^'"]+)['"]/g)) {
      const target = path.relative(srcDir, path.resolve(path.dirname(file), m[1]))
      const to = target.includes(path.sep) ? target.split(path.sep)[0] : target
      if (to === from || to.startsWith('..')) continue
      if (allowed === undefined) continue // top-level composition roots (agent.ts) may import any layer
      if (!allowed.includes(to)) out.push({ file: rel, imports: m[1], from, to })
    }
    if (from !== 'ports' && /tapestry_native|build\/Release/.test(text)) out.push({ file: rel, imports: 'native addon', from, to: 'native' })
  }
  return out
}

if (require.main === module) {
  const v = checkLayers(path.join(__dirname, '..', '..', '..', 'src'))
  for (const x of v) process.stderr.write(`${x.file}: the ${x.from} layer must not import ${x.imports} (${x.to})\n`)
  if (v.length > 0) process.exit(1)
  process.stdout.write('layers: ok\n')
}

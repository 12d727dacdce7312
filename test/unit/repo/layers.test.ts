import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { checkLayers } from '../../harness/layers'

test('src/ respects the layer rule', () => {
  const v = checkLayers(path.join(__dirname, '..', '..', '..', '..', 'src'))
  assert.deepEqual(v, [])
})

test('the layer check catches an upward import', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-'))
  try {
    fs.mkdirSync(path.join(dir, 'wire'))
    fs.mkdirSync(path.join(dir, 'switch'))
    fs.writeFileSync(path.join(dir, 'switch', 'fdb.ts'), "export const x = 1\n")
    fs.writeFileSync(path.join(dir, 'wire', 'bad.ts'), "import { x } from '../switch/fdb'\n")
    const v = checkLayers(dir)
    assert.equal(v.length, 1)
    assert.equal(v[0].from, 'wire')
    assert.equal(v[0].to, 'switch')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, parseConfig } from '../../../src/control/config'
import { anyNetns, validConfig } from '../control/config-fixture'

test('metrics.listen: default 127.0.0.1:9464, "" turns it off, anything else must be HOST:PORT', () => {
  assert.deepEqual(parseConfig(validConfig(), anyNetns).metrics, { listen: '127.0.0.1:9464' })
  for (const listen of ['', '0.0.0.0:9100', '[::1]:9464', 'localhost:9464']) {
    const cfg = validConfig()
    cfg.metrics = { listen }
    assert.deepEqual(parseConfig(cfg, anyNetns).metrics, { listen })
  }
  for (const [bad, why] of [['9464', /"9464" is not HOST:PORT/], ['127.0.0.1:0', /is not HOST:PORT/], [9464, /9464 is not HOST:PORT or '' \(off\)/]] as const) {
    const cfg = validConfig()
    cfg.metrics = { listen: bad }
    assert.throws(() => parseConfig(cfg, anyNetns), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      const p = err.problems.find((x) => x.path === 'metrics.listen')
      assert.ok(p, `a problem at metrics.listen: ${err.message}`)
      assert.match(p.message, why)
      return true
    })
  }
  const cfg = validConfig()
  cfg.metrics = { enabled: false }
  assert.throws(() => parseConfig(cfg, anyNetns), /metrics/)
})

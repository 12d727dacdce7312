import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, parseConfig } from '../../../src/control/config'
import type { ConfigProblem } from '../../../src/control/config'
import { anyNetns, validConfig } from './config-fixture'

function clusterConfig(cluster: unknown): Record<string, any> {
  const cfg = validConfig()
  cfg.networks = cfg.networks.filter((n: { name: string }) => n.name === 'blue')
  cfg.pods = cfg.pods.filter((p: { network: string }) => p.network === 'blue')
  delete cfg.peers
  cfg.cluster = cluster
  return cfg
}

function problemsOf(cfg: unknown): ConfigProblem[] {
  try {
    parseConfig(cfg, anyNetns)
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return err.problems
  }
  return assert.fail('the config was accepted')
}

test('no cluster section: cluster is null', () => {
  assert.equal(parseConfig(validConfig(), anyNetns).cluster, null)
})

test('a cluster section gets its defaults, and endpoints are normalized with the port', () => {
  const c = parseConfig(clusterConfig({ etcd: ['http://192.168.250.100:2379', 'https://etcd.example:2379/', 'http://10.0.0.7'] }), anyNetns)
  assert.deepEqual(c.cluster, {
    etcd: ['http://192.168.250.100:2379', 'https://etcd.example:2379', 'http://10.0.0.7:2379'],
    prefix: '/tapestry', leaseTTL: 10, blockPrefix: 24,
  })
  assert.deepEqual(c.peers, [], 'no peer list is needed')
})

test('explicit cluster values are kept', () => {
  const c = parseConfig(clusterConfig({ etcd: ['http://192.168.250.100:2379'], prefix: '/tapestry/lab-1', leaseTTL: 5, blockPrefix: 26 }), anyNetns)
  assert.deepEqual(c.cluster, { etcd: ['http://192.168.250.100:2379'], prefix: '/tapestry/lab-1', leaseTTL: 5, blockPrefix: 26 })
})

test('bad cluster values are reported with their key and reason', () => {
  const rows: [unknown, string, RegExp][] = [
    [{ etcd: [] }, 'cluster.etcd', /at least one/],
    [{}, 'cluster.etcd', /is required/],
    [{ etcd: 'http://a:2379' }, 'cluster.etcd', /not a list/],
    [{ etcd: ['192.168.250.100:2379'] }, 'cluster.etcd[0]', /not an http:\/\/ or https:\/\/ URL|not a URL/],
    [{ etcd: ['not a url'] }, 'cluster.etcd[0]', /not a URL/],
    [{ etcd: ['ftp://a:2379'] }, 'cluster.etcd[0]', /http:\/\/ or https:\/\//],
    [{ etcd: ['http://a:2379/v3'] }, 'cluster.etcd[0]', /no path/],
    [{ etcd: ['http://a:2379', 'http://a:2379/'] }, 'cluster.etcd[1]', /already listed/],
    [{ etcd: ['http://a:2379'], prefix: 'tapestry' }, 'cluster.prefix', /not a key prefix/],
    [{ etcd: ['http://a:2379'], prefix: '/tapestry/' }, 'cluster.prefix', /trailing/],
    [{ etcd: ['http://a:2379'], leaseTTL: 1 }, 'cluster.leaseTTL', /2\.\.3600/],
    [{ etcd: ['http://a:2379'], leaseTTL: 2.5 }, 'cluster.leaseTTL', /integer/],
    [{ etcd: ['http://a:2379'], blockPrefix: 31 }, 'cluster.blockPrefix', /2\.\.30/],
    [{ etcd: ['http://a:2379'], blockPrefix: 16 }, 'cluster.blockPrefix', /do not split network blue's subnet 10\.244\.0\.0\/16/],
    [{ etcd: ['http://a:2379'], extra: 1 }, 'cluster.extra', /./],
  ]
  for (const [cluster, path, reason] of rows) {
    const problems = problemsOf(clusterConfig(cluster))
    assert.equal(problems.length, 1, `${JSON.stringify(cluster)}: ${JSON.stringify(problems)}`)
    assert.equal(problems[0].path, path, JSON.stringify(cluster))
    assert.match(problems[0].message, reason, JSON.stringify(cluster))
  }
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { ConfigError, ConfigReadError, derivePodMac, loadConfigFile, parseConfig, parseConfigText } from '../../../src/control/config'
import type { ConfigProblem, ParseOptions } from '../../../src/control/config'
import { TapestryError } from '../../../src/lib/errors'
import { macFormat } from '../../../src/wire/addr'
import { anyNetns, validConfig } from './config-fixture'

type Cfg = ReturnType<typeof validConfig>

function problemsOf(run: () => unknown): ConfigProblem[] {
  try {
    run()
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    return err.problems
  }
  assert.fail('expected a ConfigError, but the config was accepted')
}

/** Rows: break one thing in a valid config; exactly one problem, at `path`, whose reason contains `reason`. */
interface Row {
  name: string
  breakIt: (cfg: Cfg) => void
  path: string
  reason: string
  opts?: ParseOptions
}

const rows: Row[] = [
  // Unknown keys, at every level
  { name: 'unknown top-level key', breakIt: (c) => { c.foo = 1 }, path: 'foo', reason: 'unknown key' },
  { name: 'unknown key in node, with a hint', breakIt: (c) => { c.node.vxlanport = 8472 }, path: 'node.vxlanport', reason: 'unknown key (did you mean vxlanPort?)' },
  { name: 'unknown key in a network', breakIt: (c) => { c.networks[1].mtu = 1400 }, path: 'networks[1].mtu', reason: 'unknown key' },
  { name: 'unknown key in a pod', breakIt: (c) => { c.pods[2].colour = 'red' }, path: 'pods[2].colour', reason: 'unknown key' },
  { name: 'unknown key in fdb', breakIt: (c) => { c.fdb = { maxEntires: 10 } }, path: 'fdb.maxEntires', reason: 'did you mean maxEntries?' },

  // Required keys and types
  { name: 'missing network vni', breakIt: (c) => { delete c.networks[0].vni }, path: 'networks[0].vni', reason: 'is required' },
  { name: 'missing node', breakIt: (c) => { delete c.node }, path: 'node', reason: 'is required' },
  { name: 'vni given as a string', breakIt: (c) => { c.networks[0].vni = '42' }, path: 'networks[0].vni', reason: '"42" is not an integer in 1..16777215' },
  { name: 'a pod that is not a mapping', breakIt: (c) => { c.pods[1] = 'web-2' }, path: 'pods[1]', reason: '"web-2" is not a mapping' },
  { name: 'networks that is not a list', breakIt: (c) => { c.networks = { blue: 1 }; c.pods = [] }, path: 'networks', reason: 'is not a list' },
  { name: 'boolean given as yes', breakIt: (c) => { c.offloads = 'yes' }, path: 'offloads', reason: '"yes" is not true or false' },
  { name: 'receive buffer too small', breakIt: (c) => { c.vxlan = { rcvbufBytes: 4096 } }, path: 'vxlan.rcvbufBytes', reason: '4096 is not an integer number of bytes from 65536 to 1073741824' },
  { name: 'priority lane given as a string', breakIt: (c) => { c.priorityLane = 'on' }, path: 'priorityLane', reason: '"on" is not true or false' },
  { name: 'receive batch budget too small', breakIt: (c) => { c.rxBatchBytes = 1500 }, path: 'rxBatchBytes', reason: '1500 is not 0 or an integer number of bytes from 16384 to 67108864' },
  { name: 'receive batch budget not an integer', breakIt: (c) => { c.rxBatchBytes = 65536.5 }, path: 'rxBatchBytes', reason: '65536.5 is not 0 or an integer number of bytes from 16384 to 67108864' },
  { name: 'workers zero', breakIt: (c) => { c.workers = 0 }, path: 'workers', reason: '0 is not an integer from 1 to 16' },
  { name: 'workers not an integer', breakIt: (c) => { c.workers = 1.5 }, path: 'workers', reason: '1.5 is not an integer from 1 to 16' },
  { name: 'workers too many', breakIt: (c) => { c.workers = 17 }, path: 'workers', reason: '17 is not an integer from 1 to 16' },
  { name: 'busy-poll window too long', breakIt: (c) => { c.busyPollUs = 200000 }, path: 'busyPollUs', reason: '200000 is not an integer from 0 to 100000 (microseconds)' },
  { name: 'cpu latency not an integer', breakIt: (c) => { c.cpuLatencyUs = 2.5 }, path: 'cpuLatencyUs', reason: '2.5 is not an integer from 0 to 1000000 (microseconds)' },
  { name: 'cpu latency negative', breakIt: (c) => { c.cpuLatencyUs = -1 }, path: 'cpuLatencyUs', reason: '-1 is not an integer from 0 to 1000000 (microseconds)' },
  { name: 'unknown log level', breakIt: (c) => { c.log = { level: 'verbose' } }, path: 'log.level', reason: '"verbose" is not one of trace, debug, info' },

  // Names
  { name: 'node name with capitals', breakIt: (c) => { c.node.name = 'Host_A' }, path: 'node.name', reason: '"Host_A" is not a valid name' },
  { name: 'node name of 64 characters', breakIt: (c) => { c.node.name = 'a'.repeat(64) }, path: 'node.name', reason: 'is not a valid name' },
  { name: 'network name ending in -', breakIt: (c) => { c.networks[1].name = 'red-'; c.pods = c.pods.slice(0, 2) }, path: 'networks[1].name', reason: 'is not a valid name' },

  // Addresses
  { name: 'bad pod CIDR', breakIt: (c) => { c.pods[2].ip = '10.244.1.300/16' }, path: 'pods[2].ip', reason: '10.244.1.300/16 is not an IPv4 CIDR' },
  { name: 'pod ip without a prefix', breakIt: (c) => { c.pods[0].ip = '10.244.1.2' }, path: 'pods[0].ip', reason: '10.244.1.2 is not an IPv4 CIDR' },
  { name: 'bad underlayIP', breakIt: (c) => { c.node.underlayIP = '192.168.250' }, path: 'node.underlayIP', reason: '192.168.250 is not an IPv4 address' },
  { name: 'underlayIP 0.0.0.0', breakIt: (c) => { c.node.underlayIP = '0.0.0.0' }, path: 'node.underlayIP', reason: 'is not a unicast IPv4 address' },
  { name: 'multicast peer', breakIt: (c) => { c.peers.push('239.1.1.1') }, path: 'peers[2]', reason: '239.1.1.1 is not a unicast IPv4 address' },
  { name: 'bad peer', breakIt: (c) => { c.peers[1] = 'host-b' }, path: 'peers[1]', reason: 'host-b is not an IPv4 address' },
  { name: 'bad subnet', breakIt: (c) => { c.networks[1].subnet = '10.250.0.0/33'; c.pods = c.pods.slice(0, 2) }, path: 'networks[1].subnet', reason: '10.250.0.0/33 is not an IPv4 CIDR' },
  { name: 'subnet with host bits', breakIt: (c) => { c.networks[0].subnet = '10.244.0.1/16'; c.networks[0].gateway = undefined; c.pods = [] },
    path: 'networks[0].subnet', reason: 'has host bits set (did you mean 10.244.0.0/16?)' },
  { name: 'subnet too small for hosts', breakIt: (c) => { c.networks[1].subnet = '10.250.0.0/31'; c.pods = c.pods.slice(0, 2) }, path: 'networks[1].subnet', reason: 'prefix /31' },
  { name: 'bad gateway', breakIt: (c) => { c.networks[0].gateway = '10.244.0.x' }, path: 'networks[0].gateway', reason: '10.244.0.x is not an IPv4 address' },
  { name: 'gateway outside the subnet', breakIt: (c) => { c.networks[0].gateway = '10.245.0.1' }, path: 'networks[0].gateway', reason: '10.245.0.1 is outside the subnet 10.244.0.0/16' },
  { name: 'gateway on the broadcast address', breakIt: (c) => { c.networks[0].gateway = '10.244.255.255' }, path: 'networks[0].gateway', reason: 'is the broadcast address of the subnet' },
  { name: 'bad MAC', breakIt: (c) => { c.pods[1].mac = '02:00:0a:f4:01' }, path: 'pods[1].mac', reason: '02:00:0a:f4:01 is not a MAC address' },
  { name: 'multicast pod MAC', breakIt: (c) => { c.pods[1].mac = '01:00:5e:00:00:01' }, path: 'pods[1].mac', reason: '01:00:5e:00:00:01 is a multicast MAC' },
  { name: 'broadcast pod MAC', breakIt: (c) => { c.pods[1].mac = 'ff:ff:ff:ff:ff:ff' }, path: 'pods[1].mac', reason: 'is a multicast MAC' },
  { name: 'all-zero pod MAC', breakIt: (c) => { c.pods[1].mac = '00:00:00:00:00:00' }, path: 'pods[1].mac', reason: 'all-zero MAC' },

  // Pod IP against its network
  { name: 'pod IP outside its subnet', breakIt: (c) => { c.pods[1].ip = '10.245.0.2/16' }, path: 'pods[1].ip',
    reason: "10.245.0.2/16 is outside network blue's subnet 10.244.0.0/16" },
  { name: 'pod IP on the network address', breakIt: (c) => { c.pods[0].ip = '10.244.0.0/16' }, path: 'pods[0].ip', reason: 'is the network address of network blue' },
  { name: 'pod IP on the broadcast address', breakIt: (c) => { c.pods[2].ip = '10.250.0.255/24' }, path: 'pods[2].ip', reason: 'is the broadcast address of network red' },
  { name: 'pod IP on the gateway', breakIt: (c) => { c.pods[0].ip = '10.244.0.1/16' }, path: 'pods[0].ip', reason: "10.244.0.1/16 is network blue's gateway" },
  { name: 'pod prefix shorter than its subnet', breakIt: (c) => { c.pods[0].ip = '10.244.1.2/8' }, path: 'pods[0].ip', reason: 'shorter prefix' },

  // Uniqueness
  { name: 'duplicate VNI', breakIt: (c) => { c.networks[1].vni = 42 }, path: 'networks[1].vni', reason: '42 is already used by networks[0]' },
  { name: 'duplicate network name', breakIt: (c) => { c.networks[1].name = 'blue'; c.pods = c.pods.slice(0, 2) }, path: 'networks[1].name', reason: '"blue" is already used by networks[0]' },
  { name: 'duplicate pod name', breakIt: (c) => { c.pods[2].name = 'web-1' }, path: 'pods[2].name', reason: '"web-1" is already used by pods[0]' },
  { name: 'duplicate pod IP in one network', breakIt: (c) => { c.pods[1].ip = '10.244.1.2/16' }, path: 'pods[1].ip', reason: '10.244.1.2 is already used by pods[0] in network blue' },
  { name: 'duplicate MAC across networks', breakIt: (c) => { c.pods[2].mac = '02:00:0a:f4:01:03' }, path: 'pods[2].mac', reason: '02:00:0a:f4:01:03 is already used by pods[1]' },
  { name: 'explicit MAC equal to a derived one', breakIt: (c) => { c.pods[1].mac = macFormat(derivePodMac('web-1').hi, derivePodMac('web-1').lo) },
    path: 'pods[1].mac', reason: 'is already used by pods[0]' },
  { name: 'duplicate peer', breakIt: (c) => { c.peers.push('192.168.250.2') }, path: 'peers[2]', reason: '192.168.250.2 is already listed as peers[0]' },
  { name: 'underlayIP listed in peers', breakIt: (c) => { c.peers.push('192.168.250.1') }, path: 'peers[2]', reason: "192.168.250.1 is this node's node.underlayIP" },
  { name: 'two pods with one ifname in one netns', breakIt: (c) => { c.pods[1].netns = 'pA' }, path: 'pods[1].ifname', reason: 'eth0 is already used in netns pA by pods[0]' },

  // References
  { name: 'unknown network', breakIt: (c) => { c.pods[2].network = 'green' }, path: 'pods[2].network', reason: 'unknown network "green" (known: blue, red)' },
  { name: 'netns that does not exist', breakIt: (c) => { c.pods[0].netns = 'pX' }, path: 'pods[0].netns',
    reason: 'network namespace "pX" does not exist (looked in /var/run/netns)', opts: { netnsExists: (n) => n !== 'pX' } },
  { name: 'netns path that does not exist', breakIt: (c) => { c.pods[0].netns = '/proc/999999999/ns/net' }, path: 'pods[0].netns',
    reason: 'network namespace file /proc/999999999/ns/net does not exist', opts: { netnsExists: (n) => !n.startsWith('/') } },
  { name: 'netns that is a relative path', breakIt: (c) => { c.pods[0].netns = 'run/pA' }, path: 'pods[0].netns', reason: 'is neither a name under /var/run/netns nor an absolute path' },

  // Interface names
  { name: 'ifname of 16 bytes', breakIt: (c) => { c.pods[0].ifname = 'a'.repeat(16) }, path: 'pods[0].ifname', reason: 'is not a valid interface name' },
  { name: 'ifname with a slash', breakIt: (c) => { c.pods[0].ifname = 'eth/0' }, path: 'pods[0].ifname', reason: '"eth/0" is not a valid interface name' },
  { name: 'ifname with a space', breakIt: (c) => { c.pods[0].ifname = 'eth 0' }, path: 'pods[0].ifname', reason: 'is not a valid interface name' },

  // Numbers and ranges
  { name: 'vni 0', breakIt: (c) => { c.networks[0].vni = 0 }, path: 'networks[0].vni', reason: '0 is not an integer in 1..16777215' },
  { name: 'vni above 24 bits', breakIt: (c) => { c.networks[0].vni = 16777216 }, path: 'networks[0].vni', reason: '16777216 is not an integer in 1..16777215' },
  { name: 'vxlanPort above 65535', breakIt: (c) => { c.node.vxlanPort = 70000 }, path: 'node.vxlanPort', reason: '70000 is not an integer in 1..65535' },
  { name: 'srcPortMin 0', breakIt: (c) => { c.vxlan = { srcPortMin: 0 } }, path: 'vxlan.srcPortMin', reason: '0 is not an integer in 1..65535' },
  { name: 'srcPortMin above srcPortMax', breakIt: (c) => { c.vxlan = { srcPortMin: 50000, srcPortMax: 40000 } }, path: 'vxlan.srcPortMin',
    reason: '50000 is more than vxlan.srcPortMax 40000' },
  { name: 'mtu below 576', breakIt: (c) => { c.node.mtu = 500 }, path: 'node.mtu', reason: '500 is not an integer in 576..65535' },
  { name: 'mtu above 65535', breakIt: (c) => { c.node.mtu = 65536 }, path: 'node.mtu', reason: 'is not an integer in 576..65535' },
  { name: 'podMtu above mtu - 50', breakIt: (c) => { c.node.podMtu = 1451 }, path: 'node.podMtu', reason: '1451 is more than mtu - 50 = 1450' },
  { name: 'fdb ageSeconds 0', breakIt: (c) => { c.fdb = { ageSeconds: 0 } }, path: 'fdb.ageSeconds', reason: '0 is not a positive number' },
  { name: 'fdb maxEntries -1', breakIt: (c) => { c.fdb = { maxEntries: -1 } }, path: 'fdb.maxEntries', reason: '-1 is not a positive integer' },
  { name: 'fdb maxEntries 0', breakIt: (c) => { c.fdb = { maxEntries: 0 } }, path: 'fdb.maxEntries', reason: '0 is not a positive integer' },
  { name: 'fdb maxPerVni negative', breakIt: (c) => { c.fdb = { maxPerVni: -1 } }, path: 'fdb.maxPerVni', reason: '-1 is not a non-negative integer' },
  { name: 'fdb maxPerPort fractional', breakIt: (c) => { c.fdb = { maxPerPort: 1.5 } }, path: 'fdb.maxPerPort', reason: '1.5 is not a non-negative integer' },
]

for (const row of rows) {
  test(`rejects ${row.name}`, () => {
    const cfg = validConfig()
    row.breakIt(cfg)
    const problems = problemsOf(() => parseConfig(cfg, row.opts ?? anyNetns))
    assert.deepEqual(problems.map((p) => p.path), [row.path], `problems: ${JSON.stringify(problems)}`)
    assert.ok(problems[0].message.includes(row.reason), `"${problems[0].message}" should contain "${row.reason}"`)
  })
}

test('a misspelt required key reports both the unknown key and the missing one', () => {
  const cfg = validConfig()
  cfg.node = { name: 'host-a', underlayIp: '192.168.250.1' }
  const problems = problemsOf(() => parseConfig(cfg, anyNetns))
  assert.deepEqual(problems, [
    { path: 'node.underlayIP', message: 'is required' },
    { path: 'node.underlayIp', message: 'unknown key (did you mean underlayIP?)' },
  ])
})

test('a config that is not a mapping has one problem with an empty path', () => {
  assert.deepEqual(problemsOf(() => parseConfig([1, 2])), [{ path: '', message: 'a list is not a mapping' }])
  assert.deepEqual(problemsOf(() => parseConfig(null)).map((p) => p.path), [''])
})

test('ConfigError has the stable code and is a TapestryError', () => {
  try {
    parseConfig({}, anyNetns)
    assert.fail('accepted an empty config')
  } catch (err) {
    assert.ok(err instanceof ConfigError)
    assert.ok(err instanceof TapestryError)
    assert.equal(err.code, 'TAPESTRY_CONFIG_INVALID')
    assert.equal(err.name, 'ConfigError')
    assert.equal(err.message, 'node: is required')
  }
})

test('a config with three problems reports all three, one per line', () => {
  const cfg = validConfig()
  cfg.foo = true // unknown key: a schema problem
  cfg.networks[1].vni = 42 // duplicate: a rule over networks
  cfg.pods[1].ip = '10.245.0.2/16' // outside blue: a rule over pods
  try {
    parseConfig(cfg, anyNetns)
    assert.fail('accepted a broken config')
  } catch (err) {
    assert.ok(err instanceof ConfigError)
    assert.deepEqual(err.problems, [
      { path: 'foo', message: 'unknown key' },
      { path: 'networks[1].vni', message: '42 is already used by networks[0]' },
      { path: 'pods[1].ip', message: "10.245.0.2/16 is outside network blue's subnet 10.244.0.0/16" },
    ])
    assert.equal(err.message, [
      'foo: unknown key',
      'networks[1].vni: 42 is already used by networks[0]',
      "pods[1].ip: 10.245.0.2/16 is outside network blue's subnet 10.244.0.0/16",
    ].join('\n'))
  }
})

test('a pod rejected by the schema still has its other fields checked', () => {
  const cfg = validConfig()
  cfg.pods[2].ip = 'nope'
  cfg.pods[2].name = 'web-1'
  cfg.pods[2].netns = 'pX'
  const problems = problemsOf(() => parseConfig(cfg, { netnsExists: (n) => n !== 'pX' }))
  assert.deepEqual(problems.map((p) => p.path), ['pods[2].ip', 'pods[2].name', 'pods[2].netns'])
})

test('pods of a network the schema rejected are not reported as unknown', () => {
  const cfg = validConfig()
  cfg.networks[1].vni = -1 // the network keeps its name, so db-1's reference still resolves
  const problems = problemsOf(() => parseConfig(cfg, anyNetns))
  assert.deepEqual(problems.map((p) => p.path), ['networks[1].vni'])
})

test('the default netns check looks in /var/run/netns', () => {
  const cfg = validConfig()
  cfg.pods = [{ name: 'p', network: 'blue', netns: 'tapestry-no-such-netns-4f2a', ip: '10.244.9.9/16' }]
  const problems = problemsOf(() => parseConfig(cfg))
  assert.deepEqual(problems, [{ path: 'pods[0].netns', message: 'network namespace "tapestry-no-such-netns-4f2a" does not exist (looked in /var/run/netns)' }])
})

// ---- YAML

test('a YAML syntax error reports its line and column', () => {
  const text = 'node:\n  name: host-a\n  underlayIP: 192.168.250.1\npeers: [192.168.250.2,\nlog: { level: info }\n'
  const problems = problemsOf(() => parseConfigText(text, anyNetns))
  assert.equal(problems.length, 1)
  assert.equal(problems[0].path, '')
  assert.equal(problems[0].line, 5)
  assert.equal(typeof problems[0].column, 'number')
  assert.match(problems[0].message, /^invalid YAML: /)
  try { parseConfigText(text) } catch (err) {
    assert.ok(err instanceof ConfigError)
    assert.match(err.message, /^line 5, column \d+: invalid YAML: /)
  }
})

test('a repeated YAML key is an error, not a silent overwrite', () => {
  const problems = problemsOf(() => parseConfigText('node: { name: a, underlayIP: 10.0.0.1 }\nnode: { name: b }\n', anyNetns))
  assert.equal(problems.length, 1)
  assert.equal(problems[0].line, 2)
  assert.match(problems[0].message, /unique/)
})

test('problems in YAML text carry the line of their key', () => {
  const text = [
    'node:',
    '  name: host-a',
    '  underlayIP: 192.168.250.1',
    'networks:',
    '  - { name: blue, vni: 42, subnet: 10.244.0.0/16 }',
    'pods:',
    '  - name: web-1',
    '    network: blue',
    '    netns: pA',
    '    ip: 10.244.1.300/16',
    '',
  ].join('\n')
  const problems = problemsOf(() => parseConfigText(text, anyNetns))
  assert.deepEqual(problems, [{ path: 'pods[0].ip', message: '10.244.1.300/16 is not an IPv4 CIDR', line: 10, column: 9 }])
})

test('loadConfigFile names the file on a ConfigError and wraps a read failure', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tapestry-config-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'bad.yaml')
  fs.writeFileSync(file, 'node: { name: host-a }\n')
  try {
    loadConfigFile(file, anyNetns)
    assert.fail('accepted a config without underlayIP')
  } catch (err) {
    assert.ok(err instanceof ConfigError)
    assert.equal(err.file, file)
    assert.deepEqual(err.problems.map((p) => [p.path, p.line]), [['node.underlayIP', 1]])
  }
  const missing = path.join(dir, 'missing.yaml')
  assert.throws(() => loadConfigFile(missing), (err: unknown) => {
    assert.ok(err instanceof ConfigReadError)
    assert.equal(err.code, 'TAPESTRY_CONFIG_UNREADABLE')
    assert.ok(err.message.startsWith(`cannot read config file ${missing}: ENOENT`))
    return true
  })
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { derivePodMac, loadConfigFile, parseConfig, parseConfigText } from '../../../src/control/config'
import type { Config } from '../../../src/control/config'
import { ipv4Parse, macFormat } from '../../../src/wire/addr'
import { anyNetns, validConfig } from './config-fixture'

const web1Mac = derivePodMac('web-1')

test('a config with only required keys normalizes with every default', () => {
  const want: Config = {
    node: {
      name: 'host-a',
      underlayIP: '192.168.250.1',
      underlayAddr: 0xc0a8fa01,
      vxlanPort: 4789,
      mtu: 1500,
      podMtu: 1450,
    },
    networks: [
      {
        name: 'blue', vni: 42, subnet: '10.244.0.0/16', subnetAddr: 0x0af40000, subnetPrefix: 16,
        subnetMask: 0xffff0000, broadcastAddr: 0x0af4ffff, gateway: '10.244.0.1', gatewayAddr: 0x0af40001, podRange: null, hostIP: null, hostAddr: null,
      },
      {
        name: 'red', vni: 43, subnet: '10.250.0.0/24', subnetAddr: 0x0afa0000, subnetPrefix: 24,
        subnetMask: 0xffffff00, broadcastAddr: 0x0afa00ff, gateway: null, gatewayAddr: null, podRange: null, hostIP: null, hostAddr: null,
      },
    ],
    peers: ['192.168.250.2', '192.168.250.3'],
    peerAddrs: [0xc0a8fa02, 0xc0a8fa03],
    learnPeers: false,
    arpSuppression: true,
    vxlan: { srcPortMin: 32768, srcPortMax: 61000, rcvbufBytes: 8388608 },
    fdb: { ageSeconds: 300, maxEntries: 1048576, maxPerVni: 0, maxPerPort: 0 },
    storm: { floodPerSecond: 2000, burst: 2000 },
    offloads: true,
    busyPollUs: 0,
    rxBatchBytes: 65536,
    workers: 1,
    priorityLane: true,
    cpuLatencyUs: null,
    log: { level: 'info' },
    api: { socket: '/run/tapestry/host-a.sock' },
    metrics: { listen: '127.0.0.1:9464' },
    health: { intervalSeconds: 2, timeoutMs: 1000, downAfter: 3, lossWindow: 20 },
    services: [],
    dns: null,
    serviceRange: null,
    conntrack: { maxConnections: 262144 },
    cluster: null,
    pods: [
      {
        name: 'web-1', network: 'blue', networkIndex: 0, vni: 42, netns: 'pA', netnsPath: '/var/run/netns/pA',
        ifname: 'eth0', ip: '10.244.1.2/16', ipAddr: 0x0af40102, prefix: 16,
        mac: macFormat(web1Mac.hi, web1Mac.lo), macHi: web1Mac.hi, macLo: web1Mac.lo, macDerived: true,
        portSecurity: true,
      },
      {
        name: 'web-2', network: 'blue', networkIndex: 0, vni: 42, netns: 'pB', netnsPath: '/var/run/netns/pB',
        ifname: 'eth0', ip: '10.244.1.3/16', ipAddr: 0x0af40103, prefix: 16,
        mac: '02:00:0a:f4:01:03', macHi: 0x0200, macLo: 0x0af40103, macDerived: false,
        portSecurity: true,
      },
      {
        name: 'db-1', network: 'red', networkIndex: 1, vni: 43, netns: 'pC', netnsPath: '/var/run/netns/pC',
        ifname: 'eth0', ip: '10.250.0.2/24', ipAddr: 0x0afa0002, prefix: 24,
        mac: macFormat(derivePodMac('db-1').hi, derivePodMac('db-1').lo),
        macHi: derivePodMac('db-1').hi, macLo: derivePodMac('db-1').lo, macDerived: true,
        portSecurity: true,
      },
    ],
  }
  assert.deepEqual(parseConfig(validConfig(), anyNetns), want)
})

test('explicit values override every default', () => {
  const cfg = validConfig()
  cfg.node = { name: 'host-b', underlayIP: '10.0.0.1', vxlanPort: 8472, mtu: 9000, podMtu: 8000 }
  cfg.learnPeers = true
  cfg.arpSuppression = false
  cfg.vxlan = { srcPortMin: 1000, srcPortMax: 1000, rcvbufBytes: 524288 }
  cfg.busyPollUs = 50
  cfg.rxBatchBytes = 0
  cfg.priorityLane = false
  cfg.cpuLatencyUs = 0
  cfg.fdb = { ageSeconds: 0.5, maxEntries: 16, maxPerVni: 8, maxPerPort: 4 }
  cfg.offloads = false
  cfg.log = { level: 'debug' }
  cfg.pods[0] = {
    name: 'web-1', network: 'blue', netns: '/proc/1/ns/net', ip: '10.244.1.2/24',
    mac: '0A-00-00-00-00-FF', ifname: 'veth-web1', portSecurity: false,
  }
  const c = parseConfig(cfg, anyNetns)
  assert.deepEqual(c.node, { name: 'host-b', underlayIP: '10.0.0.1', underlayAddr: 0x0a000001, vxlanPort: 8472, mtu: 9000, podMtu: 8000 })
  assert.equal(c.learnPeers, true)
  assert.equal(c.arpSuppression, false)
  assert.deepEqual(c.vxlan, { srcPortMin: 1000, srcPortMax: 1000, rcvbufBytes: 524288 })
  assert.equal(c.busyPollUs, 50)
  assert.equal(c.rxBatchBytes, 0)
  assert.equal(c.priorityLane, false)
  assert.equal(c.cpuLatencyUs, 0)
  assert.deepEqual(c.fdb, { ageSeconds: 0.5, maxEntries: 16, maxPerVni: 8, maxPerPort: 4 })
  assert.equal(c.offloads, false)
  assert.deepEqual(c.log, { level: 'debug' })
  const pod = c.pods[0]
  assert.equal(pod.netns, '/proc/1/ns/net')
  assert.equal(pod.netnsPath, '/proc/1/ns/net')
  assert.equal(pod.ip, '10.244.1.2/24', 'a longer prefix than the subnet is allowed')
  assert.equal(pod.prefix, 24)
  assert.equal(pod.mac, '0a:00:00:00:00:ff', 'MAC text is normalized to lowercase with colons')
  assert.deepEqual([pod.macHi, pod.macLo, pod.macDerived], [0x0a00, 0x000000ff, false])
  assert.equal(pod.ifname, 'veth-web1')
  assert.equal(pod.portSecurity, false)
})

test('podMtu may equal mtu - 50 exactly', () => {
  const cfg = validConfig()
  cfg.node.mtu = 9000
  cfg.node.podMtu = 8950
  assert.equal(parseConfig(cfg, anyNetns).node.podMtu, 8950)
})

test('peers, networks and pods default to empty lists', () => {
  const c = parseConfig({ node: { name: 'solo', underlayIP: '10.1.1.1' } }, anyNetns)
  assert.deepEqual([c.peers, c.peerAddrs, c.networks, c.pods], [[], [], [], []])
})

test('the same pod IP in two different networks is allowed: networks are isolated', () => {
  const cfg = validConfig()
  cfg.networks[1].subnet = '10.244.0.0/16'
  cfg.pods[2].ip = '10.244.1.2/16' // also web-1's address, in blue
  const c = parseConfig(cfg, anyNetns)
  assert.equal(c.pods[0].ipAddr, c.pods[2].ipAddr)
  assert.notEqual(c.pods[0].vni, c.pods[2].vni)
})

test('two pods may share a netns with different ifnames', () => {
  const cfg = validConfig()
  cfg.pods[1].netns = 'pA'
  cfg.pods[1].ifname = 'eth1'
  assert.equal(parseConfig(cfg, anyNetns).pods[1].netnsPath, '/var/run/netns/pA')
})

test('netnsExists is asked about each configured netns text', () => {
  const asked: string[] = []
  parseConfig(validConfig(), { netnsExists: (n) => { asked.push(n); return true } })
  assert.deepEqual(asked.sort(), ['pA', 'pB', 'pC'])
})

test('the default netns check accepts an absolute path that exists', () => {
  const cfg = validConfig()
  for (const pod of cfg.pods) pod.netns = '/proc/self/ns/net'
  for (const [i, pod] of cfg.pods.entries()) pod.ifname = `eth${i}`
  assert.equal(parseConfig(cfg).pods[0].netnsPath, '/proc/self/ns/net')
})

test('the input object is not modified', () => {
  const cfg = validConfig()
  const before = JSON.stringify(cfg)
  parseConfig(cfg, anyNetns)
  assert.equal(JSON.stringify(cfg), before)
})

const contractYaml = `
node:
  name: host-a                  # unique in the cluster
  underlayIP: 192.168.250.1
  vxlanPort: 4789
  mtu: 1500
  podMtu: 1450
networks:
  - name: blue
    vni: 42
    subnet: 10.244.0.0/16
    gateway: 10.244.0.1
peers: [192.168.250.2, 192.168.250.3]
learnPeers: false
arpSuppression: true
vxlan: { srcPortMin: 32768, srcPortMax: 61000 }
fdb: { ageSeconds: 300, maxEntries: 1048576, maxPerVni: 0, maxPerPort: 0 }
offloads: true
log: { level: info }
pods:
  - name: web-1
    network: blue
    netns: pA
    ip: 10.244.1.2/16
    mac: 02:00:0a:f4:01:02
    ifname: eth0
    portSecurity: true
`

test('the documented example YAML parses, MAC and all', () => {
  const c = parseConfigText(contractYaml, anyNetns)
  assert.equal(c.node.underlayAddr, ipv4Parse('192.168.250.1'))
  assert.deepEqual(c.peers, ['192.168.250.2', '192.168.250.3'])
  assert.equal(c.pods[0].mac, '02:00:0a:f4:01:02')
  assert.equal(c.pods[0].vni, 42)
})

test('loadConfigFile reads and validates a YAML file', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tapestry-config-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'tapestry.yaml')
  fs.writeFileSync(file, contractYaml)
  assert.deepEqual(loadConfigFile(file, anyNetns), parseConfigText(contractYaml, anyNetns))
})

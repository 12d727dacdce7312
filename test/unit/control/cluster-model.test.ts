import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  BlockEntry, NodeRecord, PodRecord, blockAt, blockCount, blockTaken, clusterKeys, decodeNode, decodePod, decodeService, encodeNode,
  encodePod, freeBlocks, isBlockOf, ownedBlock, parseKey, peerAddrs, podRecord, podSyncPlan, reclaimableBlocks, remotePods,
  serviceList,
} from '../../../src/control/cluster-model'
import { parseConfig } from '../../../src/control/config'
import { ipv4Format, ipv4Parse } from '../../../src/wire/addr'
import { anyNetns, validConfig } from './config-fixture'

const keys = clusterKeys('/tapestry')
const ip = (s: string) => ipv4Parse(s)
const subnet16 = { addr: ip('10.244.0.0'), prefix: 16 }

test('key layout: nodes, pods, blocks and services under the prefix', () => {
  assert.equal(keys.root, '/tapestry/')
  assert.equal(keys.node('host-a'), '/tapestry/nodes/host-a')
  assert.equal(keys.pod('host-a', 'web-1'), '/tapestry/pods/host-a/web-1')
  assert.equal(keys.podsOf('host-a'), '/tapestry/pods/host-a/')
  assert.equal(keys.block('blue', ip('10.244.3.0'), 24), '/tapestry/blocks/blue/10.244.3.0-24')
  assert.equal(keys.blocks('blue'), '/tapestry/blocks/blue/')
  assert.equal(keys.service('default', 'web'), '/tapestry/services/default/web')
  assert.equal(clusterKeys('/a/b/').node('n'), '/a/b/nodes/n', 'a trailing slash is not doubled')
})

test('parseKey reads back every kind of key and refuses anything else', () => {
  assert.deepEqual(parseKey(keys, keys.node('host-a')), { kind: 'node', name: 'host-a' })
  assert.deepEqual(parseKey(keys, keys.pod('host-a', 'web-1')), { kind: 'pod', node: 'host-a', pod: 'web-1' })
  assert.deepEqual(parseKey(keys, keys.service('kube-system', 'dns')), { kind: 'service', namespace: 'kube-system', name: 'dns' })
  assert.deepEqual(parseKey(keys, keys.block('blue', ip('10.244.3.0'), 24)), { kind: 'block', network: 'blue', addr: ip('10.244.3.0'), prefix: 24 })
  for (const bad of [
    '/other/nodes/a', '/tapestry/nodes/', '/tapestry/nodes/a/b', '/tapestry/pods/a', '/tapestry/pods/a//b',
    '/tapestry/blocks/blue/10.244.3.1-24', '/tapestry/blocks/blue/10.244.3.0', '/tapestry/blocks/blue/10.244.3.0-33',
    '/tapestry/things/a', '/tapestryx/nodes/a', '/tapestry/services/default',
  ]) {
    assert.equal(parseKey(keys, bad), null, bad)
  }
})

test('node records: encode, decode, and refusal of records that do not match their key', () => {
  const text = encodeNode({ name: 'host-a', underlayIP: '192.168.250.1', vxlanPort: 4789 })
  assert.deepEqual(JSON.parse(text), { name: 'host-a', underlayIP: '192.168.250.1', vxlanPort: 4789 })
  assert.deepEqual(decodeNode('host-a', text), { name: 'host-a', underlayIP: '192.168.250.1', underlayAddr: ip('192.168.250.1'), vxlanPort: 4789 })
  assert.equal(decodeNode('host-b', text), null, 'name differs from the key')
  assert.equal(decodeNode('host-a', '{"name":"host-a","underlayIP":"300.1.1.1","vxlanPort":4789}'), null)
  assert.equal(decodeNode('host-a', '{"name":"host-a","underlayIP":"10.0.0.1","vxlanPort":0}'), null)
  assert.equal(decodeNode('host-a', 'not json'), null)
  assert.equal(decodeNode('host-a', '[1]'), null)
})

test('pod records: built from a local pod, round trip, and checked', () => {
  const cfg = parseConfig(validConfig(), anyNetns)
  const rec = podRecord('host-a', cfg.pods[1])
  assert.deepEqual(rec, { name: 'web-2', node: 'host-a', network: 'blue', vni: 42, ip: '10.244.1.3', mac: '02:00:0a:f4:01:03' })
  assert.deepEqual(decodePod('host-a', 'web-2', encodePod(rec)), rec)
  assert.equal(decodePod('host-b', 'web-2', encodePod(rec)), null, 'node differs from the key')
  assert.equal(decodePod('host-a', 'web-3', encodePod(rec)), null, 'name differs from the key')
  assert.equal(decodePod('host-a', 'web-2', encodePod({ ...rec, mac: '01:00:5e:00:00:01' })), null, 'multicast MAC')
  assert.equal(decodePod('host-a', 'web-2', encodePod({ ...rec, vni: 0 })), null)
  assert.equal(decodePod('host-a', 'web-2', encodePod({ ...rec, ip: '10.244.1' })), null)
  assert.equal(decodePod('host-a', 'web-2', encodePod({ ...rec, mac: '02-00-0A-F4-01-03' }))?.mac, '02:00:0a:f4:01:03', 'MAC normalized')
})

test('services: name and namespace come from the key and must agree with it', () => {
  assert.deepEqual(decodeService('default', 'web', '{"clusterIP":"10.96.0.10"}'), { clusterIP: '10.96.0.10', name: 'web', namespace: 'default' })
  assert.deepEqual(decodeService('default', 'web', '{"name":"web","namespace":"default","ports":[]}'), { name: 'web', namespace: 'default', ports: [] })
  assert.equal(decodeService('default', 'web', '{"name":"api"}'), null)
  assert.equal(decodeService('default', 'web', '{"namespace":"other"}'), null)
  assert.equal(decodeService('default', 'web', '"web"'), null)
  const list = serviceList(new Map([['z/a', { name: 'a', namespace: 'z' }], ['a/b', { name: 'b', namespace: 'a' }]]))
  assert.deepEqual(list.map((s) => `${s.namespace}/${s.name}`), ['a/b', 'z/a'])
})

test('block arithmetic: a /16 holds 256 /24 blocks, in address order', () => {
  assert.equal(blockCount(subnet16, 24), 256)
  assert.equal(blockCount(subnet16, 16), 0, 'a block as large as the subnet is no block')
  assert.equal(blockCount({ addr: ip('10.0.0.0'), prefix: 8 }, 30), 2 ** 22)
  assert.equal(ipv4Format(blockAt(subnet16, 24, 0)), '10.244.0.0')
  assert.equal(ipv4Format(blockAt(subnet16, 24, 255)), '10.244.255.0')
  assert.equal(ipv4Format(blockAt(subnet16, 26, 5)), '10.244.1.64')
  assert.ok(isBlockOf(subnet16, 24, ip('10.244.7.0'), 24))
  assert.ok(!isBlockOf(subnet16, 24, ip('10.244.7.0'), 25), 'another block size')
  assert.ok(!isBlockOf(subnet16, 24, ip('10.244.7.1'), 24), 'not aligned')
  assert.ok(!isBlockOf(subnet16, 24, ip('10.245.0.0'), 24), 'outside the subnet')
})

test('freeBlocks: the preferred block first, then the lowest free ones, skipping taken blocks', () => {
  const first = (gen: Iterable<number>, n: number) => {
    const out: string[] = []
    for (const b of gen) { out.push(ipv4Format(b)); if (out.length === n) break }
    return out
  }
  const taken = new Set([ip('10.244.0.0'), ip('10.244.2.0')])
  assert.deepEqual(first(freeBlocks(subnet16, 24, taken), 3), ['10.244.1.0', '10.244.3.0', '10.244.4.0'])
  assert.deepEqual(first(freeBlocks(subnet16, 24, taken, ip('10.244.9.0')), 3), ['10.244.9.0', '10.244.1.0', '10.244.3.0'], 'preferred, never twice')
  assert.deepEqual(first(freeBlocks(subnet16, 24, taken, ip('10.244.2.0')), 1), ['10.244.1.0'], 'a taken preferred block is skipped')
  assert.deepEqual(first(freeBlocks(subnet16, 24, taken, ip('10.99.0.0')), 1), ['10.244.1.0'], 'a preferred block outside the subnet is ignored')
  const tiny = { addr: ip('10.1.0.0'), prefix: 29 }
  assert.deepEqual([...freeBlocks(tiny, 30, new Set([ip('10.1.0.0')]))].map(ipv4Format), ['10.1.0.4'])
  assert.deepEqual([...freeBlocks(tiny, 30, new Set([ip('10.1.0.0'), ip('10.1.0.4')]))], [], 'exhausted')
})

test('two nodes listing the same blocks race for the same candidate; the loser moves on to the next one', () => {
  // What etcd's create-if-absent transaction decides, played out on a map.
  const store = new Map<number, string>()
  const claim = (node: string): number => {
    const seen = new Set(store.keys()) // both listed before either wrote
    for (const b of freeBlocks(subnet16, 24, seen)) {
      if (!store.has(b)) { store.set(b, node); return b }
    }
    throw new Error('full')
  }
  const a = claim('a')
  const b = claim('b')
  assert.notEqual(a, b)
  assert.deepEqual([a, b].map(ipv4Format), ['10.244.0.0', '10.244.1.0'])
})

test('ownedBlock and reclaimableBlocks', () => {
  const e = (addr: string, owner: string | null, rev: string, prefix = 24): BlockEntry => ({ addr: ip(addr), prefix, owner, modRevision: rev })
  const entries = [e('10.244.5.0', 'a', '9'), e('10.244.1.0', 'a', '7'), e('10.244.2.0', 'b', '3'), e('10.244.3.0', 'gone', '12'), e('10.244.4.0', 'gone2', '4'), e('10.244.6.0', null, '20')]
  assert.equal(ipv4Format(ownedBlock(entries, subnet16, 24, 'a')!), '10.244.1.0', 'the lowest of its blocks')
  assert.equal(ownedBlock(entries, subnet16, 24, 'c'), null)
  assert.equal(ownedBlock(entries, subnet16, 25, 'a'), null, 'blocks of another size are not ours to use')
  const r = reclaimableBlocks(entries, subnet16, 24, new Set(['a', 'b']), new Set(['gone2']))
  assert.deepEqual(r.map((x) => ipv4Format(x.addr)), ['10.244.3.0', '10.244.6.0'], 'owner gone and without pods, oldest first')
})

test('blockTaken: a block of another size taken by another node overlaps ours', () => {
  const e = (addr: string, prefix: number): BlockEntry => ({ addr: ip(addr), prefix, owner: 'x', modRevision: '1' })
  const taken = blockTaken([e('10.244.1.0', 24), e('10.244.2.64', 26), e('10.244.8.0', 22)], 24)
  const free = (n: number) => { const out: string[] = []; for (const b of freeBlocks(subnet16, 24, taken)) { out.push(ipv4Format(b)); if (out.length === n) break } return out }
  assert.ok(taken(ip('10.244.1.0')))
  assert.ok(taken(ip('10.244.2.0')), 'holds a smaller block')
  assert.ok(taken(ip('10.244.9.0')), 'inside a larger block')
  assert.ok(!taken(ip('10.244.12.0')))
  assert.deepEqual(free(6), ['10.244.0.0', '10.244.3.0', '10.244.4.0', '10.244.5.0', '10.244.6.0', '10.244.7.0'])
  assert.equal(free(7)[6], '10.244.12.0', '10.244.8.0/22 is skipped whole')
})

test('desired state: peers are the other nodes; remote pods are those of other registered nodes', () => {
  const n = (name: string, addr: string): [string, NodeRecord] => [name, { name, underlayIP: addr, underlayAddr: ip(addr), vxlanPort: 4789 }]
  const nodes = new Map([n('a', '192.168.250.1'), n('b', '192.168.250.2'), n('c', '192.168.250.3')])
  assert.deepEqual(peerAddrs(nodes, 'a').map(ipv4Format), ['192.168.250.2', '192.168.250.3'])
  const p = (node: string, name: string, addr: string, mac: string): PodRecord => ({ name, node, network: 'blue', vni: 42, ip: addr, mac })
  const pods = [
    p('a', 'x', '10.244.0.2', '02:00:00:00:00:01'),
    p('b', 'x', '10.244.1.2', '02:00:00:00:00:02'), // same pod name on another node
    p('c', 'y', '10.244.2.2', '02:00:00:00:00:03'),
    p('d', 'z', '10.244.3.2', '02:00:00:00:00:04'), // node d not registered (yet, or any more)
  ]
  const rp = remotePods(nodes, pods, 'a')
  assert.deepEqual(rp, [
    { name: 'b/x', vni: 42, ip: ip('10.244.1.2'), macHi: 0x0200, macLo: 0x00000002, node: ip('192.168.250.2') },
    { name: 'c/y', vni: 42, ip: ip('10.244.2.2'), macHi: 0x0200, macLo: 0x00000003, node: ip('192.168.250.3') },
  ])
  nodes.delete('c')
  assert.deepEqual(remotePods(nodes, pods, 'a').map((x) => x.name), ['b/x'], "a node's pods go with it")
})

test('podSyncPlan: put what is new or different, delete what is no longer local', () => {
  const p = (name: string, addr: string): PodRecord => ({ name, node: 'a', network: 'blue', vni: 42, ip: addr, mac: '02:00:00:00:00:01' })
  const same = p('same', '10.244.0.2')
  const moved = p('moved', '10.244.0.3')
  const published = new Map([
    ['same', encodePod(same)],
    ['moved', encodePod(p('moved', '10.244.0.9'))],
    ['gone', encodePod(p('gone', '10.244.0.4'))],
    ['old-lease', ''],
  ])
  const plan = podSyncPlan(published, [same, moved, p('new', '10.244.0.5'), p('old-lease', '10.244.0.6')])
  assert.deepEqual(plan.put.map((x) => x.name), ['moved', 'new', 'old-lease'])
  assert.deepEqual(plan.del, ['gone'])
  assert.deepEqual(podSyncPlan(new Map(), []), { put: [], del: [] })
})

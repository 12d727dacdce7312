/**
 * The CNI plugin's parts that need no agent: pod names, CNI_ARGS, result
 * formats per version, and the errors given before the agent is asked.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildResult, CNI_ERR, mergePrev, parseCniArgs, podNameFor, run, SUPPORTED_VERSIONS, versionAtLeast } from '../../../src/cni/plugin'

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const ID = '3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708'

test('pod names are RFC 1123 labels, stable, and distinct per container and interface', () => {
  assert.equal(podNameFor(ID, 'eth0'), 'cni-3f2a1b4c5d6e')
  assert.equal(podNameFor(ID, 'eth0', 'Web_Server.1'), 'web-server-1-3f2a1b4c5d6e')
  assert.equal(podNameFor(ID, 'net1'), 'cni-3f2a1b4c5d6e-net1')
  assert.equal(podNameFor(ID, 'eth0', 'web'), podNameFor(ID, 'eth0', 'web'))
  const odd = ['ABC_def', 'x', 'a.b', 'Z'.repeat(64), '1-2-3-4-5-6-7-8']
  const names = new Set<string>()
  for (const id of [ID, ...odd]) {
    for (const ifname of ['eth0', 'eth1', 'net_1', 'net.1']) {
      for (const k8s of [undefined, '', '---', 'a'.repeat(200), 'Ünïcode-pod', 'my-pod-7d9f8c-xkq2z']) {
        const n = podNameFor(id, ifname, k8s)
        assert.match(n, NAME_RE, `${id} ${ifname} ${k8s}: ${n}`)
        assert.ok(n.length <= 63)
        if (k8s === undefined) names.add(n)
      }
    }
  }
  assert.equal(names.size, 6 * 4, 'one name per container and interface')
})

test('CNI_ARGS are KEY=VALUE pairs', () => {
  assert.deepEqual([...parseCniArgs('IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.2/24')], [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'web'], ['IP', '10.0.0.2/24']])
  assert.equal(parseCniArgs(undefined).size, 0)
  assert.equal(parseCniArgs('A=;').get('A'), '')
  assert.throws(() => parseCniArgs('A=1;B'), (e: { code: number }) => e.code === CNI_ERR.INVALID_ENV)
})

test('versions compare numerically', () => {
  assert.ok(versionAtLeast('1.0.0', '0.4.0'))
  assert.ok(versionAtLeast('0.10.0', '0.4.0'))
  assert.ok(!versionAtLeast('0.3.1', '0.4.0'))
  assert.ok(!versionAtLeast('garbage', '0.4.0'))
})

test('results: 1.0.0 without ips[].version, 0.4.0 with it, 1.1.0 with the MTU', () => {
  const row = { name: 'p', network: 'blue', netns: '/run/netns/x', ifname: 'eth0', ip: '10.244.1.2/16', mac: '02:00:0a:f4:01:02', gateway: '10.244.0.1', mtu: 1450, containerId: ID }
  const r1 = buildResult('1.0.0', row, '/run/netns/x', 'eth0', undefined)
  assert.deepEqual(r1, {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'eth0', mac: '02:00:0a:f4:01:02', sandbox: '/run/netns/x' }],
    ips: [{ address: '10.244.1.2/16', gateway: '10.244.0.1', interface: 0 }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.244.0.1' }],
    dns: {},
  })
  assert.equal(buildResult('0.4.0', row, '/run/netns/x', 'eth0', undefined).ips![0].version, '4')
  assert.equal(buildResult('1.1.0', row, '/run/netns/x', 'eth0', undefined).interfaces![0].mtu, 1450)
  // A network without a gateway: no gateway, no route.
  const r2 = buildResult('1.0.0', { ...row, gateway: null }, '/run/netns/x', 'eth0', { nameservers: ['10.0.0.53'] })
  assert.deepEqual(r2.routes, [])
  assert.equal(r2.ips![0].gateway, undefined)
  assert.deepEqual(r2.dns, { nameservers: ['10.0.0.53'] })
  // After another plugin: appended, indices shifted.
  const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'lo0' }], ips: [{ address: '127.0.0.2/8', interface: 0 }], routes: [], dns: {} }
  const m = mergePrev(r1, prev)
  assert.deepEqual(m.interfaces!.map((i) => i.name), ['lo0', 'eth0'])
  assert.equal(m.ips![1].interface, 1)
})

test('errors before the agent is asked carry the well-known codes', async () => {
  const conf = (over: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'blue', type: 'tapestry', socket: '/nonexistent/tapestry.sock', ...over })
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: ID, CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0' }
  const code = async (e: Record<string, string | undefined>, stdin: string) => {
    const r = await run(e, stdin)
    assert.equal(r.code, 1)
    const out = JSON.parse(r.out)
    assert.equal(typeof out.msg, 'string')
    assert.equal(typeof out.cniVersion, 'string')
    return out.code as number
  }
  const v = await run({ CNI_COMMAND: 'VERSION' }, '')
  assert.equal(v.code, 0)
  assert.deepEqual(JSON.parse(v.out).supportedVersions, SUPPORTED_VERSIONS)
  assert.equal(await code(env, conf({ cniVersion: '0.2.0' })), CNI_ERR.INCOMPATIBLE_VERSION)
  assert.equal(await code({ ...env, CNI_COMMAND: undefined }, conf()), CNI_ERR.INVALID_ENV)
  assert.equal(await code({ ...env, CNI_IFNAME: 'way-too-long-ifname' }, conf()), CNI_ERR.INVALID_ENV)
  assert.equal(await code(env, '{'), CNI_ERR.DECODE_FAILURE)
  assert.equal(await code(env, conf({ name: 7 })), CNI_ERR.INVALID_CONFIG)
  assert.equal(await code(env, conf()), CNI_ERR.TRY_AGAIN_LATER)
  // DEL with no agent and nothing recorded beside its socket: nothing to clean.
  assert.deepEqual(await run({ ...env, CNI_COMMAND: 'DEL' }, conf()), { out: '', code: 0 })
  assert.equal(await code({ ...env, CNI_COMMAND: 'STATUS' }, conf({ cniVersion: '1.1.0' })), CNI_ERR.NOT_AVAILABLE)
})

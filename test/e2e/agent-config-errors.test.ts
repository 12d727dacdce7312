/**
 * A bad config is refused before the agent touches anything: `tapestry agent`
 * exits 2, stderr names each bad key by its path with the reason, and no device
 * appears in the host namespace or in a pod namespace. A missing file is
 * refused with a clear message too. The valid config the bad ones are made from
 * does start (and create eth0 in the pods), so the "nothing created" check can
 * see a device when there is one.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { stringify } from 'yaml'
import { Lab, uniqueName, waitFor } from '../harness/lab'
import { TAPESTRY_BIN } from '../harness/overlay'

type Cfg = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

interface Case {
  rule: string
  mutate: (cfg: Cfg) => void
  /** Key path as printed, and a pattern for the reason on the same line. */
  path: string
  reason: RegExp
}

test('bad configs are refused with exit 2, the key path and reason, and no device created', { timeout: 60_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tapestry-cfg-'))
  lab.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }))
  const host = lab.netns('h')
  const p1 = lab.netns('p1')
  const p2 = lab.netns('p2')
  // The host's underlay address, so the valid config can start.
  lab.veth(host, 'ul0', host, 'ul1', '192.168.250.1/24')
  const missingNs = uniqueName('zz')

  const valid = (): Cfg => ({
    node: { name: 'ha', underlayIP: '192.168.250.1', vxlanPort: 4789, mtu: 1500 },
    networks: [
      { name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' },
      { name: 'red', vni: 43, subnet: '10.245.0.0/16', gateway: '10.245.0.1' },
    ],
    peers: ['192.168.250.2'],
    pods: [
      { name: 'p1', network: 'blue', netns: p1, ip: '10.244.1.2/16', mac: '02:00:0a:f4:01:02' },
      { name: 'p2', network: 'blue', netns: p2, ip: '10.244.1.3/16', mac: '02:00:0a:f4:01:03' },
    ],
    api: { socket: path.join(dir, 'api.sock') },
    log: { level: 'info' },
  })

  const cases: Case[] = [
    { rule: 'unknown key', mutate: (c) => { c.pods[0].colour = 'blue' }, path: 'pods[0].colour', reason: /unknown key/ },
    { rule: 'bad CIDR', mutate: (c) => { c.pods[0].ip = '10.244.1.300/16' }, path: 'pods[0].ip', reason: /10\.244\.1\.300\/16.*not an IPv4 CIDR/ },
    { rule: 'pod IP outside its subnet', mutate: (c) => { c.pods[0].ip = '10.246.1.2/16' }, path: 'pods[0].ip', reason: /10\.246\.1\.2.*outside.*10\.244\.0\.0\/16/ },
    { rule: 'duplicate VNI', mutate: (c) => { c.networks[1].vni = 42 }, path: 'networks[1].vni', reason: /42 is already used by networks\[0\]/ },
    { rule: 'duplicate pod IP', mutate: (c) => { c.pods[1].ip = '10.244.1.2/16' }, path: 'pods[1].ip', reason: /10\.244\.1\.2 is already used by pods\[0\]/ },
    { rule: 'duplicate MAC', mutate: (c) => { c.pods[1].mac = '02:00:0a:f4:01:02' }, path: 'pods[1].mac', reason: /02:00:0a:f4:01:02 is already used by pods\[0\]/ },
    { rule: 'unknown network', mutate: (c) => { c.pods[1].network = 'green' }, path: 'pods[1].network', reason: /unknown network "green"/ },
    { rule: 'netns that does not exist', mutate: (c) => { c.pods[1].netns = missingNs }, path: 'pods[1].netns', reason: new RegExp(`${missingNs}.*does not exist`) },
  ]

  const links = () => [host, p1, p2].map((ns) => lab.exec(ns, ['ip', '-o', 'link']).replace(/\s+/g, ' ')).join('\n')
  const runAgent = (file: string) => lab.execAsync(host, [process.execPath, TAPESTRY_BIN, 'agent', '--config', file], 20_000)
  const write = (name: string, cfg: Cfg) => {
    const file = path.join(dir, name)
    fs.writeFileSync(file, stringify(cfg))
    return file
  }

  const before = links()
  for (const [i, k] of cases.entries()) {
    const cfg = valid()
    k.mutate(cfg)
    const r = await runAgent(write(`bad-${i}.yaml`, cfg))
    const ctx = `${k.rule}: exit ${r.code}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`
    assert.equal(r.code, 2, ctx)
    const line = r.stderr.split('\n').find((l) => l.includes(`${k.path}:`))
    assert.ok(line, `${k.rule}: stderr does not name ${k.path}\n${ctx}`)
    assert.match(line, k.reason, `${k.rule}: reason\n${ctx}`)
    assert.equal(links(), before, `${k.rule}: devices changed although the config was refused`)
  }

  // A missing file.
  const missing = path.join(dir, 'no-such-config.yaml')
  const r = await runAgent(missing)
  assert.notEqual(r.code, 0, `missing file: exit ${r.code}`)
  assert.ok(r.stderr.includes(missing), `missing file: stderr does not name the file: ${r.stderr}`)
  assert.match(r.stderr, /ENOENT|no such file|does not exist|cannot read/i, `missing file: ${r.stderr}`)
  assert.equal(links(), before, 'missing file: devices changed')

  // Control: the valid config starts and creates eth0 in both pods, which the comparison above would have seen.
  const agent = lab.spawn(host, [process.execPath, TAPESTRY_BIN, 'agent', '--config', write('valid.yaml', valid())])
  await waitFor('the valid config to start the agent', () => {
    if (agent.child.exitCode !== null) throw new Error(`valid config: agent exited ${agent.child.exitCode}: ${agent.stderr()}${agent.stdout()}`)
    return agent.stdout().includes('"agent ready"')
  }, 20_000)
  for (const ns of [p1, p2]) assert.match(lab.exec(ns, ['ip', '-o', 'link']), /\beth0\b/, `valid config: no eth0 in ${ns}`)
  assert.notEqual(links(), before)
  agent.child.kill('SIGTERM')
  assert.equal(await agent.exited, 0, `agent stop: ${agent.stderr()}`)
})

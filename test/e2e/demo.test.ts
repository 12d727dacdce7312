/**
 * The README's first command: the namespace demo runs to the end and leaves
 * nothing behind; docker-compose accepts the compose file, whose hosts run the
 * same entry point as the namespace demo.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { parse } from 'yaml'
import { Lab, RUN_ID, sh } from '../harness/lab'

const ROOT = path.join(__dirname, '..', '..', '..')

test('the namespace demo runs to the end and cleans up', async (t) => {
  const lab = new Lab()
  const prefix = `tpy${RUN_ID}d`
  t.after(async () => {
    await lab.cleanup()
    for (const ns of sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(prefix))) {
      sh('ip', ['netns', 'del', ns], { allowFail: true })
    }
  })
  const r = await lab.execAsync(null, ['env', `DEMO_PREFIX=${prefix}`, 'bash', path.join(ROOT, 'scripts', 'demo.sh')], 120_000)
  assert.equal(r.code, 0, `demo failed:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`)
  assert.match(r.stdout, /3 packets transmitted, 3 received/)
  assert.match(r.stdout, /vxlan 192\.168\.250\.2/, 'the FDB shows MACs behind a remote VTEP')
  assert.match(r.stdout, /receiver/, 'iperf3 finished')
  assert.match(r.stdout, /hello from host-[ab]-web-1/, 'the service VIP answered')
  assert.match(r.stdout, /web\.default\.svc\.cluster\.local\/[^\n]*\n[^\n]*hello from host-[ab]-web-1/, 'the DNS name answered')
  assert.match(r.stdout, /10\.244\.1\.2\.8080: Flags \[S\]/, 'the capture file shows the SYN to the backend')
  assert.match(r.stdout, /tapestry_frames_total\{port="underlay",direction="rx"\} [1-9]/, 'metrics show traffic')
  assert.equal(fs.existsSync(`/etc/netns/${prefix}-host-c-p2`), false)
  const left = sh('ip', ['netns', 'list']).split('\n').filter((l) => l.startsWith(prefix))
  assert.deepEqual(left, [])
  const links = sh('ip', ['-o', 'link', 'show']).split('\n').filter((l) => l.includes(`${prefix}-`))
  assert.deepEqual(links, [])
})

test('docker-compose accepts the compose file and runs the demo host entry point', () => {
  const out = sh('docker-compose', ['-f', path.join(ROOT, 'docker-compose.yml'), 'config'])
  const cfg = parse(out) as { services: Record<string, { environment: Record<string, string>; networks: Record<string, { ipv4_address: string }> }> }
  assert.deepEqual(Object.keys(cfg.services).sort(), ['host-a', 'host-b', 'host-c'])
  for (const [name, svc] of Object.entries(cfg.services)) {
    assert.equal(svc.environment.NODE_NAME, name)
    assert.equal(svc.environment.UNDERLAY_IP, svc.networks.underlay.ipv4_address)
    assert.ok(svc.environment.POD_OCTET)
  }
  // The image's entry point and the namespace demo run the same host script.
  const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
  assert.match(dockerfile, /ENTRYPOINT \["demo\/host\.sh"\]/)
  const demo = fs.readFileSync(path.join(ROOT, 'scripts', 'demo.sh'), 'utf8')
  assert.match(demo, /ip netns exec \$P-\$h demo\/host\.sh/)
  assert.ok(fs.statSync(path.join(ROOT, 'demo', 'host.sh')).mode & 0o111)
})

/**
 * Hardening: a datapath worker thread that dies inside a running agent
 * (workers: 2) stops the agent, which says why and exits 1, leaving nothing
 * behind.
 *
 * Host A's agent runs with the failpoint TAPESTRY_FAILPOINT_WORKER_EXIT=1@N
 * (datapath/worker-thread.ts): worker 1 throws an uncaught Error N ms after it
 * starts. Before that, a ping (worker 0, through the priority lane) and a TCP
 * transfer whose flow hashes to worker 1 go through, proving the thread that
 * is going to die carries traffic. Then:
 *  - the agent process exits with code 1, within a few seconds of the crash;
 *  - its log has the fatal line `datapath worker failed; stopping` whose
 *    reason names the failpoint, followed by the ordinary stop (`agent
 *    stopped`), and stderr says the same;
 *  - no process is left: the pid is gone, nothing runs in the host's
 *    namespace or under the agent's config file; the API socket is removed;
 *  - the VXLAN port is free (no socket on it, a plain bind works) and an
 *    agent started again on the same config (no failpoint) carries the ping
 *    and the worker-1 flow again, and stops with 0;
 *  - host B's agent is untouched.
 * A second case kills worker 1 while start-up still waits (for an etcd that
 * does not answer): the start fails with exit 1 and the agent never says it
 * is ready.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Lab, parsePing, sh, waitFor } from '../harness/lab'
import { agentPid, assertAgentAlive } from '../harness/harden'
import { twoHosts, BLUE, PodDef } from '../harness/two-hosts'
import { Cluster, TAPESTRY_BIN, hostConfig } from '../harness/overlay'
import { tcpTransfer } from '../harness/xfer'
import { flowWorker } from '../../src/overlay/steering'
import { tcpFrame } from '../unit/wire/frames'

const PA = { name: 'pa', ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }
const PB = { name: 'pb', ip: '10.244.2.2', mac: '02:00:0a:f4:02:02' }
/** Worker 1 dies this long after it starts: room for the agent to get ready and the traffic before. */
const FAIL_MS = 6000

/** A client port from `from` up whose flow pa -> pb:port is read by `worker` (of 2, with the lane). */
function portFor(worker: number, port: number, from: number): number {
  for (let p = from; ; p++) {
    const f = tcpFrame({ src: PA.ip, dst: PB.ip, sport: p, dport: port })
    if (flowWorker(f, 0, f.length, { workers: 2, lane: true }) === worker) return p
  }
}

interface LogLine { level: number; time: string; msg: string; reason?: string; signal?: string }

function logLines(out: string): LogLine[] {
  return out.split('\n').filter((l) => l.startsWith('{')).flatMap((l) => { try { return [JSON.parse(l) as LogLine] } catch { return [] } })
}

/** Pids of every process whose command line mentions `needle`. */
function pidsMentioning(needle: string): number[] {
  const out: number[] = []
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue
    try { if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) out.push(Number(d)) } catch { /* gone */ }
  }
  return out
}

test('workers: 2 — a datapath worker that dies stops the agent: exit 1, the reason logged, the port freed, nothing left', { timeout: 90_000 }, async (t) => {
  const { lab, c, a, b, nets, sockA, sockB } = twoHosts(t)
  const pod = (s: typeof PA): PodDef => ({ ...s, ns: c.podNs(s.name) })
  const pa = pod(PA)
  const pb = pod(PB)
  const podCfg = (d: PodDef) => ({ name: d.name, network: BLUE.name, netns: d.ns, ip: `${d.ip}/16`, mac: d.mac })
  const cfgA = hostConfig(a, [a, b], nets, [podCfg(pa)], { workers: 2, api: { socket: sockA } })
  const cfgB = hostConfig(b, [a, b], nets, [podCfg(pb)], { workers: 2, api: { socket: sockB } })
  await c.startAgent(b, cfgB)
  const FAILPOINT = `1@${FAIL_MS}`
  const startedAt = Date.now()
  const agentA = await c.startAgent(a, cfgA, { TAPESTRY_FAILPOINT_WORKER_EXIT: FAILPOINT })
  const pid = agentPid(c, a)
  t.diagnostic(`agent A ready in ${Date.now() - startedAt} ms (pid ${pid}); worker 1 dies ${FAIL_MS} ms after it started`)
  const threads = (): string[] => fs.readdirSync(`/proc/${pid}/task`).map((tid) => { try { return fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() } catch { return '' } })
  assert.ok(threads().includes('tp-datapath-1'), `threads: ${threads().join(', ')}`)

  // Traffic works first: a ping (worker 0 via the lane) and a flow read by worker 1 on both hosts.
  const ping = await lab.execAsync(pa.ns, ['ping', '-c', '5', '-i', '0.1', '-W', '2', '-q', pb.ip])
  assert.equal(parsePing(ping.stdout).received, 5, ping.stdout + ping.stderr)
  const p1 = portFor(1, 7201, 43000)
  const x = await tcpTransfer(lab, pa.ns, pb.ns, pb.ip, 2_000_000, 7201, p1)
  assert.equal(x.received.bytes, 2_000_000)
  assert.equal(x.received.sha256, x.sent.sha256)
  const trafficDone = Date.now() - startedAt
  t.diagnostic(`traffic before the crash done ${trafficDone} ms after the start`)
  // Otherwise the failpoint fired before the traffic proved anything: make FAIL_MS longer.
  assertAgentAlive(c, a)
  assert.ok(trafficDone < FAIL_MS, `the traffic took ${trafficDone} ms, longer than the failpoint's ${FAIL_MS} ms`)

  // The crash: the agent exits 1, in bounded time.
  let timer: NodeJS.Timeout | undefined
  const code = await Promise.race([agentA.exited, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), FAIL_MS + 15_000) })])
  clearTimeout(timer)
  const exitedAt = Date.now()
  assert.notEqual(code, 'timeout', `agent A still running ${exitedAt - startedAt} ms after its start: ${agentA.stderr().slice(-2000)}${agentA.stdout().slice(-3000)}`)
  assert.equal(code, 1, `agent A exit code; stderr: ${agentA.stderr().slice(-2000)}`)
  assert.equal(agentA.child.signalCode, null, 'exited by itself, not by a signal')

  // The reason, at fatal level, then the ordinary stop.
  const lines = logLines(agentA.stdout())
  const fatal = lines.find((l) => l.msg === 'datapath worker failed; stopping')
  assert.ok(fatal, `no fatal line in: ${agentA.stdout().slice(-3000)}`)
  assert.equal(fatal.level, 60, 'logged at fatal level')
  assert.equal(fatal.reason, `datapath worker 1 failed: failpoint TAPESTRY_FAILPOINT_WORKER_EXIT=${FAILPOINT}: datapath worker 1 exits ${FAIL_MS} ms after start`)
  const fatalAt = lines.indexOf(fatal)
  const fatalMs = Date.parse(fatal.time)
  assert.ok(lines.slice(fatalAt).some((l) => l.msg === 'stopping' && l.signal === 'fatal'), 'stopping (fatal) after the fatal line')
  assert.ok(lines.slice(fatalAt).some((l) => l.msg === 'agent stopped'), 'the agent stopped its datapath after the fatal line')
  assert.deepEqual(lines.slice(fatalAt + 1).filter((l) => l.level >= 50).map((l) => l.msg), [], 'the stop itself went without errors')
  assert.ok(agentA.stderr().includes(`tapestry agent: ${fatal.reason}\n`), `stderr: ${agentA.stderr().slice(-2000)}`)
  t.diagnostic(`log from the fatal line on: ${lines.slice(fatalAt).map((l) => `[${l.level}] ${l.msg}`).join(' | ')}`)
  t.diagnostic(`worker died ${fatalMs - startedAt} ms after the start; the process exited ${exitedAt - fatalMs} ms after the fatal line`)
  assert.ok(fatalMs - startedAt >= FAIL_MS, 'not before the failpoint\'s time')
  assert.ok(exitedAt - fatalMs < 5000, `the process took ${exitedAt - fatalMs} ms to exit after the fatal line`)

  // Nothing left: no process (so no thread), nothing in the host's namespace, no API socket.
  assert.equal(fs.existsSync(`/proc/${pid}`), false, `/proc/${pid} still there`)
  assert.equal(sh('ip', ['netns', 'pids', a.ns]).trim(), '', 'no process left in host A\'s namespace')
  assert.deepEqual(pidsMentioning(`${c.dir}/${a.name}.yaml`), [], 'no process left running on host A\'s config')
  assert.equal(fs.existsSync(sockA), false, 'the API socket was removed')
  // The VXLAN port is free: no socket on it, and a plain bind works.
  assert.equal(lab.exec(a.ns, ['ss', '-uanH', 'sport = :4789']).trim(), '', 'no socket left on the VXLAN port')
  lab.exec(a.ns, ['python3', '-c', `import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('${a.underlayIP}', 4789)); s.close()`])
  assertAgentAlive(c, b)

  // A new agent on the same config (no failpoint) starts and carries the same traffic.
  const restartedAt = Date.now()
  await c.startAgent(a, cfgA)
  const pid2 = agentPid(c, a)
  assert.notEqual(pid2, pid)
  assert.equal(lab.exec(a.ns, ['ss', '-uanH', 'sport = :4789']).trim().split('\n').filter(Boolean).length, 3, 'two workers\' sockets and the lane\'s')
  const ping2 = await lab.execAsync(pa.ns, ['ping', '-c', '5', '-i', '0.1', '-W', '2', '-q', pb.ip])
  assert.equal(parsePing(ping2.stdout).received, 5, ping2.stdout + ping2.stderr)
  const y = await tcpTransfer(lab, pa.ns, pb.ns, pb.ip, 2_000_000, 7202, portFor(1, 7202, 44000))
  assert.equal(y.received.sha256, y.sent.sha256)
  // Still alive well past the failpoint's time (the variable was not set for it).
  await waitFor('the new agent to outlive the failpoint\'s delay', () => Date.now() - restartedAt >= FAIL_MS + 500, FAIL_MS + 5000, 100)
  assertAgentAlive(c, a)
  assert.equal(await c.stopAgent(a), 0)
  assertAgentAlive(c, b)
})

test('workers: 2 — a worker that dies while the agent is still starting fails the start: exit 1, never ready', { timeout: 60_000 }, async (t) => {
  const lab = new Lab()
  t.after(() => lab.cleanup())
  const c = new Cluster(lab)
  const a = c.addHost('ha', 1)
  const nets = [{ name: 'blue', vni: 42, subnet: '10.244.0.0/16', gateway: '10.244.0.1' }]
  // An etcd address nothing answers on keeps start-up waiting for the cluster
  // store for seconds, after the workers are up: worker 1 dies in that window.
  const cfg = hostConfig(a, [a], nets, [], { workers: 2, cluster: { etcd: [`http://${a.underlayIP.replace(/\.\d+$/, '.99')}:2379`] } })
  const file = c.writeConfig(a, { ...cfg, api: { socket: path.join(c.dir, `${a.name}.sock`) } })
  const startedAt = Date.now()
  const p = lab.spawn(a.ns, [process.execPath, TAPESTRY_BIN, 'agent', '--config', file], { env: { ...process.env, TAPESTRY_FAILPOINT_WORKER_EXIT: '1@1500' } })
  let timer: NodeJS.Timeout | undefined
  const code = await Promise.race([p.exited, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), 30_000) })])
  clearTimeout(timer)
  t.diagnostic(`exited ${Date.now() - startedAt} ms after the start`)
  assert.equal(code, 1, `exit code; stderr: ${p.stderr().slice(-2000)} stdout: ${p.stdout().slice(-3000)}`)
  const lines = logLines(p.stdout())
  const fatal = lines.find((l) => l.msg === 'datapath worker failed; stopping')
  assert.ok(fatal, `no fatal line in: ${p.stdout().slice(-3000)}`)
  assert.match(fatal.reason ?? '', /^datapath worker 1 failed: failpoint TAPESTRY_FAILPOINT_WORKER_EXIT=1@1500/)
  assert.ok(lines.slice(lines.indexOf(fatal)).some((l) => l.msg === 'agent failed to start'), 'the start failed after the fatal line')
  assert.equal(lines.some((l) => l.msg === 'agent ready'), false, 'never said it was ready')
  assert.ok(p.stderr().includes(`tapestry agent: ${fatal.reason}`), `stderr: ${p.stderr().slice(-2000)}`)
  assert.equal(sh('ip', ['netns', 'pids', a.ns]).trim(), '', 'no process left in the host\'s namespace')
})

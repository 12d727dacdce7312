/**
 * The capture relay of datapath workers (datapath/capture-relay.ts): frames a
 * worker's datapath shows it come out of relayFrames with the same arguments
 * and bytes (the virtio-net header kept before a pod frame, none for underlay
 * frames), one buffer per turn of the event loop; past the buffer's size
 * frames are counted as lost, not relayed.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CaptureRelay, RELAY_BUFFER_BYTES, relayFrames } from '../../../src/datapath/capture-relay'
import { CaptureHook, CapturePoint } from '../../../src/datapath/datapath'

interface Seen { point: number; port: number; vni: number; frame: number[]; vnet: number[] | null; addr: number; udpPort: number; localPort: number }

function recorder(): { hook: CaptureHook; seen: Seen[] } {
  const seen: Seen[] = []
  return {
    seen,
    hook: {
      frame(point, port, vni, buf, off, len, vnetOff, addr, udpPort, localPort) {
        seen.push({ point, port, vni, frame: [...buf.subarray(off, off + len)], vnet: vnetOff >= 0 ? [...buf.subarray(vnetOff, off)] : null, addr, udpPort, localPort })
      },
    },
  }
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r))

test('frames come out as they went in, in one buffer per turn', async () => {
  const sent: Uint8Array[] = []
  const relay = new CaptureRelay((b) => sent.push(b))
  const buf = new Uint8Array(4096).map((_, i) => i & 0xff)
  relay.frame(CapturePoint.PodRx, 7, 42, buf, 110, 60, 100, 0, 0, 0)
  relay.frame(CapturePoint.UnderlayRx, 0, 42, buf, 1000, 1450, -1, 0xc0a8fa02, 40000, 4789)
  relay.frame(CapturePoint.PodTx, 3, 42, buf, 2001, 13, 1991, 0, 0, 0)
  assert.equal(sent.length, 0, 'nothing before the turn ends')
  await nextTurn()
  assert.equal(sent.length, 1)
  const { hook, seen } = recorder()
  relayFrames(sent[0], hook)
  assert.deepEqual(seen, [
    { point: CapturePoint.PodRx, port: 7, vni: 42, frame: [...buf.subarray(110, 170)], vnet: [...buf.subarray(100, 110)], addr: 0, udpPort: 0, localPort: 0 },
    { point: CapturePoint.UnderlayRx, port: 0, vni: 42, frame: [...buf.subarray(1000, 2450)], vnet: null, addr: 0xc0a8fa02, udpPort: 40000, localPort: 4789 },
    { point: CapturePoint.PodTx, port: 3, vni: 42, frame: [...buf.subarray(2001, 2014)], vnet: [...buf.subarray(1991, 2001)], addr: 0, udpPort: 0, localPort: 0 },
  ])
  // The next turn starts a new buffer.
  relay.frame(CapturePoint.PodRx, 1, 5, buf, 10, 20, -1, 0, 0, 0)
  await nextTurn()
  assert.equal(sent.length, 2)
  const r2 = recorder()
  relayFrames(sent[1], r2.hook)
  assert.equal(r2.seen.length, 1)
  assert.equal(relay.lost, 0)
})

test('past the buffer, frames are counted as lost', async () => {
  const sent: Uint8Array[] = []
  const relay = new CaptureRelay((b) => sent.push(b))
  const big = new Uint8Array(65536)
  const fit = Math.floor(RELAY_BUFFER_BYTES / (65536 + 32))
  for (let i = 0; i < fit + 5; i++) relay.frame(CapturePoint.PodRx, 1, 1, big, 0, 65536, -1, 0, 0, 0)
  await nextTurn()
  assert.equal(relay.lost, 5)
  const { hook, seen } = recorder()
  relayFrames(sent[0], hook)
  assert.equal(seen.length, fit)
})

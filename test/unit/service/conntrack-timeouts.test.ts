import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CONNTRACK_DEFAULT_TIMEOUTS as D, CT_F_ASSURED, CtCounter, CtState } from '../../../src/service/conntrack'
import { PROTO_UDP } from '../../../src/wire/ipv4'
import { TCP_ACK as A, TCP_FIN as F, TCP_RST as R, TCP_SYN as S } from '../../../src/wire/tcp'
import { newCt, open, send, Pkt } from './conntrack-steps'

const T0 = 1_000_000

// Each row drives a connection to a state with packets at time T0, then
// checks it is still found at T0 + timeout - 1 ms and gone at T0 + timeout.
interface Row { name: string; first: number; then: Pkt[]; state: CtState; timeoutS: number; proto?: number }

const rows: Row[] = [
  { name: 'SYN_SENT', first: S, then: [], state: CtState.TcpSynSent, timeoutS: D.tcpSynSentS },
  { name: 'SYN_RECV', first: S, then: [{ dir: 'r', flags: S | A }], state: CtState.TcpSynRecv, timeoutS: D.tcpSynRecvS },
  { name: 'ESTABLISHED (assured): 5 days', first: S, then: [{ dir: 'r', flags: S | A }, { dir: 'o', flags: A }], state: CtState.TcpEstablished, timeoutS: D.tcpEstablishedS },
  { name: 'ESTABLISHED picked up, unassured: capped at 300 s', first: A, then: [], state: CtState.TcpEstablished, timeoutS: D.tcpUnassuredS },
  { name: 'FIN_WAIT', first: S, then: [{ dir: 'r', flags: S | A }, { dir: 'o', flags: A }, { dir: 'o', flags: F | A }], state: CtState.TcpFinWait, timeoutS: D.tcpFinWaitS },
  { name: 'CLOSE_WAIT', first: S, then: [{ dir: 'r', flags: S | A }, { dir: 'o', flags: A }, { dir: 'o', flags: F | A }, { dir: 'r', flags: A }], state: CtState.TcpCloseWait, timeoutS: D.tcpCloseWaitS },
  { name: 'LAST_ACK', first: S, then: [{ dir: 'r', flags: S | A }, { dir: 'o', flags: A }, { dir: 'o', flags: F | A }, { dir: 'r', flags: F | A }], state: CtState.TcpLastAck, timeoutS: D.tcpLastAckS },
  { name: 'TIME_WAIT', first: S, then: [{ dir: 'r', flags: S | A }, { dir: 'o', flags: A }, { dir: 'o', flags: F | A }, { dir: 'r', flags: F | A }, { dir: 'o', flags: A }], state: CtState.TcpTimeWait, timeoutS: D.tcpTimeWaitS },
  { name: 'CLOSE', first: S, then: [{ dir: 'r', flags: R | A }], state: CtState.TcpClose, timeoutS: D.tcpCloseS },
  { name: 'UDP without a reply: 30 s', first: 0, then: [{ dir: 'o', flags: 0 }], state: CtState.UdpUnreplied, timeoutS: D.udpS, proto: PROTO_UDP },
  { name: 'UDP with a reply: 120 s, assured', first: 0, then: [{ dir: 'r', flags: 0 }, { dir: 'o', flags: 0 }], state: CtState.UdpReplied, timeoutS: D.udpAssuredS, proto: PROTO_UDP },
]

for (const row of rows) {
  test(`timeout of ${row.name}`, () => {
    const ct = newCt()
    const c = open(ct, row.first, T0, row.proto)
    for (const p of row.then) assert.equal(send(ct, { ...p, now: T0 }, row.proto), c)
    assert.equal(ct.state(c), row.state)
    assert.equal(ct.timeoutOf(c), row.timeoutS * 1000)
    const ms = row.timeoutS * 1000
    assert.equal(send(ct, { dir: 'r', flags: A, now: T0 + ms - 1 }, row.proto) >= 0, true, 'alive 1 ms before')
    // A second, identical connection left alone is gone at the timeout.
    const ct2 = newCt()
    open(ct2, row.first, T0, row.proto)
    for (const p of row.then) send(ct2, { ...p, now: T0 }, row.proto)
    assert.equal(send(ct2, { dir: 'o', flags: A, now: T0 + ms }, row.proto), -1, 'gone at the timeout')
    assert.equal(ct2.counters[CtCounter.Expired], 1)
    assert.equal(ct2.size, 0)
    assert.equal(ct2.entries, 0)
  })
}

test('UDP becomes assured only with a reply', () => {
  const ct = newCt()
  const c = open(ct, 0, 0, PROTO_UDP)
  for (let i = 1; i <= 5; i++) send(ct, { dir: 'o', flags: 0, now: i * 1000 }, PROTO_UDP)
  assert.equal(ct.flags(c) & CT_F_ASSURED, 0)
  assert.equal(ct.timeoutOf(c), 30_000)
  send(ct, { dir: 'r', flags: 0, now: 6000 }, PROTO_UDP)
  assert.equal(ct.flags(c) & CT_F_ASSURED, CT_F_ASSURED)
  assert.equal(ct.timeoutOf(c), 120_000)
  assert.equal(send(ct, { dir: 'o', flags: 0, now: 6000 + 119_999 }, PROTO_UDP), c)
})

test('traffic keeps a connection alive: idle time counts from the last packet', () => {
  const ct = newCt()
  const c = open(ct, 0, 0, PROTO_UDP)
  for (let t = 29_000; t < 300_000; t += 29_000) assert.equal(send(ct, { dir: 'o', flags: 0, now: t }, PROTO_UDP), c)
})

test('configured timeouts replace the defaults', () => {
  const ct = newCt({ timeouts: { tcpEstablishedS: 3600, udpS: 5 } })
  const c = open(ct, S, 0)
  send(ct, { dir: 'r', flags: S | A })
  send(ct, { dir: 'o', flags: A })
  assert.equal(ct.timeoutOf(c), 3_600_000)
  const u = open(ct, 0, 0, PROTO_UDP, 5555)
  assert.equal(ct.timeoutOf(u), 5000)
  // The unassured cap is for TCP only: a long UDP timeout is not cut to it.
  const long = newCt({ timeouts: { udpS: 600, tcpUnassuredS: 300 } })
  assert.equal(long.timeoutOf(open(long, 0, 0, PROTO_UDP)), 600_000)
  assert.throws(() => newCt({ timeouts: { tcpCloseS: 0 } }), /timeouts.tcpCloseS must be a positive number/)
})

test('sweep removes expired connections only, in bounded steps', () => {
  const ct = newCt()
  for (let i = 0; i < 10; i++) open(ct, 0, i * 1000, PROTO_UDP, 1000 + i) // expire at 30 s + i s
  assert.equal(ct.sweep(29_999), 0)
  assert.equal(ct.sweep(32_500, 2), 2) // visits two slots: 0 and 1
  assert.equal(ct.sweep(32_500), 1) // slot 2
  assert.equal(ct.size, 7)
  assert.equal(ct.sweep(100_000), 7)
  assert.equal(ct.counters[CtCounter.Expired], 10)
  assert.equal(ct.entries, 0)
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CT_F_ASSURED, CT_STATE_NAMES } from '../../../src/service/conntrack'
import { TCP_ACK as A, TCP_FIN as F, TCP_PSH as P, TCP_RST as R, TCP_SYN as S } from '../../../src/wire/tcp'
import { newCt, open, send } from './conntrack-steps'

// Each row: the first packet (client -> VIP, creates the connection), then
// packets in either direction ('o' client side, 'r' endpoint side), each with
// the state it must leave the connection in.
interface Row { name: string; first: [number, string]; then: [('o' | 'r'), number, string][]; assured: boolean }

const rows: Row[] = [
  {
    name: 'three-way handshake',
    first: [S, 'SYN_SENT'],
    then: [['r', S | A, 'SYN_RECV'], ['o', A, 'ESTABLISHED']],
    assured: true,
  },
  {
    name: 'client closes first: FIN, ACK, FIN, ACK',
    first: [S, 'SYN_SENT'],
    then: [
      ['r', S | A, 'SYN_RECV'], ['o', A, 'ESTABLISHED'], ['o', P | A, 'ESTABLISHED'], ['r', P | A, 'ESTABLISHED'],
      ['o', F | A, 'FIN_WAIT'], // client's FIN
      ['o', A, 'FIN_WAIT'], // more from the same side changes nothing
      ['r', A, 'CLOSE_WAIT'], // endpoint acks the FIN
      ['r', P | A, 'CLOSE_WAIT'], // half-closed: endpoint still sends
      ['r', F | A, 'LAST_ACK'], // endpoint's FIN
      ['o', A, 'TIME_WAIT'], // client acks it
    ],
    assured: true,
  },
  {
    name: 'endpoint closes first',
    first: [S, 'SYN_SENT'],
    then: [['r', S | A, 'SYN_RECV'], ['o', A, 'ESTABLISHED'], ['r', F | A, 'FIN_WAIT'], ['o', A, 'CLOSE_WAIT'], ['o', F | A, 'LAST_ACK'], ['r', A, 'TIME_WAIT']],
    assured: true,
  },
  {
    name: 'FINs cross: the second FIN goes straight to LAST_ACK',
    first: [S, 'SYN_SENT'],
    then: [['r', S | A, 'SYN_RECV'], ['o', A, 'ESTABLISHED'], ['o', F | A, 'FIN_WAIT'], ['r', F | A, 'LAST_ACK'], ['r', A, 'LAST_ACK'], ['o', A, 'TIME_WAIT']],
    assured: true,
  },
  {
    name: 'refused: RST from the endpoint answers the SYN',
    first: [S, 'SYN_SENT'],
    then: [['r', R | A, 'CLOSE']],
    assured: false,
  },
  {
    name: 'RST from the client tears down an established connection',
    first: [S, 'SYN_SENT'],
    then: [['r', S | A, 'SYN_RECV'], ['o', A, 'ESTABLISHED'], ['o', R, 'CLOSE'], ['r', A, 'CLOSE']],
    assured: true,
  },
  {
    name: 'retransmitted SYN and SYN+ACK change nothing',
    first: [S, 'SYN_SENT'],
    then: [['o', S, 'SYN_SENT'], ['r', S | A, 'SYN_RECV'], ['r', S | A, 'SYN_RECV'], ['o', S, 'SYN_RECV'], ['o', A, 'ESTABLISHED']],
    assured: true,
  },
  {
    name: 'endpoint data before the handshake completes stays SYN_RECV',
    first: [S, 'SYN_SENT'],
    then: [['r', A, 'SYN_SENT'], ['r', S | A, 'SYN_RECV'], ['r', P | A, 'SYN_RECV']],
    assured: false,
  },
  {
    name: 'picked up mid-stream: established, assured once the endpoint answers',
    first: [A, 'ESTABLISHED'],
    then: [['o', P | A, 'ESTABLISHED'], ['r', A, 'ESTABLISHED']],
    assured: true,
  },
  {
    name: 'picked up mid-stream with no answer stays unassured',
    first: [P | A, 'ESTABLISHED'],
    then: [['o', P | A, 'ESTABLISHED']],
    assured: false,
  },
  {
    name: 'picked up with a FIN',
    first: [F | A, 'FIN_WAIT'],
    then: [['r', F | A, 'LAST_ACK'], ['o', A, 'TIME_WAIT']],
    assured: false,
  },
  {
    name: 'FIN during SYN_RECV',
    first: [S, 'SYN_SENT'],
    then: [['r', S | A, 'SYN_RECV'], ['o', F | A, 'FIN_WAIT'], ['r', A, 'CLOSE_WAIT']],
    assured: false,
  },
]

for (const row of rows) {
  test(`tcp states: ${row.name}`, () => {
    const ct = newCt()
    const c = open(ct, row.first[0])
    assert.ok(c >= 0)
    assert.equal(CT_STATE_NAMES[ct.state(c)], row.first[1], 'after the first packet')
    row.then.forEach(([dir, flags, want], i) => {
      assert.equal(send(ct, { dir, flags }), c, `step ${i} finds the connection`)
      assert.equal(CT_STATE_NAMES[ct.state(c)], want, `step ${i} (${dir} flags 0x${flags.toString(16)})`)
    })
    assert.equal((ct.flags(c) & CT_F_ASSURED) !== 0, row.assured, 'assured')
  })
}

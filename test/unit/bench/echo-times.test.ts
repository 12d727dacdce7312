/**
 * bench/lib/echo-times.ts against tcpdump text as tcpdump prints it: plain ICMP
 * on a pod's eth0, and VXLAN-encapsulated ICMP on an underlay (two lines).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { echoTimes, lastEchoId } from '../../../bench/lib/echo-times'

const POD = [
  '1795456098.736565 IP 10.244.1.2 > 10.244.0.1: ICMP echo request, id 8109, seq 1, length 64',
  '1795456098.795935 IP 10.244.1.2 > 10.244.2.2: ICMP echo request, id 8115, seq 1, length 64',
  '1795456098.795941 IP 10.244.2.2 > 10.244.1.2: ICMP echo reply, id 8115, seq 1, length 64',
  '1795456098.808134 IP 10.244.1.2 > 10.244.2.2: ICMP echo request, id 8115, seq 2, length 64',
].join('\n')

const UNDERLAY = [
  '1795456098.795208 IP 192.168.250.1.50413 > 192.168.250.2.4789: VXLAN, flags [I] (0x08), vni 42',
  'IP 10.244.1.2 > 10.244.2.2: ICMP echo request, id 8115, seq 1, length 64',
  '1795456098.796053 IP 192.168.250.2.36297 > 192.168.250.1.4789: VXLAN, flags [I] (0x08), vni 42',
  'IP 10.244.2.2 > 10.244.1.2: ICMP echo reply, id 8115, seq 1, length 64',
].join('\n')

test('echo times by sequence number, for one id and one direction', () => {
  assert.deepEqual([...echoTimes(POD, 'request', '8115')], [['1', 1795456098.795935], ['2', 1795456098.808134]])
  assert.deepEqual([...echoTimes(POD, 'reply', '8115')], [['1', 1795456098.795941]])
  assert.deepEqual([...echoTimes(POD, 'request', '8109')], [['1', 1795456098.736565]])
})

test('an encapsulated echo takes the time of its outer line', () => {
  assert.deepEqual([...echoTimes(UNDERLAY, 'request', '8115')], [['1', 1795456098.795208]])
  assert.deepEqual([...echoTimes(UNDERLAY, 'reply', '8115')], [['1', 1795456098.796053]])
})

test('the measured ping is the last id seen', () => {
  assert.equal(lastEchoId(POD), '8115')
  assert.equal(lastEchoId('nothing here'), null)
})

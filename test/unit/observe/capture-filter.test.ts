import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FILTER_INVALID, FilterError, compileFilter, parseFilter } from '../../../src/observe/filter'
import { PROTO_TCP, PROTO_UDP } from '../../../src/wire/ipv4'
import { arpRequest, icmp4, l4v6, tcp4, udp4, udp4LaterFragment } from './frames'

// The frames every filter row is evaluated against, each in VNI 42 unless noted.
const FRAMES: Record<string, { f: Uint8Array; vni?: number }> = {
  tcpAB: { f: tcp4('10.244.1.2', '10.244.2.2', 40000, 80) },          // 10.244.1.2:40000 > 10.244.2.2:80 TCP
  tcpBA: { f: tcp4('10.244.2.2', '10.244.1.2', 80, 40000) },          // the reply
  udpDns: { f: udp4('10.244.1.2', '10.96.0.10', 5353, 53), vni: 43 }, // UDP to port 53, in VNI 43
  icmp: { f: icmp4('10.244.1.2', '10.244.2.2') },                     // echo request
  arp: { f: arpRequest('10.244.1.2', '10.244.0.1') },                 // who-has the gateway
  frag: { f: udp4LaterFragment('10.244.1.2', '10.244.2.2', [0, 80, 0, 53]) }, // data bytes look like ports 80 > 53
  tcp6: { f: l4v6(PROTO_TCP, 443, 50000) },
  udp6: { f: l4v6(PROTO_UDP, 546, 547) },
  runt: { f: new Uint8Array(10) },                                      // shorter than an Ethernet header
}

function matches(expr: string): string[] {
  const p = compileFilter(expr)
  return Object.entries(FRAMES).filter(([, x]) => (p === null ? true : p(x.f, 0, x.f.length, x.vni ?? 42))).map(([k]) => k)
}

const ROWS: { expr: string; want: string[] }[] = [
  { expr: '', want: Object.keys(FRAMES) },
  { expr: 'tcp', want: ['tcpAB', 'tcpBA', 'tcp6'] },
  { expr: 'udp', want: ['udpDns', 'frag', 'udp6'] },
  { expr: 'icmp', want: ['icmp'] },
  { expr: 'arp', want: ['arp'] },
  { expr: 'ip', want: ['tcpAB', 'tcpBA', 'udpDns', 'icmp', 'frag'] },
  { expr: 'ip6', want: ['tcp6', 'udp6'] },
  // host matches IPv4 source or destination, and ARP sender or target.
  { expr: 'host 10.244.2.2', want: ['tcpAB', 'tcpBA', 'icmp', 'frag'] },
  { expr: 'src host 10.244.2.2', want: ['tcpBA'] },
  { expr: 'dst host 10.244.2.2', want: ['tcpAB', 'icmp', 'frag'] },
  { expr: 'host 10.244.0.1', want: ['arp'] },
  { expr: 'net 10.96.0.0/12', want: ['udpDns'] },
  { expr: 'src net 10.244.2.0/24', want: ['tcpBA'] },
  { expr: 'dst net 10.244.0.0/16', want: ['tcpAB', 'tcpBA', 'icmp', 'arp', 'frag'] },
  // port: TCP or UDP, IPv4 or IPv6, never a later fragment.
  { expr: 'port 80', want: ['tcpAB', 'tcpBA'] },
  { expr: 'src port 80', want: ['tcpBA'] },
  { expr: 'dst port 80', want: ['tcpAB'] },
  { expr: 'port 53', want: ['udpDns'] },
  { expr: 'port 443', want: ['tcp6'] },
  { expr: 'udp port 547', want: ['udp6'] },
  { expr: 'tcp port 53', want: [] },
  { expr: 'tcp dst port 40000', want: ['tcpBA'] },
  { expr: 'udp src port 5353', want: ['udpDns'] },
  { expr: 'vni 43', want: ['udpDns'] },
  { expr: 'not vni 43', want: ['tcpAB', 'tcpBA', 'icmp', 'arp', 'frag', 'tcp6', 'udp6', 'runt'] },
  { expr: 'tcp and port 80 and src host 10.244.1.2', want: ['tcpAB'] },
  { expr: 'icmp or arp', want: ['icmp', 'arp'] },
  { expr: 'icmp || arp', want: ['icmp', 'arp'] },
  { expr: '!ip && !ip6', want: ['arp', 'runt'] },
  { expr: 'not (tcp or udp)', want: ['icmp', 'arp', 'runt'] },
  // pcap-filter precedence: and/or equal, left to right.
  { expr: 'icmp or tcp and port 80', want: ['tcpAB', 'tcpBA'] },      // (icmp or tcp) and port 80
  { expr: 'icmp or (tcp and port 80)', want: ['tcpAB', 'tcpBA', 'icmp'] },
  { expr: 'not tcp and ip', want: ['udpDns', 'icmp', 'frag'] },       // not binds tightest
  { expr: 'HOST 10.244.1.2 AND TCP', want: ['tcpAB', 'tcpBA'] },      // keywords are case-insensitive
]

for (const r of ROWS) {
  test(`filter ${JSON.stringify(r.expr)}`, () => {
    assert.deepEqual(matches(r.expr), r.want)
  })
}

test('parse tree: and/or left to right, not on one factor', () => {
  assert.deepEqual(parseFilter('not icmp or tcp and port 80'), {
    kind: 'and',
    left: { kind: 'or', left: { kind: 'not', arg: { kind: 'proto', proto: 'icmp' } }, right: { kind: 'proto', proto: 'tcp' } },
    right: { kind: 'port', dir: 'any', port: 80, proto: null },
  })
  assert.equal(parseFilter('   '), null)
})

const BAD: { expr: string; message: RegExp }[] = [
  { expr: 'host', message: /expected an address after 'host' at the end/ },
  { expr: 'host 10.0.0', message: /'10\.0\.0' is not an IPv4 address \(token '10\.0\.0' at column 6\)/ },
  { expr: 'host fe80::1', message: /IPv6 addresses are not supported/ },
  { expr: 'net 10.244.1.0/16', message: /'10\.244\.1\.0\/16' has host bits set/ },
  { expr: 'net 10.0.0.0/33', message: /is not an IPv4 network/ },
  { expr: 'port 70000', message: /'70000' is not a port number/ },
  { expr: 'port http', message: /'http' is not a port number \(0-65535\) \(token 'http' at column 6\)/ },
  { expr: 'vni 16777216', message: /is not a VNI/ },
  { expr: 'tcp and', message: /expected a filter term at the end/ },
  { expr: '(tcp or udp', message: /expected '\)' to close the '\(' at column 1/ },
  { expr: 'tcp)', message: /a '\)' without its '\('/ },
  { expr: 'tcp udp', message: /expected 'and' or 'or' before 'udp' \(token 'udp' at column 5\)/ },
  { expr: 'src tcp', message: /expected 'host', 'net' or 'port' after 'src' \(token 'tcp' at column 5\)/ },
  { expr: 'tcp src host 1.2.3.4', message: /expected 'and' or 'or' before 'src'/ },
  { expr: 'ether host 02:00:00:00:00:01', message: /unknown word 'ether' \(expected one of: .*\) \(token 'ether' at column 1\)/ },
  { expr: 'tcp & udp', message: /'&' at column 5 \(use 'and'/ },
]

for (const b of BAD) {
  test(`bad filter ${JSON.stringify(b.expr)} is refused with the token named`, () => {
    assert.throws(() => compileFilter(b.expr), (err: unknown) => {
      assert.ok(err instanceof FilterError)
      assert.equal((err as FilterError).code, FILTER_INVALID)
      assert.match((err as Error).message, b.message)
      return true
    })
  })
}

test('the predicate reads only [off, off+len): a frame inside a larger slab', () => {
  const f = tcp4('10.244.1.2', '10.244.2.2', 40000, 80)
  const slab = new Uint8Array(f.length + 100).fill(0xa5)
  slab.set(f, 37)
  const p = compileFilter('tcp and dst port 80')!
  assert.equal(p(slab, 37, f.length, 42), true)
  assert.equal(p(slab, 37, 20, 42), false, 'truncated to 20 bytes: no IPv4 header, so no match')
})

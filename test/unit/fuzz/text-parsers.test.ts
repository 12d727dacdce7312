/**
 * The small parsers that read text or bytes from outside the data path, against
 * random and mutated input (fuzzCases() each, 100,000 in CI):
 *
 * - wire/addr.ts ipv4Parse, cidrParse, macParse: never throw; what they accept
 *   is in range and formats back to text that parses to the same value;
 * - observe/listen-address.ts parseListen: null or a host and a port in 1..65535;
 * - observe/filter.ts compileFilter (capture filters come over the API): only
 *   FilterError; a compiled predicate never throws on any frame;
 * - observe/pcap.ts PcapFramer (the CLI reads the agent's pcap stream): only
 *   PcapFormatError, whatever the chunking;
 * - control/cluster-model.ts parseKey and the record decoders (etcd values
 *   come from other nodes): never throw, null or a well-typed record.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cidrParse, ipv4Format, ipv4Parse, macFormat, macParse } from '../../../src/wire/addr'
import { parseListen } from '../../../src/observe/listen-address'
import { FilterError, compileFilter } from '../../../src/observe/filter'
import { PcapFormatError, PcapFramer, pcapFileHeader, pcapWriteRecordHeader } from '../../../src/observe/pcap'
import { blockOwner, clusterKeys, decodeNode, decodePod, decodeService, parseKey } from '../../../src/control/cluster-model'
import { assertReached, baseSeed, below, chance, forEachCaseCollect, fuzzCases, fuzzInput, mutate, pick, randomBytes, Rng } from '../../harness/fuzz'
import { frameTemplates } from '../../harness/fuzz-frames'

const N = fuzzCases()
const BASE = baseSeed(0x7e47)
/** Seeds of failures found so far, by test (none). */
const REGRESSION_SEEDS: Record<string, number[]> = {}

const ALPHABET = '0123456789.:/-abcdefABCDEFxX []()!&|\t\n %\u00e9\u0660\u{1d7ce}'

/** Text near `seed` (characters replaced, inserted, dropped, repeated) or random. */
function nearText(rng: Rng, seeds: readonly string[]): string {
  let s = chance(rng, 0.85) ? pick(rng, seeds) : ''
  const chars = [...ALPHABET]
  for (let r = below(rng, 4); r > 0; r--) {
    const at = below(rng, s.length + 1)
    switch (below(rng, 4)) {
      case 0: s = s.slice(0, at) + pick(rng, chars) + s.slice(at + 1); break
      case 1: s = s.slice(0, at) + pick(rng, chars) + s.slice(at); break
      case 2: s = s.slice(0, at) + s.slice(at + 1); break
      default: s = s.slice(0, at) + s.slice(at, at + below(rng, 6)).repeat(2) + s.slice(at)
    }
  }
  return s
}

test(`ipv4Parse, cidrParse, macParse, parseListen: never throw, accept only what round-trips (${N} inputs each)`, () => {
  forEachCaseCollect('addr', BASE, N, REGRESSION_SEEDS.addr ?? [], (rng) => {
    const ip = nearText(rng, ['10.244.1.2', '0.0.0.0', '255.255.255.255', '1.2.3.4', '01.2.3.4', '256.1.1.1'])
    const v = ipv4Parse(ip)
    assert.ok(v === -1 || (Number.isInteger(v) && v >= 0 && v <= 0xffffffff), `[ipv4 range] ipv4Parse(${JSON.stringify(ip)}) = ${v}`)
    if (v >= 0) assert.equal(ipv4Parse(ipv4Format(v)), v, `[ipv4 round trip] ${JSON.stringify(ip)}`)
    const cidr = nearText(rng, ['10.244.0.0/16', '0.0.0.0/0', '1.2.3.4/32', '1.2.3.4/33', '1.2.3.4/'])
    const c = cidrParse(cidr)
    if (c !== null) assert.ok(c.prefix >= 0 && c.prefix <= 32 && c.addr >= 0 && c.addr <= 0xffffffff, `[cidr range] ${JSON.stringify(cidr)} -> ${JSON.stringify(c)}`)
    const macText = nearText(rng, ['02:00:0a:f4:01:03', 'ff:ff:ff:ff:ff:ff', '02-00-0a-f4-01-03', '2:0:a:f4:1:3'])
    const m = macParse(macText)
    if (m !== null) {
      assert.ok(m.hi >= 0 && m.hi <= 0xffff && m.lo >= 0 && m.lo <= 0xffffffff, `[mac range] ${JSON.stringify(macText)}`)
      assert.deepEqual(macParse(macFormat(m.hi, m.lo)), m, `[mac round trip] ${JSON.stringify(macText)}`)
    }
    const listen = nearText(rng, ['127.0.0.1:9464', '[::1]:9464', 'localhost:1', ':9464', '0.0.0.0:65536'])
    const l = parseListen(listen)
    if (l !== null) assert.ok(typeof l.host === 'string' && l.host !== '' && Number.isInteger(l.port) && l.port >= 1 && l.port <= 65535, `[listen] ${JSON.stringify(listen)} -> ${JSON.stringify(l)}`)
  })
})

const FILTERS = [
  'tcp port 80', 'host 10.244.1.2 and not arp', 'src net 10.0.0.0/8 or dst port 53', 'vni 42', '(tcp or udp) and port 5201',
  'not (icmp)', 'ip6', '! arp && tcp', 'udp dst port 4789', 'tcp src port 1 || icmp', '((((ip))))', 'net 10.0.0.0/33', 'port 70000',
]
const FRAMES = frameTemplates()

test(`compileFilter: throws only FilterError; a compiled filter never throws on any frame (${N} inputs)`, () => {
  let compiled = 0
  forEachCaseCollect('filter', BASE ^ 0xf1, N, REGRESSION_SEEDS.filter ?? [], (rng) => {
    const expr = chance(rng, 0.9) ? nearText(rng, FILTERS) : Array.from({ length: below(rng, 8) }, () => pick(rng, ['and', 'or', 'not', '(', ')', 'tcp', 'port', 'host', 'net', 'vni', 'src', 'dst', '1', '10.0.0.1', '10.0.0.0/8'])).join(' ')
    let pred: ReturnType<typeof compileFilter>
    try {
      pred = compileFilter(expr)
    } catch (err) {
      assert.ok(err instanceof FilterError, `[not FilterError] compileFilter(${JSON.stringify(expr)}) threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
      return
    }
    compiled++
    if (pred === null) return
    for (let i = 0; i < 3; i++) {
      const f = fuzzInput(rng, FRAMES)
      const off = below(rng, 4)
      const buf = new Uint8Array(off + f.length)
      buf.set(f, off)
      const r: unknown = pred(buf, off, chance(rng, 0.9) ? f.length : below(rng, f.length + 1), pick(rng, [-1, 42, 0xffffff]))
      assert.equal(typeof r, 'boolean', `[predicate] ${JSON.stringify(expr)} returned ${r}`)
    }
  })
  assertReached(compiled > N / 20, N, `only ${compiled} filters compiled`)
})

/** A small valid pcap stream: file header and a few records of template frames. */
function pcapStream(rng: Rng): Uint8Array {
  const parts: Uint8Array[] = [pcapFileHeader(65535, 1)]
  for (let i = below(rng, 4); i > 0; i--) {
    const f = pick(rng, FRAMES)
    const h = new Uint8Array(16)
    pcapWriteRecordHeader(h, 0, 1000 + i, 5, f.length, f.length)
    parts.push(h, f)
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

test(`PcapFramer: any bytes in any chunks give records or PcapFormatError, nothing else (${N} streams)`, () => {
  forEachCaseCollect('pcap', BASE ^ 0x9ca9, N, REGRESSION_SEEDS.pcap ?? [], (rng) => {
    const valid = pcapStream(rng)
    const bytes = chance(rng, 0.1) ? randomBytes(rng, below(rng, 200)) : chance(rng, 0.3) ? valid : mutate(rng, valid)
    const framer = new PcapFramer()
    let o = 0
    let records = 0
    try {
      while (o < bytes.length) {
        const n = 1 + below(rng, 64)
        framer.push(Buffer.from(bytes.subarray(o, o + n)), (r) => {
          records++
          assert.ok(r.data.length <= bytes.length, `[record] a record of ${r.data.length} bytes from a ${bytes.length}-byte stream`)
        })
        o += n
      }
    } catch (err) {
      if (err instanceof PcapFormatError) return
      throw new Error(`[not PcapFormatError] ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
    }
    assert.ok(records <= bytes.length / 16, `[records] ${records} records from ${bytes.length} bytes`)
  })
})

test(`cluster-model: keys and records from etcd never throw, decode to null or a typed record (${N} inputs)`, () => {
  const keys = clusterKeys('/tapestry')
  const values = [
    JSON.stringify({ name: 'host-a', underlayIP: '192.168.250.1', vxlanPort: 4789 }),
    JSON.stringify({ name: 'web-1', node: 'host-a', network: 'blue', vni: 42, ip: '10.244.1.2', mac: '02:00:0a:f4:01:02' }),
    JSON.stringify({ node: 'host-a', network: 'blue', block: '10.244.1.0/24', underlayIP: '192.168.250.1' }),
    JSON.stringify({ name: 'svc', namespace: 'default', ports: [{ port: 80 }] }),
  ]
  forEachCaseCollect('cluster', BASE ^ 0xc1, N, REGRESSION_SEEDS.cluster ?? [], (rng) => {
    const key = nearText(rng, ['/tapestry/nodes/host-a', '/tapestry/pods/host-a/web-1', '/tapestry/blocks/blue/10.244.1.0-24', '/tapestry/services/default/svc', '/tapestry/', '/other/nodes/x'])
    const k = parseKey(keys, key)
    if (k !== null) assert.ok(['node', 'pod', 'block', 'service'].includes(k.kind), `[key] ${JSON.stringify(key)} -> ${JSON.stringify(k)}`)
    const text = chance(rng, 0.7) ? nearText(rng, values) : Buffer.from(randomBytes(rng, below(rng, 40))).toString('latin1')
    const n = decodeNode('host-a', text)
    if (n !== null) assert.ok(n.vxlanPort >= 1 && n.vxlanPort <= 65535 && n.underlayAddr > 0, `[node] ${text}`)
    const p = decodePod('host-a', 'web-1', text)
    if (p !== null) assert.ok(p.vni >= 1 && p.vni <= 0xffffff && macParse(p.mac) !== null && ipv4Parse(p.ip) >= 0, `[pod] ${text}`)
    const owner = blockOwner(text)
    assert.ok(owner === null || (typeof owner === 'string' && owner !== ''), `[block] ${text}`)
    const s = decodeService('default', 'svc', text)
    if (s !== null) assert.ok(s.name === 'svc' && s.namespace === 'default', `[service] ${text}`)
  })
})

/**
 * TCP request/response load (in the spirit of netperf TCP_RR), run as its own
 * process inside a pod namespace:
 *
 *   node e2e-rr.js server PORT SIZE
 *       answers every SIZE-byte request with SIZE bytes; prints "listening".
 *   node e2e-rr.js client HOST PORT SIZE SECONDS CONNECTIONS
 *       opens CONNECTIONS persistent connections (TCP_NODELAY), each sends a
 *       request, waits for the whole answer, sends the next, for SECONDS;
 *       prints one JSON line: requests, requests/s, p50/p99 latency in µs.
 *
 * Closed loop: the rate is bounded by the round trip of the path, which is
 * what a service in front of a pod adds to. Both ends exit by themselves
 * (the client after SECONDS, the server when killed or after 10 minutes).
 */
import * as net from 'node:net'

function server(port: number, size: number): void {
  const reply = Buffer.alloc(size, 0x62)
  const srv = net.createServer((sock) => {
    sock.setNoDelay(true)
    let pending = 0
    sock.on('data', (d) => {
      pending += d.length
      while (pending >= size) {
        pending -= size
        sock.write(reply)
      }
    })
    sock.on('error', () => sock.destroy())
  })
  srv.listen(port, () => process.stdout.write('listening\n'))
  setTimeout(() => process.exit(0), 600_000).unref()
  process.on('SIGTERM', () => process.exit(0))
}

function client(host: string, port: number, size: number, seconds: number, connections: number): void {
  const request = Buffer.alloc(size, 0x61)
  const lat: number[] = []
  let requests = 0
  let open = 0
  let t0 = 0n
  let end = 0n
  let done = false
  const sockets: net.Socket[] = []

  const finish = (): void => {
    if (done) return
    done = true
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
    for (const s of sockets) s.destroy()
    lat.sort((a, b) => a - b)
    const pct = (p: number): number => (lat.length ? lat[Math.min(lat.length, Math.max(1, Math.ceil((p / 100) * lat.length))) - 1] : NaN)
    process.stdout.write(JSON.stringify({ connections, size, seconds: elapsed, requests, requestsPerSec: requests / elapsed, p50Us: pct(50), p99Us: pct(99) }) + '\n')
    process.exit(0)
  }

  let connectTimer: NodeJS.Timeout | undefined
  const start = (): void => {
    clearTimeout(connectTimer)
    t0 = process.hrtime.bigint()
    end = t0 + BigInt(Math.round(seconds * 1e9))
    for (const s of sockets) send(s)
    setTimeout(finish, seconds * 1000 + 2000) // a connection stuck on a lost answer does not hold the run
  }
  const sent = new Map<net.Socket, bigint>()
  const send = (s: net.Socket): void => {
    sent.set(s, process.hrtime.bigint())
    s.write(request)
  }

  for (let i = 0; i < connections; i++) {
    const s = net.connect({ host, port }, () => {
      s.setNoDelay(true)
      if (++open === connections) start()
    })
    sockets.push(s)
    let got = 0
    s.on('data', (d) => {
      got += d.length
      while (got >= size) {
        got -= size
        const now = process.hrtime.bigint()
        lat.push(Number(now - sent.get(s)!) / 1000)
        requests++
        if (now >= end) {
          s.end()
          if (--open === 0) finish()
          return
        }
        send(s)
      }
    })
    s.on('error', (err) => {
      process.stderr.write(`connection ${i}: ${err.message}\n`)
      process.exit(1)
    })
  }
  connectTimer = setTimeout(() => {
    process.stderr.write(`could not open ${connections} connections to ${host}:${port}\n`)
    process.exit(1)
  }, 10_000)
}

const [mode, ...a] = process.argv.slice(2)
if (mode === 'server') server(Number(a[0]), Number(a[1]))
else if (mode === 'client') client(a[0], Number(a[1]), Number(a[2]), Number(a[3]), Number(a[4]))
else {
  process.stderr.write('usage: e2e-rr.js server PORT SIZE | client HOST PORT SIZE SECONDS CONNECTIONS\n')
  process.exit(2)
}

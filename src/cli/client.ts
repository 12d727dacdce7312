/** The CLI side of the runtime API: requests over the agent's unix socket, and table output. */
import * as http from 'node:http'
import * as fs from 'node:fs'
import { TapestryError } from '../lib/errors'

export function defaultSocket(): string {
  try {
    const socks = fs.readdirSync('/run/tapestry').filter((f) => f.endsWith('.sock'))
    if (socks.length === 1) return `/run/tapestry/${socks[0]}`
  } catch { /* no directory */ }
  return '/run/tapestry/agent.sock'
}

export function request<T>(socketPath: string, method: string, urlPath: string, body?: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body)
    const req = http.request({ socketPath, method, path: urlPath, headers: data ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { text += c })
      res.on('end', () => {
        let parsed: unknown
        try { parsed = JSON.parse(text) } catch { return reject(new TapestryError('TAPESTRY_API_BAD_REPLY', `the agent answered with something that is not JSON: ${text.slice(0, 200)}`)) }
        if ((res.statusCode ?? 500) >= 400) {
          const e = (parsed as { error?: { code?: string; message?: string } }).error
          return reject(new TapestryError(e?.code ?? 'TAPESTRY_API_ERROR', e?.message ?? `HTTP ${res.statusCode}`))
        }
        resolve(parsed as T)
      })
    })
    req.on('error', (err: NodeJS.ErrnoException) => reject(connectError(err, socketPath)))
    if (data) req.end(data)
    else req.end()
  })
}

/** The sentence for a failure to reach the agent's socket. */
function connectError(err: NodeJS.ErrnoException, socketPath: string): Error {
  if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
    return new TapestryError('TAPESTRY_AGENT_UNREACHABLE', `no agent is listening on ${socketPath}: is \`tapestry agent\` running? (use --socket PATH to point elsewhere)`)
  }
  if (err.code === 'EACCES') return new TapestryError('TAPESTRY_AGENT_UNREACHABLE', `permission denied on ${socketPath}: the API socket is root-only`)
  return err
}

/**
 * A request whose 200 answer is a stream (a capture): resolves with the response
 * to read from, and the request to destroy() to end it early. An error status
 * rejects with the agent's JSON error.
 */
export function openStream(socketPath: string, method: string, urlPath: string, body: unknown): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body)
    // agent: false: a connection of its own, closed with the stream.
    const req = http.request({ socketPath, method, path: urlPath, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      if (res.statusCode === 200) return resolve({ req, res })
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { text += c })
      res.on('end', () => {
        let e: { code?: string; message?: string } | undefined
        try { e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error } catch { /* not JSON */ }
        reject(new TapestryError(e?.code ?? 'TAPESTRY_API_ERROR', e?.message ?? `HTTP ${res.statusCode}: ${text.slice(0, 200)}`))
      })
    })
    req.on('error', (err: NodeJS.ErrnoException) => reject(connectError(err, socketPath)))
    req.end(data)
  })
}

/** Renders rows as an aligned text table with the given columns. */
export function table(rows: Record<string, unknown>[], cols: string[]): string {
  const cells = rows.map((r) => cols.map((c) => (r[c] === null || r[c] === undefined ? '-' : String(r[c]))))
  const w = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)))
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(w[i])).join('  ').trimEnd()
  return [line(cols.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n') + '\n'
}

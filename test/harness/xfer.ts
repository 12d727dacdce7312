/** Runs a hashed TCP transfer between two namespaces and returns both summaries. */
import * as path from 'node:path'
import { Lab, waitFor } from './lab'

const XFER = path.join(__dirname, '..', 'e2e', 'fixtures', 'tcp-xfer.js')

export interface XferResult { sent: { bytes: number; sha256: string }; received: { bytes: number; sha256: string } }

/** `localPort`: the client's source port (a flow chosen ahead, e.g. for its worker); absent: any. */
export async function tcpTransfer(lab: Lab, clientNs: string, serverNs: string, serverIp: string, bytes: number, port = 7001, localPort?: number): Promise<XferResult> {
  const srv = lab.spawn(serverNs, [process.execPath, XFER, 'server', String(port)])
  await waitFor('transfer server listening', () => srv.stdout().includes('listening'))
  const cli = await lab.execAsync(clientNs, [process.execPath, XFER, 'client', serverIp, String(port), String(bytes), ...(localPort !== undefined ? [String(localPort)] : [])], 120_000)
  if (cli.code !== 0) throw new Error(`transfer client failed (${cli.code}): ${cli.stderr}`)
  await waitFor('transfer server summary', () => srv.stdout().includes('sha256'), 10_000)
  const received = JSON.parse(srv.stdout().split('\n').find((l) => l.includes('sha256'))!)
  const sent = JSON.parse(cli.stdout.trim().split('\n').pop()!)
  return { sent, received }
}

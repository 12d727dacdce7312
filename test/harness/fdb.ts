/**
 * Reads an agent's forwarding database through the CLI, as an operator would:
 * `tapestry fdb show --json --socket PATH`, run in the host's namespace.
 */
import { Lab } from './lab'
import { TAPESTRY_BIN } from './overlay'

export interface FdbEntry {
  vni: number
  mac: string
  port: number
  type: 'static' | 'learned'
  ageMs: number
  /** Underlay address of the remote VTEP the MAC is behind, or null for a local pod. */
  remote: string | null
  /** Name of the local pod the MAC is behind, or null. */
  pod: string | null
}

export async function fdbShow(lab: Lab, hostNs: string, socket: string): Promise<FdbEntry[]> {
  const r = await lab.execAsync(hostNs, [process.execPath, TAPESTRY_BIN, 'fdb', 'show', '--json', '--socket', socket], 15_000)
  if (r.code !== 0) throw new Error(`tapestry fdb show exited ${r.code}: ${r.stderr}${r.stdout}`)
  let parsed: unknown
  try {
    parsed = JSON.parse(r.stdout)
  } catch (err) {
    throw new Error(`tapestry fdb show --json printed no JSON (${err}): ${r.stdout.slice(0, 500)}`)
  }
  if (!Array.isArray(parsed)) throw new Error(`tapestry fdb show --json printed no array: ${r.stdout.slice(0, 500)}`)
  return parsed as FdbEntry[]
}

/** The entry for (vni, mac), MAC compared case-insensitively. */
export function fdbFind(entries: FdbEntry[], vni: number, mac: string): FdbEntry | undefined {
  return entries.find((e) => e.vni === vni && e.mac.toLowerCase() === mac.toLowerCase())
}

/**
 * A per-run API socket for a host, under the cluster's temp dir: the default
 * (/run/tapestry/<node>.sock) is shared by every run that names a node the same.
 */
export function apiSocket(dir: string, hostName: string): string {
  return `${dir}/${hostName}.sock`
}

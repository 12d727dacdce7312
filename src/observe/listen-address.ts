/** "HOST:PORT" listen addresses of the agent's HTTP endpoints (metrics). */

/** Parses "HOST:PORT" (host a name or IPv4 address) or "[IPv6]:PORT"; null if it is neither or the port is not 1-65535. */
export function parseListen(text: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(text)
  if (!m) return null
  const port = Number(m[3])
  if (port < 1 || port > 65535) return null
  return { host: m[1] ?? m[2], port }
}

/**
 * ICMP echoes in tcpdump text (`tcpdump -n -tt`), for bench/ping-legs.ts. On a
 * VXLAN port tcpdump prints the outer header on one line and the inner packet on
 * the next; both forms are read.
 */

/** Capture time (s) of each echo of `kind` with ICMP id `id`, by sequence number. */
export function echoTimes(text: string, kind: 'request' | 'reply', id: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.replace(/vni (\d+)\n/g, 'vni $1 ').split('\n')) {
    const m = /^(\d+\.\d+) .*ICMP echo (request|reply), id (\d+), seq (\d+)/.exec(line)
    if (m && m[2] === kind && m[3] === id) out.set(m[4], Number(m[1]))
  }
  return out
}

/** The ICMP id of the last echo request in the text (the ping being measured), or null. */
export function lastEchoId(text: string): string | null {
  const ids = [...text.matchAll(/ICMP echo request, id (\d+)/g)].map((m) => m[1])
  return ids.length > 0 ? ids[ids.length - 1] : null
}

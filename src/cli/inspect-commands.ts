/** Read-only inspection commands: fdb show, pod list, peers, stats. */
import { Command } from './registry'
import { defaultSocket, request, table } from './client'

interface Common { socket: string; json: boolean; rest: string[]; opts: Map<string, string> }

function parseCommon(args: string[], valued: string[] = []): Common {
  const c: Common = { socket: '', json: false, rest: [], opts: new Map() }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === '--json') c.json = true
    else if (a === '--socket') c.socket = args[++i] ?? ''
    else if (a.startsWith('--socket=')) c.socket = a.slice(9)
    else if (valued.includes(a)) c.opts.set(a, args[++i] ?? '')
    else if (a.startsWith('-')) throw new Error(`unknown option ${a}`)
    else c.rest.push(a)
  }
  if (!c.socket) c.socket = defaultSocket()
  return c
}

function simple(summary: string, usage: string, valued: string[], body: (c: Common) => Promise<string>): Command {
  return {
    summary,
    usage,
    async run(args: string[]): Promise<number> {
      let c: Common
      try { c = parseCommon(args, valued) } catch (err) {
        process.stderr.write(`tapestry: ${(err as Error).message}\nUsage: ${usage}\n`)
        return 2
      }
      try {
        process.stdout.write(await body(c))
        return 0
      } catch (err) {
        process.stderr.write(`tapestry: ${(err as Error).message}\n`)
        return 1
      }
    },
  }
}

const fdbShow = simple('Show the forwarding database (like `bridge fdb show`).', 'tapestry fdb show [--vni N] [--json] [--socket PATH]', ['--vni'],
  async (c) => {
    const vni = c.opts.get('--vni')
    const rows = await request<Record<string, unknown>[]>(c.socket, 'GET', `/v1/fdb${vni ? `?vni=${encodeURIComponent(vni)}` : ''}`)
    if (c.json) return JSON.stringify(rows, null, 2) + '\n'
    return table(rows.map((r) => ({ ...r, dev: r.pod ?? (r.remote ? `vxlan ${r.remote}` : r.port), age: r.type === 'static' ? 'permanent' : `${((r.ageMs as number) / 1000).toFixed(1)}s` })), ['mac', 'vni', 'dev', 'type', 'age'])
  })

export const fdbCommand: Command = ({
  summary: 'Forwarding database: `tapestry fdb show`.',
  usage: 'tapestry fdb show [--vni N] [--json] [--socket PATH]',
  run: async (args) => {
    if (args[0] !== 'show') { process.stderr.write(`Usage: ${fdbShow.usage}\n`); return 2 }
    return fdbShow.run(args.slice(1))
  },
})

export const statsCommand: Command = simple('Show counters: frames, bytes, drops by reason, FDB, offloads, priority lane, each worker\'s share.', 'tapestry stats [--json] [--socket PATH]', [],
  async (c) => {
    const s = await request<Record<string, unknown>>(c.socket, 'GET', '/v1/stats')
    if (c.json) return JSON.stringify(s, null, 2) + '\n'
    const drops = Object.entries(s.drops as Record<string, number>).map(([reason, count]) => ({ reason, count }))
    const pods = Object.entries(s.pods as Record<string, Record<string, number>>).map(([name, v]) => ({ port: name, ...v }))
    return table([{ port: 'underlay', ...(s.underlay as object) }, ...pods], ['port', 'rxFrames', 'rxBytes', 'txFrames', 'txBytes', 'priorityRxFrames']) +
      '\n' + table(drops, ['reason', 'count']) + '\n' + `fdb: ${JSON.stringify(s.fdb)}\narp: ${JSON.stringify(s.arp)}\nmean batch: ${(s.meanBatch as number).toFixed(2)} frames\n` +
      `offloads: ${JSON.stringify(s.offloads)}\n` +
      // With workers: each datapath thread's share of what was read (does traffic spread?).
      (Array.isArray(s.workers) && s.workers.length > 1 ? '\n' + table(s.workers as Record<string, unknown>[], ['worker', 'batches', 'frames', 'underlayRxFrames', 'connections', 'captureLost']) : '') +
      'priorityRxFrames: of rxFrames, those read through the priority lane (ARP, ICMP, ICMPv6 ahead of bulk traffic)\n'
  })

/** A /v1/peers row as the table shows it: RTT, loss, whether full-size VXLAN packets get through, last answer. */
export function peerTableRow(r: Record<string, unknown>): Record<string, unknown> {
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)
  const rtt = num(r.rttMs)
  const loss = num(r.lossPct)
  const seen = num(r.lastSeenMs)
  const pathMtu = num(r.pathMtu)
  return {
    address: r.address,
    configured: r.configured,
    state: r.state ?? 'unknown',
    rtt: rtt === null ? null : rtt < 10 ? `${rtt.toFixed(2)}ms` : `${rtt.toFixed(1)}ms`,
    loss: loss === null ? null : `${loss}%`,
    // 'ok': full-size VXLAN packets get through; 'BLACKHOLE': they do not (the largest that did, when known).
    fullsize: r.pathMtuOk === true ? 'ok' : r.pathMtuOk === false ? `BLACKHOLE${pathMtu === null ? '' : ` (max ${pathMtu})`}` : null,
    seen: seen === null ? null : `${(seen / 1000).toFixed(1)}s ago`,
  }
}

export const peersCommand: Command = simple('List the remote VTEPs with their health: up/down, RTT, loss, path MTU.', 'tapestry peers [--json] [--socket PATH]', [],
  async (c) => {
    const rows = await request<Record<string, unknown>[]>(c.socket, 'GET', '/v1/peers')
    return c.json ? JSON.stringify(rows, null, 2) + '\n' : table(rows.map(peerTableRow), ['address', 'configured', 'state', 'rtt', 'loss', 'fullsize', 'seen'])
  })

const podList = simple('List pods.', 'tapestry pod list [--json] [--socket PATH]', [], async (c) => {
    const rows = await request<Record<string, unknown>[]>(c.socket, 'GET', '/v1/pods')
    return c.json ? JSON.stringify(rows, null, 2) + '\n' : table(rows, ['name', 'network', 'vni', 'ip', 'mac', 'netns', 'ifname', 'source', 'containerId'])
  })
export const podCommand: Command = {
  summary: 'Pods: `tapestry pod list|add|del`.',
  usage: `${podList.usage}\n       tapestry pod add NAME --netns NS [--ip CIDR] [--network N] [--mac MAC] [--ifname IF]\n       tapestry pod del NAME`,
  run: async (args) => {
    if (args[0] === 'list') return podList.run(args.slice(1))
    if (args[0] === 'add') return (await import('./change-commands')).podAdd(args.slice(1))
    if (args[0] === 'del' || args[0] === 'delete') return (await import('./change-commands')).podDel(args.slice(1))
    process.stderr.write(`Usage: ${podCommand.usage}\n`)
    return 2
  },
}

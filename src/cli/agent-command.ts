/**
 * `tapestry agent --config FILE`: validates the whole config before touching
 * anything, then runs the agent until SIGTERM/SIGINT. SIGHUP re-reads the file
 * and applies the difference; a bad file is refused and the running state kept.
 */
import { Command } from './registry'
import { Agent } from '../agent'
import { loadConfigFile, ConfigError, ConfigReadError } from '../control/config'
import { createLogger } from '../observe/log'
import { ApiServer } from '../control/api'
import { MetricsServer } from '../observe/metrics'
import { PeerHealth, startPeerHealth } from '../control/peer-health'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { parse as parseYaml } from 'yaml'

/** The config file as plain parsed YAML (already validated by loadConfigFile). */
function readRaw(file: string): Record<string, unknown> {
  const v = parseYaml(fs.readFileSync(file, 'utf8')) as unknown
  return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : {}
}

function parseArgs(args: string[]): { config?: string; socket?: string } {
  const out: { config?: string; socket?: string } = {}
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === '--config' || a === '-c') out.config = args[++i]
    else if (a.startsWith('--config=')) out.config = a.slice(9)
    else if (a === '--socket') out.socket = args[++i]
    else if (a.startsWith('--socket=')) out.socket = a.slice(9)
    else throw new Error(`unknown option ${a}`)
  }
  return out
}

export const agentCommand: Command = {
  summary: 'Run the Tapestry agent of this host.',
  usage: 'tapestry agent --config FILE [--socket PATH]',
  async run(args: string[]): Promise<number> {
    let opts
    try {
      opts = parseArgs(args)
    } catch (err) {
      process.stderr.write(`tapestry agent: ${(err as Error).message}\nUsage: ${this.usage}\n`)
      return 2
    }
    if (!opts.config) {
      process.stderr.write(`tapestry agent: --config FILE is required\nUsage: ${this.usage}\n`)
      return 2
    }
    const file = opts.config
    let cfg
    try {
      cfg = loadConfigFile(file)
    } catch (err) {
      if (err instanceof ConfigError || err instanceof ConfigReadError) {
        process.stderr.write(`tapestry agent: config ${file} refused, nothing was changed:\n${err.message}\n`)
        return 2
      }
      throw err
    }
    const log = createLogger(cfg.log.level, cfg.node.name)
    const socketPath = opts.socket ?? cfg.api.socket
    // Pods added at run time are remembered beside the API socket.
    const statePath = path.join(path.dirname(socketPath), `${cfg.node.name}.pods.json`)
    const agent = new Agent(cfg, log, readRaw(file), statePath)
    const api = new ApiServer(agent, socketPath)
    let metrics: MetricsServer | null = null
    // Peer health probing (ICMP echo, small and full-size with DF): after the agent, stopped before it.
    let health: PeerHealth | null = null
    // Cluster mode (etcd): loaded only when configured, so a plain agent never loads the gRPC client.
    let cluster: import('../control/cluster').ClusterStore | null = null
    // A datapath worker that died takes its share of every flow with it. Heard
    // from the start: one that dies while start-up is still going on (the
    // cluster store can take seconds) fails the start instead of being missed.
    let fatal: Error | null = null
    let onFatal: ((err: Error) => void) | null = null
    agent.once('fatal', (err: Error) => {
      fatal = err
      if (onFatal !== null) onFatal(err)
    })
    try {
      await agent.start()
      health = startPeerHealth(agent)
      await api.listen()
      // metrics.listen '' turns the Prometheus endpoint off.
      if (cfg.metrics.listen !== '') {
        const h = health
        metrics = await MetricsServer.start(cfg.metrics.listen, { datapath: agent.datapath, podStates: () => agent.podStates(), peerHealth: () => h.reading(), services: () => agent.serviceList() })
        log.info({ listen: metrics.address }, 'metrics endpoint open')
      }
      if (cfg.cluster) {
        const { ClusterStore } = await import('../control/cluster')
        // The leased pod blocks are remembered beside the API socket too.
        cluster = new ClusterStore(agent, cfg.cluster, { statePath: path.join(path.dirname(socketPath), `${cfg.node.name}.cluster.json`) })
        await cluster.start()
      }
      if (fatal !== null) throw fatal
      log.info({ socket: api.socketPath, pods: agent.podStates().length, peers: agent.datapath.peers.size }, 'agent ready')
    } catch (err) {
      log.error({ err }, 'agent failed to start')
      process.stderr.write(`tapestry agent: ${(err as Error).message}\n`)
      await cluster?.stop().catch(() => undefined)
      await api.close().catch(() => undefined)
      // An open metrics listener would keep the process running after the failed start.
      await metrics?.close().catch(() => undefined)
      health?.stop()
      await agent.stop().catch(() => undefined)
      return 1
    }
    return new Promise<number>((resolve) => {
      let stopping = false
      let failed = false
      const stop = (sig: string): void => {
        if (stopping) return
        stopping = true
        log.info({ signal: sig }, 'stopping')
        // api.close() first ends running captures, so their pcap streams end on whole records.
        // The cluster store goes first: revoking its lease tells the other nodes at once.
        Promise.resolve(cluster?.stop()).then(() => api.close()).then(() => metrics?.close()).then(() => health?.stop()).then(() => agent.stop()).then(() => resolve(failed ? 1 : 0), (err) => { log.error({ err }, 'stop failed'); resolve(1) })
      }
      onFatal = (err: Error): void => {
        failed = true
        process.stderr.write(`tapestry agent: ${err.message}\n`)
        stop('fatal')
      }
      process.on('SIGTERM', () => stop('SIGTERM'))
      process.on('SIGINT', () => stop('SIGINT'))
      process.on('SIGHUP', () => {
        let raw
        try {
          const next = loadConfigFile(file) // reports YAML and rule problems with line numbers
          if (JSON.stringify(next.cluster) !== JSON.stringify(cfg.cluster)) throw new Error('cluster settings differ from the running ones: changing them needs an agent restart')
          raw = readRaw(file)
        } catch (err) {
          log.error({ file, reason: (err as Error).message }, 'config reload refused; running state unchanged')
          return
        }
        agent.applyFile(raw).catch((err) => log.error({ file, reason: (err as Error).message }, 'config reload refused or failed part way'))
      })
    })
  },
}

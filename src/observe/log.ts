/**
 * Structured logs (pino): JSON lines on stdout, one per state change, never one
 * per packet. Pipe through pino-pretty on a terminal.
 */
import pino from 'pino'

export type Logger = pino.Logger

export function createLogger(level: string, node: string): Logger {
  return pino({ level, base: { node }, timestamp: pino.stdTimeFunctions.isoTime })
}

/** A logger that prints nothing (tests, CLI). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}

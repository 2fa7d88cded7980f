/**
 * One logger per component, enabled with DEBUG=spotpipe:* (the same convention libp2p uses).
 * `info` and `error` lines always print to stderr (unless SPOTPIPE_QUIET=1); `debug` lines only
 * when DEBUG matches.
 */
import { format } from 'node:util'
import { logger } from '@libp2p/logger'

export interface Log {
  (formatter: string, ...args: unknown[]): void
  info: (message: string) => void
  error: (formatter: string, ...args: unknown[]) => void
}

export function createLog (component: string): Log {
  const l = logger(`spotpipe:${component}`)
  const log = ((formatter: string, ...args: unknown[]) => { l(formatter, ...args) }) as Log
  log.info = (message: string) => {
    if (process.env.SPOTPIPE_QUIET !== '1') process.stderr.write(`[${component}] ${message}\n`)
    l(message)
  }
  log.error = (formatter: string, ...args: unknown[]) => {
    // errors are never only a debug line: whoever runs the process sees them
    if (process.env.SPOTPIPE_QUIET !== '1') process.stderr.write(`[${component}] error: ${format(formatter, ...args)}\n`)
    l.error(formatter, ...args)
  }
  return log
}

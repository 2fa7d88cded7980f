/**
 * Child processes a benchmark starts: every one is SIGKILLed when the benchmark exits, is
 * interrupted or terminated, so no donor or member outlives a failed run.
 */
import type { ChildProcess } from 'node:child_process'
import { exitOnFatalError } from '../common/index.js'

export const children = new Set<ChildProcess>()

export function killChildren (): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  children.clear()
}

process.on('exit', killChildren)
// an error thrown inside tfjs-wasm's own handlers would end the process without 'exit'
exitOnFatalError()
process.on('SIGINT', () => { killChildren(); process.exit(130) })
process.on('SIGTERM', () => { killChildren(); process.exit(143) })

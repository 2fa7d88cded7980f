/**
 * Real child processes for tests: `spotpipe` commands started with tsx, their stdout read line by
 * line, and every process killed (SIGKILL) when the test ends, pass or fail.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { killAndWait, spotpipeArgs } from '../../sim/peer-process.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface Proc {
  child: ChildProcess
  lines: string[]
  stderr: string[]
  /** Resolves with the first stdout line matching `re` (rejects on exit or timeout). */
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

const live = new Set<ChildProcess>()

/** Starts `spotpipe <args>` with `env` added to this process's environment, in `cwd` (the repository by default). */
export function spotpipe (args: string[], env: Record<string, string> = {}, cwd: string = ROOT): Proc {
  const child = spawn(process.execPath, [...spotpipeArgs(), ...args], {
    cwd,
    env: { ...process.env, SPOTPIPE_QUIET: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  live.add(child)
  const lines: string[] = []
  const stderr: string[] = []
  const waiters: Array<{ re: RegExp, resolve: (m: RegExpMatchArray) => void }> = []
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    lines.push(line)
    for (const w of [...waiters]) {
      const m = line.match(w.re)
      if (m != null) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m) }
    }
  })
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => { stderr.push(line) })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
    child.once('exit', (code, signal) => { live.delete(child); resolve({ code, signal }) })
  })
  const waitFor = async (re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> => {
    for (const l of lines) { const m = l.match(re); if (m != null) return m }
    return await new Promise((resolve, reject) => {
      const w = { re, resolve: (m: RegExpMatchArray) => { clearTimeout(t); resolve(m) } }
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${String(re)}; stdout: ${lines.slice(-5).join(' | ')}; stderr: ${stderr.slice(-5).join(' | ')}`)), timeoutMs)
      void exited.then(({ code, signal }) => { clearTimeout(t); reject(new Error(`process exited (${code ?? signal}) before ${String(re)}; stderr: ${stderr.slice(-8).join(' | ')}`)) })
      waiters.push(w)
    })
  }
  return { child, lines, stderr, waitFor, exited }
}

/** SIGKILL every process the tests started that is still running. */
export async function killAll (): Promise<void> {
  await killAndWait(live)
}

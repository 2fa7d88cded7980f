/**
 * A crash of an entry point still runs its 'exit' listeners, which kill the processes it started
 * (common/fatal-exit.ts). tfjs-wasm's own error listeners rethrow, and an error thrown in a
 * listener ends Node with code 7 and no 'exit' event: the control case shows the orphan.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'

const CHILD = fileURLToPath(new URL('./helpers/fatal-child.ts', import.meta.url))
const orphans: number[] = []

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

async function crash (how: 'throw' | 'reject', guard: 'guarded' | 'unguarded'): Promise<{ code: number | null, stderr: string, grandchild: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, how, guard], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  const [code] = await once(child, 'exit') as [number | null]
  const m = /grandchild (\d+)/.exec(stdout)
  if (m == null) throw new Error(`the child printed no grandchild (exit ${String(code)}): ${stderr.slice(-500)}`)
  const grandchild = Number(m[1])
  orphans.push(grandchild)
  return { code, stderr, grandchild }
}

/** Whether `pid` is gone within `ms` (a SIGKILLed process is reaped by init once its parent is gone). */
async function goneWithin (pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (!alive(pid)) return true
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return !alive(pid)
}

afterEach(() => {
  for (const pid of orphans.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL')
})

describe('a crash of an entry point ends the processes it started', () => {
  it('control: without the guard, tfjs-wasm\'s rethrowing listener ends the process with code 7 and the grandchild lives on', async () => {
    const r = await crash('throw', 'unguarded')
    expect(r.code).toBe(7)
    expect(await goneWithin(r.grandchild, 500)).toBe(false)
  }, 60_000)

  // an unhandled rejection reaches our listener as an exception too: tfjs-wasm's
  // unhandledRejection listener rethrows the reason
  it.each([
    { what: 'an uncaught exception', how: 'throw' as const, said: /uncaught exception: Error: boom \(thrown\)/ },
    { what: 'an unhandled rejection', how: 'reject' as const, said: /uncaught exception: Error: boom \(rejected\)/ }
  ])('$what: exit code 1, the error on stderr, the exit listener kills the grandchild', async ({ how, said }) => {
    const r = await crash(how, 'guarded')
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(said)
    expect(await goneWithin(r.grandchild, 5000)).toBe(true)
  }, 60_000)
})

/**
 * Waiting on the coordinator's view of the cluster: resolve once a condition holds, re-checking it on
 * every 'change' event (any message, a lost peer) and every 250 ms; reject on timeout or abort.
 */
import type { EventEmitter } from 'node:events'
import { CoordinatorTimeoutError } from './errors.js'

/**
 * Resolves when `check` returns true, re-checking on each 'change' that `events` emits and on a
 * 250 ms tick (which also calls `onTick`, e.g. to re-send a message). Rejects with a
 * CoordinatorTimeoutError naming `what` after `timeoutMs`, or with the reason `signal` aborts with.
 */
/** setTimeout's longest delay (2^31 - 1 ms, about 24.8 days): longer ones fire at once. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1

export async function waitUntil (events: EventEmitter, check: () => boolean, what: string, timeoutMs: number, signal?: AbortSignal, onTick?: () => void): Promise<void> {
  if (check()) return
  await new Promise<void>((resolve, reject) => {
    const tick = setInterval(() => { onTick?.(); probe() }, 250)
    const timer = setTimeout(() => { done(); reject(new CoordinatorTimeoutError(`timed out after ${timeoutMs} ms waiting for ${what}`)) }, Math.min(timeoutMs, MAX_TIMEOUT_MS))
    const onAbort = (): void => { done(); reject(signal?.reason) }
    const probe = (): void => { if (check()) { done(); resolve() } }
    const done = (): void => {
      clearInterval(tick); clearTimeout(timer)
      events.off('change', probe)
      signal?.removeEventListener('abort', onAbort)
    }
    events.on('change', probe)
    signal?.addEventListener('abort', onAbort)
  })
}

import '../common/polyfill.js'
import { afterEach, beforeEach, expect } from 'vitest'

/**
 * Event-loop blocks. vitest's worker answers the runner over an RPC with a fixed 60 s timeout: a
 * test that keeps the worker's event loop busy for about that long (synchronous training steps
 * without a yield between them, on 2 loaded cores) fails the whole run with 'Timeout calling
 * "onTaskUpdate"' although every test passed (seen twice in CI on 2026-12-02, culprit unknown).
 * Every test's longest block is measured, and one over BLOCK_WARN_MS is named on stderr, so the
 * next such failure says which test to give its yields.
 */
const BLOCK_WARN_MS = 15_000
const TICK_MS = 500
let last = 0
let longest = 0
let timer: NodeJS.Timeout | undefined

beforeEach(() => {
  last = performance.now()
  longest = 0
  timer = setInterval(() => {
    const now = performance.now()
    longest = Math.max(longest, now - last - TICK_MS)
    last = now
  }, TICK_MS)
  timer.unref()
})

afterEach(() => {
  clearInterval(timer)
  longest = Math.max(longest, performance.now() - last - TICK_MS)
  if (longest > BLOCK_WARN_MS) {
    process.stderr.write(`[event-loop] "${expect.getState().currentTestName ?? '?'}" blocked the worker's event loop for ${(longest / 1000).toFixed(1)} s (vitest's RPC times out at 60 s): yield between its synchronous steps\n`)
  }
})

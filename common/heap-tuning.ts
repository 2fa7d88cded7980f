/**
 * How far V8 lets the heap grow between full (mark-compact) collections, for spotpipe's long-running
 * processes (peer, coordinator, simulator, benches).
 *
 * Why: weights, checkpoints and activations move as many 64 KiB buffers (a TCP read, a noise
 * message, its decrypted copy). Those that are still queued at the next scavenge are promoted, and
 * their bytes count toward the old generation's limit, which V8 sets only a few MB above the live
 * heap here. With a checkpoint every iteration that meant a full collection every ~20 MB moved:
 * measured on the demo cluster (`npm run bench:checkpoint`, `node --trace-gc`), ~35 mark-compacts
 * in 12 iterations on the coordinator, ~50 ms of its CPU and ~25 ms of each peer's per checkpoint.
 * A growing factor of 2 (the old generation may double before the next full collection) made it 6.
 * The cost is memory: a process's heap may reach twice its live size (the coordinator ~60 -> ~120
 * MB, a peer likewise), small next to a stage's tensors.
 *
 * A `--heap-growing-percent` given to node by the user wins.
 */
import v8 from 'node:v8'

/** The old generation may grow by this percentage of the live heap between full collections. */
export const HEAP_GROWING_PERCENT = 100

/** Applies HEAP_GROWING_PERCENT to this process unless node was started with its own value. */
export function tuneHeapGrowth (): void {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  if (given.some(a => a.startsWith('--heap-growing-percent'))) return
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}

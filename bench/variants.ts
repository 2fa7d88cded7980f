/**
 * bench:variants — the real cluster's failure-free iteration time under what each strategy adds to
 * an iteration, against the same cluster adding nothing, in the same run: a coordinator in this
 * process and 4 peer processes on loopback, the default (demo) model, 4 stages x 4 microbatches.
 *
 *   plain              strategy checkfree: nothing added (the baseline)
 *   spotpipe           checkfree-plus, layout spotpipe: a swapped microbatch takes two extra hops each way
 *   paper              checkfree-plus, layout paper: no extra hop; stage 1 and S-2 run copies of the
 *                      embedding and head, whose gradients are all-reduced and weights pulled every iteration
 *   redundant          a shadow copy of the successor pulled after every commit (and waited for)
 *   redundant-compute  a shadow of the successor trained alongside (Bamboo's redundant computation)
 *
 * The variants run in turn, ROUNDS times (a fresh cluster each), so a load change on this shared
 * machine falls on all of them; each figure is the median iteration over its rounds after WARMUP
 * iterations, timed as the coordinator's whole runIteration call (begin to commit, and the shadow
 * wait of `redundant` after it). Ends with one line per figure:
 *
 *   bench: variant_iteration_ms_<variant>
 *   bench: variant_overhead_<variant>   (iteration / plain - 1, for every variant but plain)
 */
import '../common/polyfill.js'
import { initBackend } from '../model/index.js'
import type { PlusLayout } from '../model/index.js'
import type { Strategy } from '../coordinator/index.js'
import { startCluster, stopCluster } from './harness.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const ITERS = Number(process.env.BENCH_ITERS ?? 12)
const WARMUP = 3

interface Variant { name: 'plain' | 'spotpipe' | 'paper' | 'redundant' | 'redundant-compute', strategy: Strategy, plusLayout: PlusLayout }
const VARIANTS: Variant[] = [
  { name: 'plain', strategy: 'checkfree', plusLayout: 'spotpipe' },
  { name: 'spotpipe', strategy: 'checkfree-plus', plusLayout: 'spotpipe' },
  { name: 'paper', strategy: 'checkfree-plus', plusLayout: 'paper' },
  { name: 'redundant', strategy: 'redundant', plusLayout: 'spotpipe' },
  { name: 'redundant-compute', strategy: 'redundant-compute', plusLayout: 'spotpipe' }
]

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function measure (v: Variant, round: number): Promise<number[]> {
  const { coord } = await startCluster({ clusterId: `bench-variant-${v.name}-${round}`, strategy: v.strategy, plusLayout: v.plusLayout, heartbeatTimeoutMs: 10_000 }, 4)
  try {
    const ms: number[] = []
    for (let i = 0; i < WARMUP + ITERS; i++) {
      // the whole call: begin to commit, and what the strategy waits for after it (redundant: every
      // shadow pulled), not only the record's begin-to-last-done
      const t0 = performance.now()
      const r = await coord.runIteration({ timeoutMs: 60_000 })
      if (!Number.isFinite(r.loss)) throw new Error(`${v.name}: iteration ${r.iteration} has loss ${r.loss}`)
      if (i >= WARMUP) ms.push(performance.now() - t0)
    }
    return ms
  } finally {
    await stopCluster(coord)
  }
}

async function main (): Promise<void> {
  await initBackend({ backend: 'wasm', strict: true })
  const all = new Map<Variant['name'], number[]>(VARIANTS.map(v => [v.name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const v of VARIANTS) {
      const ms = await measure(v, round)
      all.get(v.name)?.push(...ms)
      console.log(`round ${round + 1}/${ROUNDS} ${v.name}: median ${median(ms).toFixed(0)} ms over ${ms.length} iterations (min ${Math.min(...ms).toFixed(0)}, max ${Math.max(...ms).toFixed(0)})`)
    }
  }
  const fig = (n: Variant['name']): number => median(all.get(n) as number[])
  const metric = (n: string): string => n.replace(/-/g, '_')
  for (const v of VARIANTS) console.log(`bench: variant_iteration_ms_${metric(v.name)}=${fig(v.name).toFixed(1)}`)
  for (const v of VARIANTS.slice(1)) console.log(`bench: variant_overhead_${metric(v.name)}=${(fig(v.name) / fig('plain') - 1).toFixed(3)}`)
}

main().then(() => process.exit(0), (err: Error) => {
  console.error(`bench:variants failed: ${err.stack ?? err.message}`)
  process.exit(1)
})

/**
 * bench:plus-layout — the real cluster's iteration time under CheckFree+'s two layouts
 * (model/schedule.ts), against the same cluster without swaps, in the same run: a coordinator in
 * this process and 4 peer processes on loopback, the default (demo) model, 4 stages x 4 microbatches.
 *
 *   plain     strategy checkfree: no swapped microbatch (the baseline)
 *   spotpipe  checkfree-plus, layout spotpipe: a swapped microbatch takes two extra hops each way
 *   paper     checkfree-plus, layout paper: no extra hop; stage 1 and S-2 run copies of the
 *             embedding and head, whose gradients are all-reduced and weights pulled every iteration
 *
 * The three run in turn, ROUNDS times (a fresh cluster each), so a load change on this shared
 * machine falls on all of them; each figure is the median iteration over its rounds after WARMUP
 * iterations. Ends with one line per figure:
 *
 *   bench: plus_layout_iteration_ms_plain / _spotpipe / _paper
 *   bench: plus_layout_swap_overhead_spotpipe / _paper   (iteration / plain - 1)
 */
import '../common/polyfill.js'
import { initBackend } from '../model/index.js'
import type { PlusLayout } from '../model/index.js'
import type { Strategy } from '../coordinator/index.js'
import { startCluster, stopCluster } from './harness.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const ITERS = Number(process.env.BENCH_ITERS ?? 12)
const WARMUP = 3

interface Variant { name: 'plain' | 'spotpipe' | 'paper', strategy: Strategy, plusLayout: PlusLayout }
const VARIANTS: Variant[] = [
  { name: 'plain', strategy: 'checkfree', plusLayout: 'spotpipe' },
  { name: 'spotpipe', strategy: 'checkfree-plus', plusLayout: 'spotpipe' },
  { name: 'paper', strategy: 'checkfree-plus', plusLayout: 'paper' }
]

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function measure (v: Variant, round: number): Promise<number[]> {
  const { coord } = await startCluster({ clusterId: `bench-layout-${v.name}-${round}`, strategy: v.strategy, plusLayout: v.plusLayout, heartbeatTimeoutMs: 10_000 }, 4)
  try {
    const ms: number[] = []
    for (let i = 0; i < WARMUP + ITERS; i++) {
      const r = await coord.runIteration({ timeoutMs: 60_000 })
      if (!Number.isFinite(r.loss)) throw new Error(`${v.name}: iteration ${r.iteration} has loss ${r.loss}`)
      if (i >= WARMUP) ms.push(r.ms)
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
  const plain = fig('plain')
  console.log(`bench: plus_layout_iteration_ms_plain=${plain.toFixed(1)}`)
  console.log(`bench: plus_layout_iteration_ms_spotpipe=${fig('spotpipe').toFixed(1)}`)
  console.log(`bench: plus_layout_iteration_ms_paper=${fig('paper').toFixed(1)}`)
  console.log(`bench: plus_layout_swap_overhead_spotpipe=${(fig('spotpipe') / plain - 1).toFixed(3)}`)
  console.log(`bench: plus_layout_swap_overhead_paper=${(fig('paper') / plain - 1).toFixed(3)}`)
}

main().then(() => process.exit(0), (err: Error) => {
  console.error(`bench:plus-layout failed: ${err.stack ?? err.message}`)
  process.exit(1)
})

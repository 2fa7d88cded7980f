/**
 * bench:checkpoint — iteration time with a sparse checkpoint every iteration against none, in the
 * same run (same peers, alternating phases to spread the machine's noise). Checkpoints snapshot at
 * the commit and are pulled and written in the background. Ends with
 * `bench: checkpoint_overhead=<(with - without) / without>`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Coordinator } from '../coordinator/index.js'
import { DEFAULT_MODEL, DEFAULT_TRAIN } from '../model/config.js'
import { startPeer, stopCluster } from './harness.js'

const ITERS = Number(process.env.BENCH_ITERS ?? 10)
/** Paired rounds; the figure is the median round's overhead. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)

/** Median iteration time of one phase, and the checkpoints it left on disk. */
async function phase (checkpointEvery: number, dir: string): Promise<{ meanMs: number, checkpoints: number }> {
  // a new state directory every phase: one left by an earlier phase would restore that run
  const stateDir = await mkdtemp(join(dir, `every${checkpointEvery}-`))
  const coord = new Coordinator({ clusterId: `ckb${checkpointEvery}`, stateDir, checkpointEvery })
  await coord.start()
  try {
    await Promise.all(Array.from({ length: DEFAULT_TRAIN.stages }, async () => await startPeer(coord.addrs[0], coord.init.clusterId)))
    await coord.assignInitial({ timeoutMs: 120_000 })
    for (let i = 0; i < 2; i++) await coord.runIteration() // warm-up
    const times: number[] = []
    for (let i = 0; i < ITERS; i++) {
      const t0 = performance.now()
      await coord.runIteration()
      times.push(performance.now() - t0)
    }
    // The median resists the odd iteration that a background job on this shared machine slows down.
    const meanMs = times.sort((x, y) => x - y)[Math.floor(times.length / 2)]
    await coord.flushCheckpoints()
    return { meanMs, checkpoints: coord.store?.list().length ?? 0 }
  } finally {
    await stopCluster(coord)
  }
}

const dir = await mkdtemp(join(tmpdir(), 'spotpipe-ckpt-bench-'))
try {
  console.log(`demo model (d=${DEFAULT_MODEL.dModel}, ${DEFAULT_MODEL.nBlocks} blocks, ${DEFAULT_TRAIN.stages} stages), ${ITERS} timed iterations per phase, ${ROUNDS} paired rounds`)
  const without: number[] = []
  const withCk: number[] = []
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which phase goes first, so drift in the machine's load does not favour one.
    const first = round % 2 === 0 ? 0 : 1
    const r1 = await phase(first, dir)
    const r2 = await phase(1 - first, dir)
    const [a, b] = first === 0 ? [r1, r2] : [r2, r1]
    without.push(a.meanMs)
    withCk.push(b.meanMs)
    console.log(`round ${round + 1}: no checkpoints ${a.meanMs.toFixed(0)} ms/iteration (median); a checkpoint every iteration ${b.meanMs.toFixed(0)} ms/iteration (${b.checkpoints} kept on disk); overhead ${(b.meanMs / a.meanMs - 1).toFixed(3)}`)
  }
  const overheads = without.map((w, i) => withCk[i] / w - 1).sort((x, y) => x - y)
  console.log(`bench: checkpoint_overhead=${overheads[Math.floor(overheads.length / 2)].toFixed(3)}`)
} finally {
  await rm(dir, { recursive: true, force: true })
}
process.exit(0)

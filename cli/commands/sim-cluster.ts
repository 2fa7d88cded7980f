/**
 * `spotpipe sim --mode cluster` (the default, and the README's main job): a local-cluster churn demo.
 * Each strategy trains the same small model on a real cluster of processes on loopback while the
 * same seeded failure trace is replayed: crashes as SIGKILL, spot notices as SIGTERM, joins as new
 * peer processes. Prints a summary table and the path of the plot.
 */
import { join } from 'node:path'
import { STRATEGIES, type Strategy } from '../../coordinator/index.js'
import { initBackend, PLUS_LAYOUTS, type PlusLayout } from '../../model/index.js'
import { loadBrownCorpus } from '../../model/index.js'
import { runClusterExperiment } from '../../sim/index.js'
import { ProgressBar } from '../../sim/index.js'
import { generateTrace, readTrace, replicaTrace, resolveFailureRate } from '../../sim/index.js'
import { UsageError } from '../errors.js'
import { intFlag, numFlag } from '../flags.js'

/** The embedded demo: small enough that five strategies finish in a few minutes on 2 cores. */
export const CLUSTER_DEMO = {
  model: { dModel: 64, nHeads: 4, nBlocks: 4, seqLen: 64 },
  train: { stages: 4, microbatches: 2, microbatchSize: 8, lr: 3e-3 },
  iterations: 50,
  evalEvery: 5,
  checkpointEvery: 10,
  /** Per-stage, per-iteration failure probability of the demo trace (~3 failures in 50 iterations of 4 stages). */
  perIteration: 0.02,
  /** Nominal seconds per iteration of the trace clock (what the rate conversion assumes). */
  iterationS: 0.4,
  /** Seed 12 draws crashes of the last stage and of two intermediate ones, and a notice on the first. */
  seed: 12,
  noticeFraction: 0.3,
  /** With --replicas: iterations a lost replica stays missing (detection through a closed connection, its replacement's join). */
  replicaWindowIterations: 5,
  strategies: ['checkfree-plus', 'checkfree', 'checkpoint', 'redundant', 'none'] as Strategy[]
}

export async function simCluster (values: Record<string, unknown>): Promise<void> {
  const demo = CLUSTER_DEMO
  const strategies = values.strategies != null
    ? String(values.strategies).split(',').map(s => s.trim()) as Strategy[]
    : demo.strategies
  for (const s of strategies) {
    if (!(STRATEGIES as readonly string[]).includes(s)) throw new UsageError(`--strategies: unknown strategy "${s}" (known: ${STRATEGIES.join(', ')})`)
  }
  if (values.preset != null) throw new UsageError('cluster mode runs one embedded demo; --preset is for --mode model')
  const iterations = intFlag(values, 'iterations', demo.iterations)
  const rate = values.rate != null ? numFlag(values, 'rate', 0) : undefined
  const pIter = values['p-iter'] != null ? numFlag(values, 'p-iter', 0) : undefined
  for (const [name, v] of [['rate', rate], ['p-iter', pIter]] as const) {
    if (v != null && !(v > 0 && v < 1)) throw new UsageError(`--${name} must be a probability in (0, 1), got ${v}`)
  }
  const seed = values.seeds != null ? intFlag({ seed: String(values.seeds).split(',')[0] }, 'seed', demo.seed, 0) : demo.seed
  const replicas = intFlag(values, 'replicas', 1)
  if (strategies.includes('redundant-compute') && replicas > 1) throw new UsageError(`--strategies: redundant-compute works with one replica per stage, not --replicas ${replicas}`)
  const plusLayout = (values['plus-layout'] as string | undefined) ?? 'spotpipe'
  if (!(PLUS_LAYOUTS as readonly string[]).includes(plusLayout)) throw new UsageError(`--plus-layout must be ${PLUS_LAYOUTS.join(' or ')}, got "${plusLayout}"`)
  if (plusLayout === 'paper' && replicas > 1) throw new UsageError(`--plus-layout paper works with one replica per stage, not --replicas ${replicas}`)
  const conversion = resolveFailureRate({ perIteration: pIter ?? (rate == null ? demo.perIteration : undefined), hourlyRate: rate, iterationS: demo.iterationS })
  if (values.trace != null && values.replicas != null) throw new UsageError('--replicas draws a trace; a --trace file says its own replicas')
  const trace = values.trace != null
    ? readTrace(String(values.trace))
    : replicas > 1
      ? replicaTrace({ seed, stages: demo.train.stages, replicas, iterations, conversion, noticeFraction: demo.noticeFraction, windowIterations: demo.replicaWindowIterations })
      : generateTrace({ seed, stages: demo.train.stages, iterations, conversion, noticeFraction: demo.noticeFraction })
  if (trace.stages !== demo.train.stages) throw new UsageError(`the trace is for ${trace.stages} stages; the cluster demo has ${demo.train.stages}`)
  const out = (values.out as string | undefined) ?? join('out', `sim-cluster-${new Date().toISOString().replace(/[:.]/g, '-')}`)
  // The progress bar and the table tell the story; the coordinator's own log lines would interleave.
  if (process.env.SPOTPIPE_QUIET == null) process.env.SPOTPIPE_QUIET = '1'
  await initBackend({ backend: 'wasm' })
  const corpus = loadBrownCorpus()
  const failures = trace.events.filter(e => e.kind !== 'join')
  const R = trace.replicas ?? 1
  process.stdout.write(`local-cluster churn demo: ${strategies.length} strategies x ${iterations} iterations, ${demo.train.stages} stages${R > 1 ? ` x ${R} replicas` : ''} + 1 spare as processes on loopback\n`)
  process.stdout.write(`trace (seed ${trace.seed}): ${failures.map(e => `${e.kind} stage ${e.stage} @ iteration ${e.iteration}`).join(', ') || 'no failures'}; ${trace.conversion.formula}\n`)
  const bar = new ProgressBar('sim', strategies.length * iterations)
  let done = 0
  const r = await runClusterExperiment({
    strategies,
    trace,
    model: demo.model,
    train: demo.train,
    iterations,
    evalEvery: demo.evalEvery,
    checkpointEvery: demo.checkpointEvery,
    plusLayout: plusLayout as PlusLayout,
    validationTokens: corpus.validation,
    outDir: out,
    onStrategy: (s, i) => { done = i * iterations; bar.update(done, s) },
    onProgress: (s, row) => { bar.update(done + row.iteration + 1, `${s} it ${row.iteration} loss ${row.loss.toFixed(3)}${row.events !== '' ? ` [${row.events}]` : ''}`) }
  })
  bar.done()
  process.stdout.write(`\n${r.table}\n\nplot: ${r.plot}\noutputs: ${out}\n`)
}

/**
 * Projection mode: the cost model alone, for clusters far beyond one machine (default: a 70B model
 * on 1,000 stages over 500 Mb/s links, 100k iterations). No model is trained, so it projects
 * wall-clock, recoveries by rung, progress lost and bytes moved, but not the loss: CheckFree's
 * convergence penalty after a rebuild is measured in model mode, not here.
 *
 * It walks the failure stream (forEachFailure: the very events generateTrace would list) once, for
 * all strategies together. Stretches of attempts without failures are applied in O(1) per strategy
 * (progress, checkpoints and mirror refreshes counted arithmetically); only attempts with failures
 * cost work, in proportion to their events.
 *
 * What a failure costs depends on `abort`:
 *  - 'iteration' (DESIGN's protocol, and model mode): any crash aborts the iteration in flight; it is
 *    redone after detection and recovery. In a long pipeline almost every iteration is hit (the
 *    report shows the probability), and then nothing completes.
 *  - 'microbatch' (the paper: the microbatch in flight is lost and training continues): the
 *    iteration completes, and each failure batch stalls the pipeline for detection + recovery.
 *    Failures of one iteration less than detectionS apart form one batch (they are detected
 *    together, which is when two adjacent stages count as lost at once).
 * Default 'microbatch'.
 *
 * The per-strategy arithmetic (the Walker) is in projection-walker.ts.
 */
import type { CostParams } from './cost-model.js'
import { costModelForLlm, LLM_70B_PROFILE, type LlmProfile } from './cost-profiles.js'
import { SimConfigError } from './errors.js'
import { CRASH, NOTICE, Walker, type ProjectionStrategyResult } from './projection-walker.js'
import { fmtBytes, fmtSeconds, REFERENCE_STRATEGY } from './report.js'
import { resolveStrategyOptions, SIM_RUNGS, STRATEGIES, type StrategyName, type StrategyOptions } from './strategies.js'
import { forEachFailure, resolveFailureRate, type RateConversion } from './trace.js'

export type { ProjectionStrategyResult } from './projection-walker.js'

export type AbortMode = 'iteration' | 'microbatch'

export interface ProjectionConfig {
  profile?: Partial<LlmProfile>
  /** Cost parameter overrides (e.g. linkBytesPerS). */
  cost?: Partial<CostParams>
  /** Progress iterations to project. @default 100_000 */
  iterations?: number
  /** Failure rate; the hourly rate is converted with the projected plain iteration time. @default 16%/h */
  rate?: { hourlyRate?: number, perIteration?: number, preset?: string }
  /** Trace seed. @default 1 */
  seed?: number
  strategies?: StrategyName[]
  options?: Partial<StrategyOptions>
  /** Attempts walked, as a multiple of iterations: only rollbacks (and, with abort 'iteration', aborted
   *  attempts) need more than one per iteration; a strategy still short of `iterations` at the horizon
   *  is reported as not completed. @default 1.25 with abort 'microbatch', 2 with 'iteration' */
  horizonFactor?: number
  abort?: AbortMode
  noticeFraction?: number
}

export interface ProjectionResult {
  iterations: number
  stages: number
  seed: number
  abort: AbortMode
  conversion: RateConversion
  /** Probability that at least one stage fails during an iteration. */
  pIterationHit: number
  failures: number
  profile: LlmProfile
  cost: Record<string, number | boolean | string>
  strategies: ProjectionStrategyResult[]
  /** Seconds the projection itself took. */
  computeS: number
}

export function runProjection (cfg: ProjectionConfig = {}): ProjectionResult {
  const t0 = performance.now()
  const profile: LlmProfile = { ...LLM_70B_PROFILE, ...cfg.profile }
  const cost = costModelForLlm(profile, cfg.cost)
  const N = cfg.iterations ?? 100_000
  if (!Number.isInteger(N) || N < 1) throw new SimConfigError(`iterations must be a positive integer, got ${String(N)}`)
  const S = cost.stages
  const abort: AbortMode = cfg.abort ?? 'microbatch'
  const horizon = Math.ceil(N * (cfg.horizonFactor ?? (abort === 'microbatch' ? 1.25 : 2)))
  if (abort !== 'iteration' && abort !== 'microbatch') throw new SimConfigError(`abort must be iteration or microbatch, got ${String(abort)}`)
  const seed = cfg.seed ?? 1
  const opts = resolveStrategyOptions(cfg.options)
  const names = (cfg.strategies ?? [...STRATEGIES]).filter(n => n !== 'none')
  const plainS = cost.iterationS({ swaps: false, redundantCompute: false })
  const rate = cfg.rate ?? { hourlyRate: 0.16 }
  const conversion = resolveFailureRate({ ...rate, iterationS: plainS })
  const walkers = names.map(n => new Walker(n, cost, opts, N))
  const none = (cfg.strategies ?? [...STRATEGIES]).includes('none') ? new Walker('none', cost, opts, N) : undefined

  // The current attempt's failures.
  const gStage = new Int32Array(S)
  const gKind = new Uint8Array(S)
  const gU = new Float64Array(S)
  let gN = 0
  const bStage = new Int32Array(S)
  const bKind = new Uint8Array(S)
  const rungs = new Int32Array(S)
  let current = -1
  let next = 0 // first attempt not yet applied

  const allDone = (): boolean => walkers.every(w => w.done)
  const clean = (k: number): void => { for (const w of walkers) w.clean(k) }

  // Batches of the current attempt: offsets into bStage/bKind, each batch ascending by stage.
  const bStart = new Int32Array(S + 1)
  const bU = new Float64Array(S)
  const keys = new Float64Array(S)
  let shift = 1
  while (shift <= S) shift *= 2

  /** Splits the current attempt's failures into batches detected together. */
  const makeBatches = (): number => {
    if (abort === 'iteration') {
      // One batch; the stream already delivers an attempt's stages in ascending order.
      bStage.set(gStage.subarray(0, gN))
      bKind.set(gKind.subarray(0, gN))
      bStart[0] = 0
      bStart[1] = gN
      bU[0] = 0
      return 1
    }
    // Sort by offset: typed-array sort of keys that carry the index in their low bits.
    for (let j = 0; j < gN; j++) keys[j] = Math.floor(gU[j] * 4294967296) * shift + j
    const sorted = keys.subarray(0, gN).sort()
    const gap = cost.p.detectionS / plainS
    let nb = 0
    let prevU = -Infinity
    for (let k = 0; k < gN; k++) {
      const j = sorted[k] % shift
      const u = gU[j]
      if (u - prevU >= gap) { bStart[nb] = k; bU[nb] = u; nb++ }
      prevU = u
      // Insertion into the current batch, ascending by stage (batches are small).
      let i = k
      while (i > bStart[nb - 1] && bStage[i - 1] > gStage[j]) { bStage[i] = bStage[i - 1]; bKind[i] = bKind[i - 1]; i-- }
      bStage[i] = gStage[j]
      bKind[i] = gKind[j]
    }
    bStart[nb] = gN
    return nb
  }

  /** Applies the failures of attempt `current` to every strategy. */
  const flush = (): void => {
    if (gN === 0) return
    const nb = makeBatches()
    let anyCrash = false
    let uMin = 1
    for (let j = 0; j < gN; j++) {
      if (gKind[j] === CRASH) { anyCrash = true; uMin = Math.min(uMin, gU[j]) }
    }
    for (const w of walkers) {
      if (w.done) continue
      if (abort === 'iteration') {
        if (anyCrash) {
          // The attempt is lost after its elapsed part; the same iteration runs again.
          w.attempts++
          w.aborted++
          w.wall += uMin * w.iterS
          w.wall += w.batch(bStage, bKind, 0, gN, rungs, w.wall)
        } else {
          w.clean(1) // notices only: the iteration completes, then the handovers
          w.wall += w.batch(bStage, bKind, 0, gN, rungs, w.wall)
        }
        continue
      }
      // microbatch: the iteration completes; each batch stalls the pipeline.
      const startWall = w.wall
      w.clean(1)
      for (let b = 0; b < nb; b++) w.wall += w.batch(bStage, bKind, bStart[b], bStart[b + 1] - bStart[b], rungs, startWall + bU[b] * w.iterS)
    }
    gN = 0
  }

  const failures = forEachFailure({ seed, stages: S, iterations: horizon, perIteration: conversion.perIteration, noticeFraction: cfg.noticeFraction }, (it, stage, u, kind) => {
    if (it !== current) {
      if (current >= 0) { flush(); next = current + 1 }
      if (allDone()) return false
      clean(it - next)
      next = it
      current = it
    }
    gStage[gN] = stage
    gKind[gN] = kind === 'crash' ? CRASH : NOTICE
    gU[gN] = u
    gN++
  })
  if (current >= 0 && gN > 0) { flush(); next = current + 1 }
  clean(horizon - next)
  none?.clean(N)

  const strategies = walkers.map(w => w.result())
  if (none != null) strategies.push(none.result())
  return {
    iterations: N,
    stages: S,
    seed,
    abort,
    conversion,
    pIterationHit: -Math.expm1(S * Math.log1p(-conversion.perIteration)),
    failures,
    profile,
    cost: cost.describe(),
    strategies,
    computeS: (performance.now() - t0) / 1000
  }
}

/** Text report of a projection: the setting, then one row per strategy. */
export function formatProjection (r: ProjectionResult): string {
  const ref = r.strategies.find(s => s.strategy === REFERENCE_STRATEGY)
  const p = r.profile
  const lines = [
    `projection: ${(p.params / 1e9).toFixed(1)}B parameters on ${r.stages} stages, ${p.microbatches} microbatches of ${p.microbatchSize}x${p.seqLen} tokens, ${Number(r.cost.linkMbps).toFixed(0)} Mb/s links, ${r.iterations} iterations, abort=${r.abort}`,
    `iteration (failure-free): ${fmtSeconds(Number(r.cost.iterationS_plain))}; ${r.conversion.formula}`,
    `probability that an iteration sees a failure: ${(r.pIterationHit * 100).toFixed(2)}%; failures walked: ${r.failures}`
  ]
  const header = ['strategy', 'done', 'iterations', 'wall-clock', `ratio vs ${REFERENCE_STRATEGY}`, 'iteration', 'stalled', 'crashes', 'recoveries by rung', 'stage-its lost', 'its redone', 'ckpt every', 'state moved']
  const rows = r.strategies.map(s => {
    const rungs = SIM_RUNGS.filter(k => s.recoveries[k] > 0).map(k => `${k} ${s.recoveries[k]}`).join(', ')
    const ratio = ref != null && ref.completed ? (s.completed ? (s.wallS / ref.wallS).toFixed(3) : `>${(s.wallS / ref.wallS).toFixed(2)}`) : 'n/a'
    return [s.strategy, s.completed ? 'yes' : 'no', String(s.iterations), fmtSeconds(s.wallS), ratio, fmtSeconds(s.iterationS), fmtSeconds(s.stallS), String(s.crashes), rungs === '' ? '-' : rungs, String(s.stageIterationsLost), String(s.iterationsRedone), Number.isFinite(s.checkpointEvery) ? String(s.checkpointEvery) : '-', fmtBytes(s.stateBytes)]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(x => x[i].length)))
  const fmt = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')
  lines.push(fmt(header), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(fmt))
  lines.push('(wall-clock only: the loss cost of CheckFree rebuilds and stage rollbacks needs model mode)')
  return lines.join('\n')
}

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
 */
import { costModelForLlm, LLM_70B_PROFILE, type CostModel, type CostParams, type LlmProfile } from './cost-model.js'
import { SimConfigError } from './errors.js'
import { fmtBytes, fmtSeconds, REFERENCE_STRATEGY } from './report.js'
import { iterationShape, resolveStrategyOptions, SIM_RUNGS, STRATEGIES, strategyTraits, type SimRung, type StrategyName, type StrategyOptions } from './strategies.js'
import { forEachFailure, resolveFailureRate, type RateConversion } from './trace.js'

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

export interface ProjectionStrategyResult {
  strategy: StrategyName
  /** Reached `iterations` within the horizon. */
  completed: boolean
  iterations: number
  attempts: number
  /** Wall-clock to complete the iterations (or at the horizon). */
  wallS: number
  /** Failure-free iteration time. */
  iterationS: number
  crashes: number
  notices: number
  recoveries: Record<SimRung, number>
  wholeRollbacks: number
  stageIterationsLost: number
  iterationsRedone: number
  abortedAttempts: number
  /** Time spent stalled in detection and recovery. */
  stallS: number
  /** Checkpoint interval in effect: K, stretched when an upload outlasts K iterations. */
  checkpointEvery: number
  stateBytes: number
  activationBytes: number
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

const CRASH = 1
const NOTICE = 2

/** Rung codes, in SIM_RUNGS order. */
const R_HANDOVER = 0
const R_REDUNDANT = 1
const R_CHECKFREE = 2
const R_PLUS = 3
const R_CHECKPOINT = 4

/**
 * Rungs of one failure batch, written to `out` (codes in SIM_RUNGS order): the arithmetic of
 * planRecovery without allocations. `stages` ascending, `kinds` CRASH or NOTICE.
 */
export function classifyBatch (name: StrategyName, stages: ArrayLike<number>, kinds: ArrayLike<number>, n: number, S: number, mirrorReady: (holder: number) => boolean, out: Int32Array | number[], off = 0): void {
  const end = off + n
  const redundant = name === 'redundant'
  const cf = name === 'checkfree' || name === 'checkfree-plus'
  const plus = name === 'checkfree-plus' && S >= 2
  for (let j = off; j < end; j++) {
    const s = stages[j]
    if (kinds[j] === NOTICE) { out[j - off] = R_HANDOVER; continue }
    const prevCrashed = j > off && stages[j - 1] === s - 1 && kinds[j - 1] === CRASH
    const nextCrashed = j < end - 1 && stages[j + 1] === s + 1 && kinds[j + 1] === CRASH
    let rung = R_CHECKPOINT
    if (redundant) {
      if (S > 1) {
        const holderCrashed = s > 0 ? prevCrashed : (stages[end - 1] === S - 1 && kinds[end - 1] === CRASH)
        if (!holderCrashed) rung = R_REDUNDANT
      }
    } else if (cf) {
      if (s > 0 && s < S - 1) {
        if (!prevCrashed && !nextCrashed) rung = R_CHECKFREE
      } else if (plus) {
        if (s === 0 && !nextCrashed && mirrorReady(1)) rung = R_PLUS
        else if (s === S - 1 && !prevCrashed && mirrorReady(S - 2)) rung = R_PLUS
      }
    }
    out[j - off] = rung
  }
}

/** Per-strategy state of the walk. */
class Walker {
  readonly traits
  readonly iterS: number
  readonly saveBlockS: number
  readonly uploadS: number
  readonly saveBytes: number
  readonly mirrorS: number
  readonly mirrorBytes: number
  readonly actBytes: number
  readonly keff: number
  readonly mirrorEvery: number
  progress = 0
  wall = 0
  attempts = 0
  done = false
  crashes = 0
  notices = 0
  aborted = 0
  readonly recoveries = new Float64Array(SIM_RUNGS.length)
  wholeRollbacks = 0
  stageIterationsLost = 0
  iterationsRedone = 0
  stallS = 0
  stateBytes = 0
  actTotal = 0
  // Newest two checkpoints: iteration and wall-clock second from which each can be loaded.
  lastIt = 0
  lastAt = 0
  prevIt = 0
  prevAt = 0
  readonly mirrorOk: Map<number, boolean>
  /** Per rung (SIM_RUNGS order) and stage: recovery seconds and bytes (checkpoint: the stage's state bytes). */
  readonly rungS: Float64Array[]
  readonly rungBytes: Float64Array[]
  /** Loading one stage's checkpoint, per stage. */
  readonly ckptOneS: Float64Array
  readonly detectionS: number
  private readonly mirrorReady = (h: number): boolean => this.mirrorOk.get(h) ?? false

  constructor (readonly name: StrategyName, readonly cost: CostModel, opts: StrategyOptions, readonly target: number) {
    this.traits = strategyTraits(name)
    const shape = iterationShape(name)
    this.iterS = cost.iterationS(shape)
    const save = cost.checkpointSave(shape)
    this.saveBlockS = this.traits.checkpoints ? save.copyS + save.contentionS : 0
    this.uploadS = save.uploadS
    this.saveBytes = save.bytes
    // A save starts only when the previous upload is done: the interval stretches to whole multiples of K.
    const K = opts.checkpointEvery
    this.keff = this.traits.checkpoints ? K * Math.max(1, Math.ceil(save.uploadS / (K * this.iterS))) : Infinity
    const mirror = cost.mirrorRefresh(shape)
    this.mirrorS = this.traits.mirrors ? mirror.contentionS : 0
    this.mirrorBytes = mirror.bytes
    this.mirrorEvery = this.traits.mirrors ? opts.mirrorEvery : Infinity
    this.actBytes = cost.activationBytes(shape)
    const S = cost.stages
    this.mirrorOk = new Map([[1, true], [S - 2, true]])
    this.detectionS = cost.p.detectionS
    this.ckptOneS = Float64Array.from({ length: S }, (_, st) => cost.checkpointLoad([st]).seconds)
    this.rungS = SIM_RUNGS.map(() => new Float64Array(S))
    this.rungBytes = SIM_RUNGS.map(() => new Float64Array(S))
    for (let st = 0; st < S; st++) {
      const costs = [cost.exactCopy(st), cost.exactCopy(st), cost.checkfreeRebuild(st), cost.checkfreePlusCopy(st)]
      costs.forEach((c, r) => { this.rungS[r][st] = c.seconds; this.rungBytes[r][st] = c.bytes })
      this.rungS[R_HANDOVER][st] = Math.max(0, costs[R_HANDOVER].seconds - cost.p.noticeLeadS)
      this.rungBytes[R_CHECKPOINT][st] = cost.stageBytes(st, true)
    }
  }

  private multiples (every: number, from: number, to: number): number {
    return Number.isFinite(every) ? Math.floor(to / every) - Math.floor(from / every) : 0
  }

  /** `k` failure-free attempts. */
  clean (k: number): void {
    if (this.done || k <= 0) return
    const run = Math.min(k, this.target - this.progress)
    const p0 = this.progress
    const p1 = p0 + run
    const w0 = this.wall
    const saves = this.multiples(this.keff, p0, p1)
    const refreshes = this.multiples(this.mirrorEvery, p0, p1)
    const wallAt = (c: number): number => w0 + (c - p0) * this.iterS + this.multiples(this.keff, p0, c) * this.saveBlockS + this.multiples(this.mirrorEvery, p0, c) * this.mirrorS
    if (saves >= 1) {
      const c1 = Math.floor(p1 / this.keff) * this.keff
      const c0 = c1 - this.keff
      if (saves >= 2) { this.prevIt = c0; this.prevAt = wallAt(c0) + this.uploadS } else { this.prevIt = this.lastIt; this.prevAt = this.lastAt }
      this.lastIt = c1
      this.lastAt = wallAt(c1) + this.uploadS
      this.stateBytes += saves * this.saveBytes
    }
    if (refreshes >= 1) {
      for (const h of this.mirrorOk.keys()) this.mirrorOk.set(h, true)
      this.stateBytes += refreshes * this.mirrorBytes
    }
    this.wall = wallAt(p1)
    this.progress = p1
    this.attempts += run
    this.actTotal += run * this.actBytes
    if (this.progress >= this.target) this.done = true
  }


  /**
   * One failure batch at wall-clock `t`: returns the stall (detection + the longest recovery) and
   * applies rollbacks. `stages` ascending.
   */
  batch (stages: Int32Array, kinds: Uint8Array, off: number, n: number, rungs: Int32Array, t: number): number {
    const cost = this.cost
    const S = cost.stages
    if (n === 1 && !this.traits.wholeRollback) {
      // The common case: one failure on its own. Same arithmetic as below, without the loop.
      const s = stages[off]
      classifyBatch(this.name, stages, kinds, 1, S, this.mirrorReady, rungs, off)
      const r = rungs[0]
      const crash = kinds[off] === CRASH
      if (crash) this.crashes++
      else this.notices++
      this.recoveries[r] += 1
      if (s === 1 || s === S - 2) this.mirrorOk.set(s, false)
      let seconds: number
      if (r === R_CHECKPOINT) {
        const ckptIt = this.lastAt <= t ? this.lastIt : this.prevIt
        this.stageIterationsLost += this.progress - ckptIt
        if (ckptIt > 0) {
          const b = this.rungBytes[R_CHECKPOINT][s]
          seconds = this.ckptOneS[s]
          this.stateBytes += b
        } else seconds = 0
      } else {
        seconds = this.rungS[r][s]
        this.stateBytes += this.rungBytes[r][s]
      }
      const stall = (crash ? this.detectionS : 0) + seconds
      this.stallS += stall
      return stall
    }
    classifyBatch(this.name, stages, kinds, n, S, this.mirrorReady, rungs, off)
    let anyCrash = false
    let longest = 0
    let ckptLargest = 0
    let ckptTotal = 0
    let ckptCount = 0
    // Newest checkpoint loadable at wall-clock t.
    const ckptIt = this.lastAt <= t ? this.lastIt : this.prevIt
    const ckptAt = this.lastAt <= t ? this.lastAt : this.prevAt
    const whole = this.traits.wholeRollback
    for (let j = 0; j < n; j++) {
      const s = stages[off + j]
      const r = rungs[j]
      if (kinds[off + j] === CRASH) { anyCrash = true; this.crashes++ } else this.notices++
      this.recoveries[r] += 1
      if (s === 1 || s === S - 2) { if (this.mirrorOk.has(s)) this.mirrorOk.set(s, false) }
      if (r === R_CHECKPOINT) {
        ckptCount++
        if (!whole) {
          this.stageIterationsLost += this.progress - ckptIt
          const b = this.rungBytes[R_CHECKPOINT][s]
          if (b > ckptLargest) ckptLargest = b
          ckptTotal += b
        }
        continue
      }
      const seconds = this.rungS[r][s]
      if (seconds > longest) longest = seconds
      this.stateBytes += this.rungBytes[r][s]
    }
    if (ckptCount > 0 && whole) {
      this.wholeRollbacks++
      this.iterationsRedone += this.progress - ckptIt
      if (ckptIt > 0) {
        const all = cost.totalBytes(true)
        let largest = 0
        for (let s = 0; s < S; s++) largest = Math.max(largest, cost.stageBytes(s, true))
        ckptLargest = largest
        ckptTotal = all
      }
      this.progress = ckptIt
      this.lastIt = this.prevIt = ckptIt
      this.lastAt = this.prevAt = ckptAt
      this.done = false
    }
    if (ckptCount > 0 && ckptIt > 0) {
      const p = cost.p
      longest = Math.max(longest, p.linkLatencyS + Math.max(ckptLargest / p.linkBytesPerS, ckptTotal / p.storageBytesPerS) * p.timeScale)
      this.stateBytes += ckptTotal
    }
    const stall = (anyCrash ? cost.p.detectionS : 0) + longest
    this.stallS += stall
    return stall
  }

  result (): ProjectionStrategyResult {
    return {
      strategy: this.name,
      completed: this.progress >= this.target,
      iterations: this.progress,
      attempts: this.attempts,
      wallS: this.wall,
      iterationS: this.iterS,
      crashes: this.crashes,
      notices: this.notices,
      recoveries: Object.fromEntries(SIM_RUNGS.map((r, i) => [r, this.recoveries[i]])) as Record<SimRung, number>,
      wholeRollbacks: this.wholeRollbacks,
      stageIterationsLost: this.stageIterationsLost,
      iterationsRedone: this.iterationsRedone,
      abortedAttempts: this.aborted,
      stallS: this.stallS,
      checkpointEvery: this.keff,
      stateBytes: this.stateBytes,
      activationBytes: this.actTotal
    }
  }
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
  const plainS = cost.iterationS({ swaps: false, redundant: false })
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

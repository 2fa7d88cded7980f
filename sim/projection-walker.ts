/**
 * Projection arithmetic for one strategy: the Walker keeps a strategy's progress, wall-clock,
 * checkpoints and mirrors as the projection (projection.ts) walks the failure stream, applying a
 * stretch of failure-free attempts in O(1) and a failure batch in proportion to its events.
 * classifyBatch is planRecovery's rung choice (strategies.ts) without allocations.
 */
import type { CostModel } from './cost-model.js'
import { iterationShape, SIM_RUNGS, strategyTraits, type FailureTally, type SimRung, type StrategyName, type StrategyOptions } from './strategies.js'

export interface ProjectionStrategyResult extends FailureTally {
  strategy: StrategyName
  /** Reached `iterations` within the horizon. */
  completed: boolean
  iterations: number
  /** Wall-clock to complete the iterations (or at the horizon). */
  wallS: number
  /** Failure-free iteration time. */
  iterationS: number
  /** Time spent stalled in detection and recovery. */
  stallS: number
  /** Checkpoint interval in effect: K, stretched when an upload outlasts K iterations. */
  checkpointEvery: number
  stateBytes: number
  activationBytes: number
}

/** Failure kinds in the typed arrays of a batch. */
export const CRASH = 1
export const NOTICE = 2

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
export class Walker {
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

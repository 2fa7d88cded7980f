/**
 * Projection arithmetic for one strategy: the Walker keeps a strategy's progress, wall-clock,
 * checkpoints, mirrors and shadows as the projection (projection.ts) walks the failure stream,
 * applying a stretch of failure-free attempts in O(1) and a failure batch in proportion to its events.
 * The rungs come from the coordinator's ladder, through the memo of ladder-memo.ts.
 */
import { mirrorHolder, shadowedStage } from '../model/index.js'
import type { CostModel } from './cost-model.js'
import { CRASH, LadderMemo, ROLLS, type HeldCopyState } from './ladder-memo.js'
import { iterationShape, SIM_RUNGS, strategyTraits, type FailureTally, type SimRung, type StrategyName, type StrategyOptions } from './strategies.js'

export { CRASH, NOTICE } from './ladder-memo.js'

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

/** Rung codes, in SIM_RUNGS order. */
const R_HANDOVER = SIM_RUNGS.indexOf('handover')
const R_REPLICA = SIM_RUNGS.indexOf('replica')
const R_CHECKPOINT = SIM_RUNGS.indexOf('checkpoint')

/** Per-strategy state of the walk. */
export class Walker implements HeldCopyState {
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
  /** Per iteration, strategy redundant: the shadow pulls' share of the links, and their bytes. */
  readonly shadowS: number
  readonly shadowBytes: number
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
  /** Per stage: 1 when it holds a usable CheckFree+ mirror. */
  readonly mirrorOk: Uint8Array
  private readonly mirrorHolders: number[]
  /** Commits so far (never rolled back), and per stage the commit count at which its shadow went stale
   *  (a shadow is current again from the next commit on, once its pull is done). */
  commits = 0
  readonly shadowStaleAt: Int32Array
  /** Seconds after a commit until the pull of each stage's shadow is done. */
  private readonly memo: LadderMemo
  /** Per rung (SIM_RUNGS order) and stage: recovery seconds and bytes (checkpoint: the stage's state bytes). */
  readonly rungS: Float64Array[]
  readonly rungBytes: Float64Array[]
  /** Loading one stage's checkpoint, per stage. */
  readonly ckptOneS: Float64Array
  readonly detectionS: number

  constructor (readonly name: StrategyName, readonly cost: CostModel, opts: StrategyOptions, readonly target: number) {
    this.traits = strategyTraits(name)
    const shape = iterationShape(name, opts)
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
    const shadow = cost.shadowRefresh(shape)
    // the commit waits for the slowest shadow pull (cost-model.ts shadowRefresh)
    this.shadowS = this.traits.shadowCopy ? shadow.seconds : 0
    this.shadowBytes = this.traits.shadowCopy ? shadow.bytes : 0
    this.shadowStaleAt = new Int32Array(S).fill(-1)
    // Mirrors of the seeded initial weights exist from the start.
    this.mirrorHolders = this.traits.mirrors ? [mirrorHolder(0, S), mirrorHolder(S - 1, S)].filter((h): h is number => h != null) : []
    this.mirrorOk = new Uint8Array(S)
    for (const h of this.mirrorHolders) this.mirrorOk[h] = 1
    this.memo = new LadderMemo(name, S, opts.lrScale)
    this.detectionS = cost.p.detectionS
    this.ckptOneS = Float64Array.from({ length: S }, (_, st) => cost.checkpointLoad([st]).seconds)
    this.rungS = SIM_RUNGS.map(() => new Float64Array(S))
    this.rungBytes = SIM_RUNGS.map(() => new Float64Array(S))
    for (let st = 0; st < S; st++) {
      const costs: Record<SimRung, { seconds: number, bytes: number }> = {
        handover: cost.exactCopy(st),
        replica: cost.exactCopy(st),
        checkfree: cost.checkfreeRebuild(st),
        'checkfree-plus': cost.checkfreePlusCopy(st),
        checkpoint: { seconds: this.ckptOneS[st], bytes: cost.stageBytes(st, true) }
      }
      SIM_RUNGS.forEach((r, i) => { this.rungS[i][st] = costs[r].seconds; this.rungBytes[i][st] = costs[r].bytes })
      // The handover transfer hides behind the notice's lead time.
      this.rungS[R_HANDOVER][st] = cost.noticeStallS(costs.handover.seconds)
    }
  }

  // The held copies the ladder asks about (methods, not closures: one call target for every walker).
  mirrorReady (h: number): boolean { return this.mirrorOk[h] === 1 }
  shadowReady (st: number): boolean {
    return this.traits.redundantCompute || this.shadowStaleAt[st] < this.commits
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
    const wallAt = (c: number): number => w0 + (c - p0) * (this.iterS + this.shadowS) + this.multiples(this.keff, p0, c) * this.saveBlockS + this.multiples(this.mirrorEvery, p0, c) * this.mirrorS
    if (saves >= 1) {
      const c1 = Math.floor(p1 / this.keff) * this.keff
      const c0 = c1 - this.keff
      if (saves >= 2) { this.prevIt = c0; this.prevAt = wallAt(c0) + this.uploadS } else { this.prevIt = this.lastIt; this.prevAt = this.lastAt }
      this.lastIt = c1
      this.lastAt = wallAt(c1) + this.uploadS
      this.stateBytes += saves * this.saveBytes
    }
    if (refreshes >= 1) {
      for (const h of this.mirrorHolders) this.mirrorOk[h] = 1
      this.stateBytes += refreshes * this.mirrorBytes
    }
    this.stateBytes += run * this.shadowBytes
    this.commits += run
    this.wall = wallAt(p1)
    this.progress = p1
    this.attempts += run
    this.actTotal += run * this.actBytes
    if (this.progress >= this.target) this.done = true
  }

  /** Stage `s` was recovered by rung `r`: the copies its old peer held went with it. */
  private replaced (s: number, r: number): void {
    if (this.mirrorOk[s] === 1) this.mirrorOk[s] = 0
    if (this.traits.shadows) {
      const held = shadowedStage(s, this.cost.stages)
      if (held != null) this.shadowStaleAt[held] = this.commits
      if (r !== R_HANDOVER && r !== R_REPLICA) this.shadowStaleAt[s] = this.commits // its shadow is of its old state
    }
  }

  /**
   * One failure batch at wall-clock `t`: returns the stall (detection + the longest recovery) and
   * applies rollbacks.
   * `stages` ascending.
   */
  batch (stages: Int32Array, kinds: Uint8Array, off: number, n: number, rungs: Int32Array, t: number): number {
    const cost = this.cost
    const S = cost.stages
    // Newest checkpoint loadable at wall-clock t.
    const ckptIt = this.lastAt <= t ? this.lastIt : this.prevIt
    const ckptAt = this.lastAt <= t ? this.lastAt : this.prevAt
    const one = n === 1 ? this.memo.classifyOne(stages[off], kinds[off], this) : -1
    if (one >= 0 && (one & ROLLS) === 0) {
      // The common case: one failure on its own, not rolling back. Same arithmetic as below, without the loop.
      const s = stages[off]
      const r = one
      rungs[0] = r
      const crash = kinds[off] === CRASH
      if (crash) this.crashes++
      else this.notices++
      this.recoveries[r] += 1
      this.replaced(s, r)
      let seconds: number
      if (r === R_CHECKPOINT) {
        this.stageIterationsLost += this.progress - ckptIt
        if (ckptIt > 0) {
          seconds = this.rungS[R_CHECKPOINT][s]
          this.stateBytes += this.rungBytes[R_CHECKPOINT][s]
        } else seconds = 0
      } else {
        seconds = this.rungS[r][s]
        this.stateBytes += this.rungBytes[r][s]
      }
      const stall = (crash ? this.detectionS : 0) + seconds
      this.stallS += stall
      return stall
    }
    let rollback = true
    if (one >= 0) rungs[0] = one & (ROLLS - 1)
    else rollback = this.memo.classify(stages, kinds, off, n, this, rungs)
    let anyCrash = false
    let longest = 0
    let ckptLargest = 0
    let ckptTotal = 0
    let ckptCount = 0
    for (let j = 0; j < n; j++) {
      const s = stages[off + j]
      const r = rungs[j]
      if (kinds[off + j] === CRASH) { anyCrash = true; this.crashes++ } else this.notices++
      this.recoveries[r] += 1
      this.replaced(s, r)
      if (r === R_CHECKPOINT) {
        ckptCount++
        if (!rollback) {
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
    if (rollback) {
      // Every stage reloads the checkpoint: the iterations since are redone.
      this.wholeRollbacks++
      this.iterationsRedone += this.progress - ckptIt
      if (ckptIt > 0) {
        let largest = 0
        for (let s = 0; s < S; s++) largest = Math.max(largest, cost.stageBytes(s, true))
        ckptLargest = largest
        ckptTotal = cost.totalBytes(true)
      }
      if (this.traits.shadows) this.shadowStaleAt.fill(this.commits)
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

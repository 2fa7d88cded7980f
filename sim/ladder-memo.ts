/**
 * The projection's ladder: planBatch (ladder-adapter.ts), remembered. A 1,000-stage projection walks
 * some 25 million failures per strategy, far too many to build a LadderInput for each, but almost all
 * of them are one stage failing on its own, and the ladder's answer for that is the same every time
 * the same stage fails in the same state. So:
 *
 *  - a batch is split into clusters: lost stages less than 3 apart go together, so no two clusters
 *    touch the same stage or neighbour;
 *  - each cluster is planned by planBatch as if it were lost alone, once per (stages, kinds, shadows
 *    available, mirrors ready), and the rungs are kept;
 *  - the batch rolls back every stage when any cluster does (then, as LadderResult.rollbackAll says,
 *    every stage reloads the checkpoint: every lost stage's rung is checkpoint).
 *
 * This relies on the ladder deciding a lost stage from its own state and its neighbours' (and on a
 * rollback being all or nothing). test/sim-ladder.test.ts checks the memo against planBatch on the
 * whole batch over random batches, so a ladder change that breaks the assumption fails there.
 */
import { mirrorHolder } from '../model/index.js'
import { SimConfigError } from './errors.js'
import { HeldPipeline, planBatch, replicaAvailable, type LostStage } from './ladder-adapter.js'
import { SIM_RUNGS, strategyTraits, type StrategyName } from './strategies.js'

/** Failure kinds in the typed arrays of a batch. */
export const CRASH = 1
export const NOTICE = 2

const CHECKPOINT = SIM_RUNGS.indexOf('checkpoint')
/** A cached answer: rung code + 1, plus this bit when the cluster rolls every stage back. */
const ROLLBACK = 16
/** classifyOne's flag: the ladder rolls every stage back. */
export const ROLLS = 16

export interface HeldCopyState {
  /** True when stage `holder` keeps a usable CheckFree+ mirror. */
  mirrorReady: (holder: number) => boolean
  /** True when the shadow of `stage` on its holder is current. */
  shadowReady: (stage: number) => boolean
}

export class LadderMemo {
  /** Single-stage clusters: [stage][kind][replica][mirror bits] -> answer (0: not asked yet). */
  private readonly single: Uint8Array
  private readonly multi = new Map<string, Uint8Array>()
  private readonly mirrorFirst: number | undefined
  private readonly mirrorLast: number | undefined
  private readonly replica: Uint8Array

  private readonly shadows: boolean
  private readonly pipeline: HeldPipeline
  // The batch being classified, for `held`.
  private bStages: ArrayLike<number> = []
  private bOff = 0
  private bEnd = 0
  private lone = -1
  /** Whether stage h is held when only `lone` is lost. */
  private readonly heldAlone = (h: number): boolean => h !== this.lone
  /** Whether stage h is held, i.e. not in the batch being classified. */
  private readonly held = (h: number): boolean => {
    for (let j = this.bOff; j < this.bEnd; j++) if (this.bStages[j] === h) return false
    return true
  }

  constructor (readonly strategy: StrategyName, readonly stages: number, readonly lrScale?: number) {
    this.shadows = strategyTraits(strategy).shadows
    this.pipeline = new HeldPipeline(stages)
    this.single = new Uint8Array(stages * 16)
    this.mirrorFirst = mirrorHolder(0, stages)
    this.mirrorLast = mirrorHolder(stages - 1, stages)
    this.replica = new Uint8Array(stages)
  }

  /** Misses so far (each one a planBatch call): for tests and curiosity. */
  misses = 0

  /**
   * The rung (SIM_RUNGS code) of `stage` lost alone by `kind` (CRASH or NOTICE), plus ROLLS when the
   * ladder rolls every stage back: the projection's common case, kept cheap.
   */
  classifyOne (stage: number, kind: number, held: HeldCopyState): number {
    const bits = (this.mirrorFirst != null && held.mirrorReady(this.mirrorFirst) ? 1 : 0) | (this.mirrorLast != null && held.mirrorReady(this.mirrorLast) ? 2 : 0)
    this.lone = stage
    const replica = this.shadows && replicaAvailable(stage, this.stages, this.heldAlone, held) ? 1 : 0
    const key = ((stage * 2 + (kind === CRASH ? 0 : 1)) * 2 + replica) * 4 + bits
    if (this.single[key] === 0) {
      this.replica[0] = replica
      this.single[key] = this.ask([stage], [kind], 0, 1, 0, bits)[0]
    }
    const answer = this.single[key]
    return (answer & ROLLS) !== 0 ? CHECKPOINT | ROLLS : answer - 1
  }

  /**
   * Rungs of one failure batch (SIM_RUNGS codes) into out[0..n); `stages[off..off+n)` ascending,
   * `kinds` CRASH or NOTICE. Returns whether the batch rolls every stage back to the checkpoint.
   */
  classify (stages: ArrayLike<number>, kinds: ArrayLike<number>, off: number, n: number, held: HeldCopyState, out: Int32Array | number[]): boolean {
    if (n === 1) {
      const r = this.classifyOne(stages[off], kinds[off], held)
      out[0] = r & (ROLLS - 1)
      return (r & ROLLS) !== 0
    }
    const S = this.stages
    const end = off + n
    const bits = (this.mirrorFirst != null && held.mirrorReady(this.mirrorFirst) ? 1 : 0) | (this.mirrorLast != null && held.mirrorReady(this.mirrorLast) ? 2 : 0)
    // Whether each lost stage's shadow can be copied, judged on the whole batch (its holder may be far
    // away: stage S-1 shadows stage 0).
    if (this.shadows) {
      this.bStages = stages
      this.bOff = off
      this.bEnd = end
      for (let j = off; j < end; j++) this.replica[j - off] = replicaAvailable(stages[j], S, this.held, held) ? 1 : 0
    } // (without shadows `replica` stays all zeros)
    let rollback = false
    let j = off
    while (j < end) {
      let k = j + 1
      while (k < end && stages[k] - stages[k - 1] < 3) k++
      let answer: Uint8Array | undefined
      if (k === j + 1) {
        const key = ((stages[j] * 2 + (kinds[j] === CRASH ? 0 : 1)) * 2 + this.replica[j - off]) * 4 + bits
        if (this.single[key] === 0) this.single[key] = this.ask(stages, kinds, j, k, off, bits)[0]
        out[j - off] = (this.single[key] - 1) & (ROLLBACK - 1)
        if ((this.single[key] & ROLLBACK) !== 0) rollback = true
      } else {
        let key = `${bits}`
        for (let i = j; i < k; i++) key += `|${stages[i]}${kinds[i] === CRASH ? 'c' : 'n'}${this.replica[i - off]}`
        answer = this.multi.get(key)
        if (answer == null) {
          answer = this.ask(stages, kinds, j, k, off, bits)
          this.multi.set(key, answer)
        }
        for (let i = j; i < k; i++) {
          out[i - off] = (answer[i - j] - 1) & (ROLLBACK - 1)
          if ((answer[i - j] & ROLLBACK) !== 0) rollback = true
        }
      }
      j = k
    }
    if (rollback) for (let i = 0; i < n; i++) out[i] = CHECKPOINT
    return rollback
  }

  /** planBatch on the cluster stages[j..k) alone; answers in cluster order. */
  private ask (stages: ArrayLike<number>, kinds: ArrayLike<number>, j: number, k: number, off: number, bits: number): Uint8Array {
    this.misses++
    const lost: LostStage[] = []
    const replica = new Map<number, boolean>()
    for (let i = j; i < k; i++) {
      lost.push({ stage: stages[i], kind: kinds[i] === CRASH ? 'crash' : 'notice' })
      replica.set(stages[i], this.replica[i - off] === 1)
    }
    const mirrorReady = (h: number): boolean => (h === this.mirrorFirst && (bits & 1) !== 0) || (h === this.mirrorLast && (bits & 2) !== 0)
    const plan = planBatch({ strategy: this.strategy, stages: this.stages, lost, mirrorReady, shadowReady: s => replica.get(s) ?? false, lrScale: this.lrScale }, this.pipeline)
    if (plan.waiting.length > 0) throw new SimConfigError(`no spare for stages ${plan.waiting.join(', ')}: the simulator assumes one`)
    const answer = new Uint8Array(k - j)
    for (const p of plan.plans) answer[lost.findIndex(l => l.stage === p.stage)] = (SIM_RUNGS.indexOf(p.rung) + 1) | (plan.rollbackAll ? ROLLBACK : 0)
    return answer
  }
}

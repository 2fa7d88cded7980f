/**
 * Joining a stage as a new replica while its replicas keep training (issue: "a join never pauses
 * training for more than one iteration").
 *
 * The joiner is named in the assignment's `joining` list: it holds the stage with placeholder
 * weights, runs no microbatch, and takes part in every iteration's gradient all-reduce with zeros,
 * so the others' sum is unchanged and nobody waits for it. Meanwhile it pulls the stage's state from
 * the live replicas (at whatever commit they are at when asked: a consistent export) and logs the
 * reduced gradient sums of every iteration since it entered, with whether the iteration committed
 * or was skipped. At the first commit at or after the pulled state's iteration it loads that state
 * and replays the logged steps after it: the same sums, the same clip and Adam step, so its weights
 * and moments are then those of the other replicas bit for bit, and it reports recovery-done. The
 * coordinator then lists it as a serving replica at its next commit.
 *
 *   placeholder      zeros into the all-reduce; reduced sums logged by iteration
 *   pulled (it c')   wait for commit k >= c'
 *   catch up         load the pulled state, replay c'+1..k from the log: exact
 *
 * Cost: the pull (the stage's weights and moments, split over the live replicas) overlaps training;
 * the log holds one gradient per iteration of the pull (a third of the pull's bytes each), bounded
 * by `maxIterations`; the all-reduce gains a member.
 */
import type { Stage, TensorSet } from '../model/index.js'
import { loadStageState, stateFromTensorSet, type StageState } from '../model/index.js'
import { ReplicaJoinError } from './errors.js'

/** Iterations of reduced gradients a join may log before it gives up (a pull that slow is no join). @default 64 */
export const DEFAULT_JOIN_LOG_ITERATIONS = 64

interface Logged { sums: Float32Array[], outcome?: 'step' | 'skipped' }

export class ReplicaJoin {
  readonly stage: number
  private readonly maxIterations: number
  private readonly log = new Map<number, Logged>()
  private pulled?: StageState
  /** Set once the join caught up: the stage is an exact replica from then on. */
  done = false

  constructor (init: { stage: number, maxIterations?: number }) {
    this.stage = init.stage
    this.maxIterations = init.maxIterations ?? DEFAULT_JOIN_LOG_ITERATIONS
  }

  /** The iteration's all-reduced sums (copied: the stage takes the arrays over). */
  reduced (iteration: number, sums: readonly Float32Array[]): void {
    if (this.done) return
    if (!this.log.has(iteration) && this.log.size >= this.maxIterations) {
      throw new ReplicaJoinError(`stage ${this.stage}: the pull did not arrive within ${this.maxIterations} iterations of reduced gradients`)
    }
    this.log.set(iteration, { sums: sums.map(a => a.slice()) })
  }

  /** Iteration `iteration` committed (with its step, or skipped). */
  committed (iteration: number, skipped: boolean): void {
    const e = this.log.get(iteration)
    if (e != null) e.outcome = skipped ? 'skipped' : 'step'
    else if (skipped) this.log.set(iteration, { sums: [], outcome: 'skipped' })
  }

  /** The state pulled from the live replicas arrived. */
  arrived (tensors: TensorSet): number {
    this.pulled = stateFromTensorSet(tensors)
    return this.pulled.meta.iteration
  }

  /**
   * At a commit (`stage` idle at committed iteration `stage.iteration`): once the pulled state is at
   * or below it, loads the state into `stage` and replays the logged steps after it. Returns true when
   * the stage is now exact; false while the pull is outstanding or ahead of this commit.
   */
  catchUp (stage: Stage, microbatches: number): boolean {
    if (this.done) return true
    const p = this.pulled
    const k = stage.iteration
    if (p == null || p.meta.iteration > k) return false
    for (let it = p.meta.iteration + 1; it <= k; it++) {
      const e = this.log.get(it)
      if (e?.outcome == null) throw new ReplicaJoinError(`stage ${this.stage}: no committed gradient of iteration ${it} to replay onto the state of iteration ${p.meta.iteration}`)
    }
    loadStageState(stage, p.tensors, p.meta, { optimizer: true })
    for (let it = p.meta.iteration + 1; it <= k; it++) {
      const e = this.log.get(it) as Logged
      if (e.outcome === 'skipped') { stage.skipStep(it); continue }
      stage.setGradientSums(e.sums)
      stage.prepareStep(microbatches)
      stage.commitStep(it)
    }
    this.log.clear()
    this.pulled = undefined
    this.done = true
    return true
  }
}

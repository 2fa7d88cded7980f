/**
 * Divergence: what the coordinator does when a stage reports a non-finite loss, gradient or
 * activation (a done report with `nonFinite`). runIteration commits such an iteration as skipped:
 * no stage applies its step, and every stage moves on to the next iteration's data (the same data
 * on the same weights would diverge the same way). This module counts those iterations and, after
 * `divergenceLimit` of them in a row, acts as `onDivergence` says:
 *
 *   rollback  every stage reloads the newest checkpoint from before the streak (the seeded initial
 *             weights when there is none), the learning rate is multiplied by `divergenceLrFactor`
 *             (compounding over rollbacks), and the iteration clock goes back to just after the
 *             checkpoint. Each stage's reload is recorded as a recovery with rung `checkpoint`.
 *   stop      the run ends with a DivergenceError, one line naming the cause.
 *
 * The default is rollback when the coordinator takes checkpoints (a state dir) and stop otherwise:
 * without checkpoints a rollback would throw the whole run away and restart it from the seed.
 *
 * Which checkpoint: the weights committed just before the first non-finite iteration produced it
 * (its gradient does not depend on the learning rate), and the skipped iterations kept those same
 * weights, so checkpoints of any of them would replay the divergence. They are removed from the
 * store, as the store removes any checkpoint from a timeline that was rolled back past.
 *
 * The reduced rate rides in the assignment's training config (`lr`, Coordinator.assign), not in the
 * plans' lrScale: a checkpoint keeps each stage's own multiplier (CheckFree's 1.1), and a stage
 * rebuilt by any rung later still trains at the reduced rate. It is not persisted: a restarted
 * coordinator starts again from the learning rate it is given.
 */
import type { TrainConfig } from '../model/index.js'
import { SpotpipeError } from '../common/index.js'
import { createLog } from '../common/index.js'
import type { Assignment, DoneReport } from '../protocols/index.js'
import type { CheckpointStore } from './checkpoint-store.js'
import { CoordinatorUsageError } from './errors.js'
import { checkpointId } from './ladder.js'
import type { DivergenceEvent, RecoveryEvent } from './types.js'

const log = createLog('coordinator')

export type DivergenceAction = 'rollback' | 'stop'
export const DIVERGENCE_ACTIONS: readonly DivergenceAction[] = ['rollback', 'stop']

/** The run diverged and stops (on-divergence stop, or a rollback that cannot help). */
export class DivergenceError extends SpotpipeError {
  readonly event: DivergenceEvent
  constructor (message: string, event: DivergenceEvent) {
    super('ERR_DIVERGED', message)
    this.event = event
  }
}

/** What divergence handling reads from the coordinator, and the coordinator methods it calls. */
export interface DivergenceHost {
  readonly train: TrainConfig
  readonly assignment?: Assignment
  readonly epoch: number
  /** The next iteration: set back by a rollback. */
  iteration: number
  readonly store?: CheckpointStore
  readonly recoveries: RecoveryEvent[]
  /** Every stage reloads checkpoint `checkpointId` on its own peer, recorded with `cause` (recovery/machine.ts). */
  reloadAll: (checkpointId: string, cause: string, signal?: AbortSignal) => Promise<RecoveryEvent[]>
  persist: () => Promise<void>
  flushCheckpoints: () => Promise<void>
  emit: (event: 'divergence', payload: DivergenceEvent) => boolean
}

export interface DivergenceOptions {
  /** @default 'rollback' when `checkpoints`, else 'stop' */
  onDivergence?: DivergenceAction
  /** @default 3 */
  limit?: number
  /** @default 0.5 */
  lrFactor?: number
  /** Whether the coordinator takes checkpoints (decides the default action). */
  checkpoints: boolean
  /** Loads the newest valid checkpoint and serves it to rebuilding peers; its iteration, or undefined when there is none. */
  loadCheckpoint: () => Promise<number | undefined>
}

interface Skipped { iteration: number, stage: number, what: string }

/** The report to act on among an iteration's done reports: a non-finite loss first, else the lowest stage's. */
export function nonFiniteReport (reports: Iterable<DoneReport>): DoneReport | undefined {
  const bad = [...reports].filter(r => r.nonFinite === true).sort((a, b) => a.stage - b.stage)
  return bad.find(r => r.nonFiniteWhat === 'loss') ?? bad[0]
}

export class Divergence {
  private readonly host: DivergenceHost
  private readonly opts: DivergenceOptions
  readonly action: DivergenceAction
  readonly limit: number
  private readonly factor: number
  /** Learning-rate multiplier in force: the factor once per rollback so far. */
  lrFactor = 1
  /** The skipped iterations of the current streak, oldest first. */
  private streak: Skipped[] = []
  /** A step was applied since the last rollback; if not, another rollback would replay the same divergence. */
  private progressed = true

  constructor (host: DivergenceHost, opts: DivergenceOptions) {
    this.host = host
    this.opts = opts
    this.action = opts.onDivergence ?? (opts.checkpoints ? 'rollback' : 'stop')
    if (!DIVERGENCE_ACTIONS.includes(this.action)) throw new CoordinatorUsageError(`onDivergence must be ${DIVERGENCE_ACTIONS.join(' or ')}, got "${String(this.action)}"`)
    this.limit = opts.limit ?? 3
    if (!Number.isInteger(this.limit) || this.limit < 1) throw new CoordinatorUsageError(`divergenceLimit must be a positive integer, got ${this.limit}`)
    this.factor = opts.lrFactor ?? 0.5
    if (!(this.factor > 0 && this.factor <= 1)) throw new CoordinatorUsageError(`divergenceLrFactor must be in (0, 1], got ${this.factor}`)
  }

  /** The learning rate stages are built with now. */
  get lr (): number { return this.host.train.lr * this.lrFactor }

  /** An iteration was committed with its step: the streak is over. */
  committed (): void {
    this.streak = []
    this.progressed = true
  }

  /**
   * Iteration `it` is being committed as skipped because of `report`: counts it in the streak, logs
   * it and, when only this step is dropped, emits the event. Called once the commit is durable and
   * before it is announced, as the 'iteration' event of a trained one is (a coordinator killed
   * between the two must not leave a skipped commit without its event). Returns the event, for
   * act() once the commit is announced.
   */
  skipped (it: number, report: DoneReport): DivergenceEvent {
    this.streak.push({ iteration: it, stage: report.stage, what: report.nonFiniteWhat ?? 'value' })
    const n = this.streak.length
    const event: DivergenceEvent = { at: Date.now(), iteration: it, stage: report.stage, what: report.nonFiniteWhat ?? 'value', consecutive: n, action: n < this.limit ? 'skip' : this.action, lrFactor: this.lrFactor }
    log.info(`iteration ${it}: non-finite ${event.what} on stage ${event.stage} (${n} in a row, limit ${this.limit}): step skipped on every stage`)
    if (event.action === 'rollback' && !this.progressed) event.action = 'stop'
    if (event.action === 'skip') this.host.emit('divergence', event)
    return event
  }

  /**
   * After the skipped commit of `event` is announced: at the limit, rolls every stage back (and
   * returns once they have reloaded) or emits the event and throws DivergenceError.
   */
  async act (event: DivergenceEvent, opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (event.action === 'skip') return
    if (event.action === 'rollback') {
      await this.rollback(event, opts.signal)
      return
    }
    this.host.emit('divergence', event)
    if (this.action === 'rollback') {
      // the limit again with no step applied since the last rollback (skipped() made it a stop)
      throw new DivergenceError(`training diverged: ${this.describe()} again, with no step applied since rolling back at learning rate x${this.lrFactor}: a lower learning rate does not help`, event)
    }
    const why = this.opts.onDivergence == null ? 'no checkpoints to roll back to (without a state dir the default is to stop; choose rollback to restart from the seeded weights)' : 'on-divergence is stop'
    throw new DivergenceError(`training diverged: ${this.describe()}; stopped: ${why}`, event)
  }

  /** The streak in words: what, where and when. */
  private describe (): string {
    const whats = [...new Set(this.streak.map(s => s.what))].join('/')
    const stages = [...new Set(this.streak.map(s => s.stage))].sort((a, b) => a - b)
    const first = this.streak[0].iteration
    const last = this.streak[this.streak.length - 1].iteration
    const its = first === last ? `iteration ${first}` : `iterations ${first}-${last}`
    return `non-finite ${whats} on stage${stages.length > 1 ? 's' : ''} ${stages.join(', ')} at ${its} (${this.streak.length} in a row, limit ${this.limit})`
  }

  /** Every stage reloads the newest checkpoint from before the streak, at the reduced learning rate. */
  private async rollback (event: DivergenceEvent, signal?: AbortSignal): Promise<void> {
    const h = this.host
    const a = h.assignment
    if (a == null) throw new CoordinatorUsageError('divergence rollback before any assignment')
    const cause = `divergence: ${this.describe()}`
    const first = this.streak[0].iteration
    await h.flushCheckpoints()
    for (const c of h.store?.list() ?? []) {
      if (c.iteration < first - 1) continue
      log.info(`removing checkpoint ${c.iteration}: its weights produced the non-finite steps`)
      await h.store?.remove(c.iteration)
    }
    const to = await this.opts.loadCheckpoint()
    this.lrFactor *= this.factor
    this.streak = []
    this.progressed = false
    event.lrFactor = this.lrFactor
    event.rollbackTo = to ?? -1
    const where = to == null ? 'the seeded initial weights (no checkpoint from before the divergence)' : `checkpoint ${to}`
    log.info(`${cause}: every stage rolls back to ${where}, learning rate ${this.lr.toPrecision(3)} (x${this.lrFactor})`)
    h.emit('divergence', event)
    h.iteration = to == null ? 0 : to + 1
    // Nothing was lost: each stage reloads on its own peer, one recorded checkpoint-rung recovery each.
    await h.reloadAll(checkpointId(to), `${cause}; rolled back to ${to == null ? 'the seeded initial weights' : `checkpoint ${to}`} at learning rate x${this.lrFactor}`, signal)
    await h.persist()
  }
}

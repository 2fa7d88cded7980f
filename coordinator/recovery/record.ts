/**
 * One recovery of one stage, as a record with an explicit state (README "Recovery"):
 *
 *   planned -> transferring -> installed -> resumed
 *      \            \              \
 *       `------------`--------------`--> failed (with a reason; the stage is planned again)
 *
 *   planned       the plan and the assignment carrying it are published
 *   transferring  the target took the epoch and is pulling weights
 *   installed     the target reported recovery-done: the stage is ready
 *   resumed       the first iteration after the recovery committed
 *   failed        the target reported recovery-failed, a donor or the target was lost, the deadline
 *                 passed, or another stage was lost before this one was installed (superseded)
 *
 * A record never moves backwards and never leaves `resumed` or `failed`.
 */
import type { RecoveryRung } from '../../protocols/index.js'
import { RecoveryStateError } from '../errors.js'
import type { StagePlan } from '../ladder.js'
import type { RecoveryEvent } from '../types.js'

export type RecoveryState = 'planned' | 'transferring' | 'installed' | 'resumed' | 'failed'

const NEXT: Record<RecoveryState, readonly RecoveryState[]> = {
  planned: ['transferring', 'installed', 'failed'],
  transferring: ['installed', 'failed'],
  installed: ['resumed', 'failed'],
  resumed: [],
  failed: []
}

/** Why a stage needed recovering, as the detector (or a departure notice) said. */
export interface LossInfo {
  /** The peer that held the stage. */
  peer: string
  cause: string
  /** Last sign of life (ms since epoch). */
  lastSeen: number
  /** When the coordinator decided (ms since epoch). */
  detectedAt: number
}

/** What a failed recovery says about its rung: excluded for the stage (the rung itself failed) or not (superseded). */
export type FailureKind = 'rung' | 'superseded'

export class RecoveryRecord {
  readonly stage: number
  readonly rung: RecoveryRung
  readonly target: string
  readonly donors: string[]
  readonly checkpointId: string
  /** The epoch whose assignment carries the plan. */
  readonly epoch: number
  /** The committed iteration when the plan was made (-1: none yet). */
  readonly committed: number
  readonly loss: LossInfo
  /** ms since epoch by which the stage must be installed, or the record fails. */
  readonly deadlineAt: number
  readonly plannedAt = Date.now()
  state: RecoveryState = 'planned'
  reason?: string
  failure?: FailureKind
  readonly history: Array<{ state: RecoveryState, at: number, reason?: string }> = [{ state: 'planned', at: Date.now() }]
  /** From the target's recovery-done report. */
  bytes = 0
  transferMs = 0
  rebuildMs = 0
  /** Stage ready -> first commit after it. */
  resumeMs = 0

  constructor (init: { plan: StagePlan, epoch: number, committed: number, loss: LossInfo, deadlineMs: number }) {
    this.stage = init.plan.stage
    this.rung = init.plan.rung
    this.target = init.plan.target
    this.donors = init.plan.donors.map(d => d.peerId)
    this.checkpointId = init.plan.checkpointId
    this.epoch = init.epoch
    this.committed = init.committed
    this.loss = init.loss
    this.deadlineAt = this.plannedAt + init.deadlineMs
  }

  get open (): boolean { return this.state === 'planned' || this.state === 'transferring' }

  /**
   * How many committed iterations the rebuilt state is behind: 0 for exact copies and CheckFree
   * (they lose at most the iteration in flight), the iterations since the checkpoint for the
   * checkpoint rung (all of them for the seeded initial weights).
   */
  get iterationsBehind (): number {
    if (this.rung !== 'checkpoint') return 0
    const from = this.checkpointId.startsWith('ckpt-') ? Number(this.checkpointId.slice(5)) : -1
    return Math.max(0, this.committed - from)
  }

  move (to: RecoveryState, reason?: string): void {
    if (this.state === to) return
    if (!NEXT[this.state].includes(to)) {
      throw new RecoveryStateError(`recovery of stage ${this.stage} (epoch ${this.epoch}) cannot go from ${this.state} to ${to}`)
    }
    this.state = to
    if (reason != null) this.reason = reason
    this.history.push(reason != null ? { state: to, at: Date.now(), reason } : { state: to, at: Date.now() })
  }

  fail (reason: string, kind: FailureKind): void {
    if (this.state === 'failed' || this.state === 'resumed') return
    this.failure = kind
    this.move('failed', reason)
  }
}

/** The fields of a recovery event the loss alone gives (at epoch `epoch`, `iteration` the next to run). */
export function lossEvent (stage: number, info: LossInfo, epoch: number, iteration: number): Pick<RecoveryEvent, 'at' | 'epoch' | 'iteration' | 'stage' | 'cause' | 'lostPeer' | 'bytes' | 'detectMs' | 'transferMs' | 'rebuildMs' | 'resumeMs'> {
  return {
    at: Date.now(),
    epoch,
    iteration,
    stage,
    cause: info.cause,
    lostPeer: info.peer,
    bytes: 0,
    detectMs: Math.max(0, info.detectedAt - info.lastSeen),
    transferMs: 0,
    rebuildMs: 0,
    resumeMs: 0
  }
}

/** The persisted, exported form of record `r`, with `iteration` the next to run. */
export function recordEvent (r: RecoveryRecord, iteration: number): RecoveryEvent {
  return {
    ...lossEvent(r.stage, r.loss, r.epoch, iteration),
    rung: r.rung,
    targetPeer: r.target,
    donors: r.donors,
    bytes: r.bytes,
    transferMs: r.transferMs,
    rebuildMs: r.state === 'failed' ? 0 : (r.rebuildMs > 0 ? r.rebuildMs : Date.now() - r.plannedAt),
    resumeMs: r.resumeMs,
    outcome: r.state === 'failed' ? 'failed' : 'recovered',
    ...(r.reason != null ? { reason: r.reason } : {}),
    ...(r.checkpointId !== '' ? { checkpointId: r.checkpointId } : {}),
    iterationsBehind: r.iterationsBehind,
    states: r.history.map(h => h.state)
  }
}

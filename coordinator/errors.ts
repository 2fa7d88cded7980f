import { SpotpipeError } from '../common/index.js'

/** Waiting for peers, acknowledgements or reports took longer than allowed. */
export class CoordinatorTimeoutError extends SpotpipeError {
  constructor (message: string) { super('ERR_COORDINATOR_TIMEOUT', message) }
}

/** An operation that does not fit the coordinator's state (e.g. a fresh assignment over a restored run). */
export class CoordinatorUsageError extends SpotpipeError {
  constructor (message: string) { super('ERR_COORDINATOR_USAGE', message) }
}

/** A stage's peer was lost: the iteration in flight was aborted and must be recovered. */
export class StageLostError extends SpotpipeError {
  readonly stages: number[]
  constructor (stages: number[], message: string) {
    super('ERR_STAGE_LOST', message)
    this.stages = stages
  }
}

/** A recovery record asked to move to a state its state machine does not allow (a bug, not a fault). */
export class RecoveryStateError extends SpotpipeError {
  constructor (message: string) { super('ERR_RECOVERY_STATE', message) }
}

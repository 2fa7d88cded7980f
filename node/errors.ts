import { DataError, SpotpipeError } from '../common/index.js'

/** A tensor frame or control message that does not fit the current iteration (wrong hop, stage, shape). */
export class UnexpectedFrameError extends SpotpipeError {
  constructor (message: string) { super('ERR_UNEXPECTED_FRAME', message) }
}

/** The peer cannot act on an assignment (bad config, no such stage). */
export class AssignmentError extends SpotpipeError {
  constructor (message: string) { super('ERR_ASSIGNMENT', message) }
}

/** A neighbour's activations stream broke or could not be opened. */
export class NeighbourLostError extends SpotpipeError {
  readonly peerId: string
  constructor (peerId: string, message: string, options?: { cause?: unknown }) {
    super('ERR_NEIGHBOUR_LOST', message, options)
    this.peerId = peerId
  }
}

/** The coordinator (or another required peer) cannot be dialled. */
export class UnreachableError extends SpotpipeError {
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_UNREACHABLE', message, options) }
}

/** Assigned a stage mid-run that this peer holds no state for, and no recovery plan says how to build it. */
export class NoStageStateError extends SpotpipeError {
  constructor (message: string) { super('ERR_NO_STATE', message) }
}

/** Activations from a peer that does not feed this peer's stage under the current epoch. */
export class NotNeighbourError extends SpotpipeError {
  readonly peerId: string
  constructor (peerId: string, message: string) {
    super('ERR_NOT_NEIGHBOUR', message)
    this.peerId = peerId
  }
}

/** A sender went over what one neighbour may have in flight: streams, or buffered frame bytes. */
export class ActivationBudgetError extends SpotpipeError {
  readonly peerId: string
  constructor (peerId: string, message: string) {
    super('ERR_ACTIVATION_BUDGET', message)
    this.peerId = peerId
  }
}

/** A frame for a later iteration that cannot be kept: too far ahead, a duplicate, or too many waiting. */
export class EarlyFrameError extends SpotpipeError {
  constructor (message: string) { super('ERR_EARLY_FRAME', message) }
}

/** The coordinator trains on other data (or another tokenizer) than this peer holds: the peer refuses the run. */
export class DataMismatchError extends DataError {
  constructor (message: string) { super(message, 'ERR_DATA_MISMATCH') }
}

/** Assigned a stage that reads tokens, with no --data, while the coordinator trains on its own data. */
export class DataRequiredError extends DataError {
  constructor (message: string) { super(message, 'ERR_DATA_REQUIRED') }
}

/** A replica joining its stage could not catch up (its log of reduced gradients overflowed or has a gap). */
export class ReplicaJoinError extends SpotpipeError {
  constructor (message: string) { super('ERR_REPLICA_JOIN', message) }
}

/**
 * A copy this peer's stage needs to run could not be had: the paper layout's mirror of its owner's
 * embedding or head for the iteration it runs, or the redundant-compute shadow of its successor
 * (waited for up to held-copies.ts HELD_COPY_WAIT_MS, or the assignment changed meanwhile).
 */
export class HeldCopyUnavailableError extends SpotpipeError {
  constructor (message: string) { super('ERR_HELD_COPY_UNAVAILABLE', message) }
}

/**
 * Typed errors of the gradient all-reduce (net/allreduce). Same convention as common/errors.ts:
 * branch on `code`. Every error names the other peer involved (`peer`) and the ring step it happened
 * at (`step`, 0-based over the 2(N-1) steps: reduce-scatter first, then all-gather) when known.
 *
 * Refusals (NotInGroupError, RoundKeyMismatchError, GroupMismatchError, AllReduceProtocolError,
 * AllReduceBusyError) are raised on the receiving side, given to `onRefused`, and sent back to the
 * stream's opener, whose call then rejects with the same class and `remote: true` (`peer` is then
 * the member that refused it).
 */
import { SpotpipeError } from '../../common/index.js'

export const ALLREDUCE_ERROR_CODES = {
  peerLost: 'ERR_PEER_LOST',
  aborted: 'ERR_ALLREDUCE_ABORTED',
  cancelled: 'ERR_ALLREDUCE_CANCELLED',
  stopped: 'ERR_ALLREDUCE_STOPPED',
  timeout: 'ERR_ALLREDUCE_TIMEOUT',
  notInGroup: 'ERR_NOT_IN_GROUP',
  roundKeyMismatch: 'ERR_ROUND_KEY_MISMATCH',
  groupMismatch: 'ERR_GROUP_MISMATCH',
  protocol: 'ERR_ALLREDUCE_PROTOCOL',
  busy: 'ERR_ALLREDUCE_BUSY'
} as const

export interface AllReduceErrorOptions {
  /** The other peer involved (lost, refused, refusing, waited for). */
  peer?: string
  /** Ring step, 0 .. 2(N-1)-1. */
  step?: number
  /** True when a remote member raised it and sent it back (a refusal of our stream). */
  remote?: boolean
  cause?: unknown
}

/** Base class of the errors below. */
export class AllReduceError extends SpotpipeError {
  readonly peer?: string
  readonly step?: number
  readonly remote: boolean
  constructor (code: string, message: string, options: AllReduceErrorOptions = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause })
    if (options.peer !== undefined) this.peer = options.peer
    if (options.step !== undefined) this.step = options.step
    this.remote = options.remote ?? false
  }
}

/**
 * A neighbour in the ring went away during the round: its stream ended, was reset or could not be
 * opened, or its connection dropped before it opened its stream. `peer` is the lost member.
 */
export class PeerLostError extends AllReduceError {
  constructor (peer: string, step: number | undefined, message: string, options: { cause?: unknown } = {}) {
    super(ALLREDUCE_ERROR_CODES.peerLost, message, { peer, step, cause: options.cause })
  }
}

/**
 * Another member's round failed and it told its neighbours so (an abort frame), or this service is
 * stopping. `peer` is the member the failure is about (the lost one, say), `reportedBy` the
 * neighbour that sent the abort, `originCode` the code of the original failure (ERR_PEER_LOST,
 * ERR_ALLREDUCE_TIMEOUT, ERR_ALLREDUCE_CANCELLED, ...).
 */
export class AllReduceAbortedError extends AllReduceError {
  readonly reportedBy: string
  readonly originCode: string
  constructor (reportedBy: string, originCode: string, message: string, options: { peer?: string, step?: number, cause?: unknown } = {}) {
    super(ALLREDUCE_ERROR_CODES.aborted, message, options)
    this.reportedBy = reportedBy
    this.originCode = originCode
  }
}

/** The call's `timeoutMs` passed. `peer` is the neighbour this member was waiting for. */
export class AllReduceTimeoutError extends AllReduceError {
  constructor (message: string, options: { peer?: string, step?: number } = {}) {
    super(ALLREDUCE_ERROR_CODES.timeout, message, options)
  }
}

/** A stream for a round came from a peer that is not in the round's group. */
export class NotInGroupError extends AllReduceError {
  constructor (message: string, options: AllReduceErrorOptions = {}) { super(ALLREDUCE_ERROR_CODES.notInGroup, message, options) }
}

/**
 * A frame carries another round key than the round it is for: the predecessor is in another round
 * (a stale one, or a misconfigured key). `expected` is this member's key, `actual` the frame's.
 */
export class RoundKeyMismatchError extends AllReduceError {
  readonly expected: string
  readonly actual: string
  constructor (expected: string, actual: string, message: string, options: AllReduceErrorOptions = {}) {
    super(ALLREDUCE_ERROR_CODES.roundKeyMismatch, message, options)
    this.expected = expected
    this.actual = actual
  }
}

/**
 * Same round key, different round: the sender is in the group but not this member's predecessor,
 * or it has another group (order or digest), group size or total element count.
 */
export class GroupMismatchError extends AllReduceError {
  constructor (message: string, options: AllReduceErrorOptions = {}) { super(ALLREDUCE_ERROR_CODES.groupMismatch, message, options) }
}

/** What was wrong with a frame. */
export type AllReduceProblem = 'malformed' | 'kind' | 'step' | 'chunk' | 'length'

/**
 * A frame broke the protocol: undecodable (`malformed`), of an unexpected kind, for another step or
 * chunk than the one due, or announcing another length than the chunk's.
 */
export class AllReduceProtocolError extends AllReduceError {
  readonly problem: AllReduceProblem
  constructor (problem: AllReduceProblem, message: string, options: AllReduceErrorOptions = {}) {
    super(ALLREDUCE_ERROR_CODES.protocol, message, options)
    this.problem = problem
  }
}

/**
 * A stream arrived for a round this member has not begun while it already holds as many early
 * streams as it allows (AllReduceInit.maxPendingStreams), or a second stream for a round that has one.
 */
export class AllReduceBusyError extends AllReduceError {
  constructor (message: string, options: AllReduceErrorOptions = {}) { super(ALLREDUCE_ERROR_CODES.busy, message, options) }
}

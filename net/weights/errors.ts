/**
 * Typed errors of the weights protocol (net/weights). Same convention as common/errors.ts: branch
 * on `code`. Errors about one donor carry `donor` (its peer id or multiaddr as text), so a failed
 * fetch says who sent what.
 */
import { SpotpipeError } from '../../common/index.js'
import { crcHex } from './util.js'

/** Wire codes a server answers with (the `code` of a WeightsErrorMessage). */
export const WEIGHTS_ERROR_CODES = {
  badRequest: 'ERR_BAD_REQUEST',
  iterationUnavailable: 'ERR_ITERATION_UNAVAILABLE',
  unknownTensor: 'ERR_UNKNOWN_TENSOR',
  busy: 'ERR_BUSY',
  internal: 'ERR_INTERNAL'
} as const

/** Base class of the errors below; `donor` is set when one donor is to blame. */
export class WeightsError extends SpotpipeError {
  readonly donor?: string
  constructor (code: string, message: string, options: { donor?: string, cause?: unknown } = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause })
    if (options.donor !== undefined) this.donor = options.donor
  }
}

/** A received tensor's CRC-32 differs from the one its manifest announced. */
export class ChecksumMismatchError extends WeightsError {
  readonly tensor: string
  readonly expected: number
  readonly actual: number
  constructor (tensor: string, donor: string, expected: number, actual: number) {
    super('ERR_CHECKSUM_MISMATCH', `tensor ${tensor} from ${donor}: CRC-32 ${crcHex(actual)}, manifest says ${crcHex(expected)}`, { donor })
    this.tensor = tensor
    this.expected = expected
    this.actual = actual
  }
}

/** The donor has no snapshot of the stage of the requested committed iteration or a later one. */
export class IterationUnavailableError extends WeightsError {
  constructor (message: string, options: { donor?: string } = {}) { super('ERR_ITERATION_UNAVAILABLE', message, options) }
}

/** A donor serves another iteration than the one the fetch settled on (all parts must match). */
export class IterationMismatchError extends WeightsError {
  readonly expected: number
  readonly actual: number
  constructor (donor: string, expected: number, actual: number) {
    super('ERR_ITERATION_MISMATCH', `${donor} serves iteration ${actual}, the fetch needs iteration ${expected}`, { donor })
    this.expected = expected
    this.actual = actual
  }
}

/** A requested tensor name is not in the donor's snapshot. */
export class UnknownTensorError extends WeightsError {
  constructor (message: string, options: { donor?: string } = {}) { super('ERR_UNKNOWN_TENSOR', message, options) }
}

/** The donor rejected the request as malformed (wire code ERR_BAD_REQUEST). */
export class BadWeightsRequestError extends WeightsError {
  constructor (message: string, options: { donor?: string, cause?: unknown } = {}) { super('ERR_BAD_REQUEST', message, options) }
}

/** The donor is already serving (and queueing) as many transfers as it allows. */
export class DonorBusyError extends WeightsError {
  constructor (message: string, options: { donor?: string } = {}) { super('ERR_DONOR_BUSY', message, options) }
}

/** The donor answered with an error code this side does not map to a class above. */
export class RemoteWeightsError extends WeightsError {
  readonly remoteCode: string
  constructor (remoteCode: string, message: string, options: { donor?: string } = {}) {
    super('ERR_REMOTE_WEIGHTS', message, options)
    this.remoteCode = remoteCode
  }
}

/** The donor could not be reached, its stream died, or it stalled past the timeout. */
export class DonorLostError extends WeightsError {
  constructor (donor: string, message: string, options: { cause?: unknown } = {}) {
    super('ERR_DONOR_LOST', message, { donor, cause: options.cause })
  }
}

/**
 * The donor broke the protocol: an undecodable or out-of-range frame, an unexpected message, a
 * manifest that disagrees with the one the fetch uses, overlapping or missing chunks.
 */
export class WeightsProtocolError extends WeightsError {
  constructor (donor: string, message: string, options: { cause?: unknown } = {}) {
    super('ERR_WEIGHTS_PROTOCOL', message, { donor, cause: options.cause })
  }
}

/** One donor's failure during a fetch. */
export interface DonorFailure {
  donor: string
  /** Tensors that were still missing from the part the donor was serving. */
  tensors: string[]
  error: Error
}

/**
 * Every donor failed (or was ruled out) before the fetch completed, for different reasons. When
 * all failures share one code the fetch throws that typed error itself instead.
 */
export class WeightsFetchError extends WeightsError {
  readonly failures: DonorFailure[]
  constructor (message: string, failures: DonorFailure[]) {
    super('ERR_WEIGHTS_FETCH', message, { cause: failures[failures.length - 1]?.error })
    this.failures = failures
  }
}

/** The fetch did not finish within its `timeoutMs`. */
export class WeightsTimeoutError extends WeightsError {
  constructor (message: string) { super('ERR_WEIGHTS_TIMEOUT', message) }
}

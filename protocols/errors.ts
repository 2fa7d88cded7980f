/**
 * Typed errors for the wire layer. Every decoder throws one of these (never a bare Error), so a peer
 * can catch `ProtocolError`, drop the frame or the stream, and carry on. `field` names the offending
 * field where there is one (`heartbeat.stage`, `frame.shape[2]`, ...).
 */
import { SpotpipeError } from '../common/index.js'

export interface ProtocolErrorOptions {
  field?: string
  cause?: unknown
}

/** Base class of every wire error. */
export class ProtocolError extends SpotpipeError {
  readonly field?: string
  constructor (code: string, message: string, options: ProtocolErrorOptions = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause })
    if (options.field !== undefined) this.field = options.field
  }
}

/** A whole message or frame is larger than its limit (checked before parsing). */
export class FrameTooLargeError extends ProtocolError {
  constructor (message: string, options?: ProtocolErrorOptions) { super('ERR_FRAME_TOO_LARGE', message, options) }
}

/** The bytes end before the header or the data they announce. */
export class TruncatedFrameError extends ProtocolError {
  constructor (message: string, options?: ProtocolErrorOptions) { super('ERR_TRUNCATED_FRAME', message, options) }
}

/** Not parseable, or a field has the wrong type or an out-of-range value. */
export class MalformedMessageError extends ProtocolError {
  constructor (message: string, options?: ProtocolErrorOptions) { super('ERR_MALFORMED_MESSAGE', message, options) }
}

/** A string length or a list count is over its documented limit. */
export class LimitExceededError extends ProtocolError {
  constructor (message: string, options?: ProtocolErrorOptions) { super('ERR_LIMIT_EXCEEDED', message, options) }
}

/** The envelope's `kind` is not one this version knows. */
export class UnknownKindError extends ProtocolError {
  constructor (message: string, options?: ProtocolErrorOptions) { super('ERR_UNKNOWN_KIND', message, options) }
}

/** A frame's format version is not one this version can read. */
export class UnsupportedVersionError extends ProtocolError {
  constructor (message: string, options?: ProtocolErrorOptions) { super('ERR_UNSUPPORTED_VERSION', message, options) }
}

/** A shape is invalid (rank, zero or huge dims), disagrees with the data, or with what was expected. */
export class BadShapeError extends ProtocolError {
  constructor (message: string, options?: ProtocolErrorOptions) { super('ERR_BAD_SHAPE', message, options) }
}

/** A dtype is unknown, disagrees with the data, or with what was expected. */
export class BadDTypeError extends ProtocolError {
  constructor (message: string, options?: ProtocolErrorOptions) { super('ERR_BAD_DTYPE', message, options) }
}

/** Float tensor data holds NaN or Inf. */
export class NonFiniteTensorError extends ProtocolError {
  constructor (message: string, options?: ProtocolErrorOptions) { super('ERR_NON_FINITE_TENSOR', message, options) }
}

/**
 * Typed errors for every layer. Every error carries a stable `code` so callers (and the wire
 * layer, which reports codes to remote peers) can branch on the kind without parsing messages.
 */
export class SpotpipeError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** A tensor has the wrong shape, or a parameter set does not match the model it is loaded into. */
export class ShapeMismatchError extends SpotpipeError {
  constructor (message: string) { super('ERR_SHAPE_MISMATCH', message) }
}

/** Serialized state is truncated, corrupt or not in the expected layout. */
export class CorruptStateError extends SpotpipeError {
  constructor (message: string) { super('ERR_CORRUPT_STATE', message) }
}

/** A tensor holds NaN or Inf where finite numbers are required (weights, gradients, activations). */
export class NonFiniteError extends SpotpipeError {
  constructor (message: string) { super('ERR_NON_FINITE', message) }
}

/** A configuration value is out of range or inconsistent with another. */
export class ConfigError extends SpotpipeError {
  constructor (message: string) { super('ERR_CONFIG', message) }
}

/** A parameter the caller asked for is not in the set. */
export class MissingParameterError extends SpotpipeError {
  constructor (message: string) { super('ERR_MISSING_PARAMETER', message) }
}

/** A recovery cannot be computed from what was given (no neighbours, mismatched layouts, ...). */
export class RecoveryError extends SpotpipeError {
  constructor (message: string) { super('ERR_RECOVERY', message) }
}

/** The requested compute backend could not be loaded. */
export class BackendError extends SpotpipeError {
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_BACKEND', message, options) }
}

/**
 * Training data could not be read. `code` narrows the kind (the data loader uses ERR_DATA_MISSING,
 * ERR_DATA_EMPTY, ERR_DATA_FORMAT, ERR_DATA_GZIP, ERR_DATA_TOKEN_RANGE, ERR_TOKENIZER); every
 * kind is still a DataError.
 */
export class DataError extends SpotpipeError {
  constructor (message: string, code = 'ERR_DATA', options?: { cause?: unknown }) { super(code, message, options) }
}

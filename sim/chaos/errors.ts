/** Typed errors of the chaos suite. */
import { SpotpipeError } from '../../common/index.js'

/** A chaos option is out of range (duration, fault period, unknown fault kind, ...). */
export class ChaosConfigError extends SpotpipeError {
  constructor (message: string) { super('ERR_CHAOS_CONFIG', message) }
}

/** The fleet could not be brought up (the coordinator or the first peers never became ready). */
export class ChaosFleetError extends SpotpipeError {
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_CHAOS_FLEET', message, options) }
}

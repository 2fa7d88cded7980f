import { SpotpipeError } from '../model/errors.js'

/** Waiting for peers, acknowledgements or reports took longer than allowed. */
export class CoordinatorTimeoutError extends SpotpipeError {
  constructor (message: string) { super('ERR_COORDINATOR_TIMEOUT', message) }
}

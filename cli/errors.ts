import { SpotpipeError } from '../common/index.js'

/** A command line the CLI cannot act on: unknown command or flag, a bad value. */
export class UsageError extends SpotpipeError {
  constructor (message: string) { super('ERR_USAGE', message) }
}

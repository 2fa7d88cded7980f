/**
 * What every layer shares: typed errors, logging, the Node 20 polyfill and process tuning. The
 * lowest folder: it imports no other spotpipe folder.
 */
// First, so anything that reaches common/ has Promise.withResolvers before it runs (entry points
// still import common/polyfill.js as their own first line, ahead of libp2p).
import './polyfill.js'

export {
  SpotpipeError, ShapeMismatchError, CorruptStateError, NonFiniteError, ConfigError, MissingParameterError,
  RecoveryError, BackendError, DataError
} from './errors.js'
export { createLog, type Log } from './log.js'
export { HEAP_GROWING_PERCENT, tuneHeapGrowth } from './heap-tuning.js'
export { exitOnFatalError } from './fatal-exit.js'

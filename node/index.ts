/** The peer: activations protocol, per-stage runtime and recovery (its networking is net/). */
export { Peer, type PeerInit, type PeerDoneEvent, type PeerTotals } from './peer.js'
export { ActivationLinks, activationPolicy, activationMemoryBudget, type ActivationsInit, type ActivationPolicy } from './activations.js'
export { StageRuntime, stageNeedsTokens, type StageRuntimeInit, type DoneInfo, type OutFrame } from './stage-runtime.js'
export {
  AssignmentError, DataMismatchError, DataRequiredError, NeighbourLostError, UnexpectedFrameError, UnreachableError, NotNeighbourError,
  ActivationBudgetError, EarlyFrameError
} from './errors.js'
export {
  SpotWatcher, type SpotNotice, type SpotProvider, type SpotProviderSetting, type SpotWatcherEvents, type SpotWatcherInit
} from './spot-watcher.js'
export { FAULT_NONFINITE_ENV, FAULT_PERTURB_ENV, NonFiniteFaults, PerturbFaults, parseNonFiniteFaults, parsePerturbFault, type NonFiniteFault, type PerturbFault } from './faults.js'
export { instrumentPeer, ALLREDUCE_SECONDS_BUCKETS, type PeerMetrics } from './metrics.js'

/** The peer: activations protocol, per-stage runtime and recovery (its networking is net/). */
export { Peer, type PeerInit } from './peer.js'
export { ActivationLinks, activationPolicy, activationMemoryBudget, type ActivationsInit, type ActivationPolicy } from './activations.js'
export { StageRuntime, type StageRuntimeInit, type DoneInfo, type OutFrame } from './stage-runtime.js'
export {
  AssignmentError, NeighbourLostError, UnexpectedFrameError, UnreachableError, NotNeighbourError,
  ActivationBudgetError, EarlyFrameError
} from './errors.js'

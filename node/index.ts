/** The peer: its libp2p node, gossip, activations protocol and per-stage runtime. */
export { Peer, type PeerInit } from './peer.js'
export { ClusterGossip, type GossipInit } from './gossip.js'
export { ActivationLinks, activationPolicy, activationMemoryBudget, type ActivationsInit, type ActivationPolicy } from './activations.js'
export { StageRuntime, type StageRuntimeInit, type DoneInfo, type OutFrame } from './stage-runtime.js'
export {
  AssignmentError, NeighbourLostError, UnexpectedFrameError, UnreachableError, NotNeighbourError,
  ActivationBudgetError, EarlyFrameError
} from './errors.js'
export * from './transport/index.js'

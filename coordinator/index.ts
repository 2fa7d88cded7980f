export { Coordinator, type CoordinatorInit, type IterationRecord, type PeerView } from './coordinator.js'
export { CoordinatorTimeoutError } from './errors.js'

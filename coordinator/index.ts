/** The coordinator: membership, assignment under epochs, failure detection, recovery, checkpoints. */
export { Coordinator, type CheckpointEvent, type CoordinatorInit, type IterationRecord, type PeerView, type RecoveryEvent } from './coordinator.js'
export { CoordinatorTimeoutError, CoordinatorUsageError, StageLostError } from './errors.js'
export { FailureDetector, type DetectorOptions, type LostPeer } from './detector.js'
export { planRecovery, STRATEGIES, type Strategy, type StagePlan, type LadderInput, type LadderResult } from './ladder.js'
export { instrument } from './instrument.js'
export { createSpotpipeMetrics, serveMetrics, MetricsRegistry, parsePrometheusText, type SpotpipeMetrics } from './metrics.js'
export { CheckpointStore } from './checkpoint-store.js'
export { DurableState } from './durable-state.js'

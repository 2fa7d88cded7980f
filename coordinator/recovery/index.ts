/** Recovery: the state machine that owns lost stages and recoveries in flight, and its records. */
export { RecoveryMachine, type RecoveryHost } from './machine.js'
export { RECOVERY_BASE_DEADLINE_MS, DEFAULT_THROUGHPUT_BYTES_PER_MS, DEADLINE_SLACK } from './deadline.js'
export { RecoveryRecord, type RecoveryState, type LossInfo, type FailureKind } from './record.js'
export { heldCopies, shadowsBehind, stateIterationOf, type CopiesSurvey, type HeldCopyView } from './copies.js'
export { recoveryPlanMessages } from './messages.js'

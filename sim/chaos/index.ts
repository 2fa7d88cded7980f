/**
 * The chaos suite (issue 10, item 10): faults drawn from an enum, injected into a real cluster at
 * named points, and invariants checked over the whole history.
 *
 *   faults.ts         the fault enum, the named points, targets, schedule items
 *   schedule.ts       makeSchedule: a seeded schedule (singles, pairs, faults during a recovery)
 *   runner.ts         runChaos: the fleet up, the schedule carried out, the history collected
 *   invariants.ts     checkInvariants: the rules every run must keep
 *   report.ts         formatReport, benchLines
 *
 *   fleet.ts, observe.ts, points.ts, actions.ts, weights-check.ts: the runner's parts
 */
export * from './errors.js'
export * from './faults.js'
export * from './history.js'
export { makeSchedule, drawFault, type ScheduleOptions } from './schedule.js'
export { runChaos, chaosBounds, type ChaosOptions } from './runner.js'
export { checkInvariants, recoveryRecords, iterationsBehind, stallAllowance, stallStretches, INVARIANTS, type ChaosFigures, type ChaosReport, type InvariantName, type Violation } from './invariants.js'
export { benchLines, formatReport } from './report.js'
export { parseInstallLine, parsePerturbLine, readPersisted, servingOf } from './observe.js'
export { tensorsDigest } from './weights-check.js'

/**
 * The faults the chaos suite injects, where in an iteration or a recovery it injects them, and whom
 * they hit. Everything here is plain data: schedule.ts draws it from a seed, runner.ts carries it out
 * on real processes.
 *
 *   kill                      SIGKILL a peer (a crash, a spot VM gone without notice)
 *   term                      SIGTERM a peer (a spot interruption notice: it hands its stage over)
 *   stop-cont                 SIGSTOP a peer for a while, then SIGCONT (a hung VM, a long GC)
 *   restart-same-identity     SIGKILL a peer, then start it again with the same key file (systemd)
 *   replace                   SIGKILL a peer and start a brand-new one (the spot fleet's replacement)
 *   coordinator-kill-restart  SIGKILL the coordinator, start it again with the same state dir,
 *                             identity and listen address
 *   coordinator-pause         SIGSTOP the coordinator for a while, then SIGCONT
 *   slow-peer                 duty-cycled SIGSTOP/SIGCONT of a peer for a while (a CPU-starved VM)
 *   nonfinite                 restart a spare with SPOTPIPE_FAULT_NONFINITE=<stage>:<iteration> and
 *                             hand it that stage (SIGTERM of the holder): a non-finite step there
 *
 * With replicas (several peers per stage), the peer faults above hit one replica (the target names
 * it), and two more kinds are drawn:
 *   kill-stage                SIGKILL every serving replica of a stage at once: a whole-stage loss
 *   drift                     restart a spare with SPOTPIPE_FAULT_PERTURB=<stage>:<iteration>:<replica>
 *                             and SIGKILL one replica of that stage, so the spare joins it as that
 *                             replica and perturbs its weights once it serves: a replica that drifts
 */

export const FAULT_KINDS = [
  'kill', 'term', 'stop-cont', 'restart-same-identity', 'replace',
  'coordinator-kill-restart', 'coordinator-pause', 'slow-peer', 'nonfinite',
  'kill-stage', 'drift'
] as const
export type FaultKind = typeof FAULT_KINDS[number]

/** Kinds that need replicas: drawn only when the fleet runs more than one peer per stage. */
export const REPLICA_FAULTS: readonly FaultKind[] = ['kill-stage', 'drift']

/** The kinds a schedule draws from by default: all of them with replicas, else those without REPLICA_FAULTS. */
export function defaultKinds (replicas: number): readonly FaultKind[] {
  return replicas > 1 ? FAULT_KINDS : FAULT_KINDS.filter(k => !REPLICA_FAULTS.includes(k))
}

/** Faults on the coordinator process; the others hit a peer. */
export const COORDINATOR_FAULTS: readonly FaultKind[] = ['coordinator-kill-restart', 'coordinator-pause']

/** Peer faults that take a stage away from its holder (the stage must then be recovered). */
export const REMOVING_FAULTS: readonly FaultKind[] = ['kill', 'term', 'restart-same-identity', 'replace', 'kill-stage']

/**
 * Named points of an iteration: begin (just after the coordinator's begin), forward and backward
 * (a fraction of the median iteration time after begin), commit (just after a commit is announced),
 * and checkpoint-pull (just after the commit that starts a sparse checkpoint: the coordinator is
 * pulling the stages' snapshots).
 */
export const ITERATION_POINTS = ['begin', 'forward', 'backward', 'commit', 'checkpoint-pull'] as const
/** Named points of a recovery: transfer (the plan is out, weights are moving), install (a stage was rebuilt and is being installed). */
export const RECOVERY_POINTS = ['transfer', 'install'] as const
export type IterationPoint = typeof ITERATION_POINTS[number]
export type RecoveryPoint = typeof RECOVERY_POINTS[number]
export type FaultPoint = IterationPoint | RecoveryPoint

/** Where in the iteration forward and backward faults land, as a fraction of the median iteration time after begin. */
export const POINT_FRACTION: Record<'forward' | 'backward', number> = { forward: 0.25, backward: 0.7 }

/**
 * Whom a fault hits, resolved when it fires:
 *   stage        the peer holding `stage` in the coordinator's persisted assignment; with replicas,
 *                its serving replica `replica` (index among the stage's serving peers, modulo
 *                their number; 0 when absent)
 *   neighbour    the holder of the stage next to the pair's first fault (`offset` -1 or +1): a donor
 *   spare        the spare the coordinator picks next (the lowest peer id among live spares): during a
 *                recovery, the peer rebuilding the lost stage
 *   coordinator  the coordinator process
 */
export type FaultTarget =
  | { role: 'stage', stage: number, replica?: number }
  | { role: 'neighbour', offset: -1 | 1 }
  | { role: 'spare' }
  | { role: 'coordinator' }

/** How the spot fleet replaces a peer that is gone: the same identity again, or a new machine. */
export interface TopUp {
  mode: 'restart' | 'replace'
  /** After the process exited. */
  delayMs: number
}

export interface Fault {
  kind: FaultKind
  target: FaultTarget
  /** stop-cont, coordinator-pause, slow-peer: how long; coordinator-kill-restart: how long it stays down. */
  durationMs?: number
  /** slow-peer: one stop+run cycle, and the stopped share of it. */
  periodMs?: number
  duty?: number
  /** kill, term: how the fleet tops itself back up (restart-same-identity and replace carry their own). */
  topUp?: TopUp
  /** nonfinite: how many iterations after the spare's restart the non-finite step is due; drift: how many after it could serve. */
  iterationsAhead?: number
}

/**
 * One entry of a schedule: a single fault, two at once, or a second fault during the recovery the
 * first one causes (at `recoveryPoint` of that recovery).
 */
export interface ScheduleItem {
  index: number
  /** Earliest time, ms after the chaos phase starts. */
  atMs: number
  /** The iteration point the (first) fault waits for. */
  point: IterationPoint
  mode: 'single' | 'together' | 'during-recovery'
  faults: Fault[]
  /** during-recovery: the point of the recovery at which the second fault fires. */
  recoveryPoint?: RecoveryPoint
}

/** One line describing a fault, for the per-fault log. */
export function describeFault (f: Fault): string {
  const t = f.target
  const who = t.role === 'stage' ? `stage ${t.stage}${t.replica != null ? ` replica ${t.replica}` : ''}` : t.role === 'neighbour' ? `neighbour ${t.offset > 0 ? '+1' : '-1'}` : t.role
  const extra: string[] = []
  if (f.durationMs != null) extra.push(`${(f.durationMs / 1000).toFixed(1)} s`)
  if (f.periodMs != null && f.duty != null) extra.push(`period ${f.periodMs} ms duty ${f.duty.toFixed(2)}`)
  if (f.topUp != null) extra.push(`then ${f.topUp.mode} after ${(f.topUp.delayMs / 1000).toFixed(1)} s`)
  if (f.iterationsAhead != null) extra.push(`${f.iterationsAhead} iterations ahead`)
  return `${f.kind} ${who}${extra.length > 0 ? ` (${extra.join(', ')})` : ''}`
}

export function describeItem (it: ScheduleItem): string {
  const faults = it.faults.map(describeFault)
  if (it.mode === 'during-recovery') return `${faults[0]} @${it.point}, then ${faults[1]} @${it.recoveryPoint ?? 'transfer'}`
  return `${faults.join(' + ')} @${it.point}`
}

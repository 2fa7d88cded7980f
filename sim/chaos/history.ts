/**
 * What a chaos run leaves behind, and all the invariants read: every process the fleet started and
 * how it ended, every fault applied, the coordinator's events (its `--events` file), every stage
 * install on a peer, the coordinator's persisted assignments over time, the final weights check.
 * All times are Unix ms on this machine's clock (the processes share it).
 */
import type { Fault, ScheduleItem } from './faults.js'

/** One line of the coordinator's events file: `{type, at, ...payload}`. */
export interface CoordinatorEvent {
  type: string
  at: number
  [field: string]: unknown
}

/** A recovery record, from the events file or the persisted state (fields as RecoveryEvent, plus what later versions add). */
export interface RecoveryRecordView {
  at: number
  stage: number
  rung: string
  epoch?: number
  /** The iteration being redone (the coordinator's next iteration). */
  iteration?: number
  lostPeer?: string
  targetPeer?: string
  cause?: string
  checkpointId?: string
  iterationsBehind?: number
  transferMs?: number
}

export interface ProcessRecord {
  name: string
  role: 'coordinator' | 'peer'
  /** The identity file (peers keep it across restart-same-identity). */
  identity: string
  peerId?: string
  addr?: string
  pid?: number
  startedAt: number
  readyAt?: number
  exitAt?: number
  exitCode?: number | null
  exitSignal?: string | null
  /** The terminating signal the harness sent (SIGKILL, SIGTERM), if any: then the exit was caused. */
  harnessSignal?: string
  /** The harness was shutting the fleet down when it exited. */
  atShutdown?: boolean
  /** Environment given on top of the harness's (SPOTPIPE_FAULT_NONFINITE). */
  env?: Record<string, string>
  eventsFile: string
  /** The last stderr lines. */
  stderrTail: string[]
}

/** A stage installed on a peer: a seed initialisation, a kept stage under a new epoch, or a rebuild. */
export interface StageInstall {
  at: number
  peerId: string
  stage: number
  epoch: number
  source: 'seed' | 'kept' | 'rebuilt'
  rung?: string
  /** Read from the peer's events file, or inferred from its log lines (today's peers emit no events). */
  via: 'event' | 'log'
}

/** The coordinator's persisted assignment when it changed. */
export interface AssignmentSnapshot {
  at: number
  epoch: number
  committedIteration: number
  /** Stage -> holder peer id ('' when none). */
  holders: string[]
  /** Stage -> every peer the assignment names for it (serving replicas and joining ones); with replicas. */
  replicas?: string[][]
  /** Peers still joining a stage as new replicas. */
  joining?: string[]
}

/** A fault as carried out. */
export interface AppliedFault {
  item: number
  kind: Fault['kind']
  at: number
  /** When its episode ended (SIGCONT, the coordinator back, the replacement started). */
  endAt?: number
  /** What it hit: 'coordinator', or a process name. */
  target: string
  peerId?: string
  /** The stage the target held when the fault hit, if any. */
  stage?: number
  /** The fault took that stage away from its holder: a recovery record must follow. */
  removedStage?: number
  /** With replicas: the stage's serving replicas (peer ids, the target among them) in the persisted assignment when it hit. */
  stageReplicas?: string[]
  /** With replicas: the target's index among `stageReplicas`. */
  replica?: number
  /** How the point was reached ('begin event', 'after commit', 'lost log', 'timeout', ...). */
  via: string
  notes: string[]
}

/** A stretch of time the harness itself made unproductive: no commit can be expected during it. */
export interface DeadTime {
  from: number
  to: number
  why: string
}

export interface WeightsCheck {
  stage: number
  peerId: string
  ok: boolean
  /** The committed iteration the fetched state belongs to. */
  iteration?: number
  error?: string
  /** With replicas: the peer's index among the stage's serving replicas (one check per replica). */
  replica?: number
  /** SHA-256 over every fetched tensor's name and bytes (weights and both Adam moments), in name order. */
  digest?: string
}

/** A drift planted with SPOTPIPE_FAULT_PERTURB that landed: the peer logged that it perturbed its weights. */
export interface Perturbation {
  at: number
  peerId: string
  stage: number
  replica: number
  /** The committed iteration after which it perturbed. */
  iteration: number
}

export interface ChaosBounds {
  stages: number
  checkpointEvery: number
  /** Longest time the coordinator may take to declare a peer lost. */
  detectionMs: number
  /** Time to move one stage's weights and optimizer state at the throughput floor. */
  transferMs: number
  /** The stated bound added to detection + transfer. */
  boundMs: number
  /** How long a restarted coordinator waits for the assigned peers to come back. */
  resumeGraceMs: number
  strategy: string
  /** Peers per stage the coordinator aims for (--replicas). @default 1 */
  replicas?: number
}

export interface ChaosHistory {
  seed: number
  bounds: ChaosBounds
  schedule: ScheduleItem[]
  /** Fleet up, first commit seen. */
  startedAt: number
  firstCommitAt?: number
  chaosStart: number
  chaosEnd: number
  /** The settling phase after the last fault ended (a commit, or its deadline): stalls are measured up to here. */
  settledAt: number
  /** When the run was stopped (after the weights check). */
  endedAt: number
  events: CoordinatorEvent[]
  /** Recovery records persisted in the coordinator's state file at the end (they survive restarts). */
  persistedRecoveries: RecoveryRecordView[]
  processes: ProcessRecord[]
  faults: AppliedFault[]
  installs: StageInstall[]
  assignments: AssignmentSnapshot[]
  deadTimes: DeadTime[]
  /** The coordinator was started again (by a fault or after an exit): when its new process was ready. */
  coordinatorRestarts: Array<{ at: number, readyAt?: number, why: string }>
  weights: WeightsCheck[]
  /** When the final weights check pulled the stages (the coordinator held by SIGSTOP meanwhile, so the replicas agree on the commit). */
  weightsCheckedAt?: number
  /** Drifts planted with SPOTPIPE_FAULT_PERTURB that landed. */
  perturbations?: Perturbation[]
  /** Schedule items that could not be applied (no target alive, ...), with why. */
  skipped: Array<{ item: number, why: string }>
}

/**
 * The coordinator's Prometheus series, declared with prom-client on a registry of their own
 * (net/metrics.ts: the default process metrics come with it). instrument.ts feeds them from the
 * Coordinator's events; net/metrics.ts serves them.
 *
 * Durations an operator wants the distribution of are histograms, with buckets chosen for what
 * spotpipe actually does (each set's reason is beside it); durations of which only the latest
 * matters (`spotpipe_allreduce_seconds{stage}`) stay gauges.
 *
 * With data-parallel replicas, `spotpipe_stage_replicas{stage}` and `spotpipe_stage_joining{stage}`
 * count a stage's serving and joining peers, `spotpipe_stage_at_risk{stage}` is 1 for a stage one
 * loss away from a whole-stage failure (at most one live serving replica: with one replica per
 * stage, every stage) and `spotpipe_stages_at_risk` counts those stages.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { ITERATION_SECONDS_BUCKETS, createMetricsRegistry } from '../net/index.js'

export type RecoveryPhase = 'detect' | 'transfer' | 'rebuild' | 'resume'
export const RECOVERY_PHASES: readonly RecoveryPhase[] = ['detect', 'transfer', 'rebuild', 'resume']

/**
 * Buckets of `spotpipe_recovery_seconds{phase}`, 10 ms to 5 min. Detection is milliseconds when a
 * killed peer's connection closes and a ping fails, about 3 s when only the heartbeat floor
 * (`--heartbeat-timeout`, 3000 ms) catches it, and at most 30 s (the ceiling): 2 and 3.5 separate
 * the floor from the faster paths, 30 marks the ceiling. Transfer and rebuild are sub-second for
 * the demo's stages and tens of seconds to minutes for a large stage over a slow link (a
 * recovery's deadline starts at 20 s); handovers wait at most 30 s for the departing peer.
 */
export const RECOVERY_SECONDS_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3.5, 5, 10, 20, 30, 60, 120, 300]

/**
 * Buckets of `spotpipe_checkpoint_seconds`, 0.1 s to 10 min: a checkpoint is pulled in the
 * background from every stage and written to disk, sub-second for the demo and minutes for a
 * large model (nothing waits for it, so the long tail matters less than telling seconds from minutes).
 */
export const CHECKPOINT_SECONDS_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]

export interface SpotpipeMetrics {
  registry: Registry
  /** spotpipe_iteration: the last committed iteration. */
  iteration: Gauge
  /** spotpipe_iteration_seconds: wall-clock time of each committed iteration, begin to the last done report (histogram). */
  iterationSeconds: Histogram
  /** spotpipe_epoch: the current assignment epoch. */
  epoch: Gauge
  /** spotpipe_loss: training loss of the last committed iteration (nats). */
  loss: Gauge
  /** spotpipe_tokens_per_second: throughput of the last committed iteration. */
  tokensPerSecond: Gauge
  /** spotpipe_peers{role}: live peers by role (stage, spare). */
  peers: Gauge<'role'>
  /** spotpipe_recoveries_total{rung}: recoveries by the ladder rung used. */
  recoveries: Counter<'rung'>
  /** spotpipe_recovery_failures_total{rung}: recovery attempts that failed, by the rung tried (the stage is planned again). */
  recoveryFailures: Counter<'rung'>
  /** spotpipe_recovery_seconds{phase}: time spent per recovery phase (histogram). */
  recoverySeconds: Histogram<'phase'>
  /** spotpipe_bytes_moved_total: weight and optimizer bytes moved by recoveries and joins. */
  bytesMoved: Counter
  /** spotpipe_checkpoints_total{outcome}: sparse checkpoints written, partial (some stages' files) or abandoned. */
  checkpoints: Counter<'outcome'>
  /** spotpipe_checkpoint_seconds: pull + write time of each checkpoint written (whole or partial; histogram). */
  checkpointSeconds: Histogram
  /** spotpipe_checkpoint_bytes_total: bytes of checkpoint files written. */
  checkpointBytes: Counter
  /** spotpipe_checkpoint_iteration: the iteration of the newest complete checkpoint written. */
  checkpointIteration: Gauge
  /** spotpipe_stage_replicas{stage}: serving replicas per stage under the current assignment. */
  stageReplicas: Gauge<'stage'>
  /** spotpipe_stage_joining{stage}: peers joining each stage as new replicas, still catching up. */
  stageJoining: Gauge<'stage'>
  /** spotpipe_stage_at_risk{stage}: 1 when the stage has at most one live serving replica, else 0. */
  stageAtRisk: Gauge<'stage'>
  /** spotpipe_stages_at_risk: stages with at most one live serving replica (one loss from a whole-stage failure). */
  stagesAtRisk: Gauge
  /** spotpipe_allreduce_seconds{stage}: the last committed iteration's gradient all-reduce time per stage (its slowest replica; 0 with one replica). */
  allReduceSeconds: Gauge<'stage'>
}

/** Declares the coordinator's metrics in `registry` (by default a fresh one with the process metrics). */
export function createSpotpipeMetrics (registry: Registry = createMetricsRegistry()): SpotpipeMetrics {
  const registers = [registry]
  const m: SpotpipeMetrics = {
    registry,
    iteration: new Gauge({ name: 'spotpipe_iteration', help: 'Last committed training iteration.', registers }),
    iterationSeconds: new Histogram({ name: 'spotpipe_iteration_seconds', help: 'Wall-clock seconds of each committed iteration, from its begin to the last stage\'s done report.', buckets: ITERATION_SECONDS_BUCKETS, registers }),
    epoch: new Gauge({ name: 'spotpipe_epoch', help: 'Current assignment epoch (bumped by every reassignment).', registers }),
    loss: new Gauge({ name: 'spotpipe_loss', help: 'Training loss of the last committed iteration, in nats per token.', registers }),
    tokensPerSecond: new Gauge({ name: 'spotpipe_tokens_per_second', help: 'Tokens processed per second in the last committed iteration.', registers }),
    peers: new Gauge({ name: 'spotpipe_peers', help: 'Live peers by role.', labelNames: ['role'], registers }),
    recoveries: new Counter({ name: 'spotpipe_recoveries_total', help: 'Stage recoveries by recovery-ladder rung.', labelNames: ['rung'], registers }),
    recoveryFailures: new Counter({ name: 'spotpipe_recovery_failures_total', help: 'Recovery attempts that failed, by the rung tried (the stage is then planned again without it).', labelNames: ['rung'], registers }),
    recoverySeconds: new Histogram({ name: 'spotpipe_recovery_seconds', help: 'Seconds spent per recovery phase (detect, transfer, rebuild, resume).', labelNames: ['phase'], buckets: RECOVERY_SECONDS_BUCKETS, registers }),
    bytesMoved: new Counter({ name: 'spotpipe_bytes_moved_total', help: 'Bytes of weights and optimizer state moved by recoveries and joins.', registers }),
    checkpoints: new Counter({ name: 'spotpipe_checkpoints_total', help: 'Sparse checkpoints by outcome (written, partial: some stages missing, abandoned).', labelNames: ['outcome'], registers }),
    checkpointSeconds: new Histogram({ name: 'spotpipe_checkpoint_seconds', help: 'Seconds to pull and write each written checkpoint.', buckets: CHECKPOINT_SECONDS_BUCKETS, registers }),
    checkpointBytes: new Counter({ name: 'spotpipe_checkpoint_bytes_total', help: 'Bytes of checkpoint files written.', registers }),
    checkpointIteration: new Gauge({ name: 'spotpipe_checkpoint_iteration', help: 'Iteration of the newest complete checkpoint written (every stage).', registers }),
    stageReplicas: new Gauge({ name: 'spotpipe_stage_replicas', help: 'Serving data-parallel replicas per stage under the current assignment (joining peers excluded).', labelNames: ['stage'], registers }),
    stageJoining: new Gauge({ name: 'spotpipe_stage_joining', help: 'Peers joining each stage as new replicas and still catching up (they serve no microbatch yet).', labelNames: ['stage'], registers }),
    stageAtRisk: new Gauge({ name: 'spotpipe_stage_at_risk', help: '1 for a stage with at most one live serving replica (one more loss is a whole-stage failure), else 0.', labelNames: ['stage'], registers }),
    stagesAtRisk: new Gauge({ name: 'spotpipe_stages_at_risk', help: 'Stages with at most one live serving replica: one more loss is a whole-stage failure (every stage when each has one replica).', registers }),
    allReduceSeconds: new Gauge({ name: 'spotpipe_allreduce_seconds', help: "Seconds of the last committed iteration's gradient all-reduce per stage (its slowest replica; 0 for a stage with one replica).", labelNames: ['stage'], registers })
  }
  // every phase's series exists from the start, so rate() over it has a zero to start from
  for (const phase of RECOVERY_PHASES) m.recoverySeconds.zero({ phase })
  return m
}

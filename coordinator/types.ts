/**
 * The coordinator's options (CoordinatorInit) and the records it keeps: one per committed iteration,
 * one per recovery, one per peer it hears from. coordinator.ts re-exports them.
 */
import type { PrivateKey } from '@libp2p/interface'
import type { ModelConfig, PlusLayout, TrainConfig } from '../model/index.js'
import type { DataIdentity, Heartbeat } from '../protocols/index.js'
import type { DetectorOptions } from './detector.js'
import type { Strategy, StagePlan } from './ladder.js'

export interface CoordinatorInit {
  clusterId: string
  /** Names this run in frames, so a peer never mixes two runs. @default 'run' */
  runId?: string
  model?: Partial<ModelConfig>
  train?: Partial<TrainConfig>
  /**
   * Data-parallel replicas per stage, the target: each iteration's microbatches are spread over a
   * stage's replicas (lane r runs microbatches r, r+R, ...), which add their gradient sums before the
   * step. A lost replica's microbatches move to its stage's survivors; a peer that joins becomes a
   * replica of the stage with the fewest, up to this. At most the microbatches per iteration.
   * @default 1
   */
  replicas?: number
  /**
   * Replicas per stage the initial assignment needs: it waits for stages x minReplicas peers and
   * starts with as many whole lanes as there are peers (up to `replicas`); later peers join as
   * replicas while training goes on. @default replicas
   */
  minReplicas?: number
  /** Train with CheckFree+ swapped microbatches. @default false */
  checkfreePlus?: boolean
  /**
   * Where CheckFree+'s swapped microbatches embed and run the head (model/schedule.ts): 'spotpipe'
   * (stage 0's embedding and S-1's head, two extra hops each way) or 'paper' (stage 1 and S-2 run
   * copies of them: no extra hop, an all-reduce of the two parts and a pull of their weights every
   * iteration). 'paper' needs one replica per stage. @default 'spotpipe'
   */
  plusLayout?: PlusLayout
  /**
   * The data the peers must train on, published in every assignment; a peer holding other data
   * refuses the run. @default DEFAULT_DATA_IDENTITY (the Brown corpus, byte tokens)
   */
  data?: DataIdentity
  privateKey?: PrivateKey
  swarmKey?: Uint8Array
  /** @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** @default 'tcp' */
  transport?: 'tcp' | 'memory'
  /** Re-send begin when no stage has reported for this long (a lost gossip message). @default 5000 */
  resendMs?: number
  /** Recovery strategy. @default 'checkfree' */
  strategy?: Strategy
  /**
   * Redundant strategy: how long a commit waits for every shadow to hold it before the next
   * iteration begins (a shadow that misses it is named, and not waited for again until it catches
   * up). @default 5000
   */
  shadowWaitMs?: number
  /**
   * The failure detector's floor: no peer is declared lost for a silence shorter than this (ms);
   * beyond it, its own heartbeat rhythm decides (detector.ts). @default 3000
   */
  heartbeatTimeoutMs?: number
  /** The rest of the failure detector's settings (ceiling, phi threshold, pause handling); see DetectorOptions. */
  detector?: Omit<DetectorOptions, 'heartbeatTimeoutMs'>
  /** CheckFree+ mirrors are refreshed every N iterations. @default 10 */
  mirrorEvery?: number
  /**
   * Directory for the durable coordinator state (`coordinator.json`) and the checkpoint store
   * (`checkpoints/`). Without it nothing is persisted and no checkpoints are taken.
   * @default undefined
   */
  stateDir?: string
  /** Take a sparse checkpoint every K iterations (0: never). @default 50 when stateDir is set */
  checkpointEvery?: number
  /** Complete checkpoints kept. @default 3 */
  keepCheckpoints?: number
  /**
   * What the run does after `divergenceLimit` iterations in a row met a non-finite loss or gradient
   * (each is committed as skipped): 'rollback' every stage to the newest checkpoint from before the
   * streak (the seeded initial weights if none) at a reduced learning rate, or 'stop' with a
   * DivergenceError (divergence.ts).
   * @default 'rollback' when checkpoints are taken (stateDir and checkpointEvery > 0), else 'stop'
   */
  onDivergence?: 'rollback' | 'stop'
  /** Non-finite iterations in a row that trigger onDivergence. @default 3 */
  divergenceLimit?: number
  /** Learning-rate multiplier applied at each divergence rollback (compounding), in (0, 1]. @default 0.5 */
  divergenceLrFactor?: number
}

/** One recovery, as logged, persisted and exported as metrics. */
export interface RecoveryEvent {
  at: number
  epoch: number
  iteration: number
  stage: number
  cause: string
  rung: StagePlan['rung']
  lostPeer: string
  targetPeer: string
  donors: string[]
  bytes: number
  /** Last sign of life -> decision. */
  detectMs: number
  transferMs: number
  rebuildMs: number
  /** Stage ready -> first committed iteration after the recovery. */
  resumeMs: number
  /** Whether the stage was recovered, or this attempt failed and the stage was planned again. */
  outcome: 'recovered' | 'failed'
  /** Why the attempt failed. */
  reason?: string
  /** The checkpoint the checkpoint rung read ('ckpt-<iteration>' or 'init'). */
  checkpointId?: string
  /** Committed iterations the rebuilt state is behind: 0 except for the checkpoint rung. */
  iterationsBehind: number
  /** The states the recovery went through (planned, transferring, installed, resumed or failed). */
  states?: string[]
}

/**
 * One sparse checkpoint the coordinator took (event `checkpoint`): `written` when every stage it
 * pulled was written, `partial` when some were (the others' holders failed mid-pull), `abandoned`
 * when none was.
 */
export interface CheckpointEvent {
  /** The committed iteration it snapshots. */
  iteration: number
  outcome: 'written' | 'partial' | 'abandoned'
  /** The stages it pulled: all of them for a scheduled checkpoint, a retry only those whose newest file is older than the schedule. */
  stages: number[]
  /** The stages whose file was written, ascending. */
  written: number[]
  /** The checkpoint on disk holds every stage (a whole model; a retry of some stages never does). */
  complete: boolean
  /** Wall-clock ms from the first pull to the manifest on disk (or to the abandonment). */
  ms: number
  /** Bytes of stage files written (0 when abandoned). */
  bytes: number
  /** Why a stage was not written (the first failure), when one was not. */
  reason?: string
}

export interface IterationRecord {
  iteration: number
  epoch: number
  loss: number
  gradNorms: number[]
  /** Wall-clock ms from begin to the last done report. */
  ms: number
  /** Tokens processed per second in this iteration. */
  tokensPerSec: number
  /** Per stage, the slowest of its replicas' gradient all-reduce in ms (0 for a stage with one replica). */
  allReduceMs: number[]
  /** Per stage, the slowest of its replicas' own compute in ms: its forwards, backwards and step (not the waits between them). */
  computeMs: number[]
  /** Set when the iteration was committed without a step: a stage met a non-finite value (loss is NaN). */
  skipped?: { stage: number, what: string }
}

/** An iteration committed as skipped because a stage met a non-finite value (event `divergence`). */
export interface DivergenceEvent {
  at: number
  iteration: number
  /** The stage that reported it (the loss's stage when several did). */
  stage: number
  /** What was non-finite: 'loss', 'gradient' or 'activation'. */
  what: string
  /** Non-finite iterations in a row, this one included. */
  consecutive: number
  /** skip: only this step was dropped; rollback or stop: the divergence limit was reached. */
  action: 'skip' | 'rollback' | 'stop'
  /** Learning-rate multiplier in force after this event (divergence rollbacks compound). */
  lrFactor: number
  /** With action rollback: the checkpoint every stage went back to (-1: the seeded initial weights). */
  rollbackTo?: number
}

export interface PeerView {
  heartbeat: Heartbeat
  seenAt: number
}

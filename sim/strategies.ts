/**
 * Recovery strategies: what each one trains with and keeps around, and so what it costs. Which rung
 * of the recovery ladder recovers a lost stage is not decided here: the coordinator's planRecovery
 * (coordinator/ladder.ts) decides it, through sim/ladder-adapter.ts, for model mode and the
 * projection alike.
 *
 *   checkfree         intermediate stage: weighted average of its two neighbours (fresh Adam, lr x lrScale);
 *                     first/last stage: checkpoint
 *   checkfree-plus    trains with the CheckFree+ swaps; first/last stage: copy of the neighbour plus the
 *                     mirrored embedding/head (mirrors refreshed every mirrorEvery iterations, or kept
 *                     current every iteration under plusLayout 'paper'); intermediate: as checkfree
 *   checkpoint        every K iterations every stage's state goes to the store; a lost stage reloads
 *                     its newest complete checkpoint, the other stages keep going
 *   checkpoint-whole  as checkpoint, but every stage rolls back: the iterations since are redone
 *   redundant         the cluster's strategy of that name (shadow COPY): after every commit each stage
 *                     pulls its successor's parameters and Adam moments (stage S-1 shadows stage 0); a
 *                     lost stage is the shadow, exactly (rung replica). Costs traffic (the successor's
 *                     state per peer per iteration) and memory, not compute
 *   redundant-compute the cluster's strategy of that name (the paper's Bamboo-style baseline, redundant
 *                     COMPUTATION): each stage also computes its successor's forward and backward and
 *                     steps the same copy, so the shadow is always current (rung replica); costs
 *                     compute every iteration and one more gradient hop per microbatch
 *   none              no failures: the reference curve
 *
 * A spot notice (the peer is still reachable) is a graceful handover, and a rung whose donor is gone
 * (two adjacent stages lost at once, a shadow holder lost with its stage, a missing mirror) falls to
 * the checkpoint rung, so every strategy but `none` keeps sparse checkpoints.
 */
import { STRATEGIES as COORDINATOR_STRATEGIES, type Strategy } from '../coordinator/ladder.js'
import { DEFAULT_LR_SCALE, type Weighting } from '../model/index.js'
import type { RecoveryRung } from '../protocols/index.js'
import { SimConfigError } from './errors.js'
import { PLUS_LAYOUTS, type IterationShape, type PlusLayout } from './cost-model.js'

/** The coordinator's strategies (coordinator/ladder.ts), which a real cluster runs. The same name
 *  means the same thing in the cluster and here. */
export type StrategyName = Strategy
export const STRATEGIES: readonly StrategyName[] = COORDINATOR_STRATEGIES

/** The rungs a simulated stage is recovered by: the coordinator's rungs but `wait` (the simulator
 *  always has a spare, as the paper assumes). */
export type SimRung = Extract<RecoveryRung, 'handover' | 'replica' | 'checkfree' | 'checkfree-plus' | 'checkpoint'>
export const SIM_RUNGS: readonly SimRung[] = ['handover', 'replica', 'checkfree', 'checkfree-plus', 'checkpoint']

/** What a run met and how it recovered: counted alike by model mode and by the projection. */
export interface FailureTally {
  attempts: number
  abortedAttempts: number
  crashes: number
  notices: number
  recoveries: Record<SimRung, number>
  wholeRollbacks: number
  /** Sum over stage-checkpoint recoveries of the iterations that stage lost. */
  stageIterationsLost: number
  /** Iterations redone after whole rollbacks. */
  iterationsRedone: number
}

export interface StrategyOptions {
  /** Checkpoint every K iterations (all strategies but `none`: the ladder's last rung). @default 50
   *  (the paper's reference simulation uses 10, 50 or 100) */
  checkpointEvery: number
  /** Refresh the CheckFree+ embedding/head mirrors every N iterations. @default 10 */
  mirrorEvery: number
  /** Learning-rate multiplier of a stage rebuilt by CheckFree or CheckFree+ (the ladder's lrScale).
   *  @default 1.1 (DEFAULT_LR_SCALE) */
  lrScale: number
  /** Neighbour weighting of the CheckFree average. @default 'norm' */
  weighting: Weighting
  /** Where CheckFree+'s swaps keep the embedding and head (cost-model.ts PlusLayout). @default
   *  'spotpipe' (the cluster's: two extra hops per swapped microbatch) */
  plusLayout: PlusLayout
}

export const DEFAULT_STRATEGY_OPTIONS: StrategyOptions = {
  checkpointEvery: 50,
  mirrorEvery: 10,
  lrScale: DEFAULT_LR_SCALE,
  weighting: 'norm',
  plusLayout: 'spotpipe'
}

export function resolveStrategyOptions (partial: Partial<StrategyOptions> = {}): StrategyOptions {
  const o = { ...DEFAULT_STRATEGY_OPTIONS, ...partial }
  for (const k of ['checkpointEvery', 'mirrorEvery'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new SimConfigError(`${k} must be a positive integer, got ${String(o[k])}`)
  }
  if (!(Number.isFinite(o.lrScale) && o.lrScale > 0)) throw new SimConfigError(`lrScale must be a positive number, got ${String(o.lrScale)}`)
  if (!['norm', 'squared', 'uniform'].includes(o.weighting)) throw new SimConfigError(`weighting must be norm, squared or uniform, got ${String(o.weighting)}`)
  if (!PLUS_LAYOUTS.includes(o.plusLayout)) throw new SimConfigError(`plusLayout must be ${PLUS_LAYOUTS.join(' or ')}, got ${String(o.plusLayout)}`)
  return o
}

export interface StrategyTraits {
  name: StrategyName
  /** Trains with the CheckFree+ swapped microbatches. */
  swaps: boolean
  /** Pays redundant computation every iteration (redundant-compute). */
  redundantCompute: boolean
  /** Pulls the successor's state after every commit as a shadow copy (redundant). */
  shadowCopy: boolean
  /** Keeps a shadow of each stage on its predecessor, recoverable by the replica rung. */
  shadows: boolean
  /** Keeps sparse checkpoints (the ladder's fallback). */
  checkpoints: boolean
  /** Keeps CheckFree+ mirrors of the embedding and head. */
  mirrors: boolean
  /** Sees the trace's failures at all. */
  failures: boolean
}

export function parseStrategy (name: string): StrategyName {
  if ((STRATEGIES as readonly string[]).includes(name)) return name as StrategyName
  throw new SimConfigError(`unknown strategy "${name}" (known: ${STRATEGIES.join(', ')})`)
}

export function strategyTraits (name: StrategyName): StrategyTraits {
  const plus = name === 'checkfree-plus'
  return {
    name,
    swaps: plus,
    redundantCompute: name === 'redundant-compute',
    shadowCopy: name === 'redundant',
    shadows: name === 'redundant' || name === 'redundant-compute',
    checkpoints: name !== 'none',
    mirrors: plus,
    failures: name !== 'none'
  }
}

export function iterationShape (name: StrategyName, options: Pick<StrategyOptions, 'plusLayout'> = DEFAULT_STRATEGY_OPTIONS): IterationShape {
  const t = strategyTraits(name)
  return { swaps: t.swaps, redundantCompute: t.redundantCompute, plusLayout: options.plusLayout }
}

/**
 * Recovery strategies: what each one trains with, what it keeps around, and which rung of the
 * recovery ladder (DESIGN "Recovery ladder") recovers each lost stage. Pure decisions; model mode and
 * the projection both apply them.
 *
 *   checkfree        intermediate stage: weighted average of its two neighbours (fresh Adam, lr x lrScale);
 *                    first/last stage: checkpoint
 *   checkfree-plus   trains with the CheckFree+ swaps; first/last stage: copy of the neighbour plus the
 *                    mirrored embedding/head (mirrors refreshed every mirrorEvery iterations);
 *                    intermediate: as checkfree
 *   checkpoint       every K iterations every stage's state goes to the store; a lost stage reloads
 *                    its newest complete checkpoint, the other stages keep going
 *   checkpoint-whole as checkpoint, but every stage rolls back: the iterations since are redone
 *   redundant        Bamboo-style: stage i-1 shadows stage i (stage S-1 shadows stage 0); a lost stage
 *                    is an exact copy of its shadow; every iteration pays the redundant compute
 *   none             no failures: the reference curve
 *
 * The ladder is shared: a spot notice (the peer is still reachable) is always a graceful handover
 * (exact copy), and whenever a strategy's rung needs a donor that crashed in the same failure batch
 * (two adjacent stages lost at once, a shadow holder lost with its stage, a missing mirror) the
 * stage falls back to the checkpoint rung. So every strategy but `none` keeps sparse checkpoints.
 */
import { STRATEGIES as COORDINATOR_STRATEGIES, type Strategy } from '../coordinator/ladder.js'
import { DEFAULT_LR_SCALE, type Weighting } from '../model/recovery.js'
import { SimConfigError } from './errors.js'
import type { IterationShape } from './cost-model.js'

/** The coordinator's strategies (coordinator/ladder.ts): the simulator and a real cluster take the same names. */
export type StrategyName = Strategy
export const STRATEGIES: readonly StrategyName[] = COORDINATOR_STRATEGIES

/** The rung that recovered a stage (protocols' RecoveryRung plus the redundant shadow copy). */
export type SimRung = 'handover' | 'redundant' | 'checkfree' | 'checkfree-plus' | 'checkpoint'
export const SIM_RUNGS: readonly SimRung[] = ['handover', 'redundant', 'checkfree', 'checkfree-plus', 'checkpoint']

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
  /** Learning-rate multiplier of a CheckFree-rebuilt stage. @default 1.1 (DEFAULT_LR_SCALE) */
  lrScale: number
  /** Learning-rate multiplier of a CheckFree+ neighbour copy (also a fresh Adam). @default lrScale */
  plusLrScale?: number
  /** Neighbour weighting of the CheckFree average. @default 'norm' */
  weighting: Weighting
}

export const DEFAULT_STRATEGY_OPTIONS: StrategyOptions = {
  checkpointEvery: 50,
  mirrorEvery: 10,
  lrScale: DEFAULT_LR_SCALE,
  weighting: 'norm'
}

export function resolveStrategyOptions (partial: Partial<StrategyOptions> = {}): StrategyOptions {
  const o = { ...DEFAULT_STRATEGY_OPTIONS, ...partial }
  for (const k of ['checkpointEvery', 'mirrorEvery'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new SimConfigError(`${k} must be a positive integer, got ${String(o[k])}`)
  }
  for (const k of ['lrScale', 'plusLrScale'] as const) {
    const v = o[k]
    if (v != null && !(Number.isFinite(v) && v > 0)) throw new SimConfigError(`${k} must be a positive number, got ${String(v)}`)
  }
  if (!['norm', 'squared', 'uniform'].includes(o.weighting)) throw new SimConfigError(`weighting must be norm, squared or uniform, got ${String(o.weighting)}`)
  return o
}

export interface StrategyTraits {
  name: StrategyName
  /** Trains with the CheckFree+ swapped microbatches. */
  swaps: boolean
  /** Pays redundant computation every iteration. */
  redundant: boolean
  /** Keeps sparse checkpoints (the ladder's fallback). */
  checkpoints: boolean
  /** Keeps CheckFree+ mirrors of the embedding and head. */
  mirrors: boolean
  /** A checkpoint recovery rolls every stage back. */
  wholeRollback: boolean
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
    redundant: name === 'redundant',
    checkpoints: name !== 'none',
    mirrors: plus,
    wholeRollback: name === 'checkpoint-whole',
    failures: name !== 'none'
  }
}

export function iterationShape (name: StrategyName): IterationShape {
  const t = strategyTraits(name)
  return { swaps: t.swaps, redundant: t.redundant }
}

export interface LostStage {
  stage: number
  kind: 'crash' | 'notice'
}

export interface PlannedRecovery {
  stage: number
  kind: 'crash' | 'notice'
  rung: SimRung
  /** 'whole': every stage rolls back to the checkpoint (checkpoint-whole). */
  scope: 'stage' | 'whole'
  /** Stages whose state the recovery reads (the stage itself for handover; none for checkpoint). */
  donors: number[]
}

export interface PlanContext {
  stages: number
  /** True when stage `holder` has a usable CheckFree+ mirror (of the embedding or the head). */
  mirrorReady?: (holder: number) => boolean
}

/**
 * The rung for every stage lost in one failure batch (failures handled together: the same iteration).
 * Donors are read before any recovery is applied, so the order inside the batch does not matter.
 *
 * This is not the coordinator's planRecovery (coordinator/ladder.ts), on purpose: the rungs are the
 * same, but the simulator's model of a failure batch differs from what the coordinator sees.
 *  - (Both agree that a stage whose peer gave notice is still a donor for its neighbours: a notice
 *    on stage 1 and a crash on stage 2 give a handover and a CheckFree.)
 *  - CheckFree+ needs the neighbour's mirror to be fresh (`mirrorReady`); the coordinator's ladder
 *    has no such input.
 *  - checkpoint-whole plans the lost stages (handover for a notice, scope 'whole' for a crash); the
 *    coordinator plans every stage, survivors and the departing one included, as a checkpoint reload.
 *  - There are always spares (joins are traced separately), so there is no 'wait' rung, and the
 *    redundant shadow copy is the rung 'redundant' (the coordinator's 'replica').
 * sim/projection-walker.ts's classifyBatch is this function without allocations (a test checks they agree).
 */
export function planRecovery (name: StrategyName, lost: readonly LostStage[], ctx: PlanContext): PlannedRecovery[] {
  const S = ctx.stages
  const t = strategyTraits(name)
  if (!t.failures && lost.length > 0) throw new SimConfigError('strategy "none" has no failures to recover from')
  const crashed = new Set(lost.filter(l => l.kind === 'crash').map(l => l.stage))
  const alive = (s: number): boolean => s >= 0 && s < S && !crashed.has(s)
  const seen = new Set<number>()
  const plans: PlannedRecovery[] = []
  for (const l of lost) {
    if (seen.has(l.stage)) continue // one recovery per stage per batch
    seen.add(l.stage)
    if (l.stage < 0 || l.stage >= S) throw new SimConfigError(`lost stage ${l.stage} is outside 0..${S - 1}`)
    const plan = (rung: SimRung, donors: number[], scope: 'stage' | 'whole' = 'stage'): PlannedRecovery => ({ stage: l.stage, kind: l.kind, rung, scope, donors })
    if (l.kind === 'notice') { plans.push(plan('handover', [l.stage])); continue }
    const s = l.stage
    const fallback = plan('checkpoint', [], t.wholeRollback ? 'whole' : 'stage')
    if (name === 'redundant') {
      const holder = (s - 1 + S) % S
      plans.push(S > 1 && alive(holder) ? plan('redundant', [holder]) : fallback)
    } else if (name === 'checkfree' || name === 'checkfree-plus') {
      const intermediate = s > 0 && s < S - 1
      if (intermediate) {
        plans.push(alive(s - 1) && alive(s + 1) ? plan('checkfree', [s - 1, s + 1]) : fallback)
      } else if (name === 'checkfree-plus' && S >= 2) {
        const neighbour = s === 0 ? 1 : S - 2
        const ready = ctx.mirrorReady?.(neighbour) ?? true
        plans.push(alive(neighbour) && ready ? plan('checkfree-plus', [neighbour]) : fallback)
      } else plans.push(fallback)
    } else plans.push(fallback)
  }
  return plans
}

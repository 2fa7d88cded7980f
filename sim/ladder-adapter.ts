/**
 * The simulator's way into the coordinator's recovery ladder (planRecovery, coordinator/ladder.ts).
 * A failure batch of the simulation (the stages lost at one point, each by a crash or a spot notice)
 * is described as the coordinator would see it, the ladder plans it, and its plans are read back as
 * stages. Model mode and the projection plan every recovery through here, so the simulator keeps the
 * cluster's rules by construction, and a change to the ladder changes both.
 *
 * The simulated cluster as a LadderInput:
 *  - each stage's peer is named after it (`stage-<s>`); every stage outside the batch is held;
 *  - a crashed stage is lost; a stage whose peer gave notice is lost and departing (its peer still
 *    serves its state, and still donates to its neighbours);
 *  - spares `spare-<k>`, one per lost stage unless `spares` says otherwise (the simulator assumes a
 *    spare is always there, as the paper does; a batch that would wait is reported in `waiting`);
 *  - replicas (strategies with shadows): the shadow holder (model/recovery.ts shadowHolder) when its
 *    peer is a live holder and its shadow is current (`shadowReady`), as the coordinator offers only
 *    the shadows of live holders;
 *  - the stages' last gradient norms, and the newest loadable checkpoint (0: the initial weights).
 *
 * What the ladder's input cannot say yet is whether a CheckFree+ mirror exists (its holder's peer was
 * replaced since the last refresh). When the ladder picks checkfree-plus from a neighbour whose mirror
 * is missing, that stage is planned again with the neighbour hidden, so the ladder itself picks the
 * rung that follows. (Once LadderInput carries held-copy freshness, pass it instead.)
 */
import { planRecovery, type LadderInput, type StagePlan } from '../coordinator/ladder.js'
import { shadowHolder } from '../model/index.js'
import { SimConfigError } from './errors.js'
import { SIM_RUNGS, strategyTraits, type SimRung, type StrategyName } from './strategies.js'

export interface LostStage {
  stage: number
  kind: 'crash' | 'notice'
}

/** One failure batch of the simulation and what the ladder needs to know about the cluster then. */
export interface BatchState {
  strategy: StrategyName
  stages: number
  /** The stages lost together (one recovery each; a stage listed twice counts once, a crash first). */
  lost: readonly LostStage[]
  /** True when stage `holder` keeps a usable CheckFree+ mirror. @default true */
  mirrorReady?: (holder: number) => boolean
  /** True when the shadow of `stage` on its holder is of the stage's current state. @default true */
  shadowReady?: (stage: number) => boolean
  /** Post-clip gradient norm of each stage's last step (CheckFree's weights). @default zeros */
  gradNorms?: readonly number[]
  /** Iteration of the newest loadable checkpoint; 0 or undefined: the seeded initial weights. */
  checkpoint?: number
  /** lr multiplier of a stage rebuilt by CheckFree or CheckFree+. @default the ladder's */
  lrScale?: number
  /** Spare peers free to take lost stages. @default one per lost stage */
  spares?: number
}

/** The ladder's plan for one lost stage, in simulator terms. */
export interface PlannedRecovery {
  stage: number
  kind: 'crash' | 'notice'
  rung: SimRung
  /** 'whole': every stage rolls back to the checkpoint (the ladder's rollbackAll). */
  scope: 'stage' | 'whole'
  /** Stages whose peers serve what the recovery reads: the stage itself for a handover, the shadow
   *  holder for a replica, the neighbours for CheckFree and CheckFree+; none for a checkpoint. */
  donors: number[]
  /** CheckFree: the donors' gradient norms, in donor order. */
  weights: number[]
  /** lr multiplier of the rebuilt stage (1 for exact copies and checkpoints). */
  lrScale: number
  /** Checkpoint rung: the iteration of the checkpoint loaded (0: the initial weights). */
  checkpointIteration?: number
}

export interface BatchPlan {
  /** One per lost stage that has a spare, ascending by stage. */
  plans: PlannedRecovery[]
  /** Lost stages the ladder left waiting for a spare. */
  waiting: number[]
  rollbackAll: boolean
}

const peerOf = (stage: number): string => `stage-${stage}`

function stageOf (peerId: string): number {
  const m = /^stage-(\d+)$/.exec(peerId)
  if (m == null) throw new SimConfigError(`the ladder named donor "${peerId}", which is not a stage's peer`)
  return Number(m[1])
}

/** The batch with each stage once (a crash wins over a notice), ascending; stages checked against 0..S-1. */
export function normaliseBatch (lost: readonly LostStage[], stages: number): LostStage[] {
  const byStage = new Map<number, LostStage>()
  for (const l of lost) {
    if (!Number.isInteger(l.stage) || l.stage < 0 || l.stage >= stages) throw new SimConfigError(`lost stage ${l.stage} is outside 0..${stages - 1}`)
    if (l.kind !== 'crash' && l.kind !== 'notice') throw new SimConfigError(`lost stage ${l.stage}: kind must be crash or notice, got ${String(l.kind)}`)
    const seen = byStage.get(l.stage)
    if (seen == null || l.kind === 'crash') byStage.set(l.stage, { stage: l.stage, kind: l.kind })
  }
  return [...byStage.values()].sort((a, b) => a.stage - b.stage)
}

/**
 * Whether the ladder may copy `stage` from its shadow (for a strategy that keeps shadows): the shadow
 * holder's peer is a live holder (`held`) and its shadow is current.
 */
export function replicaAvailable (stage: number, stages: number, held: (s: number) => boolean, copies: { shadowReady: (s: number) => boolean }): boolean {
  const h = shadowHolder(stage, stages)
  return h != null && held(h) && copies.shadowReady(stage)
}

/**
 * A pipeline with every stage held by its own peer, lent to one batch's LadderInput at a time (its lost
 * stages taken out, then put back): planRecovery keeps nothing of its input, and the projection plans
 * thousands of batches of a 1,000-stage pipeline, where building the map each time would dominate.
 */
export class HeldPipeline {
  readonly holders = new Map<number, string>()
  readonly zeros: number[]
  constructor (readonly stages: number) {
    if (!Number.isInteger(stages) || stages < 1) throw new SimConfigError(`stages must be a positive integer, got ${String(stages)}`)
    for (let s = 0; s < stages; s++) this.holders.set(s, peerOf(s))
    this.zeros = new Array<number>(stages).fill(0)
  }

  /** Runs `fn` with stages `out` missing from the holders. */
  without<T> (out: readonly number[], fn: () => T): T {
    const taken = out.filter(s => this.holders.delete(s))
    try {
      return fn()
    } finally {
      for (const s of taken) this.holders.set(s, peerOf(s))
    }
  }
}

/** The LadderInput of `batch` (normalised) over `pipeline`'s holders, which must already lack the lost stages. */
function inputOf (state: BatchState, batch: LostStage[], pipeline: HeldPipeline): LadderInput {
  const S = pipeline.stages
  const holders = pipeline.holders
  const departing = new Map(batch.filter(l => l.kind === 'notice').map(l => [l.stage, peerOf(l.stage)]))
  const spareCount = state.spares ?? batch.length
  if (!Number.isInteger(spareCount) || spareCount < 0) throw new SimConfigError(`spares must be a non-negative integer, got ${String(spareCount)}`)
  const copies = { shadowReady: state.shadowReady ?? (() => true) }
  const replicas = new Map<number, string>()
  if (strategyTraits(state.strategy).shadows) {
    for (const { stage } of batch) {
      if (replicaAvailable(stage, S, h => holders.has(h), copies)) replicas.set(stage, peerOf(shadowHolder(stage, S) as number))
    }
  }
  return {
    strategy: state.strategy,
    stages: S,
    holders,
    lost: batch.map(l => l.stage),
    departing,
    spares: Array.from({ length: spareCount }, (_, k) => `spare-${k}`),
    replicas,
    gradNorms: state.gradNorms != null ? Array.from({ length: S }, (_, s) => state.gradNorms?.[s] ?? 0) : pipeline.zeros,
    checkpoint: state.checkpoint === 0 ? undefined : state.checkpoint,
    ...(state.lrScale != null ? { lrScale: state.lrScale } : {})
  }
}

/** The coordinator's view of a batch: the LadderInput planBatch hands to planRecovery (a copy). */
export function ladderInput (state: BatchState): LadderInput {
  const pipeline = new HeldPipeline(state.stages)
  const batch = normaliseBatch(state.lost, state.stages)
  return pipeline.without(batch.map(l => l.stage), () => {
    const input = inputOf(state, batch, pipeline)
    return { ...input, holders: new Map(input.holders), gradNorms: [...input.gradNorms] }
  })
}

function checkpointIterationOf (id: string): number {
  if (id === 'init') return 0
  const m = /^ckpt-(\d+)$/.exec(id)
  if (m == null) throw new SimConfigError(`the ladder named checkpoint "${id}", which the simulator does not know`)
  return Number(m[1])
}

/**
 * The ladder's plans for one failure batch (see the module comment for how the batch is described).
 * `pipeline` lends its holders map (the projection keeps one per pipeline); by default a fresh one.
 */
export function planBatch (state: BatchState, pipeline = new HeldPipeline(state.stages)): BatchPlan {
  if (pipeline.stages !== state.stages) throw new SimConfigError(`planBatch: a ${pipeline.stages}-stage pipeline for a ${state.stages}-stage batch`)
  const batch = normaliseBatch(state.lost, state.stages)
  if (!strategyTraits(state.strategy).failures && batch.length > 0) throw new SimConfigError(`strategy "${state.strategy}" has no failures to recover from`)
  return pipeline.without(batch.map(l => l.stage), () => {
    const input = inputOf(state, batch, pipeline)
    const result = planRecovery(input)
    const kinds = new Map(batch.map(l => [l.stage, l.kind]))
    const mirrorReady = state.mirrorReady ?? (() => true)
    const plans: PlannedRecovery[] = []
    const waiting: number[] = []
    for (const first of result.plans) {
      const kind = kinds.get(first.stage)
      if (kind == null) continue // a survivor reloading the checkpoint under rollbackAll: no recovery of its own
      // The mirror is missing: plan the stage again with that neighbour out of reach.
      const hidden = first.rung === 'checkfree-plus' && !mirrorReady(first.donors[0].stage) ? first.donors[0].stage : undefined
      const p = hidden == null ? first : pipeline.without([hidden], () => replan(input, first, hidden))
      if (p.rung === 'wait') { waiting.push(p.stage); continue }
      if (!(SIM_RUNGS as readonly string[]).includes(p.rung)) throw new SimConfigError(`the ladder chose rung "${p.rung}" for stage ${p.stage}, which the simulator does not model`)
      const rung = p.rung as SimRung
      plans.push({
        stage: p.stage,
        kind,
        rung,
        scope: result.rollbackAll && rung === 'checkpoint' ? 'whole' : 'stage',
        donors: p.donors.map(d => stageOf(d.peerId)),
        weights: [...p.weights],
        lrScale: p.lrScale,
        ...(rung === 'checkpoint' ? { checkpointIteration: checkpointIterationOf(p.checkpointId) } : {})
      })
    }
    plans.sort((a, b) => a.stage - b.stage)
    return { plans, waiting, rollbackAll: result.rollbackAll }
  })
}

/** Plans `plan`'s stage alone again, `hidden`'s peer being out of the holders already (and here of the departing). */
function replan (input: LadderInput, plan: StagePlan, hidden: number): StagePlan {
  const departing = new Map(input.departing)
  departing.delete(hidden)
  const again = planRecovery({ ...input, departing, lost: [plan.stage], spares: [plan.target] }).plans.find(p => p.stage === plan.stage)
  if (again == null) throw new SimConfigError(`the ladder returned no plan for stage ${plan.stage}`)
  return again
}

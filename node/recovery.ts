/**
 * The peer's side of a recovery: turn a recovery plan into a ready Stage by pulling weights over
 * the weights protocol and applying the recovery arithmetic of model/recovery.ts.
 *
 *   handover, replica  exact copy of the donor's parameters, Adam moments and metadata (a replica
 *                      copy from a stage's live replicas pulls from all of them at once)
 *   checkpoint         the same, from the coordinator's checkpoint store ('init': seeded weights)
 *   checkfree          both neighbours' parameters, averaged by their gradient norms; fresh Adam at lr x lrScale
 *   checkfree-plus     the neighbour's blocks plus its mirror of the embedding or head; fresh Adam
 */
import type { ModelConfig, TrainConfig } from '../model/index.js'
import { embedSpecs, headSpecs, stageLayout, type StageLayout } from '../model/index.js'
import { checkfreeAverage, neighbourCopy, type NamedValues } from '../model/index.js'
import type { TensorSet } from '../model/index.js'
import { Stage } from '../model/index.js'
import { loadStageState, stateFromTensorSet } from '../model/index.js'
import type { RecoveryPlan } from '../protocols/index.js'
import { AssignmentError } from './errors.js'

export interface WeightsRequestSpec {
  stage: number
  /** Oldest acceptable committed iteration (-1: any, the seeded weights too). */
  minIteration: number
  includeOptimizer: boolean
  /** Only these tensors (empty or undefined: the whole stage). */
  names?: string[]
}

/** Pulls tensors from donor peers (several: the tensors are split between them, each pulled from one). */
export type FetchFn = (donors: string[], req: WeightsRequestSpec, signal?: AbortSignal) => Promise<{ iteration: number, tensors: TensorSet, bytes: number }>

export interface RebuildContext {
  model: ModelConfig
  train: TrainConfig
  layout: StageLayout
  fetch: FetchFn
  /** Peer id of the coordinator, which serves checkpoints. */
  coordinatorId: string
  /**
   * The committed iteration the assignment carrying the plan continues from: an exact copy from
   * live replicas must be of it (a donor that has not applied that commit yet is refused, not copied).
   * @default -1 (any)
   */
  committed?: number
  signal?: AbortSignal
}

export interface RebuildResult {
  /**
   * The rebuilt stage. Its `iteration` is that of its content; the peer installs it under the
   * assignment, which says the iteration it belongs to from then on.
   */
  stage: Stage
  /**
   * The committed iteration the content came from: the checkpoint's (-1 for the seeded weights),
   * the donor's for an exact copy, the older donor's for CheckFree, the neighbour's for CheckFree+.
   * Behind the run's iteration by as many iterations as the rebuild lost.
   */
  sourceIteration: number
  bytes: number
  transferMs: number
  rebuildMs: number
}

function values (set: TensorSet): NamedValues {
  const out: NamedValues = new Map()
  for (const [n, t] of set) if (t.dtype === 'F32') out.set(n, t.data as Float32Array)
  return out
}

export async function rebuildStage (plan: RecoveryPlan, ctx: RebuildContext): Promise<RebuildResult> {
  const { model, train, layout } = ctx
  if (plan.stage !== layout.stage) throw new AssignmentError(`plan for stage ${plan.stage} applied to stage ${layout.stage}`)
  const t0 = performance.now()
  let bytes = 0
  let transferMs = 0
  const pull = async (donor: string | string[], req: WeightsRequestSpec): Promise<{ iteration: number, tensors: TensorSet }> => {
    const r = await ctx.fetch(typeof donor === 'string' ? [donor] : donor, req, ctx.signal)
    bytes += r.bytes
    return r
  }
  /** Wall time of a transfer phase (pulls inside it may run in parallel). */
  const transfer = async <T>(f: () => Promise<T>): Promise<T> => {
    const t = performance.now()
    try { return await f() } finally { transferMs += performance.now() - t }
  }
  const exactCopy = async (donor: string | string[], minIteration = -1): Promise<Stage> => {
    const { tensors } = await transfer(async () => await pull(donor, { stage: plan.stage, minIteration, includeOptimizer: true }))
    const state = stateFromTensorSet(tensors)
    const stage = new Stage({ model, train, layout })
    try {
      loadStageState(stage, state.tensors, state.meta, { optimizer: true })
    } catch (err) {
      stage.dispose()
      throw err
    }
    return stage
  }

  let stage: Stage
  switch (plan.rung) {
    case 'handover':
      stage = await exactCopy(plan.donors[0].peerId)
      break
    case 'replica':
      // a shadow (one donor), or the stage's live replicas: every donor holds the same state
      stage = await exactCopy(plan.donors.map(d => d.peerId), ctx.committed ?? -1)
      break
    case 'checkpoint':
      if (plan.checkpointId === 'init') {
        // No checkpoint taken yet: the seeded initial weights are the checkpoint every peer can rebuild.
        stage = new Stage({ model, train, layout })
      } else {
        stage = await exactCopy(ctx.coordinatorId)
      }
      break
    case 'checkfree': {
      const [p, n] = plan.donors
      if (p == null || n == null) throw new AssignmentError('a CheckFree plan needs two donors')
      const [prev, next] = await transfer(async () => await Promise.all([
        pull(p.peerId, { stage: p.stage, minIteration: -1, includeOptimizer: false }),
        pull(n.peerId, { stage: n.stage, minIteration: -1, includeOptimizer: false })
      ]))
      const averaged = checkfreeAverage({
        model,
        lost: layout,
        prev: { layout: stageLayout(model, layout.stages, p.stage), params: values(prev.tensors), gradNorm: plan.weights[0] ?? 0 },
        next: { layout: stageLayout(model, layout.stages, n.stage), params: values(next.tensors), gradNorm: plan.weights[1] ?? 0 }
      })
      stage = new Stage({ model, train, layout, values: averaged, lrScale: plan.lrScale })
      stage.iteration = Math.min(prev.iteration, next.iteration)
      break
    }
    case 'checkfree-plus': {
      const d = plan.donors[0]
      const mirrorNames = (layout.hasEmbed ? embedSpecs(model) : headSpecs(model)).map(s => s.name)
      const [blocks, mirror] = await transfer(async () => await Promise.all([
        pull(d.peerId, { stage: d.stage, minIteration: -1, includeOptimizer: false }),
        pull(d.peerId, { stage: plan.stage, minIteration: -1, includeOptimizer: false, names: mirrorNames })
      ]))
      const copied = neighbourCopy({ model, lost: layout, neighbour: { layout: stageLayout(model, layout.stages, d.stage), params: values(blocks.tensors) }, mirror: values(mirror.tensors) })
      stage = new Stage({ model, train, layout, values: copied, lrScale: plan.lrScale })
      // the mirror may be older than the blocks: the content is as old as its oldest part
      stage.iteration = Math.min(blocks.iteration, mirror.iteration)
      break
    }
    default:
      throw new AssignmentError(`cannot rebuild a stage with rung "${plan.rung}"`)
  }
  return { stage, sourceIteration: stage.iteration, bytes, transferMs, rebuildMs: performance.now() - t0 - transferMs }
}

/**
 * The checkpoints a recovery reads. Before a plan promises the `checkpoint` rung, the coordinator
 * loads and verifies, for each lost stage, the newest valid checkpoint holding that stage (complete
 * or partial: a stage is restored from its own newest file, however the other stages' pulls went),
 * or the newest valid complete checkpoint when every stage goes back to one iteration
 * (checkpoint-whole, a divergence rollback). A corrupt one is skipped for the one before. The
 * rebuilding peers then fetch their stage from it over the weights protocol, through `provider`,
 * re-cut to the current stage layout (tensor names are global, so any layout can be served).
 */
import type { ModelConfig } from '../model/index.js'
import { createLog } from '../common/index.js'
import { stageLayout, stageSpecs } from '../model/index.js'
import { metaToTensor, META_TENSOR } from '../model/index.js'
import type { WeightsProvider } from '../net/index.js'
import { CheckpointError, metaFor, tensorsFor, type CheckpointStore, type LoadedCheckpoint } from './checkpoint-store.js'
import type { CheckpointChoice } from './recovery/survey.js'

const log = createLog('coordinator')

/** The newest checkpoints on disk for `stages` of an `S`-stage layout, unverified (the ladder's first look). */
export function checkpointsOnDisk (store: CheckpointStore | undefined, stages: readonly number[], S: number): CheckpointChoice {
  if (store == null) return {}
  const byStage = new Map<number, number>()
  for (const s of stages) {
    const it = store.latestFor(s, S)?.iteration
    if (it !== undefined) byStage.set(s, it)
  }
  return { checkpoint: store.latest()?.iteration, stageCheckpoints: byStage }
}

export class RecoveryCheckpoint {
  private readonly model: ModelConfig
  private readonly stages: number
  /** The verified complete checkpoint being served, once one is loaded. */
  private whole?: LoadedCheckpoint
  /** Stage -> the verified checkpoint its recovery is served from. */
  private byStage = new Map<number, LoadedCheckpoint>()

  constructor (model: ModelConfig, stages: number) {
    this.model = model
    this.stages = stages
  }

  /**
   * Loads and verifies the newest valid complete checkpoint in `store` and serves it to every stage
   * from then on (the skipped ones are logged with the reason). Returns its iteration, or
   * undefined when there is none.
   */
  async load (store: CheckpointStore | undefined): Promise<number | undefined> {
    this.byStage = new Map()
    this.whole = undefined
    if (store == null || store.latest() == null) return undefined
    try {
      const ck = await store.loadNewestValid()
      for (const sk of ck.skipped) log.info(`checkpoint ${sk.iteration} skipped: ${sk.reason}`)
      this.whole = ck
      return ck.iteration
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err
      log.info(`no valid complete checkpoint: ${err.message}`)
      return undefined
    }
  }

  /**
   * Loads and verifies, for each of `stages`, the newest valid checkpoint holding it, and serves
   * each stage from its own from then on. Returns the choice for the ladder: a stage left out has
   * no valid checkpoint (it is rebuilt from the seed, and the plan says so).
   */
  async loadFor (store: CheckpointStore | undefined, stages: readonly number[]): Promise<CheckpointChoice> {
    this.byStage = new Map()
    this.whole = undefined
    const byStage = new Map<number, number>()
    if (store == null) return { stageCheckpoints: byStage }
    for (const s of stages) {
      if (store.latestFor(s, this.stages) == null) continue
      try {
        const ck = await store.loadNewestValidFor(s, this.stages)
        for (const sk of ck.skipped) log.info(`checkpoint ${sk.iteration} skipped for stage ${s}: ${sk.reason}`)
        this.byStage.set(s, ck)
        byStage.set(s, ck.iteration)
      } catch (err) {
        if (!(err instanceof CheckpointError)) throw err
        log.info(`no valid checkpoint holds stage ${s}: ${err.message}`)
      }
    }
    return { stageCheckpoints: byStage }
  }

  /** Serves stage `stage` of the checkpoint loaded for it (nothing before one is loaded). */
  readonly provider: WeightsProvider = {
    snapshot: (stage: number, minIteration: number, includeOptimizer: boolean) => {
      const ck = this.byStage.get(stage) ?? this.whole
      if (ck == null || ck.iteration < minIteration) return undefined
      const names = stageSpecs(this.model, stageLayout(this.model, this.stages, stage)).map(x => x.name)
      const tensors = tensorsFor(names, ck, { optimizer: includeOptimizer, who: `stage ${stage}` })
      const meta = metaFor(ck, names)
      if (includeOptimizer) tensors.set(META_TENSOR, metaToTensor(meta))
      // loading checked that every stage file belongs to the checkpoint's iteration
      return { iteration: ck.iteration, tensors }
    }
  }
}

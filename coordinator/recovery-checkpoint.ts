/**
 * The checkpoint a recovery reads. Before a plan promises the `checkpoint` rung, the coordinator
 * loads and verifies the newest valid checkpoint (a corrupt one is skipped for the one before); the
 * rebuilding peers then fetch their stage from it over the weights protocol, through `provider`,
 * re-cut to the current stage layout (tensor names are global, so any layout can be served).
 */
import type { ModelConfig } from '../model/index.js'
import { createLog } from '../common/index.js'
import { stageLayout, stageSpecs } from '../model/index.js'
import { metaToTensor, META_TENSOR } from '../model/index.js'
import type { WeightsProvider } from '../net/index.js'
import { metaFor, tensorsFor, type CheckpointStore, type LoadedCheckpoint } from './checkpoint-store.js'

const log = createLog('coordinator')

export class RecoveryCheckpoint {
  private readonly model: ModelConfig
  private readonly stages: number
  /** The verified checkpoint being served, once a recovery has loaded one. */
  private loaded?: LoadedCheckpoint

  constructor (model: ModelConfig, stages: number) {
    this.model = model
    this.stages = stages
  }

  /**
   * Loads and verifies the newest valid checkpoint in `store` and serves it from then on (the
   * skipped ones are logged with the reason). Returns its iteration, or undefined when there is none.
   */
  async load (store: CheckpointStore | undefined): Promise<number | undefined> {
    if (store == null || store.latest() == null) return undefined
    try {
      const ck = await store.loadNewestValid()
      for (const sk of ck.skipped) log.info(`checkpoint ${sk.iteration} skipped: ${sk.reason}`)
      this.loaded = ck
      return ck.iteration
    } catch (err) {
      log.info(`no valid checkpoint: ${(err as Error).message}`)
      return undefined
    }
  }

  /** Serves stage `stage` of the loaded checkpoint (nothing before one is loaded). */
  readonly provider: WeightsProvider = {
    snapshot: (stage: number, minIteration: number, includeOptimizer: boolean) => {
      const ck = this.loaded
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

/** The loss sequence one replica per stage computes, as the local pipeline trainer does (test/cluster.test.ts). */
import { expect } from 'vitest'
import type { ModelConfig, TrainConfig } from '../../model/config.js'
import { loadBrownCorpus } from '../../model/data.js'
import { LocalPipelineTrainer } from '../../model/trainer.js'

/** losses[i] is iteration i's loss: each within `tolerance` (relative) of the local trainer's. */
export function expectLocalLosses (losses: readonly number[], model: Partial<ModelConfig>, train: Partial<TrainConfig>, tolerance = 1e-5): void {
  const local = new LocalPipelineTrainer({ model, train, trainTokens: loadBrownCorpus().train })
  try {
    losses.forEach((loss, i) => {
      const want = local.step().loss
      expect(Math.abs(loss - want) / want, `iteration ${i}: ${loss} vs ${want}`).toBeLessThanOrEqual(tolerance)
    })
  } finally { local.dispose() }
}

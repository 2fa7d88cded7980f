/**
 * Model and training flags shared by `train`, `coordinator` and `sim`, mapped onto ModelConfig and
 * TrainConfig (whose defaults and comments live in model/config.ts).
 */
import { CONFIG_PRESET_NAMES, configPreset, type ModelConfig, type TrainConfig } from '../model/index.js'
import { UsageError } from './errors.js'
import { intFlag, numFlag, type FlagSpec } from './flags.js'

export const MODEL_FLAGS = {
  preset: { type: 'string' },
  'd-model': { type: 'string' },
  heads: { type: 'string' },
  blocks: { type: 'string' },
  'seq-len': { type: 'string' },
  stages: { type: 'string' },
  microbatches: { type: 'string' },
  'microbatch-size': { type: 'string' },
  lr: { type: 'string' },
  seed: { type: 'string' }
} as const satisfies FlagSpec

export const MODEL_HELP = `  --preset NAME        ${CONFIG_PRESET_NAMES.join(' | ')} (default demo): a model and training
                       configuration (model/presets.ts); the flags below override it
  --d-model D          model width (default 128)
  --heads H            attention heads (default 4)
  --blocks N           transformer blocks (default 8)
  --seq-len T          context length in tokens (default 64)
  --stages S           pipeline stages (default 4)
  --microbatches M     microbatches per iteration (default 4)
  --microbatch-size B  sequences per microbatch (default 8)
  --lr X               Adam learning rate (default 3e-3)
  --seed N             weight-initialisation and data seed (default 1234 / 42)
`

/**
 * The preset (--preset, default demo) overridden by the explicit flags; `tokenizer` is the preset's
 * (for --tokenizer when that is not given).
 */
export function modelFromFlags (v: Record<string, unknown>): { model: Partial<ModelConfig>, train: Partial<TrainConfig>, tokenizer?: string } {
  let preset
  try {
    preset = configPreset(v.preset != null ? String(v.preset) : 'demo')
  } catch (err) {
    throw new UsageError(`--preset: ${(err as Error).message}`)
  }
  const model: Partial<ModelConfig> = { ...preset.model }
  const train: Partial<TrainConfig> = { ...preset.train }
  if (v['d-model'] != null) model.dModel = intFlag(v, 'd-model', 0)
  if (v.heads != null) model.nHeads = intFlag(v, 'heads', 0)
  if (v.blocks != null) model.nBlocks = intFlag(v, 'blocks', 0)
  if (v['seq-len'] != null) model.seqLen = intFlag(v, 'seq-len', 0)
  if (v.stages != null) train.stages = intFlag(v, 'stages', 0)
  if (v.microbatches != null) train.microbatches = intFlag(v, 'microbatches', 0)
  if (v['microbatch-size'] != null) train.microbatchSize = intFlag(v, 'microbatch-size', 0)
  if (v.lr != null) train.lr = numFlag(v, 'lr', 0)
  if (v.seed != null) {
    const s = intFlag(v, 'seed', 0, 0)
    model.initSeed = s
    train.dataSeed = s
  }
  return { model, train, ...(preset.tokenizer != null ? { tokenizer: preset.tokenizer } : {}) }
}

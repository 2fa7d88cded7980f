/**
 * Named model and training configurations (`--preset` on train and coordinator, `--model-preset` on
 * sim): the one table of them. A preset fills what the flags leave unset; explicit flags win.
 */
import type { ModelConfig, TrainConfig } from './config.js'

export interface ConfigPreset {
  model: Partial<ModelConfig>
  train: Partial<TrainConfig>
  /** The tokenizer the preset trains with when --tokenizer is not given (the vocabulary follows it). */
  tokenizer?: string
}

export const CONFIG_PRESETS = {
  /** model/config.ts's defaults: the churn demo's model. */
  demo: { model: {}, train: {} },
  /** CheckFree's 124M configuration (d 512, 8 heads, 12 layers, context 512) over 4 stages. */
  'paper-124m': { model: { dModel: 512, nHeads: 8, nBlocks: 12, seqLen: 512 }, train: { stages: 4 } },
  /** GPT-2 small's shape with its vocabulary and tokenizer. */
  'gpt2-small': { model: { dModel: 768, nHeads: 12, nBlocks: 12, seqLen: 1024, vocab: 50257 }, train: {}, tokenizer: 'gpt2' }
} as const satisfies Record<string, ConfigPreset>

export type ConfigPresetName = keyof typeof CONFIG_PRESETS

export const CONFIG_PRESET_NAMES = Object.keys(CONFIG_PRESETS) as ConfigPresetName[]

/** The preset called `name`. Throws a plain Error naming the known ones otherwise. */
export function configPreset (name: string): ConfigPreset {
  if (!Object.hasOwn(CONFIG_PRESETS, name)) throw new Error(`unknown preset "${name}" (known: ${CONFIG_PRESET_NAMES.join(', ')})`)
  return CONFIG_PRESETS[name as ConfigPresetName]
}

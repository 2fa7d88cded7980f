/**
 * The one configuration type of the model and its training, with a comment on every default.
 * Sizes are chosen so the default demo trains visibly in minutes on a 2-core CPU with tfjs-wasm.
 */
import { ConfigError } from '../common/index.js'

export interface ModelConfig {
  /** Vocabulary size: the tokenizer's (bytes: 256, gpt2: 50,257; see model/tokenizers/). @default 256 */
  vocab: number
  /** Width of the residual stream. @default 128 */
  dModel: number
  /** Attention heads; dModel must divide evenly. @default 4 */
  nHeads: number
  /** Transformer blocks in the whole model (summed over stages). @default 8 */
  nBlocks: number
  /** Context length in tokens (bytes). @default 64 */
  seqLen: number
  /** MLP hidden width as a multiple of dModel. @default 4 */
  mlpRatio: number
  /** Std of the normal initialisation of weight matrices (GPT-2's value). @default 0.02 */
  initStd: number
  /** Seed of the weight initialisation; the same seed gives the same weights on any stage split. @default 1234 */
  initSeed: number
}

export interface TrainConfig {
  /** Pipeline stages. @default 4 */
  stages: number
  /** Microbatches per iteration (gradient accumulation steps). @default 4 */
  microbatches: number
  /** Sequences per microbatch. @default 8 */
  microbatchSize: number
  /** Adam learning rate (constant, as in the CheckFree LLaMa configs). @default 3e-3 */
  lr: number
  /** Adam beta1. @default 0.9 */
  beta1: number
  /** Adam beta2. @default 0.95 */
  beta2: number
  /** Adam epsilon. @default 1e-8 */
  eps: number
  /** Per-stage gradient clipping norm (CheckFree's weighting assumes 1.0). @default 1.0 */
  clipNorm: number
  /** Seed of the data sampler. @default 42 */
  dataSeed: number
  /** Validate every K iterations. @default 25 */
  evalEvery: number
  /** Validation batches per evaluation. @default 8 */
  evalBatches: number
}

export const DEFAULT_MODEL: ModelConfig = {
  vocab: 256,
  dModel: 128,
  nHeads: 4,
  nBlocks: 8,
  seqLen: 64,
  mlpRatio: 4,
  initStd: 0.02,
  initSeed: 1234
}

export const DEFAULT_TRAIN: TrainConfig = {
  stages: 4,
  microbatches: 4,
  microbatchSize: 8,
  lr: 3e-3,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  clipNorm: 1.0,
  dataSeed: 42,
  evalEvery: 25,
  evalBatches: 8
}

function positiveInt (name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`${name} must be a positive integer, got ${String(v)}`)
}

function positiveFinite (name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ConfigError(`${name} must be a positive finite number, got ${String(v)}`)
}

/** Fill in defaults and reject impossible values with a ConfigError naming the field. */
export function resolveModelConfig (partial: Partial<ModelConfig> = {}): ModelConfig {
  const c = { ...DEFAULT_MODEL, ...partial }
  for (const k of ['vocab', 'dModel', 'nHeads', 'nBlocks', 'seqLen', 'mlpRatio'] as const) positiveInt(`model.${k}`, c[k])
  positiveFinite('model.initStd', c.initStd)
  if (!Number.isInteger(c.initSeed)) throw new ConfigError(`model.initSeed must be an integer, got ${String(c.initSeed)}`)
  if (c.dModel % c.nHeads !== 0) throw new ConfigError(`model.dModel (${c.dModel}) must be divisible by model.nHeads (${c.nHeads})`)
  return c
}

export function resolveTrainConfig (partial: Partial<TrainConfig> = {}, model?: ModelConfig): TrainConfig {
  const c = { ...DEFAULT_TRAIN, ...partial }
  for (const k of ['stages', 'microbatches', 'microbatchSize', 'evalEvery', 'evalBatches'] as const) positiveInt(`train.${k}`, c[k])
  for (const k of ['lr', 'eps', 'clipNorm'] as const) positiveFinite(`train.${k}`, c[k])
  for (const k of ['beta1', 'beta2'] as const) {
    if (!(c[k] >= 0 && c[k] < 1)) throw new ConfigError(`train.${k} must be in [0, 1), got ${String(c[k])}`)
  }
  if (!Number.isInteger(c.dataSeed)) throw new ConfigError(`train.dataSeed must be an integer, got ${String(c.dataSeed)}`)
  if (model != null && c.stages > model.nBlocks) {
    throw new ConfigError(`train.stages (${c.stages}) exceeds model.nBlocks (${model.nBlocks}): every stage needs at least one block`)
  }
  return c
}

/**
 * The fields where `found` (a checkpoint's or a saved run's model) differs from `given` (what the
 * preset and flags ask for), as `name found (given wanted)` phrases; only the fields `given` sets.
 */
export function modelConfigDiff (found: Partial<ModelConfig>, given: Partial<ModelConfig>): string[] {
  const out: string[] = []
  for (const k of Object.keys(DEFAULT_MODEL) as Array<keyof ModelConfig>) {
    if (given[k] !== undefined && found[k] !== given[k]) out.push(`${k} ${String(found[k])} (given ${String(given[k])})`)
  }
  return out
}

/**
 * Cost models of real configurations (sim/cost-model.ts has the model): the model-mode cluster's
 * from its own model and a measured step, and a large LLM's from a profile (projections).
 */
import type { ModelConfig, TrainConfig } from '../model/index.js'
import { countParams, embedSpecs, headSpecs, partSpecs, stageLayout, stageSpecs } from '../model/index.js'
import { CostModel } from './cost-model.js'
import { DEFAULT_COST, type CostParams } from './cost-params.js'

/**
 * Cost model of the model-mode cluster: parameter counts and activation sizes from the simulated
 * model itself; compute from a measured step time.
 *
 * @param stepS seconds of one single-process training step (all S stages, M microbatches, in one
 *              process); one slot is stepS / (S * M).
 */
export function costModelForModel (model: ModelConfig, train: Pick<TrainConfig, 'stages' | 'microbatches' | 'microbatchSize'>, stepS: number, overrides: Partial<CostParams> = {}): CostModel {
  const S = train.stages
  const stageParams: number[] = []
  const stageBlockParams: number[] = []
  for (let s = 0; s < S; s++) {
    const layout = stageLayout(model, S, s)
    stageParams.push(countParams(stageSpecs(model, layout)))
    stageBlockParams.push(countParams(partSpecs(model, layout, 'blocks')))
  }
  const bytesPerActivation = 4 // float32 on the wire
  return new CostModel({
    ...DEFAULT_COST,
    slotComputeS: stepS / (S * train.microbatches),
    stageParams,
    stageBlockParams,
    embedParams: countParams(embedSpecs(model)),
    headParams: countParams(headSpecs(model)),
    hopBytes: train.microbatchSize * model.seqLen * model.dModel * bytesPerActivation,
    microbatches: train.microbatches,
    ...overrides
  })
}

/** A large-model cluster described by size, for projections. */
export interface LlmProfile {
  /** Total parameters. */
  params: number
  stages: number
  dModel: number
  vocab: number
  seqLen: number
  microbatchSize: number
  microbatches: number
  /** Effective training FLOP/s of one stage's machine. */
  flopRate: number
  /** Bytes per activation on the wire. */
  bytesPerActivation: number
  bytesPerParam: number
  optimizerBytesPerParam: number
}

/**
 * Default projection profile: a 70B model over 1,000 spot machines on 500 Mb/s links.
 * - params 70e9, dModel 8192, vocab 32000, seq 4096: Llama-2-70B's shape.
 * - microbatches 1000 of 1 x 4096 tokens: a 4M-token batch (Llama 2's), M = S keeps the bubble < 50%.
 * - flopRate 10 TFLOP/s: assumed, a spot GPU of the T4/A10G class at a modest utilisation (this
 *   machine's wasm backend measures ~0.017 TFLOP/s: bench:compute).
 * - bf16 activations and weights on the wire (2 bytes), fp32 master weights + Adam in checkpoints
 *   (2 + 12 bytes per weight: optimizerBytesPerParam 12).
 */
export const LLM_70B_PROFILE: LlmProfile = {
  params: 70e9,
  stages: 1000,
  dModel: 8192,
  vocab: 32000,
  seqLen: 4096,
  microbatchSize: 1,
  microbatches: 1000,
  flopRate: 10e12,
  bytesPerActivation: 2,
  bytesPerParam: 2,
  optimizerBytesPerParam: 12
}

/** Cost model of an LLM profile: uniform stages, 6 FLOPs per weight per token for forward+backward. */
export function costModelForLlm (profile: LlmProfile, overrides: Partial<CostParams> = {}): CostModel {
  const { params, stages: S, dModel, vocab, seqLen } = profile
  const embedParams = vocab * dModel + seqLen * dModel
  const headParams = dModel * vocab + 2 * dModel
  const blockParams = Math.max(1, (params - embedParams - headParams) / S)
  const stageBlockParams = new Array<number>(S).fill(blockParams)
  const stageParams = stageBlockParams.map((b, s) => b + (s === 0 ? embedParams : 0) + (s === S - 1 ? headParams : 0))
  const tokens = profile.microbatchSize * seqLen
  return new CostModel({
    ...DEFAULT_COST,
    slotComputeS: 6 * blockParams * tokens / profile.flopRate,
    stageParams,
    stageBlockParams,
    embedParams,
    headParams,
    hopBytes: tokens * dModel * profile.bytesPerActivation,
    microbatches: profile.microbatches,
    bytesPerParam: profile.bytesPerParam,
    optimizerBytesPerParam: profile.optimizerBytesPerParam,
    ...overrides
  })
}

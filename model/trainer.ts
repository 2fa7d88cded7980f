/**
 * The local pipeline trainer: S stages in one process, M microbatches per iteration, each microbatch
 * routed hop by hop (forward in route order, backward in reverse), gradients accumulated, then every
 * stage clips and steps on its own. The distributed runtime performs exactly these calls, on
 * different machines, so its losses match this trainer's.
 */
import * as tf from '@tensorflow/tfjs'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig, type TrainConfig } from './config.js'
import { DataError } from '../common/index.js'
import { sampleBatch, validationBatches, type Batch, type TokenArray } from './data.js'
import { stageLayout } from './params.js'
import { route, type PlusLayout } from './schedule.js'
import { Stage } from './stage.js'

export interface IterationResult {
  iteration: number
  /** Mean training loss over the iteration's microbatches (nats). */
  loss: number
  /** Post-clip gradient norm per stage. */
  gradNorms: number[]
  ms: number
}

export interface LocalTrainerInit {
  model?: Partial<ModelConfig>
  train?: Partial<TrainConfig>
  /** Train tokens and validation tokens: ids below model.vocab (bytes for Brown, Uint16 for GPT-2, ...). */
  trainTokens: TokenArray
  validationTokens?: TokenArray
  /** Run odd microbatches with the CheckFree+ swaps. @default false */
  checkfreePlus?: boolean
}

/** Build the stage tensors of one microbatch from the deterministic sampler. */
export function batchTensors (b: Batch, batch: number, seqLen: number): { inputs: tf.Tensor2D, targets: tf.Tensor2D } {
  return {
    inputs: tf.tensor2d(b.inputs, [batch, seqLen], 'int32'),
    targets: tf.tensor2d(b.targets, [batch, seqLen], 'int32')
  }
}

/**
 * Runs one microbatch through `stages` along its route and back, accumulating gradients.
 * Returns the microbatch loss. Shared by the local trainer and the single-process simulator.
 */
export function runMicrobatch (stages: Stage[], mb: number, inputs: tf.Tensor2D, targets: tf.Tensor2D, checkfreePlus: boolean, layout: PlusLayout = 'spotpipe'): number {
  const hops = route(stages.length, mb, checkfreePlus, layout)
  let x: tf.Tensor = inputs
  let loss = NaN
  hops.forEach((hop, h) => {
    const last = h === hops.length - 1
    const out = stages[hop.stage].forward(`${mb}:${h}`, x, hop.parts, last ? targets : undefined)
    if (x !== inputs) x.dispose()
    if (last) {
      loss = out.dataSync()[0]
      out.dispose()
    } else x = out
  })
  let dy: tf.Tensor | null = null
  for (let h = hops.length - 1; h >= 0; h--) {
    const dx = stages[hops[h].stage].backward(`${mb}:${h}`, dy ?? undefined)
    dy?.dispose()
    dy = dx
  }
  dy?.dispose()
  return loss
}

/** Forward-only loss of one batch along the normal (unswapped) route. */
export function evaluateBatch (stages: Stage[], inputs: tf.Tensor2D, targets: tf.Tensor2D): number {
  const hops = route(stages.length, 0, false)
  let x: tf.Tensor = inputs
  let loss = NaN
  hops.forEach((hop, h) => {
    const last = h === hops.length - 1
    const out = stages[hop.stage].evaluate(x, hop.parts, last ? targets : undefined)
    if (x !== inputs) x.dispose()
    if (last) {
      loss = out.dataSync()[0]
      out.dispose()
    } else x = out
  })
  return loss
}

/** An id >= vocab would index past the embedding: refuse it before training (one pass over the tokens). */
function checkVocab (what: string, tokens: TokenArray, vocab: number): void {
  let max = 0
  for (let i = 0; i < tokens.length; i++) if (tokens[i] > max) max = tokens[i]
  if (max >= vocab) {
    throw new DataError(`${what} tokens hold id ${max}, outside the model's vocabulary of ${vocab} (model.vocab must be the tokenizer's vocabulary size)`, 'ERR_DATA_TOKEN_RANGE')
  }
}

export class LocalPipelineTrainer {
  readonly model: ModelConfig
  readonly train: TrainConfig
  readonly stages: Stage[]
  readonly checkfreePlus: boolean
  private readonly trainTokens: TokenArray
  private readonly validationTokens?: TokenArray
  iteration = 0

  constructor (init: LocalTrainerInit) {
    this.model = resolveModelConfig(init.model)
    this.train = resolveTrainConfig(init.train, this.model)
    this.checkfreePlus = init.checkfreePlus ?? false
    this.trainTokens = init.trainTokens
    this.validationTokens = init.validationTokens
    checkVocab('train', this.trainTokens, this.model.vocab)
    if (this.validationTokens != null) checkVocab('validation', this.validationTokens, this.model.vocab)
    this.stages = Array.from({ length: this.train.stages }, (_, s) => new Stage({
      model: this.model,
      train: this.train,
      layout: stageLayout(this.model, this.train.stages, s)
    }))
  }

  /** Microbatch `mb` of iteration `it`: the same tokens on every call and on every peer. */
  microbatch (it: number, mb: number, replica = 0): Batch {
    return sampleBatch(this.trainTokens, { seed: this.train.dataSeed, iteration: it, microbatch: mb, replica }, this.train.microbatchSize, this.model.seqLen)
  }

  /** One iteration: M microbatches through the pipeline, then clip and step every stage. */
  step (): IterationResult {
    const t0 = performance.now()
    const it = this.iteration
    const M = this.train.microbatches
    let lossSum = 0
    for (let mb = 0; mb < M; mb++) {
      const { inputs, targets } = batchTensors(this.microbatch(it, mb), this.train.microbatchSize, this.model.seqLen)
      try {
        lossSum += runMicrobatch(this.stages, mb, inputs, targets, this.checkfreePlus)
      } finally {
        inputs.dispose()
        targets.dispose()
      }
    }
    const gradNorms = this.stages.map(s => s.step(M).gradNorm)
    this.iteration += 1
    return { iteration: it, loss: lossSum / M, gradNorms, ms: performance.now() - t0 }
  }

  /** Mean validation loss over the fixed validation windows (nats per byte). */
  validate (batches = this.train.evalBatches): number {
    if (this.validationTokens == null) throw new Error('no validation tokens given')
    const list = validationBatches(this.validationTokens, batches, this.train.microbatchSize, this.model.seqLen, this.train.dataSeed)
    let sum = 0
    for (const b of list) {
      const { inputs, targets } = batchTensors(b, this.train.microbatchSize, this.model.seqLen)
      try {
        sum += evaluateBatch(this.stages, inputs, targets)
      } finally {
        inputs.dispose()
        targets.dispose()
      }
    }
    return sum / list.length
  }

  dispose (): void {
    for (const s of this.stages) s.dispose()
  }
}

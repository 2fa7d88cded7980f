/**
 * A trained model outside training: next-token logits, sampling, and the mean cross-entropy of a
 * token stream. The model is loaded as the stages it was trained in (from the global parameter
 * names, so any split loads), in this process.
 *
 * Logits come from model/transformer.ts (the autodiff form of the model, which the tests check
 * against the stages' hand-written layers); the loss of a token stream goes through the stages'
 * own forward (`evaluateBatch`), exactly as the trainer's validation loss does.
 */
import * as tf from '@tensorflow/tfjs'
import { ConfigError, DataError, ShapeMismatchError } from '../common/index.js'
import { DEFAULT_TRAIN, type ModelConfig } from './config.js'
import { hostCopy } from './ops.js'
import { stageLayout, stageSpecs } from './params.js'
import { hashKey, mulberry32 } from './rng.js'
import type { HostTensor, TensorSet } from './safetensors.js'
import { Stage } from './stage.js'
import { evaluateBatch } from './trainer.js'
import { block, embed, logits as headLogits, type Params } from './transformer.js'

/** Windows of an evaluation batch of full-length windows. */
const EVAL_BATCH = 8

function checkTokens (what: string, tokens: ArrayLike<number>, vocab: number): void {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]
    if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new DataError(`${what}: token ${String(t)} at position ${i} is outside the vocabulary 0..${vocab - 1}`)
  }
}

export class InferenceModel {
  readonly model: ModelConfig
  readonly stages: Stage[]
  private readonly lookup: Params

  /**
   * Loads parameters `params` (every parameter of the model by its global name; other names, such
   * as Adam moments, are ignored) into `stages` stages. Throws ShapeMismatchError naming any
   * parameter that is missing or misshapen, before creating a tensor.
   */
  constructor (model: ModelConfig, params: TensorSet, stages = 1) {
    const bad: string[] = []
    for (const spec of stageSpecs(model, stageLayout(model, 1, 0))) { // every parameter
      const t = params.get(spec.name)
      if (t === undefined) bad.push(`${spec.name} missing`)
      else if (t.dtype !== 'F32' || t.shape.join(',') !== spec.shape.join(',')) bad.push(`${spec.name}: expected F32 [${spec.shape.join(',')}], got ${t.dtype} [${t.shape.join(',')}]`)
    }
    if (bad.length > 0) throw new ShapeMismatchError(`parameters do not match the model config: ${bad.slice(0, 5).join('; ')}${bad.length > 5 ? `; ... ${bad.length - 5} more` : ''}`)
    this.model = model
    const values = new Map<string, Float32Array>()
    for (const [name, t] of params) if (t.dtype === 'F32') values.set(name, (t as HostTensor).data as Float32Array)
    const made: Stage[] = []
    try {
      for (let s = 0; s < stages; s++) made.push(new Stage({ model, train: DEFAULT_TRAIN, layout: stageLayout(model, stages, s), values }))
    } catch (err) {
      for (const st of made) st.dispose()
      throw err
    }
    this.stages = made
    const all = new Map<string, tf.Tensor>()
    for (const st of made) for (const [n, v] of st.params) all.set(n, v)
    this.lookup = (name: string) => all.get(name) as tf.Tensor
  }

  /** Logits [T,V] (row-major) of every position of one sequence of 1..seqLen tokens. */
  logits (tokens: ArrayLike<number>): Float32Array {
    return this.run(tokens, false)
  }

  /** Logits [V] of the token after `tokens` (1..seqLen tokens). */
  nextLogits (tokens: ArrayLike<number>): Float32Array {
    return this.run(tokens, true)
  }

  private run (tokens: ArrayLike<number>, lastOnly: boolean): Float32Array {
    const m = this.model
    const T = tokens.length
    if (T < 1 || T > m.seqLen) throw new ShapeMismatchError(`a sequence of ${T} tokens: the model takes 1..${m.seqLen}`)
    checkTokens('logits', tokens, m.vocab)
    const out = tf.tidy(() => {
      const x = tf.tensor2d(Int32Array.from(tokens), [1, T], 'int32')
      let h = embed(m, this.lookup, x) //                                [1,T,D]
      for (let i = 0; i < m.nBlocks; i++) h = block(m, this.lookup, i, h)
      const l = headLogits(m, this.lookup, h) //                         [T,V]
      return lastOnly ? l.slice([T - 1, 0], [1, m.vocab]) : l
    })
    try {
      return hostCopy(out)
    } finally {
      out.dispose()
    }
  }

  dispose (): void {
    for (const s of this.stages) s.dispose()
  }
}

// ---------------------------------------------------------------------------------------------
// Sampling

export interface SampleOptions {
  /** Softmax temperature; 0 picks the most likely token (greedy). */
  temperature: number
  /** Sample among the K most likely tokens only; 0 means all. */
  topK: number
}

/** Index of the largest value (the first one on a tie). */
export function argmax (values: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i
  return best
}

/**
 * Draws a token from `logits` [V] with one uniform number from `rand`: greedy at temperature 0,
 * else from softmax(logits / temperature) restricted to the topK most likely tokens (ties broken
 * by lower id). Computed in float64, so the draw depends only on the logits and `rand`.
 */
export function sampleToken (logits: ArrayLike<number>, opts: SampleOptions, rand: () => number): number {
  if (opts.temperature === 0) return argmax(logits)
  const V = logits.length
  let ids = Array.from({ length: V }, (_, i) => i)
  if (opts.topK > 0 && opts.topK < V) {
    ids.sort((a, b) => (logits[b] - logits[a]) || (a - b))
    ids = ids.slice(0, opts.topK)
  }
  let max = -Infinity
  for (const i of ids) if (logits[i] > max) max = logits[i]
  const weights = ids.map(i => Math.exp((logits[i] - max) / opts.temperature))
  const total = weights.reduce((a, b) => a + b, 0)
  const r = rand() * total
  let acc = 0
  for (let j = 0; j < ids.length; j++) {
    acc += weights[j]
    if (r < acc) return ids[j]
  }
  return ids[ids.length - 1]
}

export interface GenerateOptions extends SampleOptions {
  /** New tokens to produce (>= 1). */
  tokens: number
  /** Seed of the sampler's PRNG: the same seed, prompt and weights give the same tokens. */
  seed: number
}

function checkGenerateOptions (o: GenerateOptions, vocab: number): void {
  if (!Number.isSafeInteger(o.tokens) || o.tokens < 1) throw new ConfigError(`tokens must be a positive integer, got ${String(o.tokens)}`)
  if (typeof o.temperature !== 'number' || !Number.isFinite(o.temperature) || o.temperature < 0) throw new ConfigError(`temperature must be a finite number >= 0, got ${String(o.temperature)}`)
  if (!Number.isSafeInteger(o.topK) || o.topK < 0 || o.topK > vocab) throw new ConfigError(`topK must be an integer in 0..${vocab} (0: no limit), got ${String(o.topK)}`)
  if (!Number.isSafeInteger(o.seed)) throw new ConfigError(`seed must be an integer, got ${String(o.seed)}`)
}

/**
 * Samples `opts.tokens` tokens after `prompt` (at least one token), one at a time: each sees the
 * last seqLen tokens of prompt + what is generated so far (the context is cropped from the left).
 * Returns the new tokens only.
 */
export function generate (model: InferenceModel, prompt: ArrayLike<number>, opts: GenerateOptions): number[] {
  const m = model.model
  checkGenerateOptions(opts, m.vocab)
  if (prompt.length === 0) throw new DataError('generate: the prompt is empty (it needs at least one token)')
  checkTokens('prompt', prompt, m.vocab)
  const rand = mulberry32(hashKey(opts.seed))
  const context = Array.from(prompt)
  const out: number[] = []
  for (let n = 0; n < opts.tokens; n++) {
    const next = sampleToken(model.nextLogits(context.slice(-m.seqLen)), opts, rand)
    context.push(next)
    out.push(next)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/** One evaluation window: inputs tokens[start, start + length), targets one position later. */
export interface EvalWindow { start: number, length: number }

/**
 * The windows that score a stream of `n` tokens: consecutive, non-overlapping, seqLen long (the
 * last one shorter), so every token after the first is predicted exactly once, with the tokens
 * since its window's start as context. Deterministic: a function of n and seqLen only.
 */
export function evalWindows (n: number, seqLen: number): EvalWindow[] {
  const out: EvalWindow[] = []
  for (let start = 0; start + 1 < n; start += seqLen) out.push({ start, length: Math.min(seqLen, n - 1 - start) })
  return out
}

export interface EvalResult {
  /** Mean cross-entropy, nats per predicted token. */
  loss: number
  /** Tokens predicted (stream length - 1). */
  tokens: number
  windows: number
}

/**
 * Mean next-token cross-entropy of `model` over token stream `tokens` (at least 2), scored in the
 * windows of evalWindows, through the model's stages as the trainer validates.
 */
export function evaluateTokens (model: InferenceModel, tokens: ArrayLike<number>): EvalResult {
  const m = model.model
  if (tokens.length < 2) throw new DataError(`evaluation needs at least 2 tokens (one to predict), got ${tokens.length}`)
  checkTokens('evaluation data', tokens, m.vocab)
  const windows = evalWindows(tokens.length, m.seqLen)
  let sum = 0
  let count = 0
  const run = (group: EvalWindow[]): void => {
    const B = group.length
    const T = group[0].length
    const inputs = new Int32Array(B * T)
    const targets = new Int32Array(B * T)
    group.forEach((w, b) => {
      for (let t = 0; t < T; t++) {
        inputs[b * T + t] = tokens[w.start + t]
        targets[b * T + t] = tokens[w.start + t + 1]
      }
    })
    const x = tf.tensor2d(inputs, [B, T], 'int32')
    const y = tf.tensor2d(targets, [B, T], 'int32')
    try {
      sum += evaluateBatch(model.stages, x, y) * B * T
      count += B * T
    } finally {
      x.dispose()
      y.dispose()
    }
  }
  const full = windows.filter(w => w.length === m.seqLen)
  for (let i = 0; i < full.length; i += EVAL_BATCH) run(full.slice(i, i + EVAL_BATCH))
  const last = windows[windows.length - 1]
  if (last.length !== m.seqLen) run([last])
  return { loss: sum / count, tokens: count, windows: windows.length }
}

/**
 * A pipeline stage: a contiguous slice of the transformer's parameters, its gradient accumulators
 * and its Adam state. The peer runtime and the local trainer drive it the same way:
 *
 *   forward(key, x, parts)  -> output        (stores x under `key` for the backward pass)
 *   backward(key, dy)       -> dx            (accumulates this microbatch's parameter gradients)
 *   step(microbatches)      -> gradient norm (average, clip to clipNorm, Adam)
 *
 * Backward recomputes the hop's forward inside tf.grads (activation recomputation): tfjs only
 * records a tape inside a gradient call, so keeping the forward's tape across calls is not possible.
 * Cost: one extra forward per hop, i.e. ~8 units of work instead of ~6 per token and parameter
 * (+33% FLOPs), in exchange for storing only each hop's input (one [B,T,D] tensor per microbatch).
 */
import * as tf from '@tensorflow/tfjs'
import { Adam } from './adam.js'
import type { ModelConfig, TrainConfig } from './config.js'
import { MissingParameterError, NonFiniteError, ShapeMismatchError, SpotpipeError } from './errors.js'
import { initialValues, partSpecs, stageSpecs, type ParamSpec, type Part, type StageLayout } from './params.js'
import { block, embed, headLoss, type Params } from './transformer.js'

interface Saved {
  x: tf.Tensor
  parts: Part[]
  targets?: tf.Tensor2D
}

export interface StepResult {
  /** L2 norm of the averaged gradient before clipping. */
  preClipNorm: number
  /** L2 norm after clipping to clipNorm: the number CheckFree weights neighbours by. */
  gradNorm: number
}

export interface StageInit {
  model: ModelConfig
  train: Pick<TrainConfig, 'lr' | 'beta1' | 'beta2' | 'eps' | 'clipNorm'>
  layout: StageLayout
  /** Initial parameter values by name; missing means the seeded initialisation. */
  values?: Map<string, Float32Array>
  /** Learning-rate multiplier (CheckFree's lrScale on a rebuilt stage). @default 1 */
  lrScale?: number
}

/** tfjs variable names are process-global; a counter keeps several stages' names apart. */
let variableCounter = 0

export class StageStateError extends SpotpipeError {
  constructor (message: string) { super('ERR_STAGE_STATE', message) }
}

export class Stage {
  readonly model: ModelConfig
  readonly layout: StageLayout
  readonly specs: ParamSpec[]
  readonly params = new Map<string, tf.Variable>()
  readonly clipNorm: number
  adam: Adam
  /** Post-clip gradient norm of the last optimizer step (0 before the first). */
  lastGradNorm = 0
  /** Optimizer steps applied to these weights; gossiped as the weight version. */
  weightVersion = 0
  private readonly grads = new Map<string, tf.Tensor>()
  private readonly saved = new Map<string, Saved>()

  constructor (init: StageInit) {
    this.model = init.model
    this.layout = init.layout
    this.clipNorm = init.train.clipNorm
    this.specs = stageSpecs(init.model, init.layout)
    for (const spec of this.specs) {
      const given = init.values?.get(spec.name)
      const size = spec.shape.reduce((a, b) => a * b, 1)
      if (given != null && given.length !== size) {
        throw new ShapeMismatchError(`${spec.name}: expected ${size} values for shape [${spec.shape.join(',')}], got ${given.length}`)
      }
      const data = given ?? initialValues(spec, init.model.initSeed)
      this.params.set(spec.name, tf.variable(tf.tensor(data, spec.shape, 'float32'), true, `${spec.name}#${variableCounter++}`))
    }
    this.adam = new Adam(init.train, init.lrScale ?? 1)
  }

  get stage (): number { return this.layout.stage }

  private lookup (names?: Map<string, tf.Tensor>): Params {
    return (name: string) => {
      const t = names != null ? names.get(name) : this.params.get(name)
      if (t == null) throw new MissingParameterError(`stage ${this.stage} has no parameter ${name}`)
      return t
    }
  }

  private checkInput (x: tf.Tensor, parts: Part[], targets?: tf.Tensor): void {
    const m = this.model
    if (parts.length === 0) throw new StageStateError('a hop must run at least one part')
    for (const part of parts) {
      if (part === 'embed' && !this.layout.hasEmbed) throw new StageStateError(`stage ${this.stage} has no embedding`)
      if (part === 'head' && !this.layout.hasHead) throw new StageStateError(`stage ${this.stage} has no head`)
    }
    if (parts[0] === 'embed') {
      if (x.dtype !== 'int32' || x.rank !== 2) throw new ShapeMismatchError(`embed input must be int32 [B,T], got ${x.dtype} [${x.shape.join(',')}]`)
    } else if (x.dtype !== 'float32' || x.rank !== 3 || x.shape[2] !== m.dModel) {
      throw new ShapeMismatchError(`stage ${this.stage} input must be float32 [B,T,${m.dModel}], got ${x.dtype} [${x.shape.join(',')}]`)
    }
    if (x.shape[1] as number > m.seqLen) throw new ShapeMismatchError(`sequence length ${x.shape[1]} exceeds model.seqLen ${m.seqLen}`)
    if (parts[parts.length - 1] === 'head') {
      if (targets == null) throw new StageStateError(`stage ${this.stage} runs the head and needs targets`)
      if (targets.dtype !== 'int32' || targets.shape[0] !== x.shape[0] || targets.shape[1] !== x.shape[1]) {
        throw new ShapeMismatchError(`targets must be int32 [${x.shape[0]},${x.shape[1]}], got ${targets.dtype} [${targets.shape.join(',')}]`)
      }
    }
  }

  /** Runs `parts` in order: embed (tokens -> stream), blocks, head (stream -> loss). */
  private run (p: Params, parts: Part[], x: tf.Tensor, targets?: tf.Tensor2D): tf.Tensor {
    let h = x
    for (const part of parts) {
      if (part === 'embed') h = embed(this.model, p, h as tf.Tensor2D)
      else if (part === 'blocks') {
        for (let i = this.layout.firstBlock; i < this.layout.endBlock; i++) h = block(this.model, p, i, h as tf.Tensor3D)
      } else h = headLoss(this.model, p, h as tf.Tensor3D, targets as tf.Tensor2D)
    }
    return h
  }

  /**
   * Forward one hop of one microbatch. Returns the stage output [B,T,D], or the scalar loss when the
   * hop ends with the head. The input is kept under `key` until backward(key) or dropSaved().
   */
  forward (key: string, x: tf.Tensor, parts: Part[], targets?: tf.Tensor2D): tf.Tensor {
    this.checkInput(x, parts, targets)
    if (this.saved.has(key)) throw new StageStateError(`stage ${this.stage}: forward for ${key} already pending`)
    const out = tf.tidy(() => this.run(this.lookup(), parts, x, targets))
    this.saved.set(key, { x: tf.keep(x.clone()), parts: [...parts], targets: targets != null ? tf.keep(targets.clone()) : undefined })
    return out
  }

  /** Forward without keeping anything for backward (validation). */
  evaluate (x: tf.Tensor, parts: Part[], targets?: tf.Tensor2D): tf.Tensor {
    this.checkInput(x, parts, targets)
    return tf.tidy(() => this.run(this.lookup(), parts, x, targets))
  }

  /**
   * Backward one hop: a vector-Jacobian product with `dy` (the gradient of the loss with respect to
   * this hop's output; omit it when the hop ends with the loss). Adds the parameter gradients to the
   * accumulators and returns dx [B,T,D], or null when the hop started from tokens.
   */
  backward (key: string, dy?: tf.Tensor): tf.Tensor | null {
    const s = this.saved.get(key)
    if (s == null) throw new StageStateError(`stage ${this.stage}: backward for ${key} without a pending forward`)
    const endsWithLoss = s.parts[s.parts.length - 1] === 'head'
    if (endsWithLoss && dy != null) throw new StageStateError('the loss hop takes no upstream gradient')
    if (!endsWithLoss) {
      if (dy == null) throw new StageStateError(`stage ${this.stage}: backward for ${key} needs dy`)
      if (dy.dtype !== 'float32' || dy.shape.join(',') !== [s.x.shape[0], s.x.shape[1], this.model.dModel].join(',')) {
        throw new ShapeMismatchError(`dy must be float32 [${s.x.shape[0]},${s.x.shape[1]},${this.model.dModel}], got ${dy.dtype} [${dy.shape.join(',')}]`)
      }
    }
    const names = s.parts.flatMap(part => partSpecs(this.model, this.layout, part).map(spec => spec.name))
    const tokensIn = s.parts[0] === 'embed'
    const result: tf.Tensor[] = tf.tidy(() => {
      const f = (...args: tf.Tensor[]): tf.Tensor => {
        const xArg = tokensIn ? s.x : args[0]
        const ps = tokensIn ? args : args.slice(1)
        const byName = new Map<string, tf.Tensor>(names.map((n, i) => [n, ps[i]]))
        return this.run(this.lookup(byName), s.parts, xArg, s.targets)
      }
      const paramTensors = names.map(n => this.params.get(n) as tf.Tensor)
      const args = tokensIn ? paramTensors : [s.x, ...paramTensors]
      const gs = tf.grads(f)(args, dy ?? tf.scalar(1))
      const pg = tokensIn ? gs : gs.slice(1)
      names.forEach((n, i) => {
        const prev = this.grads.get(n)
        const next = tf.keep(prev != null ? tf.add(prev, pg[i]) : pg[i])
        prev?.dispose()
        this.grads.set(n, next)
      })
      return tokensIn ? [] : [gs[0]]
    })
    this.releaseSaved(key)
    return result[0] ?? null
  }

  private releaseSaved (key: string): void {
    const s = this.saved.get(key)
    if (s == null) return
    s.x.dispose()
    s.targets?.dispose()
    this.saved.delete(key)
  }

  /** Pending forwards (hops with a kept input and no backward yet). */
  get pending (): number { return this.saved.size }

  /** Drop kept inputs, e.g. when an iteration aborts. */
  dropSaved (): void {
    for (const k of [...this.saved.keys()]) this.releaseSaved(k)
  }

  /** Forget accumulated gradients without stepping (an aborted iteration). */
  discardGradients (): void {
    for (const g of this.grads.values()) g.dispose()
    this.grads.clear()
  }

  /** Accumulated gradients (the sum over microbatches), for tests and the gradient-norm report. */
  gradients (): Map<string, tf.Tensor> { return this.grads }

  /**
   * Average the accumulated gradients over `microbatches`, clip the stage's gradient to clipNorm,
   * record the post-clip norm and take one Adam step. A non-finite gradient throws NonFiniteError and
   * leaves weights and optimizer state untouched (the gradients are discarded).
   */
  step (microbatches: number): StepResult {
    if (this.grads.size === 0) throw new StageStateError(`stage ${this.stage}: step without gradients`)
    if (this.saved.size > 0) throw new StageStateError(`stage ${this.stage}: step with ${this.saved.size} backward passes pending`)
    try {
      const norm = tf.tidy(() => {
        const sq = [...this.grads.values()].map(g => tf.sum(tf.square(g)))
        return Math.sqrt(tf.addN(sq).dataSync()[0]) / microbatches
      })
      if (!Number.isFinite(norm)) throw new NonFiniteError(`stage ${this.stage}: gradient norm is ${norm}; step skipped, weights unchanged`)
      const scale = norm > this.clipNorm ? this.clipNorm / norm : 1
      const clipped = new Map<string, tf.Tensor>()
      for (const [n, g] of this.grads) clipped.set(n, tf.tidy(() => tf.mul(g, scale / microbatches)))
      try {
        this.adam.apply(this.params, clipped)
      } finally {
        for (const g of clipped.values()) g.dispose()
      }
      this.lastGradNorm = norm * scale
      this.weightVersion += 1
      return { preClipNorm: norm, gradNorm: this.lastGradNorm }
    } finally {
      this.discardGradients()
    }
  }

  /** Parameter values copied to the host, by name. */
  readParams (): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>()
    for (const [n, v] of this.params) out.set(n, v.dataSync() as Float32Array)
    return out
  }

  dispose (): void {
    this.dropSaved()
    this.discardGradients()
    for (const v of this.params.values()) v.dispose()
    this.params.clear()
    this.adam.dispose()
  }
}

/**
 * A pipeline stage: a contiguous slice of the transformer's parameters, its gradient accumulators
 * and its Adam state. The peer runtime and the local trainer drive it the same way:
 *
 *   forward(key, x, parts)  -> output        (keeps what backward needs under `key`)
 *   backward(key, dy)       -> dx            (accumulates this microbatch's parameter gradients)
 *   step(microbatches)      -> gradient norm (average, clip to clipNorm, Adam)
 *
 * Backward uses the hand-written layer gradients of layers.ts and the activations forward kept, so
 * nothing is recomputed (6 units of work per token and weight). With `recompute` set, forward keeps
 * only its input and backward runs the forward again first: +33% FLOPs for far less memory when
 * many microbatches are in flight.
 */
import * as tf from '@tensorflow/tfjs'
import { Adam } from './adam.js'
import type { ModelConfig, TrainConfig } from './config.js'
import { MissingParameterError, NonFiniteError, ShapeMismatchError, SpotpipeError } from '../common/index.js'
import { initialValues, partSpecs, stageSpecs, type ParamSpec, type Part, type StageLayout } from './params.js'
import { blockBwd, blockFwd, disposeCache, embedBwd, embedFwd, emptyCache, headBwd, headFwd, type Cache, type Params } from './layers.js'
import { hostCopy, hostTensor } from './ops.js'

interface Saved {
  parts: Part[]
  B: number
  T: number
  /** What backward needs; empty in recompute mode until backward rebuilds it. */
  cache: Cache
  /** Kept only in recompute mode. */
  x?: tf.Tensor
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
  /** Keep only hop inputs and recompute the forward in backward. @default false */
  recompute?: boolean
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
  readonly recompute: boolean
  adam: Adam
  /** Post-clip gradient norm of the last optimizer step (0 before the first). */
  lastGradNorm = 0
  /**
   * The committed iteration this stage's state belongs to: -1 for the seeded initial weights, `it`
   * after the commit of iteration `it`. Not the optimizer step count (that is `adam.step`): a stage
   * restored from an older checkpoint, or rebuilt from its neighbours, belongs to the iteration it
   * was installed at even though its content is older.
   */
  iteration = -1
  private readonly grads = new Map<string, tf.Tensor>()
  /**
   * A copy of another stage's embedding or head this stage runs but does not own (CheckFree+'s paper
   * layout, model/schedule.ts sharedPart): its weights, set by borrow(), and the gradient that
   * backward accumulates for them, read by borrowedGradientSums(). Never stepped, exported or
   * checkpointed here: the owner steps the part and the holder borrows its new weights again.
   */
  private borrowed?: { part: 'embed' | 'head', specs: ParamSpec[], params: Map<string, tf.Tensor>, grads: Map<string, tf.Tensor> }
  private readonly saved = new Map<string, Saved>()
  private prepared: StepResult | undefined

  constructor (init: StageInit) {
    this.model = init.model
    this.layout = init.layout
    this.clipNorm = init.train.clipNorm
    this.recompute = init.recompute ?? false
    this.specs = stageSpecs(init.model, init.layout)
    for (const spec of this.specs) {
      const given = init.values?.get(spec.name)
      const size = spec.shape.reduce((a, b) => a * b, 1)
      if (given != null && given.length !== size) {
        throw new ShapeMismatchError(`${spec.name}: expected ${size} values for shape [${spec.shape.join(',')}], got ${given.length}`)
      }
      const data = given ?? initialValues(spec, init.model.initSeed)
      const name = `${spec.name}#${variableCounter++}`
      // Inside tidy so the starting tensor is freed; the variable itself survives.
      this.params.set(spec.name, tf.tidy(() => tf.variable(hostTensor(data, spec.shape), true, name)))
    }
    this.adam = new Adam(init.train, init.lrScale ?? 1)
  }

  get stage (): number { return this.layout.stage }

  private lookup (names?: Map<string, tf.Tensor>): Params {
    return (name: string) => {
      const t = names != null ? names.get(name) : (this.params.get(name) ?? this.borrowed?.params.get(name))
      if (t == null) throw new MissingParameterError(`stage ${this.stage} has no parameter ${name}`)
      return t
    }
  }

  private checkInput (x: tf.Tensor, parts: Part[], targets?: tf.Tensor): void {
    const m = this.model
    if (parts.length === 0) throw new StageStateError('a hop must run at least one part')
    for (const part of parts) {
      if (part === 'embed' && !this.layout.hasEmbed && this.borrowed?.part !== 'embed') throw new StageStateError(`stage ${this.stage} has no embedding`)
      if (part === 'head' && !this.layout.hasHead && this.borrowed?.part !== 'head') throw new StageStateError(`stage ${this.stage} has no head`)
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

  /**
   * Runs `parts` in order (embed: tokens [B,T] -> [N,D]; blocks; head: -> loss), filling `cache`
   * with what backward needs. Returns [B,T,D], or the scalar loss when the hop ends with the head.
   */
  private run (parts: Part[], x: tf.Tensor, targets: tf.Tensor2D | undefined, cache: Cache): tf.Tensor {
    const m = this.model
    const p = this.lookup()
    const [B, T] = x.shape as [number, number]
    let h: tf.Tensor2D | undefined
    for (const part of parts) {
      if (part === 'embed') h = embedFwd(m, p, x as tf.Tensor2D, cache)
      else if (part === 'blocks') {
        h = h ?? x.reshape([B * T, m.dModel]) as tf.Tensor2D
        for (let i = this.layout.firstBlock; i < this.layout.endBlock; i++) h = blockFwd(m, p, i, h, B, T, cache)
      } else return headFwd(m, p, h ?? x.reshape([B * T, m.dModel]) as tf.Tensor2D, (targets as tf.Tensor2D).reshape([B * T]) as tf.Tensor1D, cache)
    }
    return (h as tf.Tensor2D).reshape([B, T, m.dModel])
  }

  /**
   * Forward one hop of one microbatch. Returns the stage output [B,T,D], or the scalar loss when the
   * hop ends with the head. What backward needs stays under `key` until backward(key) or dropSaved().
   */
  forward (key: string, x: tf.Tensor, parts: Part[], targets?: tf.Tensor2D): tf.Tensor {
    this.checkInput(x, parts, targets)
    if (this.saved.has(key)) throw new StageStateError(`stage ${this.stage}: forward for ${key} already pending`)
    const [B, T] = x.shape as [number, number]
    const { out, cache } = tf.tidy(() => {
      const c = emptyCache()
      const o = this.run(parts, x, targets, c)
      // tidy keeps every tensor in the returned container, the cache's included
      return { out: o, cache: (this.recompute ? emptyCache() : c) as unknown as tf.TensorContainer }
    }) as unknown as { out: tf.Tensor, cache: Cache }
    this.saved.set(key, {
      parts: [...parts],
      B,
      T,
      cache,
      x: this.recompute ? tf.keep(x.clone()) : undefined,
      targets: this.recompute && targets != null ? tf.keep(targets.clone()) : undefined
    })
    return out
  }

  /** Forward without keeping anything for backward (validation). */
  evaluate (x: tf.Tensor, parts: Part[], targets?: tf.Tensor2D): tf.Tensor {
    this.checkInput(x, parts, targets)
    return tf.tidy(() => this.run(parts, x, targets, emptyCache()))
  }

  /** Adds `g` to the accumulated gradient of `name` (called inside a tidy). */
  private readonly sink = (name: string, g: tf.Tensor): void => {
    const into = this.borrowed?.params.has(name) === true ? this.borrowed.grads : this.grads
    const prev = into.get(name)
    const next = prev != null ? tf.add(prev, g) : g
    tf.keep(next)
    prev?.dispose()
    into.set(name, next)
  }

  /**
   * Runs `part` (the embedding or head this stage does not own) with `values` from now on, replacing
   * any weights borrowed before. Call between iterations: gradients of the old weights must have
   * been read (borrowedGradientSums) or dropped.
   */
  borrow (part: 'embed' | 'head', values: ReadonlyMap<string, Float32Array>): void {
    if ((part === 'embed' && this.layout.hasEmbed) || (part === 'head' && this.layout.hasHead)) throw new StageStateError(`stage ${this.stage} owns its ${part}; it cannot borrow one`)
    // a pending forward of this iteration used no borrowed weights (the runtime borrows before the first that does)
    if (this.borrowed != null && this.borrowed.grads.size > 0) throw new StageStateError(`stage ${this.stage}: borrowed ${part} replaced while its gradient is pending`)
    const specs = partSpecs(this.model, { ...this.layout, hasEmbed: part === 'embed', hasHead: part === 'head' }, part)
    const params = new Map<string, tf.Tensor>()
    try {
      for (const spec of specs) {
        const v = values.get(spec.name)
        if (v == null) throw new MissingParameterError(`borrowed ${part} lacks ${spec.name}`)
        const size = spec.shape.reduce((a, b) => a * b, 1)
        if (v.length !== size) throw new ShapeMismatchError(`borrowed ${spec.name}: expected ${size} values for shape [${spec.shape.join(',')}], got ${v.length}`)
        params.set(spec.name, hostTensor(v, spec.shape))
      }
    } catch (err) {
      for (const t of params.values()) t.dispose()
      throw err
    }
    this.dropBorrowed()
    this.borrowed = { part, specs, params, grads: new Map() }
  }

  /** The part borrowed now, if any. */
  get borrowedPart (): 'embed' | 'head' | undefined { return this.borrowed?.part }

  /**
   * The accumulated gradient sums of the borrowed `part` (spec order, zeros where no microbatch
   * reached it, all zeros when nothing was borrowed this iteration); they are dropped here.
   */
  borrowedGradientSums (part: 'embed' | 'head'): Float32Array[] {
    const b = this.borrowed
    if (b != null && b.part !== part) throw new StageStateError(`stage ${this.stage} borrows a ${b.part}, not a ${part}`)
    if (this.saved.size > 0) throw new StageStateError(`stage ${this.stage}: borrowed gradients read with ${this.saved.size} backward passes pending`)
    const specs = b?.specs ?? partSpecs(this.model, { ...this.layout, hasEmbed: part === 'embed', hasHead: part === 'head' }, part)
    const out = specs.map(spec => {
      const g = b?.grads.get(spec.name)
      return g != null ? hostCopy(g) : new Float32Array(spec.shape.reduce((a, b) => a * b, 1))
    })
    this.discardBorrowedGradients()
    return out
  }

  private discardBorrowedGradients (): void {
    if (this.borrowed == null) return
    for (const g of this.borrowed.grads.values()) g.dispose()
    this.borrowed.grads.clear()
  }

  private dropBorrowed (): void {
    if (this.borrowed == null) return
    this.discardBorrowedGradients()
    for (const t of this.borrowed.params.values()) t.dispose()
    this.borrowed = undefined
  }

  /**
   * The accumulated gradient sums of one owned part (spec order, zeros where no microbatch reached
   * it): what the owner of a shared embedding or head adds to its holder's before the step.
   */
  partGradientSums (part: 'embed' | 'head'): Float32Array[] {
    if (this.saved.size > 0) throw new StageStateError(`stage ${this.stage}: gradients read with ${this.saved.size} backward passes pending`)
    return partSpecs(this.model, this.layout, part).map(spec => {
      const g = this.grads.get(spec.name)
      return g != null ? hostCopy(g) : new Float32Array(spec.shape.reduce((a, b) => a * b, 1))
    })
  }

  /** Replaces one owned part's accumulated gradients with `sums` (spec order; taken over, not copied). */
  setPartGradientSums (part: 'embed' | 'head', sums: Float32Array[]): void {
    const specs = partSpecs(this.model, this.layout, part)
    if (specs.length === 0) throw new StageStateError(`stage ${this.stage} has no ${part}`)
    if (sums.length !== specs.length) throw new ShapeMismatchError(`stage ${this.stage}: ${sums.length} gradient arrays for the ${specs.length} parameters of its ${part}`)
    if (this.prepared != null) throw new StageStateError(`stage ${this.stage}: gradients replaced after the step was prepared`)
    const next = specs.map((spec, i) => {
      const size = spec.shape.reduce((a, b) => a * b, 1)
      if (sums[i].length !== size) throw new ShapeMismatchError(`${spec.name}: expected ${size} gradient values for shape [${spec.shape.join(',')}], got ${sums[i].length}`)
      return [spec.name, hostTensor(sums[i], spec.shape)] as const
    })
    for (const [n, t] of next) {
      this.grads.get(n)?.dispose()
      this.grads.set(n, t)
    }
  }

  /**
   * Backward one hop: a vector-Jacobian product with `dy` (the gradient of the loss with respect to
   * this hop's output; omit it when the hop ends with the loss). Adds the parameter gradients to the
   * accumulators and returns dx [B,T,D], or null when the hop started from tokens.
   */
  backward (key: string, dy?: tf.Tensor): tf.Tensor | null {
    const s = this.saved.get(key)
    if (s == null) throw new StageStateError(`stage ${this.stage}: backward for ${key} without a pending forward`)
    const m = this.model
    const { B, T } = s
    const endsWithLoss = s.parts[s.parts.length - 1] === 'head'
    if (endsWithLoss && dy != null) throw new StageStateError('the loss hop takes no upstream gradient')
    if (!endsWithLoss) {
      if (dy == null) throw new StageStateError(`stage ${this.stage}: backward for ${key} needs dy`)
      if (dy.dtype !== 'float32' || dy.shape.join(',') !== [B, T, m.dModel].join(',')) {
        throw new ShapeMismatchError(`dy must be float32 [${B},${T},${m.dModel}], got ${dy.dtype} [${dy.shape.join(',')}]`)
      }
    }
    const p = this.lookup()
    const result: tf.Tensor[] = tf.tidy(() => {
      let c = s.cache
      if (this.recompute) {
        c = emptyCache()
        this.run(s.parts, s.x as tf.Tensor, s.targets, c)
      }
      let d: tf.Tensor2D | undefined
      for (const part of [...s.parts].reverse()) {
        if (part === 'head') d = headBwd(m, p, B * T, c, this.sink)
        else if (part === 'blocks') {
          d = d ?? (dy as tf.Tensor).reshape([B * T, m.dModel]) as tf.Tensor2D
          for (let i = this.layout.endBlock - 1; i >= this.layout.firstBlock; i--) d = blockBwd(m, p, i, d, B, T, c, this.sink)
        } else {
          embedBwd(m, d ?? (dy as tf.Tensor).reshape([B * T, m.dModel]) as tf.Tensor2D, B, T, c, this.sink)
          d = undefined
        }
      }
      return d != null ? [d.reshape([B, T, m.dModel])] : []
    })
    this.releaseSaved(key)
    return result[0] ?? null
  }

  private releaseSaved (key: string): void {
    const s = this.saved.get(key)
    if (s == null) return
    disposeCache(s.cache)
    s.x?.dispose()
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
    this.discardBorrowedGradients()
  }

  /** Accumulated gradients (the sum over microbatches), for tests and the gradient-norm report. */
  gradients (): Map<string, tf.Tensor> { return this.grads }

  /**
   * The accumulated gradient sums as host arrays, one per parameter in spec order (zeros for a
   * parameter no microbatch reached): what data-parallel replicas of the stage all-reduce before
   * the step. Call between the last backward and prepareStep().
   */
  gradientSums (): Float32Array[] {
    if (this.saved.size > 0) throw new StageStateError(`stage ${this.stage}: gradients read with ${this.saved.size} backward passes pending`)
    return this.specs.map(spec => {
      const g = this.grads.get(spec.name)
      return g != null ? hostCopy(g) : new Float32Array(spec.shape.reduce((a, b) => a * b, 1))
    })
  }

  /**
   * Replaces the accumulated gradients with `sums` (spec order, e.g. gradientSums() added over every
   * replica of the stage; the arrays are taken over, not copied), so prepareStep(M) with the iteration's total microbatch count averages
   * over all of them. Every replica given the same sums takes the same step, bit for bit.
   */
  setGradientSums (sums: Float32Array[]): void {
    if (sums.length !== this.specs.length) throw new ShapeMismatchError(`stage ${this.stage}: ${sums.length} gradient arrays for ${this.specs.length} parameters`)
    if (this.prepared != null) throw new StageStateError(`stage ${this.stage}: gradients replaced after the step was prepared`)
    const next = this.specs.map((spec, i) => {
      const size = spec.shape.reduce((a, b) => a * b, 1)
      if (sums[i].length !== size) throw new ShapeMismatchError(`${spec.name}: expected ${size} gradient values for shape [${spec.shape.join(',')}], got ${sums[i].length}`)
      return [spec.name, hostTensor(sums[i], spec.shape)] as const
    })
    this.discardGradients()
    for (const [n, t] of next) this.grads.set(n, t)
  }

  /**
   * Average the accumulated gradients over `microbatches`, clip the stage's gradient to clipNorm,
   * record the post-clip norm and take one Adam step: prepareStep() then commitStep().
   */
  step (microbatches: number): StepResult {
    const r = this.prepareStep(microbatches)
    this.commitStep()
    return r
  }

  /**
   * First half of a step, for the two-phase iteration of a distributed run: averages and clips the
   * gradient and returns its norms, but leaves weights and optimizer untouched until commitStep()
   * (or abortStep(), when the coordinator aborts the iteration). A non-finite gradient throws
   * NonFiniteError and discards the gradients.
   */
  prepareStep (microbatches: number): StepResult {
    if (this.prepared != null) throw new StageStateError(`stage ${this.stage}: a prepared step is already waiting for commit`)
    if (this.grads.size === 0) throw new StageStateError(`stage ${this.stage}: step without gradients`)
    if (this.saved.size > 0) throw new StageStateError(`stage ${this.stage}: step with ${this.saved.size} backward passes pending`)
    if (!Number.isInteger(microbatches) || microbatches < 1) throw new StageStateError(`microbatches must be a positive integer, got ${microbatches}`)
    try {
      const norm = tf.tidy(() => {
        const sq = [...this.grads.values()].map(g => tf.sum(tf.square(g)))
        return Math.sqrt(tf.addN(sq).dataSync()[0]) / microbatches
      })
      if (!Number.isFinite(norm)) throw new NonFiniteError(`stage ${this.stage}: gradient norm is ${norm}; step skipped, weights unchanged`)
      const scale = norm > this.clipNorm ? this.clipNorm / norm : 1
      for (const [n, g] of this.grads) {
        this.grads.set(n, tf.tidy(() => tf.mul(g, scale / microbatches)))
        g.dispose()
      }
      this.prepared = { preClipNorm: norm, gradNorm: norm * scale }
      return this.prepared
    } catch (err) {
      this.discardGradients()
      throw err
    }
  }

  /**
   * Second half of a step: Adam on the prepared gradient. With `iteration`, the state then belongs
   * to that committed iteration; without it (the local trainer) it moves one iteration on.
   */
  commitStep (iteration = this.iteration + 1): StepResult {
    const r = this.prepared
    if (r == null) throw new StageStateError(`stage ${this.stage}: commit without a prepared step`)
    try {
      this.adam.apply(this.params, this.grads)
      this.lastGradNorm = r.gradNorm
      this.iteration = iteration
      return r
    } finally {
      this.abortStep()
    }
  }

  /** Drop a prepared step (or accumulated gradients) without touching weights. */
  abortStep (): void {
    this.prepared = undefined
    this.discardGradients()
  }

  /**
   * Commit iteration `iteration` without its step: the pipeline met a non-finite loss or gradient,
   * so the gradient is dropped and weights and optimizer stay as they are, but the state now belongs
   * to that iteration (sparse checkpoints ask for it).
   */
  skipStep (iteration = this.iteration + 1): void {
    this.abortStep()
    this.iteration = iteration
  }

  /** True between prepareStep() and commitStep()/abortStep(). */
  get hasPreparedStep (): boolean { return this.prepared != null }

  /**
   * Packs the weights for the next forward now, while the stage would otherwise wait. On wasm,
   * matMul(x, W) packs W into XNNPACK's layout the first time it sees that W and caches the packed
   * copy until W is disposed; every Adam step makes new W tensors, so the first forward after a
   * commit repacks all of them: 2.5 ms per 1M weights measured here, against 0.4 ms for the
   * 8-token matmul itself, so ~60 ms of a 100 MB stage's 8-token forward. A one-row matMul with each
   * weight fills the cache (it holds across batch sizes); stages downstream of the first do this
   * while the first computes. Other backends have no such cache: nothing to do there.
   */
  prepack (): void {
    if (tf.getBackend() !== 'wasm') return
    tf.tidy(() => {
      for (const [name, w] of [...this.params, ...(this.borrowed?.params ?? [])]) {
        if (w.rank !== 2 || name === 'embed.pos') continue // every other matrix is a matMul's right operand in forward
        tf.matMul(tf.zeros([1, w.shape[0]]) as tf.Tensor2D, w as tf.Tensor2D)
      }
    })
  }

  /** Parameter values copied to the host, by name. */
  readParams (): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>()
    for (const [n, v] of this.params) out.set(n, hostCopy(v))
    return out
  }

  dispose (): void {
    this.dropSaved()
    this.discardGradients()
    this.dropBorrowed()
    for (const v of this.params.values()) v.dispose()
    this.params.clear()
    this.adam.dispose()
  }
}

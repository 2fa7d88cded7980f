/**
 * Redundant computation (strategy redundant-compute, Bamboo-style): one stage's shadow of its
 * successor j = (me + 1) % S, trained alongside the stage so that it stays an exact copy without a
 * transfer. The runtime (stage-runtime.ts) owns the iteration and calls in at named points:
 *
 *   begin(it)            a new iteration: stage S-1 (shadowing stage 0) queues the tokens as inputs
 *   offerInput(mb, out)  this stage's output for microbatch mb, which is also the shadow's input
 *   gradient(mb, dy)     the gradient of stage j's output, which stage j + 1 sends here too (none
 *                        for the last stage's shadow: it ends with the loss)
 *   runTask()            one piece of shadow work, when the stage's own work is blocked
 *   done                 every shadow backward of the iteration has run
 *   prepare / commit / skip / drop   the two-phase step, in step with the stage's
 *
 * The shadow runs the successor's hop of the plain route (hop j runs on stage j) with the same
 * weights, inputs and gradients, accumulates in the same microbatch order, and is clipped and
 * stepped the same way, so it holds what stage j holds, bit for bit. It is pulled once per
 * assignment (ShadowComputeLink.stage); a shadow that misses a step is stale and not trained again
 * under that assignment (its holder's heartbeat then shows it behind, and the ladder skips it).
 */
import * as tf from '@tensorflow/tfjs'
import { createLog, NonFiniteError } from '../common/index.js'
import { route, type Stage } from '../model/index.js'
import { UnexpectedFrameError } from './errors.js'

const log = createLog('runtime')

/** Redundant computation (strategy redundant-compute): where this stage's shadow of its successor comes from. */
export interface ShadowComputeLink {
  /**
   * The shadow, an exact copy of the successor's state as it was committed before the assignment's
   * first iteration (pulled once per assignment, then trained here). `signal` is aborted when the
   * runtime is disposed.
   */
  stage: (signal: AbortSignal) => Promise<Stage>
}

export interface ShadowTrainerInit {
  link: ShadowComputeLink
  /** The stage this peer trains, and the stage count. */
  me: number
  stages: number
  /** The microbatches this stage runs (ascending): the shadow runs the same. */
  microbatches: readonly number[]
  /** A microbatch's tokens and targets for iteration `it` (the runtime's sampling). */
  batch: (it: number, mb: number) => { inputs: Int32Array, targets: Int32Array }
  /** [microbatchSize, seqLen]. */
  tokenShape: [number, number]
  /** Called when shadow work became runnable (the shadow arrived). */
  wake: () => void
}

export class ShadowTrainer {
  /** The successor this stage shadows; on the plain route also the index of the hop it runs. */
  readonly of: number
  private readonly init: ShadowTrainerInit
  private shadow?: Stage
  private fetching?: AbortController
  /** The shadow missed a step (it could not be fetched, or had none to commit): no more work under this assignment. */
  stale = false
  private iteration = -1
  private forwards: Array<{ mb: number, x: tf.Tensor }> = []
  /** Microbatch -> the gradient of the shadow's output (null: the loss hop needs none). */
  private readonly ready = new Map<number, tf.Tensor | null>()
  private forwarded = new Set<number>()
  /** Index into init.microbatches of the next shadow backward (they run in microbatch order). */
  private next = 0
  /** Bumped whenever the iteration's work is dropped: a task resuming after an await checks it. */
  private generation = 0

  constructor (init: ShadowTrainerInit) {
    this.init = init
    this.of = (init.me + 1) % init.stages
  }

  /** True while the shadow is trained (not stale). */
  get active (): boolean { return !this.stale }

  /** Every shadow backward of the iteration has run (or the shadow is stale: nothing to wait for). */
  get done (): boolean { return this.stale || this.next === this.init.microbatches.length }

  /** True for a gradient frame (mb, hop) meant for the shadow: the gradient of stage `of`'s hop, not the last. */
  takesGradient (hop: number, hops: number): boolean {
    return hop === this.of && hop < hops - 1
  }

  begin (it: number): void {
    this.iteration = it
    this.next = 0
    this.forwarded = new Set()
    if (this.stale) return
    this.fetch()
    if (this.of === 0) {
      for (const mb of this.init.microbatches) this.forwards.push({ mb, x: tf.tensor2d(this.init.batch(it, mb).inputs, this.init.tokenShape, 'int32') })
    }
  }

  /** This stage's output for `mb`, taken over (disposed here); used when this stage feeds the shadowed one. */
  offerInput (mb: number, out: tf.Tensor): void {
    if (this.stale) { out.dispose(); return }
    this.forwards.push({ mb, x: out })
  }

  /** The gradient of the shadowed stage's output for `mb` (copied); a repeat is refused. */
  gradient (mb: number, data: Float32Array, shape: number[]): void {
    if (this.stale) return
    if (this.ready.has(mb)) throw new UnexpectedFrameError(`duplicate shadow gradient for microbatch ${mb}`)
    this.ready.set(mb, tf.tensor(data, shape, 'float32'))
  }

  /**
   * Runs one piece of shadow work if one can run: the next backward (in microbatch order, as the
   * successor accumulates) when its gradient is in, else the oldest forward. Returns the compute ms
   * spent, or undefined when nothing could run (the shadow is still being fetched, or waits for a
   * gradient).
   */
  async runTask (): Promise<number | undefined> {
    if (this.stale) return undefined
    const shadow = this.shadow
    if (shadow == null) { this.fetch(); return undefined }
    const j = this.of
    const mb = this.init.microbatches[this.next]
    if (mb != null && this.ready.has(mb) && this.forwarded.has(mb)) {
      const dy = this.ready.get(mb) ?? null
      this.ready.delete(mb)
      this.next += 1
      const t0 = performance.now()
      try {
        shadow.backward(`${mb}:${j}`, dy ?? undefined)?.dispose()
      } finally {
        dy?.dispose()
      }
      return performance.now() - t0
    }
    const task = this.forwards.shift()
    if (task == null) return undefined
    const generation = this.generation
    const hops = route(this.init.stages, task.mb)
    const last = j === hops.length - 1
    const t0 = performance.now()
    let targets: tf.Tensor2D | undefined
    let out: tf.Tensor
    try {
      if (last) targets = tf.tensor2d(this.init.batch(this.iteration, task.mb).targets, this.init.tokenShape, 'int32')
      out = shadow.forward(`${task.mb}:${j}`, task.x, hops[j].parts, targets)
    } finally {
      task.x.dispose()
      targets?.dispose()
    }
    this.forwarded.add(task.mb)
    // only the loss hop's output is read (to wait for the compute); the successor sends its own activations
    if (last) await out.data()
    out.dispose()
    if (generation !== this.generation) return 0
    if (last) this.ready.set(task.mb, null) // the loss hop's backward needs no gradient
    return performance.now() - t0
  }

  /** The stage prepared its step: the shadow prepares the same one (a non-finite one is the successor's too, and the iteration is then skipped). */
  prepare (microbatches: number): void {
    if (this.stale || this.shadow == null) return
    try {
      this.shadow.prepareStep(microbatches)
    } catch (err) {
      if (!(err instanceof NonFiniteError)) throw err
      this.shadow.abortStep()
    }
  }

  commit (it: number): void {
    if (this.stale || this.shadow == null) return
    if (this.shadow.hasPreparedStep) this.shadow.commitStep(it)
    else this.markStale(`it has no step for iteration ${it}`)
  }

  skip (it: number): void {
    if (!this.stale) this.shadow?.skipStep(it)
  }

  /** The iteration's work is dropped (abort, non-finite, skip): inputs, gradients and kept activations go; weights stay. */
  drop (): void {
    this.generation += 1
    for (const f of this.forwards) f.x.dispose()
    this.forwards = []
    for (const t of this.ready.values()) t?.dispose()
    this.ready.clear()
    this.forwarded.clear()
    this.shadow?.dropSaved()
    this.shadow?.abortStep()
  }

  dispose (): void {
    this.drop()
    this.fetching?.abort(new Error('runtime disposed'))
    this.fetching = undefined
  }

  /** Fetches the shadow once per assignment, in the background; wakes the runtime when it is in. A failed fetch leaves the shadow stale. */
  private fetch (): void {
    if (this.shadow != null || this.fetching != null || this.stale) return
    const stop = new AbortController()
    this.fetching = stop
    this.init.link.stage(stop.signal).then(stage => {
      if (this.fetching === stop) this.fetching = undefined
      if (stop.signal.aborted) return
      this.shadow = stage
      this.init.wake()
    }, (err: Error) => {
      if (this.fetching === stop) this.fetching = undefined
      if (stop.signal.aborted) return
      this.markStale(`it could not be fetched: ${err.message}`)
      this.init.wake()
    })
  }

  /** The shadow missed (or will miss) a step: stop training it under this assignment, and say so. */
  private markStale (why: string): void {
    if (this.stale) return
    this.stale = true
    log.info(`stage ${this.init.me}: its shadow of stage ${this.of} is no longer an exact copy (${why}); no more redundant computation under this assignment`)
    this.drop()
  }
}

/**
 * The per-iteration engine of one stage on one peer, independent of the network: it turns `begin`
 * and incoming tensor frames into forward/backward calls on its Stage, hands outgoing tensors to
 * `send`, and reports `done` when every backward hop of the iteration has run.
 *
 * Ordering: forwards run as they arrive, but backward hops run in exactly the order the local
 * trainer uses (microbatch by microbatch, hops in reverse), so gradients accumulate in the same
 * order and the distributed run reproduces the local trainer's numbers.
 *
 * Two-phase step: when the last backward hop is done the stage clips and measures its gradient
 * (prepareStep) and reports; the Adam update happens on the coordinator's commit (or on the next
 * begin, which implies it). An abort discards the gradients and leaves weights untouched, so a
 * redone iteration starts from the same state.
 *
 * Replicas: with R peers per stage, this stage is one of R data-parallel replicas and runs only its
 * share of the iteration's microbatches (model/schedule.ts servingReplica: its lane's, plus the
 * lanes of replicas its stage has lost); before the step its gradient sums are added to the other
 * replicas' (`reduceGradients`, an all-reduce among the stage's peers), so every replica steps on
 * the whole global batch and the replicas stay bit-identical. With R = 1 nothing is exchanged.
 *
 * CheckFree+'s paper layout (model/schedule.ts): stage 1 runs a copy of stage 0's embedding on the
 * swapped microbatches and S-2 a copy of S-1's head (`shared`). Before the step owner and holder add
 * up their gradients for the part (one two-member all-reduce), the owner steps on the sum, and the
 * holder borrows the owner's new weights (the owner's state of iteration it - 1) before its first
 * forward of iteration it that needs them. The copy is never stepped, so it cannot drift.
 *
 * Redundant computation (strategy redundant-compute, Bamboo-style; `shadowCompute`): the stage also
 * trains a shadow of its successor (shadow-trainer.ts) on this stage's own outputs and on the
 * gradient the stage after the successor sends it too (one more frame per microbatch). Shadow work
 * runs when the stage's own work is blocked, and the stage reports done only when both are prepared.
 *
 * Non-finite values: a NaN/Inf loss, parameter gradient, or tensor about to be sent ends the stage's
 * part of the iteration at once. It drops the iteration's work and reports done with `nonFinite`;
 * the coordinator then commits the iteration as skipped, and every stage drops its step (weights and
 * optimizer unchanged) but counts the iteration as committed and moves on to the next one's data.
 */
import * as tf from '@tensorflow/tfjs'
import type { ModelConfig, TrainConfig } from '../model/index.js'
import { sampleBatch, type TokenArray } from '../model/index.js'
import { createLog } from '../common/index.js'
import { NonFiniteError } from '../common/index.js'
import { route, shadowHolder, type Hop, type PlusLayout } from '../model/index.js'
import type { Stage, StepResult } from '../model/index.js'
import { firstNonFinite, MAX_EARLY_ITERATIONS, type Direction, type NonFiniteWhat } from '../protocols/index.js'
import { EarlyFrameError, UnexpectedFrameError } from './errors.js'
import { ShadowTrainer, type ShadowComputeLink } from './shadow-trainer.js'

const log = createLog('runtime')

/** A tensor travelling between stages: which microbatch and hop it belongs to, and its values. */
export interface OutFrame {
  iteration: number
  microbatch: number
  /** Index of the hop that will consume the tensor. */
  hop: number
  direction: Direction
  shape: number[]
  data: Float32Array
}

export interface DoneInfo {
  iteration: number
  /** Mean loss of this replica's microbatches; only on the stage that runs the head. */
  loss?: number
  /** How many microbatches that mean is over (this replica's share of the iteration's). */
  lossMicrobatches?: number
  gradNorm: number
  computeMs: number
  /** With replicas: wall-clock ms of this iteration's gradient all-reduce. */
  allReduceMs?: number
  /** The stage met a non-finite value: its step must not be applied (loss is then absent, gradNorm 0). */
  nonFinite?: NonFiniteWhat
}

export interface StageRuntimeInit {
  stage: Stage
  model: ModelConfig
  train: TrainConfig
  checkfreePlus: boolean
  /** Where CheckFree+'s swapped microbatches embed and run the head. @default 'spotpipe' */
  plusLayout?: PlusLayout
  /** Required when the layout makes this stage share its embedding or head, or hold a copy of one (model/schedule.ts sharedPart). */
  shared?: SharedPartLink
  /** Train a shadow of the successor alongside (strategy redundant-compute); needs no swaps and one replica. */
  shadowCompute?: ShadowComputeLink
  /** Training tokens, for sampling microbatches (stage 0) and targets (the head's stage). */
  trainTokens: TokenArray
  /**
   * This replica's share: the microbatches it runs (ascending, model/schedule.ts
   * replicaMicrobatches) and how many replicas its stage has (the all-reduce group).
   * @default every microbatch, 1 replica
   */
  share?: { microbatches: number[], replicas: number }
  /**
   * Adds this replica's gradient sums (spec order) to every other replica's and returns the sums
   * over all of them, the same on every replica (an all-reduce). Required when share.replicas > 1.
   * `signal` is aborted when the iteration is dropped.
   */
  reduceGradients?: (iteration: number, sums: Float32Array[], signal: AbortSignal) => Promise<Float32Array[]>
  /** Sends a tensor to the stage that runs hop `frame.hop`. */
  send: (toStage: number, frame: OutFrame) => Promise<void>
  /** Called when the stage finished its part of an iteration. */
  done: (info: DoneInfo) => void
  /** Called after the Adam step of a committed iteration (or after a skipped one, weights unchanged: `skipped`). */
  committed?: (iteration: number, skipped: boolean) => void
  /**
   * Called with the iteration's all-reduced gradient sums before the stage takes them over (a
   * joining replica logs them to replay on the state it pulls). Only with share.replicas > 1.
   */
  reduced?: (iteration: number, sums: readonly Float32Array[]) => void
  /** Called just before the stage prepares its step: test-only fault injection (node/faults.ts) poisons the gradient here. */
  beforeStep?: (iteration: number) => void
  /** Called between tasks, so the peer can publish a heartbeat that a long compute would delay. */
  tick?: () => void
  /** Called when processing fails (bad frame, non-finite gradient, send failure). */
  failed: (err: Error, iteration: number) => void
}

/** This stage's side of a shared embedding or head under CheckFree+'s paper layout (model/schedule.ts sharedPart). */
export interface SharedPartLink {
  part: 'embed' | 'head'
  /** The owner steps the part; the holder runs a copy of it on the swapped microbatches. */
  role: 'owner' | 'holder'
  /**
   * Holder only: the owner's weights of the part by name, as committed before iteration `iteration`
   * began (the owner's state of iteration - 1). `signal` is aborted when the iteration is dropped.
   */
  weights?: (iteration: number, signal: AbortSignal) => Promise<ReadonlyMap<string, Float32Array>>
  /** Adds this side's gradient sums of the part (spec order) to the other side's and returns the sums, the same on both. */
  exchange: (iteration: number, sums: Float32Array[], signal: AbortSignal) => Promise<Float32Array[]>
}

export type { ShadowComputeLink }

interface ForwardTask { mb: number, hop: number, x: tf.Tensor }

/**
 * Whether `stage` reads training tokens: stage 0 samples every microbatch's inputs, and the stage
 * holding a microbatch's last hop (the head) samples the same batch (seed, iteration, microbatch)
 * itself for its targets, so no token crosses the network.
 */
export function stageNeedsTokens (stage: number, stages: number, microbatches: number, checkfreePlus: boolean, layout: PlusLayout = 'spotpipe'): boolean {
  for (let mb = 0; mb < microbatches; mb++) {
    const hops = route(stages, mb, checkfreePlus, layout)
    if (hops[0].stage === stage || hops.at(-1)?.stage === stage) return true
  }
  return false
}

export class StageRuntime {
  private readonly init: StageRuntimeInit
  /** Iteration in progress (or prepared and waiting for commit); -1 before the first. */
  iteration = -1
  /** 'prepared': done reported, waiting for the commit (with a step, or with nothing when nonFinite). */
  state: 'idle' | 'running' | 'prepared' = 'idle'
  /** What this stage found non-finite in the current iteration; its commit then skips the step. */
  private nonFinite?: NonFiniteWhat
  /** Bumped whenever the current iteration's work is dropped: a task resuming after an await checks it. */
  private generation = 0
  /**
   * Frames that arrived for an iteration this stage has not begun yet: at most MAX_EARLY_ITERATIONS
   * ahead, each (iteration, direction, microbatch, hop) once, so at most that many iterations' frames.
   */
  private early: Array<{ iteration: number, direction: Direction, mb: number, hop: number, shape: number[], data: Float32Array }> = []
  private forwards: ForwardTask[] = []
  /** Forward inputs taken in the running iteration (`mb:hop`): a repeat is refused, not queued. */
  private forwardsTaken = new Set<string>()
  private readonly ready = new Map<string, tf.Tensor | null>()
  private expected: string[] = []
  private next = 0
  private losses: number[] = []
  private computeMs = 0
  private pumping = false
  /** Cuts off the gradient all-reduce or shared-part exchange in flight when the iteration is dropped. */
  private reducing?: AbortController
  /** The iteration whose borrowed weights the stage holds (paper layout holder); -1: none yet. */
  private borrowedFor = -1
  /** The borrow in flight (paper layout holder), and what cuts it off when the iteration is dropped. */
  private borrowing?: { done: Promise<void>, stop: AbortController }
  /** Redundant computation: this stage's shadow of its successor (shadow-trainer.ts). */
  private readonly shadow?: ShadowTrainer
  private lastDone?: DoneInfo
  /** Wall-clock ms of the last gradient all-reduce (0 with one replica). */
  private allReduceMs = 0
  tokensProcessed = 0

  constructor (init: StageRuntimeInit) {
    const M = init.train.microbatches
    const share = init.share ?? { microbatches: Array.from({ length: M }, (_, m) => m), replicas: 1 }
    // a replica joining its stage runs none (it only adds zeros to the all-reduce, node/replica-join.ts)
    if ((share.microbatches.length === 0 && share.replicas < 2) || share.microbatches.some((m, i) => !Number.isInteger(m) || m < 0 || m >= M || (i > 0 && m <= share.microbatches[i - 1]))) {
      throw new RangeError(`stage ${init.stage.stage}: a replica's microbatches must be distinct, ascending and in 0..${M - 1}, got [${share.microbatches.join(', ')}]`)
    }
    this.replicas = share.replicas
    this.mine = [...share.microbatches]
    if (share.replicas > 1 && init.reduceGradients == null) throw new RangeError(`stage ${init.stage.stage}: ${share.replicas} replicas need reduceGradients`)
    if (init.shared != null && share.replicas > 1) throw new RangeError(`stage ${init.stage.stage}: a shared ${init.shared.part} (CheckFree+ paper layout) works with one replica per stage, not ${share.replicas}`)
    if (init.shared?.role === 'holder' && init.shared.weights == null) throw new RangeError(`stage ${init.stage.stage}: holding a copy of the ${init.shared.part} needs weights()`)
    if (init.shadowCompute != null && (share.replicas > 1 || init.checkfreePlus || init.train.stages < 2)) throw new RangeError(`stage ${init.stage.stage}: redundant computation needs 2 or more stages, one replica per stage and no CheckFree+ swaps`)
    this.init = init
    if (init.shadowCompute != null) {
      this.shadow = new ShadowTrainer({
        link: init.shadowCompute,
        me: init.stage.stage,
        stages: init.train.stages,
        microbatches: this.mine,
        batch: (it, mb) => this.batch(it, mb),
        tokenShape: [init.train.microbatchSize, init.model.seqLen],
        wake: () => { this.pump() }
      })
    }
  }

  /** Replicas of this stage (the all-reduce group), and the microbatches this one runs (ascending). */
  readonly replicas: number
  private readonly mine: number[]

  get stage (): Stage { return this.init.stage }
  private get S (): number { return this.init.train.stages }
  private get M (): number { return this.init.train.microbatches }
  private routeOf (mb: number): Hop[] { return route(this.S, mb, this.init.checkfreePlus, this.init.plusLayout) }

  /** Start iteration `it`. A prepared previous iteration is committed first (begin implies commit). */
  begin (it: number): void {
    if (this.state === 'prepared' && it === this.iteration + 1) this.commit(this.iteration)
    if (it === this.iteration && this.state === 'running') return // duplicate begin
    if (it <= this.iteration && this.state === 'idle') {
      log('stage %d: ignoring begin %d, iteration %d is committed', this.stage.stage, it, this.iteration)
      return
    }
    if (it === this.iteration && this.state === 'prepared') {
      // The coordinator re-sent begin because our done report was lost: report again.
      if (this.lastDone != null) this.init.done(this.lastDone)
      return
    }
    if (this.state !== 'idle') throw new UnexpectedFrameError(`stage ${this.stage.stage}: begin ${it} while iteration ${this.iteration} is ${this.state}`)
    this.iteration = it
    this.state = 'running'
    this.losses = []
    this.computeMs = 0
    this.next = 0
    this.expected = []
    this.forwardsTaken = new Set()
    const me = this.stage.stage
    for (const mb of this.mine) {
      const hops = this.routeOf(mb)
      for (let h = hops.length - 1; h >= 0; h--) if (hops[h].stage === me) this.expected.push(`${mb}:${h}`)
    }
    for (const mb of this.mine) {
      if (this.routeOf(mb)[0].stage !== me) continue // this stage embeds the microbatch (stage 0; stage 1 on swaps in the paper layout)
      const b = this.batch(it, mb)
      this.forwards.push({ mb, hop: 0, x: tf.tensor2d(b.inputs, [this.init.train.microbatchSize, this.init.model.seqLen], 'int32') })
    }
    // the holder of a shared part fetches the owner's weights now, while it waits for its first input
    if (this.init.shared?.role === 'holder') this.startBorrow(this.init.shared)
    this.shadow?.begin(it)
    const early = this.early.filter(f => f.iteration === it)
    this.early = this.early.filter(f => f.iteration > it)
    for (const f of early) this.accept(f.direction, f.mb, f.hop, f.shape, f.data)
    this.pump()
  }

  private batch (it: number, mb: number): { inputs: Int32Array, targets: Int32Array } {
    return sampleBatch(this.init.trainTokens, { seed: this.init.train.dataSeed, iteration: it, microbatch: mb, replica: 0 }, this.init.train.microbatchSize, this.init.model.seqLen)
  }

  /** The stage whose peer may send a `direction` tensor for (microbatch, hop), per the route. */
  expectedSender (direction: Direction, mb: number, hop: number): number {
    if (!Number.isInteger(mb) || mb < 0 || mb >= this.M) throw new UnexpectedFrameError(`microbatch ${mb} out of range 0..${this.M - 1}`)
    if (!this.mine.includes(mb)) throw new UnexpectedFrameError(`microbatch ${mb} is not run by this replica of stage ${this.stage.stage} (it runs ${this.mine.join(', ')})`)
    const hops = this.routeOf(mb)
    const from = direction === 'forward' ? hop - 1 : hop + 1
    if (!Number.isInteger(hop) || from < 0 || from >= hops.length) throw new UnexpectedFrameError(`no hop sends a ${direction} tensor to hop ${hop} of microbatch ${mb}`)
    return hops[from].stage
  }

  /**
   * An incoming tensor for (iteration, microbatch, hop). Checked against the route and the model
   * shape; frames for a later iteration wait for its begin; frames for an earlier one are dropped.
   */
  receive (iteration: number, direction: Direction, mb: number, hop: number, shape: number[], data: Float32Array): void {
    if (iteration < this.iteration || (iteration === this.iteration && this.state !== 'running')) {
      log('stage %d: dropping %s frame of finished iteration %d', this.stage.stage, direction, iteration)
      return
    }
    if (mb < 0 || mb >= this.M) throw new UnexpectedFrameError(`microbatch ${mb} out of range 0..${this.M - 1}`)
    if (!this.mine.includes(mb)) throw new UnexpectedFrameError(`microbatch ${mb} is not run by this replica of stage ${this.stage.stage} (it runs ${this.mine.join(', ')})`)
    const hops = this.routeOf(mb)
    if (hop < 0 || hop >= hops.length || (hops[hop].stage !== this.stage.stage && !this.forShadow(direction, mb, hop))) {
      throw new UnexpectedFrameError(`hop ${hop} of microbatch ${mb} does not run on stage ${this.stage.stage}${this.shadow != null ? ` or its shadow of stage ${this.shadow.of}` : ''}`)
    }
    if (direction === 'backward' && hop === hops.length - 1) throw new UnexpectedFrameError('the loss hop receives no gradient')
    if (direction === 'forward' && hop === 0) throw new UnexpectedFrameError('hop 0 reads tokens, it receives no activations')
    const want = [this.init.train.microbatchSize, this.init.model.seqLen, this.init.model.dModel]
    if (shape.join(',') !== want.join(',')) throw new UnexpectedFrameError(`${direction} tensor shape [${shape.join(',')}], expected [${want.join(',')}]`)
    if (iteration > this.iteration || this.state !== 'running') {
      this.keepEarly({ iteration, direction, mb, hop, shape, data })
      return
    }
    this.accept(direction, mb, hop, shape, data)
    this.pump()
  }

  /** Keeps a frame for a later iteration until its begin; EarlyFrameError if it cannot be kept. */
  private keepEarly (f: StageRuntime['early'][number]): void {
    const what = `${f.direction} frame for iteration ${f.iteration} (microbatch ${f.mb}, hop ${f.hop})`
    const ahead = f.iteration - this.iteration
    if (ahead > MAX_EARLY_ITERATIONS) {
      throw new EarlyFrameError(`stage ${this.stage.stage}: ${what} is ${ahead} iterations ahead of iteration ${this.iteration}; frames are kept for at most ${MAX_EARLY_ITERATIONS} ahead`)
    }
    if (this.early.some(e => e.iteration === f.iteration && e.direction === f.direction && e.mb === f.mb && e.hop === f.hop)) {
      throw new EarlyFrameError(`stage ${this.stage.stage}: duplicate ${what}`)
    }
    // implied by the two checks above (receive validated microbatch and hop); kept as the stated bound
    const limit = MAX_EARLY_ITERATIONS * this.framesPerIteration()
    if (this.early.length >= limit) throw new EarlyFrameError(`stage ${this.stage.stage}: ${what} refused, ${this.early.length} early frames are waiting (limit ${limit})`)
    this.early.push(f)
  }

  /** True for the gradient of the shadowed stage's output (redundant computation), which the stage after it sends here too. */
  private forShadow (direction: Direction, mb: number, hop: number): boolean {
    return this.shadow != null && direction === 'backward' && this.shadow.takesGradient(hop, this.routeOf(mb).length)
  }

  /** Tensors this stage receives in one iteration: a forward input per hop but the first, a gradient per hop but the last (and one per microbatch for a shadow). */
  private framesPerIteration (): number {
    let n = this.shadow != null ? this.mine.length : 0
    for (const mb of this.mine) {
      const hops = this.routeOf(mb)
      hops.forEach((h, i) => { if (h.stage === this.stage.stage) n += (i > 0 ? 1 : 0) + (i < hops.length - 1 ? 1 : 0) })
    }
    return n
  }

  private accept (direction: Direction, mb: number, hop: number, shape: number[], data: Float32Array): void {
    if (direction === 'forward') {
      if (this.forwardsTaken.has(`${mb}:${hop}`)) throw new UnexpectedFrameError(`duplicate activations for ${mb}:${hop}`)
      this.forwardsTaken.add(`${mb}:${hop}`)
    }
    if (this.forShadow(direction, mb, hop)) { this.shadow?.gradient(mb, data, shape); return }
    const t = tf.tensor(data, shape, 'float32')
    if (direction === 'forward') this.forwards.push({ mb, hop, x: t })
    else {
      const key = `${mb}:${hop}`
      if (this.ready.has(key)) { t.dispose(); throw new UnexpectedFrameError(`duplicate gradient for ${key}`) }
      this.ready.set(key, t)
    }
  }

  /** Runs whatever is runnable: the next expected backward first, else the oldest forward. */
  private pump (): void {
    if (this.pumping) return
    this.pumping = true
    const it = this.iteration
    void (async () => {
      try {
        while (this.state === 'running' && this.iteration === it) {
          const key = this.expected[this.next]
          if (key != null && this.ready.has(key)) {
            const dy = this.ready.get(key) ?? null
            this.ready.delete(key)
            this.next += 1
            await this.runBackward(key, dy)
          } else {
            // oldest forward first, but one waiting for borrowed weights lets the others by (the
            // borrow's completion pumps again); else shadow work. A frame that came in while the
            // shadow was asked found this loop busy: look again before leaving.
            const i = this.forwards.findIndex(f => this.canRun(f))
            if (i >= 0) await this.runForward(this.forwards.splice(i, 1)[0])
            else if (!(await this.runShadowTask()) && !this.runnable()) break
          }
          this.init.tick?.()
        }
        if (this.state === 'running' && this.iteration === it && this.next === this.expected.length && (this.shadow?.done ?? true)) await this.finish()
      } catch (err) {
        this.init.failed(err as Error, it)
      } finally {
        this.pumping = false
        // the next iteration began while this one's last task was awaited; its begin found us busy
        if (this.state === 'running' && this.iteration !== it) this.pump()
      }
    })()
  }

  private async runForward (task: ForwardTask): Promise<void> {
    const { mb, hop, x } = task
    const hops = this.routeOf(mb)
    const last = hop === hops.length - 1
    const generation = this.generation
    const t0 = performance.now()
    let out: tf.Tensor
    let targets: tf.Tensor2D | undefined
    try {
      if (last) {
        const b = this.batch(this.iteration, mb)
        targets = tf.tensor2d(b.targets, [this.init.train.microbatchSize, this.init.model.seqLen], 'int32')
      }
      out = this.stage.forward(`${mb}:${hop}`, x, hops[hop].parts, targets)
    } finally {
      x.dispose()
      targets?.dispose()
    }
    if (last) {
      const loss = (await out.data())[0]
      out.dispose()
      if (generation !== this.generation) return // the iteration was dropped meanwhile
      this.computeMs += performance.now() - t0
      if (!Number.isFinite(loss)) { this.reportNonFinite('loss', `microbatch ${mb} has loss ${loss}`); return }
      this.losses.push(loss)
      this.ready.set(`${mb}:${hop}`, null) // the loss hop's backward needs no upstream gradient
      return
    }
    const data = await out.data() as Float32Array
    const shape = [...out.shape]
    // redundant computation: this output is also the shadow's input (the successor runs hop + 1 on it)
    if (this.shadow?.active === true && hops[hop + 1].stage === this.shadow.of && generation === this.generation) this.shadow.offerInput(mb, out)
    else out.dispose()
    if (generation !== this.generation) return
    this.computeMs += performance.now() - t0
    if (!this.sendable('activation', data, mb, hop + 1)) return
    await this.init.send(hops[hop + 1].stage, { iteration: this.iteration, microbatch: mb, hop: hop + 1, direction: 'forward', shape, data })
  }

  private async runBackward (key: string, dy: tf.Tensor | null): Promise<void> {
    const [mb, hop] = key.split(':').map(Number)
    const t0 = performance.now()
    const generation = this.generation
    let dx: tf.Tensor | null
    try {
      dx = this.stage.backward(key, dy ?? undefined)
    } finally {
      dy?.dispose()
    }
    if (dx == null) { this.computeMs += performance.now() - t0; return }
    const data = await dx.data() as Float32Array
    const shape = [...dx.shape]
    dx.dispose()
    if (generation !== this.generation) return
    this.computeMs += performance.now() - t0
    if (!this.sendable('gradient', data, mb, hop - 1)) return
    const prev = this.routeOf(mb)[hop - 1]
    const frame: OutFrame = { iteration: this.iteration, microbatch: mb, hop: hop - 1, direction: 'backward', shape, data }
    if (this.shadow == null) { await this.init.send(prev.stage, frame); return }
    // redundant computation: the shadow of stage hop - 1 (held by its predecessor) needs this gradient too
    const holder = shadowHolder(prev.stage, this.S) as number
    if (holder === this.stage.stage) {
      this.shadow.gradient(mb, data, shape) // two stages: this one shadows its own predecessor
      await this.init.send(prev.stage, frame)
    } else {
      await Promise.all([this.init.send(prev.stage, frame), this.init.send(holder, frame)])
    }
  }

  /** True when the next expected backward's gradient is in, or a forward can run. */
  private runnable (): boolean {
    const key = this.expected[this.next]
    return (key != null && this.ready.has(key)) || this.forwards.some(f => this.canRun(f))
  }

  /** Runs one piece of shadow work (redundant computation); false when none could run. */
  private async runShadowTask (): Promise<boolean> {
    const ms = await this.shadow?.runTask()
    if (ms == null) return false
    this.computeMs += ms
    return true
  }

  /** False for a forward that runs the borrowed part before this iteration's borrow is done. */
  private canRun (f: ForwardTask): boolean {
    const shared = this.init.shared
    if (shared?.role !== 'holder' || this.borrowedFor === this.iteration) return true
    if (!this.routeOf(f.mb)[f.hop].parts.includes(shared.part)) return true
    this.startBorrow(shared)
    return false
  }

  /**
   * Holder of a shared part: fetches the owner's weights for the running iteration (once per
   * iteration) in the background, and pumps when they are in. A failed borrow fails the iteration.
   */
  private startBorrow (shared: SharedPartLink): void {
    if (this.borrowedFor === this.iteration || this.borrowing != null) return
    const it = this.iteration
    const generation = this.generation
    const stop = new AbortController()
    const done = (async () => {
      const values = await (shared.weights as NonNullable<SharedPartLink['weights']>)(it, stop.signal)
      if (generation !== this.generation) return
      this.stage.borrow(shared.part, values)
      this.stage.prepack()
      this.borrowedFor = it
    })()
    const mine = { done, stop }
    this.borrowing = mine
    done.then(() => {
      if (this.borrowing === mine) this.borrowing = undefined
      if (generation === this.generation) this.pump()
    }, (err: Error) => {
      if (this.borrowing === mine) this.borrowing = undefined
      // a dropped iteration cut its borrow off on purpose
      if (generation === this.generation) this.init.failed(err, it)
    })
  }

  /**
   * Paper layout: adds this side's gradient for the shared part to the other side's. The owner
   * takes the sum as its gradient for the part; the holder's copy is not stepped, so it only gives.
   * False when the iteration was dropped meanwhile.
   */
  private async exchangeShared (shared: SharedPartLink): Promise<boolean> {
    const generation = this.generation
    const stop = new AbortController()
    this.reducing = stop
    const mine = shared.role === 'owner' ? this.stage.partGradientSums(shared.part) : this.stage.borrowedGradientSums(shared.part)
    let sums: Float32Array[]
    try {
      sums = await shared.exchange(this.iteration, mine, stop.signal)
    } catch (err) {
      if (generation !== this.generation) return false
      throw err
    } finally {
      if (this.reducing === stop) this.reducing = undefined
    }
    if (generation !== this.generation) return false
    if (shared.role === 'owner') this.stage.setPartGradientSums(shared.part, sums)
    return true
  }

  /** True when `data`, about to be sent for `hop`, is finite; otherwise reports the iteration non-finite. */
  private sendable (what: NonFiniteWhat, data: Float32Array, mb: number, hop: number): boolean {
    const i = firstNonFinite(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
    if (i < 0) return true
    this.reportNonFinite(what, `the ${what} for hop ${hop} of microbatch ${mb} holds ${data[i]} at element ${i}`)
    return false
  }

  /**
   * This stage met a non-finite value in the current iteration: drop the iteration's work (its step
   * must not be applied) and report at once, so that the coordinator commits the iteration as
   * skipped instead of waiting for reports that cannot come.
   */
  private reportNonFinite (what: NonFiniteWhat, detail: string): void {
    log.info(`stage ${this.stage.stage} iteration ${this.iteration}: non-finite ${what} (${detail}): step not applied, reported to the coordinator`)
    this.dropIteration()
    this.stage.abortStep()
    this.nonFinite = what
    this.state = 'prepared'
    this.lastDone = { iteration: this.iteration, gradNorm: 0, computeMs: this.computeMs, nonFinite: what }
    this.init.done(this.lastDone)
  }

  private async finish (): Promise<void> {
    this.tokensProcessed += this.mine.length * this.init.train.microbatchSize * this.init.model.seqLen
    if (this.replicas > 1) {
      // the replicas' gradient sums, added: every replica then steps on the whole global batch
      const generation = this.generation
      const stop = new AbortController()
      this.reducing = stop
      let sums: Float32Array[]
      const r0 = performance.now()
      try {
        sums = await (this.init.reduceGradients as NonNullable<StageRuntimeInit['reduceGradients']>)(this.iteration, this.stage.gradientSums(), stop.signal)
      } catch (err) {
        if (generation !== this.generation) return // the iteration was dropped: its round was cut off on purpose
        throw err
      } finally {
        if (this.reducing === stop) this.reducing = undefined
      }
      if (generation !== this.generation) return
      this.allReduceMs = performance.now() - r0
      this.init.reduced?.(this.iteration, sums)
      this.stage.setGradientSums(sums)
    }
    if (this.init.shared != null && !(await this.exchangeShared(this.init.shared))) return
    const t0 = performance.now()
    this.init.beforeStep?.(this.iteration)
    let r: StepResult
    try {
      r = this.stage.prepareStep(this.M)
    } catch (err) {
      if (!(err instanceof NonFiniteError)) throw err
      this.computeMs += performance.now() - t0
      this.reportNonFinite('gradient', err.message)
      return
    }
    this.shadow?.prepare(this.M)
    this.computeMs += performance.now() - t0
    this.state = 'prepared'
    const hasLoss = this.losses.length > 0
    this.lastDone = {
      iteration: this.iteration,
      loss: hasLoss ? this.losses.reduce((a, b) => a + b, 0) / this.losses.length : undefined,
      lossMicrobatches: hasLoss ? this.losses.length : undefined,
      gradNorm: r.gradNorm,
      computeMs: this.computeMs,
      ...(this.replicas > 1 ? { allReduceMs: this.allReduceMs } : {})
    }
    this.init.done(this.lastDone)
  }

  /**
   * The coordinator committed `it`: apply the prepared Adam step (the stage's state then belongs to
   * `it`); or, when the iteration is skipped (a stage, this one or another, met a non-finite value),
   * drop its work and keep the weights.
   */
  commit (it: number, skipped = false): void {
    if (skipped || (this.nonFinite != null && it === this.iteration)) { this.skip(it); return }
    if (this.state !== 'prepared' || it !== this.iteration) {
      log('stage %d: ignoring commit %d (iteration %d is %s)', this.stage.stage, it, this.iteration, this.state)
      return
    }
    this.stage.commitStep(it)
    this.shadow?.commit(it)
    this.init.tick?.()
    this.state = 'idle'
    this.init.committed?.(it, false)
    this.stage.prepack() // the new weights, before the next forward needs them
  }

  /** A skipped commit of `it`, which this stage is running, has prepared, or never began (its begin was lost). */
  private skip (it: number): void {
    const current = it === this.iteration && this.state !== 'idle'
    const notBegun = it === this.iteration + 1 && this.state === 'idle'
    if (!current && !notBegun) {
      log('stage %d: ignoring skipped commit %d (iteration %d is %s)', this.stage.stage, it, this.iteration, this.state)
      return
    }
    this.iteration = it
    this.dropIteration()
    this.stage.skipStep(it)
    this.shadow?.skip(it)
    this.nonFinite = undefined
    this.state = 'idle'
    this.init.tick?.()
    this.init.committed?.(it, true)
  }

  /** The coordinator aborted `it` (or a new epoch began): drop everything in flight, keep weights. */
  abort (it: number): void {
    if (it !== this.iteration || this.state === 'idle') return
    this.clearInFlight()
    this.stage.abortStep()
    this.nonFinite = undefined
    this.state = 'idle'
    this.iteration = it - 1
  }

  /** Drops the current iteration's tasks, received gradients and kept activations; frames for later iterations stay. */
  private dropIteration (): void {
    this.generation += 1
    this.reducing?.abort(new Error(`iteration ${this.iteration} dropped`))
    this.reducing = undefined
    this.borrowing?.stop.abort(new Error(`iteration ${this.iteration} dropped`))
    this.borrowing = undefined
    this.shadow?.drop()
    for (const f of this.forwards) f.x.dispose()
    this.forwards = []
    for (const t of this.ready.values()) t?.dispose()
    this.ready.clear()
    this.early = this.early.filter(f => f.iteration > this.iteration)
    this.stage.dropSaved()
  }

  private clearInFlight (): void {
    this.dropIteration()
    this.early = []
  }

  dispose (): void {
    this.clearInFlight()
    this.shadow?.dispose()
  }
}

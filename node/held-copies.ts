/**
 * What a peer holds for others besides the stage it trains, and serves over the weights protocol:
 *
 *   checkpoint  its stage's state at a commit, kept until the coordinator has pulled that checkpoint
 *   mirror      CheckFree+: its neighbour's embedding (stage 1) or head (stage S-2); under the
 *               paper layout refreshed after every commit and run by the holder's stage
 *               (awaitMirror), otherwise every mirrorEvery iterations as a recovery source only
 *   shadow      redundant strategy: the successor stage's parameters and moments; under
 *               redundant-compute a live Stage (`liveShadow`) pulled once per assignment and then
 *               trained by this peer's runtime alongside its own stage
 *   retiring    a departing peer's old stage, until the peers rebuilding from it are done
 *
 * The peer (peer.ts) decides when to refresh or drop them; this module keeps them and answers
 * weight requests from them.
 */
import { createLog } from '../common/index.js'
import { HeldCopyUnavailableError } from './errors.js'
import { embedSpecs, headSpecs } from '../model/index.js'
import { mirroredOwners, shadowedStage, sharedPart, type PlusLayout } from '../model/index.js'
import type { TensorSet } from '../model/index.js'
import { Stage, stageLayout } from '../model/index.js'
import { exportStageState, loadStageState, stateFromTensorSet, stateToTensorSet } from '../model/index.js'
import type { ModelConfig, TrainConfig } from '../model/index.js'
import type { HeldCopy } from '../protocols/index.js'
import type { WeightsRequestSpec } from './recovery.js'
import { IterationUnavailableError, type WeightsProvider, type WeightsSnapshot } from '../net/index.js'

const log = createLog('peer')

export interface HeldState {
  stage: number
  /** The committed iteration the copy belongs to (as its holder served it). */
  iteration: number
  tensors: TensorSet
  /** Transfers sending `tensors` now (checkpoint snapshots only): while any runs they are not recycled. */
  readers?: number
}

/** What a refresh needs to know about the peer's current assignment. */
export interface RefreshContext {
  model: ModelConfig
  train: TrainConfig
  stages: number
  /** The committed iteration the assignment starts from (its first iteration - 1). */
  committed: number
  stage: Stage
  checkfreePlus: boolean
  plusLayout: PlusLayout
  mirrorEvery: number
  shadow: boolean
  /** Train the shadow by redundant computation (strategy redundant-compute): pulled once per assignment, never after a commit. */
  shadowCompute: boolean
  /** Stage -> the peer id holding it. */
  holderOf: (stage: number) => string | undefined
  self: string
  fetch: (peerId: string, req: WeightsRequestSpec, signal?: AbortSignal) => Promise<{ iteration: number, tensors: TensorSet }>
  /** Called when the mirror or shadow of `stage` is replaced (its holder may have rebuilt it under an iteration served before). */
  replaced: (stage: number) => void
  /** False once the assignment the refresh started under has been replaced: its result is dropped. */
  stillCurrent: () => boolean
}

/** `held` handed to one transfer: counted as read until the server releases it. */
function lease (held: HeldState): WeightsSnapshot {
  held.readers = (held.readers ?? 0) + 1
  let released = false
  return {
    iteration: held.iteration,
    tensors: held.tensors,
    release: () => {
      if (released) return
      released = true
      held.readers = (held.readers ?? 1) - 1
    }
  }
}

export class HeldCopies {
  checkpoint?: HeldState
  mirror?: HeldState
  shadow?: HeldState
  retiring?: Stage
  /** The mirror pull in flight (paper layout), so a stage waiting for the mirror joins it rather than pulling twice. */
  private mirrorPull?: { minIteration: number, done: Promise<void> }
  /** Redundant computation: the shadow this peer's runtime trains, and its pull under the current assignment. */
  liveShadow?: Stage
  private liveShadowPull?: { ctx: RefreshContext, done: Promise<Stage> }

  /** Serves `own()` (or the retiring stage), the checkpoint snapshot of it, the shadow and the mirror. */
  provider (own: () => Stage | undefined): WeightsProvider {
    return {
      snapshot: (stage: number, minIteration: number, includeOptimizer: boolean) => {
        const mine = own() ?? this.retiring
        if (mine != null && mine.stage === stage) {
          // the coordinator asks for exactly the checkpoint's iteration; the snapshot has the optimizer
          const snap = this.checkpoint
          if (snap != null && snap.iteration === minIteration && snap.stage === stage && includeOptimizer) return lease(snap)
          if (mine.iteration < minIteration) return undefined
          const state = exportStageState(mine, { optimizer: includeOptimizer })
          return { iteration: mine.iteration, tensors: includeOptimizer ? stateToTensorSet(state) : state.tensors }
        }
        const live = this.liveShadow
        if (live != null && live.stage === stage && live.iteration >= minIteration) {
          const state = exportStageState(live, { optimizer: includeOptimizer })
          return { iteration: live.iteration, tensors: includeOptimizer ? stateToTensorSet(state) : state.tensors }
        }
        for (const h of [this.shadow, this.mirror]) {
          if (h != null && h.stage === stage && h.iteration >= minIteration) return { iteration: h.iteration, tensors: h.tensors }
        }
        return undefined
      }
    }
  }

  /**
   * Snapshot to host memory now; the coordinator pulls it in the background while training goes on.
   * The previous snapshot's arrays are reused when no transfer is reading them (the coordinator has
   * usually pulled it long before the next is due), so a checkpoint every iteration does not
   * allocate the stage's whole state every iteration.
   */
  takeCheckpoint (stage: Stage): void {
    const old = this.checkpoint
    const reuse = old != null && old.stage === stage.stage && (old.readers ?? 0) === 0 ? old.tensors : undefined
    const state = exportStageState(stage, { optimizer: true, reuse })
    this.checkpoint = { stage: stage.stage, iteration: stage.iteration, tensors: stateToTensorSet(state) }
  }

  /** What the heartbeat says this peer holds for others, with the iteration of each copy. */
  list (): HeldCopy[] {
    const out: HeldCopy[] = []
    if (this.mirror != null) out.push({ kind: 'mirror', stage: this.mirror.stage, iteration: this.mirror.iteration })
    if (this.shadow != null) out.push({ kind: 'shadow', stage: this.shadow.stage, iteration: this.shadow.iteration })
    if (this.liveShadow != null) out.push({ kind: 'shadow', stage: this.liveShadow.stage, iteration: this.liveShadow.iteration })
    if (this.checkpoint != null) out.push({ kind: 'checkpoint', stage: this.checkpoint.stage, iteration: this.checkpoint.iteration })
    return out
  }

  /**
   * The peer's stage changed: drop the checkpoint snapshot, and the mirror and shadow unless the
   * peer is retiring (a CheckFree+ rebuild of its neighbour may still need its mirror).
   */
  stageChanged (retiring: Stage | undefined): void {
    if (retiring != null) this.retiring = retiring
    else {
      this.mirror = undefined
      this.shadow = undefined
      this.liveShadow?.dispose()
      this.liveShadow = undefined
    }
    this.checkpoint = undefined
  }

  /** Pulls the mirror (CheckFree+) or shadow (redundant) due after iteration `it` (or now, with force), in the background. */
  refresh (ctx: RefreshContext, force: boolean, it = 0): void {
    const S = ctx.stages
    const s = ctx.stage.stage
    const live = sharedPart(s, S, ctx.checkfreePlus, ctx.plusLayout)
    if (live?.role === 'holder') {
      // paper layout: the stage runs the mirror, so it is pulled after every commit (of that commit)
      this.startMirrorPull(ctx, live.peer, force ? -1 : it)
    } else if (ctx.checkfreePlus && S >= 2 && (force || (it + 1) % ctx.mirrorEvery === 0)) {
      const src = mirroredOwners(s, S)[0] ?? -1 // one mirror slot: with three stages, stage 1 keeps only the embedding's
      if (src >= 0) {
        const names = (src === 0 ? embedSpecs(ctx.model) : headSpecs(ctx.model)).map(x => x.name)
        const holder = ctx.holderOf(src)
        if (holder != null && holder !== ctx.self) {
          ctx.fetch(holder, { stage: src, minIteration: -1, includeOptimizer: false, names })
            .then(r => {
              if (!ctx.stillCurrent()) return
              this.mirror = { stage: src, iteration: r.iteration, tensors: r.tensors }
              ctx.replaced(src)
            })
            .catch(err => { log('mirror refresh from stage %d failed: %s', src, (err as Error).message) })
        }
      }
    }
    if (ctx.shadowCompute && S >= 2) {
      if (force) this.startLiveShadowPull(ctx)
    } else if (ctx.shadow && S >= 2) {
      const succ = shadowedStage(s, S) as number
      const holder = ctx.holderOf(succ)
      if (holder != null && holder !== ctx.self) {
        // after a commit, ask for that commit's state: the successor applies the same commit at about
        // the same moment, and a shadow one iteration old is not an exact copy (the ladder will not use
        // it), so wait briefly for it rather than take the state before the commit
        const minIteration = force ? -1 : it
        this.pullShadow(ctx, holder, succ, minIteration)
          .then(r => {
            if (r == null || !ctx.stillCurrent()) return
            this.shadow = { stage: succ, iteration: r.iteration, tensors: r.tensors }
            ctx.replaced(succ)
          })
          .catch(err => { log('shadow refresh of stage %d failed: %s', succ, (err as Error).message) })
      }
    }
  }

  /**
   * Paper layout: the mirror of stage `owner`'s part as committed at `minIteration` or later, pulled
   * now unless a pull already in flight brings it. Owner and holder apply a commit at about the same
   * moment, and a rebuilt owner serves only once installed, so a refused pull is asked again until
   * HELD_COPY_WAIT_MS have passed (HeldCopyUnavailableError) or `signal` is aborted.
   */
  async awaitMirror (ctx: RefreshContext, owner: number, minIteration: number, signal: AbortSignal): Promise<HeldState> {
    const deadline = Date.now() + HELD_COPY_WAIT_MS
    let lastError: Error | undefined
    for (;;) {
      const m = this.mirror
      if (m != null && m.stage === owner && m.iteration >= minIteration) return m
      signal.throwIfAborted()
      if (!ctx.stillCurrent()) throw new HeldCopyUnavailableError(`the assignment changed while waiting for stage ${owner}'s weights of iteration ${minIteration}`)
      if (Date.now() > deadline) throw new HeldCopyUnavailableError(`stage ${owner} did not serve its weights of iteration ${minIteration} within ${HELD_COPY_WAIT_MS} ms${lastError != null ? `: ${lastError.message}` : ''}`)
      const inFlight = this.mirrorPull
      try {
        if (inFlight != null && inFlight.minIteration >= minIteration) await inFlight.done
        else await this.pullMirror(ctx, owner, minIteration, signal)
      } catch (err) {
        lastError = err as Error
        await new Promise(resolve => setTimeout(resolve, SHADOW_RETRY_MS))
      }
    }
  }

  private startMirrorPull (ctx: RefreshContext, owner: number, minIteration: number): void {
    this.pullMirror(ctx, owner, minIteration).catch(err => { log('mirror pull from stage %d (iteration %d) failed: %s', owner, minIteration, (err as Error).message) })
  }

  /** One pull of stage `owner`'s embedding or head, kept as the mirror; refused ones are asked again SHADOW_RETRIES times. */
  private async pullMirror (ctx: RefreshContext, owner: number, minIteration: number, signal?: AbortSignal): Promise<void> {
    const names = (owner === 0 ? embedSpecs(ctx.model) : headSpecs(ctx.model)).map(x => x.name)
    const holder = ctx.holderOf(owner)
    if (holder == null || holder === ctx.self) throw new HeldCopyUnavailableError(`no other peer holds stage ${owner}`)
    const done = (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await ctx.fetch(holder, { stage: owner, minIteration, includeOptimizer: false, names }, signal)
          if (!ctx.stillCurrent()) return
          if (this.mirror == null || this.mirror.stage !== owner || this.mirror.iteration < r.iteration) {
            this.mirror = { stage: owner, iteration: r.iteration, tensors: r.tensors }
            ctx.replaced(owner)
          }
          return
        } catch (err) {
          if (!(err instanceof IterationUnavailableError) || attempt >= SHADOW_RETRIES) throw err
        }
        await new Promise(resolve => setTimeout(resolve, SHADOW_RETRY_MS))
        if (!ctx.stillCurrent()) return
      }
    })()
    const pull = { minIteration, done }
    this.mirrorPull = pull
    try {
      await done
    } finally {
      if (this.mirrorPull === pull) this.mirrorPull = undefined
    }
  }

  /**
   * Redundant computation: the shadow pulled under `ctx`'s assignment (an exact copy of the
   * successor as committed before its first iteration), waiting for the pull the assignment started.
   */
  async awaitLiveShadow (ctx: RefreshContext, signal: AbortSignal): Promise<Stage> {
    const pull = this.liveShadowPull?.ctx.stillCurrent() === true ? this.liveShadowPull : this.startLiveShadowPull(ctx)
    const stop = new Promise<never>((_resolve, reject) => {
      if (signal.aborted) reject(signal.reason)
      signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
    })
    return await Promise.race([pull.done, stop])
  }

  /**
   * Pulls the successor's whole state (weights, moments, metadata) of ctx.committed, asking again
   * while its peer has not installed it (a rebuilt successor serves only once installed) for up to
   * HELD_COPY_WAIT_MS, and makes it the live shadow. The old one stays served until then: a peer
   * rebuilding the successor from it by the replica rung may still be pulling it.
   */
  private startLiveShadowPull (ctx: RefreshContext): { ctx: RefreshContext, done: Promise<Stage> } {
    const succ = shadowedStage(ctx.stage.stage, ctx.stages) as number
    const done = (async () => {
      const deadline = Date.now() + HELD_COPY_WAIT_MS
      for (;;) {
        const holder = ctx.holderOf(succ)
        if (holder == null || holder === ctx.self) throw new HeldCopyUnavailableError(`no other peer holds stage ${succ} to shadow`)
        try {
          const r = await ctx.fetch(holder, { stage: succ, minIteration: ctx.committed, includeOptimizer: true })
          const state = stateFromTensorSet(r.tensors)
          const stage = new Stage({ model: ctx.model, train: ctx.train, layout: stageLayout(ctx.model, ctx.stages, succ) })
          try {
            loadStageState(stage, state.tensors, state.meta, { optimizer: true })
          } catch (err) {
            stage.dispose()
            throw err
          }
          if (!ctx.stillCurrent()) { stage.dispose(); throw new HeldCopyUnavailableError('the assignment changed while the shadow was pulled') }
          this.liveShadow?.dispose()
          this.liveShadow = stage
          ctx.replaced(succ)
          return stage
        } catch (err) {
          if (!(err instanceof IterationUnavailableError) || Date.now() > deadline || !ctx.stillCurrent()) throw err
        }
        await new Promise(resolve => setTimeout(resolve, SHADOW_RETRY_MS))
      }
    })()
    done.catch(err => { log('shadow of stage %d not pulled: %s', succ, (err as Error).message) })
    const pull = { ctx, done }
    this.liveShadowPull = pull
    return pull
  }

  /**
   * Fetches the successor's state of `minIteration` or later, retrying while the successor has not
   * applied that commit yet (SHADOW_RETRIES times, SHADOW_RETRY_MS apart); undefined when the
   * assignment changed meanwhile.
   */
  private async pullShadow (ctx: RefreshContext, holder: string, stage: number, minIteration: number): Promise<{ iteration: number, tensors: TensorSet } | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await ctx.fetch(holder, { stage, minIteration, includeOptimizer: true })
      } catch (err) {
        if (!(err instanceof IterationUnavailableError) || attempt >= SHADOW_RETRIES) throw err
      }
      await new Promise(resolve => setTimeout(resolve, SHADOW_RETRY_MS))
      if (!ctx.stillCurrent()) return undefined
    }
  }
}

/** How often a shadow pull asks again for a commit its holder has not applied yet, and how far apart. */
const SHADOW_RETRIES = 20
const SHADOW_RETRY_MS = 25
/**
 * How long a stage waits for a copy it runs (the paper layout's mirror, the redundant-compute
 * shadow) before its iteration fails (or its shadow goes stale). The source may be a peer still
 * rebuilding its stage (a recovery's transfer and install: seconds), and a source that is gone is
 * found by the failure detector first, which replaces the assignment.
 */
const HELD_COPY_WAIT_MS = 60_000

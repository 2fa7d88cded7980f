/**
 * The wall-clock cost model: every duration the simulator charges, from named parameters.
 *
 * A run's wall-clock time is the sum over iteration attempts of the cost of each attempt, plus the
 * recovery times. Nothing here depends on the strategy's outcome; the strategy only decides which of
 * these costs apply (see strategies.ts).
 *
 * Iteration (GPipe-style fill and drain, S stages, M microbatches, one stage per machine):
 *
 *   iterationS = (M + S - 1) * slotS + extra hops
 *   slotS      = computeS * (1 + redundant factor) + hops * (latency + hopBytes / link)
 *
 * where computeS is the forward+backward compute of one microbatch on one stage, hopBytes the bytes
 * of one [B,T,D] activation (or its gradient) crossing one link, and hops = 2 per slot (activation
 * forward, gradient backward), +1 under redundant computation (see below). Transfers are not assumed
 * to overlap compute (conservative; `overlapTransfers` takes max(compute, transfer) instead).
 * CheckFree+ runs odd microbatches through swapped routes; what they cost depends on where the
 * embedding and head live (PlusLayout): two more hops forward and two backward on the critical path
 * (layout spotpipe, the cluster's default), or none but a per-iteration gradient exchange for the
 * mirrored embedding and head (layout paper, the reference code's; the cluster's --plus-layout paper).
 *
 * Redundant computation (Bamboo-style, strategy redundant-compute, as the cluster runs it; strategy
 * `redundant` copies instead, see shadowRefresh): each stage also runs its successor's forward and backward and
 * applies the same optimizer step to that shadow copy, so computeS grows by `redundantComputeFactor`
 * (1.0 = +100%: the successor's layers cost what one's own do); to run the successor's backward it
 * needs the gradient from two stages down, one more hop per slot. The shadow stays in sync without
 * weight traffic. Per-node memory doubles (reported, not timed).
 *
 * Checkpoints (DESIGN "Sparse checkpoints"): every K iterations each stage copies its parameters and
 * Adam moments to host memory (blocking: bytes / snapshotBps), then uploads them in the background
 * to the store. Training does not wait for the upload, but the upload shares the stage's link with
 * activations: while it runs activations get half the link, which costs uploadS * (share of the
 * iteration the link carries activations). A checkpoint can be loaded only once its upload finished.
 * The store is one machine (a directory by default), so all stages' uploads share its link:
 * uploadS = max(stageBytes / link, totalBytes / storage).
 *
 * Recoveries (DESIGN "Recovery ladder"); a crash is noticed after `detectionS` (heartbeat timeout),
 * a spot notice at once, and the in-flight iteration is lost (its elapsed part is charged):
 *   handover, replica   : the exact stage state (params + Adam) over one link
 *   checkfree           : both neighbours' weights of the lost stage's size into the new peer's link
 *   checkfree-plus      : the neighbour's blocks plus the mirrored embedding or head
 *   checkpoint (stage)  : the stage's state from the store
 *   checkpoint (whole)  : every stage's state from the store at once
 * Several stages recovering together do so in parallel: the recovery takes the longest of them.
 *
 * One host (the local cluster, bench:costmodel): with `hostCores` set, the stages are processes sharing
 * that many cores, and the pipeline part of the iteration is the event simulation of
 * pipeline-schedule.ts (the peers' own order of forwards and backwards, cores shared fairly) instead
 * of the formula above; `forwardFraction` splits a slot's compute into forward and backward there.
 * `iterationOverheadS` is the coordinator's control round trip per iteration (begin out, done
 * reports back, the commit persisted). A recovery round (coordinator/recovery/machine.ts round()) is
 * planned and published once and settled at its end (the coordinator's part: `roundOverheadS`);
 * in between the surviving stages take the new epoch (`epochTakeS`) while the rebuilt peer pulls
 * and installs its state (`rebuildOverheadS` beyond the transfer), until both are done. A donor
 * that is a surviving or departing peer serves only once it is through the compute it was inside,
 * which is when it takes the epoch itself (`donorReadyS`, by default `epochTakeS`); the store
 * serves at once. The rebuilt stage's first iteration is cold (`coldIterationS` more compute on
 * that stage), charged as what it adds to the pipeline. All of these default to 0, so
 * the simulator's results without them are the formula's.
 *
 * Time scale: `timeScale` multiplies every duration derived from the model's size (compute and every
 * byte transfer), but not protocol constants (detectionS, latency, noticeLeadS). It lets the small
 * model of model mode stand for one whose iteration is timeScale times longer, so that a paper
 * per-iteration failure probability and an hourly rate describe the same clock.
 */
import { PLUS_LAYOUTS, type PlusLayout } from '../model/index.js'
import { DEFAULT_COST, type CostParams, type RecoveryDonor } from './cost-params.js'
import { SimConfigError } from './errors.js'
import { pipelineMakespan } from './pipeline-schedule.js'

export { DEFAULT_COST, type CostParams, type RecoveryDonor } from './cost-params.js'

/**
 * Where CheckFree+ keeps the embedding and the head, which decides what its swaps cost:
 *  - spotpipe: stage 0 owns the embedding and S-1 the head, as in the cluster. A swapped
 *    microbatch runs 0(embed) -> 1 -> 0 -> 2 ... S-3 -> S-1 -> S-2 -> S-1(head): two more hops
 *    forward and two backward on the critical path.
 *  - paper: the reference code's, where the swaps are among block stages only. Stage 1 holds a
 *    live copy of the embedding and S-2 of the head, so a swapped microbatch starts at stage 1
 *    (it embeds) and ends at S-2 (it runs the head): no extra hop. The price is keeping the copies
 *    equal, as the cluster does it (model/schedule.ts sharedPart): every iteration owner and holder
 *    add up their gradients for the part before the step (a two-member all-reduce: each sends the
 *    part's bytes once, the larger of embedding and head crossing one link on the critical path),
 *    the owner steps, and the holder pulls the new weights after the commit (once more the part's
 *    bytes). The pull is hidden behind the holder's first forward slot of the next iteration (stage
 *    0 is busy with microbatch 0 meanwhile) and costs only what exceeds it. The mirrors are then
 *    always current.
 */
export { PLUS_LAYOUTS, type PlusLayout }

/** What a strategy changes about the iteration. */
export interface IterationShape {
  /** CheckFree+ swapped routes on odd microbatches. */
  swaps: boolean
  /** Where the swaps keep the embedding and head. @default 'spotpipe' */
  plusLayout?: PlusLayout
  /** Bamboo-style redundant computation of the successor (strategy redundant-compute). */
  redundantCompute: boolean
}

export interface TransferCost {
  seconds: number
  bytes: number
}

export interface SaveCost {
  /** Blocking snapshot copy (the longest stage). */
  copyS: number
  /** Background upload to the store. */
  uploadS: number
  /** Slow-down of training from sharing links with the upload. */
  contentionS: number
  bytes: number
}

export class CostModel {
  readonly p: Readonly<CostParams>
  readonly stages: number

  constructor (params: CostParams) {
    const S = params.stageParams.length
    if (S < 1) throw new SimConfigError('the cost model needs at least one stage')
    if (params.stageBlockParams.length !== S) throw new SimConfigError(`stageBlockParams has ${params.stageBlockParams.length} entries for ${S} stages`)
    for (const k of ['slotComputeS', 'hopBytes', 'bytesPerParam', 'linkBytesPerS', 'storageBytesPerS', 'snapshotBytesPerS', 'timeScale', 'iterationsPerStep'] as const) {
      const v = params[k]
      if (!Number.isFinite(v) || v <= 0) throw new SimConfigError(`cost.${k} must be a positive finite number, got ${String(v)}`)
    }
    for (const k of ['optimizerBytesPerParam', 'linkLatencyS', 'detectionS', 'noticeLeadS', 'redundantComputeFactor', 'redundantExtraHops'] as const) {
      const v = params[k]
      if (!Number.isFinite(v) || v < 0) throw new SimConfigError(`cost.${k} must be a non-negative finite number, got ${String(v)}`)
    }
    if (!Number.isInteger(params.microbatches) || params.microbatches < 1) throw new SimConfigError(`cost.microbatches must be a positive integer, got ${String(params.microbatches)}`)
    for (const k of ['iterationOverheadS', 'noticeHeardS', 'roundOverheadS', 'epochTakeS', 'donorReadyS', 'rebuildOverheadS', 'coldIterationS', 'transferCpuSPerByte'] as const) {
      const v = params[k]
      if (v !== undefined && (!Number.isFinite(v) || v < 0)) throw new SimConfigError(`cost.${k} must be a non-negative finite number, got ${String(v)}`)
    }
    if (params.hostCores !== undefined && !(params.hostCores > 0)) throw new SimConfigError(`cost.hostCores must be > 0, got ${String(params.hostCores)}`)
    if (params.hostCpuCores !== undefined && !(params.hostCpuCores > 0)) throw new SimConfigError(`cost.hostCpuCores must be > 0, got ${String(params.hostCpuCores)}`)
    if (params.forwardFraction !== undefined && !(params.forwardFraction > 0 && params.forwardFraction < 1)) throw new SimConfigError(`cost.forwardFraction must be in (0, 1), got ${String(params.forwardFraction)}`)
    this.p = Object.freeze({ ...params, stageParams: [...params.stageParams], stageBlockParams: [...params.stageBlockParams] })
    this.stages = S
  }

  /** A copy with some parameters changed. */
  with (changes: Partial<CostParams>): CostModel {
    return new CostModel({ ...this.p, ...changes } as CostParams)
  }

  /** Seconds to move `bytes` over one peer link (size-derived: scaled), plus one latency. */
  linkS (bytes: number): number {
    return this.p.linkLatencyS + bytes / this.p.linkBytesPerS * this.p.timeScale
  }

  /** One activation or gradient hop of one microbatch. */
  get hopS (): number { return this.linkS(this.p.hopBytes) }

  /** One pipeline slot: a microbatch's forward+backward on one stage and its transfers. */
  slotS (shape: IterationShape): number {
    const p = this.p
    const compute = p.slotComputeS * p.timeScale * (1 + (shape.redundantCompute ? p.redundantComputeFactor : 0))
    const transfers = (2 + (shape.redundantCompute ? p.redundantExtraHops : 0)) * this.hopS
    return p.overlapTransfers ? Math.max(compute, transfers) : compute + transfers
  }

  /** Transfers on the critical path that CheckFree+'s swapped microbatches add, per iteration of the
   *  modelled run: the extra hops (layout spotpipe) or the mirrors' gradient exchange (layout paper). */
  swapExtraS (shape: IterationShape): number {
    if (!shape.swaps || this.stages < 4 || this.p.microbatches < 2) return 0
    if (shape.plusLayout === 'paper') {
      const part = this.linkS(Math.max(this.p.embedParams, this.p.headParams) * this.p.bytesPerParam)
      const forwardSlot = this.p.slotComputeS * this.p.timeScale * (this.p.forwardFraction ?? 1 / 3)
      return part + Math.max(0, part - forwardSlot) // the all-reduce, and the pull beyond what the first slot hides
    }
    return 4 * this.hopS
  }

  /** Wall-clock seconds of one failure-free simulated iteration (iterationsPerStep of the modelled run). */
  iterationS (shape: IterationShape): number {
    const S = this.stages
    const M = this.p.microbatches
    const pipeline = this.p.hostCores == null ? (M + S - 1) * this.slotS(shape) : this.sharedHostPipelineS(shape, this.p.hostCores)
    return this.p.iterationsPerStep * (pipeline + this.swapExtraS(shape) + (this.p.iterationOverheadS ?? 0))
  }

  /**
   * The pipeline part of an iteration when the stages share `cores` (pipeline-schedule.ts);
   * overlapTransfers does not apply. `coldS[s]`: compute seconds added to stage s's first forward
   * and first backward (split as a slot's compute is), where a fresh process first runs its kernels.
   */
  private sharedHostPipelineS (shape: IterationShape, cores: number, coldS?: readonly number[]): number {
    const p = this.p
    const S = this.stages
    const compute = p.slotComputeS * p.timeScale * (1 + (shape.redundantCompute ? p.redundantComputeFactor : 0))
    const ff = p.forwardFraction ?? 1 / 3
    const hops = 1 + (shape.redundantCompute ? p.redundantExtraHops / 2 : 0)
    const cold = Array.from({ length: S }, (_, s) => coldS?.[s] ?? 0)
    return pipelineMakespan({
      stages: S,
      microbatches: p.microbatches,
      forwardS: new Array<number>(S).fill(compute * ff),
      backwardS: new Array<number>(S).fill(compute * (1 - ff)),
      firstForwardExtraS: cold.map(c => c * ff),
      firstBackwardExtraS: cold.map(c => c * (1 - ff)),
      hopS: hops * this.hopS,
      cores
    })
  }

  /**
   * A recovery round that rebuilds `stages`, moving state for `transferS` from `donor`: the
   * coordinator's own part (roundOverheadS: plan and publish, settle); between them the survivors
   * taking the epoch (epochTakeS) alongside the rebuilt peers' pull and install (rebuildOverheadS
   * + transferS), which a peer donor serves once it has taken the epoch itself (donorReadyS) and
   * the store at once. Then what the rebuilt stages' cold first iteration
   * adds to the redone one.
   */
  recoveryS (stages: readonly number[], transferS: number, donor: RecoveryDonor): number {
    const epoch = this.p.epochTakeS ?? 0
    const ready = donor === 'peer' ? this.p.donorReadyS ?? epoch : 0
    return (this.p.roundOverheadS ?? 0) + Math.max(epoch, ready + (this.p.rebuildOverheadS ?? 0) + transferS) + this.coldIterationDelayS(stages)
  }

  /** What a spot notice whose handover takes `handoverS` stalls training: the notice heard, then the handover beyond the notice's lead. */
  noticeStallS (handoverS: number): number {
    return (this.p.noticeHeardS ?? 0) + Math.max(0, handoverS - this.p.noticeLeadS)
  }

  /**
   * What the rebuilt `stages`' cold first iteration (coldIterationS more compute on each) adds to
   * the plain iteration, from the pipeline's own schedule. A fresh process pays the warm-up of its
   * kernels on their first run, so the extra sits on the stage's first forward and first backward
   * (the demo model on this 2-core host: a fresh process's first microbatch took 88-101 ms forward
   * and 146-179 ms backward against 30-50 and 60-100 ms warm, its later ones within 10-20 ms of
   * warm), which nothing downstream of it can overlap.
   */
  coldIterationDelayS (stages: readonly number[]): number {
    const cold = (this.p.coldIterationS ?? 0) * this.p.timeScale
    if (cold === 0 || stages.length === 0) return 0
    const plain: IterationShape = { swaps: false, redundantCompute: false }
    const cores = this.p.hostCores ?? Infinity
    const extra = Array.from({ length: this.stages }, (_, s) => stages.includes(s) ? cold : 0)
    return this.p.iterationsPerStep * (this.sharedHostPipelineS(plain, cores, extra) - this.sharedHostPipelineS(plain, cores))
  }

  /** Share of an iteration during which links carry activations (for upload contention). */
  linkBusyFraction (shape: IterationShape): number {
    const M = this.p.microbatches
    const S = this.stages
    const transfers = (M + S - 1) * (2 + (shape.redundantCompute ? this.p.redundantExtraHops : 0)) * this.hopS + this.swapExtraS(shape)
    return Math.min(1, this.p.iterationsPerStep * transfers / this.iterationS(shape))
  }

  /** Activation and gradient bytes crossing links in one iteration (all stages). */
  activationBytes (shape: IterationShape): number {
    const M = this.p.microbatches
    const S = this.stages
    const swapped = shape.swaps && S >= 4 && shape.plusLayout !== 'paper' ? Math.floor(M / 2) : 0
    const perMb = 2 * (S - 1) + (shape.redundantCompute ? this.p.redundantExtraHops * Math.max(0, S - 2) : 0)
    // paper layout: per part, the all-reduce sends its bytes once each way and the holder's pull once more
    const mirrorSync = shape.swaps && S >= 4 && shape.plusLayout === 'paper' ? 3 * (this.p.embedParams + this.p.headParams) * this.p.bytesPerParam : 0
    return this.p.iterationsPerStep * ((M * perMb + swapped * 4) * this.p.hopBytes + mirrorSync)
  }

  /** Bytes of a stage's weights, with its Adam moments when `optimizer`. */
  stageBytes (stage: number, optimizer: boolean): number {
    const n = this.p.stageParams[stage]
    return n * (this.p.bytesPerParam + (optimizer ? this.p.optimizerBytesPerParam : 0))
  }

  totalBytes (optimizer: boolean): number {
    let sum = 0
    for (let s = 0; s < this.stages; s++) sum += this.stageBytes(s, optimizer)
    return sum
  }

  /** A checkpoint of every stage (params + Adam). */
  checkpointSave (shape: IterationShape): SaveCost {
    const p = this.p
    let largest = 0
    for (let s = 0; s < this.stages; s++) largest = Math.max(largest, this.stageBytes(s, true))
    const total = this.totalBytes(true)
    const copyS = largest / p.snapshotBytesPerS * p.timeScale
    const uploadS = p.linkLatencyS + Math.max(largest / p.linkBytesPerS, total / p.storageBytesPerS) * p.timeScale
    return { copyS, uploadS, contentionS: this.backgroundContentionS(uploadS, total, shape), bytes: total }
  }

  /**
   * What a background transfer of `bytes`, `seconds` long, costs the training. Between machines:
   * the share of the link the activations lose to it while it runs. On one host (hostCores) there
   * is no link between the stages: the bytes move through memory, so the activations lose nothing
   * to it but the CPU both ends spend (cpuContentionS), which charging the link share as well
   * would count twice (bench:costmodel: link share 89 ms + CPU 155 ms predicted, 151 ms measured).
   */
  backgroundContentionS (seconds: number, bytes: number, shape: IterationShape): number {
    return this.p.hostCores != null ? this.cpuContentionS(bytes, shape) : seconds * this.linkBusyFraction(shape)
  }

  /**
   * On a shared host (hostCores): the delay a background transfer of `bytes` causes the training.
   * Its CPU (bytes x transferCpuSPerByte, core-seconds) is taken from busy cores in the share the
   * training keeps them busy (what it takes from idle cores costs nothing), and the training's work
   * is spread over the cores, so c core-seconds taken from it delay it by c / hostCpuCores (cores
   * counted in the same unit as c: CPU seconds per second)
   * (bench:costmodel measured a checkpoint at 0.3 core-seconds beyond its neighbours and 0.2 s
   * of delay, on 1.65 cores kept 93% busy). 0 otherwise.
   */
  cpuContentionS (bytes: number, shape: IterationShape): number {
    const p = this.p
    if (p.hostCores == null || p.transferCpuSPerByte == null) return 0
    const work = this.stages * p.microbatches * p.slotComputeS * p.timeScale * (1 + (shape.redundantCompute ? p.redundantComputeFactor : 0))
    const busy = Math.min(1, work / (p.hostCores * this.iterationS(shape)))
    return bytes * p.transferCpuSPerByte * p.timeScale * busy / (p.hostCpuCores ?? p.hostCores)
  }

  /**
   * Loading the given stages' checkpointed state from the store, in parallel. `rebuilt`: the stages
   * on new peers, whose first iteration is cold (a whole rollback reloads survivors in place).
   */
  checkpointLoad (stages: readonly number[], rebuilt: readonly number[] = stages): TransferCost {
    const p = this.p
    let largest = 0
    let total = 0
    for (const s of stages) {
      const b = this.stageBytes(s, true)
      largest = Math.max(largest, b)
      total += b
    }
    return { seconds: this.recoveryS(rebuilt, p.linkLatencyS + Math.max(largest / p.linkBytesPerS, total / p.storageBytesPerS) * p.timeScale, 'store'), bytes: total }
  }

  /** The checkpoint rung with no checkpoint yet: the seeded weights are built where they are needed, nothing moves. */
  seededRebuild (rebuilt: readonly number[]): TransferCost {
    return { seconds: this.recoveryS(rebuilt, 0, 'none'), bytes: 0 }
  }

  /** Exact copy of a stage's state (handover, replica: a shadow copied to the new peer). */
  exactCopy (stage: number): TransferCost {
    const bytes = this.stageBytes(stage, true)
    return { seconds: this.recoveryS([stage], this.linkS(bytes), 'peer'), bytes }
  }

  /** CheckFree: both neighbours' weights of the lost stage's size, into the new peer's one link. */
  checkfreeRebuild (stage: number): TransferCost {
    const bytes = 2 * this.p.stageBlockParams[stage] * this.p.bytesPerParam
    return { seconds: this.recoveryS([stage], this.linkS(bytes), 'peer'), bytes }
  }

  /** CheckFree+: the neighbour's blocks plus the mirrored embedding (stage 0) or head (stage S-1). */
  checkfreePlusCopy (stage: number): TransferCost {
    const mirror = stage === 0 ? this.p.embedParams : this.p.headParams
    const bytes = (this.p.stageBlockParams[stage] + mirror) * this.p.bytesPerParam
    return { seconds: this.recoveryS([stage], this.linkS(bytes), 'peer'), bytes }
  }

  /** Refreshing both CheckFree+ mirrors (embedding to stage 1, head to stage S-2), in the background. */
  mirrorRefresh (shape: IterationShape): TransferCost & { contentionS: number } {
    const bytes = (this.p.embedParams + this.p.headParams) * this.p.bytesPerParam
    const seconds = this.linkS(Math.max(this.p.embedParams, this.p.headParams) * this.p.bytesPerParam)
    return { seconds, bytes, contentionS: this.backgroundContentionS(seconds, bytes, shape) }
  }

  /**
   * Strategy redundant (the cluster's shadow copy): after every commit each peer pulls its
   * successor's parameters and Adam moments (stage S-1 pulls stage 0's), and the commit is done only
   * once every shadow holds it (coordinator.ts awaitShadows), so `seconds`, the slowest pull
   * (a stage's state over one link), is added to every iteration and a shadow is always of the last commit; per
   * iteration every stage's state crosses one link (12P bytes per peer with fp32 weights and Adam).
   * Nothing else runs during the pulls, so there is no contention (`contentionS` is what a
   * background pull would cost instead). Memory per peer doubles (reported, not timed). Compute is
   * unchanged.
   */
  shadowRefresh (shape: IterationShape): TransferCost & { contentionS: number } {
    if (this.stages < 2) return { seconds: 0, bytes: 0, contentionS: 0 }
    let seconds = 0
    for (let s = 0; s < this.stages; s++) seconds = Math.max(seconds, this.linkS(this.stageBytes(s, true)))
    seconds *= this.p.iterationsPerStep
    const bytes = this.p.iterationsPerStep * this.totalBytes(true)
    return { seconds, bytes, contentionS: this.backgroundContentionS(seconds, bytes, shape) }
  }

  /** Plain-object summary of the parameters and the main derived times, for reports. */
  describe (): Record<string, number | boolean | string> {
    const plain: IterationShape = { swaps: false, redundantCompute: false }
    const p = this.p
    return {
      stages: this.stages,
      microbatches: p.microbatches,
      slotComputeS: p.slotComputeS,
      timeScale: p.timeScale,
      stageParamsMax: Math.max(...p.stageParams),
      hopBytes: p.hopBytes,
      linkMbps: p.linkBytesPerS * 8 / 1e6,
      storageMbps: p.storageBytesPerS * 8 / 1e6,
      linkLatencyS: p.linkLatencyS,
      snapshotGBps: p.snapshotBytesPerS / 1e9,
      detectionS: p.detectionS,
      noticeLeadS: p.noticeLeadS,
      redundantComputeFactor: p.redundantComputeFactor,
      redundantExtraHops: p.redundantExtraHops,
      overlapTransfers: p.overlapTransfers,
      iterationsPerStep: p.iterationsPerStep,
      noticeHeardS: p.noticeHeardS ?? 0,
      roundOverheadS: p.roundOverheadS ?? 0,
      epochTakeS: p.epochTakeS ?? 0,
      donorReadyS: p.donorReadyS ?? p.epochTakeS ?? 0,
      rebuildOverheadS: p.rebuildOverheadS ?? 0,
      coldIterationS: p.coldIterationS ?? 0,
      iterationS_plain: this.iterationS(plain),
      iterationS_checkfreePlus: this.iterationS({ swaps: true, redundantCompute: false }),
      iterationS_checkfreePlus_paperLayout: this.iterationS({ swaps: true, redundantCompute: false, plusLayout: 'paper' }),
      iterationS_redundantCompute: this.iterationS({ swaps: false, redundantCompute: true }),
      shadowRefreshS: this.shadowRefresh(plain).seconds,
      checkpointUploadS: this.checkpointSave(plain).uploadS,
      checkpointLoadStageS: this.checkpointLoad([Math.min(1, this.stages - 1)]).seconds,
      checkfreeRebuildS: this.checkfreeRebuild(Math.min(1, this.stages - 1)).seconds
    }
  }
}

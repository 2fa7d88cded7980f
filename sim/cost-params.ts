/**
 * The cost model's parameters (sim/cost-model.ts), each with its default and where the default
 * comes from. The model's formulas are in cost-model.ts; sim/README.md tables the parameters.
 */
/** Named parameters, each with its default and where the default comes from. */
export interface CostParams {
  /** Forward+backward compute of one microbatch on one (average) stage, seconds. Source: measured in
   *  model mode (single-process step time / (S * M), see measureSlotCompute), or FLOPs / flopRate in
   *  projections. */
  slotComputeS: number
  /** Parameters per stage, [S] (embedding on stage 0, head on S-1). Source: the model's layout. */
  stageParams: number[]
  /** Block-only parameters per stage, [S] (what CheckFree averages and CheckFree+ copies). */
  stageBlockParams: number[]
  /** Parameters of the token+position embedding and of the final norm + head (CheckFree+ mirrors). */
  embedParams: number
  headParams: number
  /** Bytes of one [B,T,D] activation or gradient of one microbatch. Source: B*T*D*bytesPerActivation. */
  hopBytes: number
  microbatches: number
  /** Bytes per weight on the wire and in checkpoints. @default 4 (our stages are float32) */
  bytesPerParam: number
  /** Extra bytes per weight of optimizer state (Adam m and v). @default 8 (two float32 moments) */
  optimizerBytesPerParam: number
  /** Per-peer link bandwidth, bytes/s. @default 62.5e6 (500 Mb/s: the example; the paper's
   *  "hundreds of Mb/s") */
  linkBytesPerS: number
  /** One-way latency per transfer, s. @default 0.001 (the paper's harness: 1 ms within a region) */
  linkLatencyS: number
  /** Bandwidth of the checkpoint store's link, shared by all stages, bytes/s. @default 62.5e6 (one
   *  store machine on the same 500 Mb/s link: DESIGN's directory store) */
  storageBytesPerS: number
  /** Device-to-host copy of a snapshot, bytes/s; this part blocks training. @default 2e9 (assumed:
   *  a conservative memory/PCIe copy rate) */
  snapshotBytesPerS: number
  /** Time to declare a crashed stage lost, s. @default 3 (DESIGN: heartbeat timeout) */
  detectionS: number
  /** Warning before a spot VM disappears, s; a handover transfer hides behind it. @default 30 (GCP's
   *  preemption notice; AWS gives 120 s) */
  noticeLeadS: number
  /** Extra compute per stage under redundant computation, as a fraction of its own. @default 1.0
   *  (the successor's forward and backward: +100%, Bamboo-style full redundancy) */
  redundantComputeFactor: number
  /** Extra transfers per slot under redundant computation. @default 1 (the gradient from two stages
   *  down that the successor's backward needs) */
  redundantExtraHops: number
  /** Take max(compute, transfers) per slot instead of their sum. @default false */
  overlapTransfers: boolean
  /** Multiplier on every size-derived duration (compute, byte transfers). @default 1 */
  timeScale: number
  /** Iterations of the modelled run that one simulated iteration stands for (a proxy model that
   *  reaches its target in fewer iterations than the modelled one, sim/paper.ts). What recurs every
   *  iteration (compute, hops, shadow pulls, the paper layout's mirror sync) is charged this many
   *  times per simulated iteration; what happens per event (a recovery, a checkpoint save, a mirror
   *  refresh) once. @default 1 */
  iterationsPerStep: number
  /** Cores the stages share on one host; unset: a machine per stage (the formula). Source: the host
   *  (os.availableParallelism) when every stage is a process on it, as in the local cluster. */
  hostCores?: number
  /** Share of a slot's compute that is the forward, with hostCores. @default 1/3 (a backward costs
   *  about two forwards); bench:costmodel measures it. */
  forwardFraction?: number
  /** With hostCores: CPU seconds both ends of a weights transfer spend per byte (the loopback
   *  "link" is the host's CPU, so a background upload takes cores from training). @default 0 */
  transferCpuSPerByte?: number
  /** With hostCores: the CPU seconds per second the host gives the busy stage processes (what
   *  /proc counts, the unit of transferCpuSPerByte). hostCores counts in units of one process
   *  alone, which cores sharing caches and memory make smaller (an idle 2-core host here: 2.0
   *  against 1.7). @default hostCores */
  hostCpuCores?: number
  /** Control round trip of the coordinator per iteration, s (not scaled). @default 0 */
  iterationOverheadS?: number
  /** Time until a departing peer's notice reaches the coordinator, s (not scaled): on a shared host
   *  the peer handles the signal only once it is through the compute it is inside. @default 0 */
  noticeHeardS?: number
  /** The coordinator's own part of a recovery round, s (not scaled): from the loss known to the
   *  round's epoch published (the iteration aborted, the survey and plan, the epoch persisted and
   *  published) and from the last stage's take to the round's end (the recoveries settled and
   *  persisted). @default 0 */
  roundOverheadS?: number
  /** A recovery round's survivors: from the new epoch's publication until every surviving stage
   *  took it, s (not scaled). Runs alongside the rebuilt peer's pull; a peer donor serves after it.
   *  @default 0 */
  epochTakeS?: number
  /** When a peer donor serves, s after the round's epoch is published: once it has taken the epoch,
   *  through its own compute first (not scaled). @default epochTakeS */
  donorReadyS?: number
  /** What a rebuilt peer's round costs beyond its transfer, s: its first pull's cold start and the
   *  install of the pulled state (not scaled). The paper presets put the paper's recovery time here.
   *  @default 0 */
  rebuildOverheadS?: number
  /** The rebuilt stage's first iteration beyond a warm one: compute seconds on that stage (a fresh
   *  process's first kernels), charged as what they add to the pipeline. @default 0 */
  coldIterationS?: number
}

/** Who serves a recovery's state: a peer (survivor, departing peer, replica), the checkpoint store, or nobody (seeded weights). */
export type RecoveryDonor = 'peer' | 'store' | 'none'

export const DEFAULT_COST: Omit<CostParams, 'slotComputeS' | 'stageParams' | 'stageBlockParams' | 'embedParams' | 'headParams' | 'hopBytes' | 'microbatches'> = {
  bytesPerParam: 4,
  optimizerBytesPerParam: 8,
  linkBytesPerS: 500e6 / 8,
  linkLatencyS: 0.001,
  storageBytesPerS: 500e6 / 8,
  snapshotBytesPerS: 2e9,
  detectionS: 3,
  noticeLeadS: 30,
  redundantComputeFactor: 1.0,
  redundantExtraHops: 1,
  overlapTransfers: false,
  timeScale: 1,
  iterationsPerStep: 1
}

/**
 * Replicas projection: R data-parallel replicas per stage, failures per peer. What more peers buy:
 * tokens/s (an iteration's microbatches spread over the replicas) and whole-stage losses per hour (a
 * stage is lost only when all R of its replicas are down at once). The cost model alone; no model
 * is trained, so it says nothing about the loss.
 *
 * The iteration (GPipe fill and drain as in cost-model.ts, one replica of every stage per route):
 *
 *   iterationS(r) = (ceil(M / r) + S - 1) * slotS + allReduceS(r)
 *   allReduceS(r) = 2 (r - 1) / r * gradientBytes / link + 2 (r - 1) * latency    (ring; 0 for r = 1)
 *
 * (the global batch of M microbatches spread over the replicas, as the cluster does; the result also
 * gives tokens/s when every route keeps M microbatches and the batch grows R times) with r the live
 * replicas of the worst-served stage: with a static pairing the routes through the
 * stage with fewest replicas carry the most microbatches, and all stages wait for them. The ring
 * all-reduce of a stage's gradients runs before its optimizer step and is not overlapped with the
 * backward pass (as in node/: conservative).
 *
 * Failures: each peer fails at the per-peer hourly rate h (Poisson, lambda = -ln(1 - h) per hour),
 * independently. What a failure costs:
 *  - one replica of a stage with others alive (a replica loss), as the coordinator handles it
 *    (coordinator/recovery/machine.ts): the pipeline waits until the loss is detected, then the
 *    iteration in flight is aborted and redone by the survivors, the lost replica's microbatches
 *    rerouted to its stage's others: detection + the work of the aborted iteration (half an
 *    iteration on average) is lost. The stage serves with r - 1 replicas until the replacement
 *    joins (node/replica-join.ts: it pulls an exact copy while training goes on and serves from
 *    the commit after it caught up): detection + one exact copy + one iteration, `replicaWindowS`.
 *  - the last live replica of a stage (a whole-stage loss): the pipeline stops for detection +
 *    a CheckFree rebuild from the neighbours; then every replica slot of the stage is served again
 *    (the other replacements copy the rebuilt one in parallel, one more exact copy).
 * A replica that fails while down already is not counted (the peer being replaced is gone).
 *
 * Whole-stage losses at R = 3 are too rare to count in any simulated horizon (about one in 10^5 peer
 * failures at 33%/h), so the result carries the steady-state rate as well, which the simulation
 * matches where it can count (R = 1, 2; test/sim-replicas.test.ts):
 *
 *   losses/h per stage = R * lambda / (1 + lambda w) * q^(R-1),   q = lambda w / (1 + lambda w)
 *
 * (a replica up for a mean 1/lambda, down for w; a loss is a failure while the other R - 1 are down).
 */
import { hashKey, mulberry32 } from '../model/index.js'
import type { CostModel, CostParams } from './cost-model.js'
import { costModelForLlm, type LlmProfile, LLM_70B_PROFILE } from './cost-profiles.js'
import { SimConfigError } from './errors.js'

/**
 * The CheckFree paper's throughput harness (../shared/CHECKFREE.md): 7 stages of 4 layers,
 * d_model 1024, seq 1024, 6 microbatches of 8 sequences; a LLaMa vocabulary of 32,000. Compute rate,
 * wire formats and links are the projection's (LLM_70B_PROFILE, DEFAULT_COST: 500 Mb/s, 3 s
 * detection), not the harness's regions.
 */
export const PAPER_HARNESS_PROFILE: LlmProfile = {
  ...LLM_70B_PROFILE,
  params: 7 * 4 * 12 * 1024 * 1024 + 2 * 32000 * 1024,
  stages: 7,
  dModel: 1024,
  vocab: 32000,
  seqLen: 1024,
  microbatchSize: 8,
  microbatches: 6
}

export interface ReplicaProjectionConfig {
  /** Replicas per stage. */
  replicas: number
  /** Per-peer probability of failing within an hour. */
  hourlyRate: number
  /** Hours simulated. @default 2000 */
  hours?: number
  /** @default 1 */
  seed?: number
  /** @default PAPER_HARNESS_PROFILE */
  profile?: Partial<LlmProfile>
  cost?: Partial<CostParams>
}

export interface ReplicaProjectionResult {
  replicas: number
  stages: number
  hourlyRate: number
  hours: number
  seed: number
  /** Failure-free iteration and its all-reduce part, seconds. */
  iterationS: number
  allReduceS: number
  /** Failure-free tokens per second, the global batch (M microbatches) spread over the replicas. */
  tokensPerS: number
  /**
   * Failure-free tokens per second when each replica's route keeps M microbatches (the global batch
   * grows R times: what more peers buy when the batch may grow; the bubble of S - 1 slots is paid once).
   */
  growingBatchTokensPerS: number
  /** Tokens per second over the simulated hours, failures and their costs included. */
  churnTokensPerS: number
  peerFailures: number
  /** Failures covered by surviving replicas. */
  replicaLosses: number
  /** Failures that took a stage's last live replica. */
  stageLosses: number
  stageLossesPerHour: number
  /** The steady-state whole-stage loss rate of the whole pipeline (module comment). */
  expectedStageLossesPerHour: number
  /** How long a lost replica is missing: detection + one exact copy + one iteration (the join catches up at a commit), seconds. */
  replicaWindowS: number
  /** A whole-stage loss's stall: detection + CheckFree rebuild, seconds. */
  stageLossStallS: number
}

/** The failure-free iteration with `r` live replicas in the worst-served stage. */
export function replicaIterationS (cost: CostModel, r: number): { iterationS: number, allReduceS: number } {
  const S = cost.stages
  const M = cost.p.microbatches
  const slot = cost.slotS({ swaps: false, redundantCompute: false })
  let gradientBytes = 0
  for (let s = 0; s < S; s++) gradientBytes = Math.max(gradientBytes, cost.p.stageParams[s] * cost.p.bytesPerParam)
  const allReduceS = r <= 1 ? 0 : 2 * (r - 1) / r * gradientBytes / cost.p.linkBytesPerS * cost.p.timeScale + 2 * (r - 1) * cost.p.linkLatencyS
  return { iterationS: (Math.ceil(M / r) + S - 1) * slot + allReduceS, allReduceS }
}

/** Steady-state whole-stage losses per hour of an S-stage pipeline with R replicas (module comment). */
export function expectedStageLossesPerHour (stages: number, replicas: number, lambdaPerHour: number, windowS: number): number {
  const lw = lambdaPerHour * windowS / 3600
  const q = lw / (1 + lw)
  return stages * replicas * lambdaPerHour / (1 + lw) * q ** (replicas - 1)
}

export function runReplicaProjection (cfg: ReplicaProjectionConfig): ReplicaProjectionResult {
  const R = cfg.replicas
  const h = cfg.hourlyRate
  const hours = cfg.hours ?? 2000
  const seed = cfg.seed ?? 1
  if (!Number.isInteger(R) || R < 1) throw new SimConfigError(`replicas must be a positive integer, got ${String(R)}`)
  if (!(h > 0 && h < 1)) throw new SimConfigError(`hourlyRate must be in (0, 1), got ${String(h)}`)
  if (!(hours > 0) || !Number.isFinite(hours)) throw new SimConfigError(`hours must be a positive number, got ${String(hours)}`)
  if (!Number.isSafeInteger(seed)) throw new SimConfigError(`seed must be an integer, got ${String(seed)}`)
  const cost = costModelForLlm({ ...PAPER_HARNESS_PROFILE, ...cfg.profile }, cfg.cost)
  const S = cost.stages
  const M = cost.p.microbatches
  const tokensPerIteration = M * (cfg.profile?.microbatchSize ?? PAPER_HARNESS_PROFILE.microbatchSize) * (cfg.profile?.seqLen ?? PAPER_HARNESS_PROFILE.seqLen)
  const slot = cost.slotS({ swaps: false, redundantCompute: false })
  const lambda = -Math.log1p(-h) // per hour
  let worstCopy = 0
  let worstRebuild = 0
  for (let s = 0; s < S; s++) {
    worstCopy = Math.max(worstCopy, cost.exactCopy(s).seconds)
    worstRebuild = Math.max(worstRebuild, s > 0 && s < S - 1 ? cost.checkfreeRebuild(s).seconds : cost.checkfreePlusCopy(s).seconds)
  }
  const iterS = (r: number): number => replicaIterationS(cost, r).iterationS
  const replicaWindowS = cost.p.detectionS + worstCopy + iterS(R)
  const stageLossStallS = cost.p.detectionS + worstRebuild

  // Every peer's failures, merged in time order: (time s, stage, replica slot).
  const rand = mulberry32(hashKey(seed, R, Math.round(h * 1e6)))
  const horizon = hours * 3600
  const events: Array<{ t: number, stage: number, slot: number }> = []
  for (let s = 0; s < S; s++) {
    for (let k = 0; k < R; k++) {
      for (let t = 0; ;) {
        t += -Math.log(1 - rand()) / lambda * 3600
        if (t >= horizon) break
        events.push({ t, stage: s, slot: k })
      }
    }
  }
  events.sort((a, b) => a.t - b.t)

  // Walk time: training runs at the speed of the worst-served stage between events.
  const downUntil = Array.from({ length: S }, () => new Float64Array(R))
  const live = (s: number, t: number): number => { let n = 0; for (const d of downUntil[s]) if (d <= t) n++; return n }
  const worstLive = (t: number): number => { let r = R; for (let s = 0; s < S; s++) r = Math.min(r, live(s, t)); return r }
  let tokens = 0
  let lost = 0 // seconds of training time taken by re-runs and stalls
  let clock = 0
  let replicaLosses = 0
  let stageLosses = 0
  let failures = 0
  /** Trains from `clock` to `until`, at the speed of the moment (replicas come back on the way). */
  const trainUntil = (until: number): void => {
    while (clock < until) {
      const r = worstLive(clock)
      // the next return of a replica, if before `until`, changes the speed
      let next = until
      for (const d of downUntil) for (const x of d) if (x > clock && x < next) next = x
      const span = next - clock
      const free = Math.min(span, lost)
      lost -= free
      if (r > 0) tokens += (span - free) / iterS(r) * tokensPerIteration
      clock = next
    }
  }
  for (const e of events) {
    trainUntil(e.t)
    const d = downUntil[e.stage]
    if (d[e.slot] > e.t) continue // down already: the replacement's peer is not there yet
    failures++
    const before = live(e.stage, e.t)
    if (before > 1) {
      replicaLosses++
      lost += cost.p.detectionS + iterS(worstLive(e.t)) / 2 // detected, then the iteration in flight is redone
      d[e.slot] = e.t + replicaWindowS
    } else {
      stageLosses++
      // no replica serves during the stall (no tokens); the rebuilt one serves after it, the others copy it in parallel
      for (let k = 0; k < R; k++) d[k] = e.t + stageLossStallS + (k === e.slot ? 0 : worstCopy)
    }
  }
  trainUntil(horizon)

  const free = replicaIterationS(cost, R)
  const lossWindow = R === 1 ? stageLossStallS : replicaWindowS
  return {
    replicas: R,
    stages: S,
    hourlyRate: h,
    hours,
    seed,
    iterationS: free.iterationS,
    allReduceS: free.allReduceS,
    tokensPerS: tokensPerIteration / free.iterationS,
    growingBatchTokensPerS: R * tokensPerIteration / ((M + S - 1) * slot + free.allReduceS),
    churnTokensPerS: tokens / horizon,
    peerFailures: failures,
    replicaLosses,
    stageLosses,
    stageLossesPerHour: stageLosses / hours,
    expectedStageLossesPerHour: expectedStageLossesPerHour(S, R, lambda, lossWindow),
    replicaWindowS,
    stageLossStallS
  }
}

/** Text table of replica projections (one row each). */
export function formatReplicaProjections (rows: ReplicaProjectionResult[]): string {
  const r0 = rows[0]
  const lines = [
    `replicas projection: ${r0.stages} stages (the CheckFree paper's throughput harness shape), failures per peer, ${r0.hours} simulated hours per row`,
    `a lost replica costs detection + half an iteration redone and is missing for ${r0.replicaWindowS.toFixed(2)} s (detection + exact copy + one iteration to catch up); a whole-stage loss stalls ${r0.stageLossStallS.toFixed(2)} s (detection + CheckFree rebuild)`
  ]
  const header = ['R', 'peer fail/h', 'peers', 'iteration', 'all-reduce', 'tokens/s', 'tokens/s (churn)', 'tokens/s (R x batch)', 'peer failures', 'replica losses', 'stage losses', 'stage losses/h', 'expected/h']
  const cells = rows.map(r => [String(r.replicas), `${(r.hourlyRate * 100).toFixed(0)}%`, String(r.replicas * r.stages), `${r.iterationS.toFixed(3)} s`, `${r.allReduceS.toFixed(3)} s`, r.tokensPerS.toFixed(0), r.churnTokensPerS.toFixed(0), r.growingBatchTokensPerS.toFixed(0), String(r.peerFailures), String(r.replicaLosses), String(r.stageLosses), r.stageLossesPerHour.toPrecision(3), r.expectedStageLossesPerHour.toPrecision(3)])
  const widths = header.map((x, i) => Math.max(x.length, ...cells.map(c => c[i].length)))
  const fmt = (c: string[]): string => c.map((x, i) => x.padStart(widths[i])).join('  ')
  lines.push(fmt(header), widths.map(w => '-'.repeat(w)).join('  '), ...cells.map(fmt))
  return lines.join('\n')
}

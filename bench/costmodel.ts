/**
 * bench:costmodel — the simulator's cost model (sim/cost-model.ts) against a real local cluster.
 *
 * The demo model (model/presets.ts `demo`) trains on a coordinator in this process and peer
 * processes on loopback while a short hand-written trace is replayed on it: clean iterations, a
 * crash of an intermediate stage (SIGKILL: CheckFree), a spot notice (SIGTERM: handover), a crash of
 * the last stage (the ladder's checkpoint rung) and a sparse checkpoint every K iterations. Spares
 * for the trace's joins are started with the cluster, so no process start-up falls in an iteration.
 *
 * Measured, each against the attempts next to it (the load on this shared machine drifts within
 * minutes): the clean iteration; each failure's cost, signal -> recovered (the stage installed and
 * every stage on the new epoch) plus the redone iteration beyond the clean iterations before it; a
 * checkpoint's cost, in a phase after the replay with a checkpoint every other commit, each attempt
 * after a snapshot commit less the mean of its two neighbours after plain commits.
 *
 * Predicted with the cost model from parameters measured in the same run, independently of those
 * outcomes, each printed with its source: compute from a step of the same stages, each in a probe
 * process of its own, just before each attempt (never in this process: it would stall the
 * coordinator's event loop); how the host's cores serve several busy stage processes from the same
 * probe processes (bench/costmodel-probe.ts) computing alone and at once; the link from
 * weights-protocol pulls between the replay's attempts (each recovery at the rate around it) and
 * pings before training; the control round trip from the heartbeats' gossip delay and the
 * coordinator's persist; the recovery round's parts apart from the failures predicted: the
 * survivors' and donors' take of an epoch published into a busy iteration (a stage frozen for a
 * crash, none for a notice); from calibration recoveries before and after the replay (none of them
 * predicted: a stage's peer SIGKILLed or SIGTERMed during an iteration and recovered by the
 * ladder) the detector's path, a notice's path, the coordinator's own part of a round, the rebuilt
 * peer's own part of it beyond the transfer and the rebuilt stage's cold first iteration; the
 * snapshot rate from the peers' own snapshot routine. Nothing is fitted. Each recovery's timeline as the
 * coordinator saw it is printed beside its figure. The probes are in costmodel-probes.ts, the
 * calibration recoveries in costmodel-calibration.ts, the checkpoint phase in costmodel-checkpoint.ts.
 *
 * Ends with `bench: costmodel_error=<largest relative error>` (target <= 0.2).
 */
import '../common/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Coordinator, StageLostError, type CheckpointEvent, type RecoveryEvent } from '../coordinator/index.js'
import { CONFIG_PRESETS, resolveModelConfig, resolveTrainConfig, initBackend, stageLayout, Stage } from '../model/index.js'
import type { CostModel } from '../sim/cost-model.js'
import { costModelForModel } from '../sim/cost-profiles.js'
import { CostValidationError, median, predictRecovery, relativeError } from '../sim/cost-validation.js'
import { planBatch } from '../sim/ladder-adapter.js'
import { makeTrace, type TraceEvent } from '../sim/trace.js'
import { benchSecret, startPeer, stopCluster, holder, type BenchPeer } from './harness.js'
import {
  BUSY_AT, EpochWatch, Probe, measureSnapshot, medianSample, ms, probeBusyEpoch, probeCapacity,
  roundPullRates, roundTakes, probeCheckpointCpu, probeGossip, probeLink, probePersist, sampleCompute, sampleLink, sleep, stepS,
  type Capacity, type ComputeSample, type EpochProbe, type EpochSample
} from './costmodel-probes.js'
import { probeCalibration, type CalibrationSample } from './costmodel-calibration.js'
import { checkpointPhase } from './costmodel-checkpoint.js'

const STRATEGY = 'checkfree'
const CHECKPOINT_EVERY = 5
/** The checkpoint phase: this many attempts after a snapshot commit, each between two after plain commits. */
const CHECKPOINT_PAIRS = 40
// The detector's floor for silent peers. Local-cluster mode uses 5 s; on this shared 2-core machine a
// peer building its stage under load has gone 5 s without a heartbeat, so 10 s as in bench:recovery.
// A SIGKILL is found by the closed connection, not by this floor.
const HEARTBEAT_TIMEOUT_MS = 10_000
/**
 * The calibration recoveries (probeCalibration): the first half before the replay, the rest after
 * it. A crash of each stage but the first four times, and a notice of the stage the trace hands
 * over eight times (the path of a notice, signal -> departure known, is a stage's own: it announces
 * once through the compute it is inside, so it lands anywhere from 2 to 400 ms after the signal:
 * four a run in runs AC to AE gave 2 to 397 ms). Each uses a spare.
 */
const CALIBRATIONS = Array.from({ length: 4 }, () => [
  { stage: 1, kind: 'crash' as const }, { stage: 2, kind: 'notice' as const }, { stage: 2, kind: 'crash' as const }, { stage: 3, kind: 'crash' as const }, { stage: 2, kind: 'notice' as const }
]).flat()
/** The replay's link samples: a pull between attempts every this many attempts; a recovery's pull is charged at the median of the LINK_NEAREST samples nearest it. */
const LINK_EVERY = 2
const LINK_NEAREST = 5
/** Rounds of each busy-epoch probe; each probe is taken before the replay and again after it. */
const EPOCH_ROUNDS = 3

const preset = CONFIG_PRESETS.demo
const model = resolveModelConfig(preset.model)
const train = resolveTrainConfig(preset.train, model)
const S = train.stages
const M = train.microbatches

/**
 * The trace: attempts on the trace's clock, a failure's offset inside its attempt as timeS. Each
 * kind of failure REPEATS times, 6 attempts apart: one recovery on this shared machine varied by
 * 2x between runs, so each rung's figure is the median of its REPEATS.
 */
const REPEATS = 6
/** A failure's figure is measured against the median of the clean attempts up to this many before it and after its redone attempt. */
const NEIGHBOURS = 3
const FAILURES = [
  { stage: 1, kind: 'crash' as const }, // CheckFree
  { stage: 2, kind: 'notice' as const }, // handover
  { stage: 3, kind: 'crash' as const } // the checkpoint rung: the last stage cannot be rebuilt by CheckFree
]
const FIRST_FAILURE = 7
const FAILURE_SPACING = 6
const trace = makeTrace({
  stages: S,
  iterations: FIRST_FAILURE + FAILURES.length * REPEATS * FAILURE_SPACING - 2,
  seed: 13,
  events: Array.from({ length: REPEATS }, (_, r) => FAILURES.map((f, k) => {
    const iteration = FIRST_FAILURE + (r * FAILURES.length + k) * FAILURE_SPACING
    return [
      { iteration, timeS: iteration + 0.4, stage: f.stage, kind: f.kind, peer: `s${f.stage}.${r}` },
      { iteration, timeS: iteration + 0.4, stage: f.stage, kind: 'join' as const, peer: `s${f.stage}.${r + 1}` }
    ]
  }).flat()).flat()
})

/** The coordinator's ladder's plan for one failure of the trace (a complete checkpoint on disk). */
function rungOf (f: { kind: 'crash' | 'notice', stage: number }, checkpoint = 1): { rung: string, donors: readonly number[] } {
  const plan = planBatch({ strategy: STRATEGY, stages: S, lost: [{ stage: f.stage, kind: f.kind }], checkpoint }).plans[0]
  if (plan == null) throw new CostValidationError(`the ladder has no plan for the ${f.kind} of stage ${f.stage}`)
  return plan
}

// ------------------------------------------------------------------ the replay

interface Attempt {
  attempt: number
  iteration: number
  startS: number
  endS: number
  committed: boolean
  /** The commit asked the stages for a checkpoint snapshot. */
  snapshot: boolean
  /** Per stage, its own compute in this attempt, s (the done reports'; committed attempts only). */
  computeS?: number[]
  event?: TraceEvent
  signalS?: number
  /** When the aborted iteration returned, and when the recovery (reconcile) did. */
  abortedS?: number
  recoveredS?: number
  /** A step of the stages (in the probe processes) measured just before this attempt (none right after a snapshot commit,
   *  whose background upload it would hide). */
  baseline?: ComputeSample
  /** A pull of a stage's state over the link just before this attempt (every LINK_EVERY attempts with a baseline), bytes/s. */
  linkBytesPerS?: number
  /** A failure's recovery as the coordinator saw it, s on the bench clock. */
  timeline?: EpochWatch
}

interface Replay {
  attempts: Attempt[]
  recoveries: RecoveryEvent[]
  checkpoints: CheckpointEvent[]
  /** Iteration of the newest complete checkpoint on disk at each failure. */
  checkpointAt: Map<number, number>
}

async function replay (coord: Coordinator, peers: BenchPeer[], clock: () => number, baseline: (attempt: number) => Promise<ComputeSample>): Promise<Replay> {
  const out: Replay = { attempts: [], recoveries: [], checkpoints: [], checkpointAt: new Map() }
  coord.on('recovery', (evs: RecoveryEvent[]) => { out.recoveries.push(...evs) })
  coord.on('checkpoint', (e: CheckpointEvent) => { out.checkpoints.push(e) })
  const byAttempt = new Map<number, TraceEvent>()
  for (const e of trace.events) if (e.kind !== 'join') byAttempt.set(e.iteration, e)
  // the recovery in flight, if any: what the coordinator knew when
  let timeline: EpochWatch | undefined
  const clean: number[] = []
  for (let a = 0; a < trace.iterations; a++) {
    const event = byAttempt.get(a)
    const sample = out.attempts.slice(-2).some(x => x.snapshot) ? undefined : await baseline(a)
    const link = sample != null && a % LINK_EVERY === 0 ? (await sampleLink(coord, peers)).bytesPerS : undefined
    const rec: Attempt = { attempt: a, iteration: coord.iteration, startS: clock(), endS: 0, committed: false, snapshot: false, ...(event != null ? { event } : {}), ...(sample != null ? { baseline: sample } : {}), ...(link != null ? { linkBytesPerS: link } : {}) }
    const running = coord.runIteration({ timeoutMs: 120_000 })
    if (event != null) {
      out.checkpointAt.set(a, coord.store?.list().find(c => c.complete)?.iteration ?? 0)
      // the trace's offset inside the attempt, on the clean iterations seen so far
      const u = event.timeS - event.iteration
      await sleep(u * median(clean) * 1000)
      const victim = holder(coord, peers, event.stage)
      timeline = new EpochWatch(coord, clock)
      rec.timeline = timeline
      rec.signalS = clock()
      victim.child.kill(event.kind === 'notice' ? 'SIGTERM' : 'SIGKILL')
    }
    try {
      const r = await running
      rec.committed = true
      rec.computeS = r.computeMs.map(x => x / 1000)
      rec.snapshot = (r.iteration + 1) % CHECKPOINT_EVERY === 0
    } catch (err) {
      if (!(err instanceof StageLostError)) throw err
      rec.abortedS = clock()
    }
    if (event != null && rec.committed) throw new CostValidationError(`attempt ${a} committed although its ${event.kind} came ${ms((rec.signalS ?? 0) - rec.startS)} into it: the failure fell between iterations`)
    if (event != null) {
      await coord.reconcile({ timeoutMs: 120_000 })
      rec.recoveredS = clock()
      timeline?.stop()
      timeline = undefined
    }
    rec.endS = clock()
    out.attempts.push(rec)
    if (event == null && a >= 2) clean.push(rec.endS - rec.startS)
  }
  await coord.flushCheckpoints()
  return out
}

// ------------------------------------------------------------------ main

/** A calibration recovery with the step measured before it and the link's rate sampled right after it. */
type Calibration = CalibrationSample & { at: ComputeSample, linkBytesPerS: number }

const stateDir = await mkdtemp(join(tmpdir(), 'spotpipe-costmodel-'))
let cluster: { coord: Coordinator, peers: BenchPeer[] } | undefined
let failed = false
try {
  await initBackend({ backend: 'wasm', strict: true })
  console.log(`demo model: d=${model.dModel}, ${model.nBlocks} blocks, seq ${model.seqLen}; ${S} stages x ${M} microbatches of ${train.microbatchSize}; strategy ${STRATEGY}, a checkpoint every ${CHECKPOINT_EVERY} iterations`)
  console.log(`trace (seed ${trace.seed}, ${trace.iterations} attempts): ${trace.events.filter(e => e.kind !== 'join').map(e => `${e.kind} of stage ${e.stage} at attempt ${e.iteration}`).join(', ')}; joins are spares started with the cluster`)

  // the snapshot rate, on stage 1 (the same seeded weights its peer starts from)
  const local = new Stage({ model, train, layout: stageLayout(model, S, 1) })
  const snapshot = measureSnapshot(local)
  local.dispose()
  const capacities: Capacity[] = []

  // a spare per join of the trace, one in reserve, and one per calibration recovery
  const spares = trace.events.filter(e => e.kind === 'join').length + 1 + CALIBRATIONS.length
  const secret = await benchSecret()
  const coord = new Coordinator({ clusterId: `costmodel-${process.pid}`, model: preset.model, train: preset.train, strategy: STRATEGY, stateDir, checkpointEvery: CHECKPOINT_EVERY, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, swarmKey: secret.swarmKey })
  await coord.start()
  const peers: BenchPeer[] = []
  cluster = { coord, peers }
  peers.push(...await Promise.all(Array.from({ length: S + spares }, async () => await startPeer(coord.addrs[0], coord.init.clusterId, secret.access))))
  // a probe process per stage, computing its stage's steps only when told
  const probes = Array.from({ length: S }, (_, s) => new Probe(s))
  await Promise.all(probes.map(async p => await p.ask({ type: 'start', model: preset.model, train: preset.train, stage: p.stage }, 'ready')))
  await coord.assignInitial({ timeoutMs: 300_000 })
  // a stage lost while the first epoch was being taken (a starved peer) uses the reserve spare
  if (coord.needsRound()) await coord.reconcile({ timeoutMs: 120_000 })
  // The host's speed moves within minutes (other sessions' load), and every time measured here is
  // CPU on this host: each probe is taken with a step of the stages measured beside it (the same
  // step each attempt is predicted from), so that a failure is charged the probe's time at the speed
  // of the step measured before that failure. `step` numbers the steps' batches.
  let step = 0
  const stepNow = async (): Promise<ComputeSample> => await sampleCompute(probes, 1000 + step++)
  const link = await probeLink(coord, peers)
  const gossipS = await probeGossip(coord, 3000)
  const persistS = await probePersist(coord)
  // under load: warm iterations, then the probes that act inside clean ones
  // the cluster's first iterations: every stage's peer computes its stage for the first time in the
  // first one (each stage's own compute from its done report), then warm ones
  const first: Array<{ s: number, computeS: number[] }> = []
  for (let i = 0; i < 4; i++) {
    const w0 = performance.now()
    const r = await coord.runIteration({ timeoutMs: 120_000 })
    first.push({ s: (performance.now() - w0) / 1000, computeS: r.computeMs.map(x => x / 1000) })
  }
  const busyPeriodS = median(first.slice(1).map(f => f.s))
  // calibration recoveries, half of them here: the detector's path, the coordinator's part of a
  // round, the cold first iteration
  const half = Math.ceil(CALIBRATIONS.length / 2)
  const calibrations: Calibration[] = []
  const calibrate = async (c: { stage: number, kind: 'crash' | 'notice' }): Promise<void> => {
    const at = await stepNow()
    // before each iteration after the recovery, what the replay runs before an attempt: a step, and
    // before every second one (the first as before a redone attempt) a pull over the link
    let linkBytesPerS = NaN
    const before = async (i: number): Promise<void> => {
      await stepNow()
      if (i % LINK_EVERY !== 0) return
      const rate = (await sampleLink(coord, peers)).bytesPerS
      if (i === 0) linkBytesPerS = rate
    }
    const k = await probeCalibration(coord, peers, c.stage, c.kind, before)
    calibrations.push({ ...k, at, linkBytesPerS })
  }
  for (const c of CALIBRATIONS.slice(0, half)) await calibrate(c)
  const ofKind = (kind: 'crash' | 'notice'): Calibration[] => calibrations.filter(k => k.kind === kind)
  // the crash probes below publish their epoch this long after freezing their stage
  const detectedS = median(ofKind('crash').map(k => k.knownS))
  // the survivors' epoch: every stage busy (a notice), and with each crashed stage of the trace
  // frozen; each with the pull from its rung's donor peers, if it has any; taken before the replay
  // and again after it
  const pullOf = (f: { kind: 'crash' | 'notice', stage: number }): { stages: number[], includeOptimizer: boolean } | undefined => {
    const plan = rungOf(f)
    return plan.donors.length === 0 ? undefined : { stages: [...plan.donors], includeOptimizer: plan.rung !== 'checkfree' && plan.rung !== 'checkfree-plus' }
  }
  const notice = FAILURES.find(f => f.kind === 'notice')
  const busyEpoch: EpochSample[] = []
  const crashEpoch = new Map<number, EpochSample[]>()
  const crashed = [...new Set(FAILURES.filter(f => f.kind === 'crash').map(f => f.stage))]
  const probeEpochs = async (): Promise<void> => {
    let at = await stepNow()
    busyEpoch.push({ probe: await probeBusyEpoch(coord, EPOCH_ROUNDS, undefined, notice != null ? pullOf(notice) : undefined), at })
    for (const st of crashed) {
      at = await stepNow()
      const probe = await probeBusyEpoch(coord, EPOCH_ROUNDS, { peer: holder(coord, peers, st), stage: st, delayS: detectedS }, pullOf({ kind: 'crash', stage: st }))
      crashEpoch.set(st, [...crashEpoch.get(st) ?? [], { probe, at }])
    }
  }
  await probeEpochs()
  capacities.push(await probeCapacity(probes))

  const t0 = performance.now()
  const t0Wall = Date.now()
  const clock = (): number => (performance.now() - t0) / 1000
  const run = await replay(coord, peers, clock, async (a) => await sampleCompute(probes, 100 + a))
  for (const c of CALIBRATIONS.slice(half)) await calibrate(c)
  await probeEpochs()
  capacities.push(await probeCapacity(probes))
  const phaseSamples = [await sampleCompute(probes, 200), await sampleCompute(probes, 201)]
  const phase = await checkpointPhase(coord, peers, coord.init, { pairs: CHECKPOINT_PAIRS, every: CHECKPOINT_EVERY })
  phaseSamples.push(await sampleCompute(probes, 202), await sampleCompute(probes, 203))
  const checkpointCpuSPerByte = await probeCheckpointCpu(coord, peers, join(stateDir, 'cpu-probe-store'))
  capacities.push(await probeCapacity(probes))
  for (const p of probes) p.child.kill('SIGKILL')

  // ---- parameters: shared by every prediction but the compute, which each attempt takes from the
  // step measured just before it, and the probes' times, which each failure takes at the speed of
  // that step (the load on this shared machine drifts)
  // the host's capacity around what is predicted: before and after the replay for its attempts,
  // before and after the checkpoint phase for a checkpoint (the probe before the replay gave 1.1 to
  // 1.3 CPU seconds per second in runs AB to AF, the one after the phase 1.8 to 1.95)
  const capacityOf = (cs: Capacity[]): { units: number, cpuCores: number } => ({
    units: Math.min(availableParallelism(), median(cs.map(c => c.units))),
    cpuCores: Math.min(availableParallelism(), median(cs.map(c => c.cpuCores)))
  })
  const { units: cores, cpuCores } = capacityOf(capacities.slice(0, 2))
  const phaseCapacity = capacityOf(capacities.slice(1, 3))
  const iterationOverheadS = 2 * gossipS + persistS
  /** A time measured beside the step `at`, at the speed of the step `now`. */
  const atSpeed = (x: number, at: ComputeSample, now: ComputeSample): number => x * stepS(now) / stepS(at)
  const atts = run.attempts
  // the link's rate: before training, and from the samples between the replay's attempts
  const linkSamples = atts.filter(a => a.linkBytesPerS != null)
  const linkRates = linkSamples.map(a => a.linkBytesPerS as number)
  const linkBytesPerS = median(linkRates)
  /** The link's rate around attempt `i`: the median of the LINK_NEAREST samples nearest it. */
  const linkNear = (i: number): number => median([...linkSamples].sort((x, y) => Math.abs(x.attempt - i) - Math.abs(y.attempt - i)).slice(0, LINK_NEAREST).map(x => x.linkBytesPerS as number))
  /** The detector's path (the crashes), a notice's path (the notices) and the coordinator's part of a round (all), from the calibration recoveries, per second of the step beside each. */
  const crashes = ofKind('crash')
  const notices = ofKind('notice')
  const detectionPerStep = median(crashes.map(k => k.knownS / stepS(k.at)))
  const noticeHeardPerStep = median(notices.map(k => k.knownS / stepS(k.at)))
  const roundPerStep = median(calibrations.map(k => (k.beforePublishS + k.afterTakesS) / stepS(k.at)))
  /**
   * The rebuilt peer's own part of a round beyond the transfer, from the calibration recoveries: the
   * epoch published -> the rebuilt stage's take, less the latest donor peer's take (0 for the store)
   * and the transfer of its bytes at the link's rate sampled right after it; per second of the step
   * beside each. What the rebuilt peer does there: take the epoch, open its streams to the donors,
   * the pull's first exchange, build the stage from the state, pack its weights, report the take.
   */
  const rebuildOf = (k: Calibration): number | undefined => k.donorsReadyS == null ? undefined : Math.max(0, k.rebuiltTakeS - k.donorsReadyS - k.bytes / k.linkBytesPerS)
  const rebuildPerStep = median(calibrations.flatMap(k => { const x = rebuildOf(k); return x == null ? [] : [x / stepS(k.at)] }))
  const costFor = (c: ComputeSample, linkRate = linkBytesPerS): CostModel => costModelForModel(model, train, stepS(c), {
    hostCores: cores,
    hostCpuCores: cpuCores,
    forwardFraction: c.forwardS / stepS(c),
    linkBytesPerS: linkRate,
    storageBytesPerS: linkRate,
    linkLatencyS: link.latencyS,
    snapshotBytesPerS: snapshot.bytesPerS,
    detectionS: detectionPerStep * stepS(c),
    noticeLeadS: 0,
    iterationOverheadS,
    roundOverheadS: roundPerStep * stepS(c),
    rebuildOverheadS: rebuildPerStep * stepS(c),
    transferCpuSPerByte: checkpointCpuSPerByte
  })
  const baselines = atts.flatMap(a => a.baseline ?? [])
  const typical = medianSample(baselines)
  const cost = costFor(typical)
  const all = Array.from({ length: S }, (_, st) => st)
  // The cold first iteration, from the calibration recoveries: what the first iteration after each
  // took beyond the median of the next two, as the cold compute on the rebuilt stage's first
  // forward and backward that gives that delay in the model's pipeline schedule at the step
  // measured beside it (solved by bisection: the delay grows with the compute), per second of that
  // step; a stage's from the calibrations of that stage (where the cold compute sits in the
  // pipeline decides what it delays, and the stages' first iterations differ: the last stage's
  // calibrations gave 0 to 213 ms of cold compute where stages 1 and 2 gave 260 to 800 in runs U
  // to W). The rebuilt peer's own compute and the fresh probes' share are printed beside it.
  const coldFor = (c: CostModel, st: number, delayS: number): number => {
    if (delayS <= 0) return 0
    const delay = (x: number): number => c.with({ coldIterationS: x }).coldIterationDelayS([st])
    let hi = c.p.slotComputeS
    for (let k = 0; k < 40 && delay(hi) < delayS; k++) hi *= 2
    let lo = 0
    for (let k = 0; k < 50; k++) {
      const mid = (lo + hi) / 2
      if (delay(mid) < delayS) lo = mid
      else hi = mid
    }
    return (lo + hi) / 2
  }
  const coldPerStep = calibrations.map(k => coldFor(costFor(k.at), k.stage, k.firstPeriodS - k.warmPeriodS) / stepS(k.at))
  /** Stage `st`'s cold compute per second of step: the median of its own calibrations (of them all for a stage never calibrated). */
  const coldPerStepOf = (st: number): number => {
    const own = coldPerStep.filter((_, k) => calibrations[k].stage === st)
    return median(own.length > 0 ? own : coldPerStep)
  }
  /** Over every round of the probes `samples`, the latest take among `stages`, each at the speed of `c`: their median. */
  const takeAt = (samples: EpochSample[], stages: readonly number[], c: ComputeSample): number =>
    median(samples.flatMap(x => roundTakes(x.probe, stages).map(t => atSpeed(t, x.at, c))))
  /**
   * A failure's cost model at the step `c` measured before it: the survivors' epoch from the probe
   * of its kind (every stage busy for a notice, its stage frozen for a crash), the latest survivor's
   * take and the latest donor's (`donors`: the rung's), a notice heard when its stage is through its
   * compute, the cold first iteration; each probe's time at the speed of `c`.
   */
  const failureCost = (c: ComputeSample, f: { kind: 'crash' | 'notice', stage: number }, donors: readonly number[], linkRate = linkBytesPerS): CostModel => {
    const samples = (f.kind === 'crash' ? crashEpoch.get(f.stage) : undefined) ?? busyEpoch
    // a peer donor serves at the rate its probe's pull had in the round (a rate: the inverse of a
    // time at the failure's speed); the store at the link's
    const pulled = donors.length > 0 && samples.every(x => x.probe.pulls != null)
    const base = costFor(c, pulled ? median(samples.flatMap(x => roundPullRates(x.probe, donors).map(r => r / atSpeed(1, x.at, c)))) : linkRate)
    return base.with({
      epochTakeS: takeAt(samples, all.filter(st => st !== f.stage), c),
      ...(donors.length > 0 ? { donorReadyS: takeAt(samples, donors, c) } : {}),
      noticeHeardS: f.kind === 'notice' ? noticeHeardPerStep * stepS(c) : 0,
      coldIterationS: coldPerStepOf(f.stage) * stepS(c)
    })
  }
  const PLAIN = { swaps: false, redundantCompute: false }
  console.log('\nparameters (each measured in this run, beside or before the replay, or configuration):')
  console.log(`  slotComputeS        ${ms(cost.p.slotComputeS)} (median; each attempt's own from the step just before it): steps of the ${S} stages, each stage in its probe process, one after another (${baselines.length} steps between the attempts, ${ms(Math.min(...baselines.map(stepS)))}..${ms(Math.max(...baselines.map(stepS)))}; median forward ${ms(typical.forwardS)}, backward ${ms(typical.backwardS)}, clip + Adam ${ms(typical.stepS)}) / (S x M)`)
  console.log(`  forwardFraction     ${cost.p.forwardFraction?.toFixed(3)}: forward / whole step, same steps`)
  console.log(`  hostCores           ${cores.toFixed(2)}: what ${S} stage processes computing at once get of this host, in units of one alone (${capacities.map(c => c.units.toFixed(2)).join(', ')}: before the replay, after it, after the checkpoint phase; the replay's attempts at the median of the first two, a checkpoint at the median of the last two: ${phaseCapacity.units.toFixed(2)}), at most os.availableParallelism() = ${availableParallelism()}; every stage is a process on this host`)
  console.log(`  hostCpuCores        ${cpuCores.toFixed(2)}: the CPU seconds per second (/proc) the same ${S} processes got while they computed at once (${capacities.map(c => c.cpuCores.toFixed(2)).join(', ')}; the same probes, a checkpoint at ${phaseCapacity.cpuCores.toFixed(2)}), at most ${availableParallelism()}: the unit transferCpuSPerByte counts in, over which a background transfer's CPU is spread; new, default hostCores`)
  console.log(`  transferCpuSPerByte ${(checkpointCpuSPerByte * 1e9).toFixed(1)} ns/B: CPU of both ends of the store's pull of every stage's checkpoint snapshot, pulled again from its holders into the previous pull's arrays and written as the store writes it (a scratch store), on the idle cluster after the replay, median of 4 rounds; new, default 0`)
  console.log(`  hopBytes            ${cost.p.hopBytes} B: B x T x D x 4 (the model)`)
  console.log(`  linkBytesPerS       ${(linkBytesPerS / 2 ** 20).toFixed(1)} MB/s (median; each recovery at the median of the ${LINK_NEAREST} samples nearest it): stage 1's weights + Adam (${(link.bytes / 2 ** 20).toFixed(1)} MB) pulled over the weights protocol from its peer into new arrays (as a rebuilt peer pulls), before every ${LINK_EVERY}nd attempt of the replay that has a step measured (${linkRates.length} pulls, ${(Math.min(...linkRates) / 2 ** 20).toFixed(1)}..${(Math.max(...linkRates) / 2 ** 20).toFixed(1)} MB/s; before training ${(link.bytesPerS / 2 ** 20).toFixed(1)} MB/s, median of 3)`)
  console.log('  storageBytesPerS    the same: the store is this process, pulling over the same loopback')
  console.log(`  linkLatencyS        ${(link.latencyS * 1000).toFixed(2)} ms: half the median libp2p ping round trip to a peer`)
  console.log(`  snapshotBytesPerS   ${(snapshot.bytesPerS / 1e9).toFixed(2)} GB/s: exportStageState into the previous snapshot's arrays (a peer's checkpoint snapshot), ${(snapshot.bytes / 2 ** 20).toFixed(1)} MB stage`)
  const speedNote = (at: ComputeSample): string => `beside a step of ${ms(stepS(at))}`
  console.log(`  (the probes' speed)  each failure is charged a probe's time x (the step before the failure / the step beside the probe): the steps ran ${ms(Math.min(...baselines.map(stepS)))}..${ms(Math.max(...baselines.map(stepS)))} over the replay, median ${ms(stepS(typical))}; the values below are at the median step`)
  const calNote = (k: Calibration, x: number): string => `${k.kind} of stage ${k.stage} ${ms(x)} ${speedNote(k.at)}`
  console.log(`  detectionS          ${ms(cost.p.detectionS)}: the detector's path for a killed stage holder, from the ${crashes.length} crash calibration recoveries (of ${calibrations.length}: ${half} before the replay, ${calibrations.length - half} after; a stage's peer SIGKILLed ${BUSY_AT} into an iteration, of the clean one just before, to the coordinator knowing the loss: its connection closed or a neighbour's stream broke, and the confirming ping refused): ${crashes.map(k => calNote(k, k.knownS)).join(', ')}; median per second of step; the ${HEARTBEAT_TIMEOUT_MS} ms heartbeat floor applies only to a silent peer`)
  console.log(`  roundOverheadS      ${ms(cost.p.roundOverheadS ?? 0)}: the coordinator's own part of a recovery round, from every calibration recovery (crashes and notices): the loss known -> the round's epoch published (the aborted iteration returned, the survey and plan, the epoch persisted and published: ${calibrations.map(k => calNote(k, k.beforePublishS)).join(', ')}) + the last stage's take -> the round's end (settled and persisted: ${calibrations.map(k => calNote(k, k.afterTakesS)).join(', ')}); median of the sums per second of step; new, default 0`)
  console.log('  noticeLeadS         0: the coordinator moves a departing stage at once (the iteration in flight is aborted); it does not wait out the notice')
  console.log(`  noticeHeardS        ${ms(noticeHeardPerStep * stepS(typical))}: a notice's path, from the ${notices.length} notice calibration recoveries (a stage's peer SIGTERMed ${BUSY_AT} into an iteration to the coordinator knowing its departure: the peer handles the signal once through the compute it is inside and its heartbeat says departing): ${notices.map(k => calNote(k, k.knownS)).join(', ')}; median per second of step (the stage's take in the all-busy probe below, the proxy earlier runs charged, at the median step: ${ms(Math.max(0, takeAt(busyEpoch, [notice?.stage ?? 2], typical) - gossipS))}); new, default 0`)
  console.log(`  iterationOverheadS  ${ms(iterationOverheadS)}: 2 x the heartbeats' one-way gossip delay (${ms(gossipS)}: begin out, done back) + the coordinator's persist per commit (${ms(persistS)}); new, default 0`)
  const showProbe = (p: EpochProbe): string => `latest ${p.takes.map(t => ms(Math.max(...t.values()))).join(', ')}; per stage, round by round: ${p.takes.map(t => [...t].sort((x, y) => x[0] - y[0]).map(([st, x]) => `${st}:${ms(x)}`).join(' ')).join('; ')}`
  console.log(`  epochTakeS          the survivors of a recovery round, each through the compute it is inside first: ${BUSY_AT} into a clean iteration it is dropped as for a loss (the abort published) and the same assignment published under a new epoch, until every stage but a frozen one took it (the iteration redone after); the latest survivor's take after the epoch's publication. For a notice every stage goes on computing (${busyEpoch.map(e => `${showProbe(e.probe)}, ${speedNote(e.at)}`).join('; then after the replay ')}); for a crash of stage s its peer is SIGSTOPped at ${BUSY_AT} and the abort published the calibrations' median detection (${ms(detectedS)}) later (${[...crashEpoch].map(([st, es]) => `stage ${st}: ${es.map(e => `${showProbe(e.probe)}, ${speedNote(e.at)}`).join('; then after the replay ')}`).join('; ')}); each probe ${EPOCH_ROUNDS} rounds, before the replay and again after it, every round at the failure's speed, their median; at the median step: notice ${ms(failureCost(typical, { kind: 'notice', stage: 2 }, []).p.epochTakeS ?? 0)}, ${[...crashEpoch.keys()].map(st => `crash of stage ${st} ${ms(failureCost(typical, { kind: 'crash', stage: st }, []).p.epochTakeS ?? 0)}`).join(', ')}; new, default 0`)
  console.log('  donorReadyS         the same probes: the latest of the rung\'s donor stages to take the epoch (a handover\'s donor is the departing stage, in the all-busy probe); the store serves at once; new, default epochTakeS')
  const pullNote = (label: string, es: EpochSample[], donors: readonly number[]): string => es.some(e => e.probe.pulls == null) ? `${label}: none (the store)` : `${label} from stage ${donors.join(' and ')}: ${es.map(e => `${roundPullRates(e.probe, donors).map(r => (r / 2 ** 20).toFixed(1)).join(', ')} MB/s (${(e.probe.pulls ?? []).map(x => `${(x.bytes / 2 ** 20).toFixed(2)} MB by ${ms(x.doneS)}`).join(', ')}), ${speedNote(e.at)}`).join('; then ')}`
  console.log(`  (a peer donor's link) in the same probes this process pulled the rung's donor stages' state as soon as the epoch was published, as the rebuilt peer pulls it; a peer donor's transfer is charged at the bytes over the time from the latest donor's take to the last byte, the median of the rounds, each at the failure's speed: ${[notice != null ? pullNote(`notice of stage ${notice.stage}`, busyEpoch, rungOf(notice).donors) : '', ...[...crashEpoch].map(([st, es]) => pullNote(`crash of stage ${st}`, es, rungOf({ kind: 'crash', stage: st }).donors))].filter(x => x !== '').join('; ')}; the store's transfer at linkBytesPerS`)
  console.log(`  rebuildOverheadS    ${ms(cost.p.rebuildOverheadS ?? 0)}: the rebuilt peer's own part of a round beyond the transfer, from the calibration recoveries: the epoch published -> the rebuilt stage's take, less the latest donor peer's take of it (the store: none) and the transfer of the bytes it pulled at the link's rate sampled right after (${calibrations.map(k => `${k.kind} of stage ${k.stage} (${k.rung}): ${ms(k.rebuiltTakeS)} - ${k.donorsReadyS == null ? 'a donor\'s take not seen' : ms(k.donorsReadyS)} - ${(k.bytes / 2 ** 20).toFixed(2)} MB at ${(k.linkBytesPerS / 2 ** 20).toFixed(1)} MB/s -> ${ms(rebuildOf(k) ?? NaN)} ${speedNote(k.at)}`).join(', ')}): taking the epoch, the pull's streams and first exchange, the stage built from the state, its weights packed, the take reported; the median per second of step; new, default 0`)
  const calibrated = [...new Set(calibrations.map(k => k.stage))].sort((x, y) => x - y)
  console.log(`  coldIterationS      of compute on the rebuilt stage's first forward and backward, per stage (at the median step): ${calibrated.map(st => `stage ${st} ${ms(coldPerStepOf(st) * stepS(typical))} (${(100 * coldPerStepOf(st) * stepS(typical) / (M * cost.p.slotComputeS)).toFixed(0)}% of a stage's compute)`).join(', ')}: the same calibration recoveries (the coordinator's ladder recovering the stage; none of them a failure predicted): the first iteration after each beyond the median of the next two (${calibrations.map((c, k) => `stage ${c.stage} (${c.rung}) ${ms(c.firstPeriodS - c.warmPeriodS)} of ${ms(c.warmPeriodS)} -> ${ms(coldPerStep[k] * stepS(c.at))} ${speedNote(c.at)}`).join(', ')}), each as the cold compute that gives that delay in the model's pipeline schedule at its step; per stage the median of its own calibrations per second of step. The rebuilt peers' own compute in those first iterations beyond the next two: ${calibrations.map(c => `${ms(c.firstOwnS - c.warmOwnS)} / ${ms(c.warmOwnS)}`).join(', ')}. Charged as what it adds to the pipeline: ${ms(failureCost(typical, { kind: 'crash', stage: 1 }, []).coldIterationDelayS([1]))} for stage 1, ${ms(failureCost(typical, { kind: 'crash', stage: S - 1 }, []).coldIterationDelayS([S - 1]))} for stage ${S - 1}. (The cluster's own first iteration, every stage cold at once: ${ms(first[0].s)} against ${ms(busyPeriodS)}, its stages' own compute ${first[0].computeS.map(ms).join(', ')} against ${all.map(st => ms(median(first.slice(1).map(f => f.computeS[st])))).join(', ')}.) New, default 0`)

  // ---- figures, each against the attempts next to it
  const period = (a: Attempt): number => a.endS - a.startS
  const plain = (a: Attempt | undefined): a is Attempt => a != null && a.event == null && a.committed
  const afterEvent = new Set<number>()
  atts.forEach((a, i) => { if (a.event != null) afterEvent.add(i + 1) })
  const clean = atts.filter((a, i) => i >= 2 && plain(a) && a.baseline != null && !afterEvent.has(i))
  const cleanSet = new Set(clean)
  const iterPred = median(clean.map(a => costFor(a.baseline as ComputeSample).iterationS(PLAIN)))
  const iterMeasured = median(clean.map(period))
  const iterErr = relativeError(iterPred, iterMeasured)
  console.log('\nfigures:')
  console.log(`iteration: predicted ${ms(iterPred)}, measured ${ms(iterMeasured)}, relative error ${iterErr.toFixed(3)}  (medians over ${clean.length} clean attempts, each predicted from the step before it; measured ${clean.map(a => (period(a) * 1000).toFixed(0)).join(' ')} ms; the formula for a machine per stage would give ${ms(cost.with({ hostCores: undefined, iterationOverheadS: 0 }).iterationS(PLAIN))})`)

  const records = run.recoveries.filter(r => r.outcome === 'recovered')
  // per kind of failure (and so per rung): the REPEATS failures' predictions and measurements
  const byRung = new Map<string, { predicted: number[], measured: number[] }>()
  for (const [i, a] of atts.entries()) {
    if (a.event == null) continue
    const redone = atts[i + 1]
    // the clean attempts next to it: up to NEIGHBOURS before the failure and after the redone one
    const around = [...atts.slice(Math.max(0, i - NEIGHBOURS), i), ...atts.slice(i + 2, i + 2 + NEIGHBOURS)].filter(x => cleanSet.has(x))
    // the step measured just before; after a snapshot commit none is, and the newest earlier one stands in
    const step = a.baseline ?? atts.slice(0, i).reverse().find(x => x.baseline != null)?.baseline
    if (!plain(redone) || around.length === 0 || step == null) throw new CostValidationError(`attempt ${a.attempt}'s ${a.event.kind} has no clean attempts around it`)
    const base = median(around.map(period))
    // signal -> recovered, then what the redone iteration took beyond the clean ones around it (the
    // step measured between the two is not the cluster's time)
    const measured = (a.recoveredS as number) - (a.signalS as number) + period(redone) - base
    const f = { kind: a.event.kind as 'crash' | 'notice', stage: a.event.stage, checkpoint: run.checkpointAt.get(a.attempt) ?? 0 }
    const donors = rungOf(f, f.checkpoint).donors
    const pc = failureCost(step, f, donors, linkNear(a.attempt))
    const p = predictRecovery(pc, STRATEGY, f)
    const rec = records.find(r => r.stage === f.stage && r.at >= t0Wall + (a.signalS as number) * 1000 - 1000)
    const key = `${f.kind} of stage ${f.stage}, rung ${p.rung}`
    const g = byRung.get(key) ?? { predicted: [], measured: [] }
    byRung.set(key, g)
    g.predicted.push(p.seconds)
    g.measured.push(measured)
    console.log(`recovery (${key}${rec != null && rec.rung !== p.rung ? `; the coordinator chose ${rec.rung}` : ''}) at attempt ${a.attempt}: predicted ${ms(p.seconds)}, measured ${ms(measured)}`)
    const coldS = pc.coldIterationDelayS([f.stage])
    console.log(`  predicted: ${f.kind === 'crash' ? `detection ${ms(p.detectionS)}` : `notice heard ${ms(pc.p.noticeHeardS ?? 0)}`} + round ${ms(p.transferS - coldS)} (the survivors' epoch ${ms(pc.p.epochTakeS ?? 0)}; alongside it ${p.donors.length > 0 ? `the donors (stage ${p.donors.join(', ')}) on the epoch at ${ms(pc.p.donorReadyS ?? 0)}, then` : 'from the store'} the pull of ${(p.bytes / 2 ** 20).toFixed(2)} MB and install: ${ms(pc.p.rebuildOverheadS ?? 0)} + the transfer at ${(pc.p.linkBytesPerS / 2 ** 20).toFixed(1)} MB/s) + the cold first iteration ${ms(coldS)}; measured: signal -> aborted ${ms((a.abortedS ?? NaN) - (a.signalS ?? NaN))}, -> recovered ${ms((a.recoveredS ?? NaN) - (a.signalS ?? NaN))}, redone iteration ${ms(period(redone))} against ${ms(base)} (median of ${around.length} clean attempts around it); the coordinator's record: transfer ${rec?.transferMs.toFixed(0) ?? '?'} ms, rebuild ${rec?.rebuildMs.toFixed(0) ?? '?'} ms, ${rec?.bytes ?? '?'} B`)
    // the rebuilt stage's own compute in the redone attempt against the attempts around it: its cold first iteration, as the cluster ran it
    const own = (x: Attempt): number => x.computeS?.[f.stage] ?? NaN
    console.log(`  stage ${f.stage}'s own compute: redone ${ms(own(redone))}, around it ${ms(median(around.map(own)))} (the model's cold part: ${ms(pc.p.coldIterationS ?? 0)} of compute alone); every stage in the redone attempt: ${redone.computeS?.map(ms).join(', ') ?? '?'}`)
    const tl = a.timeline
    const since = (x: number | undefined): string => x == null ? '?' : ms(x - (a.signalS as number))
    if (tl != null) console.log(`  timeline from the signal: known ${since(tl.knownAt)}, aborted ${since(a.abortedS)}, epoch ${tl.epoch ?? '?'} published ${since(tl.publishedAt)}, taken by ${[...tl.takenAt].sort((x, y) => x[0] - y[0]).map(([st, t]) => `stage ${st}${st === f.stage ? ' (rebuilt)' : ''} ${since(t)}`).join(', ')}, recovered ${since(a.recoveredS)}`)
  }
  const recErrs: number[] = []
  for (const [key, g] of byRung) {
    const m = median(g.measured)
    const err = m > 0 ? relativeError(median(g.predicted), m) : Infinity
    recErrs.push(err)
    console.log(`recovery (${key}): predicted ${ms(median(g.predicted))}, measured ${ms(m)}, relative error ${err.toFixed(3)}  (medians of ${g.measured.length}; measured ${g.measured.map(x => (x * 1000).toFixed(0)).join(' ')} ms)`)
  }

  // a checkpoint: the phase's attempts after a snapshot commit against their neighbours
  if (phase.overheadS.length === 0) throw new CostValidationError('the checkpoint phase had no attempt after a snapshot commit between two after plain ones')
  const phaseCompute = medianSample(phaseSamples)
  const phaseCost = costFor(phaseCompute).with({ hostCores: phaseCapacity.units, hostCpuCores: phaseCapacity.cpuCores })
  const save = phaseCost.checkpointSave(PLAIN)
  const ckPred = save.copyS + save.contentionS
  const ckMeasured = median(phase.overheadS)
  const ckErr = ckMeasured > 0 ? relativeError(ckPred, ckMeasured) : Infinity
  console.log(`checkpoint overhead: predicted ${ms(ckPred)}, measured ${ms(ckMeasured)}, relative error ${ckErr.toFixed(3)}  (per checkpoint; measured: the median over ${phase.overheadS.length} attempts after a snapshot commit of the excess over their two neighbours after plain commits (a checkpoint every other commit), ${phase.overheadS.map(x => (x * 1000).toFixed(0)).join(' ')} ms, neighbours median ${ms(median(phase.plainS))}; predicted copy ${ms(save.copyS)} + the upload's CPU taken from training ${ms(save.contentionS)} (one host: no link share, which would add ${ms(save.uploadS * phaseCost.linkBusyFraction(PLAIN))}), from the median of ${phaseSamples.length} steps measured just before and after the phase (${phaseSamples.map(c => ms(stepS(c))).join(', ')}); the store's pulls took ${phase.uploadsMs.map(x => x.toFixed(0)).join(' ')} ms)`)
  console.log(`  CPU (this process and the peers, /proc): a checkpoint took ${ms(median(phase.extraCpuS))} beyond its neighbours (median, during training; transferCpuSPerByte gives ${ms(save.bytes * checkpointCpuSPerByte)} for its ${(save.bytes / 2 ** 20).toFixed(1)} MB); the attempts after plain commits kept ${median(phase.plainCores).toFixed(2)} cores busy (median; the model's busy share ${(phaseCost.cpuContentionS(save.bytes, PLAIN) * phaseCapacity.cpuCores / (save.bytes * checkpointCpuSPerByte)).toFixed(2)} of ${phaseCapacity.cpuCores.toFixed(2)} CPU seconds per second, the median of the capacity probes before and after the phase)`)
  const recoveryError = Math.max(...recErrs)
  console.log(`bench: costmodel_iteration_error=${iterErr.toFixed(3)}`)
  console.log(`bench: costmodel_recovery_error=${recoveryError.toFixed(3)}`)
  console.log(`bench: costmodel_checkpoint_error=${ckErr.toFixed(3)}`)
  console.log(`bench: costmodel_error=${Math.max(iterErr, recoveryError, ckErr).toFixed(3)}`)
} catch (err) {
  failed = true
  console.error(err)
} finally {
  if (cluster != null) await stopCluster(cluster.coord).catch((err: unknown) => { console.error(err); failed = true })
  await rm(stateDir, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)

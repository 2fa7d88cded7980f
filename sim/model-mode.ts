/**
 * Model mode: one strategy on one trace, with the real model, training and recovery code in one
 * process and no network; wall-clock time comes from the cost model.
 *
 * Clock. Trace events are keyed by iteration attempt: attempt a meets the failures whose `iteration`
 * is a, in every strategy (as in the paper's simulation), so all strategies see the same failures at
 * the same points of their run. A strategy with slower iterations (redundant-compute) therefore sees fewer
 * failures per wall-clock hour than the nominal rate; that bias favours it.
 *
 * One attempt:
 *  - crashes in it: the attempt is lost after its elapsed part (the event's offset in the iteration),
 *    the failures are detected (detectionS), every lost stage is recovered by its rung in parallel,
 *    and the same progress iteration is tried again at the next attempt (it sees the same data);
 *  - otherwise: M microbatches through the pipeline (CheckFree+ swaps if the strategy trains with
 *    them), a two-phase step of every stage, progress + 1; then spot notices are handed over, a
 *    checkpoint is taken every K iterations, mirrors are refreshed every N, and the validation loss is
 *    measured every evalEvery iterations.
 */
import * as tf from '@tensorflow/tfjs'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig, type TrainConfig } from '../model/index.js'
import { loadBrownCorpus, sampleBatch, validationBatches, type Batch } from '../model/index.js'
import { NonFiniteError } from '../common/index.js'
import { stageLayout, stageSpecs } from '../model/index.js'
import { checkfreeAverage, mirrorHolder, mirroredNames, mirroredOwners, neighbourCopy, shadowedStage, type NamedValues } from '../model/index.js'
import { Stage } from '../model/index.js'
import { hostCopy } from '../model/index.js'
import { exportStageState, loadStageState, type StageState } from '../model/index.js'
import { batchTensors, evaluateBatch, runMicrobatch } from '../model/index.js'
import type { CostModel } from './cost-model.js'
import { SimConfigError } from './errors.js'
import { replicaIterationS } from './replicas.js'
import { planBatch, type LostStage, type PlannedRecovery } from './ladder-adapter.js'
import { iterationShape, resolveStrategyOptions, SIM_RUNGS, strategyTraits, type FailureTally, type SimRung, type StrategyName, type StrategyOptions } from './strategies.js'
import { failuresByIteration, offsetInIteration, type Trace, type TraceEvent } from './trace.js'

/** One row per iteration attempt. */
export interface IterationRow {
  /** Attempt index (the trace's iteration clock). */
  step: number
  /** Progress iterations completed after this attempt (rolls back under checkpoint-whole). */
  iteration: number
  /** Simulated wall-clock seconds at the end of the attempt, recoveries included. */
  wallS: number
  /** Mean training loss of the attempt (nats); null when failures aborted it. */
  loss: number | null
  /** Validation loss measured after this attempt, or null. */
  valLoss: number | null
  /** What happened: failures and their rungs, checkpoints, mirror refreshes. */
  events: string
}

export interface EvalPoint {
  step: number
  iteration: number
  wallS: number
  valLoss: number
}

export interface RecoveryRecord extends PlannedRecovery {
  step: number
  /** Progress iteration at the failure. */
  iteration: number
  /** Wall-clock at the failure. */
  wallS: number
  /** Progress discarded: iterations of this stage's updates (stage checkpoint) or of the whole model
   *  (whole rollback). 0 for exact copies; CheckFree's approximation shows in the loss instead. */
  iterationsLost: number
  /** Checkpoint iteration loaded (checkpoint rung). */
  checkpointIteration?: number
  bytes: number
  /** Transfer time of this stage's recovery (recoveries of one batch overlap). */
  transferS: number
}

export interface RunTotals extends FailureTally {
  wallS: number
  /** Progress iterations at the end. */
  iterations: number
  /** Iterations computed to completion (redone ones included). */
  computedIterations: number
  skippedSteps: number
  /** With replicas (a replica trace): replicas lost while their stage kept another; each aborts the attempt, nothing is rebuilt. */
  replicaLosses: number
  checkpoints: number
  /** shadows: the redundant strategy's shadow pulls after every commit. */
  bytes: { activations: number, checkpointSave: number, checkpointLoad: number, recovery: number, mirrors: number, shadows: number }
  seconds: { iterations: number, wasted: number, detection: number, recovery: number, checkpointCopy: number, contention: number, handover: number, shadowWait: number }
  finalValLoss: number
  minValLoss: number
  /** Stopped at the trace horizon or the attempt cap before reaching `iterations`. */
  truncated: boolean
}

export interface RunResult {
  strategy: StrategyName
  seed: number
  rows: IterationRow[]
  evals: EvalPoint[]
  recoveries: RecoveryRecord[]
  totals: RunTotals
  /** Iteration time of this strategy without failures, from the cost model. */
  iterationS: number
  options: StrategyOptions
}

export interface ModelModeProgress {
  strategy: StrategyName
  seed: number
  attempt: number
  iteration: number
  iterations: number
  wallS: number
  valLoss?: number
}

export interface ModelModeConfig {
  model?: Partial<ModelConfig>
  train?: Partial<TrainConfig>
  /** Progress iterations to train. */
  iterations: number
  /** Cap on attempts (whole rollbacks redo iterations). @default the trace's horizon, or 3 x iterations */
  maxAttempts?: number
  strategy: StrategyName
  options?: Partial<StrategyOptions>
  /** Required for every strategy but `none`. */
  trace?: Trace
  cost: CostModel
  /** Train and validation tokens. @default the Brown corpus split */
  corpus?: { train: Uint8Array, validation: Uint8Array }
  /** Stop once the validation loss is at or below the target (a function: learned during the run). */
  stopAtTarget?: number | (() => number | undefined)
  /** Label of the run (the trace seed). @default trace.seed or 0 */
  seed?: number
  /** Every failure strikes at the start of its iteration (the paper's reference simulation injects
   *  them at microbatch 0), so no part of the iteration is wasted; otherwise at the trace's offset.
   *  @default false */
  failAtStart?: boolean
  onProgress?: (p: ModelModeProgress) => void
}

function emptyRungs (): Record<SimRung, number> {
  return Object.fromEntries(SIM_RUNGS.map(r => [r, 0])) as Record<SimRung, number>
}

interface Checkpoint {
  iteration: number
  /** Wall-clock second from which it can be loaded (upload finished). */
  availableAtS: number
  /** Per stage; null means the seeded initialisation (iteration 0: every peer can recompute it). */
  states: StageState[] | null
}

/** Runs one strategy over one trace and returns every attempt, evaluation and recovery. */
export function runModelMode (cfg: ModelModeConfig): RunResult {
  const model = resolveModelConfig(cfg.model)
  const train = resolveTrainConfig(cfg.train, model)
  const opts = resolveStrategyOptions(cfg.options)
  const traits = strategyTraits(cfg.strategy)
  const shape = iterationShape(cfg.strategy, opts)
  // layout paper keeps the mirrors equal to the embedding and head every iteration (cost-model.ts PlusLayout)
  const mirrorsLive = shape.plusLayout === 'paper'
  const cost = cfg.cost
  const S = train.stages
  const M = train.microbatches
  if (cost.stages !== S) throw new SimConfigError(`the cost model has ${cost.stages} stages, the run ${S}`)
  if (!Number.isInteger(cfg.iterations) || cfg.iterations < 1) throw new SimConfigError(`iterations must be a positive integer, got ${String(cfg.iterations)}`)
  const trace = cfg.trace
  if (traits.failures && trace == null) throw new SimConfigError(`strategy "${cfg.strategy}" needs a trace`)
  if (trace != null && trace.stages !== S) throw new SimConfigError(`the trace has ${trace.stages} stages, the run ${S}`)
  const failures: Map<number, TraceEvent[]> = traits.failures && trace != null ? failuresByIteration(trace) : new Map()
  const maxAttempts = cfg.maxAttempts ?? (trace != null && traits.failures ? trace.iterations : 3 * cfg.iterations)
  const seed = cfg.seed ?? trace?.seed ?? 0
  const corpus = cfg.corpus ?? loadBrownCorpus()
  // with replicas (sim/replica-trace.ts) the microbatches spread over them and their gradients are
  // all-reduced (sim/replicas.ts); the strategy's own extra time over a plain iteration is kept
  const R = trace?.replicas ?? 1
  const iterS = R > 1 ? cost.iterationS(shape) - replicaIterationS(cost, 1).iterationS + replicaIterationS(cost, R).iterationS : cost.iterationS(shape)
  const save = cost.checkpointSave(shape)
  const mirrorCost = cost.mirrorRefresh(shape)
  const actBytes = cost.activationBytes(shape)
  const targetOf = typeof cfg.stopAtTarget === 'function' ? cfg.stopAtTarget : () => cfg.stopAtTarget as number | undefined

  const layouts = Array.from({ length: S }, (_, s) => stageLayout(model, S, s))
  // Built inside a tidy: tf.variable(tf.tensor(...)) in Stage and loadStageState leaves the initial
  // tensor counted (it shares the variable's data); the tidy releases it, the variable stays.
  const tidyStage = (make: () => Stage): Stage => {
    let st: Stage | undefined
    tf.tidy(() => { st = make() })
    return st as Stage
  }
  const newStage = (s: number, values?: NamedValues, lrScale?: number): Stage => tidyStage(() => new Stage({ model, train, layout: layouts[s], values, lrScale }))
  const fromState = (s: number, state: StageState): Stage => {
    const values: NamedValues = new Map()
    for (const spec of stageSpecs(model, layouts[s])) {
      const t = state.tensors.get(spec.name)
      if (t != null) values.set(spec.name, t.data as Float32Array)
    }
    return tidyStage(() => {
      const st = newStage(s, values)
      loadStageState(st, state.tensors, state.meta, { optimizer: true })
      return st
    })
  }
  const stages: Stage[] = layouts.map((_, s) => newStage(s))

  // CheckFree+ mirrors: holder stage -> copy of the embedding / head it mirrors (model/recovery.ts).
  const mirrorHolders = traits.mirrors ? [...new Set([mirrorHolder(0, S), mirrorHolder(S - 1, S)])].filter((h): h is number => h != null) : []
  const mirrors = new Map<number, NamedValues>()
  const refreshMirrors = (): void => {
    for (const h of mirrorHolders) {
      const values: NamedValues = new Map()
      const names = new Set(mirroredNames(model, layouts[h]))
      for (const owner of mirroredOwners(h, S)) for (const [n, v] of stages[owner].params) if (names.has(n)) values.set(n, hostCopy(v))
      mirrors.set(h, values)
    }
  }
  refreshMirrors() // the seeded initial weights: every peer can compute them, nothing moves

  // Shadows (redundant: pulled after every commit, and the commit waits for them; redundant-compute:
  // computed, always current). The shadow of stage s is of its current state unless s was rebuilt
  // otherwise than exactly, or the holder's peer was replaced, since the last commit.
  const shadowStale = new Set<number>()
  const shadowCost = cost.shadowRefresh(shape)
  const shadowReady = (s: number): boolean => traits.redundantCompute || !shadowStale.has(s)

  const checkpoints: Checkpoint[] = [{ iteration: 0, availableAtS: 0, states: null }]
  const newestAvailable = (atS: number): Checkpoint => {
    let best = checkpoints[0]
    for (const c of checkpoints) if (c.availableAtS <= atS && c.iteration >= best.iteration) best = c
    return best
  }

  const valList: Batch[] = validationBatches(corpus.validation, train.evalBatches, train.microbatchSize, model.seqLen, train.dataSeed)
  const validate = (): number => {
    let sum = 0
    for (const b of valList) {
      const { inputs, targets } = batchTensors(b, train.microbatchSize, model.seqLen)
      try {
        sum += evaluateBatch(stages, inputs, targets)
      } finally {
        inputs.dispose()
        targets.dispose()
      }
    }
    return sum / valList.length
  }

  const totals: RunTotals = {
    wallS: 0,
    attempts: 0,
    iterations: 0,
    computedIterations: 0,
    abortedAttempts: 0,
    crashes: 0,
    notices: 0,
    recoveries: emptyRungs(),
    wholeRollbacks: 0,
    stageIterationsLost: 0,
    iterationsRedone: 0,
    skippedSteps: 0,
    replicaLosses: 0,
    checkpoints: 0,
    bytes: { activations: 0, checkpointSave: 0, checkpointLoad: 0, recovery: 0, mirrors: 0, shadows: 0 },
    seconds: { iterations: 0, wasted: 0, detection: 0, recovery: 0, checkpointCopy: 0, contention: 0, handover: 0, shadowWait: 0 },
    finalValLoss: NaN,
    minValLoss: Infinity,
    truncated: false
  }
  const rows: IterationRow[] = []
  const evals: EvalPoint[] = []
  const recoveries: RecoveryRecord[] = []
  let wall = 0
  let progress = 0

  const recordEval = (step: number): number => {
    const v = validate()
    evals.push({ step, iteration: progress, wallS: wall, valLoss: v })
    totals.finalValLoss = v
    totals.minValLoss = Math.min(totals.minValLoss, v)
    return v
  }

  /** The ladder's plans for the stages lost at wall-clock `atS` (coordinator/ladder.ts, through the adapter). */
  const plan = (lost: LostStage[], atS: number): { plans: PlannedRecovery[], rollbackAll: boolean } => {
    const r = planBatch({
      strategy: cfg.strategy,
      stages: S,
      lost,
      mirrorReady: h => mirrors.has(h),
      shadowReady,
      gradNorms: stages.map(st => st.lastGradNorm),
      checkpoint: newestAvailable(atS).iteration,
      lrScale: opts.lrScale
    })
    if (r.waiting.length > 0) throw new SimConfigError(`no spare for stages ${r.waiting.join(', ')}: the simulator assumes one`)
    return r
  }

  const checkpointAt = (iteration: number): Checkpoint => {
    const c = checkpoints.find(x => x.iteration === iteration)
    if (c == null) throw new SimConfigError(`the ladder chose checkpoint ${iteration}, which this run does not hold`)
    return c
  }

  /** Applies a batch's plans; returns the batch's recovery time and a short description. */
  const recover = (batch: { plans: PlannedRecovery[], rollbackAll: boolean }, step: number, atS: number): { seconds: number, text: string[] } => {
    const { plans, rollbackAll } = batch
    // Read every donor before replacing anything: the order inside a batch must not matter.
    const built: Array<{ s: number, make: () => Stage, rec: RecoveryRecord }> = []
    for (const p of plans) {
      const s = p.stage
      const base = { ...p, step, iteration: progress, wallS: atS, iterationsLost: 0, bytes: 0, transferS: 0 }
      if (p.rung === 'handover' || p.rung === 'replica') {
        // The departing peer's state, or the shadow: both exactly the stage's last committed state.
        const state = exportStageState(stages[s], { optimizer: true })
        const c = cost.exactCopy(s)
        built.push({ s, make: () => fromState(s, state), rec: { ...base, bytes: c.bytes, transferS: c.seconds } })
      } else if (p.rung === 'checkfree') {
        const [a, b] = p.donors
        const values = checkfreeAverage({
          model,
          lost: layouts[s],
          prev: { layout: layouts[a], params: stages[a].readParams(), gradNorm: p.weights[0] },
          next: { layout: layouts[b], params: stages[b].readParams(), gradNorm: p.weights[1] },
          weighting: opts.weighting
        })
        const c = cost.checkfreeRebuild(s)
        built.push({ s, make: () => newStage(s, values, p.lrScale), rec: { ...base, bytes: c.bytes, transferS: c.seconds } })
      } else if (p.rung === 'checkfree-plus') {
        const n = p.donors[0]
        const values = neighbourCopy({ model, lost: layouts[s], neighbour: { layout: layouts[n], params: stages[n].readParams() }, mirror: mirrors.get(n) as NamedValues })
        const c = cost.checkfreePlusCopy(s)
        built.push({ s, make: () => newStage(s, values, p.lrScale), rec: { ...base, bytes: c.bytes, transferS: c.seconds } })
      } else if (!rollbackAll) {
        const ckpt = checkpointAt(p.checkpointIteration ?? 0)
        // the seeded initialisation moves nothing, but the replacement's round is paid all the same
        const c = ckpt.states == null ? cost.seededRebuild([s]) : cost.checkpointLoad([s])
        const state = ckpt.states?.[s]
        built.push({
          s,
          make: () => state == null ? newStage(s) : fromState(s, state),
          rec: { ...base, iterationsLost: progress - ckpt.iteration, checkpointIteration: ckpt.iteration, bytes: c.bytes, transferS: c.seconds }
        })
      }
    }
    let seconds = 0
    const text: string[] = []
    for (const b of built) {
      stages[b.s].dispose()
      stages[b.s] = b.make()
      mirrors.delete(b.s) // a replaced holder's mirror went with its peer
      const held = shadowedStage(b.s, S)
      if (held != null) shadowStale.add(held) // and so did its shadow
      if (b.rec.rung !== 'handover' && b.rec.rung !== 'replica') shadowStale.add(b.s) // the stage's shadow is of its old state
      seconds = Math.max(seconds, b.rec.transferS)
      totals.recoveries[b.rec.rung] += 1
      if (b.rec.rung === 'checkpoint') {
        totals.stageIterationsLost += b.rec.iterationsLost
        totals.bytes.checkpointLoad += b.rec.bytes
      } else totals.bytes.recovery += b.rec.bytes
      recoveries.push(b.rec)
      text.push(`${b.rec.kind} s${b.s} -> ${b.rec.rung}${b.rec.rung === 'checkpoint' ? `@${b.rec.checkpointIteration ?? 0}` : ''}`)
    }
    if (rollbackAll) {
      // Every stage reloads the checkpoint the ladder chose, survivors included.
      const ckpt = checkpointAt(plans.find(p => p.rung === 'checkpoint')?.checkpointIteration ?? 0)
      const all = Array.from({ length: S }, (_, s) => s)
      const rebuilt = plans.map(p => p.stage)
      const c = ckpt.states == null ? cost.seededRebuild(rebuilt) : cost.checkpointLoad(all, rebuilt)
      const lost = progress - ckpt.iteration
      for (const s of all) {
        stages[s].dispose()
        const state = ckpt.states?.[s]
        stages[s] = state == null ? newStage(s) : fromState(s, state)
        shadowStale.add(s)
      }
      for (const p of plans.filter(q => q.rung === 'checkpoint')) {
        const rec: RecoveryRecord = { ...p, step, iteration: progress, wallS: atS, iterationsLost: lost, checkpointIteration: ckpt.iteration, bytes: c.bytes, transferS: c.seconds }
        recoveries.push(rec)
        totals.recoveries.checkpoint += 1
        text.push(`${p.kind} s${p.stage} -> checkpoint(whole)@${ckpt.iteration}`)
      }
      totals.wholeRollbacks += 1
      totals.iterationsRedone += lost
      totals.bytes.checkpointLoad += c.bytes
      seconds = Math.max(seconds, c.seconds)
      progress = ckpt.iteration
      // Checkpoints of the discarded timeline are void.
      for (let i = checkpoints.length - 1; i >= 0; i--) if (checkpoints[i].iteration > progress) checkpoints.splice(i, 1)
    }
    return { seconds, text }
  }

  const trainIteration = (): number => {
    let lossSum = 0
    for (let mb = 0; mb < M; mb++) {
      const b = sampleBatch(corpus.train, { seed: train.dataSeed, iteration: progress, microbatch: mb, replica: 0 }, train.microbatchSize, model.seqLen)
      const { inputs, targets } = batchTensors(b, train.microbatchSize, model.seqLen)
      try {
        lossSum += runMicrobatch(stages, mb, inputs, targets, traits.swaps)
      } finally {
        inputs.dispose()
        targets.dispose()
      }
    }
    // Two-phase step: a non-finite gradient anywhere skips the whole step, as the coordinator would.
    try {
      for (const st of stages) st.prepareStep(M)
    } catch (err) {
      for (const st of stages) st.abortStep()
      if (!(err instanceof NonFiniteError)) throw err
      totals.skippedSteps += 1
      return lossSum / M
    }
    // Adam creates its moments as tf.variable(tf.zeros(...)) on a stage's first step: tidy for the
    // same reason as tidyStage.
    tf.tidy(() => { for (const st of stages) st.commitStep() })
    return lossSum / M
  }

  try {
    recordEval(-1)
    let attempt = 0
    for (; attempt < maxAttempts && progress < cfg.iterations; attempt++) {
      const evs = failures.get(attempt) ?? []
      const crashes = evs.filter(e => e.kind === 'crash')
      const notices = evs.filter(e => e.kind === 'notice')
      totals.crashes += crashes.length
      totals.notices += notices.length
      const lostOf = (list: typeof evs): LostStage[] => list.map(e => ({ stage: e.stage, kind: e.kind as 'crash' | 'notice' }))
      const offsetOf = (e: TraceEvent): number => cfg.failAtStart === true ? 0 : offsetInIteration(trace as Trace, e)
      if (crashes.length > 0) {
        const u = Math.min(...crashes.map(offsetOf))
        const wasted = u * iterS
        wall += wasted
        const { seconds, text } = recover(plan(lostOf([...crashes, ...notices]), wall), attempt, wall)
        wall += cost.p.detectionS + seconds
        totals.seconds.wasted += wasted
        totals.seconds.detection += cost.p.detectionS
        totals.seconds.recovery += seconds
        totals.abortedAttempts += 1
        rows.push({ step: attempt, iteration: progress, wallS: wall, loss: null, valLoss: null, events: text.join('; ') })
        cfg.onProgress?.({ strategy: cfg.strategy, seed, attempt, iteration: progress, iterations: cfg.iterations, wallS: wall })
        continue
      }
      const replicaLosses = evs.filter(e => e.kind === 'replica-loss')
      if (replicaLosses.length > 0) {
        // a replica lost while its stage keeps another: detected, then the survivors redo the
        // iteration with its microbatches; no state is lost, nothing is rebuilt
        const u = Math.min(...replicaLosses.map(offsetOf))
        const wasted = u * iterS
        wall += wasted + cost.p.detectionS
        totals.replicaLosses += replicaLosses.length
        totals.seconds.wasted += wasted
        totals.seconds.detection += cost.p.detectionS
        totals.abortedAttempts += 1
        rows.push({ step: attempt, iteration: progress, wallS: wall, loss: null, valLoss: null, events: replicaLosses.map(e => `replica of s${e.stage} lost: its stage's survivors redo the iteration`).join('; ') })
        cfg.onProgress?.({ strategy: cfg.strategy, seed, attempt, iteration: progress, iterations: cfg.iterations, wallS: wall })
        continue
      }
      const loss = trainIteration()
      wall += iterS
      progress += 1
      shadowStale.clear()
      totals.computedIterations += 1
      totals.seconds.iterations += iterS
      totals.bytes.activations += actBytes
      const notes: string[] = []
      if (notices.length > 0) {
        // The departing peers finish the iteration, then hand their exact state over.
        const { seconds, text } = recover(plan(lostOf(notices), wall), attempt, wall)
        const blocking = cost.noticeStallS(seconds)
        wall += blocking
        totals.seconds.handover += blocking
        notes.push(...text)
      }
      // A save starts only when the previous upload has finished (the store keeps whole checkpoints).
      const uploading = checkpoints[checkpoints.length - 1].availableAtS > wall
      if (traits.checkpoints && progress % opts.checkpointEvery === 0 && !uploading) {
        const states = stages.map(st => exportStageState(st, { optimizer: true }))
        wall += save.copyS + save.contentionS
        totals.seconds.checkpointCopy += save.copyS
        totals.seconds.contention += save.contentionS
        totals.bytes.checkpointSave += save.bytes
        totals.checkpoints += 1
        checkpoints.push({ iteration: progress, availableAtS: wall + save.uploadS, states })
        // Keep the newest loadable checkpoint and any still uploading.
        const keep = newestAvailable(wall)
        for (let i = checkpoints.length - 1; i >= 0; i--) if (checkpoints[i].iteration < keep.iteration) checkpoints.splice(i, 1)
        notes.push(`checkpoint@${progress}`)
      }
      if (traits.shadowCopy) {
        // Every peer pulls its successor's state, and the commit waits for the slowest pull.
        wall += shadowCost.seconds
        totals.seconds.shadowWait += shadowCost.seconds
        totals.bytes.shadows += shadowCost.bytes
      }
      if (traits.mirrors && mirrorsLive) {
        refreshMirrors() // the gradient exchange that keeps them equal is part of the iteration's cost
      } else if (traits.mirrors && progress % opts.mirrorEvery === 0) {
        refreshMirrors()
        wall += mirrorCost.contentionS
        totals.seconds.contention += mirrorCost.contentionS
        totals.bytes.mirrors += mirrorCost.bytes
      }
      let valLoss: number | null = null
      if (progress % train.evalEvery === 0 || progress === cfg.iterations) valLoss = recordEval(attempt)
      rows.push({ step: attempt, iteration: progress, wallS: wall, loss, valLoss, events: notes.join('; ') })
      cfg.onProgress?.({ strategy: cfg.strategy, seed, attempt, iteration: progress, iterations: cfg.iterations, wallS: wall, valLoss: valLoss ?? undefined })
      const target = targetOf()
      if (valLoss != null && target != null && valLoss <= target) { attempt++; break }
    }
    totals.attempts = attempt
    totals.iterations = progress
    totals.wallS = wall
    const target = targetOf()
    const reached = target != null && totals.minValLoss <= target
    totals.truncated = progress < cfg.iterations && !reached
  } finally {
    for (const st of stages) st.dispose()
  }
  return { strategy: cfg.strategy, seed, rows, evals, recoveries, totals, iterationS: iterS, options: opts }
}

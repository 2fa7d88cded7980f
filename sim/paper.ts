/**
 * The CheckFree paper's settings ("All is Not Lost: LLM Recovery without Checkpoints", Blagoev,
 * Ersoy, Chen, 2025; the facts in ../shared/CHECKFREE.md) and how the simulator stands in for them.
 *
 * Nothing here is measured on this machine. Every number is the paper's, derived from the paper's,
 * or an assumption named as one (`source` says which), and the reproduction report prints them all.
 *
 * The stand-in has two parts:
 *
 *  - Cost: a cost model whose failure-free iteration times are the paper's own (Table 2's iteration
 *    column: 91.32 s for CheckFree and CheckFree+, 91.35 s for checkpointing, 151.04 s for redundant
 *    computation), with the paper model's sizes for every transfer, the paper's harness link
 *    (2 GB/s, 1 ms within a region) and its "about 30 s" per recovery.
 *
 *  - Loss dynamics: a small proxy model with the paper's stage count, trained for real (model mode).
 *    The paper's failure-free run reaches its target (validation loss 2.85) after about 10,000
 *    iterations (Table 2's redundant row: 419.56 h at 151.04 s per iteration; that baseline loses no
 *    progress at any rate); the proxy reaches its own target (its failure-free loss at the preset's
 *    target fraction) after N steps. One proxy step then stands for K = 10,000 / N paper iterations:
 *    its wall-clock is K paper iterations, its failure probability per stage is 1 - (1 - p)^K for the
 *    paper's p per iteration, and the checkpoint interval is 100 / K steps. A failure, a recovery or
 *    a checkpoint save is still one event and costs what it costs once.
 *
 * What the proxy cannot carry over is said in docs/reproducing-checkfree.md: how fast a rebuilt stage
 * heals in proxy steps, and failures that would be K iterations apart in the paper falling into one
 * step (recovered together, and two adjacent ones fall past CheckFree to the checkpoint rung).
 */
import { CostModel, DEFAULT_COST, type CostParams, type IterationShape } from './cost-model.js'
import { SimConfigError } from './errors.js'
import { hourlyRateOf, PAPER_RATES, type RateConversion } from './trace.js'

/** Table 2's rows, named by the simulator strategy that is the paper's baseline. */
export type PaperRow = 'checkpoint-whole' | 'redundant-compute' | 'checkfree' | 'checkfree-plus'
export const PAPER_ROWS: readonly PaperRow[] = ['checkpoint-whole', 'redundant-compute', 'checkfree', 'checkfree-plus']
export const PAPER_ROW_LABELS: Readonly<Record<PaperRow, string>> = {
  'checkpoint-whole': 'checkpointing',
  'redundant-compute': 'redundant computation',
  checkfree: 'CheckFree',
  'checkfree-plus': 'CheckFree+'
}

/** A number with where it comes from. */
export interface Sourced { value: number, source: string }

export interface PaperColumn {
  /** Column label, e.g. '5%/h'. */
  label: string
  /** PAPER_RATES key: the paper's per-iteration probability for this rate. */
  rate: string
}

export interface PaperSetting {
  name: string
  title: string
  /** The paper's model (LLaMa-style). */
  model: { dModel: number, nHeads: number, layers: number, stages: number, seqLen: number, batch: number, microbatches: number, vocab: Sourced, lr: number, lrScale: number }
  columns: PaperColumn[]
  /** Checkpoint interval, paper iterations. */
  checkpointEvery: number
  /** Failure-free iteration seconds per row (Table 2's 5% and 10% columns; see iterationNote). */
  iterationS: Record<PaperRow, Sourced>
  /** Table 2: hours to the target per row and column, or null when the paper gives none. */
  hours: Record<PaperRow, number[]> | null
  /** Table 2's iteration column per row and column (the 16% one is slightly longer). */
  reportedIterationS: Record<PaperRow, number[]> | null
  /** The paper's failure-free run's iterations to its target. */
  failureFreeIterations: Sourced
  /** Seconds one recovery takes. */
  recoveryS: Sourced
  target: string
}

const HARNESS_LINK = { value: 2e9, source: 'the reference code\'s throughput harness: 2 GB/s within a region (CHECKFREE.md)' }
const HARNESS_LATENCY = { value: 0.001, source: 'the reference code\'s throughput harness: 1 ms within a region (CHECKFREE.md)' }

export const PAPER_SETTINGS: Readonly<Record<string, PaperSetting>> = {
  'paper-500m': {
    name: 'paper-500m',
    title: 'CheckFree Table 2: 500M LLaMa-style model, OpenWebText, hours of wall-clock to validation loss 2.85',
    model: {
      dModel: 1024,
      nHeads: 16,
      layers: 24,
      stages: 6,
      seqLen: 1024,
      batch: 16,
      microbatches: 4,
      vocab: { value: 50257, source: 'assumed: GPT-2\'s BPE, OpenWebText\'s usual tokenizer (the paper\'s is not in our facts); it sizes only the embedding and head' },
      lr: 3e-4,
      lrScale: 1.2
    },
    columns: [{ label: '5%/h', rate: '500m-5' }, { label: '10%/h', rate: '500m-10' }, { label: '16%/h', rate: '500m-16' }],
    checkpointEvery: 100,
    iterationS: {
      'checkpoint-whole': { value: 91.35, source: 'Table 2, checkpointing at 5% and 10%' },
      'redundant-compute': { value: 151.04, source: 'Table 2, redundant computation' },
      checkfree: { value: 91.32, source: 'Table 2, CheckFree at 5% and 10%' },
      'checkfree-plus': { value: 91.32, source: 'Table 2, CheckFree+ at 5% and 10%' }
    },
    hours: {
      'checkpoint-whole': [558.23, 621.67, 634.35],
      'redundant-compute': [419.56, 419.56, 419.56],
      checkfree: [367.81, 405.87, 562.96],
      'checkfree-plus': [355.13, 367.81, 460.6]
    },
    reportedIterationS: {
      'checkpoint-whole': [91.35, 91.35, 92.14],
      'redundant-compute': [151.04, 151.04, 151.04],
      checkfree: [91.32, 91.32, 92.12],
      'checkfree-plus': [91.32, 91.32, 92.12]
    },
    failureFreeIterations: { value: 10000, source: 'Table 2: redundant computation loses no progress at any rate, 419.56 h x 3600 / 151.04 s = 10,000 iterations' },
    recoveryS: { value: 30, source: 'the paper: recovering a stage takes about 30 s' },
    target: 'validation loss 2.85'
  },
  'paper-124m': {
    name: 'paper-124m',
    title: 'CheckFree 124M config: LLaMa-style model, TinyStories (no wall-clock table for it in our facts)',
    model: {
      dModel: 512,
      nHeads: 8,
      layers: 12,
      stages: 4,
      seqLen: 512,
      batch: 64,
      microbatches: 4,
      vocab: { value: 50257, source: 'assumed: GPT-2\'s BPE (the paper\'s is not in our facts); it sizes only the embedding and head' },
      lr: 6e-4,
      lrScale: 1.1
    },
    columns: [{ label: '10%/h', rate: '124m-10' }, { label: '16%/h', rate: '124m-16' }],
    checkpointEvery: 50,
    // The paper's per-iteration rates for this config imply its clock: t = 3600 ln(1-p) / ln(1-h)
    // gives 20.5 s (10%) and 20.7 s (16%). That is the only iteration time our facts hold for it, so
    // every row gets it, redundant computation with the 500M config's measured overhead (151.04 / 91.32).
    iterationS: {
      'checkpoint-whole': { value: 20.6, source: 'implied by the paper\'s 124M rates (0.0006 at 10%/h, 0.001 at 16%/h): 3600 ln(1-p)/ln(1-h) = 20.5-20.7 s' },
      'redundant-compute': { value: 20.6 * 151.04 / 91.32, source: 'the 124M iteration x the 500M config\'s redundant-computation overhead (151.04 / 91.32, Table 2)' },
      checkfree: { value: 20.6, source: 'implied by the paper\'s 124M rates, as checkpointing' },
      'checkfree-plus': { value: 20.6, source: 'implied by the paper\'s 124M rates, as checkpointing' }
    },
    hours: null,
    reportedIterationS: null,
    failureFreeIterations: { value: 10000, source: 'assumed: the 500M config\'s (the paper\'s 124M iterations to target are not in our facts)' },
    recoveryS: { value: 30, source: 'the paper: recovering a stage takes about 30 s' },
    target: 'the failure-free loss at the preset\'s target fraction (no paper target for this config in our facts)'
  }
}

export function paperSetting (name: string): PaperSetting {
  const p = PAPER_SETTINGS[name]
  if (p == null) throw new SimConfigError(`unknown paper setting "${name}" (known: ${Object.keys(PAPER_SETTINGS).join(', ')})`)
  return p
}

/** The paper model's parameter counts, in spotpipe's layout (embedding on stage 0, head on S-1). */
export function paperSizes (setting: PaperSetting): { blockParams: number, embedParams: number, headParams: number, stageParams: number[], stageBlockParams: number[], totalParams: number } {
  const { dModel: d, layers, stages: S, vocab } = setting.model
  // A LLaMa-style layer: attention 4 d^2, SwiGLU MLP 3 x d x (8/3) d = 8 d^2, two RMSNorm gains.
  const layerParams = 12 * d * d + 2 * d
  const blockParams = layerParams * layers / S
  const embedParams = vocab.value * d // LLaMa has rotary positions: no position table
  const headParams = d * vocab.value + d
  const stageBlockParams = new Array<number>(S).fill(blockParams)
  const stageParams = stageBlockParams.map((b, s) => b + (s === 0 ? embedParams : 0) + (s === S - 1 ? headParams : 0))
  return { blockParams, embedParams, headParams, stageParams, stageBlockParams, totalParams: blockParams * S + embedParams + headParams }
}

/** One named parameter of the paper's cost profile. */
export interface ProfileLine { name: string, value: string, source: string }

/**
 * The cost model of a paper setting, for a proxy whose step stands for `iterationsPerStep` paper
 * iterations. Sizes come from the paper's model; three rates are solved so the cost model gives the
 * paper's own failure-free iteration times (each is linear in the rate solved for):
 *  - slotComputeS: CheckFree's iteration (the plain pipeline) is iterationS.checkfree;
 *  - redundantComputeFactor: redundant computation's is iterationS['redundant-compute'];
 *  - snapshotBytesPerS: a save every checkpointEvery iterations adds the difference between
 *    checkpointing's and CheckFree's iteration times, (91.35 - 91.32) x 100 = 3 s per save.
 */
export function paperCostModel (setting: PaperSetting, iterationsPerStep: number, overrides: Partial<CostParams> = {}): { cost: CostModel, profile: ProfileLine[] } {
  if (!(Number.isFinite(iterationsPerStep) && iterationsPerStep > 0)) throw new SimConfigError(`iterationsPerStep must be a positive number, got ${String(iterationsPerStep)}`)
  const m = setting.model
  const sizes = paperSizes(setting)
  const microbatchSeqs = m.batch / m.microbatches
  const base = new CostModel({
    ...DEFAULT_COST,
    slotComputeS: 1,
    stageParams: sizes.stageParams,
    stageBlockParams: sizes.stageBlockParams,
    embedParams: sizes.embedParams,
    headParams: sizes.headParams,
    hopBytes: microbatchSeqs * m.seqLen * m.dModel * 4,
    microbatches: m.microbatches,
    linkBytesPerS: HARNESS_LINK.value,
    linkLatencyS: HARNESS_LATENCY.value,
    storageBytesPerS: HARNESS_LINK.value,
    detectionS: 0,
    rebuildOverheadS: setting.recoveryS.value,
    noticeLeadS: 30,
    iterationsPerStep: 1,
    ...overrides
  })
  const plain: IterationShape = { swaps: false, redundantCompute: false }
  const redundant: IterationShape = { swaps: false, redundantCompute: true }
  const solve = (f: (x: number) => number, want: number, what: string): number => {
    const f1 = f(1)
    const f2 = f(2)
    const x = 1 + (want - f1) / (f2 - f1)
    if (!(Number.isFinite(x) && x > 0)) throw new SimConfigError(`${setting.name}: no positive ${what} gives ${want}`)
    return x
  }
  const slotComputeS = solve(x => base.with({ slotComputeS: x }).iterationS(plain), setting.iterationS.checkfree.value, 'slot compute')
  let cost = base.with({ slotComputeS })
  const redundantComputeFactor = solve(x => cost.with({ redundantComputeFactor: x }).iterationS(redundant), setting.iterationS['redundant-compute'].value, 'redundant compute factor')
  cost = cost.with({ redundantComputeFactor })
  const perSaveS = (setting.iterationS['checkpoint-whole'].value - setting.iterationS.checkfree.value) * setting.checkpointEvery
  const contentionS = cost.checkpointSave(plain).contentionS
  const copyS = perSaveS - contentionS
  if (!(copyS > 0)) throw new SimConfigError(`${setting.name}: the checkpoint's upload contention (${contentionS.toFixed(3)} s) already exceeds the paper's ${perSaveS.toFixed(3)} s per save`)
  let largest = 0
  for (let s = 0; s < cost.stages; s++) largest = Math.max(largest, cost.stageBytes(s, true))
  cost = cost.with({ snapshotBytesPerS: largest / copyS, iterationsPerStep })
  const gb = (b: number): string => `${(b / 1e9).toFixed(2)} GB`
  const profile: ProfileLine[] = [
    { name: 'model', value: `d ${m.dModel}, ${m.nHeads} heads, ${m.layers} layers in ${m.stages} stages, context ${m.seqLen}, batch ${m.batch} in ${m.microbatches} microbatches, lr ${m.lr}, CheckFree lr x${m.lrScale}`, source: 'the paper\'s config table (CHECKFREE.md)' },
    { name: 'vocabulary', value: String(m.vocab.value), source: m.vocab.source },
    { name: 'parameters', value: `${(sizes.totalParams / 1e6).toFixed(0)}M: ${(sizes.blockParams / 1e6).toFixed(1)}M per stage of blocks, embedding ${(sizes.embedParams / 1e6).toFixed(1)}M, head ${(sizes.headParams / 1e6).toFixed(1)}M`, source: 'counted from the config: 12 d^2 per LLaMa layer (attention 4 d^2, SwiGLU 8 d^2), untied head, rotary positions' },
    { name: 'stage state', value: `${gb(cost.stageBytes(1, true))} (middle), ${gb(largest)} (largest): fp32 weights + Adam`, source: 'the counts x 12 bytes' },
    { name: 'activation hop', value: `${(base.p.hopBytes / 1e6).toFixed(1)} MB`, source: `${microbatchSeqs} sequences x ${m.seqLen} x ${m.dModel} x fp32` },
    { name: 'link', value: `${HARNESS_LINK.value / 1e9} GB/s, ${HARNESS_LATENCY.value * 1000} ms`, source: HARNESS_LINK.source },
    { name: 'iteration (plain pipeline)', value: `${cost.with({ iterationsPerStep: 1 }).iterationS(plain).toFixed(2)} s`, source: `${setting.iterationS.checkfree.source}; slot compute solved: ${slotComputeS.toFixed(3)} s` },
    { name: 'iteration (redundant computation)', value: `${cost.with({ iterationsPerStep: 1 }).iterationS(redundant).toFixed(2)} s`, source: `${setting.iterationS['redundant-compute'].source}; compute factor solved: +${(redundantComputeFactor * 100).toFixed(1)}%` },
    { name: 'checkpoint save', value: `${perSaveS.toFixed(2)} s blocking per save every ${setting.checkpointEvery} iterations (${gb(cost.totalBytes(true))})`, source: `${setting.iterationS['checkpoint-whole'].source} minus CheckFree's, x ${setting.checkpointEvery}` },
    { name: 'recovery', value: `${setting.recoveryS.value} s plus the rung's transfer`, source: `${setting.recoveryS.source}; failures are noticed at once (detection 0 s: the reference simulation injects them at microbatch 0)` },
    { name: 'CheckFree+ iteration (layout spotpipe)', value: `${cost.with({ iterationsPerStep: 1 }).iterationS({ swaps: true, redundantCompute: false, plusLayout: 'spotpipe' }).toFixed(2)} s`, source: 'four extra hops per iteration at the link above (cost-model.ts PlusLayout)' },
    { name: 'CheckFree+ iteration (layout paper)', value: `${cost.with({ iterationsPerStep: 1 }).iterationS({ swaps: true, redundantCompute: false, plusLayout: 'paper' }).toFixed(2)} s`, source: 'no extra hop; the mirrored embedding and head exchange their gradients each iteration' }
  ]
  return { cost, profile }
}

/**
 * The proxy's failure rate for a paper column: K paper iterations per step, each failing a stage
 * with the paper's p, so a stage fails in a step with 1 - (1 - p)^K. `stepS` is the cost model's
 * failure-free step (K paper iterations).
 */
export function paperConversion (column: PaperColumn, iterationsPerStep: number, stepS: number): RateConversion {
  const r = PAPER_RATES[column.rate]
  if (r == null) throw new SimConfigError(`unknown paper rate "${column.rate}"`)
  const p = -Math.expm1(Math.log1p(-r.perIteration) * iterationsPerStep)
  const paperS = stepS / iterationsPerStep
  const hourly = hourlyRateOf(r.perIteration, paperS)
  return {
    kind: 'per-iteration',
    hourlyRate: hourly,
    perIteration: p,
    iterationS: stepS,
    preset: column.rate,
    formula: `paper p = ${r.perIteration} per stage per iteration (quoted for ${column.label}); one proxy step = ${iterationsPerStep.toPrecision(4)} paper iterations, so p per step = 1 - (1 - ${r.perIteration})^${iterationsPerStep.toPrecision(4)} = ${p.toPrecision(4)}; at the paper's ${paperS.toFixed(2)} s per iteration that is ${(hourly * 100).toFixed(1)}%/h per stage`
  }
}

/** The paper's hours converted to iterations to target (hours x 3600 / the iteration time Table 2
 *  gives for that row and column). */
export function paperIterationsToTarget (setting: PaperSetting, row: PaperRow, column: number): number | null {
  const h = setting.hours?.[row]?.[column]
  const t = setting.reportedIterationS?.[row]?.[column]
  return h == null || t == null ? null : h * 3600 / t
}

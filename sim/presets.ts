/**
 * Named model-mode experiments. Each fixes the model, the iterations, the failure scenarios (and how
 * their rates are converted), the strategies and the seeds, so a result is one command away:
 *
 *   spotpipe sim --mode model --preset acceptance
 *
 * Scenario rates. `paper-16`/`paper-33`/`acceptance` use the paper's per-iteration probabilities for
 * its 500M config (0.004 and 0.01 per stage per iteration, quoted for 16% and 33% per hour) with
 * `matchHourly`: the cost model's time scale is set so that one of our iterations lasts as long as
 * the paper's probability and hourly rate imply (t = 3600 ln(1-p) / ln(1-h): 82.6 s and 90.3 s), and
 * p per iteration is then exactly h per hour on our clock. `hourly-16` converts 16%/h with our own
 * (unscaled) iteration time instead: honest, but failures are then rare in a short run.
 */
import type { ModelConfig, TrainConfig } from '../model/index.js'
import { SimConfigError } from './errors.js'
import { STRATEGIES, type StrategyName, type StrategyOptions } from './strategies.js'

export interface ScenarioSpec {
  name: string
  /** Exactly one of these three. */
  preset?: string
  perIteration?: number
  hourlyRate?: number
  /** With a per-iteration rate: scale time so that it equals this hourly rate. */
  matchHourly?: number
  /** Explicit time scale (when not matched). @default 1 */
  timeScale?: number
}

export interface ModelPreset {
  description: string
  model: Partial<ModelConfig>
  train: Partial<TrainConfig>
  /** Iterations of the failure-free reference run (the target is its loss at targetFraction of them). */
  iterations: number
  /** Failing strategies may run up to this many times `iterations` to reach the target. */
  maxIterationsFactor: number
  targetFraction: number
  stopAtTarget: boolean
  strategies: StrategyName[]
  seeds: number[]
  scenarios: ScenarioSpec[]
  options?: Partial<StrategyOptions>
  noticeFraction?: number
  /** Single-process step time (s) to use instead of measuring it. */
  stepS?: number
  /** A sim/paper.ts setting: the cost model is the paper's (not this machine's), each step stands for
   *  several paper iterations, and the scenarios' names are PAPER_RATES keys of its columns. */
  paper?: string
  /** Failures strike at the start of their iteration (model-mode.ts failAtStart). @default false */
  failAtStart?: boolean
}

/** The small model of the paper-scale experiments: thousands of iterations fit in minutes on 2 cores. */
const SMALL_MODEL: Partial<ModelConfig> = { dModel: 32, nHeads: 4, nBlocks: 4, seqLen: 32 }
const SMALL_TRAIN: Partial<TrainConfig> = { stages: 4, microbatches: 2, microbatchSize: 8, lr: 3e-3, evalEvery: 20, evalBatches: 8 }
/**
 * Single-process step of SMALL_MODEL/SMALL_TRAIN on this 2-core machine's wasm backend: 37.7 ms
 * (mean of 100 steps after 5 warm-up steps, machine otherwise idle). Pinned so results do not depend
 * on the load of the moment; --step-ms overrides it. Under a matched time scale only its ratio to
 * the transfer times matters.
 */
const SMALL_STEP_S = 0.0377

/** What every paper-scale preset shares: the small model, 1000 iterations, the target at 80% of them. */
const PAPER_SCALE = {
  model: SMALL_MODEL,
  train: SMALL_TRAIN,
  stepS: SMALL_STEP_S,
  iterations: 1000,
  maxIterationsFactor: 1.6,
  targetFraction: 0.8
} satisfies Partial<ModelPreset>

/**
 * The proxies of the paper reproductions (sim/paper.ts): the paper's stage count, the small model's
 * width. 625 failure-free steps put the target (80%) at step 500, so one step stands for 20 of the
 * paper's 10,000 failure-free iterations and the 500M config's checkpoint interval of 100 iterations
 * is 5 steps (the 124M config's 50 rounds to 3 steps, 60 iterations).
 */
const PAPER_REPRODUCTION = {
  iterations: 625,
  targetFraction: 0.8,
  // checkpointing needs 2.5x the failure-free iterations at 16%/h in the paper
  maxIterationsFactor: 4,
  stopAtTarget: true,
  strategies: ['checkpoint-whole', 'redundant-compute', 'checkfree', 'checkfree-plus', 'none'],
  seeds: [1, 2, 3],
  noticeFraction: 0,
  failAtStart: true
} satisfies Partial<ModelPreset>

const PAPER_16: ScenarioSpec = { name: 'p16', preset: '500m-16', matchHourly: 0.16 }
const PAPER_33: ScenarioSpec = { name: 'p33', preset: '500m-33', matchHourly: 0.33 }

export const MODEL_PRESETS: Readonly<Record<string, ModelPreset>> = {
  quick: {
    description: 'smoke test: tiny model, 100 iterations, p = 0.02 per stage per iteration (time matched to 33%/h), one seed',
    model: { dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 16 },
    train: { stages: 4, microbatches: 2, microbatchSize: 4, evalEvery: 10, evalBatches: 2 },
    iterations: 100,
    maxIterationsFactor: 1.5,
    targetFraction: 0.8,
    stopAtTarget: false,
    strategies: [...STRATEGIES],
    seeds: [1],
    scenarios: [{ name: 'p0.02', perIteration: 0.02, matchHourly: 0.33 }],
    options: { checkpointEvery: 10 }
  },
  'paper-16': {
    description: 'paper 500M rate for 16%/h (p = 0.004 per stage per iteration, time matched), 3 seeds, all strategies',
    ...PAPER_SCALE,
    stopAtTarget: true,
    strategies: [...STRATEGIES],
    seeds: [1, 2, 3],
    scenarios: [PAPER_16]
  },
  'paper-33': {
    description: 'paper 500M rate for 33%/h (p = 0.01 per stage per iteration, time matched), 3 seeds, all strategies',
    ...PAPER_SCALE,
    stopAtTarget: true,
    strategies: [...STRATEGIES],
    seeds: [1, 2, 3],
    scenarios: [PAPER_33]
  },
  acceptance: {
    description: 'the acceptance experiment: 16%/h and 33%/h equivalents (paper 500M per-iteration rates, time matched), 3 seeds, all strategies on the same traces; target = the failure-free loss at 80% of 1000 iterations',
    ...PAPER_SCALE,
    stopAtTarget: true,
    strategies: [...STRATEGIES],
    seeds: [1, 2, 3],
    scenarios: [PAPER_16, PAPER_33]
  },
  'paper-500m': {
    description: 'the CheckFree paper\'s Table 2 (500M config, 6 stages, 5/10/16%/h) with the paper\'s own iteration times and sizes as the cost model and a 6-stage proxy model trained for real; 3 seeds; see docs/reproducing-checkfree.md',
    ...PAPER_REPRODUCTION,
    paper: 'paper-500m',
    model: { dModel: 32, nHeads: 4, nBlocks: 6, seqLen: 32 },
    train: { stages: 6, microbatches: 2, microbatchSize: 8, lr: 3e-3, evalEvery: 10, evalBatches: 8 },
    scenarios: [{ name: 'h5', preset: '500m-5' }, { name: 'h10', preset: '500m-10' }, { name: 'h16', preset: '500m-16' }],
    options: { checkpointEvery: 5, lrScale: 1.2, plusLayout: 'paper' }
  },
  'paper-124m': {
    description: 'the CheckFree paper\'s 124M config (4 stages, 10/16%/h) with the paper\'s rates and implied iteration time as the cost model and a 4-stage proxy trained for real; 3 seeds (our facts hold no wall-clock table for it)',
    ...PAPER_REPRODUCTION,
    paper: 'paper-124m',
    model: SMALL_MODEL,
    train: { ...SMALL_TRAIN, evalEvery: 10 },
    scenarios: [{ name: 'h10', preset: '124m-10' }, { name: 'h16', preset: '124m-16' }],
    options: { checkpointEvery: 3, lrScale: 1.1, plusLayout: 'paper' }
  },
  'hourly-16': {
    description: '16%/h converted with our own measured iteration time (no time scale): failures are rare in 1000 iterations',
    ...PAPER_SCALE,
    stopAtTarget: true,
    strategies: [...STRATEGIES],
    seeds: [1, 2, 3],
    scenarios: [{ name: 'h16', hourlyRate: 0.16 }]
  }
}

export function modelPreset (name: string): ModelPreset {
  const p = MODEL_PRESETS[name]
  if (p == null) throw new SimConfigError(`unknown model-mode preset "${name}" (known: ${Object.keys(MODEL_PRESETS).join(', ')})`)
  return structuredClone(p)
}

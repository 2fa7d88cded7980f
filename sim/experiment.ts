/**
 * A model-mode experiment: scenarios (failure rates) x seeds x strategies, every strategy of a
 * (scenario, seed) on the same trace, written to an output folder:
 *
 *   <out>/summary.md, summary.json            every scenario's table, the cost model, the conversions
 *   <out>/<scenario>/summary.txt|json          time to target and ratios against checkfree-plus
 *   <out>/<scenario>/val-loss.svg|png          validation loss against wall-clock, one line per strategy
 *   <out>/<scenario>/traces/seed<k>.json       the replayable traces
 *   <out>/<scenario>/runs/<strategy>-seed<k>.csv|json   every attempt, evaluation and recovery
 *
 * `none` has no failures and its loss curve does not depend on the trace, so it runs once; its
 * wall-clock is re-timed per scenario (only the time scale differs). Its curve also sets the target
 * (its loss at targetFraction of its iterations), so when runs stop at the target it runs first, alone,
 * and every other run starts knowing the target.
 *
 * With workers > 0 each run is a child process (tfjs keeps one backend per process); otherwise runs
 * go one after another in this process.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { initBackend, type BackendName } from '../model/index.js'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig, type TrainConfig } from '../model/index.js'
import { loadBrownCorpus } from '../model/index.js'
import { LocalPipelineTrainer } from '../model/index.js'
import { CostModel, type CostParams } from './cost-model.js'
import { costModelForModel } from './cost-profiles.js'
import { SimConfigError, SimWorkerError } from './errors.js'
import { runModelMode, type RunResult } from './model-mode.js'
import type { ModelPreset, ScenarioSpec } from './presets.js'
import { ProgressBar } from './progress.js'
import { formatSummary, summarize, targetFromReference, writeRunFiles, writeSummaryFiles, type ScenarioSummary } from './report.js'
import { STRATEGIES, type StrategyName } from './strategies.js'
import { assertPlotFont, renderSvg } from './png.js'
import { linePlot, validationSeries } from './svg.js'
import { paperConversion, paperCostModel, paperSetting, type PaperSetting, type ProfileLine } from './paper.js'
import { generateTrace, impliedIterationS, PAPER_RATES, readTrace, resolveFailureRate, writeTrace, type RateConversion, type Trace } from './trace.js'
import { replicaTrace, replicaWindowIterations } from './replica-trace.js'

export interface ExperimentConfig extends ModelPreset {
  name: string
  out: string
  /** Seconds of one single-process training step; measured on this machine when absent. */
  stepS?: number
  cost?: Partial<CostParams>
  /** Replay this trace file instead of generating traces (one scenario; its seed labels the runs). */
  traceFile?: string
  /** Fixed target validation loss instead of the reference rule. */
  target?: number
  /** Child processes running in parallel; 0 runs everything in this process. */
  workers: number
  /** Replicas per stage (sim/replica-trace.ts): per-peer failures, a stage lost only with its last replica. @default 1 */
  replicas?: number
  backend?: BackendName
  quiet?: boolean
}

export interface ScenarioResult {
  spec: ScenarioSpec
  dir: string
  conversion: RateConversion
  cost: CostModel
  traces: Trace[]
  runs: RunResult[]
  summary: ScenarioSummary
  svg: string
  png: string
}

/** How a paper preset's proxy stands for the paper's run (sim/paper.ts). */
export interface PaperProxy {
  setting: PaperSetting
  /** Paper iterations per proxy step. */
  iterationsPerStep: number
  profile: ProfileLine[]
  /** The paper's cost model for this proxy (paperCostModel). */
  cost: CostModel
}

export interface ExperimentResult {
  out: string
  stepS: number
  /** Set for a paper preset. */
  paper?: PaperProxy
  target: number
  targetRule: string
  scenarios: ScenarioResult[]
  summaryPath: string
  /** The text printed at the end: every scenario's table. */
  text: string
}

interface Job {
  scenario: number
  strategy: StrategyName
  seed: number
  tracePath?: string
  trace?: Trace
  cost: CostModel
  iterations: number
}

/**
 * The time scale, cost model and rate conversion of a scenario. With matchHourly the scale is solved
 * so that the scaled failure-free iteration lasts t* = 3600 ln(1-p) / ln(1-h) exactly (the iteration
 * time is linear in the scale; latency and other protocol constants do not scale).
 */
export function scenarioClock (spec: ScenarioSpec, base: CostModel): { timeScale: number, cost: CostModel, conversion: RateConversion } {
  const given = [spec.preset, spec.perIteration, spec.hourlyRate].filter(x => x != null).length
  if (given !== 1) throw new SimConfigError(`scenario ${spec.name}: give exactly one of preset, perIteration, hourlyRate`)
  const plain = { swaps: false, redundantCompute: false }
  let timeScale = spec.timeScale ?? 1
  if (spec.matchHourly != null) {
    const p = spec.preset != null ? PAPER_RATES[spec.preset]?.perIteration : spec.perIteration
    if (p == null) throw new SimConfigError(`scenario ${spec.name}: matchHourly needs a per-iteration rate (preset or perIteration)`)
    const target = impliedIterationS(p, spec.matchHourly)
    const i1 = base.with({ timeScale: 1 }).iterationS(plain)
    const i2 = base.with({ timeScale: 2 }).iterationS(plain)
    timeScale = 1 + (target - i1) / (i2 - i1)
    if (!(timeScale > 0)) throw new SimConfigError(`scenario ${spec.name}: no positive time scale gives ${target.toFixed(3)} s per iteration`)
  }
  const cost = base.with({ timeScale })
  const iterationS = cost.iterationS(plain)
  const conversion = resolveFailureRate({ preset: spec.preset, perIteration: spec.perIteration, hourlyRate: spec.hourlyRate, iterationS })
  if (spec.matchHourly != null) conversion.formula += `; time scale x${timeScale.toPrecision(4)} (failure-free iteration ${iterationS.toPrecision(4)} s) so that p per iteration is ${(spec.matchHourly * 100).toFixed(0)}%/h`
  else if (timeScale !== 1) conversion.formula += `; time scale x${timeScale.toPrecision(4)}`
  return { timeScale, cost, conversion }
}

/**
 * A paper preset's proxy: one step stands for the paper's failure-free iterations to target over
 * the proxy's (the step at targetFraction of its failure-free run).
 */
export function paperProxy (cfg: Pick<ExperimentConfig, 'paper' | 'iterations' | 'targetFraction' | 'cost'>): PaperProxy {
  const setting = paperSetting(cfg.paper as string)
  const proxySteps = Math.round(cfg.iterations * cfg.targetFraction)
  if (proxySteps < 1) throw new SimConfigError(`${setting.name}: the proxy needs at least one step before its target (iterations ${cfg.iterations} x target fraction ${cfg.targetFraction})`)
  const iterationsPerStep = setting.failureFreeIterations.value / proxySteps
  const { cost, profile } = paperCostModel(setting, iterationsPerStep, cfg.cost)
  return { setting, iterationsPerStep, profile, cost }
}

/** A paper scenario's clock: the preset's cost model as it is, the paper's rate per proxy step. */
function paperClock (spec: ScenarioSpec, base: CostModel, paper: PaperProxy): { cost: CostModel, conversion: RateConversion } {
  const column = paper.setting.columns.find(c => c.rate === spec.preset)
  if (column == null) throw new SimConfigError(`scenario ${spec.name}: ${paper.setting.name} has no column for rate ${String(spec.preset)} (known: ${paper.setting.columns.map(c => c.rate).join(', ')})`)
  return { cost: base, conversion: paperConversion(column, paper.iterationsPerStep, base.iterationS({ swaps: false, redundantCompute: false })) }
}

/** A failure-free run's wall-clock under another iteration time (none: no failures, no saves). */
export function retimeFailureFree (run: RunResult, iterationS: number): RunResult {
  return {
    ...run,
    iterationS,
    rows: run.rows.map(r => ({ ...r, wallS: r.iteration * iterationS })),
    evals: run.evals.map(e => ({ ...e, wallS: e.iteration * iterationS })),
    totals: { ...run.totals, wallS: run.totals.iterations * iterationS, seconds: { ...run.totals.seconds, iterations: run.totals.iterations * iterationS } }
  }
}

function workerEntry (): { file: string, execArgv: string[] } {
  const ts = import.meta.url.endsWith('.ts')
  return { file: fileURLToPath(new URL(`./worker.${ts ? 'ts' : 'js'}`, import.meta.url)), execArgv: ts ? ['--import', 'tsx'] : [] }
}

export async function runModelExperiment (cfg: ExperimentConfig): Promise<ExperimentResult> {
  const model: ModelConfig = resolveModelConfig(cfg.model)
  const train: TrainConfig = resolveTrainConfig(cfg.train, model)
  const strategies = cfg.strategies.length > 0 ? cfg.strategies : [...STRATEGIES]
  if (cfg.scenarios.length === 0 && cfg.traceFile == null) throw new SimConfigError('an experiment needs at least one scenario or a trace file')
  // The PNG plot comes last; a machine without a font for its text is told before the runs, not after.
  assertPlotFont()
  mkdirSync(cfg.out, { recursive: true })
  const log = (s: string): void => { if (cfg.quiet !== true) process.stderr.write(s + '\n') }

  const backend = await initBackend({ backend: cfg.backend })
  const corpus = loadBrownCorpus()
  const paper = cfg.paper != null ? paperProxy(cfg) : undefined
  // a paper preset's clock is the paper's: this machine's step time does not enter it
  const stepS = paper != null ? NaN : cfg.stepS ?? measureStepS({ model, train, corpus })
  const base = paper != null ? paper.cost : costModelForModel(model, train, stepS, cfg.cost)
  const plainS = base.iterationS({ swaps: false, redundantCompute: false })
  if (paper != null) log(`sim: ${cfg.name}: the paper's cost model (${paper.setting.name}); one proxy step = ${paper.iterationsPerStep.toPrecision(4)} paper iterations = ${plainS.toFixed(0)} s failure-free`)
  else log(`sim: ${cfg.name}: step ${(stepS * 1000).toFixed(1)} ms on ${backend} (one process) -> pipeline iteration ${(plainS * 1000).toFixed(1)} ms in the cost model`)

  // Scenarios, their clocks and traces.
  const given = cfg.traceFile != null ? readTrace(cfg.traceFile) : undefined
  if (given != null && given.stages !== train.stages) throw new SimConfigError(`trace ${cfg.traceFile as string} has ${given.stages} stages, the model ${train.stages}`)
  const specs: ScenarioSpec[] = given != null ? [{ name: 'trace', perIteration: given.conversion.perIteration, timeScale: cfg.scenarios[0]?.timeScale ?? 1 }] : cfg.scenarios
  const maxIterations = Math.ceil(cfg.iterations * cfg.maxIterationsFactor)
  const scenarios: Array<Omit<ScenarioResult, 'summary' | 'svg' | 'png'>> = specs.map((spec, i) => {
    const { cost, conversion } = paper != null ? paperClock(spec, base, paper) : scenarioClock(spec, base)
    const dir = join(cfg.out, spec.name)
    mkdirSync(join(dir, 'traces'), { recursive: true })
    const traces = given != null
      ? [given]
      : cfg.seeds.map(seed => (cfg.replicas ?? 1) > 1
        ? replicaTrace({ seed, stages: train.stages, replicas: cfg.replicas as number, iterations: 3 * maxIterations, conversion, noticeFraction: cfg.noticeFraction, windowIterations: replicaWindowIterations(cost, conversion.iterationS) })
        : generateTrace({ seed, stages: train.stages, iterations: 3 * maxIterations, conversion, noticeFraction: cfg.noticeFraction }))
    for (const t of traces) writeTrace(join(dir, 'traces', `seed${t.seed}.json`), t)
    log(`sim: scenario ${spec.name}${i === 0 ? '' : ''}: ${conversion.formula}`)
    return { spec, dir, conversion, cost, traces, runs: [] }
  })

  const jobs: Job[] = []
  const failing = strategies.filter(s => s !== 'none')
  const refIterations = cfg.iterations
  if (strategies.includes('none') || cfg.target == null) jobs.push({ scenario: 0, strategy: 'none', seed: 0, cost: scenarios[0].cost.with({ timeScale: 1 }), iterations: refIterations })
  scenarios.forEach((sc, i) => {
    sc.traces.forEach(trace => {
      for (const strategy of failing) {
        jobs.push({ scenario: i, strategy, seed: trace.seed, trace, tracePath: join(sc.dir, 'traces', `seed${trace.seed}.json`), cost: sc.cost, iterations: maxIterations })
      }
    })
  })

  let target: number | undefined = cfg.target
  const targetRule = cfg.target != null ? 'given' : `the failure-free run's validation loss at ${Math.round(cfg.targetFraction * 100)}% of its ${refIterations} iterations`
  const bar = new ProgressBar(`sim ${cfg.name}`, jobs.length, { quiet: cfg.quiet })
  const fractions = new Array<number>(jobs.length).fill(0)
  let finished = 0
  const report = (): void => bar.update(fractions.reduce((a, b) => a + b, 0), `${finished}/${jobs.length} runs`)
  let noneRun: RunResult | undefined
  const onDone = (j: number, run: RunResult): void => {
    fractions[j] = 1
    finished++
    const job = jobs[j]
    if (job.strategy === 'none') {
      noneRun = run
      if (target == null) target = targetFromReference(run.evals, refIterations, cfg.targetFraction)
    } else scenarios[job.scenario].runs.push(run)
    report()
  }

  if (cfg.workers <= 0) {
    for (const [j, job] of jobs.entries()) {
      // Between runs, let pending I/O (progress, a test runner's messages) through.
      await new Promise(resolve => setImmediate(resolve))
      const run = runModelMode({
        model,
        train,
        iterations: job.iterations,
        strategy: job.strategy,
        options: cfg.options,
        trace: job.trace,
        cost: job.cost,
        corpus,
        seed: job.seed,
        failAtStart: cfg.failAtStart,
        stopAtTarget: job.strategy === 'none' || !cfg.stopAtTarget ? undefined : () => target,
        onProgress: p => { fractions[j] = Math.min(1, p.iteration / job.iterations); report() }
      })
      onDone(j, run)
    }
  } else {
    await runInWorkers(cfg, jobs, model, train, backend, () => target, (j, run) => onDone(j, run), (j, f) => { fractions[j] = f; report() })
  }
  bar.done(`${jobs.length} runs`)
  if (target == null) throw new SimConfigError('no target: the experiment needs the none strategy or a given target')

  // Outputs.
  const results: ScenarioResult[] = []
  const texts: string[] = []
  for (const sc of scenarios) {
    const runs = [...sc.runs]
    if (noneRun != null && strategies.includes('none')) runs.push(retimeFailureFree(noneRun, sc.cost.iterationS({ swaps: false, redundantCompute: false })))
    for (const r of runs) writeRunFiles(join(sc.dir, 'runs'), r, { scenario: sc.spec.name, conversion: sc.conversion })
    const summary = summarize(sc.spec.name, runs, target, targetRule)
    writeSummaryFiles(sc.dir, summary, { conversion: sc.conversion, cost: sc.cost.describe() })
    const svgPath = join(sc.dir, 'val-loss.svg')
    const pngPath = join(sc.dir, 'val-loss.png')
    const hours = runs.some(r => r.totals.wallS > 7200)
    const series = validationSeries(runs)
    const plot = {
      title: `${cfg.name} / ${sc.spec.name}: validation loss vs wall-clock (${sc.conversion.kind === 'hourly' ? `${(sc.conversion.hourlyRate * 100).toFixed(0)}%/h` : `p=${sc.conversion.perIteration}/stage/iter`})`,
      xLabel: `simulated wall-clock (${hours ? 'hours' : 'seconds'})`,
      yLabel: 'validation loss (nats/byte)',
      xScale: hours ? 3600 : 1,
      hline: { y: target, label: `target ${target.toFixed(3)}` }
    }
    const svg = linePlot(series, plot)
    writeFileSync(svgPath, svg)
    writeFileSync(pngPath, renderSvg(svg).png)
    results.push({ ...sc, runs, summary, svg: svgPath, png: pngPath })
    texts.push(formatSummary(summary), `conversion: ${sc.conversion.formula}`, `plot: ${svgPath} (and .png)`, '')
  }
  const md = [
    `# spotpipe sim: ${cfg.name}`,
    '',
    cfg.description,
    '',
    `- model: d=${model.dModel}, ${model.nHeads} heads, ${model.nBlocks} blocks, seq ${model.seqLen}; ${train.stages} stages, ${train.microbatches} microbatches of ${train.microbatchSize}; lr ${train.lr}`,
    paper != null
      ? `- cost model: the paper's (${paper.setting.name}), not this machine's; one proxy step = ${paper.iterationsPerStep.toPrecision(4)} paper iterations (${plainS.toFixed(1)} s failure-free)`
      : `- measured single-process step: ${(stepS * 1000).toFixed(2)} ms on ${backend}; cost-model pipeline iteration at time scale 1: ${(plainS * 1000).toFixed(2)} ms`,
    `- strategies: ${strategies.join(', ')}; seeds: ${cfg.seeds.join(', ')}; strategy options: ${JSON.stringify({ ...cfg.options })}`,
    `- target: ${target.toFixed(4)} (${targetRule}); runs stop at the target: ${cfg.stopAtTarget}; failing runs may use up to ${maxIterations} iterations`,
    '',
    '```',
    ...texts,
    '```',
    '',
    'Cost model (time scale 1):',
    '```',
    JSON.stringify(base.describe(), null, 1),
    '```',
    ''
  ].join('\n')
  const summaryPath = join(cfg.out, 'summary.md')
  writeFileSync(summaryPath, md)
  writeFileSync(join(cfg.out, 'summary.json'), JSON.stringify({
    name: cfg.name,
    stepS,
    target,
    targetRule,
    model,
    train,
    scenarios: results.map(r => ({ name: r.spec.name, conversion: r.conversion, cost: r.cost.describe(), summary: r.summary }))
  }, (_k, v) => v === Infinity ? 'Infinity' : v, 1) + '\n')
  return { out: cfg.out, stepS, paper, target, targetRule, scenarios: results, summaryPath, text: texts.join('\n') }
}

/** JSON replacer/reviver pair that keeps Infinity and NaN (results carry both). */
export function replaceNumbers (_key: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? String(v) : v
}

export function reviveNumbers (_key: string, v: unknown): unknown {
  return v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v === 'NaN' ? NaN : v
}

/** What a worker process receives (as a JSON file). */
export interface WorkerJob {
  model: ModelConfig
  train: TrainConfig
  iterations: number
  strategy: StrategyName
  options?: ExperimentConfig['options']
  cost: CostParams
  tracePath?: string
  seed: number
  failAtStart?: boolean
  stopAtTarget: boolean
  target?: number
  backend: BackendName
  resultPath: string
}

async function runInWorkers (cfg: ExperimentConfig, jobs: Job[], model: ModelConfig, train: TrainConfig, backend: BackendName, getTarget: () => number | undefined,
  onDone: (j: number, run: RunResult) => void, onProgress: (j: number, fraction: number) => void): Promise<void> {
  const dir = join(cfg.out, '.jobs')
  mkdirSync(dir, { recursive: true })
  const entry = workerEntry()
  let nextJob = 0
  let failed: Error | undefined
  const runOne = async (j: number): Promise<void> => {
    const job = jobs[j]
    const base = join(dir, `job${j}`)
    const w: WorkerJob = {
      model,
      train,
      iterations: job.iterations,
      strategy: job.strategy,
      options: cfg.options,
      cost: { ...job.cost.p } as CostParams,
      tracePath: job.tracePath,
      seed: job.seed,
      failAtStart: cfg.failAtStart,
      stopAtTarget: cfg.stopAtTarget && job.strategy !== 'none',
      target: getTarget(),
      backend,
      resultPath: `${base}.result.json`
    }
    writeFileSync(`${base}.json`, JSON.stringify(w))
    const child = spawn(process.execPath, [...entry.execArgv, entry.file, `${base}.json`], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, SPOTPIPE_QUIET: '1' } })
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    lines.on('line', line => {
      try {
        const m = JSON.parse(line) as { type: string, iteration?: number }
        if (m.type === 'progress' && m.iteration != null) onProgress(j, Math.min(1, m.iteration / job.iterations))
      } catch { /* not a protocol line */ }
    })
    const code = await new Promise<number | null>(resolve => child.on('exit', c => resolve(c)))
    if (code !== 0) throw new SimWorkerError(`run ${job.strategy} seed ${job.seed} (job ${j}) exited with code ${String(code)}`)
    let run: RunResult
    try {
      run = JSON.parse(readFileSync(w.resultPath, 'utf8'), reviveNumbers) as RunResult
    } catch (err) {
      throw new SimWorkerError(`run ${job.strategy} seed ${job.seed}: unreadable result ${w.resultPath}`, { cause: err })
    }
    onDone(j, run)
  }
  const lane = async (): Promise<void> => {
    while (failed == null && nextJob < jobs.length) {
      const j = nextJob++
      try {
        await runOne(j)
      } catch (err) {
        failed = err as Error
      }
    }
  }
  // Runs that stop at the target need it before they start: the reference runs alone first.
  if (cfg.stopAtTarget && getTarget() == null && jobs[0]?.strategy === 'none') {
    nextJob = 1
    await runOne(0)
  }
  await Promise.all(Array.from({ length: Math.min(cfg.workers, jobs.length - nextJob) }, lane))
  if (failed != null) throw failed
  rmSync(dir, { recursive: true, force: true })
}

/**
 * Median seconds of one single-process training step of this configuration (all stages, all
 * microbatches) on the active backend: the compute input of costModelForModel.
 */
export function measureStepS (init: { model?: Partial<ModelConfig>, train?: Partial<TrainConfig>, corpus?: { train: Uint8Array, validation: Uint8Array }, steps?: number, warmup?: number }): number {
  const corpus = init.corpus ?? loadBrownCorpus()
  const trainer = new LocalPipelineTrainer({ model: init.model, train: init.train, trainTokens: corpus.train, validationTokens: corpus.validation })
  try {
    const steps = init.steps ?? 12
    for (let i = 0; i < (init.warmup ?? 3); i++) trainer.step()
    const times: number[] = []
    for (let i = 0; i < steps; i++) times.push(trainer.step().ms)
    times.sort((a, b) => a - b)
    return times[Math.floor(times.length / 2)] / 1000
  } finally {
    trainer.dispose()
  }
}

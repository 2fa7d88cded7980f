/**
 * `spotpipe sim`: churn simulation. Modes are runners keyed by name (`runners` below); a `cluster`
 * runner (real processes on loopback, replaying the same trace files) can be added next to them.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { CONFIG_PRESET_NAMES, configPreset, parseBackendName } from '../../model/index.js'
import { intFlag, numFlag, parseFlags } from '../flags.js'
import { UsageError } from '../errors.js'
import { runModelExperiment, type ExperimentConfig } from '../../sim/index.js'
import { MODEL_PRESETS, modelPreset, type ScenarioSpec } from '../../sim/index.js'
import { formatProjection, runProjection, type AbortMode } from '../../sim/index.js'
import { parseStrategy, PLUS_LAYOUTS, STRATEGIES, writeReproduction, type PlusLayout, type StrategyName } from '../../sim/index.js'
import { generateTrace, replicaTrace, resolveFailureRate, writeTrace } from '../../sim/index.js'

const HELP = `usage: spotpipe sim [--mode cluster|model|projection|trace] [flags]

Simulates stage failures and compares recovery strategies (${STRATEGIES.join(', ')}).
redundant is the cluster's strategy of that name (each stage keeps a shadow COPY of its successor,
pulled after every commit); redundant-compute is the paper's redundant computation (Bamboo-style:
each stage also computes its successor's forward and backward), in the cluster and here alike.

modes
  cluster      the demo: every strategy on a real local cluster (coordinator + peer processes on
               loopback), the same seeded trace replayed as SIGKILL / SIGTERM / new peers (default,
               but model mode when --preset or --report is given)
  model        real training of a small model in one process, wall-clock from the cost model
  projection   the cost model alone for large clusters (default: 70B params, 1000 stages, 500 Mb/s)
  trace        write a failure trace file only

common flags
  --preset NAME        model mode: an experiment, ${Object.keys(MODEL_PRESETS).join(', ')} (default quick), or a
                       model preset as on train and coordinator, ${CONFIG_PRESET_NAMES.filter(n => !(n in MODEL_PRESETS)).join(', ')}: the
                       quick experiment with that model's shape. paper-500m and paper-124m reproduce
                       the CheckFree paper: its iteration times and sizes as the cost model, a proxy
                       model of its stage count (docs/reproducing-checkfree.md)
  --report             with a paper preset: write reproduction.md (the paper's table beside ours, the
                       orderings, every number's source) and hours.svg/.png into --out
  --model-preset NAME  model mode: the model shape of ${CONFIG_PRESET_NAMES.join(' | ')} (model/presets.ts)
                       on the experiment --preset names; the data stays the Brown corpus in bytes
                       (vocabulary 256)
  --strategies a,b,c   strategies to compare (default all)
  --seeds 1,2,3        trace seeds (default from the preset)
  --iterations N       iterations (model: of the failure-free reference run; projection: default 100000)
  --rate H             hourly per-stage failure rate, e.g. 0.16 (converted with the iteration time)
  --p-iter P           per-stage, per-iteration failure probability, e.g. 0.004 (with --rate: time is
                       scaled so that P per iteration equals H per hour)
  --time-scale X       multiply size-derived durations of the cost model by X (default 1)
  --trace FILE         replay this trace file (model mode)
  --out DIR            output folder (default out/sim-<timestamp>)
  --checkpoint-every K checkpoint interval in iterations (default 50; the preset's for quick)
  --mirror-every N     CheckFree+ mirror refresh interval (default 10)
  --lr-scale X         learning-rate multiplier of a rebuilt stage (default 1.1)
  --plus-layout L      where CheckFree+ keeps the embedding and head, in every mode: spotpipe (two
                       extra hops per swapped microbatch, default) | paper (stage 1 and S-2 run copies:
                       no extra hop; the copies' gradients are added to the owners' and their weights
                       pulled every iteration; one replica per stage in cluster mode)
  --notice-fraction F  share of failures announced by a spot notice (default 0)
  --replicas R         cluster, model and trace modes: R data-parallel replicas per stage; the rate
                       is then per peer, and a stage loses its state only when its last live replica
                       fails (a replica lost while another is up costs the iteration in flight, not a
                       rebuild); default 1

model mode
  --workers N          parallel child processes (default min(2, cores); 0 = in this process)
  --eval-every K       validate every K iterations
  --step-ms X          single-process step time in ms to use instead of measuring it (paper presets
                       pin 37.7 ms, measured on this machine)
  --target L           fixed target validation loss (default: the failure-free loss at 80%)
  --no-stop            run every strategy to the end instead of stopping at the target
  --backend NAME       tensorflow | wasm | cpu

projection mode
  --stages S           pipeline stages (default 1000)
  --params N           model parameters (default 70e9)
  --link-mbps M        link bandwidth in Mb/s (default 500)
  --abort MODE         microbatch (paper: the in-flight microbatch is lost, default) | iteration
  --seed K             trace seed (default 1)

trace mode
  --stages S --iterations N --iteration-s T --rate H | --p-iter P --seeds K --out FILE
  [--replicas R --replica-window W]   W: iterations a lost replica stays missing (default 5)
`

type Values = Record<string, string | boolean | undefined>

function listFlag (values: Values, name: string): string[] | undefined {
  const raw = values[name]
  if (raw == null) return undefined
  const items = String(raw).split(',').map(s => s.trim()).filter(s => s.length > 0)
  if (items.length === 0) throw new UsageError(`--${name} needs a comma-separated list`)
  return items
}

function seedsFlag (values: Values): number[] | undefined {
  return listFlag(values, 'seeds')?.map(s => {
    const v = Number(s)
    if (!Number.isSafeInteger(v)) throw new UsageError(`--seeds: "${s}" is not an integer`)
    return v
  })
}

function probFlag (values: Values, name: string): number | undefined {
  const raw = values[name]
  if (raw == null) return undefined
  const v = Number(raw)
  if (!(Number.isFinite(v) && v >= 0 && v < 1)) throw new UsageError(`--${name} must be a probability in [0, 1), got "${String(raw)}"`)
  return v
}

function strategiesFlag (values: Values): StrategyName[] | undefined {
  return listFlag(values, 'strategies')?.map(s => {
    try { return parseStrategy(s) } catch (err) { throw new UsageError((err as Error).message) }
  })
}

function defaultOut (): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)
  return join('out', `sim-${stamp}`)
}

function strategyOptions (values: Values): ExperimentConfig['options'] {
  const o: NonNullable<ExperimentConfig['options']> = {}
  if (values['checkpoint-every'] != null) o.checkpointEvery = intFlag(values, 'checkpoint-every', 50)
  if (values['mirror-every'] != null) o.mirrorEvery = intFlag(values, 'mirror-every', 10)
  if (values['lr-scale'] != null) o.lrScale = numFlag(values, 'lr-scale', 1.1)
  if (values['plus-layout'] != null) {
    const l = String(values['plus-layout'])
    if (!(PLUS_LAYOUTS as readonly string[]).includes(l)) throw new UsageError(`--plus-layout must be ${PLUS_LAYOUTS.join(' or ')}, got "${l}"`)
    o.plusLayout = l as PlusLayout
  }
  return o
}

/** The scenario the rate flags describe, or undefined to keep the preset's. */
function scenarioFlags (values: Values): ScenarioSpec | undefined {
  const h = probFlag(values, 'rate')
  const p = probFlag(values, 'p-iter')
  const timeScale = values['time-scale'] != null ? numFlag(values, 'time-scale', 1) : undefined
  if (p != null) return { name: `p${p}`, perIteration: p, matchHourly: h, timeScale }
  if (h != null) return { name: `h${h}`, hourlyRate: h, timeScale }
  if (timeScale != null) throw new UsageError('--time-scale needs --rate or --p-iter')
  return undefined
}

/**
 * Model mode's experiment from the flags. `--preset` names an experiment (quick, paper-16, ...) or,
 * as on train and coordinator, a model preset (demo, paper-124m, gpt2-small): the quick experiment
 * with that model's shape, which `--model-preset` also sets on any experiment.
 */
export function modelModeConfig (values: Values): ExperimentConfig {
  let presetName = String(values.preset ?? 'quick')
  let shapeName = values['model-preset'] != null ? String(values['model-preset']) : undefined
  if (!(presetName in MODEL_PRESETS) && (CONFIG_PRESET_NAMES as readonly string[]).includes(presetName)) {
    if (shapeName != null) throw new UsageError(`--preset ${presetName} is a model preset, and so is --model-preset ${shapeName}: give one of them`)
    shapeName = presetName
    presetName = 'quick'
  }
  let preset
  try { preset = modelPreset(presetName) } catch (err) { throw new UsageError(`${(err as Error).message}, or a model preset: ${CONFIG_PRESET_NAMES.join(', ')}`) }
  const scenario = scenarioFlags(values)
  if (preset.paper != null && (scenario != null || values.trace != null)) throw new UsageError(`--preset ${presetName} runs the paper's own failure rates (its columns); --rate, --p-iter, --time-scale and --trace do not apply`)
  if (values.report === true && preset.paper == null) throw new UsageError(`--report needs a paper preset (paper-500m or paper-124m), not --preset ${presetName}`)
  const options = { ...preset.options, ...strategyOptions(values) }
  let model = preset.model
  const train = { ...preset.train }
  if (shapeName != null) {
    let shape
    try { shape = configPreset(shapeName) } catch (err) { throw new UsageError(`--model-preset: ${(err as Error).message}`) }
    model = { ...model, ...shape.model, vocab: 256 }
    Object.assign(train, shape.train)
  }
  if (values['eval-every'] != null) train.evalEvery = intFlag(values, 'eval-every', 20)
  const cfg: ExperimentConfig = {
    ...preset,
    name: presetName,
    model,
    train,
    out: String(values.out ?? defaultOut()),
    strategies: strategiesFlag(values) ?? preset.strategies,
    seeds: seedsFlag(values) ?? preset.seeds,
    scenarios: scenario != null ? [scenario] : preset.scenarios,
    iterations: intFlag(values, 'iterations', preset.iterations),
    options,
    stepS: values['step-ms'] != null ? numFlag(values, 'step-ms', 1) / 1000 : preset.stepS,
    target: values.target != null ? numFlag(values, 'target', 1) : undefined,
    stopAtTarget: values['no-stop'] === true ? false : preset.stopAtTarget,
    traceFile: values.trace != null ? String(values.trace) : undefined,
    noticeFraction: probFlag(values, 'notice-fraction') ?? preset.noticeFraction,
    replicas: intFlag(values, 'replicas', 1),
    workers: intFlag(values, 'workers', Math.min(2, availableParallelism()), 0),
    backend: values.backend != null ? parseBackendName(String(values.backend)) : undefined
  }
  return cfg
}

async function modelMode (values: Values): Promise<void> {
  const cfg = modelModeConfig(values)
  const r = await runModelExperiment(cfg)
  process.stdout.write(r.text + '\n')
  process.stdout.write(`summary: ${r.summaryPath}\n`)
  for (const s of r.scenarios) process.stdout.write(`plot: ${s.svg}\n`)
  if (values.report === true) {
    const rep = writeReproduction(r)
    process.stdout.write(rep.text + '\n')
    process.stdout.write(`reproduction: ${rep.path}\nplot: ${rep.svg} (and .png)\n`)
  }
}

async function projectionMode (values: Values): Promise<void> {
  const h = probFlag(values, 'rate')
  const p = probFlag(values, 'p-iter')
  const abort = String(values.abort ?? 'microbatch')
  if (abort !== 'microbatch' && abort !== 'iteration') throw new UsageError(`--abort must be microbatch or iteration, got "${abort}"`)
  const seeds = seedsFlag(values)
  const profile: Record<string, number> = {}
  if (values.stages != null) profile.stages = intFlag(values, 'stages', 1000)
  if (values.params != null) profile.params = numFlag(values, 'params', 70e9)
  const cost: Record<string, number> = {}
  if (values['link-mbps'] != null) cost.linkBytesPerS = numFlag(values, 'link-mbps', 500) * 1e6 / 8
  if (values['time-scale'] != null) cost.timeScale = numFlag(values, 'time-scale', 1)
  const r = runProjection({
    profile,
    cost,
    iterations: intFlag(values, 'iterations', 100_000),
    rate: p != null ? { perIteration: p } : { hourlyRate: h ?? 0.16 },
    seed: values.seed != null ? intFlag(values, 'seed', 1, 0) : seeds?.[0] ?? 1,
    strategies: strategiesFlag(values),
    options: strategyOptions(values),
    abort: abort as AbortMode,
    noticeFraction: probFlag(values, 'notice-fraction')
  })
  const text = formatProjection(r)
  process.stdout.write(text + '\n')
  if (values.out != null) {
    const out = String(values.out)
    mkdirSync(out, { recursive: true })
    writeFileSync(join(out, 'projection.txt'), text + '\n')
    writeFileSync(join(out, 'projection.json'), JSON.stringify(r, (_k, v) => typeof v === 'number' && !Number.isFinite(v) ? String(v) : v, 1) + '\n')
    process.stdout.write(`summary: ${join(out, 'projection.txt')}\n`)
  }
}

async function traceMode (values: Values): Promise<void> {
  const stages = intFlag(values, 'stages', 4)
  const iterations = intFlag(values, 'iterations', 1000)
  const iterationS = numFlag(values, 'iteration-s', 1)
  const h = probFlag(values, 'rate')
  const p = probFlag(values, 'p-iter')
  if (h == null && p == null) throw new UsageError('trace mode needs --rate or --p-iter')
  const conversion = resolveFailureRate({ hourlyRate: h, perIteration: p, iterationS })
  const seeds = seedsFlag(values) ?? [1]
  const out = String(values.out ?? `trace-seed${seeds[0]}.json`)
  seeds.forEach((seed, i) => {
    const replicas = intFlag(values, 'replicas', 1)
    const trace = replicas > 1
      ? replicaTrace({ seed, stages, replicas, iterations, conversion, noticeFraction: probFlag(values, 'notice-fraction'), windowIterations: intFlag(values, 'replica-window', 5) })
      : generateTrace({ seed, stages, iterations, conversion, noticeFraction: probFlag(values, 'notice-fraction') })
    const path = seeds.length === 1 ? out : out.replace(/(\.json)?$/, `-seed${seed}.json`)
    writeTrace(path, trace)
    const losses = trace.events.filter(e => e.kind === 'crash' || e.kind === 'notice').length
    const replicaLosses = trace.events.filter(e => e.kind === 'replica-loss').length
    process.stdout.write(`${i === 0 ? `${conversion.formula}\n` : ''}trace: ${path} (${losses} ${replicas > 1 ? 'whole-stage losses' : 'failures'}${replicas > 1 ? `, ${replicaLosses} replica losses` : ''})\n`)
  })
}

/** Simulation runners by mode; `cluster` (real processes) plugs in here. */
export const runners: Record<string, (values: Values) => Promise<void>> = {
  cluster: async (values) => { await (await import('./sim-cluster.js')).simCluster(values) },
  model: modelMode,
  projection: projectionMode,
  trace: traceMode
}

export async function sim (argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(argv, {
    mode: { type: 'string' },
    preset: { type: 'string' },
    'model-preset': { type: 'string' },
    strategies: { type: 'string' },
    seeds: { type: 'string' },
    seed: { type: 'string' },
    iterations: { type: 'string' },
    rate: { type: 'string' },
    'p-iter': { type: 'string' },
    'time-scale': { type: 'string' },
    trace: { type: 'string' },
    out: { type: 'string' },
    'checkpoint-every': { type: 'string' },
    'mirror-every': { type: 'string' },
    'lr-scale': { type: 'string' },
    'plus-layout': { type: 'string' },
    report: { type: 'boolean' },
    'notice-fraction': { type: 'string' },
    replicas: { type: 'string' },
    'replica-window': { type: 'string' },
    workers: { type: 'string' },
    'eval-every': { type: 'string' },
    'step-ms': { type: 'string' },
    target: { type: 'string' },
    'no-stop': { type: 'boolean' },
    backend: { type: 'string' },
    stages: { type: 'string' },
    params: { type: 'string' },
    'link-mbps': { type: 'string' },
    abort: { type: 'string' },
    'iteration-s': { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { process.stdout.write(HELP); return }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`)
  // the embedded demo is cluster mode; an experiment preset or a report is model mode's
  const mode = String(values.mode ?? (values.preset != null || values.report === true ? 'model' : 'cluster'))
  const runner = runners[mode]
  if (runner == null) throw new UsageError(`unknown --mode "${mode}" (known: ${Object.keys(runners).join(', ')})`)
  await runner(values)
}

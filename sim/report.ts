/**
 * Outputs of a simulation: per-run CSV and JSON, time to a target validation loss, ratios against
 * the reference strategy (checkfree-plus) with their spread over seeds, and the summary table.
 *
 * Time to target: the wall-clock of the first validation at or below the target. A run that never
 * gets there has no time; its ratio is reported as a lower bound (">x", wall-clock at its end over the
 * reference's time) and left out of the spread statistics, which say how many seeds reached it.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { EvalPoint, RunResult } from './model-mode.js'
import { SIM_RUNGS, type SimRung, type StrategyName } from './strategies.js'

export const REFERENCE_STRATEGY: StrategyName = 'checkfree-plus'

/** Wall-clock seconds of the first evaluation at or below `target`, or null. */
export function timeToTarget (evals: readonly EvalPoint[], target: number): number | null {
  for (const e of evals) if (e.valLoss <= target) return e.wallS
  return null
}

/**
 * The target rule of the acceptance experiment: the validation loss the failure-free run has at
 * `fraction` of its iterations (the last evaluation at or before that iteration).
 */
export function targetFromReference (evals: readonly EvalPoint[], iterations: number, fraction = 0.8): number {
  const at = Math.round(iterations * fraction)
  let best: EvalPoint | undefined
  for (const e of evals) if (e.iteration <= at && (best == null || e.iteration >= best.iteration)) best = e
  if (best == null) throw new Error('no evaluation before the target iteration')
  return best.valLoss
}

export interface Spread {
  n: number
  min: number
  median: number
  max: number
  mean: number
  sd: number
}

export function spread (values: readonly number[]): Spread | null {
  const v = values.filter(x => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const n = v.length
  const mean = v.reduce((a, b) => a + b, 0) / n
  const sd = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0
  const median = n % 2 === 1 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
  return { n, min: v[0], median, max: v[n - 1], mean, sd }
}

export interface StrategySummary {
  strategy: StrategyName
  seeds: number[]
  /** Per seed: seconds to target, or null when not reached. */
  timeToTarget: Array<number | null>
  /** Per seed: time over the reference's time for the same seed (lower bound when not reached). */
  ratio: Array<number | null>
  ratioLowerBound: Array<number | null>
  timeStats: Spread | null
  ratioStats: Spread | null
  reached: number
  /** Means over seeds. */
  attempts: number
  iterations: number
  crashes: number
  stageIterationsLost: number
  iterationsRedone: number
  /** Summed over seeds. */
  recoveries: Record<SimRung, number>
  /** Mean bytes per run: model state moved (checkpoints, recoveries, mirrors) and activations. */
  stateBytes: number
  activationBytes: number
  iterationS: number
}

export interface ScenarioSummary {
  scenario: string
  target: number
  targetRule: string
  reference: StrategyName
  strategies: StrategySummary[]
}

function mean (xs: number[]): number { return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length }

/**
 * Summary of one scenario's runs. `runs` holds every strategy and seed; a strategy with a single run
 * (such as `none`, which has no failures) is compared against every seed of the reference.
 */
export function summarize (scenario: string, runs: readonly RunResult[], target: number, targetRule: string, reference: StrategyName = REFERENCE_STRATEGY): ScenarioSummary {
  const byStrategy = new Map<StrategyName, RunResult[]>()
  for (const r of runs) {
    const list = byStrategy.get(r.strategy) ?? []
    list.push(r)
    byStrategy.set(r.strategy, list)
  }
  for (const list of byStrategy.values()) list.sort((a, b) => a.seed - b.seed)
  const refRuns = byStrategy.get(reference) ?? []
  const refTime = new Map(refRuns.map(r => [r.seed, timeToTarget(r.evals, target)]))
  const strategies: StrategySummary[] = []
  for (const [strategy, list] of byStrategy) {
    // A single seed-independent run (none) is paired with each reference seed.
    const pairs: Array<{ run: RunResult, seed: number }> = list.length === 1 && refRuns.length > 0 && !refTime.has(list[0].seed)
      ? refRuns.map(r => ({ run: list[0], seed: r.seed }))
      : list.map(r => ({ run: r, seed: r.seed }))
    const ttt = pairs.map(p => timeToTarget(p.run.evals, target))
    const ratio: Array<number | null> = []
    const lower: Array<number | null> = []
    pairs.forEach((p, i) => {
      const ref = refTime.get(p.seed)
      const t = ttt[i]
      ratio.push(ref != null && t != null ? t / ref : null)
      lower.push(ref != null && t == null ? p.run.totals.wallS / ref : null)
    })
    const recoveries = Object.fromEntries(SIM_RUNGS.map(r => [r, 0])) as Record<SimRung, number>
    for (const r of list) for (const k of SIM_RUNGS) recoveries[k] += r.totals.recoveries[k]
    strategies.push({
      strategy,
      seeds: pairs.map(p => p.seed),
      timeToTarget: ttt,
      ratio,
      ratioLowerBound: lower,
      timeStats: spread(ttt.filter((x): x is number => x != null)),
      ratioStats: spread(ratio.filter((x): x is number => x != null)),
      reached: ttt.filter(x => x != null).length,
      attempts: mean(list.map(r => r.totals.attempts)),
      iterations: mean(list.map(r => r.totals.iterations)),
      crashes: mean(list.map(r => r.totals.crashes)),
      stageIterationsLost: mean(list.map(r => r.totals.stageIterationsLost)),
      iterationsRedone: mean(list.map(r => r.totals.iterationsRedone)),
      recoveries,
      stateBytes: mean(list.map(r => r.totals.bytes.checkpointSave + r.totals.bytes.checkpointLoad + r.totals.bytes.recovery + r.totals.bytes.mirrors + r.totals.bytes.shadows)),
      activationBytes: mean(list.map(r => r.totals.bytes.activations)),
      iterationS: list[0].iterationS
    })
  }
  const order = ['checkfree-plus', 'checkfree', 'checkpoint', 'checkpoint-whole', 'redundant', 'redundant-compute', 'none']
  strategies.sort((a, b) => order.indexOf(a.strategy) - order.indexOf(b.strategy))
  return { scenario, target, targetRule, reference, strategies }
}

export function fmtSeconds (s: number): string {
  if (!Number.isFinite(s)) return String(s)
  if (s >= 86400 * 2) return `${(s / 86400).toFixed(1)}d`
  if (s >= 7200) return `${(s / 3600).toFixed(1)}h`
  if (s >= 120) return `${(s / 60).toFixed(1)}m`
  return `${s.toFixed(s >= 10 ? 0 : 2)}s`
}

export function fmtBytes (b: number): string {
  if (!Number.isFinite(b)) return String(b)
  if (b >= 1e12) return `${(b / 1e12).toFixed(2)} TB`
  if (b >= 1e9) return `${(b / 1e9).toFixed(2)} GB`
  if (b >= 1e6) return `${(b / 1e6).toFixed(1)} MB`
  return `${(b / 1e3).toFixed(1)} kB`
}

function pad (cells: string[], widths: number[]): string {
  return cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')
}

/** A fixed-width text table, one row per strategy. */
export function formatSummary (s: ScenarioSummary): string {
  const header = ['strategy', 'reached', 'time to target: median [min..max]', `ratio vs ${s.reference}: median [min..max]`, 'mean±sd', 'per seed', 'crashes', 'stage-its lost', 'its redone', 'recoveries by rung (all seeds)', 'state moved', 'activations']
  const rows: string[][] = []
  for (const st of s.strategies) {
    const t = st.timeStats
    const r = st.ratioStats
    const perSeed = st.ratio.map((x, i) => x != null ? x.toFixed(3) : st.ratioLowerBound[i] != null ? `>${(st.ratioLowerBound[i] as number).toFixed(2)}` : 'n/a').join(' ')
    const rungs = SIM_RUNGS.filter(k => st.recoveries[k] > 0).map(k => `${k} ${st.recoveries[k]}`).join(', ')
    rows.push([
      st.strategy,
      `${st.reached}/${st.seeds.length}`,
      t != null ? `${fmtSeconds(t.median)} [${fmtSeconds(t.min)}..${fmtSeconds(t.max)}]` : 'not reached',
      r != null ? `${r.median.toFixed(3)} [${r.min.toFixed(3)}..${r.max.toFixed(3)}]` : 'n/a',
      r != null ? `${r.mean.toFixed(3)}±${r.sd.toFixed(3)}` : 'n/a',
      perSeed,
      st.crashes.toFixed(1),
      st.stageIterationsLost.toFixed(0),
      st.iterationsRedone.toFixed(0),
      rungs === '' ? '-' : rungs,
      fmtBytes(st.stateBytes),
      fmtBytes(st.activationBytes)
    ])
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const lines = [
    `scenario ${s.scenario}: target validation loss ${s.target.toFixed(4)} (${s.targetRule})`,
    pad(header, widths),
    widths.map(w => '-'.repeat(w)).join('  '),
    ...rows.map(r => pad(r, widths)),
    '(crashes, stage-its lost and its redone: means per run; state moved: checkpoint saves and loads, recovery transfers, mirror refreshes, shadow pulls, mean per run; redundant = shadow copy, redundant-compute = redundant computation)'
  ]
  return lines.join('\n')
}

/** Per-iteration CSV: step, iteration, wall_s, loss, val_loss, events. */
export function rowsToCsv (run: RunResult): string {
  const esc = (s: string): string => /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
  const lines = ['step,iteration,wall_s,loss,val_loss,events']
  for (const r of run.rows) {
    lines.push([r.step, r.iteration, r.wallS.toFixed(6), r.loss == null ? '' : r.loss.toFixed(6), r.valLoss == null ? '' : r.valLoss.toFixed(6), esc(r.events)].join(','))
  }
  return lines.join('\n') + '\n'
}

/** Writes `<strategy>-seed<seed>.csv` and `.json` under dir; returns their paths. */
export function writeRunFiles (dir: string, run: RunResult, extra: Record<string, unknown> = {}): { csv: string, json: string } {
  mkdirSync(dir, { recursive: true })
  const base = join(dir, `${run.strategy}-seed${run.seed}`)
  writeFileSync(`${base}.csv`, rowsToCsv(run))
  writeFileSync(`${base}.json`, JSON.stringify({ ...extra, ...run }, null, 1) + '\n')
  return { csv: `${base}.csv`, json: `${base}.json` }
}

export function writeSummaryFiles (dir: string, summary: ScenarioSummary, extra: Record<string, unknown> = {}): { txt: string, json: string } {
  mkdirSync(dir, { recursive: true })
  const txt = join(dir, 'summary.txt')
  const json = join(dir, 'summary.json')
  writeFileSync(txt, formatSummary(summary) + '\n')
  writeFileSync(json, JSON.stringify({ ...extra, ...summary }, (_k, v) => v === Infinity ? 'Infinity' : v, 1) + '\n')
  return { txt, json }
}

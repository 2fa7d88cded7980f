/**
 * The local-cluster churn experiment (the README's main job): every strategy on the same trace on a
 * real local cluster, then CSV/JSON per strategy, a summary table and an SVG plot of validation loss
 * against wall-clock time.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Strategy } from '../coordinator/index.js'
import type { ModelConfig, PlusLayout, TrainConfig } from '../model/index.js'
import { runClusterStrategy, type ClusterRow, type ClusterRun } from './cluster-mode.js'
import { linePlot } from './svg.js'
import { serializeTrace, type Trace } from './trace.js'

export interface ClusterExperimentConfig {
  strategies: Strategy[]
  trace: Trace
  model: Partial<ModelConfig>
  train: Partial<TrainConfig>
  iterations: number
  evalEvery: number
  checkpointEvery: number
  /** Where CheckFree+'s swapped microbatches embed and run the head. @default 'spotpipe' */
  plusLayout?: PlusLayout
  validationTokens: Uint8Array
  outDir: string
  onProgress?: (strategy: Strategy, row: ClusterRow) => void
  onStrategy?: (strategy: Strategy, index: number) => void
}

export interface ClusterExperimentResult {
  runs: ClusterRun[]
  table: string
  plot: string
  /** Validation loss every strategy is timed to: what the failure-free run reaches at 60% of its iterations. */
  target: number
}

function csv (run: ClusterRun): string {
  const lines = ['iteration,wall_s,loss,val_loss,events']
  for (const r of run.rows) lines.push([r.iteration, r.wallS.toFixed(3), Number.isFinite(r.loss) ? r.loss.toFixed(6) : '', r.valLoss?.toFixed(6) ?? '', JSON.stringify(r.events)].join(','))
  return lines.join('\n') + '\n'
}

function evals (run: ClusterRun): Array<[number, number]> {
  return run.rows.filter(r => r.valLoss != null).map(r => [r.wallS, r.valLoss as number])
}

/** First wall-clock time the validation loss is at or below `target`, or null. */
export function clusterTimeToTarget (run: ClusterRun, target: number): number | null {
  return run.rows.find(r => r.valLoss != null && r.valLoss <= target)?.wallS ?? null
}

export async function runClusterExperiment (cfg: ClusterExperimentConfig): Promise<ClusterExperimentResult> {
  mkdirSync(cfg.outDir, { recursive: true })
  writeFileSync(join(cfg.outDir, 'trace.json'), serializeTrace(cfg.trace))
  const runs: ClusterRun[] = []
  for (const [i, strategy] of cfg.strategies.entries()) {
    cfg.onStrategy?.(strategy, i)
    const run = await runClusterStrategy({
      strategy,
      trace: cfg.trace,
      model: cfg.model,
      train: cfg.train,
      iterations: cfg.iterations,
      evalEvery: cfg.evalEvery,
      checkpointEvery: cfg.checkpointEvery,
      plusLayout: cfg.plusLayout,
      validationTokens: cfg.validationTokens,
      onIteration: (row) => { cfg.onProgress?.(strategy, row) }
    })
    runs.push(run)
    writeFileSync(join(cfg.outDir, `${strategy}.csv`), csv(run))
    writeFileSync(join(cfg.outDir, `${strategy}.json`), JSON.stringify(run, null, 2))
  }
  // The target: the failure-free run's validation loss at 60% of its iterations (or the first
  // strategy's, when `none` was not run). Early enough that a run with failures can still reach it
  // within the same number of iterations, so the table compares times rather than "not reached".
  const ref = runs.find(r => r.strategy === 'none') ?? runs[0]
  const refEvals = ref.rows.filter(r => r.valLoss != null && r.iteration >= 0)
  const at = refEvals.find(r => r.iteration + 1 >= 0.6 * cfg.iterations) ?? refEvals[refEvals.length - 1]
  const target = at?.valLoss ?? NaN
  const reference = runs.find(r => r.strategy === 'checkfree-plus')
  const refTime = reference != null ? clusterTimeToTarget(reference, target) : null
  const header = ['strategy', 'wall s', 'final val', `time to ${target.toFixed(3)}`, 'vs checkfree-plus', 'failures', 'aborted', 'recoveries by rung', 'bytes moved']
  const body = runs.map(r => {
    const t = clusterTimeToTarget(r, target)
    const rungs = new Map<string, number>()
    for (const e of r.recoveries) rungs.set(e.rung, (rungs.get(e.rung) ?? 0) + 1)
    const lastVal = [...r.rows].reverse().find(x => x.valLoss != null)?.valLoss
    return [
      r.strategy,
      r.wallS.toFixed(1),
      lastVal?.toFixed(3) ?? '-',
      t != null ? `${t.toFixed(1)} s` : 'not reached',
      t != null && refTime != null ? (t / refTime).toFixed(2) : '-',
      String(r.applied),
      String(r.aborted),
      [...rungs].map(([k, v]) => `${k} ${v}`).join(', ') || '-',
      `${(r.recoveries.reduce((a, e) => a + e.bytes, 0) / 2 ** 20).toFixed(1)} MB`
    ]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...body.map(b => b[i].length)))
  const fmt = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  const table = [fmt(header), fmt(widths.map(w => '-'.repeat(w))), ...body.map(fmt)].join('\n')
  writeFileSync(join(cfg.outDir, 'summary.txt'), table + '\n')
  writeFileSync(join(cfg.outDir, 'summary.json'), JSON.stringify({ target, runs: runs.map(r => ({ strategy: r.strategy, wallS: r.wallS, timeToTarget: clusterTimeToTarget(r, target), applied: r.applied, aborted: r.aborted, recoveries: r.recoveries })) }, null, 2))
  const svg = linePlot(runs.map(r => ({ name: r.strategy, points: evals(r) })), {
    title: 'Validation loss against wall-clock time (local cluster, same failure trace)',
    xLabel: 'wall-clock seconds',
    yLabel: 'validation loss (nats/byte)',
    hline: Number.isFinite(target) ? { y: target, label: 'target' } : undefined
  })
  const plot = join(cfg.outDir, 'loss-vs-time.svg')
  writeFileSync(plot, svg)
  return { runs, table, plot, target }
}

/**
 * The reproduction report of a paper preset (`spotpipe sim --preset paper-500m --report`): the
 * paper's Table 2 beside spotpipe's (same rows, same columns, hours of wall-clock to the target, 3
 * seeds with their spread), the ordering of the strategies in each column, the cost profile with
 * every number's source, and a plot of hours against the failure rate, paper and ours.
 *
 *   <out>/reproduction.md, reproduction.json, hours.svg, hours.png
 *
 * Hours are the simulated wall-clock of the first validation at or below the target (report.ts
 * timeToTarget); a seed that never reached it within the attempt cap is shown as a lower bound.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ExperimentResult, PaperProxy, ScenarioResult } from './experiment.js'
import { PAPER_ROW_LABELS, PAPER_ROWS, paperIterationsToTarget, type PaperRow } from './paper.js'
import { renderSvg } from './png.js'
import { spread, timeToTarget, type Spread } from './report.js'
import { SimConfigError } from './errors.js'
import { linePlot, type Series } from './svg.js'

export interface ReproductionCell {
  /** Per seed: hours to target, or null (not reached; see lowerBoundH). */
  hours: Array<number | null>
  /** Per seed that did not reach the target: the hours it ran. */
  lowerBoundH: Array<number | null>
  stats: Spread | null
  paperH: number | null
  /** Paper iterations to target implied by Table 2 (hours x 3600 / its iteration time). */
  paperIterations: number | null
  /** Ours in paper iterations: hours x 3600 / iterationS. */
  iterations: number | null
  /** Ours: seconds per computed paper iteration without failures' costs (compute, checkpoint saves,
   *  shadow pulls), the mean over the seeds; Table 2's iteration column. */
  iterationS: number
  /** Table 2's iteration time for this row and column. */
  paperIterationS: number | null
}

export interface Reproduction {
  setting: string
  title: string
  columns: string[]
  rows: Array<{ strategy: PaperRow, label: string, cells: ReproductionCell[] }>
  /** Failure-free hours to the target (the none run; the paper's: its failure-free iterations x CheckFree's iteration). */
  failureFreeH: { ours: number | null, paper: number }
  /** Per column: strategies fastest first (median hours; unreached seeds count as their lower bound). */
  ordering: Array<{ column: string, ours: PaperRow[], paper: PaperRow[] | null, same: boolean | null }>
  iterationsPerStep: number
  profile: PaperProxy['profile']
  conversions: string[]
}

/** The table and orderings of a finished paper experiment. */
export function buildReproduction (result: ExperimentResult): Reproduction {
  const paper = result.paper
  if (paper == null) throw new SimConfigError('a reproduction report needs a paper preset (--preset paper-500m or paper-124m)')
  const { setting } = paper
  const byRate = new Map<string, ScenarioResult>(result.scenarios.map(s => [s.conversion.preset ?? s.spec.name, s]))
  const scenarios = setting.columns.map(c => {
    const sc = byRate.get(c.rate)
    if (sc == null) throw new SimConfigError(`the experiment has no scenario for ${setting.name}'s ${c.label} column (rate ${c.rate})`)
    return sc
  })
  const rows = PAPER_ROWS.filter(strategy => scenarios.some(sc => sc.runs.some(r => r.strategy === strategy))).map(strategy => {
    const cells = scenarios.map((sc, j): ReproductionCell => {
      const runs = sc.runs.filter(r => r.strategy === strategy).sort((a, b) => a.seed - b.seed)
      const hours = runs.map(r => { const t = timeToTarget(r.evals, result.target); return t == null ? null : t / 3600 })
      const lowerBoundH = runs.map((r, i) => hours[i] == null ? r.totals.wallS / 3600 : null)
      const stats = spread(hours.filter((h): h is number => h != null))
      const perRun = runs.filter(r => r.totals.computedIterations > 0).map(r => {
        const t = r.totals
        return (t.seconds.iterations + t.seconds.checkpointCopy + t.seconds.contention + t.seconds.shadowWait) / t.computedIterations / paper.iterationsPerStep
      })
      const iterationS = perRun.length === 0 ? NaN : perRun.reduce((a, b) => a + b, 0) / perRun.length
      return {
        hours,
        lowerBoundH,
        stats,
        paperH: setting.hours?.[strategy]?.[j] ?? null,
        paperIterations: paperIterationsToTarget(setting, strategy, j),
        iterations: stats == null ? null : stats.median * 3600 / iterationS,
        iterationS,
        paperIterationS: setting.reportedIterationS?.[strategy]?.[j] ?? null
      }
    })
    return { strategy, label: PAPER_ROW_LABELS[strategy], cells }
  })
  const none = scenarios[0].runs.find(r => r.strategy === 'none')
  const noneT = none == null ? null : timeToTarget(none.evals, result.target)
  const rank = (value: (r: typeof rows[number]) => number): PaperRow[] => [...rows].sort((a, b) => value(a) - value(b)).map(r => r.strategy)
  const medianOrBound = (c: ReproductionCell): number => c.hours.length === 0 ? Infinity : c.stats?.median ?? lowerBound(c)
  const ordering = setting.columns.map((c, j) => {
    const ours = rank(r => medianOrBound(r.cells[j]))
    const paperOrder = setting.hours == null ? null : rank(r => r.cells[j].paperH ?? Infinity)
    return { column: c.label, ours, paper: paperOrder, same: paperOrder == null ? null : paperOrder.every((s, i) => s === ours[i]) }
  })
  return {
    setting: setting.name,
    title: setting.title,
    columns: setting.columns.map(c => c.label),
    rows,
    failureFreeH: { ours: noneT == null ? null : noneT / 3600, paper: setting.failureFreeIterations.value * setting.iterationS.checkfree.value / 3600 },
    ordering,
    iterationsPerStep: paper.iterationsPerStep,
    profile: paper.profile,
    conversions: scenarios.map(s => `${s.spec.name}: ${s.conversion.formula}`)
  }
}

/** The longest run among the seeds that did not reach the target (0 when none ran). */
function lowerBound (c: ReproductionCell): number {
  return c.lowerBoundH.reduce<number>((a, h) => Math.max(a, h ?? 0), 0)
}

function fmtCell (c: ReproductionCell): string {
  if (c.hours.length === 0) return 'not run'
  if (c.stats == null) return `>${lowerBound(c).toFixed(0)} (0/${c.hours.length})`
  const s = c.stats
  const missed = c.hours.length - s.n
  return `${s.median.toFixed(1)} [${s.min.toFixed(1)}-${s.max.toFixed(1)}]${missed > 0 ? ` (${s.n}/${c.hours.length})` : ''}`
}

/** The report as Markdown. */
export function formatReproduction (r: Reproduction): string {
  const head = `| strategy | iteration s (${r.columns.join(' / ')}) | ${r.columns.join(' | ')} |`
  const rule = `|---|---|${r.columns.map(() => '---').join('|')}|`
  const times = (xs: Array<number | null>): string => xs.map(x => x == null || !Number.isFinite(x) ? '-' : x.toFixed(2)).join(' / ')
  const paperRows = r.rows.map(row => `| ${row.label} | ${times(row.cells.map(c => c.paperIterationS))} | ${row.cells.map(c => c.paperH == null ? '-' : c.paperH.toFixed(2)).join(' | ')} |`)
  const ourRows = r.rows.map(row => `| ${row.label} (\`${row.strategy}\`) | ${times(row.cells.map(c => c.iterationS))} | ${row.cells.map(fmtCell).join(' | ')} |`)
  const iterRows = r.rows.map(row => `| ${row.label} | ${row.cells.map(c => `${c.paperIterations == null ? '-' : Math.round(c.paperIterations).toLocaleString('en-US')} / ${c.iterations == null ? '-' : Math.round(c.iterations).toLocaleString('en-US')}`).join(' | ')} |`)
  const orderLines = r.ordering.map(o => `- ${o.column}: ours ${o.ours.map(s => PAPER_ROW_LABELS[s]).join(' < ')}${o.paper == null ? '' : `; paper ${o.paper.map(s => PAPER_ROW_LABELS[s]).join(' < ')}; ${o.same === true ? 'same order' : 'different order'}`}`)
  return [
    `# Reproducing ${r.title}`,
    '',
    `Hours of wall-clock to the target. Paper: Table 2. spotpipe: median [min-max] over the seeds; \`>h (0/n)\` when no seed reached the target in the hours shown; \`(k/n)\` when only k did. Failure-free: paper ${r.failureFreeH.paper.toFixed(1)} h, spotpipe ${r.failureFreeH.ours == null ? '-' : r.failureFreeH.ours.toFixed(1)} h.`,
    '',
    '## Paper',
    '',
    head, rule, ...paperRows,
    '',
    '## spotpipe (model mode, the paper\'s cost profile, a proxy model trained for real)',
    '',
    head, rule, ...ourRows,
    '',
    '## Iterations to target, paper / spotpipe (in paper iterations)',
    '',
    `| strategy | ${r.columns.join(' | ')} |`, `|---|${r.columns.map(() => '---').join('|')}|`, ...iterRows,
    '',
    '## Ordering, fastest first',
    '',
    ...orderLines,
    '',
    '## Cost profile (every number\'s source)',
    '',
    `One proxy step stands for ${r.iterationsPerStep.toPrecision(4)} paper iterations.`,
    '',
    '| parameter | value | source |', '|---|---|---|',
    ...r.profile.map(p => `| ${p.name} | ${p.value} | ${p.source} |`),
    '',
    '## Failure rates',
    '',
    ...r.conversions.map(c => `- ${c}`),
    ''
  ].join('\n')
}

/** The hours-against-rate plot: one line per strategy, ours solid with faint seeds, the paper's as its own series. */
export function reproductionSeries (r: Reproduction): Series[] {
  const rates = r.columns.map(c => Number.parseFloat(c))
  const out: Series[] = []
  for (const row of r.rows) {
    const points: Array<[number, number]> = []
    row.cells.forEach((c, j) => { if (c.stats != null) points.push([rates[j], c.stats.median]) })
    const seeds = row.cells[0]?.hours.length ?? 0
    const runs = Array.from({ length: seeds }, (_, k) => ({
      label: `seed${k + 1}`,
      points: row.cells.flatMap((c, j): Array<[number, number]> => c.hours[k] == null ? [] : [[rates[j], c.hours[k] as number]])
    }))
    out.push({ name: row.strategy, points, runs })
  }
  for (const row of r.rows) {
    const points = row.cells.flatMap((c, j): Array<[number, number]> => c.paperH == null ? [] : [[rates[j], c.paperH]])
    if (points.length > 0) out.push({ name: `paper: ${row.label}`, points })
  }
  return out
}

/** Writes reproduction.md/.json and the hours plot into the experiment's folder. */
export function writeReproduction (result: ExperimentResult): { path: string, text: string, reproduction: Reproduction, svg: string } {
  const r = buildReproduction(result)
  const text = formatReproduction(r)
  const path = join(result.out, 'reproduction.md')
  writeFileSync(path, text)
  writeFileSync(join(result.out, 'reproduction.json'), JSON.stringify(r, null, 1) + '\n')
  const series = reproductionSeries(r)
  const plot = { title: `${r.setting}: hours to target against the failure rate (paper and spotpipe)`, xLabel: 'failures per stage per hour (%)', yLabel: 'hours of wall-clock to the target' }
  const svg = join(result.out, 'hours.svg')
  const svgText = linePlot(series, plot)
  writeFileSync(svg, svgText)
  writeFileSync(join(result.out, 'hours.png'), renderSvg(svgText).png)
  return { path, text, reproduction: r, svg }
}

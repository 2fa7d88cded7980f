/**
 * A small self-contained SVG line plot: axes with ticks, a legend, an optional dashed target line,
 * one <polyline data-strategy="..."> per strategy, and optional faint per-seed lines (data-run, no
 * data-strategy), so a reader can count one strategy line each.
 */
import type { RunResult } from './model-mode.js'

export interface Series {
  /** Strategy name: the data-strategy attribute and the legend label. */
  name: string
  /** [x, y] points, x ascending. */
  points: Array<[number, number]>
  /** Faint background lines (e.g. the individual seeds). */
  runs?: Array<{ label: string, points: Array<[number, number]> }>
}

export interface PlotOptions {
  title: string
  xLabel: string
  yLabel: string
  /** A horizontal dashed line (the target loss). */
  hline?: { y: number, label: string }
  width?: number
  height?: number
  /** Divide x values by this for the axis (e.g. 3600 to show hours). @default 1 */
  xScale?: number
}

export const STRATEGY_COLOURS: Record<string, string> = {
  'checkfree-plus': '#d62728',
  checkfree: '#ff7f0e',
  checkpoint: '#1f77b4',
  'checkpoint-whole': '#17becf',
  redundant: '#2ca02c',
  'redundant-compute': '#9467bd',
  none: '#444444'
}
const FALLBACK_COLOURS = ['#8c564b', '#e377c2', '#7f7f7f', '#bcbd22']

/** The colour of the i-th series: its strategy's own, or a fallback by position for other names. */
export function seriesColour (name: string, index: number): string {
  return STRATEGY_COLOURS[name] ?? FALLBACK_COLOURS[index % FALLBACK_COLOURS.length]
}

function esc (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** About `count` round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]. */
export function niceTicks (lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo]
  const raw = (hi - lo) / Math.max(1, count)
  const mag = Math.pow(10, Math.floor(Math.log10(raw)))
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw) as number
  const ticks: number[] = []
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)))
  return ticks
}

function fmtTick (v: number): string {
  if (v === 0) return '0'
  const a = Math.abs(v)
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1)
  return String(Number(v.toPrecision(4)))
}

export interface PlotLayout {
  W: number
  H: number
  m: { left: number, right: number, top: number, bottom: number }
  pw: number
  ph: number
  xs: number
  xt: number[]
  yt: number[]
  y0: number
  y1: number
  /** Data x (unscaled) and y to pixels. */
  X: (x: number) => number
  Y: (y: number) => number
  /** The i-th legend entry: its swatch runs from x0 to x1 at height y, its label starts at textX. */
  legend: (i: number) => { x0: number, x1: number, y: number, textX: number }
}

/**
 * Axes, scales and the legend's place: what linePlot draws with (and what a test of the rendered
 * picture needs to know where to look). The y range leaves out the first 5% of the time
 * axis (the steep start of training would flatten everything else); lines are clipped to the frame.
 */
export function plotLayout (series: readonly Series[], opts: PlotOptions): PlotLayout {
  const W = opts.width ?? 860
  const H = opts.height ?? 520
  const m = { left: 70, right: 190, top: 48, bottom: 55 }
  const pw = W - m.left - m.right
  const ph = H - m.top - m.bottom
  const xs = opts.xScale ?? 1
  const all = series.flatMap(s => [...s.points, ...(s.runs ?? []).flatMap(r => r.points)])
  let x0 = 0
  let x1 = Math.max(1e-9, ...all.map(p => p[0] / xs))
  const late = all.filter(p => p[0] / xs >= 0.05 * x1 && Number.isFinite(p[1])).map(p => p[1])
  const ys = late.length > 0 ? late : all.map(p => p[1]).filter(Number.isFinite)
  if (opts.hline != null) ys.push(opts.hline.y)
  let y0 = ys.length > 0 ? Math.min(...ys) : 0
  let y1 = ys.length > 0 ? Math.max(...ys) : 1
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5 }
  const padY = (y1 - y0) * 0.04
  y0 -= padY; y1 += padY
  const xt = niceTicks(x0, x1)
  const yt = niceTicks(y0, y1, 8).filter(v => v >= y0 && v <= y1)
  x0 = Math.min(x0, xt[0]); x1 = Math.max(x1, xt[xt.length - 1])
  const X = (x: number): number => m.left + (x / xs - x0) / (x1 - x0) * pw
  const Y = (y: number): number => m.top + (1 - (y - y0) / (y1 - y0)) * ph
  const legend = (i: number): { x0: number, x1: number, y: number, textX: number } =>
    ({ x0: m.left + pw + 15, x1: m.left + pw + 40, y: m.top + 10 + i * 20, textX: m.left + pw + 46 })
  return { W, H, m, pw, ph, xs, xt, yt, y0, y1, X, Y, legend }
}

/** The SVG text of a line plot. */
export function linePlot (series: readonly Series[], opts: PlotOptions): string {
  const { W, H, m, pw, ph, xs, xt, yt, X, Y, legend } = plotLayout(series, opts)
  // Grid, frame and target line are axis-parallel 1-px strokes: crispEdges puts each on one whole
  // pixel row or column instead of smearing it grey over two (the data lines stay antialiased).
  const crisp = 'shape-rendering="crispEdges"'
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`)
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`)
  out.push(`<defs><clipPath id="frame"><rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}"/></clipPath></defs>`)
  out.push(`<text x="${m.left + pw / 2}" y="22" text-anchor="middle" font-size="15">${esc(opts.title)}</text>`)
  // Grid and ticks.
  for (const v of xt) {
    const x = X(v * xs).toFixed(1)
    out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}" stroke="#eee" ${crisp}/>`)
    out.push(`<text x="${x}" y="${m.top + ph + 18}" text-anchor="middle">${fmtTick(v)}</text>`)
  }
  for (const v of yt) {
    const y = Y(v).toFixed(1)
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#eee" ${crisp}/>`)
    out.push(`<text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmtTick(v)}</text>`)
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333" ${crisp}/>`)
  out.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(opts.xLabel)}</text>`)
  out.push(`<text x="18" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 18 ${m.top + ph / 2})">${esc(opts.yLabel)}</text>`)
  if (opts.hline != null) {
    const y = Y(opts.hline.y).toFixed(1)
    out.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#888" stroke-dasharray="6 4" ${crisp}/>`)
    out.push(`<text x="${m.left + pw - 4}" y="${Number(y) - 5}" text-anchor="end" fill="#666">${esc(opts.hline.label)}</text>`)
  }
  const pts = (p: Array<[number, number]>): string => p.filter(q => Number.isFinite(q[1])).map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')
  series.forEach((s, i) => {
    const colour = seriesColour(s.name, i)
    for (const r of s.runs ?? []) out.push(`<polyline data-run="${esc(s.name)}:${esc(r.label)}" points="${pts(r.points)}" fill="none" stroke="${colour}" stroke-opacity="0.25" stroke-width="1" clip-path="url(#frame)"/>`)
  })
  series.forEach((s, i) => {
    const colour = seriesColour(s.name, i)
    out.push(`<polyline data-strategy="${esc(s.name)}" points="${pts(s.points)}" fill="none" stroke="${colour}" stroke-width="2" clip-path="url(#frame)"/>`)
    const l = legend(i)
    out.push(`<line x1="${l.x0}" y1="${l.y}" x2="${l.x1}" y2="${l.y}" stroke="${colour}" stroke-width="2"/>`)
    out.push(`<text x="${l.textX}" y="${l.y}" dominant-baseline="middle">${esc(s.name)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/** Linear interpolation of y at x over ascending points (null outside their range). */
function interp (points: Array<[number, number]>, x: number): number | null {
  if (points.length === 0 || x < points[0][0] || x > points[points.length - 1][0]) return null
  let lo = 0
  let hi = points.length - 1
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1
    if (points[mid][0] <= x) lo = mid
    else hi = mid
  }
  const [xa, ya] = points[lo]
  const [xb, yb] = points[hi]
  return xb === xa ? ya : ya + (yb - ya) * (x - xa) / (xb - xa)
}

/**
 * One line per strategy: validation loss against wall-clock. Several seeds are averaged on a common
 * time grid (over the span all seeds cover) and also drawn faintly one by one.
 */
export function validationSeries (runs: readonly RunResult[], gridPoints = 200): Series[] {
  const by = new Map<string, RunResult[]>()
  for (const r of runs) by.set(r.strategy, [...(by.get(r.strategy) ?? []), r])
  const out: Series[] = []
  for (const [name, list] of by) {
    const curves = list.map(r => r.evals.map(e => [e.wallS, e.valLoss] as [number, number]))
    if (curves.length === 1) { out.push({ name, points: curves[0] }); continue }
    const end = Math.min(...curves.map(c => c[c.length - 1]?.[0] ?? 0))
    const points: Array<[number, number]> = []
    for (let i = 0; i <= gridPoints; i++) {
      const x = end * i / gridPoints
      const ys = curves.map(c => interp(c, x)).filter((y): y is number => y != null)
      if (ys.length === curves.length) points.push([x, ys.reduce((a, b) => a + b, 0) / ys.length])
    }
    out.push({ name, points, runs: list.map((r, i) => ({ label: `seed${r.seed}`, points: curves[i] })) })
  }
  return out
}

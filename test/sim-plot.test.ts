/**
 * The PNG plot is resvg's picture of the SVG: sampled along each strategy's line (placed by the same
 * plotLayout the SVG is drawn with) its pixels have that strategy's colour, the frame is drawn, and
 * the legend has its swatches and names. The sampler is also shown to fail on a blank picture and on
 * a plot whose colours are swapped, so a pass means something.
 */
import { describe, expect, it } from 'vitest'
import { PlotRenderError } from '../sim/errors.js'
import { linePlotPng, renderSvg, type RenderedSvg } from '../sim/png.js'
import { STRATEGIES } from '../sim/strategies.js'
import { linePlot, plotLayout, seriesColour, type PlotLayout, type PlotOptions, type Series } from '../sim/svg.js'

type RGB = [number, number, number]

function rgb (hex: string): RGB {
  const n = parseInt(hex.slice(1), 16)
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255]
}

function pixel (img: RenderedSvg, x: number, y: number): RGB {
  const i = (Math.floor(y) * img.width + Math.floor(x)) * 4
  return [img.pixels[i], img.pixels[i + 1], img.pixels[i + 2]]
}

/** Largest difference over the three channels. */
function distance (a: RGB, b: RGB): number {
  return Math.max(Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1]), Math.abs(a[2] - b[2]))
}

/** Pixels in a box darker than mid-grey: glyphs of text, which is drawn black. */
function inked (img: RenderedSvg, x0: number, y0: number, x1: number, y1: number): number {
  let n = 0
  for (let y = Math.max(0, Math.floor(y0)); y < Math.min(img.height, y1); y++) {
    for (let x = Math.max(0, Math.floor(x0)); x < Math.min(img.width, x1); x++) if (Math.max(...pixel(img, x, y)) < 110) n++
  }
  return n
}

// Colour tolerance for a sample on a 2-px antialiased line (its centre pixel is nearly covered).
const LINE_TOLERANCE = 40

interface Sample { series: string, x: number, y: number, got: RGB, want: RGB }

/**
 * Points a quarter, half and three quarters along every segment of every strategy line that fall
 * inside the frame, with the colour the picture has there and the colour the line should have.
 */
function lineSamples (img: RenderedSvg, layout: PlotLayout, series: readonly Series[]): Sample[] {
  const { m, pw, ph, X, Y } = layout
  const out: Sample[] = []
  series.forEach((s, i) => {
    const want = rgb(seriesColour(s.name, i))
    for (let k = 1; k < s.points.length; k++) {
      const [xa, ya] = s.points[k - 1]
      const [xb, yb] = s.points[k]
      for (const f of [0.25, 0.5, 0.75]) {
        const x = X(xa + (xb - xa) * f)
        const y = Y(ya + (yb - ya) * f)
        if (x < m.left + 3 || x > m.left + pw - 3 || y < m.top + 3 || y > m.top + ph - 3) continue
        out.push({ series: s.name, x, y, got: pixel(img, x, y), want })
      }
    }
  })
  return out
}

const misses = (samples: Sample[]): Sample[] => samples.filter(s => distance(s.got, s.want) > LINE_TOLERANCE)

/** One line per strategy, wavy and sloping down, none crossing another; faint seed lines under one. */
function knownSeries (): Series[] {
  return STRATEGIES.map((name, k) => {
    const points: Array<[number, number]> = []
    for (let t = 0; t <= 400; t += 10) points.push([t, 2 + 0.45 * k + 1.2 * (1 - t / 400) + 0.1 * Math.sin(t / 30)])
    const runs = name === 'checkfree'
      ? [1, 2].map(seed => ({ label: `seed${seed}`, points: points.map(([x, y]) => [x, y + 0.08 * seed] as [number, number]) }))
      : undefined
    return { name, points, runs }
  })
}

const OPTS: PlotOptions = { title: 'known lines', xLabel: 'wall-clock (seconds)', yLabel: 'validation loss', hline: { y: 3, label: 'target 3.000' } }

describe('PNG plot (resvg render of the SVG)', () => {
  const series = knownSeries()
  const layout = plotLayout(series, OPTS)
  const img = renderSvg(linePlot(series, OPTS))

  it('is a PNG of the SVG\'s size', () => {
    const png = linePlotPng(series, OPTS)
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
    expect(png.toString('ascii', 12, 16)).toBe('IHDR')
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([layout.W, layout.H])
    expect([img.width, img.height]).toEqual([layout.W, layout.H])
    expect(img.pixels.length).toBe(layout.W * layout.H * 4)
  })

  it('every strategy\'s line has its colour where the layout puts it', () => {
    const samples = lineSamples(img, layout, series)
    for (const s of series) expect(samples.filter(p => p.series === s.name).length).toBeGreaterThan(60)
    expect(misses(samples)).toEqual([])
  })

  it('the sampler fails on a blank picture and on swapped colours', () => {
    const blank: RenderedSvg = { ...img, pixels: Buffer.alloc(img.pixels.length, 255) }
    const samples = lineSamples(blank, layout, series)
    expect(misses(samples).length).toBe(samples.length)
    // The first two strategies trade names (so colours) but keep their points.
    const swapped = series.map((s, i) => i < 2 ? { ...s, name: series[1 - i].name } : s)
    const wrong = misses(lineSamples(renderSvg(linePlot(swapped, OPTS)), layout, series))
    expect(new Set(wrong.map(s => s.series))).toEqual(new Set([series[0].name, series[1].name]))
  })

  it('draws the frame as dark 1-px axes', () => {
    const { m, pw, ph } = layout
    const ink = rgb('#333333')
    const edge = (points: Array<[number, number]>): number =>
      points.filter(([x, y]) => distance(pixel(img, x, y), ink) <= 20).length / points.length
    const along = (from: number, to: number): number[] => Array.from({ length: Math.floor((to - from) / 10) }, (_, k) => from + 5 + k * 10)
    // A line may cover the axis where it meets the frame, so most (not all) samples must be axis ink.
    expect(edge(along(m.top, m.top + ph).map(y => [m.left, y]))).toBeGreaterThan(0.9)
    expect(edge(along(m.top, m.top + ph).map(y => [m.left + pw, y]))).toBeGreaterThan(0.9)
    expect(edge(along(m.left, m.left + pw).map(x => [x, m.top]))).toBeGreaterThan(0.9)
    expect(edge(along(m.left, m.left + pw).map(x => [x, m.top + ph]))).toBeGreaterThan(0.9)
    // Just outside the frame is background.
    expect(pixel(img, m.left - 3, m.top + ph / 2)).toEqual([255, 255, 255])
  })

  it('renders the text: tick labels, title, axis labels', () => {
    const { W, H, m, pw, ph, xs, xt, yt, X, Y } = layout
    for (const v of xt) expect(inked(img, X(v * xs) - 15, m.top + ph + 6, X(v * xs) + 15, m.top + ph + 24)).toBeGreaterThan(3)
    for (const v of yt) expect(inked(img, m.left - 45, Y(v) - 7, m.left - 6, Y(v) + 7)).toBeGreaterThan(3)
    expect(inked(img, m.left + pw / 2 - 60, 8, m.left + pw / 2 + 60, 28)).toBeGreaterThan(20)
    expect(inked(img, m.left + pw / 2 - 80, H - 26, m.left + pw / 2 + 80, H - 6)).toBeGreaterThan(20)
    expect(inked(img, 8, m.top + ph / 2 - 60, 26, m.top + ph / 2 + 60)).toBeGreaterThan(20)
    // Text is where the SVG puts it, not everywhere: the right margin below the legend is empty.
    expect(inked(img, m.left + pw + 10, m.top + 10 + series.length * 20 + 10, W, m.top + ph)).toBe(0)
  })

  it('has a legend swatch in each strategy\'s colour, with its name beside it', () => {
    series.forEach((s, i) => {
      const l = layout.legend(i)
      const want = rgb(seriesColour(s.name, i))
      // The 2-px swatch spans rows y-1 and y.
      for (let x = l.x0 + 2; x < l.x1 - 2; x += 3) {
        expect(distance(pixel(img, x, l.y - 1), want)).toBeLessThanOrEqual(8)
        expect(distance(pixel(img, x, l.y), want)).toBeLessThanOrEqual(8)
      }
      expect(inked(img, l.textX, l.y - 8, l.textX + 90, l.y + 8)).toBeGreaterThan(10)
    })
  })

  it('reports SVG that resvg cannot read as a typed error', () => {
    let caught: unknown
    try { renderSvg('<svg xmlns="http://www.w3.org/2000/svg"') } catch (err) { caught = err }
    expect(caught).toBeInstanceOf(PlotRenderError)
    expect((caught as PlotRenderError).code).toBe('ERR_PLOT_RENDER')
  })
})

/**
 * The validation-loss plot as a PNG: resvg's rendering of the very SVG text that svg.ts writes, so
 * the two files cannot show different pictures. Nothing here draws; the SVG is the one source.
 *
 * Text needs a font. resvg reads the system's fonts (on Debian /usr/share/fonts; CI installs
 * fonts-dejavu-core) and takes DejaVu Sans for the SVG's sans-serif when it is there, any other
 * installed face otherwise. With no font at all resvg would quietly leave every label out, so the
 * first render checks that text comes out and throws PlotFontError when it does not.
 */
import { Resvg, type ResvgRenderOptions } from '@resvg/resvg-js'
import { PlotFontError, PlotRenderError } from './errors.js'
import { linePlot, type PlotOptions, type Series } from './svg.js'

/** The face the plot's sans-serif text is set in when installed (Debian: fonts-dejavu-core). */
export const PLOT_FONT_FAMILY = 'DejaVu Sans'

const RENDER_OPTIONS: ResvgRenderOptions = {
  font: { loadSystemFonts: true, sansSerifFamily: PLOT_FONT_FAMILY, defaultFontFamily: PLOT_FONT_FAMILY },
  logLevel: 'error'
}

/** A rendered SVG: the PNG file's bytes, and the same picture as RGBA pixels, row by row. */
export interface RenderedSvg {
  png: Buffer
  pixels: Buffer
  width: number
  height: number
}

function render (svg: string): RenderedSvg {
  try {
    const image = new Resvg(svg, RENDER_OPTIONS).render()
    return { png: image.asPng(), pixels: image.pixels, width: image.width, height: image.height }
  } catch (err) {
    throw new PlotRenderError(`resvg could not render the plot: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

let fontChecked = false

/**
 * Throws PlotFontError unless sans-serif text renders (a word on a transparent canvas leaves some
 * pixel non-transparent). Checked once per process; experiments call it before their runs so a
 * missing font is reported before hours of work rather than after.
 */
export function assertPlotFont (): void {
  if (fontChecked) return
  const probe = '<svg xmlns="http://www.w3.org/2000/svg" width="48" height="20"><text x="2" y="15" font-family="sans-serif" font-size="14">Ag1</text></svg>'
  const { pixels } = render(probe)
  let inked = false
  for (let i = 3; i < pixels.length && !inked; i += 4) inked = pixels[i] > 0
  if (!inked) {
    throw new PlotFontError(`no font found to draw the plot's text (wanted ${PLOT_FONT_FAMILY} or any system font): on Debian, apt-get install fonts-dejavu-core`)
  }
  fontChecked = true
}

/** Renders SVG text at its own size (its width and height attributes), once a font is known to work. */
export function renderSvg (svg: string): RenderedSvg {
  assertPlotFont()
  return render(svg)
}

/** The plot of svg.ts's linePlot, as PNG bytes (experiments render the SVG string they write instead). */
export function linePlotPng (series: readonly Series[], opts: PlotOptions): Buffer {
  return renderSvg(linePlot(series, opts)).png
}

/**
 * The validation-loss plot as a PNG, without dependencies: the same layout as svg.ts, drawn into an
 * RGB raster (2-px lines, a 3x5 bitmap font scaled x2, upper-case text) and encoded with node:zlib.
 */
import { deflateSync } from 'node:zlib'
import { plotLayout, STRATEGY_COLOURS, type PlotOptions, type Series } from './svg.js'

/** 3x5 glyphs, rows top to bottom, 3 bits each (4 = left pixel). Unknown characters are blank. */
const FONT: Record<string, number[]> = {
  0: [7, 5, 5, 5, 7], 1: [2, 6, 2, 2, 7], 2: [7, 1, 7, 4, 7], 3: [7, 1, 7, 1, 7], 4: [5, 5, 7, 1, 1],
  5: [7, 4, 7, 1, 7], 6: [7, 4, 7, 5, 7], 7: [7, 1, 1, 2, 2], 8: [7, 5, 7, 5, 7], 9: [7, 5, 7, 1, 7],
  A: [2, 5, 7, 5, 5], B: [6, 5, 6, 5, 6], C: [3, 4, 4, 4, 3], D: [6, 5, 5, 5, 6], E: [7, 4, 6, 4, 7],
  F: [7, 4, 6, 4, 4], G: [3, 4, 5, 5, 3], H: [5, 5, 7, 5, 5], I: [7, 2, 2, 2, 7], J: [1, 1, 1, 5, 2],
  K: [5, 5, 6, 5, 5], L: [4, 4, 4, 4, 7], M: [5, 7, 7, 5, 5], N: [6, 5, 5, 5, 5], O: [2, 5, 5, 5, 2],
  P: [6, 5, 6, 4, 4], Q: [2, 5, 5, 6, 3], R: [6, 5, 6, 5, 5], S: [3, 4, 2, 1, 6], T: [7, 2, 2, 2, 2],
  U: [5, 5, 5, 5, 7], V: [5, 5, 5, 5, 2], W: [5, 5, 7, 7, 5], X: [5, 5, 2, 5, 5], Y: [5, 5, 2, 2, 2],
  Z: [7, 1, 2, 4, 7], '.': [0, 0, 0, 0, 2], '-': [0, 0, 7, 0, 0], '+': [0, 2, 7, 2, 0], '%': [5, 1, 2, 4, 5],
  '/': [1, 1, 2, 4, 4], ':': [0, 2, 0, 2, 0], '(': [2, 4, 4, 4, 2], ')': [2, 1, 1, 1, 2], '=': [0, 7, 0, 7, 0],
  ',': [0, 0, 0, 2, 4], _: [0, 0, 0, 0, 7]
}
const SCALE = 2
const GLYPH_W = 4 * SCALE // 3 px + 1 px spacing

type RGB = [number, number, number]

function hex (c: string): RGB {
  const n = parseInt(c.slice(1), 16)
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255]
}

class Raster {
  readonly data: Uint8Array
  constructor (readonly w: number, readonly h: number) {
    this.data = new Uint8Array(w * h * 3).fill(255)
  }

  set (x: number, y: number, c: RGB, alpha = 1): void {
    x = Math.round(x); y = Math.round(y)
    if (x < 0 || y < 0 || x >= this.w || y >= this.h) return
    const i = (y * this.w + x) * 3
    for (let k = 0; k < 3; k++) this.data[i + k] = Math.round(this.data[i + k] * (1 - alpha) + c[k] * alpha)
  }

  /** A line of the given width (square pen); `dash` = [on, off] in pixels; `clip` keeps it inside a box. */
  line (x0: number, y0: number, x1: number, y1: number, c: RGB, width = 1, alpha = 1, dash?: [number, number], clip?: { x0: number, y0: number, x1: number, y1: number }): void {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))))
    for (let i = 0; i <= n; i++) {
      if (dash != null && (i % (dash[0] + dash[1])) >= dash[0]) continue
      const x = x0 + (x1 - x0) * i / n
      const y = y0 + (y1 - y0) * i / n
      if (clip != null && (x < clip.x0 || x > clip.x1 || y < clip.y0 || y > clip.y1)) continue
      for (let dx = 0; dx < width; dx++) for (let dy = 0; dy < width; dy++) this.set(x + dx - (width >> 1), y + dy - (width >> 1), c, alpha)
    }
  }

  text (s: string, x: number, y: number, c: RGB, anchor: 'start' | 'middle' | 'end' = 'start'): void {
    const chars = s.toUpperCase().split('')
    const width = chars.length * GLYPH_W
    let cx = anchor === 'start' ? x : anchor === 'middle' ? x - width / 2 : x - width
    const top = y - 5 * SCALE / 2
    for (const ch of chars) {
      const g = FONT[ch]
      if (g != null) {
        for (let r = 0; r < 5; r++) {
          for (let b = 0; b < 3; b++) {
            if ((g[r] >> (2 - b)) & 1) for (let dx = 0; dx < SCALE; dx++) for (let dy = 0; dy < SCALE; dy++) this.set(cx + b * SCALE + dx, top + r * SCALE + dy, c)
          }
        }
      }
      cx += GLYPH_W
    }
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

function crc32 (bytes: Uint8Array): number {
  let c = 0xffffffff
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 255] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function chunk (type: string, body: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + body.length)
  out.writeUInt32BE(body.length, 0)
  out.write(type, 4, 'ascii')
  out.set(body, 8)
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length)
  return out
}

/** An 8-bit RGB PNG of a raster. */
export function encodePng (w: number, h: number, rgb: Uint8Array): Buffer {
  const raw = Buffer.alloc(h * (1 + w * 3))
  for (let y = 0; y < h; y++) {
    raw[y * (1 + w * 3)] = 0 // filter: none
    raw.set(rgb.subarray(y * w * 3, (y + 1) * w * 3), y * (1 + w * 3) + 1)
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(w, 0)
  ihdr.writeUInt32BE(h, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // colour type: RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))])
}

/** The plot of svg.ts's linePlot, as PNG bytes. */
export function linePlotPng (series: readonly Series[], opts: PlotOptions): Buffer {
  const { W, H, m, pw, ph, xs, xt, yt, X, Y } = plotLayout(series, opts)
  const r = new Raster(W, H)
  const grey: RGB = [238, 238, 238]
  const ink: RGB = [51, 51, 51]
  for (const v of xt) {
    r.line(X(v * xs), m.top, X(v * xs), m.top + ph, grey)
    r.text(String(Number(v.toPrecision(4))), X(v * xs), m.top + ph + 16, ink, 'middle')
  }
  for (const v of yt) {
    r.line(m.left, Y(v), m.left + pw, Y(v), grey)
    r.text(String(Number(v.toPrecision(4))), m.left - 8, Y(v), ink, 'end')
  }
  r.line(m.left, m.top, m.left + pw, m.top, ink); r.line(m.left, m.top + ph, m.left + pw, m.top + ph, ink)
  r.line(m.left, m.top, m.left, m.top + ph, ink); r.line(m.left + pw, m.top, m.left + pw, m.top + ph, ink)
  r.text(opts.title, m.left + pw / 2, 14, ink, 'middle')
  r.text(opts.xLabel, m.left + pw / 2, H - 14, ink, 'middle')
  r.text(opts.yLabel, 8, m.top - 12, ink)
  if (opts.hline != null) {
    r.line(m.left, Y(opts.hline.y), m.left + pw, Y(opts.hline.y), [136, 136, 136], 1, 1, [6, 4])
    r.text(opts.hline.label, m.left + pw - 4, Y(opts.hline.y) - 9, [102, 102, 102], 'end')
  }
  const colourOf = (name: string): RGB => hex(STRATEGY_COLOURS[name] ?? '#9467bd')
  const frame = { x0: m.left, y0: m.top, x1: m.left + pw, y1: m.top + ph }
  const draw = (pts: Array<[number, number]>, c: RGB, width: number, alpha: number): void => {
    const ok = pts.filter(p => Number.isFinite(p[1]))
    for (let i = 1; i < ok.length; i++) r.line(X(ok[i - 1][0]), Y(ok[i - 1][1]), X(ok[i][0]), Y(ok[i][1]), c, width, alpha, undefined, frame)
  }
  for (const s of series) for (const run of s.runs ?? []) draw(run.points, colourOf(s.name), 1, 0.25)
  series.forEach((s, i) => {
    draw(s.points, colourOf(s.name), 2, 1)
    const ly = m.top + 10 + i * 20
    r.line(m.left + pw + 15, ly, m.left + pw + 40, ly, colourOf(s.name), 2)
    r.text(s.name, m.left + pw + 46, ly, ink)
  })
  return encodePng(W, H, r.data)
}

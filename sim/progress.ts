/**
 * A terminal progress bar on stderr. On a TTY it redraws one line at most every 100 ms; otherwise
 * (logs, CI, tests) it prints a plain line at each 10% step or at most every 30 s.
 */
export interface ProgressOptions {
  /** @default process.stderr */
  stream?: NodeJS.WriteStream | { write: (s: string) => boolean, isTTY?: boolean, columns?: number }
  /** Print nothing. @default false */
  quiet?: boolean
  /** Force the TTY or the line mode. @default stream.isTTY */
  tty?: boolean
}

function fmtEta (s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--'
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
  if (s >= 60) return `${Math.floor(s / 60)}m${String(Math.floor(s) % 60).padStart(2, '0')}s`
  return `${Math.round(s)}s`
}

export class ProgressBar {
  private readonly stream: NonNullable<ProgressOptions['stream']>
  private readonly tty: boolean
  private readonly quiet: boolean
  private readonly t0 = performance.now()
  private lastDraw = 0
  private lastDecile = -1
  private lastLine = 0
  private value = 0
  private finished = false

  constructor (readonly label: string, readonly total: number, opts: ProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr
    this.tty = opts.tty ?? (this.stream.isTTY === true)
    this.quiet = opts.quiet ?? false
  }

  /** Sets the done amount (0..total) and an optional status text. */
  update (value: number, status = ''): void {
    if (this.quiet || this.finished) return
    this.value = Math.min(this.total, Math.max(0, value))
    const now = performance.now()
    const frac = this.total > 0 ? this.value / this.total : 1
    const elapsed = (now - this.t0) / 1000
    const eta = frac > 0 ? elapsed * (1 - frac) / frac : Infinity
    if (this.tty) {
      if (now - this.lastDraw < 100 && this.value < this.total) return
      this.lastDraw = now
      const cols = ('columns' in this.stream && typeof this.stream.columns === 'number') ? this.stream.columns : 100
      const head = `${this.label} `
      const tail = ` ${(frac * 100).toFixed(0).padStart(3)}% eta ${fmtEta(eta)} ${status}`
      const width = Math.max(10, Math.min(40, cols - head.length - tail.length - 3))
      const filled = Math.round(frac * width)
      const line = `${head}[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]${tail}`
      this.stream.write(`\r${line.slice(0, cols - 1).padEnd(cols - 1)}`)
    } else {
      const decile = Math.floor(frac * 10)
      if (decile <= this.lastDecile && now - this.lastLine < 30_000 && this.value < this.total) return
      this.lastDecile = Math.max(decile, this.lastDecile)
      this.lastLine = now
      this.stream.write(`${this.label} ${(frac * 100).toFixed(0)}% (${fmtEta(elapsed)} elapsed, eta ${fmtEta(eta)}) ${status}\n`)
    }
  }

  /** Completes the bar (a final newline on a TTY). */
  done (status = ''): void {
    if (this.quiet || this.finished) return
    this.update(this.total, status)
    this.finished = true
    if (this.tty) this.stream.write('\n')
  }
}

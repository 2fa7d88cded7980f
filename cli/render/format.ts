/**
 * Small text helpers for the observer views. Everything here counts code points as terminal
 * columns: the views only use characters one column wide (ASCII, `…`, the block elements).
 */

/** Number of terminal columns `s` takes (one per code point). */
export function textWidth (s: string): number {
  let n = 0
  for (const _ of s) n += 1
  return n
}

/** Cuts `s` to at most `width` columns, marking a cut with `…`. */
export function truncate (s: string, width: number): string {
  if (width <= 0) return ''
  const chars = Array.from(s)
  if (chars.length <= width) return s
  return chars.slice(0, width - 1).join('') + '…'
}

/** Pads (or cuts) `s` to exactly `width` columns. */
export function fit (s: string, width: number, align: 'left' | 'right' = 'left'): string {
  const t = truncate(s, width)
  const pad = ' '.repeat(width - textWidth(t))
  return align === 'left' ? t + pad : pad + t
}

/** `s` on one line (runs of white space folded to one space), at most 200 characters. */
export function oneLine (s: string): string {
  return s.replace(/\s+/g, ' ').trim().slice(0, 200)
}

/** The last characters of a peer id: enough to tell the peers of one cluster apart. */
export function shortId (peerId: string): string {
  return peerId === '' ? '-' : '…' + peerId.slice(-6)
}

/** 1234567 -> "1,234,567" (rounded to an integer). */
export function formatInt (n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',')
}

export function formatBytes (n: number): string {
  if (n < 1000) return `${n} B`
  const units = ['kB', 'MB', 'GB', 'TB']
  let v = n
  let i = -1
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1 }
  return `${v.toFixed(1)} ${units[i]}`
}

/** A duration in ms as "340 ms", "6.2 s" or "3m 05s". */
export function formatDuration (ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  const s = Math.round(ms / 1000)
  return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`
}

/** Heartbeat age: "0.4s", "12s", "3m". */
export function formatAge (ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`
  return `${Math.round(ms / 60_000)}m`
}

/** Wall-clock time of day, HH:MM:SS in local time. */
export function formatClock (at: number): string {
  const d = new Date(at)
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map(x => String(x).padStart(2, '0')).join(':')
}

/** A loss to 4 significant digits, or "-". */
export function formatLoss (loss: number | null | undefined): string {
  return loss == null || !Number.isFinite(loss) ? '-' : loss.toPrecision(4)
}

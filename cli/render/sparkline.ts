/** Unicode sparklines: one block element per value, scaled between the values' min and max. */

export const SPARK_CHARS = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'] as const

/**
 * The last `width` finite values of `values` as a sparkline (newest on the right). A flat series
 * draws at mid height; fewer values than `width` give a shorter line.
 */
export function sparkline (values: readonly number[], width: number): string {
  if (width <= 0) return ''
  const v = values.filter(Number.isFinite).slice(-width)
  if (v.length === 0) return ''
  const lo = Math.min(...v)
  const hi = Math.max(...v)
  const top = SPARK_CHARS.length - 1
  return v.map(x => SPARK_CHARS[hi === lo ? 3 : Math.round((x - lo) / (hi - lo) * top)]).join('')
}

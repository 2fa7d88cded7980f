/** The tensors of an all-reduce round as one flat vector, without copying them (round.ts). */
export class FlatView {
  private readonly arrays: readonly Float32Array[]
  /** offsets[i]: flat index of arrays[i][0]. */
  private readonly offsets: number[]
  readonly length: number

  constructor (arrays: readonly Float32Array[]) {
    this.arrays = arrays
    this.offsets = []
    let at = 0
    for (const a of arrays) { this.offsets.push(at); at += a.length }
    this.length = at
  }

  /** Calls `fn` for each array part of flat [start, end): the array, its element range [from, to), and the flat index of `from`. */
  each (start: number, end: number, fn: (a: Float32Array, from: number, to: number, at: number) => void): void {
    if (start >= end) return
    // the last array starting at or before `start` (empty arrays share their successor's offset)
    let lo = 0
    let hi = this.arrays.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.offsets[mid] <= start) lo = mid
      else hi = mid - 1
    }
    let pos = start
    for (let i = lo; pos < end && i < this.arrays.length; i++) {
      const a = this.arrays[i]
      const from = pos - this.offsets[i]
      const to = Math.min(a.length, end - this.offsets[i])
      if (to > from) {
        fn(a, from, to, pos)
        pos += to - from
      }
    }
  }

  /** The bytes of flat [start, end), as views on the arrays (for a frame's parts). */
  bytes (start: number, end: number): Uint8Array[] {
    const out: Uint8Array[] = []
    this.each(start, end, (a, from, to) => { out.push(new Uint8Array(a.buffer, a.byteOffset + from * 4, (to - from) * 4)) })
    return out
  }

  /** flat[start + i] += src[i] for i < count. */
  add (start: number, src: Float32Array, count: number): void {
    this.each(start, start + count, (a, from, to, at) => {
      for (let i = from, j = at - start; i < to; i++, j++) a[i] += src[j]
    })
  }

  /** flat[start + i] = src[i] for i < count (the bytes, unchanged). */
  set (start: number, src: Float32Array, count: number): void {
    this.each(start, start + count, (a, from, to, at) => { a.set(src.subarray(at - start, at - start + to - from), from) })
  }

  /** flat[i] /= n over [start, end). */
  divide (start: number, end: number, n: number): void {
    this.each(start, end, (a, from, to) => {
      for (let i = from; i < to; i++) a[i] = a[i] / n
    })
  }
}

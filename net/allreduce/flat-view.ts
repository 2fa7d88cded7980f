/**
 * Bytes of the staging buffer through which a piece's misaligned parts are added: about one
 * transport buffer (a noise message is at most 64 KiB), so it stays in the L1/L2 cache between
 * the copy and the add.
 */
const STAGE_BYTES = 64 * 1024

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

  /** flat[start + i] += src[i] for i < count (each sum rounded to float32 once, as a float32 add). */
  add (start: number, src: Float32Array, count: number): void {
    this.each(start, start + count, (a, from, to, at) => { addInto(a, from, to, src, at - start) })
  }

  /** flat[start + i] = src[i] for i < count (the bytes, unchanged). */
  set (start: number, src: Float32Array, count: number): void {
    this.each(start, start + count, (a, from, to, at) => { a.set(src.subarray(at - start, at - start + to - from), from) })
  }

  /**
   * flat[start + i] += (float32 i of `parts`, after skipping `skip` bytes) for i < count: a received
   * piece folded in straight from the transport's buffers. A part whose floats are 4-byte aligned
   * in memory is added through a Float32Array view on it (no copy); a misaligned one is copied into
   * a small staging buffer first, and a float split between two parts is stitched from its bytes.
   */
  addParts (start: number, parts: Iterable<Uint8Array>, skip: number, count: number): void {
    const stage = this.staging()
    let at = start
    let carry = 0
    for (const [buf, first] of afterSkip(parts, skip)) {
      let off = first
      if (carry > 0) {
        // the rest of a float begun in the previous part
        while (carry < 4 && off < buf.byteLength) stage.bytes[carry++] = buf[off++]
        if (carry < 4) continue
        this.add(at++, stage.floats, 1)
        carry = 0
      }
      while (buf.byteLength - off >= 4) {
        const addr = buf.byteOffset + off
        if ((addr & 3) === 0) {
          const floats = (buf.byteLength - off) >> 2
          this.add(at, new Float32Array(buf.buffer, addr, floats), floats)
          at += floats
          off += floats * 4
        } else {
          const floats = Math.min((buf.byteLength - off) >> 2, STAGE_BYTES / 4)
          stage.bytes.set(buf.subarray(off, off + floats * 4))
          this.add(at, stage.floats, floats)
          at += floats
          off += floats * 4
        }
      }
      while (off < buf.byteLength) stage.bytes[carry++] = buf[off++]
    }
    if (at !== start + count || carry !== 0) throw new RangeError(`addParts: ${(at - start) * 4 + carry} bytes of ${count * 4}`)
  }

  /** flat[start + i] = (float32 i of `parts`, after skipping `skip` bytes) for i < count: the bytes, unchanged, copied once. */
  setParts (start: number, parts: Iterable<Uint8Array>, skip: number, count: number): void {
    const dests = this.bytes(start, start + count)
    let d = 0
    let dOff = 0
    let copied = 0
    for (const [buf, first] of afterSkip(parts, skip)) {
      let off = first
      while (off < buf.byteLength && d < dests.length) {
        const dest = dests[d]
        const n = Math.min(buf.byteLength - off, dest.byteLength - dOff)
        dest.set(n === buf.byteLength ? buf : buf.subarray(off, off + n), dOff)
        off += n
        dOff += n
        copied += n
        if (dOff === dest.byteLength) { d++; dOff = 0 }
      }
    }
    if (copied !== count * 4) throw new RangeError(`setParts: ${copied} bytes of ${count * 4}`)
  }

  private stage: { bytes: Uint8Array, floats: Float32Array } | undefined
  private staging (): { bytes: Uint8Array, floats: Float32Array } {
    if (this.stage === undefined) {
      const floats = new Float32Array(STAGE_BYTES / 4)
      this.stage = { bytes: new Uint8Array(floats.buffer), floats }
    }
    return this.stage
  }

  /** flat[i] /= n over [start, end). */
  divide (start: number, end: number, n: number): void {
    this.each(start, end, (a, from, to) => {
      for (let i = from; i < to; i++) a[i] = a[i] / n
    })
  }
}

/**
 * a[i] += src[j + i - from] over [from, to), unrolled by 4 (measured ~20% less CPU than the plain
 * loop on Node 20; V8 does not vectorize either). The double-precision sum of two floats rounded
 * to float32 is the float32 sum, so the result is what a float32 add gives, bit for bit.
 */
function addInto (a: Float32Array, from: number, to: number, src: Float32Array, j: number): void {
  let i = from
  const end4 = to - ((to - from) & 3)
  for (; i < end4; i += 4, j += 4) {
    a[i] += src[j]
    a[i + 1] += src[j + 1]
    a[i + 2] += src[j + 2]
    a[i + 3] += src[j + 3]
  }
  for (; i < to; i++, j++) a[i] += src[j]
}

/** The buffers of `parts` with the first `skip` bytes left out: each with the offset its bytes start at. */
function * afterSkip (parts: Iterable<Uint8Array>, skip: number): Generator<[Uint8Array, number]> {
  for (const buf of parts) {
    if (skip >= buf.byteLength) { skip -= buf.byteLength; continue }
    yield [buf, skip]
    skip = 0
  }
}

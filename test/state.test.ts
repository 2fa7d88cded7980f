import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { stageLayout } from '../model/params.js'
import { Stage } from '../model/stage.js'
import { decodeStageState, encodeStageState, exportStageState, loadStageState, metaFromRecord, stateFromTensorSet, stateToTensorSet } from '../model/state.js'

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })

const train = resolveTrainConfig({ stages: 2 })
const small = resolveModelConfig({ dModel: 8, nHeads: 2, nBlocks: 2, seqLen: 4 })
const wide = resolveModelConfig({ dModel: 16, nHeads: 2, nBlocks: 2, seqLen: 4 })

describe('stage state serialization', () => {
  it('round-trips parameters, Adam moments and metadata bit-exactly', () => {
    const a = new Stage({ model: small, train, layout: stageLayout(small, 2, 1) })
    const b = new Stage({ model: small, train, layout: stageLayout(small, 2, 1), values: new Map() })
    try {
      // the iteration the state belongs to and the optimizer step count are two facts
      a.iteration = 41; a.lastGradNorm = 0.375; a.adam.step = 7; a.adam.lrScale = 1.1
      const bytes = encodeStageState(exportStageState(a))
      const back = decodeStageState(bytes)
      expect(back.meta).toEqual({ iteration: 41, adamStep: 7, lrScale: 1.1, gradNorm: 0.375 })
      loadStageState(b, back.tensors, back.meta)
      expect(b.iteration).toBe(41)
      expect(b.adam.step).toBe(7)
      expect(encodeStageState(exportStageState(b))).toEqual(bytes)
      // and both survive the weights protocol's meta tensor, the seeded weights' -1 included
      a.iteration = -1
      expect(stateFromTensorSet(stateToTensorSet(exportStageState(a))).meta).toEqual({ iteration: -1, adamStep: 7, lrScale: 1.1, gradNorm: 0.375 })
    } finally { a.dispose(); b.dispose() }
  })

  it('reads metadata written before the iteration was recorded only when told the iteration', () => {
    const old = { 'spotpipe.adam_step': '9', 'spotpipe.lr_scale': '1', 'spotpipe.weight_version': '9', 'spotpipe.grad_norm': '0.5' }
    expect(() => metaFromRecord(old)).toThrow(/lacks spotpipe\.iteration/)
    expect(metaFromRecord(old, { iteration: 30 })).toEqual({ iteration: 30, adamStep: 9, lrScale: 1, gradNorm: 0.5 })
    // a file that says its iteration is believed over the caller's guess
    expect(metaFromRecord({ ...old, 'spotpipe.iteration': '12' }, { iteration: 30 }).iteration).toBe(12)
    expect(() => metaFromRecord({ ...old, 'spotpipe.iteration': '-2' })).toThrow(/spotpipe\.iteration is not a valid count/)
    expect(() => metaFromRecord({ ...old, 'spotpipe.iteration': '1.5' })).toThrow(/spotpipe\.iteration/)
  })

  it('rejects truncated and corrupted bytes and a state of another shape, leaving the stage untouched', () => {
    const a = new Stage({ model: small, train, layout: stageLayout(small, 2, 0) })
    const w = new Stage({ model: wide, train, layout: stageLayout(wide, 2, 0) })
    try {
      const bytes = encodeStageState(exportStageState(a))
      expect(() => decodeStageState(bytes.subarray(0, bytes.length - 3))).toThrow(expect.objectContaining({ code: 'ERR_CORRUPT_STATE' }))
      const flipped = bytes.slice(); flipped[3] ^= 0x40
      expect(() => decodeStageState(flipped)).toThrow(expect.objectContaining({ code: 'ERR_CORRUPT_STATE' }))
      const before = encodeStageState(exportStageState(w))
      const st = decodeStageState(bytes)
      expect(() => loadStageState(w, st.tensors, st.meta)).toThrow(/embed\.tok: expected shape \[256,16\], got \[256,8\]/)
      expect(encodeStageState(exportStageState(w))).toEqual(before)
      const partial = new Map(st.tensors); partial.delete('embed.pos')
      expect(() => loadStageState(a, partial, st.meta)).toThrow(expect.objectContaining({ code: 'ERR_SHAPE_MISMATCH' }))
    } finally { a.dispose(); w.dispose() }
  })

  it('exports into an earlier snapshot\'s arrays when given them, with the bytes a fresh export has', () => {
    const a = new Stage({ model: small, train, layout: stageLayout(small, 2, 1) })
    const other = new Stage({ model: { ...small, initSeed: 99 }, train, layout: stageLayout(small, 2, 1) })
    try {
      const first = exportStageState(a)
      const arrays = new Map([...first.tensors].map(([n, t]) => [n, t.data]))
      // other weights and non-zero moments, then export over the first snapshot's arrays
      const moved = exportStageState(other)
      for (const [n, t] of moved.tensors) t.data.forEach((_, i, d) => { d[i] = n.startsWith('optim.') ? 0.5 + i : d[i] })
      loadStageState(a, moved.tensors, moved.meta)
      const fresh = encodeStageState(exportStageState(a))
      const reused = exportStageState(a, { reuse: first.tensors })
      expect(encodeStageState(reused)).toEqual(fresh)
      for (const [n, t] of reused.tensors) expect(t.data).toBe(arrays.get(n))
      // arrays of another size are not reused
      const wrongSize = new Map([['head.w', { dtype: 'F32' as const, shape: [3], data: new Float32Array(3) }]])
      expect(exportStageState(a, { reuse: wrongSize }).tensors.get('head.w')?.data.length).toBe(a.params.get('head.w')?.size)
    } finally { a.dispose(); other.dispose() }
  })

  it('rejects NaN weights on decode with a typed error naming the tensor', () => {
    const a = new Stage({ model: small, train, layout: stageLayout(small, 2, 1) })
    try {
      const st = exportStageState(a)
      const t = st.tensors.get('head.w')
      if (t == null) throw new Error('no head.w')
      t.data[5] = NaN
      expect(() => decodeStageState(encodeStageState(st))).toThrow(expect.objectContaining({ code: 'ERR_NON_FINITE', message: expect.stringContaining('head.w') }))
    } finally { a.dispose() }
  })
})

describe('stage lifetime', () => {
  it('building, stepping, loading and disposing stages leaves no tensors behind', async () => {
    const tf = await import('@tensorflow/tfjs')
    const before = tf.memory().numTensors
    for (let i = 0; i < 3; i++) {
      const a = new Stage({ model: small, train, layout: stageLayout(small, 2, 0) })
      const b = new Stage({ model: small, train, layout: stageLayout(small, 2, 0) })
      const st = exportStageState(a)
      loadStageState(b, st.tensors, st.meta)
      a.dispose(); b.dispose()
    }
    expect(tf.memory().numTensors).toBe(before)
  })
})

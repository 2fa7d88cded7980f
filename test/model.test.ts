import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { bmm, matmul } from '../model/ops.js'
import { stageLayout } from '../model/params.js'
import { Stage } from '../model/stage.js'
import { runMicrobatch } from '../model/trainer.js'
import { block, embed, headLoss } from '../model/transformer.js'
import { mulberry32 } from '../model/rng.js'

const model = resolveModelConfig({ dModel: 32, nHeads: 4, nBlocks: 4, seqLen: 16, initSeed: 7 })
const train = resolveTrainConfig({ stages: 4, microbatches: 2, microbatchSize: 3 }, model)

function tokens (seed: number, B: number, T: number): { inputs: tf.Tensor2D, targets: tf.Tensor2D } {
  const r = mulberry32(seed)
  const data = Int32Array.from({ length: B * (T + 1) }, () => Math.floor(r() * 256))
  const inp = new Int32Array(B * T)
  const tgt = new Int32Array(B * T)
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      inp[b * T + t] = data[b * (T + 1) + t]
      tgt[b * T + t] = data[b * (T + 1) + t + 1]
    }
  }
  return { inputs: tf.tensor2d(inp, [B, T], 'int32'), targets: tf.tensor2d(tgt, [B, T], 'int32') }
}

function makeStages (S: number, recompute = false): Stage[] {
  return Array.from({ length: S }, (_, s) => new Stage({ model, train, layout: stageLayout(model, S, s), recompute }))
}

/** max |a - b| / max |b|: the relative difference of two tensors as a whole. */
function relDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0
  let den = 0
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]))
    den = Math.max(den, Math.abs(b[i]))
  }
  return num / Math.max(den, 1e-30)
}

function gradsByName (stages: Stage[]): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  for (const s of stages) for (const [n, g] of s.gradients()) out.set(n, g.dataSync() as Float32Array)
  return out
}

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })

describe('custom-gradient matmuls', () => {
  it('match tf.matMul gradients (2-D and batched)', () => {
    tf.tidy(() => {
      const a = tf.randomNormal([5, 7], 0, 1, 'float32', 1)
      const b = tf.randomNormal([7, 3], 0, 1, 'float32', 2)
      const w = tf.randomNormal([5, 3], 0, 1, 'float32', 3)
      const ours = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(matmul(x as tf.Tensor2D, y as tf.Tensor2D), w)))([a, b])
      const ref = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D), w)))([a, b])
      for (let i = 0; i < 2; i++) expect(relDiff(ours[i].dataSync(), ref[i].dataSync())).toBeLessThan(1e-6)
      const a3 = tf.randomNormal([2, 4, 6], 0, 1, 'float32', 4)
      const b3 = tf.randomNormal([2, 6, 5], 0, 1, 'float32', 5)
      const w3 = tf.randomNormal([2, 4, 5], 0, 1, 'float32', 6)
      const o3 = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(bmm(x as tf.Tensor3D, y as tf.Tensor3D), w3)))([a3, b3])
      const r3 = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor3D, y as tf.Tensor3D), w3)))([a3, b3])
      for (let i = 0; i < 2; i++) expect(relDiff(o3[i].dataSync(), r3[i].dataSync())).toBeLessThan(1e-6)
    })
  })
})

describe('stages', () => {
  it('1 stage and 4 stages give the same loss and gradients on the same batch', () => {
    const one = makeStages(1)
    const four = makeStages(4)
    const { inputs, targets } = tokens(11, 3, 16)
    try {
      const l1 = runMicrobatch(one, 0, inputs, targets, false)
      const l4 = runMicrobatch(four, 0, inputs, targets, false)
      expect(Math.abs(l1 - l4) / Math.abs(l1)).toBeLessThanOrEqual(1e-5)
      expect(l1).toBeGreaterThan(5) // ~ln 256 at initialisation
      const g1 = gradsByName(one)
      const g4 = gradsByName(four)
      expect([...g4.keys()].sort()).toEqual([...g1.keys()].sort())
      for (const [n, g] of g1) expect(relDiff(g4.get(n) as Float32Array, g), n).toBeLessThanOrEqual(1e-5)
    } finally {
      inputs.dispose(); targets.dispose()
      for (const s of [...one, ...four]) s.dispose()
    }
  })

  // 32 tokens: every a @ w^T transposes the weight; 4 tokens: it transposes the thin activations.
  it.each([[2, 16], [1, 4]])('each stage backward (hand-written, B=%i T=%i) equals autodiff of the whole model (tf.variableGrads) restricted to it', (B, T) => {
    const four = makeStages(4)
    const whole = makeStages(1)[0]
    const { inputs, targets } = tokens(12, B, T)
    try {
      runMicrobatch(four, 0, inputs, targets, false)
      const p = (n: string): tf.Tensor => whole.params.get(n) as tf.Tensor
      const { value, grads } = tf.variableGrads(() => {
        let h = embed(model, p, inputs)
        for (let i = 0; i < model.nBlocks; i++) h = block(model, p, i, h)
        return headLoss(model, p, h, targets)
      }, [...whole.params.values()])
      const byName = new Map<string, Float32Array>()
      for (const [n, v] of whole.params) byName.set(n, grads[v.name].dataSync() as Float32Array)
      for (const s of four) {
        expect(s.gradients().size).toBe(s.params.size)
        for (const [n, g] of s.gradients()) expect(relDiff(g.dataSync(), byName.get(n) as Float32Array), n).toBeLessThanOrEqual(1e-5)
      }
      value.dispose()
      for (const g of Object.values(grads)) g.dispose()
    } finally {
      inputs.dispose(); targets.dispose()
      whole.dispose()
      for (const s of four) s.dispose()
    }
  })

  it('recompute mode (keep only inputs) gives the same gradients as keeping activations', () => {
    const kept = makeStages(4)
    const recomputed = makeStages(4, true)
    const { inputs, targets } = tokens(15, 2, 16)
    try {
      const l1 = runMicrobatch(kept, 1, inputs, targets, true)
      const l2 = runMicrobatch(recomputed, 1, inputs, targets, true)
      expect(l2).toBe(l1)
      const g1 = gradsByName(kept)
      const g2 = gradsByName(recomputed)
      for (const [n, g] of g1) expect(relDiff(g2.get(n) as Float32Array, g), n).toBeLessThanOrEqual(1e-6)
    } finally {
      inputs.dispose(); targets.dispose()
      for (const s of [...kept, ...recomputed]) s.dispose()
    }
  })

  it('step clips to norm 1, records the post-clip norm, counts the Adam step and moves the state one iteration on', () => {
    const stages = makeStages(4)
    const { inputs, targets } = tokens(13, 3, 16)
    try {
      runMicrobatch(stages, 0, inputs, targets, false)
      runMicrobatch(stages, 1, inputs, targets, false)
      const before = stages[1].params.get('blocks.1.attn.wq')?.dataSync().slice() as Float32Array
      const results = stages.map(s => s.step(2))
      for (const r of results) {
        expect(r.gradNorm).toBeCloseTo(Math.min(r.preClipNorm, 1), 6)
        expect(r.gradNorm).toBeGreaterThan(0)
      }
      expect(stages[1].adam.step).toBe(1)
      expect(stages[1].iteration).toBe(0)
      expect(stages[1].lastGradNorm).toBe(results[1].gradNorm)
      const after = stages[1].params.get('blocks.1.attn.wq')?.dataSync() as Float32Array
      expect(relDiff(after, before)).toBeGreaterThan(0)
    } finally {
      inputs.dispose(); targets.dispose()
      for (const s of stages) s.dispose()
    }
  })

  it('builds a stage from values in shared memory (fetched weights), on wasm and on cpu', async () => {
    const layout = stageLayout(model, 4, 1)
    const built = makeStages(4)
    const values = built[1].readParams()
    for (const b of built) b.dispose()
    const shared = new Map([...values].map(([n, v]) => {
      const a = new Float32Array(new SharedArrayBuffer(v.byteLength))
      a.set(v)
      return [n, a]
    }))
    for (const backend of ['wasm', 'cpu'] as const) {
      await tf.setBackend(backend)
      const s = new Stage({ model, train, layout, values: shared })
      try {
        for (const [n, v] of s.readParams()) expect(v, n).toEqual(values.get(n))
      } finally { s.dispose() }
    }
    await tf.setBackend('wasm')
  })

  it('prepack (weights packed ahead of the forward) changes no result and keeps no tensor', () => {
    const [a, b] = [makeStages(4), makeStages(4)]
    const { inputs, targets } = tokens(15, 2, 16)
    try {
      const count = tf.memory().numTensors
      for (const s of b) s.prepack()
      expect(tf.memory().numTensors).toBe(count)
      expect(runMicrobatch(b, 0, inputs, targets, false)).toBe(runMicrobatch(a, 0, inputs, targets, false))
      for (const s of b) s.prepack() // again, after the gradients: still the same weights
      for (const [s, t] of a.map((x, i) => [x, b[i]] as const)) for (const [n, g] of s.gradients()) expect(t.gradients().get(n)?.dataSync(), n).toEqual(g.dataSync())
    } finally {
      inputs.dispose(); targets.dispose()
      for (const s of [...a, ...b]) s.dispose()
    }
  })

  it('a CheckFree+ swapped microbatch runs stage 0 twice and trains every part', () => {
    const stages = makeStages(4)
    const { inputs, targets } = tokens(14, 2, 16)
    try {
      const loss = runMicrobatch(stages, 1, inputs, targets, true)
      expect(Number.isFinite(loss)).toBe(true)
      for (const s of stages) expect(s.gradients().size).toBe(s.params.size)
      expect(stages.every(s => s.pending === 0)).toBe(true)
    } finally {
      inputs.dispose(); targets.dispose()
      for (const s of stages) s.dispose()
    }
  })

  it('rejects wrong shapes and dtypes with typed errors, and a NaN gradient leaves weights untouched', () => {
    const stages = makeStages(4)
    const bad = tf.zeros([2, 16, 8])
    const ints = tf.zeros([2, 16, 32], 'int32')
    try {
      expect(() => stages[1].forward('k', bad, ['blocks'])).toThrow(expect.objectContaining({ code: 'ERR_SHAPE_MISMATCH' }))
      expect(() => stages[1].forward('k', ints, ['blocks'])).toThrow(/float32/)
      expect(() => stages[1].forward('k', bad, ['embed'])).toThrow(/no embedding/)
      const x = tf.fill([2, 16, 32], NaN)
      const out = stages[1].forward('n', x, ['blocks'])
      const dy = tf.onesLike(out)
      const dx = stages[1].backward('n', dy)
      const before = stages[1].readParams()
      expect(() => stages[1].step(1)).toThrow(expect.objectContaining({ code: 'ERR_NON_FINITE' }))
      const after = stages[1].readParams()
      for (const [n, v] of before) expect(after.get(n)).toEqual(v)
      expect(stages[1].iteration).toBe(-1)
      expect(stages[1].adam.step).toBe(0)
      x.dispose(); out.dispose(); dy.dispose(); dx?.dispose()
    } finally {
      bad.dispose(); ints.dispose()
      for (const s of stages) s.dispose()
    }
  })
})

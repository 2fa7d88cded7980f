/**
 * The wasm fast paths of model/kernels.ts against tfjs's own ops, at shapes that take them (the
 * suite's models are too small to reach the per-head product and the JS transpose): the same
 * numbers, and no tensor left behind.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import * as tf from '@tensorflow/tfjs'
import { initBackend } from '../model/backend.js'
import { columnSums, itemMatMul, transposeLast2 } from '../model/kernels.js'
import { headMatMul, PER_ITEM_MIN_MACS } from '../model/ops.js'
import { mulberry32 } from '../model/index.js'

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })

function random (shape: number[], seed: number): tf.Tensor {
  const rand = mulberry32(seed)
  const n = shape.reduce((a, b) => a * b, 1)
  return tf.tensor(Float32Array.from({ length: n }, () => rand() * 2 - 1), shape)
}

function maxDiff (a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0])
}

describe('wasm kernels', () => {
  it('the per-head product equals tfjs\'s batched matMul, each item from its own range', () => {
    // [8,128,64] @ [8,64,128]: 1M multiply-adds per item, above the per-item threshold
    const a = random([8, 128, 64], 1) as tf.Tensor3D
    const b = random([8, 64, 128], 2) as tf.Tensor3D
    expect(128 * 64 * 128).toBeGreaterThanOrEqual(PER_ITEM_MIN_MACS)
    const before = tf.memory().numTensors
    const fast = headMatMul(a, b)
    const item = itemMatMul(a, b)
    const ref = tf.matMul(a, b)
    expect(fast.shape).toEqual([8, 128, 128])
    expect(maxDiff(fast, ref)).toBeLessThan(1e-4)
    expect(maxDiff(item, ref)).toBeLessThan(1e-4)
    // a wrong item order or offset would move whole rows: compare item 5 on its own
    const ref5 = tf.tidy(() => tf.matMul(a.slice([5, 0, 0], [1, 128, 64]).reshape([128, 64]), b.slice([5, 0, 0], [1, 64, 128]).reshape([64, 128])))
    const fast5 = tf.tidy(() => fast.slice([5, 0, 0], [1, 128, 128]).reshape([128, 128]))
    expect(maxDiff(fast5, ref5)).toBeLessThan(1e-4)
    tf.dispose([fast, item, ref, ref5, fast5])
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose([a, b])
  })

  it('the JS transpose and column sums equal tfjs\'s transpose and sum', () => {
    const x = random([1024, 40], 3) as tf.Tensor2D
    const before = tf.memory().numTensors
    const t = transposeLast2(x)
    const ref = tf.transpose(x)
    expect(t.shape).toEqual([40, 1024])
    expect(maxDiff(t, ref)).toBe(0)
    const s = columnSums(x)
    const refS = tf.sum(x, 0)
    expect(maxDiff(s, refS)).toBeLessThan(1e-4)
    const batched = random([3, 600, 7], 4)
    const tb = transposeLast2(batched)
    const refB = tf.transpose(batched, [0, 2, 1])
    expect(maxDiff(tb, refB)).toBe(0)
    tf.dispose([t, ref, s, refS, batched, tb, refB])
    expect(tf.memory().numTensors).toBe(before)
    x.dispose()
  })
})

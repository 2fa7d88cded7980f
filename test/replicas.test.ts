import * as tf from '@tensorflow/tfjs'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { disposeOpCaches } from '../model/ops.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { loadBrownCorpus } from '../model/data.js'
import { stageLayout } from '../model/params.js'
import { laneMicrobatches } from '../model/schedule.js'
import { Stage } from '../model/stage.js'
import { LocalPipelineTrainer, batchTensors, runMicrobatch } from '../model/trainer.js'
import { sampleBatch } from '../model/data.js'
import { exportStageState, loadStageState, stageDigest, stateToTensorSet } from '../model/state.js'
import { ReplicaJoin } from '../node/replica-join.js'
import { ReplicaJoinError } from '../node/errors.js'

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })

const modelInit = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const trainInit = { stages: 4, microbatches: 4, microbatchSize: 4 }
const live: Stage[] = []
afterEach(() => { for (const s of live.splice(0)) s.dispose() })

describe('the lanes of data-parallel replicas', () => {
  it('split every microbatch exactly once, in order', () => {
    for (const [M, R] of [[4, 1], [4, 2], [5, 2], [6, 3], [3, 3]]) {
      const all = Array.from({ length: R }, (_, r) => laneMicrobatches(M, R, r))
      expect(all.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: M }, (_, m) => m))
      for (const lane of all) expect(lane.length).toBeGreaterThan(0)
    }
    expect(() => laneMicrobatches(2, 3, 0)).toThrow(/replicas must be an integer in 1..2/)
    expect(() => laneMicrobatches(4, 2, 2)).toThrow(/lane must be an integer in 0..1/)
  })
})

describe('replicas that add their gradient sums before the step', () => {
  it('4 stages x 2 replicas train like 4 x 1 on the same global batch (20 iterations), and the replicas stay bit-identical', async () => {
    const model = resolveModelConfig(modelInit)
    const train = resolveTrainConfig(trainInit, model)
    const tokens = loadBrownCorpus().train
    disposeOpCaches()
    const before = tf.memory().numTensors
    const R = 2
    const M = train.microbatches
    const lanes = Array.from({ length: R }, () => Array.from({ length: train.stages }, (_, s) => {
      const st = new Stage({ model, train, layout: stageLayout(model, train.stages, s) })
      live.push(st)
      return st
    }))
    const reference = new LocalPipelineTrainer({ model: modelInit, train: trainInit, trainTokens: tokens })
    try {
      for (let it = 0; it < 20; it++) {
        const want = reference.step().loss
        let lossSum = 0
        for (let r = 0; r < R; r++) {
          for (const mb of laneMicrobatches(M, R, r)) {
            const b = sampleBatch(tokens, { seed: train.dataSeed, iteration: it, microbatch: mb, replica: 0 }, train.microbatchSize, model.seqLen)
            const { inputs, targets } = batchTensors(b, train.microbatchSize, model.seqLen)
            try { lossSum += runMicrobatch(lanes[r], mb, inputs, targets, false) } finally { tf.dispose([inputs, targets]) }
          }
        }
        for (let s = 0; s < train.stages; s++) {
          // what the all-reduce computes: the element-wise sum over the replicas, in lane order
          const parts = lanes.map(l => l[s].gradientSums())
          const sums = parts[0].map((a, i) => {
            const out = new Float32Array(a)
            for (let r = 1; r < R; r++) { const b = parts[r][i]; for (let k = 0; k < out.length; k++) out[k] += b[k] }
            return out
          })
          lanes.forEach((l, r) => { l[s].setGradientSums(r === 0 ? sums : sums.map(a => a.slice())) })
          for (const l of lanes) l[s].step(M)
        }
        const got = lossSum / M
        expect(Math.abs(got - want) / want, `iteration ${it}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-5)
        await new Promise<void>(resolve => setImmediate(resolve))
      }
      for (let s = 0; s < train.stages; s++) {
        const a = lanes[0][s].readParams()
        const b = lanes[1][s].readParams()
        for (const [n, v] of a) expect(Buffer.from((b.get(n) as Float32Array).buffer).equals(Buffer.from(v.buffer)), `stage ${s} ${n}`).toBe(true)
      }
    } finally {
      reference.dispose()
      for (const s of live.splice(0)) s.dispose()
      disposeOpCaches()
    }
    expect(tf.memory().numTensors).toBe(before)
  }, 120_000)

  it('refuses gradient sums of the wrong count or length, keeping its own', () => {
    const model = resolveModelConfig(modelInit)
    const train = resolveTrainConfig(trainInit, model)
    const st = new Stage({ model, train, layout: stageLayout(model, train.stages, 1) })
    live.push(st)
    const sums = st.gradientSums()
    expect(sums.every(a => a.every(v => v === 0))).toBe(true)
    expect(() => { st.setGradientSums(sums.slice(1)) }).toThrow(/gradient arrays for/)
    const bad = sums.map((a, i) => i === 0 ? new Float32Array(a.length + 1) : a)
    expect(() => { st.setGradientSums(bad) }).toThrow(/expected \d+ gradient values/)
    expect(st.gradients().size).toBe(0)
  })
})

describe('a replica joining while its stage trains (node/replica-join.ts)', () => {
  /** Seeded pseudo-random gradient sums for `stage` (one array per parameter, spec order). */
  function sums (stage: Stage, seed: number): Float32Array[] {
    let x = seed * 2654435761 >>> 0
    return stage.gradientSums().map(a => a.map(() => { x = (x * 1664525 + 1013904223) >>> 0; return (x / 2 ** 32 - 0.5) * 0.02 }))
  }
  function exported (stage: Stage): Map<string, Buffer> {
    const set = stateToTensorSet(exportStageState(stage, { optimizer: true }))
    return new Map([...set].map(([n, t]) => [n, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]))
  }

  it('loads the pulled state and replays the logged steps (a skipped one too): bit-identical to the replica it copied', () => {
    const model = resolveModelConfig(modelInit)
    const train = resolveTrainConfig(trainInit, model)
    const M = train.microbatches
    const layout = stageLayout(model, train.stages, 1)
    disposeOpCaches()
    const before = tf.memory().numTensors
    const replica = new Stage({ model, train, layout })
    const placeholder = new Stage({ model, train, layout, lrScale: 2 })
    live.push(replica, placeholder)
    const join = new ReplicaJoin({ stage: 1 })
    let pulled: ReturnType<typeof stateToTensorSet> | undefined
    for (let it = 0; it < 6; it++) {
      const skipped = it === 3
      const g = sums(replica, it + 1)
      // what both peers do with the iteration's reduced sums; the joiner logs them first
      join.reduced(it, g)
      for (const st of [replica, placeholder]) {
        if (skipped) { st.skipStep(it); continue }
        st.setGradientSums(g.map(a => a.slice()))
        st.prepareStep(M)
        st.commitStep(it)
      }
      join.committed(it, skipped)
      if (it === 1) pulled = stateToTensorSet(exportStageState(replica, { optimizer: true }))
      // the pull lands during iteration 2: caught up only at a commit at or after its iteration
      if (it === 2) expect(join.arrived(pulled as ReturnType<typeof stateToTensorSet>)).toBe(1)
      if (it === 0) expect(join.catchUp(placeholder, M)).toBe(false)
    }
    expect(join.catchUp(placeholder, M)).toBe(true)
    expect(placeholder.iteration).toBe(5)
    const want = exported(replica)
    const got = exported(placeholder)
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
    for (const [n, b] of want) expect(got.get(n)?.equals(b), n).toBe(true)
    replica.dispose()
    placeholder.dispose()
    live.splice(0)
    disposeOpCaches()
    expect(tf.memory().numTensors).toBe(before)
  })

  it('says why it cannot catch up: a gap in its log, or a pull slower than its log allows', () => {
    const model = resolveModelConfig(modelInit)
    const train = resolveTrainConfig(trainInit, model)
    const layout = stageLayout(model, train.stages, 2)
    const st = new Stage({ model, train, layout })
    live.push(st)
    const pulled = stateToTensorSet(exportStageState(st, { optimizer: true }))
    const gap = new ReplicaJoin({ stage: 2 })
    gap.arrived(pulled) // state of iteration -1 (seeded), but nothing logged for iteration 0
    st.skipStep(0)
    expect(() => gap.catchUp(st, train.microbatches)).toThrow(ReplicaJoinError)
    expect(() => gap.catchUp(st, train.microbatches)).toThrow(/no committed gradient of iteration 0/)
    const small = new ReplicaJoin({ stage: 2, maxIterations: 2 })
    small.reduced(0, sums(st, 1))
    small.reduced(1, sums(st, 2))
    expect(() => { small.reduced(2, sums(st, 3)) }).toThrow(/did not arrive within 2 iterations/)
  })
})

describe('the weight digest replicas compare (model/state.ts stageDigest)', () => {
  it('is equal for a state and its exact copy, a fresh Adam too (its moments not made yet), and differs after a drift', () => {
    const model = resolveModelConfig(modelInit)
    const train = resolveTrainConfig(trainInit, model)
    const layout = stageLayout(model, train.stages, 1)
    disposeOpCaches()
    const before = tf.memory().numTensors
    // a stage as CheckFree builds it: values, a fresh Adam with no moments yet
    const fresh = new Stage({ model, train, layout, lrScale: 1.1 })
    const copy = new Stage({ model, train, layout })
    try {
      const state = exportStageState(fresh, { optimizer: true })
      loadStageState(copy, state.tensors, state.meta, { optimizer: true })
      expect(fresh.adam.m.size).toBe(0)
      expect(copy.adam.m.size).toBeGreaterThan(0)
      expect(stageDigest(copy)).toBe(stageDigest(fresh))
      // the same step on both: still equal; a perturbed weight: not
      const g = fresh.gradientSums().map((a, i) => a.map((_, k) => ((k * 7 + i) % 13 - 6) * 1e-3))
      for (const st of [fresh, copy]) { st.setGradientSums(g.map(a => a.slice())); st.prepareStep(train.microbatches); st.commitStep(0) }
      expect(stageDigest(copy)).toBe(stageDigest(fresh))
      const p = [...copy.params.values()][0] as tf.Variable
      tf.tidy(() => { p.assign(tf.add(p, 1e-3)) })
      expect(stageDigest(copy)).not.toBe(stageDigest(fresh))
    } finally {
      fresh.dispose()
      copy.dispose()
      disposeOpCaches()
    }
    expect(tf.memory().numTensors).toBe(before)
  })
})

import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { stageLayout } from '../model/params.js'
import { Stage } from '../model/stage.js'
import { exportStageState, loadStageState } from '../model/state.js'
import { HeldCopies } from '../node/held-copies.js'
import type { WeightsSnapshot } from '../net/index.js'

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })

const train = resolveTrainConfig({ stages: 2 })
const model = resolveModelConfig({ dModel: 8, nHeads: 2, nBlocks: 2, seqLen: 4 })

const copyOf = (set: Map<string, { data: Float32Array | Int32Array }>): Map<string, Float32Array | Int32Array> =>
  new Map([...set].map(([n, t]) => [n, t.data.slice()]))

describe('checkpoint snapshots a peer holds', () => {
  it('are not overwritten while a transfer reads them; once released, the next snapshot reuses their arrays', async () => {
    const tf = await import('@tensorflow/tfjs')
    const tensorsBefore = tf.memory().numTensors
    const stage = new Stage({ model, train, layout: stageLayout(model, 2, 1) })
    const other = new Stage({ model: { ...model, initSeed: 7 }, train, layout: stageLayout(model, 2, 1) })
    try {
      const held = new HeldCopies()
      const provider = held.provider(() => stage)
      stage.iteration = 1
      held.takeCheckpoint(stage)
      const v1 = await provider.snapshot(1, 1, true) as WeightsSnapshot
      expect(v1.iteration).toBe(1)
      const v1Values = copyOf(v1.tensors)

      // the stage trains on (other weights, iteration 2) while v1 is still being sent
      const next = exportStageState(other)
      loadStageState(stage, next.tensors, { ...next.meta, iteration: 2 })
      held.takeCheckpoint(stage)
      expect(copyOf(v1.tensors)).toEqual(v1Values)
      const v2 = held.checkpoint
      expect(v2?.iteration).toBe(2)
      for (const [n, t] of v2?.tensors ?? []) if (n !== '__metadata__' && v1.tensors.has(n)) expect(t.data).not.toBe(v1.tensors.get(n)?.data)

      // v2 is served and released (twice: a second call is a no-op); v3 goes into v2's arrays
      const served = await provider.snapshot(1, 2, true) as WeightsSnapshot
      served.release?.()
      served.release?.()
      expect(held.checkpoint?.readers).toBe(0)
      const v2Arrays = new Map([...(v2?.tensors ?? [])].map(([n, t]) => [n, t.data]))
      stage.iteration = 3
      held.takeCheckpoint(stage)
      const v3 = held.checkpoint
      expect(v3?.iteration).toBe(3)
      for (const [n, t] of stage.params) {
        expect(v3?.tensors.get(n)?.data).toBe(v2Arrays.get(n))
        expect(v3?.tensors.get(n)?.data).toEqual(await t.data())
      }
      v1.release?.()
    } finally {
      stage.dispose()
      other.dispose()
    }
    expect(tf.memory().numTensors).toBe(tensorsBefore)
  })
})

describe('what a peer holds, by iteration', () => {
  it('serves the checkpoint snapshot for exactly its iteration, the stage for older asks, nothing newer; lists every copy with its iteration', async () => {
    const stage = new Stage({ model, train, layout: stageLayout(model, 2, 0) })
    try {
      const held = new HeldCopies()
      const provider = held.provider(() => stage)
      expect(held.list()).toEqual([])
      stage.iteration = 5
      held.takeCheckpoint(stage)
      stage.iteration = 7 // trained on after the snapshot
      const snap = await provider.snapshot(0, 5, true) as WeightsSnapshot
      expect(snap.iteration).toBe(5)
      expect(snap.tensors).toBe(held.checkpoint?.tensors)
      snap.release?.()
      expect((await provider.snapshot(0, 6, true))?.iteration).toBe(7)
      expect((await provider.snapshot(0, -1, false))?.iteration).toBe(7)
      expect(await provider.snapshot(0, 8, true)).toBeUndefined()
      held.mirror = { stage: 1, iteration: 4, tensors: new Map() }
      held.shadow = { stage: 1, iteration: 6, tensors: new Map() }
      expect(await provider.snapshot(1, 5, false)).toMatchObject({ iteration: 6 })
      expect(held.list()).toEqual([
        { kind: 'mirror', stage: 1, iteration: 4 },
        { kind: 'shadow', stage: 1, iteration: 6 },
        { kind: 'checkpoint', stage: 0, iteration: 5 }
      ])
    } finally {
      stage.dispose()
    }
  })
})

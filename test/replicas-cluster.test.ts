/**
 * Data-parallel replicas as real processes: a coordinator and 4 stages x 2 replicas (8 peer
 * processes), each iteration's microbatches spread over the two lanes, each stage's replicas adding
 * their gradient sums with the ring all-reduce before the step.
 */
import { describe, expect, it } from 'vitest'
import { expectLocalLosses } from './helpers/reference.js'
import { OPTIM_M } from '../model/state.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster } from './helpers/cluster.js'
import { expectSameTensors } from './helpers/tensors.js'

const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 4, microbatches: 4, microbatchSize: 4 }
const { track } = clusterLifecycle('spotpipe-replicas-')

describe('4 stages x 2 replicas as separate processes', () => {
  it('train 20 iterations with the losses of 4 x 1 on the same global batch, and each stage\'s replicas stay bit-identical (weights and Adam moments)', async () => {
    const c = track(new TestCluster({ clusterId: 'rep', model, train, replicas: 2 }))
    await c.start(8)
    const a = await c.coord.assignInitial({ timeoutMs: 60_000 })
    expect(a.stages.map(s => s.peers.length)).toEqual([2, 2, 2, 2])
    expect(new Set(a.stages.flatMap(s => s.peers)).size).toBe(8)
    const losses: number[] = []
    for (let i = 0; i < 20; i++) losses.push((await c.coord.runIteration({ timeoutMs: 60_000 })).loss)

    // the local pipeline trainer is what 4 x 1 computes (test/cluster.test.ts)
    expectLocalLosses(losses, model, train)

    for (const st of a.stages) {
      const [x, y] = await Promise.all(st.peers.map(async p => await c.weightsOf(st.stage, true, p)))
      expect([x.iteration, y.iteration]).toEqual([19, 19])
      expect([...x.tensors.keys()].filter(n => n.startsWith(OPTIM_M)).length, `stage ${st.stage} served no Adam moments`).toBeGreaterThan(0)
      expectSameTensors(x.tensors, y.tensors, `stage ${st.stage}: its replicas`)
    }
  }, 180_000)
})

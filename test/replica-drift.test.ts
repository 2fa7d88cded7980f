/**
 * A replica that drifts (its weights perturbed after a commit, as a memory error would) is noticed
 * by the weight digests in the done reports of the very next iteration, dropped while its stage's
 * other replica carries on, and resynchronised: it joins again as an exact copy. Real processes,
 * 4 stages x 2 replicas, the fault injected with SPOTPIPE_FAULT_PERTURB.
 */
import { describe, expect, it } from 'vitest'
import { FAULT_PERTURB_ENV } from '../node/index.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster } from './helpers/cluster.js'
import { expectSameTensors } from './helpers/tensors.js'

const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 4, microbatches: 4, microbatchSize: 4 }
const { track } = clusterLifecycle('spotpipe-replica-drift-')

describe('a replica whose weights drift', () => {
  it('is dropped at the next iteration and joins again as an exact copy of its stage', async () => {
    const c = track(new TestCluster({ clusterId: 'drift', model, train, replicas: 2 }))
    // replica 1 of stage 1 adds 1e-3 to a weight after committing iteration 3
    await c.start(8, { [FAULT_PERTURB_ENV]: '1:3:1' })
    const a = await c.coord.assignInitial({ timeoutMs: 60_000 })
    const [keeper, drifter] = a.stages[1].peers
    await c.coord.run(10)

    const events = c.coord.recoveries.filter(e => e.stage === 1)
    expect(events.map(e => [e.rung, e.outcome])).toEqual([['survivors', 'recovered'], ['replica', 'recovered']])
    expect(events[0].lostPeer).toBe(drifter)
    expect(events[0].cause).toMatch(/drifted .* iteration 4\)/)
    expect(events[1].targetPeer).toBe(drifter)
    expect(events[1].donors).toEqual([keeper])
    // nothing else was recovered, and every iteration committed once, in order
    expect(c.coord.recoveries.filter(e => e.stage !== 1)).toEqual([])
    expect(c.coord.history.map(r => r.iteration)).toEqual(Array.from({ length: 10 }, (_, i) => i))
    expect(c.coord.assignment?.stages[1].peers).toEqual([keeper, drifter])

    const [x, y] = await Promise.all([keeper, drifter].map(async p => await c.weightsOf(1, true, p)))
    expect([x.iteration, y.iteration]).toEqual([9, 9])
    expectSameTensors(x.tensors, y.tensors, 'stage 1 after the resync')
  }, 240_000)
})

/**
 * A peer joining a running 4 x 1 cluster (replica target 2, minimum 1) becomes a replica of stage 0
 * without stopping training: it is listed as joining, adds zeros to the stage's all-reduce while it
 * pulls the stage's state, replays the iterations it missed at a commit, and serves from the next
 * iteration on. The loss sequence stays that of 4 x 1 on the same global batch and the new
 * replica's weights and Adam moments equal the old one's bit for bit.
 */
import { describe, expect, it } from 'vitest'
import { expectLocalLosses } from './helpers/reference.js'
import { OPTIM_M, OPTIM_V } from '../model/state.js'
import type { Assignment } from '../protocols/index.js'
import { servingPeers } from '../protocols/index.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster } from './helpers/cluster.js'
import { expectSameTensors } from './helpers/tensors.js'

const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 4, microbatches: 4, microbatchSize: 4 }
const { track } = clusterLifecycle('spotpipe-replica-join-')

/** Runs iterations until no peer is listed as joining (at most 20). */
async function settle (c: TestCluster): Promise<void> {
  for (let i = 0; i < 20 && (c.coord.assignment?.joining ?? []).length > 0; i++) await c.coord.run(1)
}

describe('a peer joining a running cluster', () => {
  it('becomes a replica of the stage with the fewest while training goes on, exact to the bit', async () => {
    const c = track(new TestCluster({ clusterId: 'repjoin', model, train, replicas: 2, minReplicas: 1 }))
    await c.start(4)
    const a = await c.coord.assignInitial({ timeoutMs: 60_000 })
    expect(a.stages.map(s => s.peers.length)).toEqual([1, 1, 1, 1])
    for (let i = 0; i < 3; i++) await c.coord.runIteration({ timeoutMs: 60_000 })

    const joiner = await c.addPeer()
    await c.coord.until(() => c.coord.livePeers().includes(joiner.peerId), 'the joiner to be live', 30_000)
    // what every epoch said of the joiner, and the iteration the coordinator was at when its heartbeat first showed state
    const epochs: Array<{ iteration: number, joining: boolean, serving: boolean }> = []
    c.coord.on('epoch', () => {
      const x = c.coord.assignment as Assignment
      epochs.push({ iteration: x.iteration, joining: (x.joining ?? []).includes(joiner.peerId), serving: servingPeers(x, 0).includes(joiner.peerId) })
    })
    let caughtUpAt: number | undefined
    c.coord.on('change', () => {
      const hb = c.coord.heartbeatOf(joiner.peerId)
      if (caughtUpAt == null && hb?.role === 'stage' && (hb.stateIteration ?? -1) >= 0) caughtUpAt = c.coord.iteration
    })
    await c.coord.run(8)

    const entered = epochs.find(e => e.joining)
    const served = epochs.find(e => e.serving)
    expect(entered, 'an epoch listing the joiner as joining').toBeDefined()
    expect(served, 'an epoch listing it as serving').toBeDefined()
    const i0 = (entered as { iteration: number }).iteration
    const i1 = (served as { iteration: number }).iteration
    // training went on while it joined, and it served from the iteration after it caught up
    expect(i1 - i0, `joined at ${i0}, serving at ${i1}`).toBeGreaterThanOrEqual(1)
    expect(caughtUpAt).toBeDefined()
    expect(i1 - (caughtUpAt as number)).toBeLessThanOrEqual(1)
    const final = c.coord.assignment as Assignment
    expect(final.stages[0].peers).toEqual([a.stages[0].peers[0], joiner.peerId])
    expect(final.joining ?? []).toEqual([])
    const events = c.coord.recoveries.filter(e => e.targetPeer === joiner.peerId)
    expect(events.map(e => [e.stage, e.rung, e.outcome])).toEqual([[0, 'replica', 'recovered']])
    expect(events[0].bytes).toBeGreaterThan(0)

    // zeros in the all-reduce and the replayed steps changed nothing: the losses are those of 4 x 1
    const history = c.coord.history
    expect(history.map(r => r.iteration)).toEqual(Array.from({ length: 11 }, (_, i) => i))
    expectLocalLosses(history.map(r => r.loss), model, train)

    const [x, y] = await Promise.all([a.stages[0].peers[0], joiner.peerId].map(async p => await c.weightsOf(0, true, p)))
    expect([x.iteration, y.iteration]).toEqual([10, 10])
    expect([...x.tensors.keys()].filter(n => n.startsWith(OPTIM_M) || n.startsWith(OPTIM_V)).length).toBeGreaterThan(0)
    expectSameTensors(x.tensors, y.tensors, 'stage 0: the replica and the joiner')
  }, 240_000)

  it('with no spare left, a replica moves from the best-served stage to one down to its last (2 stages: 3 + 1 -> 2 + 2)', async () => {
    const c = track(new TestCluster({ clusterId: 'repmove', model, train: { ...train, stages: 2 }, replicas: 3, minReplicas: 1 }))
    await c.start(2)
    const a = await c.coord.assignInitial({ timeoutMs: 60_000 })
    expect(a.stages.map(s => s.peers.length)).toEqual([1, 1])
    // three more peers: they join as replicas, the fewest-served stage first -> 3 + 2
    for (let k = 0; k < 3; k++) {
      const p = await c.addPeer()
      await c.coord.until(() => c.coord.livePeers().includes(p.peerId), 'the new peer to be live', 30_000)
      await c.coord.run(3)
    }
    await settle(c)
    const full = c.coord.assignment as Assignment
    expect(full.stages.map(s => s.peers.length)).toEqual([3, 2])
    expect(full.joining ?? []).toEqual([])
    // stage 1 loses a replica: 3 + 1, no spare; one of stage 0's moves over
    const victim = full.stages[1].peers[1]
    c.peers.find(p => p.peerId === victim)?.proc.child.kill('SIGKILL')
    await c.coord.until(() => !c.coord.livePeers().includes(victim), 'the loss to be detected', 15_000)
    await c.coord.run(4)
    await settle(c)
    const after = c.coord.assignment as Assignment
    expect(after.stages.map(s => s.peers.length)).toEqual([2, 2])
    expect(after.joining ?? []).toEqual([])
    const moved = after.stages[1].peers.find(p => full.stages[0].peers.includes(p))
    expect(moved, 'a replica of stage 0 now serves stage 1').toBeDefined()
    expect(c.coord.recoveries.filter(e => e.stage === 1 && e.outcome === 'recovered').map(e => e.rung).slice(-2)).toEqual(['survivors', 'replica'])
    const [x, y] = await Promise.all(after.stages[1].peers.map(async p => await c.weightsOf(1, true, p)))
    expect(x.iteration).toBe(y.iteration)
    expectSameTensors(x.tensors, y.tensors, 'stage 1: its replicas after the move')
  }, 240_000)
})

/**
 * Losing replicas, as real processes: a coordinator and 4 stages x 2 replicas plus a spare.
 * One replica of stage 2 SIGKILLed mid-iteration is no stage loss: its survivor runs its
 * microbatches (the iteration is redone), no CheckFree, no checkpoint, the loss sequence is still
 * that of 4 x 1 on the same global batch, and the spare joins as stage 2's new replica by copying
 * the survivor exactly (catching up while training goes on). Both replicas of stage 2 killed at
 * once is a stage loss: CheckFree.
 */
import { describe, expect, it } from 'vitest'
import { expectLocalLosses } from './helpers/reference.js'
import { OPTIM_M, OPTIM_V } from '../model/state.js'
import { StageLostError, type RecoveryEvent } from '../coordinator/index.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster } from './helpers/cluster.js'
import { expectSameTensors } from './helpers/tensors.js'

const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 4, microbatches: 4, microbatchSize: 4 }
const { track } = clusterLifecycle('spotpipe-replica-loss-')

/** Starts an iteration and SIGKILLs `victims` while it runs; the iteration is aborted. */
async function killDuring (c: TestCluster, victims: string[]): Promise<void> {
  const running = c.coord.runIteration({ timeoutMs: 60_000 })
  setTimeout(() => { for (const v of victims) c.peers.find(p => p.peerId === v)?.proc.child.kill('SIGKILL') }, 20)
  try {
    await running
  } catch (err) {
    if (!(err instanceof StageLostError)) throw err
  }
}

describe('losing replicas of a stage', () => {
  it('one replica of stage 2 killed: its survivor carries on without CheckFree and a spare joins as an exact copy; both killed: CheckFree', async () => {
    const c = track(new TestCluster({ clusterId: 'reploss', model, train, replicas: 2 }))
    await c.start(9)
    const a = await c.coord.assignInitial({ timeoutMs: 60_000 })
    expect(a.stages.map(s => s.peers.length)).toEqual([2, 2, 2, 2])
    const spare = c.peers.map(p => p.peerId).find(p => !a.stages.some(s => s.peers.includes(p)))
    expect(spare).toBeDefined()
    for (let i = 0; i < 3; i++) await c.coord.runIteration({ timeoutMs: 60_000 })

    // --- one replica of stage 2 lost mid-iteration
    const [survivor, victim] = a.stages[2].peers
    const before = c.coord.recoveries.length
    await killDuring(c, [victim])
    await c.coord.run(6)
    const events: RecoveryEvent[] = c.coord.recoveries.slice(before)
    expect(events.map(e => [e.stage, e.rung, e.outcome])).toEqual([[2, 'survivors', 'recovered'], [2, 'replica', 'recovered']])
    expect(events[0].lostPeer).toBe(victim)
    expect(events[0].targetPeer).toBe(survivor)
    expect(events[1].targetPeer).toBe(spare)
    expect(events[1].donors).toEqual([survivor])
    expect(events[1].bytes).toBeGreaterThan(0)
    const now = c.coord.assignment
    expect(now?.stages[2].peers).toEqual([survivor, spare])
    for (const s of [0, 1, 3]) expect(now?.stages[s].peers).toEqual(a.stages[s].peers)

    // the redone iteration and the ones after it are those of 4 x 1 on the same global batch (on a
    // loaded machine the kill can land after the iteration's last done report: then it commits and
    // the next one is redone)
    const history = c.coord.history
    const committed = c.coord.iteration
    expect(committed).toBeGreaterThanOrEqual(9)
    expect(history.map(r => r.iteration)).toEqual(Array.from({ length: committed }, (_, i) => i))
    expectLocalLosses(history.map(r => r.loss), model, train)

    // the new replica trained on as an exact copy: weights and both Adam moments equal the survivor's
    const [x, y] = await Promise.all([survivor, spare as string].map(async p => await c.weightsOf(2, true, p)))
    expect([x.iteration, y.iteration]).toEqual([committed - 1, committed - 1])
    expect([...x.tensors.keys()].filter(n => n.startsWith(OPTIM_M) || n.startsWith(OPTIM_V)).length).toBeGreaterThan(0)
    expectSameTensors(x.tensors, y.tensors, 'stage 2: survivor vs its new replica')

    // --- both replicas of stage 2 lost at once: a stage loss; two new peers: a CheckFree target, then a replica
    const fresh = await Promise.all([c.addPeer(), c.addPeer()])
    await c.coord.until(() => fresh.every(p => c.coord.livePeers().includes(p.peerId)), 'the new peers to be live', 30_000)
    const mark = c.coord.recoveries.length
    await killDuring(c, [survivor, spare as string])
    await c.coord.run(5)
    const after = c.coord.recoveries.slice(mark).filter(e => e.outcome === 'recovered')
    expect(after.map(e => [e.stage, e.rung])).toEqual([[2, 'checkfree'], [2, 'replica']])
    expect(after.map(e => e.targetPeer).sort()).toEqual(fresh.map(p => p.peerId).sort())
    expect(c.coord.assignment?.stages.map(s => s.peers.length)).toEqual([2, 2, 2, 2])
    const last = c.coord.history[c.coord.history.length - 1]
    expect(last.iteration).toBe(c.coord.iteration - 1)
    expect(last.iteration).toBeGreaterThanOrEqual(committed + 4)
    expect(Number.isFinite(last.loss)).toBe(true)
  }, 300_000)
})

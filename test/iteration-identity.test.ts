/**
 * Issue 10, failure 2: after a stage was restored from a sparse checkpoint, no checkpoint was written
 * again. The peer reported its optimizer step count as "the iteration these weights belong to", the
 * restored stage's count was behind the run's iteration, and every later checkpoint was abandoned
 * with a version error. Real peer processes, a real SIGKILL, real checkpoint files.
 */
import { describe, expect, it } from 'vitest'
import { StageLostError, type CheckpointEvent } from '../coordinator/index.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster } from './helpers/cluster.js'

const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 4, microbatches: 2, microbatchSize: 4 }
let cluster: TestCluster | undefined

const { track, tempDir } = clusterLifecycle('spotpipe-iter-')

describe('the iteration a stage\'s state belongs to', () => {
  it('a stage restored from an older checkpoint belongs to the run\'s iteration: checkpoints after the restore are written', async () => {
    const stateDir = await tempDir()
    cluster = track(new TestCluster({ clusterId: 'iter', model, train, strategy: 'checkpoint', stateDir, checkpointEvery: 2 }))
    const c = cluster
    await c.start(5) // 4 stages and a spare
    const events: CheckpointEvent[] = []
    c.coord.on('checkpoint', (e: CheckpointEvent) => { events.push(e) })
    await c.coord.assignInitial({ timeoutMs: 30_000 })
    for (let i = 0; i <= 6; i++) await c.coord.runIteration({ timeoutMs: 30_000 })
    await c.coord.flushCheckpoints()
    expect(events.map(e => [e.iteration, e.outcome])).toEqual([[1, 'written'], [3, 'written'], [5, 'written']])

    // stage 1's peer dies during iteration 7: the spare gets it from checkpoint 5, two iterations behind
    const victim = c.holder(1)
    const running = c.coord.runIteration({ timeoutMs: 30_000 }).catch(err => err)
    victim.proc.child.kill('SIGKILL')
    expect(await running).toBeInstanceOf(StageLostError)
    await c.coord.until(() => c.coord.failedStages().length === 1, 'the loss of stage 1', 10_000)
    const recovered = await c.coord.recover({ timeoutMs: 60_000 })
    expect(recovered.map(e => [e.stage, e.rung])).toEqual([[1, 'checkpoint']])
    expect(c.coord.iteration).toBe(7) // only stage 1 went back; the run goes on from iteration 7
    const restored = c.holder(1)
    expect(restored.peerId).not.toBe(victim.peerId)

    for (let i = 7; i <= 10; i++) await c.coord.runIteration({ timeoutMs: 30_000 })
    await c.coord.flushCheckpoints()
    // every checkpoint after the restore is written; none is abandoned
    expect(events.filter(e => e.iteration > 5).map(e => [e.iteration, e.outcome, e.reason ?? ''])).toEqual([[7, 'written', ''], [9, 'written', '']])

    const store = c.coord.store
    if (store == null) throw new Error('no checkpoint store')
    const ck = await store.load(9)
    expect(ck.states.map(st => st.meta.iteration)).toEqual([9, 9, 9, 9])
    // the optimizer step count is another fact: the restored stage took 6 steps up to checkpoint 5
    // and 3 since (iterations 7-9); the others took one per committed iteration 0-9 but the aborted 7th try
    expect(ck.states.map(st => st.meta.adamStep)).toEqual([10, 9, 10, 10])

    // the restored stage says it belongs to the run's last committed iteration, in heartbeats and when served
    const committed = c.coord.iteration - 1
    expect(committed).toBe(10)
    const said = (): Array<number | undefined> => [0, 1, 2, 3].map(s => c.coord.peers.get(c.holder(s).peerId)?.heartbeat.stateIteration)
    await c.coord.until(() => said().every(x => x === committed), `every stage's heartbeat to say iteration ${committed}`, 10_000)
      .catch(err => { throw new Error(`${(err as Error).message}; heartbeats say ${JSON.stringify(said())}`) })
    expect((await c.weightsOf(1, true)).iteration).toBe(committed)
  }, 180_000)
})

/**
 * CheckFree+'s paper layout in a real cluster (a coordinator in this process, peers as child
 * processes on loopback): stage 1 runs a copy of stage 0's embedding and S-2 of S-1's head on the
 * swapped microbatches, so no microbatch takes an extra hop. The function trained is the same as
 * under the spotpipe layout, so the losses must match the local trainer's (which routes the
 * spotpipe way), the copies must equal their owners' after every commit, and a lost end stage must
 * still come back by the checkfree-plus rung from its neighbour and that copy.
 */
import { describe, expect, it } from 'vitest'
import { loadBrownCorpus } from '../model/data.js'
import { LocalPipelineTrainer } from '../model/trainer.js'
import { stageLayout } from '../model/params.js'
import { resolveModelConfig } from '../model/config.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster } from './helpers/cluster.js'

const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 4, microbatches: 4, microbatchSize: 4, lr: 3e-3 }
const M = resolveModelConfig(model)
const { track } = clusterLifecycle('spotpipe-plus-layout-')

describe('CheckFree+ paper layout in the cluster', () => {
  it('trains the same losses as the local trainer, keeps the copies equal to their owners, and recovers an end stage from the copy', async () => {
    const c = track(new TestCluster({ clusterId: 'paper-layout', model, train, strategy: 'checkfree-plus', plusLayout: 'paper' }))
    await c.start(5)
    await c.coord.assignInitial({ timeoutMs: 30_000 })
    const losses: number[] = []
    for (let i = 0; i < 6; i++) losses.push((await c.coord.runIteration({ timeoutMs: 30_000 })).loss)

    const local = new LocalPipelineTrainer({ model, train: { ...train }, checkfreePlus: true, trainTokens: loadBrownCorpus().train })
    try {
      for (let i = 0; i < losses.length; i++) {
        const want = local.step().loss
        // the shared parts' gradients are summed in another order (all-reduce): equal to float rounding
        expect(Math.abs(losses[i] - want) / want, `iteration ${i}: ${losses[i]} vs ${want}`).toBeLessThanOrEqual(1e-4)
      }
    } finally { local.dispose() }

    // the copies are pulled right after each commit: at rest they equal their owners' parts
    for (const [owner, holder, name] of [[0, 1, 'embed.tok'], [3, 2, 'head.w']] as const) {
      const own = await c.weightsOf(owner, false, undefined, [name])
      let copy = await c.weightsOf(owner, false, c.holder(holder).peerId, [name])
      for (let t = 0; copy.iteration !== own.iteration; t++) {
        if (t > 100) throw new Error(`the copy of stage ${owner}'s ${name} on stage ${holder} never reached iteration ${own.iteration}`)
        await new Promise(resolve => setTimeout(resolve, 50))
        copy = await c.weightsOf(owner, false, c.holder(holder).peerId, [name])
      }
      expect(copy.tensors.get(name)?.data, `${name} on stage ${holder}`).toEqual(own.tensors.get(name)?.data)
    }

    // stage 0 lost: its embedding comes from stage 1's copy (current, not mirrorEvery old), its blocks from stage 1's
    const owner = await c.weightsOf(0)
    const n = await c.weightsOf(1)
    c.holder(0).proc.child.kill('SIGKILL')
    await c.coord.until(() => c.coord.failedStages().includes(0), 'the failure to be detected', 15_000)
    const events = await c.coord.recover({ timeoutMs: 60_000 })
    expect(events[0]).toMatchObject({ stage: 0, rung: 'checkfree-plus' })
    const rebuilt = await c.weightsOf(0)
    expect(rebuilt.tensors.get('embed.tok')?.data).toEqual(owner.tensors.get('embed.tok')?.data)
    expect(rebuilt.tensors.get(`blocks.${stageLayout(M, 4, 0).firstBlock}.mlp.w1`)?.data).toEqual(n.tensors.get(`blocks.${stageLayout(M, 4, 1).firstBlock}.mlp.w1`)?.data)
    for (let i = 0; i < 3; i++) expect(Number.isFinite((await c.coord.runIteration({ timeoutMs: 30_000 })).loss)).toBe(true)
  }, 180_000)

  it('refuses the paper layout with replicas, naming the problem', () => {
    expect(() => new TestCluster({ clusterId: 'paper-replicas', model, train, strategy: 'checkfree-plus', plusLayout: 'paper', replicas: 2 })).toThrow(/plusLayout paper works with one replica per stage/)
  })
})

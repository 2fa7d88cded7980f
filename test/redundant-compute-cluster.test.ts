/**
 * Strategy redundant-compute in a real cluster (a coordinator in this process, peers as child
 * processes on loopback): each stage trains a shadow of its successor by redundant computation
 * (Bamboo-style), pulled once when the assignment starts and never again. After several iterations
 * every shadow must still be bit-identical to its stage (weights, Adam moments, metadata), the
 * pipeline's own losses must be the local trainer's, and a SIGKILLed stage must come back by the
 * replica rung as exactly its last commit.
 */
import { describe, expect, it } from 'vitest'
import { loadBrownCorpus } from '../model/data.js'
import { LocalPipelineTrainer } from '../model/trainer.js'
import { shadowHolder } from '../model/recovery.js'
import type { TensorSet } from '../model/safetensors.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster } from './helpers/cluster.js'

const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 4, microbatches: 3, microbatchSize: 4, lr: 3e-3 }
const { track } = clusterLifecycle('spotpipe-redundant-compute-')

function expectSame (got: TensorSet, want: TensorSet, what: string): void {
  expect([...got.keys()].sort(), what).toEqual([...want.keys()].sort())
  for (const [n, t] of want) expect(Buffer.from((got.get(n)?.data as Float32Array).buffer).equals(Buffer.from(t.data.buffer as ArrayBuffer)), `${what}: ${n}`).toBe(true)
}

describe('redundant computation in the cluster', () => {
  it('keeps every shadow an exact copy by computing it, trains the local trainer\'s losses, and recovers a lost stage from its shadow', async () => {
    const c = track(new TestCluster({ clusterId: 'redundant-compute', model, train, strategy: 'redundant-compute' }))
    await c.start(5)
    await c.coord.assignInitial({ timeoutMs: 30_000 })
    const losses: number[] = []
    for (let i = 0; i < 5; i++) losses.push((await c.coord.runIteration({ timeoutMs: 30_000 })).loss)
    const local = new LocalPipelineTrainer({ model, train: { ...train }, trainTokens: loadBrownCorpus().train })
    try {
      for (let i = 0; i < losses.length; i++) {
        const want = local.step().loss
        expect(Math.abs(losses[i] - want) / want, `iteration ${i}: ${losses[i]} vs ${want}`).toBeLessThanOrEqual(1e-5)
      }
    } finally { local.dispose() }

    // every shadow is of the last commit and equals its stage bit for bit, moments included
    for (let s = 0; s < 4; s++) {
      const own = await c.weightsOf(s, true)
      const shadow = await c.weightsOf(s, true, c.holder(shadowHolder(s, 4) as number).peerId)
      expect(shadow.iteration, `shadow of stage ${s}`).toBe(own.iteration)
      expect(own.iteration).toBe(c.coord.iteration - 1)
      expectSame(shadow.tensors, own.tensors, `shadow of stage ${s}`)
    }

    const lost = 2
    const old = await c.weightsOf(lost, true)
    c.holder(lost).proc.child.kill('SIGKILL')
    await c.coord.until(() => c.coord.failedStages().includes(lost), 'the failure to be detected', 15_000)
    const events = await c.coord.recover({ timeoutMs: 60_000 })
    expect(events[0]).toMatchObject({ stage: lost, rung: 'replica', iterationsBehind: 0 })
    expectSame((await c.weightsOf(lost, true)).tensors, old.tensors, `stage ${lost} rebuilt from its shadow`)
    // training goes on, and the new peer's predecessor shadows it again
    for (let i = 0; i < 2; i++) expect(Number.isFinite((await c.coord.runIteration({ timeoutMs: 30_000 })).loss)).toBe(true)
    const own = await c.weightsOf(lost, true)
    const shadow = await c.weightsOf(lost, true, c.holder(lost - 1).peerId)
    expectSame(shadow.tensors, own.tensors, `shadow of stage ${lost} after the recovery`)
  }, 180_000)

  it('refuses redundant computation with replicas or CheckFree+ swaps, naming the problem', () => {
    expect(() => new TestCluster({ clusterId: 'rc-replicas', model, train, strategy: 'redundant-compute', replicas: 2 })).toThrow(/redundant-compute works with one replica per stage/)
    expect(() => new TestCluster({ clusterId: 'rc-plus', model, train, strategy: 'redundant-compute', checkfreePlus: true })).toThrow(/does not train with CheckFree\+ swaps/)
  })
})

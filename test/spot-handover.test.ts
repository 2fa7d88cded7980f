/**
 * A running peer that sees its cloud's interruption notice (AWS instance-action, GCP preempted,
 * Azure's Preempt scheduled event, each from a fake metadata service on loopback) hands its stage
 * to a spare with the exact weights and optimizer state, then exits 0.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster, type TestPeer } from './helpers/cluster.js'
import { announceInterruption, fakeMetadata, type Fake } from './helpers/fake-metadata.js'

const model = { dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 8 }
const train = { stages: 4, microbatches: 2, microbatchSize: 2 }
let cluster: TestCluster | undefined
const fakes: Fake[] = []

const { track } = clusterLifecycle('spotpipe-spot-')
afterEach(async () => { for (const f of fakes.splice(0)) await f.close() })

describe('spot interruption notices', () => {
  for (const provider of ['aws', 'gcp', 'azure'] as const) {
    it(`${provider}: an interruption notice leads to a graceful handover with bit-identical weights and optimizer state`, async () => {
      cluster = track(new TestCluster({ clusterId: `spot-${provider}`, model, train }))
      await cluster.startCoordinator()
      const metas = new Map<TestPeer, Fake>()
      await Promise.all(Array.from({ length: 5 }, async () => {
        const meta = await fakeMetadata([provider])
        fakes.push(meta)
        metas.set(await (cluster as TestCluster).addPeer(['--spot', provider, '--metadata-url', meta.base, '--spot-interval', '200']), meta)
      }))
      await cluster.coord.assignInitial({ timeoutMs: 30_000 })
      for (let i = 0; i < 3; i++) await cluster.coord.runIteration({ timeoutMs: 30_000 })
      const victim = cluster.holder(2)
      const before = await cluster.weightsOf(2, true)
      const meta = metas.get(victim)
      expect(meta?.log.length).toBeGreaterThan(0) // the victim has been polling its service
      announceInterruption(meta as Fake, provider)
      await victim.proc.waitFor(new RegExp(`departing: ${provider} interruption notice`), 10_000)
      await cluster.coord.until(() => cluster?.coord.failedStages().includes(2) ?? false, 'the departure', 10_000)
      const events = await cluster.coord.recover({ timeoutMs: 60_000 })
      expect(events[0]).toMatchObject({ stage: 2, rung: 'handover' })
      const after = await cluster.weightsOf(2, true)
      expect(cluster.holder(2)).not.toBe(victim)
      expect([...after.tensors.keys()].sort()).toEqual([...before.tensors.keys()].sort())
      for (const [n, t] of before.tensors) expect(Buffer.compare(Buffer.from(after.tensors.get(n)?.data.buffer as ArrayBuffer), Buffer.from(t.data.buffer as ArrayBuffer)), n).toBe(0)
      expect((await victim.proc.exited).code).toBe(0)
      await cluster.coord.runIteration({ timeoutMs: 30_000 })
    }, 90_000)
  }
})

import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster, type TestPeer } from './helpers/cluster.js'

const model = { dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 8 }
const train = { stages: 4, microbatches: 2, microbatchSize: 2 }
let cluster: TestCluster | undefined
const servers: Server[] = []

const { track } = clusterLifecycle('spotpipe-spot-')
afterEach(() => { for (const s of servers.splice(0)) s.close() })

/** A loopback stand-in for a cloud metadata service that announces an interruption once armed. */
async function fakeMetadata (provider: 'aws' | 'gcp'): Promise<{ url: string, arm: () => void }> {
  let armed = false
  const server = createServer((req, res) => {
    if (provider === 'aws') {
      if (req.method === 'PUT' && req.url === '/latest/api/token') { res.end('tok-123'); return }
      if (req.url === '/latest/meta-data/spot/instance-action') {
        if (req.headers['x-aws-ec2-metadata-token'] !== 'tok-123') { res.statusCode = 401; res.end(); return }
        if (!armed) { res.statusCode = 404; res.end(); return }
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ action: 'terminate', time: new Date(Date.now() + 120_000).toISOString() }))
        return
      }
    } else if (req.url?.startsWith('/computeMetadata/v1/instance/preempted') === true && req.headers['metadata-flavor'] === 'Google') {
      res.setHeader('Metadata-Flavor', 'Google')
      res.end(armed ? 'TRUE' : 'FALSE')
      return
    }
    res.statusCode = 404
    res.end()
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arm: () => { armed = true } }
}

describe('spot interruption notices', () => {
  for (const provider of ['aws', 'gcp'] as const) {
    it(`a ${provider} notice leads to a graceful handover with bit-identical weights and optimizer state`, async () => {
      cluster = track(new TestCluster({ clusterId: `spot-${provider}`, model, train }))
      await cluster.startCoordinator()
      const metas = new Map<TestPeer, Awaited<ReturnType<typeof fakeMetadata>>>()
      await Promise.all(Array.from({ length: 5 }, async () => {
        const meta = await fakeMetadata(provider)
        metas.set(await (cluster as TestCluster).addPeer(['--spot', provider, '--metadata-url', meta.url, '--spot-interval', '200']), meta)
      }))
      await cluster.coord.assignInitial({ timeoutMs: 30_000 })
      for (let i = 0; i < 3; i++) await cluster.coord.runIteration({ timeoutMs: 30_000 })
      const victim = cluster.holder(2)
      const before = await cluster.weightsOf(2, true)
      metas.get(victim)?.arm()
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

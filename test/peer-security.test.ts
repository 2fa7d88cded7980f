import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { peerIdFromString } from '@libp2p/peer-id'
import { initBackend } from '../model/backend.js'
import { Coordinator } from '../coordinator/index.js'
import { Peer } from '../node/index.js'
import { createPeerLibp2p, encodeVarint, generateSwarmKey, openStream, writeFrame, type PeerLibp2p } from '../net/index.js'
import { ACTIVATIONS_PROTOCOL, controlTopic, encodeMessage, encodeTensorFrame } from '../protocols/index.js'

const model = { dModel: 16, nHeads: 2, nBlocks: 2, seqLen: 8 }
const train = { stages: 2, microbatches: 2, microbatchSize: 2 }
const cleanup: Array<() => Promise<void>> = []

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {})
})

async function cluster (swarmKey?: Uint8Array): Promise<{ coord: Coordinator, peers: Peer[] }> {
  const coord = new Coordinator({ clusterId: 'sec', model, train, swarmKey })
  await coord.start()
  cleanup.push(async () => { await coord.stop() })
  const peers = [0, 1].map(() => new Peer({ clusterId: 'sec', coordinatorId: coord.peerId, coordinatorAddrs: [coord.addrs[0]], swarmKey }))
  for (const p of peers) cleanup.push(async () => { await p.stop() })
  await Promise.all(peers.map(async p => { await p.start() }))
  await coord.assignInitial({ timeoutMs: 20_000 })
  return { coord, peers }
}

async function waitUntil (check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}


describe('a private cluster', () => {
  it('trains with the swarm key; a node without it, or with another key, cannot connect', async () => {
    const key = generateSwarmKey()
    const { coord } = await cluster(key)
    const r = await coord.runIteration({ timeoutMs: 30_000 })
    expect(Number.isFinite(r.loss)).toBe(true)
    // the record carries every stage's own compute, from its done report, within the iteration's time
    expect(r.computeMs).toHaveLength(r.gradNorms.length)
    for (const c of r.computeMs) expect(c > 0 && c <= r.ms).toBe(true)

    // an open node's dials are refused for as long as it keeps trying (here 3 s)
    const outsider = new Peer({ clusterId: 'sec', coordinatorId: coord.peerId, coordinatorAddrs: [coord.addrs[0]], joinTimeoutMs: 3000 })
    cleanup.push(async () => { await outsider.stop() })
    await expect(outsider.start()).rejects.toThrow(/cannot reach the coordinator at \S+ \(\d+ attempts over 3 s\): .*--swarm-key/)

    const wrongKey = await createPeerLibp2p({ swarmKey: generateSwarmKey() })
    cleanup.push(async () => { await wrongKey.stop() })
    const { multiaddr } = await import('@multiformats/multiaddr')
    await expect(wrongKey.dial(multiaddr(coord.addrs[0]), { signal: AbortSignal.timeout(3000) })).rejects.toThrow()
    expect(coord.peers.size).toBe(2)
  }, 60_000)
})

describe('control messages', () => {
  it('from a peer that is not the coordinator are ignored and logged', async () => {
    const { coord, peers } = await cluster()
    const { multiaddr } = await import('@multiformats/multiaddr')
    const evil = await createPeerLibp2p({})
    cleanup.push(async () => { await evil.stop() })
    await evil.dial(multiaddr(coord.addrs[0]))
    const topic = controlTopic('sec')
    evil.services.pubsub.subscribe(topic)
    await waitUntil(() => coord.node.services.pubsub.getSubscribers(topic).some(p => p.equals(evil.peerId)), 'the rogue subscription')
    const forged = encodeMessage({
      kind: 'assignment', clusterId: 'sec', runId: 'evil', epoch: 99, iteration: 0,
      stages: [{ stage: 0, peers: [], addrs: [] }], modelConfig: '{}', trainingConfig: '{}', rebuilt: []
    })
    await waitUntil(() => {
      void evil.services.pubsub.publish(topic, forged).catch(() => {})
      void evil.services.pubsub.publish(topic, encodeMessage({ kind: 'abort', epoch: 1, iteration: 0, reason: 'forged' })).catch(() => {})
      return peers.every(p => p.gossip.forgedControl > 0)
    }, 'the peers to see the forged messages')
    for (const p of peers) {
      expect(p.epoch).toBe(1)
      expect(p.stageIndex).toBeGreaterThanOrEqual(0)
    }
    // The cluster still follows the real coordinator.
    const r = await coord.runIteration({ timeoutMs: 30_000 })
    expect(Number.isFinite(r.loss)).toBe(true)
  }, 60_000)
})

describe('malformed activation frames', () => {
  it('are rejected with typed errors and the receiving peer keeps serving', async () => {
    const { coord, peers } = await cluster()
    const target = peers.find(p => p.stageIndex === 1) as Peer
    // Only the neighbour that feeds stage 1 may open an activations stream: it sends the bad frames.
    const source = peers.find(p => p.stageIndex === 0) as Peer
    const { multiaddr } = await import('@multiformats/multiaddr')
    const evil = await createPeerLibp2p({})
    cleanup.push(async () => { await evil.stop() })
    const addr = multiaddr(target.node.getMultiaddrs()[0].toString())
    const header = { runId: 'run', epoch: 1, iteration: 0, microbatch: 0, hop: 1, direction: 'forward' as const, shape: [2, 8, 16] }
    const good = new Float32Array(2 * 8 * 16)
    const nan = good.slice(); nan[7] = NaN
    const inf = good.slice(); inf[3] = Infinity
    const full = encodeTensorFrame(header, good)
    const fullBytes = new Uint8Array(full[0].length + full[1].length); fullBytes.set(full[0]); fullBytes.set(full[1], full[0].length)
    const cases: Array<{ name: string, code: string, from?: PeerLibp2p, send: (s: Awaited<ReturnType<typeof openStream>>) => Promise<void> }> = [
      { name: 'truncated frame', code: 'ERR_TRUNCATED_FRAME', send: async s => { await writeFrame(s, fullBytes.subarray(0, fullBytes.length - 10)) } },
      { name: 'wrong shape', code: 'ERR_UNEXPECTED_FRAME', send: async s => { await writeFrame(s, encodeTensorFrame({ ...header, shape: [2, 8, 15] }, new Float32Array(2 * 8 * 15))) } },
      { name: 'wrong dtype', code: 'ERR_BAD_DTYPE', send: async s => { await writeFrame(s, encodeTensorFrame(header, new Int32Array(2 * 8 * 16))) } },
      { name: 'NaN', code: 'ERR_NON_FINITE_TENSOR', send: async s => { await writeFrame(s, [full[0], new Uint8Array(nan.buffer)]) } },
      { name: 'Inf', code: 'ERR_NON_FINITE_TENSOR', send: async s => { await writeFrame(s, [full[0], new Uint8Array(inf.buffer)]) } },
      { name: 'garbage', code: 'ERR_', send: async s => { await writeFrame(s, new TextEncoder().encode('not a tensor frame at all')) } },
      // Well-formed, but the sender does not hold the stage that feeds this hop: refused at open.
      { name: 'frame from a non-neighbour', code: 'ERR_NOT_NEIGHBOUR', from: evil, send: async s => { await writeFrame(s, full).catch(() => {}) } },
      // A length prefix of 1 GiB: rejected from the prefix alone, before buffering anything.
      { name: 'oversized length prefix', code: 'ERR_FRAME_TOO_LARGE', send: async s => { s.send(encodeVarint(1024 * 1024 * 1024)); s.send(new Uint8Array(64)) } },
      // Within the protocol's limit but larger than this model's frames: also refused from the prefix.
      { name: 'frame larger than the model\'s', code: 'ERR_FRAME_TOO_LARGE', send: async s => { s.send(encodeVarint(fullBytes.length * 4)); s.send(new Uint8Array(64)) } }
    ]
    for (const c of cases) {
      const before = target.links.rejected
      const s = await openStream(c.from ?? source.node, addr, ACTIVATIONS_PROTOCOL)
      await c.send(s)
      await waitUntil(() => target.links.rejected > before, `rejection of the ${c.name}`)
      expect(target.links.lastRejection, c.name).toMatchObject({ code: expect.stringContaining(c.code) })
      s.abort(new Error('done'))
      await waitUntil(() => target.links.streamsFrom(source.peerId) === 0, `the ${c.name} stream to close`)
    }
    expect(target.stage?.pending).toBe(0)
    // Training goes on, with the same peer.
    const r = await coord.runIteration({ timeoutMs: 30_000 })
    expect(Number.isFinite(r.loss)).toBe(true)
    // the commit reaches the target: its state belongs to the iteration the coordinator just committed
    await waitUntil(() => target.stage?.iteration === r.iteration, `stage state of iteration ${r.iteration}`)
    expect(target.stage?.adam.step).toBe(r.iteration + 1)
  }, 60_000)
})

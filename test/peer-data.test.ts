/**
 * A peer's training data is ready before it is needed. A spare given a stage mid-run used to load
 * and tokenize the Brown corpus when the stage was installed, between its rebuild and its claim of
 * the stage: 0.4 to 0.8 s inside every recovery on a loaded 2-core host (bench:costmodel).
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Coordinator } from '../coordinator/index.js'
import { Peer } from '../node/index.js'
import { loadBrownCorpus } from '../model/index.js'

const model = { dModel: 16, nHeads: 2, nBlocks: 2, seqLen: 8 }
const train = { stages: 2, microbatches: 2, microbatchSize: 2 }
const cleanup: Array<() => Promise<void>> = []

afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {})
})

describe('a peer without data of its own', () => {
  it('holds the Brown corpus train split once started, as a spare, before any stage is assigned', async () => {
    const coord = new Coordinator({ clusterId: 'data', model, train })
    await coord.start()
    cleanup.push(async () => { await coord.stop() })
    const spare = new Peer({ clusterId: 'data', coordinatorId: coord.peerId, coordinatorAddrs: [coord.addrs[0]] })
    cleanup.push(async () => { await spare.stop() })
    expect(spare.trainTokens).toBeUndefined()
    await spare.start()
    expect(spare.runtime).toBeUndefined() // no stage: nothing installed yet
    expect(spare.trainTokens).toBe(loadBrownCorpus().train)
  })

  it('keeps the tokens it was given', async () => {
    const coord = new Coordinator({ clusterId: 'data2', model, train })
    await coord.start()
    cleanup.push(async () => { await coord.stop() })
    const tokens = new Uint8Array(4096).map((_, i) => (i * 7) % 256)
    const peer = new Peer({ clusterId: 'data2', coordinatorId: coord.peerId, coordinatorAddrs: [coord.addrs[0]], trainTokens: tokens })
    cleanup.push(async () => { await peer.stop() })
    await peer.start()
    expect(peer.trainTokens).toBe(tokens)
  })
})

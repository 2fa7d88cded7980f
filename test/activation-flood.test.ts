/**
 * Failure 7 of issue 10: a host with no role in the cluster made a stage peer buffer 1.1 GB by
 * opening activation streams and announcing maximal frames. Now a peer admits activations only from
 * the neighbours of its stage under the current epoch, a frame only up to the model's frame size,
 * and at most ACTIVATION_FRAMES_IN_FLIGHT frames per sender; everything else is refused before it
 * is buffered. The first test floods a real peer process while it trains; the second checks the
 * per-sender budget against a sender that the policy does admit.
 */
import { readFileSync } from 'node:fs'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { initBackend } from '../model/backend.js'
import { ActivationLinks, activationMemoryBudget, type ActivationPolicy } from '../node/activations.js'
import { createPeerLibp2p, encodeVarint, openStream, waitForDrain, type PeerLibp2p } from '../net/index.js'
import {
  ACTIVATIONS_PROTOCOL, ACTIVATION_FRAMES_IN_FLIGHT, MAX_ACTIVATION_STREAMS_PER_PEER, MAX_TENSOR_FRAME_BYTES, tensorFrameBytes
} from '../protocols/index.js'
import { TestCluster } from './helpers/cluster.js'
import { killAll } from './helpers/procs.js'

const MiB = 1024 * 1024
const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 2, microbatches: 2, microbatchSize: 4 }

let cluster: TestCluster | undefined
const cleanup: Array<() => Promise<void>> = []

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {})
  await cluster?.stop().catch(() => {})
  cluster = undefined
  await killAll()
})

/** Resident memory of a process, from /proc/<pid>/status. */
function rssBytes (pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m == null) throw new Error(`no VmRSS for process ${pid}`)
  return Number(m[1]) * 1024
}

async function waitUntil (check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/**
 * Opens an activations stream to `target`, announces a `length`-byte frame and sends up to `body`
 * bytes of it, as fast as the stream takes them, until `deadline` (ms since the epoch). Returns the
 * bytes the stream accepted (it stops when the receiver refuses or resets the stream).
 */
async function announceAndSend (from: PeerLibp2p, target: Parameters<typeof openStream>[1], length: number, body: number, deadline = Date.now() + 20_000): Promise<{ stream?: Stream, sent: number }> {
  let stream: Stream
  try {
    stream = await openStream(from, target, ACTIVATIONS_PROTOCOL, { timeoutMs: 5000 })
  } catch {
    return { sent: 0 }
  }
  const chunk = new Uint8Array(MiB).fill(7)
  let sent = 0
  try {
    stream.send(encodeVarint(length))
    while (sent < body && Date.now() < deadline) {
      const part = chunk.subarray(0, Math.min(MiB, body - sent))
      if (!stream.send(part)) await waitForDrain(stream, AbortSignal.timeout(Math.max(1, deadline - Date.now())))
      sent += part.byteLength
    }
  } catch {
    // refused or reset by the receiver (or out of time): what it took so far is all it costs
  }
  return { stream, sent }
}

describe('a stranger flooding a stage peer with maximal activation frames', () => {
  it('raises its memory by at most the stated budget, and training goes on', async () => {
    cluster = new TestCluster({ clusterId: 'flood', model, train, strategy: 'checkfree' })
    const c = cluster
    await c.start(2)
    await c.coord.assignInitial({ timeoutMs: 60_000 })
    for (let i = 0; i < 3; i++) await c.coord.runIteration({ timeoutMs: 60_000 })
    const epoch = c.coord.epoch
    const victim = c.holder(1)
    const victimAddr = multiaddr(c.coord.assignment?.stages[1].addrs[0] as string)
    const budget = activationMemoryBudget(tensorFrameBytes([train.microbatchSize, model.seqLen, model.dModel]))

    // Training keeps running through the flood.
    const committed: number[] = []
    let flooding = true
    const training = (async () => {
      while (flooding || committed.length < 3) committed.push((await c.coord.runIteration({ timeoutMs: 60_000 })).iteration)
    })()
    const pid = victim.proc.child.pid as number
    const rss0 = rssBytes(pid)
    let peak = rss0
    const sampler = setInterval(() => { try { peak = Math.max(peak, rssBytes(pid)) } catch {} }, 50)
    cleanup.push(async () => { clearInterval(sampler) })

    // The attacker holds the cluster secret (where there is one) but no stage: it can connect, not
    // be a neighbour. Waves of 8 streams (64 at most, libp2p's old per-protocol limit), each
    // announcing a maximal frame and sending up to 48 MiB of it, 512 MiB in all at most, for 30 s
    // at most: an unbounded reader keeps all of it.
    const attacker = await createPeerLibp2p({ swarmKey: c.swarmKey })
    cleanup.push(async () => { await attacker.stop() })
    const deadline = Date.now() + 30_000
    const streams: Stream[] = []
    let sent = 0
    let attempts = 0
    for (let wave = 0; wave < 8 && Date.now() < deadline && sent < 512 * MiB; wave++) {
      const results = await Promise.all(Array.from({ length: 8 }, async () => await announceAndSend(attacker, victimAddr, MAX_TENSOR_FRAME_BYTES, 48 * MiB, deadline)))
      attempts += results.length
      for (const r of results) {
        if (r.stream != null) streams.push(r.stream)
        sent += r.sent
      }
    }
    await new Promise(resolve => setTimeout(resolve, 1000)) // let the victim take what is in flight
    peak = Math.max(peak, rssBytes(pid))
    clearInterval(sampler)
    for (const s of streams) s.abort(new Error('done'))
    flooding = false

    expect(peak - rss0, `victim RSS grew by ${((peak - rss0) / MiB).toFixed(0)} MiB while ${(sent / MiB).toFixed(0)} MiB on ${attempts} streams were pushed at it; budget ${(budget / MiB).toFixed(0)} MiB`).toBeLessThanOrEqual(budget)
    await training
    expect(committed.length).toBeGreaterThanOrEqual(3)
    // no recovery was needed: the same peers, in the same epoch
    expect(c.coord.epoch).toBe(epoch)
    expect(c.holder(1).peerId).toBe(victim.peerId)
  }, 180_000)
})

describe('the per-sender budget', () => {
  it('admits at most ACTIVATION_FRAMES_IN_FLIGHT frames and MAX_ACTIVATION_STREAMS_PER_PEER streams, even from a neighbour', async () => {
    const [receiver, sender] = await Promise.all([createPeerLibp2p({}), createPeerLibp2p({})])
    cleanup.push(async () => { await Promise.all([receiver.stop(), sender.stop()]) })
    const frames: number[] = []
    const policy: ActivationPolicy = { senders: new Set([sender.peerId.toString()]), maxFrameBytes: 64 * 1024 }
    const links = new ActivationLinks(receiver, { policy: () => policy, onFrame: (h) => { frames.push(h.iteration) } })
    await links.start()
    cleanup.push(async () => { await links.stop() })
    const from = sender.peerId.toString()
    const to = receiver.getMultiaddrs()

    // More streams than allowed, each announcing a maximal frame and sending half of it: libp2p
    // resets the streams beyond the limit, the budget discards the frames beyond it unread.
    const open = await Promise.all(Array.from({ length: MAX_ACTIVATION_STREAMS_PER_PEER + 2 }, async () => await announceAndSend(sender, to, policy.maxFrameBytes, policy.maxFrameBytes / 2)))
    cleanup.push(async () => { for (const s of open) s.stream?.abort(new Error('done')) })
    await waitUntil(() => links.rejected >= MAX_ACTIVATION_STREAMS_PER_PEER - ACTIVATION_FRAMES_IN_FLIGHT, 'the refusals')
    expect(links.streamsFrom(from)).toBe(MAX_ACTIVATION_STREAMS_PER_PEER)
    expect(links.admittedBytes(from)).toBe(ACTIVATION_FRAMES_IN_FLIGHT * policy.maxFrameBytes)
    expect(links.lastRejection).toMatchObject({ code: 'ERR_ACTIVATION_BUDGET' })

    // Once the sender gives up, its budget is free again.
    for (const s of open) s.stream?.abort(new Error('done'))
    await waitUntil(() => links.streamsFrom(from) === 0 && links.admittedBytes(from) === 0, 'the budget to be released')

    // A frame larger than the model's is refused from its length prefix, and the stream with it.
    const before = links.rejected
    const big = await announceAndSend(sender, to, policy.maxFrameBytes + 1, 1024)
    cleanup.push(async () => { big.stream?.abort(new Error('done')) })
    await waitUntil(() => links.rejected > before, 'the oversized frame to be refused')
    expect(links.lastRejection).toMatchObject({ code: 'ERR_FRAME_TOO_LARGE' })
    await waitUntil(() => links.streamsFrom(from) === 0, 'the oversized stream to be closed')
    expect(frames).toEqual([])
  }, 60_000)

  it('refuses streams from a peer the policy does not name, and from everyone before an assignment', async () => {
    const [receiver, stranger] = await Promise.all([createPeerLibp2p({}), createPeerLibp2p({})])
    cleanup.push(async () => { await Promise.all([receiver.stop(), stranger.stop()]) })
    let policy: ActivationPolicy | undefined
    const links = new ActivationLinks(receiver, { policy: () => policy, onFrame: () => {} })
    await links.start()
    cleanup.push(async () => { await links.stop() })
    for (const p of [undefined, { senders: new Set(['someone-else']), maxFrameBytes: 1024 }]) {
      policy = p
      const before = links.rejected
      const s = await announceAndSend(stranger, receiver.getMultiaddrs(), 512, 512)
      cleanup.push(async () => { s.stream?.abort(new Error('done')) })
      await waitUntil(() => links.rejected > before, 'the refusal')
      expect(links.lastRejection).toMatchObject({ code: 'ERR_NOT_NEIGHBOUR' })
      expect(links.streamsFrom(stranger.peerId.toString())).toBe(0)
    }
  }, 60_000)
})

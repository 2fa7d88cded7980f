import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it } from 'vitest'
import { ConfigError } from '../common/index.js'
import { mulberry32 } from '../model/rng.js'
import {
  ALLREDUCE_PROTOCOL, AllReduceAbortedError, AllReduceError, AllReduceProtocolError, AllReduceTimeoutError, NotInGroupError, PeerLostError,
  RoundKeyMismatchError, createPeerLibp2p, encodeVarint, openStream, readFrames, roundKeyString, startAllReduce, writeFrame,
  type AllReduceInit, type AllReduceResult, type AllReduceRoundKey, type AllReduceService, type PeerLibp2p
} from '../net/index.js'
import { chunkRanges, decodeFrame, encodeHeader, groupDigest, piecePreamble } from '../net/allreduce/codec.js'
import { PIECE_ELEMENTS } from '../net/allreduce/constants.js'
import { FlatView } from '../net/allreduce/flat-view.js'

const nodes: PeerLibp2p[] = []
const services: AllReduceService[] = []
afterEach(async () => {
  await Promise.allSettled(services.splice(0).map(async s => { await s.stop() }))
  await Promise.allSettled(nodes.splice(0).map(async n => { await n.stop() }))
})

interface Member { node: PeerLibp2p, service: AllReduceService, id: string, refused: AllReduceError[] }

/** `count` nodes on 127.0.0.1, each knowing the others' addresses, each running the all-reduce service. */
async function startMembers (count: number, init: (i: number) => AllReduceInit = () => ({})): Promise<Member[]> {
  const started = await Promise.all(Array.from({ length: count }, async () => {
    const node = await createPeerLibp2p({ gossipHeartbeatMs: 50 })
    nodes.push(node)
    return node
  }))
  for (const a of started) {
    for (const b of started) if (a !== b) await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
  }
  return await Promise.all(started.map(async (node, i) => {
    const refused: AllReduceError[] = []
    const own = init(i)
    const service = await startAllReduce(node, { ...own, onRefused: (err, from) => { refused.push(err); own.onRefused?.(err, from) } })
    services.push(service)
    return { node, service, id: node.peerId.toString(), refused }
  }))
}

/** Gradient-like values: both signs, magnitudes over several decades. */
function randomTensors (rng: () => number, sizes: number[]): Float32Array[] {
  return sizes.map(n => {
    const t = new Float32Array(n)
    for (let i = 0; i < n; i++) t[i] = (rng() * 2 - 1) * 10 ** Math.floor(rng() * 6 - 3)
    return t
  })
}

function bytesOf (t: Float32Array): Buffer {
  return Buffer.from(t.buffer, t.byteOffset, t.byteLength)
}

/**
 * Every member's result is the float64 mean of the inputs within 1e-6 relative, measured against
 * the mean magnitude of the terms (what bounds float32 summation error; for terms of one sign it is
 * the mean itself), and every member's result has the same bytes as member 0's.
 */
function expectMeanAndIdentical (inputs: Float32Array[][], results: AllReduceResult[]): void {
  const n = inputs.length
  for (const r of results) expect(r.tensors.length).toBe(inputs[0].length)
  for (let t = 0; t < inputs[0].length; t++) {
    const got = results[0].tensors[t]
    expect(got.length).toBe(inputs[0][t].length)
    let worst = 0
    for (let i = 0; i < got.length; i++) {
      let sum = 0
      let abs = 0
      for (let m = 0; m < n; m++) { sum += inputs[m][t][i]; abs += Math.abs(inputs[m][t][i]) }
      const err = Math.abs(got[i] - sum / n) / Math.max(abs / n, Number.MIN_VALUE)
      if (err > worst) worst = err
    }
    expect(worst, `tensor ${t}: worst relative error`).toBeLessThanOrEqual(1e-6)
    for (const r of results.slice(1)) expect(bytesOf(r.tensors[t]).equals(bytesOf(got)), `tensor ${t} bytes`).toBe(true)
  }
}

/** What `p` rejects with (fails if it resolves), and after how many ms from `t0`. */
async function rejection (p: Promise<unknown>, t0 = performance.now()): Promise<{ err: unknown, ms: number }> {
  try {
    await p
  } catch (err) {
    return { err, ms: performance.now() - t0 }
  }
  throw new Error('expected a rejection')
}

describe('FlatView: a received piece folded in from the transport\'s buffers', () => {
  /** `bytes` cut at `cuts` into parts at odd offsets of their own buffers (as decrypted noise messages are). */
  function parts (bytes: Uint8Array, cuts: number[], pad: number): Uint8Array[] {
    const out: Uint8Array[] = []
    let at = 0
    for (const end of [...cuts, bytes.byteLength]) {
      const buf = new Uint8Array(pad + end - at + 3)
      buf.set(bytes.subarray(at, end), pad)
      out.push(buf.subarray(pad, pad + end - at))
      at = end
    }
    return out
  }

  it.each([0, 1, 2, 3])('adds and sets floats split across parts, aligned or not (buffer offset %i)', (pad) => {
    const rng = mulberry32(90 + pad)
    const count = 70_000 // more than one staging buffer (16 384 floats) in one part
    const src = randomTensors(rng, [count])[0]
    const srcBytes = new Uint8Array(src.buffer)
    const skip = 8 // a piece's preamble
    const framed = new Uint8Array(skip + srcBytes.byteLength)
    framed.set(srcBytes, skip)
    // cuts inside floats, at float boundaries, a 1-byte part, and a part that ends inside the preamble
    const list = parts(framed, [3, 11, 12, 13, 14, 70_001, 70_004, 200_003, framed.byteLength - 1], pad)
    const [a, b] = randomTensors(rng, [33_333, 60_000])
    const want = [a.slice(), b.slice()]
    const start = 12_345
    for (let i = 0; i < count; i++) {
      const at = start + i
      if (at < a.length) want[0][at] += src[i]
      else want[1][at - a.length] += src[i]
    }
    const view = new FlatView([a, b])
    view.addParts(start, list, skip, count)
    expect(bytesOf(a).equals(bytesOf(want[0]))).toBe(true)
    expect(bytesOf(b).equals(bytesOf(want[1]))).toBe(true)
    view.setParts(start, list, skip, count)
    const flat = new Float32Array(a.length + b.length)
    flat.set(a)
    flat.set(b, a.length)
    expect(bytesOf(flat.subarray(start, start + count)).equals(bytesOf(src))).toBe(true)
    expect(() => { view.addParts(start, list, skip, count - 1) }).toThrow(RangeError)
  })
})

describe('ring all-reduce', () => {
  it.each([2, 3, 4])('%i members: the mean of awkward sizes, bit-identical on every member, two rounds back to back', async (n) => {
    const members = await startMembers(n)
    const group = members.map(m => m.id)
    const sizes = [7, 1000, 3] // 1010 elements: not a multiple of 3 or 4
    const rng = mulberry32(1000 + n)
    const rounds = [0, 1].map(() => members.map(() => randomTensors(rng, sizes)))
    // no barrier between the rounds: each member starts round 1 as soon as its round 0 is done
    const results = await Promise.all(members.map(async (m, i) => {
      const out: AllReduceResult[] = []
      for (const [iteration, inputs] of rounds.entries()) {
        out.push(await m.service.allReduce({ group, key: { runId: 'awk', epoch: 1, iteration, stage: 2 }, tensors: inputs[i], timeoutMs: 10_000 }))
      }
      return out
    }))
    for (const [iteration, inputs] of rounds.entries()) expectMeanAndIdentical(inputs, results.map(r => r[iteration]))
    const total = 1010 * 4
    const sent = results.reduce((s, r) => s + r[0].bytesSent, 0)
    const received = results.reduce((s, r) => s + r[0].bytesReceived, 0)
    expect(sent).toBe(2 * (n - 1) * total) // bandwidth-optimal: 2(N-1)/N of the data per member
    expect(received).toBe(sent)
    for (const [i, r] of results.entries()) {
      expect(r[0].rank).toBe(i)
      expect(r[0].groupSize).toBe(n)
      expect(r[0].ms).toBeGreaterThan(0)
    }
    // the inputs were not touched (inPlace is off)
    expect(rounds[0][0][1]).not.toBe(results[0][0].tensors[1])
    for (const m of members) expect(m.refused).toEqual([])
  })

  it('op sum: the sum, bit-identical on every member; members that disagree on the op are refused', async () => {
    const members = await startMembers(3)
    const group = members.map(m => m.id)
    const rng = mulberry32(77)
    const inputs = members.map(() => randomTensors(rng, [5, 301]))
    const results = await Promise.all(members.map(async (m, i) => await m.service.allReduce({ group, key: 'sum-round', tensors: inputs[i], op: 'sum', timeoutMs: 10_000 })))
    for (let t = 0; t < inputs[0].length; t++) {
      for (let i = 0; i < inputs[0][t].length; i++) {
        const want = inputs.reduce((acc, x) => acc + x[t][i], 0)
        const abs = inputs.reduce((acc, x) => acc + Math.abs(x[t][i]), 0)
        expect(Math.abs(results[0].tensors[t][i] - want)).toBeLessThanOrEqual(1e-6 * Math.max(abs, Number.MIN_VALUE))
      }
      for (const r of results) expect(bytesOf(r.tensors[t]).equals(bytesOf(results[0].tensors[t]))).toBe(true)
    }
    // a pair that has just done a round together: the refusal must still reach both callers
    const [a, b] = await startMembers(2)
    const pair = [a.id, b.id]
    await Promise.all([a, b].map(async m => await m.service.allReduce({ group: pair, key: 'warm', tensors: randomTensors(rng, [10]), op: 'sum', timeoutMs: 5000 })))
    const settled = await Promise.allSettled([
      a.service.allReduce({ group: pair, key: 'op-mismatch', tensors: randomTensors(rng, [10]), op: 'sum', timeoutMs: 5000 }),
      b.service.allReduce({ group: pair, key: 'op-mismatch', tensors: randomTensors(rng, [10]), timeoutMs: 5000 })
    ])
    for (const r of settled) {
      expect(r.status).toBe('rejected')
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(RoundKeyMismatchError)
    }
  })

  it('a group of 1 returns a copy of its input', async () => {
    const [m] = await startMembers(1)
    const input = randomTensors(mulberry32(1), [5, 3])
    const r = await m.service.allReduce({ group: [m.id], key: 'solo:e0:i0:s0', tensors: input })
    expect(r.groupSize).toBe(1)
    expect(r.tensors[0]).not.toBe(input[0])
    for (let t = 0; t < input.length; t++) expect(bytesOf(r.tensors[t]).equals(bytesOf(input[t]))).toBe(true)
    expect(r.bytesSent + r.bytesReceived).toBe(0)
  })

  it('a predecessor that begins first: its stream waits for the round and is handed over', async () => {
    const [a, b] = await startMembers(2)
    const group = [a.id, b.id]
    const rng = mulberry32(5)
    // 300 000 elements: a's first chunk (600 KB) is more than the muxer lets it send unread
    const inputs = [a, b].map(() => randomTensors(rng, [300_000]))
    const key = { runId: 'early', epoch: 0, iteration: 0, stage: 0 }
    const pa = a.service.allReduce({ group, key, tensors: inputs[0], timeoutMs: 10_000 })
    const deadline = performance.now() + 5000
    while (b.service.stats.pending === 0 && performance.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    expect(b.service.stats.pending).toBe(1)
    await new Promise(resolve => setTimeout(resolve, 100)) // a is now blocked on back-pressure
    const pb = b.service.allReduce({ group, key, tensors: inputs[1], timeoutMs: 10_000 })
    const [ra, rb] = await Promise.all([pa, pb])
    expectMeanAndIdentical(inputs, [ra, rb])
    expect(b.service.stats.pending).toBe(0)
    expect(ra.waitMs).toBeGreaterThanOrEqual(100) // a waited for b's stream
    expect(rb.waitMs).toBeLessThan(ra.waitMs)
  })

  it('fewer elements than members, empty tensors, and inPlace', async () => {
    const members = await startMembers(4)
    const group = members.map(m => m.id)
    const rng = mulberry32(7)
    const inputs = members.map(() => randomTensors(rng, [1, 0, 2])) // 3 elements in 4 chunks: one is empty
    const copies = inputs.map(ts => ts.map(t => t.slice()))
    const results = await Promise.all(members.map(async (m, i) =>
      await m.service.allReduce({ group, key: 'tiny:e0:i0:s0', tensors: inputs[i], inPlace: true, timeoutMs: 10_000 })))
    expectMeanAndIdentical(copies, results)
    for (const [i, r] of results.entries()) expect(r.tensors[2]).toBe(inputs[i][2])
  })

  it('NaN and Inf pass through without breaking the round, bit-identically', async () => {
    const members = await startMembers(3)
    const group = members.map(m => m.id)
    const rng = mulberry32(3)
    const inputs = members.map(() => randomTensors(rng, [50]))
    inputs[0][0][3] = NaN
    inputs[1][0][10] = Infinity
    inputs[2][0][20] = Infinity
    inputs[1][0][20] = -Infinity // Inf + -Inf = NaN
    inputs[2][0][49] = -Infinity
    const results = await Promise.all(members.map(async (m, i) => await m.service.allReduce({ group, key: 'nan:e0:i0:s0', tensors: inputs[i], timeoutMs: 10_000 })))
    const out = results[0].tensors[0]
    expect(out[3]).toBeNaN()
    expect(out[10]).toBe(Infinity)
    expect(out[20]).toBeNaN()
    expect(out[49]).toBe(-Infinity)
    expect(out[0]).toBeCloseTo((inputs[0][0][0] + inputs[1][0][0] + inputs[2][0][0]) / 3, 5)
    for (const r of results.slice(1)) expect(bytesOf(r.tensors[0]).equals(bytesOf(out))).toBe(true)
  })

  it('3 members whose chunks differ in piece count (one is a piece and an element), each piece forwarded as it is folded in', async () => {
    const members = await startMembers(3)
    const group = members.map(m => m.id)
    const rng = mulberry32(31)
    // 3 * PIECE_ELEMENTS + 1 elements: chunk 0 has two pieces, chunks 1 and 2 one each, so the
    // pieces a member sends and receives at one step differ in number
    const sizes = [PIECE_ELEMENTS, 2 * PIECE_ELEMENTS - 5, 6]
    expect(chunkRanges(3 * PIECE_ELEMENTS + 1, 3).map(c => Math.ceil(c.length / PIECE_ELEMENTS))).toEqual([2, 1, 1])
    for (const op of ['mean', 'sum'] as const) {
      const inputs = members.map(() => randomTensors(rng, sizes))
      const copies = inputs.map(ts => ts.map(t => t.slice()))
      const results = await Promise.all(members.map(async (m, i) =>
        await m.service.allReduce({ group, key: `uneven-${op}:e0:i0:s0`, tensors: inputs[i], op, inPlace: true, timeoutMs: 30_000 })))
      if (op === 'mean') expectMeanAndIdentical(copies, results)
      else {
        for (let t = 0; t < sizes.length; t++) {
          for (const r of results) expect(bytesOf(r.tensors[t]).equals(bytesOf(results[0].tensors[t]))).toBe(true)
          for (let i = 0; i < sizes[t]; i += 997) {
            const want = copies.reduce((acc, x) => acc + x[t][i], 0)
            const abs = copies.reduce((acc, x) => acc + Math.abs(x[t][i]), 0)
            expect(Math.abs(results[0].tensors[t][i] - want)).toBeLessThanOrEqual(1e-6 * Math.max(abs, Number.MIN_VALUE))
          }
        }
      }
      expect(results.reduce((sum, r) => sum + r.bytesSent, 0)).toBe(2 * 2 * (3 * PIECE_ELEMENTS + 1) * 4)
    }
  })

  it('1M floats: 4 members, and 2 members with chunks larger than one piece frame', async () => {
    const members = await startMembers(4)
    const rng = mulberry32(42)
    const sizes = [1_000_000, 3]
    for (const n of [4, 2]) {
      const group = members.slice(0, n).map(m => m.id)
      const inputs = members.slice(0, n).map(() => randomTensors(rng, sizes))
      const results = await Promise.all(members.slice(0, n).map(async (m, i) =>
        await m.service.allReduce({ group, key: `big:e0:i${n}:s0`, tensors: inputs[i], timeoutMs: 30_000 })))
      expectMeanAndIdentical(inputs, results)
      const ms = Math.max(...results.map(r => r.ms))
      process.stdout.write(`all-reduce of ${sizes[0] + sizes[1]} floats over ${n} members on loopback: ${ms.toFixed(0)} ms (slowest member), ${results[0].bytesSent} bytes sent per member\n`)
    }
  })
})

describe('ring all-reduce failures', () => {
  it('a member stopped mid-round: the others reject within the timeout, naming it', async () => {
    let onStall!: () => void
    const stalled = new Promise<void>(resolve => { onStall = resolve })
    const members = await startMembers(3, i => i === 2 ? { faults: { stallBeforeStep: 1, onStall: () => { onStall() } } } : {})
    const group = members.map(m => m.id)
    const rng = mulberry32(11)
    const calls = members.map(async m => await m.service.allReduce({ group, key: 'lost:e0:i0:s0', tensors: randomTensors(rng, [7, 1000, 3]), timeoutMs: 3000 }))
    await stalled
    const t0 = performance.now()
    const stopping = members[2].node.stop()
    const [a, b, c] = await Promise.all(calls.map(async p => await rejection(p, t0)))
    await stopping
    const lost = members[2].id
    for (const { err, ms } of [a, b]) {
      expect(err).toBeInstanceOf(AllReduceError)
      const e = err as AllReduceError
      expect(e).toSatisfy((x: unknown) => x instanceof PeerLostError || x instanceof AllReduceAbortedError)
      expect(e.peer).toBe(lost)
      expect(e.step).toBeTypeOf('number')
      expect(ms).toBeLessThan(3000)
    }
    expect(c.err).toBeInstanceOf(Error) // the stopped member's own call does not hang either
  })

  it('a member that never calls: the others reject within the timeout they passed, naming it', async () => {
    const members = await startMembers(3)
    const group = members.map(m => m.id)
    const rng = mulberry32(12)
    const t0 = performance.now()
    // member 0 waits for its predecessor (member 2) until its own 1 s timeout; member 1 (2 s) hears
    // of it from member 0 before its own deadline
    const [a, b] = await Promise.all(members.slice(0, 2).map(async (m, i) =>
      await rejection(m.service.allReduce({ group, key: 'absent:e0:i0:s0', tensors: randomTensors(rng, [100]), timeoutMs: 1000 * (i + 1) }), t0)))
    expect(a.err).toBeInstanceOf(AllReduceTimeoutError)
    expect((a.err as AllReduceError).peer).toBe(members[2].id)
    expect(b.err).toBeInstanceOf(AllReduceAbortedError)
    expect((b.err as AllReduceAbortedError).originCode).toBe('ERR_ALLREDUCE_TIMEOUT')
    expect((b.err as AllReduceAbortedError).reportedBy).toBe(members[0].id)
    expect((b.err as AllReduceError).peer).toBe(members[2].id)
    for (const { ms } of [a, b]) {
      expect(ms).toBeGreaterThanOrEqual(950)
      expect(ms).toBeLessThan(1900)
    }
  })

  it('a caller\'s abort rejects its call with its reason and the others\' with AllReduceAbortedError', async () => {
    const controller = new AbortController()
    const members = await startMembers(3, i => i === 1 ? { faults: { stallBeforeStep: 1, onStall: () => { controller.abort(new Error('caller gave up')) } } } : {})
    const group = members.map(m => m.id)
    const rng = mulberry32(13)
    const results = await Promise.all(members.map(async (m, i) => await rejection(m.service.allReduce({
      group, key: 'cancel:e0:i0:s0', tensors: randomTensors(rng, [64]), timeoutMs: 5000, signal: i === 1 ? controller.signal : undefined
    }))))
    expect((results[1].err as Error).message).toBe('caller gave up')
    for (const i of [0, 2]) {
      const e = results[i].err as AllReduceAbortedError
      expect(e).toBeInstanceOf(AllReduceAbortedError)
      expect(e.originCode).toBe('ERR_ALLREDUCE_CANCELLED')
      expect(e.peer).toBe(members[1].id)
      expect(results[i].ms).toBeLessThan(2000)
    }
  })

  it('a stranger\'s stream is refused (NotInGroupError) and does not change a concurrent round', async () => {
    const [a, b, c, stranger] = await startMembers(4)
    const group = [a.id, b.id, c.id]
    const key = { runId: 'strange', epoch: 0, iteration: 5, stage: 1 }
    const rng = mulberry32(14)
    const inputs = [a, b, c].map(() => randomTensors(rng, [7, 1000, 3]))
    // a and b begin; a waits for its predecessor c, whose call comes only after the stranger tried
    const pa = a.service.allReduce({ group, key, tensors: inputs[0], timeoutMs: 10_000 })
    const pb = b.service.allReduce({ group, key, tensors: inputs[1], timeoutMs: 10_000 })
    // the stranger claims a group of itself and a, under the same round key
    const s = await rejection(stranger.service.allReduce({ group: [stranger.id, a.id], key, tensors: randomTensors(rng, [7, 1000, 3]), timeoutMs: 5000 }))
    expect(s.err).toBeInstanceOf(NotInGroupError)
    expect((s.err as NotInGroupError).remote).toBe(true)
    expect((s.err as NotInGroupError).peer).toBe(a.id)
    expect(s.ms).toBeLessThan(2000)
    expect(a.refused).toHaveLength(1)
    expect(a.refused[0]).toBeInstanceOf(NotInGroupError)
    expect(a.refused[0].peer).toBe(stranger.id)
    const pc = c.service.allReduce({ group, key, tensors: inputs[2], timeoutMs: 10_000 })
    expectMeanAndIdentical(inputs, await Promise.all([pa, pb, pc]))
    expect(a.service.stats.refused).toBe(1)
  })

  it('a wrong round key is refused on both sides (RoundKeyMismatchError)', async () => {
    const [a, b] = await startMembers(2)
    const group = [a.id, b.id]
    const rng = mulberry32(15)
    const t0 = performance.now()
    const [ra, rb] = await Promise.all([
      rejection(a.service.allReduce({ group, key: { runId: 'run', epoch: 3, iteration: 9, stage: 0 }, tensors: randomTensors(rng, [10]), timeoutMs: 5000 }), t0),
      rejection(b.service.allReduce({ group, key: { runId: 'run', epoch: 3, iteration: 10, stage: 0 }, tensors: randomTensors(rng, [10]), timeoutMs: 5000 }), t0)
    ])
    for (const [r, self, other] of [[ra, a, b], [rb, b, a]] as const) {
      expect(r.err).toBeInstanceOf(RoundKeyMismatchError)
      expect(r.ms).toBeLessThan(2000)
      // each side refused the other's stream, and its own call names the member that refused it
      expect(self.refused.some(e => e instanceof RoundKeyMismatchError && e.peer === other.id)).toBe(true)
    }
    const e = ra.err as RoundKeyMismatchError
    if (e.remote) {
      expect(e.peer).toBe(b.id)
      expect(e.expected).toBe('run:e3:i10:s0')
      expect(e.actual).toBe('run:e3:i9:s0')
    }
  })

  // Groups change between epochs (a replica dies, another joins): two members of a 3-member round
  // then run a round of their own. A key mismatch between them must reach both callers at once: the
  // refusal of the first stream ends that member's round before the other's stream arrives (warm
  // connections), and that stream used to be held as an early one until the caller's timeout.
  describe('after a 3-member round, a pair of its members', () => {
    type Keys = (i: number, attempt: number) => { key: string | AllReduceRoundKey, op?: 'mean' | 'sum' }
    /** [a, b, c] do one round; then the pair (a and b in `order`), and how to run a round of theirs: member i of the pair with keys(i, attempt). */
    async function regroup (order: '[a, b]' | '[b, a]'): Promise<{ pair: Member[], round: (keys: Keys, attempt: number) => { inputs: Float32Array[][], calls: Array<Promise<AllReduceResult>>, t0: number } }> {
      const members = await startMembers(3)
      const rng = mulberry32(order === '[a, b]' ? 16 : 17)
      const triple = members.map(() => randomTensors(rng, [10, 3]))
      const key = { runId: 'regroup', epoch: 0, iteration: 0, stage: 1 }
      expectMeanAndIdentical(triple, await Promise.all(members.map(async (m, i) =>
        await m.service.allReduce({ group: members.map(x => x.id), key, tensors: triple[i], timeoutMs: 5000 }))))
      const pair = order === '[a, b]' ? [members[0], members[1]] : [members[1], members[0]]
      const group = pair.map(m => m.id)
      const round = (keys: Keys, attempt: number): { inputs: Float32Array[][], calls: Array<Promise<AllReduceResult>>, t0: number } => {
        const inputs = pair.map(() => randomTensors(rng, [10, 3]))
        const t0 = performance.now()
        // which of the two calls first alternates: the refusal that lands first decides the race
        const first = attempt % 2
        const calls: Array<Promise<AllReduceResult>> = []
        for (const i of [first, 1 - first]) calls[i] = pair[i].service.allReduce({ group, ...keys(i, attempt), tensors: inputs[i], timeoutMs: 5000 })
        return { inputs, calls, t0 }
      }
      return { pair, round }
    }

    const epochKey = (epoch: number, iteration: number): AllReduceRoundKey => ({ runId: 'regroup', epoch, iteration, stage: 1 })
    const mismatches: Record<'op' | 'epoch', Keys> = {
      // the service makes these 'op-mismatch:sum' and 'op-mismatch' (first attempt)
      op: (i, attempt) => ({ key: attempt === 0 ? 'op-mismatch' : `op-mismatch-${attempt}`, op: i === 0 ? 'sum' : undefined }),
      epoch: (i, attempt) => ({ key: epochKey(1 + i, attempt) })
    }
    const matches: Record<'op' | 'epoch', Keys> = {
      op: (_i, attempt) => ({ key: `op-match-${attempt}`, op: 'sum' }),
      epoch: (_i, attempt) => ({ key: epochKey(1, attempt) })
    }

    // the mismatch is a race (which refusal lands first), so each case tries it 4 times, alternating who calls first
    it.each([['[a, b]', 'op'], ['[b, a]', 'op'], ['[a, b]', 'epoch'], ['[b, a]', 'epoch']] as const)('%s, keys differing in the %s: both refuse at once (RoundKeyMismatchError)', async (order, what) => {
      const { pair, round } = await regroup(order)
      for (let attempt = 0; attempt < 4; attempt++) {
        const before = pair.map(m => m.refused.length)
        const { calls, t0 } = round(mismatches[what], attempt)
        const results = await Promise.all(calls.map(async p => await rejection(p, t0)))
        for (const [i, r] of results.entries()) {
          const self = pair[i]
          const other = pair[1 - i]
          expect(r.err, `attempt ${attempt}, member ${i}: ${(r.err as Error).message}`).toBeInstanceOf(RoundKeyMismatchError)
          expect(r.ms).toBeLessThan(2000)
          // each side refused the other's stream
          expect(self.refused.slice(before[i]).some(e => e instanceof RoundKeyMismatchError && e.peer === other.id)).toBe(true)
        }
        for (const m of pair) expect(m.service.stats.pending).toBe(0)
      }
    })

    it.each([['[a, b]', 'op'], ['[b, a]', 'op'], ['[a, b]', 'epoch'], ['[b, a]', 'epoch']] as const)('%s, keys matching (%s): the round succeeds, bit-identical', async (order, what) => {
      const { pair, round } = await regroup(order)
      for (let attempt = 0; attempt < 2; attempt++) {
        const { inputs, calls } = round(matches[what], attempt)
        const results = await Promise.all(calls)
        if (what === 'epoch') expectMeanAndIdentical(inputs, results)
        else {
          for (let t = 0; t < inputs[0].length; t++) {
            for (let i = 0; i < inputs[0][t].length; i++) {
              const [x, y] = [inputs[0][t][i], inputs[1][t][i]]
              expect(Math.abs(results[0].tensors[t][i] - (x + y))).toBeLessThanOrEqual(1e-6 * (Math.abs(x) + Math.abs(y)))
            }
            expect(bytesOf(results[1].tensors[t]).equals(bytesOf(results[0].tensors[t]))).toBe(true)
          }
        }
      }
      for (const m of pair) expect(m.refused).toEqual([])
    })
  })

  it('a key mismatch between members that begin 300 ms apart is refused on both sides', async () => {
    const [a, b] = await startMembers(2)
    const group = [a.id, b.id]
    const rng = mulberry32(18)
    const t0 = performance.now()
    // a's stream waits at b as an early one; b's round refuses it as it begins, before b's own stream is out
    const pa = rejection(a.service.allReduce({ group, key: { runId: 'late', epoch: 4, iteration: 0, stage: 0 }, tensors: randomTensors(rng, [10]), timeoutMs: 5000 }), t0)
    await new Promise(resolve => setTimeout(resolve, 300))
    const t1 = performance.now()
    const pb = rejection(b.service.allReduce({ group, key: { runId: 'late', epoch: 5, iteration: 0, stage: 0 }, tensors: randomTensors(rng, [10]), timeoutMs: 5000 }), t1)
    const [ra, rb] = await Promise.all([pa, pb])
    for (const r of [ra, rb]) expect(r.err, (r.err as Error).message).toBeInstanceOf(RoundKeyMismatchError)
    expect(ra.ms).toBeLessThan(2300)
    expect(rb.ms).toBeLessThan(2000)
    expect((rb.err as RoundKeyMismatchError).remote).toBe(true)
    expect((rb.err as RoundKeyMismatchError).peer).toBe(a.id)
    expect(a.service.stats.pending).toBe(0)
  })

  // one hop further: the member that disagrees is refused by its successor, refuses its
  // predecessor, and its successor hears of it as an abort, perhaps before its stream arrives
  it.each([[0, 0], [0, 300], [300, 0]])('a 3-member ring whose member 0 has another epoch, member 0 beginning after %i ms, the others after %i ms: every call ends at once', async (late0, lateOthers) => {
    const members = await startMembers(3)
    const group = members.map(m => m.id)
    const rng = mulberry32(19)
    const results = await Promise.all(members.map(async (m, i) => {
      await new Promise(resolve => setTimeout(resolve, i === 0 ? late0 : lateOthers))
      const key = { runId: 'odd', epoch: i === 0 ? 1 : 2, iteration: 0, stage: 0 }
      return await rejection(m.service.allReduce({ group, key, tensors: randomTensors(rng, [10]), timeoutMs: 5000 }))
    }))
    for (const [i, r] of results.entries()) {
      expect(r.err, `member ${i}: ${(r.err as Error).message}`).toSatisfy((e: unknown) => e instanceof RoundKeyMismatchError || e instanceof AllReduceAbortedError)
      expect(r.ms).toBeLessThan(2000)
    }
    expect(results[0].err).toBeInstanceOf(RoundKeyMismatchError)
    for (const m of members) expect(m.service.stats.pending).toBe(0)
  })

  it('a header announcing the wrong chunk length, or a piece longer than due, is refused before its body', async () => {
    for (const variant of ['header', 'piece'] as const) {
      const [a, b] = await startMembers(2)
      const group = [a.id, b.id]
      const key = `raw-${variant}:e0:i0:s0`
      // a (rank 0) runs the round; b's side is hand-written frames on b's node
      const pa = rejection(a.service.allReduce({ group, key, tensors: [new Float32Array(10)], timeoutMs: 5000 }))
      const chunk = 1 // a receives chunk (0 - 0 - 1) mod 2 at step 0
      const elements = chunkRanges(10, 2)[chunk].length
      const stream = await openStream(b.node, a.node.peerId, ALLREDUCE_PROTOCOL, { timeoutMs: 5000 })
      const header = { step: 0, n: 2, chunk, total: 10, digest: groupDigest(group), key }
      if (variant === 'header') {
        await writeFrame(stream, encodeHeader({ ...header, elements: elements + 1 }))
      } else {
        await writeFrame(stream, encodeHeader({ ...header, elements }))
        // a piece frame announcing 100 MB where 8 + 20 bytes are due: only its first bytes are sent
        stream.send(encodeVarint(100_000_000))
        stream.send(piecePreamble(0))
      }
      const replies: Uint8Array[] = []
      for await (const f of readFrames(stream, { maxFrameBytes: 4096, signal: AbortSignal.timeout(5000) })) replies.push(f)
      stream.abort(new Error('test done'))
      expect(replies).toHaveLength(1)
      const reply = decodeFrame(new Uint8ArrayList(replies[0]), a.id)
      expect(reply).toMatchObject({ kind: 'abort', refusal: true, code: 'ERR_ALLREDUCE_PROTOCOL', problem: 'length' })
      const { err } = await pa
      expect(err).toBeInstanceOf(AllReduceProtocolError)
      expect((err as AllReduceProtocolError).problem).toBe('length')
      expect((err as AllReduceProtocolError).peer).toBe(b.id)
      if (variant === 'header') expect(a.refused.map(e => e.code)).toEqual(['ERR_ALLREDUCE_PROTOCOL'])
      await Promise.allSettled(services.splice(0).map(async s => { await s.stop() }))
      await Promise.allSettled(nodes.splice(0).map(async n => { await n.stop() }))
    }
  })

  it('checks its arguments', async () => {
    const [a, b] = await startMembers(2)
    const tensors = [new Float32Array(4)]
    await expect(a.service.allReduce({ group: [b.id], key: 'k', tensors })).rejects.toBeInstanceOf(ConfigError)
    await expect(a.service.allReduce({ group: [a.id, a.id], key: 'k', tensors })).rejects.toBeInstanceOf(ConfigError)
    await expect(a.service.allReduce({ group: [a.id, b.id], key: 'has space', tensors })).rejects.toBeInstanceOf(ConfigError)
    await expect(a.service.allReduce({ group: [a.id, b.id], key: 'k', tensors: [new Float64Array(4) as unknown as Float32Array] })).rejects.toBeInstanceOf(ConfigError)
    expect(roundKeyString({ runId: 'r-1', epoch: 2, iteration: 30, stage: 4 })).toBe('r-1:e2:i30:s4')
    expect(() => roundKeyString({ runId: 'bad id', epoch: 0, iteration: 0, stage: 0 })).toThrow(ConfigError)
  })
})

import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import type { HostTensor, TensorSet } from '../model/safetensors.js'
import { OPTIM_M, OPTIM_V } from '../model/state.js'
import { WEIGHTS_PROTOCOL, chunkFrameParts, decodeWeightsMessage, encodeWeightsMessage, type WeightsMessage } from '../protocols/index.js'
import { createPeerLibp2p, encodeVarint, openStream, readFrames, writeFrame, type PeerLibp2p } from '../net/index.js'
import { PREFAULT_MIN_BYTES, prefaultedBuffer } from '../net/weights/prefault.js'
import {
  ChecksumMismatchError, DonorBusyError, DonorLostError, UnknownTensorError, IterationMismatchError, IterationUnavailableError, fetchWeights,
  serveWeights, splitByBytes, tensorCrc, type WeightsProvider, type WeightsServer, type WeightsServiceInit, type WeightsSnapshot
} from '../net/index.js'

const STAGE = 2
const CHUNK = 64 * 1024

const nodes: PeerLibp2p[] = []
const servers: WeightsServer[] = []
async function startNode (): Promise<PeerLibp2p> {
  const node = await createPeerLibp2p({ gossipHeartbeatMs: 50 })
  nodes.push(node)
  return node
}
afterEach(async () => {
  await Promise.allSettled(servers.splice(0).map(async s => { await s.stop() }))
  await Promise.allSettled(nodes.splice(0).map(async n => { await n.stop() }))
})

/** Random finite float32 bit patterns (any sign, subnormals, -0), so byte equality means something. */
function randomF32 (shape: number[]): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1)
  const u = new Uint32Array(randomBytes(n * 4).buffer.slice(0))
  for (let i = 0; i < n; i++) if ((u[i] & 0x7f800000) === 0x7f800000) u[i] &= 0xbfffffff
  return { dtype: 'F32', shape, data: new Float32Array(u.buffer) }
}

/** A stage's parameters (some larger than a chunk, some tiny) and their Adam moments. */
function makeState (): { params: TensorSet, all: TensorSet } {
  const params: TensorSet = new Map([
    ['embed.tok', randomF32([256, 192])], // 192 KiB: 3 chunks
    ['blocks.4.attn.wq', randomF32([96, 96])],
    ['blocks.4.ln1.g', randomF32([96])],
    ['blocks.4.mlp.w1', randomF32([96, 384])],
    ['blocks.5.mlp.w2', randomF32([384, 96])],
    ['head.w', randomF32([96, 256])]
  ])
  params.get('blocks.4.ln1.g')?.data.set([-0, 1e-45, -3.4e38])
  const all: TensorSet = new Map(params)
  for (const [n, t] of params) {
    all.set(OPTIM_M + n, randomF32(t.shape))
    all.set(OPTIM_V + n, randomF32(t.shape))
  }
  return { params, all }
}

/** Serves `state` as stage STAGE of committed iteration `iteration` (host copies, as exportStageState would hand out). */
function provider (state: { params: TensorSet, all: TensorSet }, iteration: number): WeightsProvider & { calls: number } {
  const p = {
    calls: 0,
    snapshot (stage: number, minIteration: number, includeOptimizer: boolean): WeightsSnapshot | undefined {
      p.calls++
      if (stage !== STAGE || minIteration > iteration) return undefined
      const src = includeOptimizer ? state.all : state.params
      return { iteration, tensors: new Map([...src].map(([n, t]) => [n, { ...t, shape: [...t.shape], data: t.data.slice() }])) }
    }
  }
  return p
}

async function donor (state: { params: TensorSet, all: TensorSet }, iteration = 7, init: WeightsServiceInit = {}): Promise<{ node: PeerLibp2p, server: WeightsServer, peer: ReturnType<PeerLibp2p['getMultiaddrs']> }> {
  const node = await startNode()
  const server = await serveWeights(node, provider(state, iteration), { chunkBytes: CHUNK, ...init })
  servers.push(server)
  return { node, server, peer: node.getMultiaddrs() }
}

function bytesOf (t: HostTensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)
}

function expectSameTensors (got: TensorSet, want: TensorSet): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
  for (const [name, t] of want) {
    const g = got.get(name) as HostTensor
    expect(g.dtype, name).toBe(t.dtype)
    expect(g.shape, name).toEqual(t.shape)
    expect(g.data, name).toBeInstanceOf(Float32Array)
    expect(g.data.byteLength, name).toBe(t.data.byteLength)
    expect(bytesOf(g).equals(bytesOf(t)), `${name} bytes`).toBe(true)
  }
}

function totalBytes (set: TensorSet): number {
  let n = 0
  for (const t of set.values()) n += t.data.byteLength
  return n
}

/** Sends raw frames on a new weights stream and returns the decoded answer (frames until the end marker). */
async function rawExchange (client: PeerLibp2p, server: PeerLibp2p, frames: Uint8Array[], raw?: Uint8Array): Promise<WeightsMessage[]> {
  const stream = await openStream(client, server.getMultiaddrs(), WEIGHTS_PROTOCOL, { timeoutMs: 5000 })
  try {
    for (const f of frames) await writeFrame(stream, f)
    if (raw !== undefined) stream.send(raw)
    const out: WeightsMessage[] = []
    for await (const f of readFrames(stream, { maxFrameBytes: 4 * 1024 * 1024, signal: AbortSignal.timeout(5000) })) out.push(decodeWeightsMessage(f))
    return out
  } finally {
    stream.abort(new Error('test done'))
  }
}

describe('splitByBytes', () => {
  it('keeps a prefix for the first part and balances the rest', () => {
    expect(splitByBytes([5, 5, 5, 5], 1)).toEqual([[0, 1, 2, 3]])
    expect(splitByBytes([5, 5, 5, 5], 2)).toEqual([[0, 1], [2, 3]])
    expect(splitByBytes([10, 1, 1, 4, 4], 3)).toEqual([[0], [1, 3], [2, 4]])
    expect(splitByBytes([1], 3)).toEqual([[0], [], []])
    expect(splitByBytes([], 2)).toEqual([[], []])
  })
})

describe('tensorCrc (the manifest checksum)', () => {
  it('is zlib\'s CRC-32, computes piecewise, and changes with any single flipped bit', () => {
    expect(tensorCrc(new TextEncoder().encode('123456789'))).toBe(0xcbf43926) // the standard check value
    const bytes = new Uint8Array(randomBytes(4096))
    const whole = tensorCrc(bytes)
    expect(tensorCrc(bytes.subarray(1000), tensorCrc(bytes.subarray(0, 1000)))).toBe(whole)
    const seen = new Set([whole])
    for (const [byte, bit] of [[0, 0], [0, 7], [2047, 3], [4095, 7]]) {
      const copy = bytes.slice()
      copy[byte] ^= 1 << bit
      seen.add(tensorCrc(copy))
    }
    expect(seen.size).toBe(5)
  })
})

describe('prefaultedBuffer', () => {
  it('hands out zeroed shared memory for large tensors once a helper thread has touched it, plain memory for small ones', async () => {
    const small = prefaultedBuffer(PREFAULT_MIN_BYTES - 4)
    expect(small.buffer).toBeInstanceOf(ArrayBuffer)
    const bigs = Array.from({ length: 3 }, () => prefaultedBuffer(8 * 2 ** 20))
    await Promise.all([small.ready, ...bigs.map(async b => await b.ready)])
    for (const b of bigs) {
      expect(b.buffer).toBeInstanceOf(SharedArrayBuffer)
      expect(b.buffer.byteLength).toBe(8 * 2 ** 20)
      expect(new Uint8Array(b.buffer).some(x => x !== 0)).toBe(false)
    }
  })
})

describe('chunkFrameParts', () => {
  it('produces exactly the protocol encoder\'s bytes without copying the data', () => {
    for (const [index, offset, n] of [[0, 0, 4], [3, 1 << 20, 1 << 20], [4095, 2 ** 32 - 8, 4], [127, 128, 130 * 4]]) {
      const data = randomBytes(n)
      const [head, body] = chunkFrameParts(index, offset, data)
      expect(body).toBe(data)
      expect(Buffer.concat([head, body]).equals(encodeWeightsMessage({ kind: 'chunk', index, offset, data }))).toBe(true)
    }
  })
})

describe('weights protocol over libp2p (tcp, 127.0.0.1)', () => {
  it('fetches a stage with its Adam moments bit-identically from one donor', async () => {
    const state = makeState()
    const a = await donor(state)
    const joiner = await startNode()
    const got = await fetchWeights(joiner, { donors: [{ peer: a.peer }], stage: STAGE, minIteration: 7, includeOptimizer: true, signal: AbortSignal.timeout(10_000) })
    expect(got.iteration).toBe(7)
    expectSameTensors(got.tensors, state.all)
    expect([...got.tensors.keys()].filter(n => n.startsWith(OPTIM_M) || n.startsWith(OPTIM_V))).toHaveLength(12)
    expect(got.bytes).toBe(totalBytes(state.all))
    expect(got.perDonor).toHaveLength(1)
    expect(got.perDonor[0].bytes).toBe(got.bytes)
    expect(got.manifest.map(t => t.name)).toEqual([...state.all.keys()])
    expect(a.server.stats).toMatchObject({ served: 1, refused: 0, aborted: 0, bytes: got.bytes })
    // both ends closed cleanly: no weights stream is left open on either node
    const openWeightStreams = (n: PeerLibp2p): number => n.getConnections().flatMap(c => c.streams).filter(st => st.protocol === WEIGHTS_PROTOCOL).length
    await expect.poll(() => openWeightStreams(a.node) + openWeightStreams(joiner)).toBe(0)

    // without the optimizer: parameters only
    const params = await fetchWeights(joiner, { donors: [{ peer: a.peer }], stage: STAGE, includeOptimizer: false })
    expectSameTensors(params.tensors, state.params)
  })

  it('releases every snapshot it takes exactly once: after a transfer, a refused iteration and a puller that gives up', async () => {
    const state = makeState()
    let taken = 0
    let released = 0
    const node = await startNode()
    const server = await serveWeights(node, {
      snapshot: (_stage, _minIteration, includeOptimizer) => {
        taken++
        return { iteration: 5, tensors: includeOptimizer ? state.all : state.params, release: () => { released++ } }
      }
    }, { chunkBytes: CHUNK })
    servers.push(server)
    const joiner = await startNode()
    const req = { donors: [{ peer: node.getMultiaddrs() }], stage: STAGE, includeOptimizer: true }
    await fetchWeights(joiner, { ...req, minIteration: 5, signal: AbortSignal.timeout(10_000) })
    expect([taken, released]).toEqual([1, 1])
    await expect(fetchWeights(joiner, { ...req, minIteration: 6, signal: AbortSignal.timeout(10_000) })).rejects.toBeInstanceOf(IterationUnavailableError)
    expect([taken, released]).toEqual([2, 2])
    // a puller that aborts after the first bytes: the server's send fails, and still releases
    const stop = new AbortController()
    const cut = fetchWeights(joiner, { ...req, minIteration: 5, signal: stop.signal, destination: (info) => { stop.abort(new Error('enough')); return new Float32Array(info.byteLength / 4) } })
    await expect(cut).rejects.toThrow()
    await expect.poll(() => released, { timeout: 10_000 }).toBe(taken)
    expect(taken).toBe(3)
  })

  it('passes on what it fetched (large tensors arrive in shared memory), as a mirror or shadow holder does', async () => {
    const big = randomF32([512, 256]) // 512 KiB: above PREFAULT_MIN_BYTES
    const state = { params: new Map([['blocks.4.mlp.w1', big], ['blocks.4.ln1.g', randomF32([96])]]), all: new Map() as TensorSet }
    state.all = state.params
    const a = await donor(state)
    const middle = await startNode()
    const first = await fetchWeights(middle, { donors: [{ peer: a.peer }], stage: STAGE })
    expect(first.tensors.get('blocks.4.mlp.w1')?.data.buffer).toBeInstanceOf(SharedArrayBuffer)
    servers.push(await serveWeights(middle, { snapshot: () => ({ iteration: first.iteration, tensors: first.tensors }) }, { chunkBytes: CHUNK }))
    const last = await startNode()
    const second = await fetchWeights(last, { donors: [{ peer: middle.getMultiaddrs() }], stage: STAGE })
    expectSameTensors(second.tensors, state.params)
  })

  it('receives into the caller\'s arrays when it gives them (destination), and refuses ones of the wrong size', async () => {
    const state = makeState()
    const a = await donor(state)
    const joiner = await startNode()
    const mine = new Map<string, Float32Array>()
    const destination = (info: { name: string, byteLength: number }): Float32Array => {
      const arr = mine.get(info.name) ?? new Float32Array(info.byteLength / 4).fill(123)
      mine.set(info.name, arr)
      return arr
    }
    const got = await fetchWeights(joiner, { donors: [{ peer: a.peer }], stage: STAGE, destination })
    expectSameTensors(got.tensors, state.params)
    for (const [n, t] of got.tensors) expect(t.data, n).toBe(mine.get(n))
    const err = await fetchWeights(joiner, { donors: [{ peer: a.peer }], stage: STAGE, destination: () => new Float32Array(3) }).catch(e => e)
    expect(err.message).toMatch(/destination for \S+ must be a Float32Array of \d+ elements/)
  })

  it('splits the tensors across two donors, each serving part of the bytes', async () => {
    const state = makeState()
    const a = await donor(state)
    const b = await donor(state)
    const joiner = await startNode()
    const got = await fetchWeights(joiner, { donors: [{ peer: a.peer }, { peer: b.peer }], stage: STAGE, includeOptimizer: true })
    expectSameTensors(got.tensors, state.all)
    const [fromA, fromB] = got.perDonor
    expect(fromA.bytes).toBeGreaterThan(0)
    expect(fromB.bytes).toBeGreaterThan(0)
    expect(fromA.bytes + fromB.bytes).toBe(got.bytes)
    expect(fromA.tensors + fromB.tensors).toBe(state.all.size)
    // roughly balanced: neither serves more than three quarters
    expect(Math.max(fromA.bytes, fromB.bytes)).toBeLessThan(0.75 * got.bytes)
    expect(fromA.failure).toBeUndefined()
    expect(fromB.failure).toBeUndefined()
    // b served only its subset, so it hashed and sent less than everything
    expect(b.server.stats.bytes).toBe(fromB.bytes)
  })

  it('detects a donor that corrupts a chunk, and completes from an honest one', async () => {
    const state = makeState()
    const bad = await donor(state, 7, { faults: { corruptChunk: 0 } })
    const joiner = await startNode()

    const err = await fetchWeights(joiner, { donors: [{ peer: bad.peer }], stage: STAGE, includeOptimizer: true }).catch(e => e)
    expect(err).toBeInstanceOf(ChecksumMismatchError)
    expect(err.code).toBe('ERR_CHECKSUM_MISMATCH')
    expect(err.tensor).toBe('embed.tok') // the first chunk of the stream
    expect(err.donor).toBe(bad.peer[0].toString())
    expect(err.message).toContain(bad.node.peerId.toString())

    const good = await donor(state)
    // the faulty donor first (it provides the manifest and is cut off), then the other way round
    for (const donors of [[bad, good], [good, bad]]) {
      const got = await fetchWeights(joiner, { donors: donors.map(d => ({ peer: d.peer })), stage: STAGE, includeOptimizer: true })
      expectSameTensors(got.tensors, state.all)
      const badReport = got.perDonor[donors.indexOf(bad)]
      const goodReport = got.perDonor[donors.indexOf(good)]
      expect(badReport.failure).toBeInstanceOf(ChecksumMismatchError)
      expect(goodReport.failure).toBeUndefined()
      expect(goodReport.bytes + badReport.bytes).toBe(got.bytes)
    }
  })

  it('answers an unknown stage or iteration with a typed error and keeps serving', async () => {
    const state = makeState()
    const a = await donor(state, 7)
    const joiner = await startNode()
    const opts = { donors: [{ peer: a.peer }], includeOptimizer: true }
    await expect(fetchWeights(joiner, { ...opts, stage: STAGE + 1 })).rejects.toBeInstanceOf(IterationUnavailableError)
    const err = await fetchWeights(joiner, { ...opts, stage: STAGE, minIteration: 8 }).catch(e => e)
    expect(err).toBeInstanceOf(IterationUnavailableError)
    expect(err.code).toBe('ERR_ITERATION_UNAVAILABLE')
    expect(err.message).toMatch(/stage 2 of iteration >= 8/)
    await expect(fetchWeights(joiner, { ...opts, stage: STAGE, names: ['nope.w'] })).rejects.toBeInstanceOf(UnknownTensorError)
    // the moments exist only when asked for
    await expect(fetchWeights(joiner, { ...opts, includeOptimizer: false, stage: STAGE, names: [OPTIM_M + 'head.w'] })).rejects.toBeInstanceOf(UnknownTensorError)
    expect(a.server.stats.refused).toBe(4)

    const got = await fetchWeights(joiner, { ...opts, stage: STAGE, minIteration: 7 })
    expectSameTensors(got.tensors, state.all)
  })

  it('returns only the requested subset of names', async () => {
    const state = makeState()
    const a = await donor(state)
    const b = await donor(state)
    const joiner = await startNode()
    const names = ['head.w', OPTIM_V + 'embed.tok', 'blocks.4.ln1.g']
    for (const donors of [[a], [a, b]]) {
      const got = await fetchWeights(joiner, { donors: donors.map(d => ({ peer: d.peer })), stage: STAGE, includeOptimizer: true, names })
      expectSameTensors(got.tensors, new Map(names.map(n => [n, state.all.get(n) as HostTensor])))
      expect(got.bytes).toBe(names.reduce((s, n) => s + (state.all.get(n)?.data.byteLength ?? 0), 0))
    }
  })

  it('survives malformed requests without crashing and keeps serving', async () => {
    const state = makeState()
    const a = await donor(state)
    const joiner = await startNode()

    // random bytes in a well-formed frame
    const garbage = await rawExchange(joiner, a.node, [randomBytes(300)])
    expect(garbage).toEqual([expect.objectContaining({ kind: 'error', code: 'ERR_BAD_REQUEST' })])
    // a valid message of the wrong kind
    const wrongKind = await rawExchange(joiner, a.node, [encodeWeightsMessage({ kind: 'end', totalBytes: 1 })])
    expect(wrongKind).toEqual([expect.objectContaining({ kind: 'error', code: 'ERR_BAD_REQUEST', message: expect.stringContaining('end') })])
    // a length prefix announcing 1 GiB: refused before any of it is read
    const huge = await rawExchange(joiner, a.node, [], encodeVarint(1024 * 1024 * 1024))
    expect(huge).toEqual([expect.objectContaining({ kind: 'error', code: 'ERR_BAD_REQUEST' })])
    // a request with an out-of-range stage is caught by the decoder
    const badStage = encodeWeightsMessage({ kind: 'request', stage: 0, minIteration: 0, names: [], includeOptimizer: false })
    const tampered = Uint8Array.from(badStage)
    const sub = await rawExchange(joiner, a.node, [tampered.subarray(0, tampered.length - 1)])
    expect(sub[0].kind).toBe('error')
    expect(a.server.stats.refused).toBe(4)

    const got = await fetchWeights(joiner, { donors: [{ peer: a.peer }], stage: STAGE, includeOptimizer: true })
    expectSameTensors(got.tensors, state.all)
  })

  it('falls back when a donor is unreachable or serves another iteration', async () => {
    const state = makeState()
    const gone = await startNode()
    const goneAddrs = gone.getMultiaddrs()
    await gone.stop()
    const a = await donor(state, 7)
    const newer = await donor(state, 9)
    const joiner = await startNode()
    const got = await fetchWeights(joiner, {
      donors: [{ peer: goneAddrs }, { peer: a.peer }, { peer: newer.peer }], stage: STAGE, minIteration: 7, includeOptimizer: true, dialTimeoutMs: 3000
    })
    expect(got.iteration).toBe(7)
    expectSameTensors(got.tensors, state.all)
    expect(got.perDonor[0].failure).toBeInstanceOf(DonorLostError)
    expect(got.perDonor[1].bytes).toBe(got.bytes)
    expect(got.perDonor[2].failure).toBeInstanceOf(IterationMismatchError)
    expect(got.perDonor[2].failure).toMatchObject({ code: 'ERR_ITERATION_MISMATCH', expected: 7, actual: 9 })
  })

  it('answers ERR_BUSY past its queue, and gives up on a donor that goes silent', async () => {
    const state = makeState()
    // small chunks keep the first transfer going while the others ask
    const a = await donor(state, 7, { maxConcurrentTransfers: 1, maxQueuedTransfers: 0, chunkBytes: 4096 })
    const joiner = await startNode()
    const opts = { donors: [{ peer: a.peer }], stage: STAGE, includeOptimizer: true }
    const results = await Promise.allSettled([fetchWeights(joiner, opts), fetchWeights(joiner, opts), fetchWeights(joiner, opts)])
    const ok = results.filter(r => r.status === 'fulfilled')
    const busy = results.filter(r => r.status === 'rejected')
    expect(ok.length).toBeGreaterThanOrEqual(1)
    expect(busy.length).toBeGreaterThanOrEqual(1)
    for (const r of busy) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(DonorBusyError)
    expect(a.server.stats.refused).toBe(busy.length)

    // a peer that takes the request and never answers: the stall timeout moves on to the next donor
    const silent = await startNode()
    await silent.handle(WEIGHTS_PROTOCOL, () => {})
    const got = await fetchWeights(joiner, { ...opts, donors: [{ peer: silent.getMultiaddrs() }, { peer: a.peer }], stallTimeoutMs: 300 })
    expectSameTensors(got.tensors, state.all)
    expect(got.perDonor[0].failure).toBeInstanceOf(DonorLostError)
    expect(got.perDonor[0].failure?.message).toMatch(/sent nothing for 300 ms/)
  })

  it('stops with transfers in flight: the puller gets a typed error, the server settles', async () => {
    const state = makeState()
    // tiny chunks so the transfer is still running when the server stops
    const a = await donor(state, 7, { chunkBytes: 4096 })
    const joiner = await startNode()
    const pending = fetchWeights(joiner, { donors: [{ peer: a.peer }], stage: STAGE, includeOptimizer: true, stallTimeoutMs: 5000 })
    while (a.server.stats.bytes === 0) await new Promise(resolve => setTimeout(resolve, 1))
    await a.server.stop()
    const err = await pending.catch(e => e)
    expect(err).toBeInstanceOf(DonorLostError)
    expect(a.server.stats).toMatchObject({ active: 0, queued: 0, aborted: 1 })
  })

  it('caches checksums per iteration; bytes that change under one iteration are still caught', async () => {
    const state = makeState()
    const cached = await donor(state, 7)
    const uncached = await donor(state, 7, { cacheChecksums: false })
    const joiner = await startNode()
    const from = (d: typeof cached) => ({ donors: [{ peer: d.peer }], stage: STAGE, includeOptimizer: true })
    await fetchWeights(joiner, from(cached))
    await fetchWeights(joiner, from(uncached))
    // a provider bug: different bytes, same iteration
    state.all.get('head.w')?.data.set([0.5], 17)
    const err = await fetchWeights(joiner, from(cached)).catch(e => e)
    expect(err).toBeInstanceOf(ChecksumMismatchError)
    expect(err.tensor).toBe('head.w')
    expectSameTensors((await fetchWeights(joiner, from(uncached))).tensors, state.all)
    // told that the stage changed, the cached server sums again (forgetting another stage does not)
    cached.server.forgetChecksums(STAGE + 1)
    await expect(fetchWeights(joiner, from(cached))).rejects.toBeInstanceOf(ChecksumMismatchError)
    cached.server.forgetChecksums(STAGE)
    expectSameTensors((await fetchWeights(joiner, from(cached))).tensors, state.all)
    state.all.get('head.w')?.data.set([0.25], 17)
    cached.server.forgetChecksums()
    expectSameTensors((await fetchWeights(joiner, from(cached))).tensors, state.all)
  })
})

describe('non-finite weights', () => {
  it('a donor serving NaN or Inf weights is refused with a typed error, and the server keeps serving', async () => {
    const state = makeState()
    const bad = { params: new Map(state.params), all: new Map(state.all) }
    const w = state.params.get('head.w') as HostTensor
    const poisoned: HostTensor = { ...w, data: Float32Array.from(w.data as Float32Array) }
    poisoned.data[17] = NaN
    poisoned.data[18] = Infinity
    bad.params.set('head.w', poisoned)
    const d = await donor(bad)
    const puller = await startNode()
    await expect(fetchWeights(puller, { donors: [{ peer: d.peer }], stage: STAGE, timeoutMs: 20_000 }))
      .rejects.toMatchObject({ code: expect.stringMatching(/^ERR_/), message: expect.stringMatching(/head\.w|NaN|non-finite|finite/i) })
    // The same server still serves a request for tensors that are fine.
    const ok = await fetchWeights(puller, { donors: [{ peer: d.peer }], stage: STAGE, names: ['blocks.4.attn.wq'], timeoutMs: 20_000 })
    expect(ok.tensors.get('blocks.4.attn.wq')?.data).toEqual(state.params.get('blocks.4.attn.wq')?.data)
  }, 30_000)
})

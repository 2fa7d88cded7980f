/**
 * Seeded mutation fuzzing of every decoder: whatever the bytes, a decoder either returns a message
 * that passes validation (and re-encodes to the same thing) or throws a SpotpipeError subclass.
 * Nothing else, and it always returns.
 */
import { describe, expect, it } from 'vitest'
import { SpotpipeError } from '../common/index.js'
import { mulberry32 } from '../model/rng.js'
import {
  ProtocolError, decodeMessage, decodeTensorFrame, decodeWeightsMessage, encodeMessage, encodeTensorFrame,
  encodeWeightsMessage, validateMessage, validateWeightsMessage
} from '../protocols/index.js'
import type { Message, WeightsManifest, WeightsMessage } from '../protocols/index.js'

const ROUNDS = 3000

/** The project's seeded PRNG drives the mutations, so every run replays. */
const rng = mulberry32

function mutate (input: Uint8Array, rand: () => number): Uint8Array {
  const int = (n: number): number => Math.floor(rand() * n)
  const bytes = Array.from(input)
  const steps = 1 + int(3)
  for (let s = 0; s < steps; s++) {
    const at = int(bytes.length + 1)
    switch (int(8)) {
      case 0: if (bytes.length > 0) bytes[at % bytes.length] ^= 1 << int(8); break
      case 1: if (bytes.length > 0) bytes[at % bytes.length] = int(256); break
      case 2: bytes.length = int(bytes.length + 1); break
      case 3: bytes.splice(at, 0, ...Array.from({ length: 1 + int(8) }, () => int(256))); break
      case 4: bytes.splice(at, 1 + int(8)); break
      case 5: bytes.splice(at, 0, ...bytes.slice(int(bytes.length), int(bytes.length) + 16)); break
      case 6: if (bytes.length > 0) bytes[at % bytes.length] = [0, 0x7f, 0x80, 0xff, 0x01][int(5)]; break
      default: return Uint8Array.from({ length: int(200) }, () => int(256))
    }
  }
  return Uint8Array.from(bytes)
}

/** Runs `decode` on mutations of the samples; `check` vets what comes back. */
function fuzz<T> (seed: number, samples: Uint8Array[], decode: (b: Uint8Array) => T, check: (v: T) => void): { ok: number, rejected: number } {
  const rand = rng(seed)
  let ok = 0
  let rejected = 0
  for (let i = 0; i < ROUNDS; i++) {
    const input = mutate(samples[i % samples.length], rand)
    let value: T
    try {
      value = decode(input)
    } catch (err) {
      if (!(err instanceof SpotpipeError) || !(err instanceof ProtocolError)) {
        throw new Error(`round ${i}: non-typed error for [${Array.from(input).join(',')}]: ${String(err)}`)
      }
      rejected++
      continue
    }
    check(value)
    ok++
  }
  return { ok, rejected }
}

const P1 = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'
const P2 = 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'

const messages: Message[] = [
  { kind: 'heartbeat', peerId: P1, role: 'stage', stage: 1, iteration: 9, loss: 3.5, gradNorm: 0.5, weightDigest: 'abc', tokensPerSec: 12.5, rssBytes: 1 << 30, epoch: 2, timestampMs: 1_767_225_600_000, departing: false, stateIteration: 8, held: [{ kind: 'shadow', stage: 0, iteration: 8 }] },
  { kind: 'assignment', clusterId: 'c', runId: 'r', epoch: 2, iteration: 9, stages: [{ stage: 0, peers: [P1], addrs: ['/ip4/127.0.0.1/tcp/4001'] }, { stage: 1, peers: [P2], addrs: ['/ip4/127.0.0.1/tcp/4001'] }], modelConfig: '{"d":64}', trainingConfig: '{}', rebuilt: [] },
  { kind: 'begin', epoch: 2, iteration: 9 },
  { kind: 'abort', epoch: 2, iteration: 9, reason: 'lost' },
  { kind: 'commit', epoch: 2, iteration: 9 },
  { kind: 'done', peerId: P2, stage: 1, epoch: 2, iteration: 9, loss: 2.5, gradNorm: 1, computeMs: 30 },
  { kind: 'stream-break', reporter: P1, stage: 0, suspect: P2, epoch: 2, iteration: 9, reason: 'reset' },
  { kind: 'recovery-plan', epoch: 3, stage: 1, rung: 'checkfree', targetPeer: P2, donors: [{ peerId: P1, stage: 0 }], lrScale: 1.1, weights: [1], checkpointId: '' }
]

const manifest: WeightsManifest = {
  kind: 'manifest',
  stage: 1,
  iteration: 9,
  tensors: [
    { name: 'blocks.1.attn.wq', dtype: 'float32', shape: [4, 4], byteLength: 64, crc32: 0x0f0f0f0f },
    { name: 'opt.step', dtype: 'int32', shape: [], byteLength: 4, crc32: 0xa0a0a0a0 }
  ],
  totalBytes: 68
}
const weights: WeightsMessage[] = [
  { kind: 'request', stage: 1, minIteration: 9, names: ['blocks.1.attn.wq'], includeOptimizer: true },
  manifest,
  { kind: 'chunk', index: 0, offset: 16, data: new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) },
  { kind: 'end', totalBytes: 68 },
  { kind: 'error', code: 'ERR_BUSY', message: 'try later' }
]

function joined (chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0))
  let at = 0
  for (const c of chunks) { out.set(c, at); at += c.byteLength }
  return out
}

describe('decoder fuzzing', () => {
  it('gossip decoder: a valid message or a typed error', () => {
    const samples = messages.map(m => encodeMessage(m))
    const r = fuzz(0x5eed1, samples, b => decodeMessage(b), m => {
      validateMessage(m)
      expect(decodeMessage(encodeMessage(m))).toEqual(m)
    })
    expect(r.ok).toBeGreaterThan(50)
    expect(r.rejected).toBeGreaterThan(ROUNDS / 2)
  }, 15_000)

  it('weights decoder: a valid message or a typed error', () => {
    const samples = weights.map(m => encodeWeightsMessage(m))
    const r = fuzz(0x5eed2, samples, b => decodeWeightsMessage(b, { manifest }), m => {
      validateWeightsMessage(m, { manifest })
      expect(decodeWeightsMessage(encodeWeightsMessage(m, { manifest }), { manifest })).toEqual(m)
    })
    expect(r.ok).toBeGreaterThan(50)
    expect(r.rejected).toBeGreaterThan(ROUNDS / 2)
  }, 15_000)

  it('tensor frame decoder: a consistent frame or a typed error', () => {
    const header = { runId: 'run', epoch: 1, iteration: 2, microbatch: 3, hop: 4, direction: 'forward' as const }
    const samples = [
      joined(encodeTensorFrame({ ...header, shape: [2, 3] }, Float32Array.from([1, 2, 3, 4, 5, 6]))),
      joined(encodeTensorFrame({ ...header, runId: 'ab', shape: [5] }, Int32Array.from([1, 2, 3, 4, 5]))),
      joined(encodeTensorFrame({ ...header, shape: [1, 1, 2, 1] }, Float32Array.from([0.5, -0.5])))
    ]
    const r = fuzz(0x5eed3, samples, b => decodeTensorFrame(b), f => {
      const n = f.header.shape.reduce((a, b) => a * b, 1)
      expect(f.data.length).toBe(n)
      if (f.data instanceof Float32Array) expect(f.data.every(Number.isFinite)).toBe(true)
      const again = decodeTensorFrame(joined(encodeTensorFrame(f.header, f.data)))
      expect(again.header).toEqual(f.header)
    })
    expect(r.ok).toBeGreaterThan(50)
    expect(r.rejected).toBeGreaterThan(ROUNDS / 2)
  }, 15_000)
})

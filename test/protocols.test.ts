import { describe, expect, it } from 'vitest'
import { catchError, expectError } from './helpers/errors.js'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  ACTIVATIONS_PROTOCOL, WEIGHTS_PROTOCOL, MAX_GOSSIP_MESSAGE_BYTES, MAX_PEER_ID_LENGTH, MAX_STAGES,
  MAX_WEIGHTS_CHUNK_BYTES, MAX_WEIGHTS_FRAME_BYTES, CONTROL_TOPIC_KINDS, COORDINATOR_KINDS, HEARTBEAT_TOPIC_KINDS,
  MESSAGE_KINDS, BadDTypeError, BadShapeError, FrameTooLargeError, LimitExceededError, MalformedMessageError,
  NonFiniteTensorError, ProtocolError, TruncatedFrameError, UnknownKindError, controlTopic, decodeMessage,
  decodeWeightsMessage, encodeMessage, encodeWeightsMessage, heartbeatTopic, peekChunk, validateMessage
} from '../protocols/index.js'
import type {
  Assignment, DoneReport, Heartbeat, Message, RecoveryPlan, WeightsManifest, WeightsMessage
} from '../protocols/index.js'
import * as pb from '../protocols/messages.js'

const P1 = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'
const P2 = '12D3KooWRBhwfeP2Y9CDkFRBAZ1pmxUadH36TNuBm5QLdqsEyb3P'
const P3 = 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'

const heartbeat: Heartbeat = {
  kind: 'heartbeat',
  peerId: P1,
  role: 'stage',
  stage: 3,
  iteration: 1234,
  loss: 2.75,
  gradNorm: 0.8125,
  weightDigest: 'a3f1c2',
  tokensPerSec: 5321.5,
  rssBytes: 3_221_225_472,
  epoch: 7,
  timestampMs: 1_767_225_600_000,
  departing: false,
  stateIteration: 1233,
  held: [{ kind: 'mirror', stage: 2, iteration: 1229 }, { kind: 'checkpoint', stage: 3, iteration: 1199 }]
}

const assignment: Assignment = {
  kind: 'assignment',
  clusterId: 'lab-1',
  runId: 'run_2026.01',
  epoch: 8,
  iteration: 1235,
  stages: [{ stage: 0, peers: [P1], addrs: ['/ip4/127.0.0.1/tcp/4001'] }, { stage: 1, peers: [P2, P3], addrs: ['/ip4/127.0.0.1/tcp/4001', '/ip4/127.0.0.1/tcp/4001'] }, { stage: 2, peers: [], addrs: [] }],
  modelConfig: JSON.stringify({ dModel: 128, layers: 8, heads: 4 }),
  trainingConfig: JSON.stringify({ lr: 3e-4, microbatches: 4 }),
  rebuilt: [1]
}

const done: DoneReport = {
  kind: 'done', peerId: P2, stage: 1, epoch: 8, iteration: 1235, gradNorm: 1.5, computeMs: 812.25
}

const plan: RecoveryPlan = {
  kind: 'recovery-plan',
  epoch: 9,
  stage: 2,
  rung: 'checkfree',
  targetPeer: P3,
  donors: [{ peerId: P1, stage: 1 }, { peerId: P2, stage: 3 }],
  lrScale: 1.1,
  weights: [0.4, 0.6],
  checkpointId: ''
}

const samples: Message[] = [
  heartbeat,
  { ...heartbeat, loss: undefined, role: 'spare', stage: -1, departing: true, stateIteration: -1 },
  { ...heartbeat, role: 'coordinator', stage: -1, weightDigest: '', stateIteration: -1, held: [] },
  { ...heartbeat, stateIteration: -1, held: [{ kind: 'shadow', stage: 0, iteration: -1 }] },
  assignment,
  { kind: 'begin', epoch: 8, iteration: 1235 },
  { kind: 'abort', epoch: 8, iteration: 1235, reason: 'stage 2 lost: heartbeat timeout' },
  { kind: 'commit', epoch: 8, iteration: 1235 },
  { kind: 'commit', epoch: 8, iteration: 1235, checkpoint: 1199 },
  { kind: 'commit', epoch: 8, iteration: 1235, skipped: true },
  { kind: 'commit', epoch: 8, iteration: 1239, snapshot: true },
  done,
  { ...done, stage: 2, loss: 2.5 },
  { ...done, gradNorm: 0, nonFinite: true, nonFiniteWhat: 'gradient' },
  { kind: 'stream-break', reporter: P1, stage: 0, suspect: P2, epoch: 8, iteration: 1235, reason: 'stream reset' },
  { kind: 'recovery-done', peerId: P3, epoch: 9, stage: 2, rung: 'checkfree', bytes: 123_456_789, transferMs: 412.5, rebuildMs: 33.25 },
  { kind: 'recovery-failed', peerId: P3, epoch: 9, stage: 2, rung: 'checkfree', code: 'ERR_DONOR_LOST', reason: 'donor 12D3...x went silent mid-transfer' },
  plan,
  { ...plan, rung: 'checkpoint', donors: [], weights: [], checkpointId: 'ckpt-000120' },
  { ...plan, rung: 'wait', targetPeer: '', donors: [], weights: [] },
  { ...plan, rung: 'handover', donors: [{ peerId: P1, stage: 2 }], weights: [], lrScale: 1 }
]

/** Strips keys whose value is undefined, as the decoder leaves them out. */
function clean<T> (v: T): T {
  return JSON.parse(JSON.stringify(v)) as T
}

function envelope (env: Partial<pb.GossipEnvelope>): Uint8Array {
  return pb.GossipEnvelope.encode(env)
}

function varint (n: bigint): number[] {
  const out: number[] = []
  do {
    const low = Number(n & 0x7fn)
    n >>= 7n
    out.push(n > 0n ? low | 0x80 : low)
  } while (n > 0n)
  return out
}

describe('constants and topics', () => {
  it('names protocols and topics', () => {
    expect(ACTIVATIONS_PROTOCOL).toBe('/spotpipe/activations/1.0.0')
    expect(WEIGHTS_PROTOCOL).toBe('/spotpipe/weights/3.0.0')
    expect(heartbeatTopic('lab-1')).toBe('spotpipe/lab-1/heartbeat')
    expect(controlTopic('lab-1')).toBe('spotpipe/lab-1/control')
  })

  it('rejects cluster ids that would break a topic name', () => {
    expectError(() => heartbeatTopic(''), MalformedMessageError, 'clusterId')
    expectError(() => controlTopic('a/b'), MalformedMessageError, 'clusterId')
    expectError(() => controlTopic('x'.repeat(65)), LimitExceededError, 'clusterId')
  })

  it('splits kinds over the two topics', () => {
    for (const k of MESSAGE_KINDS) expect(HEARTBEAT_TOPIC_KINDS.has(k) !== CONTROL_TOPIC_KINDS.has(k)).toBe(true)
    expect(COORDINATOR_KINDS.has('done')).toBe(false)
    expect(COORDINATOR_KINDS.has('begin')).toBe(true)
  })

  it('errors carry stable codes', () => {
    const e = new FrameTooLargeError('x', { field: 'f' })
    expect(e.code).toBe('ERR_FRAME_TOO_LARGE')
    expect(e.name).toBe('FrameTooLargeError')
    expect(e.field).toBe('f')
    expect(new TruncatedFrameError('x').code).toBe('ERR_TRUNCATED_FRAME')
    expect(new NonFiniteTensorError('x').code).toBe('ERR_NON_FINITE_TENSOR')
  })
})

describe('gossip messages', () => {
  it('round-trips every kind', () => {
    const kinds = new Set<string>()
    for (const m of samples) {
      const bytes = encodeMessage(m)
      expect(bytes.byteLength).toBeLessThan(1024)
      expect(decodeMessage(bytes)).toEqual(clean(m))
      kinds.add(m.kind)
    }
    expect([...kinds].sort()).toEqual([...MESSAGE_KINDS].sort())
  })

  it('decodes from a Uint8ArrayList of several chunks', () => {
    const bytes = encodeMessage(assignment)
    const list = new Uint8ArrayList(bytes.subarray(0, 10), bytes.subarray(10, 50), bytes.subarray(50))
    expect(decodeMessage(list)).toEqual(assignment)
  })

  it('keeps nonFinite and skipped absent unless set', () => {
    expect('nonFinite' in (decodeMessage(encodeMessage(done)) as DoneReport)).toBe(false)
    expect('skipped' in decodeMessage(encodeMessage({ kind: 'commit', epoch: 8, iteration: 3, skipped: false }))).toBe(false)
  })

  it('keeps loss absent rather than zero or NaN', () => {
    const m = decodeMessage(encodeMessage({ ...done, loss: undefined })) as DoneReport
    expect('loss' in m).toBe(false)
    const z = decodeMessage(encodeMessage({ ...done, loss: 0 })) as DoneReport
    expect(z.loss).toBe(0)
  })

  it('skips unknown fields (newer peers may add some)', () => {
    const bytes = encodeMessage(heartbeat)
    // fields 30 (varint 42) and 31 (2 bytes); their tags take two varint bytes each
    const extended = new Uint8Array([...bytes, 0xf0, 0x01, 42, 0xfa, 0x01, 2, 1, 2])
    expect(decodeMessage(extended)).toEqual(heartbeat)
  })

  it('encoder rejects out-of-range fields with typed errors naming the field', () => {
    const bad: Array<[unknown, new (...a: any[]) => ProtocolError, string]> = [
      [{ ...heartbeat, stage: -2 }, MalformedMessageError, 'heartbeat.stage'],
      [{ ...heartbeat, stage: MAX_STAGES }, MalformedMessageError, 'heartbeat.stage'],
      [{ ...heartbeat, stage: -1 }, MalformedMessageError, 'heartbeat.stage'],
      [{ ...heartbeat, role: 'spare' }, MalformedMessageError, 'heartbeat.stage'],
      [{ ...heartbeat, role: 'boss' }, MalformedMessageError, 'heartbeat.role'],
      [{ ...heartbeat, loss: NaN }, MalformedMessageError, 'heartbeat.loss'],
      [{ ...heartbeat, gradNorm: Infinity }, MalformedMessageError, 'heartbeat.gradNorm'],
      [{ ...heartbeat, gradNorm: -1 }, MalformedMessageError, 'heartbeat.gradNorm'],
      [{ ...heartbeat, epoch: 2 ** 32 }, MalformedMessageError, 'heartbeat.epoch'],
      [{ ...heartbeat, iteration: 1.5 }, MalformedMessageError, 'heartbeat.iteration'],
      [{ ...heartbeat, iteration: '3' }, MalformedMessageError, 'heartbeat.iteration'],
      [{ ...heartbeat, rssBytes: 2 ** 53 }, MalformedMessageError, 'heartbeat.rssBytes'],
      [{ ...heartbeat, departing: 1 }, MalformedMessageError, 'heartbeat.departing'],
      [{ ...heartbeat, stateIteration: -2 }, MalformedMessageError, 'heartbeat.stateIteration'],
      [{ ...heartbeat, stateIteration: 2.5 }, MalformedMessageError, 'heartbeat.stateIteration'],
      [{ ...heartbeat, stateIteration: 2 ** 31 }, MalformedMessageError, 'heartbeat.stateIteration'],
      [{ ...heartbeat, stateIteration: undefined }, MalformedMessageError, 'heartbeat.stateIteration'],
      [{ ...heartbeat, role: 'spare', stage: -1, stateIteration: 5 }, MalformedMessageError, 'heartbeat.stateIteration'],
      [{ ...heartbeat, held: undefined }, MalformedMessageError, 'heartbeat.held'],
      [{ ...heartbeat, held: [{ kind: 'replica', stage: 0, iteration: 1 }] }, MalformedMessageError, 'heartbeat.held[0].kind'],
      [{ ...heartbeat, held: [{ kind: 'mirror', stage: 0, iteration: -2 }] }, MalformedMessageError, 'heartbeat.held[0].iteration'],
      [{ ...heartbeat, held: [{ kind: 'mirror', stage: 0, iteration: 1 }, { kind: 'mirror', stage: 1, iteration: 1 }] }, MalformedMessageError, 'heartbeat.held[1].kind'],
      [{ ...heartbeat, held: [{ kind: 'mirror', stage: -1, iteration: 1 }] }, MalformedMessageError, 'heartbeat.held[0].stage'],
      [{ ...heartbeat, held: Array.from({ length: 9 }, () => ({ kind: 'mirror', stage: 0, iteration: 0 })) }, LimitExceededError, 'heartbeat.held'],
      [{ kind: 'commit', epoch: 8, iteration: 10, checkpoint: 11 }, MalformedMessageError, 'commit.checkpoint'],
      [{ kind: 'commit', epoch: 8, iteration: 10, checkpoint: -1 }, MalformedMessageError, 'commit.checkpoint'],
      [{ ...heartbeat, peerId: 'x'.repeat(MAX_PEER_ID_LENGTH + 1) }, LimitExceededError, 'heartbeat.peerId'],
      [{ ...heartbeat, peerId: 'has space' }, MalformedMessageError, 'heartbeat.peerId'],
      [{ ...heartbeat, peerId: '' }, MalformedMessageError, 'heartbeat.peerId'],
      [{ ...heartbeat, weightDigest: 'd'.repeat(129) }, LimitExceededError, 'heartbeat.weightDigest'],
      [{ ...assignment, stages: [] }, MalformedMessageError, 'assignment.stages'],
      [{ ...assignment, stages: [{ stage: 1, peers: [P1], addrs: ['/ip4/127.0.0.1/tcp/4001'] }] }, MalformedMessageError, 'assignment.stages[0].stage'],
      [{ ...assignment, stages: [{ stage: 0, peers: [P1], addrs: ['/ip4/127.0.0.1/tcp/4001'] }, { stage: 1, peers: [P1], addrs: ['/ip4/127.0.0.1/tcp/4001'] }] }, MalformedMessageError, 'assignment.stages[1].peers[0]'],
      [{ ...assignment, stages: [{ stage: 0, peers: Array.from({ length: 9 }, (_, i) => `Qm${i}`) }] }, LimitExceededError, 'assignment.stages[0].peers'],
      [{ ...assignment, stages: Array.from({ length: MAX_STAGES + 1 }, (_, i) => ({ stage: i, peers: [], addrs: [] })) }, LimitExceededError, 'assignment.stages'],
      [{ ...assignment, modelConfig: '{nope' }, MalformedMessageError, 'assignment.modelConfig'],
      [{ ...assignment, trainingConfig: '[1, 2]' }, MalformedMessageError, 'assignment.trainingConfig'],
      [{ ...assignment, modelConfig: JSON.stringify({ pad: 'x'.repeat(70_000) }) }, LimitExceededError, 'assignment.modelConfig'],
      [{ ...assignment, runId: 'run 1' }, MalformedMessageError, 'assignment.runId'],
      [{ kind: 'abort', epoch: 1, iteration: 1, reason: 'r'.repeat(513) }, LimitExceededError, 'abort.reason'],
      [{ kind: 'begin', epoch: 1 }, MalformedMessageError, 'begin.iteration'],
      [{ ...done, stage: -1 }, MalformedMessageError, 'done.stage'],
      [{ ...done, computeMs: NaN }, MalformedMessageError, 'done.computeMs'],
      [{ ...done, nonFinite: true, nonFiniteWhat: '' }, MalformedMessageError, 'done.nonFiniteWhat'],
      [{ ...done, nonFinite: true, nonFiniteWhat: 'Gradient!' }, MalformedMessageError, 'done.nonFiniteWhat'],
      [{ ...done, nonFinite: true, nonFiniteWhat: 'g'.repeat(33) }, LimitExceededError, 'done.nonFiniteWhat'],
      [{ ...done, nonFinite: false, nonFiniteWhat: 'loss' }, MalformedMessageError, 'done.nonFiniteWhat'],
      [{ kind: 'commit', epoch: 8, iteration: 10, skipped: 1 }, MalformedMessageError, 'commit.skipped'],
      [{ kind: 'commit', epoch: 8, iteration: 10, snapshot: 'yes' }, MalformedMessageError, 'commit.snapshot'],
      [{ kind: 'stream-break', reporter: P1, stage: 0, suspect: P1, epoch: 1, iteration: 1, reason: '' }, MalformedMessageError, 'stream-break.suspect'],
      [{ ...plan, weights: [1] }, MalformedMessageError, 'recovery-plan.weights'],
      [{ ...plan, weights: [0, 0] }, MalformedMessageError, 'recovery-plan.weights'],
      [{ ...plan, weights: [-1, 2] }, MalformedMessageError, 'recovery-plan.weights[0]'],
      [{ ...plan, lrScale: 0 }, MalformedMessageError, 'recovery-plan.lrScale'],
      [{ ...plan, rung: 'pray' }, MalformedMessageError, 'recovery-plan.rung'],
      [{ ...plan, rung: 'checkpoint', checkpointId: '' }, MalformedMessageError, 'recovery-plan.checkpointId'],
      [{ ...plan, rung: 'replica', donors: [] , weights: [] }, MalformedMessageError, 'recovery-plan.donors'],
      [{ ...plan, targetPeer: '' }, MalformedMessageError, 'recovery-plan.targetPeer'],
      [{ ...plan, donors: [{ peerId: P3, stage: 1 }, { peerId: P2, stage: 3 }] }, MalformedMessageError, 'recovery-plan.donors[0].peerId'],
      [{ ...plan, donors: Array.from({ length: 9 }, () => ({ peerId: P1, stage: 1 })) }, LimitExceededError, 'recovery-plan.donors']
    ]
    for (const [msg, cls, field] of bad) expectError(() => encodeMessage(msg as Message), cls, field)
    expectError(() => encodeMessage({ kind: 'gossip' } as unknown as Message), UnknownKindError, 'message.kind')
    expectError(() => validateMessage(null), MalformedMessageError, 'message')
  })

  it('decoder rejects over-limit sizes before parsing', () => {
    const huge = new Uint8Array(MAX_GOSSIP_MESSAGE_BYTES + 1)
    expectError(() => decodeMessage(huge), FrameTooLargeError)
    const bytes = encodeMessage(assignment)
    expectError(() => decodeMessage(bytes, { maxBytes: bytes.byteLength - 1 }), FrameTooLargeError)
    expect(decodeMessage(bytes, { maxBytes: bytes.byteLength })).toEqual(assignment)
    // maxBytes cannot raise the ceiling
    expectError(() => decodeMessage(huge, { maxBytes: 2 * MAX_GOSSIP_MESSAGE_BYTES }), FrameTooLargeError)
    expectError(() => decodeMessage(new Uint8Array(0)), TruncatedFrameError)
  })

  it('decoder rejects truncated input', () => {
    const bytes = encodeMessage(assignment)
    for (let n = 1; n < bytes.byteLength; n++) {
      const err = catchError(() => decodeMessage(bytes.subarray(0, n)))
      expect(err).toBeInstanceOf(ProtocolError)
    }
    // cut inside the nested assignment body: the length prefix points past the end
    expectError(() => decodeMessage(bytes.subarray(0, 20)), TruncatedFrameError)
  })

  it('decoder rejects unknown, missing and mixed kinds', () => {
    expectError(() => decodeMessage(envelope({ kind: 99, begin: { epoch: 1, iteration: 1 } })), UnknownKindError, 'message.kind')
    expectError(() => decodeMessage(envelope({ begin: { epoch: 1, iteration: 1 } })), UnknownKindError)
    expectError(() => decodeMessage(envelope({ kind: 3 })), MalformedMessageError, 'message.begin')
    expectError(() => decodeMessage(envelope({ kind: 3, commit: { epoch: 1, iteration: 1, skipped: false, snapshot: false } })), MalformedMessageError, 'message.commit')
    expectError(() => decodeMessage(envelope({ kind: 3, begin: { epoch: 1, iteration: 1 }, abort: { epoch: 1, iteration: 1, reason: '' } })), MalformedMessageError, 'message.abort')
  })

  it('decoder validates every field after parsing', () => {
    const hb = { ...heartbeat, kind: undefined, role: 1, held: [{ kind: 1, stage: 2, iteration: 1229 }, { kind: 3, stage: 3, iteration: 1199 }] } as unknown as pb.Heartbeat
    expect(decodeMessage(envelope({ kind: 1, heartbeat: hb }))).toEqual(heartbeat)
    expectError(() => decodeMessage(envelope({ kind: 1, heartbeat: { ...hb, held: [{ kind: 4, stage: 0, iteration: 0 }] } })), MalformedMessageError, 'heartbeat.held[0].kind')
    expectError(() => decodeMessage(envelope({ kind: 1, heartbeat: { ...hb, role: 9 } })), MalformedMessageError, 'heartbeat.role')
    expectError(() => decodeMessage(envelope({ kind: 1, heartbeat: { ...hb, loss: NaN } })), MalformedMessageError, 'heartbeat.loss')
    expectError(() => decodeMessage(envelope({ kind: 1, heartbeat: { ...hb, tokensPerSec: -Infinity } })), MalformedMessageError, 'heartbeat.tokensPerSec')
    // rssBytes = 2^60: a valid uint64 but not a safe integer (the encoder refuses it, so hand-write
    // it); the reader already refuses to turn it into a number
    const body = [...pb.Heartbeat.encode({ ...hb, rssBytes: 0 }), 10 << 3, ...varint(2n ** 60n)]
    const raw = Uint8Array.from([0x08, 1, 0x12, ...varint(BigInt(body.length)), ...body])
    expectError(() => decodeMessage(raw), MalformedMessageError, /varint/)
    expectError(() => decodeMessage(envelope({ kind: 1, heartbeat: { ...hb, peerId: 'p'.repeat(1000) } })), LimitExceededError, 'heartbeat.peerId')
    expectError(() => decodeMessage(envelope({ kind: 1, heartbeat: { ...hb, stage: 5000 } })), MalformedMessageError, 'heartbeat.stage')
    // a missing body field decodes to its proto3 default, which must still validate
    expectError(() => decodeMessage(envelope({ kind: 1, heartbeat: { ...hb, peerId: '' } })), MalformedMessageError, 'heartbeat.peerId')
    const rp = { ...plan, kind: undefined, rung: 3 } as unknown as pb.RecoveryPlan
    expect(decodeMessage(envelope({ kind: 8, recoveryPlan: rp }))).toEqual(plan)
    expectError(() => decodeMessage(envelope({ kind: 8, recoveryPlan: { ...rp, rung: 0 } })), MalformedMessageError, 'recovery-plan.rung')
    expectError(() => decodeMessage(envelope({ kind: 8, recoveryPlan: { ...rp, lrScale: NaN } })), MalformedMessageError, 'recovery-plan.lrScale')
    const rf = { peerId: P3, epoch: 9, stage: 2, rung: 3, code: 'ERR_DONOR_LOST', reason: 'gone' }
    expect(decodeMessage(envelope({ kind: 10, recoveryFailed: rf }))).toMatchObject({ kind: 'recovery-failed', rung: 'checkfree', code: 'ERR_DONOR_LOST' })
    expectError(() => decodeMessage(envelope({ kind: 10, recoveryFailed: { ...rf, code: 'not a code' } })), MalformedMessageError, 'recovery-failed.code')
    expectError(() => decodeMessage(envelope({ kind: 10, recoveryFailed: { ...rf, code: '' } })), MalformedMessageError, 'recovery-failed.code')
  })

  it('decoder rejects oversized counts while parsing', () => {
    const stages = Array.from({ length: MAX_STAGES + 1 }, (_, i) => ({ stage: i, peers: [], addrs: [] }))
    const bytes = envelope({ kind: 2, assignment: { ...assignment, joining: [], stages } })
    expect(bytes.byteLength).toBeLessThan(MAX_GOSSIP_MESSAGE_BYTES)
    expectError(() => decodeMessage(bytes), LimitExceededError, 'stages')
    const crowded = envelope({ kind: 2, assignment: { ...assignment, joining: [], stages: [{ stage: 0, peers: Array(9).fill(P1), addrs: [] }] } })
    expectError(() => decodeMessage(crowded), LimitExceededError, 'peers')
  })

  it('decoder turns garbage into typed errors', () => {
    for (const g of [[0xff], [0x08, 0xff, 0xff], [0x0f, 0x00], [0x12, 0x05, 0x01], [0x0b, 0x0b, 0x0b], Array(300).fill(0x80)]) {
      expect(catchError(() => decodeMessage(Uint8Array.from(g)))).toBeInstanceOf(ProtocolError)
    }
    // deeply nested groups: recursion in the skipper must come out as a typed error too
    expect(catchError(() => decodeMessage(new Uint8Array(200_000).fill(0x0b)))).toBeInstanceOf(ProtocolError)
  })
})

// ---------------------------------------------------------------- weights protocol

const CRC = 0xdeadbeef
const manifest: WeightsManifest = {
  kind: 'manifest',
  stage: 2,
  iteration: 1234,
  tensors: [
    { name: 'blocks.4.attn.wq', dtype: 'float32', shape: [128, 128], byteLength: 65536, crc32: CRC },
    { name: 'opt.step', dtype: 'int32', shape: [], byteLength: 4, crc32: CRC },
    { name: 'blocks.4.ln1.g', dtype: 'float32', shape: [128], byteLength: 512, crc32: CRC }
  ],
  totalBytes: 65536 + 4 + 512
}

function f32Bytes (values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer)
}

describe('weights messages', () => {
  const weightSamples: WeightsMessage[] = [
    { kind: 'request', stage: 2, minIteration: 1200, names: [], includeOptimizer: true },
    { kind: 'request', stage: 0, minIteration: -1, names: ['embed.tok', 'blocks.0.mlp.w1'], includeOptimizer: false },
    manifest,
    { ...manifest, iteration: -1 },
    { kind: 'chunk', index: 2, offset: 256, data: f32Bytes([1, 2, 3, -4.5]) },
    { kind: 'end', totalBytes: manifest.totalBytes },
    { kind: 'error', code: 'ERR_ITERATION_UNAVAILABLE', message: 'have 1100, asked for >= 1200' }
  ]

  it('round-trips every kind', () => {
    for (const m of weightSamples) {
      expect(decodeWeightsMessage(encodeWeightsMessage(m), { manifest })).toEqual(m)
    }
  })

  it('chunk data is a view into the frame, not a copy', () => {
    const bytes = encodeWeightsMessage({ kind: 'chunk', index: 0, offset: 0, data: f32Bytes([7, 8]) })
    const m = decodeWeightsMessage(bytes)
    if (m.kind !== 'chunk') throw new Error('kind')
    expect(m.data.buffer).toBe(bytes.buffer)
  })

  it('peekChunk reads a chunk in place exactly as the decoder does, split over transport buffers or not', () => {
    const big: WeightsManifest = { ...manifest, tensors: [{ ...manifest.tensors[0], shape: [1024, 1024], byteLength: 4 * 2 ** 20 }, ...manifest.tensors.slice(1)], totalBytes: 4 * 2 ** 20 + 516 }
    for (const [index, offset, n] of [[0, 0, 1], [0, 4, 7], [2, 256, 4], [0, 2 ** 21, 2 ** 18], [1, 0, 1]]) {
      const data = f32Bytes(Array.from({ length: n }, (_, i) => i - 3.5))
      const bytes = encodeWeightsMessage({ kind: 'chunk', index, offset, data })
      const list = new Uint8ArrayList()
      for (let at = 0; at < bytes.byteLength; at += 1000) list.append(bytes.subarray(at, at + 1000))
      for (const frame of [bytes, list]) {
        const view = peekChunk(frame, big)
        expect(view).toMatchObject({ index, offset, info: big.tensors[index] })
        expect(frame.subarray((view as { dataStart: number }).dataStart)).toEqual(data)
      }
    }
  })

  it('peekChunk leaves other kinds and layouts to the decoder, and rejects a misplaced chunk with a typed error', () => {
    expect(peekChunk(encodeWeightsMessage({ kind: 'end', totalBytes: 4 }), manifest)).toBeUndefined()
    expect(peekChunk(encodeWeightsMessage(manifest), manifest)).toBeUndefined()
    // the same chunk with its fields in another (valid) order: the decoder reads it, peekChunk passes
    const data = f32Bytes([1, 2])
    const reordered = Uint8Array.from([0x22, 2 + 2 + data.byteLength, 0x1a, data.byteLength, ...data, 0x08, 0x02, 0x08, 0x03])
    expect(decodeWeightsMessage(reordered, { manifest })).toMatchObject({ kind: 'chunk', index: 2 })
    expect(peekChunk(reordered, manifest)).toBeUndefined()
    // a truncated frame is not a chunk in the usual layout either
    const ok = encodeWeightsMessage({ kind: 'chunk', index: 2, offset: 0, data })
    expect(peekChunk(ok.subarray(0, ok.byteLength - 1), manifest)).toBeUndefined()
    const past = encodeWeightsMessage({ kind: 'chunk', index: 2, offset: 512, data })
    expect(() => peekChunk(past, manifest)).toThrow(MalformedMessageError)
    const beyond = encodeWeightsMessage({ kind: 'chunk', index: 3, offset: 0, data })
    expect(() => peekChunk(beyond, manifest)).toThrow(/manifest has 3 tensors/)
    const odd = Uint8Array.from([0x08, 0x03, 0x22, 2 + 2 + 2 + 3, 0x08, 0x02, 0x10, 0x02, 0x1a, 3, 1, 2, 3])
    expect(() => peekChunk(odd, manifest)).toThrow(ProtocolError)
  })

  it('checks a manifest for consistency', () => {
    const t0 = manifest.tensors[0]
    const bad: Array<[WeightsManifest, new (...a: any[]) => ProtocolError, string]> = [
      [{ ...manifest, tensors: [{ ...t0, byteLength: 100 }], totalBytes: 100 }, BadShapeError, 'manifest.tensors[0].byteLength'],
      [{ ...manifest, tensors: [{ ...t0, shape: [128, 0] }], totalBytes: 0 }, BadShapeError, 'manifest.tensors[0].shape[1]'],
      [{ ...manifest, tensors: [{ ...t0, shape: [1, 1, 1, 1, 1, 1, 1, 1, 1] }], totalBytes: 4 }, LimitExceededError, 'manifest.tensors[0].shape'],
      [{ ...manifest, tensors: [{ ...t0, dtype: 'float16' as 'float32' }] }, BadDTypeError, 'manifest.tensors[0].dtype'],
      [{ ...manifest, tensors: [{ ...t0, crc32: 2 ** 32 }], totalBytes: 65536 }, MalformedMessageError, 'manifest.tensors[0].crc32'],
      [{ ...manifest, tensors: [{ ...t0, crc32: -1 }], totalBytes: 65536 }, MalformedMessageError, 'manifest.tensors[0].crc32'],
      [{ ...manifest, tensors: [t0, t0], totalBytes: 2 * 65536 }, MalformedMessageError, 'manifest.tensors[1].name'],
      [{ ...manifest, totalBytes: 1 }, MalformedMessageError, 'manifest.totalBytes'],
      [{ ...manifest, iteration: -2 }, MalformedMessageError, 'manifest.iteration'],
      [{ ...manifest, iteration: 0.5 }, MalformedMessageError, 'manifest.iteration'],
      [{ ...manifest, tensors: [{ ...t0, name: 'has space' }], totalBytes: 65536 }, MalformedMessageError, 'manifest.tensors[0].name']
    ]
    for (const [m, cls, field] of bad) expectError(() => encodeWeightsMessage(m), cls, field)
    // an unknown dtype code on the wire
    const wire = pb.WeightsEnvelope.encode({
      kind: 2,
      manifest: { stage: 2, iteration: 1, tensors: [{ name: 'w', dtype: 3, shape: [1], byteLength: 4, crc32: CRC }], totalBytes: 4 }
    })
    expectError(() => decodeWeightsMessage(wire), BadDTypeError, 'manifest.tensors[0].dtype')
  })

  it('checks chunks against the manifest', () => {
    const chunk = (index: number, offset: number, data: Uint8Array): Uint8Array =>
      pb.WeightsEnvelope.encode({ kind: 3, chunk: { index, offset, data: data as Uint8Array<ArrayBuffer> } })
    expectError(() => decodeWeightsMessage(chunk(3, 0, f32Bytes([1])), { manifest }), MalformedMessageError, 'chunk.index')
    expectError(() => decodeWeightsMessage(chunk(2, 508, f32Bytes([1, 2])), { manifest }), MalformedMessageError, 'chunk.offset')
    expectError(() => decodeWeightsMessage(chunk(2, 2, f32Bytes([1])), { manifest }), MalformedMessageError, 'chunk.offset')
    expectError(() => decodeWeightsMessage(chunk(2, 0, new Uint8Array(6)), { manifest }), MalformedMessageError, 'chunk.data')
    expectError(() => decodeWeightsMessage(chunk(2, 0, new Uint8Array(0)), { manifest }), MalformedMessageError, 'chunk.data')
    const e = expectError(() => decodeWeightsMessage(chunk(2, 16, f32Bytes([1, NaN])), { manifest }), NonFiniteTensorError)
    expect(e.message).toMatch(/element 5 is NaN/)
    expectError(() => decodeWeightsMessage(chunk(0, 0, f32Bytes([Infinity])), { manifest }), NonFiniteTensorError)
    expect(decodeWeightsMessage(chunk(0, 0, f32Bytes([NaN])), { manifest, rejectNonFinite: false }).kind).toBe('chunk')
    // int32 data may hold any bit pattern
    expect(decodeWeightsMessage(chunk(1, 0, f32Bytes([NaN])), { manifest }).kind).toBe('chunk')
    // without a manifest only the self-contained checks apply
    expect(decodeWeightsMessage(chunk(3, 0, f32Bytes([NaN]))).kind).toBe('chunk')
  })

  it('bounds sizes and counts', () => {
    expectError(() => encodeWeightsMessage({ kind: 'chunk', index: 0, offset: 0, data: new Uint8Array(MAX_WEIGHTS_CHUNK_BYTES + 4) }), LimitExceededError, 'chunk.data')
    expectError(() => decodeWeightsMessage(new Uint8Array(MAX_WEIGHTS_FRAME_BYTES + 1)), FrameTooLargeError)
    expectError(() => decodeWeightsMessage(new Uint8Array(0)), TruncatedFrameError)
    const names = Array.from({ length: 4097 }, (_, i) => `t${i}`)
    expectError(() => encodeWeightsMessage({ kind: 'request', stage: 0, minIteration: -1, names, includeOptimizer: false }), LimitExceededError, 'request.names')
    expectError(() => decodeWeightsMessage(pb.WeightsEnvelope.encode({ kind: 1, request: { stage: 0, minIteration: -1, names, includeOptimizer: false } })), LimitExceededError, 'names')
    expectError(() => encodeWeightsMessage({ kind: 'request', stage: 0, minIteration: -1, names: ['a', 'a'], includeOptimizer: false }), MalformedMessageError, 'request.names[1]')
    expectError(() => encodeWeightsMessage({ kind: 'request', stage: 0, minIteration: -2, names: [], includeOptimizer: false }), MalformedMessageError, 'request.minIteration')
    expectError(() => encodeWeightsMessage({ kind: 'request', stage: 0, minIteration: 2 ** 31, names: [], includeOptimizer: false }), MalformedMessageError, 'request.minIteration')
    expectError(() => encodeWeightsMessage({ kind: 'request', stage: 0, minIteration: 0.5, names: [], includeOptimizer: false }), MalformedMessageError, 'request.minIteration')
    expectError(() => encodeWeightsMessage({ kind: 'error', code: 'lower', message: '' }), MalformedMessageError, 'error.code')
    expectError(() => encodeWeightsMessage({ kind: 'end', totalBytes: -1 }), MalformedMessageError, 'end.totalBytes')
  })

  it('rejects unknown and mismatched kinds, and garbage', () => {
    expectError(() => decodeWeightsMessage(pb.WeightsEnvelope.encode({ kind: 42 })), UnknownKindError, 'weights.kind')
    expectError(() => decodeWeightsMessage(pb.WeightsEnvelope.encode({ kind: 4 })), MalformedMessageError, 'weights.end')
    expectError(() => decodeWeightsMessage(pb.WeightsEnvelope.encode({ kind: 4, end: { totalBytes: 1 }, error: { code: 'X', message: '' } })), MalformedMessageError, 'weights.error')
    expectError(() => encodeWeightsMessage({ kind: 'nope' } as unknown as WeightsMessage), UnknownKindError)
    for (const g of [[0xff, 0xff], [0x22, 0x7f], [0x08, 0x03, 0x22, 0x05, 0x1a, 0x09]]) {
      expect(catchError(() => decodeWeightsMessage(Uint8Array.from(g)))).toBeInstanceOf(ProtocolError)
    }
  })
})

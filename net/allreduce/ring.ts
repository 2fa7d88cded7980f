/**
 * The ring all-reduce (index.ts explains the algorithm and why every member ends with the same
 * bits): the service that owns the protocol handler and routes each inbound stream to its round
 * (or keeps it until that round begins), the round itself, and the wire codec.
 *
 * Wire: length-prefixed frames (net/transport/framed-stream.ts). Every frame starts with
 *
 *   off  size  field
 *   0    3     magic "SPA"
 *   3    1     version (1)
 *   4    1     kind: 1 header, 2 abort, 3 piece
 *   5    1     flags (abort: bit 0 = it refuses the stream it is sent on; bits 1-3 = problem + 1)
 *   6    2     step, u16 (0xffff: before the first step)
 *
 * A piece is those 8 bytes and then up to PIECE_BYTES of float32 data (little-endian, the host's
 * order: every supported platform). A header, and an abort, go on with (integers little-endian):
 *
 *   8    4     group size N
 *   12   4     chunk index
 *   16   4     chunk elements
 *   20   4     total elements T
 *   24   8     group digest: the first 8 bytes of sha256 over the ordered peer ids, '\n'-joined
 *   32   2     key length k (header: 1..MAX_ROUND_KEY_LENGTH; abort: may be 0)
 *   34   k     round key, printable ASCII
 *
 * and an abort then carries u8 length + error code, u8 length + the peer id the failure is about
 * (may be empty), u16 length + reason (ASCII).
 *
 * Each step, a sender writes one header and then ceil(elements / PIECE_ELEMENTS) pieces (none for
 * an empty chunk). The receiver reads the header alone (at most MAX_HEADER_BYTES), checks sender,
 * key, group, step, chunk and length against what its round expects, and only then admits the
 * pieces, each of exactly the expected length; an abort (at most MAX_HEADER_BYTES) may come in
 * place of any frame, and the kind byte tells them apart. Nothing longer is ever buffered.
 */
import { createHash } from 'node:crypto'
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Uint8ArrayList } from 'uint8arraylist'
import { ConfigError, SpotpipeError, createLog } from '../../common/index.js'
import { ID_PATTERN, MAX_ERROR_CODE_LENGTH, MAX_ID_LENGTH, MAX_PEER_ID_LENGTH, MAX_REASON_LENGTH } from '../../protocols/index.js'
import { FrameTooLargeError, MalformedFrameError, endFrames, openStream, readFrameLists, writeFrame } from '../transport/index.js'
import {
  ALLREDUCE_MAGIC, ALLREDUCE_PROTOCOL, ALLREDUCE_VERSION, CONTROL_FLUSH_MS, HEADER_FIXED_BYTES, LINGER_MS, MAX_GROUP_SIZE,
  MAX_HEADER_BYTES, MAX_ROUND_KEY_LENGTH, MAX_STREAMS_PER_CONNECTION, MAX_TOTAL_ELEMENTS, PIECE_BYTES, PIECE_ELEMENTS,
  PIECE_PREAMBLE_BYTES, READ_HIGH_WATER_MARK, ROUND_KEY_PATTERN
} from './constants.js'
import {
  ALLREDUCE_ERROR_CODES, AllReduceAbortedError, AllReduceBusyError, AllReduceError, AllReduceProtocolError, AllReduceTimeoutError,
  GroupMismatchError, NotInGroupError, PeerLostError, RoundKeyMismatchError, type AllReduceProblem
} from './errors.js'
import type {
  AllReduceFaults, AllReduceInit, AllReduceNode, AllReduceOptions, AllReduceResult, AllReduceRoundKey, AllReduceService, AllReduceStats
} from './index.js'

const log = createLog('allreduce')

/** Failures remembered per key, so a stream that comes late for a round that already failed is told at once. */
const RECENT_FAILURES = 32

// ---------------------------------------------------------------------------------------------
// round keys and the chunk layout

/** The key every frame of the round carries: `${runId}:e${epoch}:i${iteration}:s${stage}`, or the caller's own string. */
export function roundKeyString (key: AllReduceRoundKey | string): string {
  if (typeof key === 'string') {
    if (key.length === 0 || key.length > MAX_ROUND_KEY_LENGTH || !ROUND_KEY_PATTERN.test(key)) {
      throw new ConfigError(`round key must be 1..${MAX_ROUND_KEY_LENGTH} printable ASCII characters without spaces, got ${JSON.stringify(key.slice(0, 80))}`)
    }
    return key
  }
  const { runId, epoch, iteration, stage } = key ?? {}
  if (typeof runId !== 'string' || runId.length === 0 || runId.length > MAX_ID_LENGTH || !ID_PATTERN.test(runId)) {
    throw new ConfigError(`round key: runId must be 1..${MAX_ID_LENGTH} characters of [A-Za-z0-9._-], got ${JSON.stringify(runId)}`)
  }
  for (const [name, v] of [['epoch', epoch], ['iteration', iteration], ['stage', stage]] as const) {
    if (!Number.isSafeInteger(v) || v < 0 || v > 0xffffffff) throw new ConfigError(`round key: ${name} must be an integer in [0, 2^32), got ${v}`)
  }
  return `${runId}:e${epoch}:i${iteration}:s${stage}`
}

export interface ChunkRange { start: number, length: number }

/** T elements in N chunks of floor(T/N) or floor(T/N) + 1 elements, the longer ones first. */
export function chunkRanges (total: number, n: number): ChunkRange[] {
  const base = Math.floor(total / n)
  const rem = total % n
  const out: ChunkRange[] = []
  let start = 0
  for (let c = 0; c < n; c++) {
    const length = base + (c < rem ? 1 : 0)
    out.push({ start, length })
    start += length
  }
  return out
}

/** The ordered group's fingerprint carried in every header (hex of 8 bytes). */
export function groupDigest (group: readonly string[]): string {
  return createHash('sha256').update(group.join('\n')).digest().subarray(0, 8).toString('hex')
}

/** The tensors as one flat vector, without copying them. */
class FlatView {
  private readonly arrays: readonly Float32Array[]
  /** offsets[i]: flat index of arrays[i][0]. */
  private readonly offsets: number[]
  readonly length: number

  constructor (arrays: readonly Float32Array[]) {
    this.arrays = arrays
    this.offsets = []
    let at = 0
    for (const a of arrays) { this.offsets.push(at); at += a.length }
    this.length = at
  }

  /** Calls `fn` for each array part of flat [start, end): the array, its element range [from, to), and the flat index of `from`. */
  each (start: number, end: number, fn: (a: Float32Array, from: number, to: number, at: number) => void): void {
    if (start >= end) return
    // the last array starting at or before `start` (empty arrays share their successor's offset)
    let lo = 0
    let hi = this.arrays.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.offsets[mid] <= start) lo = mid
      else hi = mid - 1
    }
    let pos = start
    for (let i = lo; pos < end && i < this.arrays.length; i++) {
      const a = this.arrays[i]
      const from = pos - this.offsets[i]
      const to = Math.min(a.length, end - this.offsets[i])
      if (to > from) {
        fn(a, from, to, pos)
        pos += to - from
      }
    }
  }

  /** The bytes of flat [start, end), as views on the arrays (for a frame's parts). */
  bytes (start: number, end: number): Uint8Array[] {
    const out: Uint8Array[] = []
    this.each(start, end, (a, from, to) => { out.push(new Uint8Array(a.buffer, a.byteOffset + from * 4, (to - from) * 4)) })
    return out
  }

  /** flat[start + i] += src[i] for i < count. */
  add (start: number, src: Float32Array, count: number): void {
    this.each(start, start + count, (a, from, to, at) => {
      for (let i = from, j = at - start; i < to; i++, j++) a[i] += src[j]
    })
  }

  /** flat[start + i] = src[i] for i < count (the bytes, unchanged). */
  set (start: number, src: Float32Array, count: number): void {
    this.each(start, start + count, (a, from, to, at) => { a.set(src.subarray(at - start, at - start + to - from), from) })
  }

  /** flat[i] /= n over [start, end). */
  divide (start: number, end: number, n: number): void {
    this.each(start, end, (a, from, to) => {
      for (let i = from; i < to; i++) a[i] = a[i] / n
    })
  }
}

// ---------------------------------------------------------------------------------------------
// wire codec

const KIND_HEADER = 1
const KIND_ABORT = 2
const KIND_PIECE = 3
const NO_STEP = 0xffff
const PROBLEMS: readonly AllReduceProblem[] = ['malformed', 'kind', 'step', 'chunk', 'length']

interface FrameCommon { step: number, n: number, chunk: number, elements: number, total: number, digest: string, key: string }
export interface HeaderFrame extends FrameCommon { kind: 'header' }
export interface AbortFrame extends FrameCommon {
  kind: 'abort'
  /** It refuses the stream it came on (a reply to the stream's opener), rather than relaying a failure. */
  refusal: boolean
  problem?: AllReduceProblem
  code: string
  /** The peer the failure is about ('' if none). */
  peer: string
  reason: string
}
export interface PieceFrame { kind: 'piece', step: number }
export type AllReduceFrame = HeaderFrame | AbortFrame | PieceFrame

function preamble (kind: number, flags: number, step: number): Uint8Array {
  const b = new Uint8Array(PIECE_PREAMBLE_BYTES)
  b.set(ALLREDUCE_MAGIC, 0)
  b[3] = ALLREDUCE_VERSION
  b[4] = kind
  b[5] = flags
  new DataView(b.buffer).setUint16(6, step, true)
  return b
}

/** The 8 bytes in front of a piece's data. */
export function piecePreamble (step: number): Uint8Array { return preamble(KIND_PIECE, 0, step) }

function ascii (s: string, max: number): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?')
  return clean.length <= max ? clean : clean.slice(0, max - 3) + '...'
}

function encodeCommon (kind: number, flags: number, f: FrameCommon, extra: number): { bytes: Uint8Array, view: DataView, at: number } {
  const key = Buffer.from(ascii(f.key, MAX_ROUND_KEY_LENGTH), 'latin1')
  const bytes = new Uint8Array(HEADER_FIXED_BYTES + key.byteLength + extra)
  bytes.set(preamble(kind, flags, f.step), 0)
  const view = new DataView(bytes.buffer)
  view.setUint32(8, f.n, true)
  view.setUint32(12, f.chunk, true)
  view.setUint32(16, f.elements, true)
  view.setUint32(20, f.total, true)
  bytes.set(Buffer.from(f.digest.padEnd(16, '0').slice(0, 16), 'hex'), 24)
  view.setUint16(32, key.byteLength, true)
  bytes.set(key, HEADER_FIXED_BYTES)
  return { bytes, view, at: HEADER_FIXED_BYTES + key.byteLength }
}

export function encodeHeader (f: Omit<HeaderFrame, 'kind'>): Uint8Array {
  return encodeCommon(KIND_HEADER, 0, f, 0).bytes
}

export function encodeAbort (f: Omit<AbortFrame, 'kind'>): Uint8Array {
  const code = Buffer.from(ascii(f.code, MAX_ERROR_CODE_LENGTH), 'latin1')
  const peer = Buffer.from(ascii(f.peer, MAX_PEER_ID_LENGTH), 'latin1')
  const reason = Buffer.from(ascii(f.reason, MAX_REASON_LENGTH), 'latin1')
  const problem = f.problem === undefined ? 0 : PROBLEMS.indexOf(f.problem) + 1
  const flags = (f.refusal ? 1 : 0) | (problem << 1)
  const { bytes, view, at } = encodeCommon(KIND_ABORT, flags, f, 1 + code.byteLength + 1 + peer.byteLength + 2 + reason.byteLength)
  let p = at
  bytes[p++] = code.byteLength; bytes.set(code, p); p += code.byteLength
  bytes[p++] = peer.byteLength; bytes.set(peer, p); p += peer.byteLength
  view.setUint16(p, reason.byteLength, true); p += 2
  bytes.set(reason, p)
  return bytes
}

/** The kind and step of a frame from its first 8 bytes; throws AllReduceProtocolError if they are not ours. */
function peekPreamble (frame: Uint8ArrayList, from: string): { kind: number, step: number } {
  if (frame.byteLength < PIECE_PREAMBLE_BYTES) throw malformed(from, `a frame of ${frame.byteLength} bytes`)
  const head = frame.subarray(0, PIECE_PREAMBLE_BYTES)
  if (head[0] !== ALLREDUCE_MAGIC[0] || head[1] !== ALLREDUCE_MAGIC[1] || head[2] !== ALLREDUCE_MAGIC[2]) throw malformed(from, 'a frame without the all-reduce magic')
  if (head[3] !== ALLREDUCE_VERSION) throw malformed(from, `a frame of wire version ${head[3]} (this member speaks ${ALLREDUCE_VERSION})`)
  if (head[4] !== KIND_HEADER && head[4] !== KIND_ABORT && head[4] !== KIND_PIECE) throw malformed(from, `a frame of unknown kind ${head[4]}`)
  return { kind: head[4], step: head[6] | (head[7] << 8) }
}

/** Decodes a header, abort or (just the preamble of) a piece. Throws AllReduceProtocolError('malformed'). */
export function decodeFrame (frame: Uint8ArrayList, from: string): AllReduceFrame {
  const { kind, step } = peekPreamble(frame, from)
  if (kind === KIND_PIECE) return { kind: 'piece', step }
  const b = frame.subarray()
  if (b.byteLength < HEADER_FIXED_BYTES) throw malformed(from, `a ${kind === KIND_HEADER ? 'header' : 'abort'} of ${b.byteLength} bytes`)
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const keyLength = view.getUint16(32, true)
  const common: FrameCommon = {
    step,
    n: view.getUint32(8, true),
    chunk: view.getUint32(12, true),
    elements: view.getUint32(16, true),
    total: view.getUint32(20, true),
    digest: Buffer.from(b.subarray(24, 32)).toString('hex'),
    key: ''
  }
  if (keyLength > MAX_ROUND_KEY_LENGTH || HEADER_FIXED_BYTES + keyLength > b.byteLength) throw malformed(from, `a round key of ${keyLength} bytes`)
  common.key = Buffer.from(b.subarray(HEADER_FIXED_BYTES, HEADER_FIXED_BYTES + keyLength)).toString('latin1')
  let p = HEADER_FIXED_BYTES + keyLength
  if (kind === KIND_HEADER) {
    if (keyLength === 0 || !ROUND_KEY_PATTERN.test(common.key)) throw malformed(from, 'a header without a valid round key')
    if (p !== b.byteLength) throw malformed(from, `a header with ${b.byteLength - p} bytes after its key`)
    return { kind: 'header', ...common }
  }
  const str = (lengthBytes: 1 | 2, max: number, what: string): string => {
    if (p + lengthBytes > b.byteLength) throw malformed(from, `an abort cut off before its ${what}`)
    const len = lengthBytes === 1 ? b[p] : view.getUint16(p, true)
    p += lengthBytes
    if (len > max || p + len > b.byteLength) throw malformed(from, `an abort whose ${what} (${len} bytes) does not fit`)
    const s = Buffer.from(b.subarray(p, p + len)).toString('latin1')
    p += len
    return s
  }
  const code = str(1, MAX_ERROR_CODE_LENGTH, 'code')
  const peer = str(1, MAX_PEER_ID_LENGTH, 'peer id')
  const reason = str(2, MAX_REASON_LENGTH, 'reason')
  if (p !== b.byteLength) throw malformed(from, `an abort with ${b.byteLength - p} trailing bytes`)
  if (code.length === 0) throw malformed(from, 'an abort without an error code')
  const flags = b[5]
  const problem = PROBLEMS[(flags >> 1) - 1]
  const out: AbortFrame = { kind: 'abort', ...common, refusal: (flags & 1) === 1, code, peer, reason }
  if (problem !== undefined) out.problem = problem
  return out
}

function malformed (from: string, what: string, step?: number): AllReduceProtocolError {
  return new AllReduceProtocolError('malformed', `${from} sent ${what}`, { peer: from, step })
}

// ---------------------------------------------------------------------------------------------
// small helpers

interface Deferred<T> { promise: Promise<T>, resolve: (v: T) => void }

/** A promise and its resolve (rejections never happen: waits are cut short by the round's signal instead). */
function deferred<T> (): Deferred<T> {
  let resolve!: (v: T) => void
  const promise = new Promise<T>(res => { resolve = res })
  return { promise, resolve }
}

/** `p`, or the signal's reason once it aborts (the promise itself is left alone). */
async function abortable<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted()
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
  }
}

/**
 * Sends a refusal or abort, closes our end, and resets the stream: the remote gets a precise error
 * instead of a bare reset when it is still there and reading, within CONTROL_FLUSH_MS.
 */
async function sendControl (stream: Stream, frame: Uint8Array): Promise<void> {
  const signal = AbortSignal.timeout(CONTROL_FLUSH_MS)
  try {
    if (stream.status === 'open' && stream.writeStatus === 'writable') {
      await writeFrame(stream, frame, signal)
      await endFrames(stream, signal)
    }
  } catch {
    // gone or not reading: the reset says enough
  } finally {
    if (stream.status === 'open') stream.abort(new Error('all-reduce stream refused or aborted'))
  }
}

/** Copies a piece's data (the frame after its preamble) into `dest`. */
function copyPiece (frame: Uint8ArrayList, dest: Uint8Array): void {
  let skip = PIECE_PREAMBLE_BYTES
  let at = 0
  for (const buf of frame) {
    if (skip >= buf.byteLength) { skip -= buf.byteLength; continue }
    const part = skip > 0 ? buf.subarray(skip) : buf
    skip = 0
    dest.set(part, at)
    at += part.byteLength
  }
}

function errorCode (err: unknown): string {
  return err instanceof SpotpipeError ? err.code : 'ERR_UNKNOWN'
}

function message (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function positive (name: string, v: number | undefined, fallback: number): number {
  const x = v ?? fallback
  if (!Number.isFinite(x) || x <= 0) throw new ConfigError(`${name} must be a positive number, got ${v}`)
  return x
}

// ---------------------------------------------------------------------------------------------
// inbound streams

/** An inbound stream: its frame reader, whose admission limit follows what the round expects next. */
class Inbound {
  readonly stream: Stream
  readonly from: string
  readonly controller = new AbortController()
  readonly frames: AsyncGenerator<Uint8ArrayList, void, undefined>
  /** -1: a header is due (at most MAX_HEADER_BYTES); else the exact length of the piece due. */
  expectBytes = -1
  step = 0
  first: HeaderFrame | undefined
  pendingTimer: NodeJS.Timeout | undefined
  attached = false

  constructor (stream: Stream, from: string) {
    this.stream = stream
    this.from = from
    this.frames = readFrameLists(stream, {
      // the real bound is admit's: a header, or exactly the piece due
      maxFrameBytes: Math.max(MAX_HEADER_BYTES, PIECE_PREAMBLE_BYTES + PIECE_BYTES),
      signal: this.controller.signal,
      highWaterMark: READ_HIGH_WATER_MARK,
      admit: length => this.admit(length)
    })
  }

  /** Before any of a frame's body is buffered. An abort fits in any position; anything else must be exactly what is due. */
  private admit (length: number): boolean {
    if (length <= MAX_HEADER_BYTES) return true // a header or an abort (or a short piece, checked once read)
    if (length === this.expectBytes) return true
    const due = this.expectBytes < 0 ? `a header of at most ${MAX_HEADER_BYTES} bytes` : `a piece of ${this.expectBytes} bytes`
    throw new AllReduceProtocolError('length', `${this.from} announced a frame of ${length} bytes where ${due} was due`, { peer: this.from, step: this.step })
  }

  /** The next frame, or undefined after the end-of-stream frame. */
  async next (): Promise<Uint8ArrayList | undefined> {
    const r = await this.frames.next()
    return r.done === true ? undefined : r.value
  }

  /** Stops reading (listeners off); the stream itself is left to the caller. */
  close (reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason)
    clearTimeout(this.pendingTimer)
    void this.frames.return(undefined).catch(() => {})
  }
}

// ---------------------------------------------------------------------------------------------
// the service

/** A stream still due from the predecessor of a round that failed for a key mismatch (see rememberMismatch). */
interface Mismatch {
  /** The failed round's key. */
  ours: string
  /** The key of the stream due; undefined: any other key than `ours` (known only from an abort). */
  theirs: string | undefined
  /** performance.now() after which it no longer comes. */
  until: number
}

interface Plan {
  key: string
  /** 'mean' divides each owned chunk by the group size before the all-gather; 'sum' does not. */
  op: 'mean' | 'sum'
  group: string[]
  peers: PeerId[]
  rank: number
  tensors: Float32Array[]
  total: number
  timeoutMs: number
  signal: AbortSignal | undefined
}

export class AllReduceServiceImpl implements AllReduceService {
  readonly node: AllReduceNode
  readonly self: string
  readonly timeoutMs: number
  readonly dialTimeoutMs: number
  readonly helloTimeoutMs: number
  readonly pendingTimeoutMs: number
  readonly maxPendingStreams: number
  readonly faults: AllReduceFaults | undefined
  /** Aborted by stop(): ends lingering closes and background reads. */
  readonly closing = new AbortController()
  private readonly onRefused: AllReduceInit['onRefused']
  private readonly rounds = new Map<string, Round>()
  /** Streams whose round has not begun here, by remote peer (at most one each). */
  private readonly pending = new Map<string, Inbound>()
  private readonly inbound = new Set<Inbound>()
  private readonly recentFailures = new Map<string, Error>()
  /** Predecessors of rounds that failed here for a key mismatch, whose stream is still due; see rememberMismatch. */
  private readonly recentMismatches = new Map<string, Mismatch>()
  private readonly tasks = new Set<Promise<void>>()
  private readonly counters = { rounds: 0, failed: 0, refused: 0 }
  private stopped = false

  constructor (node: AllReduceNode, init: AllReduceInit) {
    this.node = node
    this.self = node.peerId.toString()
    this.timeoutMs = positive('timeoutMs', init.timeoutMs, 30_000)
    this.dialTimeoutMs = positive('dialTimeoutMs', init.dialTimeoutMs, 10_000)
    this.helloTimeoutMs = positive('helloTimeoutMs', init.helloTimeoutMs, 10_000)
    this.pendingTimeoutMs = positive('pendingTimeoutMs', init.pendingTimeoutMs, 30_000)
    const maxPending = init.maxPendingStreams ?? 16
    if (!Number.isSafeInteger(maxPending) || maxPending < 0) throw new ConfigError(`maxPendingStreams must be a non-negative integer, got ${maxPending}`)
    this.maxPendingStreams = maxPending
    this.onRefused = init.onRefused
    this.faults = init.faults
    if (this.faults !== undefined) log.info(`FAULT INJECTION: stalling before step ${this.faults.stallBeforeStep} of every round`)
  }

  get stats (): AllReduceStats {
    return { ...this.counters, active: this.rounds.size, pending: this.pending.size }
  }

  async start (): Promise<void> {
    await this.node.handle(ALLREDUCE_PROTOCOL, (stream, connection) => {
      this.accept(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: MAX_STREAMS_PER_CONNECTION, maxOutboundStreams: MAX_STREAMS_PER_CONNECTION })
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    try {
      await this.node.unhandle(ALLREDUCE_PROTOCOL)
    } catch (err) {
      log('unhandle failed (node stopped?): %s', message(err))
    }
    for (const r of this.rounds.values()) r.fail(new AllReduceAbortedError(this.self, ALLREDUCE_ERROR_CODES.stopped, 'the all-reduce service is stopping', { peer: this.self }))
    for (const inb of [...this.inbound]) {
      if (inb.attached) continue // its round's failure closes it
      this.unpend(inb)
      inb.close(new Error('all-reduce service stopping'))
      if (inb.stream.status === 'open') inb.stream.abort(new Error('all-reduce service stopping'))
    }
    // lingering clean closes end now; abort frames still get their CONTROL_FLUSH_MS
    this.closing.abort(new Error('all-reduce service stopped'))
    await Promise.allSettled([...this.tasks])
  }

  /** Runs `p` in the background; stop() waits for it. */
  track (p: Promise<unknown>): void {
    const t: Promise<void> = p.then(() => {}, err => { log('background task failed: %s', message(err)) }).finally(() => { this.tasks.delete(t) })
    this.tasks.add(t)
  }

  async allReduce (options: AllReduceOptions): Promise<AllReduceResult> {
    if (this.stopped) throw new AllReduceAbortedError(this.self, ALLREDUCE_ERROR_CODES.stopped, 'the all-reduce service is stopped', { peer: this.self })
    const plan = this.plan(options)
    plan.signal?.throwIfAborted()
    const t0 = performance.now()
    if (plan.group.length === 1) {
      this.counters.rounds++
      return { tensors: plan.tensors, rank: 0, groupSize: 1, bytesSent: 0, bytesReceived: 0, ms: performance.now() - t0, waitMs: 0 }
    }
    if (this.rounds.has(plan.key)) throw new ConfigError(`an all-reduce round with key ${plan.key} is already running on this node`)
    const round = new Round(this, plan)
    this.rounds.set(plan.key, round)
    this.recentFailures.delete(plan.key)
    // streams for this key are this round's now, not a mismatched round's
    for (const [pred, m] of [...this.recentMismatches]) if (m.theirs === plan.key || m.until <= t0) this.recentMismatches.delete(pred)
    try {
      this.claimPending(round)
      const result = await round.run(t0)
      this.counters.rounds++
      return result
    } catch (err) {
      this.counters.failed++
      const failure = round.failure ?? (err as Error)
      this.recentFailures.set(plan.key, failure)
      while (this.recentFailures.size > RECENT_FAILURES) this.recentFailures.delete(this.recentFailures.keys().next().value as string)
      // before the round leaves `rounds` (finally): no stream can slip between the two
      this.rememberMismatch(round, failure)
      throw err
    } finally {
      this.rounds.delete(plan.key)
    }
  }

  private plan (o: AllReduceOptions): Plan {
    const op = o.op ?? 'mean'
    if (op !== 'mean' && op !== 'sum') throw new ConfigError(`allReduce: op must be 'mean' or 'sum', got ${String(op)}`)
    // the operation is part of the round's key: members that disagree on it are refused with a key
    // mismatch instead of producing different results
    const key = op === 'sum' ? `${roundKeyString(o.key)}:sum` : roundKeyString(o.key)
    if (!Array.isArray(o.group) || o.group.length === 0) throw new ConfigError('allReduce: group must list at least this member')
    if (o.group.length > MAX_GROUP_SIZE) throw new ConfigError(`allReduce: at most ${MAX_GROUP_SIZE} members, got ${o.group.length}`)
    const peers: PeerId[] = o.group.map(p => {
      if (typeof p !== 'string') return p
      try {
        return peerIdFromString(p)
      } catch (err) {
        throw new ConfigError(`allReduce: ${JSON.stringify(p)} is not a peer id: ${message(err)}`)
      }
    })
    const group = peers.map(p => p.toString())
    if (new Set(group).size !== group.length) throw new ConfigError('allReduce: group must not list a peer twice')
    const rank = group.indexOf(this.self)
    if (rank < 0) throw new ConfigError(`allReduce: this node (${this.self}) is not in the group`)
    if (!Array.isArray(o.tensors)) throw new ConfigError('allReduce: tensors must be an array of Float32Array')
    let total = 0
    for (const [i, t] of o.tensors.entries()) {
      if (!(t instanceof Float32Array)) throw new ConfigError(`allReduce: tensors[${i}] is a ${(t as object)?.constructor?.name}, not a Float32Array`)
      total += t.length
    }
    if (total > MAX_TOTAL_ELEMENTS) throw new ConfigError(`allReduce: at most ${MAX_TOTAL_ELEMENTS} elements per round, got ${total}`)
    const timeoutMs = positive('allReduce: timeoutMs', o.timeoutMs, this.timeoutMs)
    const tensors = o.inPlace === true ? [...o.tensors] : o.tensors.map(t => t.slice())
    return { key, op, group, peers, rank, tensors, total, timeoutMs, signal: o.signal }
  }

  // ---- inbound streams

  private accept (stream: Stream, from: string): void {
    if (this.stopped) { stream.abort(new Error('all-reduce service stopped')); return }
    const inb = new Inbound(stream, from)
    this.inbound.add(inb)
    stream.addEventListener('close', () => {
      this.inbound.delete(inb)
      if (this.pending.get(from) === inb) {
        this.unpend(inb)
        inb.close(new Error('stream closed while waiting for its round'))
      }
    }, { once: true })
    this.track(this.hello(inb))
  }

  /** Reads the stream's first header (nothing behind it yet) and routes it. */
  private async hello (inb: Inbound): Promise<void> {
    const timer = setTimeout(() => {
      inb.controller.abort(new AllReduceTimeoutError(`${inb.from} opened an all-reduce stream but sent no header within ${this.helloTimeoutMs} ms`, { peer: inb.from }))
    }, this.helloTimeoutMs)
    let frame: AllReduceFrame
    try {
      const list = await inb.next()
      if (list === undefined) { inb.close(new Error('ended before a header')); return }
      frame = decodeFrame(list, inb.from)
    } catch (err) {
      if (err instanceof AllReduceError) this.refuse(inb, err)
      else {
        inb.close(err as Error)
        if (inb.stream.status === 'open') inb.stream.abort(err as Error)
      }
      return
    } finally {
      clearTimeout(timer)
    }
    if (frame.kind !== 'header' || frame.step !== 0) {
      const what = frame.kind === 'header' ? `a header for step ${frame.step}` : `a ${frame.kind} frame`
      this.refuse(inb, new AllReduceProtocolError(frame.kind === 'header' ? 'step' : 'kind', `${inb.from} opened an all-reduce stream with ${what} instead of the header of step 0`, { peer: inb.from, step: 0 }))
      return
    }
    inb.first = frame
    this.route(inb, frame)
  }

  private route (inb: Inbound, h: HeaderFrame): void {
    if (this.stopped) { this.refuse(inb, new AllReduceAbortedError(this.self, ALLREDUCE_ERROR_CODES.stopped, 'the all-reduce service is stopping', { peer: this.self })); return }
    const round = this.rounds.get(h.key)
    if (round !== undefined) { round.offer(inb, h); return }
    const failed = this.recentFailures.get(h.key)
    if (failed !== undefined) {
      // the round already failed here: tell the sender now rather than let it wait for its timeout
      inb.close(failed)
      this.track(sendControl(inb.stream, abortFrameOf(failed, { key: h.key, self: this.self, refusal: false })))
      return
    }
    // the predecessor's stream of the round whose key mismatch failed ours, come after ours ended:
    // refused as our round would have refused it (rememberMismatch says why)
    const mismatch = this.takeMismatch(inb.from, h.key)
    if (mismatch !== undefined) {
      this.refuse(inb, new RoundKeyMismatchError(mismatch, h.key, `${inb.from} sent round ${h.key}, but this member's round with it was ${mismatch}, which failed for that key mismatch`, { peer: inb.from, step: 0 }), mismatch)
      return
    }
    // a round waiting for this peer's stream under another key: the peer is in another round
    for (const r of this.rounds.values()) {
      if (r.pred === inb.from && !r.hasInbound) {
        r.refusedPredecessor = true
        this.refuse(inb, new RoundKeyMismatchError(r.key, h.key, `${inb.from} sent round ${h.key} while this member waits for its stream of round ${r.key}`, { peer: inb.from, step: 0 }), r.key)
        return
      }
    }
    // early: its round has not begun here (the predecessor began first)
    const old = this.pending.get(inb.from)
    if (old !== undefined) {
      this.unpend(old)
      this.refuse(old, new AllReduceBusyError(`superseded by a newer stream from ${inb.from} (round ${h.key})`, { peer: inb.from }))
    } else if (this.pending.size >= this.maxPendingStreams) {
      this.refuse(inb, new AllReduceBusyError(`${this.pending.size} streams already wait for rounds not begun here; refusing ${inb.from}'s stream for round ${h.key}`, { peer: inb.from }))
      return
    }
    this.pending.set(inb.from, inb)
    // read nothing more until the round begins: what the sender pushed behind its header stays in
    // the muxer, bounded by the window it had granted (yamux grants no more to a paused stream);
    // the reader resumes the stream when the round asks for the next frame
    if (inb.stream.readStatus === 'readable') inb.stream.pause()
    inb.pendingTimer = setTimeout(() => {
      if (this.pending.get(inb.from) !== inb) return
      this.unpend(inb)
      this.refuse(inb, new AllReduceTimeoutError(`round ${h.key} did not begin here within ${this.pendingTimeoutMs} ms of ${inb.from}'s stream`, { peer: inb.from }))
    }, this.pendingTimeoutMs)
    log('holding %s\'s stream for round %s until it begins here', inb.from, h.key)
  }

  /** Hands the early streams of `round` to it, and refuses its predecessor's stream for another round. */
  private claimPending (round: Round): void {
    for (const [from, inb] of [...this.pending]) {
      const h = inb.first as HeaderFrame
      if (h.key === round.key) {
        this.unpend(inb)
        round.offer(inb, h)
      } else if (from === round.pred) {
        this.unpend(inb)
        round.refusedPredecessor = true
        this.refuse(inb, new RoundKeyMismatchError(round.key, h.key, `${from} sent round ${h.key}, but this member's round with it is ${round.key}`, { peer: from, step: 0 }), round.key)
      }
    }
  }

  /**
   * Why this exists (a refusal that reached only one of the two callers). Our round's stream is
   * refused by its successor with RoundKeyMismatchError because the successor waits for it under
   * another key K (the refusal carries K): the successor is in round K, and so is our predecessor
   * (the same member in a pair; in a larger ring, the members that agree with each other), whose
   * stream for K must be refused by us in turn, or its call ends only at its timeout. While our
   * round waits, route() and claimPending() do that. But our round fails the moment the refusal
   * arrives and leaves `rounds`; when the predecessor's stream comes after that, nothing here waits
   * for it, recentFailures knows only our own key, and route() used to hold it as the early stream
   * of a round that never begins here. That order is common, not rare: the refusal is one frame on
   * a stream already open, the predecessor's stream is a stream opening and a protocol negotiation
   * away (on warm connections, e.g. a pair that goes on after a 3-member round on the connection
   * that round left, this order was the rule; on cold ones both streams waited for the connections
   * and mostly crossed in time), and a member that begins later refuses our early stream in
   * claimPending before it opens its own.
   *
   * The same one hop further, in a ring of 3 or more: when our predecessor is the member that
   * disagrees, it refuses its own predecessor's stream, whose failure reaches us relayed as an
   * abort (originCode ERR_ROUND_KEY_MISMATCH, about our predecessor); our round ends, and our
   * predecessor's own stream, whose key the abort does not carry, may arrive only afterwards.
   *
   * So the stream still due is remembered for our predecessor (unless our round already has its
   * stream, or refused one), and refused as our round would have refused it: the one for K after a refusal,
   * the next one with another key than ours after an abort. In a pair, and after an abort, that
   * stream is certainly on its way: the member that refused is then our predecessor, and it was in
   * its round, which opens its stream as it begins. Only that one: another key (after a refusal),
   * or a second stream, may be a later round the predecessor began first, which must still wait
   * here. For as long as that stream can take: it was being opened when our round failed, so it
   * is here within the dial timeout and the hello timeout (the same configuration on every
   * member), or never. Forgotten when a round for K begins here.
   */
  private rememberMismatch (round: Round, failure: Error): void {
    // the predecessor's stream came (it agreed with us), or was refused already: nothing is due
    if (round.hasInbound || round.refusedPredecessor) return
    let theirs: string | undefined
    if (failure instanceof RoundKeyMismatchError && failure.remote) {
      theirs = failure.expected // the refusal carries the refusing member's key
      if (theirs === '' || theirs === round.key) return
    } else if (!(failure instanceof AllReduceAbortedError && failure.originCode === ALLREDUCE_ERROR_CODES.roundKeyMismatch && failure.peer === round.pred)) {
      return
    }
    const now = performance.now()
    for (const [pred, m] of [...this.recentMismatches]) if (m.until <= now) this.recentMismatches.delete(pred)
    this.recentMismatches.delete(round.pred)
    this.recentMismatches.set(round.pred, { ours: round.key, theirs, until: now + this.dialTimeoutMs + this.helloTimeoutMs })
    while (this.recentMismatches.size > RECENT_FAILURES) this.recentMismatches.delete(this.recentMismatches.keys().next().value as string)
  }

  /** The key of our failed round to refuse `from`'s stream for round `key` with, if rememberMismatch expects that stream (once). */
  private takeMismatch (from: string, key: string): string | undefined {
    const m = this.recentMismatches.get(from)
    if (m === undefined || (m.theirs !== undefined ? key !== m.theirs : key === m.ours)) return undefined
    this.recentMismatches.delete(from)
    return m.until > performance.now() ? m.ours : undefined
  }

  private unpend (inb: Inbound): void {
    if (this.pending.get(inb.from) === inb) this.pending.delete(inb.from)
    clearTimeout(inb.pendingTimer)
    inb.pendingTimer = undefined
  }

  /** Refuses a stream before reading any body: tells `onRefused` and the sender, then resets it. */
  refuse (inb: Inbound, err: AllReduceError, key?: string): void {
    this.counters.refused++
    log('refusing %s: %s', inb.from, err.message)
    try {
      this.onRefused?.(err, inb.from)
    } catch (e) {
      log.error('onRefused threw: %s', message(e))
    }
    inb.close(err)
    this.track(sendControl(inb.stream, abortFrameOf(err, { key: key ?? inb.first?.key ?? '', self: this.self, refusal: true })))
  }
}

/** The errors a receiver answers a bad stream with (sent back flagged as a refusal). */
function isRefusal (err: unknown): err is AllReduceError {
  return err instanceof NotInGroupError || err instanceof RoundKeyMismatchError || err instanceof GroupMismatchError ||
    err instanceof AllReduceProtocolError || err instanceof AllReduceBusyError
}

/** An abort frame for `err` (the original failure's code and peer travel on unchanged). */
function abortFrameOf (err: Error, ctx: { key: string, self: string, refusal: boolean, cancelled?: boolean, common?: Omit<FrameCommon, 'key'> }): Uint8Array {
  let code = errorCode(err)
  let peer = err instanceof AllReduceError ? err.peer ?? '' : ''
  if (err instanceof AllReduceAbortedError) code = err.originCode
  if (ctx.cancelled === true) { code = ALLREDUCE_ERROR_CODES.cancelled; peer = ctx.self }
  const f: Omit<AbortFrame, 'kind'> = {
    ...(ctx.common ?? { step: NO_STEP, n: 0, chunk: 0, elements: 0, total: 0, digest: '' }),
    key: ctx.key,
    refusal: ctx.refusal,
    code,
    peer,
    reason: message(err)
  }
  if (err instanceof AllReduceProtocolError) f.problem = err.problem
  return encodeAbort(f)
}

// ---------------------------------------------------------------------------------------------
// one round

class Round {
  readonly key: string
  readonly pred: string
  readonly succ: string
  private readonly service: AllReduceServiceImpl
  private readonly plan: Plan
  private readonly n: number
  private readonly rank: number
  private readonly steps: number
  private readonly chunks: ChunkRange[]
  private readonly digest: string
  private readonly view: FlatView
  private readonly controller = new AbortController()
  private readonly inboundArrived = deferred<Inbound>()
  private readonly settled = deferred<undefined>()
  /** recvDone[k] / sentDone[k]: step k received (and folded in) / sent. */
  private readonly recvDone: Array<Deferred<undefined>>
  private readonly sentDone: Array<Deferred<undefined>>
  failure: Error | undefined
  /** A stream of the predecessor's for another key was refused while this round waited for its stream (see rememberMismatch). */
  refusedPredecessor = false
  private cancelled = false
  private inbound: Inbound | undefined
  private outbound: Stream | undefined
  private dialing = false
  private sentSteps = 0
  private recvSteps = 0
  private sentAll = false
  private bytesSent = 0
  private bytesReceived = 0
  private t0 = 0
  private waitMs = 0

  constructor (service: AllReduceServiceImpl, plan: Plan) {
    this.service = service
    this.plan = plan
    this.key = plan.key
    this.n = plan.group.length
    this.rank = plan.rank
    this.pred = plan.group[(this.rank - 1 + this.n) % this.n]
    this.succ = plan.group[(this.rank + 1) % this.n]
    this.steps = 2 * (this.n - 1)
    this.chunks = chunkRanges(plan.total, this.n)
    this.digest = groupDigest(plan.group)
    this.view = new FlatView(plan.tensors)
    this.recvDone = Array.from({ length: this.steps }, () => deferred<undefined>())
    this.sentDone = Array.from({ length: this.steps }, () => deferred<undefined>())
  }

  get hasInbound (): boolean { return this.inbound !== undefined }

  private mod (x: number): number { return ((x % this.n) + this.n) % this.n }
  /** Chunk sent at step k: reduce-scatter (r - k), all-gather (r + 1 - s). */
  private sendChunk (k: number): number { return k < this.n - 1 ? this.mod(this.rank - k) : this.mod(this.rank + 1 - (k - this.n + 1)) }
  /** Chunk received at step k: reduce-scatter (r - k - 1), all-gather (r - s). */
  private recvChunk (k: number): number { return k < this.n - 1 ? this.mod(this.rank - k - 1) : this.mod(this.rank - (k - this.n + 1)) }

  private stepName (k: number): string {
    if (k >= this.steps) return 'the end of the round'
    return k < this.n - 1 ? `reduce-scatter step ${k + 1}/${this.n - 1}` : `all-gather step ${k - this.n + 2}/${this.n - 1}`
  }

  private common (k: number, chunk: number): Omit<FrameCommon, 'key'> {
    return { step: k, n: this.n, chunk, elements: this.chunks[chunk].length, total: this.plan.total, digest: this.digest }
  }

  async run (t0: number): Promise<AllReduceResult> {
    this.t0 = t0
    const caller = this.plan.signal
    const onCallerAbort = (): void => {
      this.cancelled = true
      this.fail(caller?.reason instanceof Error ? caller.reason : new Error(String(caller?.reason)))
    }
    const onDisconnect = (evt: CustomEvent<PeerId>): void => {
      if (this.inbound === undefined && evt.detail.toString() === this.pred) {
        this.fail(new PeerLostError(this.pred, 0, `${this.pred} disconnected before opening its stream for round ${this.key}`))
      }
    }
    const deadline = setTimeout(() => { this.fail(this.timeoutError()) }, this.plan.timeoutMs)
    caller?.addEventListener('abort', onCallerAbort, { once: true })
    this.service.node.addEventListener('peer:disconnect', onDisconnect)
    try {
      // both halves always finish (every wait is on the round's signal), so nothing writes into
      // the tensors after the call settles
      await Promise.all([
        this.sendAll().catch(err => { this.fail(this.classify(err, this.succ, this.sentSteps)) }),
        this.receiveAll().catch(err => { this.fail(this.classify(err, this.pred, this.recvSteps)) })
      ])
    } finally {
      clearTimeout(deadline)
      caller?.removeEventListener('abort', onCallerAbort)
      this.service.node.removeEventListener('peer:disconnect', onDisconnect)
      this.settled.resolve(undefined)
    }
    if (this.failure !== undefined) {
      if (this.cancelled) throw caller?.reason
      throw this.failure
    }
    return {
      tensors: this.plan.tensors,
      rank: this.rank,
      groupSize: this.n,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      ms: performance.now() - this.t0,
      waitMs: this.waitMs
    }
  }

  /** Ends the round with `err` (the first failure wins) and tells both neighbours. */
  fail (err: Error): void {
    if (this.failure !== undefined) return
    this.failure = err
    log('round %s failed: %s', this.key, err.message)
    this.controller.abort(err)
    const step = Math.min(this.sentSteps, this.recvSteps)
    const common = { step: Math.min(step, NO_STEP), n: this.n, chunk: 0, elements: 0, total: this.plan.total, digest: this.digest }
    const ctx = { key: this.key, self: this.service.self, common, cancelled: this.cancelled }
    // a bad frame of the predecessor's goes back to it as a refusal (it then throws the same class)
    const refuseInbound = isRefusal(err) && !err.remote && err.peer === this.pred
    if (this.outbound !== undefined) this.service.track(sendControl(this.outbound, abortFrameOf(err, { ...ctx, refusal: false })))
    if (this.inbound !== undefined) {
      this.inbound.close(err)
      this.service.track(sendControl(this.inbound.stream, abortFrameOf(err, { ...ctx, refusal: refuseInbound })))
    }
  }

  /** A stream for this round's key: attach it if it is the predecessor's and its first header is right, else refuse it. */
  offer (inb: Inbound, h: HeaderFrame): void {
    const from = inb.from
    const refuse = (err: AllReduceError): void => { this.service.refuse(inb, err, this.key) }
    const index = this.plan.group.indexOf(from)
    if (index < 0) { refuse(new NotInGroupError(`${from} is not in the group of round ${this.key}`, { peer: from, step: 0 })); return }
    if (from !== this.pred) {
      refuse(new GroupMismatchError(`${from} is member ${index} of round ${this.key}, not this member's predecessor (${this.pred}): the members' group orders differ`, { peer: from, step: 0 }))
      return
    }
    if (this.failure !== undefined) {
      inb.close(this.failure)
      this.service.track(sendControl(inb.stream, abortFrameOf(this.failure, { key: this.key, self: this.service.self, refusal: false })))
      return
    }
    if (this.inbound !== undefined) { refuse(new AllReduceBusyError(`${from} opened a second stream for round ${this.key}`, { peer: from, step: 0 })); return }
    try {
      this.check(h, 0, from)
    } catch (err) {
      refuse(err as AllReduceError)
      // the predecessor's round is not ours: ours cannot finish
      this.fail(err as Error)
      return
    }
    inb.attached = true
    this.inbound = inb
    inb.pendingTimer = undefined
    this.inboundArrived.resolve(inb)
  }

  /** Throws the typed error for a header that is not the one due at step k. */
  private check (h: HeaderFrame, k: number, from: string): void {
    if (h.key !== this.key) throw new RoundKeyMismatchError(this.key, h.key, `${from} sent round ${h.key} in the stream of round ${this.key}`, { peer: from, step: k })
    if (h.digest !== this.digest || h.n !== this.n || h.total !== this.plan.total) {
      const theirs = `${h.n} members (digest ${h.digest}), ${h.total} elements`
      const ours = `${this.n} members (digest ${this.digest}), ${this.plan.total} elements`
      throw new GroupMismatchError(`${from}'s round ${this.key} has ${theirs}; this member's has ${ours}`, { peer: from, step: k })
    }
    if (h.step !== k) throw new AllReduceProtocolError('step', `${from} sent step ${h.step} where ${this.stepName(k)} (step ${k}) was due`, { peer: from, step: k })
    const c = this.recvChunk(k)
    if (h.chunk !== c) throw new AllReduceProtocolError('chunk', `${from} sent chunk ${h.chunk} at ${this.stepName(k)}, where chunk ${c} was due`, { peer: from, step: k })
    if (h.elements !== this.chunks[c].length) {
      throw new AllReduceProtocolError('length', `${from} announced ${h.elements} elements for chunk ${c} at ${this.stepName(k)}; it has ${this.chunks[c].length}`, { peer: from, step: k })
    }
  }

  // ---- sending

  private async openOutbound (): Promise<Stream> {
    const { signal } = this.controller
    this.dialing = true
    let stream: Stream
    try {
      stream = await openStream(this.service.node, this.plan.peers[this.mod(this.rank + 1)], ALLREDUCE_PROTOCOL, { signal, timeoutMs: this.service.dialTimeoutMs })
    } catch (err) {
      signal.throwIfAborted()
      throw new PeerLostError(this.succ, 0, `cannot open an all-reduce stream to ${this.succ}: ${message(err)}`, { cause: err })
    } finally {
      this.dialing = false
    }
    if (signal.aborted) {
      stream.abort(new Error('all-reduce round failed'))
      throw signal.reason
    }
    this.outbound = stream
    this.service.track(this.backRead(stream))
    return stream
  }

  private async sendAll (): Promise<void> {
    const { signal } = this.controller
    const stream = await this.openOutbound()
    const faults = this.service.faults
    for (let k = 0; k < this.steps; k++) {
      if (k > 0) await abortable(this.recvDone[k - 1].promise, signal)
      if (faults?.stallBeforeStep === k) {
        faults.onStall?.(k)
        await abortable(new Promise<never>(() => {}), signal)
      }
      if (k === this.n - 1 && this.plan.op === 'mean') {
        // the owned chunk is complete: its mean, once, before anyone gets a copy
        const own = this.chunks[this.mod(this.rank + 1)]
        this.view.divide(own.start, own.start + own.length, this.n)
      }
      const c = this.sendChunk(k)
      const { start, length } = this.chunks[c]
      await writeFrame(stream, encodeHeader({ ...this.common(k, c), key: this.key }), signal)
      const pre = piecePreamble(k)
      for (let p = 0; p < length; p += PIECE_ELEMENTS) {
        const e = Math.min(PIECE_ELEMENTS, length - p)
        // straight from the tensors: a chunk is only modified again (all-gather) after the whole
        // ring has used what we sent of it, and by then writeFrame has long resolved
        await writeFrame(stream, [pre, ...this.view.bytes(start + p, start + p + e)], signal)
        this.bytesSent += e * 4
      }
      this.sentSteps = k + 1
      this.sentDone[k].resolve(undefined)
    }
    // flushed before the call returns, so a member that exits right after does not cut its successor off
    await endFrames(stream, signal)
    this.sentAll = true
  }

  /**
   * Reads the successor's side of our stream: nothing but its end (it read everything) or a
   * refusal/abort. A stream that dies before we sent everything means the successor is gone.
   */
  private async backRead (stream: Stream): Promise<void> {
    const stop = new AbortController()
    const onFail = (): void => { stop.abort(this.controller.signal.reason) }
    const onClosing = (): void => { stop.abort(this.service.closing.signal.reason) }
    this.controller.signal.addEventListener('abort', onFail, { once: true })
    this.service.closing.signal.addEventListener('abort', onClosing, { once: true })
    let linger: NodeJS.Timeout | undefined
    void this.settled.promise.then(() => {
      linger = setTimeout(() => { stop.abort(new Error(`${this.succ} did not close its end within ${LINGER_MS} ms`)) }, LINGER_MS)
    })
    try {
      for await (const list of readFrameLists(stream, { maxFrameBytes: MAX_HEADER_BYTES, signal: stop.signal })) {
        const frame = decodeFrame(list, this.succ)
        if (frame.kind === 'abort') this.fail(this.remoteFailure(frame, this.succ))
        else this.fail(new AllReduceProtocolError('kind', `${this.succ} sent a ${frame.kind} frame back on the stream this member sends on`, { peer: this.succ, step: this.sentSteps }))
        return
      }
    } catch (err) {
      if (stop.signal.aborted) return
      const e = this.classify(err, this.succ, this.sentSteps)
      // once everything is sent, the successor going away is its own round's problem, not ours
      if (!(e instanceof PeerLostError && this.sentAll)) this.fail(e)
    } finally {
      clearTimeout(linger)
      this.controller.signal.removeEventListener('abort', onFail)
      this.service.closing.signal.removeEventListener('abort', onClosing)
      // after a failure, sendControl owns the stream (its abort frame must get out first)
      if (!this.controller.signal.aborted && stream.status === 'open') stream.abort(new Error('all-reduce stream done'))
    }
  }

  // ---- receiving

  private async receiveAll (): Promise<void> {
    const { signal } = this.controller
    const inb = await abortable(this.inboundArrived.promise, signal)
    this.waitMs = performance.now() - this.t0
    const scratch = new Float32Array(Math.min(PIECE_ELEMENTS, Math.max(1, this.chunks[0].length)))
    const scratchBytes = new Uint8Array(scratch.buffer)
    for (let k = 0; k < this.steps; k++) {
      inb.step = k
      if (k > 0) {
        const list = await this.read(inb, k, -1)
        const frame = decodeFrame(list, this.pred)
        if (frame.kind !== 'header') throw new AllReduceProtocolError('kind', `${this.pred} sent a ${frame.kind} frame where the header of ${this.stepName(k)} was due`, { peer: this.pred, step: k })
        this.check(frame, k, this.pred)
      }
      // all-gather overwrites a chunk we sent in the reduce-scatter: that send must be done
      if (k >= this.n - 1) await abortable(this.sentDone[k - this.n + 1].promise, signal)
      const c = this.recvChunk(k)
      const { start, length } = this.chunks[c]
      for (let p = 0; p < length; p += PIECE_ELEMENTS) {
        const e = Math.min(PIECE_ELEMENTS, length - p)
        const list = await this.read(inb, k, PIECE_PREAMBLE_BYTES + e * 4)
        const { kind, step } = peekPreamble(list, this.pred)
        if (kind !== KIND_PIECE || step !== k || list.byteLength !== PIECE_PREAMBLE_BYTES + e * 4) {
          const what = kind !== KIND_PIECE ? 'a header' : step !== k ? `a piece of step ${step}` : `a piece of ${list.byteLength - PIECE_PREAMBLE_BYTES} bytes`
          throw new AllReduceProtocolError(kind !== KIND_PIECE ? 'kind' : step !== k ? 'step' : 'length', `${this.pred} sent ${what} where ${e * 4} bytes of chunk ${c} were due (${this.stepName(k)})`, { peer: this.pred, step: k })
        }
        copyPiece(list, scratchBytes)
        if (k < this.n - 1) this.view.add(start + p, scratch, e)
        else this.view.set(start + p, scratch, e)
        this.bytesReceived += e * 4
      }
      this.recvSteps = k + 1
      this.recvDone[k].resolve(undefined)
    }
    this.service.track(this.finishInbound(inb))
  }

  /** The next frame of the predecessor's stream (`expectBytes` as for Inbound); an abort frame or a dead stream throws. */
  private async read (inb: Inbound, k: number, expectBytes: number): Promise<Uint8ArrayList> {
    inb.expectBytes = expectBytes
    let list: Uint8ArrayList | undefined
    try {
      list = await inb.next()
    } catch (err) {
      throw this.classify(err, this.pred, k)
    }
    if (list === undefined) throw new AllReduceProtocolError('kind', `${this.pred} ended its stream before ${this.stepName(k)} of round ${this.key}`, { peer: this.pred, step: k })
    if (list.byteLength <= MAX_HEADER_BYTES && list.byteLength >= PIECE_PREAMBLE_BYTES && peekPreamble(list, this.pred).kind === KIND_ABORT) {
      const frame = decodeFrame(list, this.pred)
      if (frame.kind === 'abort') throw this.remoteFailure(frame, this.pred)
    }
    return list
  }

  /** After the last step: the predecessor's end frame, then ours back, so both ends close cleanly. */
  private async finishInbound (inb: Inbound): Promise<void> {
    const linger = AbortSignal.any([AbortSignal.timeout(LINGER_MS), this.service.closing.signal])
    const onLinger = (): void => { inb.controller.abort(linger.reason) }
    linger.addEventListener('abort', onLinger, { once: true })
    try {
      inb.expectBytes = -1
      const extra = await inb.next()
      if (extra !== undefined) log('%s sent more after the last step of round %s (%d bytes): ignored, the result is complete', this.pred, this.key, extra.byteLength)
      await endFrames(inb.stream, linger)
    } catch (err) {
      log('closing %s\'s stream of round %s: %s', this.pred, this.key, message(err))
    } finally {
      linger.removeEventListener('abort', onLinger)
      inb.close(new Error('round done'))
      if (inb.stream.status === 'open') inb.stream.abort(new Error('all-reduce stream done'))
    }
  }

  // ---- errors

  /** What an abort frame from a neighbour means here. */
  private remoteFailure (f: AbortFrame, from: string): AllReduceError {
    const step = f.step === NO_STEP ? undefined : f.step
    const text = `${from} refused this member's stream of round ${this.key} (${f.code}): ${f.reason}`
    const opts = { peer: from, step, remote: true }
    if (f.refusal) {
      switch (f.code) {
        case ALLREDUCE_ERROR_CODES.notInGroup: return new NotInGroupError(text, opts)
        case ALLREDUCE_ERROR_CODES.roundKeyMismatch: return new RoundKeyMismatchError(f.key, this.key, text, opts)
        case ALLREDUCE_ERROR_CODES.groupMismatch: return new GroupMismatchError(text, opts)
        case ALLREDUCE_ERROR_CODES.protocol: return new AllReduceProtocolError(f.problem ?? 'malformed', text, opts)
        case ALLREDUCE_ERROR_CODES.busy: return new AllReduceBusyError(text, opts)
        case ALLREDUCE_ERROR_CODES.timeout: return new AllReduceTimeoutError(text, opts)
      }
    }
    const about = f.peer !== '' ? f.peer : from
    return new AllReduceAbortedError(from, f.code, `round ${this.key} aborted: ${from} reports ${f.code} about ${about}: ${f.reason}`, { peer: about, step })
  }

  /** A failure of a read, a write or the dial, as a typed error naming `peer` and the step. */
  private classify (err: unknown, peer: string, k: number): Error {
    if (this.failure !== undefined) return this.failure
    if (err instanceof AllReduceError) return err
    if (err instanceof FrameTooLargeError || err instanceof MalformedFrameError) {
      return new AllReduceProtocolError('length', `${peer} sent a bad frame at ${this.stepName(k)}: ${err.message}`, { peer, step: k, cause: err })
    }
    if (!(err instanceof SpotpipeError) && this.controller.signal.aborted) return this.controller.signal.reason as Error
    return new PeerLostError(peer, k, `stream with ${peer} failed at ${this.stepName(k)} of round ${this.key}: ${message(err)}`, { cause: err })
  }

  private timeoutError (): AllReduceTimeoutError {
    const k = Math.min(this.sentSteps, this.recvSteps)
    let peer = this.pred
    let what: string
    if (this.dialing) {
      peer = this.succ
      what = `still opening a stream to ${this.succ}`
    } else if (this.inbound === undefined) {
      what = `no stream from its predecessor ${this.pred} yet`
    } else if (this.recvSteps <= this.sentSteps || this.sentAll) {
      what = `waiting for ${this.stepName(this.recvSteps)} from ${this.pred}`
    } else {
      peer = this.succ
      what = `${this.succ} not taking ${this.stepName(this.sentSteps)}`
    }
    return new AllReduceTimeoutError(`all-reduce round ${this.key} did not finish within ${this.plan.timeoutMs} ms: ${what}`, { peer, step: k })
  }
}

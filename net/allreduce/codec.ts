/**
 * The all-reduce wire codec: round keys, the chunk layout, and the frames (index.ts explains the
 * algorithm; round.ts and service.ts are the only users).
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
import type { Uint8ArrayList } from 'uint8arraylist'
import { ConfigError, SpotpipeError } from '../../common/index.js'
import { ID_PATTERN, MAX_ERROR_CODE_LENGTH, MAX_ID_LENGTH, MAX_PEER_ID_LENGTH, MAX_REASON_LENGTH, encodeVarint } from '../../protocols/index.js'
import { ALLREDUCE_MAGIC, ALLREDUCE_VERSION, HEADER_FIXED_BYTES, MAX_ROUND_KEY_LENGTH, PIECE_PREAMBLE_BYTES, ROUND_KEY_PATTERN } from './constants.js'
import { AllReduceAbortedError, AllReduceError, AllReduceProtocolError, ALLREDUCE_ERROR_CODES, type AllReduceProblem } from './errors.js'
import type { AllReduceRoundKey } from './index.js'

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

// ---------------------------------------------------------------------------------------------
// wire codec

const KIND_HEADER = 1
export const KIND_ABORT = 2
export const KIND_PIECE = 3
export const NO_STEP = 0xffff
const PROBLEMS: readonly AllReduceProblem[] = ['malformed', 'kind', 'step', 'chunk', 'length']

export interface FrameCommon { step: number, n: number, chunk: number, elements: number, total: number, digest: string, key: string }
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

/** A piece frame's bytes before its data: the frame's varint length prefix (net/transport framing), then the preamble. */
export function pieceHead (step: number, dataBytes: number): Uint8Array {
  const prefix = encodeVarint(PIECE_PREAMBLE_BYTES + dataBytes)
  const head = new Uint8Array(prefix.byteLength + PIECE_PREAMBLE_BYTES)
  head.set(prefix, 0)
  head.set(piecePreamble(step), prefix.byteLength)
  return head
}

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
export function peekPreamble (frame: Uint8ArrayList, from: string): { kind: number, step: number } {
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

/** Copies a piece's data (the frame after its preamble) into `dest`. */
export function copyPiece (frame: Uint8ArrayList, dest: Uint8Array): void {
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

export function errorCode (err: unknown): string {
  return err instanceof SpotpipeError ? err.code : 'ERR_UNKNOWN'
}

export function message (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** An abort frame for `err` (the original failure's code and peer travel on unchanged). */
export function abortFrameOf (err: Error, ctx: { key: string, self: string, refusal: boolean, cancelled?: boolean, common?: Omit<FrameCommon, 'key'> }): Uint8Array {
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

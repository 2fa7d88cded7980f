/**
 * Tensor frames for the activations protocol: a small binary header, then the tensor's raw
 * little-endian data. One frame per length-prefixed message.
 *
 * Layout (all integers little-endian):
 *
 *   off  size  field
 *   0    3     magic "SPT" (0x53 0x50 0x54)
 *   3    1     version (1)
 *   4    1     flags: caller-defined bits, passed through untouched
 *   5    1     direction: 0 forward (activations), 1 backward (gradients)
 *   6    1     dtype: 1 float32, 2 int32
 *   7    1     ndims (1..MAX_TENSOR_DIMS)
 *   8    4     epoch
 *   12   4     iteration
 *   16   4     microbatch
 *   20   2     hop: position within the microbatch's route
 *   22   1     run id length n (1..MAX_RUN_ID_LENGTH)
 *   23   n     run id, [A-Za-z0-9._-]
 *   ..   0-3   zero padding to a multiple of 4
 *   ..   4*nd  dims, u32 each
 *   ..         data: exactly prod(dims) * 4 bytes
 *
 * The header is always a multiple of 4 bytes, so when the frame itself starts 4-aligned the data can
 * be viewed as a Float32Array/Int32Array without a copy.
 */
import type { Uint8ArrayList } from 'uint8arraylist'
import { MAX_HOP, MAX_RUN_ID_LENGTH, MAX_TENSOR_DIMS, MAX_TENSOR_FRAME_BYTES } from './constants.js'
import {
  BadDTypeError, BadShapeError, FrameTooLargeError, LimitExceededError, MalformedMessageError,
  TruncatedFrameError, UnsupportedVersionError
} from './errors.js'
import type { Direction, DType } from './types.js'
import {
  BYTES_PER_ELEMENT, checkFiniteBytes, checkId, checkInt, checkShape, checkUint32
} from './validate.js'

export const TENSOR_FRAME_MAGIC = Uint8Array.of(0x53, 0x50, 0x54)
export const TENSOR_FRAME_VERSION = 1
/** Bytes before the run id. */
const FIXED_HEADER_BYTES = 23

const DIRECTION_CODE: Record<Direction, number> = { forward: 0, backward: 1 }
const DIRECTIONS: readonly Direction[] = ['forward', 'backward']
const DTYPE_CODE: Record<DType, number> = { float32: 1, int32: 2 }
const DTYPE_BY_CODE: Record<number, DType | undefined> = { 1: 'float32', 2: 'int32' }

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

export interface TensorFrameHeader {
  runId: string
  epoch: number
  iteration: number
  microbatch: number
  hop: number
  direction: Direction
  dtype: DType
  shape: number[]
  /** Caller-defined bits (u8); 0 unless the pipeline gives them a meaning. */
  flags: number
}

/** What encodeTensorFrame needs: dtype follows from the data, flags default to 0. */
export type TensorFrameHeaderInit = Omit<TensorFrameHeader, 'dtype' | 'flags'> & { dtype?: DType, flags?: number }

export interface TensorFrameEncodeOptions {
  /** Refuse to send NaN/Inf (a pass over the data). Default true. */
  rejectNonFinite?: boolean
  /** Default and ceiling: MAX_TENSOR_FRAME_BYTES. */
  maxBytes?: number
}

export interface TensorFrameExpect {
  /** Expected shape; -1 matches any size in that position. */
  shape?: readonly number[]
  dtype?: DType
  direction?: Direction
  runId?: string
  /** Reject larger frames before parsing. Default and ceiling: MAX_TENSOR_FRAME_BYTES. */
  maxBytes?: number
  /** Reject NaN/Inf in float32 data. Default true. */
  rejectNonFinite?: boolean
}

export interface DecodedTensorFrame {
  header: TensorFrameHeader
  data: Float32Array | Int32Array
}

/** Header size for a run id of `runIdLength` bytes and `ndims` dims (always a multiple of 4). */
export function tensorFrameHeaderLength (runIdLength: number, ndims: number): number {
  return align4(FIXED_HEADER_BYTES + runIdLength) + 4 * ndims
}

/**
 * Largest tensor frame with this shape (float32 or int32 data, the longest run id): what a receiver
 * that knows the model's tensor shape may accept instead of MAX_TENSOR_FRAME_BYTES.
 */
export function tensorFrameBytes (shape: readonly number[]): number {
  return tensorFrameHeaderLength(MAX_RUN_ID_LENGTH, shape.length) + 4 * shape.reduce((a, b) => a * b, 1)
}

function align4 (n: number): number {
  return (n + 3) & ~3
}

function frameLimit (maxBytes: number | undefined): number {
  return Math.min(maxBytes ?? MAX_TENSOR_FRAME_BYTES, MAX_TENSOR_FRAME_BYTES)
}

/**
 * Encodes a frame as [header, data]. The data chunk is a view of `data`'s own memory on little-endian
 * hosts (no copy of a tensor that may be hundreds of MiB), so do not modify `data` until the frame is
 * sent. Length-prefix the pair as one message, e.g. `new Uint8ArrayList(...chunks)`.
 */
export function encodeTensorFrame (
  header: TensorFrameHeaderInit,
  data: Float32Array | Int32Array,
  options: TensorFrameEncodeOptions = {}
): Uint8Array[] {
  let dtype: DType
  if (data instanceof Float32Array) dtype = 'float32'
  else if (data instanceof Int32Array) dtype = 'int32'
  else throw new BadDTypeError('frame.data: expected a Float32Array or Int32Array', { field: 'frame.data' })
  if (header.dtype !== undefined && header.dtype !== dtype) {
    throw new BadDTypeError(`frame.dtype: header says ${String(header.dtype)} but the data is ${dtype}`, { field: 'frame.dtype' })
  }
  const runId = checkId(header.runId, 'frame.runId')
  checkUint32(header.epoch, 'frame.epoch')
  checkUint32(header.iteration, 'frame.iteration')
  checkUint32(header.microbatch, 'frame.microbatch')
  checkInt(header.hop, 'frame.hop', 0, MAX_HOP)
  if (!DIRECTIONS.includes(header.direction)) {
    throw new MalformedMessageError(`frame.direction: unknown direction ${String(header.direction)}`, { field: 'frame.direction' })
  }
  const flags = checkInt(header.flags ?? 0, 'frame.flags', 0, 0xff)
  const shape = header.shape
  const rank = Array.isArray(shape) ? shape.length : 0
  const headerLength = tensorFrameHeaderLength(runId.length, Math.min(rank, MAX_TENSOR_DIMS))
  const max = frameLimit(options.maxBytes)
  const elements = checkShape(shape, 'frame.shape', max - headerLength, 1)
  if (data.length !== elements) {
    throw new BadShapeError(`frame.shape: [${shape.join(', ')}] has ${elements} elements but the data has ${data.length}`, { field: 'frame.shape' })
  }
  if (dtype === 'float32' && options.rejectNonFinite !== false) checkFiniteBytes(bytesOf(data), 'frame.data')

  const head = new Uint8Array(headerLength)
  const view = new DataView(head.buffer)
  head.set(TENSOR_FRAME_MAGIC, 0)
  view.setUint8(3, TENSOR_FRAME_VERSION)
  view.setUint8(4, flags)
  view.setUint8(5, DIRECTION_CODE[header.direction])
  view.setUint8(6, DTYPE_CODE[dtype])
  view.setUint8(7, rank)
  view.setUint32(8, header.epoch, true)
  view.setUint32(12, header.iteration, true)
  view.setUint32(16, header.microbatch, true)
  view.setUint16(20, header.hop, true)
  view.setUint8(22, runId.length)
  for (let i = 0; i < runId.length; i++) head[FIXED_HEADER_BYTES + i] = runId.charCodeAt(i)
  let off = align4(FIXED_HEADER_BYTES + runId.length)
  for (const d of shape) { view.setUint32(off, d, true); off += 4 }
  return [head, littleEndianBytes(data)]
}

function bytesOf (data: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
}

function littleEndianBytes (data: Float32Array | Int32Array): Uint8Array {
  if (LITTLE_ENDIAN) return bytesOf(data)
  const out = new Uint8Array(data.byteLength)
  const view = new DataView(out.buffer)
  if (data instanceof Float32Array) data.forEach((v, i) => view.setFloat32(i * 4, v, true))
  else data.forEach((v, i) => view.setInt32(i * 4, v, true))
  return out
}

export interface ParsedTensorFrameHeader {
  header: TensorFrameHeader
  /** Header size in bytes; the data starts here. */
  headerLength: number
  /** prod(shape) * 4: the data size the header announces. */
  dataLength: number
}

/**
 * Parses and checks only the header (and the `expect` fields that concern it). Useful to drop a stale
 * frame (older epoch) without touching its data. Does not check that the data is all there.
 */
export function decodeTensorFrameHeader (bytes: Uint8Array | Uint8ArrayList, expect: TensorFrameExpect = {}): ParsedTensorFrameHeader {
  const len = bytes?.byteLength
  if (typeof len !== 'number') throw new MalformedMessageError('frame: expected bytes', { field: 'frame' })
  const max = frameLimit(expect.maxBytes)
  if (len > max) throw new FrameTooLargeError(`frame: ${len} bytes, limit ${max}`, { field: 'frame' })
  // The header is at most a few hundred bytes; copy just that much out of a list.
  const maxHeader = tensorFrameHeaderLength(MAX_RUN_ID_LENGTH, MAX_TENSOR_DIMS)
  const head = bytes instanceof Uint8Array ? bytes : bytes.subarray(0, Math.min(len, maxHeader))
  const truncated = (what: string, need: number): never => {
    throw new TruncatedFrameError(`frame: ${len} bytes, ${what} needs ${need}`, { field: 'frame' })
  }

  for (let i = 0; i < TENSOR_FRAME_MAGIC.length; i++) {
    if (i >= len) truncated('the magic', TENSOR_FRAME_MAGIC.length)
    if (head[i] !== TENSOR_FRAME_MAGIC[i]) throw new MalformedMessageError('frame.magic: not a spotpipe tensor frame', { field: 'frame.magic' })
  }
  if (len < 4) truncated('the version', 4)
  if (head[3] !== TENSOR_FRAME_VERSION) {
    throw new UnsupportedVersionError(`frame.version: ${head[3]}, this peer reads ${TENSOR_FRAME_VERSION}`, { field: 'frame.version' })
  }
  if (len < FIXED_HEADER_BYTES) truncated('the fixed header', FIXED_HEADER_BYTES)
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength)

  const flags = head[4]
  const direction = DIRECTIONS[head[5]]
  if (direction === undefined) throw new MalformedMessageError(`frame.direction: unknown code ${head[5]}`, { field: 'frame.direction' })
  const dtype = DTYPE_BY_CODE[head[6]]
  if (dtype === undefined) throw new BadDTypeError(`frame.dtype: unknown code ${head[6]}`, { field: 'frame.dtype' })
  const ndims = head[7]
  if (ndims > MAX_TENSOR_DIMS) throw new LimitExceededError(`frame.shape: rank ${ndims}, limit ${MAX_TENSOR_DIMS}`, { field: 'frame.shape' })
  if (ndims === 0) throw new BadShapeError('frame.shape: rank 0, need at least 1', { field: 'frame.shape' })
  const epoch = view.getUint32(8, true)
  const iteration = view.getUint32(12, true)
  const microbatch = view.getUint32(16, true)
  const hop = view.getUint16(20, true)
  const idLength = head[22]
  if (idLength > MAX_RUN_ID_LENGTH) throw new LimitExceededError(`frame.runId: ${idLength} bytes, limit ${MAX_RUN_ID_LENGTH}`, { field: 'frame.runId' })
  const headerLength = tensorFrameHeaderLength(idLength, ndims)
  if (len < headerLength) truncated('the header', headerLength)

  const runId = checkId(String.fromCharCode(...head.subarray(FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + idLength)), 'frame.runId')
  const dimsAt = align4(FIXED_HEADER_BYTES + idLength)
  for (let i = FIXED_HEADER_BYTES + idLength; i < dimsAt; i++) {
    if (head[i] !== 0) throw new MalformedMessageError('frame.padding: must be zero', { field: 'frame.padding' })
  }
  const shape: number[] = []
  for (let i = 0; i < ndims; i++) shape.push(view.getUint32(dimsAt + 4 * i, true))
  const elements = checkShape(shape, 'frame.shape', max - headerLength, 1)
  const header: TensorFrameHeader = { runId, epoch, iteration, microbatch, hop, direction, dtype, shape, flags }
  checkExpected(header, expect)
  return { header, headerLength, dataLength: elements * BYTES_PER_ELEMENT }
}

function checkExpected (h: TensorFrameHeader, expect: TensorFrameExpect): void {
  if (expect.dtype !== undefined && h.dtype !== expect.dtype) {
    throw new BadDTypeError(`frame.dtype: got ${h.dtype}, expected ${expect.dtype}`, { field: 'frame.dtype' })
  }
  const want = expect.shape
  if (want !== undefined) {
    const ok = want.length === h.shape.length && want.every((d, i) => d === -1 || d === h.shape[i])
    if (!ok) {
      throw new BadShapeError(`frame.shape: got [${h.shape.join(', ')}], expected [${want.join(', ')}]`, { field: 'frame.shape' })
    }
  }
  if (expect.direction !== undefined && h.direction !== expect.direction) {
    throw new MalformedMessageError(`frame.direction: got ${h.direction}, expected ${expect.direction}`, { field: 'frame.direction' })
  }
  if (expect.runId !== undefined && h.runId !== expect.runId) {
    throw new MalformedMessageError(`frame.runId: got ${h.runId}, expected ${expect.runId}`, { field: 'frame.runId' })
  }
}

/**
 * Decodes and checks a whole frame. The returned data is a view into `bytes` when it is one
 * contiguous, 4-aligned Uint8Array on a little-endian host; otherwise a copy.
 */
export function decodeTensorFrame (bytes: Uint8Array | Uint8ArrayList, expect: TensorFrameExpect = {}): DecodedTensorFrame {
  const { header, headerLength, dataLength } = decodeTensorFrameHeader(bytes, expect)
  const len = bytes.byteLength
  if (len < headerLength + dataLength) {
    throw new TruncatedFrameError(`frame.data: ${len - headerLength} bytes, shape [${header.shape.join(', ')}] needs ${dataLength}`, { field: 'frame.data' })
  }
  if (len > headerLength + dataLength) {
    throw new MalformedMessageError(`frame.data: ${len - headerLength - dataLength} trailing bytes after the tensor`, { field: 'frame.data' })
  }
  // A view for a Uint8Array or a one-chunk list; a list of several chunks is joined (one copy).
  const raw = bytes.subarray(headerLength)
  if (header.dtype === 'float32' && expect.rejectNonFinite !== false) checkFiniteBytes(raw, 'frame.data')
  return { header, data: typedView(raw, header.dtype) }
}

function typedView (raw: Uint8Array, dtype: DType): Float32Array | Int32Array {
  const n = raw.byteLength / BYTES_PER_ELEMENT
  if (LITTLE_ENDIAN) {
    let aligned = raw
    if (raw.byteOffset % BYTES_PER_ELEMENT !== 0) {
      // Not slice(): on a Node Buffer that is a view, still misaligned.
      aligned = new Uint8Array(raw.byteLength)
      aligned.set(raw)
    }
    return dtype === 'float32'
      ? new Float32Array(aligned.buffer, aligned.byteOffset, n)
      : new Int32Array(aligned.buffer, aligned.byteOffset, n)
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
  const out = dtype === 'float32' ? new Float32Array(n) : new Int32Array(n)
  for (let i = 0; i < n; i++) out[i] = dtype === 'float32' ? view.getFloat32(i * 4, true) : view.getInt32(i * 4, true)
  return out
}

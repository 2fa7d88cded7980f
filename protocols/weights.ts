/**
 * Codec for the weights stream protocol (one length-prefixed protobuf frame per message).
 *
 * Exchange: the puller sends a `request`; the donor answers with a `manifest`, then `chunk`s in any
 * order, then `end` (or an `error` at any point). A chunk's bytes are the tensor's little-endian
 * bytes at [offset, offset + data.length). Decode chunks with `{ manifest }` so each one is checked
 * against it (index, range, NaN/Inf in float32 data); the CRC-32 in the manifest is checked by the
 * puller once a tensor is complete.
 */
import type { Uint8ArrayList } from 'uint8arraylist'
import { MAX_WEIGHTS_FRAME_BYTES } from './constants.js'
import { BadDTypeError, FrameTooLargeError, MalformedMessageError, UnknownKindError } from './errors.js'
import * as pb from './messages.js'
import { checkFrameSize, decodeProtobuf } from './pb-util.js'
import type { DType, TensorInfo, WeightsManifest, WeightsMessage, WeightsMessageKind } from './types.js'
import { checkChunkPlacement, validateWeightsMessage } from './validate.js'
import type { WeightsValidationContext } from './validate.js'
import { pushVarint, readVarint } from './varint.js'

export const WEIGHTS_MESSAGE_KINDS: readonly WeightsMessageKind[] = ['request', 'manifest', 'chunk', 'end', 'error']

// Wire codes. Never renumber; 0 is "unset" and always rejected.
const KIND_CODE: Record<WeightsMessageKind, number> = { request: 1, manifest: 2, chunk: 3, end: 4, error: 5 }
export const DTYPE_CODE: Record<DType, number> = { float32: 1, int32: 2 }

const KIND_BY_CODE = new Map(Object.entries(KIND_CODE).map(([k, v]) => [v, k as WeightsMessageKind]))
const DTYPE_BY_CODE = new Map(Object.entries(DTYPE_CODE).map(([k, v]) => [v, k as DType]))
const BODIES = ['request', 'manifest', 'chunk', 'end', 'error'] as const

function toWire (m: WeightsMessage): pb.WeightsEnvelope {
  const env: pb.WeightsEnvelope = { kind: KIND_CODE[m.kind] }
  switch (m.kind) {
    case 'request':
      env.request = { stage: m.stage, minIteration: m.minIteration, names: [...m.names], includeOptimizer: m.includeOptimizer }
      break
    case 'manifest':
      env.manifest = {
        stage: m.stage,
        iteration: m.iteration,
        tensors: m.tensors.map(t => ({
          name: t.name, dtype: DTYPE_CODE[t.dtype], shape: [...t.shape], byteLength: t.byteLength, crc32: t.crc32
        })),
        totalBytes: m.totalBytes
      }
      break
    case 'chunk':
      // The writer only reads the bytes; the generated type is just narrower than ours.
      env.chunk = { index: m.index, offset: m.offset, data: m.data as Uint8Array<ArrayBuffer> }
      break
    case 'end':
      env.end = { totalBytes: m.totalBytes }
      break
    case 'error':
      env.error = { code: m.code, message: m.message }
      break
  }
  return env
}

function fromWire (env: pb.WeightsEnvelope): WeightsMessage {
  const kind = KIND_BY_CODE.get(env.kind)
  if (kind === undefined) {
    throw new UnknownKindError(`weights.kind: unknown kind code ${env.kind}`, { field: 'weights.kind' })
  }
  for (const other of BODIES) {
    if (other !== kind && env[other] !== undefined) {
      throw new MalformedMessageError(`weights: kind "${kind}" but a ${other} body is also set`, { field: `weights.${other}` })
    }
  }
  const missing = (): never => {
    throw new MalformedMessageError(`weights: kind "${kind}" without its body`, { field: `weights.${kind}` })
  }
  switch (kind) {
    case 'request': {
      const b = env.request ?? missing()
      return { kind, stage: b.stage, minIteration: b.minIteration, names: b.names, includeOptimizer: b.includeOptimizer }
    }
    case 'manifest': {
      const b = env.manifest ?? missing()
      return {
        kind,
        stage: b.stage,
        iteration: b.iteration,
        tensors: b.tensors.map((t, i) => {
          const dtype = DTYPE_BY_CODE.get(t.dtype)
          if (dtype === undefined) {
            const field = `manifest.tensors[${i}].dtype`
            throw new BadDTypeError(`${field}: unknown dtype code ${t.dtype}`, { field })
          }
          return { name: t.name, dtype, shape: t.shape, byteLength: t.byteLength, crc32: t.crc32 }
        }),
        totalBytes: b.totalBytes
      }
    }
    case 'chunk': {
      const b = env.chunk ?? missing()
      return { kind, index: b.index, offset: b.offset, data: b.data }
    }
    case 'end': {
      const b = env.end ?? missing()
      return { kind, totalBytes: b.totalBytes }
    }
    case 'error': {
      const b = env.error ?? missing()
      return { kind, code: b.code, message: b.message }
    }
  }
}

export interface WeightsDecodeOptions extends WeightsValidationContext {
  /** Reject larger input before parsing. Default MAX_WEIGHTS_FRAME_BYTES; cannot be raised above it. */
  maxBytes?: number
}

/** Validates and encodes a weights message (pass `{ manifest }` to check a chunk against it). */
export function encodeWeightsMessage (msg: WeightsMessage, ctx: WeightsValidationContext = {}): Uint8Array {
  const bytes = pb.WeightsEnvelope.encode(toWire(validateWeightsMessage(msg, ctx)))
  if (bytes.byteLength > MAX_WEIGHTS_FRAME_BYTES) {
    throw new FrameTooLargeError(`weights: ${msg.kind} encodes to ${bytes.byteLength} bytes, limit ${MAX_WEIGHTS_FRAME_BYTES}`)
  }
  return bytes
}

/**
 * Decodes and validates a weights message. A chunk's `data` is a view into `bytes` (no copy) when
 * `bytes` is one contiguous Uint8Array.
 */
export function decodeWeightsMessage (bytes: Uint8Array | Uint8ArrayList, options: WeightsDecodeOptions = {}): WeightsMessage {
  const max = Math.min(options.maxBytes ?? MAX_WEIGHTS_FRAME_BYTES, MAX_WEIGHTS_FRAME_BYTES)
  checkFrameSize(bytes, 'weights', max)
  const env = decodeProtobuf(() => pb.WeightsEnvelope.decode(bytes), 'weights')
  return validateWeightsMessage(fromWire(env), options)
}

/**
 * A chunk message as [protobuf header, data]: byte for byte what encodeWeightsMessage produces,
 * without copying `data` into a fresh buffer (writeFrame sends the parts back to back). The caller
 * guarantees what the encoder would check (index in range, 4-byte multiples, data <= the chunk limit);
 * the layout is checked against the encoder once per process. peekChunk reads this layout back.
 *
 * Envelope { kind = 3 (field 1), chunk (field 4) { index (1), offset (2), data (3) } }; zero-valued
 * scalars are omitted, as protobuf does.
 */
export function chunkFrameParts (index: number, offset: number, data: Uint8Array): [Uint8Array, Uint8Array] {
  if (!layoutChecked) checkChunkLayout()
  const body: number[] = []
  if (index !== 0) { body.push(0x08); pushVarint(index, body) }
  if (offset !== 0) { body.push(0x10); pushVarint(offset, body) }
  body.push(0x1a)
  pushVarint(data.byteLength, body)
  const head: number[] = [0x08, KIND_CODE.chunk, 0x22]
  pushVarint(body.length + data.byteLength, head)
  return [Uint8Array.from([...head, ...body]), data]
}

let layoutChecked = false
function checkChunkLayout (): void {
  layoutChecked = true
  const data = new Uint8Array(300).fill(0x3c)
  for (const [index, offset] of [[0, 0], [1, 4], [200, 2 ** 31 + 4], [0, 1 << 20]]) {
    const [head] = chunkFrameParts(index, offset, data)
    const ours = Buffer.concat([head, data])
    const theirs = encodeWeightsMessage({ kind: 'chunk', index, offset, data })
    if (!ours.equals(theirs)) {
      layoutChecked = false
      throw new Error(`weights chunk framing differs from the protocol encoder (index ${index}, offset ${offset}): update chunkFrameParts`)
    }
  }
}

/** Where a chunk frame's data lies, found without copying it. */
export interface ChunkView {
  index: number
  offset: number
  /** The tensor's manifest entry. */
  info: TensorInfo
  /** The data is frame bytes [dataStart, frame.byteLength). */
  dataStart: number
}

/** Longest chunk header: kind (2) + body tag and length (1 + 3) + index (1 + 2) + offset (1 + 5) + data tag and length (1 + 3). */
const MAX_CHUNK_HEADER = 32

/**
 * Reads a chunk frame's header in place, for a receiver that copies the data straight from the
 * transport's buffers into the tensor (one copy instead of two). Recognises the layout every encoder
 * here produces: `kind = 3` (field 1) first, then the chunk body (field 4) holding index (1),
 * offset (2) and data (3) in field order, the data running to the end of the frame. Returns
 * undefined for anything else (another kind, another field order): pass that frame to
 * decodeWeightsMessage, which handles every valid encoding and reports what is wrong. The placement
 * is checked against `manifest` as decodeWeightsMessage checks it; NaN/Inf is left to the caller.
 */
export function peekChunk (frame: Uint8ArrayList | Uint8Array, manifest: WeightsManifest): ChunkView | undefined {
  const head = frame.subarray(0, Math.min(frame.byteLength, MAX_CHUNK_HEADER))
  let pos = 0
  const varint = (): number | undefined => {
    const r = readVarint(head, pos)
    pos = r.end
    return r.complete ? r.value : undefined
  }
  if (head[pos++] !== 0x08 || varint() !== KIND_CODE.chunk || head[pos++] !== 0x22) return undefined
  const bodyLength = varint()
  if (bodyLength === undefined || pos + bodyLength !== frame.byteLength) return undefined
  let index = 0
  let offset = 0
  let tag = head[pos++]
  if (tag === 0x08) { const v = varint(); if (v === undefined) return undefined; index = v; tag = head[pos++] }
  if (tag === 0x10) { const v = varint(); if (v === undefined) return undefined; offset = v; tag = head[pos++] }
  if (tag !== 0x1a) return undefined
  const dataLength = varint()
  if (dataLength === undefined || pos + dataLength !== frame.byteLength) return undefined
  const info = checkChunkPlacement(index, offset, dataLength, manifest) as TensorInfo
  return { index, offset, info, dataStart: pos }
}

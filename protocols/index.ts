/**
 * The wire layer's public surface: protocol ids, topics, limits, typed errors, message types and
 * the pure encoders/decoders. No networking here.
 */
export * from './constants.js'
export * from './errors.js'
export type * from './types.js'
export {
  MESSAGE_KINDS, HEARTBEAT_TOPIC_KINDS, CONTROL_TOPIC_KINDS, COORDINATOR_KINDS, PEER_REPORT_KINDS,
  encodeMessage, decodeMessage
} from './gossip.js'
export type { MessageDecodeOptions } from './gossip.js'
export { WEIGHTS_MESSAGE_KINDS, encodeWeightsMessage, decodeWeightsMessage, chunkFrameParts, peekChunk } from './weights.js'
export type { ChunkView, WeightsDecodeOptions } from './weights.js'
export {
  TENSOR_FRAME_MAGIC, TENSOR_FRAME_VERSION, tensorFrameHeaderLength, tensorFrameBytes,
  encodeTensorFrame, decodeTensorFrame, decodeTensorFrameHeader
} from './tensor-frame.js'
export type {
  TensorFrameHeader, TensorFrameHeaderInit, TensorFrameEncodeOptions, TensorFrameExpect,
  DecodedTensorFrame, ParsedTensorFrameHeader
} from './tensor-frame.js'
export {
  ROLES, RECOVERY_RUNGS, DTYPES, BYTES_PER_ELEMENT, validateMessage, validateWeightsMessage,
  firstNonFinite
} from './validate.js'
export type { WeightsValidationContext } from './validate.js'
export { MAX_VARINT_BYTES, encodeVarint, pushVarint, readVarint } from './varint.js'
export type { VarintRead } from './varint.js'
export { servingPeers } from './assignment.js'

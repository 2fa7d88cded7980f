import { decodeMessage, encodeMessage, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Heartbeat {
  peerId: string
  role: number
  stage: number
  iteration: number
  loss?: number
  gradNorm: number
  weightDigest: string
  tokensPerSec: number
  rssBytes: number
  epoch: number
  timestampMs: number
  departing: boolean
  stateIteration: number
  held: HeldCopy[]
}

export namespace Heartbeat {
  let _codec: Codec<Heartbeat>

  export const codec = (): Codec<Heartbeat> => {
    if (_codec == null) {
      _codec = message<Heartbeat>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peerId != null && obj.peerId !== '')) {
          w.uint32(10)
          w.string(obj.peerId)
        }

        if ((obj.role != null && obj.role !== 0)) {
          w.uint32(16)
          w.uint32(obj.role)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(24)
          w.sint32(obj.stage)
        }

        if ((obj.iteration != null && obj.iteration !== 0)) {
          w.uint32(32)
          w.uint32(obj.iteration)
        }

        if (obj.loss != null) {
          w.uint32(41)
          w.double(obj.loss)
        }

        if ((obj.gradNorm != null && obj.gradNorm !== 0)) {
          w.uint32(49)
          w.double(obj.gradNorm)
        }

        if ((obj.weightDigest != null && obj.weightDigest !== '')) {
          w.uint32(66)
          w.string(obj.weightDigest)
        }

        if ((obj.tokensPerSec != null && obj.tokensPerSec !== 0)) {
          w.uint32(73)
          w.double(obj.tokensPerSec)
        }

        if ((obj.rssBytes != null && obj.rssBytes !== 0)) {
          w.uint32(80)
          w.uint64Number(obj.rssBytes)
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(88)
          w.uint32(obj.epoch)
        }

        if ((obj.timestampMs != null && obj.timestampMs !== 0)) {
          w.uint32(96)
          w.uint64Number(obj.timestampMs)
        }

        if ((obj.departing != null && obj.departing !== false)) {
          w.uint32(104)
          w.bool(obj.departing)
        }

        if ((obj.stateIteration != null && obj.stateIteration !== 0)) {
          w.uint32(112)
          w.sint32(obj.stateIteration)
        }

        if (obj.held != null && obj.held.length > 0) {
          for (const value of obj.held) {
            w.uint32(122)
            HeldCopy.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peerId: '',
          role: 0,
          stage: 0,
          iteration: 0,
          gradNorm: 0,
          weightDigest: '',
          tokensPerSec: 0,
          rssBytes: 0,
          epoch: 0,
          timestampMs: 0,
          departing: false,
          stateIteration: 0,
          held: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peerId = reader.string()
              break
            }
            case 2: {
              obj.role = reader.uint32()
              break
            }
            case 3: {
              obj.stage = reader.sint32()
              break
            }
            case 4: {
              obj.iteration = reader.uint32()
              break
            }
            case 5: {
              obj.loss = reader.double()
              break
            }
            case 6: {
              obj.gradNorm = reader.double()
              break
            }
            case 8: {
              obj.weightDigest = reader.string()
              break
            }
            case 9: {
              obj.tokensPerSec = reader.double()
              break
            }
            case 10: {
              obj.rssBytes = reader.uint64Number()
              break
            }
            case 11: {
              obj.epoch = reader.uint32()
              break
            }
            case 12: {
              obj.timestampMs = reader.uint64Number()
              break
            }
            case 13: {
              obj.departing = reader.bool()
              break
            }
            case 14: {
              obj.stateIteration = reader.sint32()
              break
            }
            case 15: {
              if (opts.limits?.held != null && obj.held.length === opts.limits.held) {
                throw new MaxLengthError('Decode error - repeated field "held" had too many elements')
              }

              if (obj.held.length === 8) {
                throw new MaxLengthError('Decode error - repeated field "held" had too many elements')
              }

              obj.held.push(HeldCopy.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.held$
              }))
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          held: 8
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.peerId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.role`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.stage`,
                value: reader.sint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.iteration`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.loss`,
                value: reader.double()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.gradNorm`,
                value: reader.double()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.weightDigest`,
                value: reader.string()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.tokensPerSec`,
                value: reader.double()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.rssBytes`,
                value: reader.uint64Number()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 12: {
              yield {
                field: `${prefix}.timestampMs`,
                value: reader.uint64Number()
              }
              break
            }
            case 13: {
              yield {
                field: `${prefix}.departing`,
                value: reader.bool()
              }
              break
            }
            case 14: {
              yield {
                field: `${prefix}.stateIteration`,
                value: reader.sint32()
              }
              break
            }
            case 15: {
              if (opts.limits?.held != null && obj.held === opts.limits.held) {
                throw new MaxLengthError('Streaming decode error - repeated field "held" had too many elements')
              }

              if (obj.held === 8) {
                throw new MaxLengthError('Streaming decode error - repeated field "held" had too many elements')
              }

              for (const evt of HeldCopy.codec().stream(reader, reader.uint32(), `${prefix}.held[]`, {
                limits: opts.limits?.held$
              })) {
                yield {
                  ...evt,
                  index: obj.held
                }
              }

              obj.held++

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface HeartbeatPeerIdFieldEvent {
    field: '$.peerId'
    value: string
  }

  export interface HeartbeatRoleFieldEvent {
    field: '$.role'
    value: number
  }

  export interface HeartbeatStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface HeartbeatIterationFieldEvent {
    field: '$.iteration'
    value: number
  }

  export interface HeartbeatLossFieldEvent {
    field: '$.loss'
    value: number
  }

  export interface HeartbeatGradNormFieldEvent {
    field: '$.gradNorm'
    value: number
  }

  export interface HeartbeatWeightDigestFieldEvent {
    field: '$.weightDigest'
    value: string
  }

  export interface HeartbeatTokensPerSecFieldEvent {
    field: '$.tokensPerSec'
    value: number
  }

  export interface HeartbeatRssBytesFieldEvent {
    field: '$.rssBytes'
    value: number
  }

  export interface HeartbeatEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface HeartbeatTimestampMsFieldEvent {
    field: '$.timestampMs'
    value: number
  }

  export interface HeartbeatDepartingFieldEvent {
    field: '$.departing'
    value: boolean
  }

  export interface HeartbeatStateIterationFieldEvent {
    field: '$.stateIteration'
    value: number
  }

  export interface HeartbeatHeldKindFieldEvent {
    field: '$.held[].kind'
    value: number
    index: number
  }

  export interface HeartbeatHeldStageFieldEvent {
    field: '$.held[].stage'
    value: number
    index: number
  }

  export interface HeartbeatHeldIterationFieldEvent {
    field: '$.held[].iteration'
    value: number
    index: number
  }

  export function encode (obj: Partial<Heartbeat>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Heartbeat.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Heartbeat>): Heartbeat {
    return decodeMessage(buf, Heartbeat.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Heartbeat>): Generator<HeartbeatPeerIdFieldEvent | HeartbeatRoleFieldEvent | HeartbeatStageFieldEvent | HeartbeatIterationFieldEvent | HeartbeatLossFieldEvent | HeartbeatGradNormFieldEvent | HeartbeatWeightDigestFieldEvent | HeartbeatTokensPerSecFieldEvent | HeartbeatRssBytesFieldEvent | HeartbeatEpochFieldEvent | HeartbeatTimestampMsFieldEvent | HeartbeatDepartingFieldEvent | HeartbeatStateIterationFieldEvent | HeartbeatHeldKindFieldEvent | HeartbeatHeldStageFieldEvent | HeartbeatHeldIterationFieldEvent> {
    return streamMessage(buf, Heartbeat.codec(), opts)
  }
}

export interface HeldCopy {
  kind: number
  stage: number
  iteration: number
}

export namespace HeldCopy {
  let _codec: Codec<HeldCopy>

  export const codec = (): Codec<HeldCopy> => {
    if (_codec == null) {
      _codec = message<HeldCopy>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.kind != null && obj.kind !== 0)) {
          w.uint32(8)
          w.uint32(obj.kind)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(16)
          w.uint32(obj.stage)
        }

        if ((obj.iteration != null && obj.iteration !== 0)) {
          w.uint32(24)
          w.sint32(obj.iteration)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          kind: 0,
          stage: 0,
          iteration: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.kind = reader.uint32()
              break
            }
            case 2: {
              obj.stage = reader.uint32()
              break
            }
            case 3: {
              obj.iteration = reader.sint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.kind`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.iteration`,
                value: reader.sint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface HeldCopyKindFieldEvent {
    field: '$.kind'
    value: number
  }

  export interface HeldCopyStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface HeldCopyIterationFieldEvent {
    field: '$.iteration'
    value: number
  }

  export function encode (obj: Partial<HeldCopy>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, HeldCopy.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<HeldCopy>): HeldCopy {
    return decodeMessage(buf, HeldCopy.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<HeldCopy>): Generator<HeldCopyKindFieldEvent | HeldCopyStageFieldEvent | HeldCopyIterationFieldEvent> {
    return streamMessage(buf, HeldCopy.codec(), opts)
  }
}

export interface StageAssignment {
  stage: number
  peers: string[]
  addrs: string[]
}

export namespace StageAssignment {
  let _codec: Codec<StageAssignment>

  export const codec = (): Codec<StageAssignment> => {
    if (_codec == null) {
      _codec = message<StageAssignment>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(8)
          w.uint32(obj.stage)
        }

        if (obj.peers != null && obj.peers.length > 0) {
          for (const value of obj.peers) {
            w.uint32(18)
            w.string(value)
          }
        }

        if (obj.addrs != null && obj.addrs.length > 0) {
          for (const value of obj.addrs) {
            w.uint32(26)
            w.string(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          stage: 0,
          peers: [],
          addrs: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.stage = reader.uint32()
              break
            }
            case 2: {
              if (opts.limits?.peers != null && obj.peers.length === opts.limits.peers) {
                throw new MaxLengthError('Decode error - repeated field "peers" had too many elements')
              }

              if (obj.peers.length === 8) {
                throw new MaxLengthError('Decode error - repeated field "peers" had too many elements')
              }

              obj.peers.push(reader.string())
              break
            }
            case 3: {
              if (opts.limits?.addrs != null && obj.addrs.length === opts.limits.addrs) {
                throw new MaxLengthError('Decode error - repeated field "addrs" had too many elements')
              }

              if (obj.addrs.length === 8) {
                throw new MaxLengthError('Decode error - repeated field "addrs" had too many elements')
              }

              obj.addrs.push(reader.string())
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          peers: 8,
          addrs: 8
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              if (opts.limits?.peers != null && obj.peers === opts.limits.peers) {
                throw new MaxLengthError('Streaming decode error - repeated field "peers" had too many elements')
              }

              if (obj.peers === 8) {
                throw new MaxLengthError('Streaming decode error - repeated field "peers" had too many elements')
              }

              yield {
                field: `${prefix}.peers[]`,
                index: obj.peers,
                value: reader.string()
              }

              obj.peers++

              break
            }
            case 3: {
              if (opts.limits?.addrs != null && obj.addrs === opts.limits.addrs) {
                throw new MaxLengthError('Streaming decode error - repeated field "addrs" had too many elements')
              }

              if (obj.addrs === 8) {
                throw new MaxLengthError('Streaming decode error - repeated field "addrs" had too many elements')
              }

              yield {
                field: `${prefix}.addrs[]`,
                index: obj.addrs,
                value: reader.string()
              }

              obj.addrs++

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface StageAssignmentStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface StageAssignmentPeersFieldEvent {
    field: '$.peers[]'
    index: number
    value: string
  }

  export interface StageAssignmentAddrsFieldEvent {
    field: '$.addrs[]'
    index: number
    value: string
  }

  export function encode (obj: Partial<StageAssignment>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, StageAssignment.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StageAssignment>): StageAssignment {
    return decodeMessage(buf, StageAssignment.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StageAssignment>): Generator<StageAssignmentStageFieldEvent | StageAssignmentPeersFieldEvent | StageAssignmentAddrsFieldEvent> {
    return streamMessage(buf, StageAssignment.codec(), opts)
  }
}

export interface Assignment {
  clusterId: string
  runId: string
  epoch: number
  iteration: number
  stages: StageAssignment[]
  modelConfig: string
  trainingConfig: string
  rebuilt: number[]
  joining: string[]
}

export namespace Assignment {
  let _codec: Codec<Assignment>

  export const codec = (): Codec<Assignment> => {
    if (_codec == null) {
      _codec = message<Assignment>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.clusterId != null && obj.clusterId !== '')) {
          w.uint32(10)
          w.string(obj.clusterId)
        }

        if ((obj.runId != null && obj.runId !== '')) {
          w.uint32(18)
          w.string(obj.runId)
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(24)
          w.uint32(obj.epoch)
        }

        if ((obj.iteration != null && obj.iteration !== 0)) {
          w.uint32(32)
          w.uint32(obj.iteration)
        }

        if (obj.stages != null && obj.stages.length > 0) {
          for (const value of obj.stages) {
            w.uint32(42)
            StageAssignment.codec().encode(value, w)
          }
        }

        if ((obj.modelConfig != null && obj.modelConfig !== '')) {
          w.uint32(50)
          w.string(obj.modelConfig)
        }

        if ((obj.trainingConfig != null && obj.trainingConfig !== '')) {
          w.uint32(58)
          w.string(obj.trainingConfig)
        }

        if (obj.rebuilt != null && obj.rebuilt.length > 0) {
          for (const value of obj.rebuilt) {
            w.uint32(64)
            w.uint32(value)
          }
        }

        if (obj.joining != null && obj.joining.length > 0) {
          for (const value of obj.joining) {
            w.uint32(74)
            w.string(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          clusterId: '',
          runId: '',
          epoch: 0,
          iteration: 0,
          stages: [],
          modelConfig: '',
          trainingConfig: '',
          rebuilt: [],
          joining: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.clusterId = reader.string()
              break
            }
            case 2: {
              obj.runId = reader.string()
              break
            }
            case 3: {
              obj.epoch = reader.uint32()
              break
            }
            case 4: {
              obj.iteration = reader.uint32()
              break
            }
            case 5: {
              if (opts.limits?.stages != null && obj.stages.length === opts.limits.stages) {
                throw new MaxLengthError('Decode error - repeated field "stages" had too many elements')
              }

              if (obj.stages.length === 1024) {
                throw new MaxLengthError('Decode error - repeated field "stages" had too many elements')
              }

              obj.stages.push(StageAssignment.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.stages$
              }))
              break
            }
            case 6: {
              obj.modelConfig = reader.string()
              break
            }
            case 7: {
              obj.trainingConfig = reader.string()
              break
            }
            case 8: {
              if (opts.limits?.rebuilt != null && obj.rebuilt.length === opts.limits.rebuilt) {
                throw new MaxLengthError('Decode error - repeated field "rebuilt" had too many elements')
              }

              if (obj.rebuilt.length === 1024) {
                throw new MaxLengthError('Decode error - repeated field "rebuilt" had too many elements')
              }

              obj.rebuilt.push(reader.uint32())
              break
            }
            case 9: {
              if (opts.limits?.joining != null && obj.joining.length === opts.limits.joining) {
                throw new MaxLengthError('Decode error - repeated field "joining" had too many elements')
              }

              if (obj.joining.length === 1024) {
                throw new MaxLengthError('Decode error - repeated field "joining" had too many elements')
              }

              obj.joining.push(reader.string())
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          stages: 1024,
          rebuilt: 1024,
          joining: 1024
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.clusterId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.runId`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.iteration`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              if (opts.limits?.stages != null && obj.stages === opts.limits.stages) {
                throw new MaxLengthError('Streaming decode error - repeated field "stages" had too many elements')
              }

              if (obj.stages === 1024) {
                throw new MaxLengthError('Streaming decode error - repeated field "stages" had too many elements')
              }

              for (const evt of StageAssignment.codec().stream(reader, reader.uint32(), `${prefix}.stages[]`, {
                limits: opts.limits?.stages$
              })) {
                yield {
                  ...evt,
                  index: obj.stages
                }
              }

              obj.stages++

              break
            }
            case 6: {
              yield {
                field: `${prefix}.modelConfig`,
                value: reader.string()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.trainingConfig`,
                value: reader.string()
              }
              break
            }
            case 8: {
              if (opts.limits?.rebuilt != null && obj.rebuilt === opts.limits.rebuilt) {
                throw new MaxLengthError('Streaming decode error - repeated field "rebuilt" had too many elements')
              }

              if (obj.rebuilt === 1024) {
                throw new MaxLengthError('Streaming decode error - repeated field "rebuilt" had too many elements')
              }

              yield {
                field: `${prefix}.rebuilt[]`,
                index: obj.rebuilt,
                value: reader.uint32()
              }

              obj.rebuilt++

              break
            }
            case 9: {
              if (opts.limits?.joining != null && obj.joining === opts.limits.joining) {
                throw new MaxLengthError('Streaming decode error - repeated field "joining" had too many elements')
              }

              if (obj.joining === 1024) {
                throw new MaxLengthError('Streaming decode error - repeated field "joining" had too many elements')
              }

              yield {
                field: `${prefix}.joining[]`,
                index: obj.joining,
                value: reader.string()
              }

              obj.joining++

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface AssignmentClusterIdFieldEvent {
    field: '$.clusterId'
    value: string
  }

  export interface AssignmentRunIdFieldEvent {
    field: '$.runId'
    value: string
  }

  export interface AssignmentEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface AssignmentIterationFieldEvent {
    field: '$.iteration'
    value: number
  }

  export interface AssignmentStagesStageFieldEvent {
    field: '$.stages[].stage'
    value: number
    index: number
  }

  export interface AssignmentStagesPeersFieldEvent {
    field: '$.stages[].peers[]'
    index: number
    value: string
  }

  export interface AssignmentStagesAddrsFieldEvent {
    field: '$.stages[].addrs[]'
    index: number
    value: string
  }

  export interface AssignmentModelConfigFieldEvent {
    field: '$.modelConfig'
    value: string
  }

  export interface AssignmentTrainingConfigFieldEvent {
    field: '$.trainingConfig'
    value: string
  }

  export interface AssignmentRebuiltFieldEvent {
    field: '$.rebuilt[]'
    index: number
    value: number
  }

  export interface AssignmentJoiningFieldEvent {
    field: '$.joining[]'
    index: number
    value: string
  }

  export function encode (obj: Partial<Assignment>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Assignment.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Assignment>): Assignment {
    return decodeMessage(buf, Assignment.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Assignment>): Generator<AssignmentClusterIdFieldEvent | AssignmentRunIdFieldEvent | AssignmentEpochFieldEvent | AssignmentIterationFieldEvent | AssignmentStagesStageFieldEvent | AssignmentStagesPeersFieldEvent | AssignmentStagesAddrsFieldEvent | AssignmentModelConfigFieldEvent | AssignmentTrainingConfigFieldEvent | AssignmentRebuiltFieldEvent | AssignmentJoiningFieldEvent> {
    return streamMessage(buf, Assignment.codec(), opts)
  }
}

export interface Begin {
  epoch: number
  iteration: number
}

export namespace Begin {
  let _codec: Codec<Begin>

  export const codec = (): Codec<Begin> => {
    if (_codec == null) {
      _codec = message<Begin>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(8)
          w.uint32(obj.epoch)
        }

        if ((obj.iteration != null && obj.iteration !== 0)) {
          w.uint32(16)
          w.uint32(obj.iteration)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          epoch: 0,
          iteration: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.epoch = reader.uint32()
              break
            }
            case 2: {
              obj.iteration = reader.uint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.iteration`,
                value: reader.uint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface BeginEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface BeginIterationFieldEvent {
    field: '$.iteration'
    value: number
  }

  export function encode (obj: Partial<Begin>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Begin.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Begin>): Begin {
    return decodeMessage(buf, Begin.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Begin>): Generator<BeginEpochFieldEvent | BeginIterationFieldEvent> {
    return streamMessage(buf, Begin.codec(), opts)
  }
}

export interface Abort {
  epoch: number
  iteration: number
  reason: string
}

export namespace Abort {
  let _codec: Codec<Abort>

  export const codec = (): Codec<Abort> => {
    if (_codec == null) {
      _codec = message<Abort>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(8)
          w.uint32(obj.epoch)
        }

        if ((obj.iteration != null && obj.iteration !== 0)) {
          w.uint32(16)
          w.uint32(obj.iteration)
        }

        if ((obj.reason != null && obj.reason !== '')) {
          w.uint32(26)
          w.string(obj.reason)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          epoch: 0,
          iteration: 0,
          reason: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.epoch = reader.uint32()
              break
            }
            case 2: {
              obj.iteration = reader.uint32()
              break
            }
            case 3: {
              obj.reason = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.iteration`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.reason`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface AbortEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface AbortIterationFieldEvent {
    field: '$.iteration'
    value: number
  }

  export interface AbortReasonFieldEvent {
    field: '$.reason'
    value: string
  }

  export function encode (obj: Partial<Abort>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Abort.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Abort>): Abort {
    return decodeMessage(buf, Abort.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Abort>): Generator<AbortEpochFieldEvent | AbortIterationFieldEvent | AbortReasonFieldEvent> {
    return streamMessage(buf, Abort.codec(), opts)
  }
}

export interface Commit {
  epoch: number
  iteration: number
  checkpoint?: number
  skipped: boolean
  snapshot: boolean
}

export namespace Commit {
  let _codec: Codec<Commit>

  export const codec = (): Codec<Commit> => {
    if (_codec == null) {
      _codec = message<Commit>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(8)
          w.uint32(obj.epoch)
        }

        if ((obj.iteration != null && obj.iteration !== 0)) {
          w.uint32(16)
          w.uint32(obj.iteration)
        }

        if (obj.checkpoint != null) {
          w.uint32(24)
          w.uint32(obj.checkpoint)
        }

        if ((obj.skipped != null && obj.skipped !== false)) {
          w.uint32(32)
          w.bool(obj.skipped)
        }

        if ((obj.snapshot != null && obj.snapshot !== false)) {
          w.uint32(40)
          w.bool(obj.snapshot)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          epoch: 0,
          iteration: 0,
          skipped: false,
          snapshot: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.epoch = reader.uint32()
              break
            }
            case 2: {
              obj.iteration = reader.uint32()
              break
            }
            case 3: {
              obj.checkpoint = reader.uint32()
              break
            }
            case 4: {
              obj.skipped = reader.bool()
              break
            }
            case 5: {
              obj.snapshot = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.iteration`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.checkpoint`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.skipped`,
                value: reader.bool()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.snapshot`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface CommitEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface CommitIterationFieldEvent {
    field: '$.iteration'
    value: number
  }

  export interface CommitCheckpointFieldEvent {
    field: '$.checkpoint'
    value: number
  }

  export interface CommitSkippedFieldEvent {
    field: '$.skipped'
    value: boolean
  }

  export interface CommitSnapshotFieldEvent {
    field: '$.snapshot'
    value: boolean
  }

  export function encode (obj: Partial<Commit>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Commit.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Commit>): Commit {
    return decodeMessage(buf, Commit.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Commit>): Generator<CommitEpochFieldEvent | CommitIterationFieldEvent | CommitCheckpointFieldEvent | CommitSkippedFieldEvent | CommitSnapshotFieldEvent> {
    return streamMessage(buf, Commit.codec(), opts)
  }
}

export interface Done {
  peerId: string
  stage: number
  epoch: number
  iteration: number
  loss?: number
  gradNorm: number
  computeMs: number
  nonFinite: boolean
  nonFiniteWhat: string
  allReduceMs?: number
  weightDigest: string
}

export namespace Done {
  let _codec: Codec<Done>

  export const codec = (): Codec<Done> => {
    if (_codec == null) {
      _codec = message<Done>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peerId != null && obj.peerId !== '')) {
          w.uint32(10)
          w.string(obj.peerId)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(16)
          w.uint32(obj.stage)
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(24)
          w.uint32(obj.epoch)
        }

        if ((obj.iteration != null && obj.iteration !== 0)) {
          w.uint32(32)
          w.uint32(obj.iteration)
        }

        if (obj.loss != null) {
          w.uint32(41)
          w.double(obj.loss)
        }

        if ((obj.gradNorm != null && obj.gradNorm !== 0)) {
          w.uint32(49)
          w.double(obj.gradNorm)
        }

        if ((obj.computeMs != null && obj.computeMs !== 0)) {
          w.uint32(65)
          w.double(obj.computeMs)
        }

        if ((obj.nonFinite != null && obj.nonFinite !== false)) {
          w.uint32(72)
          w.bool(obj.nonFinite)
        }

        if ((obj.nonFiniteWhat != null && obj.nonFiniteWhat !== '')) {
          w.uint32(82)
          w.string(obj.nonFiniteWhat)
        }

        if (obj.allReduceMs != null) {
          w.uint32(89)
          w.double(obj.allReduceMs)
        }

        if ((obj.weightDigest != null && obj.weightDigest !== '')) {
          w.uint32(98)
          w.string(obj.weightDigest)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peerId: '',
          stage: 0,
          epoch: 0,
          iteration: 0,
          gradNorm: 0,
          computeMs: 0,
          nonFinite: false,
          nonFiniteWhat: '',
          weightDigest: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peerId = reader.string()
              break
            }
            case 2: {
              obj.stage = reader.uint32()
              break
            }
            case 3: {
              obj.epoch = reader.uint32()
              break
            }
            case 4: {
              obj.iteration = reader.uint32()
              break
            }
            case 5: {
              obj.loss = reader.double()
              break
            }
            case 6: {
              obj.gradNorm = reader.double()
              break
            }
            case 8: {
              obj.computeMs = reader.double()
              break
            }
            case 9: {
              obj.nonFinite = reader.bool()
              break
            }
            case 10: {
              obj.nonFiniteWhat = reader.string()
              break
            }
            case 11: {
              obj.allReduceMs = reader.double()
              break
            }
            case 12: {
              obj.weightDigest = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.peerId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.iteration`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.loss`,
                value: reader.double()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.gradNorm`,
                value: reader.double()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.computeMs`,
                value: reader.double()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.nonFinite`,
                value: reader.bool()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.nonFiniteWhat`,
                value: reader.string()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.allReduceMs`,
                value: reader.double()
              }
              break
            }
            case 12: {
              yield {
                field: `${prefix}.weightDigest`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface DonePeerIdFieldEvent {
    field: '$.peerId'
    value: string
  }

  export interface DoneStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface DoneEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface DoneIterationFieldEvent {
    field: '$.iteration'
    value: number
  }

  export interface DoneLossFieldEvent {
    field: '$.loss'
    value: number
  }

  export interface DoneGradNormFieldEvent {
    field: '$.gradNorm'
    value: number
  }

  export interface DoneComputeMsFieldEvent {
    field: '$.computeMs'
    value: number
  }

  export interface DoneNonFiniteFieldEvent {
    field: '$.nonFinite'
    value: boolean
  }

  export interface DoneNonFiniteWhatFieldEvent {
    field: '$.nonFiniteWhat'
    value: string
  }

  export interface DoneAllReduceMsFieldEvent {
    field: '$.allReduceMs'
    value: number
  }

  export interface DoneWeightDigestFieldEvent {
    field: '$.weightDigest'
    value: string
  }

  export function encode (obj: Partial<Done>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Done.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Done>): Done {
    return decodeMessage(buf, Done.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Done>): Generator<DonePeerIdFieldEvent | DoneStageFieldEvent | DoneEpochFieldEvent | DoneIterationFieldEvent | DoneLossFieldEvent | DoneGradNormFieldEvent | DoneComputeMsFieldEvent | DoneNonFiniteFieldEvent | DoneNonFiniteWhatFieldEvent | DoneAllReduceMsFieldEvent | DoneWeightDigestFieldEvent> {
    return streamMessage(buf, Done.codec(), opts)
  }
}

export interface StreamBreak {
  reporter: string
  stage: number
  suspect: string
  epoch: number
  iteration: number
  reason: string
}

export namespace StreamBreak {
  let _codec: Codec<StreamBreak>

  export const codec = (): Codec<StreamBreak> => {
    if (_codec == null) {
      _codec = message<StreamBreak>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.reporter != null && obj.reporter !== '')) {
          w.uint32(10)
          w.string(obj.reporter)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(16)
          w.uint32(obj.stage)
        }

        if ((obj.suspect != null && obj.suspect !== '')) {
          w.uint32(26)
          w.string(obj.suspect)
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(32)
          w.uint32(obj.epoch)
        }

        if ((obj.iteration != null && obj.iteration !== 0)) {
          w.uint32(40)
          w.uint32(obj.iteration)
        }

        if ((obj.reason != null && obj.reason !== '')) {
          w.uint32(50)
          w.string(obj.reason)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          reporter: '',
          stage: 0,
          suspect: '',
          epoch: 0,
          iteration: 0,
          reason: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.reporter = reader.string()
              break
            }
            case 2: {
              obj.stage = reader.uint32()
              break
            }
            case 3: {
              obj.suspect = reader.string()
              break
            }
            case 4: {
              obj.epoch = reader.uint32()
              break
            }
            case 5: {
              obj.iteration = reader.uint32()
              break
            }
            case 6: {
              obj.reason = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.reporter`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.suspect`,
                value: reader.string()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.iteration`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.reason`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface StreamBreakReporterFieldEvent {
    field: '$.reporter'
    value: string
  }

  export interface StreamBreakStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface StreamBreakSuspectFieldEvent {
    field: '$.suspect'
    value: string
  }

  export interface StreamBreakEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface StreamBreakIterationFieldEvent {
    field: '$.iteration'
    value: number
  }

  export interface StreamBreakReasonFieldEvent {
    field: '$.reason'
    value: string
  }

  export function encode (obj: Partial<StreamBreak>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, StreamBreak.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StreamBreak>): StreamBreak {
    return decodeMessage(buf, StreamBreak.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<StreamBreak>): Generator<StreamBreakReporterFieldEvent | StreamBreakStageFieldEvent | StreamBreakSuspectFieldEvent | StreamBreakEpochFieldEvent | StreamBreakIterationFieldEvent | StreamBreakReasonFieldEvent> {
    return streamMessage(buf, StreamBreak.codec(), opts)
  }
}

export interface RecoveryDonor {
  peerId: string
  stage: number
  addr: string
}

export namespace RecoveryDonor {
  let _codec: Codec<RecoveryDonor>

  export const codec = (): Codec<RecoveryDonor> => {
    if (_codec == null) {
      _codec = message<RecoveryDonor>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peerId != null && obj.peerId !== '')) {
          w.uint32(10)
          w.string(obj.peerId)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(16)
          w.uint32(obj.stage)
        }

        if ((obj.addr != null && obj.addr !== '')) {
          w.uint32(26)
          w.string(obj.addr)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peerId: '',
          stage: 0,
          addr: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peerId = reader.string()
              break
            }
            case 2: {
              obj.stage = reader.uint32()
              break
            }
            case 3: {
              obj.addr = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.peerId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.addr`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface RecoveryDonorPeerIdFieldEvent {
    field: '$.peerId'
    value: string
  }

  export interface RecoveryDonorStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface RecoveryDonorAddrFieldEvent {
    field: '$.addr'
    value: string
  }

  export function encode (obj: Partial<RecoveryDonor>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, RecoveryDonor.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RecoveryDonor>): RecoveryDonor {
    return decodeMessage(buf, RecoveryDonor.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RecoveryDonor>): Generator<RecoveryDonorPeerIdFieldEvent | RecoveryDonorStageFieldEvent | RecoveryDonorAddrFieldEvent> {
    return streamMessage(buf, RecoveryDonor.codec(), opts)
  }
}

export interface RecoveryPlan {
  epoch: number
  stage: number
  rung: number
  targetPeer: string
  donors: RecoveryDonor[]
  lrScale: number
  weights: number[]
  checkpointId: string
}

export namespace RecoveryPlan {
  let _codec: Codec<RecoveryPlan>

  export const codec = (): Codec<RecoveryPlan> => {
    if (_codec == null) {
      _codec = message<RecoveryPlan>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(8)
          w.uint32(obj.epoch)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(16)
          w.uint32(obj.stage)
        }

        if ((obj.rung != null && obj.rung !== 0)) {
          w.uint32(24)
          w.uint32(obj.rung)
        }

        if ((obj.targetPeer != null && obj.targetPeer !== '')) {
          w.uint32(34)
          w.string(obj.targetPeer)
        }

        if (obj.donors != null && obj.donors.length > 0) {
          for (const value of obj.donors) {
            w.uint32(42)
            RecoveryDonor.codec().encode(value, w)
          }
        }

        if ((obj.lrScale != null && obj.lrScale !== 0)) {
          w.uint32(49)
          w.double(obj.lrScale)
        }

        if (obj.weights != null && obj.weights.length > 0) {
          for (const value of obj.weights) {
            w.uint32(57)
            w.double(value)
          }
        }

        if ((obj.checkpointId != null && obj.checkpointId !== '')) {
          w.uint32(66)
          w.string(obj.checkpointId)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          epoch: 0,
          stage: 0,
          rung: 0,
          targetPeer: '',
          donors: [],
          lrScale: 0,
          weights: [],
          checkpointId: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.epoch = reader.uint32()
              break
            }
            case 2: {
              obj.stage = reader.uint32()
              break
            }
            case 3: {
              obj.rung = reader.uint32()
              break
            }
            case 4: {
              obj.targetPeer = reader.string()
              break
            }
            case 5: {
              if (opts.limits?.donors != null && obj.donors.length === opts.limits.donors) {
                throw new MaxLengthError('Decode error - repeated field "donors" had too many elements')
              }

              if (obj.donors.length === 8) {
                throw new MaxLengthError('Decode error - repeated field "donors" had too many elements')
              }

              obj.donors.push(RecoveryDonor.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.donors$
              }))
              break
            }
            case 6: {
              obj.lrScale = reader.double()
              break
            }
            case 7: {
              if (opts.limits?.weights != null && obj.weights.length === opts.limits.weights) {
                throw new MaxLengthError('Decode error - repeated field "weights" had too many elements')
              }

              if (obj.weights.length === 8) {
                throw new MaxLengthError('Decode error - repeated field "weights" had too many elements')
              }

              obj.weights.push(reader.double())
              break
            }
            case 8: {
              obj.checkpointId = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          donors: 8,
          weights: 8
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.rung`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.targetPeer`,
                value: reader.string()
              }
              break
            }
            case 5: {
              if (opts.limits?.donors != null && obj.donors === opts.limits.donors) {
                throw new MaxLengthError('Streaming decode error - repeated field "donors" had too many elements')
              }

              if (obj.donors === 8) {
                throw new MaxLengthError('Streaming decode error - repeated field "donors" had too many elements')
              }

              for (const evt of RecoveryDonor.codec().stream(reader, reader.uint32(), `${prefix}.donors[]`, {
                limits: opts.limits?.donors$
              })) {
                yield {
                  ...evt,
                  index: obj.donors
                }
              }

              obj.donors++

              break
            }
            case 6: {
              yield {
                field: `${prefix}.lrScale`,
                value: reader.double()
              }
              break
            }
            case 7: {
              if (opts.limits?.weights != null && obj.weights === opts.limits.weights) {
                throw new MaxLengthError('Streaming decode error - repeated field "weights" had too many elements')
              }

              if (obj.weights === 8) {
                throw new MaxLengthError('Streaming decode error - repeated field "weights" had too many elements')
              }

              yield {
                field: `${prefix}.weights[]`,
                index: obj.weights,
                value: reader.double()
              }

              obj.weights++

              break
            }
            case 8: {
              yield {
                field: `${prefix}.checkpointId`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface RecoveryPlanEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface RecoveryPlanStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface RecoveryPlanRungFieldEvent {
    field: '$.rung'
    value: number
  }

  export interface RecoveryPlanTargetPeerFieldEvent {
    field: '$.targetPeer'
    value: string
  }

  export interface RecoveryPlanDonorsPeerIdFieldEvent {
    field: '$.donors[].peerId'
    value: string
    index: number
  }

  export interface RecoveryPlanDonorsStageFieldEvent {
    field: '$.donors[].stage'
    value: number
    index: number
  }

  export interface RecoveryPlanDonorsAddrFieldEvent {
    field: '$.donors[].addr'
    value: string
    index: number
  }

  export interface RecoveryPlanLrScaleFieldEvent {
    field: '$.lrScale'
    value: number
  }

  export interface RecoveryPlanWeightsFieldEvent {
    field: '$.weights[]'
    index: number
    value: number
  }

  export interface RecoveryPlanCheckpointIdFieldEvent {
    field: '$.checkpointId'
    value: string
  }

  export function encode (obj: Partial<RecoveryPlan>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, RecoveryPlan.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RecoveryPlan>): RecoveryPlan {
    return decodeMessage(buf, RecoveryPlan.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RecoveryPlan>): Generator<RecoveryPlanEpochFieldEvent | RecoveryPlanStageFieldEvent | RecoveryPlanRungFieldEvent | RecoveryPlanTargetPeerFieldEvent | RecoveryPlanDonorsPeerIdFieldEvent | RecoveryPlanDonorsStageFieldEvent | RecoveryPlanDonorsAddrFieldEvent | RecoveryPlanLrScaleFieldEvent | RecoveryPlanWeightsFieldEvent | RecoveryPlanCheckpointIdFieldEvent> {
    return streamMessage(buf, RecoveryPlan.codec(), opts)
  }
}

export interface RecoveryDone {
  peerId: string
  epoch: number
  stage: number
  rung: number
  bytes: number
  transferMs: number
  rebuildMs: number
}

export namespace RecoveryDone {
  let _codec: Codec<RecoveryDone>

  export const codec = (): Codec<RecoveryDone> => {
    if (_codec == null) {
      _codec = message<RecoveryDone>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peerId != null && obj.peerId !== '')) {
          w.uint32(10)
          w.string(obj.peerId)
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(16)
          w.uint32(obj.epoch)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(24)
          w.uint32(obj.stage)
        }

        if ((obj.rung != null && obj.rung !== 0)) {
          w.uint32(32)
          w.uint32(obj.rung)
        }

        if ((obj.bytes != null && obj.bytes !== 0)) {
          w.uint32(40)
          w.uint64Number(obj.bytes)
        }

        if ((obj.transferMs != null && obj.transferMs !== 0)) {
          w.uint32(49)
          w.double(obj.transferMs)
        }

        if ((obj.rebuildMs != null && obj.rebuildMs !== 0)) {
          w.uint32(57)
          w.double(obj.rebuildMs)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peerId: '',
          epoch: 0,
          stage: 0,
          rung: 0,
          bytes: 0,
          transferMs: 0,
          rebuildMs: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peerId = reader.string()
              break
            }
            case 2: {
              obj.epoch = reader.uint32()
              break
            }
            case 3: {
              obj.stage = reader.uint32()
              break
            }
            case 4: {
              obj.rung = reader.uint32()
              break
            }
            case 5: {
              obj.bytes = reader.uint64Number()
              break
            }
            case 6: {
              obj.transferMs = reader.double()
              break
            }
            case 7: {
              obj.rebuildMs = reader.double()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.peerId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.rung`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.bytes`,
                value: reader.uint64Number()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.transferMs`,
                value: reader.double()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.rebuildMs`,
                value: reader.double()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface RecoveryDonePeerIdFieldEvent {
    field: '$.peerId'
    value: string
  }

  export interface RecoveryDoneEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface RecoveryDoneStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface RecoveryDoneRungFieldEvent {
    field: '$.rung'
    value: number
  }

  export interface RecoveryDoneBytesFieldEvent {
    field: '$.bytes'
    value: number
  }

  export interface RecoveryDoneTransferMsFieldEvent {
    field: '$.transferMs'
    value: number
  }

  export interface RecoveryDoneRebuildMsFieldEvent {
    field: '$.rebuildMs'
    value: number
  }

  export function encode (obj: Partial<RecoveryDone>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, RecoveryDone.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RecoveryDone>): RecoveryDone {
    return decodeMessage(buf, RecoveryDone.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RecoveryDone>): Generator<RecoveryDonePeerIdFieldEvent | RecoveryDoneEpochFieldEvent | RecoveryDoneStageFieldEvent | RecoveryDoneRungFieldEvent | RecoveryDoneBytesFieldEvent | RecoveryDoneTransferMsFieldEvent | RecoveryDoneRebuildMsFieldEvent> {
    return streamMessage(buf, RecoveryDone.codec(), opts)
  }
}

export interface RecoveryFailed {
  peerId: string
  epoch: number
  stage: number
  rung: number
  code: string
  reason: string
}

export namespace RecoveryFailed {
  let _codec: Codec<RecoveryFailed>

  export const codec = (): Codec<RecoveryFailed> => {
    if (_codec == null) {
      _codec = message<RecoveryFailed>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.peerId != null && obj.peerId !== '')) {
          w.uint32(10)
          w.string(obj.peerId)
        }

        if ((obj.epoch != null && obj.epoch !== 0)) {
          w.uint32(16)
          w.uint32(obj.epoch)
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(24)
          w.uint32(obj.stage)
        }

        if ((obj.rung != null && obj.rung !== 0)) {
          w.uint32(32)
          w.uint32(obj.rung)
        }

        if ((obj.code != null && obj.code !== '')) {
          w.uint32(42)
          w.string(obj.code)
        }

        if ((obj.reason != null && obj.reason !== '')) {
          w.uint32(50)
          w.string(obj.reason)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          peerId: '',
          epoch: 0,
          stage: 0,
          rung: 0,
          code: '',
          reason: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peerId = reader.string()
              break
            }
            case 2: {
              obj.epoch = reader.uint32()
              break
            }
            case 3: {
              obj.stage = reader.uint32()
              break
            }
            case 4: {
              obj.rung = reader.uint32()
              break
            }
            case 5: {
              obj.code = reader.string()
              break
            }
            case 6: {
              obj.reason = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.peerId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.epoch`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.rung`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.code`,
                value: reader.string()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.reason`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface RecoveryFailedPeerIdFieldEvent {
    field: '$.peerId'
    value: string
  }

  export interface RecoveryFailedEpochFieldEvent {
    field: '$.epoch'
    value: number
  }

  export interface RecoveryFailedStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface RecoveryFailedRungFieldEvent {
    field: '$.rung'
    value: number
  }

  export interface RecoveryFailedCodeFieldEvent {
    field: '$.code'
    value: string
  }

  export interface RecoveryFailedReasonFieldEvent {
    field: '$.reason'
    value: string
  }

  export function encode (obj: Partial<RecoveryFailed>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, RecoveryFailed.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RecoveryFailed>): RecoveryFailed {
    return decodeMessage(buf, RecoveryFailed.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<RecoveryFailed>): Generator<RecoveryFailedPeerIdFieldEvent | RecoveryFailedEpochFieldEvent | RecoveryFailedStageFieldEvent | RecoveryFailedRungFieldEvent | RecoveryFailedCodeFieldEvent | RecoveryFailedReasonFieldEvent> {
    return streamMessage(buf, RecoveryFailed.codec(), opts)
  }
}

export interface GossipEnvelope {
  kind: number
  heartbeat?: Heartbeat
  assignment?: Assignment
  begin?: Begin
  abort?: Abort
  commit?: Commit
  done?: Done
  streamBreak?: StreamBreak
  recoveryPlan?: RecoveryPlan
  recoveryDone?: RecoveryDone
  recoveryFailed?: RecoveryFailed
}

export namespace GossipEnvelope {
  let _codec: Codec<GossipEnvelope>

  export const codec = (): Codec<GossipEnvelope> => {
    if (_codec == null) {
      _codec = message<GossipEnvelope>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.kind != null && obj.kind !== 0)) {
          w.uint32(8)
          w.uint32(obj.kind)
        }

        if (obj.heartbeat != null) {
          w.uint32(18)
          Heartbeat.codec().encode(obj.heartbeat, w)
        }

        if (obj.assignment != null) {
          w.uint32(26)
          Assignment.codec().encode(obj.assignment, w)
        }

        if (obj.begin != null) {
          w.uint32(34)
          Begin.codec().encode(obj.begin, w)
        }

        if (obj.abort != null) {
          w.uint32(42)
          Abort.codec().encode(obj.abort, w)
        }

        if (obj.commit != null) {
          w.uint32(50)
          Commit.codec().encode(obj.commit, w)
        }

        if (obj.done != null) {
          w.uint32(58)
          Done.codec().encode(obj.done, w)
        }

        if (obj.streamBreak != null) {
          w.uint32(66)
          StreamBreak.codec().encode(obj.streamBreak, w)
        }

        if (obj.recoveryPlan != null) {
          w.uint32(74)
          RecoveryPlan.codec().encode(obj.recoveryPlan, w)
        }

        if (obj.recoveryDone != null) {
          w.uint32(82)
          RecoveryDone.codec().encode(obj.recoveryDone, w)
        }

        if (obj.recoveryFailed != null) {
          w.uint32(90)
          RecoveryFailed.codec().encode(obj.recoveryFailed, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          kind: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.kind = reader.uint32()
              break
            }
            case 2: {
              obj.heartbeat = Heartbeat.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.heartbeat
              })
              break
            }
            case 3: {
              obj.assignment = Assignment.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.assignment
              })
              break
            }
            case 4: {
              obj.begin = Begin.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.begin
              })
              break
            }
            case 5: {
              obj.abort = Abort.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.abort
              })
              break
            }
            case 6: {
              obj.commit = Commit.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.commit
              })
              break
            }
            case 7: {
              obj.done = Done.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.done
              })
              break
            }
            case 8: {
              obj.streamBreak = StreamBreak.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.streamBreak
              })
              break
            }
            case 9: {
              obj.recoveryPlan = RecoveryPlan.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.recoveryPlan
              })
              break
            }
            case 10: {
              obj.recoveryDone = RecoveryDone.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.recoveryDone
              })
              break
            }
            case 11: {
              obj.recoveryFailed = RecoveryFailed.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.recoveryFailed
              })
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.kind`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield * Heartbeat.codec().stream(reader, reader.uint32(), `${prefix}.heartbeat`, {
                limits: opts.limits?.heartbeat
              })

              break
            }
            case 3: {
              yield * Assignment.codec().stream(reader, reader.uint32(), `${prefix}.assignment`, {
                limits: opts.limits?.assignment
              })

              break
            }
            case 4: {
              yield * Begin.codec().stream(reader, reader.uint32(), `${prefix}.begin`, {
                limits: opts.limits?.begin
              })

              break
            }
            case 5: {
              yield * Abort.codec().stream(reader, reader.uint32(), `${prefix}.abort`, {
                limits: opts.limits?.abort
              })

              break
            }
            case 6: {
              yield * Commit.codec().stream(reader, reader.uint32(), `${prefix}.commit`, {
                limits: opts.limits?.commit
              })

              break
            }
            case 7: {
              yield * Done.codec().stream(reader, reader.uint32(), `${prefix}.done`, {
                limits: opts.limits?.done
              })

              break
            }
            case 8: {
              yield * StreamBreak.codec().stream(reader, reader.uint32(), `${prefix}.streamBreak`, {
                limits: opts.limits?.streamBreak
              })

              break
            }
            case 9: {
              yield * RecoveryPlan.codec().stream(reader, reader.uint32(), `${prefix}.recoveryPlan`, {
                limits: opts.limits?.recoveryPlan
              })

              break
            }
            case 10: {
              yield * RecoveryDone.codec().stream(reader, reader.uint32(), `${prefix}.recoveryDone`, {
                limits: opts.limits?.recoveryDone
              })

              break
            }
            case 11: {
              yield * RecoveryFailed.codec().stream(reader, reader.uint32(), `${prefix}.recoveryFailed`, {
                limits: opts.limits?.recoveryFailed
              })

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface GossipEnvelopeKindFieldEvent {
    field: '$.kind'
    value: number
  }

  export interface GossipEnvelopeHeartbeatPeerIdFieldEvent {
    field: '$.heartbeat.peerId'
    value: string
  }

  export interface GossipEnvelopeHeartbeatRoleFieldEvent {
    field: '$.heartbeat.role'
    value: number
  }

  export interface GossipEnvelopeHeartbeatStageFieldEvent {
    field: '$.heartbeat.stage'
    value: number
  }

  export interface GossipEnvelopeHeartbeatIterationFieldEvent {
    field: '$.heartbeat.iteration'
    value: number
  }

  export interface GossipEnvelopeHeartbeatLossFieldEvent {
    field: '$.heartbeat.loss'
    value: number
  }

  export interface GossipEnvelopeHeartbeatGradNormFieldEvent {
    field: '$.heartbeat.gradNorm'
    value: number
  }

  export interface GossipEnvelopeHeartbeatWeightDigestFieldEvent {
    field: '$.heartbeat.weightDigest'
    value: string
  }

  export interface GossipEnvelopeHeartbeatTokensPerSecFieldEvent {
    field: '$.heartbeat.tokensPerSec'
    value: number
  }

  export interface GossipEnvelopeHeartbeatRssBytesFieldEvent {
    field: '$.heartbeat.rssBytes'
    value: number
  }

  export interface GossipEnvelopeHeartbeatEpochFieldEvent {
    field: '$.heartbeat.epoch'
    value: number
  }

  export interface GossipEnvelopeHeartbeatTimestampMsFieldEvent {
    field: '$.heartbeat.timestampMs'
    value: number
  }

  export interface GossipEnvelopeHeartbeatDepartingFieldEvent {
    field: '$.heartbeat.departing'
    value: boolean
  }

  export interface GossipEnvelopeHeartbeatStateIterationFieldEvent {
    field: '$.heartbeat.stateIteration'
    value: number
  }

  export interface GossipEnvelopeHeartbeatHeldKindFieldEvent {
    field: '$.heartbeat.held[].kind'
    value: number
    index: number
  }

  export interface GossipEnvelopeHeartbeatHeldStageFieldEvent {
    field: '$.heartbeat.held[].stage'
    value: number
    index: number
  }

  export interface GossipEnvelopeHeartbeatHeldIterationFieldEvent {
    field: '$.heartbeat.held[].iteration'
    value: number
    index: number
  }

  export interface GossipEnvelopeAssignmentClusterIdFieldEvent {
    field: '$.assignment.clusterId'
    value: string
  }

  export interface GossipEnvelopeAssignmentRunIdFieldEvent {
    field: '$.assignment.runId'
    value: string
  }

  export interface GossipEnvelopeAssignmentEpochFieldEvent {
    field: '$.assignment.epoch'
    value: number
  }

  export interface GossipEnvelopeAssignmentIterationFieldEvent {
    field: '$.assignment.iteration'
    value: number
  }

  export interface GossipEnvelopeAssignmentStagesStageFieldEvent {
    field: '$.assignment.stages[].stage'
    value: number
    index: number
  }

  export interface GossipEnvelopeAssignmentStagesPeersFieldEvent {
    field: '$.assignment.stages[].peers[]'
    index: number
    value: string
  }

  export interface GossipEnvelopeAssignmentStagesAddrsFieldEvent {
    field: '$.assignment.stages[].addrs[]'
    index: number
    value: string
  }

  export interface GossipEnvelopeAssignmentModelConfigFieldEvent {
    field: '$.assignment.modelConfig'
    value: string
  }

  export interface GossipEnvelopeAssignmentTrainingConfigFieldEvent {
    field: '$.assignment.trainingConfig'
    value: string
  }

  export interface GossipEnvelopeAssignmentRebuiltFieldEvent {
    field: '$.assignment.rebuilt[]'
    index: number
    value: number
  }

  export interface GossipEnvelopeAssignmentJoiningFieldEvent {
    field: '$.assignment.joining[]'
    index: number
    value: string
  }

  export interface GossipEnvelopeBeginEpochFieldEvent {
    field: '$.begin.epoch'
    value: number
  }

  export interface GossipEnvelopeBeginIterationFieldEvent {
    field: '$.begin.iteration'
    value: number
  }

  export interface GossipEnvelopeAbortEpochFieldEvent {
    field: '$.abort.epoch'
    value: number
  }

  export interface GossipEnvelopeAbortIterationFieldEvent {
    field: '$.abort.iteration'
    value: number
  }

  export interface GossipEnvelopeAbortReasonFieldEvent {
    field: '$.abort.reason'
    value: string
  }

  export interface GossipEnvelopeCommitEpochFieldEvent {
    field: '$.commit.epoch'
    value: number
  }

  export interface GossipEnvelopeCommitIterationFieldEvent {
    field: '$.commit.iteration'
    value: number
  }

  export interface GossipEnvelopeCommitCheckpointFieldEvent {
    field: '$.commit.checkpoint'
    value: number
  }

  export interface GossipEnvelopeCommitSkippedFieldEvent {
    field: '$.commit.skipped'
    value: boolean
  }

  export interface GossipEnvelopeCommitSnapshotFieldEvent {
    field: '$.commit.snapshot'
    value: boolean
  }

  export interface GossipEnvelopeDonePeerIdFieldEvent {
    field: '$.done.peerId'
    value: string
  }

  export interface GossipEnvelopeDoneStageFieldEvent {
    field: '$.done.stage'
    value: number
  }

  export interface GossipEnvelopeDoneEpochFieldEvent {
    field: '$.done.epoch'
    value: number
  }

  export interface GossipEnvelopeDoneIterationFieldEvent {
    field: '$.done.iteration'
    value: number
  }

  export interface GossipEnvelopeDoneLossFieldEvent {
    field: '$.done.loss'
    value: number
  }

  export interface GossipEnvelopeDoneGradNormFieldEvent {
    field: '$.done.gradNorm'
    value: number
  }

  export interface GossipEnvelopeDoneComputeMsFieldEvent {
    field: '$.done.computeMs'
    value: number
  }

  export interface GossipEnvelopeDoneNonFiniteFieldEvent {
    field: '$.done.nonFinite'
    value: boolean
  }

  export interface GossipEnvelopeDoneNonFiniteWhatFieldEvent {
    field: '$.done.nonFiniteWhat'
    value: string
  }

  export interface GossipEnvelopeDoneAllReduceMsFieldEvent {
    field: '$.done.allReduceMs'
    value: number
  }

  export interface GossipEnvelopeDoneWeightDigestFieldEvent {
    field: '$.done.weightDigest'
    value: string
  }

  export interface GossipEnvelopeStreamBreakReporterFieldEvent {
    field: '$.streamBreak.reporter'
    value: string
  }

  export interface GossipEnvelopeStreamBreakStageFieldEvent {
    field: '$.streamBreak.stage'
    value: number
  }

  export interface GossipEnvelopeStreamBreakSuspectFieldEvent {
    field: '$.streamBreak.suspect'
    value: string
  }

  export interface GossipEnvelopeStreamBreakEpochFieldEvent {
    field: '$.streamBreak.epoch'
    value: number
  }

  export interface GossipEnvelopeStreamBreakIterationFieldEvent {
    field: '$.streamBreak.iteration'
    value: number
  }

  export interface GossipEnvelopeStreamBreakReasonFieldEvent {
    field: '$.streamBreak.reason'
    value: string
  }

  export interface GossipEnvelopeRecoveryPlanEpochFieldEvent {
    field: '$.recoveryPlan.epoch'
    value: number
  }

  export interface GossipEnvelopeRecoveryPlanStageFieldEvent {
    field: '$.recoveryPlan.stage'
    value: number
  }

  export interface GossipEnvelopeRecoveryPlanRungFieldEvent {
    field: '$.recoveryPlan.rung'
    value: number
  }

  export interface GossipEnvelopeRecoveryPlanTargetPeerFieldEvent {
    field: '$.recoveryPlan.targetPeer'
    value: string
  }

  export interface GossipEnvelopeRecoveryPlanDonorsPeerIdFieldEvent {
    field: '$.recoveryPlan.donors[].peerId'
    value: string
    index: number
  }

  export interface GossipEnvelopeRecoveryPlanDonorsStageFieldEvent {
    field: '$.recoveryPlan.donors[].stage'
    value: number
    index: number
  }

  export interface GossipEnvelopeRecoveryPlanDonorsAddrFieldEvent {
    field: '$.recoveryPlan.donors[].addr'
    value: string
    index: number
  }

  export interface GossipEnvelopeRecoveryPlanLrScaleFieldEvent {
    field: '$.recoveryPlan.lrScale'
    value: number
  }

  export interface GossipEnvelopeRecoveryPlanWeightsFieldEvent {
    field: '$.recoveryPlan.weights[]'
    index: number
    value: number
  }

  export interface GossipEnvelopeRecoveryPlanCheckpointIdFieldEvent {
    field: '$.recoveryPlan.checkpointId'
    value: string
  }

  export interface GossipEnvelopeRecoveryDonePeerIdFieldEvent {
    field: '$.recoveryDone.peerId'
    value: string
  }

  export interface GossipEnvelopeRecoveryDoneEpochFieldEvent {
    field: '$.recoveryDone.epoch'
    value: number
  }

  export interface GossipEnvelopeRecoveryDoneStageFieldEvent {
    field: '$.recoveryDone.stage'
    value: number
  }

  export interface GossipEnvelopeRecoveryDoneRungFieldEvent {
    field: '$.recoveryDone.rung'
    value: number
  }

  export interface GossipEnvelopeRecoveryDoneBytesFieldEvent {
    field: '$.recoveryDone.bytes'
    value: number
  }

  export interface GossipEnvelopeRecoveryDoneTransferMsFieldEvent {
    field: '$.recoveryDone.transferMs'
    value: number
  }

  export interface GossipEnvelopeRecoveryDoneRebuildMsFieldEvent {
    field: '$.recoveryDone.rebuildMs'
    value: number
  }

  export interface GossipEnvelopeRecoveryFailedPeerIdFieldEvent {
    field: '$.recoveryFailed.peerId'
    value: string
  }

  export interface GossipEnvelopeRecoveryFailedEpochFieldEvent {
    field: '$.recoveryFailed.epoch'
    value: number
  }

  export interface GossipEnvelopeRecoveryFailedStageFieldEvent {
    field: '$.recoveryFailed.stage'
    value: number
  }

  export interface GossipEnvelopeRecoveryFailedRungFieldEvent {
    field: '$.recoveryFailed.rung'
    value: number
  }

  export interface GossipEnvelopeRecoveryFailedCodeFieldEvent {
    field: '$.recoveryFailed.code'
    value: string
  }

  export interface GossipEnvelopeRecoveryFailedReasonFieldEvent {
    field: '$.recoveryFailed.reason'
    value: string
  }

  export function encode (obj: Partial<GossipEnvelope>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, GossipEnvelope.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GossipEnvelope>): GossipEnvelope {
    return decodeMessage(buf, GossipEnvelope.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<GossipEnvelope>): Generator<GossipEnvelopeKindFieldEvent | GossipEnvelopeHeartbeatPeerIdFieldEvent | GossipEnvelopeHeartbeatRoleFieldEvent | GossipEnvelopeHeartbeatStageFieldEvent | GossipEnvelopeHeartbeatIterationFieldEvent | GossipEnvelopeHeartbeatLossFieldEvent | GossipEnvelopeHeartbeatGradNormFieldEvent | GossipEnvelopeHeartbeatWeightDigestFieldEvent | GossipEnvelopeHeartbeatTokensPerSecFieldEvent | GossipEnvelopeHeartbeatRssBytesFieldEvent | GossipEnvelopeHeartbeatEpochFieldEvent | GossipEnvelopeHeartbeatTimestampMsFieldEvent | GossipEnvelopeHeartbeatDepartingFieldEvent | GossipEnvelopeHeartbeatStateIterationFieldEvent | GossipEnvelopeHeartbeatHeldKindFieldEvent | GossipEnvelopeHeartbeatHeldStageFieldEvent | GossipEnvelopeHeartbeatHeldIterationFieldEvent | GossipEnvelopeAssignmentClusterIdFieldEvent | GossipEnvelopeAssignmentRunIdFieldEvent | GossipEnvelopeAssignmentEpochFieldEvent | GossipEnvelopeAssignmentIterationFieldEvent | GossipEnvelopeAssignmentStagesStageFieldEvent | GossipEnvelopeAssignmentStagesPeersFieldEvent | GossipEnvelopeAssignmentStagesAddrsFieldEvent | GossipEnvelopeAssignmentModelConfigFieldEvent | GossipEnvelopeAssignmentTrainingConfigFieldEvent | GossipEnvelopeAssignmentRebuiltFieldEvent | GossipEnvelopeAssignmentJoiningFieldEvent | GossipEnvelopeBeginEpochFieldEvent | GossipEnvelopeBeginIterationFieldEvent | GossipEnvelopeAbortEpochFieldEvent | GossipEnvelopeAbortIterationFieldEvent | GossipEnvelopeAbortReasonFieldEvent | GossipEnvelopeCommitEpochFieldEvent | GossipEnvelopeCommitIterationFieldEvent | GossipEnvelopeCommitCheckpointFieldEvent | GossipEnvelopeCommitSkippedFieldEvent | GossipEnvelopeCommitSnapshotFieldEvent | GossipEnvelopeDonePeerIdFieldEvent | GossipEnvelopeDoneStageFieldEvent | GossipEnvelopeDoneEpochFieldEvent | GossipEnvelopeDoneIterationFieldEvent | GossipEnvelopeDoneLossFieldEvent | GossipEnvelopeDoneGradNormFieldEvent | GossipEnvelopeDoneComputeMsFieldEvent | GossipEnvelopeDoneNonFiniteFieldEvent | GossipEnvelopeDoneNonFiniteWhatFieldEvent | GossipEnvelopeDoneAllReduceMsFieldEvent | GossipEnvelopeDoneWeightDigestFieldEvent | GossipEnvelopeStreamBreakReporterFieldEvent | GossipEnvelopeStreamBreakStageFieldEvent | GossipEnvelopeStreamBreakSuspectFieldEvent | GossipEnvelopeStreamBreakEpochFieldEvent | GossipEnvelopeStreamBreakIterationFieldEvent | GossipEnvelopeStreamBreakReasonFieldEvent | GossipEnvelopeRecoveryPlanEpochFieldEvent | GossipEnvelopeRecoveryPlanStageFieldEvent | GossipEnvelopeRecoveryPlanRungFieldEvent | GossipEnvelopeRecoveryPlanTargetPeerFieldEvent | GossipEnvelopeRecoveryPlanDonorsPeerIdFieldEvent | GossipEnvelopeRecoveryPlanDonorsStageFieldEvent | GossipEnvelopeRecoveryPlanDonorsAddrFieldEvent | GossipEnvelopeRecoveryPlanLrScaleFieldEvent | GossipEnvelopeRecoveryPlanWeightsFieldEvent | GossipEnvelopeRecoveryPlanCheckpointIdFieldEvent | GossipEnvelopeRecoveryDonePeerIdFieldEvent | GossipEnvelopeRecoveryDoneEpochFieldEvent | GossipEnvelopeRecoveryDoneStageFieldEvent | GossipEnvelopeRecoveryDoneRungFieldEvent | GossipEnvelopeRecoveryDoneBytesFieldEvent | GossipEnvelopeRecoveryDoneTransferMsFieldEvent | GossipEnvelopeRecoveryDoneRebuildMsFieldEvent | GossipEnvelopeRecoveryFailedPeerIdFieldEvent | GossipEnvelopeRecoveryFailedEpochFieldEvent | GossipEnvelopeRecoveryFailedStageFieldEvent | GossipEnvelopeRecoveryFailedRungFieldEvent | GossipEnvelopeRecoveryFailedCodeFieldEvent | GossipEnvelopeRecoveryFailedReasonFieldEvent> {
    return streamMessage(buf, GossipEnvelope.codec(), opts)
  }
}

export interface WeightsRequest {
  stage: number
  names: string[]
  includeOptimizer: boolean
  minIteration: number
}

export namespace WeightsRequest {
  let _codec: Codec<WeightsRequest>

  export const codec = (): Codec<WeightsRequest> => {
    if (_codec == null) {
      _codec = message<WeightsRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(8)
          w.uint32(obj.stage)
        }

        if (obj.names != null && obj.names.length > 0) {
          for (const value of obj.names) {
            w.uint32(26)
            w.string(value)
          }
        }

        if ((obj.includeOptimizer != null && obj.includeOptimizer !== false)) {
          w.uint32(32)
          w.bool(obj.includeOptimizer)
        }

        if ((obj.minIteration != null && obj.minIteration !== 0)) {
          w.uint32(40)
          w.sint32(obj.minIteration)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          stage: 0,
          names: [],
          includeOptimizer: false,
          minIteration: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.stage = reader.uint32()
              break
            }
            case 3: {
              if (opts.limits?.names != null && obj.names.length === opts.limits.names) {
                throw new MaxLengthError('Decode error - repeated field "names" had too many elements')
              }

              if (obj.names.length === 4096) {
                throw new MaxLengthError('Decode error - repeated field "names" had too many elements')
              }

              obj.names.push(reader.string())
              break
            }
            case 4: {
              obj.includeOptimizer = reader.bool()
              break
            }
            case 5: {
              obj.minIteration = reader.sint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          names: 4096
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              if (opts.limits?.names != null && obj.names === opts.limits.names) {
                throw new MaxLengthError('Streaming decode error - repeated field "names" had too many elements')
              }

              if (obj.names === 4096) {
                throw new MaxLengthError('Streaming decode error - repeated field "names" had too many elements')
              }

              yield {
                field: `${prefix}.names[]`,
                index: obj.names,
                value: reader.string()
              }

              obj.names++

              break
            }
            case 4: {
              yield {
                field: `${prefix}.includeOptimizer`,
                value: reader.bool()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.minIteration`,
                value: reader.sint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface WeightsRequestStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface WeightsRequestNamesFieldEvent {
    field: '$.names[]'
    index: number
    value: string
  }

  export interface WeightsRequestIncludeOptimizerFieldEvent {
    field: '$.includeOptimizer'
    value: boolean
  }

  export interface WeightsRequestMinIterationFieldEvent {
    field: '$.minIteration'
    value: number
  }

  export function encode (obj: Partial<WeightsRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, WeightsRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsRequest>): WeightsRequest {
    return decodeMessage(buf, WeightsRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsRequest>): Generator<WeightsRequestStageFieldEvent | WeightsRequestNamesFieldEvent | WeightsRequestIncludeOptimizerFieldEvent | WeightsRequestMinIterationFieldEvent> {
    return streamMessage(buf, WeightsRequest.codec(), opts)
  }
}

export interface TensorInfo {
  name: string
  dtype: number
  shape: number[]
  byteLength: number
  crc32: number
}

export namespace TensorInfo {
  let _codec: Codec<TensorInfo>

  export const codec = (): Codec<TensorInfo> => {
    if (_codec == null) {
      _codec = message<TensorInfo>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.name != null && obj.name !== '')) {
          w.uint32(10)
          w.string(obj.name)
        }

        if ((obj.dtype != null && obj.dtype !== 0)) {
          w.uint32(16)
          w.uint32(obj.dtype)
        }

        if (obj.shape != null && obj.shape.length > 0) {
          for (const value of obj.shape) {
            w.uint32(24)
            w.uint32(value)
          }
        }

        if ((obj.byteLength != null && obj.byteLength !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.byteLength)
        }

        if ((obj.crc32 != null && obj.crc32 !== 0)) {
          w.uint32(48)
          w.uint32(obj.crc32)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          name: '',
          dtype: 0,
          shape: [],
          byteLength: 0,
          crc32: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.name = reader.string()
              break
            }
            case 2: {
              obj.dtype = reader.uint32()
              break
            }
            case 3: {
              if (opts.limits?.shape != null && obj.shape.length === opts.limits.shape) {
                throw new MaxLengthError('Decode error - repeated field "shape" had too many elements')
              }

              if (obj.shape.length === 8) {
                throw new MaxLengthError('Decode error - repeated field "shape" had too many elements')
              }

              obj.shape.push(reader.uint32())
              break
            }
            case 4: {
              obj.byteLength = reader.uint64Number()
              break
            }
            case 6: {
              obj.crc32 = reader.uint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          shape: 8
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.name`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.dtype`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              if (opts.limits?.shape != null && obj.shape === opts.limits.shape) {
                throw new MaxLengthError('Streaming decode error - repeated field "shape" had too many elements')
              }

              if (obj.shape === 8) {
                throw new MaxLengthError('Streaming decode error - repeated field "shape" had too many elements')
              }

              yield {
                field: `${prefix}.shape[]`,
                index: obj.shape,
                value: reader.uint32()
              }

              obj.shape++

              break
            }
            case 4: {
              yield {
                field: `${prefix}.byteLength`,
                value: reader.uint64Number()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.crc32`,
                value: reader.uint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface TensorInfoNameFieldEvent {
    field: '$.name'
    value: string
  }

  export interface TensorInfoDtypeFieldEvent {
    field: '$.dtype'
    value: number
  }

  export interface TensorInfoShapeFieldEvent {
    field: '$.shape[]'
    index: number
    value: number
  }

  export interface TensorInfoByteLengthFieldEvent {
    field: '$.byteLength'
    value: number
  }

  export interface TensorInfoCrc32FieldEvent {
    field: '$.crc32'
    value: number
  }

  export function encode (obj: Partial<TensorInfo>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, TensorInfo.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TensorInfo>): TensorInfo {
    return decodeMessage(buf, TensorInfo.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TensorInfo>): Generator<TensorInfoNameFieldEvent | TensorInfoDtypeFieldEvent | TensorInfoShapeFieldEvent | TensorInfoByteLengthFieldEvent | TensorInfoCrc32FieldEvent> {
    return streamMessage(buf, TensorInfo.codec(), opts)
  }
}

export interface WeightsManifest {
  stage: number
  tensors: TensorInfo[]
  totalBytes: number
  iteration: number
}

export namespace WeightsManifest {
  let _codec: Codec<WeightsManifest>

  export const codec = (): Codec<WeightsManifest> => {
    if (_codec == null) {
      _codec = message<WeightsManifest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.stage != null && obj.stage !== 0)) {
          w.uint32(8)
          w.uint32(obj.stage)
        }

        if (obj.tensors != null && obj.tensors.length > 0) {
          for (const value of obj.tensors) {
            w.uint32(26)
            TensorInfo.codec().encode(value, w)
          }
        }

        if ((obj.totalBytes != null && obj.totalBytes !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.totalBytes)
        }

        if ((obj.iteration != null && obj.iteration !== 0)) {
          w.uint32(40)
          w.sint32(obj.iteration)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          stage: 0,
          tensors: [],
          totalBytes: 0,
          iteration: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.stage = reader.uint32()
              break
            }
            case 3: {
              if (opts.limits?.tensors != null && obj.tensors.length === opts.limits.tensors) {
                throw new MaxLengthError('Decode error - repeated field "tensors" had too many elements')
              }

              if (obj.tensors.length === 4096) {
                throw new MaxLengthError('Decode error - repeated field "tensors" had too many elements')
              }

              obj.tensors.push(TensorInfo.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.tensors$
              }))
              break
            }
            case 4: {
              obj.totalBytes = reader.uint64Number()
              break
            }
            case 5: {
              obj.iteration = reader.sint32()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          tensors: 4096
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.stage`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              if (opts.limits?.tensors != null && obj.tensors === opts.limits.tensors) {
                throw new MaxLengthError('Streaming decode error - repeated field "tensors" had too many elements')
              }

              if (obj.tensors === 4096) {
                throw new MaxLengthError('Streaming decode error - repeated field "tensors" had too many elements')
              }

              for (const evt of TensorInfo.codec().stream(reader, reader.uint32(), `${prefix}.tensors[]`, {
                limits: opts.limits?.tensors$
              })) {
                yield {
                  ...evt,
                  index: obj.tensors
                }
              }

              obj.tensors++

              break
            }
            case 4: {
              yield {
                field: `${prefix}.totalBytes`,
                value: reader.uint64Number()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.iteration`,
                value: reader.sint32()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface WeightsManifestStageFieldEvent {
    field: '$.stage'
    value: number
  }

  export interface WeightsManifestTensorsNameFieldEvent {
    field: '$.tensors[].name'
    value: string
    index: number
  }

  export interface WeightsManifestTensorsDtypeFieldEvent {
    field: '$.tensors[].dtype'
    value: number
    index: number
  }

  export interface WeightsManifestTensorsShapeFieldEvent {
    field: '$.tensors[].shape[]'
    index: number
    value: number
  }

  export interface WeightsManifestTensorsByteLengthFieldEvent {
    field: '$.tensors[].byteLength'
    value: number
    index: number
  }

  export interface WeightsManifestTensorsCrc32FieldEvent {
    field: '$.tensors[].crc32'
    value: number
    index: number
  }

  export interface WeightsManifestTotalBytesFieldEvent {
    field: '$.totalBytes'
    value: number
  }

  export interface WeightsManifestIterationFieldEvent {
    field: '$.iteration'
    value: number
  }

  export function encode (obj: Partial<WeightsManifest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, WeightsManifest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsManifest>): WeightsManifest {
    return decodeMessage(buf, WeightsManifest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsManifest>): Generator<WeightsManifestStageFieldEvent | WeightsManifestTensorsNameFieldEvent | WeightsManifestTensorsDtypeFieldEvent | WeightsManifestTensorsShapeFieldEvent | WeightsManifestTensorsByteLengthFieldEvent | WeightsManifestTensorsCrc32FieldEvent | WeightsManifestTotalBytesFieldEvent | WeightsManifestIterationFieldEvent> {
    return streamMessage(buf, WeightsManifest.codec(), opts)
  }
}

export interface WeightsChunk {
  index: number
  offset: number
  data: Uint8Array<ArrayBuffer>
}

export namespace WeightsChunk {
  let _codec: Codec<WeightsChunk>

  export const codec = (): Codec<WeightsChunk> => {
    if (_codec == null) {
      _codec = message<WeightsChunk>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(8)
          w.uint32(obj.index)
        }

        if ((obj.offset != null && obj.offset !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.offset)
        }

        if ((obj.data != null && obj.data.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.data)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          index: 0,
          offset: 0,
          data: uint8ArrayAlloc(0)
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.index = reader.uint32()
              break
            }
            case 2: {
              obj.offset = reader.uint64Number()
              break
            }
            case 3: {
              obj.data = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.offset`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.data`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface WeightsChunkIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface WeightsChunkOffsetFieldEvent {
    field: '$.offset'
    value: number
  }

  export interface WeightsChunkDataFieldEvent {
    field: '$.data'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<WeightsChunk>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, WeightsChunk.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsChunk>): WeightsChunk {
    return decodeMessage(buf, WeightsChunk.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsChunk>): Generator<WeightsChunkIndexFieldEvent | WeightsChunkOffsetFieldEvent | WeightsChunkDataFieldEvent> {
    return streamMessage(buf, WeightsChunk.codec(), opts)
  }
}

export interface WeightsEnd {
  totalBytes: number
}

export namespace WeightsEnd {
  let _codec: Codec<WeightsEnd>

  export const codec = (): Codec<WeightsEnd> => {
    if (_codec == null) {
      _codec = message<WeightsEnd>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.totalBytes != null && obj.totalBytes !== 0)) {
          w.uint32(8)
          w.uint64Number(obj.totalBytes)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          totalBytes: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.totalBytes = reader.uint64Number()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.totalBytes`,
                value: reader.uint64Number()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface WeightsEndTotalBytesFieldEvent {
    field: '$.totalBytes'
    value: number
  }

  export function encode (obj: Partial<WeightsEnd>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, WeightsEnd.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsEnd>): WeightsEnd {
    return decodeMessage(buf, WeightsEnd.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsEnd>): Generator<WeightsEndTotalBytesFieldEvent> {
    return streamMessage(buf, WeightsEnd.codec(), opts)
  }
}

export interface WeightsError {
  code: string
  message: string
}

export namespace WeightsError {
  let _codec: Codec<WeightsError>

  export const codec = (): Codec<WeightsError> => {
    if (_codec == null) {
      _codec = message<WeightsError>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.code != null && obj.code !== '')) {
          w.uint32(10)
          w.string(obj.code)
        }

        if ((obj.message != null && obj.message !== '')) {
          w.uint32(18)
          w.string(obj.message)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          code: '',
          message: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.code = reader.string()
              break
            }
            case 2: {
              obj.message = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.code`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.message`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface WeightsErrorCodeFieldEvent {
    field: '$.code'
    value: string
  }

  export interface WeightsErrorMessageFieldEvent {
    field: '$.message'
    value: string
  }

  export function encode (obj: Partial<WeightsError>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, WeightsError.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsError>): WeightsError {
    return decodeMessage(buf, WeightsError.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsError>): Generator<WeightsErrorCodeFieldEvent | WeightsErrorMessageFieldEvent> {
    return streamMessage(buf, WeightsError.codec(), opts)
  }
}

export interface WeightsEnvelope {
  kind: number
  request?: WeightsRequest
  manifest?: WeightsManifest
  chunk?: WeightsChunk
  end?: WeightsEnd
  error?: WeightsError
}

export namespace WeightsEnvelope {
  let _codec: Codec<WeightsEnvelope>

  export const codec = (): Codec<WeightsEnvelope> => {
    if (_codec == null) {
      _codec = message<WeightsEnvelope>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.kind != null && obj.kind !== 0)) {
          w.uint32(8)
          w.uint32(obj.kind)
        }

        if (obj.request != null) {
          w.uint32(18)
          WeightsRequest.codec().encode(obj.request, w)
        }

        if (obj.manifest != null) {
          w.uint32(26)
          WeightsManifest.codec().encode(obj.manifest, w)
        }

        if (obj.chunk != null) {
          w.uint32(34)
          WeightsChunk.codec().encode(obj.chunk, w)
        }

        if (obj.end != null) {
          w.uint32(42)
          WeightsEnd.codec().encode(obj.end, w)
        }

        if (obj.error != null) {
          w.uint32(50)
          WeightsError.codec().encode(obj.error, w)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          kind: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.kind = reader.uint32()
              break
            }
            case 2: {
              obj.request = WeightsRequest.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.request
              })
              break
            }
            case 3: {
              obj.manifest = WeightsManifest.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.manifest
              })
              break
            }
            case 4: {
              obj.chunk = WeightsChunk.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.chunk
              })
              break
            }
            case 5: {
              obj.end = WeightsEnd.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.end
              })
              break
            }
            case 6: {
              obj.error = WeightsError.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.error
              })
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.kind`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield * WeightsRequest.codec().stream(reader, reader.uint32(), `${prefix}.request`, {
                limits: opts.limits?.request
              })

              break
            }
            case 3: {
              yield * WeightsManifest.codec().stream(reader, reader.uint32(), `${prefix}.manifest`, {
                limits: opts.limits?.manifest
              })

              break
            }
            case 4: {
              yield * WeightsChunk.codec().stream(reader, reader.uint32(), `${prefix}.chunk`, {
                limits: opts.limits?.chunk
              })

              break
            }
            case 5: {
              yield * WeightsEnd.codec().stream(reader, reader.uint32(), `${prefix}.end`, {
                limits: opts.limits?.end
              })

              break
            }
            case 6: {
              yield * WeightsError.codec().stream(reader, reader.uint32(), `${prefix}.error`, {
                limits: opts.limits?.error
              })

              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface WeightsEnvelopeKindFieldEvent {
    field: '$.kind'
    value: number
  }

  export interface WeightsEnvelopeRequestStageFieldEvent {
    field: '$.request.stage'
    value: number
  }

  export interface WeightsEnvelopeRequestNamesFieldEvent {
    field: '$.request.names[]'
    index: number
    value: string
  }

  export interface WeightsEnvelopeRequestIncludeOptimizerFieldEvent {
    field: '$.request.includeOptimizer'
    value: boolean
  }

  export interface WeightsEnvelopeRequestMinIterationFieldEvent {
    field: '$.request.minIteration'
    value: number
  }

  export interface WeightsEnvelopeManifestStageFieldEvent {
    field: '$.manifest.stage'
    value: number
  }

  export interface WeightsEnvelopeManifestTensorsNameFieldEvent {
    field: '$.manifest.tensors[].name'
    value: string
    index: number
  }

  export interface WeightsEnvelopeManifestTensorsDtypeFieldEvent {
    field: '$.manifest.tensors[].dtype'
    value: number
    index: number
  }

  export interface WeightsEnvelopeManifestTensorsShapeFieldEvent {
    field: '$.manifest.tensors[].shape[]'
    index: number
    value: number
  }

  export interface WeightsEnvelopeManifestTensorsByteLengthFieldEvent {
    field: '$.manifest.tensors[].byteLength'
    value: number
    index: number
  }

  export interface WeightsEnvelopeManifestTensorsCrc32FieldEvent {
    field: '$.manifest.tensors[].crc32'
    value: number
    index: number
  }

  export interface WeightsEnvelopeManifestTotalBytesFieldEvent {
    field: '$.manifest.totalBytes'
    value: number
  }

  export interface WeightsEnvelopeManifestIterationFieldEvent {
    field: '$.manifest.iteration'
    value: number
  }

  export interface WeightsEnvelopeChunkIndexFieldEvent {
    field: '$.chunk.index'
    value: number
  }

  export interface WeightsEnvelopeChunkOffsetFieldEvent {
    field: '$.chunk.offset'
    value: number
  }

  export interface WeightsEnvelopeChunkDataFieldEvent {
    field: '$.chunk.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface WeightsEnvelopeEndTotalBytesFieldEvent {
    field: '$.end.totalBytes'
    value: number
  }

  export interface WeightsEnvelopeErrorCodeFieldEvent {
    field: '$.error.code'
    value: string
  }

  export interface WeightsEnvelopeErrorMessageFieldEvent {
    field: '$.error.message'
    value: string
  }

  export function encode (obj: Partial<WeightsEnvelope>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, WeightsEnvelope.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsEnvelope>): WeightsEnvelope {
    return decodeMessage(buf, WeightsEnvelope.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<WeightsEnvelope>): Generator<WeightsEnvelopeKindFieldEvent | WeightsEnvelopeRequestStageFieldEvent | WeightsEnvelopeRequestNamesFieldEvent | WeightsEnvelopeRequestIncludeOptimizerFieldEvent | WeightsEnvelopeRequestMinIterationFieldEvent | WeightsEnvelopeManifestStageFieldEvent | WeightsEnvelopeManifestTensorsNameFieldEvent | WeightsEnvelopeManifestTensorsDtypeFieldEvent | WeightsEnvelopeManifestTensorsShapeFieldEvent | WeightsEnvelopeManifestTensorsByteLengthFieldEvent | WeightsEnvelopeManifestTensorsCrc32FieldEvent | WeightsEnvelopeManifestTotalBytesFieldEvent | WeightsEnvelopeManifestIterationFieldEvent | WeightsEnvelopeChunkIndexFieldEvent | WeightsEnvelopeChunkOffsetFieldEvent | WeightsEnvelopeChunkDataFieldEvent | WeightsEnvelopeEndTotalBytesFieldEvent | WeightsEnvelopeErrorCodeFieldEvent | WeightsEnvelopeErrorMessageFieldEvent> {
    return streamMessage(buf, WeightsEnvelope.codec(), opts)
  }
}

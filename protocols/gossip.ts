/**
 * Codec for the gossip topics. One protobuf envelope carries every kind; `kind` says which body is
 * set and exactly that one must be. Decoding: size check, parse, map numeric codes to names, then
 * validate every field. Encoding validates first, so a bad message fails at the sender.
 *
 * Topics: the heartbeat topic carries only heartbeats. The control topic carries the coordinator's
 * messages (COORDINATOR_KINDS; peers accept them only when signed by the pinned coordinator) and the
 * peers' reports to the coordinator (PEER_REPORT_KINDS).
 */
import type { Uint8ArrayList } from 'uint8arraylist'
import { MAX_GOSSIP_MESSAGE_BYTES } from './constants.js'
import { FrameTooLargeError, MalformedMessageError, UnknownKindError } from './errors.js'
import * as pb from './messages.js'
import { checkFrameSize, decodeProtobuf } from './pb-util.js'
import type { HeldCopyKind, Message, MessageKind, RecoveryRung, Role } from './types.js'
import { validateMessage } from './validate.js'

export const MESSAGE_KINDS: readonly MessageKind[] = [
  'heartbeat', 'assignment', 'begin', 'abort', 'commit', 'done', 'stream-break', 'recovery-plan', 'recovery-done', 'recovery-failed'
]
export const HEARTBEAT_TOPIC_KINDS: ReadonlySet<MessageKind> = new Set(['heartbeat'])
export const COORDINATOR_KINDS: ReadonlySet<MessageKind> = new Set(['assignment', 'begin', 'abort', 'commit', 'recovery-plan'])
export const PEER_REPORT_KINDS: ReadonlySet<MessageKind> = new Set(['done', 'stream-break', 'recovery-done', 'recovery-failed'])
export const CONTROL_TOPIC_KINDS: ReadonlySet<MessageKind> = new Set([...COORDINATOR_KINDS, ...PEER_REPORT_KINDS])

// Wire codes. Never renumber; 0 is "unset" and always rejected.
const KIND_CODE: Record<MessageKind, number> = {
  heartbeat: 1, assignment: 2, begin: 3, abort: 4, commit: 5, done: 6, 'stream-break': 7, 'recovery-plan': 8, 'recovery-done': 9, 'recovery-failed': 10
}
const ROLE_CODE: Record<Role, number> = { stage: 1, spare: 2, coordinator: 3, observer: 4 }
const RUNG_CODE: Record<RecoveryRung, number> = {
  handover: 1, replica: 2, checkfree: 3, 'checkfree-plus': 4, checkpoint: 5, wait: 6, rejoin: 7, survivors: 8
}
const HELD_KIND_CODE: Record<HeldCopyKind, number> = { mirror: 1, shadow: 2, checkpoint: 3 }

type Body = Exclude<keyof pb.GossipEnvelope, 'kind'>
const BODY: Record<MessageKind, Body> = {
  heartbeat: 'heartbeat',
  assignment: 'assignment',
  begin: 'begin',
  abort: 'abort',
  commit: 'commit',
  done: 'done',
  'stream-break': 'streamBreak',
  'recovery-plan': 'recoveryPlan',
  'recovery-done': 'recoveryDone',
  'recovery-failed': 'recoveryFailed'
}
const BODIES = Object.values(BODY)

function invert<K extends string> (table: Record<K, number>): Map<number, K> {
  return new Map(Object.entries(table).map(([k, v]) => [v as number, k as K]))
}
const KIND_BY_CODE = invert(KIND_CODE)
const ROLE_BY_CODE = invert(ROLE_CODE)
const RUNG_BY_CODE = invert(RUNG_CODE)
const HELD_KIND_BY_CODE = invert(HELD_KIND_CODE)

function lookup<K> (table: Map<number, K>, code: number, field: string): K {
  const v = table.get(code)
  if (v === undefined) throw new MalformedMessageError(`${field}: unknown code ${code}`, { field })
  return v
}

function toWire (m: Message): pb.GossipEnvelope {
  const env: pb.GossipEnvelope = { kind: KIND_CODE[m.kind] }
  switch (m.kind) {
    case 'heartbeat':
      env.heartbeat = {
        peerId: m.peerId,
        role: ROLE_CODE[m.role],
        stage: m.stage,
        iteration: m.iteration,
        loss: m.loss,
        gradNorm: m.gradNorm,
        weightDigest: m.weightDigest,
        tokensPerSec: m.tokensPerSec,
        rssBytes: m.rssBytes,
        epoch: m.epoch,
        timestampMs: m.timestampMs,
        departing: m.departing,
        stateIteration: m.stateIteration,
        held: m.held.map(h => ({ kind: HELD_KIND_CODE[h.kind], stage: h.stage, iteration: h.iteration }))
      }
      break
    case 'assignment':
      env.assignment = {
        clusterId: m.clusterId,
        runId: m.runId,
        epoch: m.epoch,
        iteration: m.iteration,
        stages: m.stages.map(s => ({ stage: s.stage, peers: [...s.peers], addrs: [...s.addrs] })),
        modelConfig: m.modelConfig,
        trainingConfig: m.trainingConfig,
        rebuilt: [...m.rebuilt],
        joining: [...m.joining ?? []]
      }
      break
    case 'begin':
      env.begin = { epoch: m.epoch, iteration: m.iteration }
      break
    case 'abort':
      env.abort = { epoch: m.epoch, iteration: m.iteration, reason: m.reason }
      break
    case 'commit':
      env.commit = { epoch: m.epoch, iteration: m.iteration, checkpoint: m.checkpoint, skipped: m.skipped === true, snapshot: m.snapshot === true }
      break
    case 'done':
      env.done = {
        peerId: m.peerId,
        stage: m.stage,
        epoch: m.epoch,
        iteration: m.iteration,
        loss: m.loss,
        gradNorm: m.gradNorm,
        computeMs: m.computeMs,
        nonFinite: m.nonFinite === true,
        nonFiniteWhat: m.nonFiniteWhat ?? '',
        allReduceMs: m.allReduceMs,
        weightDigest: m.weightDigest ?? ''
      }
      break
    case 'stream-break':
      env.streamBreak = {
        reporter: m.reporter,
        stage: m.stage,
        suspect: m.suspect,
        epoch: m.epoch,
        iteration: m.iteration,
        reason: m.reason
      }
      break
    case 'recovery-done':
      env.recoveryDone = {
        peerId: m.peerId,
        epoch: m.epoch,
        stage: m.stage,
        rung: RUNG_CODE[m.rung],
        bytes: m.bytes,
        transferMs: m.transferMs,
        rebuildMs: m.rebuildMs
      }
      break
    case 'recovery-failed':
      env.recoveryFailed = { peerId: m.peerId, epoch: m.epoch, stage: m.stage, rung: RUNG_CODE[m.rung], code: m.code, reason: m.reason }
      break
    case 'recovery-plan':
      env.recoveryPlan = {
        epoch: m.epoch,
        stage: m.stage,
        rung: RUNG_CODE[m.rung],
        targetPeer: m.targetPeer,
        donors: m.donors.map(d => ({ peerId: d.peerId, stage: d.stage, addr: d.addr ?? '' })),
        lrScale: m.lrScale,
        weights: [...m.weights],
        checkpointId: m.checkpointId
      }
      break
  }
  return env
}

function withLoss<T extends object> (obj: T, loss: number | undefined): T & { loss?: number } {
  return loss === undefined ? obj : { ...obj, loss }
}

/** Maps a parsed envelope to the public shape; field values are validated afterwards. */
function fromWire (env: pb.GossipEnvelope): Message {
  const kind = KIND_BY_CODE.get(env.kind)
  if (kind === undefined) {
    throw new UnknownKindError(`message.kind: unknown kind code ${env.kind}`, { field: 'message.kind' })
  }
  const body = BODY[kind]
  for (const other of BODIES) {
    if (other !== body && env[other] !== undefined) {
      throw new MalformedMessageError(`message: kind "${kind}" but a ${other} body is also set`, { field: `message.${other}` })
    }
  }
  const missing = (): never => {
    throw new MalformedMessageError(`message: kind "${kind}" without its ${body} body`, { field: `message.${body}` })
  }
  switch (kind) {
    case 'heartbeat': {
      const b = env.heartbeat ?? missing()
      return withLoss({
        kind,
        peerId: b.peerId,
        role: lookup(ROLE_BY_CODE, b.role, 'heartbeat.role'),
        stage: b.stage,
        iteration: b.iteration,
        gradNorm: b.gradNorm,
        weightDigest: b.weightDigest,
        tokensPerSec: b.tokensPerSec,
        rssBytes: b.rssBytes,
        epoch: b.epoch,
        timestampMs: b.timestampMs,
        departing: b.departing,
        stateIteration: b.stateIteration,
        held: b.held.map((h, i) => ({ kind: lookup(HELD_KIND_BY_CODE, h.kind, `heartbeat.held[${i}].kind`), stage: h.stage, iteration: h.iteration }))
      }, b.loss)
    }
    case 'assignment': {
      const b = env.assignment ?? missing()
      return {
        kind,
        clusterId: b.clusterId,
        runId: b.runId,
        epoch: b.epoch,
        iteration: b.iteration,
        stages: b.stages.map(s => ({ stage: s.stage, peers: s.peers, addrs: s.addrs })),
        modelConfig: b.modelConfig,
        trainingConfig: b.trainingConfig,
        rebuilt: b.rebuilt,
        ...(b.joining.length > 0 ? { joining: b.joining } : {})
      }
    }
    case 'begin': {
      const b = env.begin ?? missing()
      return { kind, epoch: b.epoch, iteration: b.iteration }
    }
    case 'abort': {
      const b = env.abort ?? missing()
      return { kind, epoch: b.epoch, iteration: b.iteration, reason: b.reason }
    }
    case 'commit': {
      const b = env.commit ?? missing()
      return {
        kind,
        epoch: b.epoch,
        iteration: b.iteration,
        ...(b.checkpoint != null ? { checkpoint: b.checkpoint } : {}),
        ...(b.skipped ? { skipped: true } : {}),
        ...(b.snapshot ? { snapshot: true } : {})
      }
    }
    case 'done': {
      const b = env.done ?? missing()
      return withLoss({
        kind,
        peerId: b.peerId,
        stage: b.stage,
        epoch: b.epoch,
        iteration: b.iteration,
        gradNorm: b.gradNorm,
        computeMs: b.computeMs,
        ...(b.nonFinite || b.nonFiniteWhat !== '' ? { nonFinite: b.nonFinite, nonFiniteWhat: b.nonFiniteWhat } : {}),
        ...(b.allReduceMs != null ? { allReduceMs: b.allReduceMs } : {}),
        ...(b.weightDigest !== '' ? { weightDigest: b.weightDigest } : {})
      }, b.loss)
    }
    case 'stream-break': {
      const b = env.streamBreak ?? missing()
      return {
        kind,
        reporter: b.reporter,
        stage: b.stage,
        suspect: b.suspect,
        epoch: b.epoch,
        iteration: b.iteration,
        reason: b.reason
      }
    }
    case 'recovery-done': {
      const b = env.recoveryDone ?? missing()
      return {
        kind,
        peerId: b.peerId,
        epoch: b.epoch,
        stage: b.stage,
        rung: lookup(RUNG_BY_CODE, b.rung, 'recovery-done.rung'),
        bytes: b.bytes,
        transferMs: b.transferMs,
        rebuildMs: b.rebuildMs
      }
    }
    case 'recovery-failed': {
      const b = env.recoveryFailed ?? missing()
      return { kind, peerId: b.peerId, epoch: b.epoch, stage: b.stage, rung: lookup(RUNG_BY_CODE, b.rung, 'recovery-failed.rung'), code: b.code, reason: b.reason }
    }
    case 'recovery-plan': {
      const b = env.recoveryPlan ?? missing()
      return {
        kind,
        epoch: b.epoch,
        stage: b.stage,
        rung: lookup(RUNG_BY_CODE, b.rung, 'recovery-plan.rung'),
        targetPeer: b.targetPeer,
        donors: b.donors.map(d => ({ peerId: d.peerId, stage: d.stage, ...(d.addr !== '' ? { addr: d.addr } : {}) })),
        lrScale: b.lrScale,
        weights: b.weights,
        checkpointId: b.checkpointId
      }
    }
  }
}

export interface MessageDecodeOptions {
  /** Reject larger input before parsing. Default MAX_GOSSIP_MESSAGE_BYTES; cannot be raised above it. */
  maxBytes?: number
}

/** Validates and encodes a gossip message. Throws a ProtocolError if any field is out of bounds. */
export function encodeMessage (msg: Message): Uint8Array {
  const bytes = pb.GossipEnvelope.encode(toWire(validateMessage(msg)))
  if (bytes.byteLength > MAX_GOSSIP_MESSAGE_BYTES) {
    throw new FrameTooLargeError(`message: ${msg.kind} encodes to ${bytes.byteLength} bytes, limit ${MAX_GOSSIP_MESSAGE_BYTES}`)
  }
  return bytes
}

/** Decodes and validates a gossip message; throws a ProtocolError on anything out of bounds. */
export function decodeMessage (bytes: Uint8Array | Uint8ArrayList, options: MessageDecodeOptions = {}): Message {
  const max = Math.min(options.maxBytes ?? MAX_GOSSIP_MESSAGE_BYTES, MAX_GOSSIP_MESSAGE_BYTES)
  checkFrameSize(bytes, 'message', max)
  const env = decodeProtobuf(() => pb.GossipEnvelope.decode(bytes), 'message')
  return validateMessage(fromWire(env))
}

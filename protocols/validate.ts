/**
 * Field-by-field validation of every wire message. Runs after decoding (the protobuf decoder only
 * parses) and before encoding (so a bug shows up at the sender). Takes `unknown`, so it also guards
 * values that came from anywhere else. Throws typed errors naming the field.
 */
import {
  MAX_CONFIG_JSON_BYTES, MAX_DIGEST_LENGTH, MAX_ERROR_CODE_LENGTH, MAX_ID_LENGTH, MAX_LR_SCALE,
  MAX_ADDR_LENGTH, MAX_HELD_COPIES, MAX_PEERS_PER_STAGE, MAX_PEER_ID_LENGTH, MAX_NON_FINITE_WHAT_LENGTH, MAX_REASON_LENGTH, MAX_RECOVERY_DONORS, MAX_STAGES,
  MAX_TENSOR_DIMS, MAX_TENSOR_NAME_LENGTH, MAX_WEIGHTS_CHUNK_BYTES, MAX_WEIGHTS_TENSORS,
  MAX_WEIGHTS_TOTAL_BYTES, MAX_WEIGHT_TENSOR_BYTES, ID_PATTERN, PEER_ID_PATTERN, TENSOR_NAME_PATTERN
} from './constants.js'
import {
  BadDTypeError, BadShapeError, LimitExceededError, MalformedMessageError, NonFiniteTensorError,
  UnknownKindError
} from './errors.js'
import type {
  Abort, Assignment, Begin, Commit, DoneReport, DType, HeldCopyKind, Heartbeat, Message, RecoveryPlan, RecoveryRung,
  Role, RecoveryDone, RecoveryFailed, StreamBreakReport, TensorInfo, WeightsManifest, WeightsMessage
} from './types.js'

export const ROLES: readonly Role[] = ['stage', 'spare', 'coordinator', 'observer']
export const HELD_COPY_KINDS: readonly HeldCopyKind[] = ['mirror', 'shadow', 'checkpoint']
export const RECOVERY_RUNGS: readonly RecoveryRung[] = ['handover', 'replica', 'checkfree', 'checkfree-plus', 'checkpoint', 'wait', 'rejoin', 'survivors']
export const DTYPES: readonly DType[] = ['float32', 'int32']
/** Both dtypes are 4 bytes per element. */
export const BYTES_PER_ELEMENT = 4

const U32_MAX = 0xffffffff
const TOKEN_PATTERN = /^[\x21-\x7e]*$/
const ERROR_CODE_PATTERN = /^[A-Z0-9_]+$/

// ---------------------------------------------------------------- primitives

/** A short description of a bad value for an error message (never dumps a huge string). */
function describe (v: unknown): string {
  if (typeof v === 'string') return v.length > 32 ? `a string of length ${v.length}` : JSON.stringify(v)
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v)
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  return typeof v
}

function fail (field: string, problem: string): never {
  throw new MalformedMessageError(`${field}: ${problem}`, { field })
}

export function checkObject (v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(field, `expected an object, got ${describe(v)}`)
  return v as Record<string, unknown>
}

export function checkInt (v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(field, `expected an integer, got ${describe(v)}`)
  if (v < min || v > max) fail(field, `${v} is outside [${min}, ${max}]`)
  return v
}

export function checkUint32 (v: unknown, field: string): number {
  return checkInt(v, field, 0, U32_MAX)
}

/** A committed iteration a state belongs to: -1 (the seeded initial weights) or more, a sint32 on the wire. */
export function checkStateIteration (v: unknown, field: string): number {
  return checkInt(v, field, -1, 0x7fffffff)
}

/** A non-negative integer that a double represents exactly (byte counts, timestamps). */
export function checkSafeUint (v: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  return checkInt(v, field, 0, max)
}

export function checkFinite (v: unknown, field: string, min = -Infinity, max = Infinity): number {
  if (typeof v !== 'number') fail(field, `expected a number, got ${describe(v)}`)
  if (!Number.isFinite(v)) fail(field, `must be finite, got ${v}`)
  if (v < min || v > max) fail(field, `${v} is outside [${min}, ${max}]`)
  return v
}

export function checkBool (v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') fail(field, `expected a boolean, got ${describe(v)}`)
  return v
}

export interface StringRule {
  max: number
  min?: number
  pattern?: RegExp
  /** Human description of `pattern` for the error message. */
  alphabet?: string
}

export function checkString (v: unknown, field: string, rule: StringRule): string {
  if (typeof v !== 'string') fail(field, `expected a string, got ${describe(v)}`)
  if (v.length > rule.max) {
    throw new LimitExceededError(`${field}: ${v.length} characters, limit ${rule.max}`, { field })
  }
  const min = rule.min ?? 0
  if (v.length < min) fail(field, min === 1 ? 'must not be empty' : `needs at least ${min} characters`)
  if (rule.pattern !== undefined && v.length > 0 && !rule.pattern.test(v)) {
    fail(field, `has characters outside ${rule.alphabet ?? String(rule.pattern)}`)
  }
  return v
}

export function checkList (v: unknown, field: string, max: number, min = 0): unknown[] {
  if (!Array.isArray(v)) fail(field, `expected a list, got ${describe(v)}`)
  if (v.length > max) throw new LimitExceededError(`${field}: ${v.length} entries, limit ${max}`, { field })
  if (v.length < min) fail(field, `needs at least ${min} entries, got ${v.length}`)
  return v
}

export function checkId (v: unknown, field: string): string {
  return checkString(v, field, { max: MAX_ID_LENGTH, min: 1, pattern: ID_PATTERN, alphabet: '[A-Za-z0-9._-]' })
}

export function checkPeerId (v: unknown, field: string): string {
  return checkString(v, field, { max: MAX_PEER_ID_LENGTH, min: 1, pattern: PEER_ID_PATTERN, alphabet: '[A-Za-z0-9]' })
}

function checkReason (v: unknown, field: string): string {
  return checkString(v, field, { max: MAX_REASON_LENGTH })
}

function checkStage (v: unknown, field: string): number {
  return checkInt(v, field, 0, MAX_STAGES - 1)
}

/** A JSON object in a string, bounded in UTF-8 bytes. */
export function checkJsonObject (v: unknown, field: string, maxBytes = MAX_CONFIG_JSON_BYTES): string {
  if (typeof v !== 'string') fail(field, `expected a JSON string, got ${describe(v)}`)
  const bytes = Buffer.byteLength(v, 'utf8')
  if (bytes > maxBytes) throw new LimitExceededError(`${field}: ${bytes} bytes of JSON, limit ${maxBytes}`, { field })
  let parsed: unknown
  try {
    parsed = JSON.parse(v)
  } catch (err) {
    throw new MalformedMessageError(`${field}: not valid JSON (${(err as Error).message})`, { field, cause: err })
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) fail(field, 'JSON must be an object')
  return v
}

// ---------------------------------------------------------------- tensors

export function checkDType (v: unknown, field: string): DType {
  if (!DTYPES.includes(v as DType)) {
    throw new BadDTypeError(`${field}: unknown dtype ${describe(v)} (expected ${DTYPES.join(' or ')})`, { field })
  }
  return v as DType
}

/**
 * Checks a shape (rank minRank..MAX_TENSOR_DIMS, every dim an integer >= 1 that fits a u32) and that
 * it needs at most maxBytes of data. Returns the element count.
 */
export function checkShape (v: unknown, field: string, maxBytes: number, minRank = 0): number {
  if (!Array.isArray(v)) throw new BadShapeError(`${field}: expected a list of dims, got ${describe(v)}`, { field })
  if (v.length > MAX_TENSOR_DIMS) {
    throw new LimitExceededError(`${field}: rank ${v.length}, limit ${MAX_TENSOR_DIMS}`, { field })
  }
  if (v.length < minRank) throw new BadShapeError(`${field}: rank ${v.length}, need at least ${minRank}`, { field })
  let elements = 1
  for (let i = 0; i < v.length; i++) {
    const d: unknown = v[i]
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 1 || d > U32_MAX) {
      throw new BadShapeError(`${field}[${i}]: dim must be an integer in [1, ${U32_MAX}], got ${describe(d)}`, { field: `${field}[${i}]` })
    }
    elements *= d
    // Stop early: the product of eight u32s would not stay exact.
    if (elements * BYTES_PER_ELEMENT > maxBytes) {
      throw new BadShapeError(`${field}: shape [${v.join(', ')}] needs more than the ${maxBytes}-byte limit`, { field })
    }
  }
  return elements
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** Index of the first NaN/Inf in little-endian float32 bytes, or -1. Handles unaligned views. */
export function firstNonFinite (bytes: Uint8Array): number {
  const n = bytes.byteLength >>> 2
  // Exponent bits all ones means Inf or NaN.
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
    const u = new Uint32Array(bytes.buffer, bytes.byteOffset, n)
    for (let i = 0; i < n; i++) if ((u[i] & 0x7f800000) === 0x7f800000) return i
    return -1
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, n * 4)
  for (let i = 0; i < n; i++) if ((view.getUint32(i * 4, true) & 0x7f800000) === 0x7f800000) return i
  return -1
}

export function checkFiniteBytes (bytes: Uint8Array, field: string, elementOffset = 0): void {
  const i = firstNonFinite(bytes)
  if (i >= 0) {
    const value = new DataView(bytes.buffer, bytes.byteOffset + i * 4, 4).getFloat32(0, true)
    throw new NonFiniteTensorError(`${field}: element ${elementOffset + i} is ${value}`, { field })
  }
}

// ---------------------------------------------------------------- gossip messages

function checkHeartbeat (o: Record<string, unknown>): Heartbeat {
  const f = 'heartbeat'
  checkPeerId(o.peerId, `${f}.peerId`)
  if (!ROLES.includes(o.role as Role)) fail(`${f}.role`, `unknown role ${describe(o.role)}`)
  const stage = checkInt(o.stage, `${f}.stage`, -1, MAX_STAGES - 1)
  if (o.role === 'stage' && stage < 0) fail(`${f}.stage`, 'a peer with role "stage" needs a stage >= 0')
  if (o.role !== 'stage' && stage !== -1) fail(`${f}.stage`, `must be -1 for role "${String(o.role)}"`)
  checkUint32(o.iteration, `${f}.iteration`)
  if (o.loss !== undefined) checkFinite(o.loss, `${f}.loss`)
  checkFinite(o.gradNorm, `${f}.gradNorm`, 0)
  checkString(o.weightDigest, `${f}.weightDigest`, { max: MAX_DIGEST_LENGTH, pattern: TOKEN_PATTERN, alphabet: 'printable ASCII' })
  checkFinite(o.tokensPerSec, `${f}.tokensPerSec`, 0)
  checkSafeUint(o.rssBytes, `${f}.rssBytes`)
  checkUint32(o.epoch, `${f}.epoch`)
  checkSafeUint(o.timestampMs, `${f}.timestampMs`)
  checkBool(o.departing, `${f}.departing`)
  checkStateIteration(o.stateIteration, `${f}.stateIteration`)
  if (o.role !== 'stage' && o.stateIteration !== -1) fail(`${f}.stateIteration`, `must be -1 for role "${String(o.role)}" (no stage)`)
  const held = checkList(o.held, `${f}.held`, MAX_HELD_COPIES)
  const kinds = new Set<unknown>()
  held.forEach((h, i) => {
    const hf = `${f}.held[${i}]`
    const ho = checkObject(h, hf)
    if (!HELD_COPY_KINDS.includes(ho.kind as HeldCopyKind)) fail(`${hf}.kind`, `unknown kind ${describe(ho.kind)}`)
    if (kinds.has(ho.kind)) fail(`${hf}.kind`, `a second ${String(ho.kind)} copy`)
    kinds.add(ho.kind)
    checkStage(ho.stage, `${hf}.stage`)
    checkStateIteration(ho.iteration, `${hf}.iteration`)
  })
  return o as unknown as Heartbeat
}

function checkAssignment (o: Record<string, unknown>): Assignment {
  const f = 'assignment'
  checkId(o.clusterId, `${f}.clusterId`)
  checkId(o.runId, `${f}.runId`)
  checkUint32(o.epoch, `${f}.epoch`)
  checkUint32(o.iteration, `${f}.iteration`)
  const stages = checkList(o.stages, `${f}.stages`, MAX_STAGES, 1)
  const seen = new Set<string>()
  stages.forEach((s, i) => {
    const sf = `${f}.stages[${i}]`
    const so = checkObject(s, sf)
    const stage = checkStage(so.stage, `${sf}.stage`)
    if (stage !== i) fail(`${sf}.stage`, `stages must be listed in order 0..S-1, got ${stage} at position ${i}`)
    const peers = checkList(so.peers, `${sf}.peers`, MAX_PEERS_PER_STAGE)
    peers.forEach((p, j) => {
      const id = checkPeerId(p, `${sf}.peers[${j}]`)
      if (seen.has(id)) fail(`${sf}.peers[${j}]`, `peer ${id} is assigned twice`)
      seen.add(id)
    })
    const addrs = checkList(so.addrs, `${sf}.addrs`, MAX_PEERS_PER_STAGE)
    if (addrs.length !== peers.length) fail(`${sf}.addrs`, `expected one address per peer (${peers.length}), got ${addrs.length}`)
    addrs.forEach((a, j) => { checkString(a, `${sf}.addrs[${j}]`, { max: MAX_ADDR_LENGTH, min: 1, pattern: /^\/[\x21-\x7e]*$/, alphabet: 'a multiaddr (printable ASCII starting with /)' }) })
  })
  const rebuilt = checkList(o.rebuilt, `${f}.rebuilt`, MAX_STAGES)
  rebuilt.forEach((s, i) => {
    if (checkStage(s, `${f}.rebuilt[${i}]`) >= stages.length) fail(`${f}.rebuilt[${i}]`, `stage ${String(s)} is not in the assignment`)
  })
  if (o.joining !== undefined) {
    checkList(o.joining, `${f}.joining`, MAX_STAGES * MAX_PEERS_PER_STAGE).forEach((p, i) => {
      const id = checkPeerId(p, `${f}.joining[${i}]`)
      if (!seen.has(id)) fail(`${f}.joining[${i}]`, `peer ${id} joins no stage of the assignment`)
    })
  }
  checkJsonObject(o.modelConfig, `${f}.modelConfig`)
  checkJsonObject(o.trainingConfig, `${f}.trainingConfig`)
  return o as unknown as Assignment
}

function checkEpochIteration (o: Record<string, unknown>, f: string): void {
  checkUint32(o.epoch, `${f}.epoch`)
  checkUint32(o.iteration, `${f}.iteration`)
}

function checkCommit (o: Record<string, unknown>): Commit {
  checkEpochIteration(o, 'commit')
  if (o.checkpoint !== undefined) {
    checkUint32(o.checkpoint, 'commit.checkpoint')
    if ((o.checkpoint as number) > (o.iteration as number)) fail('commit.checkpoint', `${String(o.checkpoint)} is newer than the committed iteration ${String(o.iteration)}`)
  }
  if (o.skipped !== undefined) checkBool(o.skipped, 'commit.skipped')
  if (o.snapshot !== undefined) checkBool(o.snapshot, 'commit.snapshot')
  return o as unknown as Commit
}

function checkDone (o: Record<string, unknown>): DoneReport {
  const f = 'done'
  checkPeerId(o.peerId, `${f}.peerId`)
  checkStage(o.stage, `${f}.stage`)
  checkEpochIteration(o, f)
  if (o.loss !== undefined) checkFinite(o.loss, `${f}.loss`)
  checkFinite(o.gradNorm, `${f}.gradNorm`, 0)
  checkFinite(o.computeMs, `${f}.computeMs`, 0)
  if (o.allReduceMs !== undefined) checkFinite(o.allReduceMs, `${f}.allReduceMs`, 0)
  if (o.weightDigest !== undefined) checkString(o.weightDigest, `${f}.weightDigest`, { max: MAX_DIGEST_LENGTH, pattern: TOKEN_PATTERN, alphabet: 'printable ASCII' })
  if (o.nonFinite !== undefined || o.nonFiniteWhat !== undefined) {
    // a short word, not a closed set: a newer peer may name a value this coordinator does not know
    const bad = checkBool(o.nonFinite, `${f}.nonFinite`)
    checkString(o.nonFiniteWhat, `${f}.nonFiniteWhat`, { max: MAX_NON_FINITE_WHAT_LENGTH, min: bad ? 1 : 0, pattern: /^[a-z-]+$/, alphabet: '[a-z-]' })
    if (!bad && o.nonFiniteWhat !== '') fail(`${f}.nonFiniteWhat`, 'set without nonFinite')
  }
  return o as unknown as DoneReport
}

function checkStreamBreak (o: Record<string, unknown>): StreamBreakReport {
  const f = 'stream-break'
  const reporter = checkPeerId(o.reporter, `${f}.reporter`)
  checkStage(o.stage, `${f}.stage`)
  const suspect = checkPeerId(o.suspect, `${f}.suspect`)
  if (reporter === suspect) fail(`${f}.suspect`, 'a peer cannot report itself')
  checkEpochIteration(o, f)
  checkReason(o.reason, `${f}.reason`)
  return o as unknown as StreamBreakReport
}

function checkRecoveryPlan (o: Record<string, unknown>): RecoveryPlan {
  const f = 'recovery-plan'
  checkUint32(o.epoch, `${f}.epoch`)
  checkStage(o.stage, `${f}.stage`)
  if (!RECOVERY_RUNGS.includes(o.rung as RecoveryRung)) fail(`${f}.rung`, `unknown rung ${describe(o.rung)}`)
  const rung = o.rung as RecoveryRung
  const target = checkString(o.targetPeer, `${f}.targetPeer`, { max: MAX_PEER_ID_LENGTH, pattern: PEER_ID_PATTERN, alphabet: '[A-Za-z0-9]' })
  if (rung !== 'wait' && target === '') fail(`${f}.targetPeer`, `rung "${rung}" needs a target peer`)
  const donors = checkList(o.donors, `${f}.donors`, MAX_RECOVERY_DONORS)
  donors.forEach((d, i) => {
    const df = `${f}.donors[${i}]`
    const dobj = checkObject(d, df)
    const id = checkPeerId(dobj.peerId, `${df}.peerId`)
    if (id === target) fail(`${df}.peerId`, 'the target cannot be its own donor')
    checkStage(dobj.stage, `${df}.stage`)
    if (dobj.addr !== undefined) checkString(dobj.addr, `${df}.addr`, { max: MAX_ADDR_LENGTH, pattern: /^(\/[\x21-\x7e]*)?$/, alphabet: 'a multiaddr (printable ASCII starting with /)' })
  })
  const needsDonor = rung === 'handover' || rung === 'replica' || rung === 'checkfree' || rung === 'checkfree-plus'
  if (needsDonor && donors.length === 0) fail(`${f}.donors`, `rung "${rung}" needs at least one donor`)
  if (checkFinite(o.lrScale, `${f}.lrScale`, 0, MAX_LR_SCALE) === 0) fail(`${f}.lrScale`, 'must be > 0')
  const weights = checkList(o.weights, `${f}.weights`, MAX_RECOVERY_DONORS)
  if (weights.length !== 0 && weights.length !== donors.length) {
    fail(`${f}.weights`, `${weights.length} weights for ${donors.length} donors (need one per donor, or none)`)
  }
  let sum = 0
  weights.forEach((w, i) => { sum += checkFinite(w, `${f}.weights[${i}]`, 0) })
  if (weights.length > 0 && !(sum > 0)) fail(`${f}.weights`, 'weights must not all be zero')
  const checkpointId = checkString(o.checkpointId, `${f}.checkpointId`, { max: MAX_ID_LENGTH, pattern: ID_PATTERN, alphabet: '[A-Za-z0-9._-]' })
  if (rung === 'checkpoint' && checkpointId === '') fail(`${f}.checkpointId`, 'rung "checkpoint" needs a checkpoint id')
  return o as unknown as RecoveryPlan
}

function checkRecoveryDone (o: Record<string, unknown>): RecoveryDone {
  const f = 'recovery-done'
  checkPeerId(o.peerId, `${f}.peerId`)
  checkUint32(o.epoch, `${f}.epoch`)
  checkStage(o.stage, `${f}.stage`)
  if (!RECOVERY_RUNGS.includes(o.rung as RecoveryRung)) fail(`${f}.rung`, `unknown rung ${describe(o.rung)}`)
  if (typeof o.bytes !== 'number' || !Number.isSafeInteger(o.bytes) || o.bytes < 0) fail(`${f}.bytes`, `must be a non-negative safe integer, got ${describe(o.bytes)}`)
  checkFinite(o.transferMs, `${f}.transferMs`, 0)
  checkFinite(o.rebuildMs, `${f}.rebuildMs`, 0)
  return o as unknown as RecoveryDone
}

function checkRecoveryFailed (o: Record<string, unknown>): RecoveryFailed {
  const f = 'recovery-failed'
  checkPeerId(o.peerId, `${f}.peerId`)
  checkUint32(o.epoch, `${f}.epoch`)
  checkStage(o.stage, `${f}.stage`)
  if (!RECOVERY_RUNGS.includes(o.rung as RecoveryRung)) fail(`${f}.rung`, `unknown rung ${describe(o.rung)}`)
  checkString(o.code, `${f}.code`, { max: MAX_ERROR_CODE_LENGTH, min: 1, pattern: /^[A-Z][A-Z0-9_]*$/, alphabet: 'upper-case letters, digits and _' })
  checkReason(o.reason, `${f}.reason`)
  return o as unknown as RecoveryFailed
}

/** Checks a gossip message of any kind; returns it typed. */
export function validateMessage (value: unknown): Message {
  const o = checkObject(value, 'message')
  switch (o.kind) {
    case 'heartbeat': return checkHeartbeat(o)
    case 'assignment': return checkAssignment(o)
    case 'begin': checkEpochIteration(o, 'begin'); return o as unknown as Begin
    case 'abort': checkEpochIteration(o, 'abort'); checkReason(o.reason, 'abort.reason'); return o as unknown as Abort
    case 'commit': return checkCommit(o)
    case 'done': return checkDone(o)
    case 'stream-break': return checkStreamBreak(o)
    case 'recovery-plan': return checkRecoveryPlan(o)
    case 'recovery-done': return checkRecoveryDone(o)
    case 'recovery-failed': return checkRecoveryFailed(o)
    default: throw new UnknownKindError(`message.kind: unknown kind ${describe(o.kind)}`, { field: 'message.kind' })
  }
}

// ---------------------------------------------------------------- weights messages

export function checkTensorName (v: unknown, field: string): string {
  return checkString(v, field, { max: MAX_TENSOR_NAME_LENGTH, min: 1, pattern: TENSOR_NAME_PATTERN, alphabet: 'printable ASCII without spaces' })
}

function checkTensorInfo (v: unknown, field: string): TensorInfo {
  const o = checkObject(v, field)
  checkTensorName(o.name, `${field}.name`)
  checkDType(o.dtype, `${field}.dtype`)
  const elements = checkShape(o.shape, `${field}.shape`, MAX_WEIGHT_TENSOR_BYTES)
  const byteLength = checkSafeUint(o.byteLength, `${field}.byteLength`)
  if (byteLength !== elements * BYTES_PER_ELEMENT) {
    throw new BadShapeError(`${field}.byteLength: ${byteLength} bytes, but shape [${(o.shape as number[]).join(', ')}] needs ${elements * BYTES_PER_ELEMENT}`, { field: `${field}.byteLength` })
  }
  if (!Number.isInteger(o.crc32) || (o.crc32 as number) < 0 || (o.crc32 as number) > 0xffffffff) {
    throw new MalformedMessageError(`${field}.crc32: ${String(o.crc32)} is not an unsigned 32-bit integer`, { field: `${field}.crc32` })
  }
  return o as unknown as TensorInfo
}

export interface WeightsValidationContext {
  /** The manifest of this transfer: chunks are checked against it (index, range, finite floats). */
  manifest?: WeightsManifest
  /** Reject NaN/Inf in float32 chunk data (needs `manifest` to know the dtype). Default true. */
  rejectNonFinite?: boolean
}

/**
 * Checks where a chunk's data goes: index and offset in range, a positive multiple of 4 bytes up to
 * the chunk limit, and (with the manifest) inside its tensor. Returns the tensor's manifest entry.
 */
export function checkChunkPlacement (index: unknown, offset: unknown, byteLength: number, manifest?: WeightsManifest): TensorInfo | undefined {
  const i = checkInt(index, 'chunk.index', 0, MAX_WEIGHTS_TENSORS - 1)
  const at = checkSafeUint(offset, 'chunk.offset', MAX_WEIGHT_TENSOR_BYTES)
  if (at % BYTES_PER_ELEMENT !== 0) fail('chunk.offset', `${at} is not a multiple of ${BYTES_PER_ELEMENT}`)
  if (byteLength > MAX_WEIGHTS_CHUNK_BYTES) {
    throw new LimitExceededError(`chunk.data: ${byteLength} bytes, limit ${MAX_WEIGHTS_CHUNK_BYTES}`, { field: 'chunk.data' })
  }
  if (byteLength === 0 || byteLength % BYTES_PER_ELEMENT !== 0) {
    fail('chunk.data', `${byteLength} bytes is not a positive multiple of ${BYTES_PER_ELEMENT}`)
  }
  if (manifest === undefined) return undefined
  if (i >= manifest.tensors.length) fail('chunk.index', `${i} but the manifest has ${manifest.tensors.length} tensors`)
  const info = manifest.tensors[i]
  if (at + byteLength > info.byteLength) {
    fail('chunk.offset', `bytes [${at}, ${at + byteLength}) run past ${info.name}'s ${info.byteLength} bytes`)
  }
  return info
}

/** Checks a weights-protocol message of any kind; returns it typed. */
export function validateWeightsMessage (value: unknown, ctx: WeightsValidationContext = {}): WeightsMessage {
  const o = checkObject(value, 'weights')
  switch (o.kind) {
    case 'request': {
      checkStage(o.stage, 'request.stage')
      checkStateIteration(o.minIteration, 'request.minIteration')
      const names = checkList(o.names, 'request.names', MAX_WEIGHTS_TENSORS)
      const seen = new Set<string>()
      names.forEach((n, i) => {
        const name = checkTensorName(n, `request.names[${i}]`)
        if (seen.has(name)) fail(`request.names[${i}]`, `duplicate name ${name}`)
        seen.add(name)
      })
      checkBool(o.includeOptimizer, 'request.includeOptimizer')
      break
    }
    case 'manifest': {
      checkStage(o.stage, 'manifest.stage')
      checkStateIteration(o.iteration, 'manifest.iteration')
      const tensors = checkList(o.tensors, 'manifest.tensors', MAX_WEIGHTS_TENSORS)
      const seen = new Set<string>()
      let sum = 0
      tensors.forEach((t, i) => {
        const info = checkTensorInfo(t, `manifest.tensors[${i}]`)
        if (seen.has(info.name)) fail(`manifest.tensors[${i}].name`, `duplicate name ${info.name}`)
        seen.add(info.name)
        sum += info.byteLength
      })
      const total = checkSafeUint(o.totalBytes, 'manifest.totalBytes', MAX_WEIGHTS_TOTAL_BYTES)
      if (total !== sum) fail('manifest.totalBytes', `${total}, but the tensors add up to ${sum}`)
      break
    }
    case 'chunk': {
      if (!(o.data instanceof Uint8Array)) fail('chunk.data', `expected bytes, got ${describe(o.data)}`)
      const data = o.data as Uint8Array
      const info = checkChunkPlacement(o.index, o.offset, data.byteLength, ctx.manifest)
      if (info?.dtype === 'float32' && ctx.rejectNonFinite !== false) {
        checkFiniteBytes(data, `chunk.data (${info.name})`, (o.offset as number) / BYTES_PER_ELEMENT)
      }
      break
    }
    case 'end':
      checkSafeUint(o.totalBytes, 'end.totalBytes', MAX_WEIGHTS_TOTAL_BYTES)
      break
    case 'error':
      checkString(o.code, 'error.code', { max: MAX_ERROR_CODE_LENGTH, min: 1, pattern: ERROR_CODE_PATTERN, alphabet: '[A-Z0-9_]' })
      checkReason(o.message, 'error.message')
      break
    default:
      throw new UnknownKindError(`weights.kind: unknown kind ${describe(o.kind)}`, { field: 'weights.kind' })
  }
  return o as unknown as WeightsMessage
}

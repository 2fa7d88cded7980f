/**
 * Stage state <-> bytes. A stage's state is its parameters (by global name), optionally its Adam
 * moments (`optim.m.<name>`, `optim.v.<name>`), and metadata (the committed iteration the state
 * belongs to, Adam step, lr scale, last gradient norm). Because names are global, the states of 4 stages merged into one set load
 * into a model split 2 or 8 ways: each stage picks the names it owns.
 * This is the payload of the weights protocol and of checkpoints.
 */
import * as tf from '@tensorflow/tfjs'
import { createHash } from 'node:crypto'
import { CorruptStateError, ShapeMismatchError } from '../common/index.js'
import { decodeSafetensors, encodeSafetensors, safetensorsParts, type DecodeOptions, type HostTensor, type TensorSet } from './safetensors.js'
import type { Stage } from './stage.js'
import { hostCopy, hostTensor, readInto } from './ops.js'

export const OPTIM_M = 'optim.m.'
export const OPTIM_V = 'optim.v.'

export interface StageMeta {
  /** The committed iteration the state belongs to (-1: the seeded initial weights); see Stage.iteration. */
  iteration: number
  /** Adam steps taken (bias correction); not an iteration (steps are skipped, stages restored). */
  adamStep: number
  /** Learning-rate multiplier in force. */
  lrScale: number
  /** Post-clip gradient norm of the last step. */
  gradNorm: number
}

export interface StageState {
  tensors: TensorSet
  meta: StageMeta
}

/** `t`'s values in host memory: copied into `reuse`'s array when it has the right size, else a new one. */
function host (t: tf.Tensor, reuse?: HostTensor): HostTensor {
  if (reuse?.dtype === 'F32' && reuse.data instanceof Float32Array && reuse.data.length === t.size) {
    readInto(t, reuse.data)
    return { dtype: 'F32', shape: [...t.shape], data: reuse.data }
  }
  return { dtype: 'F32', shape: [...t.shape], data: hostCopy(t) }
}

/** Zeros of `v`'s shape (in `reuse`'s array when it fits). */
function zeros (v: tf.Tensor, reuse?: HostTensor): HostTensor {
  const data = reuse?.dtype === 'F32' && reuse.data instanceof Float32Array && reuse.data.length === v.size ? reuse.data.fill(0) : new Float32Array(v.size)
  return { dtype: 'F32', shape: [...v.shape], data }
}

export interface ExportOptions {
  /** Include the Adam moments. @default true */
  optimizer?: boolean
  /**
   * An earlier snapshot of the stage whose arrays may be overwritten: a tensor goes into the array of
   * the same name when the sizes agree. Only for a snapshot nobody reads any more.
   */
  reuse?: TensorSet
}

/** Snapshot of a stage (copies to host memory; safe to serialize while training continues). */
export function exportStageState (stage: Stage, opts: ExportOptions = {}): StageState {
  const tensors: TensorSet = new Map()
  const old = opts.reuse
  for (const [n, v] of stage.params) tensors.set(n, host(v, old?.get(n)))
  if (opts.optimizer ?? true) {
    for (const [n, v] of stage.params) {
      const m = stage.adam.m.get(n)
      const s = stage.adam.v.get(n)
      // Moments that do not exist yet (no step taken) are zeros, exactly what Adam would start from.
      tensors.set(OPTIM_M + n, m != null ? host(m, old?.get(OPTIM_M + n)) : zeros(v, old?.get(OPTIM_M + n)))
      tensors.set(OPTIM_V + n, s != null ? host(s, old?.get(OPTIM_V + n)) : zeros(v, old?.get(OPTIM_V + n)))
    }
  }
  return {
    tensors,
    meta: { iteration: stage.iteration, adamStep: stage.adam.step, lrScale: stage.adam.lrScale, gradNorm: stage.lastGradNorm }
  }
}

export function metaToRecord (meta: StageMeta): Record<string, string> {
  return {
    'spotpipe.iteration': String(meta.iteration),
    'spotpipe.adam_step': String(meta.adamStep),
    'spotpipe.lr_scale': String(meta.lrScale),
    'spotpipe.grad_norm': String(meta.gradNorm)
  }
}

/**
 * Metadata from a safetensors header. Files written before the iteration was recorded have
 * `spotpipe.weight_version` (an optimizer step count) and no `spotpipe.iteration`: for those the
 * caller says which iteration the file belongs to (`iteration`, e.g. its checkpoint's), else they
 * are refused.
 */
export function metaFromRecord (rec: Record<string, string>, opts: { iteration?: number } = {}): StageMeta {
  const num = (key: string, integer: boolean, min = 0): number => {
    const raw = rec[`spotpipe.${key}`]
    if (raw == null) throw new CorruptStateError(`state metadata lacks spotpipe.${key}`)
    const v = Number(raw)
    if (!Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) throw new CorruptStateError(`state metadata spotpipe.${key} is not a valid ${integer ? 'count' : 'number'}: "${raw}"`)
    return v
  }
  let iteration: number
  if (rec['spotpipe.iteration'] != null || opts.iteration === undefined) iteration = num('iteration', true, -1)
  else {
    if (!Number.isSafeInteger(opts.iteration) || opts.iteration < -1) throw new CorruptStateError(`state iteration must be an integer >= -1, got ${opts.iteration}`)
    iteration = opts.iteration
  }
  return { iteration, adamStep: num('adam_step', true), lrScale: num('lr_scale', false), gradNorm: num('grad_norm', false) }
}

export function encodeStageState (state: StageState): Uint8Array {
  return encodeSafetensors(state.tensors, metaToRecord(state.meta))
}

/** encodeStageState as parts (header, then views of the tensors): see safetensorsParts. */
export function encodeStageStateParts (state: StageState): Uint8Array[] {
  return safetensorsParts(state.tensors, metaToRecord(state.meta))
}

/** `iteration`: the iteration a file without `spotpipe.iteration` (older spotpipe) belongs to; see metaFromRecord. */
export function decodeStageState (bytes: Uint8Array, opts?: DecodeOptions & { iteration?: number }): StageState {
  const { tensors, metadata } = decodeSafetensors(bytes, opts)
  return { tensors, meta: metaFromRecord(metadata, { iteration: opts?.iteration }) }
}

/** Union of several stages' tensor sets; a name present twice must hold identical data. */
export function mergeTensorSets (sets: TensorSet[]): TensorSet {
  const out: TensorSet = new Map()
  for (const set of sets) {
    for (const [n, t] of set) {
      const prev = out.get(n)
      if (prev != null) {
        const same = prev.shape.join(',') === t.shape.join(',') && prev.data.length === t.data.length && prev.data.every((x, i) => Object.is(x, t.data[i]))
        if (!same) throw new CorruptStateError(`tensor ${n} appears twice with different values`)
        continue
      }
      out.set(n, t)
    }
  }
  return out
}

/**
 * Load parameters (and Adam moments and step, when `optimizer` is set) into `stage` from a tensor set
 * that holds at least the stage's names. Validates everything before assigning anything, so a bad set
 * leaves the stage as it was.
 */
export function loadStageState (stage: Stage, tensors: TensorSet, meta: StageMeta, opts: { optimizer?: boolean } = {}): void {
  const withOptim = opts.optimizer ?? true
  const needed: string[] = []
  for (const spec of stage.specs) {
    needed.push(spec.name)
    if (withOptim) needed.push(OPTIM_M + spec.name, OPTIM_V + spec.name)
  }
  const missing = needed.filter(n => !tensors.has(n))
  if (missing.length > 0) throw new ShapeMismatchError(`state for stage ${stage.stage} lacks ${missing.length} tensors: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`)
  for (const spec of stage.specs) {
    for (const name of withOptim ? [spec.name, OPTIM_M + spec.name, OPTIM_V + spec.name] : [spec.name]) {
      const t = tensors.get(name) as HostTensor
      if (t.dtype !== 'F32') throw new ShapeMismatchError(`${name}: expected F32, got ${t.dtype}`)
      if (t.shape.join(',') !== spec.shape.join(',')) throw new ShapeMismatchError(`${name}: expected shape [${spec.shape.join(',')}], got [${t.shape.join(',')}]`)
    }
  }
  for (const spec of stage.specs) {
    const p = stage.params.get(spec.name) as tf.Variable
    const t = tensors.get(spec.name) as HostTensor
    tf.tidy(() => p.assign(hostTensor(t.data as Float32Array, spec.shape)))
  }
  if (withOptim) {
    stage.adam.dispose()
    for (const spec of stage.specs) {
      const m = tensors.get(OPTIM_M + spec.name) as HostTensor
      const v = tensors.get(OPTIM_V + spec.name) as HostTensor
      stage.adam.m.set(spec.name, tf.tidy(() => tf.variable(hostTensor(m.data as Float32Array, spec.shape), false)))
      stage.adam.v.set(spec.name, tf.tidy(() => tf.variable(hostTensor(v.data as Float32Array, spec.shape), false)))
    }
    stage.adam.step = meta.adamStep
    stage.adam.lrScale = meta.lrScale
  }
  stage.iteration = meta.iteration
  stage.lastGradNorm = meta.gradNorm
}

/**
 * The weights protocol moves tensor sets, not safetensors metadata, so a stage's metadata travels
 * as one small I32 tensor: [adamStep, iteration, lrScale as float64 bits (2 words), gradNorm as
 * float64 bits (2 words)]. Float64 bits keep an exact handover bit-identical (lrScale 1.1 does not
 * survive a float32).
 */
export const META_TENSOR = 'meta.stage_state'

export function metaToTensor (meta: StageMeta): HostTensor {
  const words = new Int32Array(6)
  words[0] = meta.adamStep
  words[1] = meta.iteration
  new Float64Array(words.buffer, 8, 2).set([meta.lrScale, meta.gradNorm])
  return { dtype: 'I32', shape: [6], data: words }
}

export function metaFromTensor (t: HostTensor | undefined): StageMeta {
  if (t == null || t.dtype !== 'I32' || t.data.length !== 6) throw new CorruptStateError(`${META_TENSOR} must be an I32 tensor of 6 words`)
  const words = Int32Array.from(t.data)
  const [lrScale, gradNorm] = new Float64Array(words.buffer, 8, 2)
  const meta = { iteration: words[1], adamStep: words[0], lrScale, gradNorm }
  if (meta.adamStep < 0 || meta.iteration < -1 || !(lrScale > 0) || !Number.isFinite(lrScale) || !(gradNorm >= 0) || !Number.isFinite(gradNorm)) {
    throw new CorruptStateError(`${META_TENSOR} holds impossible values: ${JSON.stringify(meta)}`)
  }
  return meta
}

/** A stage state as one tensor set (metadata included), as the weights protocol serves it. */
export function stateToTensorSet (state: StageState): TensorSet {
  const out: TensorSet = new Map(state.tensors)
  out.set(META_TENSOR, metaToTensor(state.meta))
  return out
}

export function stateFromTensorSet (set: TensorSet): StageState {
  const tensors: TensorSet = new Map(set)
  const meta = metaFromTensor(tensors.get(META_TENSOR))
  tensors.delete(META_TENSOR)
  return { tensors, meta }
}

/** Elements sampled per tensor by stageDigest. */
export const DIGEST_SAMPLES_PER_TENSOR = 64

/**
 * A short digest of a stage's state (16 hex characters): SHA-256 over the Adam step, the iteration
 * and DIGEST_SAMPLES_PER_TENSOR evenly spaced elements of every parameter and both of its Adam
 * moments, in spec order. Replicas of a stage that stay in step have equal digests; a replica whose
 * step differed (another gradient, another lr) differs in nearly every weight and moment, so the
 * sample sees it. A single corrupted weight off the sample is not seen. Moments a fresh Adam has
 * not made yet count as zeros, as in an exported copy. Costs a few small gathers and one device
 * read, not a copy of the stage.
 */
export function stageDigest (stage: Stage): string {
  const h = createHash('sha256')
  h.update(Float64Array.of(stage.adam.step, stage.iteration))
  const sample = tf.tidy(() => {
    const parts: tf.Tensor[] = []
    for (const spec of stage.specs) {
      const n = spec.shape.reduce((a, b) => a * b, 1)
      const k = Math.min(n, DIGEST_SAMPLES_PER_TENSOR)
      const idx = tf.tensor1d(Array.from({ length: k }, (_, i) => Math.floor(i * n / k)), 'int32')
      for (const t of [stage.params.get(spec.name), stage.adam.m.get(spec.name), stage.adam.v.get(spec.name)]) {
        // a fresh Adam makes its moments at its first step; until then they are zeros, which is
        // what a copy of that state holds (exportStageState writes them): hash them as zeros
        parts.push(t != null ? tf.gather(tf.reshape(t, [-1]), idx) : tf.zeros([k]))
      }
    }
    return parts.length > 0 ? tf.concat(parts) : tf.zeros([0])
  })
  try {
    const values = sample.dataSync() as Float32Array
    h.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength))
  } finally {
    sample.dispose()
  }
  return h.digest('hex').slice(0, 16)
}

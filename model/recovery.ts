/**
 * Recovery arithmetic as pure functions over named parameter sets (name -> values). The coordinator
 * decides which rule applies; these functions compute the new stage's starting weights.
 *
 * CheckFree (intermediate stage i lost, both neighbours alive), parameter by parameter:
 *   W_i = (a * W_{i+1} + b * W_{i-1}) / (a + b),  a = w(g_{i+1}),  b = w(g_{i-1})
 * where g_j is stage j's post-clip gradient norm at its last step and w(g) = g + 1e-4 ('norm', the
 * default and the reference code's rule), g^2 + 1e-4 ('squared') or 1 ('uniform'). The rebuilt stage
 * starts a fresh Adam at lr * lrScale (1.1 by default).
 *
 * CheckFree+ (first or last stage lost): copy the neighbour's blocks (which learned to stand in for
 * the lost ones through the swapped microbatches) plus the embedding or head the neighbour mirrors.
 *
 * Block mapping: the r-th block of the lost stage takes the neighbour's block at the same relative
 * position, floor(r * n_neighbour / n_lost), so uneven partitions still map every block.
 */
import type { ModelConfig } from './config.js'
import { RecoveryError, ShapeMismatchError } from '../common/index.js'
import { embedSpecs, headSpecs, stageSpecs, type StageLayout } from './params.js'

export type NamedValues = Map<string, Float32Array>
export type Weighting = 'norm' | 'squared' | 'uniform'

/** The small constant added to each gradient norm so a zero norm still gets weight. */
export const NORM_EPS = 1e-4
/** Default learning-rate multiplier of a CheckFree-rebuilt stage (124M and 1.5B configs). */
export const DEFAULT_LR_SCALE = 1.1

export function neighbourWeight (gradNorm: number, weighting: Weighting = 'norm'): number {
  if (!Number.isFinite(gradNorm) || gradNorm < 0) throw new RecoveryError(`gradient norm must be finite and >= 0, got ${gradNorm}`)
  if (weighting === 'uniform') return 1
  if (weighting === 'squared') return gradNorm * gradNorm + NORM_EPS
  return gradNorm + NORM_EPS
}

/** Name of the neighbour's parameter that stands in for `name` of the lost stage's r-th block. */
function mapBlockName (name: string, lost: StageLayout, donor: StageLayout): string {
  const m = /^blocks\.(\d+)\.(.+)$/.exec(name)
  if (m == null) return name
  const r = Number(m[1]) - lost.firstBlock
  const nLost = lost.endBlock - lost.firstBlock
  const nDonor = donor.endBlock - donor.firstBlock
  const j = donor.firstBlock + Math.floor(r * nDonor / nLost)
  return `blocks.${j}.${m[2]}`
}

function take (set: NamedValues, name: string, size: number, who: string): Float32Array {
  const v = set.get(name)
  if (v == null) throw new RecoveryError(`${who} has no parameter ${name}`)
  if (v.length !== size) throw new ShapeMismatchError(`${who}'s ${name} has ${v.length} values, expected ${size}`)
  return v
}

export interface Neighbour {
  layout: StageLayout
  params: NamedValues
  /** Post-clip gradient norm of the neighbour's last optimizer step. */
  gradNorm: number
}

export interface CheckFreeInput {
  model: ModelConfig
  lost: StageLayout
  prev: Neighbour
  next: Neighbour
  weighting?: Weighting
}

/** CheckFree's weighted average of the two neighbours, for every parameter of the lost stage. */
export function checkfreeAverage (input: CheckFreeInput): NamedValues {
  const { model, lost, prev, next } = input
  if (lost.hasEmbed || lost.hasHead) {
    throw new RecoveryError(`CheckFree rebuilds intermediate stages only; stage ${lost.stage} of ${lost.stages} is the first or last (use CheckFree+ or a checkpoint)`)
  }
  if (prev.layout.stage !== lost.stage - 1 || next.layout.stage !== lost.stage + 1) {
    throw new RecoveryError(`neighbours of stage ${lost.stage} must be stages ${lost.stage - 1} and ${lost.stage + 1}, got ${prev.layout.stage} and ${next.layout.stage}`)
  }
  const a = neighbourWeight(next.gradNorm, input.weighting)
  const b = neighbourWeight(prev.gradNorm, input.weighting)
  const wa = a / (a + b)
  const wb = b / (a + b)
  const out: NamedValues = new Map()
  for (const spec of stageSpecs(model, lost)) {
    const size = spec.shape.reduce((x, y) => x * y, 1)
    const vn = take(next.params, mapBlockName(spec.name, lost, next.layout), size, `stage ${next.layout.stage}`)
    const vp = take(prev.params, mapBlockName(spec.name, lost, prev.layout), size, `stage ${prev.layout.stage}`)
    const v = new Float32Array(size)
    for (let k = 0; k < size; k++) v[k] = wa * vn[k] + wb * vp[k]
    out.set(spec.name, v)
  }
  return out
}

/**
 * Who keeps which copy of another stage (one rule each, used by the ladder, the peers and the
 * simulator alike).
 *
 * CheckFree+: the first stage's embedding and the last stage's head are mirrored by their only
 * neighbour (stage 1 and stage S-2), which is also the donor of the blocks when that stage is lost.
 * Undefined for an intermediate stage or a one-stage pipeline.
 */
export function mirrorHolder (owner: number, stages: number): number | undefined {
  if (stages < 2) return undefined
  if (owner === 0) return 1
  if (owner === stages - 1) return stages - 2
  return undefined
}

/** The stages whose embedding or head stage `holder` mirrors, ascending (both ends for the middle of three stages). */
export function mirroredOwners (holder: number, stages: number): number[] {
  const owners = stages < 2 ? [] : [...new Set([0, stages - 1])]
  return owners.filter(owner => mirrorHolder(owner, stages) === holder)
}

/** redundant: the stage whose peer keeps the shadow copy of `stage`, its predecessor (stage S-1 shadows stage 0). */
export function shadowHolder (stage: number, stages: number): number | undefined {
  return stages < 2 ? undefined : (stage - 1 + stages) % stages
}

/** redundant: the stage that stage `holder` shadows, its successor (the inverse of shadowHolder). */
export function shadowedStage (holder: number, stages: number): number | undefined {
  return stages < 2 ? undefined : (holder + 1) % stages
}

/** Which parameters stage `layout.stage` mirrors under CheckFree+: stage 1 the embedding, stage S-2 the head. */
export function mirroredNames (model: ModelConfig, layout: StageLayout): string[] {
  return mirroredOwners(layout.stage, layout.stages).flatMap(owner => (owner === 0 ? embedSpecs(model) : headSpecs(model)).map(s => s.name))
}

export interface NeighbourCopyInput {
  model: ModelConfig
  lost: StageLayout
  /** Stage 1 when stage 0 is lost; stage S-2 when stage S-1 is lost. */
  neighbour: { layout: StageLayout, params: NamedValues }
  /** The neighbour's mirror of the lost embedding or head. */
  mirror: NamedValues
}

/** CheckFree+: the lost first or last stage as a copy of its neighbour plus the mirrored embedding/head. */
export function neighbourCopy (input: NeighbourCopyInput): NamedValues {
  const { model, lost, neighbour, mirror } = input
  if (!lost.hasEmbed && !lost.hasHead) throw new RecoveryError(`CheckFree+ neighbour copy is for the first or last stage; stage ${lost.stage} is intermediate`)
  const expected = mirrorHolder(lost.stage, lost.stages)
  if (expected == null) throw new RecoveryError(`stage ${lost.stage} of a ${lost.stages}-stage pipeline has no neighbour to copy`)
  if (neighbour.layout.stage !== expected) throw new RecoveryError(`stage ${lost.stage} is copied from stage ${expected}, got stage ${neighbour.layout.stage}`)
  const out: NamedValues = new Map()
  for (const spec of stageSpecs(model, lost)) {
    const size = spec.shape.reduce((x, y) => x * y, 1)
    const isBlock = spec.name.startsWith('blocks.')
    const src = isBlock
      ? take(neighbour.params, mapBlockName(spec.name, lost, neighbour.layout), size, `stage ${neighbour.layout.stage}`)
      : take(mirror, spec.name, size, `stage ${neighbour.layout.stage}'s mirror`)
    out.set(spec.name, Float32Array.from(src))
  }
  return out
}

/** Copy of the named parameters from a stage's values, for refreshing a CheckFree+ mirror. */
export function extractMirror (values: NamedValues, names: string[]): NamedValues {
  const out: NamedValues = new Map()
  for (const n of names) {
    const v = values.get(n)
    if (v == null) throw new RecoveryError(`cannot mirror ${n}: the owning stage has no such parameter`)
    out.set(n, Float32Array.from(v))
  }
  return out
}


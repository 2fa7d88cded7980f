/**
 * Parameter names, shapes, the stage partition and the seeded initialisation.
 *
 * Names are global and partition-free (`embed.tok`, `blocks.7.attn.wq`, `head.w`): a stage is just a
 * subset of names, so state written from 4 stages loads into 2 or 8, and initial weights depend only
 * on (initSeed, name), never on how the model is split.
 */
import type { ModelConfig } from './config.js'
import { ConfigError } from '../common/index.js'
import { hashKey, mulberry32, normalSampler } from './rng.js'

export type Part = 'embed' | 'blocks' | 'head'

export interface ParamSpec {
  name: string
  shape: number[]
  /** How the weight starts: normal(0, std), all ones (norm gains) or all zeros (norm biases). */
  init: { kind: 'normal', std: number } | { kind: 'ones' } | { kind: 'zeros' }
}

/** The stage's slice of the model: blocks [firstBlock, endBlock), plus embed on stage 0 and head on the last. */
export interface StageLayout {
  stage: number
  stages: number
  firstBlock: number
  endBlock: number
  hasEmbed: boolean
  hasHead: boolean
}

/** Blocks split as evenly as possible; earlier stages take the remainder. */
export function stageLayout (model: ModelConfig, stages: number, stage: number): StageLayout {
  if (!Number.isInteger(stages) || stages < 1 || stages > model.nBlocks) {
    throw new ConfigError(`stages must be in 1..${model.nBlocks} (one block each at least), got ${stages}`)
  }
  if (!Number.isInteger(stage) || stage < 0 || stage >= stages) throw new ConfigError(`stage ${stage} out of range 0..${stages - 1}`)
  const base = Math.floor(model.nBlocks / stages)
  const extra = model.nBlocks % stages
  const firstBlock = stage * base + Math.min(stage, extra)
  const endBlock = firstBlock + base + (stage < extra ? 1 : 0)
  return { stage, stages, firstBlock, endBlock, hasEmbed: stage === 0, hasHead: stage === stages - 1 }
}

export function embedSpecs (m: ModelConfig): ParamSpec[] {
  const std = m.initStd
  return [
    { name: 'embed.tok', shape: [m.vocab, m.dModel], init: { kind: 'normal', std } }, // [V,D]
    { name: 'embed.pos', shape: [m.seqLen, m.dModel], init: { kind: 'normal', std } } // [T,D]
  ]
}

export function blockSpecs (m: ModelConfig, i: number): ParamSpec[] {
  const D = m.dModel
  const H = m.mlpRatio * D
  const std = m.initStd
  // Residual projections scaled by 1/sqrt(2 * nBlocks), as in GPT-2, so the residual stream's
  // variance does not grow with depth.
  const resid = std / Math.sqrt(2 * m.nBlocks)
  const p = `blocks.${i}`
  return [
    { name: `${p}.ln1.g`, shape: [D], init: { kind: 'ones' } },
    { name: `${p}.ln1.b`, shape: [D], init: { kind: 'zeros' } },
    { name: `${p}.attn.wq`, shape: [D, D], init: { kind: 'normal', std } },
    { name: `${p}.attn.wk`, shape: [D, D], init: { kind: 'normal', std } },
    { name: `${p}.attn.wv`, shape: [D, D], init: { kind: 'normal', std } },
    { name: `${p}.attn.wo`, shape: [D, D], init: { kind: 'normal', std: resid } },
    { name: `${p}.ln2.g`, shape: [D], init: { kind: 'ones' } },
    { name: `${p}.ln2.b`, shape: [D], init: { kind: 'zeros' } },
    { name: `${p}.mlp.w1`, shape: [D, H], init: { kind: 'normal', std } },
    { name: `${p}.mlp.b1`, shape: [H], init: { kind: 'zeros' } },
    { name: `${p}.mlp.w2`, shape: [H, D], init: { kind: 'normal', std: resid } },
    { name: `${p}.mlp.b2`, shape: [D], init: { kind: 'zeros' } }
  ]
}

export function headSpecs (m: ModelConfig): ParamSpec[] {
  const D = m.dModel
  return [
    { name: 'head.ln.g', shape: [D], init: { kind: 'ones' } },
    { name: 'head.ln.b', shape: [D], init: { kind: 'zeros' } },
    { name: 'head.w', shape: [D, m.vocab], init: { kind: 'normal', std: m.initStd } } // [D,V]
  ]
}

/** Every parameter a stage owns, in a fixed order (embed, blocks ascending, head). */
export function stageSpecs (m: ModelConfig, layout: StageLayout): ParamSpec[] {
  const specs: ParamSpec[] = []
  if (layout.hasEmbed) specs.push(...embedSpecs(m))
  for (let i = layout.firstBlock; i < layout.endBlock; i++) specs.push(...blockSpecs(m, i))
  if (layout.hasHead) specs.push(...headSpecs(m))
  return specs
}

/** Parameters used by one part of a stage (the unit a CheckFree+ swapped route runs separately). */
export function partSpecs (m: ModelConfig, layout: StageLayout, part: Part): ParamSpec[] {
  if (part === 'embed') return layout.hasEmbed ? embedSpecs(m) : []
  if (part === 'head') return layout.hasHead ? headSpecs(m) : []
  const specs: ParamSpec[] = []
  for (let i = layout.firstBlock; i < layout.endBlock; i++) specs.push(...blockSpecs(m, i))
  return specs
}

/** 32-bit FNV-1a of a string, to key the initialisation of a named parameter. */
export function fnv1a (s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Initial values of one parameter: a function of (seed, name) only. */
export function initialValues (spec: ParamSpec, seed: number): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1)
  const out = new Float32Array(n)
  if (spec.init.kind === 'ones') out.fill(1)
  else if (spec.init.kind === 'normal') {
    const normal = normalSampler(mulberry32(hashKey(seed, fnv1a(spec.name))))
    const std = spec.init.std
    for (let i = 0; i < n; i++) out[i] = normal() * std
  }
  return out
}

export function countParams (specs: ParamSpec[]): number {
  return specs.reduce((acc, s) => acc + s.shape.reduce((a, b) => a * b, 1), 0)
}

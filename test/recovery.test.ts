import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { stageLayout, stageSpecs } from '../model/params.js'
import { checkfreeAverage, DEFAULT_LR_SCALE, extractMirror, mirroredNames, neighbourCopy, neighbourWeight, type NamedValues } from '../model/recovery.js'
import { blockOrder, route } from '../model/schedule.js'
import { Stage } from '../model/stage.js'
import { mulberry32 } from '../model/rng.js'

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })

describe('CheckFree+ schedule', () => {
  for (let S = 2; S <= 16; S++) {
    it(`holds its properties for ${S} stages`, () => {
      for (let mb = 0; mb < 6; mb++) {
        for (const plus of [false, true]) {
          const order = blockOrder(S, mb, plus)
          // Every stage's blocks run exactly once per microbatch.
          expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: S }, (_, i) => i))
          const swapped = plus && S >= 4 && mb % 2 === 1
          if (!swapped) expect(order).toEqual(Array.from({ length: S }, (_, i) => i))
          else {
            // Only the first two and the last two swap; the middle keeps its order.
            expect(order.slice(0, 2)).toEqual([1, 0])
            expect(order.slice(S - 2)).toEqual([S - 1, S - 2])
            expect(order.slice(2, S - 2)).toEqual(Array.from({ length: S - 4 }, (_, i) => i + 2))
          }
          const hops = route(S, mb, plus)
          // The route starts by embedding on stage 0 and ends with the head on the last stage.
          expect(hops[0]).toMatchObject({ stage: 0 })
          expect(hops[0].parts[0]).toBe('embed')
          expect(hops[hops.length - 1].stage).toBe(S - 1)
          expect(hops[hops.length - 1].parts.at(-1)).toBe('head')
          // Consecutive hops are on different stages, and each part appears once.
          for (let h = 1; h < hops.length; h++) expect(hops[h].stage).not.toBe(hops[h - 1].stage)
          const parts = hops.flatMap(h => h.parts.map(p => `${h.stage}:${p}`))
          expect(new Set(parts).size).toBe(parts.length)
          expect(parts.length).toBe(S + 2)
        }
      }
    })
  }
  it('does not swap with fewer than 4 stages, even on odd microbatches', () => {
    expect(route(3, 1, true)).toEqual(route(3, 1, false))
    expect(route(4, 1, true)).not.toEqual(route(4, 1, false))
  })
})

const model = resolveModelConfig({ dModel: 8, nHeads: 2, nBlocks: 4, seqLen: 4 })

function values (seed: number, layout = stageLayout(model, 4, 0)): NamedValues {
  const r = mulberry32(seed)
  const out: NamedValues = new Map()
  for (const s of stageSpecs(model, layout)) out.set(s.name, Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => r() - 0.5))
  return out
}

describe('CheckFree weighted average', () => {
  const L = (s: number) => stageLayout(model, 4, s)

  it('weights each neighbour by its own post-clip gradient norm + 1e-4, exactly', () => {
    const prev = { layout: L(1), params: values(1, L(1)), gradNorm: 0.25 }
    const next = { layout: L(3), params: values(3, L(3)), gradNorm: 1.0 }
    const out = checkfreeAverage({ model, lost: L(2), prev, next })
    const a = 1.0 + 1e-4
    const b = 0.25 + 1e-4
    // Stage 2 owns block 2; its neighbours own blocks 1 and 3.
    const w = out.get('blocks.2.attn.wq') as Float32Array
    const wn = next.params.get('blocks.3.attn.wq') as Float32Array
    const wp = prev.params.get('blocks.1.attn.wq') as Float32Array
    for (let i = 0; i < w.length; i++) expect(w[i]).toBeCloseTo((a * wn[i] + b * wp[i]) / (a + b), 6)
    expect([...out.keys()].sort()).toEqual(stageSpecs(model, L(2)).map(s => s.name).sort())
  })

  it('on 2-element tensors gives the hand-computed values', () => {
    const tiny = resolveModelConfig({ dModel: 2, nHeads: 1, nBlocks: 3, seqLen: 2, mlpRatio: 1 })
    const lay = (s: number) => stageLayout(tiny, 3, s)
    const fill = (layout: ReturnType<typeof lay>, v: number): NamedValues => new Map(stageSpecs(tiny, layout).map(s => [s.name, new Float32Array(s.shape.reduce((x, y) => x * y, 1)).fill(v)]))
    // prev = 1.0 everywhere with norm 0.5; next = 3.0 everywhere with norm 1.5.
    // a = 1.5001, b = 0.5001: (1.5001 * 3 + 0.5001 * 1) / 2.0002 = 2.49990001...
    const out = checkfreeAverage({ model: tiny, lost: lay(1), prev: { layout: lay(0), params: fill(lay(0), 1), gradNorm: 0.5 }, next: { layout: lay(2), params: fill(lay(2), 3), gradNorm: 1.5 } })
    expect((out.get('blocks.1.ln1.g') as Float32Array)[0]).toBeCloseTo((1.5001 * 3 + 0.5001) / 2.0002, 6)
    const uni = checkfreeAverage({ model: tiny, lost: lay(1), prev: { layout: lay(0), params: fill(lay(0), 1), gradNorm: 0.5 }, next: { layout: lay(2), params: fill(lay(2), 3), gradNorm: 1.5 }, weighting: 'uniform' })
    expect((uni.get('blocks.1.ln1.g') as Float32Array)[1]).toBeCloseTo(2, 6)
    const sq = checkfreeAverage({ model: tiny, lost: lay(1), prev: { layout: lay(0), params: fill(lay(0), 1), gradNorm: 0.5 }, next: { layout: lay(2), params: fill(lay(2), 3), gradNorm: 1.5 }, weighting: 'squared' })
    expect((sq.get('blocks.1.mlp.b2') as Float32Array)[0]).toBeCloseTo((2.2501 * 3 + 0.2501) / 2.5002, 6)
  })

  it('weights: norm, squared and uniform; rejects bad norms', () => {
    expect(neighbourWeight(0)).toBe(1e-4)
    expect(neighbourWeight(0.5, 'squared')).toBeCloseTo(0.2501, 10)
    expect(neighbourWeight(7, 'uniform')).toBe(1)
    expect(() => neighbourWeight(NaN)).toThrow(expect.objectContaining({ code: 'ERR_RECOVERY' }))
    expect(() => neighbourWeight(-1)).toThrow(/finite/)
  })

  it('refuses the first and last stages and wrong neighbours', () => {
    const n = { layout: L(1), params: values(1, L(1)), gradNorm: 1 }
    expect(() => checkfreeAverage({ model, lost: L(0), prev: n, next: n })).toThrow(/intermediate/)
    expect(() => checkfreeAverage({ model, lost: L(2), prev: n, next: n })).toThrow(/neighbours/)
  })

  it('a rebuilt stage starts a fresh Adam at lr x 1.1', () => {
    const train = resolveTrainConfig({ stages: 4, lr: 1e-3 }, model)
    const prev = { layout: L(1), params: values(1, L(1)), gradNorm: 0.3 }
    const next = { layout: L(3), params: values(3, L(3)), gradNorm: 0.6 }
    const averaged = checkfreeAverage({ model, lost: L(2), prev, next })
    const before = tf.memory().numTensors
    const rebuilt = new Stage({ model, train, layout: L(2), values: averaged, lrScale: DEFAULT_LR_SCALE })
    try {
      expect(tf.memory().numTensors).toBeGreaterThan(before)
      expect(rebuilt.adam.step).toBe(0)
      expect(rebuilt.adam.m.size).toBe(0)
      expect(rebuilt.adam.lr).toBeCloseTo(1.1e-3, 12)
      const got = rebuilt.readParams().get('blocks.2.mlp.w1') as Float32Array
      const a = 0.6 + 1e-4
      const b = 0.3 + 1e-4
      const want = (next.params.get('blocks.3.mlp.w1') as Float32Array).map((x, i) => (a * x + b * (prev.params.get('blocks.1.mlp.w1') as Float32Array)[i]) / (a + b))
      for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(want[i], 6)
    } finally { rebuilt.dispose() }
    // the rebuilt stage's parameters (and anything readParams made) are all released again
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('CheckFree+ neighbour copy', () => {
  const L = (s: number) => stageLayout(model, 4, s)
  it('rebuilds the first stage from stage 1 plus its mirrored embedding', () => {
    const n1 = values(5, L(1))
    const owner0 = values(6, L(0))
    const names = mirroredNames(model, L(1))
    expect(names.sort()).toEqual(['embed.pos', 'embed.tok'])
    const mirror = extractMirror(owner0, names)
    const out = neighbourCopy({ model, lost: L(0), neighbour: { layout: L(1), params: n1 }, mirror })
    expect(out.get('embed.tok')).toEqual(owner0.get('embed.tok'))
    expect(out.get('blocks.0.mlp.w2')).toEqual(n1.get('blocks.1.mlp.w2'))
    expect([...out.keys()].sort()).toEqual(stageSpecs(model, L(0)).map(s => s.name).sort())
  })
  it('rebuilds the last stage from stage S-2 plus its mirrored head', () => {
    const n2 = values(7, L(2))
    const owner3 = values(8, L(3))
    const names = mirroredNames(model, L(2))
    expect(names.sort()).toEqual(['head.ln.b', 'head.ln.g', 'head.w'])
    const out = neighbourCopy({ model, lost: L(3), neighbour: { layout: L(2), params: n2 }, mirror: extractMirror(owner3, names) })
    expect(out.get('head.w')).toEqual(owner3.get('head.w'))
    expect(out.get('blocks.3.attn.wk')).toEqual(n2.get('blocks.2.attn.wk'))
  })
  it('refuses intermediate stages, wrong neighbours and a missing mirror', () => {
    expect(() => neighbourCopy({ model, lost: L(1), neighbour: { layout: L(2), params: values(1, L(2)) }, mirror: new Map() })).toThrow(/intermediate/)
    expect(() => neighbourCopy({ model, lost: L(0), neighbour: { layout: L(2), params: values(1, L(2)) }, mirror: new Map() })).toThrow(/copied from stage 1/)
    expect(() => neighbourCopy({ model, lost: L(0), neighbour: { layout: L(1), params: values(1, L(1)) }, mirror: new Map() })).toThrow(/mirror has no parameter embed/)
  })
})

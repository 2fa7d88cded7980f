/**
 * CheckFree+'s two layouts (model/schedule.ts): the paper layout's routes take no extra hop, its
 * holders run borrowed copies of the embedding and head, and one iteration under it (copies
 * borrowed, their gradients added to the owners', owners stepping) leaves every stage with the
 * weights the spotpipe layout gives.
 */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { embedSpecs, headSpecs, stageLayout } from '../model/params.js'
import { lossMicrobatchesByStage, route, sharedPart } from '../model/schedule.js'
import { Stage } from '../model/stage.js'
import { runMicrobatch } from '../model/trainer.js'
import { mulberry32 } from '../model/rng.js'
import { stageNeedsTokens } from '../node/stage-runtime.js'

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })

describe('CheckFree+ paper layout: routes', () => {
  for (let S = 2; S <= 8; S++) {
    it(`${S} stages: a swapped microbatch embeds on stage 1 and ends on S-2, with no extra hop`, () => {
      for (let mb = 0; mb < 4; mb++) {
        const paper = route(S, mb, true, 'paper')
        const spot = route(S, mb, true, 'spotpipe')
        const swapped = S >= 4 && mb % 2 === 1
        if (!swapped) { expect(paper).toEqual(spot); continue }
        expect(spot.length).toBe(S + 2) // 0(embed) 1 0 ... S-1 S-2 S-1(head)
        expect(paper.length).toBe(S)
        expect(paper[0]).toEqual({ stage: 1, parts: ['embed', 'blocks'] })
        expect(paper[1]).toEqual({ stage: 0, parts: ['blocks'] })
        expect(paper[S - 2]).toEqual({ stage: S - 1, parts: ['blocks'] })
        expect(paper[S - 1]).toEqual({ stage: S - 2, parts: ['blocks', 'head'] })
        // the blocks run in the same order under both layouts: the same function
        const blocks = (hops: typeof paper): number[] => hops.filter(h => h.parts.includes('blocks')).map(h => h.stage)
        expect(blocks(paper)).toEqual(blocks(spot))
      }
    })
  }

  it('names owner and holder of each shared part, and who reports which losses', () => {
    expect(sharedPart(0, 6, true, 'paper')).toEqual({ part: 'embed', role: 'owner', peer: 1 })
    expect(sharedPart(1, 6, true, 'paper')).toEqual({ part: 'embed', role: 'holder', peer: 0 })
    expect(sharedPart(4, 6, true, 'paper')).toEqual({ part: 'head', role: 'holder', peer: 5 })
    expect(sharedPart(5, 6, true, 'paper')).toEqual({ part: 'head', role: 'owner', peer: 4 })
    expect(sharedPart(2, 6, true, 'paper')).toBeUndefined()
    expect(sharedPart(0, 6, true, 'spotpipe')).toBeUndefined()
    expect(sharedPart(0, 6, false, 'paper')).toBeUndefined()
    expect(sharedPart(1, 3, true, 'paper')).toBeUndefined() // fewer than 4 stages: nothing swaps
    expect([...lossMicrobatchesByStage(4, 5, true, 'paper')].sort()).toEqual([[2, 2], [3, 3]])
    expect([...lossMicrobatchesByStage(4, 5, true, 'spotpipe')]).toEqual([[3, 5]])
    // stage 1 and S-2 read tokens under the paper layout (inputs, targets); the middle does not
    expect([0, 1, 2, 3, 4, 5].map(s => stageNeedsTokens(s, 6, 4, true, 'paper'))).toEqual([true, true, false, false, true, true])
    expect([0, 1, 2, 3, 4, 5].map(s => stageNeedsTokens(s, 6, 4, true, 'spotpipe'))).toEqual([true, false, false, false, false, true])
  })
})

describe('CheckFree+ paper layout: borrowed parts', () => {
  const model = resolveModelConfig({ dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 8, vocab: 40 })
  const train = resolveTrainConfig({ stages: 4, microbatches: 4, microbatchSize: 2, lr: 1e-2 }, model)
  const make = (): Stage[] => Array.from({ length: 4 }, (_, s) => new Stage({ model, train, layout: stageLayout(model, 4, s) }))
  const pick = (values: Map<string, Float32Array>, names: string[]): Map<string, Float32Array> => new Map(names.map(n => [n, values.get(n) as Float32Array]))

  it('two iterations under the paper layout leave every stage with the spotpipe layout\'s weights, and no tensor behind', () => {
    // the first step anywhere makes one tensor tfjs keeps for good: warm up before counting
    const warm = make()
    const wx = tf.tensor2d(new Int32Array(16), [2, 8], 'int32')
    runMicrobatch(warm, 0, wx, wx, true)
    for (const st of warm) { st.step(1); st.dispose() }
    wx.dispose()
    const before = tf.memory().numTensors
    const spot = make()
    const paper = make()
    const rand = mulberry32(5)
    const ints = (): tf.Tensor2D => tf.tensor2d(Array.from({ length: 2 * 8 }, () => Math.floor(rand() * 40)), [2, 8], 'int32')
    try {
      for (let it = 0; it < 2; it++) {
        // the holders borrow the owners' parts as committed before the iteration
        paper[1].borrow('embed', pick(paper[0].readParams(), embedSpecs(model).map(s => s.name)))
        paper[2].borrow('head', pick(paper[3].readParams(), headSpecs(model).map(s => s.name)))
        for (let mb = 0; mb < 4; mb++) {
          const x = ints(); const y = ints()
          const a = runMicrobatch(spot, mb, x, y, true, 'spotpipe')
          const b = runMicrobatch(paper, mb, x, y, true, 'paper')
          expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-5 * Math.abs(a))
          x.dispose(); y.dispose()
        }
        // what the two-member all-reduce does: owner and holder add their sums
        for (const [owner, holder, part] of [[0, 1, 'embed'], [3, 2, 'head']] as const) {
          const mine = paper[owner].partGradientSums(part)
          const theirs = paper[holder].borrowedGradientSums(part)
          expect(theirs.some(t => t.some(v => v !== 0)), `stage ${holder}'s borrowed ${part} got a gradient`).toBe(true)
          paper[owner].setPartGradientSums(part, mine.map((m, i) => m.map((v, j) => v + theirs[i][j])))
        }
        for (const st of [...spot, ...paper]) st.step(4)
      }
      for (let s = 0; s < 4; s++) {
        const want = spot[s].readParams()
        const got = paper[s].readParams()
        expect([...got.keys()]).toEqual([...want.keys()]) // a holder owns no more than before
        for (const [n, w] of want) {
          const g = got.get(n) as Float32Array
          let worst = 0
          for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(g[i] - w[i]))
          expect(worst, `stage ${s} ${n}`).toBeLessThanOrEqual(1e-5)
        }
      }
    } finally {
      for (const st of [...spot, ...paper]) st.dispose()
    }
    expect(tf.memory().numTensors).toBe(before)
  })

  it('refuses what it cannot do, naming the problem', () => {
    const st = make()
    try {
      expect(() => st[0].borrow('embed', new Map())).toThrow(/owns its embed/)
      expect(() => st[1].borrow('embed', new Map())).toThrow(/lacks embed.tok/)
      const values = pick(st[0].readParams(), embedSpecs(model).map(s => s.name))
      values.set('embed.pos', new Float32Array(3))
      expect(() => st[1].borrow('embed', values)).toThrow(/embed.pos: expected 128 values/)
      const x = tf.tensor2d(new Int32Array(16), [2, 8], 'int32')
      expect(() => st[1].forward('k', x, ['embed', 'blocks'])).toThrow(/has no embedding/)
      x.dispose()
      expect(() => st[1].borrowedGradientSums('head')).not.toThrow() // nothing borrowed: zeros
      expect(() => st[0].setPartGradientSums('embed', [new Float32Array(1)])).toThrow(/2 parameters of its embed/)
    } finally {
      for (const s of st) s.dispose()
    }
  })
})

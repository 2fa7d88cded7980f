/**
 * The paper reproduction (sim/paper.ts, sim/reproduce.ts): the cost profile gives the paper's own
 * iteration times, a proxy step stands for K paper iterations (per-iteration costs K times, events
 * once), the rates convert per step, and a shrunk `paper-500m` experiment writes the side-by-side
 * report.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import * as tf from '@tensorflow/tfjs'
import { MODEL_PRESETS } from '../sim/presets.js'
import { paperConversion, paperCostModel, paperIterationsToTarget, paperSetting, paperSizes } from '../sim/paper.js'
import { runModelExperiment } from '../sim/experiment.js'
import { buildReproduction, writeReproduction } from '../sim/reproduce.js'
import { runModelMode } from '../sim/model-mode.js'
import { costModelForModel } from '../sim/cost-profiles.js'
import { generateTrace, resolveFailureRate } from '../sim/trace.js'
import { resolveModelConfig } from '../model/index.js'

const dir = mkdtempSync(join(tmpdir(), 'spotpipe-paper-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const plain = { swaps: false, redundantCompute: false }
const setting = paperSetting('paper-500m')

describe('the paper-500m cost profile', () => {
  it('gives the paper\'s iteration times: 91.32 s plain, 151.04 s with redundant computation, 3 s per checkpoint save', () => {
    const { cost } = paperCostModel(setting, 1)
    expect(cost.iterationS(plain)).toBeCloseTo(91.32, 6)
    expect(cost.iterationS({ swaps: false, redundantCompute: true })).toBeCloseTo(151.04, 6)
    const save = cost.checkpointSave(plain)
    // checkpointing's 91.35 s is CheckFree's 91.32 s plus one 3-s save every 100 iterations
    expect(cost.iterationS(plain) + (save.copyS + save.contentionS) / setting.checkpointEvery).toBeCloseTo(91.35, 6)
    expect(cost.stages).toBe(6)
    // sizes are the paper model's: 24 LLaMa layers of d 1024 over 6 stages
    expect(paperSizes(setting).blockParams).toBe(4 * (12 * 1024 * 1024 + 2 * 1024))
  })

  it('charges the CheckFree+ layouts differently: four extra hops (spotpipe) or the mirrors\' gradient exchange (paper)', () => {
    const { cost } = paperCostModel(setting, 1)
    const spot = cost.iterationS({ swaps: true, redundantCompute: false, plusLayout: 'spotpipe' }) - cost.iterationS(plain)
    const paper = cost.iterationS({ swaps: true, redundantCompute: false, plusLayout: 'paper' }) - cost.iterationS(plain)
    expect(spot).toBeCloseTo(4 * cost.hopS, 9)
    expect(paper).toBeCloseTo(cost.linkS(Math.max(cost.p.embedParams, cost.p.headParams) * cost.p.bytesPerParam), 9)
    expect(paper).not.toBeCloseTo(spot, 3)
  })

  it('a proxy step of K paper iterations charges per-iteration costs K times and a recovery once', () => {
    const one = paperCostModel(setting, 1).cost
    const k20 = paperCostModel(setting, 20).cost
    expect(k20.iterationS(plain)).toBeCloseTo(20 * one.iterationS(plain), 6)
    expect(k20.shadowRefresh(plain).seconds).toBeCloseTo(20 * one.shadowRefresh(plain).seconds, 9)
    expect(k20.checkfreeRebuild(1).seconds).toBe(one.checkfreeRebuild(1).seconds)
    expect(k20.checkpointSave(plain).copyS).toBe(one.checkpointSave(plain).copyS)
    expect(k20.p.rebuildOverheadS).toBe(30)
  })

  it('converts the paper\'s rates per proxy step and reads Table 2 back as iterations', () => {
    const c = paperConversion(setting.columns[2], 20, 20 * 91.32)
    expect(c.perIteration).toBeCloseTo(1 - 0.996 ** 20, 12)
    expect(c.hourlyRate).toBeCloseTo(1 - 0.996 ** (3600 / 91.32), 12)
    expect(paperIterationsToTarget(setting, 'redundant-compute', 0)).toBeCloseTo(10000, 0)
    expect(paperIterationsToTarget(setting, 'checkfree-plus', 2)).toBeCloseTo(18000, 0)
    expect(paperIterationsToTarget(paperSetting('paper-124m'), 'checkfree', 0)).toBeNull()
    expect(() => paperSetting('paper-7b')).toThrow(/unknown paper setting "paper-7b"/)
  })
})

describe('failures at microbatch 0 (the paper\'s injection point)', () => {
  it('waste no part of the iteration, where failures at the trace\'s offsets do', () => {
    const model = { dModel: 8, nHeads: 2, nBlocks: 4, seqLen: 8 }
    const train = { stages: 4, microbatches: 2, microbatchSize: 2, evalEvery: 5, evalBatches: 1 }
    const cost = costModelForModel(resolveModelConfig(model), { stages: 4, microbatches: 2, microbatchSize: 2 }, 0.01)
    const trace = generateTrace({ seed: 3, stages: 4, iterations: 60, conversion: resolveFailureRate({ perIteration: 0.1, iterationS: cost.iterationS(plain) }) })
    const run = (failAtStart: boolean): number => runModelMode({ model, train, iterations: 12, strategy: 'checkfree', trace, cost, failAtStart }).totals.seconds.wasted
    expect(run(false)).toBeGreaterThan(0) // (also warms the op caches)
    const before = tf.memory().numTensors
    expect(run(true)).toBe(0)
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('spotpipe sim --preset paper-500m --report (shrunk)', () => {
  it('writes the paper\'s table beside spotpipe\'s with the same rows and columns, the orderings, the sources and the plot', async () => {
    const p = MODEL_PRESETS['paper-500m']
    const out = join(dir, 'rep')
    const r = await runModelExperiment({
      ...p,
      name: 'paper-500m',
      model: { dModel: 8, nHeads: 2, nBlocks: 6, seqLen: 8 },
      train: { ...p.train, microbatchSize: 2, evalEvery: 4, evalBatches: 1 },
      iterations: 20,
      maxIterationsFactor: 2,
      seeds: [1],
      workers: 0,
      out,
      quiet: true
    })
    expect(r.paper?.iterationsPerStep).toBeCloseTo(10000 / 16, 9)
    const { text, reproduction: rep } = writeReproduction(r)
    expect(rep.columns).toEqual(['5%/h', '10%/h', '16%/h'])
    expect(rep.rows.map(x => x.strategy)).toEqual(['checkpoint-whole', 'redundant-compute', 'checkfree', 'checkfree-plus'])
    // the paper's numbers are Table 2's, and ours are per seed
    expect(rep.rows[0].cells.map(c => c.paperH)).toEqual([558.23, 621.67, 634.35])
    for (const row of rep.rows) for (const c of row.cells) expect(c.hours).toHaveLength(1)
    // the failure-free run reaches its target no later than the paper's failure-free 10,000 iterations
    expect(rep.failureFreeH.paper).toBeCloseTo(10000 * 91.32 / 3600, 6)
    expect(rep.failureFreeH.ours).not.toBeNull()
    expect(rep.failureFreeH.ours as number).toBeLessThanOrEqual(rep.failureFreeH.paper + 1e-6)
    // the rows' failure-free iteration times are the paper's
    expect(rep.rows.find(x => x.strategy === 'redundant-compute')?.cells[0].iterationS).toBeCloseTo(151.04, 6)
    // a cell whose runs never reached the target says how long they ran
    expect(text).toMatch(/>\d+ \(0\/1\)|\d+\.\d \[/)
    for (const o of rep.ordering) {
      expect([...o.ours].sort()).toEqual([...rep.rows.map(x => x.strategy)].sort())
      expect(o.paper).not.toBeNull()
    }
    expect(rep.ordering[0].paper).toEqual(['checkfree-plus', 'checkfree', 'redundant-compute', 'checkpoint-whole'])
    expect(text).toContain('| checkpointing | 91.35 / 91.35 / 92.14 | 558.23 | 621.67 | 634.35 |')
    // ours: seconds per computed iteration without the failures' costs, the saves' share included
    const ours = (s: string): number => rep.rows.find(x => x.strategy === s)?.cells[0].iterationS ?? NaN
    expect(ours('checkfree')).toBeCloseTo(91.32, 6)
    expect(ours('checkfree-plus')).toBeCloseTo(91.32 + paperCostModel(setting, 1).cost.swapExtraS({ swaps: true, redundantCompute: false, plusLayout: 'paper' }), 6)
    expect(text).toMatch(/\| CheckFree\+ \(`checkfree-plus`\) \| 91\.4\d /)
    expect(text).toContain('Table 2, redundant computation')
    const md = readFileSync(join(out, 'reproduction.md'), 'utf8')
    expect(md).toBe(text)
    const svg = readFileSync(join(out, 'hours.svg'), 'utf8')
    const lines = [...svg.matchAll(/<polyline[^>]*\sdata-strategy="([^"]+)"/g)].map(m => m[1])
    expect(lines).toContain('paper: CheckFree+')
    expect(buildReproduction(r).rows).toHaveLength(4)
  })
})

import * as tf from '@tensorflow/tfjs'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { loadBrownCorpus } from '../model/data.js'
import { costModelForModel } from '../sim/cost-profiles.js'
import { runModelExperiment } from '../sim/experiment.js'
import { runModelMode, type ModelModeConfig, type RunResult } from '../sim/model-mode.js'
import { renderSvg } from '../sim/png.js'
import { MODEL_PRESETS } from '../sim/presets.js'
import { STRATEGIES, type StrategyName } from '../sim/strategies.js'
import { generateTrace, makeTrace, resolveFailureRate, type Trace } from '../sim/trace.js'

const dir = mkdtempSync(join(tmpdir(), 'spotpipe-sim-'))
beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

// A tiny pipeline: 4 stages of one block each, so each run takes a second or two.
const model = resolveModelConfig({ dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 16 })
const train = resolveTrainConfig({ stages: 4, microbatches: 2, microbatchSize: 2, evalEvery: 5, evalBatches: 1 }, model)
const cost = costModelForModel(model, train, 0.01) // a fixed step time keeps wall-clock reproducible

function run (strategy: StrategyName, trace: Trace | undefined, iterations = 20, extra: Partial<ModelModeConfig> = {}): RunResult {
  return runModelMode({ model, train, iterations, strategy, trace, cost, corpus: loadBrownCorpus(), options: { checkpointEvery: 10 }, ...extra })
}

const crashAt = (iteration: number, ...stages: number[]): Trace =>
  makeTrace({ stages: 4, iterations: 200, events: stages.map(stage => ({ iteration, stage, kind: 'crash' as const })) })

const rungsOf = (r: RunResult): string[] => r.recoveries.map(x => `${x.stage}:${x.rung}${x.scope === 'whole' ? ':whole' : ''}`)

describe('model mode', () => {
  it('replays: the same seed and trace give the same events and the same loss curve', () => {
    const trace = generateTrace({ seed: 4, stages: 4, iterations: 200, conversion: resolveFailureRate({ perIteration: 0.05, iterationS: 1 }) })
    expect(trace.events.filter(e => e.kind === 'crash' && e.iteration < 30).length).toBeGreaterThan(1)
    const a = run('checkfree-plus', trace, 30)
    const b = run('checkfree-plus', trace, 30)
    expect(a.recoveries.length).toBeGreaterThan(1)
    expect(b.rows).toEqual(a.rows)
    expect(b.evals).toEqual(a.evals)
    expect(b.recoveries).toEqual(a.recoveries)
    expect(b.totals).toEqual(a.totals)
  })

  it('an intermediate crash is rebuilt by CheckFree; the first stage falls back to the checkpoint', () => {
    expect(rungsOf(run('checkfree', crashAt(6, 2)))).toEqual(['2:checkfree'])
    const first = run('checkfree', crashAt(14, 0))
    expect(rungsOf(first)).toEqual(['0:checkpoint'])
    // The checkpoint of iteration 10 was loaded: the stage lost its 4 later iterations.
    expect(first.recoveries[0].checkpointIteration).toBe(10)
    expect(first.recoveries[0].iterationsLost).toBe(4)
  })

  it('CheckFree+ recovers the first and the last stage by neighbour copy', () => {
    expect(rungsOf(run('checkfree-plus', crashAt(6, 0)))).toEqual(['0:checkfree-plus'])
    expect(rungsOf(run('checkfree-plus', crashAt(6, 3)))).toEqual(['3:checkfree-plus'])
    expect(rungsOf(run('checkfree-plus', crashAt(6, 1)))).toEqual(['1:checkfree'])
  })

  it('two adjacent stages lost at once fall back to the checkpoint rung', () => {
    expect(rungsOf(run('checkfree', crashAt(6, 1, 2)))).toEqual(['1:checkpoint', '2:checkpoint'])
    expect(rungsOf(run('checkfree-plus', crashAt(6, 0, 1)))).toEqual(['0:checkpoint', '1:checkpoint'])
    // Not adjacent: each keeps its own rung.
    expect(rungsOf(run('checkfree-plus', crashAt(6, 0, 2)))).toEqual(['0:checkfree-plus', '2:checkfree'])
    // Redundant: the lost stage's shadow holder crashed too.
    expect(rungsOf(run('redundant', crashAt(6, 1, 2)))).toEqual(['1:replica', '2:checkpoint'])
  })

  it('redundant recovery is exact: its loss curve is the failure-free one, only slower', () => {
    const none = run('none', undefined)
    for (const strategy of ['redundant', 'redundant-compute'] as const) {
      const red = run(strategy, crashAt(7, 2))
      expect(rungsOf(red)).toEqual(['2:replica'])
      expect(red.evals.map(e => e.valLoss)).toEqual(none.evals.map(e => e.valLoss))
      expect(red.totals.wallS).toBeGreaterThan(none.totals.wallS)
    }
    // A spot notice is a graceful handover, also exact.
    const notice = run('checkfree', makeTrace({ stages: 4, iterations: 100, events: [{ iteration: 5, stage: 1, kind: 'notice' }] }))
    expect(rungsOf(notice)).toEqual(['1:handover'])
    expect(notice.evals.map(e => e.valLoss)).toEqual(none.evals.map(e => e.valLoss))
  })

  it('checkpoint-whole rolls every stage back and redoes the lost iterations', () => {
    const r = run('checkpoint-whole', crashAt(15, 2))
    expect(rungsOf(r)).toEqual(['2:checkpoint:whole'])
    expect(r.totals.iterationsRedone).toBe(5)
    expect(r.totals.computedIterations).toBe(25)
    expect(r.totals.attempts).toBe(26) // 20 iterations + 5 redone + the aborted attempt
    // The stage-only checkpoint keeps the others' progress.
    const s = run('checkpoint', crashAt(15, 2))
    expect(s.totals.iterationsRedone).toBe(0)
    expect(s.totals.stageIterationsLost).toBe(5)
    expect(s.totals.attempts).toBe(21)
  })

  it('charges detection, the wasted part of the attempt and the redundant overheads in wall-clock', () => {
    const none = run('none', undefined)
    const cf = run('checkfree', crashAt(6, 2))
    expect(cf.totals.seconds.detection).toBe(cost.p.detectionS)
    expect(cf.totals.wallS).toBeGreaterThan(none.totals.wallS + cost.p.detectionS)
    const noFailures = makeTrace({ stages: 4, iterations: 100, events: [] })
    // Redundant computation: a longer iteration. The shadow copy: the same iteration, plus the pulls
    // of every stage's state after each commit, sharing the links.
    expect(run('redundant-compute', undefined, 20, { trace: noFailures }).iterationS).toBeGreaterThan(none.iterationS)
    const copy = run('redundant', undefined, 20, { trace: noFailures })
    expect(copy.iterationS).toBe(none.iterationS)
    expect(copy.totals.bytes.shadows).toBe(20 * cost.totalBytes(true))
    expect(copy.totals.wallS).toBeGreaterThan(none.totals.wallS)
  })

  it('stops at a target loss, and leaves no tensors behind', () => {
    const trace = generateTrace({ seed: 9, stages: 4, iterations: 300, conversion: resolveFailureRate({ perIteration: 0.03, iterationS: 1 }) })
    run('checkfree-plus', trace, 10) // warm the op caches
    const before = tf.memory().numTensors
    for (const s of STRATEGIES) run(s, s === 'none' ? undefined : trace, 25)
    expect(tf.memory().numTensors).toBe(before)
    const full = run('none', undefined, 30)
    const target = full.evals[3].valLoss
    const stopped = run('none', undefined, 30, { stopAtTarget: target })
    expect(stopped.totals.iterations).toBeLessThan(30)
    expect(stopped.evals[stopped.evals.length - 1].valLoss).toBeLessThanOrEqual(target)
  })
})

describe('model-mode experiment outputs', () => {
  it('writes per-run CSV and JSON, the summary with ratios, and an SVG with one line per strategy and its PNG', async () => {
    const out = join(dir, 'exp')
    const q = MODEL_PRESETS.quick
    const r = await runModelExperiment({
      ...q,
      name: 'test',
      model: { dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 16 },
      train: { stages: 4, microbatches: 2, microbatchSize: 2, evalEvery: 5, evalBatches: 1 },
      iterations: 30,
      seeds: [1, 2],
      scenarios: [{ name: 'hi', perIteration: 0.03, matchHourly: 0.33 }],
      stepS: 0.01,
      workers: 0,
      out,
      quiet: true
    })
    const sc = r.scenarios[0]
    for (const s of STRATEGIES) {
      const seeds = s === 'none' ? [0] : [1, 2]
      for (const seed of seeds) {
        const csv = readFileSync(join(out, 'hi', 'runs', `${s}-seed${seed}.csv`), 'utf8').trim().split('\n')
        expect(csv[0]).toBe('step,iteration,wall_s,loss,val_loss,events')
        expect(csv.length).toBeGreaterThan(10)
        const json = JSON.parse(readFileSync(join(out, 'hi', 'runs', `${s}-seed${seed}.json`), 'utf8')) as RunResult
        expect(json.strategy).toBe(s)
        expect(json.rows.length).toBe(csv.length - 1)
      }
    }
    for (const seed of [1, 2]) expect(existsSync(join(out, 'hi', 'traces', `seed${seed}.json`))).toBe(true)
    const text = readFileSync(join(out, 'hi', 'summary.txt'), 'utf8')
    for (const s of STRATEGIES) expect(text).toContain(s)
    expect(readFileSync(r.summaryPath, 'utf8')).toContain('time scale')
    // The reference's ratio to itself is 1 for every seed that reached the target.
    const ref = sc.summary.strategies.find(s => s.strategy === 'checkfree-plus')
    expect(ref?.ratio.every(x => x == null || x === 1)).toBe(true)
    const svg = readFileSync(sc.svg, 'utf8')
    const lines = [...svg.matchAll(/<polyline[^>]*\sdata-strategy="([^"]+)"/g)].map(m => m[1]).sort()
    expect(lines).toEqual([...STRATEGIES].sort())
    // The PNG beside it is resvg's render of that same SVG text.
    expect(readFileSync(sc.png).equals(renderSvg(svg).png)).toBe(true)
  })
})

import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { loadBrownCorpus } from '../model/data.js'
import { costModelForModel } from '../sim/cost-profiles.js'
import { runModelMode } from '../sim/model-mode.js'
import { foldReplicaEvents, replicaTrace } from '../sim/replica-trace.js'
import { generateTrace, makeTrace, parseTrace, resolveFailureRate, serializeTrace, type TraceEvent } from '../sim/trace.js'

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })

const crash = (iteration: number, slot: number): TraceEvent => ({ iteration, timeS: iteration + 0.5, stage: slot, kind: 'crash' })

describe('per-peer failures of R replicas per stage, folded into stage events (sim/replica-trace.ts)', () => {
  it('a failure while another replica is up is a replica loss; the last one up is a whole-stage loss', () => {
    // 2 stages x 2 replicas: slot v is replica floor(v / 2) of stage v % 2; a lost replica is missing 3 iterations
    const events = foldReplicaEvents([crash(10, 0), crash(11, 2), crash(20, 1), crash(30, 3), crash(31, 3), crash(40, 0), crash(43, 2)], 2, 2, 3)
    expect(events.map(e => [e.iteration, e.stage, e.kind])).toEqual([
      [10, 0, 'replica-loss'], // stage 0 replica 0; replica 1 is up
      [11, 0, 'crash'], [11, 0, 'join'], // stage 0 replica 1 while replica 0 is still missing: the stage is gone
      [20, 1, 'replica-loss'],
      [30, 1, 'replica-loss'], // stage 1 replica 1, replica 0 back since 23
      // 31: replica 1 of stage 1 again: it is still missing (until 33), so nothing more fails
      [40, 0, 'replica-loss'],
      [43, 0, 'replica-loss'] // replica 0 is back at 43: not a stage loss
    ])
  })

  it('is seeded and replayable, and with more replicas loses whole stages far less often', () => {
    const conversion = resolveFailureRate({ perIteration: 0.01, iterationS: 1 })
    const a = replicaTrace({ seed: 3, stages: 4, replicas: 2, iterations: 20_000, conversion, windowIterations: 5 })
    expect(replicaTrace({ seed: 3, stages: 4, replicas: 2, iterations: 20_000, conversion, windowIterations: 5 })).toEqual(a)
    expect(a.replicas).toBe(2)
    const one = generateTrace({ seed: 3, stages: 4, iterations: 20_000, conversion })
    const lossesOf = (t: { events: TraceEvent[] }): number => t.events.filter(e => e.kind === 'crash' || e.kind === 'notice').length
    const r1 = lossesOf(one)
    const r2 = lossesOf(a)
    // p per peer per iteration, window w: a stage loss needs the other replica down too, ~ 2 p w per failure
    expect(r1).toBeGreaterThan(500)
    expect(r2).toBeLessThan(r1 * 0.3)
    expect(a.events.filter(e => e.kind === 'replica-loss').length).toBeGreaterThan(r1)
    expect(replicaTrace({ seed: 3, stages: 4, replicas: 1, iterations: 2000, conversion, windowIterations: 5 })).toEqual(generateTrace({ seed: 3, stages: 4, iterations: 2000, conversion }))
    // the file keeps the replica count; a bad one is refused
    expect(parseTrace(serializeTrace(a)).replicas).toBe(2)
    expect(() => parseTrace(serializeTrace({ ...a, replicas: 0 }))).toThrow(/replicas: expected an integer >= 1/)
    expect(() => replicaTrace({ seed: 3, stages: 4, replicas: 2, iterations: 10, conversion, windowIterations: 0 })).toThrow(/windowIterations/)
  })
})

describe('model mode with replicas', () => {
  const model = resolveModelConfig({ dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 16 })
  const train = resolveTrainConfig({ stages: 4, microbatches: 2, microbatchSize: 2, evalEvery: 5, evalBatches: 1 }, model)
  const cost = costModelForModel(model, train, 0.01)

  it('a replica loss costs the attempt and detection but rebuilds nothing and leaves the loss curve alone', () => {
    const base = makeTrace({ stages: 4, iterations: 100, events: [] })
    const withLoss = makeTrace({ stages: 4, iterations: 100, events: [{ iteration: 4, stage: 2, kind: 'replica-loss' }] })
    const r2 = { ...withLoss, replicas: 2 }
    const clean = runModelMode({ model, train, iterations: 10, strategy: 'checkfree', trace: { ...base, replicas: 2 }, cost, corpus: loadBrownCorpus() })
    const lossy = runModelMode({ model, train, iterations: 10, strategy: 'checkfree', trace: r2, cost, corpus: loadBrownCorpus() })
    expect(lossy.recoveries).toEqual([])
    expect(lossy.totals.replicaLosses).toBe(1)
    expect(lossy.totals.abortedAttempts).toBe(1)
    expect(lossy.rows.find(r => r.events.includes('replica of s2 lost'))).toBeDefined()
    // the same iterations trained: the same losses; only the wall clock paid (detection + the aborted share)
    expect(lossy.rows.filter(r => r.loss != null).map(r => r.loss)).toEqual(clean.rows.filter(r => r.loss != null).map(r => r.loss))
    expect(lossy.totals.wallS - clean.totals.wallS).toBeCloseTo(cost.p.detectionS + 0.5 * lossy.iterationS, 6)
    // two replicas spread the microbatches: a shorter iteration than one replica's, by the cost model
    const single = runModelMode({ model, train, iterations: 2, strategy: 'checkfree', trace: base, cost, corpus: loadBrownCorpus() })
    expect(clean.iterationS).toBeLessThan(single.iterationS)
  })
})

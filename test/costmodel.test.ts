import { describe, expect, it } from 'vitest'
import { resolveModelConfig, resolveTrainConfig } from '../model/index.js'
import { costModelForModel } from '../sim/cost-profiles.js'
import { CostValidationError, median, predictFigures, predictRecovery, relativeError } from '../sim/cost-validation.js'
import { pipelineMakespan } from '../sim/pipeline-schedule.js'

const PLAIN = { swaps: false, redundantCompute: false }
const model = resolveModelConfig({})
const train = resolveTrainConfig({}, model)
// a 1.6 s single-process step: 100 ms per slot
const base = costModelForModel(model, train, 1.6)

describe('pipelineMakespan', () => {
  const uniform = (S: number, x: number): number[] => new Array<number>(S).fill(x)
  it('is (M + S - 1) x (forward + backward) with a core per stage and no hop time', () => {
    expect(pipelineMakespan({ stages: 4, microbatches: 4, forwardS: uniform(4, 1), backwardS: uniform(4, 2), hopS: 0, cores: Infinity })).toBeCloseTo(21, 9)
    expect(pipelineMakespan({ stages: 3, microbatches: 5, forwardS: uniform(3, 1), backwardS: uniform(3, 2), hopS: 0, cores: 3 })).toBeCloseTo(21, 9)
  })

  it('is all the work in a row on one core', () => {
    expect(pipelineMakespan({ stages: 4, microbatches: 4, forwardS: uniform(4, 1), backwardS: uniform(4, 2), stepS: uniform(4, 0.5), hopS: 0, cores: 1 })).toBeCloseTo(4 * 4 * 3 + 4 * 0.5, 9)
  })

  it('lies between the two with two cores for four stages, and hops lengthen it', () => {
    const two = pipelineMakespan({ stages: 4, microbatches: 4, forwardS: uniform(4, 1), backwardS: uniform(4, 2), hopS: 0, cores: 2 })
    expect(two).toBeGreaterThan(21)
    expect(two).toBeLessThan(48)
    // the critical path crosses S - 1 links each way
    expect(pipelineMakespan({ stages: 4, microbatches: 4, forwardS: uniform(4, 1), backwardS: uniform(4, 2), hopS: 0.1, cores: Infinity })).toBeCloseTo(21 + 6 * 0.1, 9)
  })

  it('puts a cold stage\'s extra on its first forward and first backward', () => {
    const plain = { stages: 4, microbatches: 4, forwardS: uniform(4, 1), backwardS: uniform(4, 2), hopS: 0, cores: Infinity }
    // the last stage's first forward and backward are on the critical path: all of it shows
    expect(pipelineMakespan({ ...plain, firstForwardExtraS: [0, 0, 0, 0.5], firstBackwardExtraS: [0, 0, 0, 0.25] })).toBeCloseTo(21 + 0.75, 9)
    // stage 0's first forward delays everything behind it
    expect(pipelineMakespan({ ...plain, firstForwardExtraS: [0.5, 0, 0, 0] })).toBeCloseTo(21 + 0.5, 9)
    // the same extra spread over all four forwards lands partly in the pipeline's bubbles
    expect(pipelineMakespan({ ...plain, forwardS: [1.125, 1, 1, 1] })).toBeLessThan(21 + 0.5)
    expect(() => pipelineMakespan({ ...plain, firstForwardExtraS: [0, -1, 0, 0] })).toThrow(/firstForwardExtraS must hold non-negative/)
  })

  it('refuses shapes it cannot run', () => {
    expect(() => pipelineMakespan({ stages: 2, microbatches: 2, forwardS: [1], backwardS: [1, 1], hopS: 0, cores: 1 })).toThrow(/forwardS has 1 entries/)
    expect(() => pipelineMakespan({ stages: 2, microbatches: 2, forwardS: [1, 1], backwardS: [1, 1], hopS: 0, cores: 0 })).toThrow(/cores must be > 0/)
  })
})

describe('the cost model on one shared host', () => {
  it('leaves every figure unchanged while the new parameters are unset', () => {
    const explicit = base.with({ iterationOverheadS: 0, roundOverheadS: 0, epochTakeS: 0, rebuildOverheadS: 0, coldIterationS: 0, transferCpuSPerByte: 0 })
    expect(explicit.iterationS(PLAIN)).toBe(base.iterationS(PLAIN))
    expect(explicit.exactCopy(1)).toEqual(base.exactCopy(1))
    expect(explicit.checkpointLoad([3])).toEqual(base.checkpointLoad([3]))
    expect(base.exactCopy(1).seconds).toBe(base.linkS(base.stageBytes(1, true)))
    expect(base.seededRebuild([3]).seconds).toBe(0)
    expect(explicit.checkpointSave(PLAIN)).toEqual(base.checkpointSave(PLAIN))
    expect(base.iterationS(PLAIN)).toBeCloseTo(7 * (0.1 + 2 * base.hopS), 12)
  })

  it('charges the control round trip per iteration', () => {
    const c = base.with({ iterationOverheadS: 0.05 })
    expect(c.iterationS(PLAIN) - base.iterationS(PLAIN)).toBeCloseTo(0.05, 12)
  })

  it('adds the coordinator\'s own part of a round to every recovery, and to nothing else', () => {
    const c = base.with({ epochTakeS: 0.3, rebuildOverheadS: 0.1 })
    const r = c.with({ roundOverheadS: 0.04 })
    for (const [name, f] of [
      ['checkfree', (m: typeof c) => m.checkfreeRebuild(1).seconds],
      ['checkfree-plus', (m: typeof c) => m.checkfreePlusCopy(0).seconds],
      ['exact copy', (m: typeof c) => m.exactCopy(2).seconds],
      ['checkpoint', (m: typeof c) => m.checkpointLoad([3]).seconds],
      ['seeded', (m: typeof c) => m.seededRebuild([3]).seconds]
    ] as const) expect(f(r) - f(c), name).toBeCloseTo(0.04, 12)
    expect(r.iterationS(PLAIN)).toBe(c.iterationS(PLAIN))
    expect(r.checkpointSave(PLAIN)).toEqual(c.checkpointSave(PLAIN))
    expect(r.shadowRefresh(PLAIN).seconds).toBe(c.shadowRefresh(PLAIN).seconds)
    expect(() => base.with({ roundOverheadS: -1 })).toThrow(/roundOverheadS must be a non-negative/)
  })

  it('runs the survivors\' epoch alongside the rebuilt peer\'s pull, which a peer donor serves only after it', () => {
    const c = base.with({ epochTakeS: 0.3, rebuildOverheadS: 0.1 })
    const fromStore = base.checkpointLoad([3]).seconds // the transfer alone
    // a peer donor is through its aborted compute when it takes the epoch: the pull comes after
    expect(c.checkfreeRebuild(1).seconds).toBeCloseTo(0.3 + 0.1 + base.checkfreeRebuild(1).seconds, 12)
    expect(c.exactCopy(2).seconds).toBeCloseTo(0.3 + 0.1 + base.exactCopy(2).seconds, 12)
    // the store serves at once: the round is the longer of the two paths
    expect(c.checkpointLoad([3]).seconds).toBeCloseTo(Math.max(0.3, 0.1 + fromStore), 12)
    expect(c.with({ epochTakeS: 5 }).checkpointLoad([3]).seconds).toBeCloseTo(5, 12)
    expect(c.seededRebuild([3]).seconds).toBeCloseTo(0.3, 12)
    // donors that take the epoch before the last survivor does serve sooner; the round still waits for the survivors
    expect(c.with({ donorReadyS: 0.1 }).checkfreeRebuild(1).seconds).toBeCloseTo(Math.max(0.3, 0.1 + 0.1 + base.checkfreeRebuild(1).seconds), 12)
    expect(c.with({ donorReadyS: 0 }).checkfreeRebuild(1).seconds).toBeCloseTo(0.3, 12)
    // the shadow pulls of `redundant` are no recovery round
    expect(c.shadowRefresh(PLAIN).seconds).toBe(base.shadowRefresh(PLAIN).seconds)
  })

  it('charges a cold first iteration as what it adds to the pipeline', () => {
    // a machine per stage: the cold part sits on the stage's first forward and backward, all of
    // the last stage's on the critical path, a middle stage's backward part partly in a bubble
    const own = base.with({ coldIterationS: 0.4 })
    expect(own.coldIterationDelayS([3])).toBeCloseTo(0.4, 9)
    expect(own.coldIterationDelayS([1])).toBeGreaterThan(0.4 / 3)
    expect(own.coldIterationDelayS([1])).toBeLessThan(0.4)
    expect(own.exactCopy(1).seconds - base.exactCopy(1).seconds).toBeCloseTo(own.coldIterationDelayS([1]), 12)
    // four stages on two cores: the other stages' compute overlaps more of a middle stage's
    const shared = base.with({ coldIterationS: 0.4, hostCores: 2 })
    expect(shared.coldIterationDelayS([1])).toBeGreaterThan(0)
    expect(shared.coldIterationDelayS([1])).toBeLessThan(own.coldIterationDelayS([1]))
    // two cold stages cost more than one; none costs nothing
    expect(shared.coldIterationDelayS([1, 2])).toBeGreaterThan(shared.coldIterationDelayS([1]))
    expect(shared.coldIterationDelayS([])).toBe(0)
    // a whole rollback reloads the survivors in place: only the rebuilt stage is cold
    const all = [0, 1, 2, 3]
    expect(shared.checkpointLoad(all, [3]).seconds - shared.with({ coldIterationS: 0 }).checkpointLoad(all, [3]).seconds).toBeCloseTo(shared.coldIterationDelayS([3]), 12)
  })

  it('makes four stages on two cores slower than a machine each, and charges an upload its CPU', () => {
    const shared = base.with({ hostCores: 2, transferCpuSPerByte: 20e-9 })
    expect(shared.iterationS(PLAIN)).toBeGreaterThan(base.iterationS(PLAIN) * 1.1)
    const one = base.with({ hostCores: 1, transferCpuSPerByte: 20e-9 })
    // one core: the upload's CPU is lost to training in the share the 1.6 s of compute keeps it busy
    // (the rest of the iteration is hops)
    const bytes = one.totalBytes(true)
    expect(one.cpuContentionS(bytes, PLAIN)).toBeCloseTo(bytes * 20e-9 * 1.6 / one.iterationS(PLAIN), 9)
    expect(one.iterationS(PLAIN)).toBeGreaterThan(1.6)
    // two cores: the same core-seconds, taken from the share of two busy cores, delay the work
    // spread over both by half as much
    const busy2 = Math.min(1, 1.6 / (2 * shared.iterationS(PLAIN)))
    expect(shared.cpuContentionS(bytes, PLAIN)).toBeCloseTo(bytes * 20e-9 * busy2 / 2, 9)
    expect(base.cpuContentionS(bytes, PLAIN)).toBe(0)
    // on one host a checkpoint upload costs the training its CPU only: no link share on top
    expect(shared.checkpointSave(PLAIN).contentionS).toBeCloseTo(shared.cpuContentionS(bytes, PLAIN), 12)
    expect(base.checkpointSave(PLAIN).contentionS).toBeCloseTo(base.checkpointSave(PLAIN).uploadS * base.linkBusyFraction(PLAIN), 12)
  })

  it('spreads an upload\'s CPU seconds over the CPU the host gives, not over its units of one process alone', () => {
    // 1.7 units of one process alone, from 2.0 CPU seconds per second: the busy share comes from
    // the work in units of one process alone, the spread from the cores in CPU seconds
    const units = base.with({ hostCores: 1.7, transferCpuSPerByte: 20e-9 })
    const cpu = units.with({ hostCpuCores: 2 })
    const bytes = units.totalBytes(true)
    expect(cpu.iterationS(PLAIN)).toBe(units.iterationS(PLAIN))
    expect(cpu.cpuContentionS(bytes, PLAIN)).toBeCloseTo(units.cpuContentionS(bytes, PLAIN) * 1.7 / 2, 12)
    const busy = Math.min(1, 1.6 / (1.7 * units.iterationS(PLAIN)))
    expect(cpu.cpuContentionS(bytes, PLAIN)).toBeCloseTo(bytes * 20e-9 * busy / 2, 12)
    expect(() => units.with({ hostCpuCores: 0 })).toThrow(/hostCpuCores must be > 0/)
  })
})

describe('predictFigures', () => {
  const cost = base.with({ detectionS: 0.01, noticeLeadS: 0, epochTakeS: 0.2 })

  it('charges a crash its detection and its rung, a notice its handover beyond the lead', () => {
    const p = predictFigures(cost, 'checkfree', [
      { kind: 'crash', stage: 1, checkpoint: 10 },
      { kind: 'notice', stage: 2, checkpoint: 10 },
      { kind: 'crash', stage: 3, checkpoint: 10 }
    ])
    expect(p.recoveries.map(r => r.rung)).toEqual(['checkfree', 'handover', 'checkpoint'])
    expect(p.recoveries[0].seconds).toBeCloseTo(0.01 + cost.checkfreeRebuild(1).seconds, 12)
    expect(p.recoveries[1].seconds).toBeCloseTo(cost.exactCopy(2).seconds, 12)
    expect(p.recoveries[2].seconds).toBeCloseTo(0.01 + cost.checkpointLoad([3]).seconds, 12)
    expect(p.iterationS).toBe(cost.iterationS(PLAIN))
    const save = cost.checkpointSave(PLAIN)
    expect(p.checkpointS).toBeCloseTo(save.copyS + save.contentionS, 12)
  })

  it('hides a handover behind a long enough notice, and loads nothing before the first checkpoint', () => {
    expect(predictRecovery(cost.with({ noticeLeadS: 30 }), 'checkfree', { kind: 'notice', stage: 2, checkpoint: 0 }).seconds).toBe(0)
    const first = predictRecovery(cost, 'checkfree', { kind: 'crash', stage: 3, checkpoint: 0 })
    expect(first.rung).toBe('checkpoint')
    expect(first.bytes).toBe(0)
    expect(first.seconds).toBeCloseTo(0.01 + 0.2, 12)
  })

  it('refuses a stage the model does not have', () => {
    expect(() => predictRecovery(cost, 'checkfree', { kind: 'crash', stage: 4, checkpoint: 0 })).toThrow(CostValidationError)
  })
})

describe('relativeError and median', () => {
  it('measure against the measurement', () => {
    expect(relativeError(1.2, 1)).toBeCloseTo(0.2, 12)
    expect(relativeError(0.5, 1)).toBeCloseTo(0.5, 12)
    expect(() => relativeError(1, 0)).toThrow(/positive measurement/)
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 2, 3])).toBe(2.5)
    expect(() => median([])).toThrow(CostValidationError)
  })
})

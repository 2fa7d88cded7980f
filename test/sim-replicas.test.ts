import { describe, expect, it } from 'vitest'
import { PAPER_HARNESS_PROFILE, SimConfigError, costModelForLlm, expectedStageLossesPerHour, replicaIterationS, runReplicaProjection } from '../sim/index.js'

describe('replicas projection', () => {
  it('counts whole-stage losses as the steady-state rate predicts, where they are frequent enough to count', () => {
    // a high per-peer rate so that R = 2 loses whole stages often enough to count in 2000 hours
    for (const R of [1, 2]) {
      const r = runReplicaProjection({ replicas: R, hourlyRate: 0.5, hours: 2000, seed: 3 })
      const expected = r.expectedStageLossesPerHour * r.hours
      expect(expected, `R=${R}`).toBeGreaterThan(50)
      // Poisson counts: within about 4 standard deviations
      expect(Math.abs(r.stageLosses - expected), `R=${R}: ${r.stageLosses} counted, ${expected.toFixed(1)} expected`).toBeLessThan(4 * Math.sqrt(expected) + 2)
      expect(r.replicaLosses + r.stageLosses).toBe(r.peerFailures)
    }
  })

  it('R = 1: every peer failure is a whole-stage loss; R > 1: nearly none is, at the paper\'s rates', () => {
    const one = runReplicaProjection({ replicas: 1, hourlyRate: 0.33, hours: 500 })
    expect(one.replicaLosses).toBe(0)
    expect(one.stageLosses).toBe(one.peerFailures)
    const three = runReplicaProjection({ replicas: 3, hourlyRate: 0.33, hours: 500 })
    expect(three.peerFailures).toBeGreaterThan(2.5 * one.peerFailures)
    expect(three.stageLosses).toBe(0)
    expect(one.expectedStageLossesPerHour / three.expectedStageLossesPerHour).toBeGreaterThan(1e4)
  })

  it('iteration time: the microbatches spread over the replicas, plus a ring all-reduce of 2(R-1)/R of the largest stage\'s gradients', () => {
    const cost = costModelForLlm(PAPER_HARNESS_PROFILE)
    const slot = cost.slotS({ swaps: false, redundantCompute: false })
    const S = cost.stages
    const M = cost.p.microbatches
    expect(replicaIterationS(cost, 1)).toEqual({ iterationS: (M + S - 1) * slot, allReduceS: 0 })
    const bytes = Math.max(...cost.p.stageParams) * cost.p.bytesPerParam
    const three = replicaIterationS(cost, 3)
    expect(three.allReduceS).toBeCloseTo(4 / 3 * bytes / cost.p.linkBytesPerS + 4 * cost.p.linkLatencyS, 9)
    expect(three.iterationS).toBeCloseTo((Math.ceil(M / 3) + S - 1) * slot + three.allReduceS, 9)
  })

  it('is seeded, and says what is wrong with bad input', () => {
    const a = runReplicaProjection({ replicas: 2, hourlyRate: 0.33, hours: 100, seed: 7 })
    const b = runReplicaProjection({ replicas: 2, hourlyRate: 0.33, hours: 100, seed: 7 })
    const c = runReplicaProjection({ replicas: 2, hourlyRate: 0.33, hours: 100, seed: 8 })
    expect(b).toEqual(a)
    expect(c).not.toEqual(a)
    expect(() => runReplicaProjection({ replicas: 0, hourlyRate: 0.1 })).toThrow(SimConfigError)
    expect(() => runReplicaProjection({ replicas: 2, hourlyRate: 1.5 })).toThrow(/hourlyRate must be in \(0, 1\)/)
    expect(() => runReplicaProjection({ replicas: 2, hourlyRate: 0.1, hours: Number.NaN })).toThrow(/hours/)
    expect(expectedStageLossesPerHour(7, 1, 0.5, 0)).toBeCloseTo(3.5, 12)
  })
})

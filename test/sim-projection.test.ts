import { describe, expect, it } from 'vitest'
import { UsageError } from '../cli/errors.js'
import { sim } from '../cli/commands/sim.js'
import { costModelForLlm, LLM_70B_PROFILE } from '../sim/cost-profiles.js'
import { scenarioClock } from '../sim/experiment.js'
import { runProjection } from '../sim/projection.js'

describe('cost model', () => {
  const cost = costModelForLlm({ ...LLM_70B_PROFILE, stages: 16, params: 1e9, dModel: 2048, microbatches: 16 })
  const plain = { swaps: false, redundantCompute: false }
  it('orders the iteration times: redundant computation > checkfree-plus > plain', () => {
    expect(cost.iterationS({ swaps: false, redundantCompute: true })).toBeGreaterThan(cost.iterationS({ swaps: true, redundantCompute: false }))
    expect(cost.iterationS({ swaps: true, redundantCompute: false })).toBeGreaterThan(cost.iterationS(plain))
    // (M + S - 1) slots of compute + 2 transfers.
    const p = cost.p
    expect(cost.iterationS(plain)).toBeCloseTo((16 + 16 - 1) * (p.slotComputeS + 2 * (p.linkLatencyS + p.hopBytes / p.linkBytesPerS)), 9)
  })
  it('the time scale multiplies size-derived durations but not detection', () => {
    const scaled = cost.with({ timeScale: 10, linkLatencyS: 0 })
    const base = cost.with({ linkLatencyS: 0 })
    expect(scaled.iterationS(plain)).toBeCloseTo(10 * base.iterationS(plain), 6)
    expect(scaled.checkpointLoad([3]).seconds).toBeCloseTo(10 * base.checkpointLoad([3]).seconds, 6)
    expect(scaled.p.detectionS).toBe(base.p.detectionS)
  })
  it('a matched time scale makes the scaled iteration last the paper-implied time, latency unscaled', () => {
    const { timeScale, cost: scaled, conversion } = scenarioClock({ name: 'p16', preset: '500m-16', matchHourly: 0.16 }, cost)
    expect(scaled.iterationS(plain)).toBeCloseTo(82.76, 1)
    expect(conversion.iterationS).toBeCloseTo(82.76, 1)
    expect(conversion.hourlyRate).toBeCloseTo(0.16, 6)
    expect(conversion.perIteration).toBe(0.004)
    expect(scaled.p.timeScale).toBe(timeScale)
    expect(scaled.p.linkLatencyS).toBe(cost.p.linkLatencyS)
  })
  it('recovery transfers: checkfree moves two neighbours, checkpoints include the optimizer', () => {
    expect(cost.checkfreeRebuild(5).bytes).toBe(2 * cost.p.stageBlockParams[5] * cost.p.bytesPerParam)
    expect(cost.checkpointLoad([5]).bytes).toBe(cost.stageBytes(5, true))
    expect(cost.stageBytes(5, true)).toBeGreaterThan(cost.stageBytes(5, false))
    // All stages share the store's link: loading all takes longer than loading one.
    expect(cost.checkpointLoad(Array.from({ length: 16 }, (_, i) => i)).seconds).toBeGreaterThan(cost.checkpointLoad([5]).seconds)
  })
})

describe('projection', () => {
  it('is deterministic and orders strategies sensibly on a small cluster', () => {
    const cfg = { profile: { stages: 16, params: 1e9, dModel: 2048, microbatches: 16 }, iterations: 20_000, rate: { hourlyRate: 0.33 }, abort: 'iteration' as const }
    const a = runProjection(cfg)
    const b = runProjection(cfg)
    expect(b.strategies).toEqual(a.strategies)
    const by = Object.fromEntries(a.strategies.map(s => [s.strategy, s]))
    expect(by.none.wallS).toBeLessThan(by['checkfree-plus'].wallS)
    // Redundant computation pays in compute every iteration; the shadow copy (redundant) in link time
    // and bytes, and recovers by exact copies.
    expect(by['redundant-compute'].iterationS).toBeGreaterThan(by.checkfree.iterationS)
    expect(by.redundant.wallS).toBeGreaterThan(by.none.wallS)
    expect(by.redundant.stateBytes).toBeGreaterThan(by['redundant-compute'].stateBytes)
    expect(by.redundant.recoveries.replica).toBeGreaterThan(0)
    expect(by['redundant-compute'].recoveries.replica).toBeGreaterThan(0)
    expect(by['checkpoint-whole'].iterationsRedone).toBeGreaterThan(0)
    expect(by.checkpoint.stageIterationsLost).toBeGreaterThan(0)
    expect(by['checkfree-plus'].recoveries['checkfree-plus']).toBeGreaterThan(0)
    expect(by.checkfree.recoveries.checkpoint).toBeGreaterThan(by['checkfree-plus'].recoveries.checkpoint)
  })

  it('projects 1,000 stages x 100k iterations (a 70B model, 500 Mb/s)', () => {
    const t0 = performance.now()
    // The reference and the shadow copy (mirrors and shadows at scale); bench:projection walks every
    // strategy. One synchronous call: kept short so a loaded machine does not stall the test runner.
    const r = runProjection({ iterations: 100_000, strategies: ['checkfree-plus', 'redundant'] })
    const secs = (performance.now() - t0) / 1000
    process.stdout.write(`projection of 1000 stages x 100k iterations: ${secs.toFixed(2)} s, ${r.failures} failures\n`)
    expect(r.stages).toBe(1000)
    const ref = r.strategies.find(s => s.strategy === 'checkfree-plus')
    expect(ref?.completed).toBe(true)
    expect(ref?.iterations).toBe(100_000)
    expect(r.failures).toBeGreaterThan(1_000_000)
  })
})

describe('spotpipe sim command line', () => {
  it('rejects bad flags with a UsageError', async () => {
    await expect(sim(['--mode', 'warp'])).rejects.toThrow(UsageError)
    await expect(sim(['--mode', 'model', '--strategies', 'checkfree,magic'])).rejects.toThrow(/unknown strategy/)
    await expect(sim(['--mode', 'model', '--rate', '1.5'])).rejects.toThrow(/--rate/)
    await expect(sim(['--mode', 'model', '--preset', 'nope'])).rejects.toThrow(/preset/)
    await expect(sim(['--bogus'])).rejects.toThrow(UsageError)
    // Cluster mode (the default) checks its flags before starting any process.
    await expect(sim(['--rate', '1.5'])).rejects.toThrow(/rate/)
    await expect(sim(['--mode', 'cluster', '--preset', 'quick'])).rejects.toThrow(/--preset is for --mode model/)
    // a preset or a report means model mode; a report needs a paper preset, which runs its own rates
    await expect(sim(['--preset', 'nope'])).rejects.toThrow(/unknown model-mode preset "nope"/)
    await expect(sim(['--report'])).rejects.toThrow(/--report needs a paper preset/)
    await expect(sim(['--preset', 'paper-500m', '--rate', '0.1'])).rejects.toThrow(/runs the paper's own failure rates/)
    await expect(sim(['--preset', 'paper-500m', '--plus-layout', 'sideways'])).rejects.toThrow(/--plus-layout must be spotpipe or paper/)
    await expect(sim(['--strategies', 'checkfree,magic'])).rejects.toThrow(/unknown strategy/)
  })
})

/**
 * One ladder: model mode and the projection recover each lost stage by the rung the coordinator's
 * planRecovery (coordinator/ladder.ts) picks for the same cluster, so a change to the ladder shows up
 * in the simulator. The expected rungs are planRecovery's on a LadderInput built here by hand, the way
 * the coordinator sees a cluster; model mode runs the real model over a trace of the same failures and
 * the projection's Walker walks them.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { planRecovery, type LadderInput } from '../coordinator/ladder.js'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { loadBrownCorpus } from '../model/data.js'
import { mirrorHolder, mirroredOwners, shadowHolder, shadowedStage } from '../model/recovery.js'
import { mulberry32 } from '../model/rng.js'
import { costModelForModel } from '../sim/cost-profiles.js'
import { ladderInput, planBatch, type LostStage } from '../sim/ladder-adapter.js'
import { CRASH, LadderMemo, NOTICE } from '../sim/ladder-memo.js'
import { runModelMode } from '../sim/model-mode.js'
import { Walker } from '../sim/projection-walker.js'
import { resolveStrategyOptions, SIM_RUNGS, STRATEGIES, type StrategyName } from '../sim/strategies.js'
import { makeTrace } from '../sim/trace.js'

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })

const S = 4
const model = resolveModelConfig({ dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 })
const train = resolveTrainConfig({ stages: S, microbatches: 2, microbatchSize: 4, evalEvery: 5, evalBatches: 1 }, model)
const cost = costModelForModel(model, train, 0.01)
const options = resolveStrategyOptions({ checkpointEvery: 5 })

interface Batch {
  /** Attempt at which the failures happen (model mode's trace clock). */
  step: number
  lost: LostStage[]
  /** What the coordinator would know of held copies then: shadows not of the last commit, holders
   *  without a CheckFree+ mirror. */
  staleShadows?: number[]
  noMirror?: number[]
}

interface Scenario {
  name: string
  strategy: StrategyName
  batches: Batch[]
}

const crash = (stage: number): LostStage => ({ stage, kind: 'crash' })
const notice = (stage: number): LostStage => ({ stage, kind: 'notice' })
const at = (step: number, ...lost: LostStage[]): Batch => ({ step, lost })

const SCENARIOS: Scenario[] = [
  { name: 'single intermediate loss', strategy: 'checkfree', batches: [at(6, crash(2))] },
  { name: 'single intermediate loss, CheckFree+', strategy: 'checkfree-plus', batches: [at(6, crash(1))] },
  ...(['checkfree', 'checkfree-plus', 'checkpoint', 'checkpoint-whole', 'redundant', 'redundant-compute'] as StrategyName[]).flatMap(strategy => [
    { name: `first stage, ${strategy}`, strategy, batches: [at(6, crash(0))] },
    { name: `last stage, ${strategy}`, strategy, batches: [at(6, crash(S - 1))] }
  ]),
  { name: 'two adjacent stages, checkfree', strategy: 'checkfree', batches: [at(6, crash(1), crash(2))] },
  { name: 'two adjacent stages, checkfree-plus', strategy: 'checkfree-plus', batches: [at(6, crash(0), crash(1))] },
  { name: 'two adjacent stages, redundant (the second one\'s shadow holder is lost too)', strategy: 'redundant', batches: [at(6, crash(1), crash(2))] },
  { name: 'two stages apart, checkfree-plus', strategy: 'checkfree-plus', batches: [at(6, crash(0), crash(2))] },
  { name: 'departing peer alone', strategy: 'checkpoint-whole', batches: [at(6, notice(2))] },
  { name: 'departing peer with a crashed neighbour, checkfree', strategy: 'checkfree', batches: [at(6, notice(1), crash(2))] },
  { name: 'departing peer with a crashed neighbour, checkpoint-whole', strategy: 'checkpoint-whole', batches: [at(6, notice(1), crash(2))] },
  { name: 'departing shadow holder, redundant', strategy: 'redundant', batches: [at(6, notice(1), crash(2))] },
  { name: 'redundant with a live predecessor', strategy: 'redundant', batches: [at(6, crash(2))] },
  { name: 'redundant-compute with a live predecessor', strategy: 'redundant-compute', batches: [at(6, crash(2))] },
  {
    // The replaced holder pulls its shadow only after the next commit.
    name: 'redundant: a new shadow holder has nothing to copy before the next commit',
    strategy: 'redundant',
    batches: [at(6, crash(1)), { ...at(7, crash(2)), staleShadows: [2] }]
  },
  { name: 'redundant: after a commit the new holder\'s shadow is current', strategy: 'redundant', batches: [at(6, crash(1)), at(8, crash(2))] },
  {
    // Stage 1's new peer has no mirror of the embedding until the next refresh (every 10 iterations).
    name: 'checkfree-plus: no mirror yet on a replaced neighbour',
    strategy: 'checkfree-plus',
    batches: [at(6, crash(1)), { ...at(7, crash(0)), noMirror: [1] }]
  }
]

/** planRecovery on the cluster as the coordinator sees it: peers p<s>, spares, live holders' shadows. */
function expected (strategy: StrategyName, b: Batch, spares = b.lost.length): string[] {
  const lost = b.lost.map(l => l.stage).sort((x, y) => x - y)
  const holders = new Map<number, string>()
  for (let s = 0; s < S; s++) if (!lost.includes(s)) holders.set(s, `p${s}`)
  const departing = new Map(b.lost.filter(l => l.kind === 'notice').map(l => [l.stage, `p${l.stage}`]))
  const replicas = new Map<number, string>()
  if (strategy === 'redundant' || strategy === 'redundant-compute') {
    for (const s of lost) {
      const h = (s - 1 + S) % S
      if (holders.has(h) && !(b.staleShadows ?? []).includes(s)) replicas.set(s, `p${h}`)
    }
  }
  // The ladder's input cannot yet say that a peer has no mirror: such a peer cannot serve CheckFree+,
  // as if it were out of reach.
  for (const h of b.noMirror ?? []) { holders.delete(h); departing.delete(h) }
  const input: LadderInput = {
    strategy,
    stages: S,
    holders,
    lost,
    departing,
    spares: Array.from({ length: spares }, (_, k) => `spare${k}`),
    replicas,
    gradNorms: [1, 2, 3, 4]
  }
  const r = planRecovery(input)
  return r.plans.filter(p => lost.includes(p.stage)).map(p => `${p.stage}:${p.rung}${r.rollbackAll ? ':whole' : ''}`)
}

describe('one ladder: the simulator recovers by the coordinator\'s rungs', () => {
  it('the adapter describes the cluster as the coordinator does', () => {
    const input = ladderInput({ strategy: 'redundant-compute', stages: S, lost: [notice(1), crash(2), crash(2)], gradNorms: [1, 2, 3, 4], checkpoint: 10 })
    expect(input.strategy).toBe('redundant-compute') // the coordinator's own strategy: its ladder treats both shadow strategies alike (keepsShadows)
    expect(input.lost).toEqual([1, 2])
    expect([...input.holders]).toEqual([[0, 'stage-0'], [3, 'stage-3']])
    expect([...input.departing]).toEqual([[1, 'stage-1']])
    expect(input.spares.length).toBe(2)
    // Stage 2's shadow holder (stage 1) is departing, so not a live holder: the coordinator offers no
    // replica of stage 2 (stage 1's, on stage 0, yes; its handover comes first anyway).
    expect([...input.replicas]).toEqual([[1, 'stage-0']])
    expect(input.checkpoint).toBe(10)
    expect(ladderInput({ strategy: 'checkfree', stages: S, lost: [crash(2)], checkpoint: 0 }).checkpoint).toBeUndefined()
  })

  it('no spare: the ladder waits, and the adapter says which stages', () => {
    const b = at(6, crash(0), crash(2))
    const r = planBatch({ strategy: 'checkfree', stages: S, lost: b.lost, spares: 1 })
    expect([...r.plans.map(p => `${p.stage}:${p.rung}`), ...r.waiting.map(s => `${s}:wait`)]).toEqual(expected('checkfree', b, 1))
    expect(r.waiting).toEqual([2])
    expect(planBatch({ strategy: 'checkfree', stages: S, lost: [crash(1)], spares: 0 }).waiting).toEqual([1])
  })

  for (const sc of SCENARIOS) {
    it(`model mode and the projection: ${sc.name}`, () => {
      const want = sc.batches.map(b => expected(sc.strategy, b))
      // The adapter alone.
      const adapter = sc.batches.map(b => {
        const r = planBatch({
          strategy: sc.strategy,
          stages: S,
          lost: b.lost,
          shadowReady: s => !(b.staleShadows ?? []).includes(s),
          mirrorReady: h => !(b.noMirror ?? []).includes(h)
        })
        return r.plans.map(p => `${p.stage}:${p.rung}${r.rollbackAll ? ':whole' : ''}`)
      })
      expect(adapter).toEqual(want)

      // Model mode: the real model over a trace of these failures.
      const trace = makeTrace({ stages: S, iterations: 100, events: sc.batches.flatMap(b => b.lost.map(l => ({ iteration: b.step, stage: l.stage, kind: l.kind }))) })
      const run = runModelMode({ model, train, iterations: 10, strategy: sc.strategy, trace, cost, corpus: loadBrownCorpus(), options })
      const got = sc.batches.map(b => run.recoveries.filter(r => r.step === b.step).map(r => `${r.stage}:${r.rung}${r.scope === 'whole' ? ':whole' : ''}`))
      expect(got).toEqual(want)

      // The projection's walker over the same batches (a crash half-way through the iteration, as in the trace).
      const w = new Walker(sc.strategy, cost, options, 10)
      const rungs = new Int32Array(S)
      let next = 0 // the first attempt not yet walked
      const walked = sc.batches.map(b => {
        w.clean(b.step - next)
        // A crash aborts the attempt; notices alone let it complete, then the handovers.
        if (!b.lost.some(l => l.kind === 'crash')) w.clean(1)
        next = b.step + 1
        const stages = Int32Array.from(b.lost.map(l => l.stage))
        const kinds = Uint8Array.from(b.lost.map(l => l.kind === 'crash' ? CRASH : NOTICE))
        const before = w.wholeRollbacks
        w.batch(stages, kinds, 0, stages.length, rungs, w.wall)
        const whole = w.wholeRollbacks > before
        return b.lost.map((l, j) => `${l.stage}:${SIM_RUNGS[rungs[j]]}${whole ? ':whole' : ''}`)
      })
      expect(walked).toEqual(want)
    })
  }
})

describe('the projection\'s memo of the ladder', () => {
  it('gives planBatch\'s rungs on the whole batch, over random batches, pipelines and held copies', () => {
    const rand = mulberry32(11)
    const out = new Int32Array(64)
    for (const stages of [1, 2, 3, 4, 5, 6, 7, 9, 12, 40]) {
      const memos = new Map(STRATEGIES.filter(s => s !== 'none').map(s => [s, new LadderMemo(s, stages)]))
      for (let trial = 0; trial < 300; trial++) {
        const lost: LostStage[] = []
        const p = stages > 9 ? 0.12 : 0.35
        for (let s = 0; s < stages; s++) if (rand() < p) lost.push({ stage: s, kind: rand() < 0.25 ? 'notice' : 'crash' })
        if (lost.length === 0) continue
        const mirrors = new Set(Array.from({ length: stages }, (_, s) => s).filter(() => rand() < 0.7))
        const fresh = new Set(Array.from({ length: stages }, (_, s) => s).filter(() => rand() < 0.7))
        const held = { mirrorReady: (h: number) => mirrors.has(h), shadowReady: (s: number) => fresh.has(s) }
        for (const [strategy, memo] of memos) {
          const whole = planBatch({ strategy, stages, lost, ...held })
          const rollback = memo.classify(lost.map(l => l.stage), lost.map(l => l.kind === 'crash' ? CRASH : NOTICE), 0, lost.length, held, out)
          expect({ rungs: lost.map((_, j) => SIM_RUNGS[out[j]]), rollback }).toEqual({ rungs: whole.plans.map(x => x.rung), rollback: whole.rollbackAll })
        }
      }
      for (const memo of memos.values()) expect(memo.misses).toBeGreaterThan(0)
    }
  })

  it('asks the ladder once per distinct single failure', () => {
    const memo = new LadderMemo('checkfree', 1000)
    const out = new Int32Array(1)
    const held = { mirrorReady: () => false, shadowReady: () => false }
    for (let i = 0; i < 5000; i++) memo.classify([i % 7 === 0 ? 0 : 500], [CRASH], 0, 1, held, out)
    expect(memo.misses).toBe(2)
  })
})

describe('who holds which copy (model/recovery.ts)', () => {
  it('the mirror holder is the first or last stage\'s only neighbour, and mirroredOwners inverts it', () => {
    for (let stages = 1; stages <= 6; stages++) {
      for (let s = 0; s < stages; s++) {
        const h = mirrorHolder(s, stages)
        if (stages >= 2 && (s === 0 || s === stages - 1)) expect(Math.abs((h as number) - s)).toBe(1)
        else expect(h).toBeUndefined()
        for (const owner of mirroredOwners(s, stages)) expect(mirrorHolder(owner, stages)).toBe(s)
      }
    }
    expect(mirroredOwners(1, 3)).toEqual([0, 2])
    expect(mirroredOwners(0, 2)).toEqual([1])
  })

  it('the shadow holder is the predecessor (stage S-1 shadows stage 0), and shadowedStage inverts it', () => {
    expect(shadowHolder(0, 4)).toBe(3)
    expect(shadowHolder(2, 4)).toBe(1)
    expect(shadowHolder(0, 1)).toBeUndefined()
    for (let s = 0; s < 5; s++) expect(shadowedStage(shadowHolder(s, 5) as number, 5)).toBe(s)
  })
})

import { describe, expect, it } from 'vitest'
import { planRecovery, type LadderInput, type Strategy } from '../coordinator/ladder.js'

const S = 4
function input (strategy: Strategy, lost: number[], extra: Partial<LadderInput> = {}): LadderInput {
  const holders = new Map<number, string>()
  for (let s = 0; s < S; s++) if (!lost.includes(s)) holders.set(s, `p${s}`)
  return { strategy, stages: S, holders, lost, departing: new Map(), spares: ['spare1', 'spare2'], replicas: new Map(), gradNorms: [0.1, 0.2, 0.3, 0.4], ...extra }
}

describe('recovery ladder', () => {
  it('intermediate stage, both neighbours alive: CheckFree from them, weighted by their gradient norms', () => {
    const { plans } = planRecovery(input('checkfree', [2]))
    expect(plans).toEqual([{ stage: 2, rung: 'checkfree', target: 'spare1', donors: [{ peerId: 'p1', stage: 1 }, { peerId: 'p3', stage: 3 }], weights: [0.2, 0.4], lrScale: 1.1, checkpointId: '' }])
  })
  it('first or last stage: CheckFree+ copies the neighbour; plain CheckFree falls to the checkpoint', () => {
    expect(planRecovery(input('checkfree-plus', [0])).plans[0]).toMatchObject({ rung: 'checkfree-plus', donors: [{ peerId: 'p1', stage: 1 }] })
    expect(planRecovery(input('checkfree-plus', [3])).plans[0]).toMatchObject({ rung: 'checkfree-plus', donors: [{ peerId: 'p2', stage: 2 }] })
    expect(planRecovery(input('checkfree', [0], { checkpoint: 20 })).plans[0]).toMatchObject({ rung: 'checkpoint', checkpointId: 'ckpt-20' })
  })
  it('two adjacent stages lost: both from the newest checkpoint (or the initial weights when there is none)', () => {
    const r = planRecovery(input('checkfree-plus', [1, 2], { checkpoint: 10 }))
    expect(r.plans.map(p => [p.stage, p.rung, p.target, p.checkpointId])).toEqual([[1, 'checkpoint', 'spare1', 'ckpt-10'], [2, 'checkpoint', 'spare2', 'ckpt-10']])
    expect(planRecovery(input('checkfree', [1, 2])).plans[0].checkpointId).toBe('init')
  })
  it('a departing peer that is still reachable is handed over, whatever the strategy', () => {
    for (const strategy of ['checkfree', 'checkpoint', 'checkpoint-whole', 'redundant'] as Strategy[]) {
      const r = planRecovery(input(strategy, [1], { departing: new Map([[1, 'p1']]) }))
      expect(r.plans[0]).toMatchObject({ rung: 'handover', donors: [{ peerId: 'p1', stage: 1 }] })
      expect(r.rollbackAll).toBe(false)
    }
  })
  it('a departing neighbour still donates: a notice on stage 1 and a crash of stage 2 cost a handover and a CheckFree', () => {
    const r = planRecovery(input('checkfree', [1, 2], { departing: new Map([[1, 'p1']]), checkpoint: 10 }))
    expect(r.plans.map(p => [p.stage, p.rung, p.target])).toEqual([[1, 'handover', 'spare1'], [2, 'checkfree', 'spare2']])
    expect(r.plans[1]).toMatchObject({ donors: [{ peerId: 'p1', stage: 1 }, { peerId: 'p3', stage: 3 }], weights: [0.2, 0.4] })
    // CheckFree+ likewise copies a departing neighbour; two crashes still need the checkpoint
    expect(planRecovery(input('checkfree-plus', [0, 1], { departing: new Map([[1, 'p1']]) })).plans[0]).toMatchObject({ rung: 'checkfree-plus', donors: [{ peerId: 'p1', stage: 1 }] })
    expect(planRecovery(input('checkfree', [1, 2], { checkpoint: 10 })).plans.map(p => p.rung)).toEqual(['checkpoint', 'checkpoint'])
  })
  it('redundant copies the shadow replica; checkpoint strategies reload the checkpoint', () => {
    expect(planRecovery(input('redundant', [2], { replicas: new Map([[2, 'p1']]) })).plans[0]).toMatchObject({ rung: 'replica', donors: [{ peerId: 'p1', stage: 2 }] })
    expect(planRecovery(input('checkpoint', [2], { checkpoint: 5 })).plans[0]).toMatchObject({ rung: 'checkpoint', checkpointId: 'ckpt-5' })
  })
  it('checkpoint-whole rolls every stage back on its own peer', () => {
    const r = planRecovery(input('checkpoint-whole', [2], { checkpoint: 5 }))
    expect(r.rollbackAll).toBe(true)
    expect(r.plans.map(p => p.target)).toEqual(['p0', 'p1', 'spare1', 'p3'])
    expect(r.plans.every(p => p.rung === 'checkpoint')).toBe(true)
  })
  it('no spare: wait', () => {
    const r = planRecovery(input('checkfree', [2], { spares: [] }))
    expect(r.plans[0]).toMatchObject({ rung: 'wait', target: '' })
    const two = planRecovery(input('checkfree', [0, 2], { spares: ['only'] }))
    expect(two.plans.map(p => p.rung)).toEqual(['checkpoint', 'wait'])
  })
  it('a lost peer back with its state intact keeps its stage (rejoin); nothing else is planned for it', () => {
    const r = planRecovery(input('checkfree', [1, 2], { rejoined: new Map([[1, 'p1']]), checkpoint: 10 }))
    expect(r.plans.map(p => [p.stage, p.rung, p.target])).toEqual([[1, 'rejoin', 'p1'], [2, 'checkpoint', 'spare1']])
    // with no spare at all, the rejoined stage still comes back and only the other waits
    expect(planRecovery(input('checkfree', [1, 2], { rejoined: new Map([[1, 'p1']]), spares: [] })).plans.map(p => p.rung)).toEqual(['rejoin', 'wait'])
  })
  it('CheckFree+ only from a neighbour known to hold the mirror; otherwise the checkpoint', () => {
    expect(planRecovery(input('checkfree-plus', [0], { mirrors: new Map(), checkpoint: 10 })).plans[0]).toMatchObject({ rung: 'checkpoint', checkpointId: 'ckpt-10' })
    expect(planRecovery(input('checkfree-plus', [0], { mirrors: new Map([[0, 'p1']]) })).plans[0]).toMatchObject({ rung: 'checkfree-plus', donors: [{ peerId: 'p1', stage: 1 }] })
    // a mirror on some other peer is not the neighbour's: the neighbour copy would have no embedding
    expect(planRecovery(input('checkfree-plus', [0], { mirrors: new Map([[0, 'p2']]) })).plans[0].rung).toBe('checkpoint')
  })
  it('a rung that failed for a stage is skipped for it; the checkpoint rung is always the floor', () => {
    const excluded = new Map([[2, new Set(['checkfree'] as const)]])
    expect(planRecovery(input('checkfree', [2], { excluded, checkpoint: 10 })).plans[0]).toMatchObject({ rung: 'checkpoint', checkpointId: 'ckpt-10' })
    expect(planRecovery(input('checkfree', [1], { excluded, checkpoint: 10 })).plans[0].rung).toBe('checkfree')
    const all = new Map([[1, new Set(['handover', 'checkpoint'] as const)]])
    expect(planRecovery(input('checkfree', [1], { excluded: all, departing: new Map([[1, 'p1']]) })).plans[0]).toMatchObject({ rung: 'checkfree' })
    const noCf = new Map([[1, new Set(['handover', 'checkfree', 'checkpoint'] as const)]])
    expect(planRecovery(input('checkfree', [1], { excluded: noCf, departing: new Map([[1, 'p1']]), checkpoint: 4 })).plans[0]).toMatchObject({ rung: 'checkpoint', checkpointId: 'ckpt-4' })
  })
})

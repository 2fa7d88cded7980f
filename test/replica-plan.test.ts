import { describe, expect, it } from 'vitest'
import { planReplicaJoins } from '../coordinator/replica-plan.js'

const none = new Set<string>()

describe('which peer joins which stage as a replica (coordinator/replica-plan.ts)', () => {
  it('gives spares to the stages below the target, the fewest-served first, then the lowest stage', () => {
    expect(planReplicaJoins({ stages: [['a'], ['b', 'c'], ['d'], ['e', 'f']], joining: none, spares: ['s1', 's2', 's3'], target: 2 }))
      .toEqual([{ stage: 0, peer: 's1' }, { stage: 2, peer: 's2' }])
    expect(planReplicaJoins({ stages: [['a', 'b'], ['c'], ['d', 'e', 'f'], ['g']], joining: none, spares: ['s1'], target: 3 }))
      .toEqual([{ stage: 1, peer: 's1' }])
    // every stage at its target: spares stay spares
    expect(planReplicaJoins({ stages: [['a', 'b'], ['c', 'd']], joining: none, spares: ['s1'], target: 2 })).toEqual([])
    // a stage with no peer is the recovery's, not a join's
    expect(planReplicaJoins({ stages: [[], ['c']], joining: none, spares: ['s1'], target: 2 })).toEqual([{ stage: 1, peer: 's1' }])
  })

  it('starts one join per stage at a time, and never moves a joining peer', () => {
    expect(planReplicaJoins({ stages: [['a', 'j'], ['c']], joining: new Set(['j']), spares: ['s1', 's2'], target: 3 })).toEqual([{ stage: 1, peer: 's1' }])
    expect(planReplicaJoins({ stages: [['a', 'b', 'c', 'j'], ['d']], joining: new Set(['j']), spares: [], target: 4 })).toEqual([])
  })

  it('with no spare, moves a replica from the best-served stage when it has two more than the fewest-served', () => {
    expect(planReplicaJoins({ stages: [['a', 'b', 'c'], ['d'], ['e', 'f'], ['g', 'h']], joining: none, spares: [], target: 3 }))
      .toEqual([{ stage: 1, peer: 'c', from: 0 }])
    // 2 + 1: moving would only move the risk
    expect(planReplicaJoins({ stages: [['a', 'b'], ['d'], ['e', 'f']], joining: none, spares: [], target: 2 })).toEqual([])
    // spares come first: no move while one is left
    expect(planReplicaJoins({ stages: [['a', 'b', 'c'], ['d']], joining: none, spares: ['s1'], target: 3 })).toEqual([{ stage: 1, peer: 's1' }])
  })
})

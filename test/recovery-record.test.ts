import { describe, expect, it } from 'vitest'
import { RecoveryRecord } from '../coordinator/recovery/index.js'
import type { StagePlan } from '../coordinator/ladder.js'

const loss = { peer: 'p2', cause: 'connection closed', lastSeen: 1000, detectedAt: 1200 }
function record (plan: Partial<StagePlan>, committed = 41): RecoveryRecord {
  const p: StagePlan = { stage: 2, rung: 'checkfree', target: 'spare', donors: [{ peerId: 'p1', stage: 1 }, { peerId: 'p3', stage: 3 }], weights: [1, 1], lrScale: 1.1, checkpointId: '', ...plan }
  return new RecoveryRecord({ plan: p, epoch: 7, committed, loss, deadlineMs: 5000 })
}

describe('recovery records', () => {
  it('move forward only: planned -> transferring -> installed -> resumed, with a history', () => {
    const r = record({})
    expect(r.state).toBe('planned')
    r.move('transferring')
    r.move('installed')
    expect(r.open).toBe(false)
    r.move('resumed')
    expect(r.history.map(h => h.state)).toEqual(['planned', 'transferring', 'installed', 'resumed'])
    expect(() => { r.move('planned') }).toThrow(/cannot go from resumed to planned/)
    const back = record({})
    back.move('installed')
    expect(() => { back.move('transferring') }).toThrow(expect.objectContaining({ code: 'ERR_RECOVERY_STATE' }))
  })
  it('a failure keeps its reason and kind, and a finished record cannot fail afterwards', () => {
    const r = record({})
    r.fail('donor p3 was lost', 'rung')
    expect([r.state, r.reason, r.failure]).toEqual(['failed', 'donor p3 was lost', 'rung'])
    r.fail('later', 'superseded')
    expect(r.reason).toBe('donor p3 was lost')
    const done = record({})
    done.move('installed')
    done.move('resumed')
    done.fail('too late', 'rung')
    expect(done.state).toBe('resumed')
  })
  it('says how far behind a checkpoint restore is; exact copies and CheckFree are not behind', () => {
    expect(record({ rung: 'checkpoint', checkpointId: 'ckpt-30', donors: [] }).iterationsBehind).toBe(11)
    expect(record({ rung: 'checkpoint', checkpointId: 'init', donors: [] }).iterationsBehind).toBe(42)
    expect(record({ rung: 'checkpoint', checkpointId: 'ckpt-41', donors: [] }).iterationsBehind).toBe(0)
    expect(record({}).iterationsBehind).toBe(0)
    expect(record({ rung: 'handover' }).iterationsBehind).toBe(0)
    // one record: two would take Date.now() twice, and a millisecond between them gave 4999 in CI
    const r = record({})
    expect(r.deadlineAt - r.plannedAt).toBe(5000)
  })
})

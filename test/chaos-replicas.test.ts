/**
 * The chaos suite with replicas (issue 11 item 4), pure parts only: the schedule's replica faults,
 * and each rule that changes or is new with replicas, on hand-made histories both ways (a history
 * that breaks the rule is caught, one that keeps it passes), so no rule passes for want of a way to
 * fail. The real run is `npm run chaos -- --replicas 2`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  FAULT_KINDS, benchLines, checkInvariants, makeSchedule, parsePerturbLine, readPersisted, servingOf, tensorsDigest,
  type AppliedFault, type ChaosHistory, type CoordinatorEvent, type InvariantName, type RecoveryRecordView
} from '../sim/chaos/index.js'

const T0 = 1_000_000

/** 4 stages x 2 replicas (peers s0a, s0b, ...): commits every 300 ms over 60 s, a checkpoint every 10, replicas identical at the end. */
function history (over: Partial<ChaosHistory> = {}): ChaosHistory {
  const events: CoordinatorEvent[] = []
  for (let i = 0; i < 200; i++) {
    const at = T0 + i * 300
    events.push({ type: 'iteration', at, iteration: i, ms: 250 })
    if ((i + 1) % 10 === 0) events.push({ type: 'checkpoint', at: at + 100, iteration: i, outcome: 'written' })
  }
  const replicas = [0, 1, 2, 3].map(s => [`s${s}a`, `s${s}b`])
  return {
    seed: 1,
    bounds: { stages: 4, checkpointEvery: 10, detectionMs: 10_000, transferMs: 500, boundMs: 15_000, resumeGraceMs: 15_000, strategy: 'checkfree', replicas: 2 },
    schedule: [],
    startedAt: T0 - 5000,
    firstCommitAt: T0,
    chaosStart: T0 + 1000,
    chaosEnd: T0 + 58_000,
    settledAt: T0 + 59_800,
    endedAt: T0 + 61_000,
    events,
    persistedRecoveries: [],
    processes: [{ name: 'coordinator', role: 'coordinator', identity: 'c.key', startedAt: T0 - 5000, readyAt: T0 - 4000, exitAt: T0 + 61_000, atShutdown: true, eventsFile: '', stderrTail: [] }],
    faults: [],
    installs: [],
    assignments: [{ at: T0 - 1000, epoch: 1, committedIteration: -1, holders: replicas.map(r => r[0]), replicas, joining: [] }],
    deadTimes: [],
    coordinatorRestarts: [],
    weights: replicas.flatMap((ps, stage) => ps.map((peerId, replica) => ({ stage, peerId, replica, ok: true, iteration: 199, digest: `d${stage}` }))),
    weightsCheckedAt: T0 + 60_500,
    perturbations: [],
    skipped: [],
    ...over
  }
}

const failing = (h: ChaosHistory): InvariantName[] => [...new Set(checkInvariants(h).violations.map(v => v.invariant))]
const withEvents = (h: ChaosHistory, ...more: CoordinatorEvent[]): ChaosHistory => ({ ...h, events: [...h.events, ...more] })

/** SIGKILL of replica `replica` of stage 2 at +20 s, the stage served by s2a and s2b. */
const replicaKill = (replica: 0 | 1, over: Partial<AppliedFault> = {}): AppliedFault => ({
  item: 0, kind: 'kill', at: T0 + 20_000, target: `peer-2${replica}`, peerId: replica === 0 ? 's2a' : 's2b', stage: 2, removedStage: 2,
  stageReplicas: ['s2a', 's2b'], replica, via: 'test', notes: [], ...over
})
const rec = (over: Partial<RecoveryRecordView> & { rung: string }): CoordinatorEvent => ({ type: 'recovery', at: T0 + 20_500, stage: 2, epoch: 3, iteration: 67, iterationsBehind: 0, ...over })

describe('chaos schedule with replicas', () => {
  it('draws which replica a stage fault hits, whole-stage kills, drifts and same-stage pairs; one replica draws as before', () => {
    const opts = { seed: 7, durationMs: 600_000, everyMs: 10_000, stages: 4 }
    expect(makeSchedule({ ...opts, replicas: 1 })).toEqual(makeSchedule(opts))
    const a = makeSchedule({ ...opts, replicas: 2 })
    expect(makeSchedule({ ...opts, replicas: 2 })).toEqual(a)
    expect(a).not.toEqual(makeSchedule(opts))
    const faults = a.flatMap(x => x.faults)
    expect([...new Set(faults.map(f => f.kind))].sort()).toEqual([...FAULT_KINDS].sort())
    const stageTargets = faults.flatMap(f => f.target.role === 'stage' ? [f.target] : [])
    for (const t of stageTargets) expect([0, 1]).toContain(t.replica)
    expect(new Set(stageTargets.map(t => t.replica))).toEqual(new Set([0, 1]))
    // pairs on two replicas of one stage: with two replicas, the stage's both
    const same = a.filter(x => x.mode === 'together' && x.faults.every(f => f.target.role === 'stage') && new Set(x.faults.map(f => (f.target as { stage: number }).stage)).size === 1)
    expect(same.length).toBeGreaterThan(0)
    for (const x of same) expect(x.faults.map(f => (f.target as { replica?: number }).replica).sort()).toEqual([0, 1])
    // a drift is never half of a pair, nor aimed at a spare
    for (const x of a.filter(y => y.faults.length > 1)) expect(x.faults.map(f => f.kind)).not.toContain('drift')
    for (const f of faults.filter(g => g.kind === 'drift')) expect(f.target.role).toBe('stage')
  })

  it('refuses replica kinds without replicas', () => {
    expect(() => makeSchedule({ seed: 1, durationMs: 60_000, stages: 4, kinds: ['drift'] })).toThrow(expect.objectContaining({ code: 'ERR_CHAOS_CONFIG' }))
    expect(() => makeSchedule({ seed: 1, durationMs: 60_000, stages: 4, replicas: 0 })).toThrow(/replicas must be an integer >= 1/)
    for (const x of makeSchedule({ seed: 1, durationMs: 120_000, stages: 4, replicas: 3, kinds: ['kill-stage'] })) for (const f of x.faults) expect(f.kind).toBe('kill-stage')
  })
})

describe('chaos invariants with replicas', () => {
  it('a clean replicated history keeps every invariant, and its bench lines say what was compared', () => {
    const r = checkInvariants(history())
    expect(r.violations).toEqual([])
    expect(r.figures).toMatchObject({ replicas: 2, replicaLosses: 0, replicaStagesCompared: 4, replicaMismatches: 0, driftsLanded: 0 })
    expect(benchLines(r).slice(6)).toEqual([
      'bench: chaos_replica_losses=0', 'bench: chaos_rebuilds_after_replica_loss=0', 'bench: chaos_replica_stages_compared=4',
      'bench: chaos_replicas_mismatched=0', 'bench: chaos_drifts_mended=0/0', 'bench: chaos_unplanted_drifts=0'
    ])
  })

  it('lost-stage-recorded: a lost replica needs a survivors record naming it, or a ladder record of its stage', () => {
    const h = history({ faults: [replicaKill(1)] })
    expect(failing(h)).toEqual(['lost-stage-recorded'])
    expect(failing(withEvents(h, rec({ rung: 'survivors', lostPeer: 's2b', targetPeer: 's2a' })))).toEqual([])
    // a survivors record for the other replica says nothing about this one
    expect(failing(withEvents(h, rec({ rung: 'survivors', lostPeer: 's2a' })))).toEqual(['lost-stage-recorded'])
    // nor does the join of its replacement alone (it names the replica it replaces)
    expect(failing(withEvents(h, rec({ rung: 'replica', lostPeer: 's2b', cause: 'replaces a lost replica (connection closed)' })))).toEqual(['lost-stage-recorded'])
    // the stage's last replica lost: the ladder's record (naming either) records it
    const last = history({ faults: [replicaKill(1, { stageReplicas: ['s2b'], replica: 0 })] })
    expect(failing(withEvents(last, rec({ rung: 'checkfree', lostPeer: 's2a' })))).toEqual([])
    // the persisted log counts as well as the events file, and two survivors records of one round stay two
    expect(failing({ ...h, faults: [replicaKill(0), replicaKill(1)], persistedRecoveries: [{ at: T0 + 20_500, stage: 2, rung: 'survivors', epoch: 3, iteration: 67, lostPeer: 's2a' }, { at: T0 + 20_500, stage: 2, rung: 'survivors', epoch: 3, iteration: 67, lostPeer: 's2b' }] })).toEqual([])
  })

  it('replica-loss-no-rebuild: a stage that kept a live replica is not rebuilt, unless another fault took that one too', () => {
    const h = history({ faults: [replicaKill(1)] })
    const checkfree = rec({ rung: 'checkfree', lostPeer: 's2b', at: T0 + 21_000 })
    const r = checkInvariants(withEvents(h, checkfree))
    expect(r.violations.map(v => v.invariant)).toEqual(['replica-loss-no-rebuild'])
    expect(r.violations[0].detail).toMatch(/s2a still served it, and the stage was rebuilt by checkfree 1\.0 s later/)
    expect(r.figures).toMatchObject({ replicaLosses: 1, rebuildsAfterReplicaLoss: 1 })
    for (const rung of ['checkfree-plus', 'checkpoint']) expect(failing(withEvents(h, { ...checkfree, rung, checkpointId: 'ckpt-59' }))).toContain('replica-loss-no-rebuild')
    // the survivors record came first: a later rebuild has another cause
    expect(failing(withEvents(h, rec({ rung: 'survivors', lostPeer: 's2b' }), { ...checkfree, at: T0 + 25_000 }))).toEqual([])
    // the other replica hung at the same time (a stop-cont long enough to be declared lost): shared blame
    const hung: AppliedFault = { item: 1, kind: 'stop-cont', at: T0 + 19_000, endAt: T0 + 30_000, target: 'peer-2a', peerId: 's2a', stage: 2, via: 'test', notes: [] }
    const shared = checkInvariants(withEvents({ ...h, faults: [replicaKill(1), hung] }, checkfree))
    expect(shared.violations).toEqual([])
    expect(shared.notes.join('\n')).toMatch(/other faults to share the blame: stop-cont of peer-2a/)
    // that fault over 20 s before: no excuse
    expect(failing(withEvents({ ...h, faults: [replicaKill(1), { ...hung, at: T0 - 5000, endAt: T0 - 4000 }] }, checkfree))).toEqual(['replica-loss-no-rebuild'])
    // the coordinator restarted meanwhile: shared blame too
    const coord: AppliedFault = { item: 1, kind: 'coordinator-kill-restart', at: T0 + 20_200, endAt: T0 + 22_000, target: 'coordinator', via: 'test', notes: [] }
    expect(failing(withEvents({ ...h, faults: [replicaKill(1), coord] }, checkfree))).toEqual([])
    // every replica killed at once (kill-stage): a whole-stage loss, the ladder's
    const whole = [replicaKill(0, { kind: 'kill-stage' }), replicaKill(1, { kind: 'kill-stage' })]
    expect(failing(withEvents({ ...h, faults: whole }, checkfree))).toEqual([])
    // a fault on the stage's last replica is no replica loss
    expect(failing(withEvents(history({ faults: [replicaKill(1, { stageReplicas: ['s2b'], replica: 0 })] }), checkfree))).toEqual([])
  })

  it('rung-loss: survivors and a replica join lose nothing committed', () => {
    const h = history({ faults: [replicaKill(1)] })
    expect(failing(withEvents(h, rec({ rung: 'survivors', lostPeer: 's2b' }), rec({ rung: 'replica', lostPeer: 's2b', at: T0 + 25_000, iteration: 80 })))).toEqual([])
    expect(failing(withEvents(h, rec({ rung: 'survivors', lostPeer: 's2b', iterationsBehind: 2 })))).toEqual(['rung-loss'])
    expect(failing(withEvents(h, rec({ rung: 'survivors', lostPeer: 's2b' }), rec({ rung: 'replica', lostPeer: 's2b', at: T0 + 25_000, iterationsBehind: 1 })))).toEqual(['rung-loss'])
  })

  it('replicas-identical: serving replicas of one iteration must hold the same bytes', () => {
    const h = history()
    const drifted = h.weights.map(w => w.stage === 1 && w.replica === 1 ? { ...w, digest: 'other' } : w)
    const r = checkInvariants({ ...h, weights: drifted })
    expect(r.violations.map(v => v.invariant)).toEqual(['replicas-identical'])
    expect(r.violations[0].detail).toMatch(/stage 1: its 2 serving replicas differ at iteration 199/)
    expect(r.figures.replicaMismatches).toBe(1)
    // different iterations cannot be compared: a note, not a violation
    const apart = drifted.map(w => w.stage === 1 && w.replica === 1 ? { ...w, iteration: 198 } : w)
    const n = checkInvariants({ ...h, weights: apart })
    expect(n.violations).toEqual([])
    expect(n.notes.join('\n')).toMatch(/replicas of stage 1 not compared: they served iterations 199, 198/)
    // a drift that landed after the last commit before the check had no chance to be noticed
    const late = { at: T0 + 199 * 300 + 10, peerId: 's1b', stage: 1, replica: 1, iteration: 199 }
    expect(failing({ ...h, weights: drifted, perturbations: [late] })).not.toContain('replicas-identical')
    // ... but one that landed long before had
    expect(failing({ ...h, weights: drifted, perturbations: [{ ...late, at: T0 + 30_000, iteration: 99 }] })).toContain('replicas-identical')
    // a stage with one serving replica left has nothing to compare
    expect(failing({ ...h, weights: drifted.filter(w => !(w.stage === 1 && w.replica === 0)) })).toEqual([])
  })

  it('drift-mended: a drift that landed beside another serving replica is followed by a record dropping that peer', () => {
    const p = { at: T0 + 20_000, peerId: 's1b', stage: 1, replica: 1, iteration: 66 }
    const h = history({ perturbations: [p] })
    const r = checkInvariants(h)
    expect(r.violations.map(v => v.invariant)).toEqual(['drift-mended'])
    expect(r.figures).toMatchObject({ driftsLanded: 1, driftsMended: 0 })
    const dropped = rec({ rung: 'survivors', stage: 1, lostPeer: 's1b', at: T0 + 20_700, cause: 'its weights drifted from its stage\'s replicas (digest 1, the others 2, iteration 67)' })
    expect(failing(withEvents(h, dropped))).toEqual([])
    expect(checkInvariants(withEvents(h, dropped)).figures.driftsMended).toBe(1)
    // a record dropping another peer does not mend it
    expect(failing(withEvents(h, { ...dropped, lostPeer: 's1a' }))).toContain('drift-mended')
    // alone on its stage, there was nothing to drift from
    const alone = h.assignments.map(a => ({ ...a, replicas: a.replicas?.map((ps, s) => s === 1 ? ['s1b'] : ps) }))
    expect(failing({ ...h, assignments: alone })).toEqual([])
    // it landed just before the check: no commit could show it
    expect(failing({ ...h, perturbations: [{ ...p, at: T0 + 199 * 300 + 10 }] })).toEqual([])
  })
})

describe('no-unplanted-drift', () => {
  it('a replica dropped as drifted must be one a planted drift landed on', () => {
    // seen in the first soak: a replica joined a stage just rebuilt by CheckFree (fresh Adam, no
    // moments yet) and was dropped as drifted at its first iteration, though no drift was planted
    const cause = 'its weights drifted from its stage\'s replicas (digest a4ef1c7943d9d307, the others d87c35d2562be664, iteration 229)'
    const dropped = rec({ rung: 'survivors', stage: 1, lostPeer: 's1b', at: T0 + 20_700, cause })
    const r = checkInvariants(withEvents(history(), dropped))
    expect(r.violations.map(x => x.invariant)).toEqual(['no-unplanted-drift'])
    expect(r.violations[0].detail).toMatch(/stage 1: replica s1b dropped as drifted .* with no drift planted on it/)
    expect(r.figures.unplantedDrifts).toBe(1)
    const planted = { at: T0 + 20_000, peerId: 's1b', stage: 1, replica: 1, iteration: 66 }
    expect(failing(withEvents(history({ perturbations: [planted] }), dropped))).toEqual([])
    // planted on another peer, or landed after the drop: no explanation
    expect(failing(withEvents(history({ perturbations: [{ ...planted, peerId: 's1a' }] }), dropped))).toContain('no-unplanted-drift')
    expect(failing(withEvents(history({ perturbations: [{ ...planted, at: T0 + 30_000 }] }), dropped))).toContain('no-unplanted-drift')
    // a replica lost any other way is no drift, and the join replacing a drifted one is not counted twice
    expect(failing(withEvents(history(), { ...dropped, cause: 'connection closed' }))).toEqual([])
    const join = rec({ rung: 'replica', stage: 1, lostPeer: 's1b', at: T0 + 22_000, cause: `replaces a lost replica (${cause})` })
    expect(checkInvariants(withEvents(history(), dropped, join)).figures.unplantedDrifts).toBe(1)
  })
})

describe('replica observation', () => {
  it('digests tensor sets bit for bit, in name order', () => {
    const set = (x: number): Map<string, { dtype: 'F32', shape: number[], data: Float32Array }> => new Map([
      ['b', { dtype: 'F32', shape: [2], data: new Float32Array([1, x]) }],
      ['a', { dtype: 'F32', shape: [1], data: new Float32Array([3]) }]
    ])
    expect(tensorsDigest(set(2))).toBe(tensorsDigest(new Map([...set(2)].reverse())))
    expect(tensorsDigest(set(2))).not.toBe(tensorsDigest(set(2 + 2 ** -22))) // one bit of the mantissa
    const m = new Float32Array([1, 2])
    expect(tensorsDigest(new Map([['w', { dtype: 'F32' as const, shape: [2], data: m }]]))).not.toBe(tensorsDigest(new Map([['w', { dtype: 'F32' as const, shape: [1, 2], data: m }]])))
  })

  it('reads a drift landing from the peer log, and the replicas from the persisted assignment', async () => {
    expect(parsePerturbLine('[peer] FAULT INJECTION: stage 2 replica 1: weights perturbed after iteration 40', 'p', 5)).toEqual({ at: 5, peerId: 'p', stage: 2, replica: 1, iteration: 40 })
    expect(parsePerturbLine('[peer] FAULT INJECTION: stage 2\'s gradient made non-finite at iteration 40', 'p', 5)).toBeUndefined()
    const dir = await mkdtemp(join(tmpdir(), 'spotpipe-chaos-replicas-'))
    try {
      await writeFile(join(dir, 'coordinator.json'), JSON.stringify({
        epoch: 5,
        committedIteration: 41,
        assignment: { stages: [{ stage: 0, peers: ['a', 'b'] }, { stage: 1, peers: ['j', 'c', 'd'] }], joining: ['j'] },
        recoveries: []
      }))
      const v = await readPersisted(dir)
      expect(v).toMatchObject({ epoch: 5, committedIteration: 41, holders: ['a', 'c'], replicas: [['a', 'b'], ['j', 'c', 'd']], joining: ['j'] })
      expect(servingOf(v, 1)).toEqual(['c', 'd'])
      expect(servingOf(v, 7)).toEqual([])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

/**
 * The chaos suite's fast subset. The rules (invariants), the seeded schedule and the events file
 * are checked directly on hand-made inputs, each rule both ways: a history that breaks it is caught,
 * one that keeps it passes. Then one short deterministic schedule runs against a real fleet (a
 * coordinator, 4 stage peers and 2 spares as `spotpipe` processes, faults as real signals) and
 * every invariant is asserted on its history. The long soak is `npm run chaos`.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EventsFile } from '../cli/events-file.js'
import {
  FAULT_KINDS, INVARIANTS, defaultKinds, benchLines, checkInvariants, drawFault, formatReport, makeSchedule, parseInstallLine, runChaos, stallStretches,
  type ChaosHistory, type CoordinatorEvent, type InvariantName, type ScheduleItem
} from '../sim/chaos/index.js'

const T0 = 1_000_000

/**
 * A clean history: commits every 300 ms over 60 s, a checkpoint written every 10 iterations. With
 * `gap`, the commits from `gap.from` ms on come `gap.ms` later; with `stopAt`, none come after it.
 */
function history (over: Partial<ChaosHistory> = {}, o: { gap?: { from: number, ms: number }, stopAt?: number } = {}): ChaosHistory {
  const events: CoordinatorEvent[] = []
  const shift = o.gap?.ms ?? 0
  for (let i = 0; i < 200; i++) {
    const base = i * 300
    if (o.stopAt != null && base >= o.stopAt) break
    const at = T0 + base + (o.gap != null && base >= o.gap.from ? shift : 0)
    events.push({ type: 'iteration', at, iteration: i, ms: 250 })
    if ((i + 1) % 10 === 0) events.push({ type: 'checkpoint', at: at + 100, iteration: i, outcome: 'written' })
  }
  return {
    seed: 1,
    bounds: { stages: 4, checkpointEvery: 10, detectionMs: 10_000, transferMs: 500, boundMs: 15_000, resumeGraceMs: 15_000, strategy: 'checkfree' },
    schedule: [],
    startedAt: T0 - 5000,
    firstCommitAt: T0,
    chaosStart: T0 + 1000,
    chaosEnd: T0 + 58_000 + shift,
    settledAt: T0 + 59_800 + shift,
    endedAt: T0 + 61_000 + shift,
    events,
    persistedRecoveries: [],
    processes: [{ name: 'coordinator', role: 'coordinator', identity: 'c.key', startedAt: T0 - 5000, readyAt: T0 - 4000, exitAt: T0 + 61_000 + shift, atShutdown: true, eventsFile: '', stderrTail: [] }],
    faults: [],
    installs: [],
    assignments: [],
    deadTimes: [],
    coordinatorRestarts: [],
    weights: [0, 1, 2, 3].map(stage => ({ stage, peerId: `peer${stage}`, ok: true, version: 200 })),
    skipped: [],
    ...over
  }
}

const failing = (h: ChaosHistory): InvariantName[] => [...new Set(checkInvariants(h).violations.map(v => v.invariant))]

describe('chaos invariants', () => {
  it('a clean history keeps every invariant', () => {
    const r = checkInvariants(history())
    expect(r.violations).toEqual([])
    expect(r.figures).toMatchObject({ faults: 0, exits: 0, stalls: 0, unrecordedReinits: 0, checkpointsAbandonedFraction: 0, maxStalenessIters: 0, commits: 200 })
    expect(benchLines(r)).toEqual([
      'bench: chaos_faults=0', 'bench: chaos_exits=0', 'bench: chaos_stalls=0', 'bench: chaos_unrecorded_reinits=0',
      'bench: chaos_checkpoints_abandoned=0.000', 'bench: chaos_max_staleness_iters=0'
    ])
  })

  it('no-exit: an exit the harness did not cause counts; one it caused, or a peer that never got ready, does not', () => {
    const base = history()
    const peer = { name: 'peer-1', role: 'peer' as const, identity: 'p.key', peerId: 'p1', startedAt: T0, readyAt: T0 + 1000, exitAt: T0 + 9000, exitCode: 1, eventsFile: '', stderrTail: ['boom'] }
    expect(failing({ ...base, processes: [...base.processes, peer] })).toEqual(['no-exit'])
    expect(checkInvariants({ ...base, processes: [...base.processes, peer] }).figures.exits).toBe(1)
    expect(failing({ ...base, processes: [...base.processes, { ...peer, harnessSignal: 'SIGKILL' }] })).toEqual([])
    expect(failing({ ...base, processes: [...base.processes, { ...peer, readyAt: undefined }] })).toEqual([])
    // the coordinator gone at the end, not by the harness
    expect(failing({ ...base, processes: [{ ...base.processes[0], atShutdown: undefined, exitCode: 1 }] })).toContain('no-exit')
  })

  it('no-stall: a gap beyond bound + detection + transfer is a stall, unless the harness itself paused the coordinator', () => {
    const fault = { item: 0, kind: 'kill' as const, at: T0 + 20_100, target: 'peer-1', via: 'test', notes: [] }
    const gapped = (over: Partial<ChaosHistory>): ChaosHistory => history(over, { gap: { from: 20_000, ms: 30_000 } }) // 30.3 s without a commit
    // one fault allows 15 + 10.5 = 25.5 s
    expect(failing(gapped({ faults: [fault] }))).toEqual(['no-stall'])
    expect(checkInvariants(gapped({ faults: [fault] })).figures.stalls).toBe(1)
    // a fault and a second one during its recovery allow 36 s
    expect(failing(gapped({ faults: [fault, { ...fault, at: T0 + 22_000 }] }))).toEqual([])
    // a 20 s coordinator pause inside the gap is the harness's doing
    expect(failing(gapped({ faults: [fault], deadTimes: [{ from: T0 + 21_000, to: T0 + 41_000, why: 'coordinator paused' }] }))).toEqual([])
    // a cluster that never commits again after the last fault stalls up to the end of the run
    expect(failing(history({ faults: [fault] }, { stopAt: 20_000 }))).toEqual(['no-stall'])
  })

  it('no-stall: each fault restarts the clock, so faults faster than recovery are no stall, but a fault-free stretch beyond its allowance is', () => {
    const fault = { item: 0, kind: 'kill' as const, at: T0 + 20_100, target: 'peer-1', via: 'test', notes: [] }
    // 120 s without a commit: far above the gap's allowance (36 s for two or more faults)
    const gapped = (over: Partial<ChaosHistory>): ChaosHistory => history(over, { gap: { from: 20_000, ms: 120_000 } })
    // a fault every 10 s through the gap: each one cut off the recovery from the one before
    const dense = Array.from({ length: 12 }, (_, i) => ({ ...fault, item: i, at: T0 + 20_100 + i * 10_000 }))
    const r = checkInvariants(gapped({ faults: dense }))
    expect(r.figures.stalls).toBe(0)
    expect(r.notes.join('\n')).toMatch(/each fault came within its own allowance/)
    // the same faults but the last 40 s without any: the cluster had 25.5 s to recover and did not
    const early = dense.filter(f => f.at < T0 + 100_000)
    const late = checkInvariants(gapped({ faults: early }))
    expect(late.figures.stalls).toBe(1)
    expect(late.violations[0].detail).toMatch(/longest stretch without a fault 50\.0 s, allowed 36\.0 s/)
    expect(stallStretches(gapped({ faults: early }), T0 + 19_800, T0 + 140_100).map(s => s.from - T0)).toEqual([90_100])
  })

  it('lost-stage-recorded: a fault that took a stage away needs a recovery record for that stage after it', () => {
    const fault = { item: 0, kind: 'kill' as const, at: T0 + 20_000, target: 'peer-2', peerId: 'p2', stage: 2, removedStage: 2, via: 'test', notes: [] }
    const rec = { type: 'recovery', at: T0 + 21_000, stage: 2, rung: 'checkfree', epoch: 2, iteration: 70 }
    expect(failing(history({ faults: [fault] }))).toEqual(['lost-stage-recorded'])
    const h = history({ faults: [fault] })
    expect(failing({ ...h, events: [...h.events, rec] })).toEqual([])
    expect(failing({ ...h, events: [...h.events, { ...rec, stage: 1 }] })).toEqual(['lost-stage-recorded'])
    expect(failing({ ...h, events: [...h.events, { ...rec, at: T0 + 10_000 }] })).toEqual(['lost-stage-recorded']) // before the fault
    expect(failing({ ...h, persistedRecoveries: [{ at: T0 + 21_000, stage: 2, rung: 'checkfree', epoch: 2, iteration: 70 }] })).toEqual([])
  })

  it('no-unrecorded-reinit: a seed-built stage after training started needs a checkpoint rung from init', () => {
    const seed = { at: T0 + 20_000, peerId: 'p9', stage: 1, epoch: 3, source: 'seed' as const, via: 'log' as const }
    expect(failing(history({ installs: [{ ...seed, at: T0 - 100 }] }))).toEqual([]) // the initial assignment
    expect(failing(history({ installs: [seed] }))).toEqual(['no-unrecorded-reinit'])
    expect(checkInvariants(history({ installs: [seed] })).figures.unrecordedReinits).toBe(1)
    const h = history({ installs: [seed] })
    const init = { type: 'recovery', at: T0 + 20_500, stage: 1, rung: 'checkpoint', checkpointId: 'init', epoch: 3, iteration: 66, iterationsBehind: 0 }
    expect(failing({ ...h, events: [...h.events, init] }).filter(x => x === 'no-unrecorded-reinit')).toEqual([])
    expect(failing({ ...h, events: [...h.events, { ...init, rung: 'checkfree', checkpointId: undefined }] })).toContain('no-unrecorded-reinit')
  })

  it('checkpoints: abandoned above 5% fails, and so does a recovery after which none is written', () => {
    const base = history()
    const abandoned = base.events.map(e => e.type === 'checkpoint' && (e.iteration as number) < 60 ? { ...e, outcome: 'abandoned', reason: 'ERR_VERSION_UNAVAILABLE' } : e)
    const r = checkInvariants({ ...base, events: abandoned })
    expect(r.figures.checkpointsAbandonedFraction).toBeCloseTo(6 / 20, 10)
    expect([...new Set(r.violations.map(x => x.invariant))]).toEqual(['checkpoints-abandoned'])
    // after a recovery at iteration 100 only abandoned checkpoints: none written again
    const after = base.events.map(e => e.type === 'checkpoint' && (e.iteration as number) >= 100 ? { ...e, outcome: 'abandoned' } : e)
    const rec = { type: 'recovery', at: T0 + 100 * 300 + 50, stage: 0, rung: 'checkpoint', checkpointId: 'ckpt-99', epoch: 2, iteration: 100 }
    expect(failing({ ...base, events: [...after, rec] })).toEqual(['checkpoints-written', 'checkpoints-abandoned'])
  })

  it('checkpoints: the fraction lost counts stage files, and a stage is held to its own newest file', () => {
    const base = history()
    const stages = [0, 1, 2, 3]
    // every checkpoint names its stages; six of them lost stage 2's file (its holder died mid-pull)
    const events = base.events.map(e => {
      if (e.type !== 'checkpoint') return e
      const lost = (e.iteration as number) < 60
      return { ...e, stages, written: lost ? [0, 1, 3] : stages, complete: !lost, outcome: lost ? 'partial' : 'written', ...(lost ? { reason: 'stage 2: stream ended' } : {}) }
    })
    const r = checkInvariants({ ...base, events })
    expect(r.figures).toMatchObject({ stageFilesTaken: 80, stageFilesLost: 6, checkpointsPartial: 6, checkpointsAbandoned: 0 })
    expect(r.figures.checkpointsAbandonedFraction).toBeCloseTo(6 / 80, 10)
    expect(failing({ ...base, events })).toEqual(['checkpoints-abandoned'])
    // a retry that pulled only stage 2 and got it: 1 file taken, none lost; under 5% again
    const retries = events.flatMap(e => e.type === 'checkpoint' && e.outcome === 'partial'
      ? [e, { type: 'checkpoint', at: (e.at as number) + 400, iteration: (e.iteration as number) + 1, outcome: 'written', stages: [2], written: [2], complete: false }]
      : [e])
    const ok = checkInvariants({ ...base, events: retries })
    expect(ok.figures).toMatchObject({ stageFilesTaken: 86, stageFilesLost: 6 })
    expect(failing({ ...base, events: retries })).toEqual(['checkpoints-abandoned'])
    const fewer = events.map(e => e.type === 'checkpoint' && (e.iteration as number) < 30 ? { ...e, written: stages, complete: true, outcome: 'written' } : e)
    expect(checkInvariants({ ...base, events: fewer }).figures.checkpointsAbandonedFraction).toBeCloseTo(3 / 80, 10)
    expect(failing({ ...base, events: fewer })).toEqual([])
    // a recovery planned after checkpoint 59 (which lacked stage 2's file) restores from 49
    const rec = { type: 'recovery', at: T0 + 19_000, stage: 2, rung: 'checkpoint', epoch: 2, iteration: 60, checkpointId: 'ckpt-49' }
    const lost59 = base.events.map(e => e.type !== 'checkpoint' ? e : e.iteration === 59
      ? { ...e, stages, written: [0, 1, 3], complete: false, outcome: 'partial' }
      : { ...e, stages, written: stages, complete: true })
    const rungLoss = (x: CoordinatorEvent): InvariantName[] => failing({ ...base, events: [...lost59, x] }).filter(i => i === 'rung-loss')
    // stage 2's newest file is 49: restoring it from 49 loses no more than the rung may
    expect(rungLoss(rec)).toEqual([])
    // stage 0 had a file of 59: going back to 49 lost more than the rung may
    expect(rungLoss({ ...rec, stage: 0 })).toEqual(['rung-loss'])
  })

  it('nonfinite-reported: a planted non-finite step that landed must be reported as a divergence of its stage', () => {
    const poisoned = { name: 'peer-9', role: 'peer' as const, identity: 'p9.key', peerId: 'p9', startedAt: T0 + 9000, readyAt: T0 + 9500, eventsFile: '', stderrTail: [], env: { SPOTPIPE_FAULT_NONFINITE: '2:+3' } }
    const took = { at: T0 + 10_000, peerId: 'p9', stage: 2, epoch: 3, source: 'rebuilt' as const, via: 'log' as const }
    const h = history({ processes: [...history().processes, poisoned], installs: [took] })
    // it held stage 2 from 10 s to the end: ~160 commits, far past its third step
    expect(failing(h)).toEqual(['nonfinite-reported'])
    const div = { type: 'divergence', at: T0 + 11_000, stage: 2, iteration: 37 }
    expect(failing({ ...h, events: [...h.events, div] })).toEqual([])
    expect(failing({ ...h, events: [...h.events, { ...div, stage: 1 }] })).toEqual(['nonfinite-reported'])
    // an attempt it held was aborted (iteration 34 began twice) before its third step committed:
    // the poisoned step may have been dropped with that attempt, so it is not a violation
    const begins = [{ type: 'begin', at: T0 + 10_050, iteration: 34, epoch: 3 }, { type: 'begin', at: T0 + 10_150, iteration: 34, epoch: 4 }]
    expect(failing({ ...h, events: [...h.events, ...begins] })).toEqual([])
    // one begin per iteration: nothing was aborted, the step landed and was not reported
    expect(failing({ ...h, events: [...h.events, begins[0]] })).toEqual(['nonfinite-reported'])
    // handed on after two commits: it never reached its third step, so nothing was due
    const moved = { ...took, peerId: 'p8', at: T0 + 10_000 + 2 * 300 + 100 }
    expect(failing({ ...h, installs: [took, moved] })).toEqual([])
  })

  it('staleness and rung-loss: a checkpoint restore may lose only the iterations since the newest checkpoint', () => {
    const base = history()
    const rec = { type: 'recovery', at: T0 + 150 * 300 + 50, stage: 0, rung: 'checkpoint', epoch: 2, iteration: 150 }
    // restored from checkpoint 139: 10 behind, within K + 1
    expect(checkInvariants({ ...base, events: [...base.events, { ...rec, checkpointId: 'ckpt-139' }] }).figures.maxStalenessIters).toBe(10)
    expect(failing({ ...base, events: [...base.events, { ...rec, checkpointId: 'ckpt-139' }] })).toEqual([])
    // from checkpoint 49 while 139 was there: 100 behind, and more than the rung may lose
    expect(failing({ ...base, events: [...base.events, { ...rec, checkpointId: 'ckpt-49' }] })).toEqual(['staleness', 'rung-loss'])
    expect(failing({ ...base, events: [...base.events, { ...rec, iterationsBehind: 30 }] })).toEqual(['staleness', 'rung-loss'])
    // today's records name no checkpoint: inferred from the newest written before (139 -> 10 behind)
    const r = checkInvariants({ ...base, events: [...base.events, rec] })
    expect(r.figures.maxStalenessIters).toBe(10)
    expect(r.notes.join()).toMatch(/inferred/)
    // CheckFree may lose only the in-flight iteration
    expect(failing({ ...base, events: [...base.events, { ...rec, rung: 'checkfree', iterationsBehind: 3 }] })).toEqual(['rung-loss'])
    expect(failing({ ...base, events: [...base.events, { ...rec, rung: 'checkfree', iterationsBehind: 0 }] })).toEqual([])
  })

  it('commits-contiguous: an iteration committed twice (progress lost) or skipped fails', () => {
    const base = history()
    const again = base.events.map(e => e.type === 'iteration' && e.iteration === 120 ? { ...e, iteration: 100 } : e)
    expect(failing({ ...base, events: again })).toEqual(['commits-contiguous'])
    // iteration 120 missing: a gap, unless it was skipped for a reported non-finite step
    const gap = base.events.filter(e => !(e.type === 'iteration' && e.iteration === 120))
    expect(failing({ ...base, events: gap })).toEqual(['commits-contiguous'])
    const div = { type: 'divergence', at: T0 + 120 * 300, iteration: 120, stage: 1, what: 'gradient', action: 'skip' }
    expect(failing({ ...base, events: [...gap, div] })).toEqual([])
    expect(failing({ ...base, events: [...gap, { ...div, action: 'rollback' }] })).toEqual(['commits-contiguous'])
  })

  it('no-nan: a stage whose weights hold NaN fails; one that cannot be checked fails only when the run settled', () => {
    const nan = { stage: 2, peerId: 'peer2', ok: false, error: 'ERR_WEIGHTS_PROTOCOL: sent a non-finite value (NaN) in blocks.2.attn.wq' }
    expect(failing(history({ weights: [nan] }))).toEqual(['no-nan'])
    const gone = { stage: 2, peerId: 'peer2', ok: false, error: 'the holder is not a running fleet process' }
    expect(failing(history({ weights: [gone] }))).toEqual(['no-nan'])
    expect(failing(history({ weights: [gone] }, { stopAt: 30_000 }))).toEqual(['no-stall']) // the stall is what failed
  })

  it('reads the install lines of today\'s peers', () => {
    expect(parseInstallLine('[peer] assigned stage 2 of 4 under epoch 7', 'p', 5)).toEqual({ at: 5, peerId: 'p', stage: 2, epoch: 7, source: 'seed', via: 'log' })
    expect(parseInstallLine('[peer] rebuilt stage 1 by checkfree under epoch 3: 100 bytes, transfer 3 ms', 'p', 5)).toMatchObject({ stage: 1, epoch: 3, source: 'rebuilt', rung: 'checkfree' })
    expect(parseInstallLine('[peer] peer X listening', 'p', 5)).toBeUndefined()
  })
})

describe('chaos schedule', () => {
  it('the same seed gives the same schedule, another seed another; a fault falls due in every window', () => {
    const a = makeSchedule({ seed: 7, durationMs: 600_000, everyMs: 10_000, stages: 4 })
    expect(makeSchedule({ seed: 7, durationMs: 600_000, everyMs: 10_000, stages: 4 })).toEqual(a)
    expect(makeSchedule({ seed: 8, durationMs: 600_000, everyMs: 10_000, stages: 4 })).not.toEqual(a)
    let prev = 0
    for (const it of a) { expect(it.atMs - prev).toBeLessThanOrEqual(10_000); prev = it.atMs }
    expect(600_000 - prev).toBeLessThanOrEqual(10_000)
    // every kind is drawn, pairs of both sorts, and faults during a recovery at both points
    const kinds = new Set(a.flatMap(x => x.faults.map(f => f.kind)))
    // without replicas, every kind but the replica ones (kill-stage, drift)
    expect([...kinds].sort()).toEqual([...defaultKinds(1)].sort())
    expect(defaultKinds(1)).toEqual(FAULT_KINDS.filter(k => k !== 'kill-stage' && k !== 'drift'))
    expect(a.some(x => x.mode === 'together')).toBe(true)
    expect(new Set(a.filter(x => x.mode === 'during-recovery').map(x => x.recoveryPoint))).toEqual(new Set(['transfer', 'install']))
    for (const x of a.filter(y => y.mode === 'during-recovery')) expect(['kill', 'term', 'restart-same-identity', 'replace']).toContain(x.faults[0].kind)
  })

  it('keeps to the kinds asked for and rejects bad options', () => {
    const only = makeSchedule({ seed: 1, durationMs: 120_000, stages: 4, kinds: ['kill', 'stop-cont'] })
    for (const x of only) for (const f of x.faults) expect(['kill', 'stop-cont']).toContain(f.kind)
    expect(() => makeSchedule({ seed: 1, durationMs: 0, stages: 4 })).toThrow(expect.objectContaining({ code: 'ERR_CHAOS_CONFIG' }))
    expect(() => makeSchedule({ seed: 1, durationMs: 1000, stages: 4, kinds: ['explode' as never] })).toThrow(/unknown fault kind "explode"/)
  })
})

describe('--events file', () => {
  let dir = ''
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'spotpipe-events-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('appends one JSON line per event, one per element of an array, across reopenings', async () => {
    const path = join(dir, 'e.jsonl')
    const a = new EventsFile(path)
    a.write('iteration', { iteration: 3, loss: NaN })
    a.write('recovery', [{ stage: 1 }, { stage: 2 }])
    a.close()
    const b = new EventsFile(path)
    b.write('start', { restored: true })
    b.close()
    const lines = (await readFile(path, 'utf8')).trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
    expect(lines.map(l => [l.type, l.iteration ?? l.stage ?? l.restored])).toEqual([['iteration', 3], ['recovery', 1], ['recovery', 2], ['start', true]])
    expect(lines[0].loss).toBeNull()
    for (const l of lines) expect(typeof l.at).toBe('number')
    expect(() => new EventsFile(join(dir, 'missing', 'e.jsonl'))).toThrow(expect.objectContaining({ code: 'ERR_EVENTS_FILE' }))
  })
})

/**
 * The fast real run: six schedule items over 50 s, covering a crash (CheckFree), a spot notice
 * (handover), two adjacent stages crashing at once (the checkpoint rung, after which checkpoints
 * must go on being written), a crash with a donor hung during the transfer, a coordinator pause,
 * and a coordinator restart while a checkpoint is being pulled.
 */
const FAST: ScheduleItem[] = (() => {
  const r = () => 0.5 // fixed draws: durations and delays in the middle of their ranges
  const stage = (s: number) => ({ role: 'stage' as const, stage: s })
  return [
    { index: 0, atMs: 2000, point: 'forward', mode: 'single', faults: [drawFault(r, 'kill', stage(2))] },
    { index: 1, atMs: 9000, point: 'commit', mode: 'single', faults: [drawFault(r, 'term', stage(1))] },
    { index: 2, atMs: 16_000, point: 'begin', mode: 'together', faults: [drawFault(r, 'kill', stage(0)), drawFault(r, 'kill', stage(1))] },
    { index: 3, atMs: 26_000, point: 'backward', mode: 'during-recovery', recoveryPoint: 'transfer', faults: [drawFault(r, 'kill', stage(2)), { kind: 'stop-cont', target: { role: 'neighbour', offset: 1 }, durationMs: 1500 }] },
    { index: 4, atMs: 33_000, point: 'begin', mode: 'single', faults: [{ kind: 'coordinator-pause', target: { role: 'coordinator' }, durationMs: 2000 }] },
    { index: 5, atMs: 38_000, point: 'checkpoint-pull', mode: 'single', faults: [{ kind: 'coordinator-kill-restart', target: { role: 'coordinator' }, durationMs: 1000 }] }
  ]
})()

describe('chaos run (real processes)', () => {
  let h: ChaosHistory | undefined
  const stop = new AbortController()
  // the run kills its fleet when it ends; this covers a run cut off by the hook's timeout
  afterAll(() => { stop.abort() })
  beforeAll(async () => {
    const lines: string[] = []
    try {
      h = await runChaos({ seed: 1, durationMs: 50_000, schedule: FAST, signal: stop.signal, log: (l) => { lines.push(l) } })
    } finally {
      if (h != null) lines.push(...formatReport(h, checkInvariants(h)))
      process.stdout.write(lines.join('\n') + '\n')
    }
  }, 420_000)

  it('applied the faults and ended with every process stopped', () => {
    const run = h as ChaosHistory
    expect(run.faults.length).toBeGreaterThanOrEqual(7)
    expect(run.processes.every(p => p.exitAt != null)).toBe(true)
    expect(run.events.filter(e => e.type === 'iteration').length).toBeGreaterThan(20)
  })

  // one assertion per invariant, so a failure names the rule that broke
  for (const name of INVARIANTS) {
    it(`keeps ${name}`, () => {
      const violations = checkInvariants(h as ChaosHistory).violations.filter(v => v.invariant === name).map(v => v.detail)
      expect(violations).toEqual([])
    })
  }
})

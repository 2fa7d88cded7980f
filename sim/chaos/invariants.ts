/**
 * The invariants a chaos run must keep, checked over its whole history (history.ts). Pure: no I/O,
 * so each rule is tested on hand-made histories as well as on real runs.
 *
 *   no-exit               no process exits unless the harness killed it; the coordinator is running at the end
 *   no-stall              no gap between commits longer than the allowance (stallAllowance), where
 *                         each fault restarts the clock: under faults faster than the cluster can
 *                         recover, the stall is the longest stretch between them (stallStretches)
 *   lost-stage-recorded   every fault that took a stage from its holder is followed by a recovery record for that stage
 *   no-unrecorded-reinit  once training started, a stage built from the seed matches a recorded rung
 *                         (checkpoint from 'init')
 *   checkpoints-written   a checkpoint is written again after every recovery (within 3 intervals) and
 *                         the newest one stays within 3 intervals of the last commit
 *   checkpoints-abandoned at most 5% of the stage files the checkpoints pulled are lost (a holder
 *                         lost mid-pull costs its stage's file; the other stages' are written as a
 *                         partial checkpoint)
 *   staleness             a stage restored from a checkpoint is at most the interval + 1 iterations behind
 *   rung-loss             what each rung may lose: handover, replica and CheckFree at most the
 *                         in-flight iteration (nothing committed); checkpoint the iterations since
 *                         the newest checkpoint holding that stage written before the recovery
 *   commits-contiguous    the committed iterations go up by one (none committed twice, none skipped
 *                         but those skipped for a reported non-finite step)
 *   no-nan                every stage's final weights and optimizer state are finite
 *   nonfinite-reported    a planted non-finite step that landed (its peer held the stage long
 *                         enough) is reported as a divergence of that stage
 *
 * With replicas (bounds.replicas > 1, faults that name their stage's replicas):
 *   lost-stage-recorded   a fault that took one replica away is followed by a record naming that
 *                         peer (rung survivors), or by a ladder record of the stage if it was the last
 *   rung-loss             survivors and a replica join lose nothing committed either
 *   replica-loss-no-rebuild  a replica lost while its stage kept a live one is never followed by a
 *                         CheckFree, CheckFree+ or checkpoint rebuild of that stage that no other
 *                         fault (on the stage's other replicas, or the coordinator) helped cause
 *   replicas-identical    at the end, every stage's serving replicas hold bit-identical weights and
 *                         Adam moments (digests of the same committed iteration)
 *   drift-mended          a planted drift that landed (its peer perturbed its weights while its
 *                         stage had another serving replica) is followed by a record dropping that peer
 *   no-unplanted-drift    no replica is dropped as drifted unless a planted drift landed on it: the
 *                         replicas of a stage never diverge on their own, nor does their digest say so
 */
import type { ChaosHistory, CoordinatorEvent, DeadTime, RecoveryRecordView } from './history.js'

export const INVARIANTS = [
  'no-exit', 'no-stall', 'lost-stage-recorded', 'no-unrecorded-reinit', 'checkpoints-written',
  'checkpoints-abandoned', 'staleness', 'rung-loss', 'commits-contiguous', 'no-nan', 'nonfinite-reported',
  'replica-loss-no-rebuild', 'replicas-identical', 'drift-mended', 'no-unplanted-drift'
] as const
export type InvariantName = typeof INVARIANTS[number]

export interface Violation {
  invariant: InvariantName
  at?: number
  detail: string
}

export interface ChaosFigures {
  faults: number
  exits: number
  stalls: number
  unrecordedReinits: number
  /** Stage files lost / stage files pulled, over every checkpoint taken; 0 when none was taken. */
  checkpointsAbandonedFraction: number
  /** Checkpoints with every stage pulled written, some, none. */
  checkpointsWritten: number
  checkpointsPartial: number
  checkpointsAbandoned: number
  /** Stage files the checkpoints pulled, and of those lost. */
  stageFilesTaken: number
  stageFilesLost: number
  maxStalenessIters: number
  commits: number
  recoveries: number
  lostStages: number
  longestGapMs: number
  /** Peers that exited before they were ready (e.g. started while the coordinator was down); retried, not counted as exits. */
  startFailures: number
  recoveryFailures: number
  divergences: number
  /** Peers per stage the run aimed for (bounds.replicas). */
  replicas: number
  /** Faults that took one replica of a stage away while it kept another (replica losses). */
  replicaLosses: number
  /** Of those, the ones a CheckFree/CheckFree+/checkpoint rebuild of the stage followed with no other fault to blame. */
  rebuildsAfterReplicaLoss: number
  /** Stages whose serving replicas ended with different weights (same iteration). */
  replicaMismatches: number
  /** Stages whose replicas could be compared at the end (at least two served the same iteration). */
  replicaStagesCompared: number
  /** Planted drifts that landed, and of those, the ones the coordinator dropped the drifted replica for. */
  driftsLanded: number
  driftsMended: number
  /** Replicas dropped as drifted with no planted drift on them. */
  unplantedDrifts: number
}

export interface ChaosReport {
  violations: Violation[]
  figures: ChaosFigures
  /** How stalls are judged, in words, with the numbers. */
  stallRule: string
  notes: string[]
}

/** Max ms of [from, to] covered by the union of `spans`. */
function covered (spans: DeadTime[], from: number, to: number): number {
  const parts = spans.map(s => [Math.max(from, s.from), Math.min(to, s.to)]).filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0])
  let sum = 0
  let end = -Infinity
  for (const [a, b] of parts) {
    if (b <= end) continue
    sum += b - Math.max(a, end)
    end = b
  }
  return sum
}

/** Every recovery record, from the events file and the persisted state, without duplicates. */
export function recoveryRecords (h: ChaosHistory): RecoveryRecordView[] {
  const out = new Map<string, RecoveryRecordView>()
  const fromEvents = h.events.filter(e => e.type === 'recovery') as unknown as RecoveryRecordView[]
  for (const r of [...h.persistedRecoveries, ...fromEvents]) {
    if (typeof r.stage !== 'number' || typeof r.at !== 'number') continue
    // the lost peer too: two replicas of one stage dropped in one round are two records
    const key = `${r.epoch ?? '?'}:${r.stage}:${r.rung}:${r.iteration ?? '?'}:${r.lostPeer ?? '?'}`
    if (!out.has(key)) out.set(key, r)
  }
  return [...out.values()].sort((a, b) => a.at - b.at)
}

/** The stage files checkpoint event `c` pulled and of those wrote (an event naming no stages counts as one file). */
export function stageFiles (c: CoordinatorEvent): { taken: number, written: number } {
  const taken = Array.isArray(c.stages) ? c.stages.length : 1
  const written = Array.isArray(c.written) ? c.written.length : c.outcome === 'written' ? taken : 0
  return { taken, written }
}

/** Whether checkpoint event `c` wrote stage `stage`'s file (any stage when undefined). */
function wroteStage (c: CoordinatorEvent, stage?: number): boolean {
  if (c.outcome !== 'written' && c.outcome !== 'partial') return false
  if (stage == null || !Array.isArray(c.written)) return true
  return (c.written as unknown[]).includes(stage)
}

/** Iteration of the newest checkpoint written before `t` holding stage `stage` (any, when undefined), or undefined. */
function newestWrittenBefore (checkpoints: CoordinatorEvent[], t: number, stage?: number): number | undefined {
  let best: number | undefined
  for (const c of checkpoints) if (wroteStage(c, stage) && c.at < t && typeof c.iteration === 'number' && (best == null || c.iteration > best)) best = c.iteration
  return best
}

/**
 * How many committed iterations a checkpoint-rung recovery lost: its own `iterationsBehind`, else
 * from its `checkpointId` ('ckpt-N' or 'init'), else inferred from the newest checkpoint written
 * before it was planned (today's records name neither).
 */
export function iterationsBehind (r: RecoveryRecordView, checkpoints: CoordinatorEvent[], plannedAt = r.at): { behind: number, from: 'record' | 'checkpointId' | 'inferred', checkpoint?: number } | undefined {
  if (typeof r.iterationsBehind === 'number') return { behind: r.iterationsBehind, from: 'record' }
  if (typeof r.iteration !== 'number') return undefined
  const committed = r.iteration - 1
  if (typeof r.checkpointId === 'string') {
    if (r.checkpointId === 'init') return { behind: committed + 1, from: 'checkpointId' }
    const m = /^ckpt-(\d+)$/.exec(r.checkpointId)
    if (m != null) return { behind: committed - Number(m[1]), from: 'checkpointId', checkpoint: Number(m[1]) }
  }
  const ck = newestWrittenBefore(checkpoints, plannedAt, r.stage)
  return ck == null ? { behind: committed + 1, from: 'inferred' } : { behind: committed - ck, from: 'inferred', checkpoint: ck }
}

/** A record saying a stage was (re)built from the seeded initial weights. */
function isInitRecord (r: RecoveryRecordView, checkpoints: CoordinatorEvent[]): boolean {
  if (r.checkpointId === 'init' || r.rung === 'init' || r.rung === 'seed') return true
  return r.rung === 'checkpoint' && r.checkpointId == null && newestWrittenBefore(checkpoints, r.at, r.stage) == null
}

const IN_FLIGHT_RUNGS = new Set(['handover', 'replica', 'checkfree', 'checkfree-plus', 'survivors', 'rejoin'])

/** Rungs that rebuild a stage's state from elsewhere than its own replicas: what a replica loss must never need. */
const REBUILD_RUNGS = new Set(['checkfree', 'checkfree-plus', 'checkpoint'])

/** A record of a peer joining a stage as a new replica (rung `replica` in a replicated run not using the redundant strategy). */
function isJoinRecord (r: RecoveryRecordView, h: ChaosHistory): boolean {
  return r.rung === 'replica' && (h.bounds.replicas ?? 1) > 1 && h.bounds.strategy !== 'redundant'
}

/** A fault that took one replica of a stage away while the stage had another serving one. */
function isReplicaLoss (f: ChaosHistory['faults'][number]): boolean {
  return f.removedStage != null && (f.stageReplicas?.length ?? 0) >= 2 && f.peerId != null && f.stageReplicas?.includes(f.peerId) === true
}

/**
 * Other faults that may share the blame for a rebuild of stage `stage` at `until` after fault `f`: a
 * fault on another replica of the stage (or on the stage) whose episode overlapped [f.at - detection,
 * until], or one on the coordinator (a restarted coordinator may not hear a survivor in time).
 */
function contributors (h: ChaosHistory, f: ChaosHistory['faults'][number], stage: number, until: number): ChaosHistory['faults'] {
  const others = new Set((f.stageReplicas ?? []).filter(p => p !== f.peerId))
  const from = f.at - h.bounds.detectionMs
  return h.faults.filter(g => g !== f && g.at <= until && (g.endAt ?? h.endedAt) >= from &&
    (g.target === 'coordinator' || (g.peerId != null && others.has(g.peerId)) || g.stage === stage || g.removedStage === stage))
}

/** The stall allowance for a gap between commits, and its parts. */
export function stallAllowance (h: ChaosHistory, from: number, to: number): { ms: number, faults: number, deadMs: number, restarts: number } {
  const b = h.bounds
  const faults = h.faults.filter(f => f.at >= from - b.detectionMs && f.at <= to).length
  const deadMs = covered(h.deadTimes, from, to)
  const restarts = h.coordinatorRestarts.filter(r => r.at >= from && r.at <= to).length
  // a fault and a second one during its recovery each cost a detection and a transfer; more faults
  // in one gap mean the cluster did not recover in between, which is what a stall is
  const ms = b.boundMs + (b.detectionMs + b.transferMs) * Math.min(2, Math.max(1, faults)) + deadMs + restarts * b.resumeGraceMs
  return { ms, faults, deadMs, restarts }
}

/**
 * The stretches of a gap between commits that break the no-stall rule. The gap as a whole is judged
 * by stallAllowance; a gap that exceeds it is a stall only if it also has a stretch (cut at every
 * fault in the gap: from the gap's start or a fault to the next fault or the gap's end) longer than
 * that stretch's own allowance. So every fault gets detection + transfer + the bound to recover
 * from before the next one, which is what "no stall longer than detection + transfer + a bound"
 * asks; a cluster that stands still with no fault to blame is a stall as before. (The 115-minute
 * soak had 37 faults, 5 s apart, in a 195 s gap: every recovery was cut off by the next fault, and
 * the old rule, which credits at most two faults per gap, called that a stall.)
 */
export function stallStretches (h: ChaosHistory, from: number, to: number): Array<{ from: number, to: number, allowedMs: number }> {
  const cuts = [from, ...h.faults.map(f => f.at).filter(t => t > from && t < to).sort((x, y) => x - y), to]
  const out: Array<{ from: number, to: number, allowedMs: number }> = []
  for (let i = 1; i < cuts.length; i++) {
    const a = stallAllowance(h, cuts[i - 1], cuts[i])
    if (cuts[i] - cuts[i - 1] > a.ms) out.push({ from: cuts[i - 1], to: cuts[i], allowedMs: a.ms })
  }
  return out
}

export function checkInvariants (h: ChaosHistory): ChaosReport {
  const v: Violation[] = []
  const notes: string[] = []
  const b = h.bounds
  const K = b.checkpointEvery
  const commits = h.events.filter(e => e.type === 'iteration' && typeof e.iteration === 'number').sort((x, y) => x.at - y.at)
  const checkpoints = h.events.filter(e => e.type === 'checkpoint')
  const records = recoveryRecords(h)
  const firstCommit = h.firstCommitAt ?? commits[0]?.at ?? Infinity

  // no-exit
  let exits = 0
  let startFailures = 0
  for (const p of h.processes) {
    if (p.exitAt == null || p.atShutdown === true || p.harnessSignal != null) continue
    if (p.role === 'peer' && p.readyAt == null) { startFailures += 1; continue }
    exits += 1
    v.push({ invariant: 'no-exit', at: p.exitAt, detail: `${p.name} (${p.peerId?.slice(-8) ?? 'no id'}) exited on its own (${p.exitCode ?? p.exitSignal ?? '?'}): ${p.stderrTail.slice(-3).join(' | ')}` })
  }
  const lastCoordinator = h.processes.filter(p => p.role === 'coordinator').at(-1)
  if (lastCoordinator == null || (lastCoordinator.exitAt != null && lastCoordinator.atShutdown !== true) || lastCoordinator.readyAt == null) {
    v.push({ invariant: 'no-exit', detail: 'the coordinator was not running at the end of the run' })
  }
  if (startFailures > 0) notes.push(`${startFailures} peer start(s) failed before the peer was ready (retried by the fleet)`)

  // no-stall: from the start of the chaos phase to the end of settling
  let stalls = 0
  let longest = 0
  const times = [h.chaosStart, ...commits.map(c => c.at).filter(t => t > h.chaosStart && t <= h.settledAt), h.settledAt]
  for (let i = 1; i < times.length; i++) {
    const gap = times[i] - times[i - 1]
    longest = Math.max(longest, gap)
    const a = stallAllowance(h, times[i - 1], times[i])
    if (gap <= a.ms) continue
    const end = i === times.length - 1 ? 'the end of the run' : 'the next commit'
    const over = stallStretches(h, times[i - 1], times[i])
    if (over.length === 0) {
      notes.push(`no commit for ${(gap / 1000).toFixed(1)} s from +${((times[i - 1] - h.chaosStart) / 1000).toFixed(1)} s (${a.faults} faults): above the gap's allowance of ${(a.ms / 1000).toFixed(1)} s, but each fault came within its own allowance of the one before`)
      continue
    }
    stalls += 1
    const worst = over.reduce((x, y) => (y.to - y.from - y.allowedMs) > (x.to - x.from - x.allowedMs) ? y : x)
    v.push({ invariant: 'no-stall', at: times[i - 1], detail: `no commit for ${(gap / 1000).toFixed(1)} s until ${end} (allowed ${(a.ms / 1000).toFixed(1)} s: ${a.faults} fault(s), ${(a.deadMs / 1000).toFixed(1)} s harness dead time, ${a.restarts} coordinator restart(s)); longest stretch without a fault ${((worst.to - worst.from) / 1000).toFixed(1)} s, allowed ${(worst.allowedMs / 1000).toFixed(1)} s` })
  }
  const stallRule = `a gap between commits is a stall above bound ${b.boundMs} ms + (detection ${b.detectionMs} ms + transfer ${b.transferMs} ms) x min(2, faults in the gap) + harness dead time (coordinator paused or down, fleet short of ${b.stages} running peers) + ${b.resumeGraceMs} ms per coordinator restart, and when some stretch of it between faults is above the same allowance counted over that stretch (each fault restarts the clock)`

  // lost-stage-recorded
  // with replicas, a replica's loss is recorded by a record naming it (survivors), or, when it was
  // the stage's last, by the ladder's record of the stage (which names one of the lost replicas)
  const removals = h.faults.filter(f => f.removedStage != null)
  for (const f of removals) {
    const after = records.filter(x => x.stage === f.removedStage && x.at >= f.at - 500 && x.at <= h.endedAt)
    const replica = isReplicaLoss(f)
    const r = replica ? after.find(x => !isJoinRecord(x, h) && (x.lostPeer === f.peerId || x.rung !== 'survivors')) : after[0]
    if (r == null) {
      v.push({
        invariant: 'lost-stage-recorded',
        at: f.at,
        detail: replica
          ? `${f.kind} of ${f.target} (${f.peerId?.slice(-8) ?? '?'}) took replica ${f.replica ?? '?'} of stage ${f.removedStage ?? '?'} away (${f.stageReplicas?.length ?? '?'} serving), and neither a survivors record naming it nor a ladder record of stage ${f.removedStage ?? '?'} followed${after.length > 0 ? ` (only ${after.map(x => `${x.rung} of ${x.lostPeer?.slice(-8) ?? '?'}`).join(', ')})` : ''}`
          : `${f.kind} of ${f.target} (${f.peerId?.slice(-8) ?? '?'}) took stage ${f.removedStage ?? '?'} away, and no recovery record for stage ${f.removedStage ?? '?'} followed`
      })
    }
  }

  // replica-loss-no-rebuild: a replica lost while its stage keeps a live one is no stage loss. The
  // fault's outcome is the first of: a survivors record naming its peer (right), or a rebuild of the
  // stage within one stall allowance (wrong, unless another fault helped take the stage away)
  const replicaLosses = removals.filter(isReplicaLoss)
  let rebuildsAfterReplicaLoss = 0
  const horizon = b.detectionMs + b.transferMs + b.boundMs
  for (const f of replicaLosses) {
    const s = f.removedStage as number
    const after = records.filter(x => x.stage === s && x.at >= f.at - 500 && x.at <= f.at + horizon)
    const kept = after.find(x => x.rung === 'survivors' && x.lostPeer === f.peerId)
    const rebuilt = after.find(x => REBUILD_RUNGS.has(x.rung) && (kept == null || x.at < kept.at))
    if (rebuilt == null) continue
    const blame = contributors(h, f, s, rebuilt.at)
    if (blame.length > 0) {
      notes.push(`stage ${s} rebuilt by ${rebuilt.rung} after ${f.kind} of its replica ${f.replica ?? '?'} (${f.peerId?.slice(-8) ?? '?'}), with other faults to share the blame: ${blame.map(g => `${g.kind} of ${g.target}`).join(', ')}`)
      continue
    }
    rebuildsAfterReplicaLoss += 1
    v.push({ invariant: 'replica-loss-no-rebuild', at: f.at, detail: `${f.kind} of ${f.target} (${f.peerId?.slice(-8) ?? '?'}) took replica ${f.replica ?? '?'} of stage ${s} while ${(f.stageReplicas ?? []).filter(p => p !== f.peerId).map(p => p.slice(-8)).join(', ')} still served it, and the stage was rebuilt by ${rebuilt.rung} ${((rebuilt.at - f.at) / 1000).toFixed(1)} s later (record: lost ${rebuilt.lostPeer?.slice(-8) ?? '?'}, cause ${rebuilt.cause ?? '?'}) with no other fault on the stage or the coordinator` })
  }

  // no-unrecorded-reinit
  let unrecorded = 0
  for (const s of h.installs) {
    if (s.source !== 'seed' || s.at <= firstCommit) continue
    const ok = records.some(r => r.stage === s.stage && isInitRecord(r, checkpoints) && (r.epoch === s.epoch || Math.abs(r.at - s.at) <= 30_000))
    if (!ok) {
      unrecorded += 1
      v.push({ invariant: 'no-unrecorded-reinit', at: s.at, detail: `peer ${s.peerId.slice(-8)} built stage ${s.stage} from the seed under epoch ${s.epoch} after training started (seen in its ${s.via}), and no recovery record says so` })
    }
  }

  // checkpoints-written and checkpoints-abandoned
  const written = checkpoints.filter(c => wroteStage(c))
  const abandoned = checkpoints.filter(c => c.outcome === 'abandoned')
  const files = checkpoints.map(stageFiles).reduce((t, f) => ({ taken: t.taken + f.taken, lost: t.lost + f.taken - f.written }), { taken: 0, lost: 0 })
  const fraction = files.taken === 0 ? 0 : files.lost / files.taken
  const lastIt = commits.at(-1)?.iteration as number | undefined
  if (K > 0 && lastIt != null) {
    for (const r of records) {
      const itAt = typeof r.iteration === 'number' ? r.iteration : undefined
      if (itAt == null || lastIt < itAt + 3 * K) continue
      if (!written.some(c => c.at > r.at)) v.push({ invariant: 'checkpoints-written', at: r.at, detail: `no checkpoint written after the ${r.rung} recovery of stage ${r.stage} at iteration ${itAt}, though the run reached iteration ${lastIt}` })
    }
    const newest = written.reduce<number>((m, c) => Math.max(m, c.iteration as number), -1)
    if (lastIt >= 3 * K && lastIt - newest > 3 * K) v.push({ invariant: 'checkpoints-written', detail: `the newest checkpoint written is of iteration ${newest}, the last commit ${lastIt}: more than 3 intervals (${3 * K}) behind` })
    const short = checkpoints.filter(c => stageFiles(c).written < stageFiles(c).taken)
    if (fraction > 0.05) v.push({ invariant: 'checkpoints-abandoned', detail: `${files.lost} of ${files.taken} stage files lost (${(fraction * 100).toFixed(1)}%, allowed 5%; ${abandoned.length} of ${checkpoints.length} checkpoints abandoned): ${[...new Set(short.map(c => String(c.reason ?? '')))].slice(0, 3).join(' | ')}` })
  }

  // staleness and rung-loss
  let maxStale = 0
  let inferred = 0
  const planned = h.events.filter(e => e.type === 'recovery-planned')
  for (const r of records) {
    if (r.rung === 'checkpoint') {
      // the newest checkpoint written before this recovery was planned bounds what it may lose
      const plannedAt = planned.filter(p => p.at <= r.at && (p.stage === r.stage || p.stage == null)).at(-1)?.at ?? r.at - (r.transferMs ?? 0) - 1000
      const st = iterationsBehind(r, checkpoints, plannedAt)
      if (st == null) continue
      if (st.from === 'inferred') inferred += 1
      maxStale = Math.max(maxStale, st.behind)
      if (K > 0 && st.behind > K + 1) v.push({ invariant: 'staleness', at: r.at, detail: `stage ${r.stage} restored ${st.behind} iterations behind (checkpoint ${st.checkpoint ?? r.checkpointId ?? 'init'}, ${st.from}; allowed ${K + 1})` })
      const newest = newestWrittenBefore(checkpoints, plannedAt, r.stage)
      if (newest != null && typeof r.iteration === 'number' && st.from !== 'inferred' && st.behind > r.iteration - 1 - newest) {
        v.push({ invariant: 'rung-loss', at: r.at, detail: `stage ${r.stage} lost ${st.behind} iterations by the checkpoint rung, but checkpoint ${newest} was written before: at most ${r.iteration - 1 - newest} may be lost` })
      }
    } else if (IN_FLIGHT_RUNGS.has(r.rung) && typeof r.iterationsBehind === 'number' && r.iterationsBehind > 0) {
      v.push({ invariant: 'rung-loss', at: r.at, detail: `stage ${r.stage} recovered by ${r.rung} ${r.iterationsBehind} committed iterations behind: this rung may lose only the in-flight iteration` })
    }
  }
  if (inferred > 0) notes.push(`${inferred} checkpoint-rung record(s) name neither iterationsBehind nor checkpointId: their checkpoint is inferred as the newest written before them`)

  // commits-contiguous (a rung that loses only the in-flight iteration never rewinds the clock)
  // an iteration skipped for a non-finite step (a divergence with action 'skip') is committed as
  // skipped: no 'iteration' event, and no gap
  if (b.strategy !== 'checkpoint-whole') {
    const skipped = new Set(h.events.filter(e => e.type === 'divergence' && e.action === 'skip' && typeof e.iteration === 'number').map(e => e.iteration as number))
    for (let i = 1; i < commits.length; i++) {
      let prev = commits[i - 1].iteration as number
      const it = commits[i].iteration as number
      while (it > prev + 1 && skipped.has(prev + 1)) prev += 1
      if (it !== prev + 1) v.push({ invariant: 'commits-contiguous', at: commits[i].at, detail: it <= prev ? `iteration ${it} committed after ${prev}: committed progress was lost` : `iteration ${it} committed after ${prev}: ${it - prev - 1} iteration(s) skipped` })
    }
  }

  // no-nan
  // a stage whose holder could not serve is unchecked: a violation when the run ended settled (then
  // every holder should serve), else a note (the stall is the violation)
  const settled = commits.some(c => c.at > h.chaosEnd)
  if (h.weights.length === 0) (settled ? v.push({ invariant: 'no-nan', detail: 'no stage\'s weights could be checked at the end (no assignment)' }) : notes.push('weights not checked: no assignment at the end'))
  for (const w of h.weights) {
    if (w.ok) continue
    const nonFinite = /non-finite|NaN|Infinity/i.test(w.error ?? '')
    const detail = `stage ${w.stage} on ${w.peerId.slice(-8)}: ${w.error ?? 'not finite'}`
    if (nonFinite || settled) v.push({ invariant: 'no-nan', detail: nonFinite ? detail : `could not be checked: ${detail}` })
    else notes.push(`weights of ${detail} (the run did not settle, so not counted)`)
  }

  // nonfinite-reported: a planted non-finite step that must have landed (its peer held the stage for
  // more commits than the step it was due at) is reported as a divergence of that stage
  for (const p of h.processes) {
    const plant = /^(\d+):(\+?)(\d+)$/.exec(p.env?.SPOTPIPE_FAULT_NONFINITE ?? '')
    if (plant == null) continue
    const s = Number(plant[1])
    const due = Number(plant[3])
    const relative = plant[2] === '+'
    const took = h.installs.filter(x => x.peerId === p.peerId && x.stage === s && x.at >= p.startedAt).sort((x, y) => x.at - y.at)[0]
    if (took == null) { notes.push(`non-finite step planted on ${p.name} (stage ${s}): it never took that stage`); continue }
    const handedOn = h.installs.find(x => x.stage === s && x.peerId !== p.peerId && x.at > took.at)?.at
    const until = Math.min(handedOn ?? Infinity, p.exitAt ?? Infinity, h.endedAt)
    const held = commits.filter(c => c.at > took.at && c.at <= until)
    const landed = relative ? held.length > due : held.some(c => (c.iteration as number) > due)
    const reported = h.events.some(e => e.type === 'divergence' && e.stage === s && e.at >= took.at && e.at <= until + 5000)
    // the step is the peer's due-th *prepared* step, not its due-th commit: an attempt aborted by
    // another stage's loss drops its prepared step with it (the rerun on the same data is clean,
    // the fault fires once), so with an aborted attempt before the due-th commit it may have
    // landed there (seen in the soak: iteration 14277, poisoned, aborted when stage 1 was lost)
    const dueAt = relative ? held[Math.min(due, held.length - 1)]?.at ?? until : until
    const begins = h.events.filter(e => e.type === 'begin' && e.at > took.at && e.at <= dueAt).map(e => e.iteration as number)
    const abortedAttempts = begins.length - new Set(begins).size
    if (landed && !reported && relative && abortedAttempts > 0) {
      notes.push(`non-finite step planted on ${p.name} (stage ${s}, step ${due}): not reported, but ${abortedAttempts} attempt(s) it held were aborted before its step ${due} committed, so it may have been dropped with one`)
      continue
    }
    if (landed && !reported) v.push({ invariant: 'nonfinite-reported', at: took.at, detail: `${p.name} held stage ${s} for ${held.length} commits with a non-finite step due at ${relative ? `its step ${due}` : `iteration ${due}`}, and no divergence of stage ${s} was reported` })
    else notes.push(`non-finite step planted on ${p.name} (stage ${s}, ${relative ? `step ${due}` : `iteration ${due}`}): ${landed ? 'it landed and was reported' : `it held the stage for ${held.length} commits, too few for it to land`}${reported && !landed ? ' (a divergence was reported)' : ''}`)
  }

  // replicas-identical: every stage's serving replicas, pulled at the end with the coordinator held,
  // hold the same bytes when they serve the same committed iteration
  let replicaMismatches = 0
  let replicaStagesCompared = 0
  const perturbations = h.perturbations ?? []
  const checkedAt = h.weightsCheckedAt ?? h.endedAt
  for (const s of [...new Set(h.weights.filter(w => w.replica != null).map(w => w.stage))].sort((x, y) => x - y)) {
    const ok = h.weights.filter(w => w.stage === s && w.ok && w.digest != null)
    if (ok.length < 2) continue
    const iterations = new Set(ok.map(w => w.iteration))
    if (iterations.size > 1) { notes.push(`replicas of stage ${s} not compared: they served iterations ${[...iterations].join(', ')} at the end`); continue }
    replicaStagesCompared += 1
    const digests = new Set(ok.map(w => w.digest))
    if (digests.size === 1) continue
    // a drift that landed after the last commits before the check had no chance to be seen (the
    // done reports of the next iteration carry it)
    const fresh = perturbations.find(p => p.stage === s && commits.filter(c => c.at > p.at && c.at <= checkedAt).length < 2)
    const detail = `stage ${s}: its ${ok.length} serving replicas differ at iteration ${String([...iterations][0])} (${ok.map(w => `${w.peerId.slice(-8)} ${w.digest?.slice(0, 12) ?? '?'}`).join(', ')})`
    if (fresh != null) { notes.push(`${detail}, but a drift landed on it after iteration ${fresh.iteration}, too late to be seen before the check`); continue }
    replicaMismatches += 1
    v.push({ invariant: 'replicas-identical', detail })
  }

  // drift-mended: a drift that landed while its stage had another serving replica is followed by a
  // record dropping the drifted peer (or by the peer's loss some other way)
  let driftsMended = 0
  for (const p of perturbations) {
    const dropped = records.find(x => x.stage === p.stage && x.lostPeer === p.peerId && x.at >= p.at)
    if (dropped != null) { driftsMended += 1; continue }
    const snap = h.assignments.filter(a => a.at <= p.at).at(-1)
    const serving = (snap?.replicas?.[p.stage] ?? []).filter(x => x !== '' && !(snap?.joining ?? []).includes(x))
    const proc = h.processes.filter(x => x.peerId === p.peerId && x.startedAt <= p.at).at(-1)
    const seen = commits.filter(c => c.at > p.at && c.at <= Math.min(proc?.exitAt ?? Infinity, checkedAt)).length
    const why = serving.length < 2 ? `its stage had ${serving.length} serving replica(s) to compare with` : seen < 2 ? `only ${seen} commit(s) followed before its peer was gone or the run was checked` : undefined
    if (why != null) { notes.push(`drift on stage ${p.stage} replica ${p.replica} (${p.peerId.slice(-8)}) after iteration ${p.iteration}: not mended, but ${why}`); continue }
    v.push({ invariant: 'drift-mended', at: p.at, detail: `${p.peerId.slice(-8)} perturbed its weights as replica ${p.replica} of stage ${p.stage} after iteration ${p.iteration}, ${seen} commits followed, and no record dropped it` })
  }

  // no-unplanted-drift: a replica dropped because its digest differed from its stage's others
  // (rung survivors, the cause says it drifted) must be one a planted drift landed on, before
  let unplantedDrifts = 0
  for (const r of records) {
    if (r.rung !== 'survivors' || !/drifted/.test(r.cause ?? '')) continue
    if (perturbations.some(p => p.stage === r.stage && p.peerId === r.lostPeer && p.at <= r.at + 500)) continue
    unplantedDrifts += 1
    v.push({ invariant: 'no-unplanted-drift', at: r.at, detail: `stage ${r.stage}: replica ${r.lostPeer?.slice(-8) ?? '?'} dropped as drifted (${r.cause ?? '?'}) at iteration ${r.iteration ?? '?'}, with no drift planted on it: the replicas diverged on their own, or their digests disagree on equal states` })
  }

  return {
    violations: v,
    stallRule,
    notes,
    figures: {
      faults: h.faults.length,
      exits,
      stalls,
      unrecordedReinits: unrecorded,
      checkpointsAbandonedFraction: fraction,
      checkpointsWritten: checkpoints.filter(c => c.outcome === 'written').length,
      checkpointsPartial: checkpoints.filter(c => c.outcome === 'partial').length,
      checkpointsAbandoned: abandoned.length,
      stageFilesTaken: files.taken,
      stageFilesLost: files.lost,
      maxStalenessIters: maxStale,
      commits: commits.length,
      recoveries: records.length,
      lostStages: removals.length,
      longestGapMs: longest,
      startFailures,
      recoveryFailures: h.events.filter(e => e.type === 'recovery-failed').length,
      divergences: h.events.filter(e => e.type === 'divergence').length,
      replicas: b.replicas ?? 1,
      replicaLosses: replicaLosses.length,
      rebuildsAfterReplicaLoss,
      replicaMismatches,
      replicaStagesCompared,
      driftsLanded: perturbations.length,
      driftsMended,
      unplantedDrifts
    }
  }
}

/**
 * The recovery state machine: the one owner of which stages are lost, which peers are departing,
 * and which recoveries are in flight (README "Recovery"). The coordinator feeds it
 * what it hears (a lost peer, a departure notice, a heartbeat, a recovery-done or recovery-failed
 * report) and asks it two things: which stages need recovering, and to recover them.
 *
 * One recovery round, top to bottom (recover()):
 *   1. survey (survey.ts): the stages to recover (lost, departing, or whose earlier recovery failed), the
 *      healthy holders, the spares, and the copies other peers hold (how fresh each is)
 *   2. plan: the ladder (ladder.ts) picks a rung per stage, all affected stages together, skipping
 *      rungs that already failed for a stage; no spare means wait for one (or for the lost peer)
 *   3. publish: the plans and a new assignment under the next epoch (persisted first)
 *   4. watch: each record moves planned -> transferring -> installed; it fails on the target's
 *      recovery-failed report, on its target's or a donor's loss, or at its deadline (deadline.ts:
 *      derived from the bytes it moves and the throughput measured so far); a new loss supersedes the round
 *   5. settle: all installed -> the stages are healthy again (resumed at the next commit);
 *      otherwise the failed ones are recorded with their reason and the loop plans again
 * No recoverable fault ends the run: the loop only returns once every stage is recovered.
 *
 * Replicas (a stage served by several peers): losing some of a stage's replicas is no stage loss.
 * The lost replica is dropped from the next assignment and its lanes' microbatches run on the
 * survivors (model/schedule.ts servingReplica); the iteration in flight is aborted and redone by
 * them, which costs that iteration's work and the detection time, and no state is rebuilt (recorded
 * as rung `survivors`). Only when every replica of a stage is gone is the stage lost and the ladder
 * asked. Between iterations grow() brings a stage below the replica target back up: a spare copies
 * the stage's live replicas exactly (rung `replica`, pulling from all of them at once).
 */
import type { ModelConfig, TrainConfig } from '../../model/index.js'
import { createLog } from '../../common/index.js'
import type { Assignment, DoneReport, Heartbeat, RecoveryDone, RecoveryFailed, RecoveryRung } from '../../protocols/index.js'
import { servingPeers } from '../../protocols/index.js'
import type { CheckpointStore } from '../checkpoint-store.js'
import type { LostPeer } from '../detector.js'
import { planRecovery, type LadderInput, type LadderResult, type StagePlan, type Strategy } from '../ladder.js'
import { planReplicaJoins } from '../replica-plan.js'
import { planBytes } from './deadline.js'
import { checkpointsOnDisk, RecoveryCheckpoint } from '../recovery-checkpoint.js'
import type { RecoveryEvent } from '../types.js'
import { DEFAULT_THROUGHPUT_BYTES_PER_MS, recoveryDeadlineMs } from './deadline.js'
import { RecoveryRecord, lossEvent, recordEvent, type LossInfo } from './record.js'
import { CoordinatorTimeoutError } from '../errors.js'
import { holdsIntact, survey, type CheckpointChoice } from './survey.js'

const log = createLog('coordinator')

/** A join may take this long beyond its pull's deadline: it catches up at a commit, so it waits for one or two. */
const JOIN_CATCH_UP_SLACK_MS = 60_000
/** How long the peers get to take an epoch that only adds or lists joining replicas. */
const JOIN_TAKE_MS = 15_000

/** What the machine reads from the coordinator and the coordinator methods it calls. */
export interface RecoveryHost {
  readonly model: ModelConfig
  readonly train: TrainConfig
  readonly strategy: Strategy
  readonly assignment?: Assignment
  readonly epoch: number
  /** The next iteration to run; rolled back when every stage goes back to a checkpoint. */
  iteration: number
  readonly gradNorms: number[]
  readonly store?: CheckpointStore
  readonly recoveries: RecoveryEvent[]
  /** Replicas per stage the run aims for (grow() adds spares as replicas up to it). */
  readonly replicas: number
  /** Peers heard recently and subscribed to control, not known lost or departing. */
  livePeers: () => string[]
  /** The newest heartbeat of a peer. */
  heartbeatOf: (peerId: string) => Heartbeat | undefined
  /** The detector no longer counts `peerId` as lost (it is back, or replaced). */
  forgetLoss: (peerId: string) => void
  until: (check: () => boolean, what: string, timeoutMs: number, signal?: AbortSignal, onTick?: () => void) => Promise<void>
  /** Re-publishes the newest assignment and its plans (called on the watch's ticks). */
  reannounce: () => void
  /** Persists and publishes `plans` and a new assignment (stage s -> peers[s]) under the next epoch. */
  /** `joins`: new replica joins (their plans are published too); `joining`: every peer still joining, listed as such. */
  publishAssignment: (peers: string[][], plans: StagePlan[], joins?: StagePlan[], joining?: string[]) => Promise<Assignment>
  persist: () => Promise<void>
  emit: (event: 'recovery' | 'recovery-failed' | 'recovery-planned', payload: unknown) => boolean
}

type Outcome = 'installed' | 'failed'

export class RecoveryMachine {
  private readonly host: RecoveryHost
  /** The checkpoint a recovery reads, served to rebuilding peers over the weights protocol. */
  readonly checkpoint: RecoveryCheckpoint
  /** Stages whose state is gone (their holder lost), until a recovery of them is installed. */
  private readonly lost = new Map<number, LossInfo>()
  /**
   * Replicas lost (or departing) while their stage keeps a live one: dropped from the next
   * assignment, their microbatches run by the survivors. By peer.
   */
  private readonly dropped = new Map<string, { stage: number, loss: LossInfo }>()
  /** Peers that announced their departure; forgotten once their stage has moved. */
  private readonly departing = new Set<string>()
  /** Lost peers that came back with fresh state (a restart): spares now, not holders. */
  private readonly restarted = new Set<string>()
  /** The round in flight, by stage. */
  private active = new Map<number, RecoveryRecord>()
  /**
   * Peers lost since the round in flight was published. A recovery's target or a rejoiner holds a
   * stage that is still counted lost from before, so its own loss adds no new lost stage: the
   * watch looks here to know the round lost a holder.
   */
  private readonly roundLost = new Map<string, LostPeer>()
  /** Rungs that failed for a stage since it was lost: the ladder skips them. */
  private readonly excluded = new Map<number, Set<RecoveryRung>>()
  /** recovery-done/-failed reports that arrived before their round was watching, by `epoch:stage`. */
  private readonly early = new Map<string, RecoveryDone | RecoveryFailed>()
  /** Installed recoveries whose resume is measured at the next commit. */
  private pendingResume: RecoveryRecord[] = []
  private readyAt = 0
  /** Measured transfer throughput (bytes per ms), an average over recoveries so far. */
  private throughput = DEFAULT_THROUGHPUT_BYTES_PER_MS

  constructor (host: RecoveryHost) {
    this.host = host
    this.checkpoint = new RecoveryCheckpoint(host.model, host.train.stages)
  }

  // ------------------------------------------------------------------ what the coordinator hears

  /** The detector declared `l.peerId` lost: its stage (if any) is lost; recoveries it serves or targets fail. */
  peerLost (l: LostPeer): void {
    this.roundLost.set(l.peerId, l)
    const s = this.stageHeldBy(l.peerId)
    const info = { peer: l.peerId, cause: l.cause, lastSeen: l.lastSeen, detectedAt: l.detectedAt }
    if (s != null && !this.lost.has(s) && !this.dropped.has(l.peerId)) {
      if (this.liveReplicas(s, l.peerId).length > 0) this.dropReplica(l.peerId, s, info)
      else this.lost.set(s, info)
    }
    const j = this.joins.get(l.peerId)
    if (j?.open === true) j.fail(`its target was lost (${l.cause})`, 'rung')
    for (const r of this.active.values()) {
      if (!r.open) continue
      if (r.target === l.peerId) r.fail(`its target ${short(l.peerId)} was lost (${l.cause})`, 'superseded')
      else if (r.donors.includes(l.peerId)) r.fail(`donor ${short(l.peerId)} was lost (${l.cause})`, 'rung')
    }
  }

  /** `peerId` announced its departure (spot notice, SIGTERM). */
  peerDeparting (peerId: string): void {
    const s = this.stageHeldBy(peerId)
    if (this.departing.has(peerId) || this.dropped.has(peerId) || s == null) return
    if (this.liveReplicas(s, peerId).length > 0) {
      // its stage's other replicas keep the stage: nothing to hand over
      const now = Date.now()
      this.dropReplica(peerId, s, { peer: peerId, cause: 'peer announced its departure', lastSeen: now, detectedAt: now })
      return
    }
    log.info(`peer ${short(peerId)} announced its departure`)
    this.departing.add(peerId)
  }

  /**
   * A heartbeat. A lost holder that speaks again is taken back: on its stage when its state is
   * intact and current (same epoch, same stage, the committed iteration), else as a spare with
   * fresh state (a restart under the same identity).
   */
  onHeartbeat (hb: Heartbeat): void {
    if (this.departing.has(hb.peerId) && !hb.departing && hb.role === 'spare') {
      // it announced its departure, left, and came back under the same identity (systemd restarts
      // the peer) before its stage moved: a fresh process, so whatever it held is gone
      log.info(`peer ${short(hb.peerId)} is back after its departure, with no state: it joins as a spare`)
      this.departing.delete(hb.peerId)
      const now = Date.now()
      this.peerLost({ peerId: hb.peerId, cause: 'restarted after announcing its departure', lastSeen: now, detectedAt: now })
      this.restarted.add(hb.peerId)
      this.host.forgetLoss(hb.peerId)
      return
    }
    const s = this.lostStageOf(hb.peerId)
    if (s == null || this.restarted.has(hb.peerId) || hb.departing || this.departing.has(hb.peerId)) return
    if (hb.timestampMs <= (this.lost.get(s)?.detectedAt ?? 0)) return // sent before the loss: says nothing
    if (this.intact(hb, s)) return // a rejoin candidate: the ladder's first rung takes it back
    log.info(`peer ${short(hb.peerId)} is back without stage ${s}'s state: it joins as a spare`)
    this.restarted.add(hb.peerId)
    this.host.forgetLoss(hb.peerId)
  }

  onRecoveryDone (msg: RecoveryDone, from: string): void {
    const j = this.joins.get(from)
    if (j != null && msg.peerId === from && msg.stage === j.stage) {
      // a joining replica caught up: it serves from the next assignment (settleJoins)
      if (!j.open) return
      j.bytes = msg.bytes
      j.transferMs = msg.transferMs
      j.rebuildMs = msg.rebuildMs
      j.move('installed')
      return
    }
    const r = this.active.get(msg.stage)
    if (r == null || r.epoch !== msg.epoch) { this.early.set(`${msg.epoch}:${msg.stage}`, msg); return }
    if (from !== r.target || msg.peerId !== r.target) {
      log.error('recovery-done for stage %d from %s, but %s rebuilds it: ignored', msg.stage, from, r.target)
      return
    }
    if (!r.open) return
    r.bytes = msg.bytes
    r.transferMs = msg.transferMs
    r.rebuildMs = msg.rebuildMs
    if (msg.bytes > 0 && msg.transferMs > 0) this.throughput = (this.throughput + msg.bytes / msg.transferMs) / 2
    r.move('installed')
  }

  onRecoveryFailed (msg: RecoveryFailed, from: string): void {
    const j = this.joins.get(from)
    if (j != null && msg.peerId === from && msg.stage === j.stage) { j.fail(`${msg.code}: ${msg.reason}`, 'rung'); return }
    const r = this.active.get(msg.stage)
    const holds = this.host.assignment?.stages[msg.stage]?.peers.includes(from) === true
    if (r == null && msg.epoch === this.host.epoch && holds && msg.peerId === from && !this.lost.has(msg.stage) && !this.dropped.has(from)) {
      // a holder with no state for its stage (NoStageStateError): the stage is lost, not waiting;
      // a replica of it is dropped while the stage keeps others
      const now = Date.now()
      log.info(`stage ${msg.stage}: its holder ${short(from)} reports ${msg.code}: ${msg.reason}`)
      const loss = { peer: from, cause: `${msg.code}: ${msg.reason}`, lastSeen: now, detectedAt: now }
      if (this.liveReplicas(msg.stage, from).length > 0) this.dropReplica(from, msg.stage, loss)
      else this.lost.set(msg.stage, loss)
      return
    }
    if (r == null || r.epoch !== msg.epoch) { this.early.set(`${msg.epoch}:${msg.stage}`, msg); return }
    if (from !== r.target || msg.peerId !== r.target) {
      log.error('recovery-failed for stage %d from %s, but %s rebuilds it: ignored', msg.stage, from, r.target)
      return
    }
    r.fail(`${msg.code}: ${msg.reason}`, 'rung')
  }

  // ------------------------------------------------------------------ what the coordinator asks

  /** Stages whose holder is lost or departing: the iteration in flight cannot finish as assigned. */
  failedStages (): number[] {
    const a = this.host.assignment
    if (a == null) return []
    // a stage no peer holds (a saved assignment from a round that was still waiting for a spare when
    // the coordinator died) needs recovering too: it was never recovered after a restart before
    return a.stages.filter(st => this.lost.has(st.stage) || st.peers.length === 0 || st.peers.some(p => this.departing.has(p))).map(st => st.stage)
  }

  /**
   * Whether the assignment must change before the next iteration: a stage needs recovering, or a
   * lost replica is still named in it (the iteration in flight cannot finish as assigned).
   */
  needsRound (): boolean {
    return this.failedStages().length > 0 || this.droppedStillAssigned().length > 0
  }

  /**
   * The serving replicas whose done report carries another weight digest than their stage's (the
   * digest most of its replicas report; a tie goes to the first in assignment order): they drifted
   * (a memory error, a kernel that is not deterministic) and are dropped like lost replicas, so the
   * stage's others carry on and a spare, or the drifted peer itself, joins again as an exact copy.
   * Returns them; the caller redoes the iteration without them.
   */
  checkDigests (a: Assignment, reports: ReadonlyMap<string, DoneReport>): string[] {
    const drifted: string[] = []
    for (const st of a.stages) {
      const serving = servingPeers(a, st.stage).filter(p => reports.get(p)?.weightDigest != null)
      if (serving.length < 2) continue
      const votes = new Map<string, number>()
      for (const p of serving) { const d = reports.get(p)?.weightDigest as string; votes.set(d, (votes.get(d) ?? 0) + 1) }
      if (votes.size < 2) continue
      const top = Math.max(...votes.values())
      const reference = reports.get(serving.find(p => votes.get(reports.get(p)?.weightDigest as string) === top) as string)?.weightDigest as string
      const now = Date.now()
      for (const p of serving) {
        const d = reports.get(p)?.weightDigest as string
        if (d === reference) continue
        drifted.push(p)
        this.dropReplica(p, st.stage, { peer: p, cause: `its weights drifted from its stage's replicas (digest ${d}, the others ${reference}, iteration ${reports.get(p)?.iteration ?? '?'})`, lastSeen: now, detectedAt: now })
      }
    }
    return drifted
  }

  /** What needsRound() is about, for a log line: "stages 1, 2 lost; a replica of stage 3 lost". */
  describeLosses (): string {
    const parts: string[] = []
    const failed = this.failedStages()
    if (failed.length > 0) parts.push(`stage${failed.length > 1 ? 's' : ''} ${failed.join(', ')} lost`)
    for (const p of this.droppedStillAssigned()) parts.push(`a replica of stage ${this.dropped.get(p)?.stage ?? '?'} lost`)
    return parts.join('; ')
  }

  /** Whether `peerId` is known lost, departing or restarted (so not a live holder or spare yet). */
  isDeparting (peerId: string): boolean { return this.departing.has(peerId) }

  /** Every stage took the new assignment: resume times are measured from now. */
  stagesReady (): void { this.readyAt = performance.now() }

  /** At a commit: recoveries training has now resumed from, with their resume time. */
  resumed (): RecoveryEvent[] {
    const out = this.pendingResume.map(r => {
      r.resumeMs = performance.now() - this.readyAt
      r.move('resumed')
      return this.event(r)
    })
    this.pendingResume = []
    return out
  }

  /**
   * Recovers every stage that needs it (module comment, steps 1-5) and returns the records of the
   * recoveries that succeeded. Only an abort (`signal`) ends it early.
   */
  async recover (opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<RecoveryEvent[]> {
    const c = this.host
    const a0 = c.assignment
    if (a0 == null) return []
    const recovered: RecoveryEvent[] = []
    for (;;) {
      opts.signal?.throwIfAborted()
      const stages = this.failedStages()
      if (stages.length === 0) {
        if (this.droppedStillAssigned().length === 0) return recovered
        // only replicas lost: the survivors keep their stages, nothing is rebuilt
        recovered.push(...await this.round([], [], opts.signal))
        continue
      }
      // every stage planned stays lost until a recovery of it is installed (a departing one too:
      // once the next assignment no longer names its peer, only this says it still needs one)
      for (const st of stages) if (!this.lost.has(st)) this.lost.set(st, this.lossOf(st, c.assignment ?? a0))
      // 1-2. survey and plan, every affected stage together
      const S = (c.assignment ?? a0).stages.length
      let result = this.ladder(stages, checkpointsOnDisk(c.store, stages, S))
      if (result.plans.some(p => p.rung === 'checkpoint' && p.checkpointId !== 'init')) {
        // Verify before promising a checkpoint: a corrupt newest one falls back to the one before.
        // checkpoint-whole takes every stage back to one complete checkpoint, else each stage its own newest file.
        result = this.ladder(stages, c.strategy === 'checkpoint-whole' ? { checkpoint: await this.checkpoint.load(c.store) } : await this.checkpoint.loadFor(c.store, stages))
      }
      if (result.plans.some(p => p.rung === 'wait')) {
        await this.waitForPeer(result, opts)
        continue
      }
      const rejoins = result.plans.filter(p => p.rung === 'rejoin')
      const plans = result.plans.filter(p => p.rung !== 'rejoin')
      if (result.rollbackAll) {
        const ck = plans[0]?.checkpointId
        c.iteration = ck != null && ck.startsWith('ckpt-') ? Number(ck.slice(5)) + 1 : 0
      }
      recovered.push(...await this.round(plans, rejoins, opts.signal))
      // loop: a stage lost during the round, or one whose recovery failed, is planned again
    }
  }

  /**
   * Steps 3-5 for one round of `plans` (and rejoins): publish, watch, settle. Returns the records of
   * the recoveries installed; failed ones are recorded, and their stages stay lost for the next round.
   */
  private async round (plans: StagePlan[], rejoins: StagePlan[], signal?: AbortSignal): Promise<RecoveryEvent[]> {
    const c = this.host
    const opts = { signal }
    const a = c.assignment as Assignment
    // joins that caught up serve from now on; the others are abandoned (their targets become spares again)
    this.endJoins('superseded: a recovery round replaced the assignment')
    // a lost or departing stage is planned whole; a stage's lost replicas are dropped, the others keep it
    const next = a.stages.map(st => this.lost.has(st.stage) || st.peers.some(p => this.departing.has(p)) ? [] : st.peers.filter(p => !this.dropped.has(p) && !this.abandoned.has(p)))
    this.abandoned.clear()
    for (const p of [...rejoins, ...plans]) next[p.stage] = [p.target]
    const committed = c.iteration - 1
    // a rejoiner is watched again from now: the detector reports each peer lost once, so one still
    // counted lost from before could die during the round unheard
    for (const p of rejoins) c.forgetLoss(p.target)
    this.roundLost.clear()
    const published = await c.publishAssignment(next, plans)
    this.active = new Map(plans.map(p => [p.stage, new RecoveryRecord({
      plan: p, epoch: published.epoch, committed, loss: this.lossOf(p.stage, a), deadlineMs: this.deadlineMs(p)
    })]))
    const records = [...this.active.values()]
    c.emit('recovery-planned', records.map(r => ({ epoch: r.epoch, stage: r.stage, rung: r.rung, target: r.target, donors: r.donors, checkpointId: r.checkpointId, deadlineMs: r.deadlineAt - r.plannedAt })))
    for (const r of records) this.applyEarly(r)
    // 4. watch
    const outcome = await this.watch(published, records, opts.signal, rejoins.map(p => p.stage))
    // 5. settle: installed stages are healthy whatever became of the others. A rejoiner lost during
    // the round is not: its stage stays lost, now from this loss (the heartbeat that made it a
    // rejoin candidate is older than the loss, so the next round does not take it back again)
    for (const p of rejoins) {
      const again = this.roundLost.get(p.target)
      if (again == null) this.rejoined(p, a)
      else this.rejoinLost(p, a, again)
    }
    this.survived(published)
    const installed = records.filter(r => r.state === 'installed')
    for (const r of installed) this.settle(r, a)
    const events = installed.map(r => this.event(r))
    for (const e of events) log.info(`recovered stage ${e.stage} by ${e.rung} (${e.cause}): ${e.bytes} bytes, detect ${e.detectMs} ms, transfer ${e.transferMs.toFixed(0)} ms, rebuild ${e.rebuildMs.toFixed(0)} ms${e.iterationsBehind > 0 ? `, ${e.iterationsBehind} iterations behind` : ''}`)
    c.recoveries.push(...events)
    this.pendingResume.push(...installed)
    if (events.length > 0) c.emit('recovery', events)
    for (const r of records.filter(r => r.state === 'failed')) {
      if (r.failure === 'rung') this.exclude(r.stage, r.rung)
      log.info(`recovery of stage ${r.stage} by ${r.rung} failed: ${r.reason ?? 'unknown'}; planning again`)
      const e = this.event(r)
      c.recoveries.push(e)
      c.emit('recovery-failed', e)
    }
    if (outcome === 'installed') this.stagesReady()
    this.active = new Map()
    await c.persist()
    return events
  }

  /**
   * Every stage reloads checkpoint `checkpointId` on its own peer (a divergence rollback): one
   * recorded round of checkpoint-rung recoveries with `cause`. A stage whose reload fails stays lost
   * and is recovered by the ladder like any other.
   */
  async reloadAll (checkpointId: string, cause: string, signal?: AbortSignal): Promise<RecoveryEvent[]> {
    const a = this.host.assignment
    if (a == null) return []
    const now = Date.now()
    const plans: StagePlan[] = []
    for (const st of a.stages) {
      const peer = st.peers[0]
      if (peer == null) continue
      if (!this.lost.has(st.stage)) this.lost.set(st.stage, { peer, cause, lastSeen: now, detectedAt: now })
      plans.push({ stage: st.stage, rung: 'checkpoint', target: peer, donors: [], weights: [], lrScale: 1, checkpointId })
    }
    return await this.round(plans.filter(p => !this.departing.has(p.target) && this.host.livePeers().includes(p.target)), [], signal)
  }

  // ------------------------------------------------------------------ the steps

  /** The ladder over the current survey for `stages` (see LadderInput for each field). */
  private ladder (stages: number[], checkpoints: CheckpointChoice): LadderResult {
    return planRecovery(this.ladderInput(stages, checkpoints))
  }

  /** What the ladder needs, from the assignment, the machine's sets and the peers' heartbeats (survey.ts). */
  ladderInput (stages: number[], checkpoints: CheckpointChoice = {}): LadderInput {
    const c = this.host
    return survey({
      assignment: c.assignment as Assignment,
      strategy: c.strategy,
      epoch: c.epoch,
      iteration: c.iteration,
      gradNorms: c.gradNorms,
      livePeers: c.livePeers(),
      heartbeatOf: id => c.heartbeatOf(id),
      lost: this.lost,
      departing: this.departing,
      stateless: new Set([...this.dropped.keys(), ...this.joins.keys()]),
      restarted: this.restarted,
      excluded: this.excluded
    }, stages, checkpoints)
  }

  /** No spare for some stage: wait until a peer joins or a lost one comes back (state is kept). */
  private async waitForPeer (result: LadderResult, opts: { signal?: AbortSignal, timeoutMs?: number }): Promise<void> {
    const c = this.host
    const waiting = result.plans.filter(p => p.rung === 'wait').map(p => p.stage)
    log.info(`no spare for stages ${waiting.join(', ')}: waiting for a peer to join (state is kept)`)
    const before = this.ladderInput(this.failedStages())
    const candidates = (i: LadderInput): number => i.spares.length + (i.rejoined?.size ?? 0)
    await c.until(() => {
      const now = this.ladderInput(this.failedStages())
      return candidates(now) > candidates(before) || now.lost.length !== before.lost.length
    }, 'a spare peer to join', opts.timeoutMs ?? 30 * 24 * 3600_000, opts.signal)
  }

  /** Waits until every record is installed and every stage took the epoch, or something fails. */
  private async watch (a: Assignment, records: RecoveryRecord[], signal?: AbortSignal, rejoining: number[] = []): Promise<Outcome> {
    const c = this.host
    const lostBefore = new Set(this.lost.keys())
    const planned = new Set([...records.map(r => r.stage), ...rejoining])
    let outcome: Outcome | undefined
    const check = (): boolean => {
      const now = Date.now()
      for (const r of records) {
        if (r.state === 'planned' && c.heartbeatOf(r.target)?.epoch === a.epoch) r.move('transferring')
        if (r.open && now > r.deadlineAt) r.fail(`no progress within its deadline of ${r.deadlineAt - r.plannedAt} ms`, 'rung')
        // installed, then lost while the round waited for other stages: settling it would hand the
        // stage to a dead peer that the detector never reports again (the chaos suite: a stage
        // killed just after its rebuild; every iteration after waited for its done report)
        if (r.state === 'installed' && this.roundLost.has(r.target)) r.fail(`its target ${short(r.target)} was lost after it installed the stage`, 'superseded')
      }
      if (records.some(r => r.state === 'failed')) {
        for (const r of records) if (r.open) r.fail('superseded: another stage of its round failed', 'superseded')
        outcome = 'failed'
        return true
      }
      // a stage (or a replica) lost during the round: plan every affected stage together. A stage
      // lost while the round was being published is not new by then, but if the assignment still
      // names its peers and no plan rebuilds it, nobody will take it (the second replica of a
      // stage killed at once, in a round that only dropped the first: the watch waited for the
      // dead one's heartbeat for ever)
      const newLoss = [...this.lost.keys()].find(s => !lostBefore.has(s) || (!planned.has(s) && (a.stages[s]?.peers.length ?? 0) > 0))
      const droppedNow = a.stages.find(st => st.peers.some(p => this.dropped.has(p)))?.stage
      // a rejoiner lost during the round (its stage was lost before, so newLoss does not see it);
      // the round would otherwise wait for ever for the dead peer to take the epoch
      const holderLost = a.stages.find(st => rejoining.includes(st.stage) && st.peers.some(p => this.roundLost.has(p)))?.stage
      if (newLoss != null || droppedNow != null || holderLost != null || a.stages.some(st => st.peers.some(p => this.departing.has(p)))) {
        const what = newLoss != null ? `stage ${newLoss}` : droppedNow != null ? `a replica of stage ${droppedNow}` : holderLost != null ? `the rejoiner of stage ${holderLost}` : 'stage (departing)'
        for (const r of records) if (r.open) r.fail(`superseded: ${what} lost during the recovery`, 'superseded')
        outcome = 'failed'
        return true
      }
      const taken = a.stages.every(st => st.peers.every(p => {
        const hb = c.heartbeatOf(p)
        return hb != null && hb.epoch === a.epoch && hb.stage === st.stage
      }))
      if (taken && records.every(r => r.state === 'installed')) { outcome = 'installed'; return true }
      return false
    }
    await c.until(check, `the recovery under epoch ${a.epoch}`, 30 * 24 * 3600_000, signal, () => { c.reannounce() })
    return outcome as Outcome
  }

  /** A recovery installed: its stage is healthy again; the peer it replaced is forgotten. */
  private settle (r: RecoveryRecord, old: Assignment): void {
    this.lost.delete(r.stage)
    this.excluded.delete(r.stage)
    this.restarted.delete(r.target)
    // the peer the stage was lost from, and the one the round before named (a re-planned round's
    // `old` already names an earlier target): a departing one is done, a lost one is replaced.
    // Only `old` once left a departed peer marked departing forever, so it never became a spare again.
    for (const prev of new Set([r.loss.peer, old.stages[r.stage]?.peers[0]])) {
      if (prev == null || prev === '' || prev === r.target) continue
      this.departing.delete(prev)
      this.host.forgetLoss(prev)
      this.restarted.delete(prev)
    }
  }

  /**
   * Between iterations: a spare joins each stage below the replica target, the fewest-served stages
   * first, without stopping training (node/replica-join.ts): it is published under `joining`,
   * adds zeros to its stage's all-reduce while it pulls the live replicas' state, and catches up at
   * a commit. Returns once the stages took the epoch (a gossip round, not the pull); settleJoins()
   * lists each join as serving once its target reports recovery-done.
   */
  async grow (signal?: AbortSignal): Promise<void> {
    const c = this.host
    const moves = this.growPlans()
    if (moves.length === 0) return
    const plans = moves.map(m => m.plan)
    const a = c.assignment as Assignment
    const next = a.stages.map(st => [...st.peers])
    for (const { plan: j, from } of moves) {
      if (from != null) {
        // a rebalance: the peer leaves its well-served stage, whose other replicas take its microbatches
        next[from] = next[from].filter(p => p !== j.target)
        log.info(`stage ${j.stage} is down to ${a.stages[j.stage].peers.length} replica(s) and no spare is left: moving ${short(j.target)} from stage ${from} (${a.stages[from].peers.length} replicas); it pulls ${planBytes(c.model, c.train.stages, j)} bytes while both stages train, and stage ${from} runs its microbatches on ${next[from].length} meanwhile`)
      }
      next[j.stage].push(j.target)
    }
    log.info(`adding replicas while training goes on: ${plans.map(j => `${short(j.target)} -> stage ${j.stage}`).join(', ')}`)
    const published = await c.publishAssignment(next, [], plans, [...this.joins.keys(), ...plans.map(j => j.target)])
    for (const p of plans) {
      // the join's deadline: its pull, plus the commits it waits for to catch up at
      this.joins.set(p.target, new RecoveryRecord({ plan: p, epoch: published.epoch, committed: c.iteration - 1, loss: this.joinCause(p.stage), deadlineMs: this.deadlineMs(p) + JOIN_CATCH_UP_SLACK_MS }))
    }
    c.emit('recovery-planned', plans.map(p => ({ epoch: published.epoch, stage: p.stage, rung: p.rung, target: p.target, donors: p.donors.map(d => d.peerId), checkpointId: '', deadlineMs: this.deadlineMs(p) + JOIN_CATCH_UP_SLACK_MS })))
    await this.awaitTaken(published, signal)
  }

  /** Whether grow() has something to do: a stage below the replica target and a spare for it. */
  canGrow (): boolean { return this.growPlans().length > 0 }

  /**
   * Between iterations: joins whose target caught up are listed as serving (they run microbatches
   * from the next iteration on); failed or overdue ones are dropped (their targets are spares again).
   * Publishes one assignment when anything changed, and returns the joins that now serve.
   */
  async settleJoins (signal?: AbortSignal): Promise<RecoveryEvent[]> {
    const c = this.host
    const now = Date.now()
    for (const r of this.joins.values()) if (r.open && now > r.deadlineAt) r.fail(`not caught up within its deadline of ${r.deadlineAt - r.plannedAt} ms`, 'rung')
    if (![...this.joins.values()].some(r => r.state === 'installed' || r.state === 'failed') || this.needsRound()) return []
    const served = this.endJoins(undefined)
    const a = c.assignment as Assignment
    const next = a.stages.map(st => st.peers.filter(p => !this.abandoned.has(p)))
    this.abandoned.clear()
    const published = await c.publishAssignment(next, [], [], [...this.joins.keys()])
    await this.awaitTaken(published, signal)
    if (served.length > 0) this.stagesReady()
    await c.persist()
    return served
  }

  /**
   * Ends joins: those caught up (installed) are recorded as recovered and serve from the next
   * assignment on; failed ones, and with `abandon` every open one, are recorded as failed and their
   * targets left out of it (`abandoned`). Returns the recovered ones.
   */
  private endJoins (abandon: string | undefined): RecoveryEvent[] {
    const served: RecoveryEvent[] = []
    for (const [target, r] of [...this.joins]) {
      if (r.open && abandon != null) r.fail(abandon, 'superseded')
      if (r.open) continue
      this.joins.delete(target)
      if (r.state === 'installed') {
        this.restarted.delete(target)
        this.replaced.delete(r.stage)
        const e = this.event(r)
        log.info(`stage ${r.stage}: ${short(target)} caught up and serves as a replica (${e.bytes} bytes, transfer ${e.transferMs.toFixed(0)} ms)`)
        this.host.recoveries.push(e)
        this.pendingResume.push(r)
        this.host.emit('recovery', [e])
        served.push(e)
      } else {
        this.abandoned.add(target)
        log.info(`the join of ${short(target)} to stage ${r.stage} failed: ${r.reason ?? 'unknown'}`)
        const e = this.event(r)
        this.host.recoveries.push(e)
        this.host.emit('recovery-failed', e)
      }
    }
    return served
  }

  /** Waits until every peer of `a` took it; a peer that does not within JOIN_TAKE_MS is dropped. */
  private async awaitTaken (a: Assignment, signal?: AbortSignal): Promise<void> {
    const c = this.host
    const taken = (p: string, s: number): boolean => { const hb = c.heartbeatOf(p); return hb != null && hb.epoch === a.epoch && hb.stage === s }
    try {
      await c.until(() => this.needsRound() || a.stages.every(st => st.peers.every(p => taken(p, st.stage))), `the stages to take epoch ${a.epoch}`, JOIN_TAKE_MS, signal, () => { c.reannounce() })
    } catch (err) {
      if (!(err instanceof CoordinatorTimeoutError)) throw err
      const now = Date.now()
      for (const st of a.stages) for (const p of st.peers) if (!taken(p, st.stage)) this.peerLost({ peerId: p, cause: `did not take epoch ${a.epoch} within ${JOIN_TAKE_MS} ms`, lastSeen: now, detectedAt: now })
    }
  }

  /** The replica joins grow() would start now (replica-plan.ts; none while a stage needs recovering). */
  private growPlans (): Array<{ plan: StagePlan, from?: number }> {
    const a = this.host.assignment
    if (a == null || this.host.replicas <= 1 || this.needsRound()) return []
    const joins = planReplicaJoins({
      stages: a.stages.map(st => st.peers),
      joining: new Set(this.joins.keys()),
      spares: this.ladderInput([]).spares,
      target: this.host.replicas
    })
    return joins.map(j => ({
      ...(j.from != null ? { from: j.from } : {}),
      plan: {
        stage: j.stage,
        rung: 'replica' as const,
        target: j.peer,
        donors: this.liveReplicas(j.stage).map(peerId => ({ peerId, stage: j.stage })),
        weights: [],
        lrScale: 1,
        checkpointId: ''
      }
    }))
  }

  /** Why a joining replica's record exists: the lost replica it replaces, if one was dropped. */
  private joinCause (stage: number): LossInfo {
    const now = Date.now()
    const prev = this.replaced.get(stage)
    return prev != null ? { ...prev, cause: `replaces a lost replica (${prev.cause})` } : { peer: '', cause: 'the stage is below its replica target', lastSeen: now, detectedAt: now }
  }

  /** Replica joins in flight, by target peer: the target holds a placeholder until it catches up. */
  private readonly joins = new Map<string, RecoveryRecord>()
  /** Join targets left out of the next assignment (their join failed or was abandoned). */
  private readonly abandoned = new Set<string>()

  /** Lost replicas dropped from the assignment, by stage, until a join replaces them (joinCause). */
  private readonly replaced = new Map<number, LossInfo>()

  /** A replica lost or departing while `stage` keeps another: dropped at the next round. */
  private dropReplica (peerId: string, stage: number, loss: LossInfo): void {
    log.info(`a replica of stage ${stage} (${short(peerId)}) is gone (${loss.cause}): the stage's other replicas take its microbatches`)
    this.dropped.set(peerId, { stage, loss })
  }

  /** The replicas of `stage` not lost, dropped or departing (except `except`). */
  private liveReplicas (stage: number, except?: string): string[] {
    return (this.host.assignment?.stages[stage]?.peers ?? []).filter(p => p !== except && !this.dropped.has(p) && !this.departing.has(p) && !this.joins.has(p))
  }

  /** Dropped replicas the current assignment still names. */
  private droppedStillAssigned (): string[] {
    const named = new Set(this.host.assignment?.stages.flatMap(st => st.peers) ?? [])
    return [...this.dropped.keys()].filter(p => named.has(p))
  }

  /** Dropped replicas `published` no longer names: their stages' survivors kept them; record it. */
  private survived (published: Assignment): void {
    const named = new Set(published.stages.flatMap(st => st.peers))
    for (const [peer, d] of [...this.dropped]) {
      if (named.has(peer)) continue
      this.dropped.delete(peer)
      this.host.forgetLoss(peer)
      const keepers = published.stages[d.stage]?.peers ?? []
      // a stage lost whole since (its last replica too) is the ladder's: its record says so
      if (keepers.length === 0 || this.lost.has(d.stage)) continue
      this.replaced.set(d.stage, d.loss)
      const e: RecoveryEvent = {
        ...lossEvent(d.stage, d.loss, this.host.epoch, this.host.iteration),
        rung: 'survivors',
        targetPeer: keepers[0],
        donors: [],
        outcome: 'recovered',
        iterationsBehind: 0
      }
      log.info(`stage ${d.stage}: its replica ${short(peer)} is dropped; ${keepers.map(short).join(', ')} run its microbatches`)
      this.host.recoveries.push(e)
      this.host.emit('recovery', [e])
    }
  }

  /** A lost peer was taken back on its stage with its own state: record it. */
  private rejoined (p: StagePlan, old: Assignment): void {
    const e = this.rejoinEvent(p, old, 'recovered')
    this.lost.delete(p.stage)
    this.excluded.delete(p.stage)
    this.host.forgetLoss(p.target)
    log.info(`stage ${p.stage}: peer ${short(p.target)} is back with its state intact: it keeps the stage`)
    this.host.recoveries.push(e)
    this.host.emit('recovery', [e])
  }

  /**
   * A rejoiner lost during its round (`again`): the stage stays lost, now from this loss, so the
   * next round does not take the dead peer back on the heartbeat that made it a candidate. Recorded.
   */
  private rejoinLost (p: StagePlan, old: Assignment, again: LostPeer): void {
    const reason = `the rejoiner ${short(p.target)} was lost during the round (${again.cause})`
    const e = this.rejoinEvent(p, old, 'failed', reason)
    this.lost.set(p.stage, { peer: p.target, cause: again.cause, lastSeen: again.lastSeen, detectedAt: again.detectedAt })
    log.info(`stage ${p.stage}: ${reason}; planning again`)
    this.host.recoveries.push(e)
    this.host.emit('recovery-failed', e)
  }

  private rejoinEvent (p: StagePlan, old: Assignment, outcome: RecoveryEvent['outcome'], reason?: string): RecoveryEvent {
    return {
      ...lossEvent(p.stage, this.lossOf(p.stage, old), this.host.epoch, this.host.iteration),
      rung: 'rejoin',
      targetPeer: p.target,
      donors: [],
      outcome,
      ...(reason != null ? { reason } : {}),
      iterationsBehind: 0
    }
  }

  private exclude (stage: number, rung: RecoveryRung): void {
    const set = this.excluded.get(stage) ?? new Set<RecoveryRung>()
    set.add(rung)
    this.excluded.set(stage, set)
  }

  /** Reports that arrived before the round was recorded (a fast peer) are applied now. */
  private applyEarly (r: RecoveryRecord): void {
    const m = this.early.get(`${r.epoch}:${r.stage}`)
    this.early.clear()
    if (m == null) return
    if (m.kind === 'recovery-done') this.onRecoveryDone(m, m.peerId)
    else this.onRecoveryFailed(m, m.peerId)
  }

  /** Deadline of a plan at the throughput measured so far (deadline.ts). */
  deadlineMs (p: StagePlan): number {
    return recoveryDeadlineMs(this.host.model, this.host.train.stages, p, this.throughput)
  }

  // ------------------------------------------------------------------ helpers

  private stageHeldBy (peerId: string): number | undefined {
    return this.host.assignment?.stages.find(st => st.peers.includes(peerId))?.stage
  }

  private lostStageOf (peerId: string): number | undefined {
    for (const [s, l] of this.lost) if (l.peer === peerId) return s
    return undefined
  }

  /** The peer still holds stage `s` at the current epoch and the last committed iteration. */
  private intact (hb: Heartbeat, s: number): boolean {
    return holdsIntact(hb, s, this.host.epoch, this.host.iteration - 1)
  }

  private lossOf (stage: number, a: Assignment): LossInfo {
    const l = this.lost.get(stage)
    if (l != null) return l
    const p = a.stages[stage]?.peers[0] ?? ''
    const cause = p === '' ? 'no peer held it (its recovery was waiting for a spare)' : this.departing.has(p) ? 'peer announced its departure' : 'unknown'
    return { peer: p, cause, lastSeen: Date.now(), detectedAt: Date.now() }
  }

  /** The persisted, exported form of a record (record.ts). */
  private event (r: RecoveryRecord): RecoveryEvent { return recordEvent(r, this.host.iteration) }
}

function short (peerId: string): string { return peerId.slice(-8) }

/**
 * Recovery of lost stages: the flow behind Coordinator.recover(). For the failed stages it surveys
 * the assignment (who still holds a stage, who is lost and why, who is departing), adds the spares
 * and replicas, picks a rung per stage (ladder.ts), verifies the checkpoint a plan would read, waits
 * for a spare when there is none, then has the coordinator publish the plans with a new assignment
 * under the next epoch, and records what each recovery cost.
 *
 * It also keeps the recovery-done reports that rebuilt stages send (Coordinator.assign waits for
 * them), and times how long training takes to resume after a recovery (reported at the next commit).
 */
import type { ModelConfig, TrainConfig } from '../model/config.js'
import { createLog } from '../model/log.js'
import type { Assignment, RecoveryDone, RecoveryPlan } from '../protocols/index.js'
import type { CheckpointStore } from './checkpoint-store.js'
import type { FailureDetector, LostPeer } from './detector.js'
import { CoordinatorTimeoutError } from './errors.js'
import { planRecovery, type LadderResult, type StagePlan, type Strategy } from './ladder.js'
import { RecoveryCheckpoint } from './recovery-checkpoint.js'
import type { RecoveryEvent } from './types.js'

const log = createLog('coordinator')

/** What recovery reads from the coordinator, and the coordinator methods it calls. */
export interface RecoveryHost {
  readonly model: ModelConfig
  readonly train: TrainConfig
  readonly strategy: Strategy
  readonly assignment?: Assignment
  readonly epoch: number
  /** The next iteration: rolled back when every stage goes back to a checkpoint. */
  iteration: number
  readonly gradNorms: number[]
  readonly store?: CheckpointStore
  readonly detector: FailureDetector
  readonly recoveries: RecoveryEvent[]
  failedStages: () => number[]
  assignedPeers: () => string[]
  livePeers: () => string[]
  until: (check: () => boolean, what: string, timeoutMs: number, signal?: AbortSignal) => Promise<void>
  assign: (peers: string[][], opts: { timeoutMs?: number, signal?: AbortSignal, plans?: StagePlan[] }) => Promise<Assignment>
  persist: () => Promise<void>
  emit: (event: 'recovery', events: RecoveryEvent[]) => boolean
}

type LossInfo = Pick<LostPeer, 'cause' | 'lastSeen' | 'detectedAt'>

/** The state of each stage of `a`: its live holder, or why its peer is gone, or its departing peer. */
function survey (a: Assignment, lost: ReadonlyMap<string, LostPeer>, departingPeers: ReadonlySet<string>): { holders: Map<number, string>, departing: Map<number, string>, lostInfo: Map<number, LossInfo> } {
  const holders = new Map<number, string>()
  const departing = new Map<number, string>()
  const lostInfo = new Map<number, LossInfo>()
  for (const st of a.stages) {
    const p = st.peers[0]
    if (p == null) continue
    const l = lost.get(p)
    if (l != null) lostInfo.set(st.stage, l)
    else if (departingPeers.has(p)) {
      departing.set(st.stage, p)
      lostInfo.set(st.stage, { cause: 'peer announced its departure', lastSeen: Date.now(), detectedAt: Date.now() })
    } else holders.set(st.stage, p)
  }
  return { holders, departing, lostInfo }
}

/** The recovery-plan messages for `plans` under `epoch`, each donor with a dialable address ('' if unknown). */
export async function recoveryPlanMessages (epoch: number, plans: StagePlan[], donorAddr: (peerId: string) => Promise<string>): Promise<RecoveryPlan[]> {
  return await Promise.all(plans.map(async p => ({
    kind: 'recovery-plan' as const,
    epoch,
    stage: p.stage,
    rung: p.rung,
    targetPeer: p.target,
    donors: await Promise.all(p.donors.map(async d => ({ ...d, addr: await donorAddr(d.peerId) }))),
    lrScale: p.lrScale,
    weights: p.weights.some(w => w > 0) ? p.weights : [],
    checkpointId: p.checkpointId
  })))
}

export class Recovery {
  private readonly host: RecoveryHost
  /** The coordinator's peers that announced their departure; a replaced one is forgotten here. */
  private readonly departing: Set<string>
  /** The checkpoint a recovery reads, served to rebuilding peers over the weights protocol. */
  readonly checkpoint: RecoveryCheckpoint
  /** recovery-done reports of rebuilt stages, by `epoch:stage`. */
  private readonly done = new Map<string, RecoveryDone>()
  /** Recoveries whose resume time is measured at the next commit. */
  private pendingResume: RecoveryEvent[] = []
  /** When every stage last took an assignment. */
  private readyAt = 0

  constructor (host: RecoveryHost, departing: Set<string>) {
    this.host = host
    this.departing = departing
    this.checkpoint = new RecoveryCheckpoint(host.model, host.train.stages)
  }

  /** Records a rebuilt stage's report. */
  onRecoveryDone (msg: RecoveryDone): void { this.done.set(`${msg.epoch}:${msg.stage}`, msg) }

  /** Whether every stage rebuilt under assignment `a` has reported. */
  rebuiltDone (a: Assignment): boolean { return a.rebuilt.every(s => this.done.has(`${a.epoch}:${s}`)) }

  /** Every stage took the new assignment: resume times are measured from now. */
  stagesReady (): void { this.readyAt = performance.now() }

  /** At a commit: the recoveries training has now resumed from, with their resume time set. */
  resumed (): RecoveryEvent[] {
    const events = this.pendingResume
    for (const e of events) e.resumeMs = performance.now() - this.readyAt
    this.pendingResume = []
    return events
  }

  /**
   * Recovers every failed stage: picks rungs, waits for spares if needed, publishes the plans and a
   * new assignment under the next epoch, and waits until the rebuilt stages are taken.
   */
  async recover (opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<RecoveryEvent[]> {
    const c = this.host
    const a = c.assignment
    if (a == null) throw new CoordinatorTimeoutError('recover() before any assignment')
    for (;;) {
      const failed = c.failedStages()
      if (failed.length === 0) return []
      const { holders, departing, lostInfo } = survey(a, c.detector.lost, this.departing)
      const assigned = new Set(c.assignedPeers())
      const spares = c.livePeers().filter(p => !assigned.has(p)).sort()
      const replicas = new Map<number, string>()
      if (c.strategy === 'redundant') {
        for (const s of failed) {
          const pred = holders.get((s - 1 + a.stages.length) % a.stages.length)
          if (pred != null) replicas.set(s, pred)
        }
      }
      const ladder = (checkpoint: number | undefined): LadderResult => planRecovery({
        strategy: c.strategy, stages: a.stages.length, holders, lost: failed, departing, spares, replicas,
        gradNorms: c.gradNorms, checkpoint
      })
      let { plans, rollbackAll } = ladder(c.store?.latest()?.iteration)
      if (plans.some(p => p.rung === 'checkpoint' && p.checkpointId !== 'init')) {
        // Verify before promising a checkpoint: a corrupt newest one falls back to the one before.
        ({ plans, rollbackAll } = ladder(await this.checkpoint.load(c.store)))
      }
      if (plans.some(p => p.rung === 'wait')) {
        log.info(`no spare for stages ${plans.filter(p => p.rung === 'wait').map(p => p.stage).join(', ')}: waiting for a peer to join (state is kept)`)
        const need = plans.filter(p => p.target === '' || spares.includes(p.target)).length
        await c.until(() => c.livePeers().filter(p => !assigned.has(p)).length >= need, 'a spare peer to join', opts.timeoutMs ?? 24 * 3600_000, opts.signal)
        continue
      }
      if (rollbackAll) {
        // Every stage goes back to the checkpoint: so does the iteration clock.
        const ck = plans[0]?.checkpointId
        c.iteration = ck != null && ck.startsWith('ckpt-') ? Number(ck.slice(5)) + 1 : 0
      }
      const next = a.stages.map(st => [holders.get(st.stage) ?? ''])
      for (const p of plans) next[p.stage] = [p.target]
      const t0 = Date.now()
      await c.assign(next, { ...opts, plans })
      const events = plans.filter(p => failed.includes(p.stage)).map(p => this.event(a, p, lostInfo.get(p.stage), t0))
      for (const p of plans) {
        const old = a.stages[p.stage]?.peers[0]
        if (old != null) { c.detector.forget(old); this.departing.delete(old) }
      }
      for (const e of events) log.info(`recovered stage ${e.stage} by ${e.rung} (${e.cause}): ${e.bytes} bytes, detect ${e.detectMs} ms, transfer ${e.transferMs.toFixed(0)} ms, rebuild ${e.rebuildMs.toFixed(0)} ms`)
      c.recoveries.push(...events)
      this.pendingResume.push(...events)
      c.emit('recovery', events)
      await c.persist()
      return events
    }
  }

  /** The record of plan `p`, carried out under the current epoch; `old` is the assignment it replaced. */
  private event (old: Assignment, p: StagePlan, info: LossInfo | undefined, t0: number): RecoveryEvent {
    const c = this.host
    const done = this.done.get(`${c.epoch}:${p.stage}`)
    return {
      at: Date.now(),
      epoch: c.epoch,
      iteration: c.iteration,
      stage: p.stage,
      cause: info?.cause ?? 'unknown',
      rung: p.rung,
      lostPeer: old.stages[p.stage].peers[0] ?? '',
      targetPeer: p.target,
      donors: p.donors.map(d => d.peerId),
      bytes: done?.bytes ?? 0,
      detectMs: info != null ? Math.max(0, info.detectedAt - info.lastSeen) : 0,
      transferMs: done?.transferMs ?? 0,
      rebuildMs: done?.rebuildMs ?? (Date.now() - t0),
      resumeMs: 0
    }
  }
}

/**
 * The coordinator: owns the cluster's truth (membership from heartbeats, the assignment under an
 * epoch, the iteration clock) and drives iterations: begin -> a done report from every stage ->
 * commit. When a stage's peer is lost mid-run it aborts the iteration, picks a recovery rung per
 * lost stage (ladder.ts), publishes the plans and a new assignment under the next epoch, waits for
 * the rebuilt stages, and runs the same iteration again. It takes sparse checkpoints in the
 * background and persists its state after every change, so a restarted coordinator resumes the run.
 */
import { EventEmitter } from 'node:events'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig, type TrainConfig } from '../model/config.js'
import { createLog } from '../model/log.js'
import type { Assignment, DoneReport, Heartbeat, Message, RecoveryDone, RecoveryPlan } from '../protocols/index.js'
import { ClusterGossip } from '../node/gossip.js'
import { createPeerLibp2p, type PeerLibp2p } from '../node/transport/index.js'
import { CoordinatorTimeoutError, StageLostError } from './errors.js'
import { FailureDetector, type LostPeer } from './detector.js'
import { planRecovery, type Strategy, type StagePlan } from './ladder.js'

const log = createLog('coordinator')

export interface CoordinatorInit {
  clusterId: string
  /** Names this run in frames, so a peer never mixes two runs. @default 'run' */
  runId?: string
  model?: Partial<ModelConfig>
  train?: Partial<TrainConfig>
  /** Train with CheckFree+ swapped microbatches. @default false */
  checkfreePlus?: boolean
  privateKey?: PrivateKey
  swarmKey?: Uint8Array
  /** @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** @default 'tcp' */
  transport?: 'tcp' | 'memory'
  /** Re-send begin when no stage has reported for this long (a lost gossip message). @default 5000 */
  resendMs?: number
  /** Recovery strategy. @default 'checkfree' */
  strategy?: Strategy
  /** A peer silent for this long is lost. @default 3000 */
  heartbeatTimeoutMs?: number
  /** CheckFree+ mirrors are refreshed every N iterations. @default 10 */
  mirrorEvery?: number
}

/** One recovery, as logged, persisted and exported as metrics. */
export interface RecoveryEvent {
  at: number
  epoch: number
  iteration: number
  stage: number
  cause: string
  rung: StagePlan['rung']
  lostPeer: string
  targetPeer: string
  donors: string[]
  bytes: number
  /** Last sign of life -> decision. */
  detectMs: number
  transferMs: number
  rebuildMs: number
  /** Stage ready -> first committed iteration after the recovery. */
  resumeMs: number
}

export interface IterationRecord {
  iteration: number
  epoch: number
  loss: number
  gradNorms: number[]
  /** Wall-clock ms from begin to the last done report. */
  ms: number
  /** Tokens processed per second in this iteration. */
  tokensPerSec: number
}

export interface PeerView {
  heartbeat: Heartbeat
  seenAt: number
}

export class Coordinator extends EventEmitter {
  readonly init: CoordinatorInit
  readonly model: ModelConfig
  readonly train: TrainConfig
  node!: PeerLibp2p
  gossip!: ClusterGossip
  readonly peers = new Map<string, PeerView>()
  assignment?: Assignment
  epoch = 0
  /** The next iteration to run; everything below it is committed. */
  iteration = 0
  readonly history: IterationRecord[] = []
  readonly recoveries: RecoveryEvent[] = []
  readonly strategy: Strategy
  detector!: FailureDetector
  /** Post-clip gradient norm per stage at the last commit (CheckFree weights). */
  gradNorms: number[] = []
  private reports = new Map<number, DoneReport>()
  private readonly recoveryDone = new Map<string, RecoveryDone>()
  private readonly departing = new Set<string>()
  /** Recoveries whose resume time is measured at the next commit. */
  private pendingResume: RecoveryEvent[] = []
  private readyAt = 0

  constructor (init: CoordinatorInit) {
    super()
    this.init = init
    this.model = resolveModelConfig(init.model)
    this.train = resolveTrainConfig(init.train, this.model)
    this.strategy = init.strategy ?? 'checkfree'
  }

  get runId (): string { return this.init.runId ?? 'run' }
  get peerId (): string { return this.node.peerId.toString() }
  get addrs (): string[] { return this.node.getMultiaddrs().map(String) }

  async start (): Promise<void> {
    this.node = await createPeerLibp2p({ privateKey: this.init.privateKey, swarmKey: this.init.swarmKey, listen: this.init.listen, transport: this.init.transport })
    this.gossip = new ClusterGossip(this.node, { clusterId: this.init.clusterId, onMessage: (m, from) => { this.onMessage(m, from) } })
    this.gossip.start()
    this.detector = new FailureDetector({
      node: this.node,
      heartbeatTimeoutMs: this.init.heartbeatTimeoutMs,
      watched: () => this.assignedPeers(),
      lastSeen: (p) => this.peers.get(p)?.seenAt,
      onLost: () => { this.emit('change') }
    })
    this.detector.start()
    this.on('stream-break', (m: { suspect: string, reason: string }) => { void this.detector.confirm(m.suspect, `neighbour reported: ${m.reason}`) })
    log.info(`coordinator ${this.peerId} listening on ${this.addrs.join(', ')}`)
  }

  /** Peers holding a stage in the current assignment. */
  assignedPeers (): string[] {
    return this.assignment?.stages.flatMap(s => s.peers) ?? []
  }

  /** Stages whose peer is lost or departing: the iteration in flight cannot finish as assigned. */
  failedStages (): number[] {
    const a = this.assignment
    if (a == null) return []
    return a.stages.filter(s => s.peers.some(p => this.detector.lost.has(p) || this.departing.has(p))).map(s => s.stage)
  }

  protected onMessage (msg: Message, from: string): void {
    if (msg.kind === 'heartbeat') this.onHeartbeat(msg)
    else if (msg.kind === 'done') this.onDone(msg)
    else if (msg.kind === 'stream-break') this.emit('stream-break', msg, from)
    else if (msg.kind === 'recovery-done') this.recoveryDone.set(`${msg.epoch}:${msg.stage}`, msg)
    this.emit('change')
  }

  protected onHeartbeat (hb: Heartbeat): void {
    this.peers.set(hb.peerId, { heartbeat: hb, seenAt: Date.now() })
    if (hb.departing && !this.departing.has(hb.peerId) && this.assignedPeers().includes(hb.peerId)) {
      log.info(`peer ${hb.peerId.slice(-8)} announced its departure`)
      this.departing.add(hb.peerId)
    }
  }

  protected onDone (d: DoneReport): void {
    if (d.epoch !== this.epoch || d.iteration !== this.iteration) return
    const expected = this.assignment?.stages[d.stage]?.peers
    if (expected == null || !expected.includes(d.peerId)) {
      log.error('done report from %s for stage %d, which it does not hold', d.peerId, d.stage)
      return
    }
    this.reports.set(d.stage, d)
  }

  /** Resolves when `check` returns true, re-checking on every message; rejects on timeout or abort. */
  async until (check: () => boolean, what: string, timeoutMs: number, signal?: AbortSignal, onTick?: () => void): Promise<void> {
    if (check()) return
    await new Promise<void>((resolve, reject) => {
      const tick = setInterval(() => { onTick?.(); probe() }, 250)
      const timer = setTimeout(() => { done(); reject(new CoordinatorTimeoutError(`timed out after ${timeoutMs} ms waiting for ${what}`)) }, timeoutMs)
      const onAbort = (): void => { done(); reject(signal?.reason) }
      const probe = (): void => { if (check()) { done(); resolve() } }
      const done = (): void => {
        clearInterval(tick); clearTimeout(timer)
        this.off('change', probe)
        signal?.removeEventListener('abort', onAbort)
      }
      this.on('change', probe)
      signal?.addEventListener('abort', onAbort)
    })
  }

  /** Peers alive (heard within `windowMs`) and subscribed to the control topic. */
  livePeers (windowMs = 3000): string[] {
    const subs = new Set(this.gossip.controlSubscribers())
    const now = Date.now()
    return [...this.peers.entries()].filter(([id, v]) => now - v.seenAt <= windowMs && subs.has(id) && !v.heartbeat.departing && !this.detector.lost.has(id)).map(([id]) => id)
  }

  /** A dialable address of a connected peer (its listen address as learned by identify). */
  protected async addressOf (peerId: string): Promise<string> {
    const p = await this.node.peerStore.get(peerIdFromString(peerId))
    const a = p.addresses.map(x => x.multiaddr.toString()).find(s => s.includes('/tcp/') || s.includes('/memory/'))
    if (a == null) throw new CoordinatorTimeoutError(`no known listen address for peer ${peerId}`)
    return a.includes('/p2p/') ? a : `${a}/p2p/${peerId}`
  }

  /** Waits until `count` peers are live, then assigns stages under the next epoch. */
  async assignInitial (opts: { timeoutMs?: number, signal?: AbortSignal } = {}): Promise<Assignment> {
    const S = this.train.stages
    await this.until(() => this.livePeers().length >= S, `${S} peers`, opts.timeoutMs ?? 60_000, opts.signal)
    const chosen = this.livePeers().sort().slice(0, S)
    return await this.assign(chosen.map(p => [p]), opts)
  }

  /** Publishes a new assignment (stage s -> peers[s]) under epoch + 1 and waits for the stages to take it. */
  async assign (peers: string[][], opts: { timeoutMs?: number, signal?: AbortSignal, plans?: StagePlan[] } = {}): Promise<Assignment> {
    const stages = await Promise.all(peers.map(async (ps, stage) => ({ stage, peers: ps, addrs: await Promise.all(ps.map(async p => await this.addressOf(p))) })))
    this.epoch += 1
    const a: Assignment = {
      kind: 'assignment',
      clusterId: this.init.clusterId,
      runId: this.runId,
      epoch: this.epoch,
      iteration: this.iteration,
      stages,
      modelConfig: JSON.stringify(this.model),
      trainingConfig: JSON.stringify({ ...this.train, ...this.clusterOptions() }),
      rebuilt: (opts.plans ?? []).map(p => p.stage)
    }
    this.assignment = a
    const planMsgs: RecoveryPlan[] = (opts.plans ?? []).map(p => ({
      kind: 'recovery-plan', epoch: a.epoch, stage: p.stage, rung: p.rung, targetPeer: p.target, donors: p.donors,
      lrScale: p.lrScale, weights: p.weights.some(w => w > 0) ? p.weights : [], checkpointId: p.checkpointId
    }))
    for (const m of planMsgs) await this.gossip.publish(m)
    await this.gossip.publish(a)
    const taken = (): boolean => a.stages.every(s => s.peers.every(p => {
      const hb = this.peers.get(p)?.heartbeat
      return hb != null && hb.epoch === a.epoch && hb.stage === s.stage
    })) && a.rebuilt.every(s => this.recoveryDone.has(`${a.epoch}:${s}`))
    let ticks = 0
    await this.until(() => taken() || this.failedStages().length > 0, `stages to acknowledge epoch ${a.epoch}`, opts.timeoutMs ?? 120_000, opts.signal, () => {
      if (++ticks % 4 !== 0) return
      void (async () => { for (const m of [...planMsgs, a]) await this.gossip.publish(m) })().catch(() => {})
    })
    if (!taken()) throw new StageLostError(this.failedStages(), `stage lost while epoch ${a.epoch} was being taken`)
    this.readyAt = performance.now()
    log.info(`epoch ${a.epoch}: ${a.stages.map(s => `stage ${s.stage} -> ${s.peers.map(p => p.slice(-6)).join(',') || '(none)'}`).join('; ')}`)
    return a
  }

  /** Runs one iteration: begin, wait for every stage's done report, commit. */
  async runIteration (opts: { timeoutMs?: number, signal?: AbortSignal } = {}): Promise<IterationRecord> {
    const a = this.assignment
    if (a == null) throw new CoordinatorTimeoutError('no assignment yet')
    const it = this.iteration
    this.reports = new Map()
    const t0 = performance.now()
    const begin = { kind: 'begin' as const, epoch: this.epoch, iteration: it }
    await this.gossip.publish(begin)
    let lastProgress = Date.now()
    let seen = 0
    await this.until(() => this.reports.size === a.stages.length || this.failedStages().length > 0, `done reports for iteration ${it}`, opts.timeoutMs ?? 120_000, opts.signal, () => {
      if (this.reports.size !== seen) { seen = this.reports.size; lastProgress = Date.now() }
      if (Date.now() - lastProgress > (this.init.resendMs ?? 5000)) {
        lastProgress = Date.now()
        log('re-sending begin %d', it)
        void this.gossip.publish(begin).catch(() => {})
      }
    })
    if (this.reports.size !== a.stages.length) {
      const failed = this.failedStages()
      await this.gossip.publish({ kind: 'abort', epoch: this.epoch, iteration: it, reason: `stages ${failed.join(', ')} lost` }).catch(() => {})
      throw new StageLostError(failed, `iteration ${it} aborted: stages ${failed.join(', ')} lost`)
    }
    const ms = performance.now() - t0
    const last = this.reports.get(a.stages.length - 1) as DoneReport
    const rec: IterationRecord = {
      iteration: it,
      epoch: this.epoch,
      loss: last.loss ?? NaN,
      gradNorms: a.stages.map(s => this.reports.get(s.stage)?.gradNorm ?? NaN),
      ms,
      tokensPerSec: this.train.microbatches * this.train.microbatchSize * this.model.seqLen / (ms / 1000)
    }
    this.iteration = it + 1
    this.gradNorms = rec.gradNorms
    this.history.push(rec)
    await this.gossip.publish({ kind: 'commit', epoch: this.epoch, iteration: it })
    for (const e of this.pendingResume) e.resumeMs = performance.now() - this.readyAt
    if (this.pendingResume.length > 0) this.emit('recovered', this.pendingResume)
    this.pendingResume = []
    this.emit('iteration', rec)
    return rec
  }

  /** Cluster-wide options that ride in the assignment's training config (see node/peer.ts). */
  protected clusterOptions (): Record<string, unknown> {
    return {
      strategy: this.strategy,
      checkfreePlus: this.init.checkfreePlus ?? this.strategy === 'checkfree-plus',
      mirrorEvery: this.init.mirrorEvery ?? 10,
      shadow: this.strategy === 'redundant'
    }
  }

  /** Newest usable checkpoint iteration for the ladder (undefined: the seeded initial weights). */
  protected checkpointIteration (): number | undefined { return undefined }

  /** Hook before a plan that reads a checkpoint is published (the checkpointing subclass loads it). */
  protected async prepareCheckpoint (_plans: StagePlan[], _rollbackAll: boolean): Promise<void> {}

  /**
   * Recovers every failed stage: picks rungs, waits for spares if needed, publishes the plans and a
   * new assignment under the next epoch, and waits until the rebuilt stages are taken.
   */
  async recover (opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<RecoveryEvent[]> {
    const a = this.assignment
    if (a == null) throw new CoordinatorTimeoutError('recover() before any assignment')
    for (;;) {
      const failed = this.failedStages()
      if (failed.length === 0) return []
      const holders = new Map<number, string>()
      const departing = new Map<number, string>()
      const lostInfo = new Map<number, LostPeer | { cause: string, lastSeen: number, detectedAt: number }>()
      for (const st of a.stages) {
        const p = st.peers[0]
        if (p == null) continue
        const l = this.detector.lost.get(p)
        if (l != null) lostInfo.set(st.stage, l)
        else if (this.departing.has(p)) {
          departing.set(st.stage, p)
          lostInfo.set(st.stage, { cause: 'peer announced its departure', lastSeen: Date.now(), detectedAt: Date.now() })
        } else holders.set(st.stage, p)
      }
      const assigned = new Set(this.assignedPeers())
      const spares = this.livePeers().filter(p => !assigned.has(p)).sort()
      const replicas = new Map<number, string>()
      if (this.strategy === 'redundant') {
        for (const s of failed) {
          const pred = holders.get((s - 1 + a.stages.length) % a.stages.length)
          if (pred != null) replicas.set(s, pred)
        }
      }
      const { plans, rollbackAll } = planRecovery({
        strategy: this.strategy, stages: a.stages.length, holders, lost: failed, departing, spares, replicas,
        gradNorms: this.gradNorms, checkpoint: this.checkpointIteration()
      })
      if (plans.some(p => p.rung === 'wait')) {
        log.info(`no spare for stages ${plans.filter(p => p.rung === 'wait').map(p => p.stage).join(', ')}: waiting for a peer to join (state is kept)`)
        const need = plans.filter(p => p.target === '' || spares.includes(p.target)).length
        await this.until(() => this.livePeers().filter(p => !assigned.has(p)).length >= need, 'a spare peer to join', opts.timeoutMs ?? 24 * 3600_000, opts.signal)
        continue
      }
      await this.prepareCheckpoint(plans, rollbackAll)
      const next = a.stages.map(st => [holders.get(st.stage) ?? ''])
      for (const p of plans) next[p.stage] = [p.target]
      const t0 = Date.now()
      await this.assign(next, { ...opts, plans: rollbackAll ? plans : plans })
      const events: RecoveryEvent[] = plans.filter(p => failed.includes(p.stage)).map(p => {
        const info = lostInfo.get(p.stage)
        const done = this.recoveryDone.get(`${this.epoch}:${p.stage}`)
        return {
          at: Date.now(),
          epoch: this.epoch,
          iteration: this.iteration,
          stage: p.stage,
          cause: info?.cause ?? 'unknown',
          rung: p.rung,
          lostPeer: a.stages[p.stage].peers[0] ?? '',
          targetPeer: p.target,
          donors: p.donors.map(d => d.peerId),
          bytes: done?.bytes ?? 0,
          detectMs: info != null ? Math.max(0, info.detectedAt - info.lastSeen) : 0,
          transferMs: done?.transferMs ?? 0,
          rebuildMs: done?.rebuildMs ?? (Date.now() - t0),
          resumeMs: 0
        }
      })
      for (const p of plans) {
        const old = a.stages[p.stage]?.peers[0]
        if (old != null) { this.detector.forget(old); this.departing.delete(old) }
      }
      for (const e of events) log.info(`recovered stage ${e.stage} by ${e.rung} (${e.cause}): ${e.bytes} bytes, detect ${e.detectMs} ms, transfer ${e.transferMs.toFixed(0)} ms, rebuild ${e.rebuildMs.toFixed(0)} ms`)
      this.recoveries.push(...events)
      this.pendingResume.push(...events)
      this.emit('recovery', events)
      return events
    }
  }

  /** Runs `iterations` more iterations, recovering from failures along the way. */
  async run (iterations: number, opts: { signal?: AbortSignal, onIteration?: (r: IterationRecord) => void } = {}): Promise<void> {
    const target = this.iteration + iterations
    while (this.iteration < target) {
      opts.signal?.throwIfAborted()
      try {
        if (this.failedStages().length > 0) await this.recover(opts)
        const r = await this.runIteration(opts)
        opts.onIteration?.(r)
      } catch (err) {
        if (!(err instanceof StageLostError)) throw err
        log.info(err.message)
      }
    }
  }

  async stop (): Promise<void> {
    this.detector?.stop()
    this.gossip?.stop()
    await this.node?.stop()
  }
}

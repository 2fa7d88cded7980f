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
import { join } from 'node:path'
import { stageLayout, stageSpecs } from '../model/params.js'
import { encodeStageState, metaToTensor, META_TENSOR, stateFromTensorSet } from '../model/state.js'
import { fetchWeights, serveWeights, type WeightsProvider } from '../node/weights/index.js'
import { CheckpointStore, metaFor, tensorsFor, type LoadedCheckpoint } from './checkpoint-store.js'
import { DurableState, type CoordinatorState } from './durable-state.js'
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
  /**
   * Directory for the durable coordinator state (`coordinator.json`) and the checkpoint store
   * (`checkpoints/`). Without it nothing is persisted and no checkpoints are taken.
   * @default undefined
   */
  stateDir?: string
  /** Take a sparse checkpoint every K iterations (0: never). @default 50 when stateDir is set */
  checkpointEvery?: number
  /** Complete checkpoints kept. @default 3 */
  keepCheckpoints?: number
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
  /** Gaps between its last heartbeats (ms), newest last; at most 20. */
  gaps: number[]
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
  store?: CheckpointStore
  private durable?: DurableState
  /** The checkpoint a recovery reads (verified), served to rebuilding peers over the weights protocol. */
  private recoveryCheckpoint?: LoadedCheckpoint
  private weightsServer?: { stop: () => Promise<void> }
  /** Checkpoints being pulled in the background. */
  private checkpointing?: Promise<void>
  /** State restored from disk at start(), for resume(). */
  restored?: CoordinatorState

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
    this.weightsServer = await serveWeights(this.node, this.checkpointProvider)
    if (this.init.stateDir != null) {
      this.store = new CheckpointStore({ dir: join(this.init.stateDir, 'checkpoints'), keep: this.init.keepCheckpoints ?? 3 })
      await this.store.open()
      const path = join(this.init.stateDir, 'coordinator.json')
      this.durable = await DurableState.load(path) ?? new DurableState(path)
      const st = this.durable.state
      if (st != null) {
        if (st.clusterId !== this.init.clusterId) throw new CoordinatorTimeoutError(`state in ${path} is for cluster ${st.clusterId}, not ${this.init.clusterId}`)
        this.restored = st
        this.epoch = st.epoch
        this.iteration = st.committedIteration + 1
        this.assignment = st.assignment as Assignment
        this.recoveries.push(...st.recoveries as unknown as RecoveryEvent[])
        log.info(`restored run ${st.runId}: epoch ${st.epoch}, ${st.committedIteration + 1} iterations committed, ${st.checkpoints.length} checkpoints`)
      }
    }
    this.detector = new FailureDetector({
      node: this.node,
      heartbeatTimeoutMs: this.init.heartbeatTimeoutMs,
      watched: () => this.assignedPeers(),
      lastSeen: (p) => this.peers.get(p)?.seenAt,
      longestGap: (p) => { const g = this.peers.get(p)?.gaps; return g == null || g.length === 0 ? undefined : Math.max(...g) },
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
    const now = Date.now()
    const prev = this.peers.get(hb.peerId)
    const gaps = prev != null ? [...prev.gaps, now - prev.seenAt].slice(-20) : []
    this.peers.set(hb.peerId, { heartbeat: hb, seenAt: now, gaps })
    // A peer declared lost that speaks again (it was only slow) can serve as a spare.
    if (this.detector?.lost.has(hb.peerId) === true && !this.assignedPeers().includes(hb.peerId)) this.detector.forget(hb.peerId)
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
    const donorAddr = async (peerId: string): Promise<string> => await this.addressOf(peerId).catch(() => '')
    const planMsgs: RecoveryPlan[] = await Promise.all((opts.plans ?? []).map(async p => ({
      kind: 'recovery-plan' as const,
      epoch: a.epoch,
      stage: p.stage,
      rung: p.rung,
      targetPeer: p.target,
      donors: await Promise.all(p.donors.map(async d => ({ ...d, addr: await donorAddr(d.peerId) }))),
      lrScale: p.lrScale,
      weights: p.weights.some(w => w > 0) ? p.weights : [],
      checkpointId: p.checkpointId
    })))
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
    await this.persist()
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
    // Durable before it is announced: a restarted coordinator never forgets a commit peers applied.
    await this.persist()
    await this.gossip.publish({ kind: 'commit', epoch: this.epoch, iteration: it })
    if (this.checkpointEvery > 0 && (it + 1) % this.checkpointEvery === 0 && this.store != null) {
      const prev = this.checkpointing ?? Promise.resolve()
      this.checkpointing = prev.then(async () => { await this.takeCheckpoint(it) })
    }
    for (const e of this.pendingResume) e.resumeMs = performance.now() - this.readyAt
    if (this.pendingResume.length > 0) this.emit('recovered', this.pendingResume)
    this.pendingResume = []
    this.emit('iteration', rec)
    return rec
  }

  get checkpointEvery (): number { return this.init.checkpointEvery ?? (this.init.stateDir != null ? 50 : 0) }

  /** Writes the durable state (atomically); a no-op without stateDir. */
  async persist (): Promise<void> {
    if (this.durable == null) return
    await this.durable.save({
      version: 1,
      clusterId: this.init.clusterId,
      runId: this.runId,
      epoch: this.epoch,
      committedIteration: this.iteration - 1,
      assignment: this.assignment ?? null,
      checkpoints: this.store?.list().map(c => c.iteration) ?? [],
      recoveries: this.recoveries.map(e => ({ ...e, peers: [e.lostPeer, e.targetPeer, ...e.donors] })),
      model: this.model,
      train: this.train
    })
  }

  /** Serves the checkpoint a recovery reads, re-cut to the current stage layout (names are global). */
  private readonly checkpointProvider: WeightsProvider = {
    snapshot: (stage: number, _minVersion: number, includeOptimizer: boolean) => {
      const ck = this.recoveryCheckpoint
      if (ck == null) return undefined
      const names = stageSpecs(this.model, stageLayout(this.model, this.train.stages, stage)).map(x => x.name)
      const tensors = tensorsFor(names, ck, { optimizer: includeOptimizer, who: `stage ${stage}` })
      const meta = metaFor(ck, names)
      if (includeOptimizer) tensors.set(META_TENSOR, metaToTensor(meta))
      return { version: meta.weightVersion, tensors }
    }
  }

  /**
   * Sparse checkpoint of committed iteration `it`: every stage snapshotted its state at the commit;
   * pull the snapshots in the background (training goes on) and write them to the store.
   */
  private async takeCheckpoint (it: number): Promise<void> {
    const store = this.store
    const a = this.assignment
    if (store == null || a == null) return
    const version = it + 1
    const t0 = performance.now()
    const pending = await store.beginCheckpoint(it, a.stages.length, this.model)
    try {
      await Promise.all(a.stages.map(async st => {
        const r = await fetchWeights(this.node, { donors: [{ peer: peerIdFromString(st.peers[0]) }], stage: st.stage, minVersion: version, includeOptimizer: true, timeoutMs: 600_000 })
        const state = stateFromTensorSet(r.tensors)
        if (state.meta.weightVersion !== version) throw new CoordinatorTimeoutError(`stage ${st.stage} served version ${state.meta.weightVersion} for checkpoint ${it} (wanted ${version})`)
        await pending.putStage(st.stage, encodeStageState(state))
      }))
      await pending.complete()
      log.info(`checkpoint ${it} written in ${(performance.now() - t0).toFixed(0)} ms`)
      await this.persist()
    } catch (err) {
      log.info(`checkpoint ${it} abandoned: ${(err as Error).message}`)
      await pending.abandon((err as Error).message).catch(() => {})
    }
  }

  /** Waits for background checkpoint writes to finish. */
  async flushCheckpoints (): Promise<void> { await this.checkpointing }

  /** Cluster-wide options that ride in the assignment's training config (see node/peer.ts). */
  protected clusterOptions (): Record<string, unknown> {
    return {
      strategy: this.strategy,
      checkfreePlus: this.init.checkfreePlus ?? this.strategy === 'checkfree-plus',
      mirrorEvery: this.init.mirrorEvery ?? 10,
      shadow: this.strategy === 'redundant',
      checkpointEvery: this.checkpointEvery
    }
  }

  /**
   * Loads and verifies the newest valid checkpoint for a recovery (a corrupt one is skipped for the
   * one before, with the reason logged). Returns its iteration, or undefined when there is none.
   */
  private async loadRecoveryCheckpoint (): Promise<number | undefined> {
    if (this.store == null || this.store.latest() == null) return undefined
    try {
      const ck = await this.store.loadNewestValid()
      for (const sk of ck.skipped) log.info(`checkpoint ${sk.iteration} skipped: ${sk.reason}`)
      this.recoveryCheckpoint = ck
      return ck.iteration
    } catch (err) {
      log.info(`no valid checkpoint: ${(err as Error).message}`)
      return undefined
    }
  }

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
      const ladder = (checkpoint: number | undefined): ReturnType<typeof planRecovery> => planRecovery({
        strategy: this.strategy, stages: a.stages.length, holders, lost: failed, departing, spares, replicas,
        gradNorms: this.gradNorms, checkpoint
      })
      let { plans, rollbackAll } = ladder(this.store?.latest()?.iteration)
      if (plans.some(p => p.rung === 'checkpoint' && p.checkpointId !== 'init')) {
        // Verify before promising a checkpoint: a corrupt newest one falls back to the one before.
        ({ plans, rollbackAll } = ladder(await this.loadRecoveryCheckpoint()))
      }
      if (plans.some(p => p.rung === 'wait')) {
        log.info(`no spare for stages ${plans.filter(p => p.rung === 'wait').map(p => p.stage).join(', ')}: waiting for a peer to join (state is kept)`)
        const need = plans.filter(p => p.target === '' || spares.includes(p.target)).length
        await this.until(() => this.livePeers().filter(p => !assigned.has(p)).length >= need, 'a spare peer to join', opts.timeoutMs ?? 24 * 3600_000, opts.signal)
        continue
      }
      if (rollbackAll) {
        // Every stage goes back to the checkpoint: so does the iteration clock.
        const ck = plans[0]?.checkpointId
        this.iteration = ck != null && ck.startsWith('ckpt-') ? Number(ck.slice(5)) + 1 : 0
      }
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
      await this.persist()
      return events
    }
  }

  /**
   * After a restart: wait for the peers of the restored assignment to come back (they keep their
   * state while the coordinator is away), then re-announce it under a new epoch. Peers that do not
   * return within `graceMs` are treated as lost and recovered.
   */
  async resume (opts: { graceMs?: number, signal?: AbortSignal } = {}): Promise<void> {
    const a = this.assignment
    if (a == null) throw new CoordinatorTimeoutError('nothing to resume')
    const peers = a.stages.map(s => s.peers)
    const all = peers.flat()
    try {
      await this.until(() => all.every(p => this.livePeers().includes(p)), 'the assigned peers to reconnect', opts.graceMs ?? 15_000, opts.signal)
    } catch (err) {
      if (!(err instanceof CoordinatorTimeoutError)) throw err
    }
    const live = new Set(this.livePeers())
    for (const p of all) if (!live.has(p)) this.detector.markLost(p, 'did not return after the coordinator restarted')
    if (all.every(p => live.has(p))) {
      await this.assign(peers, opts)
      log.info(`resumed at iteration ${this.iteration} under epoch ${this.epoch}`)
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
    await this.checkpointing?.catch(() => {})
    await this.weightsServer?.stop().catch(() => {})
    this.detector?.stop()
    this.gossip?.stop()
    await this.node?.stop()
    this.emit('stopped')
  }
}

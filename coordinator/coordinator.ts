/**
 * The coordinator: owns the cluster's truth (membership from heartbeats, the assignment under an
 * epoch, the iteration clock) and drives iterations: begin -> a done report from every stage ->
 * commit. When a stage's peer is lost mid-run it aborts the iteration, recovers the lost stages
 * (recovery/machine.ts: the state machine that owns lost stages and recoveries in flight, a rung per
 * stage from ladder.ts) and runs the same iteration again. An iteration in which a stage meets a
 * non-finite value is committed as skipped, and too many in a row roll back or stop the run
 * (divergence.ts). It takes sparse checkpoints in the background
 * (sparse-checkpoints.ts) and persists its state after every change, so a restarted coordinator
 * resumes the run. Its options and records are in types.ts.
 */
import { EventEmitter } from 'node:events'
import { peerIdFromString } from '@libp2p/peer-id'
import { checkReplicas, DEFAULT_MODEL, laneCount, lossMicrobatchesByStage, modelConfigDiff, PLUS_LAYOUTS, replicaMicrobatches, resolveModelConfig, resolveTrainConfig, type ModelConfig, type PlusLayout, type TrainConfig } from '../model/index.js'
import { createLog } from '../common/index.js'
import type { Assignment, DoneReport, Heartbeat, Message, StreamBreakReport } from '../protocols/index.js'
import { DEFAULT_DATA_IDENTITY, servingPeers } from '../protocols/index.js'
import { ClusterGossip } from '../net/index.js'
import { createPeerLibp2p, type PeerLibp2p } from '../net/index.js'
import { join } from 'node:path'
import { serveWeights } from '../net/index.js'
import { CheckpointStore } from './checkpoint-store.js'
import { Divergence, nonFiniteReport } from './divergence.js'
import { DurableState, type CoordinatorState } from './durable-state.js'
import { CoordinatorTimeoutError, CoordinatorUsageError, StageLostError } from './errors.js'
import { FailureDetector } from './detector.js'
import type { Strategy, StagePlan } from './ladder.js'
import { RecoveryMachine, recoveryPlanMessages, shadowsBehind } from './recovery/index.js'
import { keepsShadows } from './ladder.js'
import { SparseCheckpoints } from './sparse-checkpoints.js'
import { waitUntil } from './wait.js'
import type { CheckpointEvent, CoordinatorInit, DivergenceEvent, IterationRecord, PeerView, RecoveryEvent } from './types.js'

export type { CheckpointEvent, CoordinatorInit, DivergenceEvent, IterationRecord, PeerView, RecoveryEvent } from './types.js'

const log = createLog('coordinator')

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
  /** The running iteration's done reports, by peer (a stage with R replicas sends R). */
  private reports = new Map<string, DoneReport>()
  /** Redundant strategy: stages whose shadow missed a commit (not waited for until it catches up). */
  private readonly shadowsLagging = new Set<number>()
  store?: CheckpointStore
  private durable?: DurableState
  private weightsServer?: { stop: () => Promise<void> }
  private readonly recovery: RecoveryMachine
  private readonly checkpoints = new SparseCheckpoints(this)
  private readonly divergence: Divergence
  /** State restored from disk at start(), for resume(). */
  restored?: CoordinatorState

  constructor (init: CoordinatorInit) {
    super()
    this.init = init
    this.model = resolveModelConfig(init.model)
    this.train = resolveTrainConfig(init.train, this.model)
    this.strategy = init.strategy ?? 'checkfree'
    // throws a RangeError naming the bound for a replica count the iteration cannot spread over
    checkReplicas(this.replicas, this.train.microbatches)
    if (!Number.isInteger(this.minReplicas) || this.minReplicas < 1 || this.minReplicas > this.replicas) throw new CoordinatorUsageError(`minReplicas must be an integer in 1..${this.replicas} (the replica target), got ${this.minReplicas}`)
    if (!PLUS_LAYOUTS.includes(this.plusLayout)) throw new CoordinatorUsageError(`plusLayout must be ${PLUS_LAYOUTS.join(' or ')}, got ${JSON.stringify(this.plusLayout)}`)
    // the shared embedding and head are one owner and one holder; replicas would need a group per lane
    if (this.plusLayout === 'paper' && this.replicas > 1) throw new CoordinatorUsageError(`plusLayout paper works with one replica per stage, not ${this.replicas}`)
    // redundant computation runs the successor's hops of the plain route, one shadow per stage
    if (this.strategy === 'redundant-compute' && this.replicas > 1) throw new CoordinatorUsageError(`strategy redundant-compute works with one replica per stage, not ${this.replicas}`)
    if (this.strategy === 'redundant-compute' && this.checkfreePlus) throw new CoordinatorUsageError('strategy redundant-compute does not train with CheckFree+ swaps (checkfreePlus)')
    this.recovery = new RecoveryMachine(this)
    this.divergence = new Divergence(this, {
      onDivergence: init.onDivergence,
      limit: init.divergenceLimit,
      lrFactor: init.divergenceLrFactor,
      checkpoints: init.stateDir != null && this.checkpointEvery > 0,
      loadCheckpoint: async () => await this.recovery.checkpoint.load(this.store)
    })
  }

  get runId (): string { return this.init.runId ?? 'run' }
  /** Where CheckFree+'s swapped microbatches embed and run the head (model/schedule.ts). */
  get plusLayout (): PlusLayout { return this.init.plusLayout ?? 'spotpipe' }
  get checkfreePlus (): boolean { return this.init.checkfreePlus ?? this.strategy === 'checkfree-plus' }
  /** Replicas per stage the run aims for: joining peers become replicas up to it. */
  get replicas (): number { return this.init.replicas ?? 1 }
  /** Replicas per stage the initial assignment needs at least (the rest join while training goes on). */
  get minReplicas (): number { return this.init.minReplicas ?? this.replicas }
  get peerId (): string { return this.node.peerId.toString() }
  get addrs (): string[] { return this.node.getMultiaddrs().map(String) }

  async start (): Promise<void> {
    this.node = await createPeerLibp2p({ privateKey: this.init.privateKey, swarmKey: this.init.swarmKey, listen: this.init.listen, transport: this.init.transport })
    this.gossip = new ClusterGossip(this.node, { clusterId: this.init.clusterId, onMessage: (m, from) => { this.onMessage(m, from) } })
    this.gossip.start()
    this.weightsServer = await serveWeights(this.node, this.recovery.checkpoint.provider)
    if (this.init.stateDir != null) {
      this.store = new CheckpointStore({ dir: join(this.init.stateDir, 'checkpoints'), keep: this.init.keepCheckpoints ?? 3 })
      await this.store.open()
      const path = join(this.init.stateDir, 'coordinator.json')
      this.durable = await DurableState.load(path) ?? new DurableState(path)
      const st = this.durable.state
      if (st != null) {
        if (st.clusterId !== this.init.clusterId) throw new CoordinatorUsageError(`state in ${path} is for cluster ${st.clusterId}, not ${this.init.clusterId}`)
        this.epoch = st.epoch
      }
      // an epoch persisted before its first assignment was taken: nothing to resume, but its number is used
      if (st != null && st.assignment != null) {
        // the saved model with its defaults filled in, so a field the file leaves out compares as its default
        const differ = st.model != null && typeof st.model === 'object' ? modelConfigDiff({ ...DEFAULT_MODEL, ...(st.model as Partial<ModelConfig>) }, this.model) : []
        if (differ.length > 0) throw new CoordinatorUsageError(`the run in ${path} has another model than the one asked for: ${differ.join(', ')}; give its flags (or --preset), or use a new --state-dir`)
        this.restored = st
        this.iteration = st.committedIteration + 1
        this.assignment = st.assignment as Assignment
        this.recoveries.push(...st.recoveries as unknown as RecoveryEvent[])
        log.info(`restored run ${st.runId}: epoch ${st.epoch}, ${st.committedIteration + 1} iterations committed, ${st.checkpoints.length} checkpoints`)
      }
    }
    this.detector = new FailureDetector({
      ...this.init.detector,
      node: this.node,
      heartbeatTimeoutMs: this.init.heartbeatTimeoutMs,
      watched: () => this.assignedPeers(),
      onLost: (l) => { this.recovery.peerLost(l); this.emit('change') }
    })
    this.detector.start()
    log.info(`coordinator ${this.peerId} listening on ${this.addrs.join(', ')}`)
  }

  /** Peers holding a stage in the current assignment. */
  assignedPeers (): string[] {
    return this.assignment?.stages.flatMap(s => s.peers) ?? []
  }

  /** Stages whose peer is lost or departing: the iteration in flight cannot finish as assigned. */
  failedStages (): number[] { return this.recovery.failedStages() }

  /** Whether the assignment must change before the next iteration: a stage to recover, or a lost replica still named. */
  needsRound (): boolean { return this.recovery.needsRound() }

  /**
   * Between iterations: recovers what was lost (stages, replicas), lists joining replicas that
   * caught up as serving, and starts joins of spares into stages below the replica target (they
   * catch up while training goes on). run() calls it before every iteration.
   */
  async reconcile (opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<RecoveryEvent[]> {
    const recovered = this.recovery.needsRound() ? await this.recover(opts) : []
    await this.recovery.settleJoins(opts.signal)
    if (this.recovery.canGrow()) await this.recovery.grow(opts.signal)
    return recovered
  }

  /** The newest heartbeat of `peerId`, if any. */
  heartbeatOf (peerId: string): Heartbeat | undefined { return this.peers.get(peerId)?.heartbeat }

  /** The detector no longer counts `peerId` as lost. */
  forgetLoss (peerId: string): void { this.detector.forget(peerId) }

  protected onMessage (msg: Message, from: string): void {
    if (msg.kind === 'heartbeat') this.onHeartbeat(msg)
    else if (msg.kind === 'done') this.onDone(msg)
    else if (msg.kind === 'stream-break') this.onStreamBreak(msg, from)
    else if (msg.kind === 'recovery-done') this.recovery.onRecoveryDone(msg, from)
    else if (msg.kind === 'recovery-failed') this.recovery.onRecoveryFailed(msg, from)
    this.emit('change')
  }

  /**
   * A neighbour's stream to `suspect` broke: believed only from an assigned reporter, about an
   * assigned peer. A report made under an earlier epoch about a peer that holds no stage any more is
   * about a pipeline already replaced (a neighbour's stream to a lost peer breaks while its recovery
   * runs): expected, and dropped quietly.
   */
  protected onStreamBreak (m: StreamBreakReport, from: string): void {
    const assigned = this.assignedPeers()
    if (from === m.reporter && m.epoch < this.epoch && !assigned.includes(m.suspect)) {
      log('stream-break report from %s about %s under epoch %d dropped: the cluster is at epoch %d, without it', from, m.suspect, m.epoch, this.epoch)
      return
    }
    if (from !== m.reporter || !assigned.includes(from) || !assigned.includes(m.suspect)) {
      log.error('stream-break report from %s about %s ignored: the reporter must be the sender and both must hold stages', from, m.suspect)
      return
    }
    this.emit('stream-break', m, from)
    void this.detector.confirm(m.suspect, `neighbour reported: ${m.reason}`)
  }

  protected onHeartbeat (hb: Heartbeat): void {
    this.detector?.heartbeat(hb.peerId)
    this.peers.set(hb.peerId, { heartbeat: hb, seenAt: Date.now() })
    // Peers never run ahead of the coordinator's epoch; if they do, it lost its state (see behind()).
    // (Checked once start() has loaded the state: the detector is made after that.)
    if (this.detector != null && hb.epoch > this.epoch && (hb.role === 'stage' || hb.role === 'spare')) this.behind(hb)
    // A peer declared lost that speaks again (it was only slow) can serve as a spare; an assigned
    // one is the recovery machine's to judge (back on its stage, or a spare with fresh state).
    if (this.detector?.lost.has(hb.peerId) === true && !this.assignedPeers().includes(hb.peerId)) this.detector.forget(hb.peerId)
    if (hb.departing) this.recovery.peerDeparting(hb.peerId)
    this.recovery.onHeartbeat(hb)
  }

  protected onDone (d: DoneReport): void {
    if (d.epoch !== this.epoch || d.iteration !== this.iteration) return
    const expected = this.assignment?.stages[d.stage]?.peers
    if (expected == null || !expected.includes(d.peerId)) {
      log.error('done report from %s for stage %d, which it does not hold', d.peerId, d.stage)
      return
    }
    this.reports.set(d.peerId, d)
  }

  /** Resolves when `check` returns true, re-checking on every message; rejects on timeout or abort. */
  async until (check: () => boolean, what: string, timeoutMs: number, signal?: AbortSignal, onTick?: () => void): Promise<void> {
    await waitUntil(this, () => this.behindError != null || check(), what, timeoutMs, signal, onTick)
    if (this.behindError != null) throw this.behindError
  }

  /** Set when peers heartbeat under an epoch this coordinator never reached: every wait fails with it. */
  private behindError?: CoordinatorUsageError

  /**
   * A peer is at an epoch above this coordinator's. Epochs are persisted before they are published,
   * so this coordinator lost (or never had) the state of the run those peers are in: waiting for
   * them to take its lower epochs would wait forever, so it stops with one line saying why.
   */
  private behind (hb: Heartbeat): void {
    if (this.behindError != null) return
    const dir = this.init.stateDir
    const why = dir == null
      ? 'it was started without the state directory of their run'
      : this.epoch > 0 ? `the state in ${dir} is older than the run they are in` : `its state directory ${dir} is fresh`
    this.behindError = new CoordinatorUsageError(`peer ${hb.peerId} heartbeats under epoch ${hb.epoch}, beyond this coordinator's epoch ${this.epoch}: ${why}; restart it with that run's state directory, or restart the peers to begin a new run`)
    this.emit('change')
  }

  /** Peers alive (heard within `windowMs`) and subscribed to the control topic. */
  livePeers (windowMs = 3000): string[] {
    const subs = new Set(this.gossip.controlSubscribers())
    const now = Date.now()
    return [...this.peers.entries()].filter(([id, v]) => now - v.seenAt <= windowMs && subs.has(id) && !v.heartbeat.departing && !this.detector.lost.has(id) && !this.recovery.isDeparting(id)).map(([id]) => id)
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
    if (this.restored != null && this.restored.committedIteration >= 0) {
      // fresh peers would start from the seeded weights while the iteration clock says otherwise
      throw new CoordinatorUsageError(`the state directory holds run ${this.restored.runId} with ${this.restored.committedIteration + 1} committed iterations: resume() it (or use a new state directory), do not assign from scratch`)
    }
    const S = this.train.stages
    const min = this.minReplicas
    await this.until(() => this.livePeers().length >= S * min, `${S * min} peers (${S} stages x ${min} replicas)`, opts.timeoutMs ?? 60_000, opts.signal)
    // as many whole lanes as the live peers make, up to the target; later peers join as replicas
    const R = Math.min(this.replicas, Math.floor(this.livePeers().length / S))
    const chosen = this.livePeers().sort().slice(0, S * R)
    try {
      // lane r (replica r of every stage, one pipeline) is chosen[r*S .. r*S + S-1]
      return await this.assign(Array.from({ length: S }, (_, s) => Array.from({ length: R }, (_, r) => chosen[r * S + s])), opts)
    } catch (err) {
      // a peer lost while taking its stage is recovered by run() like any other loss
      if (!(err instanceof StageLostError)) throw err
      log.info(`${err.message}; it will be recovered`)
      return this.assignment as Assignment
    }
  }

  /**
   * Publishes `plans` and a new assignment (stage s -> peers[s]) under epoch + 1, persisted first so
   * a restarted coordinator never reuses the epoch. `joins` are replica copies: their targets join a
   * stage whose other replicas keep theirs. Returns without waiting for the stages.
   */
  async publishAssignment (peers: string[][], plans: StagePlan[], joins: StagePlan[] = [], joining: string[] = joins.map(j => j.target)): Promise<Assignment> {
    const stages = await Promise.all(peers.map(async (ps, stage) => ({ stage, peers: ps, addrs: await Promise.all(ps.map(async p => await this.addressOf(p))) })))
    this.epoch += 1
    // Durable before it is published, so a restarted coordinator never reuses an epoch a peer may
    // have seen. (The state keeps the last assignment the stages took until this one is taken.)
    await this.persist()
    const a: Assignment = {
      kind: 'assignment',
      clusterId: this.init.clusterId,
      runId: this.runId,
      epoch: this.epoch,
      iteration: this.iteration,
      stages,
      modelConfig: JSON.stringify(this.model),
      // lr: reduced after a divergence rollback (divergence.ts)
      trainingConfig: JSON.stringify({ ...this.train, lr: this.divergence.lr, ...this.clusterOptions() }),
      rebuilt: plans.map(p => p.stage),
      ...(joining.length > 0 ? { joining: [...joining] } : {})
    }
    this.assignment = a
    this.checkpoints.assignmentChanged(a)
    const planMsgs = await recoveryPlanMessages(a.epoch, [...plans, ...joins], async peerId => await this.addressOf(peerId).catch(() => ''))
    this.announcing = [...planMsgs, a]
    for (const m of this.announcing) await this.gossip.publish(m)
    log.info(`epoch ${a.epoch}: ${a.stages.map(s => `stage ${s.stage} -> ${s.peers.map(p => p.slice(-6)).join(',') || '(none)'}`).join('; ')}`)
    this.emit('epoch', { epoch: a.epoch, iteration: a.iteration, stages: a.stages.map(s => s.peers[0] ?? ''), rebuilt: a.rebuilt })
    return a
  }

  /** The newest assignment and its plans, re-published while stages may not have heard them. */
  private announcing: Message[] = []
  private announceTicks = 0

  /** Re-publishes the newest assignment and its plans about once a second (a gossip message may be lost). */
  reannounce (): void {
    if (++this.announceTicks % 4 !== 0) return
    const msgs = this.announcing
    void (async () => { for (const m of msgs) await this.gossip.publish(m) })().catch((err: Error) => { log('re-announcing epoch %d failed: %s', this.epoch, err.message) })
  }

  /** Whether every stage of `a` heartbeats that it holds its stage under `a`'s epoch. */
  taken (a: Assignment): boolean {
    return a.stages.every(s => s.peers.every(p => {
      const hb = this.peers.get(p)?.heartbeat
      return hb != null && hb.epoch === a.epoch && hb.stage === s.stage
    }))
  }

  /**
   * Publishes a new assignment without recovery plans (the first one, or a resume) and waits for the
   * stages to take it. A peer that does not within `timeoutMs` is marked lost (StageLostError): the
   * run recovers it like any other loss.
   */
  async assign (peers: string[][], opts: { timeoutMs?: number, signal?: AbortSignal } = {}): Promise<Assignment> {
    const a = await this.publishAssignment(peers, [])
    const timeoutMs = opts.timeoutMs ?? 120_000
    try {
      await this.until(() => this.taken(a) || this.recovery.needsRound(), `stages to acknowledge epoch ${a.epoch}`, timeoutMs, opts.signal, () => { this.reannounce() })
    } catch (err) {
      if (!(err instanceof CoordinatorTimeoutError)) throw err
      for (const s of a.stages) {
        for (const p of s.peers) if (this.peers.get(p)?.heartbeat.epoch !== a.epoch) this.detector.markLost(p, `did not take epoch ${a.epoch} within ${timeoutMs} ms`)
      }
    }
    if (!this.taken(a)) throw new StageLostError(this.failedStages(), `stage lost while epoch ${a.epoch} was being taken`)
    this.recovery.stagesReady()
    await this.persist()
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
    const expected = a.stages.reduce((n, s) => n + s.peers.length, 0)
    await this.gossip.publish(begin)
    this.emit('begin', { epoch: this.epoch, iteration: it })
    let lastProgress = Date.now()
    let seen = 0
    const timeoutMs = opts.timeoutMs ?? 120_000
    try {
      // a non-finite report ends the iteration at once: the stages downstream of it wait for nothing
      await this.until(() => this.reports.size === expected || this.recovery.needsRound() || nonFiniteReport(this.reports.values()) != null, `done reports for iteration ${it}`, timeoutMs, opts.signal, () => {
        if (this.reports.size !== seen) { seen = this.reports.size; lastProgress = Date.now() }
        if (Date.now() - lastProgress > (this.init.resendMs ?? 5000)) {
          lastProgress = Date.now()
          log('re-sending begin %d', it)
          void this.gossip.publish(begin).catch(() => {})
        }
      })
    } catch (err) {
      if (!(err instanceof CoordinatorTimeoutError)) throw err
      // A stage that heartbeats but never reports is stuck: recover it like a lost one.
      for (const st of a.stages) {
        for (const p of st.peers) if (!this.reports.has(p)) this.detector.markLost(p, `no done report for iteration ${it} within ${timeoutMs} ms`)
      }
    }
    const nonFinite = nonFiniteReport(this.reports.values())
    // replicas that no longer match their stage's others are dropped and the iteration redone without them
    const drifted = nonFinite == null && this.reports.size === expected ? this.recovery.checkDigests(a, this.reports) : []
    if (nonFinite == null && (this.reports.size !== expected || drifted.length > 0)) {
      // redone after the recovery (a lost replica: by its stage's survivors, on the same microbatches)
      const what = this.recovery.describeLosses()
      await this.gossip.publish({ kind: 'abort', epoch: this.epoch, iteration: it, reason: what }).catch(() => {})
      throw new StageLostError(this.failedStages(), `iteration ${it} aborted: ${what}`)
    }
    const ms = performance.now() - t0
    const rec: IterationRecord = {
      iteration: it,
      epoch: this.epoch,
      loss: nonFinite == null ? this.iterationLoss(a) : NaN,
      // the replicas of a stage step on the same summed gradient: their norms are equal
      gradNorms: a.stages.map(s => this.reports.get(s.peers[0])?.gradNorm ?? NaN),
      allReduceMs: a.stages.map(s => Math.max(0, ...s.peers.map(p => this.reports.get(p)?.allReduceMs ?? 0))),
      computeMs: a.stages.map(s => Math.max(0, ...s.peers.map(p => this.reports.get(p)?.computeMs ?? 0))),
      ms,
      tokensPerSec: this.train.microbatches * this.train.microbatchSize * this.model.seqLen / (ms / 1000),
      ...(nonFinite != null ? { skipped: { stage: nonFinite.stage, what: nonFinite.nonFiniteWhat ?? '' } } : {})
    }
    this.iteration = it + 1
    if (nonFinite == null) {
      this.gradNorms = rec.gradNorms
      this.history.push(rec)
    }
    // Durable before it is announced: a restarted coordinator never forgets a commit peers applied.
    await this.persist()
    // Recorded as soon as it is durable, before it is announced: a coordinator killed between the two
    // resumes after this iteration, so its events must already say it was committed (the chaos suite
    // saw a coordinator SIGKILLed there resume at 226 with no 'iteration' event for 225)
    let diverged: DivergenceEvent | undefined
    if (nonFinite == null) {
      this.divergence.committed()
      this.emit('iteration', rec)
    } else {
      diverged = this.divergence.skipped(it, nonFinite)
    }
    // the newest complete checkpoint at or below this commit (after a rollback a newer one may be listed)
    const checkpoint = this.store?.list().find(c => c.complete && c.iteration <= it)?.iteration
    const snapshot = this.checkpoints.due(it)
    await this.gossip.publish({ kind: 'commit', epoch: this.epoch, iteration: it, ...(checkpoint !== undefined ? { checkpoint } : {}), ...(nonFinite != null ? { skipped: true } : {}), ...(snapshot ? { snapshot: true } : {}) })
    this.checkpoints.afterCommit(it, snapshot)
    if (nonFinite == null && keepsShadows(this.strategy)) await this.awaitShadows(a, it, opts.signal)
    const resumed = this.recovery.resumed()
    if (resumed.length > 0) this.emit('recovered', resumed)
    // skipped: no 'iteration' event (nothing was trained) but a 'divergence' one (above); may roll back or throw
    if (diverged != null) await this.divergence.act(diverged, opts)
    return rec
  }

  /**
   * The iteration's mean microbatch loss: the head stage's replicas each report the mean over their
   * share of the microbatches, weighted here by that share (model/schedule.ts replicaMicrobatches).
   */
  private iterationLoss (a: Assignment): number {
    const M = this.train.microbatches
    if (this.plusLayout === 'paper') {
      // swapped microbatches end on stage S-2 (its copy of the head): each head weighted by its microbatches (one replica per stage)
      let sum = 0
      for (const [s, n] of lossMicrobatchesByStage(a.stages.length, M, this.checkfreePlus, this.plusLayout)) {
        const loss = this.reports.get(servingPeers(a, s)[0])?.loss
        if (loss == null) return NaN
        sum += loss * n
      }
      return sum / M
    }
    // joining replicas run no microbatch (protocols/assignment.ts)
    const head = servingPeers(a, a.stages.length - 1)
    if (head.length === 1) return this.reports.get(head[0])?.loss ?? NaN
    const lanes = laneCount(a.stages.map(s => servingPeers(a, s.stage).length), M)
    let sum = 0
    for (const [i, p] of head.entries()) {
      const loss = this.reports.get(p)?.loss
      if (loss == null) return NaN
      sum += loss * replicaMicrobatches(M, lanes, head.length, i).length
    }
    return sum / M
  }

  /**
   * Redundant strategy: iteration `it` is not done until every shadow holds it. The shadow holders
   * pull it as they apply the commit, but the next iteration began at once, and a stage lost right
   * after a commit found its shadow a commit old: not an exact copy, so the ladder fell to the
   * checkpoint rung (the churn demo crashes stages at iteration start, and `redundant` recovered by
   * checkpoint every time). Waiting for their heartbeats costs a pull per iteration, which is the
   * strategy's price. A shadow that misses it within shadowWaitMs is named and not waited for again
   * until it catches up; a loss of its stage falls to the next rung.
   */
  private async awaitShadows (a: Assignment, it: number, signal?: AbortSignal): Promise<void> {
    if (a.stages.length < 2) return
    const behind = (): number[] => shadowsBehind(a, it, id => this.heartbeatOf(id)).filter(s => !this.shadowsLagging.has(s))
    for (const s of [...this.shadowsLagging]) if (!shadowsBehind(a, it - 1, id => this.heartbeatOf(id)).includes(s)) this.shadowsLagging.delete(s)
    const waitMs = this.init.shadowWaitMs ?? 5000
    try {
      await this.until(() => behind().length === 0 || this.failedStages().length > 0 || this.epoch !== a.epoch, `the shadows to hold iteration ${it}`, waitMs, signal)
    } catch (err) {
      if (!(err instanceof CoordinatorTimeoutError)) throw err
      const late = behind()
      for (const s of late) this.shadowsLagging.add(s)
      log.info(`the shadows of stages ${late.join(', ')} do not hold iteration ${it} after ${waitMs} ms: a loss of those stages falls to the next rung until they catch up`)
    }
  }

  get checkpointEvery (): number { return this.init.checkpointEvery ?? (this.init.stateDir != null ? 50 : 0) }

  /** Called by the sparse checkpoints when one is written or abandoned: emitted as `checkpoint`. */
  checkpointDone (e: CheckpointEvent): void { this.emit('checkpoint', e) }

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

  /** Every stage reloads checkpoint `checkpointId` on its own peer (a divergence rollback), as recorded recoveries. */
  async reloadAll (checkpointId: string, cause: string, signal?: AbortSignal): Promise<RecoveryEvent[]> {
    return await this.recovery.reloadAll(checkpointId, cause, signal)
  }

  /** Waits for background checkpoint writes to finish. */
  async flushCheckpoints (): Promise<void> { await this.checkpoints.flush() }

  /** Cluster-wide options that ride in the assignment's training config (see node/peer.ts). */
  protected clusterOptions (): Record<string, unknown> {
    return {
      strategy: this.strategy,
      checkfreePlus: this.checkfreePlus,
      plusLayout: this.plusLayout,
      mirrorEvery: this.init.mirrorEvery ?? 10,
      // the replica target, for observers (status, top: which stages are one loss from a whole-stage failure)
      replicas: this.replicas,
      shadow: this.strategy === 'redundant',
      // Bamboo-style: the shadow is trained alongside by redundant computation, never pulled after a commit
      shadowCompute: this.strategy === 'redundant-compute',
      data: this.init.data ?? DEFAULT_DATA_IDENTITY
    }
  }

  /**
   * Recovers every failed stage: picks rungs, waits for spares if needed, publishes the plans and a
   * new assignment under the next epoch, and waits until the rebuilt stages are taken.
   */
  async recover (opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<RecoveryEvent[]> {
    return await this.recovery.recover(opts)
  }

  /**
   * After a restart: wait for the peers of the restored assignment to come back (they keep their
   * state while the coordinator is away), then re-announce it under a new epoch. Peers that do not
   * return within `graceMs` are treated as lost and recovered.
   */
  async resume (opts: { graceMs?: number, signal?: AbortSignal } = {}): Promise<void> {
    const a = this.assignment
    if (a == null) throw new CoordinatorTimeoutError('nothing to resume')
    // a peer that was still joining holds no state worth resuming: it comes back as a spare (and may join again)
    const peers = a.stages.map(s => s.peers.filter(p => !(a.joining ?? []).includes(p)))
    const all = peers.flat()
    const graceMs = opts.graceMs ?? 15_000
    const back = (): boolean => all.every(p => this.livePeers().includes(p))
    const t0 = performance.now()
    for (const half of [1, 2]) {
      try {
        await this.until(back, 'the assigned peers to reconnect', graceMs / 2, opts.signal)
        break
      } catch (err) {
        if (!(err instanceof CoordinatorTimeoutError)) throw err
      }
      if (half === 2) break
      // Connected but unheard: the connection may carry stale pub/sub state from before the restart
      // (the same peer ids on both sides). Reset it; the peer re-dials within a second.
      for (const p of all) {
        const id = peerIdFromString(p)
        if (this.livePeers().includes(p) || this.node.getConnections(id).length === 0) continue
        log.info(`peer ${p.slice(-8)} is connected but not heard since the restart: resetting its connection`)
        await this.node.hangUp(id).catch((err: Error) => { log.error('hang-up of %s failed: %s', p, err.message) })
      }
    }
    // The grace is the coordinator's running time: a pause of its own while it waited (SIGSTOP, a
    // starved VM) is no silence of the peers. (The chaos suite paused a restarted coordinator 13 s
    // into its 15 s grace; it woke, found the grace over, and sent all four stages to the checkpoint rung.)
    for (let credited = 0; !back();) {
      const owed = this.detector.pausedMsSince(t0) - credited
      if (owed <= 0) break
      credited += owed
      log.info(`paused for ${Math.round(owed)} ms while waiting for the assigned peers: waiting that much longer`)
      await this.until(back, 'the assigned peers to reconnect', owed, opts.signal).catch((err: unknown) => { if (!(err instanceof CoordinatorTimeoutError)) throw err })
    }
    const live = new Set(this.livePeers())
    for (const p of all) if (!live.has(p)) this.detector.markLost(p, 'did not return after the coordinator restarted')
    if (all.every(p => live.has(p))) {
      try {
        await this.assign(peers, opts)
        log.info(`resumed at iteration ${this.iteration} under epoch ${this.epoch}`)
      } catch (err) {
        // a peer that came back restarted (it reports no state for its stage) or was lost while
        // taking the epoch: that stage is lost, and run() recovers it like any other (this used to
        // end the restarted coordinator, and every restart after it, with ERR_STAGE_LOST)
        if (!(err instanceof StageLostError)) throw err
        log.info(`resuming: ${err.message}; stages ${this.failedStages().join(', ')} will be recovered`)
      }
    }
  }

  /** Runs `iterations` more iterations, recovering from failures along the way. */
  async run (iterations: number, opts: { signal?: AbortSignal, onIteration?: (r: IterationRecord) => void } = {}): Promise<void> {
    const target = this.iteration + iterations
    while (this.iteration < target) {
      opts.signal?.throwIfAborted()
      try {
        await this.reconcile(opts)
        const r = await this.runIteration(opts)
        opts.onIteration?.(r)
      } catch (err) {
        if (err instanceof StageLostError) { log.info(err.message); continue }
        if (opts.signal?.aborted === true || !(err instanceof CoordinatorTimeoutError)) throw err
        // a wait that timed out (no spare, a stage that never acknowledged) is retried, never fatal
        log.error('%s; retrying', err.message)
      }
    }
  }

  async stop (): Promise<void> {
    await this.checkpoints.flush().catch(() => {})
    await this.weightsServer?.stop().catch(() => {})
    this.detector?.stop()
    this.gossip?.stop()
    await this.node?.stop()
    this.emit('stopped')
  }
}

/**
 * A spotpipe peer: one libp2p node that joins a cluster, gossips a heartbeat every second, holds the
 * stage the coordinator assigns it, and exchanges activations and gradients with its neighbours.
 *
 * Trust: control messages (assignment, begin, abort, commit, recovery plans) are acted on only when
 * gossipsub's strict signature says they come from the coordinator peer id this peer was given.
 * Epochs: every assignment carries an epoch; frames and control from older epochs are dropped.
 */
import { EventEmitter } from 'node:events'
import { multiaddr } from '@multiformats/multiaddr'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { laneCount, PLUS_LAYOUTS, replicaMicrobatches, resolveModelConfig, resolveTrainConfig, servingReplica, sharedPart, stageDigest, type ModelConfig, type PlusLayout, type TrainConfig } from '../model/index.js'
import { loadBrownCorpus, type TokenArray } from '../model/index.js'
import { createLog } from '../common/index.js'
import { stageLayout } from '../model/index.js'
import type { TensorSet } from '../model/index.js'
import { Stage } from '../model/index.js'
import type { Assignment, DataIdentity, Heartbeat, Message, RecoveryPlan, Role, TensorFrameHeader } from '../protocols/index.js'
import { DEFAULT_DATA_IDENTITY, servingPeers } from '../protocols/index.js'
import { ActivationLinks, activationPolicy, type ActivationPolicy } from './activations.js'
import type { NonFiniteFaults, PerturbFaults } from './faults.js'
import { HeldCopies, type RefreshContext } from './held-copies.js'
import { AssignmentError, DataMismatchError, DataRequiredError, NeighbourLostError, NoStageStateError, UnexpectedFrameError } from './errors.js'
import { SpotpipeError } from '../common/index.js'
import { rebuildStage, type WeightsRequestSpec } from './recovery.js'
import { fetchWeights, serveWeights, type WeightsFaults, type WeightsProvider, type WeightsServer } from '../net/index.js'
import { ClusterGossip, startAllReduce, type AllReduceService } from '../net/index.js'
import { CoordinatorLink } from './coordinator-link.js'
import { ReplicaJoin } from './replica-join.js'
import { StageRuntime, stageNeedsTokens, type DoneInfo, type OutFrame, type SharedPartLink } from './stage-runtime.js'
import { createPeerLibp2p, type PeerLibp2p } from '../net/index.js'

const log = createLog('peer')

export interface PeerInit {
  /** Cluster name; selects the gossip topics. */
  clusterId: string
  /** Peer id of the coordinator: the only signer whose control messages are obeyed. */
  coordinatorId: string
  /** Multiaddrs of the coordinator to dial at start. */
  coordinatorAddrs: string[]
  /** Identity; without it the peer id is fresh on every start. */
  privateKey?: PrivateKey
  /** The cluster secret (swarm-key file contents); nodes without it cannot connect. Absent: an open peer. */
  swarmKey?: Uint8Array
  /** @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** @default 'tcp' */
  transport?: 'tcp' | 'memory'
  /** Heartbeat period in ms. @default 1000 */
  heartbeatMs?: number
  /**
   * How long start() keeps dialling an unreachable coordinator (a peer booted before its
   * coordinator, or started while it restarts), with backoff from 0.5 s to 8 s between attempts;
   * 0 tries once. A handshake refused for another cluster secret is retried too (it cannot be told
   * from one cut off by a restarting coordinator); the log line names the swarm key at once.
   * @default 60000
   */
  joinTimeoutMs?: number
  /**
   * Training tokens and the identity of the data they came from (`data`); default: the Brown
   * corpus train split with byte tokens. Only stage 0 and the head's stage read them.
   */
  trainTokens?: TokenArray
  data?: DataIdentity
  /**
   * Faults injected on purpose, for fault-injection tests and the chaos suite only (never in a
   * real run): the weights server corrupting one chunk of every transfer, non-finite steps, a
   * replica's weights drifting (node/faults.ts).
   */
  faults?: { weights?: WeightsFaults, nonFinite?: NonFiniteFaults, perturb?: PerturbFaults }
}

/** Cluster-wide options that ride in the assignment's training config. */
export interface ClusterOptions {
  checkfreePlus: boolean
  /** Where CheckFree+'s swapped microbatches embed and run the head (model/schedule.ts). */
  plusLayout: PlusLayout
  /** CheckFree+ mirrors (embedding on stage 1, head on stage S-2) are refreshed every N iterations. */
  mirrorEvery: number
  /** Keep a shadow copy of the successor stage, refreshed every iteration (redundant strategy). */
  shadow: boolean
  /** Train a shadow of the successor by redundant computation (strategy redundant-compute). */
  shadowCompute: boolean
}

interface Current {
  assignment: Assignment
  model: ModelConfig
  train: TrainConfig
  checkfreePlus: boolean
  options: ClusterOptions
  stage?: Stage
  runtime?: StageRuntime
  /** Stage -> the peers that serve its microbatches (id and address), in the assignment's order (joiners left out). */
  peers: Map<number, Array<{ id: string, addr?: string }>>
  /** The iteration's lanes (model/schedule.ts laneCount): microbatch m runs on servingReplica(m, lanes, n) of a stage with n replicas. */
  lanes: number
  /** The microbatches this peer's replica runs (ascending); empty without a stage. */
  microbatches: number[]
  /** The peers holding this peer's stage, itself included (and joiners), in the assignment's order: the all-reduce group. */
  replicas: string[]
  /** This peer is joining its stage beside replicas that keep training (node/replica-join.ts). */
  join?: ReplicaJoin
  /** Cuts off the join's pull when the assignment is replaced. */
  joinPull?: AbortController
  /** What the join's pull moved (for its recovery-done report). */
  joinStats?: { bytes: number, transferMs: number }
  /** The join failed and was reported; the placeholder only adds zeros until the peer is dropped. */
  joinFailed?: boolean
}

/**
 * Emitted as 'stage' whenever the peer installs a stage: where its state came from. `seed` is the
 * seeded initial weights (only ever at iteration 0 or by a recovery plan saying so), `kept` the
 * stage it already held, `rebuilt` a recovery plan's result.
 */
export interface StageEvent {
  stage: number
  epoch: number
  /** The next iteration to run under that epoch. */
  iteration: number
  source: 'seed' | 'kept' | 'rebuilt'
  rung?: string
}

/** Emitted as 'recovery-failed' when this peer could not carry out a recovery plan. */
export interface RebuildFailure { stage: number, epoch: number, rung: string, code: string, reason: string }

/** Emitted as 'done' when this peer's stage finished its part of an iteration (what it reports to the coordinator). */
export interface PeerDoneEvent extends DoneInfo { stage: number, epoch: number }

/**
 * Running totals of what a peer moved and published, kept as plain numbers (node/metrics.ts reads
 * them when scraped). Activation bytes are frame payloads; weights bytes received are every pull
 * (rebuilds, joins, mirrors, shadows).
 */
export interface PeerTotals {
  activationBytesSent: number
  activationBytesReceived: number
  weightsBytesReceived: number
  heartbeatsPublished: number
  heartbeatsFailed: number
}

export class Peer extends EventEmitter {
  readonly init: PeerInit
  node!: PeerLibp2p
  gossip!: ClusterGossip
  links!: ActivationLinks
  private current?: Current
  private heartbeatTimer?: NodeJS.Timeout
  private departing = false
  /** Set once the coordinator's data was refused ('fatal' emitted); nothing more is acted on. */
  private refused = false
  private lastDone?: DoneInfo
  /** The iteration whose commit asked for a checkpoint snapshot (Commit.snapshot). */
  private snapshotDue?: number
  private readonly startedAt = performance.now()
  /** Number of frames dropped because they came from an older epoch. */
  staleFrames = 0
  readonly totals: PeerTotals = { activationBytesSent: 0, activationBytesReceived: 0, weightsBytesReceived: 0, heartbeatsPublished: 0, heartbeatsFailed: 0 }
  /** A dialable address of every peer named in an assignment so far. */
  private readonly addrs = new Map<string, string>()
  /** Recovery plans addressed to this peer, by `${epoch}:${stage}`. */
  private readonly plans = new Map<string, RecoveryPlan>()
  /** An assignment that waits for its recovery plan (this peer rebuilds a stage). */
  private awaitingPlan?: Assignment
  /** Checkpoint snapshot, mirror, shadow and retiring stage: what this peer serves besides its stage. */
  private readonly held = new HeldCopies()
  private weightsServer?: WeightsServer
  /** The successor of this departing peer's old stage reported recovery-done. */
  private handedOver = false
  /** Departing: recoveries (`epoch:stage`) that name this peer as a donor and have not reported done. */
  private readonly owedDonations = new Set<string>()
  private coordinator?: CoordinatorLink
  /** Adds the gradient sums of a stage's replicas before their step (net/allreduce). */
  private allReduce?: AllReduceService

  constructor (init: PeerInit) {
    super()
    this.init = init
  }

  get peerId (): string { return this.node.peerId.toString() }
  get epoch (): number { return this.current?.assignment.epoch ?? 0 }
  get stageIndex (): number { return this.current?.stage?.stage ?? -1 }
  get stage (): Stage | undefined { return this.current?.stage }
  get runtime (): StageRuntime | undefined { return this.current?.runtime }
  /** Whether this peer announced its departure (spot notice, SIGTERM). */
  get isDeparting (): boolean { return this.departing }
  /** Chunk payload bytes this peer's weights server has sent to pullers. */
  get weightsBytesSent (): number { return this.weightsServer?.stats.bytes ?? 0 }
  /** Activation frames and streams refused by the admission policy (net/activations). */
  get framesRejected (): number { return this.links?.rejected ?? 0 }

  /**
   * The tokens this peer trains on: `init.trainTokens`, else the Brown corpus's train split, loaded
   * by start() before the peer joins. Not when a stage is installed: a spare given a stage mid-run
   * then tokenized the corpus (0.4 to 0.8 s on a loaded 2-core host) between its rebuild and its
   * claim of the stage, inside every recovery (bench:costmodel's timeline showed 0.75 s there).
   */
  get trainTokens (): TokenArray | undefined { return this.tokens }
  private tokens?: TokenArray
  private loadTokens (): TokenArray { return (this.tokens ??= this.init.trainTokens ?? loadBrownCorpus().train) }

  async start (): Promise<void> {
    this.loadTokens()
    this.node = await createPeerLibp2p({ privateKey: this.init.privateKey, swarmKey: this.init.swarmKey, listen: this.init.listen, transport: this.init.transport })
    this.gossip = new ClusterGossip(this.node, { clusterId: this.init.clusterId, coordinatorId: this.init.coordinatorId, onMessage: (m) => { this.onMessage(m) } })
    this.gossip.start()
    // Activations only from the peers that feed this stage under the current epoch, no frame larger
    // than the model's (computed once per assignment).
    let admission: { of?: Current, policy?: ActivationPolicy } = {}
    this.links = new ActivationLinks(this.node, {
      policy: () => {
        const c = this.current
        if (c?.stage == null) return undefined
        if (admission.of !== c) {
          admission = { of: c, policy: activationPolicy({ self: this.peerId, stage: c.stage.stage, microbatches: c.microbatches, holderOf: (s, mb) => holderFor(c, s, mb)?.id, stages: c.train.stages, checkfreePlus: c.checkfreePlus, plusLayout: c.options.plusLayout, shadowCompute: c.options.shadowCompute, shape: [c.train.microbatchSize, c.model.seqLen, c.model.dModel] }) }
        }
        return admission.policy
      },
      onFrame: (h, d, from) => { this.onFrame(h, d, from) },
      onReject: (err, from) => { log('frame from %s rejected: %s', from, err.message) }
    })
    await this.links.start()
    this.weightsServer = await serveWeights(this.node, this.provider, this.init.faults?.weights != null ? { faults: this.init.faults.weights } : undefined)
    this.allReduce = await startAllReduce(this.node)
    this.coordinator = new CoordinatorLink(this.node, { coordinatorId: this.init.coordinatorId, coordinatorAddrs: this.init.coordinatorAddrs, joinTimeoutMs: this.init.joinTimeoutMs })
    try {
      await this.coordinator.join()
    } catch (err) {
      await this.stop().catch((e: unknown) => { log.info(`stopping after a failed join: ${(e as Error).message}`) })
      throw err
    }
    this.heartbeatTimer = setInterval(() => { void this.heartbeat() }, this.init.heartbeatMs ?? 1000)
    this.heartbeatTimer.unref()
    this.coordinator.keepConnected()
    void this.heartbeat()
    log.info(`peer ${this.peerId} listening on ${this.node.getMultiaddrs().map(String).join(', ')}`)
  }

  /** What this peer serves over the weights protocol: its stage, its checkpoint snapshot, its mirror or shadow. */
  // (a joiner's placeholder weights are nobody's to copy)
  readonly provider: WeightsProvider = this.held.provider(() => this.current?.join?.done === false ? undefined : this.current?.stage)

  /** Pulls weights from peers named in an assignment (or the coordinator); several donors split the tensors. */
  async fetch (peerIds: string | string[], req: WeightsRequestSpec, signal?: AbortSignal): Promise<{ iteration: number, tensors: TensorSet, bytes: number }> {
    const donors = (typeof peerIds === 'string' ? [peerIds] : peerIds).map(id => {
      const addr = this.addrs.get(id)
      return { peer: addr != null && addr !== '' ? multiaddr(addr) : peerIdFromString(id) }
    })
    const r = await fetchWeights(this.node, { donors, stage: req.stage, minIteration: req.minIteration, includeOptimizer: req.includeOptimizer, names: req.names, signal, timeoutMs: 120_000 })
    this.totals.weightsBytesReceived += r.bytes
    return { iteration: r.iteration, tensors: r.tensors, bytes: r.bytes }
  }

  /** Heartbeat content; the weight digest (of the state at stateIteration) only with replicas. */
  private heartbeatMessage (): Heartbeat {
    const c = this.current
    const role: Role = c?.stage != null ? 'stage' : 'spare'
    // While rebuilding, the peer does not claim the stage: the coordinator waits for the claim.
    const secs = (performance.now() - this.startedAt) / 1000
    return {
      kind: 'heartbeat',
      peerId: this.peerId,
      role,
      stage: c?.stage?.stage ?? -1,
      iteration: Math.max(0, this.lastDone?.iteration ?? 0),
      ...(this.lastDone?.loss != null ? { loss: this.lastDone.loss } : {}),
      gradNorm: c?.stage?.lastGradNorm ?? 0,
      weightDigest: this.digestOf(c) ?? '',
      tokensPerSec: (c?.runtime?.tokensProcessed ?? 0) / Math.max(secs, 1e-3),
      rssBytes: process.memoryUsage().rss,
      epoch: this.epoch,
      timestampMs: Date.now(),
      departing: this.departing,
      // a joiner still catching up holds no state anyone may count on
      stateIteration: c?.join?.done === false ? -1 : c?.stage?.iteration ?? -1,
      held: this.held.list()
    }
  }

  private lastBeat = 0

  private async heartbeat (): Promise<void> {
    this.lastBeat = Date.now()
    try {
      await this.gossip.publish(this.heartbeatMessage())
      this.totals.heartbeatsPublished += 1
    } catch (err) {
      this.totals.heartbeatsFailed += 1
      log('heartbeat not published: %s', (err as Error).message)
    }
  }

  private onMessage (msg: Message): void {
    if (this.refused) return
    try {
      switch (msg.kind) {
        case 'assignment': this.onAssignment(msg); break
        case 'begin':
          if (msg.epoch === this.epoch) this.current?.runtime?.begin(msg.iteration)
          break
        case 'commit':
          if (msg.epoch === this.epoch) {
            this.snapshotDue = msg.snapshot === true ? msg.iteration : undefined
            this.current?.runtime?.commit(msg.iteration, msg.skipped === true)
          }
          break
        case 'abort':
          if (msg.epoch <= this.epoch) this.current?.runtime?.abort(msg.iteration)
          break
        case 'recovery-done':
          if (this.held.retiring != null && msg.stage === this.held.retiring.stage) this.handedOver = true
          this.owedDonations.delete(`${msg.epoch}:${msg.stage}`)
          break
        case 'recovery-plan':
          // a departing peer may be a CheckFree donor for its neighbour: it stays until that is done
          if (this.departing && msg.donors.some(d => d.peerId === this.peerId)) this.owedDonations.add(`${msg.epoch}:${msg.stage}`)
          if (msg.targetPeer === this.peerId) {
            for (const d of msg.donors) if (d.addr != null && d.addr !== '') this.addrs.set(d.peerId, d.addr)
            this.plans.set(`${msg.epoch}:${msg.stage}`, msg)
            if (this.awaitingPlan?.epoch === msg.epoch) this.onAssignment(this.awaitingPlan)
          }
          break
        default:
          break
      }
    } catch (err) {
      if (err instanceof DataMismatchError || err instanceof DataRequiredError) {
        // not this peer's run: it leaves (the coordinator recovers the stage like any loss)
        if (!this.refused) { this.refused = true; this.emit('fatal', err) }
        return
      }
      log.error('cannot act on %s: %s', msg.kind, (err as Error).message)
    }
  }

  private onAssignment (a: Assignment): void {
    if (this.current != null && a.epoch <= this.current.assignment.epoch) return
    if (this.building === a.epoch) return
    if (a.clusterId !== this.init.clusterId) throw new AssignmentError(`assignment for cluster ${a.clusterId}, this peer is in ${this.init.clusterId}`)
    let model: ModelConfig
    let train: TrainConfig
    let options: ClusterOptions
    let data: DataIdentity
    try {
      const t = JSON.parse(a.trainingConfig) as Partial<TrainConfig> & Partial<ClusterOptions>
      const plusLayout = t.plusLayout ?? 'spotpipe'
      if (!PLUS_LAYOUTS.includes(plusLayout)) throw new AssignmentError(`plusLayout must be ${PLUS_LAYOUTS.join(' or ')}, got ${JSON.stringify(plusLayout)}`)
      options = { checkfreePlus: t.checkfreePlus === true, plusLayout, mirrorEvery: t.mirrorEvery ?? 10, shadow: t.shadow === true, shadowCompute: t.shadowCompute === true }
      data = (t as { data?: DataIdentity }).data ?? DEFAULT_DATA_IDENTITY
      for (const k of ['checkfreePlus', 'plusLayout', 'mirrorEvery', 'shadow', 'shadowCompute', 'strategy', 'data', 'replicas'] as const) delete (t as Record<string, unknown>)[k]
      model = resolveModelConfig(JSON.parse(a.modelConfig) as Partial<ModelConfig>)
      train = resolveTrainConfig({ ...t, stages: a.stages.length }, model)
    } catch (err) {
      throw new AssignmentError(`assignment epoch ${a.epoch} has an unusable config: ${(err as Error).message}`)
    }
    const me = this.peerId
    const peers = new Map<number, Array<{ id: string, addr?: string }>>()
    let mine = -1
    let index = 0
    for (const s of a.stages) {
      s.peers.forEach((p, i) => { this.addrs.set(p, s.addrs[i]) })
      const serving = servingPeers(a, s.stage)
      if (s.peers.includes(me)) { mine = s.stage; index = serving.indexOf(me) }
      if (serving.length > 0) peers.set(s.stage, serving.map(id => ({ id, addr: s.addrs[s.peers.indexOf(id)] })))
    }
    // as many lanes as the best-served stage has replicas; a stage short of some (a replica lost)
    // has its survivors run the missing lanes' microbatches too
    let lanes: number
    try {
      lanes = laneCount(a.stages.map(s => servingPeers(a, s.stage).length), train.microbatches)
    } catch (err) {
      throw new AssignmentError(`assignment epoch ${a.epoch} has ${a.stages.map(s => servingPeers(a, s.stage).length).join(', ')} serving replicas per stage for ${train.microbatches} microbatches per iteration: ${(err as Error).message}`)
    }
    const replicas = mine >= 0 ? [...a.stages[mine].peers] : []
    // a joiner (index -1 among the serving peers) runs none until it is listed as serving
    const microbatches = mine >= 0 && index >= 0 ? replicaMicrobatches(train.microbatches, lanes, peers.get(mine)?.length ?? 1, index) : []
    const joining = mine >= 0 && index < 0
    // the all-reduce dials its ring successor by id: give the peer store the replicas' addresses
    for (const p of replicas) {
      const addr = this.addrs.get(p)
      if (p !== me && addr != null && addr !== '') void this.node.peerStore.merge(peerIdFromString(p), { multiaddrs: [multiaddr(addr)] }).catch((err: Error) => { log('address of replica %s not stored: %s', p, err.message) })
    }
    this.checkData(data, mine, train, options)
    // a stage rebuilt as a whole, or this peer joining a stage whose other replicas keep theirs
    const rebuild = mine >= 0 && (a.rebuilt.includes(mine) || (a.joining ?? []).includes(me))
    const plan = rebuild ? this.plans.get(`${a.epoch}:${mine}`) : undefined
    if (rebuild && plan == null) {
      // The plan may arrive after the assignment; act when it does.
      this.awaitingPlan = a
      return
    }
    this.awaitingPlan = undefined
    const prev = this.current
    prev?.joinPull?.abort()
    // A new epoch ends whatever was in flight; committed work is kept (the assignment's iteration is
    // the next one to run, so a prepared step below it was committed).
    if (prev?.runtime != null) {
      const rt = prev.runtime
      if (rt.state === 'prepared' && rt.iteration < a.iteration) rt.commit(rt.iteration)
      else rt.abort(rt.iteration)
      rt.dispose()
    }
    const named = new Set([...peers.values()].flat().map(p => p.id))
    for (const old of [...prev?.peers.values() ?? []].flat()) if (!named.has(old.id)) this.links.drop(old.id)
    let stage = prev?.stage
    // a join that had not caught up holds placeholder weights: nothing to keep
    const placeholder = prev?.join?.done === false
    if (stage != null && (mine !== stage.stage || stage.layout.stages !== train.stages || rebuild || placeholder)) {
      // A departing peer keeps serving its old stage (and its mirror, which a CheckFree+ rebuild of
      // its neighbour may need) until the peers rebuilding from them are done.
      const retiring = this.departing && mine < 0
      if (!retiring) stage.dispose()
      this.held.stageChanged(retiring ? stage : undefined)
      // a departing replica whose stage stays with its other replicas hands nothing over
      if (retiring && (a.stages[stage.stage]?.peers.length ?? 0) > 0 && !a.rebuilt.includes(stage.stage)) this.handedOver = true
      // what this peer serves may now differ under versions it served before (a rebuild or reload)
      this.weightsServer?.forgetChecksums()
      stage = undefined
    }
    const cur: Current = { assignment: a, model, train, checkfreePlus: options.checkfreePlus, options, peers, lanes, microbatches, replicas }
    if (plan != null && joining && plan.rung === 'replica') {
      this.startJoin(cur, plan, mine)
      return
    }
    if (plan != null) {
      this.current = { ...cur, stage: undefined }
      this.building = a.epoch
      void this.rebuild(cur, plan, mine)
      return
    }
    let source: StageEvent['source'] = 'kept'
    if (mine >= 0 && stage == null) {
      if (a.iteration > 0) {
        // Mid-run, seed weights would silently throw the stage's training away: only a recovery
        // plan (the checkpoint rung's 'init') may ask for them. Say so instead of building them.
        this.current = { ...cur, stage: undefined }
        void this.reportRebuildFailure(cur, mine, 'wait', new NoStageStateError(`assigned stage ${mine} at iteration ${a.iteration} under epoch ${a.epoch} without a recovery plan, and this peer holds no state for it`))
        return
      }
      stage = new Stage({ model, train, layout: stageLayout(model, train.stages, mine) })
      source = 'seed'
      log.info(`assigned stage ${mine} of ${train.stages} under epoch ${a.epoch}`)
    }
    this.install(cur, stage)
    if (stage != null) this.emit('stage', { stage: mine, epoch: a.epoch, iteration: a.iteration, source } satisfies StageEvent)
  }

  /**
   * Joins stage `mine` as a new replica while the others train (node/replica-join.ts): a placeholder
   * stage that adds zeros to the all-reduce and logs the reduced sums, and the pull of the live
   * replicas' state (split between them) in the background; tryCatchUp() finishes it at a commit.
   */
  private startJoin (cur: Current, plan: RecoveryPlan, mine: number): void {
    const a = cur.assignment
    const stage = new Stage({ model: cur.model, train: cur.train, layout: stageLayout(cur.model, cur.train.stages, mine) })
    cur.join = new ReplicaJoin({ stage: mine })
    cur.joinPull = new AbortController()
    this.install(cur, stage)
    log.info(`joining stage ${mine} under epoch ${a.epoch}: pulling its state from ${plan.donors.map(d => d.peerId.slice(-8)).join(', ')} while it trains`)
    const t0 = performance.now()
    const donors = plan.donors.map(d => d.peerId)
    void (async () => {
      let r: { iteration: number, tensors: TensorSet, bytes: number }
      try {
        try {
          r = await this.fetch(donors, { stage: mine, minIteration: a.iteration - 1, includeOptimizer: true }, cur.joinPull?.signal)
        } catch (err) {
          // replicas asked a moment apart may straddle a commit: then one of them serves it all
          if (donors.length < 2 || cur.joinPull?.signal.aborted === true) throw err
          log.info(`the split pull of stage ${mine} failed (${(err as Error).message}); pulling from one replica`)
          r = await this.fetch(donors.slice(0, 1), { stage: mine, minIteration: a.iteration - 1, includeOptimizer: true }, cur.joinPull?.signal)
        }
      } catch (err) {
        if (this.current !== cur) return
        await this.failJoin(cur, mine, err as Error)
        return
      }
      if (this.current !== cur || cur.join == null) return
      const from = cur.join.arrived(r.tensors)
      cur.joinStats = { bytes: r.bytes, transferMs: performance.now() - t0 }
      log.info(`stage ${mine}: pulled the state of iteration ${from} (${r.bytes} bytes in ${cur.joinStats.transferMs.toFixed(0)} ms); catching up at the next commit`)
      if (cur.runtime?.state === 'idle') this.tryCatchUp(cur)
    })()
  }

  /** A join's reduced gradient sums for `it`, logged for its replay. */
  private logReduced (cur: Current, it: number, sums: readonly Float32Array[]): void {
    if (cur.join == null || cur.join.done || cur.joinFailed === true) return
    try {
      cur.join.reduced(it, sums)
    } catch (err) {
      void this.failJoin(cur, cur.join.stage, err as Error)
    }
  }

  /** Loads the pulled state and replays the logged steps when it can; reports recovery-done when exact. */
  private tryCatchUp (cur: Current): void {
    const join = cur.join
    const stage = cur.stage
    if (join == null || join.done || cur.joinFailed === true || stage == null || this.current !== cur) return
    const t0 = performance.now()
    let exact: boolean
    try {
      exact = join.catchUp(stage, cur.train.microbatches)
    } catch (err) {
      void this.failJoin(cur, join.stage, err as Error)
      return
    }
    if (!exact) return
    stage.prepack()
    const stats = cur.joinStats ?? { bytes: 0, transferMs: 0 }
    log.info(`joined stage ${join.stage} as an exact replica at iteration ${stage.iteration} under epoch ${cur.assignment.epoch}`)
    this.emit('stage', { stage: join.stage, epoch: cur.assignment.epoch, iteration: stage.iteration + 1, source: 'rebuilt', rung: 'replica' } satisfies StageEvent)
    void this.heartbeat()
    void this.gossip.publish({ kind: 'recovery-done', peerId: this.peerId, epoch: cur.assignment.epoch, stage: join.stage, rung: 'replica', bytes: stats.bytes, transferMs: stats.transferMs, rebuildMs: performance.now() - t0 })
      .catch((err: Error) => { log.error('recovery-done for the join of stage %d not published: %s', join.stage, err.message) })
  }

  /** A join that cannot finish: stop logging, say so (the coordinator drops this peer from the stage). */
  private async failJoin (cur: Current, stage: number, err: Error): Promise<void> {
    if (cur.join == null || cur.join.done || cur.joinFailed === true) return
    // the placeholder keeps adding zeros to the all-reduce (and serving nothing) until the
    // coordinator drops this peer from the stage
    cur.joinFailed = true
    cur.joinPull?.abort()
    await this.reportRebuildFailure(cur, stage, 'replica', err)
  }

  /** Tells the coordinator (and the 'recovery-failed' listeners) that a plan for `stage` could not be carried out. */
  private async reportRebuildFailure (cur: Current, stage: number, rung: RecoveryPlan['rung'], err: Error): Promise<void> {
    const code = err instanceof SpotpipeError ? err.code : 'ERR_REBUILD'
    const reason = err.message.slice(0, 500)
    log.error('stage %d under epoch %d: %s (%s)', stage, cur.assignment.epoch, reason, code)
    this.emit('recovery-failed', { stage, epoch: cur.assignment.epoch, rung, code, reason } satisfies RebuildFailure)
    try {
      await this.gossip.publish({ kind: 'recovery-failed', peerId: this.peerId, epoch: cur.assignment.epoch, stage, rung, code, reason })
    } catch (e) {
      log.error('recovery-failed report for stage %d not published: %s', stage, (e as Error).message)
    }
  }

  /** Epoch whose stage is being rebuilt (heartbeats do not claim the stage until it is ready). */
  private building?: number

  private async rebuild (cur: Current, plan: RecoveryPlan, mine: number): Promise<void> {
    const layout = stageLayout(cur.model, cur.train.stages, mine)
    try {
      const r = await rebuildStage(plan, {
        model: cur.model,
        train: cur.train,
        layout,
        coordinatorId: this.init.coordinatorId,
        committed: cur.assignment.iteration - 1,
        fetch: async (donors, req, signal) => await this.fetch(donors, req, signal)
      })
      if (this.building !== cur.assignment.epoch) { r.stage.dispose(); return }
      this.building = undefined
      log.info(`rebuilt stage ${mine} by ${plan.rung} under epoch ${cur.assignment.epoch}: ${r.bytes} bytes, transfer ${r.transferMs.toFixed(0)} ms, rebuild ${r.rebuildMs.toFixed(0)} ms`)
      this.install(cur, r.stage)
      this.emit('stage', { stage: mine, epoch: cur.assignment.epoch, iteration: cur.assignment.iteration, source: plan.rung === 'checkpoint' && plan.checkpointId === 'init' ? 'seed' : 'rebuilt', rung: plan.rung } satisfies StageEvent)
      await this.gossip.publish({ kind: 'recovery-done', peerId: this.peerId, epoch: cur.assignment.epoch, stage: mine, rung: plan.rung, bytes: r.bytes, transferMs: r.transferMs, rebuildMs: Math.max(0, r.rebuildMs) })
    } catch (err) {
      if (this.building !== cur.assignment.epoch) return // a newer epoch replaced this rebuild
      this.building = undefined
      await this.reportRebuildFailure(cur, mine, plan.rung, err as Error)
    }
  }

  /**
   * Refuses a run on other data: a peer holding data (--data) must hold the coordinator's; a peer
   * without it may hold a stage that reads no tokens, but not stage 0 or the head's stage when the
   * coordinator trains on its own data. Throws a DataError the peer cannot go on from.
   */
  private checkData (theirs: DataIdentity, mine: number, train: TrainConfig, options: ClusterOptions): void {
    const own = this.init.data ?? DEFAULT_DATA_IDENTITY
    if (own.fingerprint === theirs.fingerprint) return
    if (this.init.data == null) {
      if (mine < 0 || !stageNeedsTokens(mine, train.stages, train.microbatches, options.checkfreePlus, options.plusLayout)) return
      throw new DataRequiredError(`stage ${mine} reads training tokens, but this peer has no --data while the coordinator trains on data ${theirs.fingerprint} (tokenizer ${theirs.tokenizer}): start it with the coordinator's --data and --tokenizer`)
    }
    throw new DataMismatchError(`data fingerprint mismatch: this peer holds ${own.fingerprint} (tokenizer ${own.tokenizer}), the coordinator trains on ${theirs.fingerprint} (tokenizer ${theirs.tokenizer}): give both the same --data, --data-field and --tokenizer`)
  }

  private install (cur: Current, stage: Stage | undefined): void {
    const a = cur.assignment
    if (stage != null) {
      const runtime = new StageRuntime({
        stage,
        model: cur.model,
        train: cur.train,
        checkfreePlus: cur.checkfreePlus,
        plusLayout: cur.options.plusLayout,
        shared: this.sharedLink(cur, stage.stage),
        shadowCompute: cur.options.shadowCompute ? { stage: async (signal) => await this.held.awaitLiveShadow(this.copiesContext(cur), signal) } : undefined,
        trainTokens: this.loadTokens(),
        share: { microbatches: cur.microbatches, replicas: cur.replicas.length },
        reduceGradients: async (it, sums, signal) => await this.reduceGradients(cur, stage.stage, it, sums, signal),
        reduced: (it, sums) => { this.logReduced(cur, it, sums) },
        send: async (toStage, f) => { await this.sendFrame(cur, toStage, f) },
        done: (info) => { void this.reportDone(cur, info) },
        committed: (it, skipped) => { this.afterCommit(cur, it, skipped) },
        beforeStep: (it) => { if (this.init.faults?.nonFinite?.apply(stage, it) === true) log.info(`FAULT INJECTION: stage ${stage.stage}'s gradient made non-finite at iteration ${it}`) },
        tick: () => { if (Date.now() - this.lastBeat >= (this.init.heartbeatMs ?? 1000)) void this.heartbeat() },
        failed: (err, it) => { log.error('stage %d iteration %d failed: %s', stage.stage, it, err.message) }
      })
      runtime.iteration = a.iteration - 1
      // under this assignment the stage's state belongs to the iteration before the next one to run,
      // whatever its content's origin (a rebuild's source iteration may be older)
      stage.iteration = a.iteration - 1
      cur.runtime = runtime
      stage.prepack()
    }
    cur.stage = stage
    this.current = cur
    void this.heartbeat()
    if (stage != null) this.refreshCopies(cur, true)
  }

  /** The sum of `sums` over every replica of `stage` (a ring all-reduce among them, in the assignment's order). */
  private async reduceGradients (cur: Current, stage: number, iteration: number, sums: Float32Array[], signal: AbortSignal): Promise<Float32Array[]> {
    if (this.allReduce == null) throw new AssignmentError('the all-reduce service is not running')
    const r = await this.allReduce.allReduce({
      group: cur.replicas,
      key: { runId: cur.assignment.runId, epoch: cur.assignment.epoch, iteration, stage },
      tensors: sums,
      op: 'sum',
      inPlace: true,
      signal,
      timeoutMs: 120_000
    })
    return r.tensors
  }

  /**
   * Paper layout: this stage's side of its shared embedding or head (model/schedule.ts sharedPart).
   * The holder runs the mirror HeldCopies keeps of the owner's part; both add up their gradients
   * for it in a two-member all-reduce keyed by the iteration and the part.
   */
  private sharedLink (cur: Current, stage: number): SharedPartLink | undefined {
    const sp = sharedPart(stage, cur.train.stages, cur.checkfreePlus, cur.options.plusLayout)
    if (sp == null) return undefined
    const other = cur.peers.get(sp.peer)?.[0]?.id
    const [owner, holder] = sp.role === 'owner' ? [this.peerId, other] : [other, this.peerId]
    return {
      part: sp.part,
      role: sp.role,
      weights: sp.role === 'holder'
        ? async (it, signal) => {
          const m = await this.held.awaitMirror(this.copiesContext(cur), sp.peer, it - 1, signal)
          return new Map([...m.tensors].map(([name, t]) => [name, t.data as Float32Array]))
        }
        : undefined,
      exchange: async (it, sums, signal) => {
        if (this.allReduce == null) throw new AssignmentError('the all-reduce service is not running')
        if (owner == null || holder == null) throw new AssignmentError(`no peer holds stage ${sp.peer} under epoch ${cur.assignment.epoch}: the shared ${sp.part} has no other side`)
        const a = cur.assignment
        const r = await this.allReduce.allReduce({ group: [owner, holder], key: `${a.runId}:e${a.epoch}:i${it}:shared-${sp.part}`, tensors: sums, op: 'sum', inPlace: true, signal, timeoutMs: 120_000 })
        return r.tensors
      }
    }
  }

  /** After a commit: a join's catch-up, checkpoint snapshot, CheckFree+ mirror refresh, redundant shadow refresh. */
  private afterCommit (cur: Current, it: number, skipped = false): void {
    const stage = cur.stage
    if (stage == null) return
    if (cur.join != null && !cur.join.done) {
      cur.join.committed(it, skipped)
      this.tryCatchUp(cur)
      return // a placeholder is neither snapshotted nor a source of copies
    }
    const index = servingPeers(cur.assignment, stage.stage).indexOf(this.peerId)
    if (this.init.faults?.perturb?.apply(stage, it, index) === true) {
      // the digest is cached by state iteration and step, which the perturbation leaves alone: a
      // heartbeat sent at this commit (tick, just before) cached the unperturbed one, and the next
      // done report carried it, so the drift showed one iteration late (CI, a loaded host)
      this.digest = undefined
      log.info(`FAULT INJECTION: stage ${stage.stage} replica ${index}: weights perturbed after iteration ${it}`)
    }
    // the coordinator alone decides which commits are checkpoints, and says so in the commit
    if (this.snapshotDue === it) this.held.takeCheckpoint(stage)
    this.refreshCopies(cur, false, it)
    // the shadow trained alongside committed with the stage: say so, the coordinator waits for it (awaitShadows)
    if (cur.options.shadowCompute && this.held.liveShadow?.iteration === it) void this.heartbeat()
  }

  /** Pull the mirror (CheckFree+) or shadow (redundant) this stage keeps of a neighbour, in the background. */
  private refreshCopies (cur: Current, force: boolean, it = 0): void {
    if (cur.stage == null) return
    this.held.refresh(this.copiesContext(cur), force, it)
  }

  /** What HeldCopies needs to refresh, or wait for, the copies this peer keeps under `cur`. */
  private copiesContext (cur: Current): RefreshContext {
    const stage = cur.stage
    if (stage == null) throw new AssignmentError('this peer holds no stage, so it keeps no copies')
    return {
      model: cur.model,
      train: cur.train,
      stages: cur.train.stages,
      committed: cur.assignment.iteration - 1,
      stage,
      checkfreePlus: cur.options.checkfreePlus,
      plusLayout: cur.options.plusLayout,
      mirrorEvery: cur.options.mirrorEvery,
      shadow: cur.options.shadow,
      shadowCompute: cur.options.shadowCompute,
      // any replica of a neighbour holds the same weights: spread the pulls over them
      holderOf: s => { const ps = cur.peers.get(s); return ps?.[Math.max(0, cur.replicas.indexOf(this.peerId)) % ps.length]?.id },
      self: this.peerId,
      fetch: async (peerId, req, signal) => await this.fetch(peerId, req, signal),
      // say so at once: the coordinator plans an exact copy only from a shadow its heartbeats show
      // to be of the last commit, and a loss right after the refresh would otherwise find it a beat old
      replaced: s => { this.weightsServer?.forgetChecksums(s); void this.heartbeat() },
      stillCurrent: () => this.current === cur
    }
  }

  private async sendFrame (cur: Current, toStage: number, f: OutFrame): Promise<void> {
    const target = holderFor(cur, toStage, f.microbatch)
    if (target == null) throw new AssignmentError(`no peer holds stage ${toStage} under epoch ${cur.assignment.epoch}`)
    const header = { runId: cur.assignment.runId, epoch: cur.assignment.epoch, iteration: f.iteration, microbatch: f.microbatch, hop: f.hop, direction: f.direction, shape: f.shape }
    if (target.id === this.peerId) {
      // A stage never sends to itself on the normal route; with CheckFree+ swaps it can't either.
      throw new AssignmentError(`stage ${toStage} is this peer`)
    }
    try {
      await this.links.send(target.id, target.addr, header, f.data)
      this.totals.activationBytesSent += f.data.byteLength
    } catch (err) {
      if (err instanceof NeighbourLostError) void this.reportStreamBreak(cur, target.id, f.iteration, err.message)
      throw err
    }
  }

  private async reportStreamBreak (cur: Current, suspect: string, iteration: number, reason: string): Promise<void> {
    try {
      await this.gossip.publish({ kind: 'stream-break', reporter: this.peerId, stage: cur.stage?.stage ?? 0, suspect, epoch: cur.assignment.epoch, iteration, reason: reason.slice(0, 500) })
    } catch (err) {
      log.error('stream-break report not published: %s', (err as Error).message)
    }
  }

  /**
   * Announce departure (spot notice, SIGTERM): heartbeats say `departing`, and the peer keeps serving
   * its weights until the coordinator has handed its stage to another peer and every recovery that
   * named it as a donor (a CheckFree neighbour) is done, or `timeoutMs` passes.
   */
  async depart (timeoutMs = 30_000): Promise<void> {
    this.departing = true
    await this.heartbeat()
    const me = this.peerId
    const end = Date.now() + timeoutMs
    let beat = Date.now()
    while (Date.now() < end) {
      const a = this.current?.assignment
      const holding = a != null && this.current?.stage != null && a.stages.some(s => s.peers.includes(me))
      if (!holding && (this.held.retiring == null || (this.handedOver && this.owedDonations.size === 0))) return
      await new Promise(resolve => setTimeout(resolve, 50))
      if (Date.now() - beat >= 1000) { beat = Date.now(); await this.heartbeat() }
    }
    log.info('departure: handover not confirmed before the timeout')
  }

  private onFrame (h: TensorFrameHeader, data: Float32Array, from: string): void {
    const cur = this.current
    this.totals.activationBytesReceived += data.byteLength
    if (cur?.runtime == null) throw new UnexpectedFrameError(`tensor frame from ${from} but this peer holds no stage`)
    if (h.epoch < cur.assignment.epoch) { this.staleFrames += 1; return }
    if (h.epoch > cur.assignment.epoch) throw new UnexpectedFrameError(`frame from epoch ${h.epoch}, this peer is at ${cur.assignment.epoch}`)
    if (h.runId !== cur.assignment.runId) throw new UnexpectedFrameError(`frame for run ${h.runId}, this peer runs ${cur.assignment.runId}`)
    const sender = cur.runtime.expectedSender(h.direction, h.microbatch, h.hop)
    const holder = holderFor(cur, sender, h.microbatch)?.id
    if (holder !== from) throw new UnexpectedFrameError(`${h.direction} frame for hop ${h.hop} from ${from}, but stage ${sender} is held by ${holder ?? 'nobody'}`)
    cur.runtime.receive(h.iteration, h.direction, h.microbatch, h.hop, h.shape, data)
  }

  /**
   * The digest of `cur`'s stage at its state iteration (model/state.ts stageDigest), computed once
   * per iteration and only for a stage with replicas (who else would compare it); undefined
   * otherwise, and for a joiner still catching up.
   */
  private digestOf (cur: Current | undefined): string | undefined {
    const st = cur?.stage
    if (cur == null || st == null || cur.replicas.length < 2 || cur.join?.done === false) return undefined
    if (this.digest?.stage !== st || this.digest.iteration !== st.iteration || this.digest.step !== st.adam.step) {
      this.digest = { stage: st, iteration: st.iteration, step: st.adam.step, value: stageDigest(st) }
    }
    return this.digest.value
  }

  private digest?: { stage: Stage, iteration: number, step: number, value: string }

  private async reportDone (cur: Current, info: DoneInfo): Promise<void> {
    this.lastDone = info
    if (cur.stage == null) return
    this.emit('done', { ...info, stage: cur.stage.stage, epoch: cur.assignment.epoch } satisfies PeerDoneEvent)
    // the state the iteration started from: its step is prepared, not applied
    const digest = info.nonFinite == null ? this.digestOf(cur) : undefined
    try {
      await this.gossip.publish({
        kind: 'done',
        peerId: this.peerId,
        stage: cur.stage.stage,
        epoch: cur.assignment.epoch,
        iteration: info.iteration,
        ...(info.loss != null ? { loss: info.loss } : {}),
        gradNorm: info.gradNorm,
        computeMs: info.computeMs,
        ...(info.allReduceMs != null ? { allReduceMs: info.allReduceMs } : {}),
        ...(digest != null ? { weightDigest: digest } : {}),
        ...(info.nonFinite != null ? { nonFinite: true, nonFiniteWhat: info.nonFinite } : {})
      })
    } catch (err) {
      log.error('done report for iteration %d not published: %s', info.iteration, (err as Error).message)
    }
  }

  async stop (): Promise<void> {
    if (this.heartbeatTimer != null) clearInterval(this.heartbeatTimer)
    this.coordinator?.stop()
    await this.weightsServer?.stop().catch(() => {})
    await this.allReduce?.stop().catch((err: Error) => { log('all-reduce service stop: %s', err.message) })
    this.gossip?.stop()
    await this.links?.stop().catch(() => {})
    this.current?.runtime?.dispose()
    this.current?.stage?.dispose()
    this.held.retiring?.dispose()
    this.current = undefined
    await this.node?.stop()
  }
}

/** The peer of stage `stage` that runs microbatch `mb` under `cur` (model/schedule.ts servingReplica). */
function holderFor (cur: Current, stage: number, mb: number): { id: string, addr?: string } | undefined {
  const ps = cur.peers.get(stage)
  if (ps == null || ps.length === 0) return undefined
  return ps[servingReplica(mb, cur.lanes, ps.length)]
}

/**
 * A spotpipe peer: one libp2p node that joins a cluster, gossips a heartbeat every second, holds the
 * stage the coordinator assigns it, and exchanges activations and gradients with its neighbours.
 *
 * Trust: control messages (assignment, begin, abort, commit, recovery plans) are acted on only when
 * gossipsub's strict signature says they come from the coordinator peer id this peer was given.
 * Epochs: every assignment carries an epoch; frames and control from older epochs are dropped.
 */
import { multiaddr } from '@multiformats/multiaddr'
import type { PrivateKey } from '@libp2p/interface'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig, type TrainConfig } from '../model/config.js'
import { loadBrownCorpus } from '../model/data.js'
import { createLog } from '../model/log.js'
import { stageLayout } from '../model/params.js'
import { Stage } from '../model/stage.js'
import type { Assignment, Heartbeat, Message, Role, TensorFrameHeader } from '../protocols/index.js'
import { ActivationLinks } from './activations.js'
import { AssignmentError, UnexpectedFrameError } from './errors.js'
import { ClusterGossip } from './gossip.js'
import { StageRuntime, type DoneInfo, type OutFrame } from './stage-runtime.js'
import { createPeerLibp2p, type PeerLibp2p } from './transport/index.js'

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
  /** Private-network key file contents (pnet); peers without it cannot connect. */
  swarmKey?: Uint8Array
  /** @default ['/ip4/127.0.0.1/tcp/0'] */
  listen?: string[]
  /** @default 'tcp' */
  transport?: 'tcp' | 'memory'
  /** Heartbeat period in ms. @default 1000 */
  heartbeatMs?: number
  /** Training tokens; default: the Brown corpus train split. */
  trainTokens?: Uint8Array
}

interface Current {
  assignment: Assignment
  model: ModelConfig
  train: TrainConfig
  checkfreePlus: boolean
  stage?: Stage
  runtime?: StageRuntime
  /** Stage -> [peer id, address] of its (first) peer. */
  peers: Map<number, { id: string, addr?: string }>
}

export class Peer {
  readonly init: PeerInit
  node!: PeerLibp2p
  gossip!: ClusterGossip
  links!: ActivationLinks
  private current?: Current
  private heartbeatTimer?: NodeJS.Timeout
  private departing = false
  private lastDone?: DoneInfo
  private readonly startedAt = performance.now()
  /** Number of frames dropped because they came from an older epoch. */
  staleFrames = 0

  constructor (init: PeerInit) {
    this.init = init
  }

  get peerId (): string { return this.node.peerId.toString() }
  get epoch (): number { return this.current?.assignment.epoch ?? 0 }
  get stageIndex (): number { return this.current?.stage?.stage ?? -1 }
  get stage (): Stage | undefined { return this.current?.stage }
  get runtime (): StageRuntime | undefined { return this.current?.runtime }

  async start (): Promise<void> {
    this.node = await createPeerLibp2p({ privateKey: this.init.privateKey, swarmKey: this.init.swarmKey, listen: this.init.listen, transport: this.init.transport })
    this.gossip = new ClusterGossip(this.node, { clusterId: this.init.clusterId, coordinatorId: this.init.coordinatorId, onMessage: (m) => { this.onMessage(m) } })
    this.gossip.start()
    this.links = new ActivationLinks(this.node, {
      onFrame: (h, d, from) => { this.onFrame(h, d, from) },
      onReject: (err, from) => { log('frame from %s rejected: %s', from, err.message) }
    })
    await this.links.start()
    for (const a of this.init.coordinatorAddrs) {
      try {
        await this.node.dial(multiaddr(a), { signal: AbortSignal.timeout(10_000) })
      } catch (err) {
        throw new AssignmentError(`cannot reach the coordinator at ${a}: ${(err as Error).message}`)
      }
    }
    this.heartbeatTimer = setInterval(() => { void this.heartbeat() }, this.init.heartbeatMs ?? 1000)
    this.heartbeatTimer.unref()
    void this.heartbeat()
    log.info(`peer ${this.peerId} listening on ${this.node.getMultiaddrs().map(String).join(', ')}`)
  }

  /** Heartbeat content; the weight digest is left empty until weights are fetched by digest. */
  private heartbeatMessage (): Heartbeat {
    const c = this.current
    const role: Role = c?.stage != null ? 'stage' : 'spare'
    const secs = (performance.now() - this.startedAt) / 1000
    return {
      kind: 'heartbeat',
      peerId: this.peerId,
      role,
      stage: c?.stage?.stage ?? -1,
      iteration: Math.max(0, this.lastDone?.iteration ?? 0),
      ...(this.lastDone?.loss != null ? { loss: this.lastDone.loss } : {}),
      gradNorm: c?.stage?.lastGradNorm ?? 0,
      weightVersion: c?.stage?.weightVersion ?? 0,
      weightDigest: '',
      tokensPerSec: (c?.runtime?.tokensProcessed ?? 0) / Math.max(secs, 1e-3),
      rssBytes: process.memoryUsage().rss,
      epoch: this.epoch,
      timestampMs: Date.now(),
      departing: this.departing
    }
  }

  private async heartbeat (): Promise<void> {
    try {
      await this.gossip.publish(this.heartbeatMessage())
    } catch (err) {
      log('heartbeat not published: %s', (err as Error).message)
    }
  }

  private onMessage (msg: Message): void {
    try {
      switch (msg.kind) {
        case 'assignment': this.onAssignment(msg); break
        case 'begin':
          if (msg.epoch === this.epoch) this.current?.runtime?.begin(msg.iteration)
          break
        case 'commit':
          if (msg.epoch === this.epoch) this.current?.runtime?.commit(msg.iteration)
          break
        case 'abort':
          if (msg.epoch <= this.epoch) this.current?.runtime?.abort(msg.iteration)
          break
        default:
          break
      }
    } catch (err) {
      log.error('cannot act on %s: %s', msg.kind, (err as Error).message)
    }
  }

  private onAssignment (a: Assignment): void {
    if (this.current != null && a.epoch <= this.current.assignment.epoch) return
    if (a.clusterId !== this.init.clusterId) throw new AssignmentError(`assignment for cluster ${a.clusterId}, this peer is in ${this.init.clusterId}`)
    let model: ModelConfig
    let train: TrainConfig
    let checkfreePlus = false
    try {
      const t = JSON.parse(a.trainingConfig) as Partial<TrainConfig> & { checkfreePlus?: boolean }
      checkfreePlus = t.checkfreePlus === true
      delete t.checkfreePlus
      model = resolveModelConfig(JSON.parse(a.modelConfig) as Partial<ModelConfig>)
      train = resolveTrainConfig({ ...t, stages: a.stages.length }, model)
    } catch (err) {
      throw new AssignmentError(`assignment epoch ${a.epoch} has an unusable config: ${(err as Error).message}`)
    }
    const me = this.peerId
    const peers = new Map<number, { id: string, addr?: string }>()
    let mine = -1
    for (const s of a.stages) {
      if (s.peers.length > 0) peers.set(s.stage, { id: s.peers[0], addr: s.addrs[0] })
      if (s.peers.includes(me)) mine = s.stage
    }
    const prev = this.current
    // A new epoch ends whatever was in flight; committed work is kept (the assignment's iteration is
    // the next one to run, so a prepared step below it was committed).
    if (prev?.runtime != null) {
      const rt = prev.runtime
      if (rt.state === 'prepared' && rt.iteration < a.iteration) rt.commit(rt.iteration)
      else rt.abort(rt.iteration)
      rt.dispose()
    }
    let stage = prev?.stage
    if (stage != null && (mine !== stage.stage || stage.layout.stages !== train.stages)) {
      stage.dispose()
      stage = undefined
    }
    if (mine >= 0 && stage == null) {
      stage = new Stage({ model, train, layout: stageLayout(model, train.stages, mine) })
      log.info(`assigned stage ${mine} of ${train.stages} under epoch ${a.epoch}`)
    }
    const cur: Current = { assignment: a, model, train, checkfreePlus, stage, peers }
    if (stage != null) {
      const runtime = new StageRuntime({
        stage,
        model,
        train,
        checkfreePlus,
        trainTokens: this.init.trainTokens ?? loadBrownCorpus().train,
        send: async (toStage, f) => { await this.sendFrame(cur, toStage, f) },
        done: (info) => { void this.reportDone(cur, info) },
        failed: (err, it) => { log.error('stage %d iteration %d failed: %s', stage?.stage, it, err.message) }
      })
      runtime.iteration = a.iteration - 1
      cur.runtime = runtime
    }
    this.current = cur
    void this.heartbeat()
  }

  private async sendFrame (cur: Current, toStage: number, f: OutFrame): Promise<void> {
    const target = cur.peers.get(toStage)
    if (target == null) throw new AssignmentError(`no peer holds stage ${toStage} under epoch ${cur.assignment.epoch}`)
    const header = { runId: cur.assignment.runId, epoch: cur.assignment.epoch, iteration: f.iteration, microbatch: f.microbatch, hop: f.hop, direction: f.direction, shape: f.shape }
    if (target.id === this.peerId) {
      // A stage never sends to itself on the normal route; with CheckFree+ swaps it can't either.
      throw new AssignmentError(`stage ${toStage} is this peer`)
    }
    await this.links.send(target.id, target.addr, header, f.data)
  }

  private onFrame (h: TensorFrameHeader, data: Float32Array, from: string): void {
    const cur = this.current
    if (cur?.runtime == null) throw new UnexpectedFrameError(`tensor frame from ${from} but this peer holds no stage`)
    if (h.epoch < cur.assignment.epoch) { this.staleFrames += 1; return }
    if (h.epoch > cur.assignment.epoch) throw new UnexpectedFrameError(`frame from epoch ${h.epoch}, this peer is at ${cur.assignment.epoch}`)
    if (h.runId !== cur.assignment.runId) throw new UnexpectedFrameError(`frame for run ${h.runId}, this peer runs ${cur.assignment.runId}`)
    const sender = cur.runtime.expectedSender(h.direction, h.microbatch, h.hop)
    const holder = cur.peers.get(sender)?.id
    if (holder !== from) throw new UnexpectedFrameError(`${h.direction} frame for hop ${h.hop} from ${from}, but stage ${sender} is held by ${holder ?? 'nobody'}`)
    cur.runtime.receive(h.iteration, h.direction, h.microbatch, h.hop, h.shape, data)
  }

  private async reportDone (cur: Current, info: DoneInfo): Promise<void> {
    this.lastDone = info
    if (cur.stage == null) return
    try {
      await this.gossip.publish({
        kind: 'done',
        peerId: this.peerId,
        stage: cur.stage.stage,
        epoch: cur.assignment.epoch,
        iteration: info.iteration,
        ...(info.loss != null ? { loss: info.loss } : {}),
        gradNorm: info.gradNorm,
        weightVersion: info.weightVersion,
        computeMs: info.computeMs
      })
    } catch (err) {
      log.error('done report for iteration %d not published: %s', info.iteration, (err as Error).message)
    }
  }

  async stop (): Promise<void> {
    if (this.heartbeatTimer != null) clearInterval(this.heartbeatTimer)
    this.gossip?.stop()
    await this.links?.stop().catch(() => {})
    this.current?.runtime?.dispose()
    this.current?.stage?.dispose()
    this.current = undefined
    await this.node?.stop()
  }
}

/**
 * The coordinator of a static cluster: waits for S peers, assigns stages under epoch 1, then drives
 * iterations: begin -> collect a done report from every stage -> commit. It owns the iteration
 * clock and the cluster's membership view (from heartbeats). Failure handling and recovery extend
 * this class through `onHeartbeat`, `onReport` and the epoch bump in `assign`.
 */
import { EventEmitter } from 'node:events'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig, type TrainConfig } from '../model/config.js'
import { createLog } from '../model/log.js'
import type { Assignment, DoneReport, Heartbeat, Message } from '../protocols/index.js'
import { ClusterGossip } from '../node/gossip.js'
import { createPeerLibp2p, type PeerLibp2p } from '../node/transport/index.js'
import { CoordinatorTimeoutError } from './errors.js'

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
  private reports = new Map<number, DoneReport>()

  constructor (init: CoordinatorInit) {
    super()
    this.init = init
    this.model = resolveModelConfig(init.model)
    this.train = resolveTrainConfig(init.train, this.model)
  }

  get runId (): string { return this.init.runId ?? 'run' }
  get peerId (): string { return this.node.peerId.toString() }
  get addrs (): string[] { return this.node.getMultiaddrs().map(String) }

  async start (): Promise<void> {
    this.node = await createPeerLibp2p({ privateKey: this.init.privateKey, swarmKey: this.init.swarmKey, listen: this.init.listen, transport: this.init.transport })
    this.gossip = new ClusterGossip(this.node, { clusterId: this.init.clusterId, onMessage: (m, from) => { this.onMessage(m, from) } })
    this.gossip.start()
    log.info(`coordinator ${this.peerId} listening on ${this.addrs.join(', ')}`)
  }

  protected onMessage (msg: Message, from: string): void {
    if (msg.kind === 'heartbeat') this.onHeartbeat(msg)
    else if (msg.kind === 'done') this.onDone(msg)
    else if (msg.kind === 'stream-break') this.emit('stream-break', msg, from)
    this.emit('change')
  }

  protected onHeartbeat (hb: Heartbeat): void {
    this.peers.set(hb.peerId, { heartbeat: hb, seenAt: Date.now() })
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
  protected async until (check: () => boolean, what: string, timeoutMs: number, signal?: AbortSignal, onTick?: () => void): Promise<void> {
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
    return [...this.peers.entries()].filter(([id, v]) => now - v.seenAt <= windowMs && subs.has(id) && !v.heartbeat.departing).map(([id]) => id)
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
  async assign (peers: string[][], opts: { timeoutMs?: number, signal?: AbortSignal } = {}): Promise<Assignment> {
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
      trainingConfig: JSON.stringify({ ...this.train, checkfreePlus: this.init.checkfreePlus ?? false })
    }
    this.assignment = a
    await this.gossip.publish(a)
    const taken = (): boolean => a.stages.every(s => s.peers.every(p => {
      const hb = this.peers.get(p)?.heartbeat
      return hb != null && hb.epoch === a.epoch && hb.stage === s.stage
    }))
    await this.until(taken, `stages to acknowledge epoch ${a.epoch}`, opts.timeoutMs ?? 30_000, opts.signal, () => { void this.gossip.publish(a).catch(() => {}) })
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
    await this.until(() => this.reports.size === a.stages.length, `done reports for iteration ${it}`, opts.timeoutMs ?? 120_000, opts.signal, () => {
      if (this.reports.size !== seen) { seen = this.reports.size; lastProgress = Date.now() }
      if (Date.now() - lastProgress > (this.init.resendMs ?? 5000)) {
        lastProgress = Date.now()
        log('re-sending begin %d', it)
        void this.gossip.publish(begin).catch(() => {})
      }
    })
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
    this.history.push(rec)
    await this.gossip.publish({ kind: 'commit', epoch: this.epoch, iteration: it })
    this.emit('iteration', rec)
    return rec
  }

  async stop (): Promise<void> {
    this.gossip?.stop()
    await this.node?.stop()
  }
}

/**
 * Sparse checkpoints, taken by the coordinator. This module alone decides which commits are
 * checkpoints (due()): every K-th, and the next commit after one was abandoned, so a lost pull costs
 * a few iterations of staleness rather than K more. The commit message says so (`snapshot`), each
 * stage keeps a snapshot of its parameters and optimizer state at that commit, and this module pulls
 * those snapshots over the weights protocol in the background (training does not wait), one
 * checkpoint after another, and writes them to the checkpoint store. A checkpoint that cannot be
 * completed is abandoned; the next commit is then taken instead.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { ModelConfig } from '../model/index.js'
import { createLog } from '../common/index.js'
import { stateFromTensorSet } from '../model/index.js'
import type { PeerLibp2p } from '../net/index.js'
import { fetchWeights } from '../net/index.js'
import type { Assignment, TensorInfo } from '../protocols/index.js'
import type { CheckpointStore } from './checkpoint-store.js'
import { CoordinatorTimeoutError } from './errors.js'
import type { CheckpointEvent } from './types.js'

const log = createLog('coordinator')

/** What sparse checkpointing reads from the coordinator. */
export interface CheckpointHost {
  readonly node: PeerLibp2p
  readonly model: ModelConfig
  /** The assignment when a checkpoint starts: whom to pull each stage from. */
  readonly assignment?: Assignment
  /** Without a store no checkpoints are taken. */
  readonly store?: CheckpointStore
  /** Take one every K iterations (0: never). */
  readonly checkpointEvery: number
  /** Writes the coordinator's durable state (which lists the checkpoints). */
  persist: () => Promise<void>
  /** Told of every checkpoint written or abandoned. */
  checkpointDone: (e: CheckpointEvent) => void
}

export class SparseCheckpoints {
  private readonly host: CheckpointHost
  /** Checkpoints being pulled in the background, chained so they run one at a time. */
  private queue?: Promise<void>
  /**
   * The arrays the last checkpoint was received into (`stage/name`), reused by the next one: its
   * files are written by then, and the same shapes come back every time. Saves allocating (and
   * collecting) a checkpoint's worth of memory per checkpoint.
   */
  private buffers = new Map<string, Float32Array | Int32Array>()
  /** The scheduled checkpoint retries are being taken for, and how many were taken. */
  private retriedFor?: number
  private retries = 0
  /** A checkpoint is queued or being pulled: no retry is due on top of it. */
  private taking = false

  constructor (host: CheckpointHost) {
    this.host = host
  }

  /** Whether committing `it` takes a checkpoint (the commit message then asks stages for a snapshot). */
  due (it: number): boolean {
    const every = this.host.checkpointEvery
    const store = this.host.store
    if (every <= 0 || store == null) return false
    if ((it + 1) % every === 0) return true
    if (this.taking) return false
    // the newest checkpoint on disk is older than the last one scheduled: that one was abandoned, or
    // the coordinator died before writing it (the store says so after a restart too); take this
    // commit instead, up to MAX_RETRIES times per scheduled checkpoint (the soak saw a scheduled
    // checkpoint and its one retry both cut off by faults, and a stage then restored 12 behind)
    const scheduled = lastScheduled(it, every)
    if (scheduled < 0 || (this.retriedFor === scheduled && this.retries >= MAX_RETRIES)) return false
    return (store.latest()?.iteration ?? -1) < scheduled
  }

  /** Called once iteration `it` is committed with `snapshot` (due(it) when it was published): queues its checkpoint. */
  afterCommit (it: number, snapshot: boolean): void {
    if (!snapshot) return
    const every = this.host.checkpointEvery
    const retry = (it + 1) % every !== 0
    if (retry) {
      const scheduled = lastScheduled(it, every)
      this.retries = this.retriedFor === scheduled ? this.retries + 1 : 1
      this.retriedFor = scheduled
    }
    this.taking = true
    const prev = this.queue ?? Promise.resolve()
    this.queue = prev.then(async () => { await this.take(it, retry) }).finally(() => { this.taking = false })
  }

  /** Waits for the queued checkpoints to be written (or abandoned). */
  async flush (): Promise<void> { await this.queue }

  /** Pulls every stage's snapshot of committed iteration `it` and writes them as one checkpoint. */
  private async take (it: number, isRetry: boolean): Promise<void> {
    const { store, assignment: a, node, model } = this.host
    if (store == null || a == null) return
    const t0 = performance.now()
    const pending = await store.beginCheckpoint(it, a.stages.length, model)
    const used = new Map<string, Float32Array | Int32Array>()
    const destination = (stage: number) => (info: TensorInfo): Float32Array | Int32Array => {
      const key = `${stage}/${info.name}`
      const make = info.dtype === 'float32' ? Float32Array : Int32Array
      let a = this.buffers.get(key)
      if (!(a instanceof make) || a.byteLength !== info.byteLength) a = new make(info.byteLength / 4)
      used.set(key, a)
      return a
    }
    // one failed stage ends the others' pulls too: the checkpoint is abandoned either way
    const stop = new AbortController()
    try {
      await Promise.all(a.stages.map(async st => {
        const r = await fetchWeights(node, { donors: [{ peer: peerIdFromString(st.peers[0]) }], stage: st.stage, minIteration: it, includeOptimizer: true, timeoutMs: 600_000, signal: stop.signal, destination: destination(st.stage) })
        const state = stateFromTensorSet(r.tensors)
        // a later iteration's state is no checkpoint of `it` (the snapshot of `it` is gone)
        if (r.iteration !== it || state.meta.iteration !== it) throw new CoordinatorTimeoutError(`stage ${st.stage} served the state of iteration ${state.meta.iteration} (manifest: ${r.iteration}) for checkpoint ${it}`)
        await pending.putState(st.stage, state, { finiteChecked: true }) // fetchWeights refused any non-finite value
      }))
      const info = await pending.complete()
      this.buffers = used
      const ms = performance.now() - t0
      log.info(`checkpoint ${it} written in ${ms.toFixed(0)} ms`)
      await this.host.persist()
      this.host.checkpointDone({ iteration: it, outcome: 'written', ms, bytes: info.bytes ?? 0 })
    } catch (err) {
      stop.abort(err)
      // a pull that was cut off may still hold (and write into) its arrays: start afresh next time
      this.buffers = new Map()
      const reason = (err as Error).message
      log.info(`checkpoint ${it} abandoned: ${reason}; a later commit is checkpointed instead (up to ${MAX_RETRIES} retries per scheduled checkpoint)`)
      await pending.abandon(reason).catch(() => {})
      this.host.checkpointDone({ iteration: it, outcome: 'abandoned', ms: performance.now() - t0, bytes: 0, reason })
    }
  }
}

/**
 * Retries per scheduled checkpoint: a lasting fault costs MAX_RETRIES extra pulls per K iterations,
 * not one per iteration; three faults in a row on one checkpoint are rare even in the chaos soak.
 */
const MAX_RETRIES = 3

/** The newest scheduled checkpoint iteration at or below `it` (every K-th commit: K-1, 2K-1, ...), or -1. */
function lastScheduled (it: number, every: number): number {
  return Math.floor((it + 1) / every) * every - 1
}

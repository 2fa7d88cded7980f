/**
 * Sparse checkpoints, taken by the coordinator. This module alone decides which commits are
 * checkpoints (due()): every K-th, and the next commit after a stage's file of one was lost, so a
 * lost pull costs a few iterations of staleness rather than K more. The commit message says so
 * (`snapshot`), each stage keeps a snapshot of its parameters and optimizer state at that commit,
 * and this module pulls those snapshots over the weights protocol in the background (training does
 * not wait), one checkpoint after another, and writes them to the checkpoint store.
 *
 * Each stage's pull stands alone: a holder lost mid-pull costs its own stage's file, and the others
 * are written as a partial checkpoint (checkpoint-format.ts). A pull from a peer that stops holding
 * its stage (a recovery gave the stage to another peer) is cut off at once rather than left to hang
 * on a paused or dead peer: while it hung, no retry could start, and the soak restored a stage 12
 * iterations behind with a checkpoint every 10. The retry at a later commit pulls only the stages
 * whose newest file is older than the scheduled checkpoint: at the very next commit, again at the
 * next while it fails (up to MAX_RETRIES), then backing off; a stage given to another peer starts
 * afresh, because its new holder is a new chance. A checkpoint of which no stage arrived is abandoned.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { ModelConfig } from '../model/index.js'
import { createLog } from '../common/index.js'
import { stateFromTensorSet } from '../model/index.js'
import type { PeerLibp2p } from '../net/index.js'
import { fetchWeights } from '../net/index.js'
import type { Assignment, TensorInfo } from '../protocols/index.js'
import type { CheckpointInfo, CheckpointStore } from './checkpoint-store.js'
import { CheckpointPullCutError } from './checkpoint-errors.js'
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
  /** Told of every checkpoint written (whole or partial) or abandoned. */
  checkpointDone: (e: CheckpointEvent) => void
}

export class SparseCheckpoints {
  private readonly host: CheckpointHost
  /** Checkpoints being pulled in the background, chained so they run one at a time. */
  private queue?: Promise<void>
  /**
   * The arrays each stage's last checkpoint file was received into, reused by the next one: its
   * file is written by then, and the same shapes come back every time. Saves allocating (and
   * collecting) a checkpoint's worth of memory per checkpoint.
   */
  private buffers = new Map<number, Map<string, Float32Array | Int32Array>>()
  /** Per stage, its file of one scheduled checkpoint that did not arrive from one holder: when to try again. */
  private readonly misses = new Map<number, Miss>()
  /** Per stage, the pull in flight: from which peer, and how to cut it off. */
  private readonly pulls = new Map<number, { peer: string, stop: AbortController }>()
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
    // some stage's newest file is older than the last checkpoint scheduled: its holder was lost
    // mid-pull, or the coordinator died before writing it (the store says so after a restart too);
    // take this commit for those stages whose retry is due (retryable)
    const scheduled = lastScheduled(it, every)
    return scheduled >= 0 && this.retryable(scheduled, it).length > 0
  }

  /**
   * Stages behind `scheduled` whose retry is due at commit `it`: never tried since, tried from
   * another holder than today's, or past their backoff (the soak saw a scheduled checkpoint and its
   * one retry both cut off by faults, and a stage then restored 12 behind).
   */
  private retryable (scheduled: number, it: number): number[] {
    return this.behind(scheduled).filter(s => {
      const m = this.misses.get(s)
      return m == null || m.scheduled !== scheduled || m.holder !== this.holderOf(s) || it >= m.nextAt
    })
  }

  private holderOf (stage: number): string { return this.host.assignment?.stages[stage]?.peers[0] ?? '' }

  /** Stage `stage`'s file of commit `it` did not arrive from `holder`: when to try again. */
  private missed (stage: number, it: number, holder: string): void {
    const scheduled = lastScheduled(it, this.host.checkpointEvery)
    const m = this.misses.get(stage)
    const failed = m != null && m.scheduled === scheduled && m.holder === holder ? m.failed + 1 : 1
    // the scheduled pull and MAX_RETRIES retries at consecutive commits, then 4, 8, ... commits apart
    const nextAt = it + (failed <= MAX_RETRIES ? 1 : 2 ** (failed - MAX_RETRIES + 1))
    this.misses.set(stage, { scheduled, holder, failed, nextAt })
  }

  /**
   * A new assignment: a pull from a peer that no longer holds its stage is cut off (its stage's
   * file is taken again from the new holder at a later commit).
   */
  assignmentChanged (a: Assignment): void {
    for (const [stage, p] of this.pulls) {
      const now = a.stages[stage]?.peers[0]
      if (now !== p.peer) p.stop.abort(new CheckpointPullCutError(stage, p.peer, now ?? '', a.epoch))
    }
  }

  /** Stages of the current assignment whose newest checkpoint file is older than iteration `scheduled`. */
  private behind (scheduled: number): number[] {
    const { store, assignment: a } = this.host
    if (store == null || a == null) return []
    const S = a.stages.length
    return a.stages.map(st => st.stage).filter(s => (store.latestFor(s, S)?.iteration ?? -1) < scheduled)
  }

  /** Called once iteration `it` is committed with `snapshot` (due(it) when it was published): queues its checkpoint. */
  afterCommit (it: number, snapshot: boolean): void {
    if (!snapshot) return
    const every = this.host.checkpointEvery
    const retry = (it + 1) % every !== 0
    let stages = this.host.assignment?.stages.map(st => st.stage) ?? []
    if (retry) stages = this.retryable(lastScheduled(it, every), it)
    if (stages.length === 0) return
    // the snapshots of `it` are held by the peers holding the stages now, at the commit: a take
    // queued behind another one must not ask whoever holds them by the time it starts
    const a = this.host.assignment
    if (a == null) return
    const holders = new Map(stages.map(s => [s, a.stages[s].peers[0]]))
    this.taking = true
    const prev = this.queue ?? Promise.resolve()
    this.queue = prev.then(async () => { await this.take(it, holders) }).finally(() => { this.taking = false })
  }

  /** Waits for the queued checkpoints to be written (or abandoned). */
  async flush (): Promise<void> { await this.queue }

  /**
   * Pulls the snapshots of committed iteration `it` of `stages`, each on its own, and writes those
   * that arrived as one checkpoint (partial when some did not); abandons it when none did.
   */
  private async take (it: number, holders: Map<number, string>): Promise<void> {
    const { store, assignment: a, node, model } = this.host
    if (store == null || a == null) return
    const stages = [...holders.keys()]
    const t0 = performance.now()
    const pending = await store.beginCheckpoint(it, a.stages.length, model)
    const received = new Map<number, Map<string, Float32Array | Int32Array>>()
    const destination = (stage: number) => {
      const old = this.buffers.get(stage)
      const used = new Map<string, Float32Array | Int32Array>()
      received.set(stage, used)
      return (info: TensorInfo): Float32Array | Int32Array => {
        const make = info.dtype === 'float32' ? Float32Array : Int32Array
        let a = old?.get(info.name)
        if (!(a instanceof make) || a.byteLength !== info.byteLength) a = new make(info.byteLength / 4)
        used.set(info.name, a)
        return a
      }
    }
    const pullAndWrite = async (stage: number): Promise<void> => {
      const peer = holders.get(stage) as string
      const pull = { peer, stop: new AbortController() }
      // an assignment published since the commit (while this take waited its turn or opened its
      // files) moved the stage: its holder then is not asked, as assignmentChanged() would cut it
      const current = this.host.assignment
      const now = current?.stages[stage]?.peers[0]
      if (now !== peer) throw new CheckpointPullCutError(stage, peer, now ?? '', current?.epoch ?? -1)
      this.pulls.set(stage, pull)
      try {
        // cut off by assignmentChanged() when the stage moves to another peer
        const r = await fetchWeights(node, { donors: [{ peer: peerIdFromString(peer) }], stage, minIteration: it, includeOptimizer: true, timeoutMs: 600_000, signal: pull.stop.signal, destination: destination(stage) })
        const state = stateFromTensorSet(r.tensors)
        // a later iteration's state is no checkpoint of `it` (the snapshot of `it` is gone)
        if (r.iteration !== it || state.meta.iteration !== it) throw new CoordinatorTimeoutError(`stage ${stage} served the state of iteration ${state.meta.iteration} (manifest: ${r.iteration}) for checkpoint ${it}`)
        await pending.putState(stage, state, { finiteChecked: true }) // fetchWeights refused any non-finite value
      } finally {
        if (this.pulls.get(stage) === pull) this.pulls.delete(stage)
      }
    }
    // each stage on its own: a holder lost mid-pull costs its stage's file, not the others'
    const results = await Promise.allSettled(stages.map(pullAndWrite))
    const failures = stages.flatMap((s, i) => {
      const r = results[i]
      return r.status === 'rejected' ? [`stage ${s}: ${(r.reason as Error).message}`] : []
    })
    let written = stages.filter((_, i) => results[i].status === 'fulfilled')
    let reason = failures[0]
    let info: CheckpointInfo | undefined
    if (written.length > 0) {
      try {
        info = await pending.complete(undefined, { partial: true })
      } catch (err) {
        reason = `cannot complete it: ${(err as Error).message}`
        written = []
      }
    }
    for (const s of stages) {
      if (written.includes(s)) this.misses.delete(s)
      else this.missed(s, it, holders.get(s) as string)
    }
    // a pull that was cut off may still hold its arrays: only the written stages' are reused
    for (const s of stages) {
      const got = received.get(s)
      if (written.includes(s) && got != null) this.buffers.set(s, got)
      else this.buffers.delete(s)
    }
    const ms = performance.now() - t0
    if (info == null) {
      log.info(`checkpoint ${it} abandoned: ${failures.join('; ') || reason}; a later commit is checkpointed instead`)
      await pending.abandon(reason).catch((err: unknown) => { log.info(`checkpoint ${it}: cannot delete the abandoned checkpoint: ${(err as Error).message}`) })
      this.host.checkpointDone({ iteration: it, outcome: 'abandoned', stages, written: [], complete: false, ms, bytes: 0, reason })
      return
    }
    if (failures.length > 0) log.info(`checkpoint ${it} written without stage(s) ${stages.filter(s => !written.includes(s)).join(', ')} in ${ms.toFixed(0)} ms (${failures.join('; ')}); those are taken again at a later commit`)
    else log.info(`checkpoint ${it} written in ${ms.toFixed(0)} ms${info.complete ? '' : ` (stage(s) ${written.join(', ')})`}`)
    await this.host.persist()
    this.host.checkpointDone({ iteration: it, outcome: failures.length > 0 ? 'partial' : 'written', stages, written, complete: info.complete, ms, bytes: info.bytes ?? 0, ...(reason != null ? { reason } : {}) })
  }
}

/** A stage's file that did not arrive: of which scheduled checkpoint, from whom, how often, and the next commit to try. */
interface Miss { scheduled: number, holder: string, failed: number, nextAt: number }

/**
 * Retries at consecutive commits of a stage's file from one holder before backing off: a lasting
 * fault (a holder that cannot serve) then costs a pull every 4, 8, ... commits, not one per
 * commit; three faults in a row on one holder's pull are rare even in the chaos soak.
 */
const MAX_RETRIES = 3

/** The newest scheduled checkpoint iteration at or below `it` (every K-th commit: K-1, 2K-1, ...), or -1. */
function lastScheduled (it: number, every: number): number {
  return Math.floor((it + 1) / every) * every - 1
}

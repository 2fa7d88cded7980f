/**
 * A checkpoint being written. Stage snapshots arrive one by one in the background (the coordinator
 * pulls each from its peer), so writing goes through this handle: CheckpointStore.beginCheckpoint
 * -> `putStage` for every stage -> `complete`, which writes the manifest last. Every file is written
 * atomically (temp file, fsync, rename, fsync dir).
 */
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { createLog } from '../common/index.js'
import { assertFinite } from '../model/index.js'
import { decodeStageState, encodeStageStateParts, type StageState } from '../model/index.js'
import { CheckpointAbandonedError, CheckpointCorruptError, CheckpointIncompleteError, CheckpointIoError, CheckpointUsageError, errMessage, isAbort } from './checkpoint-errors.js'
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, crc32Hex, stageFileName, type CheckpointInfo, type CheckpointManifest, type ManifestFileEntry } from './checkpoint-format.js'
import { writeFileAtomic } from './fs-atomic.js'

const log = createLog('checkpoints')

export type PendingStatus = 'open' | 'completing' | 'complete' | 'abandoned'

/** What a pending checkpoint needs from its store. */
interface PendingHost {
  finish: (handle: PendingCheckpoint, manifest: CheckpointManifest) => Promise<CheckpointInfo>
  release: (handle: PendingCheckpoint) => void
}

/**
 * A checkpoint being written. Stage files may be put in any order and concurrently; `complete`
 * writes the manifest once every stage is in. Get one from CheckpointStore.beginCheckpoint.
 */
export class PendingCheckpoint {
  readonly iteration: number
  readonly stages: number
  /** The checkpoint's directory. */
  readonly dir: string
  private readonly modelConfig: unknown
  private readonly host: PendingHost
  private readonly files: Array<ManifestFileEntry | undefined>
  private readonly writing = new Set<number>()
  private readonly inflight = new Set<Promise<unknown>>()
  private readonly stop = new AbortController()
  private statusValue: PendingStatus = 'open'
  private abandonReason = ''

  /** @internal use CheckpointStore.beginCheckpoint */
  constructor (init: { iteration: number, stages: number, dir: string, modelConfig: unknown, host: PendingHost }) {
    this.iteration = init.iteration
    this.stages = init.stages
    this.dir = init.dir
    this.modelConfig = init.modelConfig
    this.host = init.host
    this.files = new Array(init.stages).fill(undefined)
  }

  get status (): PendingStatus { return this.statusValue }

  /** Stages whose file is written. */
  get received (): number[] {
    return this.files.flatMap((f, s) => f !== undefined ? [s] : [])
  }

  /** Stages still to put. */
  get missing (): number[] {
    return this.files.flatMap((f, s) => f === undefined ? [s] : [])
  }

  /**
   * Writes stage `stage`'s snapshot (encodeStageState bytes) atomically. The bytes are decoded first
   * (finite values required) so a bad snapshot is refused here, not discovered at restore time.
   */
  async putStage (stage: number, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    this.checkStage(stage)
    if (!(bytes instanceof Uint8Array)) throw new CheckpointUsageError(`checkpoint ${this.iteration}: stage ${stage} bytes must be a Uint8Array`, this.iteration)
    const file = stageFileName(stage)
    let iteration: number
    try {
      iteration = decodeStageState(bytes, { requireFinite: true }).meta.iteration
    } catch (err) {
      throw new CheckpointCorruptError(`checkpoint ${this.iteration}: snapshot for ${file} does not decode: ${errMessage(err)}`, { iteration: this.iteration, file, cause: err })
    }
    this.checkIteration(iteration, file)
    await this.writeStage(stage, [bytes], { stage, file, bytes: bytes.length, crc32: crc32Hex([bytes]) }, signal)
  }

  /**
   * Writes stage `stage`'s state as putStage(encodeStageState(state)) would, without building the
   * file in memory first: the header and the tensors' own bytes go out in one writev, summed as
   * they are. Non-finite values are refused (CheckpointCorruptError) as putStage refuses them,
   * unless `finiteChecked` says the caller has checked every value already (a state fetched over
   * the weights protocol has been: the fetch refuses a non-finite value as it arrives).
   */
  async putState (stage: number, state: StageState, opts: { signal?: AbortSignal, finiteChecked?: boolean } = {}): Promise<void> {
    const signal = opts.signal
    this.checkStage(stage)
    const file = stageFileName(stage)
    this.checkIteration(state.meta.iteration, file)
    let parts: Uint8Array[]
    try {
      if (opts.finiteChecked !== true) for (const [name, t] of state.tensors) if (t.dtype === 'F32') assertFinite(name, t.data as Float32Array)
      parts = encodeStageStateParts(state)
    } catch (err) {
      throw new CheckpointCorruptError(`checkpoint ${this.iteration}: snapshot for ${file} is not a valid stage state: ${errMessage(err)}`, { iteration: this.iteration, file, cause: err })
    }
    const bytes = parts.reduce((n, p) => n + p.byteLength, 0)
    await this.writeStage(stage, parts, { stage, file, bytes, crc32: crc32Hex(parts) }, signal)
  }

  /** A checkpoint of iteration `it` holds states that belong to `it`, nothing older or newer. */
  private checkIteration (stateIteration: number, file: string): void {
    if (stateIteration !== this.iteration) {
      throw new CheckpointCorruptError(`checkpoint ${this.iteration}: snapshot for ${file} is the state of iteration ${stateIteration}`, { iteration: this.iteration, file })
    }
  }

  private checkStage (stage: number): void {
    this.assertOpen()
    if (!Number.isInteger(stage) || stage < 0 || stage >= this.stages) {
      throw new CheckpointUsageError(`checkpoint ${this.iteration}: stage ${stage} out of range 0..${this.stages - 1}`, this.iteration)
    }
    if (this.files[stage] !== undefined || this.writing.has(stage)) {
      throw new CheckpointUsageError(`checkpoint ${this.iteration}: stage ${stage} was already put`, this.iteration)
    }
  }

  private async writeStage (stage: number, parts: readonly Uint8Array[], entry: ManifestFileEntry, signal?: AbortSignal): Promise<void> {
    const file = entry.file
    this.writing.add(stage)
    const task = this.track(writeFileAtomic(join(this.dir, file), parts, { signal: this.signalWith(signal) }))
    try {
      await task
    } catch (err) {
      throw this.writeFailure(err, file, signal)
    } finally {
      this.writing.delete(stage)
    }
    if (this.status === 'abandoned') throw new CheckpointAbandonedError(this.iteration, this.abandonReason)
    this.files[stage] = entry
  }

  /**
   * Writes the manifest, making the checkpoint count, then lets the store drop old checkpoints.
   * Waits for stage writes still in flight; throws CheckpointIncompleteError if a stage is missing
   * (the handle stays usable, so put the rest and call again), unless `partial`: then the manifest
   * lists the stages put so far (at least one), and the checkpoint serves the recovery of those.
   */
  async complete (signal?: AbortSignal, opts: { partial?: boolean } = {}): Promise<CheckpointInfo> {
    this.assertOpen()
    await Promise.allSettled([...this.inflight])
    this.assertOpen()
    const missing = this.missing
    if (missing.length === this.stages || (missing.length > 0 && opts.partial !== true)) throw new CheckpointIncompleteError(this.iteration, missing)
    const manifest: CheckpointManifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      iteration: this.iteration,
      stages: this.stages,
      createdAt: new Date().toISOString(),
      modelConfig: this.modelConfig,
      files: this.files.filter((f): f is ManifestFileEntry => f !== undefined)
    }
    this.statusValue = 'completing'
    try {
      await this.track(writeFileAtomic(join(this.dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n', { signal: this.signalWith(signal) }))
    } catch (err) {
      if (this.status === 'completing') this.statusValue = 'open'
      throw this.writeFailure(err, MANIFEST_FILE, signal)
    }
    // abandon() may have run while the manifest was being written
    if (this.status === 'abandoned') throw new CheckpointAbandonedError(this.iteration, this.abandonReason)
    this.statusValue = 'complete'
    return await this.host.finish(this, manifest)
  }

  /**
   * Stops writing and deletes the partial checkpoint. Waits for writes in flight to settle first.
   * A no-op once complete (use CheckpointStore.remove for that) or already abandoned.
   */
  async abandon (reason = 'abandoned by the caller'): Promise<void> {
    if (this.statusValue === 'complete' || this.statusValue === 'abandoned') return
    this.statusValue = 'abandoned'
    this.abandonReason = reason
    this.stop.abort(new CheckpointAbandonedError(this.iteration, reason))
    this.host.release(this)
    await Promise.allSettled([...this.inflight])
    try {
      await fs.rm(this.dir, { recursive: true, force: true, maxRetries: 3 })
    } catch (err) {
      // the directory has no manifest, so the next open() removes it anyway
      log.info(`warning: checkpoint ${this.iteration}: cannot remove ${this.dir}: ${errMessage(err)}`)
    }
    log('checkpoint %d abandoned: %s', this.iteration, reason)
  }

  private assertOpen (): void {
    if (this.statusValue === 'abandoned') throw new CheckpointAbandonedError(this.iteration, this.abandonReason)
    if (this.statusValue === 'complete') throw new CheckpointUsageError(`checkpoint ${this.iteration} is already complete`, this.iteration)
    if (this.statusValue === 'completing') throw new CheckpointUsageError(`checkpoint ${this.iteration} is being completed`, this.iteration)
  }

  private track<T> (p: Promise<T>): Promise<T> {
    this.inflight.add(p)
    const done = (): void => { this.inflight.delete(p) }
    p.then(done, done)
    return p
  }

  private signalWith (signal?: AbortSignal): AbortSignal {
    return signal === undefined ? this.stop.signal : AbortSignal.any([signal, this.stop.signal])
  }

  private writeFailure (err: unknown, file: string, signal?: AbortSignal): unknown {
    if (this.statusValue === 'abandoned') return new CheckpointAbandonedError(this.iteration, this.abandonReason)
    if (signal?.aborted === true || isAbort(err)) return err
    return new CheckpointIoError(`checkpoint ${this.iteration}: cannot write ${join(this.dir, file)}: ${errMessage(err)}`, { iteration: this.iteration, file, cause: err })
  }
}

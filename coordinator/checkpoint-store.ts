/**
 * The sparse-checkpoint store: a directory of checkpoints, one subdirectory each (the layout and
 * the manifest are in checkpoint-format.ts).
 *
 * Iteration 40 is the last committed iteration the checkpoint snapshots: a run resumed from it
 * starts with iteration 41. Every file is written atomically, and the manifest records each stage
 * file's size and CRC-32, so a load detects a flipped byte, a truncated or missing file and a
 * damaged manifest, and `loadNewestValid` falls back to the checkpoint before.
 *
 * A checkpoint is complete (every stage's file) or partial (some stages' files: the others' holders
 * were lost while it was pulled). `latest` and `loadNewestValid` read complete ones, the whole
 * model; `latestFor` and `loadNewestValidFor` the newest checkpoint holding one stage, which is what
 * a recovery of that stage restores. Retention keeps, for every stage, its newest `keep` files.
 *
 * Writing goes through a PendingCheckpoint handle (pending-checkpoint.ts). At most one checkpoint is
 * pending: beginning a new one abandons (deletes) the older pending one, which by then is stale
 * anyway. A directory without a manifest never counts and is removed by `open`.
 *
 * Reading a checkpoint and taking the tensors a stage of any layout needs is in checkpoint-load.ts.
 * This module re-exports the names of all four, so it remains the one place to import them from.
 */
import { promises as fs, type Dirent } from 'node:fs'
import { join } from 'node:path'
import { ConfigError } from '../common/index.js'
import { createLog } from '../common/index.js'
import type { StageState } from '../model/index.js'
import { CheckpointError, CheckpointIoError, CheckpointNotFoundError, CheckpointUsageError, errMessage, NoValidCheckpointError, type SkippedCheckpoint } from './checkpoint-errors.js'
import { CHECKPOINT_DIR_RE, checkpointDirName, checkpointInfo, holdsStage, MANIFEST_FILE, MAX_STAGES, readManifest, type CheckpointInfo, type CheckpointManifest } from './checkpoint-format.js'
import { metaFor, readCheckpoint, tensorsFor, type LoadedCheckpoint } from './checkpoint-load.js'
import { fsyncDir, isAtomicTemp } from './fs-atomic.js'
import { PendingCheckpoint } from './pending-checkpoint.js'

export {
  CheckpointAbandonedError,
  CheckpointCorruptError,
  CheckpointError,
  CheckpointFileMissingError,
  CheckpointIncompleteError,
  CheckpointIoError,
  CheckpointManifestError,
  CheckpointMissingTensorsError,
  CheckpointNotFoundError,
  CheckpointUsageError,
  NoValidCheckpointError,
  type SkippedCheckpoint
} from './checkpoint-errors.js'
export {
  checkpointDirName,
  holdsStage,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  stageFileName,
  type CheckpointInfo,
  type CheckpointManifest,
  type ManifestFileEntry
} from './checkpoint-format.js'
export { metaFor, tensorsFor, type LoadedCheckpoint, type TensorsForOptions } from './checkpoint-load.js'
export { PendingCheckpoint, type PendingStatus } from './pending-checkpoint.js'

const log = createLog('checkpoints')

export interface CheckpointStoreOptions {
  /** Directory holding the checkpoints; created by open(). */
  dir: string
  /**
   * Checkpoints kept per stage: one is deleted when a newer one completes and each stage it holds is
   * held by `keep` newer ones (and it is not among the newest `keep` complete ones). @default 3
   */
  keep?: number
}

export interface LoadStageOptions {
  /** Checkpoint to read. @default the newest valid one (see loadNewestValid) */
  iteration?: number
  /** Include the Adam moments. @default true */
  optimizer?: boolean
  signal?: AbortSignal
}

export class CheckpointStore {
  readonly dir: string
  readonly keep: number
  /** Checkpoints with a manifest, complete or partial, by iteration. */
  private readonly listed = new Map<number, CheckpointInfo>()
  private pending?: PendingCheckpoint
  private opened = false
  // serialises changes to the set of checkpoints (begin, retention, remove)
  private lock: Promise<void> = Promise.resolve()

  constructor (opts: CheckpointStoreOptions) {
    const keep = opts.keep ?? 3
    if (!Number.isInteger(keep) || keep < 1) throw new ConfigError(`checkpoint keep must be a positive integer, got ${String(keep)}`)
    if (typeof opts.dir !== 'string' || opts.dir === '') throw new ConfigError('checkpoint dir must be a non-empty path')
    this.dir = opts.dir
    this.keep = keep
  }

  /**
   * Creates the directory if needed and scans it: a checkpoint directory without a manifest (a
   * crash mid-write) is deleted, as are temp files left in complete ones. Retention is not applied
   * here (a store opened with a smaller `keep` deletes nothing until the next checkpoint completes).
   */
  async open (signal?: AbortSignal): Promise<void> {
    try {
      await fs.mkdir(this.dir, { recursive: true })
    } catch (err) {
      throw new CheckpointIoError(`cannot create checkpoint directory ${this.dir}: ${errMessage(err)}`, { cause: err })
    }
    let entries: Dirent[]
    try {
      entries = await fs.readdir(this.dir, { withFileTypes: true })
    } catch (err) {
      throw new CheckpointIoError(`cannot read checkpoint directory ${this.dir}: ${errMessage(err)}`, { cause: err })
    }
    this.listed.clear()
    for (const entry of entries) {
      signal?.throwIfAborted()
      const m = CHECKPOINT_DIR_RE.exec(entry.name)
      if (m == null || !entry.isDirectory()) continue
      const iteration = Number(m[1])
      const dir = join(this.dir, entry.name)
      if (!Number.isSafeInteger(iteration) || entry.name !== checkpointDirName(iteration)) {
        log.info(`warning: ignoring ${dir}: not a canonical checkpoint directory name`)
        continue
      }
      let names: string[]
      try {
        names = await fs.readdir(dir)
      } catch (err) {
        log.info(`warning: ignoring ${dir}: cannot read it: ${errMessage(err)}`)
        continue
      }
      if (!names.includes(MANIFEST_FILE)) {
        if (dir === this.pending?.dir) continue // ours, still being written (open() called again)
        log.info(`removing incomplete checkpoint ${iteration} (${dir} has no ${MANIFEST_FILE})`)
        await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 })
        continue
      }
      for (const n of names) if (isAtomicTemp(n)) await fs.rm(join(dir, n), { force: true })
      this.listed.set(iteration, await this.describe(iteration))
    }
    await fsyncDir(this.dir)
    this.opened = true
    log('opened %s: %d checkpoint(s)', this.dir, this.listed.size)
  }

  /** Checkpoints with a manifest, complete and partial, newest (highest iteration) first. */
  list (): CheckpointInfo[] {
    return [...this.listed.values()].sort((a, b) => b.iteration - a.iteration).map(c => ({ ...c, held: c.held?.slice() }))
  }

  /** The newest complete checkpoint (the whole model). */
  latest (): CheckpointInfo | undefined {
    return this.list().find(c => c.complete)
  }

  /** The newest checkpoint holding stage `stage` of a `stages`-stage layout (see holdsStage). */
  latestFor (stage: number, stages: number): CheckpointInfo | undefined {
    return this.list().find(c => holdsStage(c, stage, stages))
  }

  /** The checkpoint being written, if any. */
  get pendingCheckpoint (): PendingCheckpoint | undefined { return this.pending }

  /**
   * Starts checkpoint `iteration` of a `stages`-stage pipeline. A pending older checkpoint is
   * abandoned; an existing checkpoint of the same iteration is deleted first (it is being replaced).
   * `modelConfig` must be JSON-serialisable; it is stored in the manifest as is.
   */
  async beginCheckpoint (iteration: number, stages: number, modelConfig: unknown): Promise<PendingCheckpoint> {
    this.assertOpened()
    if (!Number.isSafeInteger(iteration) || iteration < 0) throw new CheckpointUsageError(`checkpoint iteration must be a non-negative integer, got ${String(iteration)}`)
    if (!Number.isInteger(stages) || stages < 1 || stages > MAX_STAGES) throw new CheckpointUsageError(`checkpoint ${iteration}: stages must be an integer in 1..${MAX_STAGES}, got ${String(stages)}`, iteration)
    let config: unknown
    try {
      const text = JSON.stringify(modelConfig)
      if (text === undefined) throw new Error('not a JSON value')
      config = JSON.parse(text)
    } catch (err) {
      throw new CheckpointUsageError(`checkpoint ${iteration}: modelConfig is not JSON-serialisable: ${errMessage(err)}`, iteration)
    }
    return await this.locked(async () => {
      const old = this.pending
      if (old !== undefined) {
        log.info(`checkpoint ${old.iteration} was still pending (missing stage(s) ${old.missing.join(', ') || 'none'}); abandoning it for checkpoint ${iteration}`)
        await old.abandon(`superseded by checkpoint ${iteration}`)
      }
      if (this.listed.has(iteration)) await this.removeLocked(iteration, 'replaced by a new checkpoint of the same iteration')
      const dir = this.checkpointDir(iteration)
      try {
        await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 })
        await fs.mkdir(dir)
      } catch (err) {
        throw new CheckpointIoError(`checkpoint ${iteration}: cannot create ${dir}: ${errMessage(err)}`, { iteration, cause: err })
      }
      await fsyncDir(this.dir)
      const handle = new PendingCheckpoint({
        iteration,
        stages,
        dir,
        modelConfig: config,
        host: {
          finish: async (h, manifest) => await this.finish(h, manifest),
          release: h => { if (this.pending === h) this.pending = undefined }
        }
      })
      this.pending = handle
      log('checkpoint %d begun (%d stages)', iteration, stages)
      return handle
    })
  }

  /** Deletes complete checkpoint `iteration` (manifest first, so a crash halfway leaves an incomplete one). */
  async remove (iteration: number): Promise<void> {
    this.assertOpened()
    await this.locked(async () => { await this.removeLocked(iteration, 'removed by the caller') })
  }

  /**
   * Reads checkpoint `iteration` (default: the newest complete one) and verifies it (see
   * readCheckpoint; `only` reads just those stages' files). Throws a CheckpointError subclass
   * naming the file at fault.
   */
  async load (iteration?: number, signal?: AbortSignal, only?: readonly number[]): Promise<LoadedCheckpoint> {
    this.assertOpened()
    const it = iteration ?? this.latest()?.iteration
    if (it === undefined) throw new CheckpointNotFoundError(`no complete checkpoint in ${this.dir}`)
    if (!this.listed.has(it)) throw new CheckpointNotFoundError(`no checkpoint of iteration ${it} in ${this.dir}`, it)
    return await readCheckpoint(this.checkpointDir(it), it, signal, only)
  }

  /**
   * Loads the newest complete checkpoint that verifies, falling back one at a time; each one
   * skipped is logged and listed with its reason. Throws NoValidCheckpointError when none
   * verifies (or there is none). Non-checkpoint errors (an abort) propagate.
   */
  async loadNewestValid (signal?: AbortSignal): Promise<LoadedCheckpoint & { skipped: SkippedCheckpoint[] }> {
    return await this.newestValid(this.list().filter(c => c.complete), undefined, signal)
  }

  /**
   * Like loadNewestValid, for one stage: loads the newest checkpoint holding stage `stage` of a
   * `stages`-stage layout that verifies, reading only that stage's file when it was written with
   * the same layout (all files otherwise, to re-cut them).
   */
  async loadNewestValidFor (stage: number, stages: number, signal?: AbortSignal): Promise<LoadedCheckpoint & { skipped: SkippedCheckpoint[] }> {
    return await this.newestValid(this.list().filter(c => holdsStage(c, stage, stages)), c => c.stages === stages ? [stage] : undefined, signal)
  }

  private async newestValid (candidates: CheckpointInfo[], only: ((c: CheckpointInfo) => number[] | undefined) | undefined, signal?: AbortSignal): Promise<LoadedCheckpoint & { skipped: SkippedCheckpoint[] }> {
    this.assertOpened()
    const skipped: SkippedCheckpoint[] = []
    for (const info of candidates) {
      try {
        const loaded = await this.load(info.iteration, signal, only?.(info))
        if (skipped.length > 0) log.info(`using checkpoint ${loaded.iteration} after skipping ${skipped.length} newer one(s)`)
        return { ...loaded, skipped }
      } catch (err) {
        if (!(err instanceof CheckpointError)) throw err
        log.info(`warning: skipping checkpoint ${info.iteration}: ${err.message}`)
        skipped.push({ iteration: info.iteration, reason: err.message, code: err.code })
      }
    }
    throw new NoValidCheckpointError(this.dir, skipped)
  }

  /**
   * State for stage `stageIndex` of the current layout, which owns the parameters `names` (for
   * example `stageSpecs(model, stageLayout(model, S, s)).map(p => p.name)`), from checkpoint
   * `opts.iteration` or the newest valid one. The checkpoint may have been written with another
   * stage count. Each call reads and verifies the whole checkpoint; to serve several stages, call
   * loadNewestValid once and use tensorsFor / metaFor.
   */
  async loadStage (stageIndex: number, names: string[], opts: LoadStageOptions = {}): Promise<{ iteration: number, state: StageState, skipped: SkippedCheckpoint[] }> {
    const ck = opts.iteration !== undefined
      ? { ...await this.load(opts.iteration, opts.signal), skipped: [] }
      : await this.loadNewestValid(opts.signal)
    const tensors = tensorsFor(names, ck, { optimizer: opts.optimizer, who: `stage ${stageIndex}` })
    return { iteration: ck.iteration, state: { tensors, meta: metaFor(ck, names) }, skipped: ck.skipped }
  }

  // -------------------------------------------------------------------------------------------

  private assertOpened (): void {
    if (!this.opened) throw new CheckpointUsageError(`checkpoint store ${this.dir} is not open (call open() first)`)
  }

  private async locked<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn)
    this.lock = run.then(() => {}, () => {})
    return await run
  }

  /** Listing details from the manifest; a manifest that does not parse leaves them undefined (load reports it). */
  private async describe (iteration: number): Promise<CheckpointInfo> {
    const dir = this.checkpointDir(iteration)
    try {
      return checkpointInfo(await readManifest(dir, iteration), dir)
    } catch (err) {
      log.info(`warning: checkpoint ${iteration}: ${errMessage(err)}`)
      return { iteration, dir, complete: true }
    }
  }

  /** The directory of checkpoint `iteration`. */
  private checkpointDir (iteration: number): string {
    return join(this.dir, checkpointDirName(iteration))
  }

  /** A pending checkpoint wrote its manifest: list it, drop rolled-back and surplus checkpoints. */
  private async finish (handle: PendingCheckpoint, manifest: CheckpointManifest): Promise<CheckpointInfo> {
    return await this.locked(async () => {
      if (this.pending === handle) this.pending = undefined
      const info = checkpointInfo(manifest, handle.dir)
      this.listed.set(info.iteration, info)
      log('checkpoint %d complete (%d stages, %d bytes)', info.iteration, info.stages, info.bytes)
      // Checkpoints of later iterations belong to a timeline that was rolled back past them
      // (otherwise this iteration would not be checkpointed again): they must not be resumed from.
      for (const it of [...this.listed.keys()]) {
        if (it > info.iteration) await this.removeLocked(it, `newer than checkpoint ${info.iteration}, from a rolled-back run`)
      }
      const kept = retained(this.list(), this.keep)
      for (const c of this.list()) if (!kept.has(c.iteration)) await this.removeLocked(c.iteration, `every stage it holds is held by ${this.keep} newer checkpoints`)
      return { ...info }
    })
  }

  private async removeLocked (iteration: number, why: string): Promise<void> {
    const dir = this.checkpointDir(iteration)
    try {
      await fs.rm(join(dir, MANIFEST_FILE), { force: true })
      await fsyncDir(dir)
    } catch (err) {
      log.info(`warning: cannot delete checkpoint ${iteration} (${why}): ${errMessage(err)}`)
      return
    }
    this.listed.delete(iteration)
    try {
      await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 })
    } catch (err) {
      // without a manifest it no longer counts; open() finishes the job
      log.info(`warning: checkpoint ${iteration}: cannot remove ${dir}: ${errMessage(err)}`)
    }
    log('deleted checkpoint %d (%s)', iteration, why)
  }
}

/**
 * The checkpoints retention keeps (by iteration) out of `all`, newest first: the newest `keep`
 * complete ones, and every one among the newest `keep` holders of some stage it holds. A stage whose
 * holder keeps failing mid-pull so keeps its last files while the other stages move on.
 */
export function retained (all: readonly CheckpointInfo[], keep: number): Set<number> {
  const kept = new Set(all.filter(c => c.complete).slice(0, keep).map(c => c.iteration))
  const holders = new Map<string, number>()
  for (const c of all) {
    for (const s of c.held ?? []) {
      const key = `${String(c.stages)}/${s}`
      const n = holders.get(key) ?? 0
      if (n < keep) kept.add(c.iteration)
      holders.set(key, n + 1)
    }
  }
  return kept
}

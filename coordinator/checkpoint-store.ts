/**
 * The sparse-checkpoint store: a directory of checkpoints, one subdirectory each.
 *
 *   <dir>/ckpt-0000000040/stage-0.safetensors   encodeStageState bytes: params, Adam moments, metadata
 *   <dir>/ckpt-0000000040/stage-1.safetensors
 *   <dir>/ckpt-0000000040/manifest.json         written last; its presence makes the checkpoint complete
 *
 * Iteration 40 is the last committed iteration the checkpoint snapshots: a run resumed from it
 * starts with iteration 41. Every file is written atomically (temp file, fsync, rename, fsync dir),
 * and the manifest records each stage file's size and sha256, so a load detects a flipped byte, a
 * truncated or missing file and a damaged manifest, and `loadNewestValid` falls back to the
 * checkpoint before.
 *
 * Stage snapshots arrive one by one in the background (the coordinator pulls each from its peer), so
 * writing goes through a handle: `beginCheckpoint` -> `putStage` for every stage -> `complete`. At
 * most one checkpoint is pending: beginning a new one abandons (deletes) the older pending one,
 * which by then is stale anyway. A directory without a manifest never counts and is removed by
 * `open`.
 *
 * Parameter names are global, so a checkpoint written with S stages serves any other split:
 * `tensorsFor` merges all stage files and picks the names a stage of the new layout owns.
 */
import { createHash } from 'node:crypto'
import { promises as fs, type Dirent } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, SpotpipeError } from '../model/errors.js'
import { createLog } from '../model/log.js'
import type { HostTensor, TensorSet } from '../model/safetensors.js'
import { decodeStageState, mergeTensorSets, OPTIM_M, OPTIM_V, type StageMeta, type StageState } from '../model/state.js'
import { fsyncDir, isAtomicTemp, writeFileAtomic } from './fs-atomic.js'

const log = createLog('checkpoints')

export const MANIFEST_FILE = 'manifest.json'
export const MANIFEST_FORMAT = 'spotpipe-checkpoint'
export const MANIFEST_VERSION = 1
const DIR_RE = /^ckpt-(\d+)$/
const ITERATION_DIGITS = 10
const MAX_STAGES = 4096
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
const LIST_LIMIT = 8

/** `ckpt-<iteration, zero-padded to 10 digits>`: directory names sort like iterations. */
export function checkpointDirName (iteration: number): string {
  return `ckpt-${String(iteration).padStart(ITERATION_DIGITS, '0')}`
}

export function stageFileName (stage: number): string {
  return `stage-${stage}.safetensors`
}

// ---------------------------------------------------------------------------------------------
// errors

/** Base of every checkpoint-store error; `iteration` and `file` name what was at fault when known. */
export class CheckpointError extends SpotpipeError {
  readonly iteration?: number
  readonly file?: string
  constructor (code: string, message: string, where: { iteration?: number, file?: string, cause?: unknown } = {}) {
    super(code, message, where.cause !== undefined ? { cause: where.cause } : undefined)
    this.iteration = where.iteration
    this.file = where.file
  }
}

/** A stage file's size or sha256 differs from the manifest, or its content does not decode. */
export class CheckpointCorruptError extends CheckpointError {
  constructor (message: string, where: { iteration?: number, file?: string, cause?: unknown }) { super('ERR_CHECKPOINT_CORRUPT', message, where) }
}

/** A file the checkpoint needs (stage file or manifest) does not exist. */
export class CheckpointFileMissingError extends CheckpointError {
  constructor (message: string, where: { iteration?: number, file?: string, cause?: unknown }) { super('ERR_CHECKPOINT_FILE_MISSING', message, where) }
}

/** The manifest is not valid JSON or lacks / misstates a field. */
export class CheckpointManifestError extends CheckpointError {
  constructor (message: string, where: { iteration?: number, file?: string, cause?: unknown }) { super('ERR_CHECKPOINT_MANIFEST', message, where) }
}

/** Reading or writing failed for a reason other than the file's content (permissions, disk full, ...). */
export class CheckpointIoError extends CheckpointError {
  constructor (message: string, where: { iteration?: number, file?: string, cause?: unknown }) { super('ERR_CHECKPOINT_IO', message, where) }
}

/** No complete checkpoint of the requested iteration is in the store. */
export class CheckpointNotFoundError extends CheckpointError {
  constructor (message: string, iteration?: number) { super('ERR_CHECKPOINT_NOT_FOUND', message, { iteration }) }
}

/** `complete()` was called before every stage was stored. */
export class CheckpointIncompleteError extends CheckpointError {
  readonly missing: number[]
  constructor (iteration: number, missing: number[]) {
    super('ERR_CHECKPOINT_INCOMPLETE', `checkpoint ${iteration}: cannot complete, stage(s) ${missing.join(', ')} not stored yet`, { iteration })
    this.missing = missing
  }
}

/** The pending checkpoint was abandoned (explicitly, or superseded by a newer one). */
export class CheckpointAbandonedError extends CheckpointError {
  constructor (iteration: number, why: string) { super('ERR_CHECKPOINT_ABANDONED', `checkpoint ${iteration} was abandoned (${why})`, { iteration }) }
}

/** The store or a handle was used the wrong way (not opened, bad stage index, stage stored twice, ...). */
export class CheckpointUsageError extends CheckpointError {
  constructor (message: string, iteration?: number) { super('ERR_CHECKPOINT_USAGE', message, { iteration }) }
}

/** A checkpoint lacks tensors a stage needs. */
export class CheckpointMissingTensorsError extends CheckpointError {
  readonly missing: string[]
  constructor (iteration: number, who: string, missing: string[]) {
    super('ERR_CHECKPOINT_MISSING_TENSORS', `checkpoint ${iteration} lacks ${missing.length} tensor(s) needed by ${who}: ${listHead(missing)}`, { iteration })
    this.missing = missing
  }
}

/** Every complete checkpoint failed verification (or there is none). `skipped` says why for each. */
export class NoValidCheckpointError extends CheckpointError {
  readonly skipped: SkippedCheckpoint[]
  constructor (dir: string, skipped: SkippedCheckpoint[]) {
    const detail = skipped.length === 0
      ? 'there is no complete checkpoint'
      : `all ${skipped.length} complete checkpoint(s) failed verification: ${skipped.map(s => `${s.iteration}: ${s.reason}`).join('; ')}`
    super('ERR_NO_CHECKPOINT', `no valid checkpoint in ${dir}: ${detail}`)
    this.skipped = skipped
  }
}

function listHead (items: string[]): string {
  const more = items.length > LIST_LIMIT ? `, ... ${items.length - LIST_LIMIT} more` : ''
  return items.slice(0, LIST_LIMIT).join(', ') + more
}

function errMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function isAbort (err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError'
}

// ---------------------------------------------------------------------------------------------
// types

export interface CheckpointStoreOptions {
  /** Directory holding the checkpoints; created by open(). */
  dir: string
  /** Complete checkpoints kept; older ones are deleted when a new one completes. @default 3 */
  keep?: number
}

export interface ManifestFileEntry {
  stage: number
  /** Base name inside the checkpoint directory. */
  file: string
  /** Size of the whole file. */
  bytes: number
  /** sha256 (hex) of the whole file. */
  sha256: string
}

export interface CheckpointManifest {
  format: typeof MANIFEST_FORMAT
  version: typeof MANIFEST_VERSION
  /** Last committed iteration the checkpoint snapshots. */
  iteration: number
  /** Pipeline stages it was written with. */
  stages: number
  /** ISO 8601 time the manifest was written. */
  createdAt: string
  /** Model configuration of the run, as given to beginCheckpoint (opaque here). */
  modelConfig: unknown
  files: ManifestFileEntry[]
}

/** A complete checkpoint as listed. Details are undefined when its manifest could not be read at open(). */
export interface CheckpointInfo {
  iteration: number
  /** Absolute or relative path of the checkpoint directory. */
  dir: string
  stages?: number
  /** Total size of the stage files. */
  bytes?: number
  createdAt?: string
}

/** A checkpoint read and verified. Its tensors are shared with tensorsFor results: treat them as read-only. */
export interface LoadedCheckpoint {
  iteration: number
  stages: number
  createdAt: string
  modelConfig: unknown
  /** Stage s of the writing layout at index s. */
  states: StageState[]
  /** Total size of the stage files. */
  bytes: number
}

export interface SkippedCheckpoint {
  iteration: number
  /** Why it was skipped, naming the file at fault. */
  reason: string
  /** The error code (ERR_CHECKPOINT_CORRUPT, ...). */
  code: string
}

export interface TensorsForOptions {
  /** Include the Adam moments `optim.m.<name>` and `optim.v.<name>`. @default true */
  optimizer?: boolean
  /** Who asks, for error messages. @default 'the requested layout' */
  who?: string
}

export interface LoadStageOptions {
  /** Checkpoint to read. @default the newest valid one (see loadNewestValid) */
  iteration?: number
  /** Include the Adam moments. @default true */
  optimizer?: boolean
  signal?: AbortSignal
}

// ---------------------------------------------------------------------------------------------
// reading a checkpoint's tensors for any layout

// Merged tensor sets, computed once per loaded checkpoint.
const merged = new WeakMap<StageState[], TensorSet>()

function mergedTensors (checkpoint: Pick<LoadedCheckpoint, 'iteration' | 'states'>): TensorSet {
  let set = merged.get(checkpoint.states)
  if (set === undefined) {
    try {
      set = mergeTensorSets(checkpoint.states.map(s => s.tensors))
    } catch (err) {
      throw new CheckpointCorruptError(`checkpoint ${checkpoint.iteration}: stage files disagree: ${errMessage(err)}`, { iteration: checkpoint.iteration, cause: err })
    }
    merged.set(checkpoint.states, set)
  }
  return set
}

/**
 * The tensors named `names` (parameter names; their Adam moments are added unless `optimizer` is
 * false), taken from all stage files of `checkpoint` merged. Works for any stage split, since names
 * are global. Throws CheckpointMissingTensorsError listing every name the checkpoint lacks.
 */
export function tensorsFor (names: string[], checkpoint: Pick<LoadedCheckpoint, 'iteration' | 'states'>, opts: TensorsForOptions = {}): TensorSet {
  const all = mergedTensors(checkpoint)
  const wanted: string[] = []
  for (const n of new Set(names)) {
    wanted.push(n)
    if (opts.optimizer ?? true) wanted.push(OPTIM_M + n, OPTIM_V + n)
  }
  const missing = wanted.filter(n => !all.has(n))
  if (missing.length > 0) throw new CheckpointMissingTensorsError(checkpoint.iteration, opts.who ?? 'the requested layout', missing)
  const out: TensorSet = new Map()
  for (const n of wanted) out.set(n, all.get(n) as HostTensor)
  return out
}

/**
 * Stage metadata (Adam step, lr scale, weight version, gradient norm) to load with `names`: the
 * meta of the stage file holding exactly those parameters when there is one (same split), else
 * stage 0's. In synchronous training every stage has taken the same number of Adam steps; a
 * disagreement is logged.
 */
export function metaFor (checkpoint: Pick<LoadedCheckpoint, 'iteration' | 'states'>, names?: string[]): StageMeta {
  const { states, iteration } = checkpoint
  if (states.length === 0) throw new CheckpointCorruptError(`checkpoint ${iteration} has no stages`, { iteration })
  const steps = states.map(s => s.meta.adamStep)
  if (steps.some(x => x !== steps[0])) {
    log.info(`warning: checkpoint ${iteration}: stages disagree on the Adam step (${steps.join(', ')}); using stage 0's (${steps[0]})`)
  }
  let pick = states[0]
  if (names !== undefined) {
    const want = new Set(names)
    const same = states.find(s => {
      const params = [...s.tensors.keys()].filter(n => !n.startsWith(OPTIM_M) && !n.startsWith(OPTIM_V))
      return params.length === want.size && params.every(n => want.has(n))
    })
    if (same !== undefined) pick = same
  }
  return { ...pick.meta }
}

// ---------------------------------------------------------------------------------------------
// manifest

function parseManifest (text: string, iteration: number, file: string): CheckpointManifest {
  const bad = (problem: string): CheckpointManifestError =>
    new CheckpointManifestError(`checkpoint ${iteration}: ${file}: ${problem}`, { iteration, file })
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw bad(`not valid JSON (${errMessage(err)})`)
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('not a JSON object')
  const m = raw as Record<string, unknown>
  if (m.format !== MANIFEST_FORMAT) throw bad(`field "format" is ${JSON.stringify(m.format)}, expected "${MANIFEST_FORMAT}"`)
  if (m.version !== MANIFEST_VERSION) throw bad(`field "version" is ${JSON.stringify(m.version)}, expected ${MANIFEST_VERSION}`)
  if (m.iteration !== iteration) throw bad(`field "iteration" is ${JSON.stringify(m.iteration)}, but the directory is for iteration ${iteration}`)
  const stages = m.stages
  if (typeof stages !== 'number' || !Number.isInteger(stages) || stages < 1 || stages > MAX_STAGES) {
    throw bad(`field "stages" is ${JSON.stringify(stages)}, expected an integer in 1..${MAX_STAGES}`)
  }
  if (typeof m.createdAt !== 'string' || Number.isNaN(Date.parse(m.createdAt))) throw bad(`field "createdAt" is ${JSON.stringify(m.createdAt)}, expected an ISO 8601 time`)
  if (!('modelConfig' in m)) throw bad('field "modelConfig" is missing')
  if (!Array.isArray(m.files)) throw bad('field "files" is not an array')
  if (m.files.length !== stages) throw bad(`field "files" lists ${m.files.length} file(s) for ${stages} stage(s)`)
  const files = m.files.map((f: unknown, s: number): ManifestFileEntry => {
    const at = `files[${s}]`
    if (f === null || typeof f !== 'object' || Array.isArray(f)) throw bad(`field "${at}" is not an object`)
    const e = f as Record<string, unknown>
    if (e.stage !== s) throw bad(`field "${at}.stage" is ${JSON.stringify(e.stage)}, expected ${s}`)
    // only the canonical name: a manifest must never point outside its directory
    if (e.file !== stageFileName(s)) throw bad(`field "${at}.file" is ${JSON.stringify(e.file)}, expected "${stageFileName(s)}"`)
    if (typeof e.bytes !== 'number' || !Number.isSafeInteger(e.bytes) || e.bytes < 8) throw bad(`field "${at}.bytes" is ${JSON.stringify(e.bytes)}, expected a byte count >= 8`)
    if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) throw bad(`field "${at}.sha256" is ${JSON.stringify(e.sha256)}, expected 64 lower-case hex digits`)
    return { stage: s, file: e.file, bytes: e.bytes, sha256: e.sha256 }
  })
  return { format: MANIFEST_FORMAT, version: MANIFEST_VERSION, iteration, stages, createdAt: m.createdAt, modelConfig: m.modelConfig, files }
}

function sha256 (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

// ---------------------------------------------------------------------------------------------
// pending checkpoint

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
    this.assertOpen()
    if (!Number.isInteger(stage) || stage < 0 || stage >= this.stages) {
      throw new CheckpointUsageError(`checkpoint ${this.iteration}: stage ${stage} out of range 0..${this.stages - 1}`, this.iteration)
    }
    if (this.files[stage] !== undefined || this.writing.has(stage)) {
      throw new CheckpointUsageError(`checkpoint ${this.iteration}: stage ${stage} was already put`, this.iteration)
    }
    if (!(bytes instanceof Uint8Array)) throw new CheckpointUsageError(`checkpoint ${this.iteration}: stage ${stage} bytes must be a Uint8Array`, this.iteration)
    const file = stageFileName(stage)
    try {
      decodeStageState(bytes, { requireFinite: true })
    } catch (err) {
      throw new CheckpointCorruptError(`checkpoint ${this.iteration}: snapshot for ${file} does not decode: ${errMessage(err)}`, { iteration: this.iteration, file, cause: err })
    }
    const entry: ManifestFileEntry = { stage, file, bytes: bytes.length, sha256: sha256(bytes) }
    this.writing.add(stage)
    const task = this.track(writeFileAtomic(join(this.dir, file), bytes, { signal: this.signalWith(signal) }))
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
   * Writes the manifest, making the checkpoint complete, then lets the store drop old checkpoints.
   * Waits for stage writes still in flight; throws CheckpointIncompleteError if a stage is missing
   * (the handle stays usable, so put the rest and call again).
   */
  async complete (signal?: AbortSignal): Promise<CheckpointInfo> {
    this.assertOpen()
    await Promise.allSettled([...this.inflight])
    this.assertOpen()
    const missing = this.missing
    if (missing.length > 0) throw new CheckpointIncompleteError(this.iteration, missing)
    const manifest: CheckpointManifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      iteration: this.iteration,
      stages: this.stages,
      createdAt: new Date().toISOString(),
      modelConfig: this.modelConfig,
      files: this.files as ManifestFileEntry[]
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

// ---------------------------------------------------------------------------------------------
// the store

export class CheckpointStore {
  readonly dir: string
  readonly keep: number
  private readonly complete = new Map<number, CheckpointInfo>()
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
    this.complete.clear()
    for (const entry of entries) {
      signal?.throwIfAborted()
      const m = DIR_RE.exec(entry.name)
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
      this.complete.set(iteration, await this.describe(iteration))
    }
    await fsyncDir(this.dir)
    this.opened = true
    log('opened %s: %d complete checkpoint(s)', this.dir, this.complete.size)
  }

  /** Complete checkpoints, newest (highest iteration) first. */
  list (): CheckpointInfo[] {
    return [...this.complete.values()].sort((a, b) => b.iteration - a.iteration).map(c => ({ ...c }))
  }

  latest (): CheckpointInfo | undefined {
    return this.list()[0]
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
      if (this.complete.has(iteration)) await this.removeLocked(iteration, 'replaced by a new checkpoint of the same iteration')
      const dir = join(this.dir, checkpointDirName(iteration))
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
   * Reads checkpoint `iteration` (default: the newest complete one) and verifies it: manifest
   * fields, every stage file's size and sha256, and that each decodes with finite values and the
   * stage files agree on shared names. Throws a CheckpointError subclass naming the file at fault.
   */
  async load (iteration?: number, signal?: AbortSignal): Promise<LoadedCheckpoint> {
    this.assertOpened()
    const it = iteration ?? this.latest()?.iteration
    if (it === undefined) throw new CheckpointNotFoundError(`no complete checkpoint in ${this.dir}`)
    if (!this.complete.has(it)) throw new CheckpointNotFoundError(`no complete checkpoint of iteration ${it} in ${this.dir}`, it)
    const manifest = await this.readManifest(it, signal)
    const dir = join(this.dir, checkpointDirName(it))
    const states: StageState[] = []
    let total = 0
    for (const f of manifest.files) {
      const path = join(dir, f.file)
      const where = { iteration: it, file: f.file }
      const bytes = await this.readFile(it, f.file, path, signal)
      if (bytes.length !== f.bytes) {
        const how = bytes.length < f.bytes ? 'truncated' : 'too long'
        throw new CheckpointCorruptError(`checkpoint ${it}: ${path}: ${how}: ${bytes.length} bytes, manifest says ${f.bytes}`, where)
      }
      const digest = sha256(bytes)
      if (digest !== f.sha256) {
        throw new CheckpointCorruptError(`checkpoint ${it}: ${path}: sha256 mismatch: file hashes to ${digest}, manifest says ${f.sha256}`, where)
      }
      try {
        states.push(decodeStageState(bytes, { requireFinite: true }))
      } catch (err) {
        throw new CheckpointCorruptError(`checkpoint ${it}: ${path}: does not decode: ${errMessage(err)}`, { ...where, cause: err })
      }
      total += bytes.length
    }
    const loaded: LoadedCheckpoint = { iteration: it, stages: manifest.stages, createdAt: manifest.createdAt, modelConfig: manifest.modelConfig, states, bytes: total }
    mergedTensors(loaded) // stage files that disagree on a shared name make the checkpoint invalid
    return loaded
  }

  /**
   * Loads the newest complete checkpoint that verifies, falling back one at a time; each one
   * skipped is logged and listed with its reason. Throws NoValidCheckpointError when none
   * verifies (or there is none). Non-checkpoint errors (an abort) propagate.
   */
  async loadNewestValid (signal?: AbortSignal): Promise<LoadedCheckpoint & { skipped: SkippedCheckpoint[] }> {
    this.assertOpened()
    const skipped: SkippedCheckpoint[] = []
    for (const info of this.list()) {
      try {
        const loaded = await this.load(info.iteration, signal)
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
    const dir = join(this.dir, checkpointDirName(iteration))
    try {
      const m = await this.readManifest(iteration)
      return { iteration, dir, stages: m.stages, bytes: m.files.reduce((a, f) => a + f.bytes, 0), createdAt: m.createdAt }
    } catch (err) {
      log.info(`warning: checkpoint ${iteration}: ${errMessage(err)}`)
      return { iteration, dir }
    }
  }

  private async readFile (iteration: number, file: string, path: string, signal?: AbortSignal): Promise<Uint8Array> {
    try {
      return await fs.readFile(path, { signal })
    } catch (err) {
      if (isAbort(err)) throw err
      const where = { iteration, file, cause: err }
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointFileMissingError(`checkpoint ${iteration}: ${path} is missing`, where)
      throw new CheckpointIoError(`checkpoint ${iteration}: cannot read ${path}: ${errMessage(err)}`, where)
    }
  }

  private async readManifest (iteration: number, signal?: AbortSignal): Promise<CheckpointManifest> {
    const path = join(this.dir, checkpointDirName(iteration), MANIFEST_FILE)
    let size: number
    try {
      size = (await fs.stat(path)).size
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new CheckpointFileMissingError(`checkpoint ${iteration}: ${path} is missing`, { iteration, file: MANIFEST_FILE, cause: err })
      }
      throw new CheckpointIoError(`checkpoint ${iteration}: cannot read ${path}: ${errMessage(err)}`, { iteration, file: MANIFEST_FILE, cause: err })
    }
    if (size > MAX_MANIFEST_BYTES) {
      throw new CheckpointManifestError(`checkpoint ${iteration}: ${path}: ${size} bytes, larger than any manifest (limit ${MAX_MANIFEST_BYTES})`, { iteration, file: MANIFEST_FILE })
    }
    const bytes = await this.readFile(iteration, MANIFEST_FILE, path, signal)
    let text: string
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    } catch {
      throw new CheckpointManifestError(`checkpoint ${iteration}: ${path}: not valid UTF-8`, { iteration, file: MANIFEST_FILE })
    }
    return parseManifest(text, iteration, path)
  }

  /** A pending checkpoint wrote its manifest: list it, drop rolled-back and surplus checkpoints. */
  private async finish (handle: PendingCheckpoint, manifest: CheckpointManifest): Promise<CheckpointInfo> {
    return await this.locked(async () => {
      if (this.pending === handle) this.pending = undefined
      const info: CheckpointInfo = {
        iteration: manifest.iteration,
        dir: handle.dir,
        stages: manifest.stages,
        bytes: manifest.files.reduce((a, f) => a + f.bytes, 0),
        createdAt: manifest.createdAt
      }
      this.complete.set(info.iteration, info)
      log('checkpoint %d complete (%d stages, %d bytes)', info.iteration, info.stages, info.bytes)
      // Checkpoints of later iterations belong to a timeline that was rolled back past them
      // (otherwise this iteration would not be checkpointed again): they must not be resumed from.
      for (const it of [...this.complete.keys()]) {
        if (it > info.iteration) await this.removeLocked(it, `newer than checkpoint ${info.iteration}, from a rolled-back run`)
      }
      const surplus = this.list().slice(this.keep)
      for (const c of surplus) await this.removeLocked(c.iteration, `beyond the newest ${this.keep}`)
      return { ...info }
    })
  }

  private async removeLocked (iteration: number, why: string): Promise<void> {
    const dir = join(this.dir, checkpointDirName(iteration))
    try {
      await fs.rm(join(dir, MANIFEST_FILE), { force: true })
      await fsyncDir(dir)
    } catch (err) {
      log.info(`warning: cannot delete checkpoint ${iteration} (${why}): ${errMessage(err)}`)
      return
    }
    this.complete.delete(iteration)
    try {
      await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 })
    } catch (err) {
      // without a manifest it no longer counts; open() finishes the job
      log.info(`warning: checkpoint ${iteration}: cannot remove ${dir}: ${errMessage(err)}`)
    }
    log('deleted checkpoint %d (%s)', iteration, why)
  }
}

/**
 * The checkpoint store's typed errors. Every one is a CheckpointError with a stable `code`, and
 * names the checkpoint (`iteration`) and the file at fault when known.
 */
import { SpotpipeError } from '../common/index.js'

const LIST_LIMIT = 8

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

/** A stage file's size or checksum differs from the manifest, or its content does not decode. */
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

/** A checkpoint loadNewestValid passed over, and why. */
export interface SkippedCheckpoint {
  iteration: number
  /** Why it was skipped, naming the file at fault. */
  reason: string
  /** The error code (ERR_CHECKPOINT_CORRUPT, ...). */
  code: string
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

/** The message of anything thrown. */
export function errMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** True for the error an aborted AbortSignal makes a read or write throw. */
export function isAbort (err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError'
}

/** A checkpoint pull was cut off: the stage moved to another peer while it was being pulled. */
export class CheckpointPullCutError extends CheckpointError {
  readonly stage: number
  constructor (stage: number, from: string, to: string, epoch: number) {
    super('ERR_CHECKPOINT_PULL_CUT', `the pull of stage ${stage} from ${from.slice(-8)} was cut off: epoch ${epoch} gives the stage to ${to === '' ? 'no peer' : to.slice(-8)}`)
    this.stage = stage
  }
}

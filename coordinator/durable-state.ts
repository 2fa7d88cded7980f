/**
 * The coordinator's durable truth: cluster and run ids, epoch, last committed iteration, the last
 * assignment, the checkpoints on disk and the recovery history. Saved as indented JSON (readable
 * and diffable) after every change, atomically (temp file, fsync, rename), so a crash leaves either
 * the previous state or the new one. Loading validates every field strictly and names the first
 * bad one, so a damaged file stops a restart instead of resuming a wrong run.
 */
import { promises as fs } from 'node:fs'
import { dirname } from 'node:path'
import { SpotpipeError } from '../common/index.js'
import { createLog } from '../common/index.js'
import { removeStaleTemps, writeFileAtomic } from './fs-atomic.js'

const log = createLog('coordinator:state')

export const STATE_VERSION = 1
const MAX_JSON_DEPTH = 64

/** One recovery as persisted. Fields beyond the listed ones (epoch, donors, ...) are kept as they are. */
export interface RecoveryRecord {
  /** What triggered it (crash, notice, stream break, ...). */
  cause: string
  /** Ladder rung used (checkfree, checkpoint, ...). */
  rung: string
  stage: number
  /** Peers involved: lost, target and donors. */
  peers: string[]
  /** Bytes moved to rebuild the stage. */
  bytes: number
  detectMs: number
  transferMs: number
  rebuildMs: number
  resumeMs: number
  /** Unix time in ms. */
  at: number
  /** Epoch the recovery opened, when recorded. */
  epoch?: number
  /** Iteration that was redone, when recorded. */
  iteration?: number
  [extra: string]: unknown
}

export interface CoordinatorState {
  version: typeof STATE_VERSION
  clusterId: string
  runId: string
  /**
   * The highest epoch used: saved before an assignment under it is published, so a restarted
   * coordinator never reuses one. It may be above `assignment`'s epoch (one published, not yet taken).
   */
  epoch: number
  /** Last committed iteration; -1 before the first commit. */
  committedIteration: number
  /** The last Assignment message (null before the first); saved once taken, so `epoch` may be ahead of it. */
  assignment: unknown
  /** Iterations of the checkpoints on disk, complete and partial (informational: the store reads its own manifests). */
  checkpoints: number[]
  recoveries: RecoveryRecord[]
  /** Model configuration of the run (opaque JSON). */
  model: unknown
  /** Training configuration of the run (opaque JSON). */
  train: unknown
}

// ---------------------------------------------------------------------------------------------
// errors

/** Base of the durable-state errors; `path` is the state file. */
export class DurableStateError extends SpotpipeError {
  readonly path: string
  constructor (code: string, path: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.path = path
  }
}

/** The file (or a state given to save) is not valid: `field` names the first bad field ('' for the whole file). */
export class MalformedStateError extends DurableStateError {
  readonly field: string
  constructor (path: string, field: string, problem: string) {
    super('ERR_STATE_MALFORMED', path, `${path}: ${field === '' ? '' : `field "${field}" `}${problem}`)
    this.field = field
  }
}

/** The file could not be read or written. */
export class StateIoError extends DurableStateError {
  constructor (path: string, message: string, cause: unknown) {
    super('ERR_STATE_IO', path, `${path}: ${message}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
  }
}

// ---------------------------------------------------------------------------------------------
// validation

const TOP_KEYS = ['version', 'clusterId', 'runId', 'epoch', 'committedIteration', 'assignment', 'checkpoints', 'recoveries', 'model', 'train'] as const
const RECOVERY_NUMBERS = ['bytes', 'detectMs', 'transferMs', 'rebuildMs', 'resumeMs', 'at'] as const

function isRecord (x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x)
}

function show (x: unknown): string {
  if (x === undefined) return 'undefined'
  if (typeof x === 'number' && !Number.isFinite(x)) return String(x)
  const s = JSON.stringify(x) ?? typeof x
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

/** Rejects what JSON would silently change or drop: typed arrays, Maps, bigints, NaN, ... */
function checkJson (value: unknown, field: string, fail: (field: string, problem: string) => Error, depth = 0): void {
  if (depth > MAX_JSON_DEPTH) throw fail(field, `nests deeper than ${MAX_JSON_DEPTH} levels`)
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw fail(field, `is ${value}, which JSON cannot hold`)
    return
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => { checkJson(v, `${field}[${i}]`, fail, depth + 1) })
    return
  }
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) throw fail(field, `is a ${(value as object).constructor?.name ?? 'non-plain object'}, not plain JSON`)
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) checkJson(v, field === '' ? k : `${field}.${k}`, fail, depth + 1)
    }
    return
  }
  throw fail(field, `is a ${typeof value}, not JSON`)
}

/**
 * Checks that `value` is a CoordinatorState and returns it typed. `source` (the file) names where
 * it came from in the MalformedStateError.
 */
export function validateCoordinatorState (value: unknown, source: string): CoordinatorState {
  const fail = (field: string, problem: string): MalformedStateError => new MalformedStateError(source, field, problem)
  if (!isRecord(value)) throw fail('', 'does not hold a JSON object')
  for (const k of Object.keys(value)) {
    if (!(TOP_KEYS as readonly string[]).includes(k)) throw fail(k, 'is not a coordinator state field')
  }
  for (const k of TOP_KEYS) if (!(k in value) || value[k] === undefined) throw fail(k, 'is missing')

  const v = value
  if (v.version !== STATE_VERSION) {
    throw fail('version', typeof v.version === 'number' && v.version > STATE_VERSION
      ? `is ${v.version}: written by a newer spotpipe (this one reads version ${STATE_VERSION})`
      : `is ${show(v.version)}, expected ${STATE_VERSION}`)
  }
  for (const k of ['clusterId', 'runId'] as const) {
    if (typeof v[k] !== 'string' || v[k] === '') throw fail(k, `must be a non-empty string, got ${show(v[k])}`)
  }
  const int = (field: string, x: unknown, min: number): void => {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min) throw fail(field, `must be an integer >= ${min}, got ${show(x)}`)
  }
  int('epoch', v.epoch, 0)
  int('committedIteration', v.committedIteration, -1)
  for (const k of ['assignment', 'model', 'train'] as const) {
    if (v[k] !== null && !isRecord(v[k])) throw fail(k, `must be an object or null, got ${show(v[k])}`)
    checkJson(v[k], k, fail)
  }

  if (!Array.isArray(v.checkpoints)) throw fail('checkpoints', `must be an array of iterations, got ${show(v.checkpoints)}`)
  const seen = new Set<number>()
  v.checkpoints.forEach((c: unknown, i: number) => {
    int(`checkpoints[${i}]`, c, 0)
    if (seen.has(c as number)) throw fail(`checkpoints[${i}]`, `repeats iteration ${c as number}`)
    seen.add(c as number)
  })

  if (!Array.isArray(v.recoveries)) throw fail('recoveries', `must be an array, got ${show(v.recoveries)}`)
  v.recoveries.forEach((r: unknown, i: number) => {
    const at = `recoveries[${i}]`
    if (!isRecord(r)) throw fail(at, `must be an object, got ${show(r)}`)
    for (const k of ['cause', 'rung'] as const) {
      if (typeof r[k] !== 'string' || r[k] === '') throw fail(`${at}.${k}`, `must be a non-empty string, got ${show(r[k])}`)
    }
    int(`${at}.stage`, r.stage, 0)
    if (!Array.isArray(r.peers) || !r.peers.every(p => typeof p === 'string')) throw fail(`${at}.peers`, `must be an array of peer ids, got ${show(r.peers)}`)
    for (const k of RECOVERY_NUMBERS) {
      const x = r[k]
      if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw fail(`${at}.${k}`, `must be a non-negative number, got ${show(x)}`)
    }
    for (const k of ['epoch', 'iteration'] as const) if (r[k] !== undefined) int(`${at}.${k}`, r[k], 0)
    checkJson(r, at, fail)
  })
  return v as unknown as CoordinatorState
}

function deepFreeze<T> (x: T): T {
  if (x !== null && typeof x === 'object') {
    for (const v of Object.values(x)) deepFreeze(v)
    Object.freeze(x)
  }
  return x
}

// ---------------------------------------------------------------------------------------------
// the file

/** The state file at `path` and the last state saved to or loaded from it. */
export class DurableState {
  readonly path: string
  private current?: CoordinatorState
  // saves run one after another, so the file ends with the last one asked for
  private queue: Promise<void> = Promise.resolve()

  /** A handle on `path`; nothing is read or written until load / save. */
  constructor (path: string, state?: CoordinatorState) {
    this.path = path
    if (state !== undefined) this.current = deepFreeze(JSON.parse(serialize(state, path)) as CoordinatorState)
  }

  /** The last state saved or loaded (deeply frozen: build a new object to change it). */
  get state (): CoordinatorState | undefined { return this.current }

  /**
   * Reads and validates the state at `path`; undefined when the file does not exist. Temp files a
   * crashed save left next to it are removed. Throws MalformedStateError or StateIoError.
   */
  static async load (path: string, signal?: AbortSignal): Promise<DurableState | undefined> {
    let bytes: Uint8Array | undefined
    try {
      bytes = await fs.readFile(path, { signal })
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new StateIoError(path, 'cannot read the coordinator state', err)
    }
    try {
      const stale = await removeStaleTemps(path)
      if (stale.length > 0) log.info(`removed ${stale.length} temp file(s) an interrupted save left next to ${path}`)
    } catch (err) {
      log.info(`warning: cannot remove stale temp files next to ${path}: ${(err as Error).message}`)
    }
    if (bytes === undefined) return undefined
    let text: string
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    } catch {
      throw new MalformedStateError(path, '', 'is not valid UTF-8')
    }
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch (err) {
      throw new MalformedStateError(path, '', `is not valid JSON (${(err as Error).message})`)
    }
    const ds = new DurableState(path)
    ds.current = deepFreeze(validateCoordinatorState(raw, path))
    return ds
  }

  /**
   * Validates `state` and replaces the file atomically (creating its directory if needed). The
   * state is captured when called; concurrent saves are written in call order. On an error or abort
   * the file keeps its previous content.
   */
  async save (state: CoordinatorState, signal?: AbortSignal): Promise<void> {
    const text = serialize(state, this.path)
    const next = deepFreeze(JSON.parse(text) as CoordinatorState)
    const run = this.queue.then(async () => {
      signal?.throwIfAborted()
      try {
        await fs.mkdir(dirname(this.path), { recursive: true })
        await writeFileAtomic(this.path, text, { signal })
      } catch (err) {
        if (signal?.aborted === true || (err as Error).name === 'AbortError') throw err
        throw new StateIoError(this.path, 'cannot write the coordinator state', err)
      }
      this.current = next
    })
    this.queue = run.catch(() => {})
    await run
  }
}

/** Validated, indented JSON of `state`. */
function serialize (state: CoordinatorState, path: string): string {
  const v = validateCoordinatorState(state, path)
  // fixed key order, so successive files diff cleanly
  const ordered: Record<string, unknown> = {}
  for (const k of TOP_KEYS) ordered[k] = v[k]
  return JSON.stringify(ordered, null, 2) + '\n'
}

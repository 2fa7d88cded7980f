/**
 * A checkpoint on disk: the directory and file names, the manifest and its validation, and reading
 * a checkpoint's files with typed errors.
 *
 *   <dir>/ckpt-0000000040/stage-0.safetensors   encodeStageState bytes: params, Adam moments, metadata
 *   <dir>/ckpt-0000000040/stage-1.safetensors
 *   <dir>/ckpt-0000000040/manifest.json         written last; its presence makes the checkpoint complete
 *
 * The manifest records each stage file's size and CRC-32, so a load detects a flipped byte, a
 * truncated or missing file and a damaged manifest. (Manifest version 1 recorded a sha256; such
 * checkpoints still load. A CRC-32 catches every burst error up to 32 bits and any other damage but
 * for one in 2^32, which is what a checksum against disk and copy errors is for; nobody outside the
 * coordinator writes this directory. It costs a quarter of a sha256: ~6 vs ~25 ms per 20 MB
 * checkpoint, paid on the coordinator every checkpoint.) *
 * Manifest version 3 has the same layout as 2; it says the stage files record the iteration their
 * state belongs to (`spotpipe.iteration`), which must equal the checkpoint's. The stage files of
 * versions 1 and 2 recorded only an optimizer step count: they take the manifest's iteration.
 *
 * Manifest version 4 may be *partial*: `files` lists the stages whose snapshot arrived, in stage
 * order, and `stages` still gives the pipeline's stage count. A holder killed while the coordinator
 * pulled its snapshot costs that stage's file, not the other stages' (the chaos suite lost whole
 * checkpoints that way, and stages were restored a checkpoint older than they needed to be). A
 * partial checkpoint serves a recovery of a stage it holds; reading the whole model (export, a
 * divergence rollback, checkpoint-whole) needs a complete one.
 */
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { crcHex, tensorCrc } from '../net/index.js'
import { CheckpointFileMissingError, CheckpointIoError, CheckpointManifestError, errMessage, isAbort } from './checkpoint-errors.js'

export const MANIFEST_FILE = 'manifest.json'
export const MANIFEST_FORMAT = 'spotpipe-checkpoint'
/**
 * The version written. Still read: version 1 (a sha256 per file instead of a CRC-32) and 2 (stage
 * files without `spotpipe.iteration`).
 */
export const MANIFEST_VERSION = 4
const READABLE_VERSIONS: readonly number[] = [1, 2, 3, 4]
/** First manifest version that may list a subset of the stages (a partial checkpoint). */
export const PARTIAL_VERSION = 4
/** First manifest version whose stage files record their iteration themselves. */
export const ITERATION_IN_FILES_VERSION = 3
/** Matches a checkpoint directory's name; group 1 is the iteration. */
export const CHECKPOINT_DIR_RE = /^ckpt-(\d+)$/
/** Most stages a checkpoint may have. */
export const MAX_STAGES = 4096
const ITERATION_DIGITS = 10
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

/** `ckpt-<iteration, zero-padded to 10 digits>`: directory names sort like iterations. */
export function checkpointDirName (iteration: number): string {
  return `ckpt-${String(iteration).padStart(ITERATION_DIGITS, '0')}`
}

export function stageFileName (stage: number): string {
  return `stage-${stage}.safetensors`
}

export interface ManifestFileEntry {
  stage: number
  /** Base name inside the checkpoint directory. */
  file: string
  /** Size of the whole file. */
  bytes: number
  /** CRC-32 (8 hex digits) of the whole file; what manifest versions 2 and 3 record. */
  crc32?: string
  /** sha256 (hex) of the whole file; what manifest version 1 recorded instead. */
  sha256?: string
}

export interface CheckpointManifest {
  format: typeof MANIFEST_FORMAT
  /** MANIFEST_VERSION when written; 1 or 2 for a checkpoint written by an older spotpipe. */
  version: number
  /** Last committed iteration the checkpoint snapshots. */
  iteration: number
  /** Pipeline stages it was written with. */
  stages: number
  /** ISO 8601 time the manifest was written. */
  createdAt: string
  /** Model configuration of the run, as given to beginCheckpoint (opaque here). */
  modelConfig: unknown
  /** The stage files it holds, in stage order: every stage, or (version 4) a partial checkpoint's subset. */
  files: ManifestFileEntry[]
}

/** A complete checkpoint as listed. Details are undefined when its manifest could not be read at open(). */
export interface CheckpointInfo {
  iteration: number
  /** Absolute or relative path of the checkpoint directory. */
  dir: string
  stages?: number
  /** Stages whose file it holds, ascending; undefined when its manifest could not be read. */
  held?: number[]
  /** It holds every stage's file (a whole model); false for a partial one. Also true when its manifest could not be read (loading it reports why). */
  complete: boolean
  /** Total size of the stage files. */
  bytes?: number
  createdAt?: string
}

/** Whether checkpoint `c` holds stage `stage` of a `stages`-stage layout: a complete one holds every stage of any layout, a partial one only its own stages of its own layout. */
export function holdsStage (c: CheckpointInfo, stage: number, stages: number): boolean {
  if (c.held === undefined) return false
  if (c.complete) return true
  return c.stages === stages && c.held.includes(stage)
}

/** The listing of checkpoint directory `dir`, from its manifest. */
export function checkpointInfo (manifest: CheckpointManifest, dir: string): CheckpointInfo {
  return {
    iteration: manifest.iteration,
    dir,
    stages: manifest.stages,
    held: manifest.files.map(f => f.stage),
    complete: manifest.files.length === manifest.stages,
    bytes: manifest.files.reduce((a, f) => a + f.bytes, 0),
    createdAt: manifest.createdAt
  }
}

/** CRC-32 of the concatenation of `parts`, as 8 hex digits (the weights protocol's checksum, continued over the parts). */
export function crc32Hex (parts: readonly Uint8Array[]): string {
  return crcHex(parts.reduce((crc, p) => tensorCrc(p, crc), 0))
}

/** Compares file `bytes` with its manifest entry's checksum: undefined when they match, else what differs. */
export function checksumMismatch (entry: ManifestFileEntry, bytes: Uint8Array): string | undefined {
  if (entry.crc32 !== undefined) {
    const actual = crc32Hex([bytes])
    return actual === entry.crc32 ? undefined : `CRC-32 mismatch: file sums to ${actual}, manifest says ${entry.crc32}`
  }
  const actual = createHash('sha256').update(bytes).digest('hex')
  return actual === entry.sha256 ? undefined : `sha256 mismatch: file hashes to ${actual}, manifest says ${String(entry.sha256)}`
}

/** Validates manifest `text` of checkpoint `iteration`; `file` names it in errors. */
export function parseManifest (text: string, iteration: number, file: string): CheckpointManifest {
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
  const version = m.version
  if (typeof version !== 'number' || !READABLE_VERSIONS.includes(version)) throw bad(`field "version" is ${JSON.stringify(version)}, expected one of ${READABLE_VERSIONS.join(', ')}`)
  if (m.iteration !== iteration) throw bad(`field "iteration" is ${JSON.stringify(m.iteration)}, but the directory is for iteration ${iteration}`)
  const stages = m.stages
  if (typeof stages !== 'number' || !Number.isInteger(stages) || stages < 1 || stages > MAX_STAGES) {
    throw bad(`field "stages" is ${JSON.stringify(stages)}, expected an integer in 1..${MAX_STAGES}`)
  }
  if (typeof m.createdAt !== 'string' || Number.isNaN(Date.parse(m.createdAt))) throw bad(`field "createdAt" is ${JSON.stringify(m.createdAt)}, expected an ISO 8601 time`)
  if (!('modelConfig' in m)) throw bad('field "modelConfig" is missing')
  if (!Array.isArray(m.files)) throw bad('field "files" is not an array')
  if (version >= PARTIAL_VERSION ? m.files.length < 1 || m.files.length > stages : m.files.length !== stages) {
    throw bad(`field "files" lists ${m.files.length} file(s) for ${stages} stage(s)${version >= PARTIAL_VERSION ? ' (expected 1 to the stage count)' : ''}`)
  }
  let prev = -1
  const files = m.files.map((f: unknown, i: number): ManifestFileEntry => {
    const at = `files[${i}]`
    if (f === null || typeof f !== 'object' || Array.isArray(f)) throw bad(`field "${at}" is not an object`)
    const e = f as Record<string, unknown>
    // every stage in order; a partial checkpoint (version 4) may leave stages out, still in order
    const s = e.stage
    if (version < PARTIAL_VERSION ? s !== i : typeof s !== 'number' || !Number.isInteger(s) || s <= prev || s >= stages) {
      throw bad(`field "${at}.stage" is ${JSON.stringify(s)}, expected ${version < PARTIAL_VERSION ? String(i) : `a stage above ${prev} and below ${stages}`}`)
    }
    const stage = s as number
    prev = stage
    // only the canonical name: a manifest must never point outside its directory
    if (e.file !== stageFileName(stage)) throw bad(`field "${at}.file" is ${JSON.stringify(e.file)}, expected "${stageFileName(stage)}"`)
    if (typeof e.bytes !== 'number' || !Number.isSafeInteger(e.bytes) || e.bytes < 8) throw bad(`field "${at}.bytes" is ${JSON.stringify(e.bytes)}, expected a byte count >= 8`)
    if (version === 1) {
      if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) throw bad(`field "${at}.sha256" is ${JSON.stringify(e.sha256)}, expected 64 lower-case hex digits`)
      return { stage, file: e.file, bytes: e.bytes, sha256: e.sha256 }
    }
    if (typeof e.crc32 !== 'string' || !/^[0-9a-f]{8}$/.test(e.crc32)) throw bad(`field "${at}.crc32" is ${JSON.stringify(e.crc32)}, expected 8 lower-case hex digits`)
    return { stage, file: e.file, bytes: e.bytes, crc32: e.crc32 }
  })
  return { format: MANIFEST_FORMAT, version, iteration, stages, createdAt: m.createdAt, modelConfig: m.modelConfig, files }
}

/** Reads `path`, file `file` of checkpoint `iteration`: CheckpointFileMissingError or CheckpointIoError on failure (an abort propagates). */
export async function readCheckpointFile (iteration: number, file: string, path: string, signal?: AbortSignal): Promise<Uint8Array> {
  try {
    return await fs.readFile(path, { signal })
  } catch (err) {
    if (isAbort(err)) throw err
    const where = { iteration, file, cause: err }
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointFileMissingError(`checkpoint ${iteration}: ${path} is missing`, where)
    throw new CheckpointIoError(`checkpoint ${iteration}: cannot read ${path}: ${errMessage(err)}`, where)
  }
}

/** Reads and validates the manifest in `dir`, the directory of checkpoint `iteration`. */
export async function readManifest (dir: string, iteration: number, signal?: AbortSignal): Promise<CheckpointManifest> {
  const path = join(dir, MANIFEST_FILE)
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
  const bytes = await readCheckpointFile(iteration, MANIFEST_FILE, path, signal)
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new CheckpointManifestError(`checkpoint ${iteration}: ${path}: not valid UTF-8`, { iteration, file: MANIFEST_FILE })
  }
  return parseManifest(text, iteration, path)
}

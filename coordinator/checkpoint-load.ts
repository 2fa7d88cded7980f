/**
 * Loading a checkpoint: reading and verifying its directory, then taking from it the tensors and
 * metadata a stage of any layout needs. Parameter names are global, so a checkpoint written with S
 * stages serves any other split: `tensorsFor` merges all stage files and picks the names a stage of
 * the new layout owns.
 */
import { join } from 'node:path'
import { createLog } from '../common/index.js'
import type { HostTensor, TensorSet } from '../model/index.js'
import { decodeStageState, mergeTensorSets, OPTIM_M, OPTIM_V, type StageMeta, type StageState } from '../model/index.js'
import { CheckpointCorruptError, CheckpointMissingTensorsError, CheckpointNotFoundError, errMessage } from './checkpoint-errors.js'
import { ITERATION_IN_FILES_VERSION, checksumMismatch, readCheckpointFile, readManifest } from './checkpoint-format.js'

const log = createLog('checkpoints')

/** A checkpoint read and verified. Its tensors are shared with tensorsFor results: treat them as read-only. */
export interface LoadedCheckpoint {
  iteration: number
  /** Stages of the layout it was written with. */
  stages: number
  createdAt: string
  modelConfig: unknown
  /** The stages whose file was read, ascending: every stage, unless the checkpoint is partial or `only` chose some. */
  held: number[]
  /** The state of stage held[i] at index i. */
  states: StageState[]
  /** Total size of the stage files. */
  bytes: number
}

export interface TensorsForOptions {
  /** Include the Adam moments `optim.m.<name>` and `optim.v.<name>`. @default true */
  optimizer?: boolean
  /** Who asks, for error messages. @default 'the requested layout' */
  who?: string
}

/**
 * Reads checkpoint `iteration` from its directory `dir` and verifies it: manifest fields, every
 * stage file's size and checksum, and that each decodes with finite values and the stage files agree
 * on shared names. `only` reads just those of its stages (a recovery of one stage needs one file);
 * one it does not hold is a CheckpointNotFoundError. Throws a CheckpointError subclass naming
 * the file at fault.
 */
export async function readCheckpoint (dir: string, iteration: number, signal?: AbortSignal, only?: readonly number[]): Promise<LoadedCheckpoint> {
  const manifest = await readManifest(dir, iteration, signal)
  const absent = (only ?? []).filter(s => !manifest.files.some(f => f.stage === s))
  if (absent.length > 0) throw new CheckpointNotFoundError(`checkpoint ${iteration} holds stage(s) ${manifest.files.map(f => f.stage).join(', ')} of ${manifest.stages}, not ${absent.join(', ')}`, iteration)
  const files = only == null ? manifest.files : manifest.files.filter(f => only.includes(f.stage))
  const states: StageState[] = []
  let total = 0
  for (const f of files) {
    const path = join(dir, f.file)
    const where = { iteration, file: f.file }
    const bytes = await readCheckpointFile(iteration, f.file, path, signal)
    if (bytes.length !== f.bytes) {
      const how = bytes.length < f.bytes ? 'truncated' : 'too long'
      throw new CheckpointCorruptError(`checkpoint ${iteration}: ${path}: ${how}: ${bytes.length} bytes, manifest says ${f.bytes}`, where)
    }
    const mismatch = checksumMismatch(f, bytes)
    if (mismatch !== undefined) throw new CheckpointCorruptError(`checkpoint ${iteration}: ${path}: ${mismatch}`, where)
    let state: StageState
    try {
      // stage files of manifest versions 1 and 2 do not say their iteration: it is the checkpoint's
      state = decodeStageState(bytes, { requireFinite: true, iteration: manifest.version < ITERATION_IN_FILES_VERSION ? iteration : undefined })
    } catch (err) {
      throw new CheckpointCorruptError(`checkpoint ${iteration}: ${path}: does not decode: ${errMessage(err)}`, { ...where, cause: err })
    }
    if (state.meta.iteration !== iteration) throw new CheckpointCorruptError(`checkpoint ${iteration}: ${path}: holds the state of iteration ${state.meta.iteration}`, where)
    states.push(state)
    total += bytes.length
  }
  const loaded: LoadedCheckpoint = { iteration, stages: manifest.stages, createdAt: manifest.createdAt, modelConfig: manifest.modelConfig, held: files.map(f => f.stage), states, bytes: total }
  mergedTensors(loaded) // stage files that disagree on a shared name make the checkpoint invalid
  return loaded
}

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
 * Stage metadata (iteration, Adam step, lr scale, gradient norm) to load with `names`: the
 * meta of the stage file holding exactly those parameters when there is one (same split), else
 * stage 0's. Stages may have taken different numbers of Adam steps (a CheckFree rebuild starts a
 * fresh optimizer, a non-finite step is skipped), so stage 0's step is only a guess for another
 * split: that case is logged when the steps disagree.
 */
export function metaFor (checkpoint: Pick<LoadedCheckpoint, 'iteration' | 'states'>, names?: string[]): StageMeta {
  const { states, iteration } = checkpoint
  if (states.length === 0) throw new CheckpointCorruptError(`checkpoint ${iteration} has no stages`, { iteration })
  let pick = states[0]
  if (names !== undefined) {
    const want = new Set(names)
    const same = states.find(s => {
      const params = [...s.tensors.keys()].filter(n => !n.startsWith(OPTIM_M) && !n.startsWith(OPTIM_V))
      return params.length === want.size && params.every(n => want.has(n))
    })
    if (same !== undefined) return { ...same.meta }
    const steps = states.map(s => s.meta.adamStep)
    if (steps.some(x => x !== steps[0])) {
      log.info(`warning: checkpoint ${iteration}: loading into another stage split, and its stages disagree on the Adam step (${steps.join(', ')}); using stage 0's (${steps[0]})`)
    }
  }
  return { ...pick.meta }
}

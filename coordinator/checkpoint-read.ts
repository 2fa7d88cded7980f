/**
 * Reading a checkpoint from outside a run (`spotpipe export`, `generate`, `eval`). The path given
 * may be
 *   - one checkpoint's directory (it holds manifest.json: `<store>/ckpt-0000000040`),
 *   - a checkpoint store's directory (it holds `ckpt-<iteration>` directories): its newest
 *     complete checkpoint (one with a manifest) is read,
 *   - a coordinator's `--state-dir` (its store is `<state-dir>/checkpoints`): likewise.
 *
 * Only a complete checkpoint (every stage's file) holds a whole model: a store's newest partial ones
 * (a stage's holder was lost while it was pulled) are passed over, and naming a partial one's
 * directory is an error saying which stages it lacks.
 *
 * Read-only, unlike CheckpointStore.open, which deletes incomplete checkpoints and temp files: the
 * store of a running coordinator may be read while it writes. A newest checkpoint that fails
 * verification is an error naming the file, not a silent fall back to an older one; name the older
 * checkpoint's directory to use it.
 */
import { promises as fs, type Stats } from 'node:fs'
import { basename, join } from 'node:path'
import { resolveModelConfig, stageLayout, stageSpecs, type HostTensor, type ModelConfig, type TensorSet } from '../model/index.js'
import { CheckpointCorruptError, CheckpointManifestError, CheckpointNotFoundError, errMessage } from './checkpoint-errors.js'
import { CHECKPOINT_DIR_RE, checkpointDirName, MANIFEST_FILE } from './checkpoint-format.js'
import { readCheckpoint, tensorsFor, type LoadedCheckpoint } from './checkpoint-load.js'

/** What the path given to readCheckpointAt turned out to be. */
export type CheckpointSource = 'checkpoint' | 'store' | 'state-dir'

/** The store directory inside a coordinator's --state-dir. */
const STATE_DIR_STORE = 'checkpoints'

/** The model fields a manifest's modelConfig must state (the others have harmless defaults). */
const REQUIRED_MODEL_FIELDS = ['vocab', 'dModel', 'nHeads', 'nBlocks', 'seqLen', 'mlpRatio'] as const

export interface FoundCheckpoint {
  /** The checkpoint, read and verified (sizes, checksums, finite values, stage files agree). */
  loaded: LoadedCheckpoint
  /** The checkpoint's own directory. */
  dir: string
  source: CheckpointSource
  /** Complete checkpoints in the store (1 when the path was a checkpoint's directory). */
  complete: number
  /** The run's model configuration, from the manifest. */
  model: ModelConfig
  /** Every parameter of the model by global name (no Adam moments); shared with `loaded`, read-only. */
  params: TensorSet
}

async function statOrUndefined (path: string): Promise<Stats | undefined> {
  try {
    return await fs.stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined
    throw new CheckpointNotFoundError(`cannot read ${path}: ${errMessage(err)}`)
  }
}

/**
 * Whether the manifest in `dir` lists every stage (a manifest that does not parse as JSON counts as
 * complete: reading it then names the problem).
 */
async function listsEveryStage (dir: string): Promise<boolean> {
  try {
    const m = JSON.parse(await fs.readFile(join(dir, MANIFEST_FILE), 'utf8')) as { stages?: unknown, files?: unknown }
    return !Array.isArray(m.files) || m.files.length === m.stages
  } catch {
    return true
  }
}

/** ckpt-<iteration> directories of a store, with whether each is complete (has its manifest, listing every stage). */
async function listStore (dir: string): Promise<Array<{ iteration: number, dir: string, manifest: boolean, complete: boolean }>> {
  let names: string[]
  try {
    names = await fs.readdir(dir)
  } catch (err) {
    throw new CheckpointNotFoundError(`cannot list ${dir}: ${errMessage(err)}`)
  }
  const out = []
  for (const name of names) {
    const m = CHECKPOINT_DIR_RE.exec(name)
    if (m == null) continue
    const iteration = Number(m[1])
    if (!Number.isSafeInteger(iteration) || name !== checkpointDirName(iteration)) continue
    const sub = join(dir, name)
    if (!(await statOrUndefined(sub))?.isDirectory()) continue
    const manifest = (await statOrUndefined(join(sub, MANIFEST_FILE)))?.isFile() === true
    out.push({ iteration, dir: sub, manifest, complete: manifest && await listsEveryStage(sub) })
  }
  return out.sort((a, b) => b.iteration - a.iteration)
}

/** The iteration of the checkpoint in `dir`: from a canonical directory name, else the manifest's own field. */
async function iterationOf (dir: string): Promise<number> {
  const m = CHECKPOINT_DIR_RE.exec(basename(dir))
  if (m != null && Number.isSafeInteger(Number(m[1]))) return Number(m[1])
  const file = join(dir, MANIFEST_FILE)
  let raw: unknown
  try {
    raw = JSON.parse(await fs.readFile(file, 'utf8'))
  } catch (err) {
    throw new CheckpointManifestError(`${file}: cannot be read as JSON: ${errMessage(err)}`, { file: MANIFEST_FILE, cause: err })
  }
  const it = (raw as { iteration?: unknown } | null)?.iteration
  if (typeof it !== 'number' || !Number.isSafeInteger(it) || it < 0) throw new CheckpointManifestError(`${file}: field "iteration" is ${JSON.stringify(it)}, expected a non-negative integer`, { file: MANIFEST_FILE })
  return it
}

/** The manifest's model configuration, validated. */
function modelOf (loaded: LoadedCheckpoint, dir: string): ModelConfig {
  const where = { iteration: loaded.iteration, file: MANIFEST_FILE }
  const bad = (problem: string): CheckpointManifestError => new CheckpointManifestError(`checkpoint ${loaded.iteration}: ${join(dir, MANIFEST_FILE)}: ${problem}`, where)
  const c = loaded.modelConfig
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw bad('field "modelConfig" is not an object')
  const missing = REQUIRED_MODEL_FIELDS.filter(k => !(k in c))
  if (missing.length > 0) throw bad(`field "modelConfig" lacks ${missing.join(', ')}`)
  let model: ModelConfig
  try {
    model = resolveModelConfig(c as Partial<ModelConfig>)
  } catch (err) {
    throw bad(`field "modelConfig" is not a valid model: ${errMessage(err)}`)
  }
  if (loaded.stages > model.nBlocks) throw bad(`${loaded.stages} stages for a model of ${model.nBlocks} blocks`)
  return model
}

/** Every parameter of `model` from `loaded`, shapes checked (CheckpointMissingTensorsError, CheckpointCorruptError). */
function paramsOf (loaded: LoadedCheckpoint, model: ModelConfig): TensorSet {
  const specs = stageSpecs(model, stageLayout(model, 1, 0))
  const params = tensorsFor(specs.map(s => s.name), loaded, { optimizer: false, who: 'the model its manifest describes' })
  for (const spec of specs) {
    const t = params.get(spec.name) as HostTensor
    if (t.dtype !== 'F32' || t.shape.join(',') !== spec.shape.join(',')) {
      throw new CheckpointCorruptError(`checkpoint ${loaded.iteration}: tensor ${spec.name} is ${t.dtype} [${t.shape.join(',')}], but the manifest's model needs F32 [${spec.shape.join(',')}]`, { iteration: loaded.iteration })
    }
  }
  return params
}

/**
 * Reads the checkpoint at `path` (see the module comment for what it may be), verifies it and
 * returns it with its model configuration and parameters. Throws CheckpointNotFoundError when there
 * is nothing to read, else the CheckpointError of readCheckpoint naming the file at fault.
 */
export async function readCheckpointAt (path: string, signal?: AbortSignal): Promise<FoundCheckpoint> {
  const st = await statOrUndefined(path)
  if (st === undefined) throw new CheckpointNotFoundError(`${path} does not exist`)
  if (!st.isDirectory()) throw new CheckpointNotFoundError(`${path} is not a directory (expected a checkpoint's directory or a checkpoint store)`)
  let dir: string
  let source: CheckpointSource
  let complete: number
  if ((await statOrUndefined(join(path, MANIFEST_FILE))) !== undefined) {
    dir = path
    source = 'checkpoint'
    complete = 1
  } else {
    let store = path
    source = 'store'
    let listed = await listStore(store)
    if (listed.length === 0 && (await statOrUndefined(join(path, STATE_DIR_STORE)))?.isDirectory() === true) {
      store = join(path, STATE_DIR_STORE)
      source = 'state-dir'
      listed = await listStore(store)
    }
    if (listed.length === 0) {
      throw new CheckpointNotFoundError(`${path} holds no checkpoint: expected ${MANIFEST_FILE} (a checkpoint's directory), ckpt-<iteration> directories (a checkpoint store) or ${STATE_DIR_STORE}/ (a coordinator's state directory)`)
    }
    const done = listed.filter(c => c.complete)
    if (done.length === 0) {
      const partial = listed.filter(c => c.manifest).map(c => c.iteration)
      throw new CheckpointNotFoundError(`no complete checkpoint in ${store}: ${listed.length} checkpoint director${listed.length === 1 ? 'y' : 'ies'} (${listed.map(c => c.iteration).join(', ')}), ${partial.length > 0 ? `partial (${partial.join(', ')}: some stages' files missing) or ` : ''}without their ${MANIFEST_FILE} (still being written, or abandoned)`)
    }
    dir = done[0].dir
    complete = done.length
  }
  const loaded = await readCheckpoint(dir, await iterationOf(dir), signal)
  if (loaded.held.length !== loaded.stages) {
    const missing = Array.from({ length: loaded.stages }, (_, s) => s).filter(s => !loaded.held.includes(s))
    throw new CheckpointNotFoundError(`${dir} is a partial checkpoint: it lacks the files of stage(s) ${missing.join(', ')} of ${loaded.stages} (their holders were lost while it was taken); name the store to read its newest complete checkpoint`, loaded.iteration)
  }
  const model = modelOf(loaded, dir)
  return { loaded, dir, source, complete, model, params: paramsOf(loaded, model) }
}

/**
 * What `spotpipe export`, `generate` and `eval` share: where their output goes (so tests can run
 * them in-process), the --checkpoint flag, and the line saying which checkpoint was read.
 */
import { readCheckpointAt, type FoundCheckpoint } from '../coordinator/index.js'
import { ConfigError } from '../common/index.js'
import { CONFIG_PRESET_NAMES, configPreset, modelConfigDiff, resolveModelConfig } from '../model/index.js'
import { UsageError } from './errors.js'

/** Where a command writes: `out` is its result (stdout), `err` what it tells the user (stderr). */
export interface CommandIo {
  out: (text: string) => void
  err: (text: string) => void
}

export const STDIO: CommandIo = {
  out: text => { process.stdout.write(text) },
  err: text => { process.stderr.write(text) }
}

export const CHECKPOINT_HELP = `  --checkpoint DIR     a checkpoint's directory (<store>/ckpt-<iteration>), a checkpoint store
                       (its newest complete checkpoint) or a coordinator's --state-dir
  --preset NAME        ${CONFIG_PRESET_NAMES.join(' | ')}: refuse a checkpoint whose model is not this preset's
`

/** The flags every checkpoint command takes besides its own. */
export const CHECKPOINT_FLAGS = {
  checkpoint: { type: 'string' },
  preset: { type: 'string' }
} as const

/** The value of string flag `name`, which must be given and not be empty. */
export function requiredFlag (values: Record<string, unknown>, name: string, what: string): string {
  const v = values[name]
  if (typeof v !== 'string') throw new UsageError(`--${name} ${what} is required`)
  if (v === '') throw new UsageError(`--${name} must not be empty`)
  return v
}

/** Reads the checkpoint --checkpoint names (see coordinator/checkpoint-read.ts). */
export async function loadCheckpointFlag (values: Record<string, unknown>): Promise<FoundCheckpoint> {
  const path = requiredFlag(values, 'checkpoint', 'DIR')
  let preset
  try {
    preset = values.preset != null ? configPreset(String(values.preset)) : undefined
  } catch (err) {
    throw new UsageError(`--preset: ${(err as Error).message}`)
  }
  const found = await readCheckpointAt(path)
  if (preset != null) {
    // the preset's shape (demo's is the defaults'); the vocabulary only when the preset fixes it
    const { dModel, nHeads, nBlocks, seqLen } = resolveModelConfig(preset.model)
    const differ = modelConfigDiff(found.model, { dModel, nHeads, nBlocks, seqLen, ...(preset.model.vocab != null ? { vocab: preset.model.vocab } : {}) })
    if (differ.length > 0) throw new ConfigError(`checkpoint ${found.loaded.iteration} at ${found.dir} is not a ${String(values.preset)} model: ${differ.join(', ')}`)
  }
  return found
}

/** One line naming the checkpoint read and why it was that one. */
export function describeCheckpoint (found: FoundCheckpoint): string {
  const { loaded, model } = found
  const what = found.source === 'checkpoint'
    ? 'the checkpoint directory given'
    : `the newest of ${found.complete} complete checkpoint(s) in the ${found.source === 'store' ? 'checkpoint store' : 'state directory\'s store'}`
  return `checkpoint ${loaded.iteration} (${loaded.stages} stage(s), ${model.nBlocks} blocks, d ${model.dModel}, ${model.nHeads} heads, seq ${model.seqLen}) at ${found.dir}: ${what}`
}

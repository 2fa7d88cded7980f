/**
 * What `spotpipe export`, `generate` and `eval` share: where their output goes (so tests can run
 * them in-process), the --checkpoint flag, and the line saying which checkpoint was read.
 */
import { readCheckpointAt, type FoundCheckpoint } from '../coordinator/index.js'
import { ConfigError } from '../common/index.js'
import {
  BYTE_TOKENIZER, CONFIG_PRESET_NAMES, GPT2_VOCAB_SIZE, TOKENIZER_SPECS, configPreset, loadTokenizer, modelConfigDiff, resolveModelConfig,
  type ModelConfig, type Tokenizer
} from '../model/index.js'
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
  --tokenizer T        ${TOKENIZER_SPECS}: the tokenizer the model was trained with (default: byte
                       for a 256-token vocabulary, gpt2 for 50,257; another one needs hf:PATH)
`

/** The flags every checkpoint command takes besides its own. */
export const CHECKPOINT_FLAGS = {
  checkpoint: { type: 'string' },
  preset: { type: 'string' },
  tokenizer: { type: 'string' }
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

/**
 * The tokenizer of a checkpoint's model: --tokenizer, or the one its vocabulary size names (up to
 * 256: byte, whose bytes beyond a smaller vocabulary are refused where they occur; 50,257: gpt2).
 * Checkpoints do not record their tokenizer, so any other vocabulary needs the flag; a tokenizer
 * whose vocabulary is not the model's is refused.
 */
/** `--prompt byte 0xc3 at offset 3` or `--prompt token 50256 at position 3`: the first id of `ids` outside the model's vocabulary, named for the user. */
export function firstOutside (ids: ArrayLike<number>, vocab: number, tokenizer: Tokenizer): string | undefined {
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < vocab) continue
    return tokenizer.name === 'byte' ? `byte 0x${ids[i].toString(16).padStart(2, '0')} at offset ${i}` : `token ${ids[i]} at position ${i}`
  }
  return undefined
}

export async function checkpointTokenizer (values: Record<string, unknown>, model: ModelConfig): Promise<Tokenizer> {
  let spec: string
  if (values.tokenizer != null) spec = String(values.tokenizer)
  else if (model.vocab <= BYTE_TOKENIZER.vocabSize) spec = 'byte'
  else if (model.vocab === GPT2_VOCAB_SIZE) spec = 'gpt2'
  else throw new UsageError(`the checkpoint's vocabulary has ${model.vocab} tokens, neither the byte tokenizer's (${BYTE_TOKENIZER.vocabSize}) nor GPT-2's (${GPT2_VOCAB_SIZE}): give --tokenizer hf:PATH`)
  let tokenizer: Tokenizer
  try {
    tokenizer = await loadTokenizer(spec)
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`--tokenizer: ${err.message}`)
    throw err
  }
  const fits = tokenizer.name === 'byte' ? model.vocab <= tokenizer.vocabSize : tokenizer.vocabSize === model.vocab
  if (!fits) throw new ConfigError(`tokenizer ${tokenizer.name} has ${tokenizer.vocabSize} tokens, but the checkpoint's model has a vocabulary of ${model.vocab}`)
  return tokenizer
}

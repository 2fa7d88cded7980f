/**
 * `spotpipe export`: a checkpoint as a Hugging Face GPT-2 folder (GPT2LMHeadModel). The mapping of
 * names and layouts, and the differences it closes, are in model/export-hf.ts. Any stage count
 * exports the same files: parameter names are global. Reads only the checkpoint (no backend).
 */
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { dirname, join } from 'node:path'
import { DataError, SpotpipeError } from '../../common/index.js'
import {
  BYTE_TOKENIZER, GPT2_VOCAB_SIZE, HF_METADATA, byteTokenizerFiles, encodeSafetensors, gpt2TokenizerFiles, hfConfig,
  loadGpt2TokenBytes, parseTokenizerSpec, toHfTensors, type ModelConfig, type Tokenizer
} from '../../model/index.js'
import {
  CHECKPOINT_FLAGS, CHECKPOINT_HELP, STDIO, checkpointTokenizer, describeCheckpoint, loadCheckpointFlag, requiredFlag, type CommandIo
} from '../checkpoint-flag.js'
import { UsageError } from '../errors.js'
import { parseFlags } from '../flags.js'

const HELP = `usage: spotpipe export --checkpoint DIR --out DIR [--force]

Writes the checkpoint's model as a Hugging Face GPT-2 folder: config.json, model.safetensors
(GPT2LMHeadModel's tensor names and layouts, float32) and its tokenizer's files: the byte
tokenizer's or GPT-2's (tokenizer.json, tokenizer_config.json, vocab.json, merges.txt), or the
tokenizer.json (and tokenizer_config.json) that --tokenizer hf:PATH names, copied. Load it with
transformers.AutoModelForCausalLM.from_pretrained(DIR) and AutoTokenizer.from_pretrained(DIR).

${CHECKPOINT_HELP}  --out DIR            the folder to write (created if needed; must be empty unless --force)
  --force              write into a non-empty --out, replacing files of the same names
`

/** --out already holds files and --force was not given. */
export class ExportExistsError extends SpotpipeError {
  readonly path: string
  constructor (path: string, names: string[]) {
    super('ERR_FILE_EXISTS', `${path} is not empty (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''}); pass --force to write into it`)
    this.path = path
  }
}

/** Writes `data` to `path` through a temporary file and a rename, so a file is never half-written. */
async function writeFileReplacing (path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    await fs.writeFile(tmp, data)
    await fs.rename(tmp, path)
  } finally {
    await fs.rm(tmp, { force: true })
  }
}

async function prepareOut (out: string, force: boolean): Promise<void> {
  let names: string[]
  try {
    names = await fs.readdir(out)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTDIR') throw new UsageError(`--out ${out} is a file, not a directory`)
    if (code !== 'ENOENT') throw new UsageError(`--out ${out} cannot be read: ${(err as Error).message}`)
    try {
      await fs.mkdir(out, { recursive: true })
    } catch (e) {
      throw new UsageError(`--out ${out} cannot be created: ${(e as Error).message}`)
    }
    return
  }
  if (names.length > 0 && !force) throw new ExportExistsError(out, names.sort())
}

export async function exportModel (argv: string[], io: CommandIo = STDIO): Promise<void> {
  const { values, positionals } = parseFlags(argv, {
    ...CHECKPOINT_FLAGS,
    out: { type: 'string' },
    force: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { io.out(HELP); return }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (spotpipe export takes only flags)`)
  requiredFlag(values, 'checkpoint', 'DIR')
  const out = requiredFlag(values, 'out', 'DIR')

  const found = await loadCheckpointFlag(values)
  const m = found.model
  io.out(`export: ${describeCheckpoint(found)}\n`)
  // the tokenizer's files unless the vocabulary names none (a model of fewer than 256 byte tokens)
  const named = values.tokenizer != null || m.vocab === BYTE_TOKENIZER.vocabSize || m.vocab === GPT2_VOCAB_SIZE
  const tokenizer = named ? await checkpointTokenizer(values, m) : undefined
  const tokenizerFiles = tokenizer != null ? await tokenizerFilesOf(tokenizer, String(values.tokenizer ?? tokenizer.name), m) : []
  const tensors = toHfTensors(m, found.params)
  const files: Array<[string, Uint8Array | string]> = [
    ['config.json', JSON.stringify(hfConfig(m, { endOfText: tokenizer?.endOfText }), null, 2) + '\n'],
    ['model.safetensors', encodeSafetensors(tensors, { ...HF_METADATA })],
    ...tokenizerFiles
  ]

  await prepareOut(out, values.force === true)
  for (const [name, data] of files) await writeFileReplacing(join(out, name), data)

  const weights = files[1][1] as Uint8Array
  io.out(`export: wrote ${out}: ${files.map(([n]) => n).join(', ')} (model.safetensors: ${tensors.size} tensors, ${weights.byteLength} bytes)\n`)
  io.out(`export: GPT2LMHeadModel n_layer=${m.nBlocks} n_embd=${m.dModel} n_head=${m.nHeads} n_inner=${m.mlpRatio * m.dModel} n_positions=${m.seqLen} vocab_size=${m.vocab}, gelu_new, untied lm_head; ` +
    'spotpipe has no attention biases: c_attn.bias and attn.c_proj.bias are zeros\n')
  if (tokenizer == null) io.out(`export: no tokenizer files: the vocabulary has ${m.vocab} tokens, neither the byte tokenizer's ${BYTE_TOKENIZER.vocabSize} nor GPT-2's ${GPT2_VOCAB_SIZE} (--tokenizer hf:PATH copies a tokenizer.json)\n`)
  else io.out(`export: tokenizer ${tokenizer.name}\n`)
}

/** The files of `tokenizer` (spec `spec`) in the exported folder: written for byte and gpt2, copied for hf:PATH. */
async function tokenizerFilesOf (tokenizer: Tokenizer, spec: string, m: ModelConfig): Promise<Array<[string, string | Uint8Array]>> {
  const names = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt'] as const
  const s = parseTokenizerSpec(spec)
  if (s.kind === 'byte') { const f = byteTokenizerFiles(m); return names.map(n => [n, f[n]]) }
  if (s.kind === 'gpt2') { const f = gpt2TokenizerFiles(m, await loadGpt2TokenBytes()); return names.map(n => [n, f[n]]) }
  // hf:PATH, a tokenizer.json or its directory; the config beside it too, when there is one
  const file = (await fs.stat(s.path).catch(() => undefined))?.isDirectory() === true ? join(s.path, 'tokenizer.json') : s.path
  const out: Array<[string, string | Uint8Array]> = []
  try {
    out.push(['tokenizer.json', await fs.readFile(file)])
  } catch (err) {
    throw new DataError(`tokenizer ${tokenizer.name}: cannot read ${file}: ${(err as Error).message}`, 'ERR_TOKENIZER')
  }
  const configFile = join(dirname(file), 'tokenizer_config.json')
  try {
    out.push(['tokenizer_config.json', await fs.readFile(configFile)])
  } catch (err) {
    // none beside it is fine (the tokenizer.json is the tokenizer); one that cannot be read is not
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new DataError(`tokenizer ${tokenizer.name}: cannot read ${configFile}: ${(err as Error).message}`, 'ERR_TOKENIZER')
  }
  return out
}

/**
 * `spotpipe eval`: validation loss and perplexity of a checkpoint on a text file's byte tokens,
 * scored in consecutive seq-len windows (model/inference.ts evaluateTokens), so every byte after
 * the first is predicted once. Deterministic: same file, same checkpoint, same numbers.
 */
import { promises as fs } from 'node:fs'
import { DataError } from '../../common/index.js'
import { InferenceModel, evaluateTokens, initBackend, parseBackendName, type ModelConfig } from '../../model/index.js'
import { CHECKPOINT_FLAGS, CHECKPOINT_HELP, STDIO, describeCheckpoint, loadCheckpointFlag, requiredFlag, type CommandIo } from '../checkpoint-flag.js'
import { UsageError } from '../errors.js'
import { parseFlags } from '../flags.js'

const HELP = `usage: spotpipe eval --checkpoint DIR --data PATH [--backend NAME]

Prints the mean next-byte cross-entropy (nats per token) and perplexity of the checkpoint on the
bytes of a text file, as: eval: loss=<nats> perplexity=<exp(loss)> tokens=<bytes predicted>.
The file is read in consecutive windows of seq-len bytes; every byte after the first is predicted
once, with the bytes since its window's start as context.

${CHECKPOINT_HELP}  --data PATH          the text file (its bytes are the tokens; at least 2)
  --backend NAME       tensorflow | wasm | cpu (default: SPOTPIPE_BACKEND, else best available)
`

/**
 * The token stream of data file `path` for `model`: the file's bytes, as the byte tokenizer makes
 * them. The one place eval reads data (other tokenizers and formats belong here).
 */
export async function readEvalTokens (path: string, model: ModelConfig): Promise<Uint8Array> {
  let bytes: Buffer
  try {
    bytes = await fs.readFile(path)
  } catch (err) {
    throw new DataError(`cannot read --data ${path}: ${(err as Error).message}`)
  }
  if (bytes.length < 2) throw new DataError(`--data ${path} has ${bytes.length} byte(s): evaluation needs at least 2 (one to predict)`)
  const tokens = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
  const outside = tokens.findIndex(b => b >= model.vocab)
  if (outside >= 0) throw new DataError(`--data ${path}: byte 0x${tokens[outside].toString(16)} at offset ${outside} is outside the model's vocabulary (0..${model.vocab - 1})`)
  return tokens
}

export async function evaluate (argv: string[], io: CommandIo = STDIO): Promise<void> {
  const { values, positionals } = parseFlags(argv, {
    ...CHECKPOINT_FLAGS,
    data: { type: 'string' },
    backend: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { io.out(HELP); return }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (spotpipe eval takes only flags)`)
  requiredFlag(values, 'checkpoint', 'DIR')
  const data = requiredFlag(values, 'data', 'PATH')
  const backend = values.backend != null ? parseBackendName(String(values.backend)) : undefined

  const found = await loadCheckpointFlag(values)
  const tokens = await readEvalTokens(data, found.model)
  io.err(`eval: ${describeCheckpoint(found)}\n`)
  await initBackend({ backend })
  const model = new InferenceModel(found.model, found.params, found.loaded.stages)
  try {
    const r = evaluateTokens(model, tokens)
    io.out(`eval: loss=${r.loss.toFixed(6)} perplexity=${Math.exp(r.loss).toFixed(4)} tokens=${r.tokens}\n`)
  } finally {
    model.dispose()
  }
}

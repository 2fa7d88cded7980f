/**
 * `spotpipe eval`: validation loss and perplexity of a checkpoint on a text file's tokens (in the
 * checkpoint's tokenizer: bytes, GPT-2's BPE, or a tokenizer.json), scored in consecutive seq-len
 * windows (model/inference.ts evaluateTokens), so every token after the first is predicted once.
 * Deterministic: same file, same checkpoint, same numbers.
 */
import { promises as fs } from 'node:fs'
import { DataError } from '../../common/index.js'
import { InferenceModel, evaluateTokens, initBackend, parseBackendName, type ModelConfig, type Tokenizer } from '../../model/index.js'
import {
  CHECKPOINT_FLAGS, CHECKPOINT_HELP, STDIO, checkpointTokenizer, describeCheckpoint, firstOutside, loadCheckpointFlag, requiredFlag, type CommandIo
} from '../checkpoint-flag.js'
import { UsageError } from '../errors.js'
import { parseFlags } from '../flags.js'

const HELP = `usage: spotpipe eval --checkpoint DIR --data PATH [--backend NAME]

Prints the mean next-token cross-entropy (nats per token) and perplexity of the checkpoint on a
text file, as: eval: loss=<nats> perplexity=<exp(loss)> tokens=<tokens predicted>. The file's
tokens (its bytes, with the byte tokenizer) are read in consecutive windows of seq-len; every token
after the first is predicted once, with the tokens since its window's start as context.

${CHECKPOINT_HELP}  --data PATH          the text file (at least 2 tokens)
  --backend NAME       tensorflow | wasm | cpu (default: SPOTPIPE_BACKEND, else best available)
`

/**
 * The token stream of data file `path` for `model`: the file's bytes as they are with the byte
 * tokenizer (so any file, UTF-8 or not), its UTF-8 text encoded by `tokenizer` otherwise. The one
 * place eval reads data.
 */
export async function readEvalTokens (path: string, model: ModelConfig, tokenizer: Tokenizer): Promise<ArrayLike<number>> {
  let bytes: Buffer
  try {
    bytes = await fs.readFile(path)
  } catch (err) {
    throw new DataError(`cannot read --data ${path}: ${(err as Error).message}`)
  }
  if (tokenizer.name === 'byte' && bytes.length < 2) throw new DataError(`--data ${path} has ${bytes.length} byte(s): evaluation needs at least 2 (one to predict)`)
  const tokens = tokenizer.name === 'byte' ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) : tokenizer.encode(bytes.toString('utf8'))
  if (tokens.length < 2) throw new DataError(`--data ${path} has ${tokens.length} ${tokenizer.name} token(s): evaluation needs at least 2 (one to predict)`)
  const outside = firstOutside(tokens, model.vocab, tokenizer)
  if (outside != null) throw new DataError(`--data ${path}: ${outside} is outside the model's vocabulary (0..${model.vocab - 1})`)
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
  const tokenizer = await checkpointTokenizer(values, found.model)
  const tokens = await readEvalTokens(data, found.model, tokenizer)
  io.err(`eval: ${describeCheckpoint(found)}; tokenizer ${tokenizer.name}\n`)
  await initBackend({ backend })
  const model = new InferenceModel(found.model, found.params, found.loaded.stages)
  try {
    const r = evaluateTokens(model, tokens)
    io.out(`eval: loss=${r.loss.toFixed(6)} perplexity=${Math.exp(r.loss).toFixed(4)} tokens=${r.tokens}\n`)
  } finally {
    model.dispose()
  }
}

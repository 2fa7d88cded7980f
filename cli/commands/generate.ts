/**
 * `spotpipe generate`: loads a checkpoint's stages in this process and samples text after a
 * prompt, one token at a time (model/inference.ts), in the tokens of the checkpoint's tokenizer
 * (bytes, GPT-2's BPE, or a tokenizer.json). The text goes to stdout, nothing else.
 */
import { InferenceModel, generate as sample, initBackend, parseBackendName } from '../../model/index.js'
import {
  CHECKPOINT_FLAGS, CHECKPOINT_HELP, STDIO, checkpointTokenizer, describeCheckpoint, firstOutside, loadCheckpointFlag, requiredFlag, type CommandIo
} from '../checkpoint-flag.js'
import { UsageError } from '../errors.js'
import { intFlag, parseFlags } from '../flags.js'

const HELP = `usage: spotpipe generate --checkpoint DIR --prompt TEXT [flags]

Prints the prompt followed by the tokens the model samples after it, as text. Each new token
sees the last seq-len tokens (the context window is cropped from the left). The same seed, prompt
and checkpoint give the same text.

${CHECKPOINT_HELP}  --prompt TEXT        the text to continue (at least one token)
  --tokens N           tokens to sample (default 200; with the byte tokenizer, bytes)
  --temperature T      softmax temperature; 0 picks the most likely token every time (default 1)
  --top-k K            sample among the K most likely tokens only; 0 for all (default 0)
  --seed S             seed of the sampler (default 0)
  --backend NAME       tensorflow | wasm | cpu (default: SPOTPIPE_BACKEND, else best available)
`

function temperatureFlag (values: Record<string, unknown>): number {
  const raw = values.temperature
  if (raw == null) return 1
  const v = Number(raw)
  if (String(raw).trim() === '' || !Number.isFinite(v) || v < 0) throw new UsageError(`--temperature must be a number >= 0, got "${String(raw)}"`)
  return v
}

export async function generate (argv: string[], io: CommandIo = STDIO): Promise<void> {
  const { values, positionals } = parseFlags(argv, {
    ...CHECKPOINT_FLAGS,
    prompt: { type: 'string' },
    tokens: { type: 'string' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    seed: { type: 'string' },
    backend: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { io.out(HELP); return }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (spotpipe generate takes only flags; quote the prompt)`)
  requiredFlag(values, 'checkpoint', 'DIR')
  if (typeof values.prompt !== 'string') throw new UsageError('--prompt TEXT is required')
  if (values.prompt === '') throw new UsageError('--prompt must not be empty: the model needs at least one token to continue')
  const tokens = intFlag(values, 'tokens', 200, 1)
  const temperature = temperatureFlag(values)
  const topK = intFlag(values, 'top-k', 0, 0)
  const seed = intFlag(values, 'seed', 0, 0)
  const backend = values.backend != null ? parseBackendName(String(values.backend)) : undefined

  const found = await loadCheckpointFlag(values)
  const m = found.model
  const tokenizer = await checkpointTokenizer(values, m)
  const prompt = Array.from(tokenizer.encode(values.prompt))
  if (prompt.length === 0) throw new UsageError(`--prompt encodes to no ${tokenizer.name} tokens: the model needs at least one to continue`)
  const outside = firstOutside(prompt, m.vocab, tokenizer)
  if (outside != null) throw new UsageError(`--prompt ${outside} is outside the model's vocabulary (0..${m.vocab - 1})`)
  if (topK > m.vocab) throw new UsageError(`--top-k must be at most the vocabulary size ${m.vocab}, got ${topK}`)
  io.err(`generate: ${describeCheckpoint(found)}; tokenizer ${tokenizer.name}\n`)

  await initBackend({ backend })
  const model = new InferenceModel(m, found.params, found.loaded.stages)
  try {
    const out = sample(model, prompt, { tokens, temperature, topK, seed })
    io.out(tokenizer.decode([...prompt, ...out]) + '\n')
  } finally {
    model.dispose()
  }
}

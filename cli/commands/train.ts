/**
 * `spotpipe train`: a local pipeline training run, printing progress and the validation loss. Every
 * stage runs in this process; the distributed run does the same arithmetic. The data is the Brown
 * corpus, or your own text with --data (model/corpus.ts), tokenised by --tokenizer; the model's
 * vocabulary is the tokenizer's.
 */
import { initBackend, parseBackendName } from '../../model/index.js'
import { LocalPipelineTrainer } from '../../model/index.js'
import { intFlag, parseFlags } from '../flags.js'
import { MODEL_FLAGS, MODEL_HELP, modelFromFlags } from '../model-flags.js'
import { DATA_FLAGS, DATA_HELP, dataFromFlags } from '../data-flags.js'

const HELP = `usage: spotpipe train [flags]

  --iterations N       iterations to train (default 150)
${MODEL_HELP}  --eval-every K       validate every K iterations (default 25)
  --backend NAME       tensorflow | wasm | cpu (default: SPOTPIPE_BACKEND, else best available)

${DATA_HELP}`

export async function train (argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, {
    iterations: { type: 'string' },
    ...MODEL_FLAGS,
    'eval-every': { type: 'string' },
    backend: { type: 'string' },
    ...DATA_FLAGS,
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { process.stdout.write(HELP); return }
  const backend = values.backend != null ? parseBackendName(String(values.backend)) : undefined
  const iterations = intFlag(values, 'iterations', 150)
  const { model, train, tokenizer } = modelFromFlags(values)
  train.evalEvery = intFlag(values, 'eval-every', 25)
  const data = await dataFromFlags(values, tokenizer)
  if (data.description != null) process.stdout.write(data.description + '\n')
  const { train: trainTokens, validation: validationTokens, vocab } = data
  model.vocab = vocab

  const name = await initBackend({ backend, announce: true })
  const trainer = new LocalPipelineTrainer({ model, train, trainTokens, validationTokens })
  const t = trainer.train
  process.stdout.write(`training ${t.stages} stages x ${t.microbatches} microbatches of ${t.microbatchSize} sequences on ${name}; validation loss at start ${trainer.validate().toFixed(3)} nats\n`)
  const t0 = performance.now()
  let last = 0
  for (let i = 0; i < iterations; i++) {
    const r = trainer.step()
    if ((i + 1) % t.evalEvery === 0 || i === iterations - 1) {
      last = trainer.validate()
      const tokens = (i + 1) * t.microbatches * t.microbatchSize * trainer.model.seqLen
      const secs = (performance.now() - t0) / 1000
      process.stdout.write(`iter ${String(i + 1).padStart(5)}  loss ${r.loss.toFixed(3)}  val ${last.toFixed(3)}  ${(tokens / secs).toFixed(0)} tok/s  grad norms ${r.gradNorms.map(g => g.toFixed(2)).join(' ')}\n`)
    }
  }
  process.stdout.write(`final validation loss ${last.toFixed(3)} nats (ln ${vocab} = ${Math.log(vocab).toFixed(3)} at chance)\n`)
  trainer.dispose()
}

/**
 * `spotpipe train`: a local pipeline training run on the Brown corpus, printing progress and the
 * validation loss. Every stage runs in this process; the distributed run does the same arithmetic.
 */
import { initBackend, parseBackendName } from '../../model/index.js'
import { loadBrownCorpus } from '../../model/index.js'
import { LocalPipelineTrainer } from '../../model/index.js'
import { intFlag, numFlag, parseFlags } from '../flags.js'

const HELP = `usage: spotpipe train [flags]

  --iterations N     iterations to train (default 150)
  --stages S         pipeline stages (default 4)
  --microbatches M   microbatches per iteration (default 4)
  --d-model D        model width (default 128)
  --blocks N         transformer blocks (default 8)
  --seq-len T        context length (default 64)
  --lr X             Adam learning rate (default 3e-3)
  --eval-every K     validate every K iterations (default 25)
  --backend NAME     tensorflow | wasm | cpu (default: SPOTPIPE_BACKEND, else best available)
`

export async function train (argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, {
    iterations: { type: 'string' },
    stages: { type: 'string' },
    microbatches: { type: 'string' },
    'd-model': { type: 'string' },
    blocks: { type: 'string' },
    'seq-len': { type: 'string' },
    lr: { type: 'string' },
    'eval-every': { type: 'string' },
    backend: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { process.stdout.write(HELP); return }
  const backend = values.backend != null ? parseBackendName(String(values.backend)) : undefined
  const iterations = intFlag(values, 'iterations', 150)
  const name = await initBackend({ backend, announce: true })
  const corpus = loadBrownCorpus()
  const trainer = new LocalPipelineTrainer({
    model: { dModel: intFlag(values, 'd-model', 128), nBlocks: intFlag(values, 'blocks', 8), seqLen: intFlag(values, 'seq-len', 64) },
    train: { stages: intFlag(values, 'stages', 4), microbatches: intFlag(values, 'microbatches', 4), lr: numFlag(values, 'lr', 3e-3), evalEvery: intFlag(values, 'eval-every', 25) },
    trainTokens: corpus.train,
    validationTokens: corpus.validation
  })
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
  process.stdout.write(`final validation loss ${last.toFixed(3)} nats (ln 256 = 5.545 at chance)\n`)
  trainer.dispose()
}

/**
 * bench:data — what the data path costs. Tokenisation throughput (MB of UTF-8 text per second) of
 * the byte and gpt2 tokenizers over the Brown corpus's documents, and the time stage 0 spends
 * preparing an iteration's batches (sampleBatch for every microbatch plus the int32 input tensors,
 * as node/stage-runtime.ts does before its first forward) against the iteration time of the demo
 * model measured in the same run (the local pipeline trainer's step, the same arithmetic as the
 * cluster's). Ends with
 *   bench: tokenize_mb_s_gpt2=<n>
 *   bench: tokenize_mb_s_byte=<n>
 *   bench: data_stall_fraction=<stage 0's batch preparation / iteration time>   (target <= 0.01)
 * The batches are sampled from the gpt2 token store (Uint16 ids), the larger of the two cases.
 */
import '../common/polyfill.js'
import * as tf from '@tensorflow/tfjs'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { buildTokenStore } from '../model/corpus.js'
import { loadBrownCorpus, loadBrownDocuments, sampleBatch } from '../model/data.js'
import { loadTokenizer } from '../model/tokenizers/index.js'
import { LocalPipelineTrainer } from '../model/trainer.js'

const STEPS = Number(process.env.BENCH_ITERS ?? 6)

function tokenizeMbS (encode: (t: string) => ArrayLike<number>, docs: ReadonlyArray<{ text: string }>, bytes: number): number {
  encode(docs[0].text) // warm-up (loads the rank tables)
  const t0 = performance.now()
  let n = 0
  for (const d of docs) n += encode(d.text).length
  const s = (performance.now() - t0) / 1000
  if (n === 0) throw new Error('no tokens')
  return bytes / 1e6 / s
}

async function main (): Promise<void> {
  const backend = await initBackend({ announce: true })
  const docs = loadBrownDocuments()
  const bytes = docs.reduce((a, d) => a + Buffer.byteLength(d.text), 0)
  const byte = await loadTokenizer('byte')
  const gpt2 = await loadTokenizer('gpt2')
  const mbByte = tokenizeMbS(t => byte.encode(t), docs, bytes)
  const mbGpt2 = tokenizeMbS(t => gpt2.encode(t), docs, bytes)
  process.stdout.write(`tokenize: ${(bytes / 1e6).toFixed(2)} MB of Brown text, ${docs.length} documents: byte ${mbByte.toFixed(1)} MB/s, gpt2 ${mbGpt2.toFixed(2)} MB/s\n`)

  const model = resolveModelConfig({})
  const train = resolveTrainConfig({}, model)
  const store = buildTokenStore(docs, gpt2)
  // stage 0's data work for one iteration, as the runtime does it
  const prepare = (it: number): void => {
    for (let mb = 0; mb < train.microbatches; mb++) {
      const b = sampleBatch(store.train, { seed: train.dataSeed, iteration: it, microbatch: mb, replica: 0 }, train.microbatchSize, model.seqLen)
      tf.tensor2d(b.inputs, [train.microbatchSize, model.seqLen], 'int32').dispose()
    }
  }
  for (let i = 0; i < 20; i++) prepare(i)
  const reps = 500
  const p0 = performance.now()
  for (let i = 0; i < reps; i++) prepare(1000 + i)
  const prepMs = (performance.now() - p0) / reps

  // the baseline: one iteration of the demo model (bytes: its step time does not depend on the ids)
  const trainer = new LocalPipelineTrainer({ model, train, trainTokens: loadBrownCorpus().train })
  let iterMs: number
  try {
    trainer.step() // warm-up
    const s0 = performance.now()
    for (let i = 0; i < STEPS; i++) trainer.step()
    iterMs = (performance.now() - s0) / STEPS
  } finally { trainer.dispose() }
  const stall = prepMs / iterMs
  process.stdout.write(`stage 0 batch preparation ${prepMs.toFixed(3)} ms per iteration (${train.microbatches} x ${train.microbatchSize} x ${model.seqLen} tokens) against an iteration of ${iterMs.toFixed(0)} ms on ${backend} (demo model, ${train.stages} stages in one process)\n`)
  process.stdout.write(`bench: tokenize_mb_s_gpt2=${mbGpt2.toFixed(2)}\n`)
  process.stdout.write(`bench: tokenize_mb_s_byte=${mbByte.toFixed(1)}\n`)
  process.stdout.write(`bench: data_stall_fraction=${stall.toPrecision(2)}\n`)
}

await main()

/**
 * A model trained with the GPT-2 tokenizer leaves spotpipe with that tokenizer: `export` writes
 * GPT-2's tokenizer files (derived from the ranks gpt-tokenizer ships), and `generate` and `eval`
 * speak GPT-2 tokens. The exported tokenizer.json is checked by another implementation than the one
 * it was written from: Hugging Face's own tokenizer library (`hf:PATH`) must give gpt-tokenizer's ids.
 */
import { promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { evaluate } from '../cli/commands/eval.js'
import { exportModel } from '../cli/commands/export.js'
import { generate } from '../cli/commands/generate.js'
import type { CommandIo } from '../cli/checkpoint-flag.js'
import { UsageError } from '../cli/errors.js'
import { ConfigError } from '../common/index.js'
import { CheckpointStore } from '../coordinator/checkpoint-store.js'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig } from '../model/config.js'
import { bpeMerges, gpt2TokenizerFiles } from '../model/export-hf.js'
import { disposeOpCaches } from '../model/ops.js'
import { stageLayout } from '../model/params.js'
import { Stage } from '../model/stage.js'
import { exportStageState } from '../model/state.js'
import { loadGpt2TokenBytes, loadTokenizer } from '../model/tokenizers/index.js'

/** Strings whose GPT-2 ids are easy to get wrong: Unicode, whitespace runs, contractions, digits. */
const EDGE_CASES = [
  'Hello, world!',
  " it's  they're   we'll\tI'd",
  'naïve café — 東京 🙂 Ελληνικά',
  '   leading and trailing spaces   ',
  'line one\nline two\r\n\n\ttabbed',
  '1234567 3.14159 -42',
  'CamelCaseWordsAndsnake_case_words',
  '!!!???...,,,;;;'
]

function capture (): CommandIo & { stdout: () => string, stderr: () => string } {
  let out = ''
  let err = ''
  return { out: t => { out += t }, err: t => { err += t }, stdout: () => out, stderr: () => err }
}

async function rejection (f: () => Promise<unknown>): Promise<Error> {
  try {
    await f()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a rejection')
}

/** A seeded `model` committed as iteration 0 of a 2-stage checkpoint store in `storeDir`. */
async function seededCheckpoint (storeDir: string, model: ModelConfig): Promise<void> {
  const train = resolveTrainConfig({ stages: 2, microbatches: 1, microbatchSize: 1 }, model)
  const stages = [0, 1].map(s => new Stage({ model, train, layout: stageLayout(model, 2, s) }))
  try {
    const store = new CheckpointStore({ dir: storeDir, keep: 2 })
    await store.open()
    const pending = await store.beginCheckpoint(0, 2, model)
    for (let s = 0; s < 2; s++) {
      const st = exportStageState(stages[s])
      await pending.putState(s, { ...st, meta: { ...st.meta, iteration: 0 } })
    }
    await pending.complete()
  } finally {
    for (const s of stages) s.dispose()
  }
}

let dir = ''
const GPT2_MODEL = resolveModelConfig({ dModel: 16, nHeads: 2, nBlocks: 2, seqLen: 16, vocab: 50257 })

beforeAll(async () => {
  await initBackend({ backend: 'wasm', strict: true })
  dir = await fs.mkdtemp(join(tmpdir(), 'spotpipe-gpt2-export-'))
  await seededCheckpoint(join(dir, 'store'), GPT2_MODEL)
})

afterAll(async () => {
  disposeOpCaches()
  await fs.rm(dir, { recursive: true, force: true })
})

describe('GPT-2 tokenizer files', () => {
  it('are GPT-2\'s: 50,000 merges beginning as GPT-2\'s merges.txt does, and a tokenizer.json that Hugging Face\'s library runs to gpt-tokenizer\'s ids', async () => {
    const files = gpt2TokenizerFiles(GPT2_MODEL, await loadGpt2TokenBytes())
    const merges = files['merges.txt'].split('\n')
    expect(merges[0]).toBe('#version: 0.2')
    expect(merges.at(-1)).toBe('') // GPT2Tokenizer drops the first line and the empty last one
    expect(merges.length - 2).toBe(50_000)
    // the first lines of OpenAI's published GPT-2 merges.txt (Ġ is the space's symbol)
    expect(merges.slice(1, 11)).toEqual(['Ġ t', 'Ġ a', 'h e', 'i n', 'r e', 'o n', 'Ġt he', 'e r', 'Ġ s', 'a t'])
    const vocab = JSON.parse(files['vocab.json']) as Record<string, number>
    expect(Object.keys(vocab)).toHaveLength(50_257)
    expect(vocab['<|endoftext|>']).toBe(50256)
    expect(vocab['!']).toBe(0)
    expect(vocab['Ġthe']).toBe(262)
    expect(JSON.parse(files['tokenizer_config.json'])).toMatchObject({ tokenizer_class: 'GPT2Tokenizer', eos_token: '<|endoftext|>', model_max_length: 16 })

    const out = join(dir, 'tok')
    await fs.mkdir(out)
    for (const [name, text] of Object.entries(files)) await fs.writeFile(join(out, name), text)
    const hf = await loadTokenizer(`hf:${out}`)
    const gpt2 = await loadTokenizer('gpt2')
    expect(hf.vocabSize).toBe(50257)
    expect(hf.endOfText).toBe(50256)
    for (const text of EDGE_CASES) {
      const ids = Array.from(gpt2.encode(text))
      expect(Array.from(hf.encode(text)), JSON.stringify(text)).toEqual(ids)
      expect(hf.decode(ids)).toBe(text)
    }
  })

  it('bpeMerges refuses a rank list that is not a BPE\'s', () => {
    const b = (...xs: number[]): Uint8Array => Uint8Array.from(xs)
    const bytes = Array.from({ length: 256 }, (_, i) => b(i))
    expect(bpeMerges([...bytes, b(1, 2), b(1, 2, 3)])).toEqual([[1, 2], [256, 3]])
    // 'abc' with neither 'ab' nor 'bc' ranked below it cannot be a merge of two tokens
    expect(() => bpeMerges([...bytes, b(1, 2, 3)])).toThrow(/token 256 is not the merge of two lower-ranked tokens/)
    expect(() => bpeMerges([...bytes, b(1, 2), b(1, 2)])).toThrow(/token 257 repeats token 256/)
  })
})

describe('export, generate and eval of a GPT-2-vocabulary checkpoint', () => {
  it('export writes GPT-2\'s tokenizer and eos 50256; generate and eval speak GPT-2 tokens; a wrong tokenizer is refused', async () => {
    const ck = ['--checkpoint', join(dir, 'store')]
    const io = capture()
    await exportModel([...ck, '--out', join(dir, 'hf')], io)
    expect(io.stdout()).toMatch(/export: tokenizer gpt2/)
    const names = (await fs.readdir(join(dir, 'hf'))).sort()
    expect(names).toEqual(['config.json', 'merges.txt', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json'])
    expect(JSON.parse(await fs.readFile(join(dir, 'hf', 'config.json'), 'utf8'))).toMatchObject({ vocab_size: 50257, bos_token_id: 50256, eos_token_id: 50256 })
    // the exported folder is itself a tokenizer spotpipe can run (hf:PATH): GPT-2's ids again
    const again = await loadTokenizer(`hf:${join(dir, 'hf')}`)
    const gpt2 = await loadTokenizer('gpt2')
    expect(Array.from(again.encode(EDGE_CASES[2]))).toEqual(Array.from(gpt2.encode(EDGE_CASES[2])))

    disposeOpCaches() // cached constants (causal masks, ones rows) are not leaks
    const before = tf.memory().numTensors
    const g = capture()
    await generate([...ck, '--prompt', 'The jury said', '--tokens', '5', '--temperature', '0'], g)
    expect(g.stderr()).toMatch(/tokenizer gpt2/)
    const text = g.stdout().replace(/\n$/, '')
    // the prompt went in as GPT-2 tokens and came back out through GPT-2's decoder (as bytes, its 13
    // ids would decode to other text, and sampled ids above 255 would not decode at all)
    expect(text.startsWith('The jury said')).toBe(true)
    expect(text.length).toBeGreaterThan('The jury said'.length)

    const data = join(dir, 'eval.txt')
    const body = 'The jury further said in term-end presentments that the City Executive Committee had over-all charge.'
    await fs.writeFile(data, body)
    const e = capture()
    await evaluate([...ck, '--data', data], e)
    const n = gpt2.encode(body).length
    expect(e.stdout()).toMatch(new RegExp(`^eval: loss=\\d+\\.\\d+ perplexity=\\d+\\.\\d+ tokens=${n - 1}\\n$`))
    // a seeded model is close to uniform over 50,257 tokens
    const loss = Number(/loss=([\d.]+)/.exec(e.stdout())?.[1])
    expect(Math.abs(loss - Math.log(50257))).toBeLessThan(0.5)
    disposeOpCaches()
    expect(tf.memory().numTensors).toBe(before)

    // the byte tokenizer cannot speak a 50,257-token model; a vocabulary that names no tokenizer needs the flag
    let err = await rejection(async () => { await generate([...ck, '--prompt', 'a', '--tokenizer', 'byte'], capture()) })
    expect(err).toBeInstanceOf(ConfigError)
    expect(err.message).toMatch(/tokenizer byte has 256 tokens, but the checkpoint's model has a vocabulary of 50257/)
    err = await rejection(async () => { await evaluate([...ck, '--data', data, '--tokenizer', 'sentencepiece'], capture()) })
    expect(err).toBeInstanceOf(UsageError)
    expect(err.message).toMatch(/--tokenizer: unknown tokenizer "sentencepiece"/)
    const odd = join(dir, 'store-odd')
    await seededCheckpoint(odd, resolveModelConfig({ dModel: 16, nHeads: 2, nBlocks: 2, seqLen: 16, vocab: 1000 }))
    err = await rejection(async () => { await generate(['--checkpoint', odd, '--prompt', 'a'], capture()) })
    expect(err).toBeInstanceOf(UsageError)
    expect(err.message).toMatch(/vocabulary has 1000 tokens, neither the byte tokenizer's \(256\) nor GPT-2's \(50257\): give --tokenizer hf:PATH/)
    const oddOut = capture()
    await exportModel(['--checkpoint', odd, '--out', join(dir, 'hf-odd')], oddOut)
    expect(oddOut.stdout()).toMatch(/no tokenizer files: the vocabulary has 1000 tokens/)
    // hf:PATH on export copies the tokenizer it names (here the GPT-2 one exported above, onto the GPT-2 model)
    await exportModel([...ck, '--out', join(dir, 'hf-copy'), '--tokenizer', `hf:${join(dir, 'hf')}`], capture())
    expect(await fs.readFile(join(dir, 'hf-copy', 'tokenizer.json'), 'utf8')).toBe(await fs.readFile(join(dir, 'hf', 'tokenizer.json'), 'utf8'))
  }, 120_000)
})

/**
 * Taking a trained model out of spotpipe: `spotpipe export` (a Hugging Face GPT-2 folder),
 * `generate` and `eval`, on real checkpoints written by the checkpoint store from a model trained
 * with the local pipeline trainer.
 *
 * The exported folder is checked by an independent implementation: test/py/gpt2_numpy.py parses
 * the safetensors file itself and runs GPT-2's forward pass in numpy (no torch, no transformers);
 * its logits must match spotpipe's own within 1e-4.
 */
import { execFile, spawn } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { evaluate } from '../cli/commands/eval.js'
import { ExportExistsError, exportModel } from '../cli/commands/export.js'
import { generate } from '../cli/commands/generate.js'
import type { CommandIo } from '../cli/checkpoint-flag.js'
import { UsageError } from '../cli/errors.js'
import { DataError, SpotpipeError } from '../common/index.js'
import {
  CheckpointCorruptError, CheckpointFileMissingError, CheckpointManifestError, CheckpointNotFoundError
} from '../coordinator/checkpoint-errors.js'
import { readCheckpointAt } from '../coordinator/checkpoint-read.js'
import { CheckpointStore } from '../coordinator/checkpoint-store.js'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig, type ModelConfig } from '../model/config.js'
import { decode, encode, loadBrownCorpus } from '../model/data.js'
import { bytesToUnicode, hfConfig } from '../model/export-hf.js'
import { argmax, evalWindows, generate as generateTokens, InferenceModel } from '../model/inference.js'
import { disposeOpCaches } from '../model/ops.js'
import { stageLayout } from '../model/params.js'
import { decodeSafetensors } from '../model/safetensors.js'
import { Stage } from '../model/stage.js'
import { exportStageState, loadStageState, mergeTensorSets, type StageState } from '../model/state.js'
import { evaluateBatch, LocalPipelineTrainer } from '../model/trainer.js'
import { block, embed, logits as headLogits } from '../model/transformer.js'
import { spotpipeArgs } from '../sim/peer-process.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NUMPY_GPT2 = fileURLToPath(new URL('./py/gpt2_numpy.py', import.meta.url))

const MODEL: Partial<ModelConfig> = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const FIXED_TEXT = 'The jury said it' // 16 bytes: one full context
const ITERATIONS = 6

let dir = ''
let trainer: LocalPipelineTrainer
let store4 = '' // two complete checkpoints (iterations 2 and 5) of a 4-stage run, and one being written
let store2 = '' // iteration 5's weights as a 2-stage checkpoint
let evalText = ''

/** A CommandIo that keeps what a command prints. */
function capture (): CommandIo & { stdout: () => string, stderr: () => string } {
  let out = ''
  let err = ''
  return { out: t => { out += t }, err: t => { err += t }, stdout: () => out, stderr: () => err }
}

async function yieldToRunner (): Promise<void> { await new Promise<void>(resolve => setImmediate(resolve)) }

/** Writes the trainer's stages (or `states`) as checkpoint `iteration` of a store in `storeDir`. */
async function writeCheckpoint (storeDir: string, model: ModelConfig, states: StageState[]): Promise<void> {
  const store = new CheckpointStore({ dir: storeDir, keep: 5 })
  await store.open()
  const it = states[0].meta.iteration
  const pending = await store.beginCheckpoint(it, states.length, model)
  for (let s = 0; s < states.length; s++) await pending.putState(s, states[s])
  await pending.complete()
}

/** spotpipe's own logits [T,V] of `tokens`, straight from the trainer's stages (model/transformer.ts). */
function trainerLogits (tokens: number[]): Float32Array {
  const params = new Map<string, tf.Tensor>()
  for (const s of trainer.stages) for (const [n, v] of s.params) params.set(n, v)
  const m = trainer.model
  const out = tf.tidy(() => {
    const p = (n: string): tf.Tensor => params.get(n) as tf.Tensor
    let h = embed(m, p, tf.tensor2d(tokens, [1, tokens.length], 'int32'))
    for (let i = 0; i < m.nBlocks; i++) h = block(m, p, i, h)
    return headLogits(m, p, h)
  })
  const data = out.dataSync().slice() as Float32Array
  out.dispose()
  return data
}

interface NumpyResult { logits: number[][], config: Record<string, unknown>, metadata: Record<string, string>, names: string[], tokenizer_ids?: number[] }

/** Runs the independent numpy GPT-2 on an exported folder. Fails (never skips) without python3. */
async function numpyGpt2 (folder: string, tokens: number[], text?: string): Promise<NumpyResult> {
  const args = [NUMPY_GPT2, folder, '--tokens', tokens.join(','), ...(text !== undefined ? ['--text', text] : [])]
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile('python3', args, { maxBuffer: 64 * 1024 * 1024 }, (err, out, stderr) => {
      if (err != null) {
        const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
        reject(new Error(missing
          ? 'python3 is required by this test (test/py/gpt2_numpy.py checks the export with numpy) and is not on PATH'
          : `test/py/gpt2_numpy.py failed: ${err.message}\n${stderr}`))
      } else resolve(out)
    })
  })
  return JSON.parse(stdout) as NumpyResult
}

/** Runs `fn` and checks that it leaves no tensor behind (the op caches emptied on both sides). */
async function noLeak<T> (fn: () => Promise<T>): Promise<T> {
  disposeOpCaches()
  const before = tf.memory().numTensors
  const r = await fn()
  disposeOpCaches()
  expect(tf.memory().numTensors).toBe(before)
  return r
}

/** What `fn` rejects with; fails when it resolves. */
async function rejection (fn: () => Promise<unknown>): Promise<SpotpipeError> {
  try {
    await fn()
  } catch (err) {
    expect(err).toBeInstanceOf(SpotpipeError)
    return err as SpotpipeError
  }
  throw new Error('expected a rejection')
}

async function filesOf (folder: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  for (const name of (await fs.readdir(folder)).sort()) out.set(name, await fs.readFile(join(folder, name)))
  return out
}

/** The names of the files whose bytes differ between two folders' contents (or that one lacks). */
function differing (a: Map<string, Buffer>, b: Map<string, Buffer>): string[] {
  const names = new Set([...a.keys(), ...b.keys()])
  return [...names].filter(n => a.get(n) === undefined || b.get(n) === undefined || !(a.get(n) as Buffer).equals(b.get(n) as Buffer)).sort()
}

beforeAll(async () => {
  await initBackend({ backend: 'wasm', strict: true })
  dir = await fs.mkdtemp(join(tmpdir(), 'spotpipe-export-'))
  const corpus = loadBrownCorpus()
  evalText = decode(corpus.validation.subarray(0, 3001))
  trainer = new LocalPipelineTrainer({
    model: MODEL,
    train: { stages: 4, microbatches: 2, microbatchSize: 4, lr: 3e-3, evalBatches: 4 },
    trainTokens: corpus.train,
    validationTokens: corpus.validation
  })
  store4 = join(dir, 'store4')
  store2 = join(dir, 'store2')
  for (let i = 0; i < ITERATIONS; i++) {
    trainer.step()
    await yieldToRunner()
    if (i === 2 || i === ITERATIONS - 1) await writeCheckpoint(store4, trainer.model, trainer.stages.map(s => exportStageState(s)))
  }
  expect(trainer.stages[0].iteration).toBe(ITERATIONS - 1)
  // a checkpoint still being written (no manifest yet): never read
  await fs.mkdir(join(store4, 'ckpt-0000000009'))
  // the same weights and moments split in 2 stages
  const merged = mergeTensorSets(trainer.stages.map(s => exportStageState(s).tensors))
  const meta = exportStageState(trainer.stages[0]).meta
  const two = [0, 1].map(s => new Stage({ model: trainer.model, train: trainer.train, layout: stageLayout(trainer.model, 2, s) }))
  try {
    for (const s of two) loadStageState(s, merged, meta)
    await writeCheckpoint(store2, trainer.model, two.map(s => exportStageState(s)))
  } finally {
    for (const s of two) s.dispose()
  }
}, 300_000)

afterAll(async () => {
  trainer?.dispose()
  disposeOpCaches()
  if (dir !== '') await fs.rm(dir, { recursive: true, force: true })
})

describe('spotpipe export', () => {
  it('writes a GPT-2 folder whose numpy forward pass (test/py/gpt2_numpy.py) gives spotpipe\'s logits within 1e-4', async () => {
    const out = join(dir, 'hf4')
    const io = capture()
    await noLeak(async () => { await exportModel(['--checkpoint', store4, '--out', out], io) })
    expect(io.stdout()).toMatch(/checkpoint 5 \(4 stage\(s\), 4 blocks, d 32, 2 heads, seq 16\) at .*ckpt-0000000005: the newest of 2 complete checkpoint\(s\) in the checkpoint store/)
    expect(io.stdout()).toMatch(/c_attn\.bias and attn\.c_proj\.bias are zeros/)
    expect([...(await filesOf(out)).keys()]).toEqual(['config.json', 'merges.txt', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'vocab.json'])

    const config = JSON.parse(await fs.readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>
    expect(config).toMatchObject({
      model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: 32, n_head: 2, n_layer: 4, n_positions: 16, n_inner: 128,
      vocab_size: 256, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new', tie_word_embeddings: false, bos_token_id: null, eos_token_id: null
    })

    const { tensors, metadata } = decodeSafetensors(await fs.readFile(join(out, 'model.safetensors')))
    expect(metadata).toEqual({ format: 'pt' })
    const names = ['lm_head.weight', 'transformer.ln_f.bias', 'transformer.ln_f.weight', 'transformer.wpe.weight', 'transformer.wte.weight']
    for (let i = 0; i < 4; i++) {
      for (const n of ['attn.c_attn.bias', 'attn.c_attn.weight', 'attn.c_proj.bias', 'attn.c_proj.weight', 'ln_1.bias', 'ln_1.weight', 'ln_2.bias', 'ln_2.weight', 'mlp.c_fc.bias', 'mlp.c_fc.weight', 'mlp.c_proj.bias', 'mlp.c_proj.weight']) names.push(`transformer.h.${i}.${n}`)
    }
    expect([...tensors.keys()].sort()).toEqual(names.sort())
    expect(tensors.get('transformer.h.0.attn.c_attn.weight')?.shape).toEqual([32, 96])
    expect(tensors.get('transformer.h.0.attn.c_attn.bias')?.data.every(x => x === 0)).toBe(true)
    expect(tensors.get('transformer.h.3.attn.c_proj.bias')?.data.every(x => x === 0)).toBe(true)
    expect(tensors.get('lm_head.weight')?.shape).toEqual([256, 32])
    expect(tensors.get('transformer.wpe.weight')?.shape).toEqual([16, 32])

    const tokens = [...encode(FIXED_TEXT)]
    const text = 'héllo, wörld\n\t~ 1/2 ¬'
    const py = await numpyGpt2(out, tokens, text)
    const ours = trainerLogits(tokens)
    expect(py.logits).toHaveLength(tokens.length)
    let maxDiff = 0
    py.logits.forEach((row, t) => {
      expect(row).toHaveLength(256)
      row.forEach((v, j) => { maxDiff = Math.max(maxDiff, Math.abs(v - ours[t * 256 + j])) })
    })
    process.stdout.write(`numpy GPT-2 vs spotpipe logits over ${tokens.length} positions: max |diff| ${maxDiff.toExponential(3)}\n`)
    expect(maxDiff).toBeLessThanOrEqual(1e-4)
    // the model is trained: its logits are far from uniform, so the comparison means something
    expect(Math.max(...py.logits[15]) - Math.min(...py.logits[15])).toBeGreaterThan(1)
    // the tokenizer files give exactly the byte tokens
    expect(py.tokenizer_ids).toEqual([...encode(text)])
  })

  it('the tokenizer files use GPT-2\'s bytes_to_unicode with id = byte and no merges', async () => {
    const out = join(dir, 'hf4')
    const symbols = bytesToUnicode()
    expect(new Set(symbols).size).toBe(256)
    expect(symbols[0x41]).toBe('A')
    expect(symbols[0x20]).toBe('Ġ') // GPT-2's space
    expect(symbols[0x0a]).toBe('Ċ') // and newline
    const vocab = JSON.parse(await fs.readFile(join(out, 'vocab.json'), 'utf8')) as Record<string, number>
    expect(Object.keys(vocab)).toHaveLength(256)
    symbols.forEach((s, b) => { expect(vocab[s]).toBe(b) })
    expect(await fs.readFile(join(out, 'merges.txt'), 'utf8')).toBe('#version: 0.2\n')
    const tok = JSON.parse(await fs.readFile(join(out, 'tokenizer.json'), 'utf8')) as { model: { type: string, vocab: unknown, merges: unknown[] }, pre_tokenizer: { type: string, add_prefix_space: boolean }, added_tokens: unknown[] }
    expect(tok.model.type).toBe('BPE')
    expect(tok.model.vocab).toEqual(vocab)
    expect(tok.model.merges).toEqual([])
    expect(tok.pre_tokenizer).toMatchObject({ type: 'ByteLevel', add_prefix_space: false })
    expect(tok.added_tokens).toEqual([])
    const cfg = JSON.parse(await fs.readFile(join(out, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>
    expect(cfg).toMatchObject({ add_prefix_space: false, bos_token: null, eos_token: null, unk_token: null, model_max_length: 16, clean_up_tokenization_spaces: false })
  })

  it('a 2-stage and a 4-stage checkpoint of the same weights export to identical files, from any way of naming the checkpoint', async () => {
    const from4 = await filesOf(join(dir, 'hf4'))
    const io2 = capture()
    await exportModel(['--checkpoint', store2, '--out', join(dir, 'hf2')], io2)
    expect(io2.stdout()).toMatch(/checkpoint 5 \(2 stage\(s\)/)
    expect(differing(await filesOf(join(dir, 'hf2')), from4)).toEqual([])

    // one checkpoint's own directory
    const ioDir = capture()
    await exportModel(['--checkpoint', join(store4, 'ckpt-0000000005'), '--out', join(dir, 'hf-dir')], ioDir)
    expect(ioDir.stdout()).toMatch(/ckpt-0000000005: the checkpoint directory given/)
    expect(differing(await filesOf(join(dir, 'hf-dir')), from4)).toEqual([])

    // a coordinator's state directory (<state-dir>/checkpoints)
    const state = join(dir, 'state')
    await fs.mkdir(state)
    await fs.cp(store2, join(state, 'checkpoints'), { recursive: true })
    const ioState = capture()
    await exportModel(['--checkpoint', state, '--out', join(dir, 'hf-state')], ioState)
    expect(ioState.stdout()).toMatch(/the newest of 1 complete checkpoint\(s\) in the state directory's store/)
    expect(differing(await filesOf(join(dir, 'hf-state')), from4)).toEqual([])

    // an older checkpoint is other weights
    await exportModel(['--checkpoint', join(store4, 'ckpt-0000000002'), '--out', join(dir, 'hf-old')], capture())
    expect(differing(await filesOf(join(dir, 'hf-old')), from4)).toEqual(['model.safetensors'])
  })
})

describe('spotpipe generate', () => {
  it('is deterministic for a fixed seed, and greedy generation follows the argmax of the logits', async () => {
    const run = async (...args: string[]): Promise<string> => {
      const io = capture()
      await noLeak(async () => { await generate(['--checkpoint', store4, '--prompt', 'The ', ...args], io) })
      expect(io.stderr()).toMatch(/^generate: checkpoint 5 /)
      return io.stdout()
    }
    const a = await run('--tokens', '40', '--temperature', '0.8', '--top-k', '20', '--seed', '7')
    const b = await run('--tokens', '40', '--temperature', '0.8', '--top-k', '20', '--seed', '7')
    const c = await run('--tokens', '40', '--temperature', '0.8', '--top-k', '20', '--seed', '8')
    expect(a).toBe(b)
    expect(a).not.toBe(c)
    expect(a.startsWith('The ')).toBe(true)

    // greedy, past the context window (4 + 30 bytes > seq 16: the context is cropped from the left)
    const greedy = await run('--tokens', '30', '--temperature', '0')
    const ctx = [...encode('The ')]
    for (let n = 0; n < 30; n++) {
      const window = ctx.slice(-16)
      const l = trainerLogits(window)
      ctx.push(argmax(l.subarray((window.length - 1) * 256, window.length * 256)))
    }
    expect(greedy).toBe(decode(ctx) + '\n')
  })

  it('greedy tokens are the argmax of the independent numpy logits too', async () => {
    const found = await readCheckpointAt(store4)
    const prompt = [...encode('The ')]
    const tokens = await noLeak(async () => {
      const model = new InferenceModel(found.model, found.params, found.loaded.stages)
      try {
        return generateTokens(model, prompt, { tokens: 12, temperature: 0, topK: 0, seed: 0 })
      } finally {
        model.dispose()
      }
    })
    const seq = [...prompt, ...tokens] // 16 tokens: one window, no cropping
    const py = await numpyGpt2(join(dir, 'hf4'), seq)
    for (let t = prompt.length - 1; t < seq.length - 1; t++) {
      const row = py.logits[t]
      // the chosen token is numpy's argmax (up to a tie within the 1e-4 tolerance)
      expect(Math.max(...row) - row[seq[t + 1]]).toBeLessThanOrEqual(1e-4)
    }
  })
})

describe('spotpipe eval', () => {
  it('prints a loss equal to the trainer stages\' loss on the same windows, and close to its validation loss', async () => {
    const data = join(dir, 'eval.txt')
    await fs.writeFile(data, evalText)
    const io = capture()
    await noLeak(async () => { await evaluate(['--checkpoint', store2, '--data', data], io) })
    const m = /^eval: loss=(\d+\.\d+) perplexity=(\d+\.\d+) tokens=(\d+)\n$/.exec(io.stdout())
    expect(m, io.stdout()).not.toBeNull()
    const [loss, ppl, count] = [Number(m?.[1]), Number(m?.[2]), Number(m?.[3])]
    const bytes = encode(evalText)
    expect(count).toBe(bytes.length - 1)
    expect(Math.abs(ppl - Math.exp(loss))).toBeLessThan(1e-3)

    // the same windows (consecutive, 16 long, the last shorter), one at a time, through the trainer's own stages
    let sum = 0
    let n = 0
    for (let s = 0; s + 1 < bytes.length; s += 16) {
      const T = Math.min(16, bytes.length - 1 - s)
      const x = tf.tensor2d([...bytes.subarray(s, s + T)], [1, T], 'int32')
      const y = tf.tensor2d([...bytes.subarray(s + 1, s + T + 1)], [1, T], 'int32')
      sum += evaluateBatch(trainer.stages, x, y) * T
      n += T
      x.dispose()
      y.dispose()
    }
    expect(n).toBe(count)
    expect(evalWindows(bytes.length, 16)).toHaveLength(Math.ceil((bytes.length - 1) / 16))
    expect(Math.abs(loss - sum / n)).toBeLessThan(1e-4)
    // and the trainer's validation loss (other windows of the held-out documents) is of the same size
    const val = trainer.validate()
    process.stdout.write(`eval loss ${loss.toFixed(4)} (same windows through the trainer: ${(sum / n).toFixed(4)}; trainer validation ${val.toFixed(4)})\n`)
    expect(Math.abs(loss - val)).toBeLessThan(0.3)
  })
})

describe('bad input gets a typed error naming the problem', () => {
  it('checkpoints: missing, empty, incomplete, a missing stage file, a corrupt file, a bad manifest', async () => {
    const out = join(dir, 'never')
    const exp = async (ck: string): Promise<SpotpipeError> => await rejection(async () => { await exportModel(['--checkpoint', ck, '--out', out], capture()) })

    let e = await exp(join(dir, 'nope'))
    expect(e).toBeInstanceOf(CheckpointNotFoundError)
    expect(e.message).toMatch(/nope does not exist/)

    const empty = join(dir, 'empty')
    await fs.mkdir(empty)
    e = await exp(empty)
    expect(e).toBeInstanceOf(CheckpointNotFoundError)
    expect(e.message).toMatch(/holds no checkpoint/)

    const incomplete = join(dir, 'incomplete')
    await fs.mkdir(join(incomplete, 'ckpt-0000000003'), { recursive: true })
    e = await exp(incomplete)
    expect(e).toBeInstanceOf(CheckpointNotFoundError)
    expect(e.message).toMatch(/no complete checkpoint in .*incomplete: 1 checkpoint directory \(3\)/)

    const copy = async (name: string): Promise<string> => {
      const d = join(dir, name, 'ckpt-0000000005')
      await fs.cp(join(store4, 'ckpt-0000000005'), d, { recursive: true })
      return d
    }
    const noStage = await copy('no-stage')
    await fs.rm(join(noStage, 'stage-2.safetensors'))
    e = await exp(join(dir, 'no-stage'))
    expect(e).toBeInstanceOf(CheckpointFileMissingError)
    expect(e.message).toMatch(/stage-2\.safetensors is missing/)

    const flipped = await copy('flipped')
    const f = join(flipped, 'stage-1.safetensors')
    const bytes = await fs.readFile(f)
    bytes[bytes.length - 5] ^= 0x40
    await fs.writeFile(f, bytes)
    e = await exp(flipped)
    expect(e).toBeInstanceOf(CheckpointCorruptError)
    expect(e.message).toMatch(/stage-1\.safetensors: CRC-32 mismatch/)

    const badManifest = await copy('bad-manifest')
    await fs.writeFile(join(badManifest, 'manifest.json'), '{"format": "spotpipe-checkpoint", ')
    e = await exp(badManifest)
    expect(e).toBeInstanceOf(CheckpointManifestError)
    expect(e.message).toMatch(/manifest\.json: not valid JSON/)

    const wrongModel = await copy('wrong-model')
    const manifest = JSON.parse(await fs.readFile(join(wrongModel, 'manifest.json'), 'utf8')) as { modelConfig: Record<string, unknown> }
    manifest.modelConfig.dModel = 64
    await fs.writeFile(join(wrongModel, 'manifest.json'), JSON.stringify(manifest))
    e = await exp(wrongModel)
    expect(e).toBeInstanceOf(CheckpointCorruptError)
    expect(e.message).toMatch(/tensor embed\.tok is F32 \[256,32\], but the manifest's model needs F32 \[256,64\]/)

    delete manifest.modelConfig.nBlocks
    await fs.writeFile(join(wrongModel, 'manifest.json'), JSON.stringify(manifest))
    e = await exp(wrongModel)
    expect(e).toBeInstanceOf(CheckpointManifestError)
    expect(e.message).toMatch(/"modelConfig" lacks nBlocks/)

    // generate and eval read checkpoints the same way
    e = await rejection(async () => { await generate(['--checkpoint', noStage, '--prompt', 'x'], capture()) })
    expect(e).toBeInstanceOf(CheckpointFileMissingError)
    e = await rejection(async () => { await evaluate(['--checkpoint', join(dir, 'nope'), '--data', join(dir, 'eval.txt')], capture()) })
    expect(e).toBeInstanceOf(CheckpointNotFoundError)
    await expect(fs.stat(out)).rejects.toThrow() // nothing written on failure
  })

  it('flags and values: usage errors', async () => {
    const usage = async (fn: (argv: string[], io: CommandIo) => Promise<void>, argv: string[], re: RegExp): Promise<void> => {
      const e = await rejection(async () => { await fn(argv, capture()) })
      expect(e).toBeInstanceOf(UsageError)
      expect(e.message).toMatch(re)
    }
    const ck = ['--checkpoint', store4]
    const aFile = join(dir, 'a-file.txt')
    await fs.writeFile(aFile, 'not a directory')
    await usage(exportModel, ['--out', join(dir, 'x')], /--checkpoint DIR is required/)
    await usage(exportModel, ck, /--out DIR is required/)
    await usage(exportModel, [...ck, '--out', join(dir, 'x'), '--nope'], /Unknown option '--nope'/)
    await usage(exportModel, [...ck, '--out', aFile], /a-file\.txt is a file, not a directory/)
    await usage(generate, ck, /--prompt TEXT is required/)
    await usage(generate, [...ck, '--prompt', ''], /--prompt must not be empty/)
    await usage(generate, [...ck, '--prompt', 'a', '--tokens', '0'], /--tokens must be an integer >= 1, got "0"/)
    await usage(generate, [...ck, '--prompt', 'a', '--tokens=-3'], /--tokens must be an integer >= 1/)
    await usage(generate, [...ck, '--prompt', 'a', '--tokens', '2.5'], /--tokens must be an integer >= 1/)
    await usage(generate, [...ck, '--prompt', 'a', '--temperature=-1'], /--temperature must be a number >= 0, got "-1"/)
    await usage(generate, [...ck, '--prompt', 'a', '--temperature', 'hot'], /--temperature must be a number >= 0/)
    await usage(generate, [...ck, '--prompt', 'a', '--top-k', '257'], /--top-k must be at most the vocabulary size 256/)
    await usage(generate, [...ck, '--prompt', 'a', '--seed', 'x'], /--seed must be an integer >= 0/)
    await usage(generate, [...ck, 'stray'], /unexpected argument "stray"/)
    await usage(evaluate, ck, /--data PATH is required/)

    const e = await rejection(async () => { await exportModel([...ck, '--out', join(dir, 'hf4')], capture()) })
    expect(e).toBeInstanceOf(ExportExistsError)
    expect(e.message).toMatch(/hf4 is not empty \(config\.json, merges\.txt, model\.safetensors, \.\.\.\); pass --force/)
    await exportModel([...ck, '--out', join(dir, 'hf4'), '--force'], capture())
  })

  it('data and prompts the model cannot take: bytes outside a smaller vocabulary, a missing or too short file', async () => {
    // a checkpoint of a 128-token model (seeded weights committed as iteration 0)
    const small = resolveModelConfig({ ...MODEL, vocab: 128 })
    const storeSmall = join(dir, 'store-small')
    const stages = [0, 1].map(s => new Stage({ model: small, train: trainer.train, layout: stageLayout(small, 2, s) }))
    try {
      await writeCheckpoint(storeSmall, small, stages.map(s => { const st = exportStageState(s); return { ...st, meta: { ...st.meta, iteration: 0 } } }))
    } finally {
      for (const s of stages) s.dispose()
    }
    const ck = ['--checkpoint', storeSmall]
    let e = await rejection(async () => { await generate([...ck, '--prompt', 'caf\u00e9'], capture()) })
    expect(e).toBeInstanceOf(UsageError)
    expect(e.message).toMatch(/--prompt byte 0xc3 at offset 3 is outside the model's vocabulary \(0\.\.127\)/)
    const ascii = await noLeak(async () => { const io = capture(); await generate([...ck, '--prompt', 'cafe', '--tokens', '3', '--temperature', '0'], io); return io.stdout() })
    expect(ascii.startsWith('cafe')).toBe(true)

    const latin = join(dir, 'latin.txt')
    await fs.writeFile(latin, 'na\u00efve text')
    e = await rejection(async () => { await evaluate([...ck, '--data', latin], capture()) })
    expect(e).toBeInstanceOf(DataError)
    expect(e.message).toMatch(/byte 0xc3 at offset 2 is outside the model's vocabulary/)

    e = await rejection(async () => { await evaluate(['--checkpoint', store4, '--data', join(dir, 'missing.txt')], capture()) })
    expect(e).toBeInstanceOf(DataError)
    expect(e.message).toMatch(/cannot read --data .*missing\.txt/)
    const tiny = join(dir, 'tiny.txt')
    await fs.writeFile(tiny, 'a')
    e = await rejection(async () => { await evaluate(['--checkpoint', store4, '--data', tiny], capture()) })
    expect(e).toBeInstanceOf(DataError)
    expect(e.message).toMatch(/has 1 byte\(s\): evaluation needs at least 2/)

    // an exported 128-token model has no byte tokenizer files, and says so
    const io = capture()
    await exportModel([...ck, '--out', join(dir, 'hf-small')], io)
    expect(io.stdout()).toMatch(/no tokenizer files: the vocabulary has 128 tokens/)
    expect([...(await filesOf(join(dir, 'hf-small'))).keys()]).toEqual(['config.json', 'model.safetensors'])
    expect(JSON.parse(await fs.readFile(join(dir, 'hf-small', 'config.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(hfConfig(small))))
  })
})

describe('the spotpipe command', () => {
  interface Run { code: number | null, stdout: string, stderr: string }
  const cli = async (args: string[]): Promise<Run> => await new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, SPOTPIPE_QUIET: '1', SPOTPIPE_BACKEND: 'wasm' }
    delete env.DEBUG
    const child = spawn(process.execPath, [...spotpipeArgs(), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`spotpipe ${args.join(' ')} did not exit in 120 s`)) }, 120_000)
    child.once('close', code => { clearTimeout(t); resolve({ code, stdout, stderr }) })
  })

  it('lists export, generate and eval, runs them, and turns bad input into one line and an exit code', async () => {
    const help = await cli(['--help'])
    expect(help.code).toBe(0)
    for (const name of ['export', 'generate', 'eval']) expect(help.stdout).toMatch(new RegExp(`^  ${name} `, 'm'))

    const data = join(dir, 'eval-cli.txt')
    await fs.writeFile(data, evalText)
    const [ev, missing, zero] = await Promise.all([
      cli(['eval', '--checkpoint', store4, '--data', data]),
      cli(['export', '--checkpoint', join(dir, 'nope'), '--out', join(dir, 'never')]),
      cli(['generate', '--checkpoint', store4, '--prompt', 'a', '--tokens', '0'])
    ])
    expect(ev.code, ev.stderr).toBe(0)
    expect(ev.stdout).toMatch(/^eval: loss=\d+\.\d{6} perplexity=\d+\.\d{4} tokens=3000\n$/)
    expect(ev.stderr).toMatch(/^eval: checkpoint 5 /)
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^spotpipe: .*nope does not exist \[ERR_CHECKPOINT_NOT_FOUND\]\n$/)
    expect(zero.code).toBe(2)
    expect(zero.stderr).toMatch(/^spotpipe: --tokens must be an integer >= 1, got "0" \[ERR_USAGE\]\n$/)
  }, 240_000)
})

/**
 * Presets (model/presets.ts): explicit flags override them, and a checkpoint or a saved run whose
 * model differs from the one asked for is refused with one line naming the differing fields.
 */
import { promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exportModel } from '../cli/commands/export.js'
import { modelModeConfig } from '../cli/commands/sim.js'
import { evaluate } from '../cli/commands/eval.js'
import { UsageError } from '../cli/errors.js'
import { modelFromFlags } from '../cli/model-flags.js'
import { ConfigError } from '../common/index.js'
import { CheckpointStore } from '../coordinator/checkpoint-store.js'
import { Coordinator, DurableState } from '../coordinator/index.js'
import { initBackend } from '../model/backend.js'
import { resolveModelConfig } from '../model/config.js'
import { CONFIG_PRESETS } from '../model/presets.js'
import { exportStageState } from '../model/state.js'
import { LocalPipelineTrainer } from '../model/trainer.js'
import { loadBrownCorpus } from '../model/data.js'

let dir = ''
const silent = { out: () => {}, err: () => {} }

beforeAll(async () => {
  await initBackend({ backend: 'wasm', strict: true })
  dir = await fs.mkdtemp(join(tmpdir(), 'spotpipe-presets-'))
})
afterAll(async () => { await fs.rm(dir, { recursive: true, force: true }) })

describe('presets', () => {
  it('fill the model and training config, and explicit flags override them', () => {
    expect(modelFromFlags({})).toEqual({ model: {}, train: {} })
    const paper = modelFromFlags({ preset: 'paper-124m' })
    expect(paper.model).toEqual({ dModel: 512, nHeads: 8, nBlocks: 12, seqLen: 512 })
    expect(paper.train).toEqual({ stages: 4 })
    const g = modelFromFlags({ preset: 'gpt2-small', 'd-model': '64', heads: '4', stages: '2' })
    expect(g.model).toEqual({ dModel: 64, nHeads: 4, nBlocks: 12, seqLen: 1024, vocab: 50257 })
    expect(g.train).toEqual({ stages: 2 })
    expect(g.tokenizer).toBe('gpt2')
    expect(CONFIG_PRESETS.demo).toEqual({ model: {}, train: {} })
    expect(() => modelFromFlags({ preset: 'gpt3' })).toThrow(UsageError)
    expect(() => modelFromFlags({ preset: 'gpt3' })).toThrow(/--preset: unknown preset "gpt3" \(known: demo, paper-124m, gpt2-small\)/)
  })

  it('sim --preset takes a model preset too (the quick experiment with its shape), as --model-preset does on any experiment', () => {
    const small = modelModeConfig({ preset: 'gpt2-small' })
    expect(small.name).toBe('quick')
    expect(small.model).toMatchObject({ dModel: 768, nHeads: 12, nBlocks: 12, seqLen: 1024, vocab: 256 })
    expect(modelModeConfig({ preset: 'quick', 'model-preset': 'gpt2-small' }).model).toEqual(small.model)
  })

  it('--model-preset puts a model preset\'s shape on an experiment; --preset paper-124m is the paper reproduction', () => {
    const quick = modelModeConfig({})
    const paper = modelModeConfig({ preset: 'quick', 'model-preset': 'paper-124m' })
    expect(paper.name).toBe('quick')
    expect(paper.model).toMatchObject({ dModel: 512, nHeads: 8, nBlocks: 12, seqLen: 512, vocab: 256 })
    expect(paper.train.stages).toBe(4)
    // the rest of the experiment is quick's
    expect(paper.iterations).toBe(quick.iterations)
    expect(paper.strategies).toEqual(quick.strategies)
    const reproduction = modelModeConfig({ preset: 'paper-124m' })
    expect(reproduction.name).toBe('paper-124m')
    expect(reproduction.paper).toBe('paper-124m')
    // an experiment keeps its own model unless a model preset is named
    expect(modelModeConfig({ preset: 'paper-16' }).model).not.toMatchObject({ dModel: 512 })
    expect(() => modelModeConfig({ preset: 'gpt2-small', 'model-preset': 'demo' })).toThrow(/--preset gpt2-small is a model preset, and so is --model-preset demo/)
    expect(() => modelModeConfig({ preset: 'gpt3' })).toThrow(/unknown model-mode preset "gpt3".*or a model preset: demo, paper-124m, gpt2-small/)
  })

  it('a checkpoint that is not the preset\'s model is refused by export and eval, naming the fields', async () => {
    const trainer = new LocalPipelineTrainer({ model: { dModel: 16, nHeads: 2, nBlocks: 2, seqLen: 16 }, train: { stages: 2, microbatches: 1, microbatchSize: 2 }, trainTokens: loadBrownCorpus().train })
    const store = join(dir, 'store')
    try {
      trainer.step()
      const cs = new CheckpointStore({ dir: store, keep: 2 })
      await cs.open()
      const pending = await cs.beginCheckpoint(0, 2, trainer.model)
      for (let s = 0; s < 2; s++) await pending.putState(s, exportStageState(trainer.stages[s]))
      await pending.complete()
    } finally { trainer.dispose() }
    const refused = async (f: () => Promise<unknown>): Promise<Error> => { try { await f() } catch (err) { return err as Error } throw new Error('not refused') }
    const e = await refused(async () => { await exportModel(['--checkpoint', store, '--out', join(dir, 'hf'), '--preset', 'gpt2-small'], silent) })
    expect(e).toBeInstanceOf(ConfigError)
    expect(e.message).toMatch(/^checkpoint 0 at .* is not a gpt2-small model: vocab 256 \(given 50257\), dModel 16 \(given 768\), nHeads 2 \(given 12\), nBlocks 2 \(given 12\), seqLen 16 \(given 1024\)$/)
    await expect(fs.stat(join(dir, 'hf'))).rejects.toThrow()
    const text = join(dir, 'eval.txt')
    await fs.writeFile(text, 'The jury said it would be fine, and it was.')
    const d = await refused(async () => { await evaluate(['--checkpoint', store, '--data', text, '--preset', 'demo'], silent) })
    expect(d.message).toContain('is not a demo model: dModel 16 (given 128), nHeads 2 (given 4), nBlocks 2 (given 8), seqLen 16 (given 64)')
    // the matching shape passes the check
    await exportModel(['--checkpoint', store, '--out', join(dir, 'hf-ok')], silent)
  })

  it('a restarted coordinator given another model than its saved run\'s exits naming the fields', async () => {
    const stateDir = join(dir, 'state')
    await fs.mkdir(stateDir, { recursive: true })
    const saved = resolveModelConfig({ dModel: 64, nHeads: 4, nBlocks: 4, seqLen: 32 })
    await new DurableState(join(stateDir, 'coordinator.json')).save({
      version: 1,
      clusterId: 'c',
      runId: 'run-1',
      epoch: 1,
      committedIteration: 3,
      assignment: { kind: 'assignment', clusterId: 'c', runId: 'run-1', epoch: 1, iteration: 4, stages: [{ stage: 0, peers: ['12D3KooWA'], addrs: ['/ip4/127.0.0.1/tcp/4001'] }], modelConfig: JSON.stringify(saved), trainingConfig: '{}', rebuilt: [] },
      checkpoints: [],
      recoveries: [],
      model: saved,
      train: { stages: 1 }
    })
    const before = await fs.readFile(join(stateDir, 'coordinator.json'), 'utf8')
    const c = new Coordinator({ clusterId: 'c', stateDir, model: { dModel: 64, nHeads: 8, nBlocks: 4, seqLen: 32 }, train: { stages: 1 } })
    try {
      await expect(c.start()).rejects.toThrow(/has another model than the one asked for: nHeads 4 \(given 8\); give its flags/)
    } finally { await c.stop() }
    expect(await fs.readFile(join(stateDir, 'coordinator.json'), 'utf8')).toBe(before) // nothing lost
  })
})

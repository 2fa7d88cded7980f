import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { generateSwarmKey, saveSwarmKey } from '../net/index.js'
import { loadBrownCorpus } from '../model/data.js'
import { LocalPipelineTrainer } from '../model/trainer.js'
import { killAll, spotpipe } from './helpers/procs.js'

const MODEL = ['--d-model', '32', '--heads', '2', '--blocks', '4', '--seq-len', '32', '--stages', '4', '--microbatches', '4', '--microbatch-size', '4']

beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })
afterEach(async () => { await killAll() })

describe('a coordinator and 4 peers as separate processes', () => {
  it('train 20 iterations with the same losses as the local pipeline trainer', async () => {
    // a private cluster, as a user would run it: one secret file for all of them
    const dir = await mkdtemp(join(tmpdir(), 'spotpipe-eq-'))
    const key = ['--swarm-key', join(dir, 'swarm.key')]
    await saveSwarmKey(key[1], generateSwarmKey())
    const coord = spotpipe(['coordinator', '--cluster', 'eq', '--iterations', '20', ...key, ...MODEL])
    const [, addr] = await coord.waitFor(/^coordinator (\S+)/)
    const peers = Array.from({ length: 4 }, () => spotpipe(['peer', '--cluster', 'eq', '--coordinator', addr, '--backend', 'wasm', ...key]))
    await coord.exited
    await rm(dir, { recursive: true, force: true })
    const losses = coord.lines.filter(l => l.startsWith('iter ')).map(l => Number(l.split(' ')[3]))
    expect(losses.length, coord.stderr.join('\n')).toBe(20)

    const corpus = loadBrownCorpus()
    const local = new LocalPipelineTrainer({
      model: { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 32 },
      train: { stages: 4, microbatches: 4, microbatchSize: 4 },
      trainTokens: corpus.train
    })
    try {
      for (let i = 0; i < 20; i++) {
        const want = local.step().loss
        expect(Math.abs(losses[i] - want) / want, `iteration ${i}: ${losses[i]} vs ${want}`).toBeLessThanOrEqual(1e-5)
      }
    } finally { local.dispose() }
    expect(peers.every(p => p.child.exitCode == null)).toBe(true)
  }, 180_000)
})

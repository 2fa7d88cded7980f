/**
 * The user's own data in a real cluster: `spotpipe coordinator` and 4 `spotpipe peer` processes
 * train on a directory of text files with the GPT-2 tokenizer; the checkpoint they write is
 * exported and checked by the independent numpy GPT-2 (test/py/gpt2_numpy.py). Peers holding other
 * data, or none where tokens are read, are refused with one line.
 */
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { exportModel } from '../cli/commands/export.js'
import { readCheckpointAt } from '../coordinator/checkpoint-read.js'
import { loadBrownDocuments } from '../model/data.js'
import { loadTokenStore } from '../model/corpus.js'
import { evaluateTokens, InferenceModel } from '../model/inference.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { spotpipe } from './helpers/procs.js'
import { TestCluster } from './helpers/cluster.js'

const NUMPY_GPT2 = fileURLToPath(new URL('./py/gpt2_numpy.py', import.meta.url))
const MODEL = ['--d-model', '16', '--heads', '2', '--blocks', '4', '--seq-len', '16', '--stages', '4', '--microbatches', '2', '--microbatch-size', '4', '--lr', '1e-2']
const ITERATIONS = 10

const { tempDir } = clusterLifecycle('spotpipe-data-')

/** A directory of `n` Brown documents as text files (the user's own corpus). */
async function textDir (dir: string, first: number, n: number): Promise<string> {
  await fs.mkdir(dir, { recursive: true })
  const docs = loadBrownDocuments().slice(first, first + n)
  for (const d of docs) await fs.writeFile(join(dir, `${d.id.replace(/\W/g, '_')}.txt`), d.text)
  return dir
}

async function numpyLogits (folder: string, tokens: number[]): Promise<number[][]> {
  const out = await new Promise<string>((resolve, reject) => {
    execFile('python3', [NUMPY_GPT2, folder, '--tokens', tokens.join(',')], { maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err != null) reject(new Error(`test/py/gpt2_numpy.py failed (python3 with numpy is required): ${err.message}\n${stderr}`))
      else resolve(stdout)
    })
  })
  return (JSON.parse(out) as { logits: number[][] }).logits
}

describe('a 4-peer cluster on a directory of text with the gpt2 tokenizer', () => {
  it('trains, validation loss falls, and the export matches the numpy GPT-2 within 1e-4', async () => {
    const root = await tempDir()
    const data = await textDir(join(root, 'corpus'), 0, 8)
    const cache = join(root, 'cache')
    const state = join(root, 'state')
    // built once here: the coordinator and the peers read it from the cache
    const store = await loadTokenStore(data, 'gpt2', { cacheDir: cache })
    const dataFlags = ['--data', data, '--tokenizer', 'gpt2', '--data-cache', cache]
    const coord = spotpipe(['coordinator', '--cluster', 'data', '--iterations', String(ITERATIONS), '--open', '--state-dir', state,
      '--checkpoint-every', '4', '--keep-checkpoints', '3', ...MODEL, ...dataFlags])
    const [, addr] = await coord.waitFor(/^coordinator (\S+)/)
    expect(coord.lines.join('\n')).toContain(`data ${store.fingerprint.slice(0, 8)}`)
    const peers = Array.from({ length: 4 }, () => spotpipe(['peer', '--cluster', 'data', '--coordinator', addr, '--backend', 'wasm', '--open', ...dataFlags]))
    const { code } = await coord.exited
    expect(code, coord.stderr.join('\n')).toBe(0)
    const losses = coord.lines.filter(l => l.startsWith('iter ')).map(l => Number(l.split(' ')[3]))
    expect(losses.length).toBe(ITERATIONS)
    expect(peers.every(p => p.child.exitCode == null)).toBe(true)

    // validation loss (held-out documents) of the first and the newest checkpoint
    const ckpts = (await fs.readdir(join(state, 'checkpoints'))).filter(n => n.startsWith('ckpt-')).sort()
    expect(ckpts.length).toBeGreaterThanOrEqual(2)
    const val = store.validation.subarray(0, 16 * 32)
    const lossAt = async (dir: string): Promise<number> => {
      const found = await readCheckpointAt(dir)
      expect(found.model.vocab).toBe(50257)
      const m = new InferenceModel(found.model, found.params, 1)
      try { return evaluateTokens(m, val).loss } finally { m.dispose() }
    }
    const early = await lossAt(join(state, 'checkpoints', ckpts[0]))
    const late = await lossAt(join(state, 'checkpoints', ckpts[ckpts.length - 1]))
    expect(late).toBeLessThan(early)
    expect(early).toBeLessThan(Math.log(50257))

    // export the newest checkpoint; numpy's logits equal spotpipe's
    const out = join(root, 'hf')
    await exportModel(['--checkpoint', state, '--out', out], { out: () => {}, err: () => {} })
    const found = await readCheckpointAt(state)
    const prompt = [...store.validation.subarray(0, 16)]
    const m = new InferenceModel(found.model, found.params, 1)
    let ours: Float32Array
    try { ours = m.logits(prompt) } finally { m.dispose() }
    const py = await numpyLogits(out, prompt)
    let maxDiff = 0
    for (let t = 0; t < prompt.length; t++) for (let v = 0; v < 50257; v++) maxDiff = Math.max(maxDiff, Math.abs(py[t][v] - ours[t * 50257 + v]))
    expect(maxDiff).toBeLessThanOrEqual(1e-4)
  }, 150_000)

  it('refuses a peer with other data (naming both fingerprints) and one with no --data for a stage that reads tokens', async () => {
    const root = await tempDir()
    const cache = join(root, 'cache')
    const ours = await loadTokenStore(await textDir(join(root, 'a'), 0, 3), 'byte', { cacheDir: cache })
    const theirs = await loadTokenStore(await textDir(join(root, 'b'), 3, 3), 'byte', { cacheDir: cache })
    const c = new TestCluster({
      clusterId: 'refuse',
      model: { dModel: 16, nHeads: 2, nBlocks: 2, seqLen: 16 },
      train: { stages: 2, microbatches: 1, microbatchSize: 2 },
      data: { fingerprint: ours.fingerprint, tokenizer: ours.tokenizer.fingerprint }
    }, { open: true })
    try {
      await c.startCoordinator()
      const initial = c.coord.assignInitial({ timeoutMs: 60_000 }).catch((err: Error) => err)
      const wrong = await c.addPeer(['--data', join(root, 'b'), '--data-cache', cache])
      const none = await c.addPeer()
      const [w, n] = await Promise.all([wrong.proc.exited, none.proc.exited])
      expect(w.code).toBe(1)
      const wLine = wrong.proc.stderr.filter(l => l.startsWith('spotpipe:'))
      expect(wLine).toHaveLength(1)
      expect(wLine[0]).toContain(theirs.fingerprint)
      expect(wLine[0]).toContain(ours.fingerprint)
      expect(wLine[0]).toContain('[ERR_DATA_MISMATCH]')
      expect(n.code).toBe(1)
      expect(none.proc.stderr.filter(l => l.startsWith('spotpipe:')).join('\n')).toMatch(/stage [01] reads training tokens, but this peer has no --data.*\[ERR_DATA_REQUIRED\]$/)
      // the coordinator is still running, its assignment and epoch intact; it waits for peers again
      expect(c.coord.epoch).toBeGreaterThanOrEqual(1)
      expect(c.coord.assignment?.stages).toHaveLength(2)
      void initial
    } finally {
      await c.stop()
    }
  }, 90_000)
})

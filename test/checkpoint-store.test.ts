import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest'
import {
  CheckpointAbandonedError,
  CheckpointCorruptError,
  CheckpointIncompleteError,
  CheckpointMissingTensorsError,
  CheckpointStore,
  CheckpointUsageError,
  NoValidCheckpointError,
  checkpointDirName,
  metaFor,
  stageFileName,
  tensorsFor
} from '../coordinator/checkpoint-store.js'
import { resolveModelConfig } from '../model/config.js'
import { stageLayout, stageSpecs } from '../model/params.js'
import { mulberry32 } from '../model/rng.js'
import { encodeSafetensors, type TensorSet } from '../model/safetensors.js'
import { encodeStageState, OPTIM_M, OPTIM_V, type StageState } from '../model/state.js'

const model = resolveModelConfig({ dModel: 8, nHeads: 2, nBlocks: 4, seqLen: 4 })

let root: string
let n = 0
let stderr: MockInstance
beforeAll(async () => { root = await fs.mkdtemp(join(tmpdir(), 'spotpipe-ckpt-')) })
afterAll(async () => { await fs.rm(root, { recursive: true, force: true }) })
// the store reports skipped and removed checkpoints on stderr; keep it for assertions, off the console
beforeAll(() => { stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true) })
afterEach(() => { stderr.mockClear() })
afterAll(() => { stderr.mockRestore() })

const freshDir = (): string => join(root, `store-${n++}`)
const logged = (): string => stderr.mock.calls.map(c => String(c[0])).join('')

/** Params of every stage of an S-way split with random values, plus Adam moments and metadata. */
function makeStates (stages: number, seed: number, adamStep = 12): StageState[] {
  const rand = mulberry32(seed)
  const random = (size: number): Float32Array => Float32Array.from({ length: size }, () => rand() * 2 - 1)
  return Array.from({ length: stages }, (_, s) => {
    const tensors: TensorSet = new Map()
    for (const spec of stageSpecs(model, stageLayout(model, stages, s))) {
      const size = spec.shape.reduce((a, b) => a * b, 1)
      tensors.set(spec.name, { dtype: 'F32', shape: spec.shape, data: random(size) })
      tensors.set(OPTIM_M + spec.name, { dtype: 'F32', shape: spec.shape, data: random(size) })
      tensors.set(OPTIM_V + spec.name, { dtype: 'F32', shape: spec.shape, data: random(size).map(Math.abs) })
    }
    return { tensors, meta: { iteration: -1, adamStep, lrScale: 1, gradNorm: 0.25 + s } }
  })
}

/** `st` as the state of committed iteration `iteration` (a checkpoint of `it` holds only states of `it`). */
function at (st: StageState, iteration: number): StageState {
  return { tensors: st.tensors, meta: { ...st.meta, iteration } }
}

/** Writes a complete checkpoint, stages put concurrently and out of order; the states then belong to `iteration`. */
async function write (store: CheckpointStore, iteration: number, states: StageState[]): Promise<void> {
  for (const st of states) st.meta.iteration = iteration
  const h = await store.beginCheckpoint(iteration, states.length, { ...model })
  await Promise.all(states.map((st, s) => ({ st, s })).reverse().map(async ({ st, s }) => { await h.putStage(s, encodeStageState(st)) }))
  await h.complete()
}

async function openStore (dir: string, keep = 3): Promise<CheckpointStore> {
  const store = new CheckpointStore({ dir, keep })
  await store.open()
  return store
}

const ckptDir = (dir: string, it: number): string => join(dir, checkpointDirName(it))
const stagePath = (dir: string, it: number, s: number): string => join(ckptDir(dir, it), stageFileName(s))
const manifestPath = (dir: string, it: number): string => join(ckptDir(dir, it), 'manifest.json')

/** A store holding checkpoints 10 and 20 (4 stages each). */
async function twoCheckpoints (): Promise<{ dir: string, store: CheckpointStore, older: StageState[] }> {
  const dir = freshDir()
  const store = await openStore(dir)
  const older = makeStates(4, 1)
  await write(store, 10, older)
  await write(store, 20, makeStates(4, 2))
  return { dir, store, older }
}

function expectSameTensors (got: TensorSet, want: TensorSet): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
  for (const [name, t] of want) {
    expect(got.get(name)?.shape).toEqual(t.shape)
    expect(got.get(name)?.data).toEqual(t.data)
  }
}

describe('CheckpointStore writing and retention', () => {
  it('keeps only the newest `keep` complete checkpoints, on disk and after reopening', async () => {
    const dir = freshDir()
    const store = await openStore(dir, 2)
    for (const it of [5, 10, 15, 20]) await write(store, it, makeStates(2, it))
    expect(store.list().map(c => c.iteration)).toEqual([20, 15])
    expect(store.latest()).toMatchObject({ iteration: 20, stages: 2, dir: ckptDir(dir, 20) })
    expect((await fs.readdir(dir)).sort()).toEqual([checkpointDirName(15), checkpointDirName(20)])
    expect((await fs.readdir(ckptDir(dir, 20))).sort()).toEqual(['manifest.json', 'stage-0.safetensors', 'stage-1.safetensors'])
    const again = await openStore(dir, 2)
    expect(again.list().map(c => c.iteration)).toEqual([20, 15])
  })

  it('round-trips states, metadata and the model config; the manifest records sizes and CRC-32s', async () => {
    const dir = freshDir()
    const store = await openStore(dir)
    const states = makeStates(4, 7)
    await write(store, 30, states)
    const loaded = await store.load()
    expect(loaded).toMatchObject({ iteration: 30, stages: 4, modelConfig: { ...model } })
    for (let s = 0; s < 4; s++) {
      expectSameTensors(loaded.states[s].tensors, states[s].tensors)
      expect(loaded.states[s].meta).toEqual(states[s].meta)
    }
    const manifest = JSON.parse(await fs.readFile(manifestPath(dir, 30), 'utf8'))
    expect(manifest).toMatchObject({ format: 'spotpipe-checkpoint', version: 4, iteration: 30, stages: 4 })
    const file2 = await fs.readFile(stagePath(dir, 30, 2))
    expect(manifest.files[2]).toEqual({ stage: 2, file: 'stage-2.safetensors', bytes: encodeStageState(states[2]).length, crc32: (crc32(file2) >>> 0).toString(16).padStart(8, '0') })
    expect(loaded.bytes).toBe(manifest.files.reduce((a: number, f: { bytes: number }) => a + f.bytes, 0))
  })

  it('loads a version-1 checkpoint (a sha256 per file) and still detects a flipped byte in it', async () => {
    const dir = freshDir()
    const states = makeStates(2, 9)
    await write(await openStore(dir), 40, states)
    // rewrite the manifest as version 1 wrote it
    const manifest = JSON.parse(await fs.readFile(manifestPath(dir, 40), 'utf8'))
    manifest.version = 1
    for (const f of manifest.files) {
      f.sha256 = createHash('sha256').update(await fs.readFile(join(ckptDir(dir, 40), f.file))).digest('hex')
      delete f.crc32
    }
    await fs.writeFile(manifestPath(dir, 40), JSON.stringify(manifest))
    const loaded = await (await openStore(dir)).load(40)
    expectSameTensors(loaded.states[1].tensors, states[1].tensors)
    const bytes = await fs.readFile(stagePath(dir, 40, 1))
    bytes[bytes.length - 5] ^= 0x01
    await fs.writeFile(stagePath(dir, 40, 1), bytes)
    await expect((await openStore(dir)).load(40)).rejects.toThrow(/stage-1\.safetensors: sha256 mismatch/)
    // a version-1 entry without its sha256 is a damaged manifest
    delete manifest.files[0].sha256
    await fs.writeFile(manifestPath(dir, 40), JSON.stringify(manifest))
    await expect((await openStore(dir)).load(40)).rejects.toMatchObject({ code: 'ERR_CHECKPOINT_MANIFEST' })
  })

  it('loads a version-2 checkpoint, whose stage files count optimizer steps (weight_version) and take the manifest\'s iteration', async () => {
    const dir = freshDir()
    const states = makeStates(2, 14, 7)
    await write(await openStore(dir), 44, states)
    // rewrite the stage files and manifest as the code before spotpipe.iteration wrote them
    const manifest = JSON.parse(await fs.readFile(manifestPath(dir, 44), 'utf8'))
    manifest.version = 2
    for (const [s, f] of manifest.files.entries()) {
      const meta = states[s].meta
      const bytes = encodeSafetensors(states[s].tensors, { 'spotpipe.adam_step': String(meta.adamStep), 'spotpipe.lr_scale': String(meta.lrScale), 'spotpipe.weight_version': String(meta.adamStep), 'spotpipe.grad_norm': String(meta.gradNorm) })
      await fs.writeFile(join(ckptDir(dir, 44), f.file), bytes)
      f.bytes = bytes.length
      f.crc32 = (crc32(bytes) >>> 0).toString(16).padStart(8, '0')
    }
    await fs.writeFile(manifestPath(dir, 44), JSON.stringify(manifest))
    const loaded = await (await openStore(dir)).load(44)
    expect(loaded.states.map(st => st.meta)).toEqual(states.map(st => ({ ...st.meta, iteration: 44 })))
    // as version 3 the same files lack spotpipe.iteration: damaged
    manifest.version = 3
    await fs.writeFile(manifestPath(dir, 44), JSON.stringify(manifest))
    await expect((await openStore(dir)).load(44)).rejects.toThrow(/stage-0\.safetensors: does not decode: state metadata lacks spotpipe\.iteration/)
  })

  it('refuses, on put and on load, a stage state that belongs to another iteration than the checkpoint', async () => {
    const dir = freshDir()
    const store = await openStore(dir)
    const states = makeStates(2, 15).map(st => at(st, 11))
    const h = await store.beginCheckpoint(12, 2, model)
    await expect(h.putState(0, states[0])).rejects.toThrow(/checkpoint 12: snapshot for stage-0\.safetensors is the state of iteration 11/)
    await expect(h.putStage(1, encodeStageState(states[1]))).rejects.toBeInstanceOf(CheckpointCorruptError)
    await h.abandon()
    // a stage file of iteration 11 copied into checkpoint 12 (a valid manifest for it)
    await write(store, 12, makeStates(2, 16))
    const bytes = encodeStageState(states[1])
    await fs.writeFile(stagePath(dir, 12, 1), bytes)
    const manifest = JSON.parse(await fs.readFile(manifestPath(dir, 12), 'utf8'))
    manifest.files[1] = { ...manifest.files[1], bytes: bytes.length, crc32: (crc32(bytes) >>> 0).toString(16).padStart(8, '0') }
    await fs.writeFile(manifestPath(dir, 12), JSON.stringify(manifest))
    await expect((await openStore(dir)).load(12)).rejects.toThrow(/checkpoint 12: .*stage-1\.safetensors: holds the state of iteration 11/)
  })

  it('ignores a checkpoint without a manifest (crash mid-write) and removes it on open', async () => {
    const { dir } = await twoCheckpoints()
    // crash after two of four stage files: a second process writes them and never completes
    const crashed = await openStore(dir)
    const h = await crashed.beginCheckpoint(30, 4, model)
    const states = makeStates(4, 3)
    await h.putStage(0, encodeStageState(at(states[0], 30)))
    await h.putStage(1, encodeStageState(at(states[1], 30)))
    // and a bare directory with a stage file, written by hand
    await fs.mkdir(ckptDir(dir, 40))
    await fs.writeFile(stagePath(dir, 40, 0), encodeStageState(at(states[0], 40)))

    const store = await openStore(dir)
    expect(store.list().map(c => c.iteration)).toEqual([20, 10])
    expect(logged()).toMatch(/removing incomplete checkpoint 30/)
    expect((await fs.readdir(dir)).sort()).toEqual([checkpointDirName(10), checkpointDirName(20)])
    expect((await store.loadNewestValid()).iteration).toBe(20)
  })

  it('putState writes byte for byte the file putStage(encodeStageState) writes, and refuses NaN', async () => {
    const [dirA, dirB] = [freshDir(), freshDir()]
    const states = makeStates(2, 9).map(st => at(st, 4))
    const a = await (await openStore(dirA)).beginCheckpoint(4, 2, model)
    await a.putStage(0, encodeStageState(states[0]))
    await a.putState(1, states[1])
    await a.complete()
    const store = await openStore(dirB)
    const b = await store.beginCheckpoint(4, 2, model)
    await b.putState(0, states[0])
    await b.putStage(1, encodeStageState(states[1]))
    await b.complete()
    for (const s of [0, 1]) expect((await fs.readFile(stagePath(dirA, 4, s))).equals(await fs.readFile(stagePath(dirB, 4, s))), `stage ${s}`).toBe(true)
    const loaded = await store.load(4)
    expect(loaded.iteration).toBe(4)
    const bad = at(makeStates(1, 10)[0], 8)
    const [name, t] = [...bad.tensors].find(([, x]) => x.dtype === 'F32') as [string, { data: Float32Array }]
    t.data[3] = NaN
    const c = await store.beginCheckpoint(8, 1, model)
    await expect(c.putState(0, bad)).rejects.toThrow(new RegExp(`${name.replace(/\./g, '\\.')}.*non-finite`))
    await expect(c.putState(0, bad)).rejects.toBeInstanceOf(CheckpointCorruptError)
    await c.abandon()
  })

  it('completes only when every stage is in, and refuses bad puts', async () => {
    const store = await openStore(freshDir())
    const states = makeStates(2, 4).map(st => at(st, 8))
    const h = await store.beginCheckpoint(8, 2, model)
    await h.putStage(1, encodeStageState(states[1]))
    await expect(h.complete()).rejects.toBeInstanceOf(CheckpointIncompleteError)
    await expect(h.complete()).rejects.toMatchObject({ code: 'ERR_CHECKPOINT_INCOMPLETE', missing: [0] })
    expect(store.list()).toEqual([])
    await expect(h.putStage(1, encodeStageState(states[1]))).rejects.toBeInstanceOf(CheckpointUsageError)
    await expect(h.putStage(2, encodeStageState(states[1]))).rejects.toThrow(/stage 2 out of range 0\.\.1/)
    await expect(h.putStage(0, new Uint8Array(40))).rejects.toBeInstanceOf(CheckpointCorruptError)
    await h.putStage(0, encodeStageState(states[0]))
    expect(await h.complete()).toMatchObject({ iteration: 8, stages: 2 })
    expect(store.list().map(c => c.iteration)).toEqual([8])
    await expect(h.putStage(0, encodeStageState(states[0]))).rejects.toThrow(/already complete/)
  })

  it('a new checkpoint abandons the pending one; abandon deletes the partial files', async () => {
    const dir = freshDir()
    const store = await openStore(dir)
    const states = makeStates(2, 5)
    const old = await store.beginCheckpoint(8, 2, model)
    await old.putStage(0, encodeStageState(at(states[0], 8)))
    const cur = await store.beginCheckpoint(9, 2, model)
    expect(old.status).toBe('abandoned')
    await expect(old.putStage(1, encodeStageState(at(states[1], 8)))).rejects.toBeInstanceOf(CheckpointAbandonedError)
    await expect(old.complete()).rejects.toThrow(/checkpoint 8 was abandoned \(superseded by checkpoint 9\)/)
    await expect(fs.stat(ckptDir(dir, 8))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(store.pendingCheckpoint).toBe(cur)
    await cur.putStage(0, encodeStageState(at(states[0], 9)))
    await cur.abandon()
    await expect(fs.stat(ckptDir(dir, 9))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(store.pendingCheckpoint).toBeUndefined()
    expect(store.list()).toEqual([])
  })

  it('abandoning while stage writes are in flight fails them and leaves nothing behind', async () => {
    const dir = freshDir()
    const store = await openStore(dir)
    const states = makeStates(4, 6).map(st => at(st, 8))
    const h = await store.beginCheckpoint(8, 4, model)
    const puts = states.map(async (st, s) => { await h.putStage(s, encodeStageState(st)) })
    const settled = Promise.allSettled(puts)
    await h.abandon('test')
    const results = await settled
    for (const r of results) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'ERR_CHECKPOINT_ABANDONED' } })
    expect(await fs.readdir(dir)).toEqual([])
  })

  it('replaces a checkpoint of the same iteration and drops newer ones from a rolled-back run', async () => {
    const { dir, store } = await twoCheckpoints()
    const redo = makeStates(4, 9)
    await write(store, 10, redo)
    expect(store.list().map(c => c.iteration)).toEqual([10])
    await expect(fs.stat(ckptDir(dir, 20))).rejects.toMatchObject({ code: 'ENOENT' })
    expectSameTensors((await store.load(10)).states[3].tensors, redo[3].tensors)
  })

  it('refuses use before open and bad arguments with typed errors', async () => {
    const store = new CheckpointStore({ dir: freshDir() })
    expect(() => store.list()).not.toThrow()
    await expect(store.load()).rejects.toMatchObject({ code: 'ERR_CHECKPOINT_USAGE' })
    expect(() => new CheckpointStore({ dir: freshDir(), keep: 0 })).toThrow(expect.objectContaining({ code: 'ERR_CONFIG' }))
    await store.open()
    await expect(store.beginCheckpoint(-1, 2, model)).rejects.toMatchObject({ code: 'ERR_CHECKPOINT_USAGE' })
    await expect(store.beginCheckpoint(1, 2, { big: 1n })).rejects.toThrow(/modelConfig is not JSON-serialisable/)
    await expect(store.load(3)).rejects.toMatchObject({ code: 'ERR_CHECKPOINT_NOT_FOUND' })
    await expect(store.loadNewestValid()).rejects.toMatchObject({ code: 'ERR_NO_CHECKPOINT', skipped: [] })
  })
})

describe('CheckpointStore verification and fallback', () => {
  const cases: Array<{ name: string, damage: (dir: string) => Promise<void>, code: string, reason: RegExp }> = [
    {
      name: 'a flipped byte in a stage file',
      damage: async dir => {
        const bytes = await fs.readFile(stagePath(dir, 20, 1))
        bytes[bytes.length - 5] ^= 0x01
        await fs.writeFile(stagePath(dir, 20, 1), bytes)
      },
      code: 'ERR_CHECKPOINT_CORRUPT',
      reason: /checkpoint 20: .*stage-1\.safetensors: CRC-32 mismatch/
    },
    {
      name: 'a truncated stage file',
      damage: async dir => { await fs.truncate(stagePath(dir, 20, 2), 100) },
      code: 'ERR_CHECKPOINT_CORRUPT',
      reason: /checkpoint 20: .*stage-2\.safetensors: truncated: 100 bytes, manifest says \d+/
    },
    {
      name: 'a missing stage file',
      damage: async dir => { await fs.rm(stagePath(dir, 20, 3)) },
      code: 'ERR_CHECKPOINT_FILE_MISSING',
      reason: /checkpoint 20: .*stage-3\.safetensors is missing/
    },
    {
      name: 'a manifest that is not JSON',
      damage: async dir => { await fs.writeFile(manifestPath(dir, 20), '{"format": "spotpipe-checkpoint", "vers') },
      code: 'ERR_CHECKPOINT_MANIFEST',
      reason: /checkpoint 20: .*manifest\.json: not valid JSON/
    },
    {
      name: 'a manifest with a bad field',
      damage: async dir => {
        const m = JSON.parse(await fs.readFile(manifestPath(dir, 20), 'utf8'))
        m.files[0].file = '../../etc/passwd'
        await fs.writeFile(manifestPath(dir, 20), JSON.stringify(m))
      },
      code: 'ERR_CHECKPOINT_MANIFEST',
      reason: /manifest\.json: field "files\[0\]\.file" is "\.\.\/\.\.\/etc\/passwd", expected "stage-0\.safetensors"/
    },
    {
      name: 'a manifest deleted after open',
      damage: async dir => { await fs.rm(manifestPath(dir, 20)) },
      code: 'ERR_CHECKPOINT_FILE_MISSING',
      reason: /checkpoint 20: .*manifest\.json is missing/
    }
  ]

  for (const c of cases) {
    it(`detects ${c.name} and falls back to the previous checkpoint`, async () => {
      const { dir, store, older } = await twoCheckpoints()
      await c.damage(dir)
      await expect(store.load(20)).rejects.toMatchObject({ code: c.code, iteration: 20 })
      const got = await store.loadNewestValid()
      expect(got.iteration).toBe(10)
      expect(got.skipped).toEqual([{ iteration: 20, code: c.code, reason: expect.stringMatching(c.reason) }])
      expectSameTensors(got.states[0].tensors, older[0].tensors)
      expect(logged()).toMatch(/skipping checkpoint 20: /)
    })
  }

  it('reports a manifest that damages at rest the same way after reopening', async () => {
    const { dir } = await twoCheckpoints()
    await fs.writeFile(manifestPath(dir, 20), 'garbage')
    const store = await openStore(dir)
    expect(store.list().map(c => c.iteration)).toEqual([20, 10])
    expect(store.list()[0].stages).toBeUndefined()
    const got = await store.loadNewestValid()
    expect(got.iteration).toBe(10)
    expect(got.skipped[0]).toMatchObject({ iteration: 20, code: 'ERR_CHECKPOINT_MANIFEST' })
  })

  it('throws NoValidCheckpointError listing every skipped checkpoint when none verifies', async () => {
    const { dir, store } = await twoCheckpoints()
    await fs.truncate(stagePath(dir, 20, 0), 10)
    await fs.rm(stagePath(dir, 10, 2))
    const err = await store.loadNewestValid().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoValidCheckpointError)
    expect(err).toMatchObject({
      code: 'ERR_NO_CHECKPOINT',
      skipped: [
        { iteration: 20, code: 'ERR_CHECKPOINT_CORRUPT', reason: expect.stringContaining('stage-0.safetensors') },
        { iteration: 10, code: 'ERR_CHECKPOINT_FILE_MISSING', reason: expect.stringContaining('stage-2.safetensors') }
      ]
    })
  })
})

describe('loading a checkpoint into another stage split', () => {
  it('serves a 4-stage checkpoint to a 2-stage layout, params and Adam moments', async () => {
    const store = await openStore(freshDir())
    const states = makeStates(4, 11, 33)
    await write(store, 50, states)
    const all = new Map([...states.flatMap(s => [...s.tensors])])
    const ck = await store.load(50)
    for (let s = 0; s < 2; s++) {
      const names = stageSpecs(model, stageLayout(model, 2, s)).map(p => p.name)
      const picked = tensorsFor(names, ck)
      expect(picked.size).toBe(3 * names.length)
      for (const [name, t] of picked) expect(t.data).toEqual(all.get(name)?.data)
      expect(tensorsFor(names, ck, { optimizer: false }).size).toBe(names.length)

      const viaStage = await store.loadStage(s, names)
      expect(viaStage.iteration).toBe(50)
      expectSameTensors(viaStage.state.tensors, picked)
      expect(viaStage.state.meta).toEqual(states[0].meta)
    }
    // the 2-stage split's stage 0 holds embed and blocks 0-1, which were stages 0 and 1
    expect([...tensorsFor(['embed.tok', 'blocks.1.mlp.w2'], ck).keys()]).toEqual([
      'embed.tok', 'optim.m.embed.tok', 'optim.v.embed.tok', 'blocks.1.mlp.w2', 'optim.m.blocks.1.mlp.w2', 'optim.v.blocks.1.mlp.w2'
    ])
  })

  it('uses the matching stage file\'s metadata under the same split, and warns on an Adam step mismatch only under another split', async () => {
    const store = await openStore(freshDir())
    const states = makeStates(4, 12)
    // stage 2 was rebuilt by CheckFree (fresh Adam) or skipped a non-finite step: its own step is right
    states[2].meta = { ...states[2].meta, adamStep: 11 }
    await write(store, 60, states)
    const ck = await store.load()
    const names2 = stageSpecs(model, stageLayout(model, 4, 2)).map(p => p.name)
    expect(metaFor(ck, names2)).toEqual(states[2].meta)
    expect(logged()).not.toMatch(/disagree on the Adam step/)
    expect(metaFor(ck, ['embed.tok'])).toEqual(states[0].meta)
    expect(logged()).toMatch(/checkpoint 60: loading into another stage split, and its stages disagree on the Adam step \(12, 12, 11, 12\)/)
  })

  it('names every tensor the checkpoint lacks', async () => {
    const store = await openStore(freshDir())
    await write(store, 70, makeStates(4, 13))
    const bigger = resolveModelConfig({ ...model, nBlocks: 5 })
    const names = stageSpecs(bigger, stageLayout(bigger, 1, 0)).map(p => p.name)
    const err = await store.loadStage(0, names).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(CheckpointMissingTensorsError)
    expect((err as CheckpointMissingTensorsError).missing).toHaveLength(12 * 3)
    expect((err as Error).message).toMatch(/^checkpoint 70 lacks 36 tensor\(s\) needed by stage 0: blocks\.4\.ln1\.g, optim\.m\.blocks\.4\.ln1\.g, .*\.\.\. 28 more$/)
  })
})

describe('partial checkpoints (a stage holder lost mid-pull costs only its stage\'s file)', () => {
  /** Writes checkpoint `iteration` holding only `stages` of an S-stage layout. */
  async function writePartial (store: CheckpointStore, iteration: number, states: StageState[], stages: number[]): Promise<void> {
    const h = await store.beginCheckpoint(iteration, states.length, { ...model })
    for (const s of stages) await h.putStage(s, encodeStageState(at(states[s], iteration)))
    await h.complete(undefined, { partial: true })
  }

  it('writes a version-4 manifest listing only the stages put; refuses an empty one and a partial one not asked for', async () => {
    const dir = freshDir()
    const store = await openStore(dir)
    const states = makeStates(4, 21)
    const h = await store.beginCheckpoint(7, 4, model)
    await expect(h.complete(undefined, { partial: true })).rejects.toMatchObject({ code: 'ERR_CHECKPOINT_INCOMPLETE', missing: [0, 1, 2, 3] })
    await h.putStage(1, encodeStageState(at(states[1], 7)))
    await h.putStage(3, encodeStageState(at(states[3], 7)))
    await expect(h.complete()).rejects.toMatchObject({ missing: [0, 2] })
    const info = await h.complete(undefined, { partial: true })
    expect(info).toMatchObject({ iteration: 7, stages: 4, complete: false, held: [1, 3] })
    const manifest = JSON.parse(await fs.readFile(manifestPath(dir, 7), 'utf8'))
    expect(manifest.version).toBe(4)
    expect(manifest.files.map((f: { stage: number }) => f.stage)).toEqual([1, 3])
    expect((await fs.readdir(ckptDir(dir, 7))).sort()).toEqual(['manifest.json', 'stage-1.safetensors', 'stage-3.safetensors'])
    // reopening reads it back as partial
    const again = await openStore(dir)
    expect(again.list()).toMatchObject([{ iteration: 7, complete: false, held: [1, 3] }])
    expect(again.latest()).toBeUndefined()
  })

  it('refuses a manifest leaving stages out unless it is version 4, and a version-4 one with stages out of order', async () => {
    const dir = freshDir()
    const store = await openStore(dir)
    await writePartial(store, 5, makeStates(4, 22), [0, 2])
    const text = await fs.readFile(manifestPath(dir, 5), 'utf8')
    const m = JSON.parse(text)
    await fs.writeFile(manifestPath(dir, 5), JSON.stringify({ ...m, version: 3 }))
    await expect((await openStore(dir)).load(5)).rejects.toThrow(/field "files" lists 2 file\(s\) for 4 stage\(s\)/)
    await fs.writeFile(manifestPath(dir, 5), JSON.stringify({ ...m, files: [m.files[1], m.files[0]] }))
    await expect((await openStore(dir)).load(5)).rejects.toThrow(/files\[1\]\.stage" is 0, expected a stage above 2/)
  })

  it('latest() is the newest complete checkpoint, latestFor(stage) the newest holding that stage of the same layout', async () => {
    const store = await openStore(freshDir(), 2)
    const states = makeStates(4, 23)
    await write(store, 10, makeStates(4, 24))
    await writePartial(store, 12, states, [0, 1, 3])
    await writePartial(store, 13, states, [2])
    expect(store.latest()?.iteration).toBe(10)
    expect([0, 1, 2, 3].map(s => store.latestFor(s, 4)?.iteration)).toEqual([12, 12, 13, 12])
    // another layout: only a complete checkpoint can be re-cut for it
    expect(store.latestFor(0, 2)?.iteration).toBe(10)
  })

  it('loadNewestValidFor reads only the stage\'s own file and falls back past a corrupt one to the stage\'s previous file', async () => {
    const dir = freshDir()
    const store = await openStore(dir)
    const older = makeStates(4, 25)
    const newer = makeStates(4, 26)
    await write(store, 10, older)
    await writePartial(store, 12, newer, [1, 2])
    // stage 2's file of 12 is damaged; stage 1's of 12 is fine; stage 0 was never put in 12
    await fs.rm(stagePath(dir, 12, 2))
    const s1 = await store.loadNewestValidFor(1, 4)
    expect(s1).toMatchObject({ iteration: 12, held: [1], skipped: [] })
    expectSameTensors(s1.states[0].tensors, newer[1].tensors)
    const s2 = await store.loadNewestValidFor(2, 4)
    expect(s2.iteration).toBe(10)
    expect(s2.skipped).toMatchObject([{ iteration: 12, code: 'ERR_CHECKPOINT_FILE_MISSING' }])
    expectSameTensors(s2.states[0].tensors, older[2].tensors)
    expect((await store.loadNewestValidFor(0, 4)).iteration).toBe(10)
    // the whole-model load never takes a partial checkpoint
    expect((await store.loadNewestValid()).iteration).toBe(10)
    await expect(store.load(12, undefined, [0])).rejects.toMatchObject({ code: 'ERR_CHECKPOINT_NOT_FOUND' })
  })

  it('retention keeps the newest `keep` complete checkpoints and each stage\'s newest `keep` files', async () => {
    const dir = freshDir()
    const store = await openStore(dir, 2)
    const states = makeStates(4, 27)
    await write(store, 10, states)
    await write(store, 20, states)
    // stage 3's holder keeps failing: 30, 40, 50 lack it
    for (const it of [30, 40, 50]) await writePartial(store, it, states, [0, 1, 2])
    // stages 0-2: 50 and 40 (their newest two); stage 3: 20 and 10 (its newest two, also the complete ones)
    expect(store.list().map(c => c.iteration)).toEqual([50, 40, 20, 10])
    expect((await fs.readdir(dir)).sort()).toEqual([10, 20, 40, 50].map(checkpointDirName))
    // stage 3's newest two are now 60 and 20; 10 stays as one of the two newest complete ones; 30 went
    await writePartial(store, 60, states, [3])
    expect(store.list().map(c => c.iteration)).toEqual([60, 50, 40, 20, 10])
    await write(store, 70, states)
    expect(store.list().map(c => c.iteration)).toEqual([70, 60, 50, 20])
  })

  it('export\'s reader takes a store\'s newest complete checkpoint and names the missing stages of a partial one', async () => {
    const { readCheckpointAt } = await import('../coordinator/checkpoint-read.js')
    const dir = freshDir()
    const store = await openStore(dir)
    const states = makeStates(4, 28)
    await write(store, 10, states)
    await writePartial(store, 12, states, [0, 3])
    expect((await readCheckpointAt(dir)).loaded.iteration).toBe(10)
    await expect(readCheckpointAt(ckptDir(dir, 12))).rejects.toThrow(/partial checkpoint: it lacks the files of stage\(s\) 1, 2 of 4/)
  })
})

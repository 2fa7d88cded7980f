import { promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { Coordinator, CoordinatorUsageError } from '../coordinator/index.js'
import { DurableState, MalformedStateError, StateIoError, type CoordinatorState } from '../coordinator/durable-state.js'
import { writeFileAtomic } from '../coordinator/fs-atomic.js'

let root: string
let n = 0
beforeAll(async () => { root = await fs.mkdtemp(join(tmpdir(), 'spotpipe-state-')) })
afterAll(async () => { await fs.rm(root, { recursive: true, force: true }) })
beforeAll(() => { vi.spyOn(process.stderr, 'write').mockImplementation(() => true) })
afterAll(() => { vi.restoreAllMocks() })

const freshPath = (): string => join(root, `run-${n++}`, 'coordinator-state.json')

function sample (over: Partial<CoordinatorState> = {}): CoordinatorState {
  return {
    version: 1,
    clusterId: 'cluster-a',
    runId: 'run-1',
    epoch: 3,
    committedIteration: 41,
    assignment: {
      kind: 'assignment', clusterId: 'cluster-a', runId: 'run-1', epoch: 3, iteration: 42,
      stages: [{ stage: 0, peers: ['12D3KooWA'], addrs: ['/ip4/127.0.0.1/tcp/4001'] }], modelConfig: '{}', trainingConfig: '{}', rebuilt: [0]
    },
    checkpoints: [30, 40],
    recoveries: [{
      cause: 'crash', rung: 'checkfree', stage: 0, peers: ['12D3KooWA', '12D3KooWB'], bytes: 12345,
      detectMs: 3001, transferMs: 40.5, rebuildMs: 12, resumeMs: 800, at: 1_700_000_000_000, epoch: 3, iteration: 42, donors: ['12D3KooWB']
    }],
    model: { dModel: 8, nHeads: 2 },
    train: { stages: 2, lr: 0.003 },
    ...over
  }
}

/** Writes `mutate(sample())` to a file by hand, bypassing save's validation. */
async function writeRaw (mutate: (s: Record<string, unknown>) => unknown): Promise<string> {
  const path = freshPath()
  await fs.mkdir(join(path, '..'), { recursive: true })
  const s = sample() as unknown as Record<string, unknown>
  const out = mutate(s) ?? s
  await fs.writeFile(path, typeof out === 'string' ? out : JSON.stringify(out))
  return path
}

describe('DurableState', () => {
  it('round-trips through a human-readable JSON file', async () => {
    const path = freshPath()
    expect(await DurableState.load(path)).toBeUndefined()
    const ds = new DurableState(path)
    await ds.save(sample())
    const text = await fs.readFile(path, 'utf8')
    expect(text).toMatch(/^\{\n {2}"version": 1,\n {2}"clusterId": "cluster-a",/)
    const back = await DurableState.load(path)
    expect(back?.state).toEqual(sample())
    expect(back?.path).toBe(path)
    // the in-memory state is a frozen copy: changes go through save
    expect(Object.isFrozen(back?.state?.recoveries)).toBe(true)
    await back?.save({ ...sample(), epoch: 4, committedIteration: 42, recoveries: [] })
    expect((await DurableState.load(path))?.state).toMatchObject({ epoch: 4, committedIteration: 42, recoveries: [] })
  })

  it('keeps the previous state when a write is interrupted', async () => {
    const path = freshPath()
    const ds = new DurableState(path)
    await ds.save(sample())
    // a crash after the temp file was written but before the rename
    const tmp = join(path, '..', '.coordinator-state.json.4242.0123456789ab.tmp')
    await fs.writeFile(tmp, JSON.stringify(sample({ epoch: 9 })).slice(0, 50))
    const back = await DurableState.load(path)
    expect(back?.state).toEqual(sample())
    await expect(fs.stat(tmp)).rejects.toMatchObject({ code: 'ENOENT' })

    // an aborted save leaves the file and no temp file behind
    const ac = new AbortController()
    const saving = ds.save(sample({ epoch: 10 }), ac.signal)
    ac.abort()
    await expect(saving).rejects.toMatchObject({ name: 'AbortError' })
    expect((await DurableState.load(path))?.state?.epoch).toBe(3)
    expect(await fs.readdir(join(path, '..'))).toEqual(['coordinator-state.json'])
  })

  it('writes concurrent saves in call order', async () => {
    const path = freshPath()
    const ds = new DurableState(path)
    await Promise.all([1, 2, 3, 4, 5].map(async epoch => { await ds.save(sample({ epoch })) }))
    expect(ds.state?.epoch).toBe(5)
    expect((await DurableState.load(path))?.state?.epoch).toBe(5)
  })

  it('refuses to save an invalid state and leaves the file as it was', async () => {
    const path = freshPath()
    const ds = new DurableState(path)
    await ds.save(sample())
    await expect(ds.save(sample({ committedIteration: -2 }))).rejects.toMatchObject({ code: 'ERR_STATE_MALFORMED', field: 'committedIteration' })
    await expect(ds.save(sample({ model: { weights: new Float32Array(2) } }))).rejects.toThrow(/field "model\.weights" is a Float32Array, not plain JSON/)
    await expect(ds.save(sample({ train: { lr: Number.NaN } }))).rejects.toThrow(/field "train\.lr" is NaN/)
    expect((await DurableState.load(path))?.state).toEqual(sample())
  })

  const malformed: Array<{ name: string, mutate: (s: Record<string, unknown>) => unknown, field: string, message: RegExp }> = [
    { name: 'text that is not JSON', mutate: () => '{"version": 1, "clusterId": ', field: '', message: /is not valid JSON/ },
    { name: 'a JSON array', mutate: () => '[]', field: '', message: /does not hold a JSON object/ },
    { name: 'a missing field', mutate: s => { delete s.runId }, field: 'runId', message: /field "runId" is missing/ },
    { name: 'an unknown field', mutate: s => { s.leader = 'x' }, field: 'leader', message: /field "leader" is not a coordinator state field/ },
    { name: 'a newer version', mutate: s => { s.version = 2 }, field: 'version', message: /is 2: written by a newer spotpipe/ },
    { name: 'a negative epoch', mutate: s => { s.epoch = -1 }, field: 'epoch', message: /field "epoch" must be an integer >= 0, got -1/ },
    { name: 'a fractional iteration', mutate: s => { s.committedIteration = 1.5 }, field: 'committedIteration', message: /got 1\.5/ },
    { name: 'an empty cluster id', mutate: s => { s.clusterId = '' }, field: 'clusterId', message: /non-empty string/ },
    { name: 'an assignment that is a string', mutate: s => { s.assignment = 'a' }, field: 'assignment', message: /object or null/ },
    { name: 'a repeated checkpoint', mutate: s => { s.checkpoints = [30, 30] }, field: 'checkpoints[1]', message: /repeats iteration 30/ },
    {
      name: 'a recovery with a bad duration',
      mutate: s => { (s.recoveries as Array<Record<string, unknown>>)[0].detectMs = '3s' },
      field: 'recoveries[0].detectMs',
      message: /field "recoveries\[0\]\.detectMs" must be a non-negative number, got "3s"/
    },
    {
      name: 'a recovery without peers',
      mutate: s => { delete (s.recoveries as Array<Record<string, unknown>>)[0].peers },
      field: 'recoveries[0].peers',
      message: /array of peer ids/
    }
  ]

  for (const c of malformed) {
    it(`rejects ${c.name} with a typed error naming the field and the file`, async () => {
      const path = await writeRaw(c.mutate)
      const err = await DurableState.load(path).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(MalformedStateError)
      expect(err).toMatchObject({ code: 'ERR_STATE_MALFORMED', field: c.field, path })
      expect((err as Error).message).toMatch(c.message)
      expect((err as Error).message.startsWith(`${path}: `)).toBe(true)
    })
  }

  it('reports an unreadable file as a StateIoError', async () => {
    const path = freshPath()
    await fs.mkdir(path, { recursive: true }) // a directory where the file should be
    await expect(DurableState.load(path)).rejects.toBeInstanceOf(StateIoError)
    await expect(DurableState.load(path)).rejects.toMatchObject({ code: 'ERR_STATE_IO', path })
  })
})

describe('a coordinator on a state directory', () => {
  it('refuses a fresh assignment over a restored run (resume() is the way back), and another cluster\'s state', async () => {
    const dir = join(root, `coord-${n++}`)
    await fs.mkdir(dir, { recursive: true })
    await new DurableState(join(dir, 'coordinator.json')).save(sample())
    const c = new Coordinator({ clusterId: 'cluster-a', stateDir: dir, model: { dModel: 8, nHeads: 2 } }) // the sample run's model
    try {
      await c.start()
      expect(c.restored?.committedIteration).toBe(41)
      await expect(c.assignInitial({ timeoutMs: 1000 })).rejects.toThrow(CoordinatorUsageError)
    } finally { await c.stop() }
    const other = new Coordinator({ clusterId: 'cluster-b', stateDir: dir })
    try {
      await expect(other.start()).rejects.toThrow(/is for cluster cluster-a, not cluster-b/)
    } finally { await other.stop().catch(() => {}) }
  })
})

describe('writeFileAtomic', () => {
  it('replaces a file, applies the mode and leaves no temp file', async () => {
    const dir = join(root, 'atomic')
    await fs.mkdir(dir)
    const path = join(dir, 'f.bin')
    await writeFileAtomic(path, 'old')
    await writeFileAtomic(path, Uint8Array.from([1, 2, 3]), { mode: 0o600 })
    expect([...await fs.readFile(path)]).toEqual([1, 2, 3])
    if (process.platform !== 'win32') expect((await fs.stat(path)).mode & 0o777).toBe(0o600)
    await expect(writeFileAtomic(path, 'new', { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' })
    expect(await fs.readdir(dir)).toEqual(['f.bin'])
  })

  it('writes a list of buffers back to back (empty ones, shared memory, more than IOV_MAX of them)', async () => {
    const path = join(root, `parts-${n++}.bin`)
    const shared = new Uint8Array(new SharedArrayBuffer(5000)).fill(9)
    const parts = [Uint8Array.from([1, 2]), new Uint8Array(0), shared, ...Array.from({ length: 1500 }, (_, i) => Uint8Array.from([i & 255]))]
    await writeFileAtomic(path, parts)
    expect((await fs.readFile(path)).equals(Buffer.concat(parts))).toBe(true)
  })
})

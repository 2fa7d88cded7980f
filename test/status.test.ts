/**
 * `spotpipe status` against a live local cluster (coordinator in-process, peers as child processes):
 * the --json output checked against docs/status-schema.json, and one-line errors for bad flags, bad
 * swarm-key files and an unreachable coordinator. Plus, without a network, the snapshot of a
 * ClusterModel fed a cluster with replicas (a joining peer, all-reduce times, a lost replica)
 * checked against the same schema.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ClusterModel } from '../cli/observer.js'
import type { Assignment, Heartbeat } from '../protocols/index.js'
import { killAll } from './helpers/procs.js'
import { TestCluster } from './helpers/cluster.js'
import { spotpipeArgs } from '../sim/peer-process.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SCHEMA = fileURLToPath(new URL('../docs/status-schema.json', import.meta.url))

interface Run { code: number | null, stdout: string, stderr: string }

const children = new Set<ChildProcess>()

/** Runs `spotpipe <args>` to completion (DEBUG unset: no stack traces on purpose). */
async function run (args: string[], timeoutMs = 30_000): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, SPOTPIPE_QUIET: '1' }
  delete env.DEBUG
  const child = spawn(process.execPath, [...spotpipeArgs(), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString() })
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const t = setTimeout(() => { reject(new Error(`spotpipe ${args.join(' ')} did not exit in ${timeoutMs} ms`)) }, timeoutMs)
      child.once('close', (c) => { clearTimeout(t); resolve(c) })
    })
    return { code, stdout, stderr }
  } finally {
    if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
    children.delete(child)
  }
}

// ---------------------------------------------------------------- a validator for the schema's subset

type Schema = Record<string, unknown>
const KNOWN = new Set(['$schema', '$id', 'title', 'description', '$defs', '$ref', 'type', 'enum', 'minimum', 'minLength', 'required', 'properties', 'additionalProperties', 'items'])

function typeOf (v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number'
  return typeof v
}

/** Errors of `value` against `schema` (the keywords the status schema uses; any other one is an error). */
function validate (value: unknown, schema: Schema, root: Schema, path = '$'): string[] {
  const errors: string[] = []
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) errors.push(`${path}: schema keyword ${k} is not supported by this validator`)
  if (typeof schema.$ref === 'string') {
    const m = /^#\/\$defs\/(\w+)$/.exec(schema.$ref)
    const target = m != null ? (root.$defs as Record<string, Schema>)[m[1]] : undefined
    if (target == null) return [...errors, `${path}: unresolvable $ref ${schema.$ref}`]
    return [...errors, ...validate(value, target, root, path)]
  }
  const t = typeOf(value)
  if (schema.type != null) {
    const types = Array.isArray(schema.type) ? schema.type as string[] : [schema.type as string]
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) return [...errors, `${path}: ${t} is not ${types.join(' | ')}`]
  }
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) errors.push(`${path}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`)
  if (typeof schema.minimum === 'number' && typeof value === 'number' && value < schema.minimum) errors.push(`${path}: ${value} < ${schema.minimum}`)
  if (typeof schema.minLength === 'number' && typeof value === 'string' && value.length < schema.minLength) errors.push(`${path}: shorter than ${schema.minLength}`)
  if (t === 'object') {
    const obj = value as Record<string, unknown>
    const props = (schema.properties ?? {}) as Record<string, Schema>
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) errors.push(`${path}: missing ${r}`)
    for (const [k, v] of Object.entries(obj)) {
      if (props[k] != null) errors.push(...validate(v, props[k], root, `${path}.${k}`))
      else if (schema.additionalProperties === false) errors.push(`${path}: unexpected property ${k}`)
    }
  }
  if (t === 'array' && schema.items != null) (value as unknown[]).forEach((x, i) => errors.push(...validate(x, schema.items as Schema, root, `${path}[${i}]`)))
  return errors
}

function expectOneLineError (r: Run, re: RegExp): void {
  expect(r.code).not.toBe(0)
  expect(r.code).not.toBeNull()
  const lines = r.stderr.split('\n').filter(l => l !== '')
  expect(lines, r.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^spotpipe: /)
  expect(lines[0]).toMatch(re)
  expect(r.stderr).not.toMatch(/^\s+at /m)
}

/** A loopback port nothing listens on. */
async function closedPort (): Promise<number> {
  const srv = createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>(resolve => srv.close(() => { resolve() }))
  return port
}

let cluster: TestCluster | undefined
const stateDirs: string[] = []
afterEach(async () => {
  for (const c of children) c.kill('SIGKILL')
  await killAll()
  await cluster?.stop().catch(() => {})
  cluster = undefined
  await Promise.all(stateDirs.splice(0).map(async d => { await fs.rm(d, { recursive: true, force: true }) }))
})

describe('spotpipe status', () => {
  it('--json matches docs/status-schema.json and shows a 4-stage cluster', async () => {
    const schema = JSON.parse(await fs.readFile(SCHEMA, 'utf8')) as Schema
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema')
    // a loaded CI machine can stall a peer's heartbeats for seconds while it builds its stage
    const stateDir = await fs.mkdtemp(join(tmpdir(), 'spotpipe-status-state-'))
    stateDirs.push(stateDir)
    cluster = new TestCluster({ clusterId: 'status-json', model: { dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 8 }, train: { stages: 4, microbatches: 2, microbatchSize: 2 }, heartbeatTimeoutMs: 10_000, stateDir, checkpointEvery: 2 })
    await cluster.start(4)
    await cluster.coord.assignInitial({ timeoutMs: 30_000 })
    for (let i = 0; i < 3; i++) await cluster.coord.runIteration({ timeoutMs: 30_000 })
    await cluster.coord.flushCheckpoints()
    // Listen long enough for every peer's post-iteration heartbeat on a loaded machine; training
    // goes on meanwhile, so the observer hears commits (and the checkpoints they announce).
    const status = run(['status', '--json', '--cluster', 'status-json', '--coordinator', cluster.coord.addrs[0], '--wait', '5000', ...cluster.accessArgs()])
    let done = false
    void status.finally(() => { done = true })
    const c = cluster
    while (!done) {
      await c.coord.runIteration({ timeoutMs: 30_000 })
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    const r = await status
    expect(r.code, r.stderr).toBe(0)
    const lines = r.stdout.split('\n').filter(l => l !== '')
    expect(lines).toHaveLength(1)
    const snap = JSON.parse(lines[0]) as {
      clusterId: string, epoch: number, iteration: number, checkpoint: number | null, spares: unknown[], stagesAtRisk: number[]
      stages: Array<{ stage: number, replicas: number, joining: string[], atRisk: boolean, allReduceMs: number | null, peers: Array<{ peerId: string, role: string, loss: number | null, heartbeatAgeMs: number | null }> }>
    }
    expect(validate(snap, schema, schema)).toEqual([])
    expect(snap.clusterId).toBe('status-json')
    expect(snap.epoch).toBe(cluster.coord.epoch)
    expect(snap.iteration).toBeGreaterThanOrEqual(3)
    expect(snap.iteration).toBeLessThan(cluster.coord.iteration)
    // checkpoints every 2 iterations: the newest complete one at the commit heard (1 was written before)
    expect(snap.checkpoint).not.toBeNull()
    expect(snap.checkpoint ?? -1).toBeGreaterThanOrEqual(1)
    expect(snap.checkpoint ?? Infinity).toBeLessThanOrEqual(snap.iteration)
    expect((snap.checkpoint ?? 0) % 2).toBe(1)
    expect(snap.stages.map(s => s.stage)).toEqual([0, 1, 2, 3])
    for (const s of snap.stages) {
      expect(s.peers).toHaveLength(1)
      expect(s.peers[0].peerId).toBe(cluster.holder(s.stage).peerId)
      expect(s.peers[0].role).toBe('stage')
      expect(s.peers[0].heartbeatAgeMs).toBeLessThan(10_000)
    }
    // one replica per stage: no all-reduce, and every stage is one loss from failing
    for (const s of snap.stages) expect(s).toMatchObject({ replicas: 1, joining: [], atRisk: true, allReduceMs: null })
    expect(snap.stagesAtRisk).toEqual([0, 1, 2, 3])
    expect(snap.stages[3].peers[0].loss).toBeGreaterThan(0)
    expect(snap.stages[0].peers[0].loss).toBeNull()
    expect(snap.spares).toEqual([])
    // the validator does catch what the schema forbids
    expect(validate({ ...snap, extra: 1 }, schema, schema)).toHaveLength(1)
    expect(validate({ ...snap, stages: [{ stage: 0, peers: [{ peerId: 'x' }] }] }, schema, schema).length).toBeGreaterThan(0)
    // the plain table names every stage's peer
    const table = await run(['status', '--cluster', 'status-json', '--coordinator', cluster.coord.addrs[0], '--wait', '2000', ...cluster.accessArgs()])
    expect(table.code, table.stderr).toBe(0)
    expect(table.stdout).toMatch(/^spotpipe status/)
    expect(table.stdout).toMatch(/STAGE\s+PEER/)
    for (let s = 0; s < 4; s++) expect(table.stdout).toContain(cluster.holder(s).peerId.slice(-6))
  })
})

describe('status --json with replicas (no network)', () => {
  it('a snapshot with replicas, a joining peer, all-reduce times and a lost replica matches the schema', async () => {
    const schema = JSON.parse(await fs.readFile(SCHEMA, 'utf8')) as Schema
    const t0 = 5_000_000
    const m = new ClusterModel({ clusterId: 'reps', coordinator: '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWCoord', startedAt: t0 })
    const stages = [['a0', 'a1'], ['b0', 'b1', 'j'], ['c0']]
    const a: Assignment = {
      kind: 'assignment', clusterId: 'reps', runId: 'r', epoch: 3, iteration: 6, modelConfig: '{}', trainingConfig: '{}', rebuilt: [], joining: ['j'],
      stages: stages.map((peers, stage) => ({ stage, peers, addrs: peers.map(() => '') }))
    }
    const hb = (peerId: string, stage: number, at: number): Heartbeat => ({
      kind: 'heartbeat', peerId, role: 'stage', stage, iteration: 5, gradNorm: 0.5, weightDigest: '', tokensPerSec: 0, rssBytes: 0,
      epoch: 3, timestampMs: at, departing: false, stateIteration: peerId === 'j' ? -1 : 5, held: []
    })
    m.onMessage({ kind: 'recovery-plan', epoch: 3, stage: 1, rung: 'replica', targetPeer: 'j', donors: [{ peerId: 'b0', stage: 1 }, { peerId: 'b1', stage: 1 }], lrScale: 1, weights: [], checkpointId: '' }, t0)
    m.onMessage(a, t0 + 10)
    stages.forEach((ps, s) => { for (const p of ps) m.onMessage(hb(p, s, 0), t0 + 100) })
    m.onMessage({ kind: 'done', peerId: 'a0', stage: 0, epoch: 3, iteration: 5, gradNorm: 0.5, computeMs: 10, allReduceMs: 12.5 }, t0 + 200)
    m.onMessage({ kind: 'done', peerId: 'c0', stage: 2, epoch: 3, iteration: 5, gradNorm: 0.5, computeMs: 10, loss: 4.2 }, t0 + 200)
    // b1 falls silent; the others go on
    stages.forEach((ps, s) => { for (const p of ps) if (p !== 'b1') m.onMessage(hb(p, s, 1), t0 + 3000) })
    m.tick(t0 + 3500)
    const snap = JSON.parse(JSON.stringify(m.snapshot(t0 + 3500))) as Record<string, unknown>
    expect(validate(snap, schema, schema)).toEqual([])
    expect(snap).toMatchObject({
      stagesAtRisk: [1, 2],
      stages: [
        { stage: 0, replicas: 2, joining: [], atRisk: false, allReduceMs: 12.5 },
        { stage: 1, replicas: 2, joining: ['j'], atRisk: true, allReduceMs: null },
        { stage: 2, replicas: 1, joining: [], atRisk: true, allReduceMs: null }
      ]
    })
    expect((snap.events as Array<{ kind: string, text: string }>).map(e => e.kind)).toEqual(['recovery', 'assignment', 'silent'])
    // the schema requires the replica fields and types them
    const st = (snap.stages as Array<Record<string, unknown>>)[0]
    const { replicas: _r, ...noReplicas } = st
    const { stagesAtRisk: _s, ...noRisk } = snap
    expect(validate({ ...snap, stages: [noReplicas] }, schema, schema)).toEqual(['$.stages[0]: missing replicas'])
    expect(validate(noRisk, schema, schema)).toEqual(['$: missing stagesAtRisk'])
    expect(validate({ ...snap, stages: [{ ...st, atRisk: 'yes', allReduceMs: -1, joining: [''] }] }, schema, schema)).toHaveLength(3)
  })
})

describe('spotpipe status errors: one line, no stack trace, non-zero exit', () => {
  let dir: string
  let addr: string
  beforeAll(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), 'spotpipe-status-'))
    const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    addr = `/ip4/127.0.0.1/tcp/${await closedPort()}/p2p/${id}`
  })
  afterAll(async () => { await fs.rm(dir, { recursive: true, force: true }) })

  it('bad flags', async () => {
    const runs = await Promise.all([
      run(['status', '--bogus']),
      run(['status']),
      run(['status', '--coordinator', '/ip4/127.0.0.1/tcp/4001']),
      run(['status', '--coordinator', addr, '--wait', 'soon']),
      run(['top', '--coordinator', addr])
    ])
    expectOneLineError(runs[0], /--bogus/)
    expectOneLineError(runs[1], /--coordinator is required/)
    expectOneLineError(runs[2], /must end in \/p2p\//)
    expectOneLineError(runs[3], /--wait/)
    // clusters are private: an observer needs the secret, or --open
    expectOneLineError(runs[4], /--swarm-key FILE.*--open/)
    for (const r of runs) expect(r.code).toBe(2)
  })

  it('a missing or malformed swarm key file', async () => {
    const bad = join(dir, 'bad.key')
    await fs.writeFile(bad, 'not a swarm key\n')
    const [missing, malformed] = await Promise.all([
      run(['status', '--coordinator', addr, '--swarm-key', join(dir, 'missing.key')]),
      run(['top', '--coordinator', addr, '--swarm-key', bad])
    ])
    expectOneLineError(missing, /swarm key .*missing\.key.*ERR_SWARM_KEY/)
    expectOneLineError(malformed, /swarm key .*bad\.key.*ERR_SWARM_KEY/)
  })

  it('an unreachable coordinator', async () => {
    const [s, t] = await Promise.all([
      run(['status', '--json', '--coordinator', addr, '--open']),
      run(['top', '--coordinator', addr, '--open'])
    ])
    for (const r of [s, t]) {
      expectOneLineError(r, /cannot reach the coordinator at \/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+.*ERR_UNREACHABLE/)
      expect(r.stdout).toBe('')
    }
  })
})

/**
 * Local-cluster mode: every strategy runs on a real cluster on this machine — a coordinator in
 * this process and peers as child processes on loopback — driven by the same trace. A crash is a
 * SIGKILL, a notice a SIGTERM (the peer hands its stage over), a join a new peer process. Wall-clock
 * time is real; validation loss is measured by pulling every stage's weights over the weights
 * protocol and evaluating them here (that time is not counted).
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { peerIdFromString } from '@libp2p/peer-id'
import { Coordinator, StageLostError, type RecoveryEvent, type Strategy } from '../coordinator/index.js'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig, type PlusLayout, type TrainConfig } from '../model/index.js'
import { validationBatches } from '../model/index.js'
import { createLog } from '../common/index.js'
import { stageLayout } from '../model/index.js'
import { Stage } from '../model/index.js'
import { batchTensors, evaluateBatch } from '../model/index.js'
import { fetchWeights } from '../net/index.js'
import { createClusterSecret, killAndWait, spawnPeer, type PeerAccess } from './peer-process.js'
import type { Trace, TraceEvent } from './trace.js'

const log = createLog('sim:cluster')

export interface ClusterRow {
  iteration: number
  /** Seconds since the run started, evaluation time excluded. */
  wallS: number
  loss: number
  valLoss: number | null
  events: string
}

export interface ClusterRun {
  strategy: Strategy
  rows: ClusterRow[]
  recoveries: RecoveryEvent[]
  /** Trace events applied, and those that could not be (e.g. a notice for a stage that was already gone). */
  applied: number
  skipped: number
  /** Iteration attempts aborted by failures. */
  aborted: number
  wallS: number
}

export interface ClusterModeConfig {
  strategy: Strategy
  trace: Trace
  model: Partial<ModelConfig>
  train: Partial<TrainConfig>
  iterations: number
  /** Validate every K committed iterations. @default 10 */
  evalEvery?: number
  evalBatches?: number
  /** Spare peers started with the cluster. @default 1 */
  spares?: number
  checkpointEvery?: number
  /** Where CheckFree+'s swapped microbatches embed and run the head (model/schedule.ts). @default 'spotpipe' */
  plusLayout?: PlusLayout
  validationTokens: Uint8Array
  onIteration?: (row: ClusterRow) => void
  signal?: AbortSignal
}

class PeerPool {
  private readonly children = new Map<string, ChildProcess>()
  private readonly all = new Set<ChildProcess>()
  constructor (private readonly cluster: string, private readonly coordAddr: string, private readonly access: PeerAccess) {}

  async start (): Promise<string> {
    const { child, ready } = spawnPeer({ cluster: this.cluster, coordinator: this.coordAddr, access: this.access })
    this.all.add(child)
    const id = await ready
    this.children.set(id, child)
    return id
  }

  signal (peerId: string, sig: NodeJS.Signals): boolean {
    const c = this.children.get(peerId)
    if (c == null || c.exitCode != null || c.signalCode != null) return false
    return c.kill(sig)
  }

  async killAll (): Promise<void> { await killAndWait(this.all) }
}

/** Validation loss of the cluster's current weights, evaluated in this process. */
async function validate (coord: Coordinator, model: ModelConfig, train: TrainConfig, tokens: Uint8Array, batches: number): Promise<number> {
  const a = coord.assignment
  if (a == null) return NaN
  const stages = await Promise.all(a.stages.map(async st => {
    const r = await fetchWeights(coord.node, { donors: [{ peer: peerIdFromString(st.peers[0]) }], stage: st.stage, timeoutMs: 60_000 })
    const values = new Map([...r.tensors].map(([n, t]) => [n, t.data as Float32Array]))
    return new Stage({ model, train, layout: stageLayout(model, a.stages.length, st.stage), values })
  }))
  try {
    let sum = 0
    const list = validationBatches(tokens, batches, train.microbatchSize, model.seqLen, train.dataSeed)
    for (const b of list) {
      const { inputs, targets } = batchTensors(b, train.microbatchSize, model.seqLen)
      try { sum += evaluateBatch(stages, inputs, targets) } finally { tf.dispose([inputs, targets]) }
    }
    return sum / list.length
  } finally {
    for (const s of stages) s.dispose()
  }
}

export async function runClusterStrategy (cfg: ClusterModeConfig): Promise<ClusterRun> {
  const model = resolveModelConfig(cfg.model)
  const train = resolveTrainConfig(cfg.train, model)
  const stateDir = await mkdtemp(join(tmpdir(), 'spotpipe-sim-'))
  const clusterId = `sim-${cfg.strategy}-${process.pid}`
  // a private cluster, as the CLI makes by default: its secret lives (and dies) with the state dir
  const { swarmKey, access } = await createClusterSecret(stateDir)
  // a replica trace (sim/replica-trace.ts): R peers per stage; its crash/notice events take a whole stage
  const R = cfg.trace.replicas ?? 1
  const coord = new Coordinator({ clusterId, model, train, strategy: cfg.strategy, plusLayout: cfg.plusLayout, stateDir, swarmKey, checkpointEvery: cfg.checkpointEvery ?? 10, heartbeatTimeoutMs: 5000, replicas: R })
  const run: ClusterRun = { strategy: cfg.strategy, rows: [], recoveries: [], applied: 0, skipped: 0, aborted: 0, wallS: 0 }
  await coord.start()
  const pool = new PeerPool(clusterId, coord.addrs[0], access)
  try {
    await Promise.all(Array.from({ length: train.stages * R + (cfg.spares ?? 1) }, async () => await pool.start()))
    await coord.assignInitial({ timeoutMs: 120_000 })
    const byAttempt = new Map<number, TraceEvent[]>()
    if (cfg.strategy !== 'none') {
      for (const e of cfg.trace.events) byAttempt.set(e.iteration, [...(byAttempt.get(e.iteration) ?? []), e])
    }
    coord.on('recovery', (events: RecoveryEvent[]) => { run.recoveries.push(...events) })
    let evalS = 0
    const t0 = performance.now()
    const wall = (): number => (performance.now() - t0) / 1000 - evalS
    let attempt = 0
    let pendingNote: string[] = []
    const valEvery = cfg.evalEvery ?? 10
    const evalNow = async (): Promise<number> => {
      const te = performance.now()
      const v = await validate(coord, model, train, cfg.validationTokens, cfg.evalBatches ?? 4)
      evalS += (performance.now() - te) / 1000
      return v
    }
    run.rows.push({ iteration: -1, wallS: 0, loss: NaN, valLoss: await evalNow(), events: '' })
    while (coord.iteration < cfg.iterations) {
      cfg.signal?.throwIfAborted()
      const events = byAttempt.get(attempt) ?? []
      attempt += 1
      const running = coord.runIteration({ timeoutMs: 300_000 })
      for (const e of events) {
        if (e.kind === 'join') { void pool.start().catch(err => { log.info(`a joining peer failed to start: ${(err as Error).message}`) }); continue }
        const holders = coord.assignment?.stages[e.stage]?.peers ?? []
        // a replica loss takes one replica (the last listed); a crash or notice every replica of the stage
        const victims = e.kind === 'replica-loss' ? holders.slice(-1) : holders
        const ok = victims.length > 0 && victims.map(p => pool.signal(p, e.kind === 'notice' ? 'SIGTERM' : 'SIGKILL')).every(Boolean)
        if (ok) { run.applied += 1; pendingNote.push(`${e.kind} stage ${e.stage}`) } else run.skipped += 1
      }
      try {
        const r = await running
        const isEval = (r.iteration + 1) % valEvery === 0 || r.iteration + 1 === cfg.iterations
        const row: ClusterRow = { iteration: r.iteration, wallS: wall(), loss: r.loss, valLoss: null, events: pendingNote.join('; ') }
        pendingNote = []
        if (isEval) row.valLoss = await evalNow()
        run.rows.push(row)
        cfg.onIteration?.(row)
      } catch (err) {
        if (!(err instanceof StageLostError)) throw err
        run.aborted += 1
      }
      if (!coord.needsRound() && events.some(e => e.kind !== 'join')) {
        // A failure during an iteration that still committed: wait for detection before going on.
        await coord.until(() => coord.needsRound(), 'failure detection', 15_000).catch(() => {})
      }
      const evs = await coord.reconcile({ timeoutMs: 300_000 })
      pendingNote.push(...evs.map(e => e.rung === 'survivors' ? `a replica of stage ${e.stage} lost: its survivors took its microbatches` : `stage ${e.stage} recovered by ${e.rung}`))
    }
    run.wallS = wall()
    return run
  } finally {
    await pool.killAll()
    await coord.stop().catch(() => {})
    await rm(stateDir, { recursive: true, force: true })
  }
}

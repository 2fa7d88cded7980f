/**
 * bench:costmodel — the simulator's cost model (sim/cost-model.ts) against a real local cluster.
 *
 * The demo model (model/presets.ts `demo`) trains on a coordinator in this process and peer
 * processes on loopback while a short hand-written trace is replayed on it: clean iterations, a
 * crash of an intermediate stage (SIGKILL: CheckFree), a spot notice (SIGTERM: handover), a crash of
 * the last stage (the ladder's checkpoint rung) and a sparse checkpoint every K iterations. Spares
 * for the trace's joins are started with the cluster, so no process start-up falls in an iteration.
 *
 * Measured, each against the attempts next to it (the load on this shared machine drifts within
 * minutes): the clean iteration; each failure's cost, signal -> recovered (the stage installed and
 * every stage on the new epoch) plus the redone iteration beyond the clean iterations before it; a
 * checkpoint's cost, the two iterations after its snapshot commit less the two before.
 *
 * Predicted with the cost model from parameters measured in the same run, independently of those
 * outcomes, each printed with its source: compute from a single-process step of the same stages
 * just before each attempt; how the host's cores serve several busy stage processes from fresh
 * probe processes (bench/costmodel-probe.ts) computing alone and at once; the link from a
 * weights-protocol pull and pings before training; the control round trip from the heartbeats'
 * gossip delay and the coordinator's persist; the recovery round from re-publishing the assignment
 * and a fresh process's first pull and iteration; detection from the detector's path for a killed
 * process; the snapshot rate from the peers' own snapshot routine. Nothing is fitted.
 *
 * Ends with `bench: costmodel_error=<largest relative error>` (target <= 0.2).
 */
import '../common/polyfill.js'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { availableParallelism, tmpdir } from 'node:os'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import * as tf from '@tensorflow/tfjs'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { Coordinator, StageLostError, type CheckpointEvent, type RecoveryEvent } from '../coordinator/index.js'
import { CONFIG_PRESETS, resolveModelConfig, resolveTrainConfig, initBackend, loadBrownCorpus, sampleBatch, batchTensors, route, stageLayout, Stage, exportStageState, type ModelConfig, type TrainConfig, type StageState } from '../model/index.js'
import { fetchWeights } from '../net/index.js'
import { costModelForModel, type CostModel } from '../sim/cost-model.js'
import { CostValidationError, median, predictRecovery, relativeError } from '../sim/cost-validation.js'
import { makeTrace, type TraceEvent } from '../sim/trace.js'
import { benchSecret, startPeer, stopCluster, holder, type BenchPeer } from './harness.js'
import { children } from './children.js'
import type { ProbeReply, ProbeRequest } from './costmodel-probe.js'

const STRATEGY = 'checkfree'
const CHECKPOINT_EVERY = 5
// The detector's floor for silent peers. Local-cluster mode uses 5 s; on this shared 2-core machine a
// peer building its stage under load has gone 5 s without a heartbeat, so 10 s as in bench:recovery.
// A SIGKILL is found by the closed connection, not by this floor.
const HEARTBEAT_TIMEOUT_MS = 10_000
const USER_HZ = 100

const preset = CONFIG_PRESETS.demo
const model = resolveModelConfig(preset.model)
const train = resolveTrainConfig(preset.train, model)
const S = train.stages
const M = train.microbatches

/** The trace: attempts on the trace's clock, a failure's offset inside its attempt as timeS. */
const trace = makeTrace({
  stages: S,
  iterations: 24,
  seed: 13,
  events: [
    { iteration: 7, timeS: 7.4, stage: 1, kind: 'crash', peer: 's1.0' },
    { iteration: 7, timeS: 7.4, stage: 1, kind: 'join', peer: 's1.1' },
    { iteration: 14, timeS: 14.4, stage: 2, kind: 'notice', peer: 's2.0' },
    { iteration: 14, timeS: 14.4, stage: 2, kind: 'join', peer: 's2.1' },
    { iteration: 20, timeS: 20.4, stage: 3, kind: 'crash', peer: 's3.0' },
    { iteration: 20, timeS: 20.4, stage: 3, kind: 'join', peer: 's3.1' }
  ]
})

const ms = (s: number): string => `${(s * 1000).toFixed(0)} ms`
const sleep = async (t: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, t))

// ------------------------------------------------------------------ compute, in this process

interface ComputeSample { forwardS: number, backwardS: number, stepS: number }

/**
 * Single-process steps of the same stages, timed the way a peer runs them (stage-runtime.ts: each
 * forward and backward copies its output to the host; then the clip and the Adam step).
 */
function measureCompute (stages: Stage[], tokens: Uint8Array, steps: number, iteration0: number): ComputeSample[] {
  const out: ComputeSample[] = []
  for (let it = 0; it < steps; it++) {
    let f = 0
    let b = 0
    for (let mb = 0; mb < M; mb++) {
      const batch = sampleBatch(tokens, { seed: train.dataSeed, iteration: iteration0 + it, microbatch: mb, replica: 0 }, train.microbatchSize, model.seqLen)
      const { inputs, targets } = batchTensors(batch, train.microbatchSize, model.seqLen)
      const hops = route(S, mb, false)
      let x: tf.Tensor = inputs
      hops.forEach((hop, h) => {
        const last = h === hops.length - 1
        const t0 = performance.now()
        const y = stages[hop.stage].forward(`${mb}:${h}`, x, hop.parts, last ? targets : undefined)
        y.dataSync()
        f += performance.now() - t0
        if (x !== inputs) x.dispose()
        if (last) y.dispose()
        else x = y
      })
      let dy: tf.Tensor | null = null
      for (let h = hops.length - 1; h >= 0; h--) {
        const t0 = performance.now()
        const dx = stages[hops[h].stage].backward(`${mb}:${h}`, dy ?? undefined)
        dx?.dataSync()
        b += performance.now() - t0
        dy?.dispose()
        dy = dx
      }
      dy?.dispose()
      inputs.dispose()
      targets.dispose()
    }
    const t0 = performance.now()
    tf.tidy(() => { for (const st of stages) st.step(M) })
    out.push({ forwardS: f / 1000, backwardS: b / 1000, stepS: (performance.now() - t0) / 1000 })
  }
  return out
}

/** Seconds per byte of the peers' checkpoint snapshot: exportStageState into the previous snapshot's arrays. */
function measureSnapshot (stage: Stage): { bytesPerS: number, bytes: number } {
  let prev: StageState | undefined
  const times: number[] = []
  let bytes = 0
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now()
    const s = exportStageState(stage, { optimizer: true, reuse: prev?.tensors })
    times.push((performance.now() - t0) / 1000)
    bytes = [...s.tensors.values()].reduce((n, t) => n + t.data.byteLength, 0)
    prev = s
  }
  return { bytesPerS: bytes / median(times.slice(2)), bytes }
}

// ------------------------------------------------------------------ loopback, on the idle cluster

function cpuMs (pid: number | undefined): number {
  if (pid == null) throw new CostValidationError('a peer without a pid')
  const after = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(after[11]) + Number(after[12])) * 1000 / USER_HZ
}

interface LinkProbe { bytesPerS: number, bytes: number, latencyS: number, cpuSPerByte: number }

/** A stage's full state (weights + Adam) pulled over the weights protocol, and pings, on loopback. */
async function probeLink (coord: Coordinator, peers: BenchPeer[]): Promise<LinkProbe> {
  const donor = holder(coord, peers, 1)
  const rates: number[] = []
  const cpu: number[] = []
  let bytes = 0
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now()
    const c0 = process.cpuUsage()
    const d0 = cpuMs(donor.child.pid)
    const r = await fetchWeights(coord.node, { donors: [{ peer: peerIdFromString(donor.peerId) }], stage: 1, includeOptimizer: true, timeoutMs: 60_000 })
    rates.push(r.bytes / ((performance.now() - t0) / 1000))
    const c = process.cpuUsage(c0)
    // both ends: this process pulling and checking, the donor serving (/proc: 10 ms ticks)
    cpu.push(((c.user + c.system) / 1e6 + (cpuMs(donor.child.pid) - d0) / 1000) / r.bytes)
    bytes = r.bytes
  }
  const rtts: number[] = []
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now()
    await coord.node.services.ping.ping(peerIdFromString(donor.peerId))
    rtts.push((performance.now() - t0) / 1000)
  }
  return { bytesPerS: median(rates), bytes, latencyS: median(rtts) / 2, cpuSPerByte: median(cpu) }
}

/** The detector's path for a killed process: its connection closes and the confirming ping is refused. */
async function probeRefusedPing (coord: Coordinator): Promise<number> {
  // a peer id nobody is connected to, or libp2p would use the open connection
  const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  server.close()
  await once(server, 'close')
  const times: number[] = []
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now()
    const ok = await coord.node.services.ping.ping(multiaddr(`/ip4/127.0.0.1/tcp/${port}/p2p/${stranger}`), { signal: AbortSignal.timeout(3000) }).then(() => true, () => false)
    if (ok) throw new CostValidationError(`a ping to the closed port ${port} was answered`)
    times.push((performance.now() - t0) / 1000)
  }
  return median(times)
}

/** One-way gossip delay of heartbeats (peer's send timestamp -> the coordinator's receipt, one host clock). */
async function probeGossip (coord: Coordinator, forMs: number): Promise<number> {
  const delays: number[] = []
  const last = new Map<string, number>()
  const onChange = (): void => {
    for (const [id, v] of coord.peers) {
      if (last.get(id) === v.heartbeat.timestampMs) continue
      last.set(id, v.heartbeat.timestampMs)
      delays.push(Math.max(0, v.seenAt - v.heartbeat.timestampMs) / 1000)
    }
  }
  onChange()
  delays.length = 0
  coord.on('change', onChange)
  await sleep(forMs)
  coord.off('change', onChange)
  if (delays.length < 3) throw new CostValidationError(`only ${delays.length} heartbeats heard in ${forMs} ms`)
  return median(delays)
}

async function probePersist (coord: Coordinator): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now()
    await coord.persist()
    times.push((performance.now() - t0) / 1000)
  }
  return median(times)
}

/** The same assignment published under a new epoch and taken by every stage: a recovery round without a rebuild. */
async function probeEpoch (coord: Coordinator): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < 3; i++) {
    const peers = (coord.assignment?.stages ?? []).map(s => [...s.peers])
    const t0 = performance.now()
    await coord.assign(peers, { timeoutMs: 30_000 })
    times.push((performance.now() - t0) / 1000)
  }
  return median(times)
}

// ------------------------------------------------------------------ fresh stage processes

const PROBE = fileURLToPath(new URL('./costmodel-probe.ts', import.meta.url))

/** A probe process (costmodel-probe.ts) for one stage, asked over IPC. */
class Probe {
  readonly child: ChildProcess
  constructor (readonly stage: number) {
    this.child = spawn(process.execPath, ['--import', 'tsx', PROBE], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, SPOTPIPE_QUIET: '1' } })
    children.add(this.child)
  }

  async ask (m: ProbeRequest, want: ProbeReply['type']): Promise<ProbeReply> {
    const reply = Promise.race([
      once(this.child, 'message') as Promise<[ProbeReply]>,
      once(this.child, 'exit').then(([code, sig]) => { throw new CostValidationError(`the probe of stage ${this.stage} exited (${String(sig ?? code)})`) })
    ])
    this.child.send(m)
    const [r] = await reply
    if (r.type === 'error') throw new CostValidationError(`the probe of stage ${this.stage}: ${r.message}`)
    if (r.type !== want) throw new CostValidationError(`the probe of stage ${this.stage} sent ${r.type}, expected ${want}`)
    return r
  }

  async compute (iterations: number): Promise<number[]> {
    return (await this.ask({ type: 'compute', iterations }, 'computed') as Extract<ProbeReply, { type: 'computed' }>).seconds
  }
}

interface FreshPeer { coldPullExtraS: number, coldComputeExtraS: number, warmPullS: number }

/** A fresh process's first pull and first iteration of its stage, beyond warm ones (the cluster idle). */
async function probeFreshPeer (probe: Probe, coord: Coordinator, peers: BenchPeer[]): Promise<FreshPeer> {
  const donor = holder(coord, peers, 1)
  const addrs = (await coord.node.peerStore.get(peerIdFromString(donor.peerId))).addresses.map(a => a.multiaddr.toString())
  const pull = async (): Promise<number> => (await probe.ask({ type: 'pull', donor: donor.peerId, donorAddrs: addrs, stage: 1 }, 'pulled') as Extract<ProbeReply, { type: 'pulled' }>).seconds
  const cold = await pull()
  const warm = median([await pull(), await pull()])
  const times = await probe.compute(3)
  return { coldPullExtraS: Math.max(0, cold - warm), coldComputeExtraS: Math.max(0, times[0] - median(times.slice(1))), warmPullS: warm }
}

/**
 * What the host does with S busy stage processes, in units of one alone: the stages' iterations run
 * one after another, over the same iterations run all at once (wall-clock). An idle 2-core host
 * gives min(S, 2); other sessions' load lowers it (the kernel shares the CPU between sessions first:
 * autogroup).
 */
async function probeCapacity (probes: Probe[]): Promise<number> {
  let alone = 0
  for (const p of probes) alone += (await p.compute(2)).reduce((a, b) => a + b, 0)
  const t0 = performance.now()
  await Promise.all(probes.map(async p => await p.compute(2)))
  return alone / ((performance.now() - t0) / 1000)
}

// ------------------------------------------------------------------ the replay

interface Attempt {
  attempt: number
  iteration: number
  startS: number
  endS: number
  committed: boolean
  /** The commit asked the stages for a checkpoint snapshot. */
  snapshot: boolean
  event?: TraceEvent
  signalS?: number
  /** When the aborted iteration returned, and when the recovery (reconcile) did. */
  abortedS?: number
  recoveredS?: number
  /** A single-process step measured just before this attempt (none right after a snapshot commit,
   *  whose background upload it would hide). */
  baseline?: ComputeSample
}

interface Replay {
  attempts: Attempt[]
  recoveries: RecoveryEvent[]
  checkpoints: CheckpointEvent[]
  /** Iteration of the newest complete checkpoint on disk at each failure. */
  checkpointAt: Map<number, number>
}

async function replay (coord: Coordinator, peers: BenchPeer[], clock: () => number, baseline: (attempt: number) => ComputeSample): Promise<Replay> {
  const out: Replay = { attempts: [], recoveries: [], checkpoints: [], checkpointAt: new Map() }
  coord.on('recovery', (evs: RecoveryEvent[]) => { out.recoveries.push(...evs) })
  coord.on('checkpoint', (e: CheckpointEvent) => { out.checkpoints.push(e) })
  const byAttempt = new Map<number, TraceEvent>()
  for (const e of trace.events) if (e.kind !== 'join') byAttempt.set(e.iteration, e)
  const clean: number[] = []
  for (let a = 0; a < trace.iterations; a++) {
    const event = byAttempt.get(a)
    const sample = out.attempts.slice(-2).some(x => x.snapshot) ? undefined : baseline(a)
    const rec: Attempt = { attempt: a, iteration: coord.iteration, startS: clock(), endS: 0, committed: false, snapshot: false, ...(event != null ? { event } : {}), ...(sample != null ? { baseline: sample } : {}) }
    const running = coord.runIteration({ timeoutMs: 120_000 })
    if (event != null) {
      out.checkpointAt.set(a, coord.store?.list().find(c => c.complete)?.iteration ?? 0)
      // the trace's offset inside the attempt, on the clean iterations seen so far
      const u = event.timeS - event.iteration
      await sleep(u * median(clean) * 1000)
      const victim = holder(coord, peers, event.stage)
      rec.signalS = clock()
      victim.child.kill(event.kind === 'notice' ? 'SIGTERM' : 'SIGKILL')
    }
    try {
      const r = await running
      rec.committed = true
      rec.snapshot = (r.iteration + 1) % CHECKPOINT_EVERY === 0
    } catch (err) {
      if (!(err instanceof StageLostError)) throw err
      rec.abortedS = clock()
    }
    if (event != null && rec.committed) throw new CostValidationError(`attempt ${a} committed although its ${event.kind} came ${ms((rec.signalS ?? 0) - rec.startS)} into it: the failure fell between iterations`)
    if (event != null) {
      await coord.reconcile({ timeoutMs: 120_000 })
      rec.recoveredS = clock()
    }
    rec.endS = clock()
    out.attempts.push(rec)
    if (event == null && a >= 2) clean.push(rec.endS - rec.startS)
  }
  await coord.flushCheckpoints()
  return out
}

// ------------------------------------------------------------------ main

const corpus = loadBrownCorpus()
const stateDir = await mkdtemp(join(tmpdir(), 'spotpipe-costmodel-'))
let cluster: { coord: Coordinator, peers: BenchPeer[] } | undefined
let failed = false
try {
  await initBackend({ backend: 'wasm', strict: true })
  console.log(`demo model: d=${model.dModel}, ${model.nBlocks} blocks, seq ${model.seqLen}; ${S} stages x ${M} microbatches of ${train.microbatchSize}; strategy ${STRATEGY}, a checkpoint every ${CHECKPOINT_EVERY} iterations`)
  console.log(`trace (seed ${trace.seed}, ${trace.iterations} attempts): ${trace.events.filter(e => e.kind !== 'join').map(e => `${e.kind} of stage ${e.stage} at attempt ${e.iteration}`).join(', ')}; joins are spares started with the cluster`)

  // local stages for the compute measurements (the same seeded weights the peers start from)
  const local = Array.from({ length: S }, (_, s) => new Stage({ model, train, layout: stageLayout(model, S, s) }))
  const capacities: number[] = []
  measureCompute(local, corpus.train, 2, 1000) // warm-up
  const snapshot = measureSnapshot(local[1])

  // a spare per join of the trace, and one in reserve
  const spares = trace.events.filter(e => e.kind === 'join').length + 1
  const secret = await benchSecret()
  const coord = new Coordinator({ clusterId: `costmodel-${process.pid}`, model: preset.model, train: preset.train, strategy: STRATEGY, stateDir, checkpointEvery: CHECKPOINT_EVERY, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, swarmKey: secret.swarmKey })
  await coord.start()
  const peers: BenchPeer[] = []
  cluster = { coord, peers }
  peers.push(...await Promise.all(Array.from({ length: S + spares }, async () => await startPeer(coord.addrs[0], coord.init.clusterId, secret.access))))
  // fresh processes standing in for rebuilt peers, one per stage (they compute only when told)
  const probes = Array.from({ length: S }, (_, s) => new Probe(s))
  await Promise.all(probes.map(async (p, s) => await p.ask({ type: 'start', model: preset.model, train: preset.train, stage: s, swarmKeyFile: secret.access.swarmKeyFile }, 'ready')))
  await coord.assignInitial({ timeoutMs: 300_000 })
  // a stage lost while the first epoch was being taken (a starved peer) uses the reserve spare
  if (coord.needsRound()) await coord.reconcile({ timeoutMs: 120_000 })
  const link = await probeLink(coord, peers)
  const refusedS = await probeRefusedPing(coord)
  const gossipS = await probeGossip(coord, 3000)
  const persistS = await probePersist(coord)
  const epochS = await probeEpoch(coord)
  const fresh = await probeFreshPeer(probes[1], coord, peers)
  await Promise.all(probes.filter((_, s) => s !== 1).map(async p => await p.compute(1))) // their cold iteration
  capacities.push(await probeCapacity(probes))

  const t0 = performance.now()
  const t0Wall = Date.now()
  const clock = (): number => (performance.now() - t0) / 1000
  const run = await replay(coord, peers, clock, (a) => measureCompute(local, corpus.train, 1, 100 + a)[0])
  capacities.push(await probeCapacity(probes))
  for (const p of probes) p.child.kill('SIGKILL')
  for (const st of local) st.dispose()

  // ---- parameters: shared by every prediction but the compute, which each attempt takes from the
  // single-process step measured just before it (the load on this shared machine drifts)
  const cores = Math.min(availableParallelism(), median(capacities))
  const iterationOverheadS = 2 * gossipS + persistS
  const costFor = (c: ComputeSample): CostModel => costModelForModel(model, train, c.forwardS + c.backwardS + c.stepS, {
    hostCores: cores,
    forwardFraction: c.forwardS / (c.forwardS + c.backwardS + c.stepS),
    linkBytesPerS: link.bytesPerS,
    storageBytesPerS: link.bytesPerS,
    linkLatencyS: link.latencyS,
    snapshotBytesPerS: snapshot.bytesPerS,
    detectionS: refusedS,
    noticeLeadS: 0,
    iterationOverheadS,
    recoveryRoundS: epochS + fresh.coldPullExtraS + fresh.coldComputeExtraS,
    transferCpuSPerByte: link.cpuSPerByte
  })
  const atts = run.attempts
  const baselines = atts.flatMap(a => a.baseline ?? [])
  const typical: ComputeSample = { forwardS: median(baselines.map(c => c.forwardS)), backwardS: median(baselines.map(c => c.backwardS)), stepS: median(baselines.map(c => c.stepS)) }
  const cost = costFor(typical)
  const PLAIN = { swaps: false, redundantCompute: false }
  console.log('\nparameters (each measured in this run, beside or before the replay, or configuration):')
  console.log(`  slotComputeS        ${ms(cost.p.slotComputeS)} (median; each attempt's own from the step just before it): single-process steps of the same ${S} stages (${baselines.length} steps between the attempts, ${ms(Math.min(...baselines.map(c => c.forwardS + c.backwardS + c.stepS)))}..${ms(Math.max(...baselines.map(c => c.forwardS + c.backwardS + c.stepS)))}; median forward ${ms(typical.forwardS)}, backward ${ms(typical.backwardS)}, clip + Adam ${ms(typical.stepS)}) / (S x M)`)
  console.log(`  forwardFraction     ${cost.p.forwardFraction?.toFixed(3)}: forward / whole step, same steps`)
  console.log(`  hostCores           ${cores.toFixed(2)}: what ${S} fresh stage processes computing at once get of this host, in units of one alone (${capacities.map(c => c.toFixed(2)).join(', ')}: before and after the replay), at most os.availableParallelism() = ${availableParallelism()}; every stage is a process on this host`)
  console.log(`  transferCpuSPerByte ${(link.cpuSPerByte * 1e9).toFixed(1)} ns/B: CPU of both ends of the link probe's pulls; new, default 0`)
  console.log(`  hopBytes            ${cost.p.hopBytes} B: B x T x D x 4 (the model)`)
  console.log(`  linkBytesPerS       ${(link.bytesPerS / 2 ** 20).toFixed(1)} MB/s: stage 1's weights + Adam (${(link.bytes / 2 ** 20).toFixed(1)} MB) pulled over the weights protocol from its peer, median of 3, before training`)
  console.log('  storageBytesPerS    the same: the store is this process, pulling over the same loopback')
  console.log(`  linkLatencyS        ${(link.latencyS * 1000).toFixed(2)} ms: half the median libp2p ping round trip to a peer`)
  console.log(`  snapshotBytesPerS   ${(snapshot.bytesPerS / 1e9).toFixed(2)} GB/s: exportStageState into the previous snapshot's arrays (a peer's checkpoint snapshot), ${(snapshot.bytes / 2 ** 20).toFixed(1)} MB stage`)
  console.log(`  detectionS          ${ms(refusedS)}: the detector's path for a killed process (its connection closes; the confirming ping is refused: measured to a closed loopback port); the ${HEARTBEAT_TIMEOUT_MS} ms heartbeat floor applies only to a silent peer`)
  console.log('  noticeLeadS         0: the coordinator moves a departing stage at once (the iteration in flight is aborted); it does not wait out the notice')
  console.log(`  iterationOverheadS  ${ms(iterationOverheadS)}: 2 x the heartbeats' one-way gossip delay (${ms(gossipS)}: begin out, done back) + the coordinator's persist per commit (${ms(persistS)}); new, default 0`)
  console.log(`  recoveryRoundS      ${ms(cost.roundS)}: the assignment re-published under a new epoch until every stage took it (${ms(epochS)}, median of 3, before training) + a fresh process's first pull beyond a warm one (${ms(fresh.coldPullExtraS)}; warm ${ms(fresh.warmPullS)}) + its first iteration of stage 1 beyond a warm one (${ms(fresh.coldComputeExtraS)}); new, default 0`)

  // ---- figures, each against the attempts next to it
  const period = (a: Attempt): number => a.endS - a.startS
  const plain = (a: Attempt | undefined): a is Attempt => a != null && a.event == null && a.committed
  const afterEvent = new Set<number>()
  atts.forEach((a, i) => { if (a.event != null) afterEvent.add(i + 1) })
  const clean = atts.filter((a, i) => i >= 2 && plain(a) && a.baseline != null && !afterEvent.has(i))
  const iterPred = median(clean.map(a => costFor(a.baseline as ComputeSample).iterationS(PLAIN)))
  const iterMeasured = median(clean.map(period))
  const iterErr = relativeError(iterPred, iterMeasured)
  console.log('\nfigures:')
  console.log(`iteration: predicted ${ms(iterPred)}, measured ${ms(iterMeasured)}, relative error ${iterErr.toFixed(3)}  (medians over ${clean.length} clean attempts, each predicted from the step before it; measured ${clean.map(a => (period(a) * 1000).toFixed(0)).join(' ')} ms; the formula for a machine per stage would give ${ms(cost.with({ hostCores: undefined, iterationOverheadS: 0 }).iterationS(PLAIN))})`)

  const records = run.recoveries.filter(r => r.outcome === 'recovered')
  const recErrs: number[] = []
  for (const [i, a] of atts.entries()) {
    if (a.event == null) continue
    const redone = atts[i + 1]
    const before = [atts[i - 1], atts[i - 2]].filter(plain)
    if (!plain(redone) || before.length === 0 || a.baseline == null) throw new CostValidationError(`attempt ${a.attempt}'s ${a.event.kind} has no clean attempts around it`)
    const base = before.reduce((sum, b) => sum + period(b), 0) / before.length
    // signal -> recovered, then what the redone iteration took beyond the clean ones before (the
    // single-process step measured between the two is not the cluster's time)
    const measured = (a.recoveredS as number) - (a.signalS as number) + period(redone) - base
    const f = { kind: a.event.kind as 'crash' | 'notice', stage: a.event.stage, checkpoint: run.checkpointAt.get(a.attempt) ?? 0 }
    const p = predictRecovery(costFor(a.baseline), STRATEGY, f)
    const rec = records.find(r => r.stage === f.stage && r.at >= t0Wall + (a.signalS as number) * 1000 - 1000)
    const err = measured > 0 ? relativeError(p.seconds, measured) : Infinity
    recErrs.push(err)
    console.log(`recovery (${f.kind} of stage ${f.stage}, rung ${p.rung}${rec != null && rec.rung !== p.rung ? `; the coordinator chose ${rec.rung}` : ''}): predicted ${ms(p.seconds)}, measured ${ms(measured)}, relative error ${err.toFixed(3)}`)
    console.log(`  predicted: detection ${ms(p.detectionS)} + round ${ms(cost.roundS)} + transfer of ${(p.bytes / 2 ** 20).toFixed(2)} MB ${ms(p.transferS - cost.roundS)}; measured: signal -> aborted ${ms((a.abortedS ?? NaN) - (a.signalS ?? NaN))}, -> recovered ${ms((a.recoveredS ?? NaN) - (a.signalS ?? NaN))}, redone iteration ${ms(period(redone))} against ${ms(base)} before; the coordinator's record: transfer ${rec?.transferMs.toFixed(0) ?? '?'} ms, rebuild ${rec?.rebuildMs.toFixed(0) ?? '?'} ms, ${rec?.bytes ?? '?'} B`)
  }

  // a checkpoint: the two attempts after its snapshot commit against the two before them
  const ckPred: number[] = []
  const ckMeasured: number[] = []
  atts.forEach((a, i) => {
    if (!a.snapshot) return
    const after = [atts[i + 1], atts[i + 2]]
    const before = [atts[i], atts[i - 1]]
    if (!after.every(plain) || !before.every(plain) || after.some(x => x.snapshot) || a.baseline == null) return
    ckMeasured.push(after.reduce((sum, x) => sum + period(x), 0) - before.reduce((sum, x) => sum + period(x), 0))
    const save = costFor(a.baseline).checkpointSave(PLAIN)
    ckPred.push(save.copyS + save.contentionS)
  })
  if (ckMeasured.length === 0) throw new CostValidationError('no checkpoint had two clean attempts on either side')
  const ckErr = median(ckMeasured) > 0 ? relativeError(median(ckPred), median(ckMeasured)) : Infinity
  const save = cost.checkpointSave(PLAIN)
  console.log(`checkpoint overhead: predicted ${ms(median(ckPred))}, measured ${ms(median(ckMeasured))}, relative error ${ckErr.toFixed(3)}  (per checkpoint, median; measured ${ckMeasured.map(x => (x * 1000).toFixed(0)).join(' ')} ms; predicted copy ${ms(save.copyS)} + link contention ${ms(save.uploadS * cost.linkBusyFraction(PLAIN))} + CPU contention ${ms(cost.cpuContentionS(save.bytes, PLAIN))} at the median step; uploads took ${run.checkpoints.map(c => c.ms.toFixed(0)).join(' ')} ms)`)
  const recoveryError = Math.max(...recErrs)
  console.log(`bench: costmodel_iteration_error=${iterErr.toFixed(3)}`)
  console.log(`bench: costmodel_recovery_error=${recoveryError.toFixed(3)}`)
  console.log(`bench: costmodel_checkpoint_error=${ckErr.toFixed(3)}`)
  console.log(`bench: costmodel_error=${Math.max(iterErr, recoveryError, ckErr).toFixed(3)}`)
} catch (err) {
  failed = true
  console.error(err)
} finally {
  if (cluster != null) await stopCluster(cluster.coord).catch((err: unknown) => { console.error(err); failed = true })
  await rm(stateDir, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)

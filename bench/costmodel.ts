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
 * checkpoint's cost, in a phase after the replay with a checkpoint every other commit, each attempt
 * after a snapshot commit less the mean of its two neighbours after plain commits.
 *
 * Predicted with the cost model from parameters measured in the same run, independently of those
 * outcomes, each printed with its source: compute from a step of the same stages, each in a probe
 * process of its own, just before each attempt (never in this process: it would stall the
 * coordinator's event loop); how the host's cores serve several busy stage processes from fresh
 * probe processes (bench/costmodel-probe.ts) computing alone and at once; the link from a
 * weights-protocol pull and pings before training; the control round trip from the heartbeats'
 * gossip delay and the coordinator's persist; the recovery round's parts apart from any failure:
 * the survivors' and donors' take of an epoch published into a busy iteration (a stage frozen for
 * a crash, none for a notice), a fresh process's first pull, install and first iteration;
 * detection from spares SIGKILLed during training; the snapshot rate from the peers' own snapshot
 * routine. Nothing is fitted. Each recovery's timeline as the coordinator saw it is printed beside
 * its figure.
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
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { Coordinator, StageLostError, type CheckpointEvent, type RecoveryEvent } from '../coordinator/index.js'
import { CONFIG_PRESETS, resolveModelConfig, resolveTrainConfig, initBackend, stageLayout, Stage, exportStageState, type StageState } from '../model/index.js'
import { fetchWeights } from '../net/index.js'
import { costModelForModel, type CostModel } from '../sim/cost-model.js'
import { CostValidationError, median, predictRecovery, relativeError } from '../sim/cost-validation.js'
import { makeTrace, type TraceEvent } from '../sim/trace.js'
import { benchSecret, startPeer, stopCluster, holder, type BenchPeer } from './harness.js'
import { children } from './children.js'
import type { ProbeReply, ProbeRequest } from './costmodel-probe.js'

const STRATEGY = 'checkfree'
const CHECKPOINT_EVERY = 5
/** The checkpoint phase: this many attempts after a snapshot commit, each between two after plain commits. */
const CHECKPOINT_PAIRS = 16
// The detector's floor for silent peers. Local-cluster mode uses 5 s; on this shared 2-core machine a
// peer building its stage under load has gone 5 s without a heartbeat, so 10 s as in bench:recovery.
// A SIGKILL is found by the closed connection, not by this floor.
const HEARTBEAT_TIMEOUT_MS = 10_000
const USER_HZ = 100
/** Spares the busy detection probe kills, one per measurement. */
const DISCONNECT_PROBES = 3

const preset = CONFIG_PRESETS.demo
const model = resolveModelConfig(preset.model)
const train = resolveTrainConfig(preset.train, model)
const S = train.stages
const M = train.microbatches

/**
 * The trace: attempts on the trace's clock, a failure's offset inside its attempt as timeS. Each
 * kind of failure REPEATS times, 6 attempts apart: one recovery on this shared machine varied by
 * 2x between runs, so each rung's figure is the median of its REPEATS.
 */
const REPEATS = 5
/** A failure's figure is measured against the median of the clean attempts up to this many before it and after its redone attempt. */
const NEIGHBOURS = 3
const FAILURES = [
  { stage: 1, kind: 'crash' as const }, // CheckFree
  { stage: 2, kind: 'notice' as const }, // handover
  { stage: 3, kind: 'crash' as const } // the checkpoint rung: the last stage cannot be rebuilt by CheckFree
]
const FIRST_FAILURE = 7
const FAILURE_SPACING = 6
const trace = makeTrace({
  stages: S,
  iterations: FIRST_FAILURE + FAILURES.length * REPEATS * FAILURE_SPACING - 2,
  seed: 13,
  events: Array.from({ length: REPEATS }, (_, r) => FAILURES.map((f, k) => {
    const iteration = FIRST_FAILURE + (r * FAILURES.length + k) * FAILURE_SPACING
    return [
      { iteration, timeS: iteration + 0.4, stage: f.stage, kind: f.kind, peer: `s${f.stage}.${r}` },
      { iteration, timeS: iteration + 0.4, stage: f.stage, kind: 'join' as const, peer: `s${f.stage}.${r + 1}` }
    ]
  }).flat()).flat()
})

const ms = (s: number): string => `${(s * 1000).toFixed(0)} ms`
const sleep = async (t: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, t))

// ------------------------------------------------------------------ compute, in the probe processes

interface ComputeSample { forwardS: number, backwardS: number, stepS: number }

/** Each part's median over `samples`. */
function medianSample (samples: readonly ComputeSample[]): ComputeSample {
  return { forwardS: median(samples.map(c => c.forwardS)), backwardS: median(samples.map(c => c.backwardS)), stepS: median(samples.map(c => c.stepS)) }
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

interface LinkProbe { bytesPerS: number, bytes: number, latencyS: number }

/** A stage's full state (weights + Adam) pulled over the weights protocol into new arrays (as a rebuilt peer pulls), and pings, on loopback. */
async function probeLink (coord: Coordinator, peers: BenchPeer[]): Promise<LinkProbe> {
  const donor = holder(coord, peers, 1)
  const rates: number[] = []
  let bytes = 0
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now()
    const r = await fetchWeights(coord.node, { donors: [{ peer: peerIdFromString(donor.peerId) }], stage: 1, includeOptimizer: true, timeoutMs: 60_000 })
    rates.push(r.bytes / ((performance.now() - t0) / 1000))
    bytes = r.bytes
  }
  const rtts: number[] = []
  for (let tries = 0; rtts.length < 10; tries++) {
    const t0 = performance.now()
    try {
      await coord.node.services.ping.ping(peerIdFromString(donor.peerId))
      rtts.push((performance.now() - t0) / 1000)
    } catch (err) {
      // libp2p allows one outbound ping stream per connection, and the coordinator's detector
      // pings its peers too: a ping that met the detector's is not a round trip, so it is taken again
      if ((err as Error).name !== 'TooManyOutboundProtocolStreamsError' || tries >= 50) throw err
      await sleep(20)
    }
  }
  return { bytesPerS: median(rates), bytes, latencyS: median(rtts) / 2 }
}

/**
 * CPU seconds per byte of the checkpoint store's pull, both ends: every stage's snapshot of the
 * newest checkpoint pulled again from its holder as the store pulls it (the snapshot served by
 * exactly its iteration, into the previous pull's arrays), on the idle cluster after the replay.
 * (The CPU of a pull of the live state into new arrays, which a first version used, was twice
 * what a checkpoint took.) The store's file writes are not included.
 */
async function probeCheckpointCpu (coord: Coordinator, peers: BenchPeer[]): Promise<number> {
  const it = coord.store?.list().find(c => c.complete)?.iteration
  if (it == null) throw new CostValidationError('no complete checkpoint to pull again')
  const reuse = new Map<number, Map<string, Float32Array | Int32Array>>()
  const perByte: number[] = []
  for (let round = 0; round < 3; round++) {
    let cpuS = 0
    let bytes = 0
    for (let s = 0; s < S; s++) {
      const donor = holder(coord, peers, s)
      const into = reuse.get(s)
      const c0 = process.cpuUsage()
      const d0 = cpuMs(donor.child.pid)
      const r = await fetchWeights(coord.node, {
        donors: [{ peer: peerIdFromString(donor.peerId) }],
        stage: s,
        minIteration: it,
        includeOptimizer: true,
        timeoutMs: 60_000,
        ...(into != null ? { destination: (info: { name: string, byteLength: number }) => { const a = into.get(info.name); return a?.byteLength === info.byteLength ? a : undefined } } : {})
      })
      if (r.iteration !== it) throw new CostValidationError(`stage ${s}'s holder served iteration ${r.iteration}, not the checkpoint's ${it}`)
      const c = process.cpuUsage(c0)
      // this process pulling and checking, the holder serving (/proc: 10 ms ticks)
      cpuS += (c.user + c.system) / 1e6 + (cpuMs(donor.child.pid) - d0) / 1000
      bytes += r.bytes
      reuse.set(s, new Map([...r.tensors].map(([name, t]) => [name, t.data])))
    }
    if (round > 0) perByte.push(cpuS / bytes) // the first round allocates the arrays
  }
  return median(perByte)
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

/** Where in a clean iteration the busy probes act: where the trace's failures land (0.4 of an iteration). */
const BUSY_AT = 0.4

/**
 * The survivors' part of a recovery round, measured without a rebuild: BUSY_AT into a clean
 * iteration, the same assignment is published under a new epoch, and the time until each stage
 * took it. A stage takes it only once it is through the compute it is inside (a WASM kernel does
 * not yield). With `frozen` (a crash), that stage's peer is SIGSTOPped at BUSY_AT and the epoch
 * published `delayS` later (the detection), so its neighbours run out of work as a crash's
 * survivors do; it is SIGCONTed once the others took the epoch (its silence stays far under the
 * detector's floor), and only the others' times count. Without (a notice), every stage goes on
 * computing, as they do while a departing peer finishes what it is inside. The probed iteration is
 * dropped (redone under the new epoch); a clean iteration before each probe starts it warm.
 */
async function probeBusyEpoch (coord: Coordinator, periodS: number, rounds: number, frozen?: { peer: BenchPeer, stage: number, delayS: number }): Promise<EpochProbe> {
  const allS: number[] = []
  const takes: Array<Map<number, number>> = []
  for (let i = 0; i < rounds; i++) {
    await coord.runIteration({ timeoutMs: 120_000 })
    const stop = new AbortController()
    const running = coord.runIteration({ timeoutMs: 120_000, signal: stop.signal }).then(() => true, () => false)
    await sleep(BUSY_AT * periodS * 1000)
    if (frozen != null) {
      frozen.peer.child.kill('SIGSTOP')
      await sleep(frozen.delayS * 1000)
    }
    const peers = (coord.assignment?.stages ?? []).map(s => [...s.peers])
    // as the coordinator drops an iteration for a loss: the abort first, then the round's epoch
    const t0 = performance.now()
    await coord.gossip.publish({ kind: 'abort', epoch: coord.epoch, iteration: coord.iteration, reason: 'bench:costmodel probe of the survivors\' epoch' })
    stop.abort(new CostValidationError('probe: the iteration was dropped for a new epoch'))
    const watch = new EpochWatch(coord, () => performance.now())
    try {
      const others = (): boolean => peers.every((_, st) => st === frozen?.stage || watch.takenAt.has(st))
      const assigned = coord.assign(peers, { timeoutMs: 30_000 })
      await coord.until(others, 'the survivors to take the probe\'s epoch', 30_000)
      allS.push((performance.now() - t0) / 1000)
      if (frozen != null) frozen.peer.child.kill('SIGCONT')
      await assigned
    } finally {
      if (frozen != null) frozen.peer.child.kill('SIGCONT')
      watch.stop()
    }
    takes.push(new Map([...watch.takenAt].filter(([st]) => st !== frozen?.stage).map(([st, t]) => [st, (t - t0) / 1000])))
    if (await running) throw new CostValidationError(`the iteration probed for the busy epoch committed within ${ms(BUSY_AT * periodS)}: the stages were not busy when the epoch came`)
  }
  return { allS, takes }
}

/** One busy-epoch probe: per round, every stage but a frozen one on the new epoch, and each stage's take, s after the abort. */
interface EpochProbe { allS: number[], takes: Array<Map<number, number>> }

/** Per round, the latest take among `stages`; their median. */
function latestTake (probe: EpochProbe, stages: readonly number[]): number {
  return median(probe.takes.map(t => Math.max(0, ...stages.map(st => {
    const x = t.get(st)
    if (x == null) throw new CostValidationError(`the busy-epoch probe has no take for stage ${st}`)
    return x
  }))))
}

/**
 * When each stage of the coordinator's assignment first heartbeats that it holds its stage under
 * the newest epoch published since the watch began (the rebuilt stage's heartbeat is its claim, once
 * installed), on `clock`.
 */
class EpochWatch {
  readonly takenAt = new Map<number, number>()
  publishedAt?: number
  epoch?: number
  private readonly onEpoch = (e: { epoch: number }): void => {
    this.epoch = e.epoch
    this.publishedAt = this.clock()
    this.takenAt.clear()
    this.look()
  }

  private readonly look = (): void => {
    if (this.epoch == null) return
    for (const st of this.coord.assignment?.stages ?? []) {
      if (this.takenAt.has(st.stage)) continue
      const hb = this.coord.peers.get(st.peers[0] ?? '')?.heartbeat
      if (hb?.epoch === this.epoch && hb.stage === st.stage) this.takenAt.set(st.stage, this.clock())
    }
  }

  constructor (private readonly coord: Coordinator, private readonly clock: () => number) {
    coord.on('epoch', this.onEpoch)
    coord.on('change', this.look)
  }

  stop (): void {
    this.coord.off('epoch', this.onEpoch)
    this.coord.off('change', this.look)
  }
}

/**
 * The detector's path for a process killed while the cluster trains: a spare (no stage: the
 * iteration goes on) SIGKILLed BUSY_AT into a clean iteration, to the coordinator's libp2p seeing
 * its connection close. The detector then confirms with a ping, which the dead port refuses
 * (probeRefusedPing).
 */
async function probeBusyDisconnect (coord: Coordinator, spare: BenchPeer, periodS: number): Promise<number> {
  const running = coord.runIteration({ timeoutMs: 120_000 })
  await sleep(BUSY_AT * periodS * 1000)
  const closed = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => { coord.node.removeEventListener('peer:disconnect', on); reject(new CostValidationError(`the killed spare ${spare.peerId} was not disconnected within 10 s`)) }, 10_000)
    const on = (e: CustomEvent<{ toString: () => string }>): void => {
      if (e.detail.toString() !== spare.peerId) return
      clearTimeout(timer)
      coord.node.removeEventListener('peer:disconnect', on)
      resolve(performance.now())
    }
    coord.node.addEventListener('peer:disconnect', on)
  })
  const t0 = performance.now()
  spare.child.kill('SIGKILL')
  const seconds = ((await closed) - t0) / 1000
  await running
  return seconds
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
    // both listeners go when the reply comes (left behind, every ask would add two to the child)
    const done = new AbortController()
    const reply = Promise.race([
      once(this.child, 'message', { signal: done.signal }) as Promise<[ProbeReply]>,
      once(this.child, 'exit', { signal: done.signal }).then(([code, sig]) => { throw new CostValidationError(`the probe of stage ${this.stage} exited (${String(sig ?? code)})`) })
    ])
    this.child.send(m)
    const [r] = await reply.finally(() => { done.abort() })
    if (r.type === 'error') throw new CostValidationError(`the probe of stage ${this.stage}: ${r.message}`)
    if (r.type !== want) throw new CostValidationError(`the probe of stage ${this.stage} sent ${r.type}, expected ${want}`)
    return r
  }

  async compute (iterations: number): Promise<number[]> {
    return (await this.ask({ type: 'compute', iterations }, 'computed') as Extract<ProbeReply, { type: 'computed' }>).seconds
  }

  async sample (iteration: number): Promise<ComputeSample> {
    const { forwardS, backwardS, stepS } = await this.ask({ type: 'sample', iteration }, 'sampled') as Extract<ProbeReply, { type: 'sampled' }>
    return { forwardS, backwardS, stepS }
  }
}

/**
 * The compute of one training step: each stage's iteration, timed the way its peer runs it (each
 * forward and backward copies its output to the host; then the clip and the Adam step), in its
 * probe process, one stage after another. Outside this process: the coordinator's event loop must
 * not stall (a step measured here held it 1.3 s before every attempt, and the detector saw pauses).
 */
async function sampleCompute (probes: Probe[], iteration: number): Promise<ComputeSample> {
  const out: ComputeSample = { forwardS: 0, backwardS: 0, stepS: 0 }
  for (const p of probes) {
    const c = await p.sample(iteration)
    out.forwardS += c.forwardS
    out.backwardS += c.backwardS
    out.stepS += c.stepS
  }
  return out
}

interface FreshPeer { coldPullExtraS: number, installS: number, coldComputeExtraS: number, warmComputeS: number, warmPullS: number }

/**
 * A fresh process given its stage, on the idle cluster: its first pull of the stage's state from
 * the stage's peer beyond warm ones, the install of the pulled state as a rebuilt peer installs it
 * (built, weights packed), and its first iteration beyond warm ones.
 */
async function probeFreshPeer (probe: Probe, coord: Coordinator, peers: BenchPeer[]): Promise<FreshPeer> {
  const donor = holder(coord, peers, probe.stage)
  const addrs = (await coord.node.peerStore.get(peerIdFromString(donor.peerId))).addresses.map(a => a.multiaddr.toString())
  const pull = async (install: boolean): Promise<Extract<ProbeReply, { type: 'pulled' }>> => await probe.ask({ type: 'pull', donor: donor.peerId, donorAddrs: addrs, stage: probe.stage, install }, 'pulled') as Extract<ProbeReply, { type: 'pulled' }>
  const cold = await pull(true)
  const warm = median([(await pull(false)).seconds, (await pull(false)).seconds])
  const times = await probe.compute(3)
  const warmComputeS = median(times.slice(1))
  return { coldPullExtraS: Math.max(0, cold.seconds - warm), installS: cold.installS, coldComputeExtraS: Math.max(0, times[0] - warmComputeS), warmComputeS, warmPullS: warm }
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
  /** Per stage, its own compute in this attempt, s (the done reports'; committed attempts only). */
  computeS?: number[]
  event?: TraceEvent
  signalS?: number
  /** When the aborted iteration returned, and when the recovery (reconcile) did. */
  abortedS?: number
  recoveredS?: number
  /** A step of the stages (in the probe processes) measured just before this attempt (none right after a snapshot commit,
   *  whose background upload it would hide). */
  baseline?: ComputeSample
  /** A failure's recovery as the coordinator saw it, s on the bench clock. */
  timeline?: RecoveryTimeline
}

/** When the coordinator knew each step of one recovery, s on the bench clock. */
interface RecoveryTimeline {
  /** The lost or departing stage known: needsRound() turned true. */
  knownS?: number
  /** The recovery's epoch: when it was published, when each stage took it. */
  watch: EpochWatch
}

interface Replay {
  attempts: Attempt[]
  recoveries: RecoveryEvent[]
  checkpoints: CheckpointEvent[]
  /** Iteration of the newest complete checkpoint on disk at each failure. */
  checkpointAt: Map<number, number>
}

async function replay (coord: Coordinator, peers: BenchPeer[], clock: () => number, baseline: (attempt: number) => Promise<ComputeSample>): Promise<Replay> {
  const out: Replay = { attempts: [], recoveries: [], checkpoints: [], checkpointAt: new Map() }
  coord.on('recovery', (evs: RecoveryEvent[]) => { out.recoveries.push(...evs) })
  coord.on('checkpoint', (e: CheckpointEvent) => { out.checkpoints.push(e) })
  const byAttempt = new Map<number, TraceEvent>()
  for (const e of trace.events) if (e.kind !== 'join') byAttempt.set(e.iteration, e)
  // the recovery in flight, if any: what the coordinator knew when
  let timeline: RecoveryTimeline | undefined
  coord.on('change', () => { if (timeline != null && timeline.knownS == null && coord.needsRound()) timeline.knownS = clock() })
  const clean: number[] = []
  for (let a = 0; a < trace.iterations; a++) {
    const event = byAttempt.get(a)
    const sample = out.attempts.slice(-2).some(x => x.snapshot) ? undefined : await baseline(a)
    const rec: Attempt = { attempt: a, iteration: coord.iteration, startS: clock(), endS: 0, committed: false, snapshot: false, ...(event != null ? { event } : {}), ...(sample != null ? { baseline: sample } : {}) }
    const running = coord.runIteration({ timeoutMs: 120_000 })
    if (event != null) {
      out.checkpointAt.set(a, coord.store?.list().find(c => c.complete)?.iteration ?? 0)
      // the trace's offset inside the attempt, on the clean iterations seen so far
      const u = event.timeS - event.iteration
      await sleep(u * median(clean) * 1000)
      const victim = holder(coord, peers, event.stage)
      timeline = { watch: new EpochWatch(coord, clock) }
      rec.timeline = timeline
      rec.signalS = clock()
      victim.child.kill(event.kind === 'notice' ? 'SIGTERM' : 'SIGKILL')
    }
    try {
      const r = await running
      rec.committed = true
      rec.computeS = r.computeMs.map(x => x / 1000)
      rec.snapshot = (r.iteration + 1) % CHECKPOINT_EVERY === 0
    } catch (err) {
      if (!(err instanceof StageLostError)) throw err
      rec.abortedS = clock()
    }
    if (event != null && rec.committed) throw new CostValidationError(`attempt ${a} committed although its ${event.kind} came ${ms((rec.signalS ?? 0) - rec.startS)} into it: the failure fell between iterations`)
    if (event != null) {
      await coord.reconcile({ timeoutMs: 120_000 })
      rec.recoveredS = clock()
      timeline?.watch.stop()
      timeline = undefined
    }
    rec.endS = clock()
    out.attempts.push(rec)
    if (event == null && a >= 2) clean.push(rec.endS - rec.startS)
  }
  await coord.flushCheckpoints()
  return out
}

// ------------------------------------------------------------------ the checkpoint phase

interface CheckpointPhase {
  /** Per attempt after a snapshot commit: its period less the mean of its two neighbours' (after plain commits). */
  overheadS: number[]
  /** The neighbours' periods, for the print. */
  plainS: number[]
  /** Per attempt after a snapshot commit: the CPU (this process and the peers) beyond its neighbours' mean. */
  extraCpuS: number[]
  /** The CPU the neighbours took over their wall time: how many cores the cluster keeps busy. */
  plainCores: number[]
  uploadsMs: number[]
}

/** CPU seconds of this process and every live peer so far (/proc: 10 ms ticks). */
function clusterCpuS (peers: BenchPeer[]): number {
  const c = process.cpuUsage()
  let s = (c.user + c.system) / 1e6
  for (const p of peers) if (p.child.exitCode == null && p.child.signalCode == null) s += cpuMs(p.child.pid) / 1000
  return s
}

/**
 * A checkpoint's cost, measured apart from the failures: with a checkpoint every other commit, each
 * attempt after a snapshot commit (which carries the peers' snapshot copy and the store's background
 * pull) sits between two attempts after plain commits, and its excess over their mean is one
 * checkpoint's overhead. The neighbours are taken in the same seconds, so the load's drift cancels;
 * the median over CHECKPOINT_PAIRS such attempts resolves what the difference of two pairs of
 * iterations could not. `init` is the coordinator's own init, whose `checkpointEvery` it reads at
 * each commit. No compute step is measured inside the phase: it would hide the background pull.
 */
async function checkpointPhase (coord: Coordinator, peers: BenchPeer[], init: { checkpointEvery?: number }): Promise<CheckpointPhase> {
  const uploads: number[] = []
  const onCheckpoint = (e: CheckpointEvent): void => { uploads.push(e.ms) }
  await coord.flushCheckpoints()
  init.checkpointEvery = 2
  coord.on('checkpoint', onCheckpoint)
  const periods: Array<{ s: number, cpuS: number, afterSnapshot: boolean }> = []
  let lastSnapshot = false
  try {
    // commits alternate snapshot and plain: 2 x PAIRS + 3 attempts give PAIRS inner ones after a snapshot
    for (let k = 0; k < 2 * CHECKPOINT_PAIRS + 3; k++) {
      const t0 = performance.now()
      const c0 = clusterCpuS(peers)
      const r = await coord.runIteration({ timeoutMs: 120_000 })
      periods.push({ s: (performance.now() - t0) / 1000, cpuS: clusterCpuS(peers) - c0, afterSnapshot: lastSnapshot })
      lastSnapshot = (r.iteration + 1) % 2 === 0
    }
    await coord.flushCheckpoints()
  } finally {
    coord.off('checkpoint', onCheckpoint)
    init.checkpointEvery = CHECKPOINT_EVERY
  }
  const overheadS: number[] = []
  const plainS: number[] = []
  const extraCpuS: number[] = []
  const plainCores: number[] = []
  // the first attempt follows a commit of the replay's schedule: only from the second on
  for (let i = 2; i < periods.length - 1; i++) {
    const [prev, cur, next] = [periods[i - 1], periods[i], periods[i + 1]]
    if (!cur.afterSnapshot || prev.afterSnapshot || next.afterSnapshot) continue
    overheadS.push(cur.s - (prev.s + next.s) / 2)
    plainS.push(prev.s, next.s)
    extraCpuS.push(cur.cpuS - (prev.cpuS + next.cpuS) / 2)
    plainCores.push(prev.cpuS / prev.s, next.cpuS / next.s)
  }
  return { overheadS, plainS, extraCpuS, plainCores, uploadsMs: uploads }
}

// ------------------------------------------------------------------ main

const stateDir = await mkdtemp(join(tmpdir(), 'spotpipe-costmodel-'))
let cluster: { coord: Coordinator, peers: BenchPeer[] } | undefined
let failed = false
try {
  await initBackend({ backend: 'wasm', strict: true })
  console.log(`demo model: d=${model.dModel}, ${model.nBlocks} blocks, seq ${model.seqLen}; ${S} stages x ${M} microbatches of ${train.microbatchSize}; strategy ${STRATEGY}, a checkpoint every ${CHECKPOINT_EVERY} iterations`)
  console.log(`trace (seed ${trace.seed}, ${trace.iterations} attempts): ${trace.events.filter(e => e.kind !== 'join').map(e => `${e.kind} of stage ${e.stage} at attempt ${e.iteration}`).join(', ')}; joins are spares started with the cluster`)

  // the snapshot rate, on stage 1 (the same seeded weights its peer starts from)
  const local = new Stage({ model, train, layout: stageLayout(model, S, 1) })
  const snapshot = measureSnapshot(local)
  local.dispose()
  const capacities: number[] = []

  // a spare per join of the trace, one in reserve, and those the busy detection probe kills
  const spares = trace.events.filter(e => e.kind === 'join').length + 1 + DISCONNECT_PROBES
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
  // under load: warm iterations, then the probes that act inside clean ones
  // the cluster's first iterations: every stage's peer computes its stage for the first time in the
  // first one (each stage's own compute from its done report), then warm ones
  const first: Array<{ s: number, computeS: number[] }> = []
  for (let i = 0; i < 4; i++) {
    const w0 = performance.now()
    const r = await coord.runIteration({ timeoutMs: 120_000 })
    first.push({ s: (performance.now() - w0) / 1000, computeS: r.computeMs.map(x => x / 1000) })
  }
  const busyPeriodS = median(first.slice(1).map(f => f.s))
  const assigned = new Set((coord.assignment?.stages ?? []).flatMap(st => st.peers))
  const disconnects: number[] = []
  for (const spare of peers.filter(p => !assigned.has(p.peerId)).slice(-DISCONNECT_PROBES)) disconnects.push(await probeBusyDisconnect(coord, spare, busyPeriodS))
  const busyDetectionS = median(disconnects) + refusedS
  // the survivors' epoch: every stage busy (a notice), and with each crashed stage of the trace frozen
  const busyEpoch = await probeBusyEpoch(coord, busyPeriodS, 3)
  const crashEpoch = new Map<number, EpochProbe>()
  for (const st of new Set(FAILURES.filter(f => f.kind === 'crash').map(f => f.stage))) {
    crashEpoch.set(st, await probeBusyEpoch(coord, busyPeriodS, 3, { peer: holder(coord, peers, st), stage: st, delayS: busyDetectionS }))
  }
  // every probe as a fresh peer given its stage, one after another (their cold iterations done
  // here, the cluster idle between iterations)
  const fresh: FreshPeer[] = []
  for (const p of probes) fresh.push(await probeFreshPeer(p, coord, peers))
  capacities.push(await probeCapacity(probes))

  const t0 = performance.now()
  const t0Wall = Date.now()
  const clock = (): number => (performance.now() - t0) / 1000
  const run = await replay(coord, peers, clock, async (a) => await sampleCompute(probes, 100 + a))
  const phaseSamples = [await sampleCompute(probes, 200), await sampleCompute(probes, 201)]
  const phase = await checkpointPhase(coord, peers, coord.init)
  phaseSamples.push(await sampleCompute(probes, 202), await sampleCompute(probes, 203))
  const checkpointCpuSPerByte = await probeCheckpointCpu(coord, peers)
  capacities.push(await probeCapacity(probes))
  for (const p of probes) p.child.kill('SIGKILL')

  // ---- parameters: shared by every prediction but the compute, which each attempt takes from the
  // step measured just before it (the load on this shared machine drifts)
  const cores = Math.min(availableParallelism(), median(capacities))
  const iterationOverheadS = 2 * gossipS + persistS
  const detectionS = busyDetectionS
  // a departing stage's signal is handled when the stage is through its compute, as the epoch is
  // taken; the epoch's way out and its install are not on the notice's path
  const rebuildOverheadS = median(fresh.map(f => f.coldPullExtraS + f.installS))
  const costFor = (c: ComputeSample): CostModel => costModelForModel(model, train, c.forwardS + c.backwardS + c.stepS, {
    hostCores: cores,
    forwardFraction: c.forwardS / (c.forwardS + c.backwardS + c.stepS),
    linkBytesPerS: link.bytesPerS,
    storageBytesPerS: link.bytesPerS,
    linkLatencyS: link.latencyS,
    snapshotBytesPerS: snapshot.bytesPerS,
    detectionS,
    noticeLeadS: 0,
    iterationOverheadS,
    rebuildOverheadS,
    transferCpuSPerByte: checkpointCpuSPerByte
  })
  const atts = run.attempts
  const baselines = atts.flatMap(a => a.baseline ?? [])
  const typical = medianSample(baselines)
  const cost = costFor(typical)
  const all = Array.from({ length: S }, (_, st) => st)
  // the cold first iteration, as a share of a warm one: the fresh probes' first iteration beyond
  // their next two, each against those two (one process's run, so the load's drift cancels); each
  // failure is charged that share of its stage's compute at the step measured before it
  const coldShare = median(fresh.map(f => f.coldComputeExtraS / f.warmComputeS))
  /**
   * A failure's cost model: the survivors' epoch from the probe of its kind (every stage busy for a
   * notice, its stage frozen for a crash), the latest survivor's take and the latest donor's
   * (`donors`: the rung's), a notice heard when its stage is through its compute.
   */
  const failureCost = (c: ComputeSample, f: { kind: 'crash' | 'notice', stage: number }, donors: readonly number[]): CostModel => {
    const probe = f.kind === 'crash' ? crashEpoch.get(f.stage) ?? busyEpoch : busyEpoch
    const base = costFor(c)
    return base.with({
      epochTakeS: latestTake(probe, all.filter(st => st !== f.stage)),
      ...(donors.length > 0 ? { donorReadyS: latestTake(probe, donors) } : {}),
      noticeHeardS: f.kind === 'notice' ? Math.max(0, latestTake(busyEpoch, [f.stage]) - gossipS) : 0,
      coldIterationS: coldShare * train.microbatches * base.p.slotComputeS
    })
  }
  const PLAIN = { swaps: false, redundantCompute: false }
  console.log('\nparameters (each measured in this run, beside or before the replay, or configuration):')
  console.log(`  slotComputeS        ${ms(cost.p.slotComputeS)} (median; each attempt's own from the step just before it): steps of the ${S} stages, each stage in its probe process, one after another (${baselines.length} steps between the attempts, ${ms(Math.min(...baselines.map(c => c.forwardS + c.backwardS + c.stepS)))}..${ms(Math.max(...baselines.map(c => c.forwardS + c.backwardS + c.stepS)))}; median forward ${ms(typical.forwardS)}, backward ${ms(typical.backwardS)}, clip + Adam ${ms(typical.stepS)}) / (S x M)`)
  console.log(`  forwardFraction     ${cost.p.forwardFraction?.toFixed(3)}: forward / whole step, same steps`)
  console.log(`  hostCores           ${cores.toFixed(2)}: what ${S} fresh stage processes computing at once get of this host, in units of one alone (${capacities.map(c => c.toFixed(2)).join(', ')}: before and after the replay), at most os.availableParallelism() = ${availableParallelism()}; every stage is a process on this host`)
  console.log(`  transferCpuSPerByte ${(checkpointCpuSPerByte * 1e9).toFixed(1)} ns/B: CPU of both ends of the store's pull of every stage's checkpoint snapshot, pulled again from its holders into the previous pull's arrays on the idle cluster after the replay, median of 2 rounds; new, default 0`)
  console.log(`  hopBytes            ${cost.p.hopBytes} B: B x T x D x 4 (the model)`)
  console.log(`  linkBytesPerS       ${(link.bytesPerS / 2 ** 20).toFixed(1)} MB/s: stage 1's weights + Adam (${(link.bytes / 2 ** 20).toFixed(1)} MB) pulled over the weights protocol from its peer into new arrays (as a rebuilt peer pulls), median of 3, before training`)
  console.log('  storageBytesPerS    the same: the store is this process, pulling over the same loopback')
  console.log(`  linkLatencyS        ${(link.latencyS * 1000).toFixed(2)} ms: half the median libp2p ping round trip to a peer`)
  console.log(`  snapshotBytesPerS   ${(snapshot.bytesPerS / 1e9).toFixed(2)} GB/s: exportStageState into the previous snapshot's arrays (a peer's checkpoint snapshot), ${(snapshot.bytes / 2 ** 20).toFixed(1)} MB stage`)
  console.log(`  detectionS          ${ms(detectionS)}: the detector's path for a killed process: its connection closes (${disconnects.map(ms).join(', ')}: a spare SIGKILLed ${BUSY_AT} into a clean iteration (${ms(busyPeriodS)}), to the coordinator's libp2p seeing it close; median) and the confirming ping is refused (${ms(refusedS)}: measured to a closed loopback port); the ${HEARTBEAT_TIMEOUT_MS} ms heartbeat floor applies only to a silent peer`)
  console.log('  noticeLeadS         0: the coordinator moves a departing stage at once (the iteration in flight is aborted); it does not wait out the notice')
  console.log(`  noticeHeardS        a departing stage handles its signal once through the compute it is inside, as it takes an epoch: that stage's take in the all-busy probe below, less the epoch's way out (${ms(gossipS)}); new, default 0`)
  console.log(`  iterationOverheadS  ${ms(iterationOverheadS)}: 2 x the heartbeats' one-way gossip delay (${ms(gossipS)}: begin out, done back) + the coordinator's persist per commit (${ms(persistS)}); new, default 0`)
  const showProbe = (p: EpochProbe): string => `${p.allS.map(ms).join(', ')}; per stage, round by round: ${p.takes.map(t => [...t].sort((x, y) => x[0] - y[0]).map(([st, x]) => `${st}:${ms(x)}`).join(' ')).join('; ')}`
  console.log(`  epochTakeS          the survivors of a recovery round, each through the compute it is inside first: ${BUSY_AT} into a clean iteration it is dropped as for a loss (the abort published) and the same assignment published under a new epoch, until every stage but a frozen one took it, 3 rounds (the iteration redone after); the latest survivor's take, median over the rounds. For a notice every stage goes on computing (${showProbe(busyEpoch)}); for a crash of stage s its peer is SIGSTOPped at ${BUSY_AT} and the abort published detectionS later (${[...crashEpoch].map(([st, e]) => `stage ${st}: ${showProbe(e)}`).join('; ')}); new, default 0`)
  console.log('  donorReadyS         the same probes: the latest of the rung\'s donor stages to take the epoch (a handover\'s donor is the departing stage, in the all-busy probe); the store serves at once; new, default epochTakeS')
  console.log(`  rebuildOverheadS    ${ms(rebuildOverheadS)}: a fresh process given a stage (one per stage, before training): its first pull of the stage's state beyond a warm one (${fresh.map(f => ms(f.coldPullExtraS)).join(', ')}; warm ${fresh.map(f => ms(f.warmPullS)).join(', ')}) + its install, built and its weights packed, as a rebuilt peer's (${fresh.map(f => ms(f.installS)).join(', ')}); median of the sums; new, default 0`)
  console.log(`  coldIterationS      ${(100 * coldShare).toFixed(0)}% of the stage's compute per iteration (${ms(coldShare * train.microbatches * cost.p.slotComputeS)} at the median step; each failure at the step before it): the fresh processes' first iteration of their stage beyond the next two, against those two (${fresh.map(f => `${ms(f.coldComputeExtraS)} / ${ms(f.warmComputeS)}`).join(', ')}; median of the shares), after the busy probes; charged as what it adds to the pipeline: ${ms(failureCost(typical, { kind: 'crash', stage: 1 }, []).coldIterationDelayS([1]))} for stage 1, ${ms(failureCost(typical, { kind: 'crash', stage: S - 1 }, []).coldIterationDelayS([S - 1]))} for stage ${S - 1}. (The cluster's own first iteration, every stage cold at once: ${ms(first[0].s)} against ${ms(busyPeriodS)}, its stages' own compute ${first[0].computeS.map(ms).join(', ')} against ${all.map(st => ms(median(first.slice(1).map(f => f.computeS[st])))).join(', ')}.) New, default 0`)

  // ---- figures, each against the attempts next to it
  const period = (a: Attempt): number => a.endS - a.startS
  const plain = (a: Attempt | undefined): a is Attempt => a != null && a.event == null && a.committed
  const afterEvent = new Set<number>()
  atts.forEach((a, i) => { if (a.event != null) afterEvent.add(i + 1) })
  const clean = atts.filter((a, i) => i >= 2 && plain(a) && a.baseline != null && !afterEvent.has(i))
  const cleanSet = new Set(clean)
  const iterPred = median(clean.map(a => costFor(a.baseline as ComputeSample).iterationS(PLAIN)))
  const iterMeasured = median(clean.map(period))
  const iterErr = relativeError(iterPred, iterMeasured)
  console.log('\nfigures:')
  console.log(`iteration: predicted ${ms(iterPred)}, measured ${ms(iterMeasured)}, relative error ${iterErr.toFixed(3)}  (medians over ${clean.length} clean attempts, each predicted from the step before it; measured ${clean.map(a => (period(a) * 1000).toFixed(0)).join(' ')} ms; the formula for a machine per stage would give ${ms(cost.with({ hostCores: undefined, iterationOverheadS: 0 }).iterationS(PLAIN))})`)

  const records = run.recoveries.filter(r => r.outcome === 'recovered')
  // per kind of failure (and so per rung): the REPEATS failures' predictions and measurements
  const byRung = new Map<string, { predicted: number[], measured: number[] }>()
  for (const [i, a] of atts.entries()) {
    if (a.event == null) continue
    const redone = atts[i + 1]
    // the clean attempts next to it: up to NEIGHBOURS before the failure and after the redone one
    const around = [...atts.slice(Math.max(0, i - NEIGHBOURS), i), ...atts.slice(i + 2, i + 2 + NEIGHBOURS)].filter(x => cleanSet.has(x))
    // the step measured just before; after a snapshot commit none is, and the newest earlier one stands in
    const step = a.baseline ?? atts.slice(0, i).reverse().find(x => x.baseline != null)?.baseline
    if (!plain(redone) || around.length === 0 || step == null) throw new CostValidationError(`attempt ${a.attempt}'s ${a.event.kind} has no clean attempts around it`)
    const base = median(around.map(period))
    // signal -> recovered, then what the redone iteration took beyond the clean ones around it (the
    // step measured between the two is not the cluster's time)
    const measured = (a.recoveredS as number) - (a.signalS as number) + period(redone) - base
    const f = { kind: a.event.kind as 'crash' | 'notice', stage: a.event.stage, checkpoint: run.checkpointAt.get(a.attempt) ?? 0 }
    const pc = failureCost(step, f, predictRecovery(costFor(step), STRATEGY, f).donors)
    const p = predictRecovery(pc, STRATEGY, f)
    const rec = records.find(r => r.stage === f.stage && r.at >= t0Wall + (a.signalS as number) * 1000 - 1000)
    const key = `${f.kind} of stage ${f.stage}, rung ${p.rung}`
    const g = byRung.get(key) ?? { predicted: [], measured: [] }
    byRung.set(key, g)
    g.predicted.push(p.seconds)
    g.measured.push(measured)
    console.log(`recovery (${key}${rec != null && rec.rung !== p.rung ? `; the coordinator chose ${rec.rung}` : ''}) at attempt ${a.attempt}: predicted ${ms(p.seconds)}, measured ${ms(measured)}`)
    const coldS = pc.coldIterationDelayS([f.stage])
    console.log(`  predicted: ${f.kind === 'crash' ? `detection ${ms(p.detectionS)}` : `notice heard ${ms(pc.p.noticeHeardS ?? 0)}`} + round ${ms(p.transferS - coldS)} (the survivors' epoch ${ms(pc.p.epochTakeS ?? 0)}; alongside it ${p.donors.length > 0 ? `the donors (stage ${p.donors.join(', ')}) on the epoch at ${ms(pc.p.donorReadyS ?? 0)}, then` : 'from the store'} the pull of ${(p.bytes / 2 ** 20).toFixed(2)} MB and install: ${ms(rebuildOverheadS)} + the transfer) + the cold first iteration ${ms(coldS)}; measured: signal -> aborted ${ms((a.abortedS ?? NaN) - (a.signalS ?? NaN))}, -> recovered ${ms((a.recoveredS ?? NaN) - (a.signalS ?? NaN))}, redone iteration ${ms(period(redone))} against ${ms(base)} (median of ${around.length} clean attempts around it); the coordinator's record: transfer ${rec?.transferMs.toFixed(0) ?? '?'} ms, rebuild ${rec?.rebuildMs.toFixed(0) ?? '?'} ms, ${rec?.bytes ?? '?'} B`)
    // the rebuilt stage's own compute in the redone attempt against the attempts around it: its cold first iteration, as the cluster ran it
    const own = (x: Attempt): number => x.computeS?.[f.stage] ?? NaN
    console.log(`  stage ${f.stage}'s own compute: redone ${ms(own(redone))}, around it ${ms(median(around.map(own)))} (the model's cold part: ${ms(pc.p.coldIterationS ?? 0)} of compute alone); every stage in the redone attempt: ${redone.computeS?.map(ms).join(', ') ?? '?'}`)
    const tl = a.timeline
    const since = (x: number | undefined): string => x == null ? '?' : ms(x - (a.signalS as number))
    if (tl != null) console.log(`  timeline from the signal: known ${since(tl.knownS)}, aborted ${since(a.abortedS)}, epoch ${tl.watch.epoch ?? '?'} published ${since(tl.watch.publishedAt)}, taken by ${[...tl.watch.takenAt].sort((x, y) => x[0] - y[0]).map(([st, t]) => `stage ${st}${st === f.stage ? ' (rebuilt)' : ''} ${since(t)}`).join(', ')}, recovered ${since(a.recoveredS)}`)
  }
  const recErrs: number[] = []
  for (const [key, g] of byRung) {
    const m = median(g.measured)
    const err = m > 0 ? relativeError(median(g.predicted), m) : Infinity
    recErrs.push(err)
    console.log(`recovery (${key}): predicted ${ms(median(g.predicted))}, measured ${ms(m)}, relative error ${err.toFixed(3)}  (medians of ${g.measured.length}; measured ${g.measured.map(x => (x * 1000).toFixed(0)).join(' ')} ms)`)
  }

  // a checkpoint: the phase's attempts after a snapshot commit against their neighbours
  if (phase.overheadS.length === 0) throw new CostValidationError('the checkpoint phase had no attempt after a snapshot commit between two after plain ones')
  const phaseCompute = medianSample(phaseSamples)
  const phaseCost = costFor(phaseCompute)
  const save = phaseCost.checkpointSave(PLAIN)
  const ckPred = save.copyS + save.contentionS
  const ckMeasured = median(phase.overheadS)
  const ckErr = ckMeasured > 0 ? relativeError(ckPred, ckMeasured) : Infinity
  console.log(`checkpoint overhead: predicted ${ms(ckPred)}, measured ${ms(ckMeasured)}, relative error ${ckErr.toFixed(3)}  (per checkpoint; measured: the median over ${phase.overheadS.length} attempts after a snapshot commit of the excess over their two neighbours after plain commits (a checkpoint every other commit), ${phase.overheadS.map(x => (x * 1000).toFixed(0)).join(' ')} ms, neighbours median ${ms(median(phase.plainS))}; predicted copy ${ms(save.copyS)} + the upload's CPU taken from training ${ms(save.contentionS)} (one host: no link share, which would add ${ms(save.uploadS * phaseCost.linkBusyFraction(PLAIN))}), from the median of ${phaseSamples.length} steps measured just before and after the phase (${phaseSamples.map(c => ms(c.forwardS + c.backwardS + c.stepS)).join(', ')}); the store's pulls took ${phase.uploadsMs.map(x => x.toFixed(0)).join(' ')} ms)`)
  console.log(`  CPU (this process and the peers, /proc): a checkpoint took ${ms(median(phase.extraCpuS))} beyond its neighbours (median, during training; transferCpuSPerByte gives ${ms(save.bytes * checkpointCpuSPerByte)} for its ${(save.bytes / 2 ** 20).toFixed(1)} MB); the attempts after plain commits kept ${median(phase.plainCores).toFixed(2)} cores busy (median; the model's busy share ${(phaseCost.cpuContentionS(save.bytes, PLAIN) * cores / (save.bytes * checkpointCpuSPerByte)).toFixed(2)} of ${cores.toFixed(2)})`)
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

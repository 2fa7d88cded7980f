/**
 * The probes of bench:costmodel: each measures one parameter of the cost model on the running
 * cluster, apart from the failures the bench predicts (the replay and the figures are in
 * costmodel.ts). Compute runs in probe processes (costmodel-probe.ts), never in the coordinator's.
 */
import { once } from 'node:events'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { readFileSync } from 'node:fs'
import { peerIdFromString } from '@libp2p/peer-id'
import { CheckpointStore, type Coordinator } from '../coordinator/index.js'
import { exportStageState, stateFromTensorSet, type Stage, type StageState } from '../model/index.js'
import { fetchWeights } from '../net/index.js'
import { CostValidationError, median } from '../sim/cost-validation.js'
import { holder, type BenchPeer } from './harness.js'
import { children } from './children.js'
import type { ProbeReply, ProbeRequest } from './costmodel-probe.js'

const USER_HZ = 100
/** Rounds of probeCheckpointCpu that count (one more first allocates the arrays). */
const CHECKPOINT_CPU_ROUNDS = 4

export const ms = (s: number): string => `${(s * 1000).toFixed(0)} ms`
export const sleep = async (t: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, t))
// ------------------------------------------------------------------ compute, in the probe processes

export interface ComputeSample { forwardS: number, backwardS: number, stepS: number }

/** A step's whole compute: forward, backward and the optimizer step. */
export const stepS = (c: ComputeSample): number => c.forwardS + c.backwardS + c.stepS

/** Each part's median over `samples`. */
export function medianSample (samples: readonly ComputeSample[]): ComputeSample {
  return { forwardS: median(samples.map(c => c.forwardS)), backwardS: median(samples.map(c => c.backwardS)), stepS: median(samples.map(c => c.stepS)) }
}

/** Seconds per byte of the peers' checkpoint snapshot: exportStageState into the previous snapshot's arrays. */
export function measureSnapshot (stage: Stage): { bytesPerS: number, bytes: number } {
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

export function cpuMs (pid: number | undefined): number {
  if (pid == null) throw new CostValidationError('a peer without a pid')
  const after = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(after[11]) + Number(after[12])) * 1000 / USER_HZ
}

export interface LinkProbe { bytesPerS: number, bytes: number, latencyS: number }

/** A stage's full state (weights + Adam) pulled over the weights protocol into new arrays (as a rebuilt peer pulls), and pings, on loopback. */
export async function probeLink (coord: Coordinator, peers: BenchPeer[]): Promise<LinkProbe> {
  const donor = holder(coord, peers, 1)
  const pulls: Array<{ bytesPerS: number, bytes: number }> = []
  for (let i = 0; i < 3; i++) pulls.push(await sampleLink(coord, peers))
  const bytes = pulls[0].bytes
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
  return { bytesPerS: median(pulls.map(p => p.bytesPerS)), bytes, latencyS: median(rtts) / 2 }
}

/**
 * One pull of stage 1's full state from its peer into new arrays, bytes per second. Taken between
 * the replay's attempts too: the loopback's rate on this shared host moved 4x between runs (9.8 to
 * 37 MB/s before training) and a recovery's pull is charged at the rate measured around it.
 */
export async function sampleLink (coord: Coordinator, peers: BenchPeer[]): Promise<{ bytesPerS: number, bytes: number }> {
  const donor = holder(coord, peers, 1)
  const t0 = performance.now()
  const r = await fetchWeights(coord.node, { donors: [{ peer: peerIdFromString(donor.peerId) }], stage: 1, includeOptimizer: true, timeoutMs: 60_000 })
  return { bytesPerS: r.bytes / ((performance.now() - t0) / 1000), bytes: r.bytes }
}

/**
 * CPU seconds per byte of the checkpoint store's pull, both ends: every stage's snapshot of the
 * newest checkpoint pulled again from its holder as the store pulls it (the snapshot served by
 * exactly its iteration, into the previous pull's arrays) and written as the store writes it (a
 * scratch store of its own: the files, their CRCs, the manifest), on the idle cluster after the
 * replay. Until run R the write was left out: the probe gave 244 to 317 ms for a checkpoint where
 * the phase's checkpoints took 447 to 465 ms of CPU beyond their neighbours.
 * (The CPU of a pull of the live state into new arrays, which a first version used, was twice
 * what a checkpoint took.) The store's file writes are not included.
 */
export async function probeCheckpointCpu (coord: Coordinator, peers: BenchPeer[], scratchDir: string): Promise<number> {
  const it = coord.store?.list().find(c => c.complete)?.iteration
  if (it == null) throw new CostValidationError('no complete checkpoint to pull again')
  const S = coord.assignment?.stages.length ?? 0
  // the store's own write of what it pulled, into a scratch store of its own
  const scratch = new CheckpointStore({ dir: scratchDir, keep: 1 })
  await scratch.open()
  const reuse = new Map<number, Map<string, Float32Array | Int32Array>>()
  const perByte: number[] = []
  for (let round = 0; round < CHECKPOINT_CPU_ROUNDS + 1; round++) {
    let cpuS = 0
    let bytes = 0
    const pending = await scratch.beginCheckpoint(it, S, { probe: 'bench:costmodel' }) // the snapshot's own iteration (putState checks it), replaced each round
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
      await pending.putState(s, stateFromTensorSet(r.tensors), { finiteChecked: true })
      const c = process.cpuUsage(c0)
      // this process pulling, checking and writing, the holder serving (/proc: 10 ms ticks)
      cpuS += (c.user + c.system) / 1e6 + (cpuMs(donor.child.pid) - d0) / 1000
      bytes += r.bytes
      reuse.set(s, new Map([...r.tensors].map(([name, t]) => [name, t.data])))
    }
    const c0 = process.cpuUsage()
    await pending.complete()
    const c = process.cpuUsage(c0)
    cpuS += (c.user + c.system) / 1e6
    if (round > 0) perByte.push(cpuS / bytes) // the first round allocates the arrays
  }
  return median(perByte)
}

/** One-way gossip delay of heartbeats (peer's send timestamp -> the coordinator's receipt, one host clock). */
export async function probeGossip (coord: Coordinator, forMs: number): Promise<number> {
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

export async function probePersist (coord: Coordinator): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now()
    await coord.persist()
    times.push((performance.now() - t0) / 1000)
  }
  return median(times)
}

/** Where in a clean iteration the busy probes act: where the trace's failures land (0.4 of an iteration). */
export const BUSY_AT = 0.4

/** Runs one clean iteration and returns its period, s: the busy probes act BUSY_AT into the next (the host's speed drifts 2x within minutes). */
export async function cleanPeriod (coord: Coordinator): Promise<number> {
  const t0 = performance.now()
  await coord.runIteration({ timeoutMs: 120_000 })
  return (performance.now() - t0) / 1000
}

/**
 * The survivors' part of a recovery round, measured without a rebuild: BUSY_AT into a clean
 * iteration, the same assignment is published under a new epoch, and the time until each stage
 * took it. A stage takes it only once it is through the compute it is inside (a WASM kernel does
 * not yield). With `frozen` (a crash), that stage's peer is SIGSTOPped at BUSY_AT and the epoch
 * published `delayS` later (the detection), so its neighbours run out of work as a crash's
 * survivors do; it is SIGCONTed once the others took the epoch (its silence stays far under the
 * detector's floor), and only the others' times count. Without (a notice), every stage goes on
 * computing, as they do while a departing peer finishes what it is inside. The probed iteration is
 * dropped (redone under the new epoch); a clean iteration before each round starts it warm and
 * gives the period BUSY_AT is of.
 *
 * Every time is from the epoch's publication (the model's epochTakeS; what comes before it is the
 * coordinator's part of the round, measured by the calibration recoveries). With `pull`, this
 * process pulls those stages' state from their peers as soon as the epoch is published, all at once, as a rebuilt peer pulls from the rung's donors (CheckFree: both
 * neighbours' weights; a handover: the departing stage's weights and Adam): a donor serves once it
 * is through its compute, and then while the other stages still finish theirs on the same cores.
 */
export async function probeBusyEpoch (coord: Coordinator, rounds: number, frozen?: { peer: BenchPeer, stage: number, delayS: number }, pull?: { stages: number[], includeOptimizer: boolean }): Promise<EpochProbe> {
  const takes: Array<Map<number, number>> = []
  const pulls: Array<{ doneS: number, bytes: number }> = []
  for (let i = 0; i < rounds; i++) {
    const periodS = await cleanPeriod(coord)
    const stop = new AbortController()
    const running = coord.runIteration({ timeoutMs: 120_000, signal: stop.signal }).then(() => true, () => false)
    await sleep(BUSY_AT * periodS * 1000)
    if (frozen != null) {
      frozen.peer.child.kill('SIGSTOP')
      await sleep(frozen.delayS * 1000)
    }
    const peers = (coord.assignment?.stages ?? []).map(s => [...s.peers])
    // as the coordinator drops an iteration for a loss: the abort first, then the round's epoch
    await coord.gossip.publish({ kind: 'abort', epoch: coord.epoch, iteration: coord.iteration, reason: 'bench:costmodel probe of the survivors\' epoch' })
    stop.abort(new CostValidationError('probe: the iteration was dropped for a new epoch'))
    const watch = new EpochWatch(coord, () => performance.now())
    let done: { at: number, bytes: number } | undefined
    try {
      const others = (): boolean => peers.every((_, st) => st === frozen?.stage || watch.takenAt.has(st))
      const epoch = once(coord, 'epoch')
      const assigned = coord.assign(peers, { timeoutMs: 30_000 })
      const pulled = pull == null
        ? undefined
        : epoch.then(async () => await Promise.all(pull.stages.map(async st => await fetchWeights(coord.node, { donors: [{ peer: peerIdFromString(peers[st][0]) }], stage: st, includeOptimizer: pull.includeOptimizer, timeoutMs: 30_000 }))))
          .then(rs => ({ at: performance.now(), bytes: rs.reduce((n, r) => n + r.bytes, 0) }))
      await coord.until(others, 'the survivors to take the probe\'s epoch', 30_000)
      if (pulled != null) done = await pulled
      if (frozen != null) frozen.peer.child.kill('SIGCONT')
      await assigned
    } finally {
      if (frozen != null) frozen.peer.child.kill('SIGCONT')
      watch.stop()
    }
    const published = watch.publishedAt
    if (published == null) throw new CostValidationError('the busy-epoch probe saw no epoch published')
    takes.push(new Map([...watch.takenAt].filter(([st]) => st !== frozen?.stage).map(([st, t]) => [st, (t - published) / 1000])))
    if (done != null) pulls.push({ doneS: (done.at - published) / 1000, bytes: done.bytes })
    if (await running) throw new CostValidationError(`the iteration probed for the busy epoch committed within ${ms(BUSY_AT * periodS)}: the stages were not busy when the epoch came`)
  }
  return { takes, ...(pull != null ? { pulls } : {}) }
}

/** One busy-epoch probe: per round, every stage but a frozen one on the new epoch, and each stage's take, s after the epoch's publication. */
export interface EpochProbe {
  takes: Array<Map<number, number>>
  /** With a pull: per round, when the last donor had served (s after the epoch's publication) and the bytes pulled. */
  pulls?: Array<{ doneS: number, bytes: number }>
}

/** A busy-epoch probe and the step measured beside it. */
export interface EpochSample { probe: EpochProbe, at: ComputeSample }

/**
 * The link's rate in each round, from the donors' side: the bytes pulled over the time from the
 * latest donor's take of the epoch (when it could first serve) to the last byte.
 */
export function roundPullRates (probe: EpochProbe, donors: readonly number[]): number[] {
  if (probe.pulls == null) throw new CostValidationError('the busy-epoch probe pulled nothing')
  return probe.pulls.map((p, r) => {
    const ready = Math.max(0, ...donors.map(st => probe.takes[r].get(st) ?? 0))
    return p.bytes / Math.max(0.01, p.doneS - ready)
  })
}

/** In each round, the latest take among `stages`. */
export function roundTakes (probe: EpochProbe, stages: readonly number[]): number[] {
  return probe.takes.map(t => Math.max(0, ...stages.map(st => {
    const x = t.get(st)
    if (x == null) throw new CostValidationError(`the busy-epoch probe has no take for stage ${st}`)
    return x
  })))
}

/**
 * One recovery as the coordinator sees it, on `clock`: when it first needed a recovery round (a
 * lost or departing stage known) since the watch began, when the newest epoch since then was
 * published, and when each stage of the assignment first heartbeats that it holds its stage under
 * that epoch (the rebuilt stage's heartbeat is its claim, once installed).
 */
export class EpochWatch {
  /** Per stage, when its holder's heartbeat first carried the epoch. */
  readonly takenAt = new Map<number, number>()
  /** Per peer (holders, spares, a departing donor), when its heartbeat first carried the epoch. */
  readonly peerTakenAt = new Map<string, number>()
  knownAt?: number
  publishedAt?: number
  epoch?: number
  private readonly onEpoch = (e: { epoch: number }): void => {
    this.epoch = e.epoch
    this.publishedAt = this.clock()
    this.takenAt.clear()
    this.peerTakenAt.clear()
    this.look()
  }

  private readonly look = (): void => {
    if (this.knownAt == null && this.coord.needsRound()) this.knownAt = this.clock()
    if (this.epoch == null) return
    for (const [id, v] of this.coord.peers) if (!this.peerTakenAt.has(id) && v.heartbeat.epoch === this.epoch) this.peerTakenAt.set(id, this.clock())
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

// ------------------------------------------------------------------ stage processes

const PROBE = fileURLToPath(new URL('./costmodel-probe.ts', import.meta.url))

/** A probe process (costmodel-probe.ts) for one stage, asked over IPC. */
export class Probe {
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
export async function sampleCompute (probes: Probe[], iteration: number): Promise<ComputeSample> {
  const out: ComputeSample = { forwardS: 0, backwardS: 0, stepS: 0 }
  for (const p of probes) {
    const c = await p.sample(iteration)
    out.forwardS += c.forwardS
    out.backwardS += c.backwardS
    out.stepS += c.stepS
  }
  return out
}

/** What the host gives S busy stage processes (probeCapacity). */
export interface Capacity {
  /** In units of one process alone: their iterations one after another over the same all at once (wall-clock). */
  units: number
  /** In CPU seconds per second: what /proc counted for them while all computed at once. */
  cpuCores: number
}

/**
 * What the host does with S busy stage processes, in units of one alone: the stages' iterations run
 * one after another, over the same iterations run all at once (wall-clock). An idle 2-core host
 * gives min(S, 2) at most, less where its cores share caches and memory; other sessions' load
 * lowers it (the kernel shares the CPU between sessions first: autogroup). And the CPU seconds per
 * second the processes got while all computed at once, the unit CPU is counted in.
 */
export async function probeCapacity (probes: Probe[]): Promise<Capacity> {
  let alone = 0
  for (const p of probes) alone += (await p.compute(2)).reduce((a, b) => a + b, 0)
  const cpu0 = probes.reduce((n, p) => n + cpuMs(p.child.pid), 0)
  const t0 = performance.now()
  await Promise.all(probes.map(async p => await p.compute(2)))
  const wallS = (performance.now() - t0) / 1000
  const cpuS = (probes.reduce((n, p) => n + cpuMs(p.child.pid), 0) - cpu0) / 1000
  return { units: alone / wallS, cpuCores: cpuS / wallS }
}

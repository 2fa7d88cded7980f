/**
 * A chaos run: bring up a real fleet (a `spotpipe coordinator` and stages + spares `spotpipe peer`
 * processes with identity files, a tiny model, a state dir with frequent checkpoints), let it train,
 * then work through a fault schedule (each item at its named point), topping the fleet back up as a
 * spot fleet would; settle; pull every stage's weights; stop everything; and return the history for
 * checkInvariants. Every process is killed at the end, pass or fail.
 */
import { existsSync, readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createClusterSecret } from '../peer-process.js'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig, type TrainConfig } from '../../model/index.js'
import { countParams, stageLayout, stageSpecs } from '../../model/index.js'
import { applyFault, type ActionContext } from './actions.js'
import { ChaosConfigError, ChaosFleetError } from './errors.js'
import { describeItem, type FaultKind, type ScheduleItem } from './faults.js'
import { Fleet, type FleetProcess } from './fleet.js'
import type { ChaosBounds, ChaosHistory, CoordinatorEvent, DeadTime, StageInstall } from './history.js'
import { EventTail, StateWatcher, installFromEvent, parseInstallLine, parsePerturbLine, readEventsFile, readPersisted, servingOf } from './observe.js'
import { armRecoveryPoint, reachIterationPoint, sleep, type PointContext } from './points.js'
import { makeSchedule } from './schedule.js'
import { checkWeights } from './weights-check.js'

export interface ChaosOptions {
  seed: number
  /** Length of the chaos phase. @default 60_000 */
  durationMs?: number
  /** At least one fault falls due in every window of this length. @default 10_000 */
  faultEveryMs?: number
  /** Use this schedule instead of drawing one from the seed. */
  schedule?: ScheduleItem[]
  kinds?: readonly FaultKind[]
  /** @default 4 */
  stages?: number
  /**
   * Peers per stage (the coordinator's --replicas): the fleet runs stages x replicas peers plus the
   * spares, and the schedule draws replica faults. 1 is the fleet without replicas. @default 1
   */
  replicas?: number
  /** @default 2 */
  spares?: number
  /** @default 10 */
  checkpointEvery?: number
  /** @default dModel 32, nHeads 2, nBlocks 4, seqLen 16 */
  model?: Partial<ModelConfig>
  /** @default microbatches max(2, replicas), microbatchSize 4 */
  train?: Partial<Omit<TrainConfig, 'stages'>>
  /** @default 'checkfree' */
  strategy?: string
  /**
   * The coordinator's --heartbeat-timeout. Above the product's 3 s default: on a shared 2-core
   * machine, 7 processes building stages at once miss 3 s of heartbeats before the first commit.
   * @default 6000
   */
  heartbeatTimeoutMs?: number
  /** Longest time the coordinator may take to declare a peer lost. @default max(10 s, 1.5 x heartbeatTimeoutMs) */
  detectionMs?: number
  /** The stated bound over detection + transfer. @default 15_000 */
  boundMs?: number
  /** A restarted coordinator's wait for its peers (Coordinator.resume). @default 15_000 */
  resumeGraceMs?: number
  /** Throughput floor for the transfer part of the stall bound, bytes/s. @default 20e6 */
  transferFloorBytesPerSec?: number
  /** The cluster secret every process and the weights check use. @default a fresh one in `dir` */
  swarmKeyFile?: string
  /** Working directory (kept); default a temporary one, removed afterwards. */
  dir?: string
  /** Commits before the first fault. @default 10 */
  warmupCommits?: number
  log?: (line: string) => void
  /** Aborting kills every process of the fleet and ends the run with an error. */
  signal?: AbortSignal
}

const cliArgs = (m: Partial<ModelConfig>, t: Partial<TrainConfig>): string[] => {
  const out: string[] = []
  const put = (flag: string, v: number | undefined): void => { if (v != null) out.push(`--${flag}`, String(v)) }
  put('d-model', m.dModel); put('heads', m.nHeads); put('blocks', m.nBlocks); put('seq-len', m.seqLen)
  put('microbatches', t.microbatches); put('microbatch-size', t.microbatchSize); put('lr', t.lr); put('seed', m.initSeed)
  return out
}

const median = (xs: number[], fallback: number): number => {
  if (xs.length === 0) return fallback
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { t = setTimeout(() => { reject(new ChaosFleetError(`${what} took longer than ${ms} ms`)) }, ms) })])
  } finally { clearTimeout(t) }
}

/** The bounds a run is judged by (printed with the results). */
export function chaosBounds (o: ChaosOptions): ChaosBounds {
  const stages = o.stages ?? 4
  const model = resolveModelConfig({ dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16, ...o.model })
  const bytes = Math.max(...Array.from({ length: stages }, (_, s) => countParams(stageSpecs(model, stageLayout(model, stages, s))))) * 4 * 3
  return {
    stages,
    checkpointEvery: o.checkpointEvery ?? 10,
    detectionMs: o.detectionMs ?? Math.max(10_000, 1.5 * (o.heartbeatTimeoutMs ?? 6000)),
    transferMs: Math.max(500, Math.ceil(bytes / (o.transferFloorBytesPerSec ?? 20e6) * 1000)),
    boundMs: o.boundMs ?? 15_000,
    resumeGraceMs: o.resumeGraceMs ?? 15_000,
    strategy: o.strategy ?? 'checkfree',
    replicas: o.replicas ?? 1
  }
}

export async function runChaos (o: ChaosOptions): Promise<ChaosHistory> {
  const bounds = chaosBounds(o)
  const { stages } = bounds
  const spares = o.spares ?? 2
  const replicas = o.replicas ?? 1
  if (!Number.isInteger(replicas) || replicas < 1) throw new ChaosConfigError(`replicas must be a whole number >= 1, got ${replicas}`)
  const durationMs = o.durationMs ?? 60_000
  const everyMs = o.faultEveryMs ?? 10_000
  if (spares < 0 || !Number.isInteger(spares)) throw new ChaosConfigError(`spares must be a whole number, got ${spares}`)
  const schedule = o.schedule ?? makeSchedule({ seed: o.seed, durationMs, everyMs, stages, replicas, kinds: o.kinds })
  const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16, ...o.model }
  const train = { microbatches: Math.max(2, replicas), microbatchSize: 4, ...o.train }
  if (replicas > train.microbatches) throw new ChaosConfigError(`replicas (${replicas}) must be at most the microbatches per iteration (${train.microbatches})`)
  resolveTrainConfig({ ...train, stages }, resolveModelConfig(model)) // bad settings fail here, before any process starts
  const log = o.log ?? (() => {})
  // a kept dir must be fresh: a previous run's coordinator state belongs to another cluster, and the
  // restarted coordinator would refuse it mid-run
  if (o.dir != null && existsSync(o.dir) && readdirSync(o.dir).length > 0) throw new ChaosConfigError(`--dir ${o.dir} is not empty (a previous run's files?): give a new or empty directory`)
  const dir = o.dir ?? await mkdtemp(join(tmpdir(), 'spotpipe-chaos-'))
  // a private cluster, as every cluster is by default: a fresh secret unless one is given
  const swarmKeyFile = o.swarmKeyFile ?? (await createClusterSecret(dir)).access.swarmKeyFile
  const fleet = new Fleet({
    dir,
    clusterId: `chaos-${o.seed}-${process.pid}`,
    stages,
    checkpointEvery: bounds.checkpointEvery,
    modelArgs: cliArgs(model, train),
    coordinatorArgs: ['--strategy', bounds.strategy, '--heartbeat-timeout', String(o.heartbeatTimeoutMs ?? 6000), ...(replicas > 1 ? ['--replicas', String(replicas)] : [])],
    swarmKeyFile
  })
  const tail = new EventTail(fleet.coordinatorEventsFile)
  const state = new StateWatcher(fleet.stateDir)
  const h: ChaosHistory = {
    seed: o.seed, bounds, schedule, startedAt: Date.now(), chaosStart: 0, chaosEnd: 0, settledAt: 0, endedAt: 0,
    events: tail.events, persistedRecoveries: [], processes: [], faults: [], installs: [], assignments: state.snapshots,
    deadTimes: [], coordinatorRestarts: [], weights: [], skipped: [], ...(replicas > 1 ? { perturbations: [] } : {})
  }
  const logInstalls = new Map<FleetProcess, StageInstall[]>()
  fleet.on('line', (p: FleetProcess, stream: string, line: string) => {
    if (p.record.role !== 'peer' || stream !== 'stderr') return
    const i = parseInstallLine(line, p.record.peerId ?? '', Date.now())
    if (i != null) logInstalls.set(p, [...(logInstalls.get(p) ?? []), i])
    const drifted = h.perturbations != null ? parsePerturbLine(line, p.record.peerId ?? '', Date.now()) : undefined
    if (drifted != null) {
      h.perturbations?.push(drifted)
      log(`    [+${(elapsed() / 1000).toFixed(1)} s] ${p.record.name}: drift landed on stage ${drifted.stage} replica ${drifted.replica} after iteration ${drifted.iteration}`)
    }
  })
  // the coordinator's own account, interleaved with the faults in the log
  tail.on('event', (e: CoordinatorEvent) => {
    const at = `[+${(elapsed() / 1000).toFixed(1)} s]`
    if (e.type === 'recovery') log(`    ${at} coordinator: stage ${String(e.stage)} recovered by ${String(e.rung)} (${String(e.cause)}), epoch ${String(e.epoch)}, iteration ${String(e.iteration)}`)
    else if (e.type === 'recovery-failed' || e.type === 'divergence' || e.type === 'error') log(`    ${at} coordinator ${e.type}: ${JSON.stringify(e).slice(0, 300)}`)
    else if (e.type === 'checkpoint' && e.outcome === 'abandoned') log(`    ${at} coordinator: checkpoint ${String(e.iteration)} abandoned: ${String(e.reason).slice(0, 160)}`)
    else if (e.type === 'checkpoint' && e.outcome === 'partial') log(`    ${at} coordinator: checkpoint ${String(e.iteration)} partial, stages ${JSON.stringify(e.written)} of ${String(e.stages)}: ${String(e.reason).slice(0, 160)}`)
    else if (e.type === 'start' && h.chaosStart > 0) log(`    ${at} coordinator started${e.restored === true ? `, resuming at iteration ${String(e.iteration)}` : ''}`)
  })
  const episodes = new Set<Promise<void>>()
  const track = (p: Promise<void>): void => {
    const q = p.catch(err => { log(`    harness episode failed: ${(err as Error).message}`) }).finally(() => { episodes.delete(q) })
    episodes.add(q)
  }
  const elapsed = (): number => h.chaosStart === 0 ? 0 : Date.now() - h.chaosStart
  const iterationMs = (): number => median(tail.events.filter(e => e.type === 'iteration').slice(-20).map(e => e.ms as number), 300)
  const peerStartMs = (): number => median(fleet.peers.filter(p => p.record.readyAt != null).map(p => (p.record.readyAt as number) - p.record.startedAt), 8000)
  const ctx: ActionContext & PointContext = {
    fleet, state, tail, history: h, stages, replicas, fleetSize: stages * replicas + spares, checkpointEvery: bounds.checkpointEvery,
    medianIterationMs: iterationMs, medianPeerStartMs: peerStartMs, track, log, elapsed
  }

  // a process that exits on its own is restarted as systemd would (its exit is counted by the invariants)
  const restarts = new Map<string, number>()
  fleet.on('exit', (p: FleetProcess) => {
    if (fleet.shuttingDown || p.record.harnessSignal != null) return
    const name = fleet.identityName(p)
    const n = (restarts.get(name) ?? 0) + 1
    restarts.set(name, n)
    log(`    ${p.record.name} exited on its own (${p.record.exitCode ?? p.record.exitSignal ?? '?'})${p.record.readyAt == null ? ' before it was ready' : ''}: ${p.record.stderrTail.slice(-2).join(' | ')}`)
    if (n > 20) { log(`    ${name} exited ${n} times: not restarted again`); return }
    track((async () => {
      await sleep(p.record.readyAt == null ? 2000 : 1000)
      if (fleet.shuttingDown) return
      if (p.record.role === 'coordinator') {
        if (fleet.coordinator !== p) return
        const r: ChaosHistory['coordinatorRestarts'][number] = { at: Date.now(), why: 'it exited on its own' }
        h.coordinatorRestarts.push(r)
        const next = fleet.startCoordinator()
        await next.ready.catch(() => {})
        r.readyAt = next.record.readyAt
      } else if (fleet.peers.filter(x => x.alive).length < stages * replicas + spares) {
        fleet.startPeer(name, p.record.env ?? {})
      }
    })())
  })

  // fewer running peers than stages: the run must wait for the fleet, not a stall of the cluster's making
  let short: DeadTime | undefined
  const shortfall = setInterval(() => {
    if (h.chaosStart === 0) return
    const running = fleet.peers.filter(p => p.isReady && !p.stopped).length
    const now = Date.now()
    if (running >= stages) { short = undefined; return }
    if (short != null) short.to = now
    else { short = { from: now, to: now, why: `fleet short of peers (${running} running)` }; h.deadTimes.push(short) }
  }, 250)
  /**
   * With replicas, every serving replica of every stage is pulled, with the coordinator held by
   * SIGSTOP meanwhile: no commit moves one replica on while another is being read, so they must
   * agree on the iteration and the bytes. Tried again (a commit was still on its way to some) while
   * a stage's replicas served different iterations.
   */
  const checkReplicaWeights = async (): Promise<ChaosHistory['weights']> => {
    let out: ChaosHistory['weights'] = []
    for (let attempt = 1; attempt <= 3; attempt++) {
      const c = fleet.coordinator
      const held = c != null && fleet.signal(c, 'SIGSTOP')
      try {
        await sleep(1000)
        const persisted = await state.read()
        out = await checkWeights({
          holders: persisted?.holders ?? [],
          replicas: Array.from({ length: stages }, (_, s) => servingOf(persisted, s)),
          addrOf: id => fleet.byPeerId(id)?.record.addr,
          swarmKeyFile
        })
      } finally {
        if (held && c != null) fleet.signal(c, 'SIGCONT')
      }
      const split = Array.from({ length: stages }, (_, s) => new Set(out.filter(w => w.stage === s && w.ok).map(w => w.iteration))).filter(x => x.size > 1).length
      if (split === 0) break
      log(`    weights check: ${split} stage(s) whose replicas served different iterations (attempt ${attempt})`)
      await sleep(2000)
    }
    return out
  }
  const killOnExit = (): void => { fleet.killNow() }
  process.once('exit', killOnExit)
  // an abort ends the run at once: every process is killed, and the waits below run out
  o.signal?.addEventListener('abort', killOnExit, { once: true })
  try {
    tail.start()
    state.start()
    const coordinator = fleet.startCoordinator()
    await within(coordinator.ready, 60_000, 'the coordinator start')
    log(`coordinator ${fleet.coordinatorAddr ?? '?'} (state in ${fleet.stateDir})`)
    // the stage peers first, the spares once training runs: seven processes starting at once on a
    // small machine starve each other's heartbeats before the first commit
    const first = Array.from({ length: stages * replicas }, () => fleet.startPeer(fleet.newIdentity()))
    await within(Promise.all(first.map(async p => { await p.ready })), 180_000, `starting ${first.length} peers`)
    const firstCommit = await tail.next(e => e.type === 'iteration', 180_000)
    if (firstCommit == null) throw new ChaosFleetError(`no iteration committed within 180 s of the fleet starting: ${fleet.coordinator?.record.stderrTail.slice(-3).join(' | ') ?? ''}`)
    h.firstCommitAt = firstCommit.at
    const later = Array.from({ length: spares }, () => fleet.startPeer(fleet.newIdentity()))
    await within(Promise.all(later.map(async p => { await p.ready })), 180_000, `starting ${later.length} spares`)
    for (let i = 1; i < (o.warmupCommits ?? 10); i++) await tail.next(e => e.type === 'iteration', 60_000)
    log(`fleet up: ${stages} stages${replicas > 1 ? ` x ${replicas} replicas` : ''} + ${spares} spares; median iteration ${iterationMs().toFixed(0)} ms; median peer start ${(peerStartMs() / 1000).toFixed(1)} s`)
    h.chaosStart = Date.now()
    // a stalled cluster reaches no point: the fault fires anyway, so faults keep coming
    const pointTimeout = Math.min(everyMs / 2, 5000)
    for (const item of schedule) {
      o.signal?.throwIfAborted()
      await sleep(h.chaosStart + item.atMs - Date.now())
      log(`[+${(elapsed() / 1000).toFixed(1)} s] #${item.index} ${item.mode}: ${describeItem(item)}`)
      const via = await reachIterationPoint(ctx, item.point, pointTimeout)
      if (item.mode === 'during-recovery') {
        const armed = armRecoveryPoint(ctx, item.recoveryPoint ?? 'transfer', 12_000)
        const a = await applyFault(ctx, item.index, item.faults[0], via)
        if (a == null) continue
        const via2 = await armed
        await applyFault(ctx, item.index, item.faults[1], via2, a.stage)
      } else {
        // nonfinite restarts a spare first (seconds): it runs in the background like an episode
        const now = item.faults.filter(f => f.kind !== 'nonfinite')
        for (const f of item.faults.filter(f => f.kind === 'nonfinite')) track(applyFault(ctx, item.index, f, via).then(() => {}))
        await Promise.all(now.map(async f => await applyFault(ctx, item.index, f, via)))
      }
    }
    await sleep(h.chaosStart + durationMs - Date.now())
    h.chaosEnd = Date.now()
    log(`[+${(elapsed() / 1000).toFixed(1)} s] faults over; settling`)
    await within(Promise.all([...episodes]), 120_000, 'the last faults\' episodes').catch(err => { log(`    ${(err as Error).message}`) })
    // one commit after everything is back shows the cluster recovered; its deadline is one stall allowance
    const allowance = bounds.boundMs + bounds.detectionMs + bounds.transferMs + bounds.resumeGraceMs
    const settled = await tail.next(e => e.type === 'iteration', allowance)
    h.settledAt = Date.now()
    log(settled != null ? `settled: iteration ${String(settled.iteration)} committed` : `NOT settled: no commit within ${allowance} ms after the last fault`)
    h.weights = replicas > 1 ? await checkReplicaWeights() : await checkWeights({
      holders: (await state.read())?.holders ?? [],
      addrOf: id => fleet.byPeerId(id)?.record.addr,
      swarmKeyFile
    })
    h.weightsCheckedAt = Date.now()
  } finally {
    clearInterval(shortfall)
    state.stop()
    await fleet.shutdown()
    await tail.stop()
    process.off('exit', killOnExit)
    o.signal?.removeEventListener('abort', killOnExit)
    h.endedAt = Date.now()
    if (h.chaosEnd === 0) h.chaosEnd = h.endedAt
    if (h.settledAt === 0) h.settledAt = h.endedAt
  }
  h.processes = fleet.processes.map(p => p.record)
  h.persistedRecoveries = (await readPersisted(fleet.stateDir))?.recoveries ?? []
  for (const p of fleet.peers) {
    const fromEvents = (await readEventsFile(p.record.eventsFile)).map(e => installFromEvent(e, p.record.peerId ?? '')).filter((x): x is StageInstall => x != null)
    // a peer that emits stage events is read from them; today's peers only log
    h.installs.push(...(fromEvents.length > 0 ? fromEvents : logInstalls.get(p) ?? []))
  }
  h.installs.sort((a, b) => a.at - b.at)
  if (o.dir == null) await rm(dir, { recursive: true, force: true })
  return h
}

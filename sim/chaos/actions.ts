/**
 * Carrying out one fault on the fleet: resolve its target (the holder of a stage in the persisted
 * assignment, a donor next to the first fault's stage, the spare the coordinator picks next, the
 * coordinator), send the signals, and run its episode in the background (SIGCONT after a pause, the
 * spot fleet's top-up after a kill, the coordinator's restart). Every fault is recorded as an
 * AppliedFault; the harness's own dead time (coordinator paused or down) as DeadTime.
 */
import type { Fleet, FleetProcess } from './fleet.js'
import type { AppliedFault, ChaosHistory } from './history.js'
import type { Fault, TopUp } from './faults.js'
import { describeFault } from './faults.js'
import { assignedPeers, servingOf, type StateWatcher } from './observe.js'
import { sleep } from './points.js'

export interface ActionContext {
  fleet: Fleet
  state: StateWatcher
  history: Pick<ChaosHistory, 'faults' | 'deadTimes' | 'coordinatorRestarts' | 'skipped' | 'perturbations'>
  stages: number
  /** Peers per stage the coordinator aims for. @default 1 */
  replicas?: number
  /** Peer processes the fleet keeps (stages x replicas + spares): a top-up never goes beyond it. */
  fleetSize: number
  medianIterationMs: () => number
  /** Median ms from a peer's start to its ready line, measured so far. */
  medianPeerStartMs: () => number
  /** Background work a fault leaves running (pauses, top-ups, restarts); awaited before the run settles. */
  track: (p: Promise<void>) => void
  log: (line: string) => void
  /** ms since the chaos phase started, for the log. */
  elapsed: () => number
}

interface Resolved {
  proc?: FleetProcess
  coordinator?: FleetProcess
  /** The stage the target holds, if any. */
  stage?: number
  /** With replicas: the stage's serving replicas when it was resolved, and the target's index among them. */
  stageReplicas?: string[]
  replica?: number
  note?: string
}

/** Ready, running, and not already on its way out (a process the harness signalled is nobody's target again). */
const usable = (p: FleetProcess | undefined): p is FleetProcess => p != null && p.isReady && !p.stopped && p.record.harnessSignal == null
const short = (id: string | undefined): string => id?.slice(-8) ?? '?'

/**
 * A peer carrying a drift plant that has not landed yet, while its due iteration is still ahead (or
 * just behind): later faults leave it alone, so the plant gets its chance (in the first soaks every
 * planted peer was killed by another fault before its iteration came).
 */
function planted (ctx: ActionContext, p: FleetProcess): boolean {
  const m = /^\d+:(\d+):\d+$/.exec(p.record.env?.SPOTPIPE_FAULT_PERTURB ?? '')
  if (m == null) return false
  if ((ctx.history.perturbations ?? []).some(x => x.peerId === p.record.peerId && x.at >= p.record.startedAt)) return false
  return (ctx.state.latest?.committedIteration ?? 0) <= Number(m[1]) + 2
}

async function resolve (ctx: ActionContext, f: Fault, baseStage: number | undefined): Promise<Resolved | string> {
  const t = f.target
  if (t.role === 'coordinator') {
    const c = ctx.fleet.coordinator
    return usable(c) ? { coordinator: c } : 'the coordinator is down or paused already'
  }
  const view = await ctx.state.read()
  const holders = view?.holders ?? []
  const assigned = view != null ? assignedPeers(view) : new Set(holders)
  if (t.role === 'spare') {
    // the coordinator hands a lost stage (or a replica join) to the lowest peer id among its live spares
    const spares = ctx.fleet.peers.filter(p => usable(p) && !planted(ctx, p) && !assigned.has(p.record.peerId ?? '')).sort((a, b) => (a.record.peerId ?? '') < (b.record.peerId ?? '') ? -1 : 1)
    return spares[0] != null ? { proc: spares[0] } : 'no live spare'
  }
  let want = t.role === 'stage' ? t.stage : (baseStage ?? 0) + t.offset
  if (want < 0 || want >= ctx.stages) want = (baseStage ?? 0) - (t.role === 'neighbour' ? t.offset : 0)
  const replicated = (ctx.replicas ?? 1) > 1
  for (let k = 0; k < ctx.stages; k++) {
    const s = (want + k) % ctx.stages
    // the serving replicas of the stage (with one replica per stage, its holder), the asked-for one first
    const serving = replicated ? servingOf(view, s) : [holders[s] ?? '']
    // a whole-stage kill takes every replica: not a stage where a drift plant waits for its chance
    if (f.kind === 'kill-stage' && serving.some(id => { const q = ctx.fleet.byPeerId(id); return q != null && planted(ctx, q) })) continue
    const ask = t.role === 'stage' && t.replica != null && serving.length > 0 ? t.replica % serving.length : 0
    for (let j = 0; j < Math.max(1, serving.length); j++) {
      const idx = (ask + j) % Math.max(1, serving.length)
      const p = ctx.fleet.byPeerId(serving[idx] ?? '')
      if (!usable(p) || planted(ctx, p)) continue
      const note = k !== 0 ? `the ${replicated ? 'replicas' : 'holder'} of stage ${want} ${replicated ? 'were' : 'was'} not usable: hit stage ${s}` : j !== 0 ? `replica ${ask} of stage ${s} was not usable: hit replica ${idx}` : undefined
      return { proc: p, stage: s, note, ...(replicated ? { stageReplicas: serving, replica: idx } : {}) }
    }
  }
  return 'no stage holder is running'
}

/** Starts the fleet's replacement for `gone` once it has exited, as a spot fleet would. */
function topUp (ctx: ActionContext, gone: FleetProcess, how: TopUp, env: Record<string, string> = {}): Promise<FleetProcess | undefined> {
  return (async () => {
    await gone.exited
    await sleep(how.delayMs)
    if (ctx.fleet.shuttingDown) return undefined
    const alive = ctx.fleet.peers.filter(p => p.alive).length
    if (alive >= ctx.fleetSize) {
      ctx.log(`    fleet: ${gone.record.name} not replaced, ${alive} peers are running already`)
      return undefined
    }
    const name = how.mode === 'restart' ? ctx.fleet.identityName(gone) : ctx.fleet.newIdentity()
    const p = ctx.fleet.startPeer(name, env)
    ctx.log(`    fleet: ${how.mode === 'restart' ? 'restarted' : 'replaced'} ${gone.record.name} -> ${p.record.name}`)
    return p
  })()
}

/** A peer hands its stage over after SIGTERM and exits within 30 s (node/peer.ts depart()); past this it is killed. */
const TERM_GRACE_MS = 45_000

/** After a SIGTERM to `p` (fault `a`): wait for it to leave (killing it past TERM_GRACE_MS), then the fleet tops up. */
async function departAndTopUp (ctx: ActionContext, p: FleetProcess, a: AppliedFault, how: TopUp = { mode: 'restart', delayMs: 1000 }): Promise<void> {
  const exited = await Promise.race([p.exited.then(() => true), sleep(TERM_GRACE_MS).then(() => false)])
  if (!exited) { a.notes.push(`still running ${TERM_GRACE_MS / 1000} s after SIGTERM: killed`); ctx.fleet.signal(p, 'SIGKILL') }
  await topUp(ctx, p, how)
  a.endAt = Date.now()
}

function record (ctx: ActionContext, item: number, f: Fault, via: string, r: Resolved, removes: boolean): AppliedFault {
  const p = r.proc
  const a: AppliedFault = {
    item,
    kind: f.kind,
    at: Date.now(),
    target: r.coordinator != null ? 'coordinator' : p?.record.name ?? '?',
    ...(p?.record.peerId != null ? { peerId: p.record.peerId } : {}),
    ...(r.stage != null ? { stage: r.stage } : {}),
    ...(removes && r.stage != null ? { removedStage: r.stage } : {}),
    ...(r.stageReplicas != null ? { stageReplicas: r.stageReplicas, replica: r.replica } : {}),
    via,
    notes: r.note != null ? [r.note] : []
  }
  ctx.history.faults.push(a)
  const where = r.coordinator != null ? 'coordinator' : `${a.target} (${short(a.peerId)}${r.stage != null ? `, stage ${r.stage}${r.replica != null ? ` replica ${r.replica} of ${r.stageReplicas?.length ?? '?'}` : ''}` : ', spare'})`
  ctx.log(`[+${(ctx.elapsed() / 1000).toFixed(1)} s] #${item} ${describeFault(f)} -> ${where} via ${via}${r.note != null ? `; ${r.note}` : ''}`)
  return a
}

/**
 * Applies `f` (part of schedule item `item`, reached `via`); `baseStage` is the stage of the pair's
 * first fault, for a neighbour target. Returns the fault as recorded, or undefined when it could not
 * be applied (recorded in `skipped`).
 */
export async function applyFault (ctx: ActionContext, item: number, f: Fault, via: string, baseStage?: number): Promise<AppliedFault | undefined> {
  // a non-finite step (or a drift) is planted on the spare that will take the stage over
  const r = await resolve(ctx, f.kind === 'nonfinite' || f.kind === 'drift' ? { ...f, target: { role: 'spare' } } : f, baseStage)
  if (typeof r === 'string') {
    ctx.history.skipped.push({ item, why: `${f.kind}: ${r}` })
    ctx.log(`[+${(ctx.elapsed() / 1000).toFixed(1)} s] #${item} ${describeFault(f)}: skipped, ${r}`)
    return undefined
  }
  const { fleet } = ctx
  const p = r.proc
  const c = r.coordinator
  switch (f.kind) {
    case 'kill':
    case 'restart-same-identity':
    case 'replace': {
      if (p == null) return undefined
      const a = record(ctx, item, f, via, r, true)
      fleet.signal(p, 'SIGKILL')
      ctx.track(topUp(ctx, p, f.topUp ?? { mode: f.kind === 'replace' ? 'replace' : 'restart', delayMs: 1000 }).then(() => { a.endAt = Date.now() }))
      return a
    }
    case 'term': {
      if (p == null) return undefined
      const a = record(ctx, item, f, via, r, true)
      fleet.signal(p, 'SIGTERM')
      ctx.track(departAndTopUp(ctx, p, a, f.topUp))
      return a
    }
    case 'stop-cont': {
      if (p == null) return undefined
      const a = record(ctx, item, f, via, r, false)
      fleet.signal(p, 'SIGSTOP')
      ctx.track((async () => {
        await sleep(f.durationMs ?? 1000)
        fleet.signal(p, 'SIGCONT')
        a.endAt = Date.now()
      })())
      return a
    }
    case 'slow-peer': {
      if (p == null) return undefined
      const a = record(ctx, item, f, via, r, false)
      const period = f.periodMs ?? 500
      const duty = f.duty ?? 0.5
      ctx.track((async () => {
        const end = Date.now() + (f.durationMs ?? 5000)
        while (Date.now() < end && p.alive && !fleet.shuttingDown) {
          fleet.signal(p, 'SIGSTOP')
          await sleep(period * duty)
          fleet.signal(p, 'SIGCONT')
          await sleep(period * (1 - duty))
        }
        a.endAt = Date.now()
      })())
      return a
    }
    case 'coordinator-pause': {
      if (c == null) return undefined
      const a = record(ctx, item, f, via, r, false)
      const d = f.durationMs ?? 5000
      fleet.signal(c, 'SIGSTOP')
      ctx.history.deadTimes.push({ from: a.at, to: a.at + d, why: 'coordinator paused' })
      ctx.track((async () => {
        await sleep(d)
        fleet.signal(c, 'SIGCONT')
        a.endAt = Date.now()
      })())
      return a
    }
    case 'coordinator-kill-restart': {
      if (c == null) return undefined
      const a = record(ctx, item, f, via, r, false)
      fleet.signal(c, 'SIGKILL')
      ctx.track((async () => {
        await c.exited
        await sleep(f.durationMs ?? 1000)
        if (fleet.shuttingDown) return
        const restart: ChaosHistory['coordinatorRestarts'][number] = { at: Date.now(), why: `fault #${item}` }
        ctx.history.coordinatorRestarts.push(restart)
        const next = fleet.startCoordinator()
        await next.ready.catch(() => {})
        restart.readyAt = next.record.readyAt
        a.endAt = Date.now()
        ctx.history.deadTimes.push({ from: a.at, to: restart.readyAt ?? a.endAt, why: 'coordinator down' })
        ctx.log(`    coordinator back after ${((a.endAt - a.at) / 1000).toFixed(1)} s${restart.readyAt == null ? ' (NOT ready: it exited)' : ''}`)
      })())
      return a
    }
    case 'nonfinite':
      return await nonfinite(ctx, item, f, via, r)
    case 'kill-stage':
      return killStage(ctx, item, f, via, r)
    case 'drift':
      return await drift(ctx, item, f, via, r)
  }
}

/**
 * Every serving replica of the target's stage SIGKILLed at once: a whole-stage loss (with one
 * replica per stage, a kill). Each kill is recorded as a fault of its own (kind kill-stage), every
 * one topped up as after a kill. Returns the first.
 */
function killStage (ctx: ActionContext, item: number, f: Fault, via: string, r: Resolved): AppliedFault | undefined {
  if (r.proc == null) return undefined
  const victims = (r.stageReplicas ?? [r.proc.record.peerId ?? '']).map(id => ctx.fleet.byPeerId(id)).filter(usable)
  if (!victims.includes(r.proc)) victims.unshift(r.proc)
  let first: AppliedFault | undefined
  for (const p of victims) {
    const a = record(ctx, item, f, via, { ...r, proc: p, replica: r.stageReplicas?.indexOf(p.record.peerId ?? '') }, true)
    a.notes.push(`${victims.length} of ${r.stageReplicas?.length ?? 1} serving replicas of stage ${r.stage ?? '?'} killed at once`)
    first ??= a
  }
  for (const p of victims) ctx.fleet.signal(p, 'SIGKILL')
  for (const p of victims) ctx.track(topUp(ctx, p, f.topUp ?? { mode: 'restart', delayMs: 1000 }).then(() => { if (first != null) first.endAt = Date.now() }))
  return first
}

/** Expected time from a peer's join plan to it serving: its pull, and the commit it catches up at. */
const JOIN_ESTIMATE_MS = 10_000

/**
 * A replica that drifts, on stage `s`: the spare the coordinator picks next is restarted (same
 * identity) with SPOTPIPE_FAULT_PERTURB=s:I:k, then one serving replica of `s` is SIGKILLed so that
 * spare joins `s` in its place, as its last serving replica k (a join is appended). I is the
 * committed iteration at the restart plus the iterations the restart and the join take at the
 * median pace, plus `iterationsAhead`. The recorded fault is the kill (it takes a replica away);
 * whether the drift landed is read from the spare's log line (parsePerturbLine), and the
 * coordinator must then drop the drifted replica (drift-mended) and the replicas end identical.
 */
async function drift (ctx: ActionContext, item: number, f: Fault, via: string, spare: Resolved): Promise<AppliedFault | undefined> {
  const q = spare.proc
  const t = f.target
  if (q == null || t.role !== 'stage') return undefined
  const s = t.stage
  const view = await ctx.state.read()
  const serving = servingOf(view, s)
  if (serving.length < 2) {
    ctx.history.skipped.push({ item, why: `drift: stage ${s} has ${serving.length} serving replica(s), no other to drift from` })
    return undefined
  }
  const iterMs = Math.max(50, ctx.medianIterationMs())
  const ahead = Math.ceil((ctx.medianPeerStartMs() + 1500 + JOIN_ESTIMATE_MS) / iterMs) + (f.iterationsAhead ?? 3)
  const due = (view?.committedIteration ?? 0) + ahead
  const env = { SPOTPIPE_FAULT_PERTURB: `${s}:${due}:${serving.length - 1}` }
  ctx.log(`[+${(ctx.elapsed() / 1000).toFixed(1)} s] #${item} drift: restarting spare ${q.record.name} (${short(q.record.peerId)}) with SPOTPIPE_FAULT_PERTURB=${env.SPOTPIPE_FAULT_PERTURB} (${ahead} iterations ahead)`)
  ctx.fleet.signal(q, 'SIGKILL')
  const poisoned = await topUp(ctx, q, { mode: 'restart', delayMs: 200 }, env)
  if (poisoned == null) return undefined
  await poisoned.ready.catch(() => {})
  if (!poisoned.isReady) {
    ctx.history.skipped.push({ item, why: 'drift: the restarted spare never got ready' })
    return undefined
  }
  await sleep(1500) // heard by the coordinator: it is the lowest-id spare again
  const r = await resolve(ctx, { ...f, target: { role: 'stage', stage: s, replica: t.replica } }, undefined)
  if (typeof r === 'string' || r.proc == null || r.stage !== s) {
    ctx.history.skipped.push({ item, why: `drift: ${typeof r === 'string' ? r : `no usable replica of stage ${s}`}` })
    return undefined
  }
  const a = record(ctx, item, f, via, r, true)
  a.notes.push(`drift due after iteration ${due} on ${poisoned.record.name} (${short(poisoned.record.peerId)}) as replica ${serving.length - 1} of stage ${s}; replica ${r.replica ?? '?'} of stage ${s} killed so it joins there`)
  ctx.fleet.signal(r.proc, 'SIGKILL')
  ctx.track(topUp(ctx, r.proc, f.topUp ?? { mode: 'restart', delayMs: 1000 }).then(() => { a.endAt = Date.now() }))
  return a
}

/**
 * A non-finite step on stage `s`: the spare the coordinator picks next is restarted (same identity)
 * with SPOTPIPE_FAULT_NONFINITE=s:I, I far enough ahead for it to be up, then the holder of `s`
 * gets SIGTERM so that stage is handed to that spare. The recorded fault is the SIGTERM (it takes
 * the stage away); the notes say where and when the non-finite step is due.
 */
async function nonfinite (ctx: ActionContext, item: number, f: Fault, via: string, spare: Resolved): Promise<AppliedFault | undefined> {
  const q = spare.proc
  const t = f.target
  if (q == null || t.role !== 'stage') return undefined
  const s = t.stage
  // relative: the n-th step it prepares on that stage (an absolute iteration, planned before the
  // restart and the handover, was usually passed by the time another fault had moved the stage on)
  const n = f.iterationsAhead ?? 3
  const env = { SPOTPIPE_FAULT_NONFINITE: `${s}:+${n}` }
  ctx.log(`[+${(ctx.elapsed() / 1000).toFixed(1)} s] #${item} nonfinite: restarting spare ${q.record.name} (${short(q.record.peerId)}) with ${env.SPOTPIPE_FAULT_NONFINITE}`)
  ctx.fleet.signal(q, 'SIGKILL')
  const poisoned = await topUp(ctx, q, { mode: 'restart', delayMs: 200 }, env)
  if (poisoned == null) return undefined
  await poisoned.ready.catch(() => {})
  if (!poisoned.isReady) {
    ctx.history.skipped.push({ item, why: 'nonfinite: the restarted spare never got ready' })
    return undefined
  }
  await sleep(1500) // heard by the coordinator: it is the lowest-id spare again
  const r = await resolve(ctx, { ...f, target: { role: 'stage', stage: s } }, undefined)
  if (typeof r === 'string' || r.proc == null) {
    ctx.history.skipped.push({ item, why: `nonfinite: ${typeof r === 'string' ? r : 'no holder'}` })
    return undefined
  }
  const a = record(ctx, item, f, via, r, true)
  a.notes.push(`non-finite step due at its step ${n} on stage ${s} on ${poisoned.record.name} (${short(poisoned.record.peerId)}); holder of stage ${r.stage ?? s} sent SIGTERM to hand it over`)
  ctx.fleet.signal(r.proc, 'SIGTERM')
  ctx.track(departAndTopUp(ctx, r.proc, a, f.topUp))
  return a
}

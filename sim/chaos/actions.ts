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
import type { StateWatcher } from './observe.js'
import { sleep } from './points.js'

export interface ActionContext {
  fleet: Fleet
  state: StateWatcher
  history: Pick<ChaosHistory, 'faults' | 'deadTimes' | 'coordinatorRestarts' | 'skipped'>
  stages: number
  /** Peer processes the fleet keeps (stages + spares): a top-up never goes beyond it. */
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
  note?: string
}

/** Ready, running, and not already on its way out (a process the harness signalled is nobody's target again). */
const usable = (p: FleetProcess | undefined): p is FleetProcess => p != null && p.isReady && !p.stopped && p.record.harnessSignal == null
const short = (id: string | undefined): string => id?.slice(-8) ?? '?'

async function resolve (ctx: ActionContext, f: Fault, baseStage: number | undefined): Promise<Resolved | string> {
  const t = f.target
  if (t.role === 'coordinator') {
    const c = ctx.fleet.coordinator
    return usable(c) ? { coordinator: c } : 'the coordinator is down or paused already'
  }
  const holders = (await ctx.state.read())?.holders ?? []
  if (t.role === 'spare') {
    // the coordinator hands a lost stage to the lowest peer id among its live spares
    const spares = ctx.fleet.peers.filter(p => usable(p) && !holders.includes(p.record.peerId ?? '')).sort((a, b) => (a.record.peerId ?? '') < (b.record.peerId ?? '') ? -1 : 1)
    return spares[0] != null ? { proc: spares[0] } : 'no live spare'
  }
  let want = t.role === 'stage' ? t.stage : (baseStage ?? 0) + t.offset
  if (want < 0 || want >= ctx.stages) want = (baseStage ?? 0) - (t.role === 'neighbour' ? t.offset : 0)
  for (let k = 0; k < ctx.stages; k++) {
    const s = (want + k) % ctx.stages
    const p = ctx.fleet.byPeerId(holders[s] ?? '')
    if (usable(p)) return { proc: p, stage: s, note: k === 0 ? undefined : `the holder of stage ${want} was not usable: hit stage ${s}` }
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
    via,
    notes: r.note != null ? [r.note] : []
  }
  ctx.history.faults.push(a)
  const where = r.coordinator != null ? 'coordinator' : `${a.target} (${short(a.peerId)}${r.stage != null ? `, stage ${r.stage}` : ', spare'})`
  ctx.log(`[+${(ctx.elapsed() / 1000).toFixed(1)} s] #${item} ${describeFault(f)} -> ${where} via ${via}${r.note != null ? `; ${r.note}` : ''}`)
  return a
}

/**
 * Applies `f` (part of schedule item `item`, reached `via`); `baseStage` is the stage of the pair's
 * first fault, for a neighbour target. Returns the fault as recorded, or undefined when it could not
 * be applied (recorded in `skipped`).
 */
export async function applyFault (ctx: ActionContext, item: number, f: Fault, via: string, baseStage?: number): Promise<AppliedFault | undefined> {
  // a non-finite step is planted on the spare that will take the stage over
  const r = await resolve(ctx, f.kind === 'nonfinite' ? { ...f, target: { role: 'spare' } } : f, baseStage)
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
  }
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

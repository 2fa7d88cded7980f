/**
 * Reaching a named point before a fault fires. Iteration points come from the coordinator's events:
 * `begin` (or, while the coordinator emits none, its commit: it begins the next iteration at once),
 * then forward/backward a fraction of the median iteration time later, `commit` just after a commit,
 * `checkpoint-pull` just after the commit that starts a checkpoint. Recovery points come from a
 * `recovery-planned` event, or else from the log lines of today's processes: the coordinator's
 * "peer ... lost" / "announced its departure" (transfer follows at once) and a peer's "rebuilt
 * stage" (the stage is being installed), or, for a replica joining a stage, its "pulled the state
 * of iteration" (it catches up at the next commit). Each wait has a deadline; a point not reached by then
 * fires anyway and says so in `via`.
 */
import type { EventTail } from './observe.js'
import { DETECTION_LINE } from './observe.js'
import type { Fleet, FleetProcess } from './fleet.js'
import { POINT_FRACTION, type IterationPoint, type RecoveryPoint } from './faults.js'

export interface PointContext {
  tail: EventTail
  fleet: Fleet
  checkpointEvery: number
  medianIterationMs: () => number
}

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, Math.max(0, ms))) }

/** Resolves with the first fleet output line matching, or undefined after `timeoutMs`. */
async function nextLine (fleet: Fleet, match: (p: FleetProcess, stream: 'stdout' | 'stderr', line: string) => boolean, timeoutMs: number): Promise<string | undefined> {
  return await new Promise(resolve => {
    const onLine = (p: FleetProcess, stream: 'stdout' | 'stderr', line: string): void => { if (match(p, stream, line)) { cleanup(); resolve(line) } }
    const t = setTimeout(() => { cleanup(); resolve(undefined) }, timeoutMs)
    const cleanup = (): void => { clearTimeout(t); fleet.off('line', onLine) }
    fleet.on('line', onLine)
  })
}

/** Waits for `point` of an iteration; returns how it was reached. */
export async function reachIterationPoint (ctx: PointContext, point: IterationPoint, timeoutMs: number): Promise<string> {
  const { tail } = ctx
  if (point === 'commit') return (await tail.next(e => e.type === 'iteration', timeoutMs)) != null ? 'commit event' : 'timeout (no commit)'
  if (point === 'checkpoint-pull') {
    const K = ctx.checkpointEvery
    const e = await tail.next(e => e.type === 'iteration' && K > 0 && ((e.iteration as number) + 1) % K === 0, timeoutMs)
    await sleep(20)
    return e != null ? `checkpoint of iteration ${String(e.iteration)} started` : 'timeout (no checkpoint commit)'
  }
  const useBegin = tail.seen('begin')
  const e = await tail.next(x => x.type === (useBegin ? 'begin' : 'iteration'), timeoutMs)
  if (e == null) return `timeout (no ${useBegin ? 'begin' : 'commit'})`
  const via = useBegin ? 'begin event' : 'after commit (no begin events yet)'
  if (point === 'begin') return via
  const delay = POINT_FRACTION[point] * ctx.medianIterationMs()
  await sleep(delay)
  return `${via} + ${delay.toFixed(0)} ms`
}

/**
 * Arms the wait for `point` of the recovery the next fault causes: call it before applying that
 * fault, await it after.
 */
export function armRecoveryPoint (ctx: PointContext, point: RecoveryPoint, timeoutMs: number): Promise<string> {
  if (point === 'transfer') {
    return Promise.race([
      ctx.tail.next(e => e.type === 'recovery-planned', timeoutMs).then(e => e != null ? 'recovery-planned event' : undefined),
      nextLine(ctx.fleet, (p, s, l) => p.record.role === 'coordinator' && s === 'stderr' && DETECTION_LINE.test(l), timeoutMs).then(async l => {
        if (l == null) return undefined
        await sleep(30) // the plan goes out right after the decision
        return 'coordinator log: loss decided'
      })
    ]).then(via => via ?? 'timeout (no recovery seen)')
  }
  // a rebuild's install, or (with replicas) a joining replica's: its pull is done and it catches up at the next commit
  return nextLine(ctx.fleet, (p, s, l) => p.record.role === 'peer' && s === 'stderr' && /rebuilt stage \d+ by|stage \d+: pulled the state of iteration/.test(l), timeoutMs)
    .then(l => l == null ? 'timeout (no rebuild seen)' : /rebuilt stage/.test(l) ? 'peer log: stage rebuilt, installing' : 'peer log: joining replica pulled its state, catching up')
}

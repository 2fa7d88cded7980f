/**
 * Fault schedules drawn from a seed: the same seed and options give the same list of faults, points,
 * targets, durations and fleet delays (the run itself is not replayed exactly: which peer holds a
 * stage, and how long anything takes, is up to the cluster). Every `everyMs` at least one item
 * falls due; a share of them are pairs (two faults at once, or a second one during the recovery the
 * first one causes). With `replicas` above 1 the peer faults also draw which replica of a stage they
 * hit, and the replica kinds (kill-stage, drift) are drawn too; with one replica the schedule is the
 * one it was before replicas (the same draws, in the same order).
 */
import { hashKey, mulberry32, randInt } from '../../model/index.js'
import { ChaosConfigError } from './errors.js'
import {
  COORDINATOR_FAULTS, FAULT_KINDS, ITERATION_POINTS, REPLICA_FAULTS, defaultKinds, REMOVING_FAULTS, RECOVERY_POINTS,
  type Fault, type FaultKind, type FaultTarget, type ScheduleItem, type TopUp
} from './faults.js'

export interface ScheduleOptions {
  seed: number
  /** Length of the chaos phase. */
  durationMs: number
  /** At least one item falls due in every window of this length. @default 10_000 */
  everyMs?: number
  stages: number
  /** Peers per stage. @default 1 */
  replicas?: number
  /** Kinds to draw from. @default all of FAULT_KINDS with replicas, else all but REPLICA_FAULTS (defaultKinds) */
  kinds?: readonly FaultKind[]
  /** Share of items that are pairs, half at once and half during a recovery. @default 0.4 */
  pairShare?: number
}

type Rand = () => number

const between = (r: Rand, lo: number, hi: number): number => Math.round(lo + (hi - lo) * r())
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[randInt(r, xs.length)]

function topUp (r: Rand, slow: boolean): TopUp {
  return { mode: r() < 0.5 ? 'restart' : 'replace', delayMs: slow ? between(r, 500, 6000) : between(r, 200, 1500) }
}

/** A fault of `kind` on `target`, its durations and fleet behaviour drawn from `r`. */
export function drawFault (r: Rand, kind: FaultKind, target: FaultTarget): Fault {
  switch (kind) {
    case 'kill':
    case 'term':
      return { kind, target, topUp: topUp(r, true) }
    case 'restart-same-identity':
      return { kind, target, topUp: { mode: 'restart', delayMs: between(r, 200, 1500) } }
    case 'replace':
      return { kind, target, topUp: { mode: 'replace', delayMs: between(r, 200, 1500) } }
    case 'stop-cont':
      // half of them shorter than any detection, half long enough to be declared lost
      return { kind, target, durationMs: r() < 0.5 ? between(r, 300, 2000) : between(r, 4000, 15_000) }
    case 'slow-peer':
      return { kind, target, durationMs: between(r, 4000, 12_000), periodMs: between(r, 300, 1000), duty: 0.3 + 0.4 * r() }
    case 'coordinator-pause':
      return { kind, target: { role: 'coordinator' }, durationMs: between(r, 1000, 20_000) }
    case 'coordinator-kill-restart':
      return { kind, target: { role: 'coordinator' }, durationMs: between(r, 300, 5000) }
    case 'nonfinite':
      return { kind, target, iterationsAhead: between(r, 1, 5) }
    case 'kill-stage':
      return { kind, target, topUp: topUp(r, true) }
    case 'drift':
      return { kind, target, iterationsAhead: between(r, 1, 5), topUp: topUp(r, true) }
  }
}

/** A stage target; with replicas, also which of its replicas (no draw at all with one, so such schedules are unchanged). */
function stageTarget (r: Rand, stage: number, replicas: number): FaultTarget {
  return replicas > 1 ? { role: 'stage', stage, replica: randInt(r, replicas) } : { role: 'stage', stage }
}

function peerTarget (r: Rand, stages: number, replicas: number, kind: FaultKind): FaultTarget {
  if (COORDINATOR_FAULTS.includes(kind)) return { role: 'coordinator' }
  // faults that do not remove a stage sometimes hit a spare instead
  if (!REMOVING_FAULTS.includes(kind) && kind !== 'nonfinite' && kind !== 'drift' && r() < 0.2) return { role: 'spare' }
  return stageTarget(r, randInt(r, stages), replicas)
}

function drawItem (r: Rand, index: number, atMs: number, o: Required<Omit<ScheduleOptions, 'seed' | 'durationMs'>>): ScheduleItem {
  const R = o.replicas
  const kinds = o.kinds
  const removing = kinds.filter(k => REMOVING_FAULTS.includes(k))
  const u = r()
  const point = pick(r, ITERATION_POINTS)
  if (u < o.pairShare / 2 && removing.length > 0) {
    // during a recovery: the first fault takes a stage away, the second hits a donor, the peer
    // rebuilding the stage, or the coordinator, while the weights move or the stage is installed
    const firstKind = pick(r, removing)
    const first = drawFault(r, firstKind, stageTarget(r, randInt(r, o.stages), R))
    // the second hits a single peer (a donor, the rebuilding spare) or the coordinator; a whole
    // donor stage lost (kill-stage on a neighbour) is one of them
    const secondKinds = kinds.filter(k => k !== 'nonfinite' && k !== 'slow-peer' && k !== 'drift')
    const kind = pick(r, secondKinds)
    const target: FaultTarget = COORDINATOR_FAULTS.includes(kind) ? { role: 'coordinator' } : r() < 0.5 ? { role: 'neighbour', offset: r() < 0.5 ? -1 : 1 } : { role: 'spare' }
    return { index, atMs, point, mode: 'during-recovery', faults: [first, drawFault(r, kind, target)], recoveryPoint: pick(r, RECOVERY_POINTS) }
  }
  if (u < o.pairShare) {
    // two at once: two stages (adjacent half the time, which CheckFree cannot rebuild), or a stage and the coordinator
    const peerKinds = kinds.filter(k => !COORDINATOR_FAULTS.includes(k) && k !== 'nonfinite' && k !== 'drift')
    const coordKinds = kinds.filter(k => COORDINATOR_FAULTS.includes(k))
    const s = randInt(r, o.stages)
    const first = drawFault(r, pick(r, peerKinds.length > 0 ? peerKinds : kinds), stageTarget(r, s, R))
    const withCoordinator = coordKinds.length > 0 && r() < 0.25
    if (R > 1 && !withCoordinator && r() < 1 / 3) {
      // with replicas, a third of the peer pairs are two replicas of one stage at once: the stage's
      // last two (with R = 2 a whole-stage loss by two faults), or two of three
      const firstReplica = (first.target as { replica?: number }).replica ?? 0
      const second = drawFault(r, pick(r, peerKinds.length > 0 ? peerKinds : kinds), { role: 'stage', stage: s, replica: (firstReplica + 1) % R })
      return { index, atMs, point, mode: 'together', faults: [first, second] }
    }
    const other = r() < 0.5 ? (s + 1) % o.stages : (s + 1 + randInt(r, Math.max(1, o.stages - 1))) % o.stages
    const second = withCoordinator
      ? drawFault(r, pick(r, coordKinds), { role: 'coordinator' })
      : drawFault(r, pick(r, peerKinds.length > 0 ? peerKinds : kinds), stageTarget(r, other === s ? (s + 1) % o.stages : other, R))
    return { index, atMs, point, mode: 'together', faults: [first, second] }
  }
  const kind = pick(r, kinds)
  return { index, atMs, point, mode: 'single', faults: [drawFault(r, kind, peerTarget(r, o.stages, R, kind))] }
}

export function makeSchedule (opts: ScheduleOptions): ScheduleItem[] {
  const replicas = opts.replicas ?? 1
  const o = { ...opts, everyMs: opts.everyMs ?? 10_000, kinds: opts.kinds ?? defaultKinds(replicas), pairShare: opts.pairShare ?? 0.4, replicas }
  if (!Number.isFinite(o.durationMs) || o.durationMs <= 0) throw new ChaosConfigError(`durationMs must be positive, got ${o.durationMs}`)
  if (!Number.isFinite(o.everyMs) || o.everyMs < 1000) throw new ChaosConfigError(`everyMs must be at least 1000, got ${o.everyMs}`)
  if (!Number.isInteger(o.stages) || o.stages < 2) throw new ChaosConfigError(`stages must be an integer >= 2, got ${o.stages}`)
  if (!Number.isInteger(o.replicas) || o.replicas < 1) throw new ChaosConfigError(`replicas must be an integer >= 1, got ${o.replicas}`)
  if (o.kinds.length === 0) throw new ChaosConfigError('kinds must name at least one fault')
  for (const k of o.kinds) if (!FAULT_KINDS.includes(k)) throw new ChaosConfigError(`unknown fault kind "${k}" (known: ${FAULT_KINDS.join(', ')})`)
  for (const k of o.kinds) if (REPLICA_FAULTS.includes(k) && o.replicas < 2) throw new ChaosConfigError(`fault kind "${k}" needs replicas (--replicas 2 or more)`)
  const r = mulberry32(hashKey(o.seed, 0xc4a05))
  const items: ScheduleItem[] = []
  // gaps of 50-100% of everyMs: never a window of everyMs without an item falling due
  for (let at = Math.round(o.everyMs * (0.5 + 0.5 * r())); at < o.durationMs; at += Math.round(o.everyMs * (0.5 + 0.5 * r()))) {
    items.push(drawItem(r, items.length, at, { everyMs: o.everyMs, kinds: o.kinds, pairShare: o.pairShare, stages: o.stages, replicas: o.replicas }))
  }
  return items
}

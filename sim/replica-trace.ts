/**
 * Churn traces for R data-parallel replicas per stage: every peer fails on its own (the trace's
 * rate is per peer), and a stage loses its state only when its last live replica fails.
 *
 * A per-peer trace is drawn as generateTrace draws one for S x R stages (slot v is replica
 * floor(v / S) of stage v mod S) and folded in time order:
 *   - a peer already down (its replacement has not joined yet) fails no further
 *   - a failure while another replica of the stage is up is a `replica-loss`: the coordinator
 *     drops the replica, the survivors redo the iteration in flight, nothing is rebuilt
 *     (coordinator/recovery/machine.ts); the peer is down for `windowIterations` (detection, the
 *     replacement's join: an exact copy pulled while training goes on, then one commit)
 *   - a failure of the last replica up is a whole-stage loss, the `crash` or `notice` it was: the
 *     ladder rebuilds the stage; every replica of it is down for the window (the others copy the
 *     rebuilt one), and a `join` follows
 * The same seed and rate give the same folded trace; with R = 1 it is generateTrace's.
 */
import type { CostModel } from './cost-model.js'
import { SimConfigError } from './errors.js'
import { generateTrace, type GenerateTraceOptions, type Trace, type TraceEvent } from './trace.js'

export interface ReplicaTraceOptions extends Omit<GenerateTraceOptions, 'joins' | 'joinDelayS'> {
  /** Replicas per stage. */
  replicas: number
  /** Iterations a failed replica stays missing (detection + its replacement's join). */
  windowIterations: number
}

export function replicaTrace (opts: ReplicaTraceOptions): Trace {
  const R = opts.replicas
  const S = opts.stages
  if (!Number.isInteger(R) || R < 1) throw new SimConfigError(`replicas must be a positive integer, got ${String(R)}`)
  if (!Number.isInteger(opts.windowIterations) || opts.windowIterations < 1) throw new SimConfigError(`windowIterations must be a positive integer, got ${String(opts.windowIterations)}`)
  if (R === 1) return generateTrace(opts)
  const perPeer = generateTrace({ ...opts, stages: S * R, joins: false })
  return { ...perPeer, stages: S, replicas: R, events: foldReplicaEvents(perPeer.events, S, R, opts.windowIterations) }
}

/**
 * How many iterations of `iterationS` a lost replica stays missing under `cost`: detection, the
 * slowest stage's exact copy, and the commit its join catches up at (sim/replicas.ts replicaWindowS).
 */
export function replicaWindowIterations (cost: CostModel, iterationS: number): number {
  let copy = 0
  for (let s = 0; s < cost.stages; s++) copy = Math.max(copy, cost.exactCopy(s).seconds)
  return Math.ceil((cost.p.detectionS + copy) / iterationS) + 1
}

/** The folding rule of the module comment over per-peer events (slot v = replica floor(v / S) of stage v mod S). */
export function foldReplicaEvents (events: readonly TraceEvent[], stages: number, replicas: number, windowIterations: number): TraceEvent[] {
  const downUntil = Array.from({ length: stages }, () => new Array<number>(replicas).fill(0))
  const out: TraceEvent[] = []
  for (const e of events) {
    if (e.kind !== 'crash' && e.kind !== 'notice') continue
    const stage = e.stage % stages
    const slot = Math.floor(e.stage / stages)
    const d = downUntil[stage]
    if (d[slot] > e.iteration) continue
    const othersUp = d.some((until, k) => k !== slot && until <= e.iteration)
    const peer = `s${stage}.r${slot}`
    if (othersUp) {
      out.push({ iteration: e.iteration, timeS: e.timeS, stage, peer, kind: 'replica-loss' })
      d[slot] = e.iteration + windowIterations
    } else {
      out.push({ iteration: e.iteration, timeS: e.timeS, stage, peer, kind: e.kind })
      d.fill(e.iteration + windowIterations)
      out.push({ iteration: e.iteration, timeS: e.timeS, stage, peer: `${peer}+`, kind: 'join' })
    }
  }
  return out
}

/**
 * Elastic membership as one pure rule: which peer joins which stage as a new replica. The recovery
 * machine (recovery/machine.ts grow()) calls it between iterations; no I/O here, so it is
 * unit-tested directly.
 *
 *   1. a spare joins each stage below the replica target, the fewest-served first (then the lowest
 *      stage): a spare adds the most where a stage is closest to a whole-stage loss
 *   2. no spare left: when the best-served stage has at least two replicas more than the
 *      fewest-served one, one of its replicas moves there (one move at a time). The move costs a
 *      pull of the receiving stage's weights and Adam state (its donors keep training), and the
 *      giving stage runs the moved replica's microbatches on its others meanwhile; it turns, say,
 *      3 + 1 replicas into 2 + 2, so no single loss takes a stage away. A difference of one is
 *      left alone: moving would only move the risk.
 *
 * Stages with no peer (being recovered) and stages with a join in flight are left out; a joining
 * peer is never moved.
 */

export interface ReplicaJoinInput {
  /** Stage -> the peers holding it (serving and joining), in the assignment's order. */
  stages: ReadonlyArray<readonly string[]>
  /** Peers still joining a stage (they count toward its replicas but cannot move). */
  joining: ReadonlySet<string>
  /** Live peers holding no stage, in preference order. */
  spares: readonly string[]
  /** Replicas per stage the run aims for. */
  target: number
}

export interface ReplicaJoinPlan {
  stage: number
  /** The peer that joins `stage`. */
  peer: string
  /** Set when the peer moves from that stage (a rebalance), else it was a spare. */
  from?: number
}

export function planReplicaJoins (i: ReplicaJoinInput): ReplicaJoinPlan[] {
  const busy = new Set(i.stages.flatMap((ps, s) => ps.some(p => i.joining.has(p)) ? [s] : []))
  const open = i.stages.map((ps, stage) => ({ stage, n: ps.length })).filter(x => x.n > 0 && !busy.has(x.stage))
  const below = open.filter(x => x.n < i.target).sort((x, y) => x.n - y.n || x.stage - y.stage)
  const plans: ReplicaJoinPlan[] = below.slice(0, i.spares.length).map((x, k) => ({ stage: x.stage, peer: i.spares[k] }))
  if (plans.length > 0 || below.length === 0) return plans
  const low = below[0]
  const high = [...open].sort((x, y) => y.n - x.n || x.stage - y.stage)[0]
  if (high == null || high.n - low.n < 2) return []
  const movable = i.stages[high.stage].filter(p => !i.joining.has(p))
  const peer = movable[movable.length - 1]
  return peer == null ? [] : [{ stage: low.stage, peer, from: high.stage }]
}

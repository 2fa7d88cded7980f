/**
 * The route a microbatch takes through the pipeline: an ordered list of hops, each one stage running
 * some of its parts. Normally stage 0 embeds and runs its blocks, every stage runs its blocks in
 * order, and the last stage also runs the head.
 *
 * CheckFree+ (out-of-order pipelining): on odd microbatches the first two stages' blocks run in
 * swapped order, and likewise the last two, so each learns to stand in for its neighbour. The pairs
 * come from the stage count; with fewer than 4 stages the pairs would overlap, so nothing swaps.
 */
import type { Part } from './params.js'

export interface Hop {
  stage: number
  parts: Part[]
}

/** True when microbatch `mb` runs with the CheckFree+ swaps. */
export function isSwapped (stages: number, mb: number, checkfreePlus: boolean): boolean {
  return checkfreePlus && stages >= 4 && mb % 2 === 1
}

/** Order in which the stages' blocks run for microbatch `mb`. */
export function blockOrder (stages: number, mb: number, checkfreePlus: boolean): number[] {
  const order = Array.from({ length: stages }, (_, i) => i)
  if (isSwapped(stages, mb, checkfreePlus)) {
    order[0] = 1; order[1] = 0
    order[stages - 2] = stages - 1; order[stages - 1] = stages - 2
  }
  return order
}

/** The hops of microbatch `mb`; consecutive parts on the same stage merge into one hop. */
export function route (stages: number, mb: number, checkfreePlus = false): Hop[] {
  const steps: Array<{ stage: number, part: Part }> = [{ stage: 0, part: 'embed' }]
  for (const s of blockOrder(stages, mb, checkfreePlus)) steps.push({ stage: s, part: 'blocks' })
  steps.push({ stage: stages - 1, part: 'head' })
  const hops: Hop[] = []
  for (const { stage, part } of steps) {
    const last = hops[hops.length - 1]
    if (last != null && last.stage === stage) last.parts.push(part)
    else hops.push({ stage, parts: [part] })
  }
  return hops
}

/**
 * Data-parallel replicas: with R replicas per stage, replica r of every stage forms lane r, a whole
 * pipeline, and runs microbatches r, r + R, r + 2R, ... of each iteration (a static pairing; every
 * microbatch exactly once, on the same tokens and route as with one replica, so R lanes and one
 * lane train on the same global batch). Needs 1 <= R <= M: a lane without microbatches would have
 * no gradient to contribute.
 */
export function laneMicrobatches (microbatches: number, replicas: number, lane: number): number[] {
  checkReplicas(replicas, microbatches)
  if (!Number.isInteger(lane) || lane < 0 || lane >= replicas) throw new RangeError(`lane must be an integer in 0..${replicas - 1}, got ${lane}`)
  // a stage with every lane's replica: replica r runs lane r
  return replicaMicrobatches(microbatches, replicas, replicas, lane)
}

/**
 * The one check of a replica count: an integer in 1..M (the microbatches per iteration), as a
 * RangeError naming the bound. The coordinator, the CLI and the peer all call it.
 */
export function checkReplicas (replicas: number, microbatches: number): void {
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > microbatches) throw new RangeError(`replicas must be an integer in 1..${microbatches} (the microbatches per iteration), got ${replicas}`)
}

/**
 * The lanes of an assignment whose stages have `replicasPerStage` peers: as many as the best-served
 * stage has replicas (a stage with none, waiting for a peer, does not count).
 */
export function laneCount (replicasPerStage: readonly number[], microbatches: number): number {
  const lanes = Math.max(1, ...replicasPerStage)
  checkReplicas(lanes, microbatches)
  return lanes
}

/**
 * Which of a stage's `n` replicas runs microbatch `mb` when the iteration has `lanes` lanes: lane
 * mb % lanes, served by replica lane % n. With n = lanes that is lane r on replica r; a stage short
 * of replicas (one was lost) has its survivors run the missing lanes as well, so every microbatch
 * still runs exactly once on every stage and the global batch is unchanged.
 */
export function servingReplica (mb: number, lanes: number, n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > lanes) throw new RangeError(`a stage's replicas must be an integer in 1..${lanes} (the lanes), got ${n}`)
  return (mb % lanes) % n
}

/** The microbatches (ascending) replica `i` of a stage with `n` replicas runs, with `lanes` lanes. */
export function replicaMicrobatches (microbatches: number, lanes: number, n: number, i: number): number[] {
  checkReplicas(lanes, microbatches)
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`replica must be an integer in 0..${n - 1}, got ${i}`)
  const out: number[] = []
  for (let m = 0; m < microbatches; m++) if (servingReplica(m, lanes, n) === i) out.push(m)
  return out
}

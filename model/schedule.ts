/**
 * The route a microbatch takes through the pipeline: an ordered list of hops, each one stage running
 * some of its parts. Normally stage 0 embeds and runs its blocks, every stage runs its blocks in
 * order, and the last stage also runs the head.
 *
 * CheckFree+ (out-of-order pipelining): on odd microbatches the first two stages' blocks run in
 * swapped order, and likewise the last two, so each learns to stand in for its neighbour. The pairs
 * come from the stage count; with fewer than 4 stages the pairs would overlap, so nothing swaps.
 *
 * Where a swapped microbatch embeds and runs the head is the layout (PlusLayout):
 *
 *   spotpipe  0(embed) -> 1 -> 0 -> 2 ... S-3 -> S-1 -> S-2 -> S-1(head)   two extra hops each way
 *   paper     1(embed, blocks) -> 0 -> 2 ... S-3 -> S-1 -> S-2(blocks, head)   no extra hop
 *
 * Under `paper` stage 1 runs a copy of stage 0's embedding and stage S-2 a copy of S-1's head (the
 * "shared parts", sharedPart below): the owner alone steps the part, on the gradient both add up
 * before the step, and the holder takes the owner's new weights after every commit. Both layouts
 * compute the same function with the same weights; only the hops differ.
 */
import type { Part } from './params.js'

export interface Hop {
  stage: number
  parts: Part[]
}

/** Where CheckFree+'s swapped microbatches embed and run the head (see the module comment). */
export type PlusLayout = 'spotpipe' | 'paper'
export const PLUS_LAYOUTS: readonly PlusLayout[] = ['spotpipe', 'paper']

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
export function route (stages: number, mb: number, checkfreePlus = false, layout: PlusLayout = 'spotpipe'): Hop[] {
  const order = blockOrder(stages, mb, checkfreePlus)
  // paper: the embedding runs where the blocks start, the head where they end (a swapped microbatch: copies on 1 and S-2)
  const embedAt = layout === 'paper' ? order[0] : 0
  const headAt = layout === 'paper' ? order[stages - 1] : stages - 1
  const steps: Array<{ stage: number, part: Part }> = [{ stage: embedAt, part: 'embed' }]
  for (const s of order) steps.push({ stage: s, part: 'blocks' })
  steps.push({ stage: headAt, part: 'head' })
  const hops: Hop[] = []
  for (const { stage, part } of steps) {
    const last = hops[hops.length - 1]
    if (last != null && last.stage === stage) last.parts.push(part)
    else hops.push({ stage, parts: [part] })
  }
  return hops
}

/**
 * What stage `stage` shares under the paper layout: the owner of the embedding (stage 0) or head
 * (S-1), or the holder of a copy of it (stage 1 or S-2), with the other side of the pair. Undefined
 * when nothing is shared (another layout, no swaps, fewer than 4 stages, a middle stage).
 */
export function sharedPart (stage: number, stages: number, checkfreePlus: boolean, layout: PlusLayout): { part: 'embed' | 'head', role: 'owner' | 'holder', peer: number } | undefined {
  if (layout !== 'paper' || !checkfreePlus || stages < 4) return undefined
  if (stage === 0) return { part: 'embed', role: 'owner', peer: 1 }
  if (stage === 1) return { part: 'embed', role: 'holder', peer: 0 }
  if (stage === stages - 1) return { part: 'head', role: 'owner', peer: stages - 2 }
  if (stage === stages - 2) return { part: 'head', role: 'holder', peer: stages - 1 }
  return undefined
}

/** How many of the iteration's `microbatches` end (run the head, report the loss) on each stage. */
export function lossMicrobatchesByStage (stages: number, microbatches: number, checkfreePlus: boolean, layout: PlusLayout): Map<number, number> {
  const out = new Map<number, number>()
  for (let mb = 0; mb < microbatches; mb++) {
    const s = (route(stages, mb, checkfreePlus, layout).at(-1) as Hop).stage
    out.set(s, (out.get(s) ?? 0) + 1)
  }
  return out
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

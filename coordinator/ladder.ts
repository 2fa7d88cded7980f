/**
 * The recovery ladder (DESIGN.md "Recovery ladder") as one pure function: given which stages are
 * lost, who is alive, which spares exist and what the strategy allows, pick for each lost stage the
 * first rung that applies. No I/O here, so every rule is unit-tested directly.
 *
 *   0. rejoin          the lost peer itself is back with its state intact and current: it keeps
 *                      the stage, nothing moves
 *   1. handover        the departing peer is still reachable: copy its exact state
 *   2. replica         another live peer holds an up-to-date copy (the shadow of strategies
 *                      `redundant`, pulled after every commit, and `redundant-compute`, trained
 *                      alongside by redundant computation)
 *   3. checkfree       intermediate stage, both neighbours alive: gradient-norm-weighted average
 *   4. checkfree-plus  first or last stage (strategy checkfree-plus): neighbour copy + mirror, when
 *                      a live peer is known to hold the mirror
 *
 * A neighbour whose peer announced its departure still counts for 3 and 4: it keeps serving its
 * stage until every recovery that names it as a donor is done (node/peer.ts depart()), so a spot
 * notice on one stage and a crash of the next cost a handover and a CheckFree, not a checkpoint.
 *   5. checkpoint      the newest sparse checkpoint (the initial weights if none was taken yet);
 *                      strategy checkpoint-whole rolls every stage back instead
 *   6. wait            no spare to take the stage: pause and keep all state
 *
 * Replicas: a stage served by several peers is lost only when all of them are. Losing some of them
 * never reaches this function: the recovery machine drops them and the stage's other replicas run
 * their microbatches (rung `survivors`, recovery/machine.ts), and a spare later joins the stage
 * as an exact copy of its live replicas (rung `replica`).
 *
 * A rung that already failed for a stage (`excluded`: a donor vanished mid-transfer, the target
 * reported it could not carry the plan out) is skipped for it; the checkpoint rung is never
 * skipped, it is the floor that always applies.
 */
import { DEFAULT_LR_SCALE, mirrorHolder } from '../model/index.js'
import type { RecoveryRung } from '../protocols/index.js'

export type Strategy = 'checkfree' | 'checkfree-plus' | 'checkpoint' | 'checkpoint-whole' | 'redundant' | 'redundant-compute' | 'none'
export const STRATEGIES: readonly Strategy[] = ['checkfree', 'checkfree-plus', 'checkpoint', 'checkpoint-whole', 'redundant', 'redundant-compute', 'none']

/**
 * Whether every stage's predecessor keeps a shadow of it (model/recovery.ts shadowHolder): copied
 * after every commit (`redundant`) or computed alongside the stage itself, Bamboo-style
 * (`redundant-compute`). The ladder treats both alike: a current shadow is an exact copy.
 */
export function keepsShadows (strategy: Strategy): boolean {
  return strategy === 'redundant' || strategy === 'redundant-compute'
}

export interface LadderInput {
  strategy: Strategy
  stages: number
  /** Stage -> its live peer; lost stages are absent. */
  holders: Map<number, string>
  /** Lost stages, ascending. */
  lost: number[]
  /** Stage -> the peer that announced its departure and can still be reached. */
  departing: Map<number, string>
  /** Live peers holding no stage, in preference order. */
  spares: string[]
  /** Stage -> live peer holding a copy of it at the last commit (redundant shadows). */
  replicas: Map<number, string>
  /**
   * Stage (first or last) -> live peer holding a mirror of its embedding or head (CheckFree+).
   * Undefined: assume the neighbour holds one (the simulator's model); the coordinator always passes it.
   */
  mirrors?: Map<number, string>
  /** Lost stage -> its own peer, back with the stage's state intact and current. */
  rejoined?: Map<number, string>
  /** Lost stage -> rungs that already failed for it in this recovery. */
  excluded?: ReadonlyMap<number, ReadonlySet<RecoveryRung>>
  /** Post-clip gradient norm of each stage's last committed step. */
  gradNorms: number[]
  /** Iteration of the newest complete checkpoint, or undefined (then the seeded initial weights serve). */
  checkpoint?: number
  /**
   * Lost stage -> iteration of the newest checkpoint holding its file, complete or partial: what the
   * checkpoint rung restores it from. A stage not listed uses `checkpoint`. checkpoint-whole rolls
   * every stage back to `checkpoint`, one iteration for all.
   */
  stageCheckpoints?: ReadonlyMap<number, number>
  /** lr multiplier for rebuilt stages. @default 1.1 */
  lrScale?: number
}

export interface StagePlan {
  stage: number
  rung: RecoveryRung
  /** Peer that becomes the stage ('' when waiting). */
  target: string
  donors: Array<{ peerId: string, stage: number }>
  /** CheckFree: the donors' gradient norms, in donor order. */
  weights: number[]
  lrScale: number
  /** 'ckpt-<iteration>' or 'init' for the checkpoint rung. */
  checkpointId: string
}

export interface LadderResult {
  plans: StagePlan[]
  /** checkpoint-whole: every stage reloads the checkpoint and training resumes after it. */
  rollbackAll: boolean
}

export function checkpointId (iteration: number | undefined): string {
  return iteration == null ? 'init' : `ckpt-${iteration}`
}

export function planRecovery (input: LadderInput): LadderResult {
  const { strategy, stages: S, holders, lost } = input
  const lrScale = input.lrScale ?? DEFAULT_LR_SCALE
  const spares = [...input.spares]
  const lostSet = new Set(lost)
  // the peer that can serve stage s's last committed weights: its live holder, or its departing one
  const server = (s: number): string | undefined => s < 0 || s >= S ? undefined : lostSet.has(s) ? input.departing.get(s) : holders.get(s)
  const alive = (s: number): boolean => server(s) != null
  const ckpt = checkpointId(input.checkpoint)
  const plans: StagePlan[] = []
  const base = { weights: [] as number[], lrScale: 1, checkpointId: '' }

  if (strategy === 'checkpoint-whole' && lost.some(s => !input.departing.has(s))) {
    // Roll every stage back: survivors reload on their own peers, lost stages on spares.
    for (let s = 0; s < S; s++) {
      const target = lostSet.has(s) ? spares.shift() : holders.get(s)
      plans.push(target == null
        ? { stage: s, rung: 'wait', target: '', donors: [], ...base }
        : { stage: s, rung: 'checkpoint', target, donors: [], ...base, checkpointId: ckpt })
    }
    return { plans, rollbackAll: true }
  }

  const allowed = (s: number, rung: RecoveryRung): boolean => input.excluded?.get(s)?.has(rung) !== true
  for (const s of lost) {
    const back = input.rejoined?.get(s)
    if (back != null) { plans.push({ stage: s, rung: 'rejoin', target: back, donors: [], ...base }); continue }
    const departing = input.departing.get(s)
    const target = spares[0]
    if (target == null) { plans.push({ stage: s, rung: 'wait', target: '', donors: [], ...base }); continue }
    let plan: StagePlan
    const replica = input.replicas.get(s)
    /** The peer known to hold stage s's mirror (the holder stage's server when the caller does not say). */
    const mirrorPeer = (n: number): string | undefined => input.mirrors == null ? server(n) : input.mirrors.get(s)
    if (departing != null && allowed(s, 'handover')) {
      plan = { stage: s, rung: 'handover', target, donors: [{ peerId: departing, stage: s }], ...base }
    } else if (keepsShadows(strategy) && replica != null && allowed(s, 'replica')) {
      plan = { stage: s, rung: 'replica', target, donors: [{ peerId: replica, stage: s }], ...base }
    } else if ((strategy === 'checkfree' || strategy === 'checkfree-plus') && s > 0 && s < S - 1 && alive(s - 1) && alive(s + 1) && allowed(s, 'checkfree')) {
      plan = {
        stage: s,
        rung: 'checkfree',
        target,
        donors: [{ peerId: server(s - 1) as string, stage: s - 1 }, { peerId: server(s + 1) as string, stage: s + 1 }],
        weights: [input.gradNorms[s - 1] ?? 0, input.gradNorms[s + 1] ?? 0],
        lrScale,
        checkpointId: ''
      }
    } else if (strategy === 'checkfree-plus' && mirrorHolder(s, S) != null && alive(mirrorHolder(s, S) as number) &&
      mirrorPeer(mirrorHolder(s, S) as number) === server(mirrorHolder(s, S) as number) && allowed(s, 'checkfree-plus')) {
      // the neighbour serves both its blocks and its mirror of the lost embedding or head
      const n = mirrorHolder(s, S) as number
      plan = { stage: s, rung: 'checkfree-plus', target, donors: [{ peerId: server(n) as string, stage: n }], ...base, lrScale }
    } else {
      plan = { stage: s, rung: 'checkpoint', target, donors: [], ...base, checkpointId: checkpointId(input.stageCheckpoints?.get(s) ?? input.checkpoint) }
    }
    spares.shift()
    plans.push(plan)
  }
  return { plans, rollbackAll: false }
}

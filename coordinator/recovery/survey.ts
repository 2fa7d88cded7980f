/**
 * Step 1 of a recovery round (machine.ts): the survey. From the assignment, the machine's sets and
 * the peers' heartbeats, what the ladder needs to plan the lost stages: who still holds a stage,
 * who is departing, which lost peers are back with their state, the spares, and the exact copies
 * other peers hold (only copies of the last commit; a mirror only has to exist).
 */
import type { Assignment, Heartbeat, RecoveryRung } from '../../protocols/index.js'
import type { LadderInput, Strategy } from '../ladder.js'
import { heldCopies, stateIterationOf } from './copies.js'
import type { LossInfo } from './record.js'

/** How long after it was sent a heartbeat still counts as a sign that a lost peer is back. */
const REJOIN_HEARTBEAT_FRESH_MS = 5_000

/** What the survey reads: the coordinator's view and the recovery machine's sets, read-only. */
export interface SurveyView {
  readonly assignment: Assignment
  readonly strategy: Strategy
  readonly epoch: number
  /** The next iteration to run (the last commit is one before). */
  readonly iteration: number
  readonly gradNorms: number[]
  readonly livePeers: string[]
  heartbeatOf: (peerId: string) => Heartbeat | undefined
  readonly lost: ReadonlyMap<number, LossInfo>
  readonly departing: ReadonlySet<string>
  /**
   * Replicas whose state does not count (machine.ts): lost ones the assignment still names, and
   * joiners still catching up. Neither holders nor spares.
   */
  readonly stateless: ReadonlySet<string>
  /** Lost peers that came back with fresh state: spares, never rejoins. */
  readonly restarted: ReadonlySet<string>
  readonly excluded: ReadonlyMap<number, ReadonlySet<RecoveryRung>>
}

/** Whether `hb` says its peer still holds stage `s` at `epoch` and committed iteration `committed`. */
export function holdsIntact (hb: Heartbeat, s: number, epoch: number, committed: number): boolean {
  return hb.role === 'stage' && hb.stage === s && hb.epoch === epoch && !hb.departing && stateIterationOf(hb) === committed
}

/** The checkpoints a recovery may restore from (LadderInput's fields of the same names). */
export type CheckpointChoice = Pick<LadderInput, 'checkpoint' | 'stageCheckpoints'>

/** The ladder's input for recovering `stages`, with `checkpoints` the newest usable checkpoints. */
export function survey (v: SurveyView, stages: number[], checkpoints: CheckpointChoice): LadderInput {
  const a = v.assignment
  const lostSet = new Set(stages)
  const holders = new Map<number, string>()
  const departing = new Map<number, string>()
  const rejoined = new Map<number, string>()
  for (const st of a.stages) {
    // a stage departs only with its last replica (machine.ts drops the others); any live replica holds it
    const p = st.peers.find(q => !v.stateless.has(q) && !v.departing.has(q)) ?? st.peers.find(q => v.departing.has(q))
    if (p == null) continue
    if (v.departing.has(p)) departing.set(st.stage, p)
    else if (!lostSet.has(st.stage)) holders.set(st.stage, p)
  }
  for (const s of stages) {
    // a departing holder keeps serving its stage's exact state until the handover is installed
    const from = v.lost.get(s)?.peer
    if (from != null && v.departing.has(from) && !departing.has(s)) departing.set(s, from)
  }
  const committed = v.iteration - 1
  for (const s of stages) {
    const info = v.lost.get(s)
    const hb = info != null ? v.heartbeatOf(info.peer) : undefined
    // a rejoin is a heartbeat sent after the loss was decided: one sent just before a crash and
    // relayed late by gossip must not bring a dead peer back
    if (info != null && hb != null && !v.restarted.has(info.peer) && holdsIntact(hb, s, v.epoch, committed) &&
      hb.timestampMs > info.detectedAt && Date.now() - hb.timestampMs < REJOIN_HEARTBEAT_FRESH_MS) rejoined.set(s, info.peer)
  }
  // every replica a stage keeps is busy, not only the one listed as its holder
  const kept = a.stages.filter(st => !lostSet.has(st.stage)).flatMap(st => st.peers)
  const busy = new Set([...kept, ...holders.values(), ...departing.values(), ...rejoined.values(), ...v.stateless])
  const spares = v.livePeers.filter(p => !busy.has(p)).sort()
  const copies = heldCopies(a, holders, v.heartbeatOf)
  // exact copies must be of the last commit; a mirror only has to exist
  const replicas = new Map([...copies.shadows].filter(([, c]) => c.iteration === committed).map(([s, c]) => [s, c.peer]))
  const mirrors = new Map([...copies.mirrors].map(([s, c]) => [s, c.peer]))
  return {
    strategy: v.strategy,
    stages: a.stages.length,
    holders,
    lost: [...stages].sort((x, y) => x - y),
    departing,
    spares,
    replicas,
    mirrors,
    rejoined,
    excluded: v.excluded,
    gradNorms: v.gradNorms,
    ...checkpoints
  }
}

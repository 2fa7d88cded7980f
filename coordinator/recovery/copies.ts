/**
 * What the peers' heartbeats say about the copies they hold for others, and how fresh each is: the
 * redundant strategy's shadow of the successor stage, CheckFree+'s mirror of the embedding or head,
 * and the iteration a peer's own stage state belongs to. The ladder plans an exact copy only from
 * a copy of the last commit, and CheckFree+ only from a mirror that exists.
 */
import type { Assignment, Heartbeat } from '../../protocols/index.js'

export interface HeldCopyView {
  /** The peer holding the copy. */
  peer: string
  /** The committed iteration the copy belongs to. */
  iteration: number
}

export interface CopiesSurvey {
  /** Stage -> a live peer holding a shadow of it (redundant strategy). */
  shadows: Map<number, HeldCopyView>
  /** Stage (first or last) -> a live peer holding a mirror of its embedding or head (CheckFree+). */
  mirrors: Map<number, HeldCopyView>
}

/** The iteration a peer's stage state belongs to, from its heartbeat. */
export function stateIterationOf (hb: Heartbeat): number { return hb.stateIteration }

/** The copies the live holders of `a`'s stages announce in their heartbeats. */
export function heldCopies (a: Assignment, holders: ReadonlyMap<number, string>, heartbeatOf: (peerId: string) => Heartbeat | undefined): CopiesSurvey {
  const shadows = new Map<number, HeldCopyView>()
  const mirrors = new Map<number, HeldCopyView>()
  for (const peer of holders.values()) {
    const hb = heartbeatOf(peer)
    if (hb == null || hb.epoch !== a.epoch) continue
    for (const h of hb.held) {
      const into = h.kind === 'shadow' ? shadows : h.kind === 'mirror' ? mirrors : undefined
      const prev = into?.get(h.stage)
      if (into != null && (prev == null || prev.iteration < h.iteration)) into.set(h.stage, { peer, iteration: h.iteration })
    }
  }
  return { shadows, mirrors }
}

/**
 * Redundant strategy: the stages of `a` whose shadow (held by the predecessor's peer) does not yet
 * hold committed iteration `it`, by that peer's heartbeat.
 */
export function shadowsBehind (a: Assignment, it: number, heartbeatOf: (peerId: string) => Heartbeat | undefined): number[] {
  const holders = new Map(a.stages.flatMap(st => st.peers[0] != null ? [[st.stage, st.peers[0]] as const] : []))
  const { shadows } = heldCopies(a, holders, heartbeatOf)
  return a.stages.map(st => st.stage).filter(s => (shadows.get(s)?.iteration ?? -1) < it)
}

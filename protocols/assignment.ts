/**
 * Reading an assignment: which of a stage's peers serve its microbatches. A peer listed in
 * `joining` holds the stage but is still catching up on it (node/replica-join.ts): it runs no
 * microbatch and adds zeros to its stage's all-reduce until an assignment without it there makes it
 * a serving replica. The peer and the coordinator both read the assignment through this.
 */
import type { Assignment } from './types.js'

/** The peers of stage `stage` that run microbatches under `a`, in the assignment's order. */
export function servingPeers (a: Assignment, stage: number): string[] {
  const joining = a.joining ?? []
  return (a.stages[stage]?.peers ?? []).filter(p => !joining.includes(p))
}

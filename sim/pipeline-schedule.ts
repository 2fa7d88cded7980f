/**
 * One iteration of the plain pipeline as the peers run it (node/stage-runtime.ts), replayed as a
 * small event simulation, for a cluster whose stages share a few cores instead of owning a machine
 * each (the local cluster: every stage a process, all on one host).
 *
 * Each stage is one single-threaded worker. It runs, whenever it is free, the next backward in the
 * fixed order (microbatch 0, 1, ...) once that microbatch's gradient has arrived, else the oldest
 * forward whose activation has arrived; after its last backward it takes its optimizer step. Stage
 * 0 has every microbatch's tokens at the start; the last stage's backward of a microbatch is ready
 * as soon as its own forward is done. A tensor sent to a neighbour arrives `hopS` later and costs
 * no core time. The workers busy at a moment share `cores` equally (what the kernel's fair
 * scheduler does with runnable processes): each runs at min(1, cores / busy) of its own speed.
 *
 * With cores >= stages this is the cost model's (M + S - 1) x (compute + 2 hops) for equal stages;
 * with fewer cores the overlap the formula assumes is not there, and the iteration is longer.
 */
import { SimConfigError } from './errors.js'

export interface PipelineShape {
  stages: number
  microbatches: number
  /** Seconds of one microbatch's forward on stage s, on one core by itself: [S]. */
  forwardS: readonly number[]
  /** Seconds of one microbatch's backward on stage s: [S]. */
  backwardS: readonly number[]
  /** Seconds of stage s's optimizer step after its last backward: [S] (0 when not modelled). */
  stepS?: readonly number[]
  /** Seconds added to stage s's first forward and first backward: [S] each (a fresh process pays its
   *  kernels' warm-up on their first run). @default none */
  firstForwardExtraS?: readonly number[]
  firstBackwardExtraS?: readonly number[]
  /** Seconds from a tensor's send to its arrival at the neighbour. */
  hopS: number
  /** Cores the stages share; Infinity: a core (machine) per stage. */
  cores: number
}

interface Task { stage: number, kind: 'forward' | 'backward' | 'step', mb: number, left: number }

/** Seconds from the start of the iteration to the last stage's step done. */
export function pipelineMakespan (p: PipelineShape): number {
  const { stages: S, microbatches: M, hopS, cores } = p
  if (!Number.isInteger(S) || S < 1) throw new SimConfigError(`pipeline stages must be a positive integer, got ${String(S)}`)
  if (!Number.isInteger(M) || M < 1) throw new SimConfigError(`pipeline microbatches must be a positive integer, got ${String(M)}`)
  if (!(cores > 0)) throw new SimConfigError(`pipeline cores must be > 0, got ${String(cores)}`)
  if (!(hopS >= 0) || !Number.isFinite(hopS)) throw new SimConfigError(`pipeline hopS must be a non-negative finite number, got ${String(hopS)}`)
  const stepS = p.stepS ?? new Array<number>(S).fill(0)
  const firstF = p.firstForwardExtraS ?? new Array<number>(S).fill(0)
  const firstB = p.firstBackwardExtraS ?? new Array<number>(S).fill(0)
  for (const [name, xs] of [['forwardS', p.forwardS], ['backwardS', p.backwardS], ['stepS', stepS], ['firstForwardExtraS', firstF], ['firstBackwardExtraS', firstB]] as const) {
    if (xs.length !== S) throw new SimConfigError(`pipeline ${name} has ${xs.length} entries for ${S} stages`)
    for (const x of xs) if (!(x >= 0) || !Number.isFinite(x)) throw new SimConfigError(`pipeline ${name} must hold non-negative finite seconds, got ${String(x)}`)
  }
  // per stage: forwards arrived (FIFO), gradients arrived (by microbatch), the next backward due
  const forwards: number[][] = Array.from({ length: S }, (_, s) => s === 0 ? Array.from({ length: M }, (_, m) => m) : [])
  const grads: Array<Set<number>> = Array.from({ length: S }, () => new Set())
  const nextBackward = new Array<number>(S).fill(0)
  const forwardsRun = new Array<number>(S).fill(0)
  const running: Array<Task | undefined> = new Array(S).fill(undefined)
  const finished = new Array<boolean>(S).fill(false)
  // tensors in flight: arrival time, where, what
  const inFlight: Array<{ at: number, stage: number, kind: 'forward' | 'backward', mb: number }> = []
  let now = 0
  let end = 0
  const pick = (s: number): Task | undefined => {
    if (finished[s]) return undefined
    const due = nextBackward[s]
    if (due < M && grads[s].has(due)) { grads[s].delete(due); nextBackward[s] += 1; return { stage: s, kind: 'backward', mb: due, left: p.backwardS[s] + (due === 0 ? firstB[s] : 0) } }
    if (forwards[s].length > 0) {
      const extra = forwardsRun[s]++ === 0 ? firstF[s] : 0
      return { stage: s, kind: 'forward', mb: forwards[s].shift() as number, left: p.forwardS[s] + extra }
    }
    if (due === M) { finished[s] = true; return { stage: s, kind: 'step', mb: -1, left: stepS[s] } }
    return undefined
  }
  const complete = (t: Task): void => {
    const s = t.stage
    if (t.kind === 'forward') {
      if (s === S - 1) grads[s].add(t.mb)
      else inFlight.push({ at: now + hopS, stage: s + 1, kind: 'forward', mb: t.mb })
    } else if (t.kind === 'backward') {
      if (s > 0) inFlight.push({ at: now + hopS, stage: s - 1, kind: 'backward', mb: t.mb })
    } else end = Math.max(end, now)
  }
  for (let guard = 0; ; guard++) {
    if (guard > 100 * S * M + 100) throw new SimConfigError('pipeline simulation did not finish (a bug in the schedule)')
    for (let s = 0; s < S; s++) if (running[s] == null) running[s] = pick(s)
    const busy = running.filter((t): t is Task => t != null)
    if (busy.length === 0 && inFlight.length === 0) break
    const rate = Math.min(1, cores / Math.max(1, busy.length))
    // the next event: a task done, or a tensor arriving
    let dt = Infinity
    for (const t of busy) dt = Math.min(dt, t.left / rate)
    for (const f of inFlight) dt = Math.min(dt, f.at - now)
    dt = Math.max(0, dt)
    now += dt
    for (const t of busy) t.left -= dt * rate
    for (let s = 0; s < S; s++) {
      const t = running[s]
      if (t != null && t.left <= 1e-12) { running[s] = undefined; complete(t) }
    }
    // arrivals in the order they were sent
    const arrived = inFlight.filter(f => f.at <= now + 1e-12)
    for (const f of arrived) {
      inFlight.splice(inFlight.indexOf(f), 1)
      if (f.kind === 'forward') forwards[f.stage].push(f.mb)
      else grads[f.stage].add(f.mb)
    }
  }
  return end
}

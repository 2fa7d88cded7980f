/**
 * Test-only fault injection for a non-finite step, so the tests and the chaos suite can make a
 * stage diverge on purpose, at a chosen iteration, without a learning rate that blows up.
 *
 *   SPOTPIPE_FAULT_NONFINITE=<stage>:<iteration>[,<stage>:<iteration>...]
 *   SPOTPIPE_FAULT_NONFINITE=<stage>:+<n>      the n-th step this peer prepares on <stage> (1 = its first)
 *
 * The relative form is for churn runs: which iteration a spare will be at when it takes a stage is
 * not known when it starts.
 * The peer CLI reads the variable once at start (and says so on stderr: "FAULT INJECTION ...").
 * Whichever peer holds `stage` when it finishes `iteration` multiplies one of its accumulated
 * gradients by NaN just before it prepares its step, so the stage's own check (Stage.prepareStep)
 * finds the non-finite gradient and the peer reports it as it would a real one. Each entry fires
 * once: an iteration run again after a rollback is not poisoned a second time.
 */
import * as tf from '@tensorflow/tfjs'
import { ConfigError } from '../common/index.js'
import type { Stage } from '../model/index.js'

/** The environment variable the peer CLI reads. */
export const FAULT_NONFINITE_ENV = 'SPOTPIPE_FAULT_NONFINITE'

export interface NonFiniteFault {
  stage: number
  /** The iteration to poison; or, with `relative`, the n-th step this peer prepares on `stage`. */
  iteration: number
  relative?: boolean
}

/** Parses `<stage>:<iteration>[,...]`; a malformed entry is a ConfigError naming it. */
export function parseNonFiniteFaults (spec: string): NonFiniteFault[] {
  return spec.split(',').map(s => s.trim()).filter(s => s !== '').map(entry => {
    const m = /^(\d+):(\+?)(\d+)$/.exec(entry)
    if (m == null || (m[2] === '+' && Number(m[3]) < 1)) throw new ConfigError(`${FAULT_NONFINITE_ENV}: "${entry}" is not <stage>:<iteration> or <stage>:+<n> (non-negative integers, n >= 1)`)
    return m[2] === '+' ? { stage: Number(m[1]), iteration: Number(m[3]), relative: true } : { stage: Number(m[1]), iteration: Number(m[3]) }
  })
}

/** The faults still to fire; each fires once. */
export class NonFiniteFaults {
  private readonly pending: NonFiniteFault[]
  /** Steps prepared so far on each stage (for the relative form). */
  private readonly steps = new Map<number, number>()

  constructor (faults: NonFiniteFault[]) {
    this.pending = [...faults]
  }

  get size (): number { return this.pending.length }

  /** Poisons `stage`'s accumulated gradient if a fault is due for it at `iteration`; true when it did. */
  apply (stage: Stage, iteration: number): boolean {
    const n = (this.steps.get(stage.stage) ?? 0) + 1
    this.steps.set(stage.stage, n)
    const i = this.pending.findIndex(f => f.stage === stage.stage && f.iteration === (f.relative === true ? n : iteration))
    if (i < 0) return false
    this.pending.splice(i, 1)
    const grads = stage.gradients()
    const first = grads.entries().next()
    if (first.done === true) return false
    const [name, g] = first.value
    grads.set(name, tf.tidy(() => tf.mul(g, NaN)))
    g.dispose()
    return true
  }
}

/** The environment variable for a replica that drifts from its stage's others (test-only). */
export const FAULT_PERTURB_ENV = 'SPOTPIPE_FAULT_PERTURB'

/**
 * A replica whose weights drift: `<stage>:<iteration>:<replica>` makes the peer serving as replica
 * `replica` (its index among the stage's serving peers) of `stage` add 1e-3 to one weight right
 * after it commits `iteration`, as a memory error or a nondeterministic kernel might. Its replicas
 * no longer match, which the coordinator must notice (the done reports' weight digests) and mend.
 * Fires once.
 */
export interface PerturbFault { stage: number, iteration: number, replica: number }

export function parsePerturbFault (spec: string): PerturbFault {
  const m = /^(\d+):(\d+):(\d+)$/.exec(spec.trim())
  if (m == null) throw new ConfigError(`${FAULT_PERTURB_ENV}: "${spec}" is not <stage>:<iteration>:<replica> (non-negative integers)`)
  return { stage: Number(m[1]), iteration: Number(m[2]), replica: Number(m[3]) }
}

export class PerturbFaults {
  private pending?: PerturbFault
  constructor (fault: PerturbFault) { this.pending = fault }

  /** Perturbs `stage` if the fault is due for replica `replica` after committing `iteration`; true when it did. */
  apply (stage: Stage, iteration: number, replica: number): boolean {
    const f = this.pending
    if (f == null || f.stage !== stage.stage || f.iteration !== iteration || f.replica !== replica) return false
    this.pending = undefined
    const first = stage.params.values().next()
    if (first.done === true) return false
    const p = first.value as tf.Variable
    tf.tidy(() => { p.assign(tf.add(p, 1e-3)) })
    return true
  }
}

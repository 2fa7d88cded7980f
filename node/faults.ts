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

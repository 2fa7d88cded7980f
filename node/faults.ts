/**
 * Test-only fault injection for a non-finite step, so the tests and the chaos suite can make a
 * stage diverge on purpose, at a chosen iteration, without a learning rate that blows up.
 *
 *   SPOTPIPE_FAULT_NONFINITE=<stage>:<iteration>[,<stage>:<iteration>...]
 *
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
  iteration: number
}

/** Parses `<stage>:<iteration>[,...]`; a malformed entry is a ConfigError naming it. */
export function parseNonFiniteFaults (spec: string): NonFiniteFault[] {
  return spec.split(',').map(s => s.trim()).filter(s => s !== '').map(entry => {
    const m = /^(\d+):(\d+)$/.exec(entry)
    if (m == null) throw new ConfigError(`${FAULT_NONFINITE_ENV}: "${entry}" is not <stage>:<iteration> (two non-negative integers)`)
    return { stage: Number(m[1]), iteration: Number(m[2]) }
  })
}

/** The faults still to fire; each fires once. */
export class NonFiniteFaults {
  private readonly pending: NonFiniteFault[]

  constructor (faults: NonFiniteFault[]) {
    this.pending = [...faults]
  }

  get size (): number { return this.pending.length }

  /** Poisons `stage`'s accumulated gradient if a fault is due for it at `iteration`; true when it did. */
  apply (stage: Stage, iteration: number): boolean {
    const i = this.pending.findIndex(f => f.stage === stage.stage && f.iteration === iteration)
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

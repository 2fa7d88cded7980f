/**
 * Adam over a named parameter set, with state that serializes (moments by parameter name, the step
 * count and the learning rate). Written out rather than using tf.train.adam so the state can be
 * moved between peers bit-exactly and reset for a CheckFree rebuild.
 */
import * as tf from '@tensorflow/tfjs'

export interface AdamHyper {
  lr: number
  beta1: number
  beta2: number
  eps: number
}

export class Adam {
  readonly hyper: AdamHyper
  /** Multiplies lr; CheckFree raises it on a rebuilt stage (1.1 by default). */
  lrScale: number
  /** Optimizer steps taken (bias correction uses it). */
  step = 0
  readonly m = new Map<string, tf.Variable>()
  readonly v = new Map<string, tf.Variable>()

  constructor (hyper: AdamHyper, lrScale = 1) {
    this.hyper = { ...hyper }
    this.lrScale = lrScale
  }

  get lr (): number { return this.hyper.lr * this.lrScale }

  private moment (map: Map<string, tf.Variable>, name: string, shape: number[]): tf.Variable {
    let t = map.get(name)
    if (t == null) {
      t = tf.tidy(() => tf.variable(tf.zeros(shape), false))
      map.set(name, t)
    }
    return t
  }

  /** One update of every parameter that has a gradient. Gradients are already clipped. */
  apply (params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>): void {
    this.step += 1
    const { beta1, beta2, eps } = this.hyper
    const c1 = 1 - Math.pow(beta1, this.step)
    const c2 = 1 - Math.pow(beta2, this.step)
    const stepSize = this.lr / c1
    for (const [name, p] of params) {
      const g = grads.get(name)
      if (g == null) continue
      const m = this.moment(this.m, name, p.shape)
      const v = this.moment(this.v, name, p.shape)
      tf.tidy(() => {
        const m1 = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1))
        const v1 = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2))
        // p -= lr * mhat / (sqrt(vhat) + eps), with mhat = m1/c1 and vhat = v1/c2
        const denom = tf.add(tf.sqrt(tf.div(v1, c2)), eps)
        p.assign(tf.sub(p, tf.mul(tf.div(m1, denom), stepSize)))
        m.assign(m1)
        v.assign(v1)
      })
    }
  }

  dispose (): void {
    for (const t of this.m.values()) t.dispose()
    for (const t of this.v.values()) t.dispose()
    this.m.clear()
    this.v.clear()
  }
}

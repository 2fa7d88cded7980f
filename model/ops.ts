/**
 * The few tensor ops the transformer needs, written so that their gradients run fast on tfjs-wasm.
 *
 * On wasm, matMul with transposeA/transposeB runs 10-40x slower than a plain matMul (measured here:
 * 1024x256 @ 256x1024 plain 32 GFLOP/s, transposeB 3 GFLOP/s, transposeA 0.8 GFLOP/s), and the
 * built-in matMul gradient uses exactly those flags. `matmul` and `bmm` below register their own
 * gradient that transposes explicitly and then calls a plain matMul.
 */
import * as tf from '@tensorflow/tfjs'
import { itemMatMul } from './kernels.js'

/** Plain 2-D matmul a [m,k] @ b [k,n] -> [m,n], with a gradient that avoids transposed matmuls. */
export const matmul = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  const a2 = a as tf.Tensor2D
  const b2 = b as tf.Tensor2D
  save([a2, b2])
  return {
    value: tf.matMul(a2, b2), // [m,n]
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sa, sb] = saved as tf.Tensor2D[]
      const d = dy as tf.Tensor2D
      return [
        tf.matMul(d, tf.transpose(sb)), // da [m,k] = dy [m,n] @ b^T [n,k]
        tf.matMul(tf.transpose(sa), d) //  db [k,n] = a^T [k,m] @ dy [m,n]
      ]
    }
  }
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D

/** Batched matmul a [n,m,k] @ b [n,k,p] -> [n,m,p], with the same explicit-transpose gradient. */
export const bmm = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  const a3 = a as tf.Tensor3D
  const b3 = b as tf.Tensor3D
  save([a3, b3])
  return {
    value: tf.matMul(a3, b3), // [n,m,p]
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sa, sb] = saved as tf.Tensor3D[]
      const d = dy as tf.Tensor3D
      return [
        tf.matMul(d, tf.transpose(sb, [0, 2, 1])), // da [n,m,k]
        tf.matMul(tf.transpose(sa, [0, 2, 1]), d) //  db [n,k,p]
      ]
    }
  }
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D

/** x [..., k] @ w [k,n] -> [..., n], flattening the leading dims into one matmul. */
export function linear (x: tf.Tensor, w: tf.Tensor): tf.Tensor {
  const k = x.shape[x.shape.length - 1]
  const n = w.shape[1] as number
  const lead = x.shape.slice(0, -1)
  const y = matmul(x.reshape([-1, k]) as tf.Tensor2D, w as tf.Tensor2D) // [prod(lead), n]
  return y.reshape([...lead, n])
}

/** LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * g + b. x [..., d], g/b [d]. */
export function layerNorm (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps = 1e-5): tf.Tensor {
  const mean = tf.mean(x, -1, true) //                   [..., 1]
  const xc = tf.sub(x, mean) //                           [..., d]
  const variance = tf.mean(tf.square(xc), -1, true) //   [..., 1]
  const xhat = tf.mul(xc, tf.rsqrt(tf.add(variance, eps)))
  return tf.add(tf.mul(xhat, g), b)
}

const GELU_C = Math.sqrt(2 / Math.PI)

/** GELU, tanh approximation (as GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
export function gelu (x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), GELU_C)
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1))
}

/**
 * Per-item products [m,k]@[k,p] below this many multiply-adds run as one batched matMul: measured
 * on the test suite's tiny models (T 16, head 16: 4,096) the B*H separate dispatches made a whole
 * training step 35% slower (139 against 98 ms), while at the bench's [128,64]@[64,128] (1M) they
 * are the faster path (see kernels.itemMatMul).
 */
export const PER_ITEM_MIN_MACS = 65_536

/** Batched matmul a [n,m,k] @ b [n,k,p] -> [n,m,p], by the faster path for its shape and backend. */
export function headMatMul (a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  const [, m, k] = a.shape
  const p = b.shape[2]
  if (tf.getBackend() !== 'wasm' || a.dtype !== 'float32' || m * k * p < PER_ITEM_MIN_MACS) return tf.matMul(a, b)
  return itemMatMul(a, b)
}

const maskCache = new Map<number, tf.Tensor2D>()

/** Additive causal mask [T,T]: 0 on and below the diagonal, -1e9 above. Cached per T, kept alive. */
export function causalMask (T: number): tf.Tensor2D {
  let m = maskCache.get(T)
  if (m == null || m.isDisposed) {
    const data = new Float32Array(T * T)
    for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) data[i * T + j] = -1e9
    m = tf.keep(tf.tensor2d(data, [T, T]))
    maskCache.set(T, m)
  }
  return m
}

const onesCache = new Map<number, tf.Tensor2D>()

/**
 * Column sums of x [N,D] -> [D], as ones [1,N] @ x: on wasm tf.sum over axis 0 transposes first
 * (~35 ms for [1024,1024] under load here, against ~5 ms for the matmul). The ones row is cached per N.
 */
export function sumRows (x: tf.Tensor): tf.Tensor1D {
  const [n, d] = x.shape as [number, number]
  let ones = onesCache.get(n)
  if (ones == null || ones.isDisposed) {
    ones = tf.keep(tf.ones([1, n]) as tf.Tensor2D)
    onesCache.set(n, ones)
  }
  return tf.matMul(ones, x as tf.Tensor2D).reshape([d]) as tf.Tensor1D
}

/** Release cached constants (used by leak checks that count tensors). */
export function disposeOpCaches (): void {
  for (const m of maskCache.values()) m.dispose()
  maskCache.clear()
  for (const o of onesCache.values()) o.dispose()
  onesCache.clear()
}

/** Mean cross-entropy in nats of logits [N,V] against integer targets [N]. */
export function crossEntropy (logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Scalar {
  const V = logits.shape[1]
  const logp = tf.logSoftmax(logits) //              [N,V]
  const onehot = tf.oneHot(targets, V) //            [N,V] (constant)
  return tf.neg(tf.mean(tf.sum(tf.mul(logp, onehot), -1))) as tf.Scalar
}

/**
 * A float32 tensor from host values. Fetched weights can live in shared memory (net/weights
 * prefaults pages through a SharedArrayBuffer); the wasm and cpu backends take those as they are,
 * but the native TensorFlow binding is only known to accept plain ArrayBuffers, so for it they are
 * copied first.
 */
export function hostTensor (data: Float32Array, shape: number[]): tf.Tensor {
  const shared = typeof SharedArrayBuffer !== 'undefined' && data.buffer instanceof SharedArrayBuffer
  return tf.tensor(shared && tf.getBackend() === 'tensorflow' ? data.slice() : data, shape, 'float32')
}

/** A copy of float32 tensor `t`'s values in a new array (readInto: one copy on every backend). */
export function hostCopy (t: tf.Tensor): Float32Array {
  const out = new Float32Array(t.size)
  readInto(t, out)
  return out
}

/** What readInto uses of tfjs-wasm's backend: its public `getMemoryOffset` and the module's heap. */
interface WasmBackendView { getMemoryOffset?: (dataId: object) => number, wasm?: { HEAPU8?: Uint8Array } }

/**
 * Copies float32 tensor `t`'s values into `dst` (of `t.size` elements). On wasm they are copied
 * straight out of the module's memory: dataSync would first copy them into a new array (and the
 * checkpoint snapshot a peer takes every K iterations would allocate its whole size twice, work
 * for the garbage collector). Other backends go through dataSync.
 */
export function readInto (t: tf.Tensor, dst: Float32Array): void {
  if (t.dtype !== 'float32' || dst.length !== t.size) {
    throw new RangeError(`readInto: a ${t.dtype} tensor of ${t.size} elements does not fit a Float32Array of ${dst.length}`)
  }
  const b = tf.backend() as unknown as WasmBackendView
  const heap = b.wasm?.HEAPU8
  if (tf.getBackend() === 'wasm' && typeof b.getMemoryOffset === 'function' && heap != null) {
    dst.set(new Float32Array(heap.buffer, b.getMemoryOffset(t.dataId), t.size))
  } else {
    dst.set(t.dataSync() as Float32Array)
  }
}

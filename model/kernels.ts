/**
 * spotpipe's own kernels for tfjs-wasm, for the few places where tfjs-wasm's kernels move memory
 * badly: a transpose, column sums and the per-head matmuls. Each reads its inputs where they lie in
 * the module's heap and writes its output into a tensor allocated there; they are registered with
 * tfjs like its own kernels (tidy, tf.memory and tf.profile see them). On other backends the
 * callers use plain tfjs ops.
 *
 * Elementwise chains stay on tfjs's kernels: written in JS they ran slower than XNNPACK's
 * vectorised ones (see docs/compute.md). Column sums accumulate in float64 and round once; JS
 * arithmetic is IEEE, so the same inputs give the same bits in every process.
 */
import * as tf from '@tensorflow/tfjs'

/** What the kernels use of tfjs-wasm's backend: output allocation and heap views. */
interface WasmKernelBackend {
  makeOutput: (shape: number[], dtype: tf.DataType) => tf.TensorInfo
  typedArrayFromHeap: (t: tf.TensorInfo) => Float32Array
}

/** True when the JS kernels serve: the wasm backend and float32 inputs. */
export const jsKernels = (...xs: tf.Tensor[]): boolean => tf.getBackend() === 'wasm' && xs.every(x => x.dtype === 'float32')

interface KernelArgs { inputs: tf.NamedTensorInfoMap, backend: unknown }

/** Registers `kernelFunc` as kernel `name` on wasm (once: module reloads in tests would warn). */
function register (kernelName: string, kernelFunc: (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]): void {
  if (tf.getKernel(kernelName, 'wasm') == null) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc })
}

/** Runs kernel `name` on tensors `xs`, named by `names`: its outputs. */
function run (kernelName: string, names: string[], xs: tf.Tensor[]): tf.Tensor[] {
  const r = tf.engine().runKernel(kernelName, Object.fromEntries(names.map((n, i) => [n, xs[i]])), {})
  return Array.isArray(r) ? r : [r as tf.Tensor]
}

type Body = (inputs: Float32Array[], outputs: Float32Array[], shapes: number[][]) => void

/**
 * Registers kernel `name` on wasm: `outShapes` gives the outputs' shapes from the inputs' shapes,
 * `body` fills them. Returns a caller taking tensors in `names` order.
 */
function define (name: string, names: string[], outShapes: (shapes: number[][]) => number[][], body: Body): (xs: tf.Tensor[]) => tf.Tensor[] {
  const kernelName = `Spotpipe${name}`
  register(kernelName, ({ inputs, backend }) => {
    const b = backend as WasmKernelBackend
    const ins = names.map(n => inputs[n] as tf.TensorInfo)
    const shapes = ins.map(t => t.shape)
    const outs = outShapes(shapes).map(s => b.makeOutput(s, 'float32'))
    // views only after the allocations: growing the heap detaches older ones
    body(ins.map(t => b.typedArrayFromHeap(t)), outs.map(t => b.typedArrayFromHeap(t)), shapes)
    return outs
  })
  return xs => run(kernelName, names, xs)
}

/**
 * Square tiles of the blocked transpose. With a power-of-two row length (1024 floats = 4 KB) every
 * row of a tile maps to the same cache set; 8 rows fit the ways of L1, 32 thrash (measured on
 * [1024,1024]: 3.9 ms with 8, 7.7 ms with 32, 10.5 ms for tfjs-wasm's Transpose).
 */
const TILE = 8

/**
 * [..., r, c] -> [..., c, r]. tfjs-wasm's Transpose walks its output with a stride of r floats
 * (~10 ns per number on [1024,1024] here); the tiled loop is ~3x faster. Pure copies: exact.
 */
const transposeKernel = define('TransposeLast2', ['x'], ([s]) => [[...s.slice(0, -2), s[s.length - 1], s[s.length - 2]]], ([src], [dst], [s]) => {
  const r = s[s.length - 2]
  const c = s[s.length - 1]
  const n = src.length / (r * c)
  for (let k = 0, base = 0; k < n; k++, base += r * c) {
    for (let i0 = 0; i0 < r; i0 += TILE) {
      const i1 = Math.min(i0 + TILE, r)
      for (let j0 = 0; j0 < c; j0 += TILE) {
        const j1 = Math.min(j0 + TILE, c)
        for (let i = i0; i < i1; i++) {
          let si = base + i * c + j0
          let di = base + j0 * r + i
          for (let j = j0; j < j1; j++, si++, di += r) dst[di] = src[si]
        }
      }
    }
  }
})

/**
 * Below this many rows tfjs-wasm's own Transpose is about as fast or faster (its output stride is
 * short). Measured in CPU time, JS against tfjs: [1024,1024] 6.1 against 8.5 ms, [1024,256] 1.5
 * against 2.5, [256,1024] 1.0 against 1.2, [256,256] 0.38 against 0.27, [32,128,128] 2.0 against 1.8.
 */
const JS_TRANSPOSE_MIN_ROWS = 512

/** Swaps the last two axes of x (rank 2 or more): [..., r, c] -> [..., c, r]. */
export function transposeLast2<T extends tf.Tensor> (x: T): T {
  if (!jsKernels(x) || x.shape[x.rank - 2] < JS_TRANSPOSE_MIN_ROWS) return tf.transpose(x, [...Array.from({ length: x.rank - 2 }, (_, i) => i), x.rank - 1, x.rank - 2]) as T
  return transposeKernel([x])[0] as T
}

/** Column sums x [N,D] -> [D] (the bias gradients). */
const columnSumsKernel = define('ColumnSums', ['x'], ([s]) => [[s[1]]], ([x], [out], [[n, d]]) => {
  const acc = new Float64Array(d)
  let i = 0
  // four rows per pass over the accumulators
  for (; i + 4 <= n; i += 4) {
    const o = i * d
    for (let j = 0; j < d; j++) acc[j] += x[o + j] + x[o + d + j] + x[o + 2 * d + j] + x[o + 3 * d + j]
  }
  for (; i < n; i++) for (let j = 0, o = i * d; j < d; j++) acc[j] += x[o + j]
  out.set(acc)
})

export const columnSums = (x: tf.Tensor2D): tf.Tensor1D => columnSumsKernel([x])[0] as tf.Tensor1D

/** What the per-item matmul uses of tfjs-wasm's internals: tensor ids over raw heap ranges. */
interface WasmInternals {
  dataIdNextNumber: number
  getMemoryOffset: (dataId: object) => number
  wasm: {
    cwrap: (name: string, ret: null, args: string[]) => (...args: unknown[]) => void
    tfjs: { registerTensor: (id: number, size: number, offset: number) => void, disposeData: (id: number) => void }
  }
}

/** The module's BatchMatMul entry, per module instance (a re-created backend brings a new one). */
const batchMatMulFns = new WeakMap<object, (...args: unknown[]) => void>()

/**
 * a [n,m,k] @ b [n,k,p] -> [n,m,p] as n plain 2-D matmuls. tfjs-wasm runs a batched matMul with a
 * naive loop (1.5 GFLOP/s at [32,128,128] @ [32,128,64] here) and only a 2-D one through XNNPACK
 * (~9 GFLOP/s there). Splitting the batch with tfjs ops costs two copies of every item in
 * (readSync, then a new tensor) and one out (stack); instead each item gets a tensor id of the
 * wasm module's own over its range of a, b and the output, and the module's BatchMatMul runs on
 * those ids: no copies at all. The ids are released after each product (which also drops the
 * XNNPACK operator cached on b's id); the memory stays owned by a, b and the output.
 */
register('SpotpipeItemMatMul', ({ inputs, backend }) => {
  const b = backend as WasmKernelBackend & WasmInternals
  const x = inputs.a as tf.TensorInfo
  const y = inputs.b as tf.TensorInfo
  const [n, m, k] = x.shape
  const p = y.shape[2]
  const out = b.makeOutput([n, m, p], 'float32')
  let batchMatMul = batchMatMulFns.get(b.wasm)
  if (batchMatMul == null) {
    batchMatMul = b.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number'])
    batchMatMulFns.set(b.wasm, batchMatMul)
  }
  const { registerTensor, disposeData } = b.wasm.tfjs
  const aShape = new Uint8Array(new Int32Array([1, m, k]).buffer)
  const bShape = new Uint8Array(new Int32Array([1, k, p]).buffer)
  const offA = b.getMemoryOffset(x.dataId)
  const offB = b.getMemoryOffset(y.dataId)
  const offO = b.getMemoryOffset(out.dataId)
  for (let i = 0; i < n; i++) {
    const ia = b.dataIdNextNumber++
    const ib = b.dataIdNextNumber++
    const io = b.dataIdNextNumber++
    registerTensor(ia, m * k, offA + 4 * i * m * k)
    registerTensor(ib, k * p, offB + 4 * i * k * p)
    registerTensor(io, m * p, offO + 4 * i * m * p)
    batchMatMul(ia, aShape, 3, ib, bShape, 3, false, false, io)
    disposeData(ia)
    disposeData(ib)
    disposeData(io)
  }
  return out
})

/** a [n,m,k] @ b [n,k,p] -> [n,m,p] item by item through XNNPACK, without copies (wasm only). */
export const itemMatMul = (a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D => run('SpotpipeItemMatMul', ['a', 'b'], [a, b])[0] as tf.Tensor3D

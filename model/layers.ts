/**
 * Hand-written forward and backward passes of the transformer's layers, so a stage can run its
 * forward once, keep what backward needs (the "cache"), and later turn an upstream gradient into
 * parameter gradients and the gradient of its input without recomputing anything.
 *
 * Why not autodiff: tfjs records a gradient tape only inside one tf.grads call, but a pipeline
 * stage must send its forward output downstream before the gradient comes back. Recomputing the
 * forward inside tf.grads costs +33% FLOPs; these functions avoid it. model/transformer.ts keeps
 * the same model written for autodiff, and the tests check these gradients against it.
 *
 * All matmuls are plain (no transpose flags): on wasm transposed matmuls run 10-40x slower, so
 * every transpose is explicit. Shapes: N = B*T rows, D = dModel, H heads of hd = D/H, F = mlp width.
 */
import * as tf from '@tensorflow/tfjs'
import type { ModelConfig } from './config.js'
import { causalMask, headMatMul, sumRows } from './ops.js'
import { columnSums, jsKernels, transposeLast2 } from './kernels.js'

export type Params = (name: string) => tf.Tensor
/** Gradient sink: adds `g` to the gradient of parameter `name`. */
export type GradSink = (name: string, g: tf.Tensor) => void

// ---- What each layer's backward needs ----------------------------------------------------------

export interface LayerNormCache { xhat: tf.Tensor2D, rstd: tf.Tensor2D } //   [N,D], [N,1]
export interface GeluCache { a: tf.Tensor2D, s: tf.Tensor2D } //                 [N,F] input, sigmoid(2u)
export interface AttentionCache {
  h: tf.Tensor2D //       [N,D] the attention's input
  q: tf.Tensor3D //       [BH,T,hd]
  k: tf.Tensor3D //       [BH,T,hd]
  v: tf.Tensor3D //       [BH,T,hd]
  P: tf.Tensor3D //       [BH,T,T] attention probabilities
  y: tf.Tensor2D //       [N,D] heads merged, before the output projection
}
export interface MlpCache { h: tf.Tensor2D, gelu: GeluCache, g: tf.Tensor2D } // [N,D], -, [N,F]
export interface BlockCache { ln1: LayerNormCache, attn: AttentionCache, ln2: LayerNormCache, mlp: MlpCache }
export interface EmbedCache { onehot: tf.Tensor2D } //                           [N,V]
export interface HeadCache { ln: LayerNormCache, h: tf.Tensor2D, logp: tf.Tensor2D, onehot: tf.Tensor2D } // [N,D], [N,V], [N,V]
/** Everything one hop's backward needs: filled by the forwards below, emptied by disposeCache. */
export interface Cache { embed?: EmbedCache, blocks: BlockCache[], head?: HeadCache }

export const emptyCache = (): Cache => ({ blocks: [] })

/** Frees every tensor a cache holds. */
export function disposeCache (c: Cache): void {
  const walk = (x: unknown): void => {
    if (x instanceof tf.Tensor) x.dispose()
    else if (x != null && typeof x === 'object') for (const v of Object.values(x)) walk(v)
  }
  walk(c)
  c.blocks = []
  delete c.embed
  delete c.head
}

/** Column sums [N,D] -> [D]: the JS kernel on wasm (no fresh operand to pack), else ones @ x. */
const colSums = (x: tf.Tensor2D): tf.Tensor1D => jsKernels(x) ? columnSums(x) : sumRows(x)
const mm = (a: tf.Tensor, b: tf.Tensor): tf.Tensor2D => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D)
const T2 = (a: tf.Tensor): tf.Tensor2D => transposeLast2(a as tf.Tensor2D)
const bT = (a: tf.Tensor): tf.Tensor3D => transposeLast2(a as tf.Tensor3D)
/**
 * a [N,out] @ w^T for a weight w [in,out] -> [N,in]. Transposing w copies in*out numbers every
 * backward, which dominates when N (tokens per microbatch) is small; then (w @ a^T)^T, which only
 * transposes the two thin [N,*] matrices, is cheaper. Whichever side moves fewer numbers wins.
 */
const mmT = (a: tf.Tensor, w: tf.Tensor): tf.Tensor2D => {
  const [n, out] = a.shape
  const inp = w.shape[0]
  return n * (out + inp) < inp * out ? T2(mm(w, T2(a))) : mm(a, T2(w))
}

// ---- LayerNorm over the last axis -------------------------------------------------------------

function layerNormFwd (x: tf.Tensor2D, g: tf.Tensor, b: tf.Tensor): [tf.Tensor2D, LayerNormCache] {
  const mean = tf.mean(x, -1, true) //                                       [N,1]
  const xc = tf.sub(x, mean) //                                              [N,D]
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.mul(xc, xc), -1, true), 1e-5)) as tf.Tensor2D // [N,1]
  const xhat = tf.mul(xc, rstd) as tf.Tensor2D //                            [N,D]
  return [tf.add(tf.mul(xhat, g), b) as tf.Tensor2D, { xhat, rstd }] //      [N,D]
}

function layerNormBwd (dy: tf.Tensor2D, g: tf.Tensor, c: LayerNormCache, name: string, sink: GradSink): tf.Tensor2D {
  const { xhat, rstd } = c
  sink(`${name}.g`, colSums(tf.mul(dy, xhat) as tf.Tensor2D)) //             [D]
  sink(`${name}.b`, colSums(dy)) //                                          [D]
  const dxhat = tf.mul(dy, g) //                                             [N,D]
  // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
  const m1 = tf.mean(dxhat, -1, true) //                                     [N,1]
  const m2 = tf.mean(tf.mul(dxhat, xhat), -1, true) //                       [N,1]
  return tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(xhat, m2)), rstd) as tf.Tensor2D // [N,D]
}

// ---- GELU, tanh approximation -----------------------------------------------------------------

const GELU_C = Math.sqrt(2 / Math.PI)
const GELU_A = 0.044715

// tanh(u) = 2 sigmoid(2u) - 1: on wasm, Tanh runs elementwise through libm (~25 ms per 1M values
// here) while Sigmoid is XNNPACK's vectorised kernel (~5x faster). So 0.5 a (1 + tanh u) = a sigmoid(2u).

function geluFwd (a: tf.Tensor2D): [tf.Tensor2D, GeluCache] {
  // 2u = a (2C + 2CA a^2): one kernel fewer than 2C (a + A a^3)
  const u2 = tf.mul(a, tf.add(tf.mul(tf.mul(a, a), 2 * GELU_C * GELU_A), 2 * GELU_C)) // [N,F] 2u
  const s = tf.sigmoid(u2) as tf.Tensor2D //                                            [N,F] (1 + tanh u) / 2
  return [tf.mul(a, s) as tf.Tensor2D, { a, s }] //                                     [N,F]
}

/**
 * GELU backward: dy [N,F] -> da [N,F], and da's column sums [F] (the gradient of the bias before
 * GELU). `g` is the forward's output a s, which the MLP keeps anyway.
 */
function geluBwd (dy: tf.Tensor2D, c: GeluCache, g: tf.Tensor2D): [tf.Tensor2D, tf.Tensor1D] {
  const { a, s } = c
  // with t = tanh u = 2s - 1: d/da [0.5 a (1 + t)] = 0.5 (1 + t) + 0.5 a (1 - t^2) C (1 + 3 A a^2)
  //                                                = s + g (1 - s) (2C + 6CA a^2)
  const du = tf.add(tf.mul(tf.mul(a, a), 6 * GELU_C * GELU_A), 2 * GELU_C) //          [N,F]
  const local = tf.add(s, tf.mul(tf.mul(g, tf.sub(1, s)), du)) //                        [N,F]
  const da = tf.mul(dy, local) as tf.Tensor2D //                                        [N,F]
  return [da, colSums(da)]
}

// ---- Causal multi-head self-attention ---------------------------------------------------------
// The per-head products go through ops.headMatMul: at large shapes on wasm, B*H plain 2-D matmuls (a
// batched matMul there is a naive loop several times slower than XNNPACK's 2-D one); at small
// shapes one batched matMul (B*H dispatches cost more than they save). Softmax stays batched.

/** [N,D] -> [B*H,T,hd] (heads) or, with `transposed`, [B*H,hd,T] (heads, transposed). */
function heads (t: tf.Tensor, B: number, T: number, H: number, transposed = false): tf.Tensor3D {
  const hd = t.shape[1] as number / H
  // transposed: [B,T,D] -> [B,D,T] is [B,H,hd,T], one swap of the last two axes
  if (transposed) return transposeLast2(t.reshape([B, T, H * hd])).reshape([B * H, hd, T]) // [BH,hd,T]
  return t.reshape([B, T, H, hd]).transpose([0, 2, 1, 3]).reshape([B * H, T, hd]) //         [BH,T,hd]
}

/** [B*H,T,hd] -> [N,D]. */
function mergeHeads (t: tf.Tensor3D, B: number, H: number): tf.Tensor2D {
  const [, T, hd] = t.shape
  return t.reshape([B, H, T, hd]).transpose([0, 2, 1, 3]).reshape([B * T, H * hd]) as tf.Tensor2D
}

function attentionFwd (m: ModelConfig, p: Params, pre: string, h: tf.Tensor2D, B: number, T: number): [tf.Tensor2D, AttentionCache] {
  const H = m.nHeads
  const hd = m.dModel / H
  const q = heads(mm(h, p(`${pre}.wq`)), B, T, H) //                    [BH,T,hd]
  const kh = mm(h, p(`${pre}.wk`)) //                                   [N,D]
  const k = heads(kh, B, T, H) //                                       [BH,T,hd]
  const v = heads(mm(h, p(`${pre}.wv`)), B, T, H) //                    [BH,T,hd]
  const s = tf.add(tf.mul(headMatMul(q, heads(kh, B, T, H, true)), 1 / Math.sqrt(hd)), causalMask(T)) // [BH,T,T]
  const P = tf.softmax(s) as tf.Tensor3D //                             [BH,T,T]
  const y = mergeHeads(headMatMul(P, v), B, H) //                       [N,D]
  return [mm(y, p(`${pre}.wo`)), { h, q, k, v, P, y }] //               [N,D]
}

function attentionBwd (m: ModelConfig, dout: tf.Tensor2D, p: Params, pre: string, B: number, T: number, c: AttentionCache, sink: GradSink): tf.Tensor2D {
  const H = m.nHeads
  const hd = m.dModel / H
  const { h, q, k, v, P, y } = c
  sink(`${pre}.wo`, mm(T2(y), dout)) //                                 [D,D]
  const dy = heads(mmT(dout, p(`${pre}.wo`)), B, T, H) //               [BH,T,hd]
  const dP = headMatMul(dy, bT(v)) //                                   [BH,T,T]
  const dv = headMatMul(bT(P), dy) //                                   [BH,T,hd]
  // softmax backward: dS = P * (dP - sum(dP * P, -1)), then the 1/sqrt(hd) scale
  const dS = tf.mul(tf.mul(P, tf.sub(dP, tf.sum(tf.mul(dP, P), -1, true))), 1 / Math.sqrt(hd)) as tf.Tensor3D // [BH,T,T]
  const dq = mergeHeads(headMatMul(dS, k), B, H) //                     [N,D]
  const dk = mergeHeads(headMatMul(bT(dS), q), B, H) //                 [N,D]
  const dvm = mergeHeads(dv, B, H) //                                   [N,D]
  const hT = T2(h) //                                                   [D,N]
  sink(`${pre}.wq`, mm(hT, dq)) //                                      [D,D]
  sink(`${pre}.wk`, mm(hT, dk)) //                                      [D,D]
  sink(`${pre}.wv`, mm(hT, dvm)) //                                     [D,D]
  return tf.addN([mmT(dq, p(`${pre}.wq`)), mmT(dk, p(`${pre}.wk`)), mmT(dvm, p(`${pre}.wv`))]) as tf.Tensor2D // [N,D]
}

// ---- MLP ----------------------------------------------------------------------------------------

/**
 * x @ w + b in one kernel: on wasm XNNPACK adds the bias inside the matmul (its accumulators start
 * from it), which saves a pass over the output (~1 ms CPU for [1024,1024] here).
 */
const mmBias = (x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor): tf.Tensor2D => tf.fused.matMul({ a: x, b: w as tf.Tensor2D, bias: b }) as tf.Tensor2D

function mlpFwd (p: Params, pre: string, h: tf.Tensor2D): [tf.Tensor2D, MlpCache] {
  const a = mmBias(h, p(`${pre}.w1`), p(`${pre}.b1`)) //                      [N,F]
  const [g, gelu] = geluFwd(a) //                                             [N,F]
  return [mmBias(g, p(`${pre}.w2`), p(`${pre}.b2`)), { h, gelu, g }] //       [N,D]
}

function mlpBwd (dout: tf.Tensor2D, p: Params, pre: string, c: MlpCache, sink: GradSink): tf.Tensor2D {
  sink(`${pre}.w2`, mm(T2(c.g), dout)) //                 [F,D]
  sink(`${pre}.b2`, colSums(dout)) //                     [D]
  const dg = mmT(dout, p(`${pre}.w2`)) //                 [N,F]
  const [da, db1] = geluBwd(dg, c.gelu, c.g) //           [N,F], [F]
  sink(`${pre}.w1`, mm(T2(c.h), da)) //                   [D,F]
  sink(`${pre}.b1`, db1) //                               [F]
  return mmT(da, p(`${pre}.w1`)) //                       [N,D]
}

// ---- Block, embedding, head -------------------------------------------------------------------

/** Pre-LN block i: x [N,D] -> x + attn(ln1(x)), then + mlp(ln2(.)); what backward needs goes to c.blocks[i]. */
export function blockFwd (m: ModelConfig, p: Params, i: number, x: tf.Tensor2D, B: number, T: number, c: Cache): tf.Tensor2D {
  const pre = `blocks.${i}`
  const [h1, ln1] = layerNormFwd(x, p(`${pre}.ln1.g`), p(`${pre}.ln1.b`)) //  [N,D]
  const [a, attn] = attentionFwd(m, p, `${pre}.attn`, h1, B, T) //            [N,D]
  const x1 = tf.add(x, a) as tf.Tensor2D //                                   [N,D]
  const [h2, ln2] = layerNormFwd(x1, p(`${pre}.ln2.g`), p(`${pre}.ln2.b`)) // [N,D]
  const [f, mlp] = mlpFwd(p, `${pre}.mlp`, h2) //                             [N,D]
  c.blocks[i] = { ln1, attn, ln2, mlp }
  return tf.add(x1, f) as tf.Tensor2D //                                      [N,D]
}

/** Backward of block i: gradient of its output [N,D] -> gradient of its input [N,D]. */
export function blockBwd (m: ModelConfig, p: Params, i: number, dx2: tf.Tensor2D, B: number, T: number, c: Cache, sink: GradSink): tf.Tensor2D {
  const pre = `blocks.${i}`
  const bc = c.blocks[i]
  const dh2 = mlpBwd(dx2, p, `${pre}.mlp`, bc.mlp, sink) //                                       [N,D]
  const dx1 = tf.add(dx2, layerNormBwd(dh2, p(`${pre}.ln2.g`), bc.ln2, `${pre}.ln2`, sink)) as tf.Tensor2D // [N,D]
  const dh1 = attentionBwd(m, dx1, p, `${pre}.attn`, B, T, bc.attn, sink) //                      [N,D]
  return tf.add(dx1, layerNormBwd(dh1, p(`${pre}.ln1.g`), bc.ln1, `${pre}.ln1`, sink)) as tf.Tensor2D // [N,D]
}

/** tokens [B,T] -> [N,D]: one-hot matmul (tf.gather's gradient is not registered on wasm) + positions. */
export function embedFwd (m: ModelConfig, p: Params, tokens: tf.Tensor2D, c: Cache): tf.Tensor2D {
  const [B, T] = tokens.shape
  const onehot = tf.oneHot(tokens.reshape([B * T]) as tf.Tensor1D, m.vocab).toFloat() as tf.Tensor2D // [N,V]
  c.embed = { onehot }
  const pos = p('embed.pos').slice([0, 0], [T, m.dModel]) //                              [T,D]
  return tf.add(mm(onehot, p('embed.tok')).reshape([B, T, m.dModel]), pos).reshape([B * T, m.dModel]) as tf.Tensor2D
}

export function embedBwd (m: ModelConfig, dx: tf.Tensor2D, B: number, T: number, c: Cache, sink: GradSink): void {
  sink('embed.tok', mm(T2((c.embed as EmbedCache).onehot), dx)) //                       [V,D]
  const dpos = tf.sum(dx.reshape([B, T, m.dModel]), 0) //                                [T,D]
  sink('embed.pos', T < m.seqLen ? tf.pad(dpos, [[0, m.seqLen - T], [0, 0]]) : dpos) //  [seqLen,D]
}

/** Final norm, LM head and mean cross-entropy: x [N,D], targets [N] -> loss (nats). */
export function headFwd (m: ModelConfig, p: Params, x: tf.Tensor2D, targets: tf.Tensor1D, c: Cache): tf.Scalar {
  const [h, ln] = layerNormFwd(x, p('head.ln.g'), p('head.ln.b')) //           [N,D]
  const logits = mm(h, p('head.w')) //                                          [N,V]
  const logp = tf.logSoftmax(logits) as tf.Tensor2D //                          [N,V]
  const onehot = tf.oneHot(targets, m.vocab).toFloat() as tf.Tensor2D //        [N,V]
  c.head = { ln, h, logp, onehot }
  return tf.neg(tf.mean(tf.sum(tf.mul(logp, onehot), -1))) as tf.Scalar
}

/** Backward of the mean cross-entropy with respect to x [N,D] (loss gradient 1). */
export function headBwd (m: ModelConfig, p: Params, N: number, c: Cache, sink: GradSink): tf.Tensor2D {
  const hc = c.head as HeadCache
  const dlogits = tf.div(tf.sub(tf.exp(hc.logp), hc.onehot), N) as tf.Tensor2D // [N,V]
  sink('head.w', mm(T2(hc.h), dlogits)) //                                       [D,V]
  const dh = mmT(dlogits, p('head.w')) //                                        [N,D]
  return layerNormBwd(dh, p('head.ln.g'), hc.ln, 'head.ln', sink) //             [N,D]
}

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
import { causalMask } from './ops.js'

export type Params = (name: string) => tf.Tensor
/** Tensors a layer's backward needs, by name. */
export type Cache = Record<string, tf.Tensor>
/** Gradient sink: adds `g` to the gradient of parameter `name`. */
export type GradSink = (name: string, g: tf.Tensor) => void

const mm = (a: tf.Tensor, b: tf.Tensor): tf.Tensor2D => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D)
const T2 = (a: tf.Tensor): tf.Tensor2D => tf.transpose(a as tf.Tensor2D)
const bT = (a: tf.Tensor): tf.Tensor3D => tf.transpose(a as tf.Tensor3D, [0, 2, 1])
const bmm = (a: tf.Tensor, b: tf.Tensor): tf.Tensor3D => tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D)
const sumRows = (a: tf.Tensor): tf.Tensor1D => tf.sum(a, 0) as tf.Tensor1D
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

function layerNormFwd (x: tf.Tensor2D, g: tf.Tensor, b: tf.Tensor, c: Cache, key: string): tf.Tensor2D {
  const mean = tf.mean(x, -1, true) //                                       [N,1]
  const xc = tf.sub(x, mean) //                                              [N,D]
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.mul(xc, xc), -1, true), 1e-5)) // [N,1]
  const xhat = tf.mul(xc, rstd) //                                           [N,D]
  c[`${key}.xhat`] = xhat
  c[`${key}.rstd`] = rstd
  return tf.add(tf.mul(xhat, g), b) //                                       [N,D]
}

function layerNormBwd (dy: tf.Tensor2D, p: Params, c: Cache, key: string, name: string, sink: GradSink): tf.Tensor2D {
  const xhat = c[`${key}.xhat`]
  const rstd = c[`${key}.rstd`]
  sink(`${name}.g`, sumRows(tf.mul(dy, xhat))) //                            [D]
  sink(`${name}.b`, sumRows(dy)) //                                          [D]
  const dxhat = tf.mul(dy, p(`${name}.g`)) //                                [N,D]
  // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
  const m1 = tf.mean(dxhat, -1, true)
  const m2 = tf.mean(tf.mul(dxhat, xhat), -1, true)
  return tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(xhat, m2)), rstd) as tf.Tensor2D
}

// ---- GELU, tanh approximation -----------------------------------------------------------------

const GELU_C = Math.sqrt(2 / Math.PI)
const GELU_A = 0.044715

function geluFwd (a: tf.Tensor2D, c: Cache, key: string): tf.Tensor2D {
  const u = tf.mul(tf.add(a, tf.mul(tf.mul(tf.mul(a, a), a), GELU_A)), GELU_C)
  const t = tf.tanh(u) //                                           [N,F]
  c[`${key}.a`] = a
  c[`${key}.t`] = t
  return tf.mul(tf.mul(a, 0.5), tf.add(t, 1)) as tf.Tensor2D //     [N,F]
}

function geluBwd (dy: tf.Tensor2D, c: Cache, key: string): tf.Tensor2D {
  const a = c[`${key}.a`]
  const t = c[`${key}.t`]
  // d/da [0.5 a (1 + t)] = 0.5 (1 + t) + 0.5 a (1 - t^2) * C (1 + 3 A a^2)
  const du = tf.mul(tf.add(tf.mul(tf.mul(a, a), 3 * GELU_A), 1), GELU_C)
  const local = tf.add(tf.mul(tf.add(t, 1), 0.5), tf.mul(tf.mul(tf.mul(a, 0.5), tf.sub(1, tf.mul(t, t))), du))
  return tf.mul(dy, local) as tf.Tensor2D
}

// ---- Causal multi-head self-attention ---------------------------------------------------------

function attentionFwd (m: ModelConfig, p: Params, pre: string, h: tf.Tensor2D, B: number, T: number, c: Cache, key: string): tf.Tensor2D {
  const D = m.dModel
  const H = m.nHeads
  const hd = D / H
  // [N,D] -> [B,T,H,hd] -> [B,H,T,hd] -> [B*H,T,hd]
  const split = (t: tf.Tensor): tf.Tensor3D => t.reshape([B, T, H, hd]).transpose([0, 2, 1, 3]).reshape([B * H, T, hd])
  const q = split(mm(h, p(`${pre}.wq`))) //                                       [BH,T,hd]
  const k = split(mm(h, p(`${pre}.wk`))) //                                       [BH,T,hd]
  const v = split(mm(h, p(`${pre}.wv`))) //                                       [BH,T,hd]
  const scale = 1 / Math.sqrt(hd)
  const s = tf.add(tf.mul(bmm(q, bT(k)), scale), causalMask(T)) //                [BH,T,T]
  const P = tf.softmax(s) as tf.Tensor3D //                                       [BH,T,T]
  const y = bmm(P, v).reshape([B, H, T, hd]).transpose([0, 2, 1, 3]).reshape([B * T, D]) // [N,D]
  Object.assign(c, { [`${key}.h`]: h, [`${key}.q`]: q, [`${key}.k`]: k, [`${key}.v`]: v, [`${key}.P`]: P, [`${key}.y`]: y })
  return mm(y, p(`${pre}.wo`)) //                                                 [N,D]
}

function attentionBwd (m: ModelConfig, dout: tf.Tensor2D, p: Params, pre: string, B: number, T: number, c: Cache, key: string, sink: GradSink): tf.Tensor2D {
  const D = m.dModel
  const H = m.nHeads
  const hd = D / H
  const { [`${key}.h`]: h, [`${key}.q`]: q, [`${key}.k`]: k, [`${key}.v`]: v, [`${key}.P`]: P, [`${key}.y`]: y } = c
  const split = (t: tf.Tensor): tf.Tensor3D => t.reshape([B, T, H, hd]).transpose([0, 2, 1, 3]).reshape([B * H, T, hd])
  const merge = (t: tf.Tensor): tf.Tensor2D => t.reshape([B, H, T, hd]).transpose([0, 2, 1, 3]).reshape([B * T, D])
  sink(`${pre}.wo`, mm(T2(y), dout)) //                                 [D,D]
  const dy = split(mmT(dout, p(`${pre}.wo`))) //                     [BH,T,hd]
  const dP = bmm(dy, bT(v)) //                                          [BH,T,T]
  const dv = bmm(bT(P), dy) //                                          [BH,T,hd]
  // softmax backward: dS = P * (dP - sum(dP * P, -1)), then the 1/sqrt(hd) scale
  const dS = tf.mul(tf.mul(P, tf.sub(dP, tf.sum(tf.mul(dP, P), -1, true))), 1 / Math.sqrt(hd)) // [BH,T,T]
  const dq = merge(bmm(dS, k)) //                                       [N,D]
  const dk = merge(bmm(bT(dS), q)) //                                   [N,D]
  const dvm = merge(dv) //                                              [N,D]
  const hT = T2(h) //                                                   [D,N]
  sink(`${pre}.wq`, mm(hT, dq))
  sink(`${pre}.wk`, mm(hT, dk))
  sink(`${pre}.wv`, mm(hT, dvm))
  return tf.addN([mmT(dq, p(`${pre}.wq`)), mmT(dk, p(`${pre}.wk`)), mmT(dvm, p(`${pre}.wv`))]) as tf.Tensor2D // [N,D]
}

// ---- MLP ----------------------------------------------------------------------------------------

function mlpFwd (p: Params, pre: string, h: tf.Tensor2D, c: Cache, key: string): tf.Tensor2D {
  const a = tf.add(mm(h, p(`${pre}.w1`)), p(`${pre}.b1`)) as tf.Tensor2D //   [N,F]
  const g = geluFwd(a, c, `${key}.gelu`) //                                   [N,F]
  c[`${key}.h`] = h
  c[`${key}.g`] = g
  return tf.add(mm(g, p(`${pre}.w2`)), p(`${pre}.b2`)) as tf.Tensor2D //      [N,D]
}

function mlpBwd (dout: tf.Tensor2D, p: Params, pre: string, c: Cache, key: string, sink: GradSink): tf.Tensor2D {
  sink(`${pre}.w2`, mm(T2(c[`${key}.g`]), dout)) //      [F,D]
  sink(`${pre}.b2`, sumRows(dout)) //                     [D]
  const dg = mmT(dout, p(`${pre}.w2`)) //              [N,F]
  const da = geluBwd(dg, c, `${key}.gelu`) //             [N,F]
  sink(`${pre}.w1`, mm(T2(c[`${key}.h`]), da)) //         [D,F]
  sink(`${pre}.b1`, sumRows(da)) //                       [F]
  return mmT(da, p(`${pre}.w1`)) //                    [N,D]
}

// ---- Block, embedding, head -------------------------------------------------------------------

/** Pre-LN block i: x [N,D] -> x + attn(ln1(x)), then + mlp(ln2(.)). */
export function blockFwd (m: ModelConfig, p: Params, i: number, x: tf.Tensor2D, B: number, T: number, c: Cache): tf.Tensor2D {
  const pre = `blocks.${i}`
  const h1 = layerNormFwd(x, p(`${pre}.ln1.g`), p(`${pre}.ln1.b`), c, `${pre}.ln1`)
  const x1 = tf.add(x, attentionFwd(m, p, `${pre}.attn`, h1, B, T, c, `${pre}.attn`)) as tf.Tensor2D
  const h2 = layerNormFwd(x1, p(`${pre}.ln2.g`), p(`${pre}.ln2.b`), c, `${pre}.ln2`)
  return tf.add(x1, mlpFwd(p, `${pre}.mlp`, h2, c, `${pre}.mlp`)) as tf.Tensor2D
}

/** Backward of block i: gradient of its output [N,D] -> gradient of its input [N,D]. */
export function blockBwd (m: ModelConfig, p: Params, i: number, dx2: tf.Tensor2D, B: number, T: number, c: Cache, sink: GradSink): tf.Tensor2D {
  const pre = `blocks.${i}`
  const dh2 = mlpBwd(dx2, p, `${pre}.mlp`, c, `${pre}.mlp`, sink)
  const dx1 = tf.add(dx2, layerNormBwd(dh2, p, c, `${pre}.ln2`, `${pre}.ln2`, sink)) as tf.Tensor2D
  const dh1 = attentionBwd(m, dx1, p, `${pre}.attn`, B, T, c, `${pre}.attn`, sink)
  return tf.add(dx1, layerNormBwd(dh1, p, c, `${pre}.ln1`, `${pre}.ln1`, sink)) as tf.Tensor2D
}

/** tokens [B,T] -> [N,D]: one-hot matmul (tf.gather's gradient is not registered on wasm) + positions. */
export function embedFwd (m: ModelConfig, p: Params, tokens: tf.Tensor2D, c: Cache): tf.Tensor2D {
  const [B, T] = tokens.shape
  const onehot = tf.oneHot(tokens.reshape([B * T]) as tf.Tensor1D, m.vocab).toFloat() //   [N,V]
  c['embed.onehot'] = onehot
  const pos = p('embed.pos').slice([0, 0], [T, m.dModel]) //                              [T,D]
  return tf.add(mm(onehot, p('embed.tok')).reshape([B, T, m.dModel]), pos).reshape([B * T, m.dModel]) as tf.Tensor2D
}

export function embedBwd (m: ModelConfig, dx: tf.Tensor2D, B: number, T: number, c: Cache, sink: GradSink): void {
  sink('embed.tok', mm(T2(c['embed.onehot']), dx)) //                                    [V,D]
  const dpos = tf.sum(dx.reshape([B, T, m.dModel]), 0) //                                [T,D]
  sink('embed.pos', T < m.seqLen ? tf.pad(dpos, [[0, m.seqLen - T], [0, 0]]) : dpos) //  [seqLen,D]
}

/** Final norm, LM head and mean cross-entropy: x [N,D], targets [N] -> loss (nats). */
export function headFwd (m: ModelConfig, p: Params, x: tf.Tensor2D, targets: tf.Tensor1D, c: Cache): tf.Scalar {
  const h = layerNormFwd(x, p('head.ln.g'), p('head.ln.b'), c, 'head.ln') //    [N,D]
  const logits = mm(h, p('head.w')) //                                          [N,V]
  const logp = tf.logSoftmax(logits) //                                         [N,V]
  const onehot = tf.oneHot(targets, m.vocab).toFloat() //                       [N,V]
  Object.assign(c, { 'head.h': h, 'head.logp': logp, 'head.onehot': onehot })
  return tf.neg(tf.mean(tf.sum(tf.mul(logp, onehot), -1))) as tf.Scalar
}

/** Backward of the mean cross-entropy with respect to x [N,D] (loss gradient 1). */
export function headBwd (m: ModelConfig, p: Params, N: number, c: Cache, sink: GradSink): tf.Tensor2D {
  const dlogits = tf.div(tf.sub(tf.exp(c['head.logp']), c['head.onehot']), N) as tf.Tensor2D // [N,V]
  sink('head.w', mm(T2(c['head.h']), dlogits)) //                                            [D,V]
  const dh = mmT(dlogits, p('head.w')) //                                                 [N,D]
  return layerNormBwd(dh, p, c, 'head.ln', 'head.ln', sink)
}

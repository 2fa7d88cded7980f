/**
 * The decoder-only transformer, top to bottom, as pure functions of named parameters.
 * Shapes: B sequences, T positions, D = dModel, H heads of size hd = D / H, V = vocab, F = mlpRatio*D.
 *
 * Pre-LayerNorm blocks: x = x + attn(ln1(x)); x = x + mlp(ln2(x)). Embedding is a one-hot matmul
 * rather than tf.gather, because gather's gradient (UnsortedSegmentSum) is not registered on wasm.
 */
import * as tf from '@tensorflow/tfjs'
import type { ModelConfig } from './config.js'
import { bmm, causalMask, crossEntropy, gelu, layerNorm, linear, matmul } from './ops.js'

/** Looks up a parameter by its global name. */
export type Params = (name: string) => tf.Tensor

/** tokens [B,T] int32 -> residual stream [B,T,D]. */
export function embed (m: ModelConfig, p: Params, tokens: tf.Tensor2D): tf.Tensor3D {
  const [B, T] = tokens.shape
  const onehot = tf.oneHot(tokens.reshape([B * T]) as tf.Tensor1D, m.vocab).toFloat() as tf.Tensor2D // [B*T,V]
  const tok = matmul(onehot, p('embed.tok') as tf.Tensor2D) //                                           [B*T,D]
  const pos = p('embed.pos').slice([0, 0], [T, m.dModel]) //                                            [T,D]
  return tf.add(tok.reshape([B, T, m.dModel]), pos) as tf.Tensor3D //                                   [B,T,D]
}

/** Causal multi-head self-attention on h [B,T,D] -> [B,T,D]. */
function attention (m: ModelConfig, p: Params, pre: string, h: tf.Tensor3D): tf.Tensor3D {
  const [B, T, D] = h.shape
  const H = m.nHeads
  const hd = D / H
  // [B,T,D] -> [B,T,H,hd] -> [B,H,T,hd] -> [B*H,T,hd]
  const heads = (t: tf.Tensor): tf.Tensor3D => t.reshape([B, T, H, hd]).transpose([0, 2, 1, 3]).reshape([B * H, T, hd])
  const q = heads(linear(h, p(`${pre}.wq`))) //                         [B*H,T,hd]
  const k = heads(linear(h, p(`${pre}.wk`))) //                         [B*H,T,hd]
  const v = heads(linear(h, p(`${pre}.wv`))) //                         [B*H,T,hd]
  const kT = k.transpose([0, 2, 1]) as tf.Tensor3D //                   [B*H,hd,T]
  const scores = tf.add(tf.mul(bmm(q, kT), 1 / Math.sqrt(hd)), causalMask(T)) // [B*H,T,T]
  const att = tf.softmax(scores) as tf.Tensor3D //                     [B*H,T,T]
  const y = bmm(att, v) //                                              [B*H,T,hd]
  const merged = y.reshape([B, H, T, hd]).transpose([0, 2, 1, 3]).reshape([B, T, D]) // [B,T,D]
  return linear(merged, p(`${pre}.wo`)) as tf.Tensor3D //              [B,T,D]
}

/** GELU MLP on h [B,T,D] -> [B,T,D]. */
function mlp (p: Params, pre: string, h: tf.Tensor3D): tf.Tensor3D {
  const hidden = gelu(tf.add(linear(h, p(`${pre}.w1`)), p(`${pre}.b1`))) // [B,T,F]
  return tf.add(linear(hidden, p(`${pre}.w2`)), p(`${pre}.b2`)) as tf.Tensor3D // [B,T,D]
}

/** One pre-LN block i: x [B,T,D] -> [B,T,D]. */
export function block (m: ModelConfig, p: Params, i: number, x: tf.Tensor3D): tf.Tensor3D {
  const pre = `blocks.${i}`
  const a = attention(m, p, `${pre}.attn`, layerNorm(x, p(`${pre}.ln1.g`), p(`${pre}.ln1.b`)) as tf.Tensor3D)
  const x1 = tf.add(x, a) as tf.Tensor3D
  const f = mlp(p, `${pre}.mlp`, layerNorm(x1, p(`${pre}.ln2.g`), p(`${pre}.ln2.b`)) as tf.Tensor3D)
  return tf.add(x1, f) as tf.Tensor3D
}

/** Final norm and LM head: x [B,T,D] -> logits [B*T,V]. */
export function logits (m: ModelConfig, p: Params, x: tf.Tensor3D): tf.Tensor2D {
  const [B, T, D] = x.shape
  const h = layerNorm(x, p('head.ln.g'), p('head.ln.b')).reshape([B * T, D]) as tf.Tensor2D // [B*T,D]
  return matmul(h, p('head.w') as tf.Tensor2D) //                                              [B*T,V]
}

/** Mean next-byte cross-entropy (nats) of x [B,T,D] against targets [B,T]. */
export function headLoss (m: ModelConfig, p: Params, x: tf.Tensor3D, targets: tf.Tensor2D): tf.Scalar {
  const [B, T] = targets.shape
  return crossEntropy(logits(m, p, x), targets.reshape([B * T]) as tf.Tensor1D)
}

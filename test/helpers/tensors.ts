/** Comparing the tensor sets two peers serve, bit for bit (replicas, exact copies). */
import { expect } from 'vitest'
import type { TensorSet } from '../../model/safetensors.js'

function bytes (t: { data: ArrayBufferView }): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)
}

/** `y` holds exactly the tensors of `x`, each equal bit for bit; `what` names the pair in a failure. */
export function expectSameTensors (x: TensorSet, y: TensorSet, what: string): void {
  expect([...y.keys()].sort(), `${what}: tensor names`).toEqual([...x.keys()].sort())
  for (const [name, t] of x) {
    const u = y.get(name)
    expect(u != null && bytes(u).equals(bytes(t)), `${what}: ${name} differs`).toBe(true)
  }
}

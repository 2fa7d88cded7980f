/**
 * Workaround for xsalsa20@1.2.0, the stream cipher of @libp2p/pnet 3.0.27. All its instances share
 * one WebAssembly memory, but each caches its own Uint8Array view of it; once another instance grows
 * the memory that view is detached (length 0) and the next update "grows" the memory again. With
 * traffic both ways the memory grows a page or two at every switch (~14 MiB per 256 MB received)
 * until its ~62 MiB cap, and then the connection's message handler throws RangeError
 * (WebAssembly.Memory.grow) and the process dies: after about 1 GB over a private network.
 * This re-attaches a detached view before each update. Applied once per process, only when a
 * swarm key is used. Remove when upstream fixes it.
 */
import { createRequire } from 'node:module'

interface XSalsa20Proto {
  update: (input: Uint8Array, output?: Uint8Array) => Uint8Array
  __spotpipePatched?: boolean
}

export function patchPnetCipher (): void {
  // Resolve xsalsa20 as @libp2p/pnet does, so the patched module is the one it uses.
  const require = createRequire(createRequire(import.meta.url).resolve('@libp2p/pnet'))
  const proto = (require('xsalsa20') as { prototype: XSalsa20Proto }).prototype
  if (proto.__spotpipePatched === true) return
  const update = proto.update
  let latest: ArrayBuffer | undefined
  proto.update = function (this: { _xor?: { _memory?: Uint8Array } }, input: Uint8Array, output?: Uint8Array): Uint8Array {
    const impl = this._xor
    if (impl?._memory !== undefined && impl._memory.byteLength === 0 && latest !== undefined) impl._memory = new Uint8Array(latest)
    const out = update.call(this, input, output)
    if (impl?._memory !== undefined) latest = impl._memory.buffer as ArrayBuffer
    return out
  }
  proto.__spotpipePatched = true
}

/**
 * Donor process of bench:transfer (not run directly). Receives its config over IPC, builds N MB of
 * float32 tensors as stage 0, serves them over the weights protocol and reports its multiaddr back.
 *
 * The same tensors are served as two stages: stage 0 is "cold", a new iteration on every request (the
 * server sums (CRC-32) every tensor for the manifest, as for a live stage that keeps training); stage 1 is
 * "warm", always iteration 1 (checksums cached after the first request). The snapshot is the same
 * arrays every time (no copy): the bench measures the transfer, not the trainer's snapshot.
 *
 * FRAMES_PROTOCOL streams the same bytes as bare 1 MiB frames with no protocol work on either side:
 * the ceiling libp2p itself (tcp + noise + yamux + framing) puts on any stream protocol.
 */
import '../common/polyfill.js'
import { once } from 'node:events'
import { pathToFileURL } from 'node:url'
import type { TensorSet } from '../model/safetensors.js'
import { createPeerLibp2p, endFrames, writeFrame } from '../net/index.js'
import { serveWeights } from '../net/index.js'

export const FRAMES_PROTOCOL = '/spotpipe/bench-frames/1.0.0'

export interface DonorConfig {
  type: 'start'
  totalBytes: number
  tensorBytes: number
  /** swarm key file text (a private cluster), or undefined for an open one */
  swarmKey?: string
  chunkBytes?: number
}

export type DonorReply =
  | { type: 'ready', addrs: string[], buildMs: number }
  | { type: 'stats', served: number, bytes: number }
  | { type: 'error', message: string }

const send = (m: DonorReply): void => { process.send?.(m) }

async function main (): Promise<void> {
  process.on('disconnect', () => { process.exit(1) }) // the bench is gone
  const [cfg] = await once(process, 'message') as [DonorConfig]
  const t0 = performance.now()
  const tensors: TensorSet = new Map()
  const rows = 1024
  const cols = cfg.tensorBytes / 4 / rows
  let seed = 1
  for (let i = 0, left = cfg.totalBytes; left > 0; i++, left -= cfg.tensorBytes) {
    const data = new Float32Array(rows * cols)
    for (let j = 0; j < data.length; j++) {
      seed = (seed * 1103515245 + 12345) >>> 0
      data[j] = (seed / 2 ** 32 - 0.5) * 0.02
    }
    tensors.set(`blocks.${i}.mlp.w1`, { dtype: 'F32', shape: [rows, cols], data })
  }
  const node = await createPeerLibp2p({ swarmKey: cfg.swarmKey === undefined ? undefined : new TextEncoder().encode(cfg.swarmKey) })
  let coldIteration = 0
  const server = await serveWeights(node, {
    snapshot: (stage, minIteration) => {
      if (stage === 0) return { iteration: coldIteration = Math.max(coldIteration + 1, minIteration), tensors }
      if (stage === 1 && minIteration <= 1) return { iteration: 1, tensors }
      return undefined
    }
  }, { chunkBytes: cfg.chunkBytes })
  await node.handle(FRAMES_PROTOCOL, async (stream) => {
    try {
      for (const t of tensors.values()) {
        const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
        for (let o = 0; o < bytes.byteLength; o += 1024 * 1024) await writeFrame(stream, bytes.subarray(o, o + 1024 * 1024))
      }
      await endFrames(stream)
    } catch (err) {
      stream.abort(err as Error)
    }
  })
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stats') send({ type: 'stats', served: server.stats.served, bytes: server.stats.bytes })
  })
  send({ type: 'ready', addrs: node.getMultiaddrs().map(a => a.toString()), buildMs: performance.now() - t0 })
}

// only as the child entry point: bench/transfer.ts imports FRAMES_PROTOCOL from here
if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: Error) => {
    send({ type: 'error', message: err.stack ?? err.message })
    process.exit(1)
  })
}

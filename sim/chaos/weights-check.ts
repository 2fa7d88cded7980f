/**
 * The end-of-run weights check: a libp2p node of the harness's own (with the swarm key when the
 * cluster is private) pulls every stage's parameters and Adam moments from its holder over the
 * weights protocol. The fetch refuses any NaN or Inf (net/weights), so a stage that fetches is finite.
 * With replicas it pulls from every serving replica of every stage and digests what each sent
 * (SHA-256 over the tensors' names, shapes and bytes in name order), so the replicas can be
 * compared bit for bit (invariant replicas-identical).
 */
import { createHash } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import type { TensorSet } from '../../model/index.js'
import { loadSwarmKey, createPeerLibp2p } from '../../net/index.js'
import { fetchWeights } from '../../net/index.js'
import type { WeightsCheck } from './history.js'

export interface WeightsCheckInput {
  /** Stage -> holder peer id. */
  holders: string[]
  /** Stage -> its serving replicas (the holder among them); when given, every one is pulled and digested. */
  replicas?: string[][]
  /** Peer id -> a dialable multiaddr (with /p2p/). */
  addrOf: (peerId: string) => string | undefined
  swarmKeyFile?: string
  timeoutMs?: number
}

/** SHA-256 over every tensor's name, shape and bytes, in name order: equal digests, bit-identical sets. */
export function tensorsDigest (tensors: TensorSet): string {
  const h = createHash('sha256')
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)
    if (t == null) continue
    h.update(`${name}\0${t.dtype}\0${t.shape.join(',')}\0`)
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))
  }
  return h.digest('hex')
}

export async function checkWeights (input: WeightsCheckInput): Promise<WeightsCheck[]> {
  const swarmKey = input.swarmKeyFile != null ? await loadSwarmKey(input.swarmKeyFile) : undefined
  const node = await createPeerLibp2p({ listen: ['/ip4/127.0.0.1/tcp/0'], swarmKey })
  const targets: Array<{ stage: number, peerId: string, replica?: number }> = input.replicas == null
    ? input.holders.map((peerId, stage) => ({ stage, peerId }))
    : input.holders.flatMap((holder, stage) => {
      const serving = input.replicas?.[stage] ?? []
      return serving.length === 0 ? [{ stage, peerId: holder, replica: 0 }] : serving.map((peerId, replica) => ({ stage, peerId, replica }))
    })
  try {
    return await Promise.all(targets.map(async ({ stage, peerId, replica }): Promise<WeightsCheck> => {
      const which = replica != null ? { replica } : {}
      const addr = peerId === '' ? undefined : input.addrOf(peerId)
      if (addr == null) return { stage, peerId, ok: false, ...which, error: peerId === '' ? 'no holder in the final assignment' : 'the holder is not a running fleet process' }
      try {
        const r = await fetchWeights(node, { donors: [{ peer: multiaddr(addr) }], stage, includeOptimizer: true, timeoutMs: input.timeoutMs ?? 30_000 })
        return { stage, peerId, ok: true, iteration: r.iteration, ...which, ...(replica != null ? { digest: tensorsDigest(r.tensors) } : {}) }
      } catch (err) {
        const e = err as Error & { code?: string }
        return { stage, peerId, ok: false, ...which, error: `${e.code ?? e.name}: ${e.message}` }
      }
    }))
  } finally {
    await node.stop()
  }
}

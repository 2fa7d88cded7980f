/**
 * The end-of-run weights check: a libp2p node of the harness's own (with the swarm key when the
 * cluster is private) pulls every stage's parameters and Adam moments from its holder over the
 * weights protocol. The fetch refuses any NaN or Inf (net/weights), so a stage that fetches is finite.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { loadSwarmKey, createPeerLibp2p } from '../../net/index.js'
import { fetchWeights } from '../../net/index.js'
import type { WeightsCheck } from './history.js'

export interface WeightsCheckInput {
  /** Stage -> holder peer id. */
  holders: string[]
  /** Peer id -> a dialable multiaddr (with /p2p/). */
  addrOf: (peerId: string) => string | undefined
  swarmKeyFile?: string
  timeoutMs?: number
}

export async function checkWeights (input: WeightsCheckInput): Promise<WeightsCheck[]> {
  const swarmKey = input.swarmKeyFile != null ? await loadSwarmKey(input.swarmKeyFile) : undefined
  const node = await createPeerLibp2p({ listen: ['/ip4/127.0.0.1/tcp/0'], swarmKey })
  try {
    return await Promise.all(input.holders.map(async (peerId, stage): Promise<WeightsCheck> => {
      const addr = peerId === '' ? undefined : input.addrOf(peerId)
      if (addr == null) return { stage, peerId, ok: false, error: peerId === '' ? 'no holder in the final assignment' : 'the holder is not a running fleet process' }
      try {
        const r = await fetchWeights(node, { donors: [{ peer: multiaddr(addr) }], stage, includeOptimizer: true, timeoutMs: input.timeoutMs ?? 30_000 })
        return { stage, peerId, ok: true, iteration: r.iteration }
      } catch (err) {
        const e = err as Error & { code?: string }
        return { stage, peerId, ok: false, error: `${e.code ?? e.name}: ${e.message}` }
      }
    }))
  } finally {
    await node.stop()
  }
}

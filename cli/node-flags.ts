/** Flags and file loading shared by the commands that start a libp2p node. */
import { loadOrCreateIdentity, loadSwarmKey, loadIdentity } from '../node/transport/index.js'
import type { PrivateKey } from '@libp2p/interface'
import type { FlagSpec } from './flags.js'

export const NODE_FLAGS = {
  cluster: { type: 'string' },
  listen: { type: 'string', multiple: true },
  identity: { type: 'string' },
  'swarm-key': { type: 'string' },
  'create-identity': { type: 'boolean' }
} as const satisfies FlagSpec

export const NODE_HELP = `  --cluster ID         cluster name, selects the gossip topics (default "spotpipe")
  --listen ADDR        multiaddr to listen on, repeatable (default /ip4/127.0.0.1/tcp/0)
  --identity FILE      peer identity key file (see spotpipe keygen); the peer id stays the same
  --create-identity    create the identity file if it does not exist
  --swarm-key FILE     private-network key: only nodes with the same key can connect
`

export interface NodeOptions {
  clusterId: string
  listen?: string[]
  privateKey?: PrivateKey
  swarmKey?: Uint8Array
}

export async function nodeFromFlags (v: Record<string, unknown>): Promise<NodeOptions> {
  const id = v.identity as string | undefined
  return {
    clusterId: (v.cluster as string | undefined) ?? 'spotpipe',
    listen: v.listen as string[] | undefined,
    privateKey: id == null ? undefined : v['create-identity'] === true ? await loadOrCreateIdentity(id) : await loadIdentity(id),
    swarmKey: v['swarm-key'] != null ? await loadSwarmKey(v['swarm-key'] as string) : undefined
  }
}

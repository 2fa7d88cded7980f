/**
 * Flags and file loading shared by the commands that start a libp2p node.
 *
 * A cluster is private by default: every node holds the cluster secret (a swarm-key file), and a
 * node without it cannot complete a connection to one with it. The coordinator creates the file
 * when it is given none; peers and observers must name it with --swarm-key, or say --open to take
 * part in an open cluster (any host that can reach it may connect) on purpose.
 */
import { resolve } from 'node:path'
import { loadOrCreateIdentity, loadOrCreateSwarmKey, loadSwarmKey, loadIdentity } from '../net/index.js'
import type { PrivateKey } from '@libp2p/interface'
import { UsageError } from './errors.js'
import type { FlagSpec } from './flags.js'

/** --swarm-key and --open: how a node gets into its cluster. */
export const ACCESS_FLAGS = {
  'swarm-key': { type: 'string' },
  open: { type: 'boolean' }
} as const satisfies FlagSpec

export const NODE_FLAGS = {
  cluster: { type: 'string' },
  listen: { type: 'string', multiple: true },
  identity: { type: 'string' },
  'create-identity': { type: 'boolean' },
  ...ACCESS_FLAGS
} as const satisfies FlagSpec

export const ACCESS_HELP = `  --swarm-key FILE     the cluster secret (printed by the coordinator, or spotpipe keygen --swarm-key):
                       only nodes holding the same file can connect
  --open               an open cluster instead (coordinator, peers, status and top alike):
                       any host that can reach a node can connect to it
`

export const NODE_HELP = `  --cluster ID         cluster name, selects the gossip topics (default "spotpipe")
  --listen ADDR        multiaddr to listen on, repeatable (default /ip4/127.0.0.1/tcp/0)
  --identity FILE      peer identity key file (see spotpipe keygen); the peer id stays the same
  --create-identity    create the identity file if it does not exist
${ACCESS_HELP}`

/** How a node takes part: with the cluster secret read from `file`, or in an open cluster. */
export type Access = { open: true } | { open: false, file: string, swarmKey: Uint8Array, created: boolean }

/**
 * Reads --swarm-key / --open. Without either, a peer or observer refuses to start (UsageError
 * naming both flags); the coordinator passes `createAt`, where it loads or creates the secret.
 */
export async function accessFromFlags (v: Record<string, unknown>, createAt?: string): Promise<Access> {
  const file = v['swarm-key'] as string | undefined
  if (v.open === true) {
    if (file != null) throw new UsageError('--open and --swarm-key contradict each other: give one of them')
    return { open: true }
  }
  if (file != null) return { open: false, file: resolve(file), swarmKey: await loadSwarmKey(file), created: false }
  if (createAt == null) {
    throw new UsageError('spotpipe clusters are private by default: give --swarm-key FILE (the key file the coordinator printed), or --open to join an open cluster')
  }
  const { key, created } = await loadOrCreateSwarmKey(createAt)
  return { open: false, file: resolve(createAt), swarmKey: key, created }
}

/** The flags that give another node the same access (what a coordinator tells its peers). */
export function accessArgs (access: Access): string[] {
  return access.open ? ['--open'] : ['--swarm-key', access.file]
}

export interface NodeOptions {
  clusterId: string
  listen?: string[]
  privateKey?: PrivateKey
  swarmKey?: Uint8Array
  access: Access
}

/** The node flags; `createKeyAt` as for accessFromFlags. */
export async function nodeFromFlags (v: Record<string, unknown>, createKeyAt?: string): Promise<NodeOptions> {
  const id = v.identity as string | undefined
  const privateKey = id == null ? undefined : v['create-identity'] === true ? await loadOrCreateIdentity(id) : await loadIdentity(id)
  const access = await accessFromFlags(v, createKeyAt)
  return {
    clusterId: (v.cluster as string | undefined) ?? 'spotpipe',
    listen: v.listen as string[] | undefined,
    privateKey,
    swarmKey: access.open ? undefined : access.swarmKey,
    access
  }
}

/**
 * The read-only observer behind `spotpipe status` and `spotpipe top`: a libp2p node that dials the
 * coordinator, listens to the cluster's heartbeat and control topics (control messages only when
 * signed by the pinned coordinator) and never publishes. What it hears feeds a ClusterModel
 * (cluster-model.ts), which keeps the picture of the cluster.
 */
import { EventEmitter } from 'node:events'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { SpotpipeError } from '../common/index.js'
import { createLog } from '../common/index.js'
import { ClusterGossip } from '../net/index.js'
import { createPeerLibp2p, secretMismatchHint, type PeerLibp2p } from '../net/index.js'
import { ClusterModel } from './cluster-model.js'
import type { ClusterView, StatusSnapshot } from './cluster-status.js'
import { UsageError } from './errors.js'
import type { FlagSpec } from './flags.js'
import { ACCESS_FLAGS, ACCESS_HELP, accessFromFlags } from './node-flags.js'
import { oneLine } from './render/format.js'

export { ClusterModel, type ClusterModelInit } from './cluster-model.js'
export type { ClusterEvent, ClusterView, EventKind, PeerStatus, StageStatus, StatusSnapshot } from './cluster-status.js'

const log = createLog('observer')

/** The coordinator could not be dialled (refused, timed out, wrong swarm key, wrong peer id). */
export class UnreachableError extends SpotpipeError {
  readonly address: string
  constructor (address: string, detail: string, options?: { cause?: unknown }) {
    super('ERR_UNREACHABLE', `cannot reach the coordinator at ${address}: ${detail}`, options)
    this.address = address
  }
}

// ---------------------------------------------------------------- the network side

export interface ObserverInit {
  clusterId: string
  /** The coordinator's multiaddr, ending in /p2p/<peer id>. */
  coordinator: string
  swarmKey?: Uint8Array
  /** How long the first dial may take. @default 5000 */
  dialTimeoutMs?: number
  silentMs?: number
}

/** Parses a coordinator multiaddr and returns its peer id; a bad address is a UsageError. */
export function coordinatorIdOf (addr: string): string {
  let id: string | undefined
  try {
    id = multiaddr(addr).getComponents().find(c => c.name === 'p2p')?.value
  } catch (err) {
    throw new UsageError(`--coordinator "${addr}" is not a multiaddr: ${(err as Error).message}`)
  }
  if (id == null) throw new UsageError(`--coordinator "${addr}" must end in /p2p/<coordinator peer id>`)
  try {
    peerIdFromString(id)
  } catch {
    throw new UsageError(`--coordinator "${addr}": "${id}" is not a peer id`)
  }
  return id
}

/**
 * Joins a cluster read-only. Emits 'change' whenever the model changed (a message or a new event).
 * It never publishes: gossipsub only carries its subscriptions.
 */
export class Observer extends EventEmitter {
  readonly init: ObserverInit
  readonly coordinatorId: string
  readonly model: ClusterModel
  node?: PeerLibp2p
  private gossip?: ClusterGossip
  private timers: NodeJS.Timeout[] = []
  private redialing = false

  constructor (init: ObserverInit) {
    super()
    this.init = init
    this.coordinatorId = coordinatorIdOf(init.coordinator)
    this.model = new ClusterModel({ clusterId: init.clusterId, coordinator: init.coordinator, startedAt: Date.now(), silentMs: init.silentMs })
  }

  /** Starts the node, dials the coordinator (UnreachableError if that fails) and subscribes. */
  async start (): Promise<void> {
    // dial-only: an observer needs no listen address
    const node = await createPeerLibp2p({ swarmKey: this.init.swarmKey, listen: [] })
    this.node = node
    this.gossip = new ClusterGossip(node, {
      clusterId: this.init.clusterId,
      coordinatorId: this.coordinatorId,
      onMessage: (m) => { if (this.model.onMessage(m, Date.now())) this.emit('change') }
    })
    this.gossip.start()
    const timeout = this.init.dialTimeoutMs ?? 5000
    try {
      await node.dial(multiaddr(this.init.coordinator), { signal: AbortSignal.timeout(timeout) })
    } catch (err) {
      await this.stop()
      const e = err as Error
      const detail = e.name === 'TimeoutError' || e.name === 'AbortError' ? `no answer within ${timeout} ms (a firewall, or a different --swarm-key?)` : oneLine(e.message + secretMismatchHint(e))
      throw new UnreachableError(this.init.coordinator, detail, { cause: err })
    }
    this.model.init.startedAt = Date.now()
    this.timers.push(setInterval(() => { if (this.model.tick(Date.now())) this.emit('change') }, 250))
    // keep dialling a coordinator that went away (it restarts on the same address)
    this.timers.push(setInterval(() => { void this.redial() }, 2000))
    for (const t of this.timers) t.unref()
  }

  get connected (): boolean {
    return this.node != null && this.node.getConnections(peerIdFromString(this.coordinatorId)).length > 0
  }

  private async redial (): Promise<void> {
    if (this.node == null || this.redialing || this.connected) return
    this.redialing = true
    try {
      await this.node.dial(multiaddr(this.init.coordinator), { signal: AbortSignal.timeout(this.init.dialTimeoutMs ?? 5000) })
    } catch (err) {
      log('coordinator %s unreachable: %s', this.init.coordinator, (err as Error).message)
    } finally {
      this.redialing = false
    }
  }

  snapshot (now = Date.now()): StatusSnapshot { return this.model.snapshot(now) }

  view (now = Date.now()): ClusterView {
    return this.model.view(now, { coordinatorId: this.coordinatorId, connected: this.connected })
  }

  async stop (): Promise<void> {
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    this.gossip?.stop()
    this.gossip = undefined
    const node = this.node
    this.node = undefined
    try {
      await node?.stop()
    } catch (err) {
      log('stop: %s', (err as Error).message)
    }
  }
}

// ---------------------------------------------------------------- flags shared by status and top

export const OBSERVER_FLAGS = {
  coordinator: { type: 'string' },
  cluster: { type: 'string' },
  ...ACCESS_FLAGS
} as const satisfies FlagSpec

export const OBSERVER_HELP = `  --coordinator ADDR   the coordinator's multiaddr, ending in /p2p/<peer id> (printed by spotpipe coordinator)
  --cluster ID         cluster name, selects the gossip topics (default "spotpipe")
${ACCESS_HELP}`

/** Validates the observer flags and loads the swarm key (SwarmKeyError when missing or malformed). */
export async function observerFromFlags (v: Record<string, unknown>): Promise<ObserverInit> {
  const coordinator = v.coordinator as string | undefined
  if (coordinator == null) throw new UsageError('--coordinator is required (the multiaddr printed by spotpipe coordinator)')
  coordinatorIdOf(coordinator)
  const access = await accessFromFlags(v)
  return {
    clusterId: (v.cluster as string | undefined) ?? 'spotpipe',
    coordinator,
    swarmKey: access.open ? undefined : access.swarmKey
  }
}

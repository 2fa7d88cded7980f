/**
 * Builds the libp2p 3 node every spotpipe peer runs: TCP (or in-memory for tests), noise, yamux,
 * identify, ping and gossipsub with strict signing, optionally private to the holders of a cluster
 * secret (see clusterPrologue). Limits that libp2p tunes for the public internet (inbound rate per
 * host, gossipsub's same-IP penalty) are raised so a cluster of ~20 peers on one host works.
 */
import { createHmac, randomUUID } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, type Identify } from '@libp2p/identify'
import { memory } from '@libp2p/memory'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import type { PrivateKey } from '@libp2p/interface'
import { ConfigError } from '../../common/index.js'
import { MessageTooLargeError } from './errors.js'
import { swarmKeySecret } from './identity.js'
import { patchYamuxWindowUpdates } from './yamux-window-fix.js'

// a type alias, not an interface: libp2p's ServiceMap needs an implicit index signature
export type PeerServices = {
  identify: Identify
  ping: Ping
  pubsub: GossipSub
}

/** A started spotpipe node; `node.services.pubsub` is gossipsub. */
export type PeerLibp2p = Libp2p<PeerServices>

export interface PeerNodeInit {
  /**
   * The node's identity (see loadOrCreateIdentity). Without it the peer id changes on every start.
   * @default a fresh Ed25519 key
   */
  privateKey?: PrivateKey
  /**
   * Which transport to use. 'memory' only connects nodes in the same process (fast tests).
   * @default 'tcp'
   */
  transport?: 'tcp' | 'memory'
  /**
   * Listen multiaddrs.
   * @default ['/ip4/127.0.0.1/tcp/0'] for tcp, ['/memory/<random uuid>'] for memory
   */
  listen?: string[]
  /**
   * Multiaddrs to announce instead of the listen addresses (e.g. a VM's public address).
   * @default [] (announce the listen addresses)
   */
  announce?: string[]
  /**
   * The cluster secret, in the swarm-key file format (generateSwarmKey / loadSwarmKey). Nodes
   * without the same key cannot complete a connection (see clusterPrologue).
   * @default undefined (an open node: anyone who can reach it can connect)
   */
  swarmKey?: Uint8Array
  /**
   * Gossipsub heartbeat interval in ms (mesh maintenance; lower it in tests).
   * @default 1000
   */
  gossipHeartbeatMs?: number
  /**
   * Peers from one IP address before gossipsub starts penalising them (its P6 score). Loopback
   * addresses are always exempt.
   * @default 64
   */
  gossipMaxPeersPerIp?: number
  /**
   * Connections accepted per second from one host (libp2p's default, 5, breaks loopback clusters,
   * where every peer is the same host).
   * @default 1000
   */
  inboundConnectionThreshold?: number
  /**
   * Maximum open connections before libp2p starts pruning.
   * @default 512
   */
  maxConnections?: number
  /**
   * Inbound connections allowed to be mid-upgrade (pnet, noise, yamux) at once.
   * @default 128
   */
  maxIncomingPendingConnections?: number
  /**
   * Dials run in parallel.
   * @default 128
   */
  maxParallelDials?: number
  /**
   * How long a dial (connect plus upgrade) may take, in ms.
   * @default 10_000
   */
  dialTimeoutMs?: number
  /**
   * Largest yamux receive window per stream, in bytes: bounds how much a sender can have in flight
   * to a paused (slow) reader, and with the round-trip time caps one stream's throughput.
   * @default 16 MiB (yamux's default)
   */
  streamWindowBytes?: number
  /**
   * Start the node before returning.
   * @default true
   */
  start?: boolean
}

/** Largest pub/sub payload we publish: gossipsub's 4 MiB RPC limit minus room for the envelope. */
export const MAX_GOSSIP_PAYLOAD_BYTES = 4 * 1024 * 1024 - 8 * 1024

const LOOPBACK_IPS = ['127.0.0.1', '::1']

/** Creates (and by default starts) a spotpipe libp2p node. */
export async function createPeerLibp2p (init: PeerNodeInit = {}): Promise<PeerLibp2p> {
  const transport = init.transport ?? 'tcp'
  if (transport !== 'tcp' && transport !== 'memory') throw new ConfigError(`transport must be 'tcp' or 'memory', got ${String(transport)}`)
  positive('gossipHeartbeatMs', init.gossipHeartbeatMs)
  positive('gossipMaxPeersPerIp', init.gossipMaxPeersPerIp)
  positive('inboundConnectionThreshold', init.inboundConnectionThreshold)
  positive('maxConnections', init.maxConnections)
  positive('maxIncomingPendingConnections', init.maxIncomingPendingConnections)
  positive('maxParallelDials', init.maxParallelDials)
  positive('dialTimeoutMs', init.dialTimeoutMs)
  const window = init.streamWindowBytes ?? 16 * 1024 * 1024
  if (!Number.isSafeInteger(window) || window < 256 * 1024 || window > 2 ** 32 - 1) {
    throw new ConfigError(`streamWindowBytes must be an integer between 256 KiB and 4 GiB, got ${window}`)
  }
  // fail on a bad key here rather than deep inside the first connection upgrade
  const prologue = init.swarmKey == null ? undefined : clusterPrologue(init.swarmKey)

  const listen = init.listen ?? (transport === 'tcp' ? ['/ip4/127.0.0.1/tcp/0'] : [`/memory/${randomUUID()}`])
  patchYamuxWindowUpdates()
  const options: Libp2pOptions<PeerServices> = {
    start: init.start ?? true,
    addresses: { listen, announce: init.announce ?? [] },
    transports: [transport === 'tcp' ? tcp() : memory()],
    connectionEncrypters: [noise(prologue == null ? {} : { prologueBytes: prologue })],
    // a paused stream holds up to one window of received data: let its read buffer take that
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: window, maxReadBufferLength: window + 4 * 1024 * 1024 } })],
    connectionManager: {
      inboundConnectionThreshold: init.inboundConnectionThreshold ?? 1000,
      maxConnections: init.maxConnections ?? 512,
      maxIncomingPendingConnections: init.maxIncomingPendingConnections ?? 128,
      maxParallelDials: init.maxParallelDials ?? 128,
      dialTimeout: init.dialTimeoutMs ?? 10_000
    },
    // libp2p's connection monitor aborts a connection whose ping misses an adaptive timeout. A peer
    // computing a big stage on its main thread, or a CPU-starved VM, misses pings while healthy; the
    // abort then looked like a crash to the coordinator ("connection closed"), and healthy peers were
    // declared lost in cascades under load. Liveness is the coordinator's failure detector's call.
    connectionMonitor: { abortConnectionOnPingFailure: false },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        heartbeatInterval: init.gossipHeartbeatMs ?? 1000,
        scoreParams: {
          IPColocationFactorThreshold: init.gossipMaxPeersPerIp ?? 64,
          IPColocationFactorWhitelist: new Set(LOOPBACK_IPS)
        }
      })
    }
  }
  if (init.privateKey != null) options.privateKey = init.privateKey
  return await createLibp2p(options)
}

/** Domain separation for the prologue: the key file's secret is used for nothing else. */
const PROLOGUE_LABEL = 'spotpipe/cluster-membership/noise-prologue/1'

/**
 * The Noise prologue of a private cluster: HMAC-SHA256 of a fixed label under the 32-byte secret of
 * the swarm-key file. Both ends of a Noise XX handshake mix the prologue into the handshake hash,
 * which authenticates every encrypted handshake field, and it is never sent. A node with another
 * prologue (another key, or none: an open node) fails the handshake at the first encrypted field it
 * checks: a dialler at the responder's reply, a listener at the dialler's final message. So a
 * stranger never gets a connection, hence no stream and no gossip, while bulk data pays only
 * Noise's own cipher; libp2p's pnet, which XORs every byte with XSalsa20 on top, cost about half
 * the weights throughput (bench:transfer reports the private/open ratio).
 */
export function clusterPrologue (swarmKey: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', swarmKeySecret(swarmKey)).update(PROLOGUE_LABEL).digest())
}

/**
 * Publishes on gossipsub after checking the size: gossipsub silently drops messages over its
 * 4 MiB limit, so an oversized payload throws MessageTooLargeError here instead.
 */
export async function publishChecked (node: PeerLibp2p, topic: string, data: Uint8Array): Promise<number> {
  const limit = MAX_GOSSIP_PAYLOAD_BYTES - Buffer.byteLength(topic)
  if (data.byteLength > limit) {
    throw new MessageTooLargeError(`pub/sub message of ${data.byteLength} bytes on ${topic} exceeds the ${limit}-byte limit; send it over a stream instead`)
  }
  const { recipients } = await node.services.pubsub.publish(topic, data)
  return recipients.length
}

function positive (name: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isFinite(value) && value > 0)) throw new ConfigError(`${name} must be a positive number, got ${value}`)
}

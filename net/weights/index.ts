/**
 * The weights protocol (DESIGN.md "Weight gossip", "Wire"): a puller fetches a stage's tensors
 * (optionally the Adam moments) of a committed iteration, from one donor or split across several.
 *
 * One stream per transfer: request -> manifest (names, dtype, shape, byteLength, sha256), chunks in
 * tensor order, end, then the end-of-stream frame. The puller bounds-checks every chunk against the
 * manifest and verifies each tensor's sha256 when it is complete.
 *
 * @example
 * ```ts
 * const server = await serveWeights(donorNode, { snapshot: (stage, min, opt) => mySnapshot(stage, min, opt) })
 * const { iteration, tensors } = await fetchWeights(joinerNode, {
 *   donors: [{ peer: donorA }, { peer: donorB }], stage: 3, minIteration: 120, includeOptimizer: true
 * })
 * await server.stop()
 * ```
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { TensorSet } from '../../model/index.js'
import type { TensorInfo } from '../../protocols/index.js'
import { fetchWeightsImpl } from './client.js'
import { WeightsServerImpl } from './server.js'

/** What a donor serves: a host copy of a stage's tensors, which the server may read for as long as it sends. */
export interface WeightsSnapshot {
  iteration: number
  /** Parameters by global name, plus `optim.m.<name>` / `optim.v.<name>` when the optimizer is included. */
  tensors: TensorSet
  /**
   * Called once when the server is done with `tensors` (sent, refused or cut off), so a provider
   * that recycles snapshot arrays knows when it may overwrite them.
   */
  release?: () => void
}

/** Where the server gets its data (e.g. exportStageState of the stage the peer holds). */
export interface WeightsProvider {
  /**
   * A snapshot of `stage` belonging to committed iteration `minIteration` or a later one, or undefined when there is none (the puller then
   * gets ERR_ITERATION_UNAVAILABLE). The server never modifies the tensors it is given; they must not
   * change while it sends them, so hand out copies if training goes on.
   */
  snapshot: (stage: number, minIteration: number, includeOptimizer: boolean) =>
  WeightsSnapshot | undefined | Promise<WeightsSnapshot | undefined>
}

/**
 * Fault injection for tests only (a deliberately faulty donor, like hivemind's faulty peers). Never
 * set this in a real peer.
 */
export interface WeightsFaults {
  /**
   * Flip one byte of the N-th chunk (0-based) of every transfer this server makes. The manifest
   * keeps the true checksum, so pullers must detect it.
   */
  corruptChunk?: number
}

export interface WeightsServiceInit {
  /**
   * Payload bytes per chunk frame; a multiple of 4, at most MAX_WEIGHTS_CHUNK_BYTES.
   * @default 1 MiB (MAX_WEIGHTS_CHUNK_BYTES)
   */
  chunkBytes?: number
  /**
   * Transfers sent at the same time. Further requests wait in a queue.
   * @default 4
   */
  maxConcurrentTransfers?: number
  /**
   * Requests that may wait for a transfer slot; beyond that the server answers ERR_BUSY at once.
   * @default 16
   */
  maxQueuedTransfers?: number
  /**
   * How long a new stream may take to deliver its request frame, in ms.
   * @default 10_000
   */
  requestTimeoutMs?: number
  /**
   * A transfer whose reader takes nothing for this long (back-pressure never lifts) is aborted, in ms.
   * Also bounds the wait in the queue.
   * @default 30_000
   */
  stallTimeoutMs?: number
  /**
   * Remember each tensor's checksum per (stage, iteration, name) for the last few iterations, so an
   * iteration served to several pullers (or in several parts) is hashed once. A provider that hands
   * out different bytes under one iteration is still caught: the puller's check then fails.
   * @default true
   */
  cacheChecksums?: boolean
  /** Test-only fault injection; see WeightsFaults. @default undefined (an honest donor) */
  faults?: WeightsFaults
}

/** Counters of a running server (for tests, metrics and the status view). */
export interface WeightsServerStats {
  /** Transfers that reached their end frame. */
  served: number
  /** Requests answered with an error message (bad request, unavailable iteration, unknown tensor, busy). */
  refused: number
  /** Transfers cut short (the puller went away, stalled, or a write failed). */
  aborted: number
  /** Chunk payload bytes sent. */
  bytes: number
  /** Transfers being sent right now, and waiting for a slot. */
  active: number
  queued: number
}

export interface WeightsServer {
  readonly stats: WeightsServerStats
  /**
   * Drops the remembered checksums of `stage` (all stages when omitted). Call it when what the
   * provider serves for a stage changes under an iteration it served before: a stage rebuilt or
   * reloaded, or a mirror or shadow replaced by a copy from a holder that did so. Without
   * it the next puller of such an iteration gets stale checksums and fails its transfer.
   */
  forgetChecksums: (stage?: number) => void
  /** Stops accepting streams (unhandles the protocol) and aborts the transfers in progress. */
  stop: () => Promise<void>
}

/** A peer to pull from: a PeerId it is connected to (or can find), or multiaddrs to dial. */
export interface WeightsDonor {
  peer: PeerId | Multiaddr | Multiaddr[]
}

export interface FetchWeightsOptions {
  /** Donors to pull from, in order of preference; the first that answers provides the manifest. */
  donors: WeightsDonor[]
  stage: number
  /** Oldest acceptable committed iteration (-1: the seeded weights too). @default -1 */
  minIteration?: number
  /** Also pull the Adam moments (`optim.m.*`, `optim.v.*`). @default false */
  includeOptimizer?: boolean
  /** Only these tensors (by full name, e.g. `optim.m.head.w`). @default all of the stage's tensors */
  names?: string[]
  /** Cancels the fetch; it rejects with the signal's reason. */
  signal?: AbortSignal
  /**
   * Whole-fetch deadline in ms (WeightsTimeoutError after it).
   * @default undefined (no deadline; stallTimeoutMs still catches a donor that stops sending)
   */
  timeoutMs?: number
  /**
   * Dial and protocol negotiation timeout per donor stream, in ms.
   * @default 10_000
   */
  dialTimeoutMs?: number
  /**
   * A donor that sends nothing for this long is given up (DonorLostError) and its part retried
   * elsewhere, in ms.
   * @default 30_000
   */
  stallTimeoutMs?: number
  /**
   * Where to put each tensor: return a typed array of the manifest's dtype and element count to
   * receive it (its previous content is overwritten), or undefined for a new one. A caller that
   * fetches the same shapes again and again (the coordinator's checkpoints) reuses its arrays
   * instead of churning through new memory. The arrays belong to the fetch until it settles.
   * @default undefined (new arrays)
   */
  destination?: (info: TensorInfo) => Float32Array | Int32Array | undefined
}

/** What one donor contributed to a fetch. */
export interface DonorReport {
  /** The donor as text (peer id or multiaddr). */
  donor: string
  /** Bytes of verified tensors it supplied. */
  bytes: number
  /** Verified tensors it supplied. */
  tensors: number
  /** All chunk payload bytes received from it, including those thrown away after a failure or a cut-off. */
  receivedBytes: number
  /** Why it was given up, if it was. */
  failure?: Error
}

export interface FetchedWeights {
  stage: number
  iteration: number
  /** Exact-size typed arrays (Float32Array for F32), in manifest order. */
  tensors: TensorSet
  /** The manifest entries of the fetched tensors (with their CRC-32). */
  manifest: TensorInfo[]
  /** Sum of the tensors' byte lengths. */
  bytes: number
  perDonor: DonorReport[]
  /** Wall-clock time of the fetch. */
  ms: number
}

/** Registers the WEIGHTS_PROTOCOL handler on `node`, serving snapshots from `provider`. */
export async function serveWeights (
  node: Pick<Libp2p, 'handle' | 'unhandle'>,
  provider: WeightsProvider,
  init: WeightsServiceInit = {}
): Promise<WeightsServer> {
  const server = new WeightsServerImpl(node, provider, init)
  await server.start()
  return server
}

/**
 * Pulls a stage's tensors. With several donors the tensors are split between them by bytes and
 * pulled in parallel; a donor that fails (unreachable, stream dies, checksum mismatch, other
 * iteration) has its unfinished part retried on another donor. Throws the failure's typed error when
 * every donor failed for the same reason, else WeightsFetchError listing them.
 */
export async function fetchWeights (node: Pick<Libp2p, 'dialProtocol'>, options: FetchWeightsOptions): Promise<FetchedWeights> {
  return await fetchWeightsImpl(node, options)
}

export * from './errors.js'
export { crcHex, splitByBytes, tensorCrc } from './util.js'

/**
 * Gradient all-reduce for the data-parallel replicas of one pipeline stage: before the optimizer
 * step, the peers holding the same stage average their gradients, so the replicas stay identical.
 *
 * Algorithm: a ring all-reduce (Patarasuk & Yuan 2009; the Baidu/Horovod ring), bandwidth-optimal:
 * the tensors are concatenated logically into one flat vector of T elements, split into N chunks
 * (sizes differ by at most one element; some are empty when T < N), and the N members, in the
 * group's order, form a ring in which each member only ever sends to its successor and receives
 * from its predecessor. Member r:
 *
 * - reduce-scatter, steps 0 .. N-2: at step s it sends chunk (r - s) mod N and adds the chunk
 *   (r - s - 1) mod N it receives to its own. After N-1 steps it holds the complete sum of chunk
 *   (r + 1) mod N, which it owns, and divides it by N: the mean.
 * - all-gather, steps N-1 .. 2N-3: at all-gather step s it sends chunk (r + 1 - s) mod N (its own
 *   first, then the ones it received) and stores the chunk (r - s) mod N it receives, unchanged.
 *
 * Each member sends (and receives) 2(N-1)/N of the data in total, 1/N per step: the lower bound.
 *
 * Bit-identical results on every member, by construction: every chunk's mean is computed once, on
 * its owner (the sum in the fixed order of the ring, starting at member c for chunk c, then one
 * division by N, all in float32), and every other member receives those float32 bytes and copies
 * them unchanged. No member ever recomputes a value it received in the all-gather, so rounding,
 * reduction order, FMA or NaN payloads cannot make two members differ. The division is done by the
 * owner before the all-gather, not by everyone after it, for the same reason: then the bits on the
 * wire are already the final ones and identity does not depend on every member dividing the same
 * way. The reduction order depends only on the group's order, so equal inputs give equal outputs
 * from one round to the next as well.
 *
 * Non-finite values are not inspected: NaN and Inf propagate into the mean (the caller checks),
 * and nothing in the protocol reads values.
 *
 * Pipelined by pieces (1 MiB frames): piece p of step k is the piece p of the chunk received at
 * step k - 1, so a member forwards it as soon as it has folded that piece in, not once the whole
 * step is in; the ring runs as one pipeline instead of 2(N-1) stop-and-go steps, and the summation
 * of one piece overlaps the transfer of the next. A received piece is added (or, in the all-gather,
 * copied) straight from the transport's buffers into the tensors. The order of every sum is the
 * same as step by step, so the result is too, bit for bit.
 *
 * One stream per round, opened by each member to its successor, carrying all 2(N-1) steps in
 * order: the steps follow each other on that link, so per-step streams would only add a
 * protocol negotiation (a round trip) per step and a window ramp-up per step; one stream per round
 * (not one kept across rounds) keeps a failed or aborted round from leaking into the next, and the
 * group may change between rounds. The reverse direction of that stream carries only control frames
 * (a refusal or an abort) and the clean end.
 *
 * @example
 * ```ts
 * const ar = await startAllReduce(node)
 * const { tensors, ms } = await ar.allReduce({
 *   group: replicaPeerIds, key: { runId, epoch, iteration, stage }, tensors: gradients, timeoutMs: 30_000
 * })
 * await ar.stop()
 * ```
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { AllReduceError } from './errors.js'
import { AllReduceServiceImpl } from './service.js'

/** What of libp2p the service uses (a PeerLibp2p fits). */
export type AllReduceNode = Pick<Libp2p, 'peerId' | 'handle' | 'unhandle' | 'dialProtocol' | 'addEventListener' | 'removeEventListener'>

/** Which round: rendered by roundKeyString into the key every frame carries. */
export interface AllReduceRoundKey {
  runId: string
  epoch: number
  iteration: number
  stage: number
}

/** Fault injection for tests only (a member that hangs mid-round). Never set this in a real peer. */
export interface AllReduceFaults {
  /**
   * Stop sending before this step (0-based) of every round, as if the process hung; the member
   * goes on reading. Its call ends only by its signal, its timeout, or a stream failure.
   */
  stallBeforeStep?: number
  /** Called when a round reaches the stall. */
  onStall?: (step: number) => void
}

export interface AllReduceInit {
  /**
   * Deadline of a call that passes no `timeoutMs`, in ms.
   * @default 30_000
   */
  timeoutMs?: number
  /**
   * Dial and protocol negotiation timeout for the stream to the successor, in ms (within the call's deadline).
   * @default 10_000
   */
  dialTimeoutMs?: number
  /**
   * How long an inbound stream may take to deliver its first header, in ms.
   * @default 10_000
   */
  helloTimeoutMs?: number
  /**
   * How long a stream for a round this member has not begun is kept for it (the predecessor began
   * first), in ms. It is then refused.
   * @default 30_000
   */
  pendingTimeoutMs?: number
  /**
   * Such early streams kept at once, over all peers (at most one per peer: a newer one replaces
   * it). Only their first header is read, then the stream is paused: what the sender pushed behind
   * it stays in the muxer, bounded by the window already granted (yamux's initial 256 KiB for a new
   * stream), until the round begins. Beyond this they are refused with AllReduceBusyError.
   * @default 16
   */
  maxPendingStreams?: number
  /**
   * Told about every stream this member refuses (stranger, wrong key, wrong group, bad frame), with
   * the refusal and the remote peer. For logs, metrics and tests.
   * @default undefined
   */
  onRefused?: (error: AllReduceError, from: string) => void
  /** Test-only fault injection; see AllReduceFaults. @default undefined */
  faults?: AllReduceFaults
}

export interface AllReduceOptions {
  /**
   * The group's peer ids, in the same order on every member; this member is one of them. The node
   * must be able to dial its successor by id (connected, or its addresses in the peer store).
   */
  group: ReadonlyArray<PeerId | string>
  /** The round, as an object or an already rendered key (printable ASCII, at most 256 characters). */
  key: AllReduceRoundKey | string
  /** The gradients: any number of Float32Arrays of any lengths, the same lengths on every member. */
  tensors: readonly Float32Array[]
  /**
   * The element-wise mean over the group, or the sum (replicas of a stage add their gradient sums and
   * divide by the iteration's microbatch count in the step). Every member must pass the same op: it
   * is part of the round's key, so a member that disagrees is refused with RoundKeyMismatchError.
   * @default 'mean'
   */
  op?: 'mean' | 'sum'
  /**
   * Write the mean into `tensors` instead of new arrays. They must then not change until the call
   * settles; on a failure their content is undefined.
   * @default false (the result is new arrays; `tensors` are copied at the start and not touched)
   */
  inPlace?: boolean
  /** Cancels the call: it rejects with the signal's reason, and the other members with AllReduceAbortedError. */
  signal?: AbortSignal
  /**
   * Deadline of the whole call (waiting for the others included), in ms: AllReduceTimeoutError after it.
   * @default AllReduceInit.timeoutMs
   */
  timeoutMs?: number
}

export interface AllReduceResult {
  /** The element-wise mean over the group, one array per input (the inputs themselves with `inPlace`). */
  tensors: Float32Array[]
  /** This member's position in the group, and the group's size. */
  rank: number
  groupSize: number
  /** Gradient bytes sent to the successor and received from the predecessor (frame headers excluded): 2(N-1)/N of 4T each, about. */
  bytesSent: number
  bytesReceived: number
  /** Wall-clock time of the call. */
  ms: number
  /** Of which waiting for the predecessor's stream (a member that began later, or a straggler). */
  waitMs: number
}

/** Counters of a running service. */
export interface AllReduceStats {
  /** Calls that returned a result / rejected. */
  rounds: number
  failed: number
  /** Streams refused (see AllReduceInit.onRefused). */
  refused: number
  /** Rounds running now, and early streams held for rounds not begun. */
  active: number
  pending: number
}

export interface AllReduceService {
  readonly stats: AllReduceStats
  /** Averages `tensors` element-wise across `group`; see AllReduceOptions and the module comment. */
  allReduce: (options: AllReduceOptions) => Promise<AllReduceResult>
  /** Unhandles the protocol, fails the rounds in progress (AllReduceAbortedError) and closes every stream. */
  stop: () => Promise<void>
}

/** Registers the ALLREDUCE_PROTOCOL handler on `node`; one service per node. */
export async function startAllReduce (node: AllReduceNode, init: AllReduceInit = {}): Promise<AllReduceService> {
  const service = new AllReduceServiceImpl(node, init)
  await service.start()
  return service
}

export { roundKeyString } from './codec.js'
export { ALLREDUCE_PROTOCOL } from './constants.js'
export * from './errors.js'

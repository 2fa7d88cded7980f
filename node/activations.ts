/**
 * The activations protocol: tensor frames (forward activations, backward gradients) between the
 * peers of neighbouring stages. Each sender keeps one long-lived stream per destination peer and
 * writes length-prefixed frames on it; the receiver decodes and validates each frame and hands it
 * on. A bad frame is rejected with a typed error and logged; the stream (and the peer) go on.
 *
 * Admission, before anything is buffered: a stream is accepted only from a peer that feeds this
 * stage under the current epoch (the policy the Peer supplies), at most
 * MAX_ACTIVATION_STREAMS_PER_PEER at once; each frame's length prefix is checked against the
 * model's frame size and the sender's budget (ACTIVATION_FRAMES_IN_FLIGHT frames) before its body
 * is read. A frame that fails these checks is discarded unread; the stream goes on, so a neighbour
 * that is merely behind on an epoch change causes no stream break.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { createLog } from '../common/index.js'
import { route, shadowedStage, type PlusLayout } from '../model/index.js'
import {
  ACTIVATIONS_PROTOCOL, ACTIVATION_FRAMES_IN_FLIGHT, MAX_ACTIVATION_STREAMS_PER_PEER, MAX_TENSOR_FRAME_BYTES,
  decodeTensorFrame, encodeTensorFrame, tensorFrameBytes, type TensorFrameHeader
} from '../protocols/index.js'
import { FrameTooLargeError, StreamClosedError, endFrames, openStream, readFrames, writeFrame, type PeerLibp2p } from '../net/index.js'
import { ActivationBudgetError, NeighbourLostError, NotNeighbourError } from './errors.js'

const log = createLog('activations')

/** Who may send activations right now, and how big a frame may be. */
export interface ActivationPolicy {
  /** Peer ids that feed this peer's stage under the current epoch. */
  senders: ReadonlySet<string>
  /** Largest frame accepted: one microbatch tensor of the model (tensorFrameBytes). */
  maxFrameBytes: number
}

export interface ActivationsInit {
  /**
   * The current admission policy, asked when a stream opens and before each frame. undefined:
   * nobody may send (no assignment, or no stage).
   */
  policy: () => ActivationPolicy | undefined
  /** Called for every well-formed frame. Throwing rejects the frame (logged), not the stream. */
  onFrame: (header: TensorFrameHeader, data: Float32Array, from: string) => void
  /** Called when a frame or stream is rejected (malformed, unexpected, not a neighbour), with the sender. */
  onReject?: (err: Error, from: string) => void
  /**
   * Dial timeout for a new stream to a neighbour, in ms.
   * @default 10_000
   */
  dialTimeoutMs?: number
}

/**
 * The policy of the peer `self` under an assignment: the peers holding the stages that send to its
 * stage on any microbatch's route (forward from the hop before, gradients from the hop after), and
 * the frame size of the model's activations, `shape` = [microbatchSize, seqLen, dModel].
 */
export function activationPolicy (init: {
  self: string
  /** This peer's stage. */
  stage: number
  /** The microbatches this peer runs (its replica's share). */
  microbatches: readonly number[]
  /** The peer of a stage that runs a microbatch (with replicas, one of several). */
  holderOf: (stage: number, mb: number) => string | undefined
  stages: number
  checkfreePlus: boolean
  /** @default 'spotpipe' */
  plusLayout?: PlusLayout
  /** Redundant computation: this stage's shadow of its successor also takes gradients from the stage after that. @default false */
  shadowCompute?: boolean
  shape: readonly number[]
}): ActivationPolicy {
  const senders = new Set<string>()
  const shadowed = init.shadowCompute === true ? shadowedStage(init.stage, init.stages) : undefined
  for (const mb of init.microbatches) {
    const hops = route(init.stages, mb, init.checkfreePlus, init.plusLayout)
    hops.forEach((hop, i) => {
      if (hop.stage === init.stage) {
        for (const from of [hops[i - 1], hops[i + 1]]) {
          const id = from == null ? undefined : init.holderOf(from.stage, mb)
          if (id != null && id !== init.self) senders.add(id)
        }
      } else if (hop.stage === shadowed && hops[i + 1] != null) {
        const id = init.holderOf(hops[i + 1].stage, mb)
        if (id != null && id !== init.self) senders.add(id)
      }
    })
  }
  return { senders, maxFrameBytes: tensorFrameBytes(init.shape) }
}

/**
 * The most memory one sender can make a receiver hold on this protocol: the frame bodies the
 * reader admits (ACTIVATION_FRAMES_IN_FLIGHT of the model's largest frame) plus, per stream, one
 * yamux receive window that the transport may hold before the reader takes it.
 */
export function activationMemoryBudget (maxFrameBytes: number, streamWindowBytes = 16 * 1024 * 1024): number {
  return ACTIVATION_FRAMES_IN_FLIGHT * maxFrameBytes + MAX_ACTIVATION_STREAMS_PER_PEER * streamWindowBytes
}

/** Inbound streams and admitted frame bytes of one sender, over all its connections. */
interface SenderUsage { streams: number, bytes: number }

export class ActivationLinks {
  private readonly node: PeerLibp2p
  private readonly init: ActivationsInit
  private readonly out = new Map<string, Promise<Stream>>()
  private readonly inbound = new Set<Stream>()
  private readonly usage = new Map<string, SenderUsage>()
  /** When a rejection from a sender was last logged at error level (a flood logs once a second). */
  private readonly lastLogged = new Map<string, number>()
  /** Frames and streams rejected so far, and the last reason (tests and metrics read these). */
  rejected = 0
  lastRejection?: Error

  constructor (node: PeerLibp2p, init: ActivationsInit) {
    this.node = node
    this.init = init
  }

  async start (): Promise<void> {
    await this.node.handle(ACTIVATIONS_PROTOCOL, (stream, connection) => {
      void this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: MAX_ACTIVATION_STREAMS_PER_PEER })
  }

  /** Bytes of frames admitted from `peerId` and not yet handed on (tests read this). */
  admittedBytes (peerId: string): number {
    return this.usage.get(peerId)?.bytes ?? 0
  }

  /** Inbound streams from `peerId` being served (tests read this). */
  streamsFrom (peerId: string): number {
    return this.usage.get(peerId)?.streams ?? 0
  }

  private reject (err: Error, from: string): void {
    this.rejected += 1
    this.lastRejection = err
    const now = Date.now()
    if (now - (this.lastLogged.get(from) ?? 0) >= 1000) {
      if (this.lastLogged.size >= 1024) this.lastLogged.clear()
      this.lastLogged.set(from, now)
      log.error('rejected activations from %s (%s): %s', from, (err as { code?: string }).code ?? err.name, err.message)
    } else {
      log('rejected activations from %s: %s', from, err.message)
    }
    this.init.onReject?.(err, from)
  }

  private async serve (stream: Stream, from: string): Promise<void> {
    const opened = this.init.policy()
    const use = this.usage.get(from) ?? { streams: 0, bytes: 0 }
    let refusal: Error | undefined
    if (opened?.senders.has(from) !== true) {
      refusal = new NotNeighbourError(from, `activations stream from ${from}, which does not feed this stage under the current epoch`)
    } else if (use.streams >= MAX_ACTIVATION_STREAMS_PER_PEER) {
      refusal = new ActivationBudgetError(from, `activations stream from ${from} refused: it already has ${use.streams} open (limit ${MAX_ACTIVATION_STREAMS_PER_PEER})`)
    }
    if (refusal != null) {
      stream.abort(refusal)
      this.reject(refusal, from)
      return
    }
    use.streams += 1
    this.usage.set(from, use)
    this.inbound.add(stream)
    let held = 0
    // Runs on each length prefix, before the body is buffered. The policy may have changed since
    // the stream opened (a new epoch): a frame from a peer that is no longer a neighbour is dropped.
    const admit = (length: number): boolean => {
      const policy = this.init.policy()
      if (policy?.senders.has(from) !== true) {
        this.reject(new NotNeighbourError(from, `${length}-byte frame from ${from}, which no longer feeds this stage: discarded unread`), from)
        return false
      }
      if (length > policy.maxFrameBytes) throw new FrameTooLargeError(length, policy.maxFrameBytes)
      const budget = ACTIVATION_FRAMES_IN_FLIGHT * policy.maxFrameBytes
      if (use.bytes + length > budget) {
        this.reject(new ActivationBudgetError(from, `${length}-byte frame from ${from} discarded unread: ${use.bytes} bytes of its frames are already buffered (budget ${budget})`), from)
        return false
      }
      use.bytes += length
      held = length
      return true
    }
    const release = (): void => { use.bytes -= held; held = 0 }
    try {
      for await (const frame of readFrames(stream, { maxFrameBytes: MAX_TENSOR_FRAME_BYTES, requireEndFrame: false, admit })) {
        try {
          const { header, data } = decodeTensorFrame(frame, { dtype: 'float32', maxBytes: MAX_TENSOR_FRAME_BYTES })
          this.init.onFrame(header, data as Float32Array, from)
        } catch (err) {
          this.reject(err as Error, from)
        } finally {
          release()
        }
      }
    } catch (err) {
      // A reset by the sender is its business; anything else (an oversized length prefix, a frame
      // cut short) is bad input. Either way this stream ends and the peer keeps serving others.
      if (err instanceof StreamClosedError) {
        log('activations stream from %s closed: %s', from, err.message)
      } else {
        this.reject(err as Error, from)
      }
      stream.abort(err as Error)
    } finally {
      release()
      use.streams -= 1
      if (use.streams === 0) this.usage.delete(from)
      this.inbound.delete(stream)
    }
  }

  private stream (peerId: string, addr?: string): Promise<Stream> {
    let s = this.out.get(peerId)
    if (s == null) {
      const target = addr != null ? multiaddr(addr) : peerIdFromString(peerId)
      s = openStream(this.node, target, ACTIVATIONS_PROTOCOL, { timeoutMs: this.init.dialTimeoutMs ?? 10_000 })
      s.catch(() => { this.out.delete(peerId) })
      this.out.set(peerId, s)
    }
    return s
  }

  /** Sends one tensor frame to `peerId` (dialling `addr` the first time). */
  async send (peerId: string, addr: string | undefined, header: Omit<TensorFrameHeader, 'dtype' | 'flags'>, data: Float32Array, signal?: AbortSignal): Promise<void> {
    const frame = encodeTensorFrame(header, data)
    const cached = this.out.has(peerId)
    try {
      await writeFrame(await this.stream(peerId, addr), frame, signal)
    } catch (first) {
      this.out.delete(peerId)
      // A cached stream may lead to an earlier incarnation of the peer (it restarted under the same
      // identity) or to a connection that has since closed: one fresh stream decides.
      if (cached && signal?.aborted !== true) {
        try {
          await writeFrame(await this.stream(peerId, addr), frame, signal)
          return
        } catch (err) {
          this.out.delete(peerId)
          throw new NeighbourLostError(peerId, `cannot send ${header.direction} tensor to ${peerId}: ${(err as Error).message}`, { cause: err })
        }
      }
      throw new NeighbourLostError(peerId, `cannot send ${header.direction} tensor to ${peerId}: ${(first as Error).message}`, { cause: first })
    }
  }

  /** Forget the stream to a peer (it left or was reassigned). */
  drop (peerId: string): void {
    const s = this.out.get(peerId)
    this.out.delete(peerId)
    s?.then(st => st.abort(new Error('neighbour dropped')), () => {})
  }

  async stop (): Promise<void> {
    await this.node.unhandle(ACTIVATIONS_PROTOCOL)
    const streams = await Promise.allSettled([...this.out.values()])
    this.out.clear()
    await Promise.allSettled(streams.map(async r => { if (r.status === 'fulfilled') await endFrames(r.value, AbortSignal.timeout(1000)) }))
    for (const s of this.inbound) s.abort(new Error('stopping'))
  }
}

/**
 * The activations protocol: tensor frames (forward activations, backward gradients) between the
 * peers of neighbouring stages. Each sender keeps one long-lived stream per destination peer and
 * writes length-prefixed frames on it; the receiver decodes and validates each frame and hands it
 * on. A bad frame is rejected with a typed error and logged; the stream (and the peer) go on.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { createLog } from '../model/log.js'
import { ACTIVATIONS_PROTOCOL, MAX_TENSOR_FRAME_BYTES, decodeTensorFrame, encodeTensorFrame, type TensorFrameHeader } from '../protocols/index.js'
import { StreamClosedError, endFrames, openStream, readFrames, writeFrame, type PeerLibp2p } from './transport/index.js'
import { NeighbourLostError } from './errors.js'

const log = createLog('activations')

export interface ActivationsInit {
  /** Called for every well-formed frame. Throwing rejects the frame (logged), not the stream. */
  onFrame: (header: TensorFrameHeader, data: Float32Array, from: string) => void
  /** Called when a frame is rejected (malformed, unexpected), with the sender. */
  onReject?: (err: Error, from: string) => void
  /**
   * Largest frame accepted.
   * @default MAX_TENSOR_FRAME_BYTES (protocols/constants.ts)
   */
  maxFrameBytes?: number
  /**
   * Dial timeout for a new stream to a neighbour, in ms.
   * @default 10_000
   */
  dialTimeoutMs?: number
}

export class ActivationLinks {
  private readonly node: PeerLibp2p
  private readonly init: ActivationsInit
  private readonly out = new Map<string, Promise<Stream>>()
  private readonly inbound = new Set<Stream>()
  /** Frames rejected so far, and the last reason (tests and metrics read these). */
  rejected = 0
  lastRejection?: Error

  constructor (node: PeerLibp2p, init: ActivationsInit) {
    this.node = node
    this.init = init
  }

  async start (): Promise<void> {
    await this.node.handle(ACTIVATIONS_PROTOCOL, (stream, connection) => {
      void this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: 64 })
  }

  private async serve (stream: Stream, from: string): Promise<void> {
    this.inbound.add(stream)
    const maxFrameBytes = this.init.maxFrameBytes ?? MAX_TENSOR_FRAME_BYTES
    try {
      for await (const frame of readFrames(stream, { maxFrameBytes, requireEndFrame: false })) {
        try {
          const { header, data } = decodeTensorFrame(frame, { dtype: 'float32', maxBytes: maxFrameBytes })
          this.init.onFrame(header, data as Float32Array, from)
        } catch (err) {
          this.rejected += 1
          this.lastRejection = err as Error
          log.error('rejected a tensor frame from %s: %s', from, (err as Error).message)
          this.init.onReject?.(err as Error, from)
        }
      }
    } catch (err) {
      // A reset by the sender is its business; anything else (an oversized length prefix, a frame
      // cut short) is bad input. Either way this stream ends and the peer keeps serving others.
      if (err instanceof StreamClosedError) {
        log('activations stream from %s closed: %s', from, err.message)
      } else {
        this.rejected += 1
        this.lastRejection = err as Error
        log.error('activations stream from %s rejected: %s', from, (err as Error).message)
        this.init.onReject?.(err as Error, from)
      }
      stream.abort(err as Error)
    } finally {
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

/**
 * One all-reduce round on one member (index.ts: the algorithm): the stream to its successor
 * (sendAll, backRead), the stream from its predecessor (receiveAll, finishInbound), and the
 * round's single failure, which ends both halves and is told to both neighbours.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { SpotpipeError, createLog } from '../../common/index.js'
import { FrameTooLargeError, MalformedFrameError, StreamClosedError, endFrames, openStream, readFrameLists, waitForDrain, writeFrame } from '../transport/index.js'
import { ALLREDUCE_PROTOCOL, LINGER_MS, MAX_HEADER_BYTES, PIECE_ELEMENTS, PIECE_PREAMBLE_BYTES } from './constants.js'
import {
  KIND_ABORT, KIND_PIECE, NO_STEP, abortFrameOf, chunkRanges, decodeFrame, encodeHeader, groupDigest, message, peekPreamble, pieceHead,
  type AbortFrame, type ChunkRange, type FrameCommon, type HeaderFrame
} from './codec.js'
import {
  ALLREDUCE_ERROR_CODES, AllReduceAbortedError, AllReduceBusyError, AllReduceError, AllReduceProtocolError, AllReduceTimeoutError,
  GroupMismatchError, NotInGroupError, PeerLostError, RoundKeyMismatchError
} from './errors.js'
import { FlatView } from './flat-view.js'
import { abortable, deferred, sendControl, type Inbound } from './inbound.js'
import type { AllReduceResult } from './index.js'
import type { AllReduceServiceImpl } from './service.js'

const log = createLog('allreduce')

/**
 * One piece frame (net/transport/framed-stream.ts framing: varint length, then the payload) as a
 * single send: its length prefix and preamble in one small buffer, then the data as views on the
 * tensors. writeFrame would send the prefix, the preamble and the data separately, each its own
 * yamux frame, noise message and socket write (three per piece instead of one). Resolves, as
 * writeFrame does, once the muxer has taken the bytes (back-pressure: it waits for 'drain').
 */
async function writePiece (stream: Stream, step: number, data: Uint8Array[], bytes: number, signal: AbortSignal): Promise<void> {
  const list = new Uint8ArrayList(pieceHead(step, bytes))
  for (const d of data) list.append(d)
  await waitForDrain(stream, signal)
  if (stream.writeStatus !== 'writable') throw new StreamClosedError(stream.status === 'reset' ? 'reset' : stream.status === 'aborted' ? 'aborted' : 'closed', `cannot write to stream ${stream.id}: its writable end is ${stream.writeStatus}`)
  try {
    stream.send(list)
  } catch (err) {
    throw new StreamClosedError(stream.status === 'reset' ? 'reset' : 'aborted', `write to stream ${stream.id} failed: ${message(err)}`, { cause: err })
  }
  await waitForDrain(stream, signal)
}

/** The errors a receiver answers a bad stream with (sent back flagged as a refusal). */
function isRefusal (err: unknown): err is AllReduceError {
  return err instanceof NotInGroupError || err instanceof RoundKeyMismatchError || err instanceof GroupMismatchError ||
    err instanceof AllReduceProtocolError || err instanceof AllReduceBusyError
}

/** A round as the service planned it from the caller's options (service.ts plan()). */
export interface Plan {
  key: string
  /** 'mean' divides each owned chunk by the group size before the all-gather; 'sum' does not. */
  op: 'mean' | 'sum'
  group: string[]
  peers: PeerId[]
  rank: number
  tensors: Float32Array[]
  total: number
  timeoutMs: number
  signal: AbortSignal | undefined
}

export class Round {
  readonly key: string
  readonly pred: string
  readonly succ: string
  private readonly service: AllReduceServiceImpl
  private readonly plan: Plan
  private readonly n: number
  private readonly rank: number
  private readonly steps: number
  private readonly chunks: ChunkRange[]
  private readonly digest: string
  private readonly view: FlatView
  private readonly controller = new AbortController()
  private readonly inboundArrived = deferred<Inbound>()
  private readonly settled = deferred<undefined>()
  /**
   * sendBase[k] / recvBase[k]: pieces sent / received in the steps before step k (a chunk goes in
   * ceil(elements / PIECE_ELEMENTS) pieces; the chunks sent and received at one step may differ by
   * an element, so the two counts may differ).
   */
  private readonly sendBase: number[]
  private readonly recvBase: number[]
  /** Pieces received (and folded in) / handed to the muxer so far, over all steps in order. */
  private recvPieces = 0
  private sentPieces = 0
  /** The one wait on each counter (the sender waits on recvPieces, the receiver on sentPieces). */
  private recvWaiter: { until: number, resolve: () => void } | undefined
  private sentWaiter: { until: number, resolve: () => void } | undefined
  failure: Error | undefined
  /** A stream of the predecessor's for another key was refused while this round waited for its stream (see rememberMismatch). */
  refusedPredecessor = false
  private cancelled = false
  private inbound: Inbound | undefined
  private outbound: Stream | undefined
  private dialing = false
  private sentSteps = 0
  private recvSteps = 0
  private sentAll = false
  private bytesSent = 0
  private bytesReceived = 0
  private t0 = 0
  private waitMs = 0

  constructor (service: AllReduceServiceImpl, plan: Plan) {
    this.service = service
    this.plan = plan
    this.key = plan.key
    this.n = plan.group.length
    this.rank = plan.rank
    this.pred = plan.group[(this.rank - 1 + this.n) % this.n]
    this.succ = plan.group[(this.rank + 1) % this.n]
    this.steps = 2 * (this.n - 1)
    this.chunks = chunkRanges(plan.total, this.n)
    this.digest = groupDigest(plan.group)
    this.view = new FlatView(plan.tensors)
    this.sendBase = [0]
    this.recvBase = [0]
    for (let k = 0; k < this.steps; k++) {
      this.sendBase.push(this.sendBase[k] + Math.ceil(this.chunks[this.sendChunk(k)].length / PIECE_ELEMENTS))
      this.recvBase.push(this.recvBase[k] + Math.ceil(this.chunks[this.recvChunk(k)].length / PIECE_ELEMENTS))
    }
  }

  get hasInbound (): boolean { return this.inbound !== undefined }

  private mod (x: number): number { return ((x % this.n) + this.n) % this.n }
  /** Chunk sent at step k: reduce-scatter (r - k), all-gather (r + 1 - s). */
  private sendChunk (k: number): number { return k < this.n - 1 ? this.mod(this.rank - k) : this.mod(this.rank + 1 - (k - this.n + 1)) }
  /** Chunk received at step k: reduce-scatter (r - k - 1), all-gather (r - s). */
  private recvChunk (k: number): number { return k < this.n - 1 ? this.mod(this.rank - k - 1) : this.mod(this.rank - (k - this.n + 1)) }

  private stepName (k: number): string {
    if (k >= this.steps) return 'the end of the round'
    return k < this.n - 1 ? `reduce-scatter step ${k + 1}/${this.n - 1}` : `all-gather step ${k - this.n + 2}/${this.n - 1}`
  }

  private common (k: number, chunk: number): Omit<FrameCommon, 'key'> {
    return { step: k, n: this.n, chunk, elements: this.chunks[chunk].length, total: this.plan.total, digest: this.digest }
  }

  async run (t0: number): Promise<AllReduceResult> {
    this.t0 = t0
    const caller = this.plan.signal
    const onCallerAbort = (): void => {
      this.cancelled = true
      this.fail(caller?.reason instanceof Error ? caller.reason : new Error(String(caller?.reason)))
    }
    const onDisconnect = (evt: CustomEvent<PeerId>): void => {
      if (this.inbound === undefined && evt.detail.toString() === this.pred) {
        this.fail(new PeerLostError(this.pred, 0, `${this.pred} disconnected before opening its stream for round ${this.key}`))
      }
    }
    const deadline = setTimeout(() => { this.fail(this.timeoutError()) }, this.plan.timeoutMs)
    caller?.addEventListener('abort', onCallerAbort, { once: true })
    this.service.node.addEventListener('peer:disconnect', onDisconnect)
    try {
      // both halves always finish (every wait is on the round's signal), so nothing writes into
      // the tensors after the call settles
      await Promise.all([
        this.sendAll().catch(err => { this.fail(this.classify(err, this.succ, this.sentSteps)) }),
        this.receiveAll().catch(err => { this.fail(this.classify(err, this.pred, this.recvSteps)) })
      ])
    } finally {
      clearTimeout(deadline)
      caller?.removeEventListener('abort', onCallerAbort)
      this.service.node.removeEventListener('peer:disconnect', onDisconnect)
      this.settled.resolve(undefined)
    }
    if (this.failure !== undefined) {
      if (this.cancelled) throw caller?.reason
      throw this.failure
    }
    return {
      tensors: this.plan.tensors,
      rank: this.rank,
      groupSize: this.n,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      ms: performance.now() - this.t0,
      waitMs: this.waitMs
    }
  }

  /** Ends the round with `err` (the first failure wins) and tells both neighbours. */
  fail (err: Error): void {
    if (this.failure !== undefined) return
    this.failure = err
    log('round %s failed: %s', this.key, err.message)
    this.controller.abort(err)
    const step = Math.min(this.sentSteps, this.recvSteps)
    const common = { step: Math.min(step, NO_STEP), n: this.n, chunk: 0, elements: 0, total: this.plan.total, digest: this.digest }
    const ctx = { key: this.key, self: this.service.self, common, cancelled: this.cancelled }
    // a bad frame of the predecessor's goes back to it as a refusal (it then throws the same class)
    const refuseInbound = isRefusal(err) && !err.remote && err.peer === this.pred
    if (this.outbound !== undefined) this.service.track(sendControl(this.outbound, abortFrameOf(err, { ...ctx, refusal: false })))
    if (this.inbound !== undefined) {
      this.inbound.close(err)
      this.service.track(sendControl(this.inbound.stream, abortFrameOf(err, { ...ctx, refusal: refuseInbound })))
    }
  }

  /** A stream for this round's key: attach it if it is the predecessor's and its first header is right, else refuse it. */
  offer (inb: Inbound, h: HeaderFrame): void {
    const from = inb.from
    const refuse = (err: AllReduceError): void => { this.service.refuse(inb, err, this.key) }
    const index = this.plan.group.indexOf(from)
    if (index < 0) { refuse(new NotInGroupError(`${from} is not in the group of round ${this.key}`, { peer: from, step: 0 })); return }
    if (from !== this.pred) {
      refuse(new GroupMismatchError(`${from} is member ${index} of round ${this.key}, not this member's predecessor (${this.pred}): the members' group orders differ`, { peer: from, step: 0 }))
      return
    }
    if (this.failure !== undefined) {
      inb.close(this.failure)
      this.service.track(sendControl(inb.stream, abortFrameOf(this.failure, { key: this.key, self: this.service.self, refusal: false })))
      return
    }
    if (this.inbound !== undefined) { refuse(new AllReduceBusyError(`${from} opened a second stream for round ${this.key}`, { peer: from, step: 0 })); return }
    try {
      this.check(h, 0, from)
    } catch (err) {
      refuse(err as AllReduceError)
      // the predecessor's round is not ours: ours cannot finish
      this.fail(err as Error)
      return
    }
    inb.attached = true
    this.inbound = inb
    inb.pendingTimer = undefined
    this.inboundArrived.resolve(inb)
  }

  /** Throws the typed error for a header that is not the one due at step k. */
  private check (h: HeaderFrame, k: number, from: string): void {
    if (h.key !== this.key) throw new RoundKeyMismatchError(this.key, h.key, `${from} sent round ${h.key} in the stream of round ${this.key}`, { peer: from, step: k })
    if (h.digest !== this.digest || h.n !== this.n || h.total !== this.plan.total) {
      const theirs = `${h.n} members (digest ${h.digest}), ${h.total} elements`
      const ours = `${this.n} members (digest ${this.digest}), ${this.plan.total} elements`
      throw new GroupMismatchError(`${from}'s round ${this.key} has ${theirs}; this member's has ${ours}`, { peer: from, step: k })
    }
    if (h.step !== k) throw new AllReduceProtocolError('step', `${from} sent step ${h.step} where ${this.stepName(k)} (step ${k}) was due`, { peer: from, step: k })
    const c = this.recvChunk(k)
    if (h.chunk !== c) throw new AllReduceProtocolError('chunk', `${from} sent chunk ${h.chunk} at ${this.stepName(k)}, where chunk ${c} was due`, { peer: from, step: k })
    if (h.elements !== this.chunks[c].length) {
      throw new AllReduceProtocolError('length', `${from} announced ${h.elements} elements for chunk ${c} at ${this.stepName(k)}; it has ${this.chunks[c].length}`, { peer: from, step: k })
    }
  }

  // ---- sending

  private async openOutbound (): Promise<Stream> {
    const { signal } = this.controller
    this.dialing = true
    let stream: Stream
    try {
      stream = await openStream(this.service.node, this.plan.peers[this.mod(this.rank + 1)], ALLREDUCE_PROTOCOL, { signal, timeoutMs: this.service.dialTimeoutMs })
    } catch (err) {
      signal.throwIfAborted()
      throw new PeerLostError(this.succ, 0, `cannot open an all-reduce stream to ${this.succ}: ${message(err)}`, { cause: err })
    } finally {
      this.dialing = false
    }
    if (signal.aborted) {
      stream.abort(new Error('all-reduce round failed'))
      throw signal.reason
    }
    this.outbound = stream
    this.service.track(this.backRead(stream))
    return stream
  }

  /**
   * Sends the 2(N-1) steps, piece by piece as each becomes ready: piece p of step k is the piece p
   * of the chunk received at step k - 1 (reduce-scatter: with this member's gradient added; the
   * first all-gather step: the owned chunk, complete), so it goes out as soon as that piece is
   * folded in, not when the whole of step k - 1 is. The ring then runs as one pipeline of pieces
   * instead of 2(N-1) stop-and-go steps: every member forwards while it still receives, and the
   * summation of one piece overlaps the transfer of the next.
   */
  private async sendAll (): Promise<void> {
    const { signal } = this.controller
    const stream = await this.openOutbound()
    const faults = this.service.faults
    for (let k = 0; k < this.steps; k++) {
      if (faults?.stallBeforeStep === k) {
        if (k > 0) await this.untilReceived(this.recvBase[k], signal)
        faults.onStall?.(k)
        await abortable(new Promise<never>(() => {}), signal)
      }
      const c = this.sendChunk(k)
      const { start, length } = this.chunks[c]
      const divide = k === this.n - 1 && this.plan.op === 'mean'
      await writeFrame(stream, encodeHeader({ ...this.common(k, c), key: this.key }), signal)
      for (let p = 0, piece = 0; p < length; p += PIECE_ELEMENTS, piece++) {
        const e = Math.min(PIECE_ELEMENTS, length - p)
        // the same piece of the chunk received at step k - 1, folded in
        if (k > 0) await this.untilReceived(this.recvBase[k - 1] + piece + 1, signal)
        // the owned chunk's piece is complete: its mean, once, before anyone gets a copy
        if (divide) this.view.divide(start + p, start + p + e, this.n)
        // straight from the tensors: a piece is only modified again (all-gather) after the whole
        // ring has used what we sent of it, and by then writeFrame has long resolved
        await writePiece(stream, k, this.view.bytes(start + p, start + p + e), e * 4, signal)
        this.bytesSent += e * 4
        this.progressSent()
      }
      this.sentSteps = k + 1
    }
    // flushed before the call returns, so a member that exits right after does not cut its successor off
    await endFrames(stream, signal)
    this.sentAll = true
  }

  private progressSent (): void {
    this.sentPieces++
    const w = this.sentWaiter
    if (w !== undefined && this.sentPieces >= w.until) { this.sentWaiter = undefined; w.resolve() }
  }

  private progressReceived (): void {
    this.recvPieces++
    const w = this.recvWaiter
    if (w !== undefined && this.recvPieces >= w.until) { this.recvWaiter = undefined; w.resolve() }
  }

  /** Until `count` pieces have been received and folded in (or the round fails). */
  private async untilReceived (count: number, signal: AbortSignal): Promise<void> {
    if (this.recvPieces >= count) return
    await abortable(new Promise<void>(resolve => { this.recvWaiter = { until: count, resolve } }), signal)
  }

  /** Until `count` pieces have been handed to the muxer (or the round fails). */
  private async untilSent (count: number, signal: AbortSignal): Promise<void> {
    if (this.sentPieces >= count) return
    await abortable(new Promise<void>(resolve => { this.sentWaiter = { until: count, resolve } }), signal)
  }

  /**
   * Reads the successor's side of our stream: nothing but its end (it read everything) or a
   * refusal/abort. A stream that dies before we sent everything means the successor is gone.
   */
  private async backRead (stream: Stream): Promise<void> {
    const stop = new AbortController()
    const onFail = (): void => { stop.abort(this.controller.signal.reason) }
    const onClosing = (): void => { stop.abort(this.service.closing.signal.reason) }
    this.controller.signal.addEventListener('abort', onFail, { once: true })
    this.service.closing.signal.addEventListener('abort', onClosing, { once: true })
    let linger: NodeJS.Timeout | undefined
    void this.settled.promise.then(() => {
      linger = setTimeout(() => { stop.abort(new Error(`${this.succ} did not close its end within ${LINGER_MS} ms`)) }, LINGER_MS)
    })
    try {
      for await (const list of readFrameLists(stream, { maxFrameBytes: MAX_HEADER_BYTES, signal: stop.signal })) {
        const frame = decodeFrame(list, this.succ)
        if (frame.kind === 'abort') this.fail(this.remoteFailure(frame, this.succ))
        else this.fail(new AllReduceProtocolError('kind', `${this.succ} sent a ${frame.kind} frame back on the stream this member sends on`, { peer: this.succ, step: this.sentSteps }))
        return
      }
    } catch (err) {
      if (stop.signal.aborted) return
      const e = this.classify(err, this.succ, this.sentSteps)
      // once everything is sent, the successor going away is its own round's problem, not ours
      if (!(e instanceof PeerLostError && this.sentAll)) this.fail(e)
    } finally {
      clearTimeout(linger)
      this.controller.signal.removeEventListener('abort', onFail)
      this.service.closing.signal.removeEventListener('abort', onClosing)
      // after a failure, sendControl owns the stream (its abort frame must get out first)
      if (!this.controller.signal.aborted && stream.status === 'open') stream.abort(new Error('all-reduce stream done'))
    }
  }

  // ---- receiving

  private async receiveAll (): Promise<void> {
    const { signal } = this.controller
    const inb = await abortable(this.inboundArrived.promise, signal)
    this.waitMs = performance.now() - this.t0
    for (let k = 0; k < this.steps; k++) {
      inb.step = k
      if (k > 0) {
        const list = await this.read(inb, k, -1)
        const frame = decodeFrame(list, this.pred)
        if (frame.kind !== 'header') throw new AllReduceProtocolError('kind', `${this.pred} sent a ${frame.kind} frame where the header of ${this.stepName(k)} was due`, { peer: this.pred, step: k })
        this.check(frame, k, this.pred)
      }
      const gather = k >= this.n - 1
      const c = this.recvChunk(k)
      const { start, length } = this.chunks[c]
      for (let p = 0, piece = 0; p < length; p += PIECE_ELEMENTS, piece++) {
        const e = Math.min(PIECE_ELEMENTS, length - p)
        const list = await this.read(inb, k, PIECE_PREAMBLE_BYTES + e * 4)
        const { kind, step } = peekPreamble(list, this.pred)
        if (kind !== KIND_PIECE || step !== k || list.byteLength !== PIECE_PREAMBLE_BYTES + e * 4) {
          const what = kind !== KIND_PIECE ? 'a header' : step !== k ? `a piece of step ${step}` : `a piece of ${list.byteLength - PIECE_PREAMBLE_BYTES} bytes`
          throw new AllReduceProtocolError(kind !== KIND_PIECE ? 'kind' : step !== k ? 'step' : 'length', `${this.pred} sent ${what} where ${e * 4} bytes of chunk ${c} were due (${this.stepName(k)})`, { peer: this.pred, step: k })
        }
        if (gather) {
          // all-gather overwrites a chunk we sent in the reduce-scatter: that piece's send must be done
          await this.untilSent(this.sendBase[k - this.n + 1] + piece + 1, signal)
          this.view.setParts(start + p, list, PIECE_PREAMBLE_BYTES, e)
        } else {
          this.view.addParts(start + p, list, PIECE_PREAMBLE_BYTES, e)
        }
        this.bytesReceived += e * 4
        this.progressReceived()
      }
      this.recvSteps = k + 1
    }
    this.service.track(this.finishInbound(inb))
  }

  /** The next frame of the predecessor's stream (`expectBytes` as for Inbound); an abort frame or a dead stream throws. */
  private async read (inb: Inbound, k: number, expectBytes: number): Promise<Uint8ArrayList> {
    inb.expectBytes = expectBytes
    let list: Uint8ArrayList | undefined
    try {
      list = await inb.next()
    } catch (err) {
      throw this.classify(err, this.pred, k)
    }
    if (list === undefined) throw new AllReduceProtocolError('kind', `${this.pred} ended its stream before ${this.stepName(k)} of round ${this.key}`, { peer: this.pred, step: k })
    if (list.byteLength <= MAX_HEADER_BYTES && list.byteLength >= PIECE_PREAMBLE_BYTES && peekPreamble(list, this.pred).kind === KIND_ABORT) {
      const frame = decodeFrame(list, this.pred)
      if (frame.kind === 'abort') throw this.remoteFailure(frame, this.pred)
    }
    return list
  }

  /** After the last step: the predecessor's end frame, then ours back, so both ends close cleanly. */
  private async finishInbound (inb: Inbound): Promise<void> {
    const linger = AbortSignal.any([AbortSignal.timeout(LINGER_MS), this.service.closing.signal])
    const onLinger = (): void => { inb.controller.abort(linger.reason) }
    linger.addEventListener('abort', onLinger, { once: true })
    try {
      inb.expectBytes = -1
      const extra = await inb.next()
      if (extra !== undefined) log('%s sent more after the last step of round %s (%d bytes): ignored, the result is complete', this.pred, this.key, extra.byteLength)
      await endFrames(inb.stream, linger)
    } catch (err) {
      log('closing %s\'s stream of round %s: %s', this.pred, this.key, message(err))
    } finally {
      linger.removeEventListener('abort', onLinger)
      inb.close(new Error('round done'))
      if (inb.stream.status === 'open') inb.stream.abort(new Error('all-reduce stream done'))
    }
  }

  // ---- errors

  /** What an abort frame from a neighbour means here. */
  private remoteFailure (f: AbortFrame, from: string): AllReduceError {
    const step = f.step === NO_STEP ? undefined : f.step
    const text = `${from} refused this member's stream of round ${this.key} (${f.code}): ${f.reason}`
    const opts = { peer: from, step, remote: true }
    if (f.refusal) {
      switch (f.code) {
        case ALLREDUCE_ERROR_CODES.notInGroup: return new NotInGroupError(text, opts)
        case ALLREDUCE_ERROR_CODES.roundKeyMismatch: return new RoundKeyMismatchError(f.key, this.key, text, opts)
        case ALLREDUCE_ERROR_CODES.groupMismatch: return new GroupMismatchError(text, opts)
        case ALLREDUCE_ERROR_CODES.protocol: return new AllReduceProtocolError(f.problem ?? 'malformed', text, opts)
        case ALLREDUCE_ERROR_CODES.busy: return new AllReduceBusyError(text, opts)
        case ALLREDUCE_ERROR_CODES.timeout: return new AllReduceTimeoutError(text, opts)
      }
    }
    const about = f.peer !== '' ? f.peer : from
    return new AllReduceAbortedError(from, f.code, `round ${this.key} aborted: ${from} reports ${f.code} about ${about}: ${f.reason}`, { peer: about, step })
  }

  /** A failure of a read, a write or the dial, as a typed error naming `peer` and the step. */
  private classify (err: unknown, peer: string, k: number): Error {
    if (this.failure !== undefined) return this.failure
    if (err instanceof AllReduceError) return err
    if (err instanceof FrameTooLargeError || err instanceof MalformedFrameError) {
      return new AllReduceProtocolError('length', `${peer} sent a bad frame at ${this.stepName(k)}: ${err.message}`, { peer, step: k, cause: err })
    }
    if (!(err instanceof SpotpipeError) && this.controller.signal.aborted) return this.controller.signal.reason as Error
    return new PeerLostError(peer, k, `stream with ${peer} failed at ${this.stepName(k)} of round ${this.key}: ${message(err)}`, { cause: err })
  }

  private timeoutError (): AllReduceTimeoutError {
    const k = Math.min(this.sentSteps, this.recvSteps)
    let peer = this.pred
    let what: string
    if (this.dialing) {
      peer = this.succ
      what = `still opening a stream to ${this.succ}`
    } else if (this.inbound === undefined) {
      what = `no stream from its predecessor ${this.pred} yet`
    } else if (this.recvSteps <= this.sentSteps || this.sentAll) {
      what = `waiting for ${this.stepName(this.recvSteps)} from ${this.pred}`
    } else {
      peer = this.succ
      what = `${this.succ} not taking ${this.stepName(this.sentSteps)}`
    }
    return new AllReduceTimeoutError(`all-reduce round ${this.key} did not finish within ${this.plan.timeoutMs} ms: ${what}`, { peer, step: k })
  }
}

/**
 * Length-prefixed frames over a libp2p 3 Stream, with back-pressure on both ends.
 *
 * Wire format: unsigned LEB128 varint payload length, then the payload (the same layout as
 * it-length-prefixed). A zero-length frame is reserved as the end-of-stream marker: a sender that
 * finishes properly calls `endFrames`, so a reader can tell "done" from "peer died" (libp2p closes
 * a dead peer's streams without an error, just like a clean close).
 *
 * libp2p 3 streams are event emitters, not sinks. Sending: `send()` queues the bytes and returns
 * false when the muxer cannot take more; we then wait for the 'drain' event (not `onDrain()`, which
 * in @libp2p/utils 7.4.1 stays resolved after the first drain). Receiving: the stream's own async
 * iterator buffers without limit, so readFrames listens for 'message' itself and `pause()`s the
 * stream while the consumer is busy, which stops yamux window updates and so the sender.
 */
import { Uint8ArrayList } from 'uint8arraylist'
import type { Libp2p, PeerId, Stream, StreamCloseEvent } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { MAX_VARINT_BYTES, encodeVarint, readVarint } from '../../protocols/index.js'
import {
  DialError, FrameTooLargeError, MalformedFrameError, PeerGoneError, StreamClosedError, TruncatedFrameError,
  secretMismatchHint
} from './errors.js'

const END_FRAME = new Uint8Array([0])
/** yamux's default largest receive window per stream. */
const DEFAULT_MAX_STREAM_WINDOW = 16 * 1024 * 1024

/** A frame: one buffer, a Uint8ArrayList, or several buffers sent back to back as one payload. */
export type FrameData = Uint8Array | Uint8ArrayList | readonly Uint8Array[]

// ---------------------------------------------------------------------------------------------
// writing

/**
 * Writes one frame (`parts` of an array are concatenated into one payload without copying).
 * Resolves once the stream's muxer has taken the bytes; until then, do not modify them. Rejects
 * with StreamClosedError if the stream closes first, or with the signal's reason on abort.
 * Empty payloads are not allowed (zero length is the end-of-stream marker).
 */
export async function writeFrame (stream: Stream, frame: FrameData, signal?: AbortSignal): Promise<void> {
  const parts: ReadonlyArray<Uint8Array | Uint8ArrayList> = isPartList(frame) ? frame : [frame]
  let length = 0
  for (const p of parts) length += p.byteLength
  if (length === 0) throw new MalformedFrameError('cannot write an empty frame: zero length is the end-of-stream marker')
  await sendWithBackPressure(stream, [encodeVarint(length), ...parts], signal)
}

/**
 * Marks a clean end: sends the end-of-stream frame and closes our writable end (waiting for queued
 * data to be flushed). The stream stays readable until the remote closes its end.
 */
export async function endFrames (stream: Stream, signal?: AbortSignal): Promise<void> {
  await sendWithBackPressure(stream, [END_FRAME], signal)
  try {
    await stream.close({ signal })
  } catch (err) {
    signal?.throwIfAborted()
    throw new StreamClosedError(closeReason(stream), `stream ${stream.id} closed before the end-of-stream frame was flushed`, { cause: err })
  }
}

/** Waits until `stream` can take more data: resolves at once if it can, rejects if it closes first. */
export async function waitForDrain (stream: Stream, signal?: AbortSignal): Promise<void> {
  while (stream.writableNeedsDrain) {
    signal?.throwIfAborted()
    if (stream.writeStatus === 'closed') throw new StreamClosedError(closeReason(stream), `stream ${stream.id} closed while waiting to write`)
    await new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        stream.removeEventListener('drain', onDrain)
        stream.removeEventListener('close', onClose)
        signal?.removeEventListener('abort', onAbort)
      }
      const onDrain = (): void => { cleanup(); resolve() }
      const onClose = (evt: StreamCloseEvent): void => {
        cleanup()
        reject(new StreamClosedError(closeReasonOf(evt), `stream ${stream.id} closed while waiting to write`, { cause: evt.error }))
      }
      const onAbort = (): void => { cleanup(); reject(signal?.reason) }
      stream.addEventListener('drain', onDrain)
      stream.addEventListener('close', onClose)
      signal?.addEventListener('abort', onAbort)
    })
  }
}

async function sendWithBackPressure (stream: Stream, chunks: Array<Uint8Array | Uint8ArrayList>, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted()
  // another writer may have filled the buffer: queue behind it rather than growing it further
  await waitForDrain(stream, signal)
  if (stream.writeStatus !== 'writable') {
    throw new StreamClosedError(closeReason(stream), `cannot write to stream ${stream.id}: its writable end is ${stream.writeStatus}`)
  }
  try {
    // all chunks go out in the same tick so concurrent writers never interleave inside a frame
    for (const c of chunks) stream.send(c)
  } catch (err) {
    throw new StreamClosedError(closeReason(stream), `write to stream ${stream.id} failed: ${(err as Error).message}`, { cause: err })
  }
  await waitForDrain(stream, signal)
}

// ---------------------------------------------------------------------------------------------
// reading

export interface ReadFramesOptions {
  /** Largest payload accepted; a bigger length prefix throws FrameTooLargeError before any of it is buffered. */
  maxFrameBytes: number
  /** Aborting stops the reader with the signal's reason (the stream itself is left alone). */
  signal?: AbortSignal
  /**
   * Require the end-of-stream frame: a stream that ends without it throws PeerGoneError. With
   * false, a close on a frame boundary also ends the iteration normally.
   * @default true
   */
  requireEndFrame?: boolean
  /**
   * Bytes buffered by the reader (beyond the frame being consumed) before it pauses the stream.
   * @default 1 MiB
   */
  highWaterMark?: number
  /**
   * Admission control: called with each frame's length as soon as its length prefix has arrived,
   * before any of its body is buffered. Return false to discard the frame (its body is dropped as
   * it arrives, never buffered or yielded; the next frame is read as usual); throw to end the read
   * with that error. Called again only after the consumer has asked for the next frame.
   * @default every frame within maxFrameBytes is read
   */
  admit?: (length: number) => boolean
}

/**
 * Yields each frame's payload. Finishes after the end-of-stream frame. Throws FrameTooLargeError,
 * MalformedFrameError (bad varint), TruncatedFrameError (stream ended mid-frame), PeerGoneError
 * (ended without the end frame) or StreamClosedError (reset/aborted). Frames that arrived
 * completely before a reset are still yielded before the error.
 *
 * The returned arrays are not reused by the reader and may be kept. Only one reader per stream.
 */
export async function * readFrames (stream: Stream, options: ReadFramesOptions): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const list of readFrameLists(stream, options)) yield list.subarray()
}

/**
 * readFrames without joining each payload into one buffer: yields it as the list of transport
 * buffers it arrived in (a frame larger than one noise message spans several). For receivers that
 * copy the payload somewhere anyway, this saves a copy and an allocation per frame. Same errors.
 */
export async function * readFrameLists (stream: Stream, options: ReadFramesOptions): AsyncGenerator<Uint8ArrayList, void, undefined> {
  const { maxFrameBytes, signal, admit } = options
  const requireEndFrame = options.requireEndFrame ?? true
  const highWaterMark = options.highWaterMark ?? 1024 * 1024
  if (!(Number.isSafeInteger(maxFrameBytes) && maxFrameBytes > 0)) throw new RangeError(`maxFrameBytes must be a positive integer, got ${maxFrameBytes}`)

  // While paused, the muxer keeps what is in flight (up to one yamux window, 16 MiB at most by
  // default) in the stream's read buffer, and resets the stream past maxReadBufferLength (4 MiB
  // by default). Make room for a default window; createPeerLibp2p sizes it for its own window.
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, DEFAULT_MAX_STREAM_WINDOW + highWaterMark)

  const buffered = new Uint8ArrayList()
  let consumerBusy = false
  let ended = stream.readableEnded
  let failure: Error | undefined
  // wake-up for the generator; `pending` keeps a notification that came while nobody waited
  // (resume() dispatches buffered data, and possibly 'end', synchronously)
  let wake: (() => void) | undefined
  let pending = false
  const notify = (): void => {
    const w = wake
    wake = undefined
    if (w == null) pending = true
    else w()
  }

  const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
    buffered.append(evt.data)
    if (consumerBusy && buffered.byteLength >= highWaterMark && stream.readStatus === 'readable') stream.pause()
    notify()
  }
  const onEnd = (): void => { ended = true; notify() }
  const onClose = (evt: StreamCloseEvent): void => {
    if (evt.error != null) {
      failure ??= new StreamClosedError(closeReasonOf(evt), `stream ${stream.id} was ${closeReasonOf(evt) === 'aborted' ? 'aborted' : 'reset by the remote'}: ${evt.error.message}`, { cause: evt.error })
    } else if (stream.readableEnded) {
      ended = true
    }
    notify()
  }
  const onAbort = (): void => { notify() }

  // Returns once more input may be available; throws if none will come. Returns false when the
  // stream ended cleanly on a frame boundary and the end frame is not required.
  const needMore = async (): Promise<boolean> => {
    signal?.throwIfAborted()
    if (failure != null) throw failure
    if (ended || isReadDone(stream)) {
      if (buffered.byteLength > 0) throw new TruncatedFrameError(`stream ${stream.id} ended in the middle of a frame (${buffered.byteLength} bytes of it received)`)
      if (requireEndFrame) throw new PeerGoneError(`stream ${stream.id} ended without an end-of-stream frame: the peer died or the connection dropped`)
      return false
    }
    if (stream.readStatus === 'paused') stream.resume()
    if (!pending) await new Promise<void>(resolve => { wake = resolve })
    pending = false
    return true
  }

  stream.addEventListener('message', onMessage)
  stream.addEventListener('end', onEnd)
  stream.addEventListener('close', onClose)
  signal?.addEventListener('abort', onAbort)
  // bytes of a discarded frame's body still to arrive; whether the frame at the head was admitted
  let discarding = 0
  let admitted = false
  try {
    while (true) {
      if (discarding > 0) {
        const n = Math.min(discarding, buffered.byteLength)
        buffered.consume(n)
        discarding -= n
        if (discarding > 0 && !(await needMore())) return
        continue
      }
      const header = peekLength(buffered, maxFrameBytes)
      if (header === undefined) {
        if (!(await needMore())) return
        continue
      }
      if (header.length === 0) {
        buffered.consume(header.headerBytes)
        return
      }
      if (admit != null && !admitted) {
        if (!admit(header.length)) {
          buffered.consume(header.headerBytes)
          discarding = header.length
          continue
        }
        admitted = true
      }
      if (buffered.byteLength < header.headerBytes + header.length) {
        if (!(await needMore())) return
        continue
      }
      admitted = false
      const frame = buffered.sublist(header.headerBytes, header.headerBytes + header.length)
      buffered.consume(header.headerBytes + header.length)
      consumerBusy = true
      if (buffered.byteLength >= highWaterMark && stream.readStatus === 'readable') stream.pause()
      yield frame
      consumerBusy = false
    }
  } finally {
    stream.removeEventListener('message', onMessage)
    stream.removeEventListener('end', onEnd)
    stream.removeEventListener('close', onClose)
    signal?.removeEventListener('abort', onAbort)
    // hand unread bytes back so a later reader of the same stream sees them
    if (stream.readStatus === 'readable' || stream.readStatus === 'paused') {
      if (buffered.byteLength > 0) stream.unshift(buffered)
      if (stream.readStatus === 'paused') stream.resume()
    }
  }
}

/**
 * Reads one frame (e.g. a request or a reply); undefined if the peer sent its end-of-stream frame
 * instead. Errors as for readFrames. Frames after it stay on the stream for the next reader.
 */
export async function readOneFrame (stream: Stream, options: ReadFramesOptions): Promise<Uint8Array | undefined> {
  for await (const frame of readFrames(stream, options)) return frame
  return undefined
}

/** Nothing more can be read: the read side ended, or the stream is closed with an empty buffer. */
function isReadDone (stream: Stream): boolean {
  if (stream.readableEnded) return true
  return stream.status !== 'open' && stream.readStatus !== 'paused' && stream.readBufferLength === 0
}

/** Decodes the length prefix at the start of `buf`; undefined while the varint is incomplete. */
function peekLength (buf: Uint8ArrayList, max: number): { length: number, headerBytes: number } | undefined {
  const { value, end, complete } = readVarint(buf.subarray(0, Math.min(buf.byteLength, MAX_VARINT_BYTES)))
  if (complete) {
    if (value > max) throw new FrameTooLargeError(value > Number.MAX_SAFE_INTEGER ? Infinity : value, max)
    return { length: value, headerBytes: end }
  }
  if (buf.byteLength >= MAX_VARINT_BYTES) throw new MalformedFrameError(`length prefix is not a varint (more than ${MAX_VARINT_BYTES} bytes)`)
  // incomplete prefix: reject as soon as the bytes so far already exceed the limit
  if (value > max) throw new FrameTooLargeError(value > Number.MAX_SAFE_INTEGER ? Infinity : value, max)
  return undefined
}

function isPartList (frame: FrameData): frame is readonly Uint8Array[] {
  return Array.isArray(frame)
}

// ---------------------------------------------------------------------------------------------
// opening streams and telling clean ends from dead peers

export interface OpenStreamOptions {
  /** Cancels the dial and protocol negotiation. */
  signal?: AbortSignal
  /**
   * Gives up (DialError) after this many ms.
   * @default 10_000
   */
  timeoutMs?: number
}

/**
 * Opens a stream for `protocol` to `peer` (dialling if needed). Throws DialError if the peer cannot
 * be reached, does not speak the protocol or the timeout passes; rethrows the caller's abort reason
 * if `options.signal` aborts.
 */
export async function openStream (
  node: Pick<Libp2p, 'dialProtocol'>,
  peer: PeerId | Multiaddr | Multiaddr[],
  protocol: string | string[],
  options: OpenStreamOptions = {}
): Promise<Stream> {
  const timeoutMs = options.timeoutMs ?? 10_000
  const timeout = AbortSignal.timeout(timeoutMs)
  const signal = options.signal == null ? timeout : AbortSignal.any([options.signal, timeout])
  try {
    return await node.dialProtocol(peer, protocol, { signal })
  } catch (err) {
    options.signal?.throwIfAborted()
    const why = timeout.aborted ? `timed out after ${timeoutMs} ms` : `${(err as Error).message}${secretMismatchHint(err)}`
    throw new DialError(`cannot open ${String(protocol)} to ${String(peer)}: ${why}`, { cause: err })
  }
}

/**
 * How a stream finished:
 * - `clean`: the remote closed its writable end (FIN) before the stream closed,
 * - `dead`: it closed without the remote ever closing its end (peer killed, connection dropped),
 * - `reset`: the remote reset it,
 * - `aborted`: this side aborted it.
 */
export type StreamEndKind = 'clean' | 'dead' | 'reset' | 'aborted'

/**
 * Resolves with how `stream` finished, once it has fully closed. Call it right after opening or
 * accepting the stream: it learns about the remote's close as it happens. (For data integrity,
 * prefer the end-of-stream frame: readFrames reports PeerGoneError/TruncatedFrameError itself.)
 */
export async function streamEnd (stream: Stream): Promise<StreamEndKind> {
  let remoteClosed = stream.remoteWriteStatus === 'closed'
  if (stream.status === 'reset') return 'reset'
  if (stream.status === 'aborted') return 'aborted'
  if (stream.status === 'closed') return remoteClosed ? 'clean' : 'dead'
  return await new Promise<StreamEndKind>(resolve => {
    const onRemoteCloseWrite = (): void => { remoteClosed = true }
    const onClose = (evt: StreamCloseEvent): void => {
      stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite)
      stream.removeEventListener('close', onClose)
      if (evt.error != null) resolve(closeReasonOf(evt) === 'aborted' ? 'aborted' : 'reset')
      else resolve(remoteClosed ? 'clean' : 'dead')
    }
    stream.addEventListener('remoteCloseWrite', onRemoteCloseWrite)
    stream.addEventListener('close', onClose)
  })
}

function closeReasonOf (evt: StreamCloseEvent): 'reset' | 'aborted' | 'closed' {
  if (evt.error == null) return 'closed'
  return evt.local === true ? 'aborted' : 'reset'
}

function closeReason (stream: Stream): 'reset' | 'aborted' | 'closed' {
  if (stream.status === 'reset') return 'reset'
  if (stream.status === 'aborted') return 'aborted'
  return 'closed'
}

/**
 * Typed errors for the transport layer (identity/swarm-key files, framed streams, dialing,
 * pub/sub). Same convention as common/errors.ts: branch on `code`, not on messages.
 */
import { SpotpipeError } from '../../common/index.js'

/** What went wrong with a key file: so callers can e.g. create a missing file but not clobber a bad one. */
export type KeyFileProblem = 'missing' | 'unreadable' | 'malformed' | 'unwritable'

/** An identity (private key) file is missing, unreadable, malformed or cannot be written. */
export class IdentityFileError extends SpotpipeError {
  readonly path: string
  readonly problem: KeyFileProblem
  constructor (path: string, problem: KeyFileProblem, detail: string, options?: { cause?: unknown }) {
    super('ERR_IDENTITY_FILE', `identity file ${path}: ${detail}`, options)
    this.path = path
    this.problem = problem
  }
}

/** A swarm (pre-shared network) key is missing, unreadable or not in the /key/swarm/psk/1.0.0/ format. */
export class SwarmKeyError extends SpotpipeError {
  readonly path: string | undefined
  readonly problem: KeyFileProblem
  constructor (path: string | undefined, problem: KeyFileProblem, detail: string, options?: { cause?: unknown }) {
    super('ERR_SWARM_KEY', `swarm key${path == null ? '' : ` ${path}`}: ${detail}`, options)
    this.path = path
    this.problem = problem
  }
}

/**
 * How a stream stopped being usable:
 * - `reset`: the remote reset it (or its muxer went away with an error),
 * - `aborted`: this side aborted it,
 * - `closed`: it closed without an error while we still needed it (the remote end is gone).
 */
export type StreamCloseReason = 'reset' | 'aborted' | 'closed'

/** A write (or a wait for the stream to drain) was cut short because the stream closed. */
export class StreamClosedError extends SpotpipeError {
  readonly reason: StreamCloseReason
  constructor (reason: StreamCloseReason, message: string, options?: { cause?: unknown }) {
    super('ERR_STREAM_CLOSED', message, options)
    this.reason = reason
  }
}

/** A frame's length prefix announces more bytes than the reader accepts (it is rejected unread). */
export class FrameTooLargeError extends SpotpipeError {
  readonly length: number
  readonly limit: number
  constructor (length: number, limit: number) {
    super('ERR_FRAME_TOO_LARGE', `frame of ${length === Infinity ? 'more than 2^53' : length} bytes exceeds the limit of ${limit} bytes`)
    this.length = length
    this.limit = limit
  }
}

/** The stream ended in the middle of a frame (inside the length prefix or the payload). */
export class TruncatedFrameError extends SpotpipeError {
  constructor (message: string) { super('ERR_TRUNCATED_FRAME', message) }
}

/** A frame cannot be encoded or decoded: an empty payload was written, or a length prefix is not a valid varint. */
export class MalformedFrameError extends SpotpipeError {
  constructor (message: string) { super('ERR_MALFORMED_FRAME', message) }
}

/**
 * The stream ended on a frame boundary but without the end-of-stream frame: the peer died, or the
 * connection dropped, before it said it was done.
 */
export class PeerGoneError extends SpotpipeError {
  constructor (message: string) { super('ERR_PEER_GONE', message) }
}

/** Opening a connection or a protocol stream to a peer failed or timed out. */
export class DialError extends SpotpipeError {
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_DIAL', message, options) }
}

/** A pub/sub message is larger than gossipsub will carry (gossipsub drops those silently). */
export class MessageTooLargeError extends SpotpipeError {
  constructor (message: string) { super('ERR_MESSAGE_TOO_LARGE', message) }
}

/**
 * True when `err` means the remote end went away rather than finished cleanly: the stream ended
 * without an end-of-stream frame, mid-frame, was reset, or closed under a pending write.
 */
export function isPeerGone (err: unknown): boolean {
  if (err instanceof PeerGoneError || err instanceof TruncatedFrameError) return true
  return err instanceof StreamClosedError && err.reason !== 'aborted'
}

/**
 * Why a dial failed, when it may be the cluster secret: the noise handshake fails to authenticate
 * when the two nodes hold different swarm keys, or one holds none. A handshake cut off by a timeout
 * says nothing about the keys (the other node may be paused or overloaded): the hint says so
 * instead. '' for any other failure.
 */
export function secretMismatchHint (err: unknown): string {
  const chain = errorChain(err)
  if (!chain.some(e => e.name === 'EncryptionFailedError')) return ''
  const timedOut = chain.some(e => e.name === 'TimeoutError' || e.name === 'AbortError' || /timed? ?out|aborted/i.test(e.message ?? ''))
  return timedOut
    ? ' (the handshake did not finish in time: the other node may be paused or overloaded; if this persists, check that both hold the same --swarm-key)'
    : ' (the handshake failed: the two nodes hold different --swarm-key files, or one of them is --open)'
}

/** `err`, its causes and aggregated errors, a few levels deep. */
function errorChain (err: unknown, depth = 0): Array<{ name?: string, message?: string }> {
  if (err == null || typeof err !== 'object' || depth > 4) return []
  const e = err as { name?: string, message?: string, cause?: unknown, errors?: unknown[] }
  return [e, ...[e.cause, ...(Array.isArray(e.errors) ? e.errors : [])].flatMap(inner => errorChain(inner, depth + 1))]
}

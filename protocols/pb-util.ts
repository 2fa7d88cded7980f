/**
 * Shared plumbing for the protobuf-based codecs: the size check before parsing, and turning whatever
 * the generated decoder throws into one of our typed errors.
 */
import { MaxLengthError } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'
import {
  FrameTooLargeError, LimitExceededError, MalformedMessageError, ProtocolError, TruncatedFrameError
} from './errors.js'

/** Rejects over-limit and empty input before any parsing; returns the byte length. */
export function checkFrameSize (bytes: Uint8Array | Uint8ArrayList, what: string, maxBytes: number): number {
  const len = bytes?.byteLength
  if (typeof len !== 'number') throw new MalformedMessageError(`${what}: expected bytes`)
  if (len > maxBytes) throw new FrameTooLargeError(`${what}: ${len} bytes, limit ${maxBytes}`)
  if (len === 0) throw new TruncatedFrameError(`${what}: empty`)
  return len
}

/** Runs a generated decoder; anything it throws comes out as a ProtocolError. */
export function decodeProtobuf<T> (decode: () => T, what: string): T {
  try {
    return decode()
  } catch (err) {
    throw toProtocolError(err, what)
  }
}

function toProtocolError (err: unknown, what: string): ProtocolError {
  if (err instanceof ProtocolError) return err
  const message = err instanceof Error ? err.message : String(err)
  if (err instanceof MaxLengthError) {
    const field = /field "([^"]+)"/.exec(message)?.[1]
    return new LimitExceededError(`${what}: too many entries${field === undefined ? '' : ` in ${field}`}`, { field, cause: err })
  }
  // The reader throws RangeError('index out of range: ...') when a length points past the end.
  if (err instanceof RangeError && message.startsWith('index out of range')) {
    return new TruncatedFrameError(`${what}: ends early (${message})`, { cause: err })
  }
  return new MalformedMessageError(`${what}: cannot parse (${message})`, { cause: err })
}

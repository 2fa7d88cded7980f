/**
 * What the service and its rounds share: an inbound stream whose reader admits only the frame due
 * (Inbound), a control frame sent before a reset (sendControl), and small async helpers.
 */
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { ConfigError } from '../../common/index.js'
import { endFrames, readFrameLists, writeFrame } from '../transport/index.js'
import { CONTROL_FLUSH_MS, MAX_HEADER_BYTES, PIECE_BYTES, PIECE_PREAMBLE_BYTES, READ_HIGH_WATER_MARK } from './constants.js'
import type { HeaderFrame } from './codec.js'
import { AllReduceProtocolError } from './errors.js'

export interface Deferred<T> { promise: Promise<T>, resolve: (v: T) => void }

/** A promise and its resolve (rejections never happen: waits are cut short by the round's signal instead). */
export function deferred<T> (): Deferred<T> {
  let resolve!: (v: T) => void
  const promise = new Promise<T>(res => { resolve = res })
  return { promise, resolve }
}

/** `p`, or the signal's reason once it aborts (the promise itself is left alone). */
export async function abortable<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted()
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
  }
}

/**
 * Sends a refusal or abort, closes our end, and resets the stream: the remote gets a precise error
 * instead of a bare reset when it is still there and reading, within CONTROL_FLUSH_MS.
 */
export async function sendControl (stream: Stream, frame: Uint8Array): Promise<void> {
  const signal = AbortSignal.timeout(CONTROL_FLUSH_MS)
  try {
    if (stream.status === 'open' && stream.writeStatus === 'writable') {
      await writeFrame(stream, frame, signal)
      await endFrames(stream, signal)
    }
  } catch {
    // gone or not reading: the reset says enough
  } finally {
    if (stream.status === 'open') stream.abort(new Error('all-reduce stream refused or aborted'))
  }
}


export function positive (name: string, v: number | undefined, fallback: number): number {
  const x = v ?? fallback
  if (!Number.isFinite(x) || x <= 0) throw new ConfigError(`${name} must be a positive number, got ${v}`)
  return x
}

/** An inbound stream: its frame reader, whose admission limit follows what the round expects next. */
export class Inbound {
  readonly stream: Stream
  readonly from: string
  readonly controller = new AbortController()
  readonly frames: AsyncGenerator<Uint8ArrayList, void, undefined>
  /** -1: a header is due (at most MAX_HEADER_BYTES); else the exact length of the piece due. */
  expectBytes = -1
  step = 0
  first: HeaderFrame | undefined
  pendingTimer: NodeJS.Timeout | undefined
  attached = false

  constructor (stream: Stream, from: string) {
    this.stream = stream
    this.from = from
    this.frames = readFrameLists(stream, {
      // the real bound is admit's: a header, or exactly the piece due
      maxFrameBytes: Math.max(MAX_HEADER_BYTES, PIECE_PREAMBLE_BYTES + PIECE_BYTES),
      signal: this.controller.signal,
      highWaterMark: READ_HIGH_WATER_MARK,
      admit: length => this.admit(length)
    })
  }

  /** Before any of a frame's body is buffered. An abort fits in any position; anything else must be exactly what is due. */
  private admit (length: number): boolean {
    if (length <= MAX_HEADER_BYTES) return true // a header or an abort (or a short piece, checked once read)
    if (length === this.expectBytes) return true
    const due = this.expectBytes < 0 ? `a header of at most ${MAX_HEADER_BYTES} bytes` : `a piece of ${this.expectBytes} bytes`
    throw new AllReduceProtocolError('length', `${this.from} announced a frame of ${length} bytes where ${due} was due`, { peer: this.from, step: this.step })
  }

  /** The next frame, or undefined after the end-of-stream frame. */
  async next (): Promise<Uint8ArrayList | undefined> {
    const r = await this.frames.next()
    return r.done === true ? undefined : r.value
  }

  /** Stops reading (listeners off); the stream itself is left to the caller. */
  close (reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason)
    clearTimeout(this.pendingTimer)
    void this.frames.return(undefined).catch(() => {})
  }
}

/**
 * `--events FILE` for `spotpipe coordinator` and `spotpipe peer`: every event an emitter raises is
 * appended to FILE as one JSON line `{type, at, ...payload}` (`at`: Unix ms when it was written; an
 * array payload, such as the coordinator's `recovery` records, gives one line per element). The
 * file is opened for appending, so a restarted process continues the same history, and each line is
 * one synchronous write: a process killed right after an event has already recorded it. Tools such
 * as the chaos suite (sim/chaos/) read these files instead of parsing log text.
 */
import { closeSync, openSync, writeSync } from 'node:fs'
import { SpotpipeError } from '../common/index.js'

/** The events file cannot be opened or written. */
export class EventsFileError extends SpotpipeError {
  readonly path: string
  constructor (path: string, detail: string, options?: { cause?: unknown }) {
    super('ERR_EVENTS_FILE', `events file ${path}: ${detail}`, options)
    this.path = path
  }
}

/** Anything with `on`/`off` (an EventEmitter). */
export interface EventSource {
  on: (event: string, listener: (...args: unknown[]) => void) => unknown
  off: (event: string, listener: (...args: unknown[]) => void) => unknown
}

/** JSON that survives non-finite numbers (as null, JSON's own choice) and bigints (as strings). */
function line (type: string, payload: unknown): string {
  const body = payload != null && typeof payload === 'object' && !Array.isArray(payload) ? payload : payload === undefined ? {} : { value: payload }
  return JSON.stringify({ type, at: Date.now(), ...body }, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v) + '\n'
}

export class EventsFile {
  readonly path: string
  private fd?: number
  private readonly detach: Array<() => void> = []

  constructor (path: string) {
    this.path = path
    try {
      this.fd = openSync(path, 'a')
    } catch (err) {
      throw new EventsFileError(path, (err as Error).message, { cause: err })
    }
  }

  /** Appends one event (one line per element when `payload` is an array). */
  write (type: string, payload?: unknown): void {
    if (this.fd == null) return
    const text = Array.isArray(payload) ? payload.map(p => line(type, p)).join('') : line(type, payload)
    try {
      writeSync(this.fd, text)
    } catch (err) {
      throw new EventsFileError(this.path, `cannot append a ${type} event: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Records every `types` event `source` emits from now on (an event it never emits costs nothing). */
  record (source: EventSource, types: readonly string[]): void {
    for (const type of types) {
      const listener = (payload: unknown): void => { this.write(type, payload) }
      source.on(type, listener)
      this.detach.push(() => { source.off(type, listener) })
    }
  }

  close (): void {
    for (const d of this.detach.splice(0)) d()
    if (this.fd != null) closeSync(this.fd)
    this.fd = undefined
  }
}

/** The coordinator events the file records (the last four fire once the recovery and divergence work lands). */
export const COORDINATOR_EVENTS = ['begin', 'iteration', 'epoch', 'recovery-planned', 'recovery', 'recovered', 'recovery-failed', 'checkpoint', 'divergence'] as const

/** Peer events the file records, when the Peer emits them: `stage` {stage, epoch, source, rung?} on every install. */
export const PEER_EVENTS = ['stage', 'recovery-failed'] as const

/**
 * The coordinator's own pauses, from the readings of a periodic timer (the arithmetic only; the
 * failure detector's sweep supplies the clock readings). Two kinds:
 *   - a stall: the monotonic clock advanced far more than the timer's interval between two ticks:
 *     the process did not run (SIGSTOP, a long GC, a starved or throttled VM, a blocked event loop);
 *   - a clock jump: the wall clock and the monotonic clock disagree on how long passed. A suspended
 *     VM shows up this way on Linux (CLOCK_MONOTONIC does not count suspend; the wall clock does),
 *     and so does a wall-clock step (NTP, an operator).
 * Either way, silence the coordinator measured across it says nothing about its peers.
 */
import { ConfigError } from '../common/index.js'

export interface Pause {
  kind: 'stall' | 'clock-jump'
  /** How long the process stood still (stall) or how far the wall clock moved beyond the monotonic one (may be negative). */
  ms: number
  /** Monotonic reading (ms) at which the pause was noticed: it ended at or before this. */
  at: number
}

export interface PauseDetectorOptions {
  /** The interval of the timer that calls tick() (ms). Extra ticks in between are fine. */
  intervalMs: number
  /** A stall or clock divergence beyond this (ms) is a pause. @default 1000 */
  thresholdMs?: number
}

export class PauseDetector {
  readonly intervalMs: number
  readonly thresholdMs: number
  private last?: { mono: number, wall: number }

  constructor (opts: PauseDetectorOptions) {
    this.intervalMs = opts.intervalMs
    this.thresholdMs = opts.thresholdMs ?? 1000
    if (!(this.intervalMs > 0)) throw new ConfigError(`pause detector interval must be > 0, got ${this.intervalMs}`)
    if (!(this.thresholdMs > 0)) throw new ConfigError(`pause threshold must be > 0, got ${this.thresholdMs}`)
  }

  /**
   * One reading: `monoMs` from a monotonic clock (performance.now()), `wallMs` from the wall clock
   * (Date.now()). Returns the pause that ended since the previous reading, if there was one.
   */
  tick (monoMs: number, wallMs: number): Pause | undefined {
    const prev = this.last
    this.last = { mono: monoMs, wall: wallMs }
    if (prev == null) return undefined
    const ran = monoMs - prev.mono
    const stall = ran - this.intervalMs
    if (stall > this.thresholdMs) return { kind: 'stall', ms: stall, at: monoMs }
    const jump = (wallMs - prev.wall) - ran
    if (Math.abs(jump) > this.thresholdMs) return { kind: 'clock-jump', ms: jump, at: monoMs }
    return undefined
  }
}

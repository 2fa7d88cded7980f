/**
 * Phi-accrual suspicion (Hayashibara et al., "The phi accrual failure detector", SRDS 2004), the
 * arithmetic only: no clocks, no timers, no network. detector.ts applies it to heartbeats.
 *
 * A peer's heartbeat inter-arrival times are modelled as a normal distribution fitted to a sliding
 * window of its recent intervals. After `elapsed` ms of silence,
 *
 *   phi = -log10(P(the next heartbeat comes later than elapsed))
 *
 * so phi 1 means a 1-in-10 chance that the peer is merely late, phi 8 one in 10^8. A peer with a
 * steady rhythm reaches a given phi soon after its usual interval; one whose heartbeats wander (a
 * CPU-starved host, compute that blocks its event loop) is given proportionally longer.
 *
 * The normal tail uses the logistic approximation of the normal CDF (Bowling et al. 2009, absolute
 * error under 1.4e-4), as Akka's detector does; it is closed-form in both directions, so the
 * silence at which phi crosses a threshold is computed directly rather than searched for.
 */

import { ConfigError } from '../common/index.js'

/** Logistic-approximation coefficients: CDF(y) ~ 1 / (1 + exp(-z)), z = y * (A + B * y^2). */
const A = 1.5976
const B = 0.070566

/** phi after `elapsedMs` of silence when intervals are normal with `meanMs` and `stdDevMs` (> 0). */
export function phi (elapsedMs: number, meanMs: number, stdDevMs: number): number {
  const y = (elapsedMs - meanMs) / stdDevMs
  const z = y * (A + B * y * y)
  // -log10(e^-z / (1 + e^-z)), written so that neither branch overflows
  return (z >= 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z))) / Math.LN10
}

/** The silence (ms) at which phi reaches `threshold` (> 0): the inverse of phi(). */
export function elapsedAtPhi (threshold: number, meanMs: number, stdDevMs: number): number {
  if (!(threshold > 0)) throw new ConfigError(`phi threshold must be > 0, got ${threshold}`)
  // phi = log10(1 + e^z)  =>  z = ln(10^phi - 1), kept finite for large phi
  const z = threshold * Math.LN10 + Math.log1p(-Math.pow(10, -threshold))
  // solve B y^3 + A y - z = 0 (one real root: A, B > 0) by Cardano's formula
  const p = A / B
  const q = -z / B
  const d = Math.sqrt(q * q / 4 + p * p * p / 27)
  const y = Math.cbrt(-q / 2 + d) + Math.cbrt(-q / 2 - d)
  return meanMs + y * stdDevMs
}

export interface ArrivalWindowOptions {
  /** Intervals kept (the newest ones). @default 100 */
  size?: number
  /**
   * Lower bound on the standard deviation, so a metronome-regular peer is not judged on a few ms of
   * jitter. @default 100
   */
  minStdDevMs?: number
  /**
   * The expected heartbeat period. Until real intervals arrive the window holds two pseudo-intervals
   * at 0.75x and 1.25x of it (mean = the period, deviation = a quarter of it); real ones push them
   * out. @default 1000
   */
  bootstrapIntervalMs?: number
}

/** A sliding window of one peer's heartbeat intervals, with their mean and deviation. */
export class ArrivalWindow {
  readonly size: number
  readonly minStdDevMs: number
  private readonly ring: number[] = []
  private next = 0
  private sum = 0
  private sumSq = 0

  constructor (opts: ArrivalWindowOptions = {}) {
    this.size = opts.size ?? 100
    this.minStdDevMs = opts.minStdDevMs ?? 100
    const period = opts.bootstrapIntervalMs ?? 1000
    if (!Number.isInteger(this.size) || this.size < 2) throw new ConfigError(`window size must be an integer >= 2, got ${this.size}`)
    if (!(this.minStdDevMs > 0)) throw new ConfigError(`minimum deviation must be > 0, got ${this.minStdDevMs}`)
    if (!(period > 0)) throw new ConfigError(`bootstrap interval must be > 0, got ${period}`)
    this.add(period * 0.75)
    this.add(period * 1.25)
  }

  /** Records one interval (ms), evicting the oldest once the window is full. */
  add (intervalMs: number): void {
    if (!Number.isFinite(intervalMs) || intervalMs < 0) throw new RangeError(`interval must be a finite number >= 0, got ${intervalMs}`)
    if (this.ring.length < this.size) {
      this.ring.push(intervalMs)
    } else {
      const old = this.ring[this.next]
      this.sum -= old
      this.sumSq -= old * old
      this.ring[this.next] = intervalMs
      this.next = (this.next + 1) % this.size
    }
    this.sum += intervalMs
    this.sumSq += intervalMs * intervalMs
    // once per turn of the ring, re-add from scratch so rounding cannot pile up over a long run
    if (this.next === 0 && this.ring.length === this.size) {
      this.sum = 0
      this.sumSq = 0
      for (const x of this.ring) { this.sum += x; this.sumSq += x * x }
    }
  }

  /** Intervals held (pseudo-intervals included until pushed out). */
  get count (): number { return this.ring.length }
  get meanMs (): number { return this.sum / this.ring.length }
  /** Population deviation, never below minStdDevMs. */
  get stdDevMs (): number {
    const m = this.meanMs
    return Math.max(this.minStdDevMs, Math.sqrt(Math.max(0, this.sumSq / this.ring.length - m * m)))
  }

  /** The intervals held, oldest first. */
  intervals (): number[] { return [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)] }

  phi (elapsedMs: number): number { return phi(elapsedMs, this.meanMs, this.stdDevMs) }

  /** The silence (ms) after which this peer's phi exceeds `threshold`. */
  silenceAtPhi (threshold: number): number { return elapsedAtPhi(threshold, this.meanMs, this.stdDevMs) }
}

/**
 * Failure detection (DESIGN.md "Failure detection"). A stage's peer is lost when
 *   - its heartbeats stop for longer than its own rhythm makes plausible: phi-accrual suspicion
 *     (accrual.ts) on its inter-arrival times reaches `phiThreshold`, but never sooner than the
 *     floor (`heartbeatTimeoutMs`) and always by the ceiling (`maxHeartbeatTimeoutMs`);
 *   - the coordinator's connection to it closes and a ping fails (a killed process: ~ms);
 *   - a neighbour reports a broken activations stream and the coordinator cannot ping the suspect.
 * A peer that announces its departure is not lost but departing: it can still hand its stage over.
 *
 * Silence is measured on the monotonic clock, and the coordinator watches itself (pause.ts): after
 * it stalled (SIGSTOP, a long GC) or its clocks jumped (a suspended VM), silence it caused itself
 * is not evidence. Every watched peer then has `pauseGraceMs` to be heard again; one that is not
 * is pinged, and only a failed ping makes it lost. Intervals that span or directly follow a pause
 * are not added to any peer's history, nor is the silence of a peer declared lost that speaks again.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { ConfigError } from '../common/index.js'
import { createLog } from '../common/index.js'
import type { PeerLibp2p } from '../net/index.js'
import { ArrivalWindow } from './accrual.js'
import { PauseDetector, type Pause } from './pause.js'

const log = createLog('detector')

/** The sweep (and pause-watch) period. */
const SWEEP_MS = 100
/** A ping on a hint (disconnect, neighbour report): a live peer on a working link answers in ms. */
const HINT_PING_MS = 500
/** The second chance a hinted peer gets when its first ping timed out (a refused dial gets none). */
const SLOW_HINT_PING_MS = 3000
/** The ping that decides a peer not heard after a pause: its connection may have to be re-dialled. */
const RECONFIRM_PING_MS = 2000

export interface LostPeer {
  peerId: string
  cause: string
  /** When the coordinator decided (ms since epoch). */
  detectedAt: number
  /** Last sign of life (ms since epoch). */
  lastSeen: number
}

export interface DetectorOptions {
  /** Floor: no peer is declared lost for silence shorter than this (ms), whatever its rhythm. @default 3000 */
  heartbeatTimeoutMs?: number
  /** Ceiling: a peer silent this long (ms) is lost, whatever its rhythm. @default 30000 */
  maxHeartbeatTimeoutMs?: number
  /** Suspicion at which a silent peer is lost (between floor and ceiling): 8 is a 1-in-10^8 chance it is only late. @default 8 */
  phiThreshold?: number
  /** The peers' heartbeat period (ms): the rhythm assumed before any is measured. @default 1000 */
  heartbeatPeriodMs?: number
  /** After a coordinator pause, how long (ms) each watched peer has to be heard again before a ping decides. @default 5000 */
  pauseGraceMs?: number
  /** A stall of the coordinator's event loop, or a wall/monotonic clock divergence, beyond this (ms) is a pause. @default 1000 */
  pauseThresholdMs?: number
}

export interface DetectorInit extends DetectorOptions {
  node: PeerLibp2p
  /** Peers whose loss matters now (the current assignment's). */
  watched: () => Iterable<string>
  onLost: (lost: LostPeer) => void
}

/** `o` with the defaults filled in. */
export function resolveDetectorOptions (o: DetectorOptions): Required<DetectorOptions> {
  return {
    heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? 3000,
    // a floor set above the default ceiling lifts the ceiling with it
    maxHeartbeatTimeoutMs: o.maxHeartbeatTimeoutMs ?? Math.max(30_000, o.heartbeatTimeoutMs ?? 0),
    phiThreshold: o.phiThreshold ?? 8,
    heartbeatPeriodMs: o.heartbeatPeriodMs ?? 1000,
    pauseGraceMs: o.pauseGraceMs ?? 5000,
    pauseThresholdMs: o.pauseThresholdMs ?? 1000
  }
}

/** What the detector knows of one peer's heartbeats. */
interface Rhythm {
  window: ArrivalWindow
  /** Monotonic time (ms) of the last sign of life, and the wall-clock time of it. */
  lastMono: number
  lastWall: number
  /** An interval is recorded only if it starts at or after this monotonic time (pauses move it). */
  countFrom: number
  /** Set after a coordinator pause until the peer is heard again or a ping decides. */
  reconfirm?: { deadline: number, pinging: boolean, pause: Pause }
}

export class FailureDetector {
  private readonly init: DetectorInit
  private timer?: NodeJS.Timeout
  readonly lost = new Map<string, LostPeer>()
  private readonly rhythms = new Map<string, Rhythm>()
  private readonly pauses: PauseDetector
  /** Pauses noticed so far. */
  readonly pauseLog: Pause[] = []
  private readonly onDisconnect = (evt: CustomEvent<{ toString: () => string }>): void => { void this.confirm(evt.detail.toString(), 'connection closed') }

  /** The options with their defaults filled in. */
  readonly options: Required<DetectorOptions>

  constructor (init: DetectorInit) {
    this.init = init
    const o = this.options = resolveDetectorOptions(init)
    if (!(o.heartbeatTimeoutMs > 0)) throw new ConfigError(`heartbeat timeout (floor) must be > 0, got ${o.heartbeatTimeoutMs}`)
    if (!(o.maxHeartbeatTimeoutMs >= o.heartbeatTimeoutMs)) throw new ConfigError(`heartbeat timeout ceiling ${o.maxHeartbeatTimeoutMs} ms is below the floor ${o.heartbeatTimeoutMs} ms`)
    if (!(o.phiThreshold > 0)) throw new ConfigError(`phi threshold must be > 0, got ${o.phiThreshold}`)
    if (!(o.heartbeatPeriodMs > 0)) throw new ConfigError(`heartbeat period must be > 0, got ${o.heartbeatPeriodMs}`)
    if (!(o.pauseGraceMs >= 0)) throw new ConfigError(`pause grace must be >= 0, got ${o.pauseGraceMs}`)
    this.pauses = new PauseDetector({ intervalMs: SWEEP_MS, thresholdMs: o.pauseThresholdMs })
  }

  /** The floor: silence shorter than this never makes a peer lost. */
  get timeoutMs (): number { return this.options.heartbeatTimeoutMs }

  start (): void {
    this.clock()
    this.timer = setInterval(() => { this.sweep() }, SWEEP_MS)
    this.timer.unref()
    this.init.node.addEventListener('peer:disconnect', this.onDisconnect as never)
  }

  stop (): void {
    if (this.timer != null) clearInterval(this.timer)
    this.init.node.removeEventListener('peer:disconnect', this.onDisconnect as never)
  }

  /** Records a heartbeat from `peerId` (called for every peer heard, watched or not). */
  heartbeat (peerId: string): void {
    const now = this.clock()
    const r = this.rhythms.get(peerId)
    if (r == null) {
      const { heartbeatPeriodMs } = this.options
      this.rhythms.set(peerId, { window: new ArrivalWindow({ bootstrapIntervalMs: heartbeatPeriodMs, minStdDevMs: heartbeatPeriodMs / 10 }), lastMono: now, lastWall: Date.now(), countFrom: -Infinity })
      return
    }
    // the silence that got a peer declared lost is an outage, not its rhythm: what follows is a new life
    if (r.lastMono >= r.countFrom && !this.lost.has(peerId)) r.window.add(now - r.lastMono)
    r.lastMono = now
    r.lastWall = Date.now()
    if (r.reconfirm != null) {
      log('%s heard again after the pause', peerId)
      r.reconfirm = undefined
    }
  }

  /** The heartbeat intervals (ms) held for `peerId`, oldest first (bootstrap pseudo-intervals included). */
  intervalsOf (peerId: string): number[] | undefined { return this.rhythms.get(peerId)?.window.intervals() }

  /** Last sign of life of `peerId` (ms since epoch), if any. */
  lastSeen (peerId: string): number | undefined { return this.rhythms.get(peerId)?.lastWall }

  private isWatched (peerId: string): boolean {
    for (const p of this.init.watched()) if (p === peerId) return true
    return false
  }

  /** Declare `peerId` lost (a caller that knows better than heartbeats, e.g. a resume that timed out). */
  markLost (peerId: string, cause: string): void { this.mark(peerId, cause) }

  private mark (peerId: string, cause: string): void {
    if (this.lost.has(peerId) || !this.isWatched(peerId)) return
    const now = Date.now()
    // never heard (a peer that did not come back after a coordinator restart): no silence to measure,
    // so its detection time is 0, not the time since 1970
    const l: LostPeer = { peerId, cause, detectedAt: now, lastSeen: this.lastSeen(peerId) ?? now }
    this.lost.set(peerId, l)
    log.info(`peer ${peerId.slice(-8)} lost: ${cause}`)
    this.init.onLost(l)
  }

  /**
   * A peer's silence limit (ms): where its phi reaches the threshold, clamped to [floor, ceiling].
   * A peer whose heartbeats are regular is judged near the floor; one whose compute or host delays
   * them for seconds is given the room its own record shows.
   */
  timeoutFor (peerId: string): number {
    const o = this.options
    const r = this.rhythms.get(peerId)
    const accrual = r?.window.silenceAtPhi(o.phiThreshold) ?? 0
    return Math.min(o.maxHeartbeatTimeoutMs, Math.max(o.heartbeatTimeoutMs, accrual))
  }

  /** The monotonic time now, after noticing any pause since the last reading. */
  private clock (): number {
    const mono = performance.now()
    const pause = this.pauses.tick(mono, Date.now())
    if (pause != null) this.onPause(pause)
    return mono
  }

  /** How long (ms) the coordinator stood still (stalls, not clock jumps) in pauses noticed at or after monotonic time `t`. */
  pausedMsSince (t: number): number {
    return this.pauseLog.filter(p => p.kind === 'stall' && p.at >= t).reduce((n, p) => n + p.ms, 0)
  }

  private onPause (pause: Pause): void {
    this.pauseLog.push(pause)
    log.info(pause.kind === 'stall'
      ? `coordinator paused for ${Math.round(pause.ms)} ms; re-confirming peers before acting on silence`
      : `wall clock moved ${Math.round(pause.ms)} ms against the monotonic clock (a suspended VM or a clock step); re-confirming peers before acting on silence`)
    const { heartbeatPeriodMs, pauseGraceMs } = this.options
    const watched = new Set(this.init.watched())
    for (const [p, r] of this.rhythms) {
      // the interval across the pause, and the burst of heartbeats queued during it, are not rhythm
      r.countFrom = pause.at + heartbeatPeriodMs
      if (watched.has(p) && !this.lost.has(p)) r.reconfirm = { deadline: pause.at + pauseGraceMs, pinging: false, pause }
    }
  }

  private sweep (): void {
    const now = this.clock()
    for (const p of this.init.watched()) {
      const r = this.rhythms.get(p)
      if (r == null || this.lost.has(p)) continue
      if (r.reconfirm != null) {
        if (now >= r.reconfirm.deadline && !r.reconfirm.pinging) void this.reconfirm(p, r)
        continue
      }
      const silence = now - r.lastMono
      const limit = this.timeoutFor(p)
      if (silence > limit) this.mark(p, `no heartbeat for ${Math.round(silence)} ms (limit ${Math.round(limit)} ms from its rhythm)`)
    }
  }

  /** A watched peer not heard within the grace after a pause: a ping decides. */
  private async reconfirm (peerId: string, r: Rhythm): Promise<void> {
    const rc = r.reconfirm
    if (rc == null) return
    rc.pinging = true
    const { pauseGraceMs } = this.options
    try {
      await this.ping(peerId, RECONFIRM_PING_MS)
      if (r.reconfirm !== rc) return
      // alive: its silence counts from now, as if it had just been heard (but not as an interval)
      log('%s not heard within %d ms after the pause, but answers pings', peerId, pauseGraceMs)
      const now = this.clock()
      r.lastMono = now
      r.lastWall = Date.now()
      r.countFrom = Math.max(r.countFrom, now + 1)
      r.reconfirm = undefined
    } catch (err) {
      if (r.reconfirm !== rc) return
      r.reconfirm = undefined
      this.mark(peerId, `not heard within ${pauseGraceMs} ms after the coordinator's ${rc.pause.kind === 'stall' ? 'pause' : 'clock jump'} of ${Math.round(Math.abs(rc.pause.ms))} ms, and no ping answer (${(err as Error).message})`)
    }
  }

  private async ping (peerId: string, timeoutMs: number): Promise<void> {
    await this.init.node.services.ping.ping(peerIdFromString(peerId), { signal: AbortSignal.timeout(timeoutMs) })
  }

  /** A hint that `peerId` may be gone (disconnect, a neighbour's report): lost unless a ping answers. */
  async confirm (peerId: string, cause: string): Promise<void> {
    this.clock()
    if (this.lost.has(peerId) || !this.isWatched(peerId)) return
    try {
      try {
        await this.ping(peerId, HINT_PING_MS)
      } catch (err) {
        // A dead process refuses the re-dial at once: that error is final. A ping that only timed
        // out may be a peer busy computing its stage, or a starved VM: give it one longer chance.
        const name = (err as Error).name
        if (name !== 'TimeoutError' && name !== 'AbortError') throw err
        await this.ping(peerId, SLOW_HINT_PING_MS)
      }
      log('%s suspected (%s) but answers pings', peerId, cause)
    } catch {
      // Right after a coordinator pause a dropped connection and a slow ping are the pause's doing:
      // the re-confirmation (a fresh heartbeat, or a ping after the grace) decides instead.
      this.clock()
      if (this.rhythms.get(peerId)?.reconfirm != null) {
        log('%s suspected (%s) while re-confirming after a pause: left to the re-confirmation', peerId, cause)
        return
      }
      this.mark(peerId, cause)
    }
  }

  /** The peer is back in service (a new assignment replaced or kept it): forget its loss. */
  forget (peerId: string): void { this.lost.delete(peerId) }
}

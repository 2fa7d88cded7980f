/**
 * Failure detection (DESIGN.md "Failure detection"). A stage's peer is lost when
 *   - its heartbeats stop for longer than the timeout (default 3 s; catches hung peers too),
 *   - the coordinator's connection to it closes and a re-dial fails (a killed process: ~ms),
 *   - a neighbour reports a broken activations stream and the coordinator cannot ping the suspect.
 * A peer that announces its departure is not lost but departing: it can still hand its stage over.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { createLog } from '../model/log.js'
import type { PeerLibp2p } from '../node/transport/index.js'

const log = createLog('detector')

export interface LostPeer {
  peerId: string
  cause: string
  /** When the coordinator decided (ms since epoch). */
  detectedAt: number
  /** Last sign of life (ms since epoch). */
  lastSeen: number
}

export interface DetectorInit {
  node: PeerLibp2p
  /** @default 3000 */
  heartbeatTimeoutMs?: number
  /** Peers whose loss matters now (the current assignment's). */
  watched: () => Iterable<string>
  /** Last heartbeat time of a peer (ms since epoch), if any. */
  lastSeen: (peerId: string) => number | undefined
  /** Longest recent gap between a peer's heartbeats (ms), if known. */
  longestGap?: (peerId: string) => number | undefined
  onLost: (lost: LostPeer) => void
}

export class FailureDetector {
  private readonly init: DetectorInit
  private timer?: NodeJS.Timeout
  readonly lost = new Map<string, LostPeer>()
  private readonly onDisconnect = (evt: CustomEvent<{ toString: () => string }>): void => { void this.confirm(evt.detail.toString(), 'connection closed') }

  constructor (init: DetectorInit) {
    this.init = init
  }

  get timeoutMs (): number { return this.init.heartbeatTimeoutMs ?? 3000 }

  start (): void {
    this.timer = setInterval(() => { this.sweep() }, 100)
    this.timer.unref()
    this.init.node.addEventListener('peer:disconnect', this.onDisconnect as never)
  }

  stop (): void {
    if (this.timer != null) clearInterval(this.timer)
    this.init.node.removeEventListener('peer:disconnect', this.onDisconnect as never)
  }

  private isWatched (peerId: string): boolean {
    for (const p of this.init.watched()) if (p === peerId) return true
    return false
  }

  /** Declare `peerId` lost (a caller that knows better than heartbeats, e.g. a resume that timed out). */
  markLost (peerId: string, cause: string): void { this.mark(peerId, cause) }

  private mark (peerId: string, cause: string): void {
    if (this.lost.has(peerId) || !this.isWatched(peerId)) return
    const l: LostPeer = { peerId, cause, detectedAt: Date.now(), lastSeen: this.init.lastSeen(peerId) ?? 0 }
    this.lost.set(peerId, l)
    log.info(`peer ${peerId.slice(-8)} lost: ${cause}`)
    this.init.onLost(l)
  }

  /**
   * A peer's silence limit: the configured timeout, stretched to 2.5x the longest recent gap between
   * its heartbeats. A peer whose compute blocks its event loop for seconds (big stages) is not
   * declared dead for it; a hung peer is still caught once it overstays its own record. (The same
   * idea as accrual failure detectors: judge silence against the peer's observed rhythm.)
   */
  timeoutFor (peerId: string): number {
    return Math.max(this.timeoutMs, 2.5 * (this.init.longestGap?.(peerId) ?? 0))
  }

  private sweep (): void {
    const now = Date.now()
    for (const p of this.init.watched()) {
      const seen = this.init.lastSeen(p)
      if (seen != null && now - seen > this.timeoutFor(p)) this.mark(p, `no heartbeat for ${now - seen} ms`)
    }
  }

  /** A hint that `peerId` may be gone (disconnect, a neighbour's report): lost unless a ping answers. */
  async confirm (peerId: string, cause: string): Promise<void> {
    if (this.lost.has(peerId) || !this.isWatched(peerId)) return
    try {
      await this.init.node.services.ping.ping(peerIdFromString(peerId), { signal: AbortSignal.timeout(500) })
      log('%s suspected (%s) but answers pings', peerId, cause)
    } catch {
      this.mark(peerId, cause)
    }
  }

  /** The peer is back in service (a new assignment replaced or kept it): forget its loss. */
  forget (peerId: string): void { this.lost.delete(peerId) }
}

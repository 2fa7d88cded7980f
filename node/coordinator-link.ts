/**
 * A peer's connection to its coordinator: the first join, retried with backoff while the
 * coordinator is unreachable, and the redial that follows a coordinator restart for as long as the
 * peer runs. Everything else the peer says to the coordinator goes over gossip on that connection.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { createLog } from '../common/index.js'
import { secretMismatchHint, type PeerLibp2p } from '../net/index.js'
import { UnreachableError } from './errors.js'

const log = createLog('peer')

/** CoordinatorLinkInit.joinTimeoutMs's default: a minute covers a coordinator's restart (a few seconds here) and a VM booting its peer first. */
export const DEFAULT_JOIN_TIMEOUT_MS = 60_000
/** First and largest wait between join attempts. */
const JOIN_BACKOFF_MS = [500, 8000] as const
/** One join attempt: a TCP connect, the noise (or pnet + noise) handshake and yamux. */
const JOIN_ATTEMPT_TIMEOUT_MS = 10_000
/** How often a peer checks that it is still connected to the coordinator, and the redial's timeout. */
const REDIAL_EVERY_MS = 1000
const REDIAL_TIMEOUT_MS = 2000

export interface CoordinatorLinkInit {
  /** Peer id of the coordinator. */
  coordinatorId: string
  /** Its multiaddrs; each is dialled in turn. */
  coordinatorAddrs: string[]
  /**
   * How long join() keeps dialling an unreachable coordinator; 0 tries once.
   * @default 60000
   */
  joinTimeoutMs?: number
}

export class CoordinatorLink {
  private readonly node: PeerLibp2p
  private readonly init: CoordinatorLinkInit
  private redialTimer?: NodeJS.Timeout

  constructor (node: PeerLibp2p, init: CoordinatorLinkInit) {
    this.node = node
    this.init = init
  }

  /**
   * Dials each coordinator address, retrying an unreachable one with capped exponential backoff
   * until joinTimeoutMs has passed (the chaos suite saw a peer started while its coordinator
   * restarted, or paused, exit at once). Throws UnreachableError naming the address on giving up.
   *
   * Every failure is retried: a handshake refused for another cluster secret looks like one cut off
   * by a coordinator restarting (the chaos suite saw both, ECONNRESET and "Encryption failed", with
   * the same key), so the swarm-key hint goes in the first log line instead.
   */
  async join (): Promise<void> {
    const budgetMs = this.init.joinTimeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS
    const deadline = Date.now() + budgetMs
    for (const a of this.init.coordinatorAddrs) {
      let backoffMs: number = JOIN_BACKOFF_MS[0]
      for (let attempt = 1; ; attempt++) {
        try {
          await this.node.dial(multiaddr(a), { signal: AbortSignal.timeout(JOIN_ATTEMPT_TIMEOUT_MS) })
          if (attempt > 1) log.info(`reached the coordinator at ${a} (attempt ${attempt})`)
          break
        } catch (err) {
          const leftMs = deadline - Date.now()
          if (leftMs <= 0) {
            const tries = attempt > 1 ? ` (${attempt} attempts over ${(budgetMs / 1000).toFixed(0)} s)` : ''
            throw new UnreachableError(`cannot reach the coordinator at ${a}${tries}: ${(err as Error).message}${secretMismatchHint(err)}`, { cause: err })
          }
          if (attempt === 1) log.info(`coordinator at ${a} unreachable (${(err as Error).message})${secretMismatchHint(err)}; retrying for up to ${(leftMs / 1000).toFixed(0)} s`)
          await sleep(Math.min(backoffMs, leftMs))
          backoffMs = Math.min(backoffMs * 2, JOIN_BACKOFF_MS[1])
        }
      }
    }
  }

  /** From now until stop(): a restarted coordinator comes back on the same address, so keep dialling it while it is away. */
  keepConnected (): void {
    if (this.redialTimer != null) return
    this.redialTimer = setInterval(() => { void this.redial() }, REDIAL_EVERY_MS)
    this.redialTimer.unref()
  }

  stop (): void {
    if (this.redialTimer != null) clearInterval(this.redialTimer)
    this.redialTimer = undefined
  }

  private async redial (): Promise<void> {
    const id = peerIdFromString(this.init.coordinatorId)
    if (this.node.getConnections(id).length > 0) return
    for (const a of this.init.coordinatorAddrs) {
      try {
        await this.node.dial(multiaddr(a), { signal: AbortSignal.timeout(REDIAL_TIMEOUT_MS) })
        log.info(`reconnected to the coordinator at ${a}`)
        return
      } catch (err) {
        log('coordinator at %s unreachable: %s', a, (err as Error).message)
      }
    }
  }
}

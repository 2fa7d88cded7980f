/**
 * Spot-interruption watcher: polls the cloud's instance metadata service and raises one `notice`
 * when the VM is about to be reclaimed, so the peer can announce its departure and hand its stage
 * over while it still can.
 *
 * - AWS (IMDSv2): PUT /latest/api/token for a session token, then GET
 *   /latest/meta-data/spot/instance-action with it. 404 = nothing scheduled; 200 =
 *   `{"action":"terminate|stop|hibernate","time":"<ISO 8601>"}` about two minutes ahead.
 * - GCP: GET /computeMetadata/v1/instance/preempted (header `Metadata-Flavor: Google`); the body
 *   turns from FALSE to TRUE when preemption starts, about 30 s before the VM stops. Plain polling:
 *   `?wait_for_change=true` would hold a request open for minutes, which does not fit the short
 *   per-request timeout that keeps this watcher from ever hanging; 5 s polling sits well inside 30 s.
 * - Azure: GET /metadata/scheduledevents?api-version=2020-07-01 (header `Metadata: true`); an event
 *   with EventType "Preempt" is the eviction notice, its NotBefore the deadline (at least 30 s out).
 *
 * With `provider: 'auto'` every poll asks all three until one of them answers like the real service
 * would (AWS hands out a token, GCP replies with `Metadata-Flavor: Google`, Azure with an Events
 * list); from then on only that one is polled. Off-cloud nothing answers and that is normal: failed
 * requests are logged at debug level and never throw. Each request is bounded by
 * `requestTimeoutMs`, so an unroutable link-local address costs at most that per poll.
 *
 * With `handleSigterm` a SIGTERM is a notice too (the signal systemd, the GCP shutdown path and
 * most orchestrators send). While the watcher runs, its SIGTERM listener replaces Node's default
 * of exiting at once: whoever listens for the notice decides when the process ends.
 */
import { EventEmitter } from 'node:events'
import { ConfigError } from '../common/index.js'
import { createLog } from '../common/index.js'

const log = createLog('spot-watcher')

export type SpotProvider = 'aws' | 'gcp' | 'azure'
export type SpotProviderSetting = SpotProvider | 'auto' | 'none'

/** Where each provider's metadata service lives. */
export const DEFAULT_METADATA_URLS: Readonly<Record<SpotProvider, string>> = {
  aws: 'http://169.254.169.254',
  gcp: 'http://metadata.google.internal',
  azure: 'http://169.254.169.254'
}

/** Lifetime asked for an IMDSv2 session token (the maximum AWS allows, 6 hours). */
export const AWS_TOKEN_TTL_SECONDS = 21600

const PROVIDERS: readonly SpotProvider[] = ['aws', 'gcp', 'azure']

export interface SpotNotice {
  /** Which metadata service reported it, or 'signal' for a SIGTERM. */
  provider: SpotProvider | 'signal'
  /** AWS: terminate | stop | hibernate (as reported); GCP: preempt; Azure: Preempt; signal: SIGTERM. */
  action: string
  /** When the provider says the VM goes away (AWS `time`, Azure `NotBefore`); absent when not stated. */
  deadline?: Date
  /** When this watcher saw the notice. */
  detectedAt: Date
  /** Provider-specific detail worth logging (the Azure EventId). */
  detail?: string
}

export interface SpotWatcherInit {
  /** Which metadata service to poll; 'none' only listens for SIGTERM (if enabled). @default 'auto' */
  provider?: SpotProviderSetting
  /** Poll period, start to start (AWS recommends every 5 s). @default 5000 */
  intervalMs?: number
  /** Timeout of each metadata request. @default 1000 */
  requestTimeoutMs?: number
  /** Base URL per provider, e.g. a loopback fake in tests. @default DEFAULT_METADATA_URLS */
  baseUrls?: Partial<Record<SpotProvider, string>>
  /** Treat SIGTERM as a notice (and stop it from ending the process while running). @default false */
  handleSigterm?: boolean
}

export interface SpotWatcherEvents {
  notice: [SpotNotice]
}

/** What one provider's poll found out. */
interface PollResult {
  /** The service answered the way the real one does (so `auto` can settle on it). */
  answered: boolean
  notice?: Omit<SpotNotice, 'provider' | 'detectedAt'>
}

interface HttpReply {
  status: number
  body: string
  headers: Headers
}

/** Metadata replies are tiny; anything longer than this is not one. */
const MAX_BODY_CHARS = 64 * 1024

export class SpotWatcher extends EventEmitter<SpotWatcherEvents> {
  readonly setting: SpotProviderSetting
  readonly intervalMs: number
  readonly requestTimeoutMs: number
  readonly handleSigterm: boolean
  private readonly urls: Record<SpotProvider, string>
  private settled?: SpotProvider
  private noticeSeen?: SpotNotice
  private controller?: AbortController
  private timer?: NodeJS.Timeout
  private awsToken?: { value: string, expiresAt: number }
  private sigtermInstalled = false
  private readonly onSigterm = (): void => {
    if (this.noticeSeen != null) { log('SIGTERM after the notice; ignored'); return }
    this.raise({ provider: 'signal', action: 'SIGTERM', detectedAt: new Date() })
  }

  constructor (init: SpotWatcherInit = {}) {
    super()
    this.setting = init.provider ?? 'auto'
    if (!['auto', 'none', ...PROVIDERS].includes(this.setting)) throw new ConfigError(`provider must be aws, gcp, azure, auto or none, got "${String(this.setting)}"`)
    this.intervalMs = positive(init.intervalMs, 5000, 'intervalMs')
    this.requestTimeoutMs = positive(init.requestTimeoutMs, 1000, 'requestTimeoutMs')
    this.handleSigterm = init.handleSigterm ?? false
    this.urls = { ...DEFAULT_METADATA_URLS }
    for (const p of PROVIDERS) {
      const u = init.baseUrls?.[p]
      if (u != null) this.urls[p] = u.replace(/\/+$/, '')
    }
    if (this.setting !== 'auto' && this.setting !== 'none') this.settled = this.setting
  }

  /** The notice, once there is one. */
  get notice (): SpotNotice | undefined { return this.noticeSeen }
  /** The provider being polled: the configured one, or the one `auto` settled on. */
  get provider (): SpotProvider | undefined { return this.settled }
  /** True between start() and stop(). */
  get running (): boolean { return this.controller != null }

  /**
   * Starts polling (the first poll runs at once) and, if enabled, listening for SIGTERM. Aborting
   * `signal` is the same as calling stop(). Starting a running watcher does nothing.
   */
  start (opts: { signal?: AbortSignal } = {}): void {
    if (this.controller != null) return
    if (opts.signal?.aborted === true) return
    const controller = new AbortController()
    this.controller = controller
    opts.signal?.addEventListener('abort', () => { if (this.controller === controller) this.stop() }, { once: true, signal: controller.signal })
    if (this.handleSigterm && !this.sigtermInstalled) {
      process.on('SIGTERM', this.onSigterm)
      this.sigtermInstalled = true
    }
    if (this.setting !== 'none' && this.noticeSeen == null) this.schedule(0, controller.signal)
  }

  /** Stops polling, aborts requests in flight and removes the SIGTERM listener. */
  stop (): void {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
    this.controller?.abort(new Error('spot watcher stopped'))
    this.controller = undefined
    if (this.sigtermInstalled) {
      process.off('SIGTERM', this.onSigterm)
      this.sigtermInstalled = false
    }
  }

  /**
   * Polls once (every provider while `auto` has not settled) and raises the notice if there is one.
   * Never rejects: an unreachable service, a timeout or an abort resolve to undefined.
   */
  async check (opts: { signal?: AbortSignal } = {}): Promise<SpotNotice | undefined> {
    if (this.noticeSeen != null) return this.noticeSeen
    if (this.setting === 'none') return undefined
    const candidates = this.settled != null ? [this.settled] : PROVIDERS
    const results = await Promise.all(candidates.map(async (p) => {
      try {
        return { provider: p, result: await this.poll(p, opts.signal) }
      } catch (err) {
        log('%s metadata not available: %s', p, describe(err))
        return { provider: p, result: { answered: false } as PollResult }
      }
    }))
    if (opts.signal?.aborted === true || this.noticeSeen != null) return this.noticeSeen
    if (this.settled == null) {
      const first = results.find(r => r.result.answered)
      if (first == null) return undefined
      this.settled = first.provider
      log('metadata service answered: %s', first.provider)
    }
    const hit = results.find(r => r.provider === this.settled)?.result.notice
    if (hit == null) return undefined
    this.raise({ provider: this.settled, detectedAt: new Date(), ...hit })
    return this.noticeSeen
  }

  /** Resolves with the notice (at once if there already is one); rejects when `signal` aborts. */
  async waitForNotice (opts: { signal?: AbortSignal } = {}): Promise<SpotNotice> {
    if (this.noticeSeen != null) return this.noticeSeen
    const { signal } = opts
    if (signal?.aborted === true) throw signal.reason
    return await new Promise<SpotNotice>((resolve, reject) => {
      const onNotice = (n: SpotNotice): void => { signal?.removeEventListener('abort', onAbort); resolve(n) }
      const onAbort = (): void => { this.off('notice', onNotice); reject(signal?.reason) }
      this.once('notice', onNotice)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  // -------------------------------------------------------------------------------------------

  private schedule (delayMs: number, signal: AbortSignal): void {
    this.timer = setTimeout(() => { void this.tick(signal) }, delayMs)
    this.timer.unref() // a background poller must not keep the process alive
  }

  private async tick (signal: AbortSignal): Promise<void> {
    this.timer = undefined
    if (signal.aborted) return
    const t0 = Date.now()
    await this.check({ signal })
    if (signal.aborted || this.noticeSeen != null) return
    this.schedule(Math.max(0, this.intervalMs - (Date.now() - t0)), signal)
  }

  /** Emits the notice exactly once, and stops polling (the SIGTERM listener stays until stop()). */
  private raise (n: SpotNotice): void {
    if (this.noticeSeen != null) return
    this.noticeSeen = n
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
    const when = n.deadline != null ? `, deadline ${n.deadline.toISOString()}` : ''
    log.info(`spot interruption notice from ${n.provider}: ${n.action}${when}`)
    this.emit('notice', n)
  }

  private async poll (p: SpotProvider, signal?: AbortSignal): Promise<PollResult> {
    if (p === 'aws') return await this.pollAws(signal)
    if (p === 'gcp') return await this.pollGcp(signal)
    return await this.pollAzure(signal)
  }

  private async pollAws (signal?: AbortSignal): Promise<PollResult> {
    let token = await this.awsSessionToken(signal)
    if (token == null) return { answered: false }
    const url = `${this.urls.aws}/latest/meta-data/spot/instance-action`
    let r = await this.request(url, 'GET', { 'X-aws-ec2-metadata-token': token }, signal)
    if (r.status === 401) {
      // the token expired or the service restarted: get a fresh one and ask again, once
      this.awsToken = undefined
      token = await this.awsSessionToken(signal)
      if (token == null) return { answered: false }
      r = await this.request(url, 'GET', { 'X-aws-ec2-metadata-token': token }, signal)
    }
    if (r.status === 404) return { answered: true }
    if (r.status !== 200) {
      log('aws instance-action: HTTP %d', r.status)
      return { answered: true }
    }
    // the item only exists once an interruption is scheduled, so a 200 is a notice even if its
    // body is not the documented JSON
    let action = 'unknown'
    let deadline: Date | undefined
    try {
      const j = JSON.parse(r.body) as { action?: unknown, time?: unknown }
      if (typeof j.action === 'string' && j.action !== '') action = j.action
      deadline = parseDate(j.time)
    } catch {
      log('aws instance-action: body is not JSON: %s', r.body.slice(0, 200))
    }
    return { answered: true, notice: { action, ...(deadline != null ? { deadline } : {}) } }
  }

  private async awsSessionToken (signal?: AbortSignal): Promise<string | undefined> {
    if (this.awsToken != null && this.awsToken.expiresAt > Date.now()) return this.awsToken.value
    const r = await this.request(`${this.urls.aws}/latest/api/token`, 'PUT', { 'X-aws-ec2-metadata-token-ttl-seconds': String(AWS_TOKEN_TTL_SECONDS) }, signal)
    const value = r.body.trim()
    if (r.status !== 200 || value === '') {
      log('aws token: HTTP %d', r.status)
      return undefined
    }
    // renew a minute early so a poll never carries a token that expires on the way
    this.awsToken = { value, expiresAt: Date.now() + (AWS_TOKEN_TTL_SECONDS - 60) * 1000 }
    return value
  }

  private async pollGcp (signal?: AbortSignal): Promise<PollResult> {
    const r = await this.request(`${this.urls.gcp}/computeMetadata/v1/instance/preempted`, 'GET', { 'Metadata-Flavor': 'Google' }, signal)
    if (r.status !== 200 || r.headers.get('metadata-flavor') !== 'Google') {
      log('gcp preempted: HTTP %d', r.status)
      return { answered: false }
    }
    const v = r.body.trim().toUpperCase()
    if (v === 'TRUE') return { answered: true, notice: { action: 'preempt' } }
    if (v !== 'FALSE') log('gcp preempted: unexpected body %s', r.body.slice(0, 200))
    return { answered: true }
  }

  private async pollAzure (signal?: AbortSignal): Promise<PollResult> {
    const r = await this.request(`${this.urls.azure}/metadata/scheduledevents?api-version=2020-07-01`, 'GET', { Metadata: 'true' }, signal)
    if (r.status !== 200) {
      log('azure scheduledevents: HTTP %d', r.status)
      return { answered: false }
    }
    let events: unknown
    try {
      events = (JSON.parse(r.body) as { Events?: unknown }).Events
    } catch {
      events = undefined
    }
    if (!Array.isArray(events)) {
      log('azure scheduledevents: no Events list in the reply')
      return { answered: false }
    }
    const e = events.find((x): x is Record<string, unknown> => x != null && typeof x === 'object' && (x as Record<string, unknown>).EventType === 'Preempt')
    if (e == null) return { answered: true }
    const deadline = parseDate(e.NotBefore)
    return {
      answered: true,
      notice: {
        action: 'Preempt',
        ...(deadline != null ? { deadline } : {}),
        ...(typeof e.EventId === 'string' ? { detail: `EventId ${e.EventId}` } : {})
      }
    }
  }

  /** One HTTP request bounded by requestTimeoutMs and `signal`; the body is read in full. */
  private async request (url: string, method: 'GET' | 'PUT', headers: Record<string, string>, signal?: AbortSignal): Promise<HttpReply> {
    // a per-request controller rather than AbortSignal.any, so nothing accumulates on the
    // long-lived `signal` over hours of polling
    const ac = new AbortController()
    const onAbort = (): void => { ac.abort(signal?.reason) }
    if (signal?.aborted === true) throw signal.reason
    signal?.addEventListener('abort', onAbort, { once: true })
    const timer = setTimeout(() => { ac.abort(new Error(`no reply within ${this.requestTimeoutMs} ms`)) }, this.requestTimeoutMs)
    try {
      const res = await fetch(url, { method, headers, signal: ac.signal, redirect: 'manual' })
      const body = await res.text()
      return { status: res.status, body: body.length > MAX_BODY_CHARS ? body.slice(0, MAX_BODY_CHARS) : body, headers: res.headers }
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }
}

function positive (v: number | undefined, fallback: number, name: string): number {
  if (v == null) return fallback
  if (!Number.isFinite(v) || v <= 0) throw new ConfigError(`${name} must be a positive number, got ${v}`)
  return v
}

function parseDate (v: unknown): Date | undefined {
  if (typeof v !== 'string' || v === '') return undefined
  const t = Date.parse(v)
  return Number.isNaN(t) ? undefined : new Date(t)
}

function describe (err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  // fetch wraps the socket error (ECONNREFUSED, ENOTFOUND, ...) in `cause`
  const cause = (err as { cause?: unknown }).cause
  return cause instanceof Error ? `${err.message} (${cause.message})` : err.message
}

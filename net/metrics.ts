/**
 * What the coordinator's and the peer's Prometheus metrics share: a prom-client registry of their
 * own (never prom-client's global one, so several coordinators or peers in one process, as in the
 * tests, keep separate series) with the default Node process metrics on it, and the HTTP server
 * that answers scrapes on /metrics.
 *
 * It lives in net/ rather than common/: prom-client takes about 45 ms to load, and everything
 * imports common/ (sim workers, model-only tools), while only the networked coordinator and peer
 * import net/ and serve scrapes.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { SpotpipeError } from '../common/index.js'

/** The metrics server could not bind its address (port in use, address not local, ...). */
export class MetricsListenError extends SpotpipeError {
  constructor (message: string, options?: { cause?: unknown }) { super('ERR_METRICS_LISTEN', message, options) }
}

/** Content type of the text exposition format (0.0.4) that /metrics answers with. */
export const PROMETHEUS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE

/**
 * Buckets for one training iteration's duration, 50 ms to 5 min: the coordinator's
 * `spotpipe_iteration_seconds` (begin to the last done report) and a peer's
 * `spotpipe_peer_compute_seconds`. The demo's small stages on loopback take 0.1 to 1 s, a real
 * model on spot VMs seconds to minutes; the 1-2.5-5 steps keep histogram_quantile within a factor of
 * 2.5 anywhere in that range, and an iteration past 5 min is stuck rather than slow.
 */
export const ITERATION_SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 300]

/**
 * A fresh registry for one coordinator or peer, with prom-client's default process metrics
 * (CPU seconds, resident memory, heap, event-loop lag, GC, open file descriptors, Node version)
 * collected on it.
 */
export function createMetricsRegistry (options: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new Registry()
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry })
  return registry
}

export interface ServeMetricsOptions {
  registry: Registry
  /** TCP port; 0 picks a free one (read it from `url`). */
  port: number
  /** Interface to bind; keep it on loopback unless a firewall limits who can scrape. @default '127.0.0.1' */
  host?: string
  /** Closes the server when aborted. */
  signal?: AbortSignal
}

export interface MetricsServer {
  /** The scrape URL, e.g. http://127.0.0.1:9464/metrics */
  url: string
  close: () => Promise<void>
}

/**
 * Serves `registry` on GET/HEAD /metrics; other paths answer 404, other methods 405. A collection
 * that throws answers 500 with its message (the scraper records the failed scrape).
 */
export async function serveMetrics (opts: ServeMetricsOptions): Promise<MetricsServer> {
  const host = opts.host ?? '127.0.0.1'
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: try /metrics\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n')
      return
    }
    opts.registry.metrics().then(body => {
      res.writeHead(200, { 'Content-Type': opts.registry.contentType, 'Content-Length': Buffer.byteLength(body) })
      res.end(req.method === 'HEAD' ? undefined : body)
    }, (err: Error) => {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`collecting metrics failed: ${err.message}\n`)
    })
  })
  if (opts.signal?.aborted === true) throw opts.signal.reason
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void => { reject(new MetricsListenError(`cannot serve metrics on ${host}:${opts.port}: ${err.message}`, { cause: err })) }
    server.once('error', failed)
    server.listen(opts.port, host, () => { server.off('error', failed); resolve() })
  })
  const { port } = server.address() as AddressInfo
  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= new Promise<void>(resolve => {
      server.close(() => { resolve() })
      server.closeAllConnections()
    })
    await closing
  }
  opts.signal?.addEventListener('abort', () => { void close() }, { once: true })
  return { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`, close }
}

/**
 * Prometheus metrics without a dependency: a registry of gauges, counters and summaries with
 * labels, rendered in the text exposition format 0.0.4, an HTTP server for `/metrics`, and a
 * parser for the same format (tests and tools read scrapes back with it).
 *
 * `createSpotpipeMetrics` declares the coordinator's series. `spotpipe_recovery_seconds{phase}` is
 * a summary without quantiles: `_sum` and `_count` per phase (detect | transfer | rebuild | resume),
 * so `rate(_sum) / rate(_count)` gives the mean time per phase over any window, and the totals
 * survive scrapes missed while a recovery ran. Keeping quantiles would mean keeping samples, which
 * a handful of recoveries per day does not justify.
 *
 * With data-parallel replicas, `spotpipe_stage_replicas{stage}` and `spotpipe_stage_joining{stage}`
 * count a stage's serving and joining peers, `spotpipe_stages_at_risk` the stages one loss away
 * from a whole-stage failure (at most one live serving replica: with one replica per stage, every
 * stage), and `spotpipe_allreduce_seconds{stage}` the last committed iteration's all-reduce time.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SpotpipeError } from '../common/index.js'

/** A metric or label name is invalid, labels do not match a metric's, or a value is out of range. */
export class MetricsError extends SpotpipeError {
  constructor (message: string) { super('ERR_METRICS', message) }
}

/** Text exposition scrape could not be parsed; `line` is 1-based. */
export class MetricsParseError extends SpotpipeError {
  readonly line: number
  constructor (line: number, message: string) {
    super('ERR_METRICS_PARSE', `line ${line}: ${message}`)
    this.line = line
  }
}

export type MetricType = 'gauge' | 'counter' | 'summary'
export type Labels = Record<string, string | number>

/** Content type of the text exposition format served on /metrics. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/

// ---------------------------------------------------------------------------------------------
// metrics

/** What every metric kind shares: its name, help, label names, and one series per label set. */
abstract class Metric<S> {
  abstract readonly type: MetricType
  protected readonly series = new Map<string, { labels: Record<string, string>, state: S }>()

  constructor (readonly name: string, readonly help: string, readonly labelNames: readonly string[]) {
    if (!METRIC_NAME.test(name)) throw new MetricsError(`invalid metric name "${name}"`)
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new MetricsError(`${name}: invalid label name "${l}"`)
      if (l === 'quantile') throw new MetricsError(`${name}: the label name "quantile" is reserved`)
    }
    if (new Set(labelNames).size !== labelNames.length) throw new MetricsError(`${name}: duplicate label names`)
  }

  /** Drops every series (for example the peers of a finished epoch). */
  reset (): void { this.series.clear() }

  protected abstract initial (): S

  /** The series for `labels`, created on first use; the label names must match exactly. */
  protected at (labels: Labels = {}): S {
    const names = Object.keys(labels)
    if (names.length !== this.labelNames.length || !this.labelNames.every(n => Object.hasOwn(labels, n))) {
      throw new MetricsError(`${this.name}: expected labels {${this.labelNames.join(', ')}}, got {${names.join(', ')}}`)
    }
    const values: Record<string, string> = {}
    for (const n of this.labelNames) values[n] = String(labels[n])
    const key = JSON.stringify(this.labelNames.map(n => values[n]))
    let s = this.series.get(key)
    if (s == null) {
      s = { labels: values, state: this.initial() }
      this.series.set(key, s)
    }
    return s.state
  }

  /** Sample lines (without HELP/TYPE); a metric without labels always has its one series. */
  abstract samples (): Array<{ name: string, labels: Record<string, string>, value: number }>
}

/** A value that goes up and down (iteration, loss, peers per role, ...). */
export class Gauge extends Metric<{ value: number }> {
  readonly type = 'gauge'
  protected initial (): { value: number } { return { value: 0 } }
  set (value: number, labels?: Labels): void { this.at(labels).value = value }
  inc (by = 1, labels?: Labels): void { this.at(labels).value += by }
  dec (by = 1, labels?: Labels): void { this.at(labels).value -= by }
  get (labels?: Labels): number { return this.at(labels).value }
  samples (): Array<{ name: string, labels: Record<string, string>, value: number }> {
    if (this.labelNames.length === 0) this.at()
    return [...this.series.values()].map(s => ({ name: this.name, labels: s.labels, value: s.state.value }))
  }
}

/** A total that only goes up; by convention its name ends in `_total`. */
export class Counter extends Metric<{ value: number }> {
  readonly type = 'counter'
  protected initial (): { value: number } { return { value: 0 } }
  inc (by = 1, labels?: Labels): void {
    if (!(by >= 0) || !Number.isFinite(by)) throw new MetricsError(`${this.name}: a counter only goes up by finite amounts, got ${by}`)
    this.at(labels).value += by
  }
  get (labels?: Labels): number { return this.at(labels).value }
  samples (): Array<{ name: string, labels: Record<string, string>, value: number }> {
    if (this.labelNames.length === 0) this.at()
    return [...this.series.values()].map(s => ({ name: this.name, labels: s.labels, value: s.state.value }))
  }
}

/** Observations summarised as `<name>_sum` and `<name>_count` (no quantiles). */
export class Summary extends Metric<{ sum: number, count: number }> {
  readonly type = 'summary'
  protected initial (): { sum: number, count: number } { return { sum: 0, count: 0 } }
  observe (value: number, labels?: Labels): void {
    if (!Number.isFinite(value)) throw new MetricsError(`${this.name}: cannot observe ${value}`)
    const s = this.at(labels)
    s.sum += value
    s.count += 1
  }
  get (labels?: Labels): { sum: number, count: number } { return { ...this.at(labels) } }
  samples (): Array<{ name: string, labels: Record<string, string>, value: number }> {
    if (this.labelNames.length === 0) this.at()
    return [...this.series.values()].flatMap(s => [
      { name: `${this.name}_sum`, labels: s.labels, value: s.state.sum },
      { name: `${this.name}_count`, labels: s.labels, value: s.state.count }
    ])
  }
}

type AnyMetric = Gauge | Counter | Summary

/** Metrics by name, rendered in registration order. */
export class MetricsRegistry {
  private readonly metrics = new Map<string, AnyMetric>()

  gauge (name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames))
  }

  counter (name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames))
  }

  summary (name: string, help: string, labelNames: readonly string[] = []): Summary {
    return this.add(new Summary(name, help, labelNames))
  }

  get (name: string): AnyMetric | undefined { return this.metrics.get(name) }

  /** The whole registry in the text exposition format (ends with a newline). */
  render (): string {
    const out: string[] = []
    for (const m of this.metrics.values()) {
      out.push(`# HELP ${m.name} ${escapeHelp(m.help)}`, `# TYPE ${m.name} ${m.type}`)
      for (const s of m.samples()) out.push(`${s.name}${renderLabels(s.labels)} ${formatValue(s.value)}`)
    }
    return out.length === 0 ? '' : out.join('\n') + '\n'
  }

  private add<M extends AnyMetric> (m: M): M {
    const clash = [...this.metrics.values()].find(o => samplesOf(o).some(n => samplesOf(m).includes(n)))
    if (clash != null) throw new MetricsError(`metric "${m.name}" clashes with the registered "${clash.name}"`)
    this.metrics.set(m.name, m)
    return m
  }
}

function samplesOf (m: AnyMetric): string[] {
  return m.type === 'summary' ? [m.name, `${m.name}_sum`, `${m.name}_count`] : [m.name]
}

// ---------------------------------------------------------------------------------------------
// the coordinator's metrics

export type RecoveryPhase = 'detect' | 'transfer' | 'rebuild' | 'resume'

export interface SpotpipeMetrics {
  registry: MetricsRegistry
  /** spotpipe_iteration: the last committed iteration. */
  iteration: Gauge
  /** spotpipe_epoch: the current assignment epoch. */
  epoch: Gauge
  /** spotpipe_loss: training loss of the last committed iteration (nats). */
  loss: Gauge
  /** spotpipe_tokens_per_second: throughput of the last committed iteration. */
  tokensPerSecond: Gauge
  /** spotpipe_peers{role}: live peers by role (stage, spare, observer). */
  peers: Gauge
  /** spotpipe_recoveries_total{rung}: recoveries by the ladder rung used. */
  recoveries: Counter
  /** spotpipe_recovery_seconds{phase}: time spent per recovery phase (summary: _sum, _count). */
  recoverySeconds: Summary
  /** spotpipe_bytes_moved_total: weight and optimizer bytes moved by recoveries and joins. */
  bytesMoved: Counter
  /** spotpipe_checkpoints_total{outcome}: sparse checkpoints written, partial (some stages' files) or abandoned. */
  checkpoints: Counter
  /** spotpipe_checkpoint_seconds: pull + write time of each checkpoint written (whole or partial; summary). */
  checkpointSeconds: Summary
  /** spotpipe_checkpoint_bytes_total: bytes of checkpoint files written. */
  checkpointBytes: Counter
  /** spotpipe_checkpoint_iteration: the iteration of the newest complete checkpoint written. */
  checkpointIteration: Gauge
  /** spotpipe_stage_replicas{stage}: serving replicas per stage under the current assignment. */
  stageReplicas: Gauge
  /** spotpipe_stage_joining{stage}: peers joining each stage as new replicas, still catching up. */
  stageJoining: Gauge
  /** spotpipe_stages_at_risk: stages with at most one live serving replica (one loss from a whole-stage failure). */
  stagesAtRisk: Gauge
  /** spotpipe_allreduce_seconds{stage}: the last committed iteration's gradient all-reduce time per stage (its slowest replica; 0 with one replica). */
  allReduceSeconds: Gauge
}

/** Declares the coordinator's metrics in `registry` (a fresh one by default). */
export function createSpotpipeMetrics (registry = new MetricsRegistry()): SpotpipeMetrics {
  return {
    registry,
    iteration: registry.gauge('spotpipe_iteration', 'Last committed training iteration.'),
    epoch: registry.gauge('spotpipe_epoch', 'Current assignment epoch (bumped by every reassignment).'),
    loss: registry.gauge('spotpipe_loss', 'Training loss of the last committed iteration, in nats per byte.'),
    tokensPerSecond: registry.gauge('spotpipe_tokens_per_second', 'Tokens processed per second in the last committed iteration.'),
    peers: registry.gauge('spotpipe_peers', 'Live peers by role.', ['role']),
    recoveries: registry.counter('spotpipe_recoveries_total', 'Stage recoveries by recovery-ladder rung.', ['rung']),
    recoverySeconds: registry.summary('spotpipe_recovery_seconds', 'Seconds spent per recovery phase (detect, transfer, rebuild, resume).', ['phase']),
    bytesMoved: registry.counter('spotpipe_bytes_moved_total', 'Bytes of weights and optimizer state moved by recoveries and joins.'),
    checkpoints: registry.counter('spotpipe_checkpoints_total', 'Sparse checkpoints by outcome (written, partial: some stages missing, abandoned).', ['outcome']),
    checkpointSeconds: registry.summary('spotpipe_checkpoint_seconds', 'Seconds to pull and write each written checkpoint.'),
    checkpointBytes: registry.counter('spotpipe_checkpoint_bytes_total', 'Bytes of checkpoint files written.'),
    checkpointIteration: registry.gauge('spotpipe_checkpoint_iteration', 'Iteration of the newest complete checkpoint written (every stage).'),
    stageReplicas: registry.gauge('spotpipe_stage_replicas', 'Serving data-parallel replicas per stage under the current assignment (joining peers excluded).', ['stage']),
    stageJoining: registry.gauge('spotpipe_stage_joining', 'Peers joining each stage as new replicas and still catching up (they serve no microbatch yet).', ['stage']),
    stagesAtRisk: registry.gauge('spotpipe_stages_at_risk', 'Stages with at most one live serving replica: one more loss is a whole-stage failure (every stage when each has one replica).'),
    allReduceSeconds: registry.gauge('spotpipe_allreduce_seconds', "Seconds of the last committed iteration's gradient all-reduce per stage (its slowest replica; 0 for a stage with one replica).", ['stage'])
  }
}

// ---------------------------------------------------------------------------------------------
// rendering

function escapeHelp (s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

function escapeLabelValue (s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function renderLabels (labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`)
  return parts.length === 0 ? '' : `{${parts.join(',')}}`
}

function formatValue (v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  return String(v)
}

// ---------------------------------------------------------------------------------------------
// serving

export interface ServeMetricsOptions {
  registry: MetricsRegistry
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

/** Serves `registry` on GET/HEAD /metrics; other paths answer 404, other methods 405. */
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
    let body: string
    try {
      body = opts.registry.render()
    } catch (err) {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`${(err as Error).message}\n`)
      return
    }
    res.writeHead(200, { 'Content-Type': PROMETHEUS_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body) })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  if (opts.signal?.aborted === true) throw opts.signal.reason
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, host, () => { server.off('error', reject); resolve() })
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

// ---------------------------------------------------------------------------------------------
// parsing

export interface PromSample {
  /** The sample's own name (a summary's `<name>_sum`, ...). */
  name: string
  labels: Record<string, string>
  value: number
  timestampMs?: number
}

export interface PromFamily {
  name: string
  help?: string
  type?: string
  samples: PromSample[]
}

/**
 * Parses the text exposition format into metric families, keyed by name in the order they appear.
 * A sample belongs to the family its name matches, or whose name it extends by _sum, _count,
 * _bucket, _total or _created; a sample of no declared family gets an untyped family of its own.
 * Malformed lines throw MetricsParseError.
 */
export function parsePrometheusText (text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>()
  const family = (name: string): PromFamily => {
    let f = families.get(name)
    if (f == null) { f = { name, samples: [] }; families.set(name, f) }
    return f
  }
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1
    const line = lines[i].replace(/\r$/, '')
    if (line.trim() === '') continue
    if (line.startsWith('#')) {
      const m = /^#\s*(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line)
      if (m == null) continue // a plain comment
      const [, kind, name, rest = ''] = m
      if (!METRIC_NAME.test(name)) throw new MetricsParseError(n, `invalid metric name "${name}"`)
      const f = family(name)
      if (kind === 'HELP') {
        f.help = unescape(rest, false, n)
      } else {
        const t = rest.trim()
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(t)) throw new MetricsParseError(n, `unknown type "${t}" for ${name}`)
        if (f.type != null) throw new MetricsParseError(n, `second TYPE line for ${name}`)
        if (f.samples.length > 0) throw new MetricsParseError(n, `TYPE line for ${name} after its samples`)
        f.type = t
      }
      continue
    }
    const s = parseSample(line, n)
    family(familyOf(s.name, families)).samples.push(s)
  }
  return families
}

function familyOf (sample: string, families: Map<string, PromFamily>): string {
  if (families.has(sample)) return sample
  for (const suffix of ['_sum', '_count', '_bucket', '_total', '_created']) {
    if (sample.endsWith(suffix)) {
      const base = sample.slice(0, -suffix.length)
      if (families.get(base)?.type != null) return base
    }
  }
  return sample
}

function parseSample (line: string, n: number): PromSample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)
  if (nameMatch == null) throw new MetricsParseError(n, `expected a metric name: ${line.slice(0, 60)}`)
  const name = nameMatch[0]
  let pos = name.length
  const labels: Record<string, string> = {}
  if (line[pos] === '{') {
    pos++
    for (;;) {
      while (line[pos] === ' ') pos++
      if (line[pos] === '}') { pos++; break }
      const lm = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(pos))
      if (lm == null) throw new MetricsParseError(n, `expected a label name at column ${pos + 1}`)
      const key = lm[0]
      pos += key.length
      while (line[pos] === ' ') pos++
      if (line[pos] !== '=') throw new MetricsParseError(n, `expected ="..." after label ${key}`)
      pos++
      while (line[pos] === ' ') pos++
      if (line[pos] !== '"') throw new MetricsParseError(n, `expected ="..." after label ${key}`)
      pos++
      let raw = ''
      while (pos < line.length && line[pos] !== '"') {
        if (line[pos] === '\\') { raw += line.slice(pos, pos + 2); pos += 2 } else { raw += line[pos]; pos++ }
      }
      if (line[pos] !== '"') throw new MetricsParseError(n, `unterminated value of label ${key}`)
      pos++
      if (Object.hasOwn(labels, key)) throw new MetricsParseError(n, `label ${key} given twice`)
      labels[key] = unescape(raw, true, n)
      while (line[pos] === ' ') pos++
      if (line[pos] === ',') { pos++; continue }
      if (line[pos] === '}') { pos++; break }
      throw new MetricsParseError(n, `expected , or } at column ${pos + 1}`)
    }
  }
  const rest = line.slice(pos).trim().split(/\s+/)
  if (line[pos] !== ' ' && line[pos] !== '\t') throw new MetricsParseError(n, `expected a space before the value of ${name}`)
  if (rest.length < 1 || rest.length > 2 || rest[0] === '') throw new MetricsParseError(n, `expected "value [timestamp]" after ${name}`)
  const value = parseValue(rest[0], n)
  const sample: PromSample = { name, labels, value }
  if (rest.length === 2) {
    const ts = Number(rest[1])
    if (!Number.isInteger(ts)) throw new MetricsParseError(n, `bad timestamp "${rest[1]}"`)
    sample.timestampMs = ts
  }
  return sample
}

function parseValue (s: string, n: number): number {
  if (s === 'NaN') return NaN
  if (s === '+Inf' || s === 'Inf') return Infinity
  if (s === '-Inf') return -Infinity
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) throw new MetricsParseError(n, `bad value "${s}"`)
  return Number(s)
}

/** Undoes \\, \n and (in label values) \" escapes; any other escape is an error. */
function unescape (s: string, quotes: boolean, n: number): string {
  return s.replace(/\\(.?)/g, (_, c: string) => {
    if (c === '\\') return '\\'
    if (c === 'n') return '\n'
    if (c === '"' && quotes) return '"'
    throw new MetricsParseError(n, `bad escape "\\${c}"`)
  })
}

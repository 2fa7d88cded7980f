/**
 * A real Prometheus server (Debian's `prometheus` package; .ci/run installs it) scrapes a running
 * cluster: a coordinator serving /metrics and three `spotpipe peer --metrics-port 0` processes. The
 * test writes a scrape config (1 s interval) into a temporary directory, starts prometheus on a free
 * loopback port with its storage there, trains a few iterations, SIGKILLs the peer of the middle
 * stage so CheckFree rebuilds it on the spare, trains on, and then asks Prometheus's HTTP API what
 * it scraped: the iteration, the iteration-time and recovery histograms and one peer's series must
 * be what the cluster did. Every query of the shipped Grafana dashboard must be valid PromQL to
 * it, and the shipped scrape config must pass promtool. Every process it started is killed, pass
 * or fail.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { StageLostError, instrument, RECOVERY_SECONDS_BUCKETS, type IterationRecord, type RecoveryEvent } from '../coordinator/index.js'
import { serveMetrics, type MetricsServer } from '../net/index.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster, type TestPeer } from './helpers/cluster.js'
import { dashboardQueries } from './helpers/metrics.js'
import { freePort } from './helpers/ports.js'
import { ROOT } from './helpers/procs.js'

const model = { dModel: 16, nHeads: 2, nBlocks: 3, seqLen: 8 }
const train = { stages: 3, microbatches: 2, microbatchSize: 2 }

const { track, tempDir } = clusterLifecycle('spotpipe-prom-')

let prometheus: ChildProcess | undefined
let metricsServer: MetricsServer | undefined

/** Stops the prometheus this test started: SIGTERM, then SIGKILL if it has not exited within 5 s. */
async function stopPrometheus (): Promise<void> {
  const p = prometheus
  prometheus = undefined
  if (p == null || p.exitCode != null || p.signalCode != null) return
  const exited = new Promise<void>(resolve => { p.once('exit', () => { resolve() }) })
  p.kill('SIGTERM')
  const timer = setTimeout(() => { p.kill('SIGKILL') }, 5000)
  await exited
  clearTimeout(timer)
}

afterAll(async () => {
  await stopPrometheus()
  await metricsServer?.close()
})

/** The prometheus binary, or a failure that says how to get it (this test never skips). */
function requirePrometheus (): void {
  const r = spawnSync('prometheus', ['--version'], { encoding: 'utf8' })
  if (r.error != null || r.status !== 0) {
    throw new Error(`this test runs a real Prometheus server, but \`prometheus --version\` failed (${r.error?.message ?? `exit ${String(r.status)}`}): install Debian's package with \`apt-get install -y prometheus\` (.ci/run does)`)
  }
}

interface PromSample { metric: Record<string, string>, value: [number, string] }

/** An instant query against Prometheus's HTTP API; the vector's samples. */
async function query (base: string, promql: string): Promise<PromSample[]> {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`)
  const body = await res.json() as { status: string, error?: string, data?: { resultType: string, result: PromSample[] } }
  if (body.status !== 'success' || body.data == null) throw new Error(`query ${promql} failed: ${body.error ?? res.status}`)
  if (body.data.resultType !== 'vector') throw new Error(`query ${promql} gave a ${body.data.resultType}, not a vector`)
  return body.data.result
}

/** The one sample's value of `promql`, or undefined while Prometheus has none. */
async function scalar (base: string, promql: string): Promise<number | undefined> {
  const r = await query(base, promql)
  if (r.length > 1) throw new Error(`query ${promql} gave ${r.length} samples, expected one`)
  return r.length === 0 ? undefined : Number(r[0].value[1])
}

/** Polls until `check` holds (Prometheus scrapes once a second), or fails with the last values seen. */
async function eventually (what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < end) {
    try {
      if (await check()) return
    } catch (err) { last = err }
    await new Promise(resolve => setTimeout(resolve, 500))
  }
  throw new Error(`Prometheus never showed ${what} within ${timeoutMs} ms${last != null ? `: ${(last as Error).message}` : ''}`)
}

/** The host:port of a `metrics http://host:port/metrics` line. */
function target (url: string): string {
  return new URL(url).host
}

describe('a real Prometheus server scraping a cluster', () => {
  it('sees the iteration, the iteration-time histogram, a CheckFree recovery in the recovery histogram and a peer\'s own series', async () => {
    requirePrometheus()
    // the shipped scrape config is one Prometheus accepts
    const check = spawnSync('promtool', ['check', 'config', join(ROOT, 'docs/prometheus.yml')], { encoding: 'utf8' })
    expect(check.status, `promtool check config docs/prometheus.yml: ${check.stdout}${check.stderr}`).toBe(0)
    const dir = await tempDir()
    const cluster = track(new TestCluster({ clusterId: 'prom', model, train, strategy: 'checkfree' }))
    try {
      await cluster.startCoordinator()
      metricsServer = await serveMetrics({ port: 0, registry: instrument(cluster.coord).registry })
      // three stages and a spare, each serving its own metrics
      const peers = await Promise.all(Array.from({ length: 4 }, async () => await cluster.addPeer(['--metrics-port', '0'])))
      const peerMetrics = new Map<TestPeer, string>()
      for (const p of peers) peerMetrics.set(p, target((await p.proc.waitFor(/^metrics (http:\S+)/, 10_000))[1]))

      const port = await freePort()
      const base = `http://127.0.0.1:${port}`
      await writeFile(join(dir, 'prometheus.yml'), [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        '  evaluation_interval: 1s',
        'scrape_configs:',
        '  - job_name: spotpipe-coordinator',
        '    static_configs:',
        `      - targets: ['${target(metricsServer.url)}']`,
        '  - job_name: spotpipe-peer',
        '    static_configs:',
        `      - targets: [${[...peerMetrics.values()].map(t => `'${t}'`).join(', ')}]`,
        ''
      ].join('\n'))
      const logs: string[] = []
      prometheus = spawn('prometheus', [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`
      ], { stdio: ['ignore', 'pipe', 'pipe'] })
      prometheus.stdout?.on('data', (d: Buffer) => { logs.push(d.toString()) })
      prometheus.stderr?.on('data', (d: Buffer) => { logs.push(d.toString()) })
      const promExit = new Promise<never>((_resolve, reject) => {
        prometheus?.once('exit', (code, signal) => { reject(new Error(`prometheus exited (${code ?? signal}): ${logs.join('').slice(-2000)}`)) })
      })
      promExit.catch(() => {}) // raced below; its rejection is reported there
      const ready = (async () => {
        await eventually('its readiness endpoint', async () => (await fetch(`${base}/-/ready`)).ok, 30_000)
      })()
      await Promise.race([ready, promExit])

      await cluster.coord.assignInitial({ timeoutMs: 30_000 })
      const records: IterationRecord[] = []
      for (let i = 0; i < 3; i++) records.push(await cluster.coord.runIteration({ timeoutMs: 30_000 }))
      // a scrape of the running cluster before the failure: every target up
      await eventually('all five targets up', async () => (await scalar(base, 'sum(up)')) === 5)

      // SIGKILL the middle stage's peer while an iteration is under way; CheckFree rebuilds it on the spare
      const victim = cluster.holder(1)
      const running = cluster.coord.runIteration({ timeoutMs: 30_000 })
      setTimeout(() => { victim.proc.child.kill('SIGKILL') }, 20)
      try {
        records.push(await running)
      } catch (err) {
        if (!(err instanceof StageLostError)) throw err
      }
      await cluster.coord.until(() => cluster.coord.failedStages().length > 0, 'the loss to be detected', 10_000)
      const events: RecoveryEvent[] = await cluster.coord.recover({ timeoutMs: 60_000 })
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({ stage: 1, rung: 'checkfree' })
      // the resume phase is observed at the first commit after the recovery
      for (let i = 0; i < 2; i++) records.push(await cluster.coord.runIteration({ timeoutMs: 30_000 }))
      const last = records[records.length - 1].iteration
      const survivor = cluster.holder(0)

      // what Prometheus scraped is what the cluster did
      await eventually(`spotpipe_iteration ${last}`, async () => (await scalar(base, 'spotpipe_iteration')) === last)
      await eventually('the resumed recovery', async () => (await scalar(base, 'spotpipe_recovery_seconds_count{phase="resume"}')) === 1)
      expect(await query(base, 'spotpipe_iteration')).toEqual([
        expect.objectContaining({ metric: expect.objectContaining({ __name__: 'spotpipe_iteration', job: 'spotpipe-coordinator', instance: target(metricsServer.url) }) })
      ])
      expect(await scalar(base, 'spotpipe_iteration_seconds_count')).toBe(records.length)
      expect(await scalar(base, 'spotpipe_iteration_seconds_sum')).toBeCloseTo(records.reduce((s, r) => s + r.ms, 0) / 1000, 3)
      expect(await scalar(base, 'spotpipe_iteration_seconds_bucket{le="+Inf"}')).toBe(records.length)
      expect(await scalar(base, 'spotpipe_recoveries_total{rung="checkfree"}')).toBe(1)
      expect(await scalar(base, 'spotpipe_bytes_moved_total')).toBe(events[0].bytes)
      // each phase's observation sits in the first bucket at or above it, and not in the one below
      const e = events[0]
      for (const [phase, ms] of [['detect', e.detectMs], ['transfer', e.transferMs], ['rebuild', e.rebuildMs]] as const) {
        const buckets = (await query(base, `spotpipe_recovery_seconds_bucket{phase="${phase}"}`))
          .map(b => ({ le: b.metric.le === '+Inf' ? Infinity : Number(b.metric.le), count: Number(b.value[1]) }))
          .sort((x, y) => x.le - y.le)
        expect(buckets.map(b => b.le)).toEqual([...RECOVERY_SECONDS_BUCKETS, Infinity])
        for (const b of buckets) expect(b.count, `${phase} took ${ms} ms: bucket le=${b.le}`).toBe(ms / 1000 <= b.le ? 1 : 0)
        expect(await scalar(base, `spotpipe_recovery_seconds_sum{phase="${phase}"}`)).toBeCloseTo(ms / 1000, 6)
      }

      // the surviving stage-0 peer's own series, scraped from its --metrics-port
      const instance = peerMetrics.get(survivor) as string
      const sel = `{job="spotpipe-peer",instance="${instance}"}`
      expect(await scalar(base, `spotpipe_peer_info${sel}`)).toBe(1)
      expect((await query(base, `spotpipe_peer_info${sel}`))[0].metric.peer_id).toBe(survivor.peerId)
      expect(await scalar(base, `spotpipe_peer_stage${sel}`)).toBe(0)
      await eventually(`the peer's iteration ${last}`, async () => (await scalar(base, `spotpipe_peer_iteration${sel}`)) === last)
      // stage 0 computed every iteration that was begun, the aborted one too
      expect(await scalar(base, `spotpipe_peer_compute_seconds_count${sel}`)).toBeGreaterThanOrEqual(records.length)
      expect(await scalar(base, `spotpipe_peer_activation_bytes_total${sel.replace('}', ',direction="sent"}')}`)).toBeGreaterThan(0)
      expect(await scalar(base, `spotpipe_peer_heartbeats_total${sel.replace('}', ',outcome="published"}')}`)).toBeGreaterThan(0)
      expect(await scalar(base, `process_resident_memory_bytes${sel}`)).toBeGreaterThan(0)
      // the killed peer's target is down
      expect(await scalar(base, `up{instance="${peerMetrics.get(victim) as string}"}`)).toBe(0)

      // every query of docs/grafana-dashboard.json, with Grafana's variables filled in, is valid
      // PromQL to this server; the panels on series the cluster has by now show data
      const dashboard = dashboardQueries(JSON.parse(await readFile(join(ROOT, 'docs/grafana-dashboard.json'), 'utf8')))
      const filled = (expr: string): string => expr.replaceAll('$__rate_interval', '1m').replaceAll('$coordinator_job', 'spotpipe-coordinator').replaceAll('$peer_job', 'spotpipe-peer')
      for (const q of dashboard) await query(base, filled(q.expr))
      for (const title of ['Iteration', 'Recoveries by rung', 'Serving replicas per stage', 'Stage per peer', 'Compute per iteration (p90)', 'Resident memory']) {
        const exprs = dashboard.filter(q => q.panel === title).map(q => filled(q.expr))
        expect(exprs.length, title).toBeGreaterThan(0)
        expect((await Promise.all(exprs.map(async e => await query(base, e)))).flat().length, `panel ${title}`).toBeGreaterThan(0)
      }
    } finally {
      await stopPrometheus()
      await metricsServer?.close()
      metricsServer = undefined
    }
  }, 90_000)
})

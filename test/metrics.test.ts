/**
 * The metrics on prom-client: the coordinator's series served on /metrics (status, content type,
 * HELP/TYPE lines, histogram buckets, the default process metrics), one registry per coordinator
 * or peer (never the global one), instrument() on a stand-in coordinator (its events and the few
 * fields it reads) and instrumentPeer() on a stand-in peer. Values are read back with prom-client's
 * own accessors (test/helpers/metrics.ts); the real-Prometheus scrape is test/prometheus.test.ts.
 * And the docs: the Grafana dashboard asks only for series that exist, and docs/spot-vms.md names
 * every spotpipe series.
 */
import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { register as globalRegistry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import type { Coordinator, IterationRecord, RecoveryEvent } from '../coordinator/coordinator.js'
import { instrument } from '../coordinator/instrument.js'
import { RECOVERY_PHASES, RECOVERY_SECONDS_BUCKETS, createSpotpipeMetrics } from '../coordinator/metrics.js'
import { ITERATION_SECONDS_BUCKETS, MetricsListenError, PROMETHEUS_CONTENT_TYPE, createMetricsRegistry, serveMetrics, type MetricsServer } from '../net/index.js'
import { ALLREDUCE_SECONDS_BUCKETS, instrumentPeer } from '../node/metrics.js'
import type { Peer, PeerDoneEvent, PeerTotals } from '../node/peer.js'
import type { Assignment } from '../protocols/index.js'
import { dashboardQueries, seriesOf, typeOf, valueOf } from './helpers/metrics.js'
import { ROOT } from './helpers/procs.js'

const servers: MetricsServer[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})

/** The `le` bounds of a histogram's buckets for one label set, +Inf left out. */
async function bucketBounds (registry: Parameters<typeof seriesOf>[0], name: string, labels: Record<string, string> = {}): Promise<number[]> {
  return (await seriesOf(registry, name))
    .filter(s => s.sample === `${name}_bucket` && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && s.labels.le !== '+Inf')
    .map(s => Number(s.labels.le))
}

describe('metrics', () => {
  it('serves the coordinator metrics and the process metrics on /metrics', async () => {
    const m = createSpotpipeMetrics()
    m.iteration.set(1234)
    m.epoch.set(3)
    m.loss.set(2.573)
    m.tokensPerSecond.set(8192.5)
    m.iterationSeconds.observe(0.3)
    m.iterationSeconds.observe(0.7)
    m.peers.set({ role: 'stage' }, 4)
    m.peers.set({ role: 'spare' }, 1)
    m.recoveries.inc({ rung: 'checkfree' })
    m.recoveries.inc({ rung: 'handover' }, 2)
    m.recoveries.inc({ rung: 'checkfree' })
    m.recoverySeconds.observe({ phase: 'detect' }, 3.5)
    m.recoverySeconds.observe({ phase: 'detect' }, 1.5)
    m.recoverySeconds.observe({ phase: 'transfer' }, 0.25)
    m.bytesMoved.inc(1_048_576)
    m.checkpoints.inc({ outcome: 'written' })
    m.checkpoints.inc({ outcome: 'abandoned' })
    m.checkpointSeconds.observe(0.4)
    m.checkpointBytes.inc(20_000_000)
    m.checkpointIteration.set(1229)

    const srv = await serveMetrics({ port: 0, registry: m.registry })
    servers.push(srv)
    expect(srv.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
    const res = await fetch(srv.url)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe(PROMETHEUS_CONTENT_TYPE)
    const text = await res.text()
    for (const line of [
      '# TYPE spotpipe_iteration gauge', 'spotpipe_iteration 1234',
      '# TYPE spotpipe_recoveries_total counter', 'spotpipe_recoveries_total{rung="checkfree"} 2',
      '# TYPE spotpipe_recovery_seconds histogram', 'spotpipe_recovery_seconds_bucket{le="3.5",phase="detect"} 2',
      '# TYPE spotpipe_iteration_seconds histogram', 'spotpipe_iteration_seconds_count 2',
      '# TYPE spotpipe_checkpoint_seconds histogram',
      // the default process metrics of prom-client
      '# TYPE process_cpu_user_seconds_total counter', '# TYPE nodejs_eventloop_lag_seconds gauge', '# TYPE process_resident_memory_bytes gauge'
    ]) expect(text.split('\n'), line).toContain(line)
    // every spotpipe metric the coordinator declares, each with its help
    const names = [
      'spotpipe_iteration', 'spotpipe_iteration_seconds', 'spotpipe_epoch', 'spotpipe_loss', 'spotpipe_tokens_per_second', 'spotpipe_peers',
      'spotpipe_recoveries_total', 'spotpipe_recovery_failures_total', 'spotpipe_recovery_seconds', 'spotpipe_bytes_moved_total',
      'spotpipe_checkpoints_total', 'spotpipe_checkpoint_seconds', 'spotpipe_checkpoint_bytes_total', 'spotpipe_checkpoint_iteration',
      'spotpipe_stage_replicas', 'spotpipe_stage_joining', 'spotpipe_stage_at_risk', 'spotpipe_stages_at_risk', 'spotpipe_allreduce_seconds'
    ]
    const declared = (await m.registry.getMetricsAsJSON()).filter(f => f.name.startsWith('spotpipe_'))
    expect(declared.map(f => f.name)).toEqual(names)
    for (const f of declared) expect(f.help, f.name).toBeTruthy()

    const r = m.registry
    expect(await valueOf(r, 'spotpipe_epoch')).toBe(3)
    expect(await valueOf(r, 'spotpipe_loss')).toBe(2.573)
    expect(await valueOf(r, 'spotpipe_tokens_per_second')).toBe(8192.5)
    expect(await valueOf(r, 'spotpipe_peers', { role: 'stage' })).toBe(4)
    expect(await valueOf(r, 'spotpipe_peers', { role: 'spare' })).toBe(1)
    expect(await valueOf(r, 'spotpipe_recoveries_total', { rung: 'handover' })).toBe(2)
    expect(await valueOf(r, 'spotpipe_recovery_seconds', { phase: 'detect' }, 'spotpipe_recovery_seconds_sum')).toBe(5)
    expect(await valueOf(r, 'spotpipe_recovery_seconds', { phase: 'detect' }, 'spotpipe_recovery_seconds_count')).toBe(2)
    expect(await valueOf(r, 'spotpipe_recovery_seconds', { phase: 'detect', le: '2' }, 'spotpipe_recovery_seconds_bucket')).toBe(1)
    expect(await valueOf(r, 'spotpipe_recovery_seconds', { phase: 'transfer' }, 'spotpipe_recovery_seconds_count')).toBe(1)
    expect(await valueOf(r, 'spotpipe_iteration_seconds', { le: '0.5' }, 'spotpipe_iteration_seconds_bucket')).toBe(1)
    expect(await valueOf(r, 'spotpipe_iteration_seconds', {}, 'spotpipe_iteration_seconds_sum')).toBeCloseTo(1)
    expect(await valueOf(r, 'spotpipe_bytes_moved_total')).toBe(1_048_576)
    expect(await valueOf(r, 'spotpipe_checkpoints_total', { outcome: 'abandoned' })).toBe(1)
    expect(await valueOf(r, 'spotpipe_checkpoint_seconds', {}, 'spotpipe_checkpoint_seconds_sum')).toBe(0.4)
    expect(await valueOf(r, 'spotpipe_checkpoint_bytes_total')).toBe(20_000_000)
    expect(await valueOf(r, 'spotpipe_checkpoint_iteration')).toBe(1229)

    // HEAD has no body; other paths 404, other methods 405
    const head = await fetch(srv.url, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(await head.text()).toBe('')
    expect((await fetch(srv.url.replace('/metrics', '/'))).status).toBe(404)
    expect((await fetch(srv.url.replace('/metrics', '/metrics/x'))).status).toBe(404)
    expect((await fetch(srv.url, { method: 'POST' })).status).toBe(405)
    expect((await fetch(`${srv.url}?x=1`)).status).toBe(200)
  })

  it('iteration time and recovery phases are histograms on the documented buckets, every phase there from the start', async () => {
    const m = createSpotpipeMetrics()
    expect(await typeOf(m.registry, 'spotpipe_iteration_seconds')).toBe('histogram')
    expect(await typeOf(m.registry, 'spotpipe_recovery_seconds')).toBe('histogram')
    for (const phase of RECOVERY_PHASES) {
      expect(await bucketBounds(m.registry, 'spotpipe_recovery_seconds', { phase }), phase).toEqual(RECOVERY_SECONDS_BUCKETS)
      expect(await valueOf(m.registry, 'spotpipe_recovery_seconds', { phase }, 'spotpipe_recovery_seconds_count')).toBe(0)
    }
    m.iterationSeconds.observe(1)
    expect(await bucketBounds(m.registry, 'spotpipe_iteration_seconds')).toEqual(ITERATION_SECONDS_BUCKETS)
    for (const b of [ITERATION_SECONDS_BUCKETS, RECOVERY_SECONDS_BUCKETS, ALLREDUCE_SECONDS_BUCKETS]) expect([...b].sort((x, y) => x - y)).toEqual(b)
    // the detect phase's bounds tell a closed connection (ms) from the heartbeat floor (3 s) and the ceiling (30 s)
    expect(RECOVERY_SECONDS_BUCKETS).toEqual(expect.arrayContaining([0.1, 2, 3.5, 30]))
  })

  it('each coordinator has its own registry, and prom-client\'s global one stays empty', async () => {
    const a = createSpotpipeMetrics()
    const b = createSpotpipeMetrics()
    a.iteration.set(7)
    b.iteration.set(9)
    a.recoveries.inc({ rung: 'checkpoint' })
    expect(await valueOf(a.registry, 'spotpipe_iteration')).toBe(7)
    expect(await valueOf(b.registry, 'spotpipe_iteration')).toBe(9)
    expect(await seriesOf(b.registry, 'spotpipe_recoveries_total')).toEqual([])
    expect(globalRegistry.getSingleMetric('spotpipe_iteration')).toBeUndefined()
    expect(globalRegistry.getSingleMetric('process_cpu_user_seconds_total')).toBeUndefined()
    // a registry without the process metrics, when asked
    expect(await createMetricsRegistry({ defaultMetrics: false }).getMetricsAsJSON()).toEqual([])
  })

  it('instrument() exports iterations, recoveries, replicas and joining peers per stage, which stages are at risk and the all-reduce time', async () => {
    // what instrument() reads of a Coordinator: its events, epoch, assignment and live peers
    const c = new (class extends EventEmitter {
      epoch = 0
      assignment?: Assignment
      live: string[] = []
      livePeers (): string[] { return [...this.live] }
      assignedPeers (): string[] { return this.assignment?.stages.flatMap(s => s.peers) ?? [] }
    })()
    const m = instrument(c as unknown as Coordinator)
    const r = m.registry
    const perStage = async (name: string): Promise<Array<[string, number]>> => (await seriesOf(r, name)).map(s => [s.labels.stage, s.value])
    try {
      // before any assignment: no stage series, nothing at risk
      expect(await seriesOf(r, 'spotpipe_stage_replicas')).toEqual([])
      expect(await valueOf(r, 'spotpipe_stages_at_risk')).toBe(0)

      // 3 stages: two replicas, two replicas and a peer joining, one replica
      const a = (epoch: number, stages: string[][], joining?: string[]): Assignment => ({
        kind: 'assignment', clusterId: 'c', runId: 'r', epoch, iteration: 5, modelConfig: '{}', trainingConfig: '{}', rebuilt: [],
        stages: stages.map((peers, stage) => ({ stage, peers, addrs: peers.map(() => '') })), ...(joining != null ? { joining } : {})
      })
      c.epoch = 3
      c.assignment = a(3, [['a0', 'a1'], ['b0', 'b1', 'j'], ['c0']], ['j'])
      c.live = ['a0', 'a1', 'b0', 'b1', 'j', 'c0', 'spare']
      c.emit('epoch', { epoch: 3 })
      expect(await perStage('spotpipe_stage_replicas')).toEqual([['0', 2], ['1', 2], ['2', 1]])
      expect(await perStage('spotpipe_stage_joining')).toEqual([['0', 0], ['1', 1], ['2', 0]])
      expect(await perStage('spotpipe_stage_at_risk')).toEqual([['0', 0], ['1', 0], ['2', 1]])
      expect(await valueOf(r, 'spotpipe_stages_at_risk')).toBe(1)
      expect(await valueOf(r, 'spotpipe_epoch')).toBe(3)
      expect(await valueOf(r, 'spotpipe_peers', { role: 'spare' })).toBe(1)

      // a committed iteration: its time, all-reduce seconds per stage; b1 is no longer live, so
      // stage 1 is at risk too (the joining peer does not count)
      c.live = ['a0', 'a1', 'b0', 'j', 'c0']
      const rec: IterationRecord = { iteration: 5, epoch: 3, loss: 3.5, gradNorms: [1, 1, 1], ms: 900, tokensPerSec: 100, allReduceMs: [250, 125, 0], computeMs: [400, 410, 420] }
      c.emit('iteration', rec)
      expect(await perStage('spotpipe_allreduce_seconds')).toEqual([['0', 0.25], ['1', 0.125], ['2', 0]])
      expect(await perStage('spotpipe_stage_at_risk')).toEqual([['0', 0], ['1', 1], ['2', 1]])
      expect(await valueOf(r, 'spotpipe_stages_at_risk')).toBe(2)
      expect(await valueOf(r, 'spotpipe_iteration')).toBe(5)
      expect(await valueOf(r, 'spotpipe_iteration_seconds', { le: '1' }, 'spotpipe_iteration_seconds_bucket')).toBe(1)
      expect(await valueOf(r, 'spotpipe_iteration_seconds', { le: '0.5' }, 'spotpipe_iteration_seconds_bucket')).toBe(0)

      // a recovery: its rung, bytes and the phases' times; then a failed attempt and the resume
      const ev: RecoveryEvent = {
        at: 0, epoch: 4, iteration: 6, stage: 1, cause: 'lost', rung: 'replica', lostPeer: 'b1', targetPeer: 'j', donors: ['b0'],
        bytes: 4096, detectMs: 12, transferMs: 800, rebuildMs: 40, resumeMs: 0, outcome: 'recovered', iterationsBehind: 0
      }
      c.emit('recovery', [ev])
      c.emit('recovery-failed', { ...ev, rung: 'checkfree', outcome: 'failed', reason: 'donor gone' })
      c.emit('recovered', [{ ...ev, resumeMs: 1500 }])
      expect(await valueOf(r, 'spotpipe_recoveries_total', { rung: 'replica' })).toBe(1)
      expect(await valueOf(r, 'spotpipe_recovery_failures_total', { rung: 'checkfree' })).toBe(1)
      expect(await valueOf(r, 'spotpipe_bytes_moved_total')).toBe(4096)
      expect(await valueOf(r, 'spotpipe_recovery_seconds', { phase: 'detect', le: '0.01' }, 'spotpipe_recovery_seconds_bucket')).toBe(0)
      expect(await valueOf(r, 'spotpipe_recovery_seconds', { phase: 'detect', le: '0.05' }, 'spotpipe_recovery_seconds_bucket')).toBe(1)
      expect(await valueOf(r, 'spotpipe_recovery_seconds', { phase: 'transfer' }, 'spotpipe_recovery_seconds_sum')).toBe(0.8)
      expect(await valueOf(r, 'spotpipe_recovery_seconds', { phase: 'resume', le: '1' }, 'spotpipe_recovery_seconds_bucket')).toBe(0)
      expect(await valueOf(r, 'spotpipe_recovery_seconds', { phase: 'resume', le: '2' }, 'spotpipe_recovery_seconds_bucket')).toBe(1)

      // the join is done and the lost replica dropped: stage 1 serves two again
      c.epoch = 4
      c.assignment = a(4, [['a0', 'a1'], ['b0', 'j'], ['c0']])
      c.emit('epoch', { epoch: 4 })
      expect(await perStage('spotpipe_stage_replicas')).toEqual([['0', 2], ['1', 2], ['2', 1]])
      expect(await perStage('spotpipe_stage_joining')).toEqual([['0', 0], ['1', 0], ['2', 0]])
      expect(await perStage('spotpipe_stage_at_risk')).toEqual([['0', 0], ['1', 0], ['2', 1]])
      expect(await valueOf(r, 'spotpipe_stages_at_risk')).toBe(1)
    } finally {
      c.emit('stopped')
    }
  })

  it('instrumentPeer() exports the stage a peer serves, its compute and all-reduce times, its traffic, heartbeats and drops', async () => {
    // what instrumentPeer() reads of a Peer: its events, node, stage, epoch and totals
    const p = new (class extends EventEmitter {
      node?: object
      peerId = '12D3KooWPeer'
      stageIndex = -1
      epoch = 0
      isDeparting = false
      weightsBytesSent = 0
      framesRejected = 0
      staleFrames = 0
      totals: PeerTotals = { activationBytesSent: 0, activationBytesReceived: 0, weightsBytesReceived: 0, heartbeatsPublished: 0, heartbeatsFailed: 0 }
    })()
    const m = instrumentPeer(p as unknown as Peer)
    const r = m.registry
    // not started: no peer id yet, a spare
    expect(await seriesOf(r, 'spotpipe_peer_info')).toEqual([])
    expect(await valueOf(r, 'spotpipe_peer_stage')).toBe(-1)
    expect(await valueOf(r, 'spotpipe_peer_activation_bytes_total', { direction: 'sent' })).toBe(0)

    p.node = {}
    p.stageIndex = 2
    p.epoch = 5
    p.emit('stage', { stage: 2, epoch: 5, iteration: 0, source: 'seed' })
    const done = (iteration: number, computeMs: number, extra: Partial<PeerDoneEvent> = {}): void => {
      p.emit('done', { iteration, gradNorm: 1, computeMs, stage: 2, epoch: 5, ...extra } satisfies PeerDoneEvent)
    }
    done(0, 80)
    done(1, 300, { loss: 2.25, allReduceMs: 20 })
    Object.assign(p.totals, { activationBytesSent: 1000, activationBytesReceived: 2000, weightsBytesReceived: 30, heartbeatsPublished: 9, heartbeatsFailed: 1 })
    p.weightsBytesSent = 40
    p.framesRejected = 3
    p.staleFrames = 4
    p.isDeparting = true
    p.emit('recovery-failed', { stage: 2, epoch: 6, rung: 'checkfree', code: 'ERR_X', reason: 'x' })

    expect(await seriesOf(r, 'spotpipe_peer_info')).toEqual([{ sample: 'spotpipe_peer_info', labels: { peer_id: '12D3KooWPeer' }, value: 1 }])
    expect(await valueOf(r, 'spotpipe_peer_stage')).toBe(2)
    expect(await valueOf(r, 'spotpipe_peer_epoch')).toBe(5)
    expect(await valueOf(r, 'spotpipe_peer_departing')).toBe(1)
    expect(await valueOf(r, 'spotpipe_peer_iteration')).toBe(1)
    expect(await valueOf(r, 'spotpipe_peer_loss')).toBe(2.25)
    expect(await valueOf(r, 'spotpipe_peer_compute_seconds', {}, 'spotpipe_peer_compute_seconds_count')).toBe(2)
    expect(await valueOf(r, 'spotpipe_peer_compute_seconds', { le: '0.1' }, 'spotpipe_peer_compute_seconds_bucket')).toBe(1)
    expect(await valueOf(r, 'spotpipe_peer_compute_seconds', { le: '0.5' }, 'spotpipe_peer_compute_seconds_bucket')).toBe(2)
    expect(await valueOf(r, 'spotpipe_peer_allreduce_seconds', {}, 'spotpipe_peer_allreduce_seconds_count')).toBe(1)
    expect(await valueOf(r, 'spotpipe_peer_allreduce_seconds', { le: '0.025' }, 'spotpipe_peer_allreduce_seconds_bucket')).toBe(1)
    expect(await valueOf(r, 'spotpipe_peer_activation_bytes_total', { direction: 'sent' })).toBe(1000)
    expect(await valueOf(r, 'spotpipe_peer_activation_bytes_total', { direction: 'received' })).toBe(2000)
    expect(await valueOf(r, 'spotpipe_peer_weights_bytes_total', { direction: 'sent' })).toBe(40)
    expect(await valueOf(r, 'spotpipe_peer_weights_bytes_total', { direction: 'received' })).toBe(30)
    expect(await valueOf(r, 'spotpipe_peer_heartbeats_total', { outcome: 'published' })).toBe(9)
    expect(await valueOf(r, 'spotpipe_peer_heartbeats_total', { outcome: 'failed' })).toBe(1)
    expect(await valueOf(r, 'spotpipe_peer_frames_dropped_total', { reason: 'rejected' })).toBe(3)
    expect(await valueOf(r, 'spotpipe_peer_frames_dropped_total', { reason: 'stale_epoch' })).toBe(4)
    expect(await valueOf(r, 'spotpipe_peer_stage_installs_total', { source: 'seed' })).toBe(1)
    expect(await valueOf(r, 'spotpipe_peer_recovery_failures_total', { rung: 'checkfree' })).toBe(1)
    expect(await typeOf(r, 'spotpipe_peer_activation_bytes_total')).toBe('counter')
    // the process metrics are there too, on the peer's own registry
    expect(r.getSingleMetric('process_resident_memory_bytes')).toBeDefined()
  })

  it('close() frees the port, the signal closes the server, and a port in use is a MetricsListenError', async () => {
    const r = createMetricsRegistry({ defaultMetrics: false })
    const srv = await serveMetrics({ port: 0, registry: r })
    await srv.close()
    await srv.close() // idempotent
    await expect(fetch(srv.url)).rejects.toThrow()
    const ac = new AbortController()
    const srv2 = await serveMetrics({ port: 0, registry: r, signal: ac.signal })
    expect((await fetch(srv2.url)).status).toBe(200)
    ac.abort()
    await expect(srv2.close()).resolves.toBeUndefined()
    await expect(fetch(srv2.url)).rejects.toThrow()

    const taken = createServer()
    await new Promise<void>(resolve => { taken.listen(0, '127.0.0.1', resolve) })
    try {
      const port = (taken.address() as { port: number }).port
      const err = await serveMetrics({ port, registry: r }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(MetricsListenError)
      expect(err).toMatchObject({ code: 'ERR_METRICS_LISTEN', message: expect.stringContaining(`127.0.0.1:${port}`) })
    } finally {
      await new Promise(resolve => taken.close(resolve))
    }
  })

  it('the Grafana dashboard uses only declared series, and docs/spot-vms.md lists every spotpipe series', async () => {
    const declared = new Map<string, string>()
    const fake = Object.assign(new EventEmitter(), { epoch: 0, livePeers: () => [], assignedPeers: () => [] })
    const coord = instrument(fake as unknown as Coordinator)
    fake.emit('stopped')
    const peer = instrumentPeer(new EventEmitter() as unknown as Peer)
    // the declared metrics, without collecting them (the stand-ins have nothing to read)
    for (const r of [coord.registry, peer.registry]) for (const f of r.getMetricsAsArray()) declared.set(f.name, String(f.type))
    // a histogram is queried by its _bucket, _sum and _count series
    const known = (name: string): boolean => declared.has(name) ||
      ['_bucket', '_sum', '_count'].some(x => name.endsWith(x) && declared.get(name.slice(0, -x.length)) === 'histogram')
    const queries = dashboardQueries(JSON.parse(readFileSync(`${ROOT}docs/grafana-dashboard.json`, 'utf8')))
    expect(queries.length).toBeGreaterThan(20)
    const used = new Set<string>()
    for (const q of queries) {
      const names = q.expr.match(/\b(?:spotpipe|process|nodejs)_[a-z0-9_]+/g) ?? []
      // Prometheus's own `up` is the one other series a panel may use
      expect(names.length > 0 || /^count\(up\{/.test(q.expr), q.panel).toBe(true)
      for (const n of names) { expect(known(n), `${q.panel}: ${n}`).toBe(true); used.add(n.replace(/_(bucket|sum|count)$/, '')) }
    }
    const spotpipe = [...declared.keys()].filter(n => n.startsWith('spotpipe_'))
    // every spotpipe series is on a panel, and named in the metrics section of the docs
    expect(spotpipe.filter(n => !used.has(n))).toEqual([])
    const doc = readFileSync(`${ROOT}docs/spot-vms.md`, 'utf8')
    expect(spotpipe.filter(n => !doc.includes(`\`${n}`))).toEqual([])
  })
})

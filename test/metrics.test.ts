/**
 * The Prometheus registry and /metrics server: scrape over HTTP, parse the text back, and check
 * names, labels, values, HELP/TYPE lines and escaping. Plus instrument() on a stand-in coordinator
 * (its events and the few fields it reads): the replica series per stage and the stages at risk.
 */
import { EventEmitter } from 'node:events'
import { afterEach, describe, expect, it } from 'vitest'
import type { Coordinator, IterationRecord } from '../coordinator/coordinator.js'
import { instrument } from '../coordinator/instrument.js'
import {
  MetricsError, MetricsParseError, MetricsRegistry, PROMETHEUS_CONTENT_TYPE, createSpotpipeMetrics,
  parsePrometheusText, serveMetrics, type MetricsServer, type PromFamily
} from '../coordinator/metrics.js'
import type { Assignment } from '../protocols/index.js'

const servers: MetricsServer[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})

function sample (f: PromFamily | undefined, labels: Record<string, string> = {}, name?: string): number | undefined {
  return f?.samples.find(s => (name == null || s.name === name) && JSON.stringify(s.labels) === JSON.stringify(labels))?.value
}

describe('metrics', () => {
  it('serves the coordinator metrics on /metrics and they parse back', async () => {
    const m = createSpotpipeMetrics()
    m.iteration.set(1234)
    m.epoch.set(3)
    m.loss.set(2.573)
    m.tokensPerSecond.set(8192.5)
    m.peers.set(4, { role: 'stage' })
    m.peers.set(1, { role: 'spare' })
    m.recoveries.inc(1, { rung: 'checkfree' })
    m.recoveries.inc(2, { rung: 'handover' })
    m.recoveries.inc(1, { rung: 'checkfree' })
    m.recoverySeconds.observe(3.5, { phase: 'detect' })
    m.recoverySeconds.observe(1.5, { phase: 'detect' })
    m.recoverySeconds.observe(0.25, { phase: 'transfer' })
    m.bytesMoved.inc(1_048_576)
    m.checkpoints.inc(1, { outcome: 'written' })
    m.checkpoints.inc(1, { outcome: 'abandoned' })
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
    expect(text.endsWith('\n')).toBe(true)
    expect(text).toContain('# TYPE spotpipe_recoveries_total counter\n')

    const fams = parsePrometheusText(text)
    expect([...fams.keys()]).toEqual([
      'spotpipe_iteration', 'spotpipe_epoch', 'spotpipe_loss', 'spotpipe_tokens_per_second', 'spotpipe_peers',
      'spotpipe_recoveries_total', 'spotpipe_recovery_seconds', 'spotpipe_bytes_moved_total',
      'spotpipe_checkpoints_total', 'spotpipe_checkpoint_seconds', 'spotpipe_checkpoint_bytes_total', 'spotpipe_checkpoint_iteration',
      'spotpipe_stage_replicas', 'spotpipe_stage_joining', 'spotpipe_stages_at_risk', 'spotpipe_allreduce_seconds'
    ])
    for (const f of fams.values()) expect(f.help).toBeTruthy()
    expect(fams.get('spotpipe_iteration')).toMatchObject({ type: 'gauge', samples: [{ name: 'spotpipe_iteration', labels: {}, value: 1234 }] })
    expect(sample(fams.get('spotpipe_epoch'))).toBe(3)
    expect(sample(fams.get('spotpipe_loss'))).toBe(2.573)
    expect(sample(fams.get('spotpipe_tokens_per_second'))).toBe(8192.5)
    expect(fams.get('spotpipe_peers')?.type).toBe('gauge')
    expect(sample(fams.get('spotpipe_peers'), { role: 'stage' })).toBe(4)
    expect(sample(fams.get('spotpipe_peers'), { role: 'spare' })).toBe(1)
    expect(fams.get('spotpipe_recoveries_total')?.type).toBe('counter')
    expect(sample(fams.get('spotpipe_recoveries_total'), { rung: 'checkfree' })).toBe(2)
    expect(sample(fams.get('spotpipe_recoveries_total'), { rung: 'handover' })).toBe(2)
    const rs = fams.get('spotpipe_recovery_seconds')
    expect(rs?.type).toBe('summary')
    expect(sample(rs, { phase: 'detect' }, 'spotpipe_recovery_seconds_sum')).toBe(5)
    expect(sample(rs, { phase: 'detect' }, 'spotpipe_recovery_seconds_count')).toBe(2)
    expect(sample(rs, { phase: 'transfer' }, 'spotpipe_recovery_seconds_count')).toBe(1)
    expect(sample(fams.get('spotpipe_bytes_moved_total'))).toBe(1_048_576)
    expect(sample(fams.get('spotpipe_checkpoints_total'), { outcome: 'abandoned' })).toBe(1)
    expect(sample(fams.get('spotpipe_checkpoint_seconds'), {}, 'spotpipe_checkpoint_seconds_sum')).toBe(0.4)
    expect(sample(fams.get('spotpipe_checkpoint_bytes_total'))).toBe(20_000_000)
    expect(sample(fams.get('spotpipe_checkpoint_iteration'))).toBe(1229)

    // HEAD has no body; other paths 404, other methods 405
    const head = await fetch(srv.url, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(await head.text()).toBe('')
    expect((await fetch(srv.url.replace('/metrics', '/'))).status).toBe(404)
    expect((await fetch(srv.url.replace('/metrics', '/metrics/x'))).status).toBe(404)
    expect((await fetch(srv.url, { method: 'POST' })).status).toBe(405)
    expect((await fetch(`${srv.url}?x=1`)).status).toBe(200)
  })

  it('escapes label values and help text, and formats special values', async () => {
    const r = new MetricsRegistry()
    const g = r.gauge('odd_values', 'Help with a backslash \\ and a\nnewline.', ['v'])
    const nasty = 'quote " backslash \\ newline \n end'
    g.set(1, { v: nasty })
    g.set(NaN, { v: 'nan' })
    g.set(Infinity, { v: 'inf' })
    g.set(-Infinity, { v: '-inf' })
    g.set(-0.5e-7, { v: 'tiny' })
    const srv = await serveMetrics({ port: 0, registry: r })
    servers.push(srv)
    const text = await (await fetch(srv.url)).text()
    expect(text).toContain('# HELP odd_values Help with a backslash \\\\ and a\\nnewline.\n')
    expect(text).toContain('odd_values{v="quote \\" backslash \\\\ newline \\n end"} 1\n')
    expect(text).toContain('odd_values{v="inf"} +Inf\n')
    expect(text.split('\n').filter(l => !l.startsWith('#') && l !== '')).toHaveLength(5)
    const f = parsePrometheusText(text).get('odd_values')
    expect(f?.help).toBe('Help with a backslash \\ and a\nnewline.')
    expect(sample(f, { v: nasty })).toBe(1)
    expect(sample(f, { v: 'nan' })).toBeNaN()
    expect(sample(f, { v: 'inf' })).toBe(Infinity)
    expect(sample(f, { v: '-inf' })).toBe(-Infinity)
    expect(sample(f, { v: 'tiny' })).toBe(-0.5e-7)
  })

  it('rejects bad names, mismatched labels, clashes and decreasing counters', () => {
    const r = new MetricsRegistry()
    expect(() => r.gauge('bad-name', 'x')).toThrow(MetricsError)
    expect(() => r.gauge('ok', 'x', ['__reserved'])).toThrow(MetricsError)
    expect(() => r.gauge('ok2', 'x', ['a', 'a'])).toThrow(MetricsError)
    const c = r.counter('things_total', 'x', ['kind'])
    expect(() => { c.inc(1) }).toThrow(/expected labels \{kind\}/)
    expect(() => { c.inc(1, { kind: 'a', extra: 'b' }) }).toThrow(MetricsError)
    expect(() => { c.inc(-1, { kind: 'a' }) }).toThrow(MetricsError)
    expect(() => r.gauge('things_total', 'x')).toThrow(/clashes/)
    r.summary('lat_seconds', 'x')
    expect(() => r.gauge('lat_seconds_sum', 'x')).toThrow(/clashes/)
    // labelled series appear once used; an unlabelled metric always shows its value
    r.gauge('plain', 'x')
    const fams = parsePrometheusText(r.render())
    expect(fams.get('things_total')?.samples).toEqual([])
    expect(fams.get('plain')?.samples).toEqual([{ name: 'plain', labels: {}, value: 0 }])
    expect(fams.get('lat_seconds')?.samples.map(s => s.name)).toEqual(['lat_seconds_sum', 'lat_seconds_count'])
  })

  it('parses what other exporters write and rejects malformed lines', () => {
    const fams = parsePrometheusText([
      '# a plain comment',
      '# HELP http_requests_total Requests.',
      '# TYPE http_requests_total counter',
      'http_requests_total{method="post",code="200"} 1027 1395066363000',
      'http_requests_total{ method = "post" , code="400" , } 3',
      'no_type_metric 1e3',
      ''
    ].join('\r\n'))
    expect(fams.get('http_requests_total')?.samples).toEqual([
      { name: 'http_requests_total', labels: { method: 'post', code: '200' }, value: 1027, timestampMs: 1395066363000 },
      { name: 'http_requests_total', labels: { method: 'post', code: '400' }, value: 3 }
    ])
    expect(fams.get('no_type_metric')).toEqual({ name: 'no_type_metric', samples: [{ name: 'no_type_metric', labels: {}, value: 1000 }] })
    for (const bad of ['m{a="x} 1', 'm{a=x} 1', 'm 1 2 3', 'm abc', 'm{a="\\q"} 1', '1m 2', 'm{a="1",a="2"} 1', 'm', '# TYPE m gaugeish']) {
      expect(() => parsePrometheusText(`ok 1\n${bad}\n`), bad).toThrow(MetricsParseError)
    }
    const err = ((): unknown => { try { parsePrometheusText('ok 1\nm abc\n') } catch (e) { return e } })()
    expect(err).toBeInstanceOf(MetricsParseError)
    expect((err as MetricsParseError).line).toBe(2)
  })

  it('instrument() exports replicas and joining peers per stage, the stages at risk and the all-reduce time', () => {
    // what instrument() reads of a Coordinator: its events, epoch, assignment and live peers
    const c = new (class extends EventEmitter {
      epoch = 0
      assignment?: Assignment
      live: string[] = []
      livePeers (): string[] { return [...this.live] }
      assignedPeers (): string[] { return this.assignment?.stages.flatMap(s => s.peers) ?? [] }
    })()
    const m = instrument(c as unknown as Coordinator)
    const scrape = (): Map<string, PromFamily> => parsePrometheusText(m.registry.render())
    const perStage = (f: PromFamily | undefined): Array<[string, number]> => (f?.samples ?? []).map(s => [s.labels.stage, s.value])
    try {
      // before any assignment: no stage series, nothing at risk
      let fams = scrape()
      expect(fams.get('spotpipe_stage_replicas')?.samples).toEqual([])
      expect(sample(fams.get('spotpipe_stages_at_risk'))).toBe(0)
      expect(fams.get('spotpipe_stages_at_risk')?.type).toBe('gauge')

      // 3 stages: two replicas, two replicas and a peer joining, one replica
      const a = (epoch: number, stages: string[][], joining?: string[]): Assignment => ({
        kind: 'assignment', clusterId: 'c', runId: 'r', epoch, iteration: 5, modelConfig: '{}', trainingConfig: '{}', rebuilt: [],
        stages: stages.map((peers, stage) => ({ stage, peers, addrs: peers.map(() => '') })), ...(joining != null ? { joining } : {})
      })
      c.epoch = 3
      c.assignment = a(3, [['a0', 'a1'], ['b0', 'b1', 'j'], ['c0']], ['j'])
      c.live = ['a0', 'a1', 'b0', 'b1', 'j', 'c0', 'spare']
      c.emit('epoch', { epoch: 3 })
      fams = scrape()
      expect(perStage(fams.get('spotpipe_stage_replicas'))).toEqual([['0', 2], ['1', 2], ['2', 1]])
      expect(perStage(fams.get('spotpipe_stage_joining'))).toEqual([['0', 0], ['1', 1], ['2', 0]])
      expect(sample(fams.get('spotpipe_stages_at_risk'))).toBe(1)
      expect(sample(fams.get('spotpipe_epoch'))).toBe(3)
      expect(sample(fams.get('spotpipe_peers'), { role: 'spare' })).toBe(1)

      // a committed iteration: all-reduce seconds per stage; b1 is no longer live, so stage 1 is at
      // risk too (the joining peer does not count)
      c.live = ['a0', 'a1', 'b0', 'j', 'c0']
      const rec: IterationRecord = { iteration: 5, epoch: 3, loss: 3.5, gradNorms: [1, 1, 1], ms: 900, tokensPerSec: 100, allReduceMs: [250, 125, 0] }
      c.emit('iteration', rec)
      fams = scrape()
      expect(perStage(fams.get('spotpipe_allreduce_seconds'))).toEqual([['0', 0.25], ['1', 0.125], ['2', 0]])
      expect(sample(fams.get('spotpipe_stages_at_risk'))).toBe(2)
      expect(sample(fams.get('spotpipe_iteration'))).toBe(5)

      // the join is done and the lost replica dropped: stage 1 serves two again
      c.epoch = 4
      c.assignment = a(4, [['a0', 'a1'], ['b0', 'j'], ['c0']])
      c.emit('epoch', { epoch: 4 })
      fams = scrape()
      expect(perStage(fams.get('spotpipe_stage_replicas'))).toEqual([['0', 2], ['1', 2], ['2', 1]])
      expect(perStage(fams.get('spotpipe_stage_joining'))).toEqual([['0', 0], ['1', 0], ['2', 0]])
      expect(sample(fams.get('spotpipe_stages_at_risk'))).toBe(1)
      for (const n of ['spotpipe_stage_replicas', 'spotpipe_stage_joining', 'spotpipe_stages_at_risk', 'spotpipe_allreduce_seconds']) expect(fams.get(n)?.help).toBeTruthy()
    } finally {
      c.emit('stopped')
    }
  })

  it('close() frees the port and the signal closes the server', async () => {
    const r = new MetricsRegistry()
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
  })
})

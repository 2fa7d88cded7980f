/**
 * The spot watcher against a fake metadata service on 127.0.0.1: the AWS IMDSv2 token handshake,
 * GCP's preempted flag, Azure scheduled events, auto-detection, and the off-cloud cases (closed
 * port, a service that never answers). Nothing here leaves loopback.
 */
import { createServer } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { SpotWatcher, type SpotNotice, type SpotProvider } from '../node/spot-watcher.js'
import { closeServer, fakeMetadata, listen, type Fake } from './helpers/fake-metadata.js'

/** A URL on a loopback port nobody listens on. */
async function closedPortUrl (): Promise<string> {
  const s = createServer()
  const port = await listen(s)
  await closeServer(s)
  return `http://127.0.0.1:${port}`
}

async function until (cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const t0 = Date.now()
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('condition not met in time')
    await sleep(10)
  }
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function watch (w: SpotWatcher): SpotNotice[] {
  const seen: SpotNotice[] = []
  w.on('notice', n => { seen.push(n) })
  cleanups.push(() => { w.stop() })
  return seen
}

async function fake (serve: SpotProvider[]): Promise<Fake> {
  const f = await fakeMetadata(serve)
  cleanups.push(f.close)
  return f
}

describe('spot watcher', () => {
  it('AWS: token handshake, nothing on 404, exactly one notice with the deadline', async () => {
    const f = await fake(['aws'])
    // the fake insists on the token, like IMDSv2 does
    const bare = await fetch(`${f.base}/latest/meta-data/spot/instance-action`)
    expect(bare.status).toBe(401)
    f.log.length = 0

    const w = new SpotWatcher({ provider: 'aws', intervalMs: 25, baseUrls: { aws: f.base } })
    const seen = watch(w)
    w.start()
    await until(() => f.log.filter(l => l.includes('instance-action 404')).length >= 3)
    expect(seen).toEqual([])
    expect(w.notice).toBeUndefined()

    f.state.awsAction = { action: 'terminate', time: '2030-01-02T03:04:05Z' }
    await until(() => seen.length > 0)
    await sleep(150) // several more intervals: still exactly one
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatchObject({ provider: 'aws', action: 'terminate' })
    expect(seen[0].deadline?.toISOString()).toBe('2030-01-02T03:04:05.000Z')
    expect(w.notice).toBe(seen[0])
    // one token for the whole run, never a GET without it, and polling stopped after the notice
    expect(f.log.filter(l => l.startsWith('PUT /latest/api/token 200'))).toHaveLength(1)
    expect(f.log.some(l => l.endsWith(' 401'))).toBe(false)
    const n = f.log.length
    await sleep(100)
    expect(f.log.length).toBe(n)
  })

  it('AWS: a rejected token is renewed and the poll retried', async () => {
    const f = await fake(['aws'])
    const w = new SpotWatcher({ provider: 'aws', baseUrls: { aws: f.base } })
    watch(w)
    expect(await w.check()).toBeUndefined()
    f.tokens.clear() // the service forgot every token (e.g. it restarted)
    f.state.awsAction = { action: 'stop', time: 'not a date' }
    const n = await w.check()
    expect(n).toMatchObject({ provider: 'aws', action: 'stop' })
    expect(n?.deadline).toBeUndefined()
    expect(f.log.filter(l => l.startsWith('PUT /latest/api/token 200'))).toHaveLength(2)
  })

  it('GCP: nothing while FALSE, one notice once TRUE', async () => {
    const f = await fake(['gcp'])
    const w = new SpotWatcher({ provider: 'gcp', intervalMs: 25, baseUrls: { gcp: f.base } })
    const seen = watch(w)
    w.start()
    await until(() => f.log.filter(l => l.includes('preempted 200')).length >= 3)
    expect(seen).toEqual([])
    f.state.gcpPreempted = true
    await until(() => seen.length > 0)
    await sleep(100)
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatchObject({ provider: 'gcp', action: 'preempt' })
    expect(seen[0].deadline).toBeUndefined()
  })

  it('Azure: other scheduled events are not a notice; Preempt is, with NotBefore as deadline', async () => {
    const f = await fake(['azure'])
    const w = new SpotWatcher({ provider: 'azure', intervalMs: 25, baseUrls: { azure: f.base } })
    const seen = watch(w)
    f.state.azureEvents = [{ EventId: 'a-1', EventType: 'Freeze', ResourceType: 'VirtualMachine', Resources: ['vm1'], EventStatus: 'Scheduled', NotBefore: 'Mon, 19 Sep 2016 18:29:47 GMT' }]
    w.start()
    await until(() => f.log.filter(l => l.includes('scheduledevents') && l.endsWith(' 200')).length >= 3)
    expect(seen).toEqual([])
    f.state.azureEvents.push({ EventId: 'p-2', EventType: 'Preempt', ResourceType: 'VirtualMachine', Resources: ['vm1'], EventStatus: 'Scheduled', NotBefore: 'Tue, 01 Jan 2030 00:00:30 GMT' })
    await until(() => seen.length > 0)
    await sleep(100)
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatchObject({ provider: 'azure', action: 'Preempt', detail: 'EventId p-2' })
    expect(seen[0].deadline?.toISOString()).toBe('2030-01-01T00:00:30.000Z')
  })

  it('auto settles on the service that answers and polls only that one', async () => {
    const f = await fake(['gcp'])
    const w = new SpotWatcher({ provider: 'auto', intervalMs: 25, baseUrls: { aws: f.base, gcp: f.base, azure: f.base } })
    const seen = watch(w)
    w.start()
    await until(() => w.provider === 'gcp')
    const settledAt = f.log.length
    await until(() => f.log.length >= settledAt + 3)
    expect(f.log.slice(settledAt).every(l => l.includes('/computeMetadata/'))).toBe(true)
    f.state.gcpPreempted = true
    await until(() => seen.length > 0)
    expect(seen).toHaveLength(1)
    expect(seen[0].provider).toBe('gcp')
  })

  it('auto tells AWS from Azure on the same address', async () => {
    const f = await fake(['azure'])
    const w = new SpotWatcher({ provider: 'auto', baseUrls: { aws: f.base, gcp: f.base, azure: f.base } })
    watch(w)
    expect(await w.check()).toBeUndefined()
    expect(w.provider).toBe('azure')
  })

  it('an unreachable metadata service neither throws nor hangs', async () => {
    const closed = await closedPortUrl()
    const w = new SpotWatcher({ provider: 'auto', intervalMs: 20, baseUrls: { aws: closed, gcp: closed, azure: closed } })
    const seen = watch(w)
    const t0 = Date.now()
    expect(await w.check()).toBeUndefined()
    expect(Date.now() - t0).toBeLessThan(1000)
    w.start()
    await sleep(150)
    expect(seen).toEqual([])
    expect(w.provider).toBeUndefined()
    w.stop()
    expect(w.running).toBe(false)
  })

  it('a service that accepts but never replies is cut off by the request timeout', async () => {
    const sockets = new Set<import('node:net').Socket>()
    const silent = createServer(() => { /* never answers */ })
    silent.on('connection', s => { sockets.add(s) })
    const port = await listen(silent)
    cleanups.push(async () => { await closeServer(silent) })
    const base = `http://127.0.0.1:${port}`
    const w = new SpotWatcher({ provider: 'auto', requestTimeoutMs: 150, baseUrls: { aws: base, gcp: base, azure: base } })
    watch(w)
    const t0 = Date.now()
    expect(await w.check()).toBeUndefined()
    const ms = Date.now() - t0
    expect(ms).toBeGreaterThanOrEqual(100)
    expect(ms).toBeLessThan(1000)
    expect(sockets.size).toBeGreaterThan(0)
  })

  it('stop() aborts a poll in flight and clears the timer', async () => {
    let hits = 0
    const silent = createServer(() => { hits++ })
    const port = await listen(silent)
    cleanups.push(async () => { await closeServer(silent) })
    const base = `http://127.0.0.1:${port}`
    const w = new SpotWatcher({ provider: 'gcp', intervalMs: 10, requestTimeoutMs: 10_000, baseUrls: { gcp: base } })
    watch(w)
    w.start()
    await until(() => hits === 1)
    w.stop()
    await sleep(100)
    expect(hits).toBe(1)
    // an aborted check resolves rather than throwing
    const ac = new AbortController()
    const pending = w.check({ signal: ac.signal })
    await until(() => hits === 2)
    ac.abort()
    expect(await pending).toBeUndefined()
  })

  it('start({ signal }) stops when the signal aborts; waitForNotice honours its signal', async () => {
    const f = await fake(['gcp'])
    const ac = new AbortController()
    const w = new SpotWatcher({ provider: 'gcp', intervalMs: 10, baseUrls: { gcp: f.base } })
    watch(w)
    w.start({ signal: ac.signal })
    await until(() => f.log.length >= 2)
    ac.abort()
    expect(w.running).toBe(false)
    const n = f.log.length
    await sleep(80)
    expect(f.log.length).toBeLessThanOrEqual(n + 1) // at most the request already in flight
    const wait = new AbortController()
    const p = w.waitForNotice({ signal: wait.signal })
    wait.abort(new Error('gave up'))
    await expect(p).rejects.toThrow('gave up')
  })

  it('handleSigterm: SIGTERM is a notice (once), and the listener goes away on stop()', async () => {
    // keep other SIGTERM listeners (the test runner's) out of this
    const others = process.listeners('SIGTERM')
    for (const l of others) process.off('SIGTERM', l)
    try {
      const w = new SpotWatcher({ provider: 'none', handleSigterm: true })
      const seen = watch(w)
      const waiting = w.waitForNotice()
      w.start()
      expect(process.listenerCount('SIGTERM')).toBe(1)
      process.emit('SIGTERM', 'SIGTERM')
      process.emit('SIGTERM', 'SIGTERM')
      expect(seen).toHaveLength(1)
      expect(seen[0]).toMatchObject({ provider: 'signal', action: 'SIGTERM' })
      expect(await waiting).toBe(seen[0])
      w.stop()
      expect(process.listenerCount('SIGTERM')).toBe(0)
    } finally {
      for (const l of others) process.on('SIGTERM', l)
    }
  })

  it('rejects bad options', () => {
    expect(() => new SpotWatcher({ intervalMs: 0 })).toThrow(/intervalMs/)
    expect(() => new SpotWatcher({ provider: 'oracle' as never })).toThrow(/provider/)
  })
})

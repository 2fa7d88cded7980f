/**
 * The failure detector's parts: the phi-accrual arithmetic (accrual.ts), the pause arithmetic
 * (pause.ts), and FailureDetector on a real libp2p node with real time: a real event-loop stall
 * makes it re-confirm instead of declaring peers lost, and it still catches the peer that died.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeAll, afterAll, describe, expect, it, vi } from 'vitest'
import { ArrivalWindow, elapsedAtPhi, phi } from '../coordinator/accrual.js'
import { FailureDetector, type LostPeer } from '../coordinator/detector.js'
import { PauseDetector } from '../coordinator/pause.js'
import { ConfigError } from '../common/index.js'
import { createPeerLibp2p, type PeerLibp2p } from '../net/index.js'

// P(Z > y) for a standard normal Z (reference values from the normal table)
const NORMAL_TAIL: Array<[number, number]> = [[0, 0.5], [1, 0.15865525393], [2, 0.02275013195], [3, 0.00134989803], [4, 3.16712418e-5]]

describe('phi (accrual.ts)', () => {
  it('is -log10 of the normal tail, within the logistic approximation\'s 1.4e-4', () => {
    for (const [y, tail] of NORMAL_TAIL) {
      const p = phi(1000 + y * 200, 1000, 200)
      expect(Math.abs(Math.pow(10, -p) - tail), `y=${y}`).toBeLessThan(1.4e-4)
    }
    expect(phi(1000, 1000, 200)).toBeCloseTo(Math.log10(2), 12)
  })

  it('grows with silence, stays finite far out in either tail, and elapsedAtPhi inverts it', () => {
    let prev = -Infinity
    for (let t = 0; t <= 10_000; t += 50) {
      const p = phi(t, 1000, 100)
      expect(p).toBeGreaterThanOrEqual(prev)
      expect(Number.isFinite(p)).toBe(true)
      prev = p
    }
    expect(phi(-1e9, 1000, 100)).toBeGreaterThanOrEqual(0)
    for (const th of [0.1, 1, 3, 8, 16, 100]) {
      const at = elapsedAtPhi(th, 1000, 100)
      expect(phi(at, 1000, 100)).toBeCloseTo(th, 9)
    }
    // a wider spread puts the same suspicion further out
    expect(elapsedAtPhi(8, 1000, 400)).toBeGreaterThan(elapsedAtPhi(8, 1000, 100) + 1000)
    expect(() => elapsedAtPhi(0, 1000, 100)).toThrow(ConfigError)
  })
})

describe('ArrivalWindow (accrual.ts)', () => {
  it('starts from the bootstrap period, then follows the real intervals, evicting the oldest', () => {
    const w = new ArrivalWindow({ size: 4, minStdDevMs: 10, bootstrapIntervalMs: 1000 })
    expect(w.meanMs).toBe(1000)
    expect(w.stdDevMs).toBe(250)
    for (const x of [200, 200, 200, 200]) w.add(x)
    // the pseudo-intervals are gone
    expect(w.intervals()).toEqual([200, 200, 200, 200])
    expect(w.meanMs).toBe(200)
    expect(w.stdDevMs).toBe(10) // no spread: the minimum deviation holds
    w.add(600)
    expect(w.intervals()).toEqual([200, 200, 200, 600])
    expect(w.meanMs).toBe(300)
    expect(w.stdDevMs).toBeCloseTo(Math.sqrt((3 * 100 * 100 + 300 * 300) / 4), 9)
    expect(() => { w.add(Number.NaN) }).toThrow(RangeError)
  })

  it('gives a peer with an irregular rhythm more room than a regular one', () => {
    const steady = new ArrivalWindow()
    const starved = new ArrivalWindow()
    for (let i = 0; i < 100; i++) {
      steady.add(1000 + (i % 3) * 10)
      // heartbeats held back for seconds now and then (a CPU-starved host)
      starved.add(i % 5 === 0 ? 3500 : 900)
    }
    expect(steady.silenceAtPhi(8)).toBeLessThan(1700)
    expect(starved.silenceAtPhi(8)).toBeGreaterThan(5000)
    expect(starved.phi(3500)).toBeLessThan(steady.phi(3500))
  })

  it('stays exact over many turns of the ring', () => {
    const w = new ArrivalWindow({ size: 10 })
    for (let i = 0; i < 100_003; i++) w.add(1e6 + (i % 7))
    const xs = w.intervals()
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length
    expect(w.meanMs).toBeCloseTo(mean, 6)
  })
})

describe('PauseDetector (pause.ts)', () => {
  it('reports a stall when the monotonic clock ran far past the interval', () => {
    const d = new PauseDetector({ intervalMs: 100, thresholdMs: 1000 })
    expect(d.tick(0, 50_000)).toBeUndefined()
    expect(d.tick(100, 50_100)).toBeUndefined()
    expect(d.tick(1150, 51_150)).toBeUndefined() // 950 ms late: under the threshold
    expect(d.tick(1170, 51_170)).toBeUndefined() // extra ticks between timer ticks are fine
    expect(d.tick(21_270, 71_270)).toEqual({ kind: 'stall', ms: 20_000, at: 21_270 })
    expect(d.tick(21_370, 71_370)).toBeUndefined()
  })

  it('reports a clock jump when wall and monotonic clocks disagree (a suspended VM, a clock step)', () => {
    const d = new PauseDetector({ intervalMs: 100, thresholdMs: 1000 })
    d.tick(0, 50_000)
    // suspended: CLOCK_MONOTONIC did not count the 30 s, the wall clock did
    expect(d.tick(100, 80_100)).toEqual({ kind: 'clock-jump', ms: 30_000, at: 100 })
    // stepped back by 5 s
    expect(d.tick(200, 75_200)).toEqual({ kind: 'clock-jump', ms: -5000, at: 200 })
    expect(d.tick(300, 75_300)).toBeUndefined()
  })
})

describe('FailureDetector on a real node, in real time', () => {
  let node: PeerLibp2p
  const detectors: FailureDetector[] = []
  const timers: NodeJS.Timeout[] = []
  beforeAll(async () => {
    node = await createPeerLibp2p({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
  })
  afterEach(() => {
    for (const t of timers.splice(0)) clearInterval(t)
    for (const d of detectors.splice(0)) d.stop()
  })
  afterAll(async () => {
    vi.restoreAllMocks()
    await node.stop()
  })

  /** Peer ids of nobody: heartbeats are fed by hand, and pings to them fail. */
  async function ghostIds (n: number): Promise<string[]> {
    return await Promise.all(Array.from({ length: n }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
  }

  function detector (watched: string[], lost: LostPeer[], pauseThresholdMs: number): FailureDetector {
    const d = new FailureDetector({ node, heartbeatTimeoutMs: 400, maxHeartbeatTimeoutMs: 5000, heartbeatPeriodMs: 100, pauseGraceMs: 800, pauseThresholdMs, watched: () => watched, onLost: (l) => { lost.push(l) } })
    detectors.push(d)
    d.start()
    return d
  }

  const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
  /** Blocks this process's event loop, as a long GC or a SIGSTOP would. */
  function stall (ms: number): void {
    const end = performance.now() + ms
    while (performance.now() < end) { /* busy */ }
  }

  it('after its own stall it re-confirms: the live peer stays, the one that died meanwhile is lost after the grace', async () => {
    const [alive, died] = await ghostIds(2)
    const lost: LostPeer[] = []
    const d = detector([alive, died], lost, 300)
    let diedBeats = true
    timers.push(setInterval(() => {
      d.heartbeat(alive)
      if (diedBeats) d.heartbeat(died)
    }, 100))
    await sleep(1500)
    diedBeats = false
    stall(1500)
    const stallEnd = Date.now()
    await sleep(2500)
    expect(d.pauseLog.some(p => p.kind === 'stall' && p.ms > 1200)).toBe(true)
    expect(lost.map(l => l.peerId)).toEqual([died])
    expect(lost[0].cause).toMatch(/not heard within 800 ms after the coordinator's pause of \d+ ms, and no ping answer/)
    expect(lost[0].detectedAt - stallEnd).toBeGreaterThanOrEqual(800 - 50)
    // the interval across the stall (and the catch-up right after it) is not part of the rhythm
    expect(Math.max(...(d.intervalsOf(alive) ?? []))).toBeLessThan(1000)
    expect(d.timeoutFor(alive)).toBeLessThan(1000)
  })

  it('says how long the coordinator stood still since a moment (what a restarted coordinator adds to its resume grace)', async () => {
    const d = detector([], [], 300)
    await sleep(300)
    stall(800)
    await sleep(200)
    const t = performance.now()
    expect(d.pausedMsSince(t)).toBe(0)
    stall(1200)
    await sleep(200)
    // the sweep ticks every 100 ms: a 1200 ms stall shows as about 1100 ms beyond one interval
    expect(d.pausedMsSince(t)).toBeGreaterThan(800)
    expect(d.pausedMsSince(t)).toBeLessThan(1300)
    expect(d.pausedMsSince(0)).toBeGreaterThan(d.pausedMsSince(t) + 400)
  })

  it('without pause detection the same stall would have cost the live peer (the failure it prevents)', async () => {
    const [alive] = await ghostIds(1)
    const lost: LostPeer[] = []
    const d = detector([alive], lost, 1e9)
    // heartbeats arrive as messages do: after the timers that were due (the sweep) have run
    timers.push(setInterval(() => { setImmediate(() => { d.heartbeat(alive) }) }, 100))
    await sleep(1000)
    stall(1500)
    await sleep(500)
    expect(lost.map(l => l.peerId)).toEqual([alive])
    expect(lost[0].cause).toMatch(/^no heartbeat for \d+ ms/)
  })

  it('judges silence against the floor for a steady peer and never beyond the ceiling', async () => {
    const [steady, jumpy] = await ghostIds(2)
    const lost: LostPeer[] = []
    const d = new FailureDetector({ node, heartbeatTimeoutMs: 400, maxHeartbeatTimeoutMs: 700, heartbeatPeriodMs: 100, watched: () => [steady, jumpy], onLost: (l) => { lost.push(l) } })
    detectors.push(d)
    d.start()
    let n = 0
    timers.push(setInterval(() => {
      if (n % 2 === 0) d.heartbeat(steady) // every 100 ms
      if (n % 8 < 2) d.heartbeat(jumpy) // gaps of 50 and 350 ms: accrual alone would allow ~1 s
      n++
    }, 50))
    await sleep(3000)
    expect(d.timeoutFor(steady)).toBe(400)
    expect(d.timeoutFor(jumpy)).toBe(700)
    expect(lost).toEqual([])
    for (const t of timers.splice(0)) clearInterval(t)
    await sleep(1500)
    expect(lost.map(l => l.peerId).sort()).toEqual([steady, jumpy].sort())
    // each one lost once its silence passed its own limit (plus a sweep and some scheduling slack)
    for (const l of lost) {
      const limit = l.peerId === steady ? 400 : 700
      expect(l.detectedAt - l.lastSeen).toBeGreaterThanOrEqual(limit)
      expect(l.detectedAt - l.lastSeen).toBeLessThan(limit + 400)
    }
    // a lost peer that speaks again: the outage is not added to its rhythm
    d.heartbeat(steady)
    expect(Math.max(...(d.intervalsOf(steady) ?? []))).toBeLessThan(400)
  })

  it('refuses a ceiling below the floor', () => {
    expect(() => new FailureDetector({ node, heartbeatTimeoutMs: 3000, maxHeartbeatTimeoutMs: 1000, watched: () => [], onLost: () => {} })).toThrow(ConfigError)
    expect(() => new FailureDetector({ node, heartbeatTimeoutMs: 3000, maxHeartbeatTimeoutMs: 1000, watched: () => [], onLost: () => {} })).toThrow(/below the floor/)
  })
})

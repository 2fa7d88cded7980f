/**
 * bench:detector — the failure detector (coordinator/detector.ts) against the old fixed timeout, on
 * real `spotpipe peer` processes heartbeating to a libp2p node in this process (no training: the
 * peers heartbeat as spares, as every peer does).
 *
 * (a) False positives on CPU-starved peers: 4 peers are SIGSTOPped and SIGCONTed in seeded random
 *     duty cycles (run 0.3-2 s, stopped 0.2-2.6 s) for DURATION_S. Every "lost" declaration is false
 *     (the peers never die); each counts once per silence (the peer is forgiven when it speaks
 *     again). Three detectors watch the same heartbeats in the same run: the adaptive one with its
 *     defaults; the baseline, a fixed 3 s timeout (floor = ceiling = 3 s, no pause handling); and, for
 *     reference, the rule this replaced (3 s stretched to 2.5x the longest of the last 20 gaps).
 *     Then one starved peer is SIGSTOPped for good: the time to find it is the price of the room
 *     its rhythm earned it.
 * (b) Detection time, adaptive detector with defaults, on steady peers: SIGKILL (the closed
 *     connection and a failed ping) and SIGSTOP at a random point between heartbeats (silence
 *     alone: the connection stays up). Medians of 3 trials.
 */
import '../common/polyfill.js'
import { performance } from 'node:perf_hooks'
import type { ChildProcess } from 'node:child_process'
import { FailureDetector, type DetectorOptions, type LostPeer } from '../coordinator/detector.js'
import { mulberry32 } from '../model/rng.js'
import { ClusterGossip } from '../net/index.js'
import { createPeerLibp2p } from '../net/index.js'
import { benchSecret, killChildren, startPeer, type BenchPeer } from './harness.js'

const CLUSTER = 'bench-detector'
const DURATION_S = Number(process.env.DETECTOR_BENCH_SECONDS ?? 100)
const STARVED = 4
const TRIALS = 3
const SEED = 20_250_101

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }

// ------------------------------------------------------------------------ the listening side

const secret = await benchSecret()
const node = await createPeerLibp2p({ listen: ['/ip4/127.0.0.1/tcp/0'], swarmKey: secret.swarmKey })
const coordAddr = `${node.getMultiaddrs()[0].toString()}`
type Listener = (peerId: string) => void
const listeners = new Set<Listener>()
const gossip = new ClusterGossip(node, { clusterId: CLUSTER, onMessage: (m) => { if (m.kind === 'heartbeat') for (const l of listeners) l(m.peerId) } })
gossip.start()

/** A detector fed by every heartbeat, counting its declarations; a lost peer is forgiven when it speaks again. */
class Counted {
  readonly lost: LostPeer[] = []
  readonly detector: FailureDetector
  private readonly listener: Listener
  constructor (watched: string[], opts: DetectorOptions) {
    this.detector = new FailureDetector({ ...opts, node, watched: () => watched, onLost: (l) => { this.lost.push(l) } })
    this.listener = (p) => {
      this.detector.heartbeat(p)
      if (this.detector.lost.has(p)) this.detector.forget(p)
    }
    listeners.add(this.listener)
    this.detector.start()
  }

  stop (): void { listeners.delete(this.listener); this.detector.stop() }
}

/** The rule this detector replaced: a peer is lost after max(3 s, 2.5 x its longest recent gap) of silence. */
class OldRule {
  count = 0
  /** When each peer was last declared lost (ms since epoch). */
  readonly lostAt = new Map<string, number>()
  private readonly seen = new Map<string, { at: number, gaps: number[], lost: boolean }>()
  private readonly timer: NodeJS.Timeout
  private readonly listener: Listener
  constructor (watched: string[]) {
    this.listener = (p) => {
      const now = Date.now()
      const prev = this.seen.get(p)
      this.seen.set(p, { at: now, gaps: prev != null ? [...prev.gaps, now - prev.at].slice(-20) : [], lost: false })
    }
    listeners.add(this.listener)
    this.timer = setInterval(() => {
      const now = Date.now()
      for (const p of watched) {
        const s = this.seen.get(p)
        if (s == null || s.lost) continue
        if (now - s.at > Math.max(3000, 2.5 * Math.max(0, ...s.gaps))) { s.lost = true; this.count++; this.lostAt.set(p, now) }
      }
    }, 100)
  }

  stop (): void { listeners.delete(this.listener); clearInterval(this.timer) }
}

async function peers (n: number): Promise<BenchPeer[]> {
  const out: BenchPeer[] = []
  // two at a time: starting a peer loads tfjs, and this machine has two cores
  for (let i = 0; i < n; i += 2) out.push(...await Promise.all(Array.from({ length: Math.min(2, n - i) }, async () => await startPeer(coordAddr, CLUSTER, secret.access))))
  return out
}

/** Resolves once every peer in `ids` has been heard at least `beats` times. */
async function heard (ids: string[], beats: number): Promise<void> {
  const n = new Map(ids.map(p => [p, 0]))
  await new Promise<void>(resolve => {
    const l: Listener = (p) => {
      if (n.has(p)) n.set(p, (n.get(p) ?? 0) + 1)
      if ([...n.values()].every(c => c >= beats)) { listeners.delete(l); resolve() }
    }
    listeners.add(l)
  })
}

/** SIGSTOP/SIGCONT `child` in random duty cycles until `until` (performance.now()). */
async function starve (child: ChildProcess, rand: () => number, until: number): Promise<void> {
  while (performance.now() < until) {
    await sleep(300 + rand() * 1700)
    child.kill('SIGSTOP')
    await sleep(200 + rand() * 2400)
    child.kill('SIGCONT')
  }
}

try {
  // ---------------------------------------------------------------- (a) false positives
  const starved = await peers(STARVED)
  const ids = starved.map(p => p.peerId)
  await heard(ids, 5)
  const adaptive = new Counted(ids, {})
  const fixed = new Counted(ids, { heartbeatTimeoutMs: 3000, maxHeartbeatTimeoutMs: 3000, pauseThresholdMs: 1e9 })
  const old = new OldRule(ids)
  const rand = mulberry32(SEED)
  const t0 = performance.now()
  const wallT0 = Date.now()
  await Promise.all(starved.map(async p => { await starve(p.child, rand, t0 + DURATION_S * 1000) }))
  const peerHours = STARVED * (performance.now() - t0) / 3_600_000
  const falseAdaptive = adaptive.lost.length
  const falseFixed = fixed.lost.length
  const falseOld = old.count
  // the price of that room: a starved peer that really stops is found later than a steady one
  const victim = starved[0]
  await heard([victim.peerId], 2)
  await sleep(rand() * 1000)
  const stoppedAt = Date.now()
  victim.child.kill('SIGSTOP')
  const found = async (c: Counted): Promise<number> => {
    const deadline = Date.now() + 60_000
    for (;;) {
      const l = c.lost.find(x => x.peerId === victim.peerId && x.detectedAt >= stoppedAt)
      if (l != null) return l.detectedAt - stoppedAt
      if (Date.now() > deadline) throw new Error('the stopped starved peer was not detected within 60 s')
      await sleep(20)
    }
  }
  const foundOld = async (): Promise<number> => {
    const deadline = Date.now() + 60_000
    while ((old.lostAt.get(victim.peerId) ?? 0) < stoppedAt) {
      if (Date.now() > deadline) throw new Error('the old rule did not find the stopped starved peer within 60 s')
      await sleep(20)
    }
    return (old.lostAt.get(victim.peerId) as number) - stoppedAt
  }
  const [starvedStopMs, starvedStopMsFixed, oldStopMs] = await Promise.all([found(adaptive), found(fixed), foundOld()])
  old.stop()
  const limit = adaptive.detector.timeoutFor(victim.peerId)
  adaptive.stop(); fixed.stop()
  for (const p of starved) p.child.kill('SIGKILL')
  /** The false declarations, each with when it came (s into the run) and why. */
  const falses = (c: Counted, n: number): string => c.lost.slice(0, n).map(l => `${((l.detectedAt - wallT0) / 1000).toFixed(0)} s: ${l.cause}`).join('; ') || 'none'
  console.log(`(a) ${STARVED} CPU-starved peers for ${((performance.now() - t0) / 1000).toFixed(0)} s (${peerHours.toFixed(3)} peer-hours)`)
  console.log(`    adaptive: ${falseAdaptive} false declarations (${falses(adaptive, falseAdaptive)}); pauses of this process noticed: ${adaptive.detector.pauseLog.length}`)
  console.log(`    fixed 3 s: ${falseFixed}`)
  console.log(`    old rule (3 s or 2.5x longest recent gap): ${falseOld}`)
  console.log(`    one of them then SIGSTOPped for good: found after ${starvedStopMs} ms (its limit had grown to ${limit.toFixed(0)} ms); fixed 3 s: ${starvedStopMsFixed} ms; old rule: ${oldStopMs} ms`)

  // ---------------------------------------------------------------- (b) detection times
  const steady = await peers(TRIALS + 1)
  await heard(steady.map(p => p.peerId), 8)
  const stopMs: number[] = []
  const stopMsFixed: number[] = []
  const stopped = steady[TRIALS]
  for (let i = 0; i < TRIALS; i++) {
    // a fresh detector per trial, warmed on ~8 s of the peer's heartbeats
    const d = new Counted([stopped.peerId], {})
    const f = new Counted([stopped.peerId], { heartbeatTimeoutMs: 3000, maxHeartbeatTimeoutMs: 3000, pauseThresholdMs: 1e9 })
    await heard([stopped.peerId], 8)
    await sleep(rand() * 1000) // at a random point between two heartbeats
    const at = Date.now()
    stopped.child.kill('SIGSTOP')
    const deadline = Date.now() + 60_000
    while ((d.lost.length === 0 || f.lost.length === 0) && Date.now() < deadline) await sleep(20)
    stopped.child.kill('SIGCONT')
    if (d.lost.length === 0) throw new Error('the SIGSTOPped peer was not detected within 60 s')
    stopMs.push(d.lost[0].detectedAt - at)
    stopMsFixed.push((f.lost[0]?.detectedAt ?? NaN) - at)
    d.stop(); f.stop()
  }
  const killMs: number[] = []
  for (let i = 0; i < TRIALS; i++) {
    const victim = steady[i]
    const d = new Counted([victim.peerId], {})
    await heard([victim.peerId], 3)
    const at = Date.now()
    victim.child.kill('SIGKILL')
    const deadline = Date.now() + 60_000
    while (d.lost.length === 0 && Date.now() < deadline) await sleep(5)
    if (d.lost.length === 0) throw new Error('the SIGKILLed peer was not detected within 60 s')
    killMs.push(d.lost[0].detectedAt - at)
    console.log(`    SIGKILL trial ${i}: ${killMs[i]} ms (${d.lost[0].cause})`)
    d.stop()
  }
  console.log(`(b) SIGSTOP: adaptive ${stopMs.join(', ')} ms (fixed 3 s: ${stopMsFixed.join(', ')} ms); SIGKILL: ${killMs.join(', ')} ms`)

  console.log(`bench: detector_false_positives_per_hour=${(falseAdaptive / peerHours).toFixed(1)}`)
  console.log(`bench: detector_false_positives_per_hour_fixed_timeout=${(falseFixed / peerHours).toFixed(1)}`)
  console.log(`bench: detector_false_positives_per_hour_old_rule=${(falseOld / peerHours).toFixed(1)}`)
  console.log(`bench: detect_sigkill_ms=${median(killMs)}`)
  console.log(`bench: detect_sigstop_ms=${median(stopMs)}`)
  console.log(`bench: detect_sigstop_starved_ms=${starvedStopMs}`)
} finally {
  killChildren()
  gossip.stop()
  await node.stop()
}

/**
 * ClusterModel turns what the observer hears on the cluster's gossip topics into a picture of the
 * cluster: who holds which stage, per-peer heartbeats, loss history, an event feed. It is plain
 * state fed with timestamps, so it can be tested without a network (the network side is
 * observer.ts).
 */
import type { Assignment, Heartbeat, Message, RecoveryPlan } from '../protocols/index.js'
import type { ClusterEvent, ClusterView, EventKind, PeerStatus, StatusSnapshot } from './cluster-status.js'
import { formatBytes, formatDuration, oneLine, shortId } from './render/format.js'

interface PeerRecord {
  hb: Heartbeat
  seenAt: number
  silent: boolean
  departingSeen: boolean
}

export interface ClusterModelInit {
  clusterId: string
  coordinator: string
  /** When the observer started listening (Unix ms). */
  startedAt: number
  /** Heartbeat age after which a peer is reported silent. @default 3000 */
  silentMs?: number
  /** Peers first heard within this long of the start are not reported as joins. @default 3000 */
  settleMs?: number
  /** Events kept. @default 200 */
  maxEvents?: number
  /** Loss values kept per stage. @default 120 */
  maxLosses?: number
}

/** Peers not in the assignment are dropped from the view after this long without a heartbeat. */
const SPARE_STALE_MS = 10_000

export class ClusterModel {
  readonly init: ClusterModelInit
  readonly peers = new Map<string, PeerRecord>()
  readonly events: ClusterEvent[] = []
  assignment?: Assignment
  private lastCommit?: number
  /** The newest checkpoint the newest commit announced. */
  private checkpoint?: number
  private maxEpoch = 0
  private readonly losses = new Map<number, Array<{ iteration: number, loss: number }>>()
  private readonly commits: Array<{ iteration: number, at: number }> = []
  private tokensPerIteration?: number
  /** Messages already turned into events (the coordinator re-publishes while it waits). */
  private readonly seen = new Set<string>()

  constructor (init: ClusterModelInit) {
    this.init = init
  }

  get silentMs (): number { return this.init.silentMs ?? 3000 }

  /** Feeds one accepted gossip message heard at `now`. Returns true when the view changed. */
  onMessage (msg: Message, now: number): boolean {
    if ('epoch' in msg) this.maxEpoch = Math.max(this.maxEpoch, msg.epoch)
    switch (msg.kind) {
      case 'heartbeat': this.onHeartbeat(msg, now); return true
      case 'assignment': return this.onAssignment(msg, now)
      case 'commit':
        if (msg.iteration >= (this.lastCommit ?? -1)) this.checkpoint = msg.checkpoint ?? this.checkpoint
        this.lastCommit = Math.max(this.lastCommit ?? -1, msg.iteration)
        if (this.commits.at(-1)?.iteration !== msg.iteration) this.commits.push({ iteration: msg.iteration, at: now })
        if (this.commits.length > 10) this.commits.shift()
        return true
      case 'done':
        if (msg.loss != null) this.recordLoss(msg.stage, msg.iteration, msg.loss)
        return msg.loss != null
      case 'abort':
        return this.once(`abort:${msg.epoch}:${msg.iteration}`, now, 'abort', `iteration ${msg.iteration} aborted: ${oneLine(msg.reason)}`)
      case 'recovery-plan':
        return this.once(`plan:${msg.epoch}:${msg.stage}`, now, 'recovery', planText(msg), msg.stage)
      case 'recovery-done':
        return this.once(`done:${msg.epoch}:${msg.stage}`, now, 'recovery-done',
          `stage ${msg.stage} rebuilt by ${msg.rung} on ${shortId(msg.peerId)}: ${formatBytes(msg.bytes)} in ${formatDuration(msg.transferMs + msg.rebuildMs)} (transfer ${formatDuration(msg.transferMs)})`, msg.stage)
      case 'stream-break': {
        const suspectStage = this.stageOf(msg.suspect)
        return this.once(`break:${msg.epoch}:${msg.iteration}:${msg.reporter}:${msg.suspect}`, now, 'stream-break',
          `stage ${msg.stage} (${shortId(msg.reporter)}) lost its stream to ${shortId(msg.suspect)}${suspectStage != null ? ` (stage ${suspectStage})` : ''}: ${oneLine(msg.reason)}`, suspectStage)
      }
      case 'recovery-failed':
        return this.once(`failed:${msg.epoch}:${msg.stage}`, now, 'recovery-failed',
          `stage ${msg.stage}: rebuild by ${msg.rung} on ${shortId(msg.peerId)} failed (${msg.code}): ${oneLine(msg.reason)}`, msg.stage)
      case 'begin': return false
    }
  }

  /** Reports peers whose heartbeats stopped; call about twice a second. Returns true on a new event. */
  tick (now: number): boolean {
    let changed = false
    for (const [id, p] of this.peers) {
      const age = now - p.seenAt
      if (!p.silent && age > this.silentMs) {
        p.silent = true
        const st = this.stageOf(id)
        this.push(now, 'silent', `${shortId(id)}${st != null ? ` (stage ${st})` : ''} silent for ${formatDuration(age)}`, st)
        changed = true
      }
      // forget peers long gone that hold nothing
      if (age > 6 * SPARE_STALE_MS && this.stageOf(id) == null) this.peers.delete(id)
    }
    return changed
  }

  private onHeartbeat (hb: Heartbeat, now: number): void {
    const prev = this.peers.get(hb.peerId)
    // Gossip can deliver an older cached heartbeat after a newer one: never go back in time.
    if (prev != null && hb.timestampMs < prev.hb.timestampMs) return
    const rec: PeerRecord = { hb, seenAt: now, silent: false, departingSeen: prev?.departingSeen ?? false }
    this.peers.set(hb.peerId, rec)
    const where = hb.stage >= 0 ? `stage ${hb.stage}` : hb.role
    if (prev == null && now - this.init.startedAt > (this.init.settleMs ?? 3000)) {
      this.push(now, 'join', `${shortId(hb.peerId)} joined as ${where}`, hb.stage >= 0 ? hb.stage : undefined)
    }
    if (prev?.silent === true) this.push(now, 'back', `${shortId(hb.peerId)} (${where}) heartbeating again after ${formatDuration(now - prev.seenAt)}`, hb.stage >= 0 ? hb.stage : undefined)
    if (hb.departing && !rec.departingSeen) {
      rec.departingSeen = true
      this.push(now, 'departing', `${shortId(hb.peerId)} (${where}) announced its departure`, hb.stage >= 0 ? hb.stage : undefined)
    }
    if (hb.loss != null && hb.stage >= 0 && hb.role === 'stage') this.recordLoss(hb.stage, hb.iteration, hb.loss)
  }

  private onAssignment (a: Assignment, now: number): boolean {
    if (this.assignment != null && a.epoch <= this.assignment.epoch) return false
    const before = this.currentStages()
    this.assignment = a
    this.tokensPerIteration = tokensPerIteration(a)
    // a rollback to a checkpoint rewinds the clock: forget what lies ahead of it
    if (this.lastCommit != null && this.lastCommit >= a.iteration) this.lastCommit = a.iteration > 0 ? a.iteration - 1 : undefined
    for (const h of this.losses.values()) while (h.length > 0 && (h.at(-1)?.iteration ?? -1) >= a.iteration) h.pop()
    while (this.commits.length > 0 && (this.commits.at(-1)?.iteration ?? -1) >= a.iteration) this.commits.pop()
    const changes: string[] = []
    for (const s of a.stages) {
      const old = before.find(b => b.stage === s.stage)?.peers ?? []
      if (old.join() === s.peers.join()) continue
      const to = s.peers.map(shortId).join(',') || '(none)'
      changes.push(old.length === 0 ? `stage ${s.stage} -> ${to}` : `stage ${s.stage} ${old.map(shortId).join(',')} -> ${to}`)
    }
    const rebuilt = a.rebuilt.length > 0 ? ` (rebuilt: ${a.rebuilt.map(s => `stage ${s}`).join(', ')})` : ''
    const text = changes.length === 0 ? `epoch ${a.epoch}: same assignment, iteration ${a.iteration}` : `epoch ${a.epoch}: ${changes.join('; ')}${rebuilt}`
    this.push(now, 'assignment', text, a.rebuilt.length === 1 ? a.rebuilt[0] : undefined)
    return true
  }

  private recordLoss (stage: number, iteration: number, loss: number): void {
    if (!Number.isFinite(loss)) return
    const h = this.losses.get(stage) ?? []
    const last = h.at(-1)
    if (last != null && last.iteration === iteration) last.loss = loss
    else if (last == null || iteration > last.iteration) h.push({ iteration, loss })
    else return // an older iteration arriving late
    if (h.length > (this.init.maxLosses ?? 120)) h.shift()
    this.losses.set(stage, h)
  }

  private once (key: string, now: number, kind: EventKind, text: string, stage?: number): boolean {
    if (this.seen.has(key)) return false
    this.seen.add(key)
    this.push(now, kind, text, stage)
    return true
  }

  private push (at: number, kind: EventKind, text: string, stage?: number): void {
    this.events.push(stage != null ? { at, kind, text, stage } : { at, kind, text })
    if (this.events.length > (this.init.maxEvents ?? 200)) this.events.shift()
  }

  /** Highest epoch heard in any heartbeat or control message. */
  get epoch (): number { return this.maxEpoch }

  /**
   * Stage -> peers under the current epoch: the last assignment heard, or, when the observer missed
   * it (it joined later, or a message was lost), what the peers' heartbeats claim.
   */
  currentStages (): Array<{ stage: number, peers: string[] }> {
    const a = this.assignment
    let hbEpoch = 0
    for (const p of this.peers.values()) hbEpoch = Math.max(hbEpoch, p.hb.epoch)
    if (a != null && a.epoch >= hbEpoch) return a.stages.map(s => ({ stage: s.stage, peers: [...s.peers] }))
    const claims = new Map<number, { epoch: number, peers: string[] }>()
    for (const [id, p] of this.peers) {
      if (p.hb.role !== 'stage' || p.hb.stage < 0) continue
      const c = claims.get(p.hb.stage)
      if (c == null || p.hb.epoch > c.epoch) claims.set(p.hb.stage, { epoch: p.hb.epoch, peers: [id] })
      else if (p.hb.epoch === c.epoch) c.peers.push(id)
    }
    const n = Math.max(a?.stages.length ?? 0, ...[...claims.keys()].map(s => s + 1))
    return Array.from({ length: n }, (_, stage) => ({ stage, peers: (claims.get(stage)?.peers ?? []).sort() }))
  }

  private stageOf (peerId: string): number | undefined {
    return this.currentStages().find(s => s.peers.includes(peerId))?.stage
  }

  private peerStatus (peerId: string, now: number): PeerStatus {
    const p = this.peers.get(peerId)
    if (p == null) return { peerId, role: 'unknown', iteration: null, loss: null, gradNorm: null, tokensPerSec: null, heartbeatAgeMs: null, departing: false }
    return {
      peerId,
      role: p.hb.role,
      iteration: p.hb.iteration,
      loss: p.hb.loss ?? null,
      gradNorm: p.hb.gradNorm,
      tokensPerSec: p.hb.tokensPerSec,
      heartbeatAgeMs: Math.max(0, now - p.seenAt),
      departing: p.hb.departing
    }
  }

  snapshot (now: number): StatusSnapshot {
    const stages = this.currentStages()
    const assigned = new Set(stages.flatMap(s => s.peers))
    const spares = [...this.peers.entries()]
      // a peer still claiming a stage it no longer holds is a lost former holder, not a spare
      .filter(([id, p]) => !assigned.has(id) && p.hb.role !== 'stage' && now - p.seenAt <= SPARE_STALE_MS)
      .map(([id]) => id).sort()
    const holders = stages.flatMap(s => s.peers).map(id => this.peers.get(id)?.hb.iteration).filter((x): x is number => x != null)
    return {
      clusterId: this.init.clusterId,
      coordinator: this.init.coordinator,
      epoch: this.epoch,
      iteration: Math.max(0, this.lastCommit ?? (holders.length > 0 ? Math.max(...holders) : 0)),
      checkpoint: this.checkpoint ?? null,
      stages: stages.map(s => ({ stage: s.stage, peers: s.peers.map(id => this.peerStatus(id, now)) })),
      spares: spares.map(id => this.peerStatus(id, now)),
      events: this.events.map(e => ({ ...e }))
    }
  }

  view (now: number, extra: { coordinatorId: string, connected: boolean }): ClusterView {
    const status = this.snapshot(now)
    const lossHistory = new Map([...this.losses].map(([s, h]) => [s, h.map(x => x.loss)]))
    const lastStage = Math.max(-1, ...lossHistory.keys())
    const loss = lossHistory.get(lastStage)?.at(-1) ?? null
    return {
      status,
      now,
      ...extra,
      heard: this.peers.size > 0,
      loss,
      tokensPerSec: this.throughput(status),
      lossHistory,
      silentMs: this.silentMs
    }
  }

  /** Tokens/s from the commits heard; before two commits, the slowest stage's own figure. */
  private throughput (s: StatusSnapshot): number | null {
    const c = this.commits
    if (this.tokensPerIteration != null && c.length >= 2) {
      const span = c[c.length - 1].at - c[0].at
      const its = c[c.length - 1].iteration - c[0].iteration
      if (span > 0 && its > 0) return this.tokensPerIteration * its / (span / 1000)
    }
    const rates = s.stages.flatMap(st => st.peers).map(p => p.tokensPerSec).filter((x): x is number => x != null && x > 0)
    return rates.length > 0 ? Math.min(...rates) : null
  }
}

function planText (p: RecoveryPlan): string {
  if (p.rung === 'wait') return `stage ${p.stage} lost: no spare, waiting for a peer to join`
  const donors = p.donors.length === 0 ? '' : ` from ${p.donors.map(d => d.stage >= 0 ? `stage ${d.stage} (${shortId(d.peerId)})` : shortId(d.peerId)).join(' and ')}`
  const ck = p.checkpointId !== '' ? ` checkpoint ${p.checkpointId}` : ''
  const lr = p.lrScale !== 1 ? `, lr x${p.lrScale}` : ''
  return `stage ${p.stage} lost: recovery by ${p.rung}${ck} -> ${shortId(p.targetPeer)}${donors}${lr}`
}

/** Tokens one iteration processes, from the configs the assignment carries (undefined if unreadable). */
function tokensPerIteration (a: Assignment): number | undefined {
  try {
    const m = JSON.parse(a.modelConfig) as { seqLen?: unknown }
    const t = JSON.parse(a.trainingConfig) as { microbatches?: unknown, microbatchSize?: unknown }
    const n = Number(m.seqLen) * Number(t.microbatches) * Number(t.microbatchSize)
    return Number.isFinite(n) && n > 0 ? n : undefined
  } catch {
    return undefined
  }
}

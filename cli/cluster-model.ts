/**
 * ClusterModel turns what the observer hears on the cluster's gossip topics into a picture of the
 * cluster: who holds which stage, per-peer heartbeats, loss history, an event feed. It is plain
 * state fed with timestamps, so it can be tested without a network (the network side is
 * observer.ts).
 */
import { servingPeers, type Assignment, type DoneReport, type Heartbeat, type Message, type RecoveryPlan } from '../protocols/index.js'
import type { ClusterEvent, ClusterView, EventKind, PeerStatus, StageStatus, StatusSnapshot } from './cluster-status.js'
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

/** Who holds a stage under the current epoch: every holder, and those of them still joining it. */
export interface StageHolders {
  stage: number
  peers: string[]
  joining: string[]
}

export class ClusterModel {
  readonly init: ClusterModelInit
  readonly peers = new Map<string, PeerRecord>()
  readonly events: ClusterEvent[] = []
  assignment?: Assignment
  /** The assignment before `assignment` (where a moved replica came from). */
  private previous?: Assignment
  private lastCommit?: number
  /** The newest checkpoint the newest commit announced. */
  private checkpoint?: number
  private maxEpoch = 0
  private readonly losses = new Map<number, Array<{ iteration: number, loss: number }>>()
  private readonly commits: Array<{ iteration: number, at: number }> = []
  private tokensPerIteration?: number
  /** The replica target the assignment's training config names, when it names one. */
  private replicaTarget?: number
  /** A stage was heard with two or more peers. */
  private sawReplicas = false
  /** Per stage, the all-reduce time of the newest iteration a done report was heard for (max over its peers). */
  private readonly allReduce = new Map<number, { iteration: number, epoch: number, ms: number | null }>()
  /** Replica joins heard in recovery plans: target peer -> stage. */
  private readonly joinPlans = new Map<string, number>()
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
      case 'done': {
        if (msg.loss != null) this.recordLoss(msg.stage, msg.iteration, msg.loss)
        const ar = this.recordAllReduce(msg)
        return msg.loss != null || ar
      }
      case 'abort':
        return this.once(`abort:${msg.epoch}:${msg.iteration}`, now, 'abort', `iteration ${msg.iteration} aborted: ${oneLine(msg.reason)}`)
      case 'recovery-plan': {
        const join = this.isJoin(msg)
        if (join) this.joinPlans.set(msg.targetPeer, msg.stage)
        const from = join ? this.movedFrom(msg) : undefined
        return this.once(`plan:${msg.epoch}:${msg.stage}:${msg.targetPeer}`, now, 'recovery', planText(msg, join, from), msg.stage)
      }
      case 'recovery-done': {
        const took = `${formatBytes(msg.bytes)} in ${formatDuration(msg.transferMs + msg.rebuildMs)} (transfer ${formatDuration(msg.transferMs)})`
        const join = msg.rung === 'replica' && (this.joinPlans.get(msg.peerId) === msg.stage || (this.assignment != null && joiningOf(this.assignment, msg.stage).includes(msg.peerId)))
        return this.once(`done:${msg.epoch}:${msg.stage}:${msg.peerId}`, now, 'recovery-done', join
          ? `${shortId(msg.peerId)} copied stage ${msg.stage} as a joining replica: ${took}`
          : `stage ${msg.stage} rebuilt by ${msg.rung} on ${shortId(msg.peerId)}: ${took}`, msg.stage)
      }
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
        this.push(now, 'silent', `${shortId(id)}${st != null ? ` (stage ${st})` : ''} silent for ${formatDuration(age)}${st != null ? this.riskNote(st, id, now) : ''}`, st)
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
    const prev = this.assignment
    this.previous = prev
    this.assignment = a
    this.tokensPerIteration = tokensPerIteration(a)
    this.replicaTarget = replicaTarget(a)
    if (a.stages.some(s => s.peers.length >= 2)) this.sawReplicas = true
    // a rollback to a checkpoint rewinds the clock: forget what lies ahead of it
    if (this.lastCommit != null && this.lastCommit >= a.iteration) this.lastCommit = a.iteration > 0 ? a.iteration - 1 : undefined
    for (const h of this.losses.values()) while (h.length > 0 && (h.at(-1)?.iteration ?? -1) >= a.iteration) h.pop()
    while (this.commits.length > 0 && (this.commits.at(-1)?.iteration ?? -1) >= a.iteration) this.commits.pop()
    for (const [s, r] of this.allReduce) if (r.iteration >= a.iteration) this.allReduce.delete(s)
    const changes: string[] = []
    for (const s of a.stages) {
      const old = before.find(b => b.stage === s.stage)?.peers ?? []
      if (old.join() === s.peers.join()) continue
      // a stage that only gains joining peers is told by the joining note below
      const joiners = joiningOf(a, s.stage)
      if (old.length > 0 && old.concat(joiners.filter(p => !old.includes(p))).join() === s.peers.join()) continue
      const to = s.peers.map(shortId).join(',') || '(none)'
      changes.push(old.length === 0 ? `stage ${s.stage} -> ${to}` : `stage ${s.stage} ${old.map(shortId).join(',')} -> ${to}`)
    }
    const rebuilt = a.rebuilt.length > 0 ? ` (rebuilt: ${a.rebuilt.map(s => `stage ${s}`).join(', ')})` : ''
    const joining = a.stages.flatMap(s => joiningOf(a, s.stage).map(p => `stage ${s.stage} <- ${shortId(p)}`))
    // joins listed before and serving now (they caught up)
    const serving = prev == null
      ? []
      : a.stages.flatMap(s => joiningOf(prev, s.stage).filter(p => servingPeers(a, s.stage).includes(p)).map(p => `stage ${s.stage} ${shortId(p)}`))
    const notes = (joining.length > 0 ? ` (joining: ${joining.join(', ')})` : '') + (serving.length > 0 ? ` (now serving: ${serving.join(', ')})` : '')
    for (const s of a.stages) for (const p of servingPeers(a, s.stage)) this.joinPlans.delete(p)
    const text = changes.length > 0
      ? `epoch ${a.epoch}: ${changes.join('; ')}${rebuilt}${notes}`
      : notes !== '' ? `epoch ${a.epoch}, iteration ${a.iteration}${notes}` : `epoch ${a.epoch}: same assignment, iteration ${a.iteration}`
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

  /** Keeps the newest iteration's all-reduce time per stage (the slowest replica's). Returns true when it changed. */
  private recordAllReduce (d: DoneReport): boolean {
    const ms = d.allReduceMs != null && Number.isFinite(d.allReduceMs) && d.allReduceMs >= 0 ? d.allReduceMs : null
    const cur = this.allReduce.get(d.stage)
    if (cur == null || d.iteration > cur.iteration || (d.iteration === cur.iteration && d.epoch > cur.epoch)) {
      this.allReduce.set(d.stage, { iteration: d.iteration, epoch: d.epoch, ms })
      return ms != null || cur?.ms != null
    }
    if (d.iteration !== cur.iteration || d.epoch !== cur.epoch || ms == null) return false
    if (cur.ms != null && cur.ms >= ms) return false
    cur.ms = ms
    return true
  }

  /**
   * Whether a 'replica' plan is a peer joining a stage that keeps its other replicas (rather than a
   * lost stage rebuilt from a shadow copy): its target is listed as joining in the assignment of
   * the plan's epoch or, before that assignment is heard (the coordinator publishes the plans
   * first), every donor holds the stage itself under the assignment heard.
   */
  private isJoin (p: RecoveryPlan): boolean {
    if (p.rung !== 'replica') return false
    const a = this.assignment
    if (a != null && a.epoch === p.epoch) return a.joining?.includes(p.targetPeer) === true
    const holders = this.currentStages().find(s => s.stage === p.stage)?.peers ?? []
    return p.donors.length > 0 && p.donors.every(d => holders.includes(d.peerId))
  }

  /**
   * A joining replica that held another stage before the plan's epoch (a rebalance: it leaves a
   * well-served stage for one down to its last replica): that stage.
   */
  private movedFrom (p: RecoveryPlan): number | undefined {
    const before = [this.assignment, this.previous].find(a => a != null && a.epoch < p.epoch)
    return before?.stages.find(st => st.stage !== p.stage && st.peers.includes(p.targetPeer))?.stage
  }

  /** Serving peers of `stage` with a fresh heartbeat that did not announce a departure. */
  private liveServing (h: StageHolders, now: number): string[] {
    return h.peers.filter(id => {
      if (h.joining.includes(id)) return false
      const p = this.peers.get(id)
      return p != null && now - p.seenAt <= this.silentMs && !p.hb.departing
    })
  }

  /** For a silent serving replica of a stage that had others: how many live ones are left. */
  private riskNote (stage: number, peerId: string, now: number): string {
    const h = this.currentStages().find(s => s.stage === stage)
    if (h == null || h.joining.includes(peerId)) return ''
    const serving = h.peers.filter(p => !h.joining.includes(p))
    if (serving.length < 2) return ''
    const n = this.liveServing(h, now).length
    return n === 0 ? `: stage ${stage} has no live replica left` : `: stage ${stage} is down to ${n} live replica${n === 1 ? '' : 's'}`
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
  currentStages (): StageHolders[] {
    const a = this.assignment
    let hbEpoch = 0
    for (const p of this.peers.values()) hbEpoch = Math.max(hbEpoch, p.hb.epoch)
    if (a != null && a.epoch >= hbEpoch) return a.stages.map(s => ({ stage: s.stage, peers: [...s.peers], joining: joiningOf(a, s.stage) }))
    const claims = new Map<number, { epoch: number, peers: string[] }>()
    for (const [id, p] of this.peers) {
      if (p.hb.role !== 'stage' || p.hb.stage < 0) continue
      const c = claims.get(p.hb.stage)
      if (c == null || p.hb.epoch > c.epoch) claims.set(p.hb.stage, { epoch: p.hb.epoch, peers: [id] })
      else if (p.hb.epoch === c.epoch) c.peers.push(id)
    }
    const n = Math.max(a?.stages.length ?? 0, ...[...claims.keys()].map(s => s + 1))
    return Array.from({ length: n }, (_, stage) => {
      const peers = (claims.get(stage)?.peers ?? []).sort()
      // a joining peer heartbeats its stage with no state of it (-1) while the others hold theirs
      const state = (id: string): number => this.peers.get(id)?.hb.stateIteration ?? -1
      const joining = peers.some(id => state(id) >= 0) ? peers.filter(id => state(id) < 0) : []
      return { stage, peers, joining }
    })
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
    const stageStatus = stages.map((s): StageStatus => ({
      stage: s.stage,
      peers: s.peers.map(id => this.peerStatus(id, now)),
      replicas: s.peers.length - s.joining.length,
      joining: [...s.joining],
      atRisk: this.liveServing(s, now).length <= 1,
      allReduceMs: this.allReduce.get(s.stage)?.ms ?? null
    }))
    return {
      clusterId: this.init.clusterId,
      coordinator: this.init.coordinator,
      epoch: this.epoch,
      iteration: Math.max(0, this.lastCommit ?? (holders.length > 0 ? Math.max(...holders) : 0)),
      checkpoint: this.checkpoint ?? null,
      stages: stageStatus,
      stagesAtRisk: stageStatus.filter(s => s.atRisk).map(s => s.stage),
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
      silentMs: this.silentMs,
      replicated: this.replicated(status)
    }
  }

  /** Whether the cluster runs with replicas: a target above one, or a stage heard with two or more peers. */
  private replicated (s: StatusSnapshot): boolean {
    if (s.stages.some(st => st.peers.length >= 2)) this.sawReplicas = true
    return this.sawReplicas || (this.replicaTarget ?? 1) > 1
  }

  /** Tokens/s from the commits heard; before two commits, the slowest stage's own figure (its replicas' sum). */
  private throughput (s: StatusSnapshot): number | null {
    const c = this.commits
    if (this.tokensPerIteration != null && c.length >= 2) {
      const span = c[c.length - 1].at - c[0].at
      const its = c[c.length - 1].iteration - c[0].iteration
      if (span > 0 && its > 0) return this.tokensPerIteration * its / (span / 1000)
    }
    const rates = s.stages.map(st => st.peers.reduce((sum, p) => sum + (p.tokensPerSec != null && p.tokensPerSec > 0 ? p.tokensPerSec : 0), 0)).filter(x => x > 0)
    return rates.length > 0 ? Math.min(...rates) : null
  }
}

function planText (p: RecoveryPlan, join: boolean, from?: number): string {
  if (join) {
    const what = from != null ? `moves from stage ${from} to stage ${p.stage}` : `joins stage ${p.stage}`
    return `${shortId(p.targetPeer)} ${what} as a replica, copying from ${p.donors.length === 0 ? '(no donor)' : p.donors.map(d => shortId(d.peerId)).join(' and ')}`
  }
  if (p.rung === 'wait') return `stage ${p.stage} lost: no spare, waiting for a peer to join`
  const donors = p.donors.length === 0 ? '' : ` from ${p.donors.map(d => d.stage >= 0 ? `stage ${d.stage} (${shortId(d.peerId)})` : shortId(d.peerId)).join(' and ')}`
  const ck = p.checkpointId !== '' ? ` checkpoint ${p.checkpointId}` : ''
  const lr = p.lrScale !== 1 ? `, lr x${p.lrScale}` : ''
  return `stage ${p.stage} lost: recovery by ${p.rung}${ck} -> ${shortId(p.targetPeer)}${donors}${lr}`
}

/** The peers of stage `stage` listed as joining under `a`, in the stage's order. */
function joiningOf (a: Assignment, stage: number): string[] {
  const joining = a.joining ?? []
  return (a.stages[stage]?.peers ?? []).filter(p => joining.includes(p))
}

/** The replica target in the assignment's training config (`replicas`), when it carries one. */
function replicaTarget (a: Assignment): number | undefined {
  try {
    const r = Number((JSON.parse(a.trainingConfig) as { replicas?: unknown }).replicas)
    return Number.isInteger(r) && r >= 1 ? r : undefined
  } catch {
    return undefined
  }
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

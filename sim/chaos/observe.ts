/**
 * Watching the cluster from outside, as the chaos runner does: the coordinator's events file read
 * as it grows (EventTail), its persisted state file polled for the assignment (StateWatcher), and
 * the log lines that today's processes print instead of events (parseInstallLine, DETECTION_LINE).
 */
import { EventEmitter } from 'node:events'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import type { AssignmentSnapshot, CoordinatorEvent, RecoveryRecordView, StageInstall } from './history.js'

/** Reads a JSON-lines file as it grows; emits 'event' for every complete line. */
export class EventTail extends EventEmitter {
  readonly path: string
  readonly events: CoordinatorEvent[] = []
  private offset = 0
  private rest = ''
  private timer?: NodeJS.Timeout
  private busy = false
  /** Lines that were not JSON objects with a type (a torn write would show here). */
  readonly bad: string[] = []

  constructor (path: string) {
    super()
    this.path = path
  }

  start (periodMs = 50): void {
    this.timer = setInterval(() => { void this.poll() }, periodMs)
  }

  async stop (): Promise<void> {
    if (this.timer != null) clearInterval(this.timer)
    await this.poll()
  }

  async poll (): Promise<void> {
    if (this.busy) return
    this.busy = true
    try {
      const fh = await fs.open(this.path, 'r').catch(() => undefined)
      if (fh == null) return
      try {
        for (;;) {
          const buf = Buffer.alloc(256 * 1024)
          const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset)
          if (bytesRead === 0) break
          this.offset += bytesRead
          const text = this.rest + buf.subarray(0, bytesRead).toString('utf8')
          const lines = text.split('\n')
          this.rest = lines.pop() ?? ''
          for (const l of lines) this.accept(l)
        }
      } finally { await fh.close() }
    } finally { this.busy = false }
  }

  private accept (line: string): void {
    if (line.trim() === '') return
    try {
      const e = JSON.parse(line) as CoordinatorEvent
      if (typeof e.type !== 'string' || typeof e.at !== 'number') throw new Error('no type/at')
      this.events.push(e)
      this.emit('event', e)
    } catch {
      this.bad.push(line.slice(0, 200))
    }
  }

  /** Whether an event of this type was ever seen (then the product emits it, and the runner waits for it). */
  seen (type: string): boolean { return this.events.some(e => e.type === type) }

  /** Resolves with the next event (from now on) matching `match`, or undefined after `timeoutMs`. */
  async next (match: (e: CoordinatorEvent) => boolean, timeoutMs: number): Promise<CoordinatorEvent | undefined> {
    return await new Promise(resolve => {
      const onEvent = (e: CoordinatorEvent): void => { if (match(e)) { cleanup(); resolve(e) } }
      const t = setTimeout(() => { cleanup(); resolve(undefined) }, timeoutMs)
      const cleanup = (): void => { clearTimeout(t); this.off('event', onEvent) }
      this.on('event', onEvent)
    })
  }
}

/** The part of the coordinator's state file the runner reads. */
export interface PersistedView {
  epoch: number
  committedIteration: number
  holders: string[]
  /** Stage -> every peer named for it (serving replicas first, in assignment order, and joining ones). */
  replicas: string[][]
  /** Peers still joining a stage as new replicas (they serve nothing yet). */
  joining: string[]
  recoveries: RecoveryRecordView[]
}

/** The serving replicas of `stage` in `v` (protocols/assignment.ts servingPeers, on the persisted view). */
export function servingOf (v: Pick<PersistedView, 'replicas' | 'joining'> | undefined, stage: number): string[] {
  return (v?.replicas[stage] ?? []).filter(p => p !== '' && !(v?.joining ?? []).includes(p))
}

/** Every peer the view names for any stage (serving or joining): the others are spares. */
export function assignedPeers (v: Pick<PersistedView, 'replicas'> | undefined): Set<string> {
  return new Set((v?.replicas ?? []).flat().filter(p => p !== ''))
}

/** Reads `coordinator.json` in a state dir; undefined while there is none (or it cannot be read). */
export async function readPersisted (stateDir: string): Promise<PersistedView | undefined> {
  try {
    const st = JSON.parse(await fs.readFile(join(stateDir, 'coordinator.json'), 'utf8')) as {
      epoch?: number
      committedIteration?: number
      assignment?: { stages?: Array<{ stage: number, peers?: string[] }>, joining?: string[] } | null
      recoveries?: RecoveryRecordView[]
    }
    const stages = st.assignment?.stages ?? []
    const joining = st.assignment?.joining ?? []
    const holders: string[] = []
    const replicas: string[][] = []
    for (const s of stages) {
      replicas[s.stage] = [...(s.peers ?? [])]
      // the holder is the first serving replica (with one replica per stage, its one peer)
      holders[s.stage] = s.peers?.find(p => !joining.includes(p)) ?? s.peers?.[0] ?? ''
    }
    for (let i = 0; i < holders.length; i++) { holders[i] ??= ''; replicas[i] ??= [] }
    return { epoch: st.epoch ?? 0, committedIteration: st.committedIteration ?? -1, holders, replicas, joining, recoveries: st.recoveries ?? [] }
  } catch {
    return undefined
  }
}

/** Polls the state file, keeping a snapshot whenever the epoch or a holder changes. */
export class StateWatcher {
  readonly stateDir: string
  readonly snapshots: AssignmentSnapshot[] = []
  latest?: PersistedView
  private timer?: NodeJS.Timeout

  constructor (stateDir: string) { this.stateDir = stateDir }

  start (periodMs = 250): void {
    this.timer = setInterval(() => { void this.read() }, periodMs)
  }

  stop (): void { if (this.timer != null) clearInterval(this.timer) }

  /** Reads the file now (fresh, for resolving a fault's target). */
  async read (): Promise<PersistedView | undefined> {
    const v = await readPersisted(this.stateDir)
    if (v == null) return this.latest
    this.latest = v
    const last = this.snapshots.at(-1)
    const replicated = v.replicas.some(ps => ps.length > 1) || v.joining.length > 0
    const shape = (x: { replicas?: string[][], joining?: string[] }): string => JSON.stringify([x.replicas ?? [], x.joining ?? []])
    if (last == null || last.epoch !== v.epoch || last.holders.join() !== v.holders.join() || (replicated && shape(last) !== shape(v))) {
      this.snapshots.push({ at: Date.now(), epoch: v.epoch, committedIteration: v.committedIteration, holders: v.holders, ...(replicated || last?.replicas != null ? { replicas: v.replicas, joining: v.joining } : {}) })
    }
    return v
  }
}

/**
 * A peer's log line about installing a stage (today's peers print these; later ones also emit a
 * `stage` event): `assigned stage N of S under epoch E` builds seed weights, `rebuilt stage N by
 * RUNG under epoch E` installs a rebuild.
 */
export function parseInstallLine (line: string, peerId: string, at: number): StageInstall | undefined {
  const seed = /assigned stage (\d+) of \d+ under epoch (\d+)/.exec(line)
  if (seed != null) return { at, peerId, stage: Number(seed[1]), epoch: Number(seed[2]), source: 'seed', via: 'log' }
  const rebuilt = /rebuilt stage (\d+) by (\S+?):? under epoch (\d+)/.exec(line)
  if (rebuilt != null) return { at, peerId, stage: Number(rebuilt[1]), epoch: Number(rebuilt[3]), source: 'rebuilt', rung: rebuilt[2], via: 'log' }
  return undefined
}

/**
 * A peer's log line when a planted drift landed (node/peer.ts afterCommit):
 * `FAULT INJECTION: stage S replica R: weights perturbed after iteration I`.
 */
export function parsePerturbLine (line: string, peerId: string, at: number): { at: number, peerId: string, stage: number, replica: number, iteration: number } | undefined {
  const m = /FAULT INJECTION: stage (\d+) replica (\d+): weights perturbed after iteration (\d+)/.exec(line)
  return m == null ? undefined : { at, peerId, stage: Number(m[1]), replica: Number(m[2]), iteration: Number(m[3]) }
}

/** The coordinator's log line when it decides a peer is lost or departing: a recovery starts now. */
export const DETECTION_LINE = /\bpeer \S+ lost: |announced its departure/

/** A `stage` event from a peer's events file, as an install. */
export function installFromEvent (e: CoordinatorEvent, peerId: string): StageInstall | undefined {
  if (e.type !== 'stage' || typeof e.stage !== 'number') return undefined
  const source = e.source === 'seed' || e.source === 'kept' || e.source === 'rebuilt' ? e.source : undefined
  if (source == null) return undefined
  return { at: e.at, peerId, stage: e.stage, epoch: typeof e.epoch === 'number' ? e.epoch : -1, source, ...(typeof e.rung === 'string' ? { rung: e.rung } : {}), via: 'event' }
}

/** Reads a whole events file (a peer's, after the run). */
export async function readEventsFile (path: string): Promise<CoordinatorEvent[]> {
  const text = await fs.readFile(path, 'utf8').catch(() => '')
  const out: CoordinatorEvent[] = []
  for (const l of text.split('\n')) {
    if (l.trim() === '') continue
    try { out.push(JSON.parse(l) as CoordinatorEvent) } catch { /* a line cut by SIGKILL mid-write: nothing to read */ }
  }
  return out
}

/**
 * What the observer reports: the snapshot `spotpipe status --json` prints (its schema is
 * docs/status-schema.json) and the view the `top` renderers draw.
 */

export type EventKind =
  | 'assignment' | 'recovery' | 'recovery-done' | 'recovery-failed' | 'abort' | 'stream-break' | 'departing' | 'silent' | 'back' | 'join'

export interface ClusterEvent {
  /** Unix time in ms when the observer heard it. */
  at: number
  kind: EventKind
  text: string
  stage?: number
}

export interface PeerStatus {
  peerId: string
  /** The role in the peer's last heartbeat; 'unknown' when none was heard yet. */
  role: string
  iteration: number | null
  loss: number | null
  gradNorm: number | null
  tokensPerSec: number | null
  /** Time since the observer heard the peer's last heartbeat; null when it never did. */
  heartbeatAgeMs: number | null
  departing: boolean
}

export interface StageStatus {
  stage: number
  peers: PeerStatus[]
}

/** What `spotpipe status --json` prints. */
export interface StatusSnapshot {
  clusterId: string
  coordinator: string
  epoch: number
  iteration: number
  /** Iteration of the newest complete checkpoint, as the last commit heard announced it; null when none was. */
  checkpoint: number | null
  stages: StageStatus[]
  spares: PeerStatus[]
  events: ClusterEvent[]
}

/** Everything the renderers need: the snapshot plus derived figures for the header and sparklines. */
export interface ClusterView {
  status: StatusSnapshot
  /** Unix time in ms the view was taken at. */
  now: number
  coordinatorId: string
  /** False while the observer has no connection to the coordinator. */
  connected: boolean
  /** Whether any heartbeat has been heard yet. */
  heard: boolean
  /** Latest loss (from the last stage). */
  loss: number | null
  /** Cluster throughput: tokens per committed iteration over the time between commits. */
  tokensPerSec: number | null
  /** Per stage, recent losses (oldest first). */
  lossHistory: Map<number, number[]>
  /** A heartbeat older than this is flagged. */
  silentMs: number
}

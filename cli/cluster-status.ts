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
  /** Every peer holding the stage: its serving replicas and the peers still joining it. */
  peers: PeerStatus[]
  /** Serving replicas: the peers that run the stage's microbatches (`peers` less `joining`). */
  replicas: number
  /** Peers joining the stage as new replicas, still catching up (they run no microbatch yet). */
  joining: string[]
  /**
   * At most one serving replica with a fresh heartbeat (heard within the silent threshold, not
   * departing) remains: one more loss is a whole-stage failure. True for every stage of a cluster
   * run with one replica per stage.
   */
  atRisk: boolean
  /**
   * The stage's gradient all-reduce time in ms in the newest iteration a done report was heard for
   * (the slowest of its replicas); null when none was heard with one (e.g. a single replica).
   */
  allReduceMs: number | null
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
  /** Indexes of the stages whose `atRisk` is true, ascending. */
  stagesAtRisk: number[]
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
  /**
   * Whether the cluster runs with replicas: the assignment's training config asks for more than one
   * per stage, or a stage was heard with two or more peers. Only then do the renderers flag the risk
   * (with one replica per stage every stage is one loss away from failure, always).
   */
  replicated: boolean
}

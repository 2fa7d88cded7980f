/**
 * Public TypeScript shapes of everything on the wire. The protobuf classes in messages.ts are an
 * encoding detail; callers only see these (string unions instead of numeric codes).
 */

// ---------------------------------------------------------------- gossip messages

export type Role = 'stage' | 'spare' | 'coordinator' | 'observer'

/**
 * How a lost stage comes back. `rejoin` is the lost peer itself, back with its state intact and
 * current (no plan is sent: it keeps its stage); `wait` means no peer can take the stage yet.
 */
export type RecoveryRung = 'handover' | 'replica' | 'checkfree' | 'checkfree-plus' | 'checkpoint' | 'wait' | 'rejoin' | 'survivors'

/** What a held copy is for: a CheckFree+ mirror, a redundant shadow, a sparse checkpoint's snapshot. */
export type HeldCopyKind = 'mirror' | 'shadow' | 'checkpoint'

/** A copy of a stage's state a peer holds for others, and the committed iteration it belongs to. */
export interface HeldCopy {
  kind: HeldCopyKind
  stage: number
  /** -1: the seeded initial weights. */
  iteration: number
}

/** Published by every peer about once a second on the heartbeat topic. */
export interface Heartbeat {
  kind: 'heartbeat'
  peerId: string
  role: Role
  /** The peer's stage, or -1 when it holds none (role is then not 'stage'). */
  stage: number
  /** Last iteration this peer finished. */
  iteration: number
  /** Loss of that iteration; only the last stage has one. */
  loss?: number
  gradNorm: number
  /** Digest of the stage's weights at stateIteration (empty when there are none). */
  weightDigest: string
  tokensPerSec: number
  rssBytes: number
  epoch: number
  timestampMs: number
  /** The peer announces it is leaving (spot interruption notice, SIGTERM). */
  departing: boolean
  /**
   * The committed iteration its stage's state belongs to (-1: the seeded initial weights, or no
   * stage). Not `iteration`, the last one it finished: a finished iteration may still be aborted.
   */
  stateIteration: number
  /** Every copy it holds for other stages (mirror, shadow) or for the coordinator (checkpoint snapshot). */
  held: HeldCopy[]
}

export interface StageAssignment {
  stage: number
  peers: string[]
  /** A dialable multiaddr for each peer (same order as `peers`), so neighbours can reach each other. */
  addrs: string[]
}

/**
 * The data a run trains on: the token store's fingerprint (model/corpus.ts; it covers the sources,
 * the JSONL field and the tokenizer) and the tokenizer's own. Stage 0 and the last stage sample the
 * same batches from it, so they must hold the same tokens.
 */
export interface DataIdentity {
  fingerprint: string
  tokenizer: string
}

/** Coordinator: who runs which stage under a new epoch, and how to build the stage. */
export interface Assignment {
  kind: 'assignment'
  clusterId: string
  runId: string
  epoch: number
  /** The next iteration to run under this epoch. */
  iteration: number
  /** One entry per stage, in order 0..S-1; a stage may have no peer (waiting for a spare). */
  stages: StageAssignment[]
  /**
   * JSON object strings, passed through to the model and trainer. The training config also carries
   * the cluster options (node/peer.ts) and the coordinator's data identity (`data`: DataIdentity).
   */
  modelConfig: string
  trainingConfig: string
  /** Stages rebuilt under this epoch: their holders wait for a recovery plan instead of initialising. */
  rebuilt: number[]
  /**
   * Peers that join a stage as a new replica under this epoch (a replica copy) while the stage's
   * other replicas keep their state: each waits for its recovery plan. Absent: none.
   */
  joining?: string[]
}

/** Coordinator: start an iteration. */
export interface Begin {
  kind: 'begin'
  epoch: number
  iteration: number
}

/** Coordinator: drop the iteration in flight; it is run again after recovery. */
export interface Abort {
  kind: 'abort'
  epoch: number
  iteration: number
  reason: string
}

/** Coordinator: every stage reported; the iteration is final. */
export interface Commit {
  kind: 'commit'
  epoch: number
  iteration: number
  /** The newest complete sparse checkpoint's iteration (at most `iteration`), when there is one. */
  checkpoint?: number
  /**
   * A stage reported a non-finite value: every stage drops its step (weights and optimizer stay as
   * they are) but counts the iteration as committed and goes on to the next one.
   */
  skipped?: boolean
  /**
   * Every stage keeps a host-memory snapshot of its state at this commit until the coordinator has
   * pulled it as a sparse checkpoint. The coordinator alone decides which commits are checkpoints.
   */
  snapshot?: boolean
}

/** Peer: its stage finished an iteration. */
export interface DoneReport {
  kind: 'done'
  peerId: string
  stage: number
  epoch: number
  iteration: number
  /** Only the last stage computes a loss. */
  loss?: number
  gradNorm: number
  computeMs: number
  /** The stage met a non-finite value this iteration; its step must not be applied (gradNorm is then 0). */
  nonFinite?: boolean
  /** With nonFinite: which value (a NonFiniteWhat; a newer peer may name another). */
  nonFiniteWhat?: string
  /** With replicas: wall-clock ms of the stage's gradient all-reduce this iteration (absent with one replica). */
  allReduceMs?: number
  /**
   * With replicas: the digest (model/state.ts stageDigest) of the state this iteration started
   * from, the last commit's; the coordinator compares a stage's replicas by it. Absent otherwise.
   */
  weightDigest?: string
}

/**
 * What a stage reports as non-finite: the head's loss, a gradient (of its parameters, or the one it
 * would send upstream) or an activation it would send downstream.
 */
export type NonFiniteWhat = 'loss' | 'gradient' | 'activation'

/** Peer: its stream to a neighbour broke; the suspect may be gone. */
export interface StreamBreakReport {
  kind: 'stream-break'
  reporter: string
  /** The reporter's stage. */
  stage: number
  suspect: string
  epoch: number
  iteration: number
  reason: string
}

export interface RecoveryDonor {
  peerId: string
  stage: number
  /** A dialable multiaddr of the donor; '' when the target reaches it anyway (the coordinator). */
  addr?: string
}

/** Coordinator: how a lost stage is rebuilt (DESIGN.md "Recovery ladder"). */
export interface RecoveryPlan {
  kind: 'recovery-plan'
  epoch: number
  /** The lost stage. */
  stage: number
  rung: RecoveryRung
  /** The peer that becomes the stage; empty only for 'wait'. */
  targetPeer: string
  /** Where the weights come from (the departing peer, a replica, the two neighbours, ...). */
  donors: RecoveryDonor[]
  lrScale: number
  /** Averaging weights, one per donor (CheckFree), or empty. */
  weights: number[]
  /** Checkpoint to load from; required for 'checkpoint', empty otherwise. */
  checkpointId: string
}

/** Peer: it rebuilt a stage per a recovery plan; sizes and timings for the recovery event. */
export interface RecoveryDone {
  kind: 'recovery-done'
  peerId: string
  epoch: number
  stage: number
  rung: RecoveryRung
  /** Bytes pulled over the weights protocol. */
  bytes: number
  transferMs: number
  rebuildMs: number
}

/** Peer: it could not carry out a recovery plan (a donor gone, a copy missing, no state to keep). */
export interface RecoveryFailed {
  kind: 'recovery-failed'
  peerId: string
  epoch: number
  stage: number
  rung: RecoveryRung
  /** The typed error's code (ERR_...). */
  code: string
  reason: string
}

export type Message =
  | Heartbeat
  | Assignment
  | Begin
  | Abort
  | Commit
  | DoneReport
  | StreamBreakReport
  | RecoveryPlan
  | RecoveryDone
  | RecoveryFailed

export type MessageKind = Message['kind']

// ---------------------------------------------------------------- tensors

export type DType = 'float32' | 'int32'

export type Direction = 'forward' | 'backward'

// ---------------------------------------------------------------- weights protocol

/** Puller -> donor: send me this stage's tensors, of this committed iteration or a later one. */
export interface WeightsRequest {
  kind: 'request'
  stage: number
  /** Oldest acceptable iteration the state belongs to; -1 accepts anything (the seeded weights too). */
  minIteration: number
  /** Subset of tensor names; empty means all of the stage's tensors. */
  names: string[]
  includeOptimizer: boolean
}

export interface TensorInfo {
  name: string
  dtype: DType
  shape: number[]
  /** prod(shape) * 4. */
  byteLength: number
  /** CRC-32 (zlib's polynomial) of the tensor's little-endian bytes; see WEIGHTS_CHECKSUM in constants.ts. */
  crc32: number
}

/** Donor -> puller: what follows. Chunks refer to tensors by index into `tensors`. */
export interface WeightsManifest {
  kind: 'manifest'
  stage: number
  /** The committed iteration the served state belongs to (-1: the seeded initial weights). */
  iteration: number
  tensors: TensorInfo[]
  /** Sum of byteLength. */
  totalBytes: number
}

/** Donor -> puller: bytes [offset, offset + data.length) of tensor `index`. */
export interface WeightsChunk {
  kind: 'chunk'
  index: number
  offset: number
  data: Uint8Array
}

/** Donor -> puller: all chunks sent. */
export interface WeightsEnd {
  kind: 'end'
  totalBytes: number
}

/** Either side: the transfer cannot go on. */
export interface WeightsErrorMessage {
  kind: 'error'
  /** Short upper-case token, e.g. ERR_ITERATION_UNAVAILABLE. */
  code: string
  message: string
}

export type WeightsMessage = WeightsRequest | WeightsManifest | WeightsChunk | WeightsEnd | WeightsErrorMessage

export type WeightsMessageKind = WeightsMessage['kind']

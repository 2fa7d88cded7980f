/**
 * Protocol ids, gossipsub topic names and every wire limit in one place. Each limit says where its
 * number comes from; decoders check them before (or while) parsing, encoders check them too so a bug
 * is caught at the sender instead of being dropped silently by a remote peer.
 */
import { MalformedMessageError, LimitExceededError } from './errors.js'

// ---- stream protocols (DESIGN.md "Wire": `/spotpipe/<name>/1.0.0`, length-prefixed frames) ----

/** Forward activations and backward gradients between neighbouring stages (tensor frames). */
export const ACTIVATIONS_PROTOCOL = '/spotpipe/activations/1.0.0'
/**
 * Fetch a stage's parameters (optionally optimizer state): request, manifest, chunks, end.
 * 2.0.0: the manifest's per-tensor checksum is a CRC-32 instead of a sha256 (see WEIGHTS_CHECKSUM).
 * 3.0.0: request and manifest name the committed iteration the state belongs to (minIteration,
 * iteration), not an optimizer step count; the stage-state meta tensor carries it too.
 */
export const WEIGHTS_PROTOCOL = '/spotpipe/weights/3.0.0'

/**
 * The weights manifest's per-tensor checksum: CRC-32 with zlib's polynomial (node:zlib crc32).
 * What it guards against is corruption between the donor's tensor memory and the puller's: a
 * snapshot mutated while it is sent, a bad chunk offset, a buggy copy, two donors that disagree.
 * Bytes on the wire are already authenticated by the transport (noise: ChaCha20-Poly1305 per
 * message), and a donor inside the cluster could send wrong weights with a matching digest of any
 * kind, so a cryptographic hash buys nothing here; CRC-32 misses a random corruption with
 * probability 2^-32. Measured on this machine for 256 MB: CRC-32 38 ms, sha256 128 ms, on both
 * ends of every transfer (bench:transfer).
 */
export const WEIGHTS_CHECKSUM = 'crc32'

// ---- identifiers ----

/**
 * Cluster, run and checkpoint ids: 1..64 characters of [A-Za-z0-9._-]. They are embedded in topic
 * names and file names, so the alphabet is kept to characters that are safe in both.
 */
export const MAX_ID_LENGTH = 64
export const ID_PATTERN = /^[A-Za-z0-9._-]+$/

/**
 * Peer ids in their string form. Ed25519 ids are 52 base58 characters, RSA ids 46, CIDv1 base32 forms
 * about 60: 128 leaves room without letting one field dominate a message. Alphabet: base58/32/36.
 */
export const MAX_PEER_ID_LENGTH = 128

/** A multiaddr in text form: /ip6/<39>/tcp/<5>/p2p/<~52> is ~110 characters; DNS names can be longer. */
export const MAX_ADDR_LENGTH = 512
export const PEER_ID_PATTERN = /^[A-Za-z0-9]+$/

/** Free-text reasons (abort, stream break, weights error): enough for a sentence and an error code. */
export const MAX_REASON_LENGTH = 512
/** A done report's nonFiniteWhat: one short word ('gradient'). */
export const MAX_NON_FINITE_WHAT_LENGTH = 32
/** Weight digests and error codes are short tokens (a sha256 hex is 64). */
export const MAX_DIGEST_LENGTH = 128
export const MAX_ERROR_CODE_LENGTH = 64

// ---- gossipsub messages (heartbeat and control topics) ----

/**
 * Hard cap on one encoded gossip message. Gossipsub frames each RPC with it-length-prefixed, whose
 * default maxDataLength is 4 MiB, and an RPC that is too big is dropped without an error to the
 * publisher; so stay far below. 1 MiB still fits the largest assignment (1024 stages x 8 peers x
 * ~57 bytes per peer id ~ 470 KiB, plus two 64 KiB config strings). Heartbeats are a few hundred bytes.
 */
export const MAX_GOSSIP_MESSAGE_BYTES = 1024 * 1024
/** Model and training config JSON carried in an assignment; real configs are a few hundred bytes. */
export const MAX_CONFIG_JSON_BYTES = 64 * 1024
/** Pipeline depth: far beyond any cluster we can run, and it keeps an assignment under the cap above. */
export const MAX_STAGES = 1024
/** Replicas of one stage (data parallel inside a stage); 8 keeps the assignment bounded (see above). */
export const MAX_PEERS_PER_STAGE = 8
/** Donors in one recovery plan: CheckFree uses 2, multi-donor pulls a few more. */
export const MAX_RECOVERY_DONORS = 8
/** Copies one peer holds for others: a checkpoint snapshot, a mirror and a shadow today. */
export const MAX_HELD_COPIES = 8
/** Upper bound on the learning-rate scale of a recovery plan (CheckFree's default is 1.1). */
export const MAX_LR_SCALE = 100

// ---- tensor frames (activations protocol) ----

/**
 * Largest tensor frame (header plus data). A microbatch's activations are batch x seq x dModel x 4
 * bytes (8 x 1024 x 4096 x 4 = 128 MiB for a large model); 512 MiB leaves room and still fits one
 * Node Buffer. Streams must pass this as it-length-prefixed's maxDataLength (default only 4 MiB).
 */
export const MAX_TENSOR_FRAME_BYTES = 512 * 1024 * 1024
/**
 * Activation streams one peer may have open to another at once (also libp2p's per-connection
 * inbound limit for the protocol). A sender keeps one long-lived stream per destination; the rest
 * cover re-dials while an old stream is still closing. Streams beyond it are refused at open.
 */
export const MAX_ACTIVATION_STREAMS_PER_PEER = 4
/**
 * Frames of one sender that a receiver buffers at once, over all its streams: a neighbour writes
 * one frame at a time on its one stream, and a re-dial may overlap a frame cut short on the old
 * stream. A frame announced beyond this is discarded unread (node/activations.ts).
 */
export const ACTIVATION_FRAMES_IN_FLIGHT = 2
/**
 * How many iterations past its current one a stage keeps frames for, until their begin. The
 * coordinator begins iteration i+1 only once every stage has finished i, so a neighbour is at most
 * one ahead; two leave room for a begin or commit that is slow to arrive. Later frames are refused.
 */
export const MAX_EARLY_ITERATIONS = 2
/** Rank of a tensor on the wire: activations are rank 2-3; 8 covers anything reasonable. */
export const MAX_TENSOR_DIMS = 8
/** Run id in a tensor frame header (same rule as MAX_ID_LENGTH; its length is one byte). */
export const MAX_RUN_ID_LENGTH = MAX_ID_LENGTH
/** Hop index within a microbatch's route: forward plus backward through MAX_STAGES fits a u16. */
export const MAX_HOP = 0xffff

// ---- weights protocol ----

/**
 * Largest weights frame (one request, manifest, chunk, end or error). Equal to it-length-prefixed's
 * default maxDataLength, so the stream code needs no override.
 */
export const MAX_WEIGHTS_FRAME_BYTES = 4 * 1024 * 1024
/** Payload of one chunk: big enough to keep per-frame overhead negligible, small enough to interleave. */
export const MAX_WEIGHTS_CHUNK_BYTES = 1024 * 1024
/** Tensors in one manifest: a stage has ~12 tensors per block plus two optimizer slots each. */
export const MAX_WEIGHTS_TENSORS = 4096
/** Parameter names (`blocks.7.attn.wq`, optimizer slot names): printable ASCII without spaces. */
export const MAX_TENSOR_NAME_LENGTH = 256
export const TENSOR_NAME_PATTERN = /^[\x21-\x7e]+$/
/** One tensor must fit one ArrayBuffer: Node 20 caps a Buffer at 4 GiB on 64-bit hosts. */
export const MAX_WEIGHT_TENSOR_BYTES = 4 * 1024 * 1024 * 1024
/** Sum over a manifest; must stay a safe integer, and 1 TiB is far beyond one stage. */
export const MAX_WEIGHTS_TOTAL_BYTES = 1024 * 1024 * 1024 * 1024

// ---- timing defaults (DESIGN.md "Wire" and "Failure detection") ----

/** Each peer publishes a heartbeat about every second. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1000
/** A peer that misses heartbeats for this long is considered lost. */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 3000

// ---- topics ----

/** Throws unless `clusterId` is a valid id (it becomes part of a topic name). */
export function checkClusterId (clusterId: string): string {
  if (typeof clusterId !== 'string' || clusterId.length === 0) {
    throw new MalformedMessageError('clusterId: expected a non-empty string', { field: 'clusterId' })
  }
  if (clusterId.length > MAX_ID_LENGTH) {
    throw new LimitExceededError(`clusterId: ${clusterId.length} characters, limit ${MAX_ID_LENGTH}`, { field: 'clusterId' })
  }
  if (!ID_PATTERN.test(clusterId)) {
    throw new MalformedMessageError('clusterId: only [A-Za-z0-9._-] allowed', { field: 'clusterId' })
  }
  return clusterId
}

/** Heartbeats from every peer: `spotpipe/<clusterId>/heartbeat`. */
export function heartbeatTopic (clusterId: string): string {
  return `spotpipe/${checkClusterId(clusterId)}/heartbeat`
}

/** Coordinator control messages and peer reports: `spotpipe/<clusterId>/control`. */
export function controlTopic (clusterId: string): string {
  return `spotpipe/${checkClusterId(clusterId)}/control`
}

/** The data identity of the default data, the Brown corpus with byte tokens (it has no shard). */
export const DEFAULT_DATA_IDENTITY = { fingerprint: 'brown-byte', tokenizer: 'byte' } as const

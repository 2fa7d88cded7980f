/**
 * The all-reduce protocol's id and limits. Each limit says where its number comes from; the frame
 * reader checks every frame against them (and against the round's exact expectation) before any of
 * its body is buffered.
 */
import { MAX_ERROR_CODE_LENGTH, MAX_PEER_ID_LENGTH, MAX_REASON_LENGTH, MAX_WEIGHTS_CHUNK_BYTES } from '../../protocols/index.js'

/** Gradient all-reduce between the data-parallel replicas of one stage (named like the protocols in protocols/constants.ts). */
export const ALLREDUCE_PROTOCOL = '/spotpipe/allreduce/1.0.0'

/** Frame magic "SPA" and the wire version; every frame starts with these 4 bytes. */
export const ALLREDUCE_MAGIC = Uint8Array.of(0x53, 0x50, 0x41)
export const ALLREDUCE_VERSION = 1

/** Bytes of a header before the key (the layout is in codec.ts); a piece frame's first 8 bytes. */
export const HEADER_FIXED_BYTES = 34
export const PIECE_PREAMBLE_BYTES = 8

/**
 * Data bytes per piece frame of a chunk: the weights protocol's chunk size (MAX_WEIGHTS_CHUNK_BYTES,
 * 1 MiB), for the same reason: per-frame overhead is negligible, 4 and 16 MiB measured no faster on
 * loopback (net/weights/client.ts), and the receiver folds each piece into the gradients as it
 * arrives, so what it buffers per stream stays at one piece plus the muxer's window.
 */
export const PIECE_BYTES = MAX_WEIGHTS_CHUNK_BYTES
export const PIECE_ELEMENTS = PIECE_BYTES / 4

/**
 * The round key as carried in every header: printable ASCII. A rendered
 * `{ runId, epoch, iteration, stage }` is at most 64 + 3 * 10 + 3 separators = 97 characters;
 * 256 leaves room for a caller's own scheme and keeps a header far below MAX_HEADER_BYTES.
 */
export const MAX_ROUND_KEY_LENGTH = 256
export const ROUND_KEY_PATTERN = /^[\x21-\x7e]+$/

/**
 * Largest header or control frame: 34 fixed bytes + key (256) + an abort's code (64), peer id
 * (MAX_PEER_ID_LENGTH, 128) and reason (MAX_REASON_LENGTH, 512) with their length bytes = 998.
 */
export const MAX_HEADER_BYTES = HEADER_FIXED_BYTES + MAX_ROUND_KEY_LENGTH + 1 + MAX_ERROR_CODE_LENGTH + 1 + MAX_PEER_ID_LENGTH + 2 + MAX_REASON_LENGTH

/**
 * Members of one group. A ring takes 2(N-1) sequential steps, each paying a round trip and a
 * frame header, so its latency term grows linearly with N (Patarasuk & Yuan, "Bandwidth optimal
 * all-reduce algorithms for clusters of workstations", JPDC 69(2), 2009: time 2(N-1)a + 2(N-1)/N nb);
 * a stage has at most MAX_PEERS_PER_STAGE (8) replicas today, and 256 keeps every step index in a u16.
 */
export const MAX_GROUP_SIZE = 256

/** Elements of one round: the wire carries counts as u32. */
export const MAX_TOTAL_ELEMENTS = 0xffffffff

/**
 * Streams for this protocol per connection and direction: one per round, one round ahead, and a
 * refused or lingering one closing (libp2p's default of 32 inbound would let a stranger hold more).
 */
export const MAX_STREAMS_PER_CONNECTION = 8

/** Bytes the frame reader buffers before it pauses the stream: one piece (as the weights client). */
export const READ_HIGH_WATER_MARK = PIECE_BYTES

/**
 * How long a refusal or abort frame may take to flush before the stream is reset anyway. It is a
 * courtesy to the remote (a precise error instead of "stream reset"), never worth holding a round.
 */
export const CONTROL_FLUSH_MS = 1000

/** After a round succeeded, how long its streams may take to finish their clean close before they are reset. */
export const LINGER_MS = 10_000

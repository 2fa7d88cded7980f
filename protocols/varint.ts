/**
 * Unsigned LEB128 varints: protobuf's integers, and the length prefix of every framed stream here
 * (net/transport). One definition for the frame writer and reader and for the weights protocol's
 * chunk fast path (peekChunk, chunkFrameParts), which read and write protobuf by hand.
 * Values are JavaScript safe integers (< 2^53).
 */

/** Longest varint read: 10 bytes hold any 64-bit value. */
export const MAX_VARINT_BYTES = 10

/** Appends `value`'s varint bytes to `out`. */
export function pushVarint (value: number, out: number[]): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`cannot encode ${value} as a varint`)
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80)
    value = Math.floor(value / 0x80)
  }
  out.push(value)
}

/** `value` as varint bytes. */
export function encodeVarint (value: number): Uint8Array {
  const out: number[] = []
  pushVarint(value, out)
  return Uint8Array.from(out)
}

export interface VarintRead {
  /** The value, or what the bytes read so far make of it when incomplete. */
  value: number
  /** Position after the varint's last byte (after the bytes read, when incomplete). */
  end: number
  /** False when the bytes (or `maxBytes`) ran out before a byte without the continuation bit. */
  complete: boolean
}

/** Reads the varint starting at `bytes[pos]`, at most `maxBytes` long. */
export function readVarint (bytes: Uint8Array, pos = 0, maxBytes = MAX_VARINT_BYTES): VarintRead {
  let value = 0
  const stop = Math.min(bytes.length, pos + maxBytes)
  for (let i = pos, shift = 0; i < stop; i++, shift += 7) {
    const b = bytes[i]
    value += (b & 0x7f) * 2 ** shift
    if ((b & 0x80) === 0) return { value, end: i + 1, complete: true }
  }
  return { value, end: stop, complete: false }
}

/**
 * Small pieces shared by the weights server and client: checksums, dtype names, the byte-balanced
 * split of tensors between donors, and a stall timer.
 */
import { crc32 } from 'node:zlib'
import type { DType as HostDType, HostTensor } from '../../model/index.js'
import { MAX_REASON_LENGTH, type DType as WireDType } from '../../protocols/index.js'

export const HOST_TO_WIRE: Record<HostDType, WireDType> = { F32: 'float32', I32: 'int32' }
export const WIRE_TO_HOST: Record<WireDType, HostDType> = { float32: 'F32', int32: 'I32' }

/**
 * The manifest's checksum of a tensor's raw little-endian bytes (WEIGHTS_CHECKSUM: CRC-32). Pass
 * the previous value to continue over the next piece: crc(a ++ b) = tensorCrc(b, tensorCrc(a)).
 */
export function tensorCrc (bytes: Uint8Array, previous = 0): number {
  return crc32(bytes, previous) >>> 0
}

/** A CRC-32 as 8 hex digits, for messages. */
export function crcHex (crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, '0')
}

/** The tensor's bytes, without copying. */
export function tensorBytes (t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
}

/**
 * Splits tensors (by index into `sizes`) into `parts` groups of about equal bytes. Group 0 is a
 * prefix of the list: the donor that sent the manifest is already streaming in manifest order, so
 * it keeps the head and is cut off once that is complete. The rest goes largest-first to the
 * lightest group. Groups can be empty when there are fewer tensors than parts.
 */
export function splitByBytes (sizes: readonly number[], parts: number): number[][] {
  if (!Number.isSafeInteger(parts) || parts < 1) throw new RangeError(`parts must be a positive integer, got ${parts}`)
  const all = sizes.map((_, i) => i)
  if (parts === 1 || sizes.length === 0) return [all, ...Array.from({ length: parts - 1 }, () => [])]
  const total = sizes.reduce((a, b) => a + b, 0)
  const target = total / parts
  // shortest prefix reaching the target, or one shorter if that lands closer
  let p = 0
  let sum = 0
  while (p < sizes.length && sum + sizes[p] <= target) sum += sizes[p++]
  if (p < sizes.length && (p === 0 || (sum + sizes[p]) - target < target - sum)) sum += sizes[p++]
  const groups: number[][] = [all.slice(0, p)]
  const loads: number[] = []
  for (let g = 1; g < parts; g++) { groups.push([]); loads.push(0) }
  const rest = all.slice(p).sort((a, b) => sizes[b] - sizes[a] || a - b)
  for (const i of rest) {
    let best = 0
    for (let g = 1; g < loads.length; g++) if (loads[g] < loads[best]) best = g
    groups[best + 1].push(i)
    loads[best] += sizes[i]
  }
  for (const g of groups) g.sort((a, b) => a - b)
  return groups
}

/** Fits a free-text message into a wire error message. */
export function clipReason (message: string): string {
  const ascii = message.replace(/[^\x20-\x7e]/g, '?')
  return ascii.length <= MAX_REASON_LENGTH ? ascii : ascii.slice(0, MAX_REASON_LENGTH - 3) + '...'
}

/** "a, b, c and 4 more" for error messages. */
export function listNames (names: readonly string[], limit = 5): string {
  const head = names.slice(0, limit).join(', ')
  return names.length > limit ? `${head} and ${names.length - limit} more` : head
}

/**
 * An AbortSignal that fires when `touch()` has not been called for `ms`. Combine it with the
 * caller's signal for reads and writes that should not hang on a silent peer.
 */
export class StallTimer {
  private readonly controller = new AbortController()
  private readonly timer: NodeJS.Timeout
  readonly signal: AbortSignal

  constructor (ms: number, reason: () => Error) {
    this.signal = this.controller.signal
    this.timer = setTimeout(() => { this.controller.abort(reason()) }, ms)
    this.timer.unref()
  }

  touch (): void { this.timer.refresh() }

  clear (): void { clearTimeout(this.timer) }
}

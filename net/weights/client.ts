/**
 * Weights client: pulls a stage's tensors from one or several donors.
 *
 * The first donor that answers sends the full manifest and keeps streaming in manifest order; the
 * tensors are split by bytes so that it keeps a prefix (its stream is cut once that is complete)
 * and the other donors each get a subset request for the rest, pulled in parallel. Every part must
 * come at the manifest's iteration, with identical manifest entries. A part whose donor fails is
 * retried, for the tensors still missing, on another donor that has not failed.
 *
 * Chunks are decoded against their stream's manifest (index and range), copied once into the
 * tensor's final typed array, checked for NaN/Inf there (aligned, so the fast path), and summed
 * (CRC-32) as they arrive when they come in order (else the tensor is summed once complete).
 */
import type { Libp2p, Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { ConfigError, SpotpipeError } from '../../common/index.js'
import { createLog } from '../../common/index.js'
import type { TensorSet } from '../../model/index.js'
import {
  MAX_STAGES, MAX_WEIGHTS_FRAME_BYTES, WEIGHTS_PROTOCOL, decodeWeightsMessage, encodeWeightsMessage, firstNonFinite, peekChunk,
  type TensorInfo, type WeightsErrorMessage, type WeightsManifest, type WeightsMessage
} from '../../protocols/index.js'
import {
  FrameTooLargeError, MalformedFrameError, endFrames, openStream, readFrameLists, writeFrame
} from '../transport/index.js'
import {
  BadWeightsRequestError, ChecksumMismatchError, DonorBusyError, DonorLostError, RemoteWeightsError, UnknownTensorError,
  IterationMismatchError, IterationUnavailableError, WEIGHTS_ERROR_CODES, WeightsError, WeightsFetchError, WeightsProtocolError,
  WeightsTimeoutError, type DonorFailure
} from './errors.js'
import type { DonorReport, FetchWeightsOptions, FetchedWeights, WeightsDonor } from './index.js'
import { prefaultedBuffer } from './prefault.js'
import { StallTimer, WIRE_TO_HOST, crcHex, listNames, splitByBytes, tensorCrc } from './util.js'

const log = createLog('weights:client')

/**
 * Bytes the frame reader buffers before it pauses the stream (beyond the muxer's window). One chunk:
 * 4 and 16 MiB measured no faster on loopback, and this keeps memory per stream small.
 */
const READ_HIGH_WATER_MARK = 1024 * 1024

interface Donor {
  readonly label: string
  readonly peer: WeightsDonor['peer']
  readonly report: DonorReport
  failed: boolean
  /** Parts it is serving right now (to spread retries). */
  active: number
}

/** Where one tensor of the fetch stands. */
interface Slot {
  readonly info: TensorInfo
  readonly array: Float32Array | Int32Array
  readonly bytes: Uint8Array
  /** Resolves when `bytes` may be written (its pages are resident: prefault.ts); then undefined. */
  ready: Promise<void> | undefined
  /** Running CRC-32 of bytes [0, summedTo) while chunks arrive in order; undefined once one came out of order. */
  crc: number | undefined
  summedTo: number
  /** Received byte ranges [start, end), sorted and merged. */
  ranges: Array<[number, number]>
  received: number
  done: boolean
}

/** An open transfer stream whose manifest has been read. */
interface Conn {
  readonly stream: Stream
  readonly frames: AsyncGenerator<Uint8ArrayList, void, undefined>
  readonly manifest: WeightsManifest
  /** The stream's manifest index -> the fetch's slot index. */
  readonly toSlot: number[]
  readonly stall: StallTimer
}

export async function fetchWeightsImpl (node: Pick<Libp2p, 'dialProtocol'>, options: FetchWeightsOptions): Promise<FetchedWeights> {
  checkOptions(options)
  options.signal?.throwIfAborted()
  const stop = new AbortController()
  const timeout = options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs)
  const signals = [stop.signal]
  if (options.signal != null) signals.push(options.signal)
  if (timeout != null) signals.push(timeout)
  const fetch = new Fetch(node, options, AbortSignal.any(signals))
  try {
    return await fetch.run()
  } catch (err) {
    options.signal?.throwIfAborted()
    if (timeout?.aborted === true) throw new WeightsTimeoutError(`fetching stage ${options.stage} did not finish within ${options.timeoutMs} ms`)
    throw err
  } finally {
    stop.abort(new Error('fetch finished'))
    fetch.closeAll()
  }
}

class Fetch {
  private readonly node: Pick<Libp2p, 'dialProtocol'>
  private readonly opts: FetchWeightsOptions
  private readonly signal: AbortSignal
  private readonly donors: Donor[]
  private readonly failures: DonorFailure[] = []
  private readonly streams = new Set<Stream>()
  private readonly includeOptimizer: boolean
  private readonly dialTimeoutMs: number
  private readonly stallTimeoutMs: number
  private slots: Slot[] = []
  private iteration = -1

  constructor (node: Pick<Libp2p, 'dialProtocol'>, opts: FetchWeightsOptions, signal: AbortSignal) {
    this.node = node
    this.opts = opts
    this.signal = signal
    this.includeOptimizer = opts.includeOptimizer ?? false
    this.dialTimeoutMs = opts.dialTimeoutMs ?? 10_000
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 30_000
    this.donors = opts.donors.map(d => {
      const label = donorLabel(d.peer)
      return { label, peer: d.peer, failed: false, active: 0, report: { donor: label, bytes: 0, tensors: 0, receivedBytes: 0 } }
    })
  }

  async run (): Promise<FetchedWeights> {
    const t0 = performance.now()
    // 1. the first donor that answers provides the manifest, and goes on streaming
    const requested = this.opts.names ?? []
    let first: { donor: Donor, conn: Conn } | undefined
    for (const donor of this.donors) {
      try {
        first = { donor, conn: await this.open(donor, requested, this.opts.minIteration ?? -1) }
        break
      } catch (err) {
        this.fail(donor, err, requested)
      }
    }
    if (first === undefined) throw this.exhausted()
    const ref = first.conn.manifest
    this.iteration = ref.iteration
    this.slots = ref.tensors.map(info => {
      const given = this.destinationFor(info)
      if (given !== undefined) {
        const bytes = new Uint8Array(given.buffer, given.byteOffset, given.byteLength)
        return { info, array: given, bytes, ready: undefined, crc: 0, summedTo: 0, ranges: [], received: 0, done: false }
      }
      const { buffer, ready } = prefaultedBuffer(info.byteLength)
      const array = WIRE_TO_HOST[info.dtype] === 'F32' ? new Float32Array(buffer) : new Int32Array(buffer)
      const bytes = new Uint8Array(buffer)
      const slot: Slot = { info, array, bytes, ready, crc: 0, summedTo: 0, ranges: [], received: 0, done: false }
      void ready.then(() => { slot.ready = undefined })
      return slot
    })

    // 2. split by bytes: the manifest donor keeps a prefix, the others share the rest
    const helpers = this.donors.filter(d => !d.failed && d !== first?.donor)
    const groups = splitByBytes(ref.tensors.map(t => t.byteLength), 1 + helpers.length)
    log('stage %d iteration %d: %d tensors, %d bytes from %d donor(s)', ref.stage, ref.iteration, ref.tensors.length, ref.totalBytes, 1 + helpers.length)
    const parts = [this.part(first.donor, groups[0], first.conn)]
    helpers.forEach((d, i) => { if (groups[i + 1].length > 0) parts.push(this.part(d, groups[i + 1])) })
    await Promise.all(parts)

    const tensors: TensorSet = new Map()
    for (const s of this.slots) tensors.set(s.info.name, { dtype: WIRE_TO_HOST[s.info.dtype], shape: [...s.info.shape], data: s.array })
    return {
      stage: this.opts.stage,
      iteration: ref.iteration,
      tensors,
      manifest: ref.tensors,
      bytes: ref.totalBytes,
      perDonor: this.donors.map(d => d.report),
      ms: performance.now() - t0
    }
  }

  /** The caller's array for `info`, checked against the manifest; undefined to allocate one. */
  private destinationFor (info: TensorInfo): Float32Array | Int32Array | undefined {
    const a = this.opts.destination?.(info)
    if (a === undefined) return undefined
    const want = WIRE_TO_HOST[info.dtype] === 'F32' ? Float32Array : Int32Array
    if (!(a instanceof want) || a.byteLength !== info.byteLength) {
      throw new ConfigError(`fetchWeights: destination for ${info.name} must be a ${want.name} of ${info.byteLength / 4} elements, got ${a?.constructor?.name} of ${(a as { length?: number })?.length}`)
    }
    return a
  }

  /** Aborts streams still open (the fetch finished or failed). */
  closeAll (): void {
    for (const s of this.streams) if (s.status === 'open') s.abort(new Error('weights fetch finished'))
    this.streams.clear()
  }

  /** Pulls the slots `indices`, on `donor` and then, after failures, on others. */
  private async part (donor: Donor, indices: number[], opened?: Conn): Promise<void> {
    let conn = opened
    let current = donor
    while (true) {
      const todo = indices.filter(i => !this.slots[i].done)
      if (todo.length === 0) {
        if (conn !== undefined) this.close(conn)
        return
      }
      current.active++
      try {
        conn ??= await this.open(current, todo.map(i => this.slots[i].info.name), this.iteration, this.iteration)
        await this.receive(current, conn, todo)
        return
      } catch (err) {
        this.signal.throwIfAborted()
        this.fail(current, err, todo.filter(i => !this.slots[i].done).map(i => this.slots[i].info.name))
        for (const i of todo) if (!this.slots[i].done) resetSlot(this.slots[i])
        conn = undefined
      } finally {
        current.active--
      }
      const next = this.pick()
      if (next === undefined) throw this.exhausted()
      log('retrying %d tensors of stage %d on %s', indices.filter(i => !this.slots[i].done).length, this.opts.stage, next.label)
      current = next
    }
  }

  /** The healthy donor serving the fewest parts (first in the list on a tie). */
  private pick (): Donor | undefined {
    let best: Donor | undefined
    for (const d of this.donors) if (!d.failed && (best === undefined || d.active < best.active)) best = d
    return best
  }

  /**
   * Opens a stream, sends the request and reads the manifest. With `expectIteration` (a part after the
   * manifest is known) the donor must serve exactly that iteration and the fetch's manifest entries.
   */
  private async open (donor: Donor, names: string[], minIteration: number, expectIteration?: number): Promise<Conn> {
    let stream: Stream
    try {
      stream = await openStream(this.node, donor.peer, WEIGHTS_PROTOCOL, { signal: this.signal, timeoutMs: this.dialTimeoutMs })
    } catch (err) {
      this.signal.throwIfAborted()
      throw new DonorLostError(donor.label, `cannot open a weights stream to ${donor.label}: ${(err as Error).message}`, { cause: err })
    }
    this.streams.add(stream)
    const stall = new StallTimer(this.stallTimeoutMs, () => new DonorLostError(donor.label, `${donor.label} sent nothing for ${this.stallTimeoutMs} ms`))
    const signal = AbortSignal.any([this.signal, stall.signal])
    try {
      const request = encodeWeightsMessage({ kind: 'request', stage: this.opts.stage, minIteration, names, includeOptimizer: this.includeOptimizer })
      await writeFrame(stream, request, signal)
      // nothing more to say: close our end so the donor's stream can finish cleanly
      await endFrames(stream, signal)
      const frames = readFrameLists(stream, { maxFrameBytes: MAX_WEIGHTS_FRAME_BYTES, signal, highWaterMark: READ_HIGH_WATER_MARK })
      const first = await frames.next()
      if (first.done === true) throw new WeightsProtocolError(donor.label, `${donor.label} ended the stream without answering`)
      stall.touch()
      const msg = decode(donor, first.value.subarray())
      if (msg.kind === 'error') throw remoteError(donor.label, msg)
      if (msg.kind !== 'manifest') throw new WeightsProtocolError(donor.label, `${donor.label} answered with a ${msg.kind} message instead of a manifest`)
      const toSlot = this.checkManifest(donor, msg, names, minIteration, expectIteration)
      return { stream, frames, manifest: msg, toSlot, stall }
    } catch (err) {
      stall.clear()
      this.streams.delete(stream)
      stream.abort(err as Error)
      throw this.wrap(donor, err)
    }
  }

  private checkManifest (donor: Donor, m: WeightsManifest, names: string[], minIteration: number, expectIteration?: number): number[] {
    const bad = (why: string): never => { throw new WeightsProtocolError(donor.label, `manifest from ${donor.label}: ${why}`) }
    if (m.stage !== this.opts.stage) bad(`stage ${m.stage}, asked for ${this.opts.stage}`)
    if (expectIteration !== undefined && m.iteration !== expectIteration) throw new IterationMismatchError(donor.label, expectIteration, m.iteration)
    if (m.iteration < minIteration) bad(`iteration ${m.iteration}, asked for >= ${minIteration}`)
    if (names.length > 0) {
      const got = new Set(m.tensors.map(t => t.name))
      const missing = names.filter(n => !got.has(n))
      if (missing.length > 0 || m.tensors.length !== names.length) {
        bad(`does not list exactly the requested tensors${missing.length > 0 ? ` (missing ${listNames(missing)})` : ''}`)
      }
    }
    if (expectIteration === undefined) return m.tensors.map((_, i) => i)
    const byName = new Map(this.slots.map((s, i) => [s.info.name, i]))
    return m.tensors.map(t => {
      const i = byName.get(t.name)
      if (i === undefined) return bad(`lists ${t.name}, which is not in the fetch`)
      const want = this.slots[i].info
      if (t.dtype !== want.dtype || t.byteLength !== want.byteLength || t.crc32 !== want.crc32 || t.shape.join(',') !== want.shape.join(',')) {
        bad(`${t.name} (${t.dtype} [${t.shape.join(', ')}] CRC-32 ${crcHex(t.crc32)}) differs from the fetch's manifest at the same iteration (${want.dtype} [${want.shape.join(', ')}] CRC-32 ${crcHex(want.crc32)})`)
      }
      return i
    })
  }

  /** Reads chunks until the slots in `todo` are complete; cuts the stream off if it carries more. */
  private async receive (donor: Donor, conn: Conn, todo: number[]): Promise<void> {
    const wanted = new Set(todo)
    let remaining = wanted.size
    let ended = false
    let clean = false
    try {
      for await (const frame of conn.frames) {
        conn.stall.touch()
        // chunks are read in place (their data copied once, from the transport's buffers into the
        // tensor); anything else is decoded in full
        const view = peek(donor, frame, conn.manifest)
        const msg = view !== undefined ? { kind: 'chunk' as const, index: view.index, offset: view.offset, data: frame.sublist(view.dataStart) } : decode(donor, frame.subarray(), conn.manifest)
        if (msg.kind === 'chunk') {
          donor.report.receivedBytes += msg.data.byteLength
          const i = conn.toSlot[msg.index]
          if (!wanted.has(i)) continue // beyond this donor's part (the manifest donor streams everything)
          const slot = this.slots[i]
          if (slot.done) throw new WeightsProtocolError(donor.label, `${donor.label} sent more data for ${slot.info.name} after it was complete`)
          if (slot.ready !== undefined) await slot.ready
          if (this.accept(donor, slot, msg.offset, msg.data)) {
            donor.report.bytes += slot.info.byteLength
            donor.report.tensors++
            if (--remaining === 0 && conn.manifest.tensors.length > wanted.size) {
              // the rest of this stream is served by other donors
              clean = true
              this.close(conn)
              return
            }
          }
        } else if (msg.kind === 'end') {
          if (msg.totalBytes !== conn.manifest.totalBytes) {
            throw new WeightsProtocolError(donor.label, `${donor.label} ended after ${msg.totalBytes} bytes, its manifest announced ${conn.manifest.totalBytes}`)
          }
          ended = true
        } else if (msg.kind === 'error') {
          throw remoteError(donor.label, msg)
        } else {
          throw new WeightsProtocolError(donor.label, `${donor.label} sent an unexpected ${msg.kind} message`)
        }
      }
      if (!ended) throw new WeightsProtocolError(donor.label, `${donor.label} closed the stream without an end message`)
      if (remaining > 0) {
        const missing = todo.filter(i => !this.slots[i].done).map(i => this.slots[i].info.name)
        throw new WeightsProtocolError(donor.label, `${donor.label} ended with ${remaining} tensor(s) incomplete: ${listNames(missing)}`)
      }
      clean = true
      this.close(conn)
    } catch (err) {
      throw this.wrap(donor, err)
    } finally {
      conn.stall.clear()
      if (!clean) {
        this.streams.delete(conn.stream)
        if (conn.stream.status === 'open') conn.stream.abort(new Error('weights transfer failed'))
      }
    }
  }

  /** Takes one chunk into its slot; true when this completed (and verified) the tensor. */
  private accept (donor: Donor, slot: Slot, offset: number, data: Uint8Array | Uint8ArrayList): boolean {
    const end = offset + data.byteLength
    if (!addRange(slot.ranges, offset, end)) {
      throw new WeightsProtocolError(donor.label, `${donor.label} sent bytes [${offset}, ${end}) of ${slot.info.name} twice`)
    }
    if (data instanceof Uint8Array) {
      slot.bytes.set(data, offset)
    } else {
      let at = offset
      for (const part of data) { slot.bytes.set(part, at); at += part.byteLength }
    }
    if (slot.info.dtype === 'float32') {
      const bad = firstNonFinite(slot.bytes.subarray(offset, end))
      if (bad >= 0) {
        const at = offset / 4 + bad
        throw new WeightsProtocolError(donor.label, `${donor.label} sent a non-finite value (${slot.array[at]}) in ${slot.info.name} at element ${at}`)
      }
    }
    if (slot.crc !== undefined) {
      if (offset === slot.summedTo) {
        // summed from the destination, which the copy just brought into cache
        slot.crc = tensorCrc(slot.bytes.subarray(offset, end), slot.crc)
        slot.summedTo = end
      } else {
        slot.crc = undefined // out of order: sum the whole tensor once complete
      }
    }
    slot.received += data.byteLength
    if (slot.received < slot.info.byteLength) return false
    const actual = slot.crc ?? tensorCrc(slot.bytes)
    slot.crc = undefined
    slot.ranges = []
    if (actual !== slot.info.crc32) throw new ChecksumMismatchError(slot.info.name, donor.label, slot.info.crc32, actual)
    slot.done = true
    return true
  }

  /** Ends a stream we are done with: our side is closed already; reset it if the donor still sends. */
  private close (conn: Conn): void {
    conn.stall.clear()
    this.streams.delete(conn.stream)
    if (conn.stream.status === 'open' && conn.stream.remoteWriteStatus !== 'closed') conn.stream.abort(new Error('part complete'))
  }

  private fail (donor: Donor, err: unknown, missing: string[]): void {
    this.signal.throwIfAborted()
    const error = this.wrap(donor, err)
    donor.failed = true
    donor.report.failure ??= error
    this.failures.push({ donor: donor.label, tensors: missing, error })
    log('donor %s failed: %s', donor.label, error.message)
  }

  /** The error to throw when no donor is left: the common typed error, or all of them. */
  private exhausted (): Error {
    const codes = new Set(this.failures.map(f => (f.error as Partial<SpotpipeError>).code ?? 'ERR_UNKNOWN'))
    if (codes.size === 1) return this.failures[this.failures.length - 1].error
    const what = this.failures.map(f => `${f.donor}: ${f.error.message}`).join('; ')
    return new WeightsFetchError(`no donor left for stage ${this.opts.stage}: ${what}`, this.failures)
  }

  /** Typed errors pass through; transport trouble becomes DonorLostError, bad framing WeightsProtocolError. */
  private wrap (donor: Donor, err: unknown): Error {
    if (err instanceof WeightsError) return err
    this.signal.throwIfAborted()
    const message = err instanceof Error ? err.message : String(err)
    if (err instanceof FrameTooLargeError || err instanceof MalformedFrameError) {
      return new WeightsProtocolError(donor.label, `${donor.label} sent a bad frame: ${message}`, { cause: err })
    }
    return new DonorLostError(donor.label, `stream from ${donor.label} failed: ${message}`, { cause: err })
  }
}

/** The chunk in `frame` read in place, or undefined if it is not a chunk in the usual layout. */
function peek (donor: Donor, frame: Uint8ArrayList, manifest: WeightsManifest): ReturnType<typeof peekChunk> {
  try {
    return peekChunk(frame, manifest)
  } catch (err) {
    throw new WeightsProtocolError(donor.label, `${donor.label} sent an invalid message: ${(err as Error).message}`, { cause: err })
  }
}

function decode (donor: Donor, frame: Uint8Array, manifest?: WeightsManifest): WeightsMessage {
  try {
    // NaN/Inf is checked after the copy into the (aligned) destination, which is much faster
    return decodeWeightsMessage(frame, manifest === undefined ? {} : { manifest, rejectNonFinite: false })
  } catch (err) {
    throw new WeightsProtocolError(donor.label, `${donor.label} sent an invalid message: ${(err as Error).message}`, { cause: err })
  }
}

function remoteError (donor: string, msg: WeightsErrorMessage): WeightsError {
  const text = `${donor} refused (${msg.code}): ${msg.message}`
  switch (msg.code) {
    case WEIGHTS_ERROR_CODES.iterationUnavailable: return new IterationUnavailableError(text, { donor })
    case WEIGHTS_ERROR_CODES.unknownTensor: return new UnknownTensorError(text, { donor })
    case WEIGHTS_ERROR_CODES.badRequest: return new BadWeightsRequestError(text, { donor })
    case WEIGHTS_ERROR_CODES.busy: return new DonorBusyError(text, { donor })
    default: return new RemoteWeightsError(msg.code, text, { donor })
  }
}

/** Adds [start, end) to sorted, merged `ranges`; false if it overlaps what is there. */
function addRange (ranges: Array<[number, number]>, start: number, end: number): boolean {
  const last = ranges[ranges.length - 1]
  if (last === undefined || start > last[1]) { ranges.push([start, end]); return true }
  if (start === last[1]) { last[1] = end; return true } // the usual case: in order
  let i = 0
  while (i < ranges.length && ranges[i][1] <= start) i++
  if (i < ranges.length && ranges[i][0] < end) return false
  ranges.splice(i, 0, [start, end])
  // merge with neighbours that now touch
  if (i + 1 < ranges.length && ranges[i][1] === ranges[i + 1][0]) { ranges[i][1] = ranges[i + 1][1]; ranges.splice(i + 1, 1) }
  if (i > 0 && ranges[i - 1][1] === ranges[i][0]) { ranges[i - 1][1] = ranges[i][1]; ranges.splice(i, 1) }
  return true
}

function resetSlot (s: Slot): void {
  s.crc = 0
  s.summedTo = 0
  s.ranges = []
  s.received = 0
}

function donorLabel (peer: WeightsDonor['peer']): string {
  if (Array.isArray(peer)) return peer.length === 0 ? '(no address)' : peer[0].toString()
  return peer.toString()
}

function checkOptions (o: FetchWeightsOptions): void {
  if (!Array.isArray(o.donors) || o.donors.length === 0) throw new ConfigError('fetchWeights: at least one donor is required')
  for (const d of o.donors) {
    if (d?.peer == null || (Array.isArray(d.peer) && d.peer.length === 0)) throw new ConfigError('fetchWeights: every donor needs a peer id or multiaddr')
  }
  if (!Number.isSafeInteger(o.stage) || o.stage < 0 || o.stage >= MAX_STAGES) throw new ConfigError(`fetchWeights: stage must be an integer in [0, ${MAX_STAGES}), got ${o.stage}`)
  const min = o.minIteration ?? -1
  if (!Number.isSafeInteger(min) || min < -1 || min > 0x7fffffff) throw new ConfigError(`fetchWeights: minIteration must be an integer in [-1, ${0x7fffffff}], got ${min}`)
  if (o.names !== undefined && new Set(o.names).size !== o.names.length) throw new ConfigError('fetchWeights: names must not repeat')
  for (const [k, v] of [['timeoutMs', o.timeoutMs], ['dialTimeoutMs', o.dialTimeoutMs], ['stallTimeoutMs', o.stallTimeoutMs]] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new ConfigError(`fetchWeights: ${k} must be a positive number, got ${v}`)
  }
}

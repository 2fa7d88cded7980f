/**
 * Weights server: one transfer per inbound stream. Reads the request, takes a snapshot from the
 * provider, answers with the manifest (a CRC-32 per tensor), the chunks in tensor order, the end
 * message and the end-of-stream frame. Anything wrong with the request is answered with an error
 * message; a puller that goes away or stops reading only ends its own stream.
 */
import type { Libp2p, Stream } from '@libp2p/interface'
import { ConfigError } from '../../common/index.js'
import type { HostTensor } from '../../model/index.js'
import { createLog } from '../../common/index.js'
import {
  MAX_WEIGHTS_CHUNK_BYTES, MAX_WEIGHTS_FRAME_BYTES, WEIGHTS_PROTOCOL, chunkFrameParts, decodeWeightsMessage, encodeWeightsMessage,
  type TensorInfo, type WeightsManifest, type WeightsMessage, type WeightsRequest
} from '../../protocols/index.js'
import { FrameTooLargeError, MalformedFrameError, endFrames, readOneFrame, writeFrame } from '../transport/index.js'
import { WEIGHTS_ERROR_CODES } from './errors.js'
import type { WeightsProvider, WeightsServer, WeightsServerStats, WeightsServiceInit, WeightsSnapshot } from './index.js'
import { HOST_TO_WIRE, StallTimer, clipReason, listNames, tensorBytes, tensorCrc } from './util.js'

const log = createLog('weights:server')

/** (stage, iteration) pairs whose checksums are remembered when cacheChecksums is on (LRU). */
const CHECKSUM_CACHE_ITERATIONS = 4

/** A request the server answers with an error message instead of data. */
class Refusal extends Error {
  constructor (readonly wireCode: string, message: string) { super(message) }
}

export class WeightsServerImpl implements WeightsServer {
  private readonly node: Pick<Libp2p, 'handle' | 'unhandle'>
  private readonly provider: WeightsProvider
  private readonly chunkBytes: number
  private readonly maxConcurrent: number
  private readonly maxQueued: number
  private readonly requestTimeoutMs: number
  private readonly stallTimeoutMs: number
  private readonly cacheChecksums: boolean
  private readonly corruptChunk: number | undefined
  /** `${stage}@${iteration}` -> name -> CRC-32, oldest first. */
  private readonly checksums = new Map<string, Map<string, number>>()
  private readonly transfers = new Set<{ controller: AbortController, done: Promise<void> }>()
  private readonly waiting: Array<(granted: boolean) => void> = []
  private running = 0
  private stopped = false
  private readonly counters = { served: 0, refused: 0, aborted: 0, bytes: 0 }

  constructor (node: Pick<Libp2p, 'handle' | 'unhandle'>, provider: WeightsProvider, init: WeightsServiceInit) {
    this.node = node
    this.provider = provider
    this.chunkBytes = init.chunkBytes ?? MAX_WEIGHTS_CHUNK_BYTES
    if (!Number.isSafeInteger(this.chunkBytes) || this.chunkBytes < 4 || this.chunkBytes % 4 !== 0 || this.chunkBytes > MAX_WEIGHTS_CHUNK_BYTES) {
      throw new ConfigError(`chunkBytes must be a positive multiple of 4 up to ${MAX_WEIGHTS_CHUNK_BYTES}, got ${this.chunkBytes}`)
    }
    this.maxConcurrent = positiveInt('maxConcurrentTransfers', init.maxConcurrentTransfers ?? 4)
    this.maxQueued = nonNegativeInt('maxQueuedTransfers', init.maxQueuedTransfers ?? 16)
    this.requestTimeoutMs = positiveInt('requestTimeoutMs', init.requestTimeoutMs ?? 10_000)
    this.stallTimeoutMs = positiveInt('stallTimeoutMs', init.stallTimeoutMs ?? 30_000)
    this.cacheChecksums = init.cacheChecksums ?? true
    const corrupt = init.faults?.corruptChunk
    if (corrupt !== undefined) nonNegativeInt('faults.corruptChunk', corrupt)
    this.corruptChunk = corrupt
    chunkFrameParts(0, 0, new Uint8Array(4)) // checks the hand-built framing against the encoder once
  }

  forgetChecksums (stage?: number): void {
    if (stage === undefined) { this.checksums.clear(); return }
    for (const key of [...this.checksums.keys()]) if (key.startsWith(`${stage}@`)) this.checksums.delete(key)
  }

  get stats (): WeightsServerStats {
    return { ...this.counters, active: this.running, queued: this.waiting.length }
  }

  async start (): Promise<void> {
    // room for every transfer and queued request, plus a few to answer ERR_BUSY instead of a reset
    const maxInboundStreams = this.maxConcurrent + this.maxQueued + 16
    await this.node.handle(WEIGHTS_PROTOCOL, (stream, connection) => {
      this.accept(stream, connection.remotePeer.toString())
    }, { maxInboundStreams })
    if (this.corruptChunk !== undefined) log.info(`FAULT INJECTION: corrupting chunk ${this.corruptChunk} of every transfer`)
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    await this.node.unhandle(WEIGHTS_PROTOCOL)
    for (const w of this.waiting.splice(0)) w(false)
    const transfers = [...this.transfers]
    for (const t of transfers) t.controller.abort(new Error('weights server stopping'))
    await Promise.allSettled(transfers.map(async t => { await t.done }))
  }

  private accept (stream: Stream, from: string): void {
    if (this.stopped) { stream.abort(new Error('weights server stopped')); return }
    const controller = new AbortController()
    const entry = { controller, done: Promise.resolve() }
    entry.done = this.serve(stream, from, controller.signal)
      .catch(err => { log.error('serving %s failed: %s', from, (err as Error).message) })
      .finally(() => { this.transfers.delete(entry) })
    this.transfers.add(entry)
  }

  private async serve (stream: Stream, from: string, signal: AbortSignal): Promise<void> {
    let slot = false
    try {
      const request = await this.readRequest(stream, signal)
      if (request === undefined) {
        // the puller ended without asking for anything
        await endFrames(stream, AbortSignal.any([signal, AbortSignal.timeout(this.stallTimeoutMs)]))
        return
      }
      slot = await this.acquire(signal)
      if (!slot) throw new Refusal(WEIGHTS_ERROR_CODES.busy, `serving ${this.maxConcurrent} transfers with ${this.maxQueued} queued; try another donor`)
      await this.send(stream, request, from, signal)
      this.counters.served++
    } catch (err) {
      if (err instanceof Refusal) {
        await this.refuse(stream, from, err, signal)
      } else {
        this.counters.aborted++
        log('transfer to %s aborted: %s', from, (err as Error).message)
        stream.abort(err as Error)
      }
    } finally {
      if (slot) this.release()
    }
    this.lingerThenAbort(stream)
  }

  /** The request, or undefined if the stream ended cleanly first. Refusal for anything malformed. */
  private async readRequest (stream: Stream, signal: AbortSignal): Promise<WeightsRequest | undefined> {
    let frame: Uint8Array | undefined
    try {
      const timeout = AbortSignal.timeout(this.requestTimeoutMs)
      frame = await readOneFrame(stream, { maxFrameBytes: MAX_WEIGHTS_FRAME_BYTES, signal: AbortSignal.any([signal, timeout]) })
    } catch (err) {
      // a bad length prefix can be answered; a dead, reset or silent stream cannot
      if (err instanceof FrameTooLargeError || err instanceof MalformedFrameError) throw new Refusal(WEIGHTS_ERROR_CODES.badRequest, err.message)
      throw err
    }
    if (frame === undefined) return undefined
    let msg: WeightsMessage
    try {
      msg = decodeWeightsMessage(frame)
    } catch (err) {
      throw new Refusal(WEIGHTS_ERROR_CODES.badRequest, `undecodable request: ${(err as Error).message}`)
    }
    if (msg.kind !== 'request') throw new Refusal(WEIGHTS_ERROR_CODES.badRequest, `expected a request, got a ${msg.kind} message`)
    return msg
  }

  private async send (stream: Stream, req: WeightsRequest, from: string, signal: AbortSignal): Promise<void> {
    const snapshot = await this.snapshot(req)
    try {
      await this.sendSnapshot(stream, req, snapshot, from, signal)
    } finally {
      snapshot.release?.()
    }
  }

  private async sendSnapshot (stream: Stream, req: WeightsRequest, snapshot: WeightsSnapshot, from: string, signal: AbortSignal): Promise<void> {
    const entries = selectTensors(snapshot, req)
    const manifest = await this.manifest(req.stage, snapshot.iteration, entries, signal)
    let manifestFrame: Uint8Array
    try {
      manifestFrame = encodeWeightsMessage(manifest)
    } catch (err) {
      throw new Refusal(WEIGHTS_ERROR_CODES.internal, `cannot describe stage ${req.stage} iteration ${snapshot.iteration}: ${(err as Error).message}`)
    }
    log('sending stage %d iteration %d to %s: %d tensors, %d bytes', req.stage, snapshot.iteration, from, entries.length, manifest.totalBytes)

    // a reader that stops taking data for stallTimeoutMs loses the stream
    const stall = new StallTimer(this.stallTimeoutMs, () => new Error(`puller ${from} took nothing for ${this.stallTimeoutMs} ms`))
    const writeSignal = AbortSignal.any([signal, stall.signal])
    try {
      await writeFrame(stream, manifestFrame, writeSignal)
      let chunkNo = 0
      for (let index = 0; index < entries.length; index++) {
        const bytes = tensorBytes(entries[index][1])
        for (let offset = 0; offset < bytes.byteLength; offset += this.chunkBytes) {
          let data = bytes.subarray(offset, Math.min(offset + this.chunkBytes, bytes.byteLength))
          if (chunkNo === this.corruptChunk) {
            // fault injection: flip the lowest mantissa bit of the first element (stays finite)
            data = Uint8Array.from(data)
            data[0] ^= 0x01
          }
          stall.touch()
          await writeFrame(stream, chunkFrameParts(index, offset, data), writeSignal)
          this.counters.bytes += data.byteLength
          chunkNo++
        }
      }
      stall.touch()
      await writeFrame(stream, encodeWeightsMessage({ kind: 'end', totalBytes: manifest.totalBytes }), writeSignal)
      await endFrames(stream, writeSignal)
    } finally {
      stall.clear()
    }
  }

  private async snapshot (req: WeightsRequest): Promise<WeightsSnapshot> {
    let snapshot: WeightsSnapshot | undefined
    try {
      snapshot = await this.provider.snapshot(req.stage, req.minIteration, req.includeOptimizer)
    } catch (err) {
      log.error('snapshot of stage %d failed: %s', req.stage, (err as Error).message)
      throw new Refusal(WEIGHTS_ERROR_CODES.internal, `snapshot of stage ${req.stage} failed: ${(err as Error).message}`)
    }
    if (snapshot == null || !(snapshot.iteration >= req.minIteration)) {
      snapshot?.release?.()
      const have = snapshot == null ? 'none' : `iteration ${snapshot.iteration}`
      throw new Refusal(WEIGHTS_ERROR_CODES.iterationUnavailable, `no snapshot of stage ${req.stage} of iteration >= ${req.minIteration} (have ${have})`)
    }
    return snapshot
  }

  /** Builds the manifest; hashes tensors not in the cache, yielding between them so other streams progress. */
  private async manifest (stage: number, iteration: number, entries: Array<[string, HostTensor]>, signal: AbortSignal): Promise<WeightsManifest> {
    const key = `${stage}@${iteration}`
    let cache: Map<string, number> | undefined
    if (this.cacheChecksums) {
      // least recently used first: an iteration pulled again moves to the back
      cache = this.checksums.get(key) ?? new Map<string, number>()
      this.checksums.delete(key)
      this.checksums.set(key, cache)
      while (this.checksums.size > CHECKSUM_CACHE_ITERATIONS) this.checksums.delete(this.checksums.keys().next().value as string)
    }
    const tensors: TensorInfo[] = []
    let totalBytes = 0
    for (const [name, t] of entries) {
      const dtype = HOST_TO_WIRE[t.dtype]
      const want = t.dtype === 'F32' ? Float32Array : Int32Array
      const elements = t.shape.reduce((a, b) => a * b, 1)
      if (dtype === undefined || !(t.data instanceof want) || t.data.length !== elements) {
        throw new Refusal(WEIGHTS_ERROR_CODES.internal, `tensor ${name} of the snapshot is inconsistent (dtype ${String(t.dtype)}, shape [${t.shape.join(', ')}], ${t.data?.length} elements)`)
      }
      let crc = cache?.get(name)
      if (crc === undefined) {
        signal.throwIfAborted()
        crc = tensorCrc(tensorBytes(t))
        cache?.set(name, crc)
        if (t.data.byteLength >= 1024 * 1024) await new Promise(resolve => setImmediate(resolve))
      }
      tensors.push({ name, dtype, shape: [...t.shape], byteLength: t.data.byteLength, crc32: crc })
      totalBytes += t.data.byteLength
    }
    return { kind: 'manifest', stage, iteration, tensors, totalBytes }
  }

  private async refuse (stream: Stream, from: string, refusal: Refusal, signal: AbortSignal): Promise<void> {
    this.counters.refused++
    log('refusing %s: %s %s', from, refusal.wireCode, refusal.message)
    try {
      const frame = encodeWeightsMessage({ kind: 'error', code: refusal.wireCode, message: clipReason(refusal.message) })
      const s = AbortSignal.any([signal, AbortSignal.timeout(this.stallTimeoutMs)])
      await writeFrame(stream, frame, s)
      await endFrames(stream, s)
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  /**
   * We are done writing; the puller closes its end when it has read everything. One that never does
   * would pin the stream, so reset it after the stall timeout.
   */
  private lingerThenAbort (stream: Stream): void {
    if (stream.status !== 'open') return
    const timer = setTimeout(() => { if (stream.status === 'open') stream.abort(new Error('puller never closed its end')) }, this.stallTimeoutMs)
    timer.unref()
    stream.addEventListener('close', () => { clearTimeout(timer) }, { once: true })
  }

  /** A transfer slot: true at once or after queueing, false if the queue is full or the wait timed out. */
  private async acquire (signal: AbortSignal): Promise<boolean> {
    if (this.running < this.maxConcurrent) {
      this.running++
      return true
    }
    if (this.waiting.length >= this.maxQueued) return false
    return await new Promise<boolean>(resolve => {
      const finish = (granted: boolean): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', onAbort)
        const i = this.waiting.indexOf(finish)
        if (i >= 0) this.waiting.splice(i, 1)
        if (granted) this.running++
        resolve(granted)
      }
      const onAbort = (): void => { finish(false) }
      const timer = setTimeout(onAbort, this.stallTimeoutMs)
      signal.addEventListener('abort', onAbort)
      this.waiting.push(finish)
    })
  }

  private release (): void {
    this.running--
    this.waiting[0]?.(true)
  }
}

/** The snapshot's tensors in their order, restricted to the requested names (all of them must exist). */
function selectTensors (snapshot: WeightsSnapshot, req: WeightsRequest): Array<[string, HostTensor]> {
  const all = [...snapshot.tensors]
  if (req.names.length === 0) return all
  const unknown = req.names.filter(n => !snapshot.tensors.has(n))
  if (unknown.length > 0) {
    const scope = req.includeOptimizer ? '' : ' (optimizer state not requested)'
    throw new Refusal(WEIGHTS_ERROR_CODES.unknownTensor, `stage ${req.stage} iteration ${snapshot.iteration} has no tensor ${listNames(unknown)}${scope}`)
  }
  const wanted = new Set(req.names)
  return all.filter(([name]) => wanted.has(name))
}

function positiveInt (name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${name} must be a positive integer, got ${v}`)
  return v
}

function nonNegativeInt (name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new ConfigError(`${name} must be a non-negative integer, got ${v}`)
  return v
}

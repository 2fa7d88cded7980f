/**
 * Destination memory for fetched tensors, with its pages faulted in on a helper thread.
 *
 * A new typed array is backed by fresh zero pages: the first write to each 4 KiB page traps into the
 * kernel, which then allocates and zeroes it. For a fetch that is a fault every 4 KiB of received
 * data, on the one thread that also decrypts and reassembles the stream: measured here at ~100 ms
 * per 256 MB quiet and up to ~180 ms under load, a fifth of the receiver's CPU time. Shared memory
 * lets a helper thread take those faults instead, on the other core, while the receiver works on
 * earlier tensors. The helper writes a zero into each page of a buffer nobody else touches yet (the
 * receiver waits for it before its first write), so there is no race on the contents.
 *
 * Used for tensors of at least PREFAULT_MIN_BYTES; smaller ones are not worth a round trip. If the
 * helper cannot start, buffers are returned as they are (the receiver then takes the faults).
 */
import { Worker } from 'node:worker_threads'
import { createLog } from '../../common/index.js'

const log = createLog('weights:prefault')

/** Smaller tensors get plain memory: a round trip to the helper costs more than their faults. */
export const PREFAULT_MIN_BYTES = 256 * 1024

/** Linux and macOS on x86-64 and arm64 map memory in pages of at least 4 KiB. */
const PAGE_BYTES = 4096

// Plain CommonJS so the helper needs no loader (it runs the same under tsx and from dist/).
const HELPER_SOURCE = `
const { parentPort } = require('node:worker_threads')
parentPort.on('message', ({ id, buffer }) => {
  const bytes = new Uint8Array(buffer)
  for (let i = 0; i < bytes.length; i += ${PAGE_BYTES}) bytes[i] = 0
  parentPort.postMessage(id)
})
`

let helper: Worker | undefined
let broken = false
let nextId = 0
const waiting = new Map<number, () => void>()

function start (): Worker | undefined {
  if (helper !== undefined || broken) return helper
  try {
    const w = new Worker(HELPER_SOURCE, { eval: true, name: 'spotpipe-prefault' })
    w.on('message', (id: number) => {
      const done = waiting.get(id)
      waiting.delete(id)
      done?.()
    })
    w.on('error', err => { stop(`helper failed: ${err.message}`) })
    w.on('exit', code => { if (helper === w) stop(`helper exited with code ${code}`) })
    w.unref() // never keeps the process alive
    helper = w
  } catch (err) {
    stop(`cannot start the helper thread: ${(err as Error).message}`)
  }
  return helper
}

/** Gives up on the helper: pending buffers are released as they are and later ones are not sent. */
function stop (why: string): void {
  log.error('page prefaulting off: %s', why)
  broken = true
  helper = undefined
  for (const done of waiting.values()) done()
  waiting.clear()
}

/**
 * A zeroed buffer of `byteLength` bytes and a promise that resolves when its pages are resident.
 * Do not write to it before the promise resolves (reading is fine: it is all zeros either way).
 */
export function prefaultedBuffer (byteLength: number): { buffer: ArrayBufferLike, ready: Promise<void> } {
  if (byteLength < PREFAULT_MIN_BYTES) return { buffer: new ArrayBuffer(byteLength), ready: Promise.resolve() }
  const w = start()
  if (w === undefined) return { buffer: new ArrayBuffer(byteLength), ready: Promise.resolve() }
  const buffer = new SharedArrayBuffer(byteLength)
  const id = nextId++
  const ready = new Promise<void>(resolve => { waiting.set(id, resolve) })
  w.postMessage({ id, buffer })
  return { buffer, ready }
}

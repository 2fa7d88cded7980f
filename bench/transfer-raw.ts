/**
 * bench:transfer-raw — the baseline the libp2p transfer bench is compared with: N MB (default 256)
 * between two processes over a plain `node:net` socket on 127.0.0.1, sealed with node:crypto's
 * chacha20-poly1305 (the cipher noise uses) in 64 KiB records, every record opened and its tag
 * verified by the receiver. MB = 2^20 bytes throughout.
 *
 * Record on the wire: 4-byte big-endian plaintext length (also the AAD), ciphertext, 16-byte tag.
 * Nonce: 4 zero bytes + 8-byte big-endian record counter, kept independently by both ends, so a
 * dropped, repeated or reordered record fails verification.
 *
 * The receiver is a child process (this file with --transfer-raw-receiver, over an IPC channel); it is killed
 * whatever happens, and exits by itself if the parent dies.
 *
 *   npx tsx bench/transfer-raw.ts [MB]
 */
import '../common/polyfill.js'
import { fork, type ChildProcess } from 'node:child_process'
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createConnection, createServer, type Socket } from 'node:net'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { exitOnFatalError } from '../common/index.js'

const MB = 1024 * 1024
const RECORD_BYTES = 64 * 1024
const HEADER_BYTES = 4
const TAG_BYTES = 16
const TIMEOUT_MS = 300_000
const CHILD_FLAG = '--transfer-raw-receiver'

type ToChild = { type: 'start', key: string, totalBytes: number }
type FromChild = { type: 'ready', port: number } | { type: 'done', bytes: number, records: number } | { type: 'error', message: string }

function nonce (counter: number): Buffer {
  const n = Buffer.alloc(12)
  n.writeBigUInt64BE(BigInt(counter), 4)
  return n
}

/** Seals one record: header (length, authenticated) + ciphertext + tag. */
function seal (key: Buffer, counter: number, plaintext: Buffer): Buffer {
  const header = Buffer.alloc(HEADER_BYTES)
  header.writeUInt32BE(plaintext.byteLength)
  const cipher = createCipheriv('chacha20-poly1305', key, nonce(counter), { authTagLength: TAG_BYTES })
  cipher.setAAD(header, { plaintextLength: plaintext.byteLength })
  const body = cipher.update(plaintext)
  cipher.final()
  return Buffer.concat([header, body, cipher.getAuthTag()])
}

/** Opens one record's ciphertext; throws if the tag does not verify. */
function open (key: Buffer, counter: number, header: Buffer, body: Buffer, tag: Buffer): Buffer {
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce(counter), { authTagLength: TAG_BYTES })
  decipher.setAAD(header, { plaintextLength: body.byteLength })
  decipher.setAuthTag(tag)
  const plain = decipher.update(body)
  decipher.final() // throws "Unsupported state or unable to authenticate data" on a bad tag
  return plain
}

/**
 * Sends `totalBytes` sealed over loopback TCP to a child process that opens and verifies every
 * record; resolves with the throughput in MB/s (2^20 bytes), timed from the first write to the
 * receiver's confirmation that the last record verified.
 */
export async function measureSealedRawTransfer (totalBytes = 256 * MB): Promise<number> {
  if (!Number.isSafeInteger(totalBytes) || totalBytes <= 0) throw new RangeError(`totalBytes must be a positive integer, got ${totalBytes}`)
  const key = randomBytes(32)
  const root = fileURLToPath(new URL('..', import.meta.url))
  const child = fork(fileURLToPath(import.meta.url), [CHILD_FLAG], {
    cwd: root,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const killChild = (): void => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }
  process.once('exit', killChild)
  const timer = setTimeout(killChild, TIMEOUT_MS)
  let socket: Socket | undefined
  try {
    const messages = childMessages(child)
    child.send({ type: 'start', key: key.toString('hex'), totalBytes } satisfies ToChild)
    const ready = await messages.next('ready')
    socket = createConnection({ host: '127.0.0.1', port: ready.port })
    await once(socket, 'connect')
    let socketError: Error | undefined
    socket.on('error', (err) => { socketError ??= err }) // e.g. EPIPE after the receiver gave up
    socket.setNoDelay(true)

    const source = randomBytes(RECORD_BYTES)
    const t0 = performance.now()
    const done = messages.next('done')
    done.catch(() => {}) // observed below; don't let an early failure go unhandled meanwhile
    let counter = 0
    try {
      for (let sent = 0; sent < totalBytes; sent += RECORD_BYTES) {
        if (socketError != null) throw socketError
        const n = Math.min(RECORD_BYTES, totalBytes - sent)
        if (!socket.write(seal(key, counter++, source.subarray(0, n)))) {
          await Promise.race([once(socket, 'drain'), done])
        }
      }
      socket.end()
    } catch (err) {
      // a broken socket usually means the receiver rejected a record: prefer its explanation
      await Promise.race([done, new Promise(resolve => setTimeout(resolve, 2000))])
      throw err
    }
    const result = await done
    const seconds = (performance.now() - t0) / 1000
    if (result.bytes !== totalBytes || result.records !== counter) {
      throw new Error(`receiver got ${result.bytes} bytes in ${result.records} records, sent ${totalBytes} in ${counter}`)
    }
    return totalBytes / MB / seconds
  } finally {
    clearTimeout(timer)
    socket?.destroy()
    killChild()
    process.removeListener('exit', killChild)
  }
}

/** Typed access to the child's IPC messages; rejects on an error report, early exit or timeout. */
function childMessages (child: ChildProcess): { next: <T extends FromChild['type']>(type: T) => Promise<Extract<FromChild, { type: T }>> } {
  const queue: FromChild[] = []
  let waiter: { type: string, resolve: (m: FromChild) => void, reject: (e: Error) => void } | undefined
  let failure: Error | undefined
  const fail = (err: Error): void => { failure ??= err; waiter?.reject(failure); waiter = undefined }
  child.on('message', (m: FromChild) => {
    if (m.type === 'error') { fail(new Error(`receiver: ${m.message}`)); return }
    if (waiter?.type === m.type) { waiter.resolve(m); waiter = undefined } else queue.push(m)
  })
  child.on('exit', (code, signal) => { fail(new Error(`receiver exited early (${signal ?? `code ${code}`})`)) })
  child.on('error', fail)
  return {
    next: async <T extends FromChild['type']>(type: T) => await new Promise<Extract<FromChild, { type: T }>>((resolve, reject) => {
      const i = queue.findIndex(m => m.type === type)
      if (i >= 0) { resolve(queue.splice(i, 1)[0] as Extract<FromChild, { type: T }>); return }
      if (failure != null) { reject(failure); return }
      waiter = { type, resolve: m => { resolve(m as Extract<FromChild, { type: T }>) }, reject }
    })
  }
}

/** Child: accept one connection, open every record in order, report the totals. */
async function receiver (): Promise<void> {
  const send = (m: FromChild): void => { process.send?.(m) }
  process.on('disconnect', () => { process.exit(1) }) // the parent is gone
  const [start] = await once(process, 'message') as [ToChild]
  const key = Buffer.from(start.key, 'hex')
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address == null || typeof address === 'string') throw new Error('no TCP address')
  send({ type: 'ready', port: address.port })
  const [socket] = await once(server, 'connection') as [Socket]
  server.close()

  let pending: Buffer = Buffer.alloc(0)
  let counter = 0
  let bytes = 0
  try {
    for await (const chunk of socket as AsyncIterable<Buffer>) {
      pending = pending.byteLength === 0 ? chunk : Buffer.concat([pending, chunk])
      let at = 0
      while (pending.byteLength - at >= HEADER_BYTES) {
        const n = pending.readUInt32BE(at)
        if (n === 0 || n > RECORD_BYTES) throw new Error(`record ${counter} claims ${n} bytes`)
        const end = at + HEADER_BYTES + n + TAG_BYTES
        if (pending.byteLength < end) break
        const header = pending.subarray(at, at + HEADER_BYTES)
        const body = pending.subarray(at + HEADER_BYTES, at + HEADER_BYTES + n)
        const tag = pending.subarray(end - TAG_BYTES, end)
        bytes += open(key, counter, header, body, tag).byteLength
        counter++
        at = end
      }
      pending = pending.subarray(at)
    }
    if (pending.byteLength > 0) throw new Error(`stream ended inside record ${counter} (${pending.byteLength} bytes left)`)
    if (bytes !== start.totalBytes) throw new Error(`expected ${start.totalBytes} bytes, got ${bytes}`)
    send({ type: 'done', bytes, records: counter })
  } catch (err) {
    send({ type: 'error', message: `record ${counter}: ${(err as Error).message}` })
  }
  process.disconnect()
}

async function main (): Promise<void> {
  const mb = Number(process.argv[2] ?? 256)
  if (!(mb > 0)) throw new Error(`usage: transfer-raw.ts [MB > 0], got ${process.argv[2]}`)
  const totalBytes = Math.round(mb * MB)
  const mbps = await measureSealedRawTransfer(totalBytes)
  console.log(`raw TCP + chacha20-poly1305 (64 KiB records, every tag verified): ${mb} MB at ${mbps.toFixed(1)} MB/s`)
  console.log(`bench: raw_sealed_mbps=${mbps.toFixed(1)}`)
}

// only when run directly: a bench importing measureSealedRawTransfer must not start either role
const isMain = process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href
if (isMain && process.argv.includes(CHILD_FLAG)) await receiver()
else if (isMain) { exitOnFatalError(); await main() }

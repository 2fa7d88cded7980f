/**
 * Peer identity and swarm-key files.
 *
 * Identity: an Ed25519 private key, protobuf-marshalled (libp2p's key format) and stored as one
 * line of base64 (raw protobuf bytes are accepted on load too). Swarm key: the standard
 * `/key/swarm/psk/1.0.0/` + `/base16/` + 64 hex digits text of @libp2p/pnet and IPFS; spotpipe
 * uses its 32 bytes as the cluster secret (create-node.ts clusterPrologue), not for pnet.
 * Both are secrets: written with mode 0600, atomically (temp file, fsync, rename) so a crash never
 * leaves a half-written key behind.
 */
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { generateKey } from '@libp2p/pnet'
import type { Ed25519PrivateKey, PrivateKey } from '@libp2p/interface'
import { createLog } from '../../common/index.js'
import { IdentityFileError, SwarmKeyError, type KeyFileProblem } from './errors.js'

const log = createLog('transport:identity')

const SWARM_KEY_TAG = '/key/swarm/psk/1.0.0/'
const SWARM_KEY_CODEC = '/base16/'
/** Bytes in a swarm key file produced by generateSwarmKey (tag, codec, 64 hex digits, 2 newlines). */
export const SWARM_KEY_FILE_BYTES = 95

// ---------------------------------------------------------------------------------------------
// identity

/** Reads the identity file at `path`. Throws IdentityFileError if it is missing or malformed. */
export async function loadIdentity (path: string): Promise<Ed25519PrivateKey> {
  const bytes = await readKeyFile(path, (problem, detail, cause) => new IdentityFileError(path, problem, detail, { cause }))
  const key = decodeIdentity(bytes, path)
  await warnIfLoose(path)
  return key
}

/** Writes `key` to `path` (mode 0600, atomic replace). */
export async function saveIdentity (path: string, key: PrivateKey): Promise<void> {
  const text = Buffer.from(privateKeyToProtobuf(key)).toString('base64') + '\n'
  try {
    await writeFileAtomic(path, Buffer.from(text, 'utf8'), false)
  } catch (err) {
    throw new IdentityFileError(path, 'unwritable', `cannot write: ${errMessage(err)}`, { cause: err })
  }
}

/**
 * Loads the identity at `path`, or creates a fresh Ed25519 one there if the file does not exist.
 * A malformed file is an error, never silently replaced (that would change the peer id). Two
 * processes racing to create the same file end up with the same key: creation never clobbers.
 */
export async function loadOrCreateIdentity (path: string): Promise<Ed25519PrivateKey> {
  try {
    return await loadIdentity(path)
  } catch (err) {
    if (!(err instanceof IdentityFileError) || err.problem !== 'missing') throw err
  }
  const key = await generateKeyPair('Ed25519')
  const text = Buffer.from(privateKeyToProtobuf(key)).toString('base64') + '\n'
  let created: boolean
  try {
    created = await writeFileAtomic(path, Buffer.from(text, 'utf8'), true)
  } catch (err) {
    throw new IdentityFileError(path, 'unwritable', `cannot create: ${errMessage(err)}`, { cause: err })
  }
  if (!created) return await loadIdentity(path)
  log('created identity %s', path)
  return key
}

function decodeIdentity (bytes: Uint8Array, path: string): Ed25519PrivateKey {
  if (bytes.byteLength === 0) throw new IdentityFileError(path, 'malformed', 'file is empty')
  let proto: Uint8Array
  if (bytes[0] === 0x08) {
    // raw protobuf (field 1, varint key type); base64 text never starts with a control byte
    proto = bytes
  } else {
    const text = Buffer.from(bytes).toString('utf8').trim()
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) {
      throw new IdentityFileError(path, 'malformed', 'expected one line of base64 (a protobuf-marshalled private key)')
    }
    proto = Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64')
  }
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(proto)
  } catch (err) {
    throw new IdentityFileError(path, 'malformed', `not a protobuf-marshalled private key (${errMessage(err)})`, { cause: err })
  }
  if (key.type !== 'Ed25519') throw new IdentityFileError(path, 'malformed', `holds a ${key.type} key, expected Ed25519`)
  return key
}

async function warnIfLoose (path: string): Promise<void> {
  if (process.platform === 'win32') return
  try {
    const { mode } = await fs.stat(path)
    if ((mode & 0o077) !== 0) log.info(`warning: ${path} is accessible by group/others (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`)
  } catch {}
}

// ---------------------------------------------------------------------------------------------
// swarm key

/** A fresh swarm key in the pnet key-file format (what `swarmKey` / preSharedKey expect). */
export function generateSwarmKey (): Uint8Array {
  const key = new Uint8Array(SWARM_KEY_FILE_BYTES)
  generateKey(key)
  return key
}

/**
 * Validates a swarm key in the pnet key-file format and returns it canonicalised (lower-case hex,
 * `\n` line ends, no trailing newline). `source` only names the origin in error messages.
 */
export function parseSwarmKey (bytes: Uint8Array, source?: string): Uint8Array {
  const bad = (detail: string): SwarmKeyError => new SwarmKeyError(source, 'malformed', detail)
  if (bytes.byteLength === 0) throw bad('file is empty')
  const lines = Buffer.from(bytes).toString('utf8').split(/\r\n|\r|\n/).map(l => l.trim())
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  if (lines[0] !== SWARM_KEY_TAG) throw bad(`first line must be ${SWARM_KEY_TAG}`)
  if (lines[1] !== SWARM_KEY_CODEC) throw bad(`second line must be ${SWARM_KEY_CODEC} (the only supported encoding)`)
  if (lines.length !== 3 || !/^[0-9a-fA-F]{64}$/.test(lines[2])) throw bad('third line must be the key: 64 hex digits (32 bytes)')
  return new TextEncoder().encode(`${SWARM_KEY_TAG}\n${SWARM_KEY_CODEC}\n${lines[2].toLowerCase()}`)
}

/** The 32 secret bytes of a swarm key (validated as by parseSwarmKey). */
export function swarmKeySecret (bytes: Uint8Array, source?: string): Uint8Array {
  const text = new TextDecoder().decode(parseSwarmKey(bytes, source))
  return new Uint8Array(Buffer.from(text.slice(text.lastIndexOf('\n') + 1), 'hex'))
}

/** Reads and validates the swarm key file at `path`. Throws SwarmKeyError if missing or malformed. */
export async function loadSwarmKey (path: string): Promise<Uint8Array> {
  const bytes = await readKeyFile(path, (problem, detail, cause) => new SwarmKeyError(path, problem, detail, { cause }))
  return parseSwarmKey(bytes, path)
}

/**
 * Loads the swarm key at `path`, or writes a fresh one there if the file does not exist (`created`
 * says which). A malformed file is an error, never replaced; creation never clobbers a file another
 * process wrote first.
 */
export async function loadOrCreateSwarmKey (path: string): Promise<{ key: Uint8Array, created: boolean }> {
  try {
    return { key: await loadSwarmKey(path), created: false }
  } catch (err) {
    if (!(err instanceof SwarmKeyError) || err.problem !== 'missing') throw err
  }
  let created: boolean
  try {
    created = await writeFileAtomic(path, Buffer.concat([parseSwarmKey(generateSwarmKey()), Buffer.from('\n')]), true)
  } catch (err) {
    throw new SwarmKeyError(path, 'unwritable', `cannot create: ${errMessage(err)}`, { cause: err })
  }
  if (created) log('created swarm key %s', path)
  return { key: await loadSwarmKey(path), created }
}

/** Writes a swarm key to `path` (validated first; mode 0600, atomic replace). */
export async function saveSwarmKey (path: string, key: Uint8Array): Promise<void> {
  const canonical = parseSwarmKey(key)
  try {
    await writeFileAtomic(path, Buffer.concat([canonical, Buffer.from('\n')]), false)
  } catch (err) {
    throw new SwarmKeyError(path, 'unwritable', `cannot write: ${errMessage(err)}`, { cause: err })
  }
}

// ---------------------------------------------------------------------------------------------
// files

type FileErrorFactory = (problem: KeyFileProblem, detail: string, cause?: unknown) => Error

async function readKeyFile (path: string, fail: FileErrorFactory): Promise<Uint8Array> {
  try {
    return await fs.readFile(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw fail('missing', 'file not found', err)
    if (code === 'EISDIR') throw fail('unreadable', 'is a directory, expected a file', err)
    throw fail('unreadable', `cannot read: ${errMessage(err)}`, err)
  }
}

/**
 * Writes `data` next to `path` under a temporary name (mode 0600), fsyncs it, then moves it into
 * place. With `noClobber` an existing file is left alone and false is returned.
 */
async function writeFileAtomic (path: string, data: Uint8Array, noClobber: boolean): Promise<boolean> {
  const dir = dirname(path)
  await fs.mkdir(dir, { recursive: true })
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`)
  const fh = await fs.open(tmp, 'wx', 0o600)
  let placed = false
  try {
    try {
      await fh.chmod(0o600) // the umask may have narrowed it, never widen beyond 0600
      await fh.writeFile(data)
      await fh.sync()
    } finally {
      await fh.close()
    }
    if (noClobber) {
      try {
        await fs.link(tmp, path) // fails with EEXIST instead of replacing
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
        throw err
      }
    } else {
      await fs.rename(tmp, path)
    }
    placed = true
  } finally {
    if (!placed || noClobber) await fs.rm(tmp, { force: true })
  }
  await fsyncDir(dir)
  return true
}

async function fsyncDir (dir: string): Promise<void> {
  // makes the rename durable; not supported everywhere (e.g. Windows), so best effort
  let fh: fs.FileHandle | undefined
  try {
    fh = await fs.open(dir, 'r')
    await fh.sync()
  } catch {} finally {
    await fh?.close()
  }
}

function errMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

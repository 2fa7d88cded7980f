/**
 * `spotpipe keygen`: writes a fresh peer identity (Ed25519) and/or a swarm key, each mode 0600.
 * Existing files are left alone unless --force, and every target is checked before anything is
 * written, so a refused run never leaves one of two files behind. stdout carries only the peer id,
 * for scripts: `PEER_ID=$(spotpipe keygen --identity /etc/spotpipe/identity.key)`.
 */
import { promises as fs } from 'node:fs'
import { resolve } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { SpotpipeError } from '../../common/index.js'
import { createLog } from '../../common/index.js'
import { generateSwarmKey, saveIdentity, saveSwarmKey } from '../../net/index.js'
import { UsageError } from '../errors.js'
import { parseFlags } from '../flags.js'

const log = createLog('keygen')

const HELP = `usage: spotpipe keygen [--identity FILE] [--swarm-key FILE] [--force]

Writes a new peer identity and/or a new swarm key (at least one of the two; both are secrets,
written with mode 0600) and prints the new peer id.

  --identity FILE      write a new Ed25519 peer identity here; the peer id it gives goes to stdout
  --swarm-key FILE     write a new cluster secret here; copy this same file to every node
                       (spotpipe coordinator creates one itself when given no --swarm-key)
  --force              replace files that already exist (a new identity is a new peer id)
`

/** A key file is already there and --force was not given. */
export class KeyFileExistsError extends SpotpipeError {
  readonly path: string
  constructor (path: string) {
    super('ERR_FILE_EXISTS', `${path} already exists (pass --force to replace it)`)
    this.path = path
  }
}

export async function keygen (argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(argv, {
    identity: { type: 'string' },
    'swarm-key': { type: 'string' },
    force: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { process.stdout.write(HELP); return }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (keygen takes only flags)`)
  const identity = values.identity as string | undefined
  const swarmKey = values['swarm-key'] as string | undefined
  if (identity == null && swarmKey == null) throw new UsageError('give --identity FILE and/or --swarm-key FILE')
  if (identity === '' || swarmKey === '') throw new UsageError('file names must not be empty')
  if (identity != null && swarmKey != null && resolve(identity) === resolve(swarmKey)) throw new UsageError('--identity and --swarm-key must be different files')

  if (values.force !== true) {
    for (const path of [identity, swarmKey]) {
      if (path != null && await exists(path)) throw new KeyFileExistsError(path)
    }
  }
  // a check-then-write, not an atomic no-clobber create: two keygens racing on one path is not
  // a case worth the complexity (the write itself is atomic, so the file is never half-written)
  if (swarmKey != null) {
    await saveSwarmKey(swarmKey, generateSwarmKey())
    log.info(`wrote swarm key ${swarmKey}: copy it to every node of the cluster over a secure channel`)
  }
  if (identity != null) {
    const key = await generateKeyPair('Ed25519')
    await saveIdentity(identity, key)
    const id = peerIdFromPrivateKey(key).toString()
    log.info(`wrote identity ${identity}`)
    process.stdout.write(`${id}\n`)
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await fs.lstat(path)
    return true
  } catch {
    // ENOENT, or ENOTDIR/EACCES/...: then the write reports what is wrong with the path
    return false
  }
}

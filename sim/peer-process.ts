/**
 * Stage peers as OS processes: the command line that runs the `spotpipe` CLI, starting
 * `spotpipe peer` and learning its peer id from the line it prints once it listens, and killing
 * what was started. Local-cluster mode (cluster-mode.ts), the cluster benchmarks (bench/harness.ts)
 * and the tests (test/helpers) all start peers this way.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { loadOrCreateSwarmKey } from '../net/index.js'

/**
 * Node arguments that run the `spotpipe` CLI: the build, or the TypeScript sources under tsx.
 * Running from the sources (the tests, the benchmarks), the build is used when it is at least as new
 * as every source file (npm ci builds it; `npm test` type-checks but does not), since a process
 * under tsx takes 2-4 s longer to start on a 2-core machine and the tests start hundreds.
 * SPOTPIPE_FROM_SOURCES=1 always runs the sources.
 */
export function spotpipeArgs (): string[] {
  const here = fileURLToPath(import.meta.url)
  const built = fileURLToPath(new URL(here.endsWith('.ts') ? '../dist/cli/main-entry.js' : '../cli/main-entry.js', import.meta.url))
  if (!here.endsWith('.ts')) return [built]
  buildIsFresh ??= process.env.SPOTPIPE_FROM_SOURCES !== '1' && freshBuild(fileURLToPath(new URL('..', import.meta.url)), built)
  // tsx's entry (its package.json "exports": "./dist/loader.mjs") by path, so a child started in
  // another folder (a test's temporary one) finds it
  return buildIsFresh ? [built] : ['--import', new URL('../node_modules/tsx/dist/loader.mjs', import.meta.url).href, fileURLToPath(new URL('../cli/main-entry.ts', import.meta.url))]
}

let buildIsFresh: boolean | undefined

/** Whether `entry` (of a build of `root`) is at least as new as every TypeScript source in `folders` of it. */
export function freshBuild (root: string, entry: string, folders: readonly string[] = BUILT_FOLDERS): boolean {
  let built: number
  try { built = statSync(entry).mtimeMs } catch { return false }
  const newest = (dir: string): number => {
    let t = 0
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      if (e.isDirectory()) t = Math.max(t, newest(p))
      else if (e.name.endsWith('.ts')) t = Math.max(t, statSync(p).mtimeMs)
    }
    return t
  }
  return folders.every(f => newest(join(root, f)) <= built)
}

/** The folders tsconfig.json compiles into dist/. */
const BUILT_FOLDERS = ['common', 'protocols', 'model', 'net', 'node', 'coordinator', 'sim', 'cli', 'bench']

/** What a peer prints on stdout once it listens: `peer <multiaddr>`; group 1 is the multiaddr, 2 the peer id. */
export const PEER_READY = /^peer (\S+\/p2p\/(\S+))/

/**
 * How a launched peer gets into its cluster: the cluster secret's file (what the coordinator was
 * given as swarmKey), or 'open' for an open cluster.
 */
export type PeerAccess = { swarmKeyFile: string } | 'open'

/** A fresh cluster secret in `dir`/swarm.key (mode 0600), for a coordinator and the peers it launches. */
export async function createClusterSecret (dir: string): Promise<{ swarmKey: Uint8Array, access: { swarmKeyFile: string } }> {
  const swarmKeyFile = join(dir, 'swarm.key')
  const { key } = await loadOrCreateSwarmKey(swarmKeyFile)
  return { swarmKey: key, access: { swarmKeyFile } }
}

/** The flags that give a `spotpipe` command (peer, status, top) this access. */
export function accessArgs (access: PeerAccess): string[] {
  return access === 'open' ? ['--open'] : ['--swarm-key', access.swarmKeyFile]
}

/** `spotpipe` arguments of a stage peer joining `cluster` through `coordinator`, on the wasm backend. */
export function peerArgs (cluster: string, coordinator: string, access: PeerAccess): string[] {
  return ['peer', '--cluster', cluster, '--coordinator', coordinator, '--backend', 'wasm', ...accessArgs(access)]
}

export interface PeerProcessOptions {
  cluster: string
  /** The coordinator's multiaddr. */
  coordinator: string
  access: PeerAccess
  /** Where the peer's stderr goes. @default 'ignore' */
  stderr?: 'ignore' | 'inherit'
}

export interface PeerProcess {
  child: ChildProcess
  /** Resolves with the peer id once the peer listens; rejects if it exits first. */
  ready: Promise<string>
}

/** Starts `spotpipe peer` (peerArgs) with quiet logs. */
export function spawnPeer (opts: PeerProcessOptions): PeerProcess {
  const child = spawn(process.execPath, [...spotpipeArgs(), ...peerArgs(opts.cluster, opts.coordinator, opts.access)], {
    stdio: ['ignore', 'pipe', opts.stderr ?? 'ignore'],
    env: { ...process.env, SPOTPIPE_QUIET: '1' }
  })
  spawned.add(child)
  const ready = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (l) => {
      const m = PEER_READY.exec(l)
      if (m != null) resolve(m[2])
    })
    child.once('exit', (code) => { spawned.delete(child); reject(new Error(`a peer exited (${String(code)}) before it started`)) })
  })
  return { child, ready }
}

/** Every peer spawnPeer started that has not exited. */
const spawned = new Set<ChildProcess>()

/**
 * SIGKILLs every peer spawnPeer started in this process that is still running. A run that was
 * abandoned (a test's timeout: its own cleanup never runs) leaves none behind; the tests call it
 * after each test, and this process calls it as it exits.
 */
export async function killSpawnedPeers (): Promise<void> { await killAndWait(spawned) }
process.once('exit', () => { for (const c of spawned) c.kill('SIGKILL') })

/** SIGKILLs every process in `children` still running and waits until each has exited. */
export async function killAndWait (children: Iterable<ChildProcess>): Promise<void> {
  await Promise.all([...children].map(async c => await new Promise<void>(resolve => {
    if (c.exitCode != null || c.signalCode != null) { resolve(); return }
    c.once('exit', () => { resolve() })
    c.kill('SIGKILL')
  })))
}

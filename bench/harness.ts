/**
 * Shared by the cluster benchmarks: a coordinator in this process and peers as child processes
 * (`spotpipe peer`), every child killed on exit.
 */
import '../common/polyfill.js'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Coordinator, type CoordinatorInit } from '../coordinator/index.js'
import { exitOnFatalError, tuneHeapGrowth } from '../common/index.js'
import { createClusterSecret, spawnPeer, type PeerAccess } from '../sim/peer-process.js'

// the benchmarks' coordinator runs in this process: tuned as `spotpipe coordinator` is
tuneHeapGrowth()
// a crash, even inside tfjs-wasm's own error handlers, still runs the exit hook below
exitOnFatalError()

const children = new Set<ChildProcess>()
const secretDirs = new Set<string>()

export function killChildren (): void { for (const c of children) if (c.exitCode == null) c.kill('SIGKILL') }
process.on('exit', () => {
  killChildren()
  for (const d of secretDirs) rmSync(d, { recursive: true, force: true })
})
process.on('SIGINT', () => { killChildren(); process.exit(130) })

/** A cluster secret for a benchmark's coordinator (swarmKey) and its peers (access); deleted on exit. */
export async function benchSecret (): Promise<{ swarmKey: Uint8Array, access: { swarmKeyFile: string } }> {
  const dir = mkdtempSync(join(tmpdir(), 'spotpipe-bench-'))
  secretDirs.add(dir)
  return await createClusterSecret(dir)
}

export interface BenchPeer { child: ChildProcess, peerId: string }

export async function startPeer (coordAddr: string, cluster: string, access: PeerAccess): Promise<BenchPeer> {
  const { child, ready } = spawnPeer({ cluster, coordinator: coordAddr, access, stderr: 'inherit' })
  children.add(child)
  child.once('exit', () => { children.delete(child) })
  return { child, peerId: await ready }
}

/** A private cluster: a coordinator here and `peers` peer processes, all holding a fresh secret. */
export async function startCluster (init: CoordinatorInit, peers: number): Promise<{ coord: Coordinator, peers: BenchPeer[] }> {
  const secret = await benchSecret()
  const coord = new Coordinator({ ...init, swarmKey: secret.swarmKey })
  await coord.start()
  const list = await Promise.all(Array.from({ length: peers }, async () => await startPeer(coord.addrs[0], init.clusterId, secret.access)))
  await coord.assignInitial({ timeoutMs: 300_000 })
  return { coord, peers: list }
}

export function holder (coord: Coordinator, peers: BenchPeer[], stage: number): BenchPeer {
  const id = coord.assignment?.stages[stage].peers[0]
  const p = peers.find(x => x.peerId === id)
  if (p == null) throw new Error(`nobody holds stage ${stage}`)
  return p
}

export async function stopCluster (coord: Coordinator): Promise<void> {
  killChildren()
  await coord.stop()
}

/**
 * A coordinator in the test process and peers as real child processes (`spotpipe peer`), so tests
 * can SIGKILL or SIGTERM a peer and watch the coordinator recover. Every process is killed when
 * the test ends (killAll in afterEach).
 *
 * The cluster is private, as the CLI makes it by default: a fresh secret in a temporary swarm-key
 * file that the peers get with --swarm-key (`accessArgs` gives other commands, e.g. spotpipe
 * status, the same flags); `{ open: true }` makes an open cluster instead.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { Coordinator, type CoordinatorInit } from '../../coordinator/index.js'
import { fetchWeights } from '../../net/index.js'
import type { TensorSet } from '../../model/safetensors.js'
import { generateSwarmKey, saveSwarmKey } from '../../net/index.js'
import { accessArgs, peerArgs, PEER_READY, type PeerAccess } from '../../sim/peer-process.js'
import { spotpipe, type Proc } from './procs.js'

export interface TestPeer { proc: Proc, peerId: string }

export class TestCluster {
  coord: Coordinator
  peers: TestPeer[] = []
  /** How peers get in: the secret's file, or 'open'. */
  readonly access: PeerAccess
  /** The cluster secret (undefined when open). */
  readonly swarmKey?: Uint8Array
  private readonly secretDir?: string

  constructor (init: CoordinatorInit, options: { open?: boolean } = {}) {
    if (options.open === true) {
      this.access = 'open'
    } else {
      this.secretDir = mkdtempSync(join(tmpdir(), 'spotpipe-secret-'))
      this.swarmKey = generateSwarmKey()
      this.access = { swarmKeyFile: join(this.secretDir, 'swarm.key') }
    }
    // Peers on this shared 2-core machine can block their event loop for seconds while building a
    // stage; killed peers are detected through their closed connection, not the heartbeat timeout.
    this.coord = new Coordinator({ heartbeatTimeoutMs: 10_000, ...init, swarmKey: this.swarmKey })
  }

  /** The flags that let another spotpipe command (status, top, peer) into this cluster. */
  accessArgs (): string[] {
    return accessArgs(this.access)
  }

  /** Starts the coordinator and `peers` peer processes (with `env` added to their environment). */
  async start (peers: number, env: Record<string, string> = {}): Promise<void> {
    await this.startCoordinator()
    await Promise.all(Array.from({ length: peers }, async () => await this.addPeer([], env)))
  }

  /** Writes the cluster secret for the peers, then starts the coordinator (peers come with addPeer). */
  async startCoordinator (): Promise<void> {
    if (this.swarmKey != null && this.access !== 'open') await saveSwarmKey(this.access.swarmKeyFile, this.swarmKey)
    await this.coord.start()
  }

  async addPeer (extra: string[] = [], env: Record<string, string> = {}): Promise<TestPeer> {
    const proc = spotpipe([...peerArgs(this.coord.init.clusterId, this.coord.addrs[0], this.access), ...extra], env)
    const [, , peerId] = await proc.waitFor(PEER_READY)
    const p = { proc, peerId }
    this.peers.push(p)
    return p
  }

  /** The peer process holding `stage` in the current assignment. */
  holder (stage: number): TestPeer {
    const id = this.coord.assignment?.stages[stage]?.peers[0]
    const p = this.peers.find(x => x.peerId === id)
    if (p == null) throw new Error(`no test peer holds stage ${stage}`)
    return p
  }

  /** Pulls a stage's tensors from the peer holding it (through the coordinator's libp2p node). */
  async weightsOf (stage: number, includeOptimizer = false, peerId = this.holder(stage).peerId, names?: string[]): Promise<{ iteration: number, tensors: TensorSet }> {
    const r = await fetchWeights(this.coord.node, { donors: [{ peer: peerIdFromString(peerId) }], stage, includeOptimizer, names, timeoutMs: 30_000 })
    return { iteration: r.iteration, tensors: r.tensors }
  }

  async stop (): Promise<void> {
    try {
      await this.coord.stop()
    } finally {
      if (this.secretDir != null) rmSync(this.secretDir, { recursive: true, force: true })
    }
  }
}

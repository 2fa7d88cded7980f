/**
 * A coordinator in the test process and peers as real child processes (`spotpipe peer`), so tests
 * can SIGKILL or SIGTERM a peer and watch the coordinator recover. Every process is killed when
 * the test ends (killAll in afterEach).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { Coordinator, type CoordinatorInit } from '../../coordinator/index.js'
import { fetchWeights } from '../../node/weights/index.js'
import type { TensorSet } from '../../model/safetensors.js'
import { peerArgs, PEER_READY } from '../../sim/peer-process.js'
import { spotpipe, type Proc } from './procs.js'

export interface TestPeer { proc: Proc, peerId: string }

export class TestCluster {
  coord: Coordinator
  peers: TestPeer[] = []

  constructor (init: CoordinatorInit) {
    // Peers on this shared 2-core machine can block their event loop for seconds while building a
    // stage; killed peers are detected through their closed connection, not the heartbeat timeout.
    this.coord = new Coordinator({ heartbeatTimeoutMs: 10_000, ...init })
  }

  /** Starts the coordinator and `peers` peer processes (with `env` added to their environment). */
  async start (peers: number, env: Record<string, string> = {}): Promise<void> {
    await this.coord.start()
    await Promise.all(Array.from({ length: peers }, async () => await this.addPeer([], env)))
  }

  async addPeer (extra: string[] = [], env: Record<string, string> = {}): Promise<TestPeer> {
    const proc = spotpipe([...peerArgs(this.coord.init.clusterId, this.coord.addrs[0]), ...extra], env)
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

  async stop (): Promise<void> { await this.coord.stop() }
}

/**
 * Durable epochs (issue 10, item 6), with `spotpipe coordinator` and 4 stage peers as processes and
 * a read-only observer node in the test: an epoch is on disk before any peer can hear of it, a
 * coordinator SIGKILLed the moment it published one never publishes that number again after a
 * restart, and a coordinator started without its state directory against peers at a higher epoch
 * exits with one line saying so.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { Coordinator } from '../coordinator/index.js'
import { DurableState } from '../coordinator/durable-state.js'
import { ClusterGossip } from '../net/index.js'
import { createPeerLibp2p, generateSwarmKey, saveSwarmKey, type PeerLibp2p } from '../net/index.js'
import { killAll, spotpipe, type Proc } from './helpers/procs.js'
import { freePort } from './helpers/ports.js'

const MODEL = ['--d-model', '32', '--heads', '2', '--blocks', '4', '--seq-len', '16', '--stages', '4', '--microbatches', '2', '--microbatch-size', '4']
const CLUSTER = 'epochs'

let observer: PeerLibp2p | undefined
const timers: NodeJS.Timeout[] = []
const dirs: string[] = []
afterEach(async () => {
  for (const t of timers.splice(0)) clearInterval(t)
  await observer?.stop()
  observer = undefined
  await killAll()
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

/** A node that listens to the cluster's control topic (coordinator-signed only) and keeps dialling `addr`. */
async function observe (addr: string, swarmKey: Uint8Array, onAssignment: (epoch: number) => void): Promise<void> {
  const node = await createPeerLibp2p({ listen: [], swarmKey })
  observer = node
  const coordinatorId = addr.split('/p2p/')[1]
  const gossip = new ClusterGossip(node, { clusterId: CLUSTER, coordinatorId, onMessage: (m) => { if (m.kind === 'assignment') onAssignment(m.epoch) } })
  gossip.start()
  const dial = (): void => {
    if (node.getConnections(peerIdFromString(coordinatorId)).length > 0) return
    node.dial(multiaddr(addr), { signal: AbortSignal.timeout(1000) }).catch(() => {})
  }
  dial()
  timers.push(setInterval(dial, 200))
}

function stateEpoch (stateDir: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(join(stateDir, 'coordinator.json'), 'utf8')) as { epoch: number }).epoch
  } catch {
    return undefined
  }
}

describe('durable epochs', () => {
  it('a state saved before its first assignment was taken restores the epoch only (nothing to resume)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spotpipe-epochs-'))
    dirs.push(dir)
    await new DurableState(join(dir, 'coordinator.json')).save({
      version: 1, clusterId: CLUSTER, runId: 'run', epoch: 7, committedIteration: -1, assignment: null, checkpoints: [], recoveries: [], model: {}, train: {}
    })
    const c = new Coordinator({ clusterId: CLUSTER, stateDir: dir })
    try {
      await c.start()
      expect(c.epoch).toBe(7)
      expect(c.restored).toBeUndefined()
    } finally { await c.stop() }
  })

  it('a coordinator killed as it publishes an epoch never reuses it; one started without its state says so in one line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spotpipe-epochs-'))
    dirs.push(dir)
    const stateDir = join(dir, 'state')
    const port = await freePort()
    // a private cluster: one secret for all three coordinators, the peers and the observer
    const key = join(dir, 'swarm.key')
    const secret = generateSwarmKey()
    await saveSwarmKey(key, secret)
    const base = ['coordinator', '--cluster', CLUSTER, '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--swarm-key', key, '--identity', join(dir, 'coord.key'), '--create-identity', '--heartbeat-timeout', '10000', ...MODEL]

    // 1. the first coordinator is SIGKILLed the moment its first assignment reaches the observer
    const first = spotpipe([...base, '--state-dir', stateDir])
    const [, addr] = await first.waitFor(/^coordinator (\S+)/)
    const published = new Map<Proc, number[]>([[first, []]])
    let current = first
    let onDisk: number | undefined
    await observe(addr, secret, (epoch) => {
      published.get(current)?.push(epoch)
      if (current === first && onDisk === undefined) {
        first.child.kill('SIGKILL')
        onDisk = stateEpoch(stateDir) ?? -1
      }
    })
    for (let i = 0; i < 4; i++) spotpipe(['peer', '--cluster', CLUSTER, '--coordinator', addr, '--swarm-key', key, '--backend', 'wasm'])
    await first.exited
    const firstEpochs = published.get(first) ?? []
    expect(firstEpochs.length).toBeGreaterThan(0)
    // on disk before any peer could hear of it
    expect(onDisk).toBeGreaterThanOrEqual(Math.max(...firstEpochs))

    // 2. restarted on the same state: training goes on, under epochs above every one published before
    const second = spotpipe([...base, '--state-dir', stateDir])
    published.set(second, [])
    current = second
    await second.waitFor(/^iter 1 /, 90_000)
    const secondEpochs = published.get(second) ?? []
    expect(secondEpochs.length).toBeGreaterThan(0)
    expect(Math.min(...secondEpochs)).toBeGreaterThan(Math.max(...firstEpochs))
    second.child.kill('SIGKILL')
    await second.exited

    // 3. the same identity and address without --state-dir: the peers are ahead of it; one line, exit 1
    const third = spotpipe(base)
    const t0 = Date.now()
    let timer: NodeJS.Timeout | undefined
    const done = await Promise.race([third.exited, new Promise<undefined>(resolve => { timer = setTimeout(() => { resolve(undefined) }, 30_000) })])
    clearTimeout(timer)
    expect(done, `still running after 30 s; stdout: ${third.lines.join(' | ')}`).toBeDefined()
    expect(done?.code).toBe(1)
    expect(Date.now() - t0).toBeLessThan(30_000)
    expect(third.stderr).toHaveLength(1)
    expect(third.stderr[0]).toMatch(new RegExp(`^spotpipe: peer \\S+ heartbeats under epoch ${Math.max(...secondEpochs)}, beyond this coordinator's epoch 0: it was started without the state directory of their run; .*\\[ERR_COORDINATOR_USAGE\\]$`))
  }, 180_000)
})

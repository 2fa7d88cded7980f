/**
 * Divergence (issue 10, failure 6): a non-finite loss, gradient or activation is reported with its
 * iteration and stage, the step is not applied anywhere, and too many in a row roll the run back
 * to a checkpoint at a lower learning rate, or stop it with one line naming the cause.
 *
 * The stage runtime's state machine is checked in-process (real stages, runtimes wired to each
 * other directly); the rest with real processes: `spotpipe coordinator` and `spotpipe peer`, or the
 * coordinator in this process with peer processes (TestCluster).
 */
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { peerIdFromString } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { mulberry32 } from '../model/rng.js'
import { stageLayout } from '../model/params.js'
import { Stage } from '../model/stage.js'
import { NonFiniteFaults, parseNonFiniteFaults } from '../node/faults.js'
import { StageRuntime, type DoneInfo } from '../node/stage-runtime.js'
import { fetchWeights } from '../net/index.js'
import { generateSwarmKey, saveSwarmKey } from '../net/index.js'
import type { DivergenceEvent, RecoveryEvent } from '../coordinator/index.js'
import { peerArgs, PEER_READY } from '../sim/peer-process.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster } from './helpers/cluster.js'
import { spotpipe, type Proc } from './helpers/procs.js'

const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 4, microbatches: 2, microbatchSize: 4 }
const TINY_FLAGS = ['--stages', '4', '--d-model', '32', '--heads', '2', '--blocks', '4', '--seq-len', '16', '--microbatches', '2', '--microbatch-size', '4']
let cluster: TestCluster | undefined
let clusters = 0

const { track, tempDir } = clusterLifecycle('spotpipe-div-')

async function until (check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`timed out after ${ms} ms waiting for ${what}`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * A coordinator CLI process and 4 peer processes (with `peerEnv`) on loopback. Peers on this shared
 * machine can block their event loop for seconds while they start: a long heartbeat timeout.
 */

async function cliCluster (coordFlags: string[], peerEnv: Record<string, string> = {}): Promise<Proc> {
  const name = `div-${process.pid}-${clusters++}`
  // a private cluster (the default) with its secret in a temporary directory
  const keyDir = await tempDir()
  const key = join(keyDir, 'swarm.key')
  await saveSwarmKey(key, generateSwarmKey())
  const coord = spotpipe(['coordinator', '--cluster', name, '--listen', '/ip4/127.0.0.1/tcp/0', '--swarm-key', key, '--heartbeat-timeout', '20000', ...TINY_FLAGS, ...coordFlags])
  const [, addr] = await coord.waitFor(/^coordinator (\S+)/, 30_000)
  const peers = Array.from({ length: 4 }, () => spotpipe(peerArgs(name, addr, { swarmKeyFile: key }), peerEnv))
  await Promise.all(peers.map(async p => await p.waitFor(PEER_READY, 60_000)))
  return coord
}

describe('the stage runtime on a non-finite value', () => {
  /** Two stages in this process, their runtimes wired to each other directly. */
  function pipeline (faults?: NonFiniteFaults): { stages: Stage[], runtimes: StageRuntime[], done: DoneInfo[][], failures: Error[] } {
    const m = resolveModelConfig({ ...model, nBlocks: 2 })
    const t = resolveTrainConfig({ stages: 2, microbatches: 2, microbatchSize: 4, lr: 1e-3 }, m)
    const rand = mulberry32(7)
    const tokens = Uint8Array.from({ length: 4096 }, () => Math.floor(rand() * 256))
    const stages = [0, 1].map(s => new Stage({ model: m, train: t, layout: stageLayout(m, 2, s) }))
    const done: DoneInfo[][] = [[], []]
    const failures: Error[] = []
    const runtimes: StageRuntime[] = stages.map((stage, s) => new StageRuntime({
      stage,
      model: m,
      train: t,
      checkfreePlus: false,
      trainTokens: tokens,
      send: async (to, f) => { setImmediate(() => { runtimes[to].receive(f.iteration, f.direction, f.microbatch, f.hop, f.shape, f.data) }) },
      done: (info) => { done[s].push(info) },
      beforeStep: (it) => { faults?.apply(stage, it) },
      failed: (err) => { failures.push(err) }
    }))
    return { stages, runtimes, done, failures }
  }

  it('reports a non-finite gradient or loss at once with its iteration; a skipped commit keeps weights and optimizer, frees every tensor, and the next iteration trains', async () => {
    // '0:+2': stage 0's second step, iteration 1 (the relative form the chaos suite plants; the
    // cluster tests below use absolute iterations)
    const { stages, runtimes, done, failures } = pipeline(new NonFiniteFaults(parseNonFiniteFaults('0:+2')))
    const reported = (it: number): DoneInfo[] => done.flatMap(d => d.filter(x => x.iteration === it))
    for (const r of runtimes) r.begin(0)
    await until(() => reported(0).length === 2, 'iteration 0')
    for (const r of runtimes) r.commit(0)
    const tensors = tf.memory().numTensors
    const before = stages.map(s => s.readParams())

    // iteration 1: the injected fault poisons stage 0's gradient, the last one to finish
    for (const r of runtimes) r.begin(1)
    await until(() => reported(1).length === 2, 'iteration 1')
    expect(done[0].at(-1)).toMatchObject({ iteration: 1, nonFinite: 'gradient', gradNorm: 0 })
    expect(done[1].at(-1)?.nonFinite).toBeUndefined()
    for (const r of runtimes) r.commit(1, true)
    expect(runtimes.map(r => [r.state, r.iteration])).toEqual([['idle', 1], ['idle', 1]])
    stages.forEach((s, i) => {
      expect(s.iteration).toBe(1) // the skipped iteration counts as committed: the state belongs to it
      expect(s.adam.step).toBe(1) // but no optimizer step was taken
      for (const [n, v] of s.readParams()) expect(v).toEqual(before[i].get(n))
    })
    expect(tf.memory().numTensors).toBe(tensors)

    // iteration 2: a NaN in the head's weights makes the loss non-finite on the last stage; stage 0,
    // still waiting for its gradient, is committed as skipped while running
    const head = stages[1].params.get('head.w') as tf.Variable
    const saved = head.clone()
    const nan = tf.fill(head.shape, NaN)
    head.assign(nan)
    nan.dispose()
    for (const r of runtimes) r.begin(2)
    await until(() => reported(2).length === 1, 'iteration 2')
    expect(done[1].at(-1)).toMatchObject({ iteration: 2, nonFinite: 'loss', gradNorm: 0 })
    expect(runtimes[0].state).toBe('running')
    for (const r of runtimes) r.commit(2, true)
    expect(runtimes.map(r => [r.state, r.iteration])).toEqual([['idle', 2], ['idle', 2]])
    head.assign(saved)
    saved.dispose()
    expect(tf.memory().numTensors).toBe(tensors)

    // iteration 3 trains as usual; a stale begin of a committed iteration is ignored
    for (const r of runtimes) r.begin(3)
    await until(() => reported(3).length === 2, 'iteration 3')
    expect(reported(3).every(d => d.nonFinite == null && Number.isFinite(d.gradNorm) && d.gradNorm > 0)).toBe(true)
    for (const r of runtimes) r.commit(3)
    runtimes[0].begin(2)
    expect(runtimes[0].state).toBe('idle')
    expect(stages.map(s => [s.iteration, s.adam.step])).toEqual([[3, 2], [3, 2]])
    expect(stages[0].readParams().get('embed.tok')).not.toEqual(before[0].get('embed.tok'))
    expect(failures).toEqual([])
    for (const r of runtimes) r.dispose()
    for (const s of stages) s.dispose()
  })

  it('fault specs are parsed strictly and fire once', () => {
    expect(parseNonFiniteFaults('1:3, 2:6,2:7')).toEqual([{ stage: 1, iteration: 3 }, { stage: 2, iteration: 6 }, { stage: 2, iteration: 7 }])
    expect(() => parseNonFiniteFaults('1:3,two:6')).toThrow(/SPOTPIPE_FAULT_NONFINITE: "two:6" is not <stage>:<iteration>/)
    // relative: the n-th step the peer prepares on the stage, whatever iteration the run is at
    expect(parseNonFiniteFaults('0:+3')).toEqual([{ stage: 0, iteration: 3, relative: true }])
    expect(() => parseNonFiniteFaults('0:+0')).toThrow(/"0:\+0" is not/)
  })
})

describe('divergence in a cluster', () => {
  it('a learning rate that blows up: the non-finite value is named with its iteration and stage, and the run stops with one line (the default without a state dir)', async () => {
    const coord = await cliCluster(['--lr', '1e4', '--iterations', '200'])
    await coord.waitFor(/^iter 0 /, 90_000)
    // Before the fix the run printed nothing more and waited for done reports that never came.
    const first = await coord.waitFor(/^divergence iteration (\d+) stage (\d+) non-finite (loss|gradient|activation): step skipped \(1 in a row\) action skip$/, 30_000)
    expect(Number(first[1])).toBeGreaterThanOrEqual(1)
    const exit = await within(coord.exited, 60_000, 'the coordinator to exit')
    expect(exit.code).toBe(1)
    const divergences = coord.lines.filter(l => l.startsWith('divergence '))
    expect(divergences).toHaveLength(3)
    expect(divergences[2]).toMatch(/\(3 in a row\) action stop$/)
    // the three skipped iterations are consecutive, and none of them printed an "iter" line
    const its = divergences.map(l => Number(/iteration (\d+)/.exec(l)?.[1]))
    expect(its).toEqual([its[0], its[0] + 1, its[0] + 2])
    expect(coord.lines.some(l => its.some(i => l.startsWith(`iter ${i} `)))).toBe(false)
    expect(coord.stderr).toHaveLength(1)
    expect(coord.stderr[0]).toMatch(new RegExp(`^spotpipe: training diverged: non-finite [a-z/]+ on stages? [0-9, ]+ at iterations ${its[0]}-${its[2]} \\(3 in a row, limit 3\\); stopped: no checkpoints to roll back to .*\\[ERR_DIVERGED\\]$`))
  }, 240_000)

  it('--on-divergence stop with a state dir (where the default is rollback) stops at the limit', async () => {
    const stateDir = await tempDir()
    const coord = await cliCluster(['--state-dir', stateDir, '--checkpoint-every', '2', '--on-divergence', 'stop', '--divergence-limit', '2', '--iterations', '50'], { SPOTPIPE_FAULT_NONFINITE: '3:2,0:3' })
    const exit = await within(coord.exited, 120_000, 'the coordinator to exit')
    expect(exit.code).toBe(1)
    expect(coord.lines.filter(l => l.startsWith('divergence '))).toEqual([
      'divergence iteration 2 stage 3 non-finite gradient: step skipped (1 in a row) action skip',
      'divergence iteration 3 stage 0 non-finite gradient: step skipped (2 in a row) action stop'
    ])
    expect(coord.lines.filter(l => l.startsWith('iter ')).map(l => l.split(' ')[1])).toEqual(['0', '1'])
    expect(coord.stderr).toEqual(['spotpipe: training diverged: non-finite gradient on stages 0, 3 at iterations 2-3 (2 in a row, limit 2); stopped: on-divergence is stop [ERR_DIVERGED]'])
  }, 240_000)

  it('a single non-finite step is skipped and training goes on; three in a row roll every stage back to the checkpoint before them at half the learning rate', async () => {
    const stateDir = await tempDir()
    cluster = track(new TestCluster({ clusterId: `div-rb-${process.pid}`, model, train: { ...train, lr: 1e-3 }, stateDir, checkpointEvery: 2 }))
    // stage 1 once at iteration 3; stage 2 at 6, 7 and 8 (each fault fires once, so the re-run is clean)
    await cluster.start(4, { SPOTPIPE_FAULT_NONFINITE: '1:3,2:6,2:7,2:8' })
    const c = cluster.coord
    const divergences: DivergenceEvent[] = []
    c.on('divergence', (e: DivergenceEvent) => { divergences.push(e) })
    // the real publish, with a note of each skipped commit as it goes out, beside the skip events
    const order: string[] = []
    const publish = c.gossip.publish.bind(c.gossip)
    c.gossip.publish = async (m) => {
      if (m.kind === 'commit' && m.skipped === true) order.push(`commit ${m.iteration}`)
      return await publish(m)
    }
    c.on('divergence', (e: DivergenceEvent) => { order.push(`divergence ${e.iteration} ${e.action}`) })
    const recoveries: RecoveryEvent[] = []
    c.on('recovery', (es: RecoveryEvent[]) => { recoveries.push(...es) })
    await c.assignInitial({ timeoutMs: 60_000 })

    /** Every stage's parameters once it has committed `version` iterations (its state belongs to iteration version - 1). */
    const paramsAt = async (version: number): Promise<Array<Map<string, Float32Array>>> => await Promise.all([0, 1, 2, 3].map(async stage => {
      const end = Date.now() + 30_000
      for (;;) {
        try {
          const r = await fetchWeights(c.node, { donors: [{ peer: peerIdFromString(cluster?.holder(stage).peerId ?? '') }], stage, minIteration: version - 1, includeOptimizer: false, timeoutMs: 10_000 })
          expect(r.iteration).toBe(version - 1)
          const out = new Map<string, Float32Array>()
          for (const [n, t] of r.tensors) if (!n.startsWith('optim.') && t.dtype === 'F32') out.set(n, t.data as Float32Array)
          return out
        } catch (err) {
          if (Date.now() > end) throw err
          await new Promise(resolve => setTimeout(resolve, 50))
        }
      }
    }))

    const w = new Map<number, Array<Map<string, Float32Array>>>()
    for (let i = 0; i <= 8; i++) {
      const r = await c.runIteration({ timeoutMs: 60_000 })
      if (i !== 3 && i < 6) expect(Number.isFinite(r.loss)).toBe(true)
      if (i >= 2 && i <= 4) w.set(i + 1, await paramsAt(i + 1))
    }
    expect(divergences.map(e => [e.iteration, e.stage, e.what, e.consecutive, e.action])).toEqual([
      [3, 1, 'gradient', 1, 'skip'], [6, 2, 'gradient', 1, 'skip'], [7, 2, 'gradient', 2, 'skip'], [8, 2, 'gradient', 3, 'rollback']
    ])
    // a skipped step's event comes before its commit is announced (a coordinator killed between the
    // two must not leave a skipped commit unexplained); the rollback follows the commit at the limit
    expect(order).toEqual(['divergence 3 skip', 'commit 3', 'divergence 6 skip', 'commit 6', 'divergence 7 skip', 'commit 7', 'commit 8', 'divergence 8 rollback'])
    // iteration 3's step was applied nowhere (weights after 3 = after 2), and training went on
    expect(w.get(4)).toEqual(w.get(3))
    expect(c.history.map(r => r.iteration)).toEqual([0, 1, 2, 4, 5])
    // the checkpoint of iteration 5 holds the weights that diverged at 6 (and 7's the same ones): both
    // are removed and the rollback goes to 3 (1 was dropped when 7 was written: 3 are kept)
    expect(divergences[3]).toMatchObject({ rollbackTo: 3, lrFactor: 0.5 })
    expect(c.store?.list().map(ck => ck.iteration)).toEqual([3])
    expect(c.iteration).toBe(4)
    expect(recoveries.map(e => [e.stage, e.rung])).toEqual([[0, 'checkpoint'], [1, 'checkpoint'], [2, 'checkpoint'], [3, 'checkpoint']])
    for (const e of recoveries) expect(e.cause).toMatch(/^divergence: non-finite gradient on stage 2 at iterations 6-8 \(3 in a row, limit 3\); rolled back to checkpoint 3 at learning rate x0\.5$/)
    expect(JSON.parse(c.assignment?.trainingConfig ?? '{}').lr).toBe(5e-4)

    // every stage is back on the checkpoint's weights exactly
    const restored = await paramsAt(4)
    expect(restored).toEqual(w.get(4))
    // Iteration 4 again: same weights, optimizer state and data, half the learning rate. Adam's
    // update is lr * m / (sqrt(v) + eps) with m and v the same as the first time: half the step.
    await c.runIteration({ timeoutMs: 60_000 })
    const again = await paramsAt(5)
    let compared = 0
    for (let s = 0; s < 4; s++) {
      for (const [n, w4] of restored[s]) {
        const first = w.get(5)?.[s].get(n) as Float32Array
        const second = again[s].get(n) as Float32Array
        for (let k = 0; k < w4.length; k++) {
          const d1 = first[k] - w4[k]
          if (Math.abs(d1) < 1e-5) continue
          expect((second[k] - w4[k]) / d1).toBeCloseTo(0.5, 2)
          compared++
        }
      }
    }
    expect(compared).toBeGreaterThan(1000)
    // and training goes on past the divergence with finite losses
    while (c.iteration <= 10) {
      const r = await c.runIteration({ timeoutMs: 60_000 })
      expect(r.skipped).toBeUndefined()
      expect(Number.isFinite(r.loss)).toBe(true)
    }
  }, 240_000)
})

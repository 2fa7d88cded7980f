/**
 * Compound churn with real peer processes and real signals: the failures a new user hit with the
 * CLI (issue "churn-proof recovery", failures 1, 3 and 5). Each of these hung, exited, or silently
 * re-initialised a stage before the recovery state machine (coordinator/recovery/).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { RecoveryEvent } from '../coordinator/index.js'
import { clusterLifecycle } from './helpers/lifecycle.js'
import { TestCluster, type TestPeer } from './helpers/cluster.js'

const model = { dModel: 32, nHeads: 2, nBlocks: 4, seqLen: 16 }
const train = { stages: 4, microbatches: 2, microbatchSize: 4, lr: 3e-3 }
let cluster: TestCluster | undefined

const { track, tempDir } = clusterLifecycle('spotpipe-churn-')

/** Every recovery record the coordinator emits, successful or failed, in order. */
function recorder (c: TestCluster): { recovered: RecoveryEvent[], failed: RecoveryEvent[] } {
  const out = { recovered: [] as RecoveryEvent[], failed: [] as RecoveryEvent[] }
  c.coord.on('recovery', (events: RecoveryEvent[]) => { out.recovered.push(...events) })
  c.coord.on('recovery-failed', (e: RecoveryEvent) => { out.failed.push(e) })
  return out
}

async function trainFor (c: TestCluster, n: number): Promise<void> {
  await c.coord.run(n, {})
}

describe('churn-proof recovery (real processes, real signals)', () => {
  /**
   * 4 stage peers with identity files and no spare, 3 iterations trained; returns the holder of
   * stage 2 and a way to bring it back under the same key (systemd restarting the peer).
   */
  async function noSpareCluster (clusterId: string): Promise<{ c: TestCluster, log: ReturnType<typeof recorder>, victim: TestPeer, restart: () => Promise<TestPeer> }> {
    const dir = await tempDir()
    const c = track(new TestCluster({ clusterId, model, train, strategy: 'checkfree' }))
    cluster = c
    await c.startCoordinator()
    const peers: TestPeer[] = []
    for (let i = 0; i < 4; i++) peers.push(await c.addPeer(['--identity', join(dir, `p${i}.key`), '--create-identity']))
    const log = recorder(c)
    await c.coord.assignInitial({ timeoutMs: 30_000 })
    await trainFor(c, 3)
    const victim = c.holder(2)
    const key = join(dir, `p${peers.indexOf(victim)}.key`)
    return { c, log, victim, restart: async () => await c.addPeer(['--identity', key]) }
  }

  /** `running` must finish within 60 s; the error says what the coordinator recorded meanwhile. */
  async function resumes (c: TestCluster, log: ReturnType<typeof recorder>, running: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`the run did not resume within 60 s after the peer came back; recoveries: ${JSON.stringify(log.recovered.map(e => [e.stage, e.rung]))}, failed: ${JSON.stringify(log.failed.map(e => [e.stage, e.epoch, e.rung, e.reason]))}; peers: ${c.peers.map(p => `${p.peerId.slice(-6)} exit=${String(p.proc.child.exitCode)}/${String(p.proc.child.signalCode)} ${p.proc.stderr.slice(-6).join(' / ')}`).join(' ## ')}`))
      }, 60_000)
    })
    try { await Promise.race([running, late]) } finally { clearTimeout(timer) }
  }

  it('failure 1: a SIGKILLed stage peer restarted under its old identity, with no other spare, is taken back and the run resumes', async () => {
    const { c, log, victim, restart } = await noSpareCluster('rejoin')
    victim.proc.child.kill('SIGKILL')
    await victim.proc.exited
    await c.coord.until(() => c.coord.failedStages().includes(2), 'the loss to be detected', 15_000)
    // No spare exists: the run waits. The same machine comes back under the same identity.
    const running = c.coord.run(3, {})
    expect((await restart()).peerId).toBe(victim.peerId)
    await resumes(c, log, running)
    expect(log.recovered.find(e => e.stage === 2), 'a recovery record for stage 2').toMatchObject({ targetPeer: victim.peerId, rung: 'checkfree' })
    expect(c.coord.iteration).toBe(6)
  }, 180_000)

  it('a peer that announced its departure, died and came back under its identity before its stage moved is taken as a spare', async () => {
    // found by the chaos suite: the departure was never forgotten, so the restarted peer was never a
    // spare and the run waited for one while it sat idle
    const { c, log, victim, restart } = await noSpareCluster('departed')
    // a spot notice: it announces its departure, but there is no spare to hand stage 2 to
    victim.proc.child.kill('SIGTERM')
    await c.coord.until(() => c.coord.failedStages().includes(2), 'the departure to be heard', 15_000)
    const running = c.coord.run(3, {})
    // the VM goes away before the handover, and systemd brings the peer back with the same key
    await new Promise(resolve => setTimeout(resolve, 500))
    victim.proc.child.kill('SIGKILL')
    await victim.proc.exited
    expect((await restart()).peerId).toBe(victim.peerId)
    await resumes(c, log, running)
    expect(log.recovered.find(e => e.stage === 2), 'a recovery record for stage 2').toMatchObject({ targetPeer: victim.peerId, rung: 'checkfree' })
    expect(c.coord.iteration).toBe(6)
  }, 180_000)

  it('failure 3: a stage SIGKILLed while its CheckFree donor hangs: both stages get a recovery record, none is silently re-initialised', async () => {
    const dir = await tempDir()
    cluster = track(new TestCluster({ clusterId: 'compound', model, train, strategy: 'checkfree', heartbeatTimeoutMs: 8000 }))
    await cluster.startCoordinator()
    const c = cluster
    // every peer writes its own account of each stage it installs (`stage` events: seed, kept, rebuilt)
    await Promise.all(Array.from({ length: 6 }, async (_, i) => await c.addPeer(['--events', join(dir, `peer-${i}.jsonl`)])))
    const log = recorder(c)
    await c.coord.assignInitial({ timeoutMs: 30_000 })
    await trainFor(c, 3)
    const donor = c.holder(2)
    const victim = c.holder(1)
    // The donor hangs (a VM stalled), then stage 1's peer dies: CheckFree for 1 would pull from 2.
    donor.proc.child.kill('SIGSTOP')
    victim.proc.child.kill('SIGKILL')
    await trainFor(c, 3)
    const show = `recovered: ${JSON.stringify(log.recovered.map(e => [e.stage, e.epoch, e.rung, e.checkpointId]))}, failed: ${JSON.stringify(log.failed.map(e => [e.stage, e.epoch, e.rung, e.reason]))}`
    // Every lost stage has a record of its recovery, and the last record of each says recovered.
    for (const s of [1, 2]) expect(log.recovered.some(e => e.stage === s), `stage ${s}: ${show}`).toBe(true)
    // No stage was built from the seed after training started unless a recorded checkpoint-rung
    // recovery of that stage, under that epoch, said 'init'. The record may be a failed one: a
    // round cut short by another loss (superseded) is recorded as failed and planned again, as the
    // chaos suite's no-unrecorded-reinit rule counts it.
    const built = readdirSync(dir).filter(f => f.endsWith('.jsonl')).flatMap(f => readFileSync(join(dir, f), 'utf8').split('\n').filter(l => l !== '').map(l => JSON.parse(l) as { type: string, stage?: number, epoch?: number, iteration?: number, source?: string }))
    const seeded = built.filter(e => e.type === 'stage' && e.source === 'seed' && (e.iteration ?? 0) > 0)
    for (const e of seeded) {
      expect([...log.recovered, ...log.failed].some(r => r.stage === e.stage && r.epoch === e.epoch && r.rung === 'checkpoint' && r.checkpointId === 'init'), `seed build of stage ${String(e.stage)} under epoch ${String(e.epoch)} has no record; ${show}; builds: ${JSON.stringify(built.filter(b => b.type === 'stage'))}`).toBe(true)
    }
    // A checkpoint-rung record says how far behind it is (here: everything since the start).
    for (const r of log.recovered.filter(r => r.rung === 'checkpoint' && r.checkpointId === 'init')) expect(r.iterationsBehind).toBe(r.iteration)
    // The stage 1 attempt that could not finish is on record with its reason.
    for (const f of log.failed) expect(f.reason, `failed record of stage ${f.stage}`).toMatch(/\S/)
    expect(c.coord.iteration).toBe(6)
  }, 180_000)

  /**
   * 4 stage peers and `spares` spares, 3 iterations trained, a 20 s silence floor (a SIGSTOPped
   * peer holding a round open is not declared lost meanwhile); returns the spares too.
   */
  async function trainedCluster (clusterId: string, spares: number): Promise<{ c: TestCluster, log: ReturnType<typeof recorder>, spares: TestPeer[] }> {
    const c = track(new TestCluster({ clusterId, model, train, strategy: 'checkfree', heartbeatTimeoutMs: 20_000 }))
    cluster = c
    await c.startCoordinator()
    await Promise.all(Array.from({ length: 4 + spares }, async () => await c.addPeer()))
    const log = recorder(c)
    await c.coord.assignInitial({ timeoutMs: 30_000 })
    await trainFor(c, 3)
    const assigned = new Set(c.coord.assignedPeers())
    return { c, log, spares: c.peers.filter(p => !assigned.has(p.peerId)) }
  }

  it('a recovery target SIGKILLed after installing its stage, while the round waits for another stage, is recovered again instead of kept', async () => {
    // found by the chaos suite (seed 2): a stage rebuilt on a spare that was killed right after it
    // installed, while another stage had not taken the epoch yet. The round settled the stage on
    // the dead peer, the detector (which had already reported it) never spoke of it again, and
    // every iteration after waited for its done report: no commit until the run ended.
    const { c, log, spares } = await trainedCluster('lostinstalled', 2)
    expect(spares).toHaveLength(2)
    // stage 3's peer hangs (SIGSTOP, well inside the 20 s silence floor): it cannot take the
    // round's epoch, so the round stays open after stage 1's rebuild is installed
    const held = c.holder(3)
    held.proc.child.kill('SIGSTOP')
    c.holder(1).proc.child.kill('SIGKILL')
    const running = c.coord.run(3, {})
    const installed = (): TestPeer | undefined => spares.find(p => {
      const hb = c.coord.heartbeatOf(p.peerId)
      return hb?.stage === 1 && hb.epoch === c.coord.epoch
    })
    // a rebuilt peer claims its stage in its heartbeats only once installed, right after it sent recovery-done
    await c.coord.until(() => installed() != null, 'a spare to install stage 1', 60_000)
    const target = installed() as TestPeer
    await new Promise(resolve => setTimeout(resolve, 300))
    target.proc.child.kill('SIGKILL')
    await target.proc.exited
    held.proc.child.kill('SIGCONT')
    await resumes(c, log, running)
    expect(log.failed.find(e => e.stage === 1 && e.targetPeer === target.peerId), `a failed record for the dead target; failed: ${JSON.stringify(log.failed.map(e => [e.stage, e.epoch, e.targetPeer.slice(-6), e.reason]))}`).toMatchObject({ rung: 'checkfree', outcome: 'failed' })
    const other = spares.find(p => p !== target) as TestPeer
    expect(log.recovered.filter(e => e.stage === 1).at(-1), 'stage 1 recovered on the other spare').toMatchObject({ targetPeer: other.peerId, outcome: 'recovered' })
    expect(c.coord.assignment?.stages[1].peers).toEqual([other.peerId])
    expect(c.coord.iteration).toBe(6)
  }, 180_000)

  it('a rejoiner SIGKILLed after taking its stage back, while the round waits for another stage, is not kept', async () => {
    // the same hole for the rejoin rung: the peer was still counted lost by the detector while its
    // rejoin round ran, so its death went unheard and the round settled the stage on it
    const { c, log, spares: [spare] } = await trainedCluster('lostrejoiner', 1)
    const held = c.holder(3)
    const rejoiner = c.holder(2)
    held.proc.child.kill('SIGSTOP')
    // judged lost while it is in fact fine (a partition that healed): its next heartbeat shows its
    // state intact, so the ladder's first rung takes it back
    const lostAt = Date.now()
    c.coord.detector.markLost(rejoiner.peerId, 'test: a partition')
    await c.coord.until(() => (c.coord.heartbeatOf(rejoiner.peerId)?.timestampMs ?? 0) > lostAt + 50, 'a heartbeat after the loss', 15_000)
    const epoch = c.coord.epoch
    const running = c.coord.run(3, {})
    await c.coord.until(() => c.coord.epoch > epoch && c.coord.heartbeatOf(rejoiner.peerId)?.epoch === c.coord.epoch, 'the rejoiner to take the round\'s epoch', 30_000)
    rejoiner.proc.child.kill('SIGKILL')
    await rejoiner.proc.exited
    await new Promise(resolve => setTimeout(resolve, 300))
    held.proc.child.kill('SIGCONT')
    await resumes(c, log, running)
    expect(log.failed.find(e => e.stage === 2 && e.rung === 'rejoin'), 'the failed rejoin is on record').toMatchObject({ targetPeer: rejoiner.peerId, outcome: 'failed', reason: expect.stringMatching(/lost during the round/) as unknown as string })
    expect(log.recovered.some(e => e.stage === 2 && e.rung === 'rejoin'), `no rejoin on record; recovered: ${JSON.stringify(log.recovered.map(e => [e.stage, e.rung, e.targetPeer.slice(-6)]))}`).toBe(false)
    expect(log.recovered.filter(e => e.stage === 2).at(-1), 'stage 2 recovered on the spare').toMatchObject({ targetPeer: spare.peerId, outcome: 'recovered' })
    expect(c.coord.assignment?.stages[2].peers).toEqual([spare.peerId])
    expect(c.coord.iteration).toBe(6)
  }, 180_000)

  it('failure 5: a rebuild that fails on the peer is reported, and the coordinator falls to the next rung instead of exiting', async () => {
    cluster = track(new TestCluster({ clusterId: 'failrebuild', model, train, strategy: 'checkfree' }))
    await cluster.startCoordinator()
    const c = cluster
    // Stage 1's future holder serves corrupt weights: a CheckFree rebuild of stage 2 from it must fail its checksum.
    const peers = await Promise.all(Array.from({ length: 4 }, async (_, i) => await c.addPeer([], i === 0 ? { SPOTPIPE_FAULT_CORRUPT_CHUNK: '0' } : {})))
    const log = recorder(c)
    await c.coord.assignInitial({ timeoutMs: 30_000 })
    await c.addPeer() // the spare that will rebuild
    const corrupt = peers[0]
    const corruptStage = c.coord.assignment?.stages.findIndex(s => s.peers.includes(corrupt.peerId)) ?? -1
    expect(corruptStage).toBeGreaterThanOrEqual(0)
    await trainFor(c, 3)
    // Lose a neighbour of the corrupt donor that CheckFree can rebuild (an intermediate stage).
    const lost = corruptStage <= 1 ? corruptStage + 1 : corruptStage - 1
    c.holder(lost).proc.child.kill('SIGKILL')
    const t0 = Date.now()
    await Promise.race([trainFor(c, 2), new Promise((_resolve, reject) => setTimeout(() => { reject(new Error('the run did not go on within 90 s of the failed rebuild')) }, 90_000))])
    const failed = log.failed.find(e => e.stage === lost)
    expect(failed, `a failed record for stage ${lost}; failed: ${JSON.stringify(log.failed)}`).toMatchObject({ rung: 'checkfree', outcome: 'failed' })
    expect(failed?.reason).toMatch(/ERR_/)
    expect(log.recovered.find(e => e.stage === lost)).toMatchObject({ rung: 'checkpoint', outcome: 'recovered' })
    expect(Date.now() - t0).toBeLessThan(90_000)
    expect(c.coord.iteration).toBe(5)
  }, 180_000)
})

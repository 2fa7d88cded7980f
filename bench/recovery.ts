/**
 * bench:recovery — time from SIGKILL of an intermediate stage's peer to the first committed
 * iteration after its CheckFree recovery, split into detect / transfer / rebuild / resume, for
 * stages of ~25 MB and ~100 MB of parameters (d=512; 2 and 8 blocks per stage; tiny batches so the
 * iteration itself is short and the recovery dominates). Transfer is compared with the weights
 * protocol's throughput measured in the same run (the same bytes pulled from a live peer).
 * The heartbeat timeout is raised to 10 s: building a 100 MB stage blocks a peer's event loop for
 * seconds on this shared 2-core machine. Detection of a SIGKILL does not depend on it (the closed
 * connection is noticed within milliseconds and confirmed by a failed ping).
 */
import '../common/polyfill.js'
import { performance } from 'node:perf_hooks'
import { peerIdFromString } from '@libp2p/peer-id'
import { StageLostError } from '../coordinator/index.js'
import { resolveModelConfig } from '../model/config.js'
import { countParams, stageLayout, stageSpecs } from '../model/params.js'
import { fetchWeights } from '../net/index.js'
import { holder, startCluster, stopCluster } from './harness.js'

interface Row { iterMs: number, mb: number, detect: number, transfer: number, rebuild: number, resume: number, total: number, bytes: number, transferMBs: number, protocolMBs: number }

async function measure (blocksPerStage: number): Promise<Row> {
  const model = { dModel: 512, nHeads: 8, nBlocks: 4 * blocksPerStage, seqLen: 8 }
  const M = resolveModelConfig(model)
  const stageBytes = countParams(stageSpecs(M, stageLayout(M, 4, 1))) * 4
  const { coord, peers } = await startCluster({ clusterId: `rec${blocksPerStage}`, model, train: { stages: 4, microbatches: 1, microbatchSize: 1 }, strategy: 'checkfree', heartbeatTimeoutMs: 10_000 }, 5)
  try {
    // The weights protocol's throughput here, on the same bytes: pull stage 2's parameters once,
    // before training starts (right after an iteration the peers are still applying Adam).
    const t = performance.now()
    const probe = await fetchWeights(coord.node, { donors: [{ peer: peerIdFromString(holder(coord, peers, 2).peerId) }], stage: 2, timeoutMs: 300_000 })
    const protocolMBs = probe.bytes / 2 ** 20 / ((performance.now() - t) / 1000)
    let iterMs = 0
    for (let i = 0; i < 4; i++) iterMs = (await coord.runIteration({ timeoutMs: 300_000 })).ms

    const victim = holder(coord, peers, 1)
    const running = coord.runIteration({ timeoutMs: 300_000 }).catch(err => err)
    await new Promise(resolve => setTimeout(resolve, 30))
    const killedAt = Date.now()
    const killedPerf = performance.now()
    victim.child.kill('SIGKILL')
    const err = await running
    if (!(err instanceof StageLostError)) throw new Error(`expected the iteration to abort, got ${String(err)}`)
    await coord.until(() => coord.failedStages().length > 0, 'detection', 30_000)
    const detect = (coord.detector.lost.get(victim.peerId)?.detectedAt ?? killedAt) - killedAt
    const [ev] = await coord.recover({ timeoutMs: 300_000 })
    await coord.runIteration({ timeoutMs: 300_000 })
    const total = performance.now() - killedPerf
    return {
      iterMs,
      mb: stageBytes / 2 ** 20,
      detect,
      transfer: ev.transferMs,
      rebuild: ev.rebuildMs,
      resume: ev.resumeMs,
      total,
      bytes: ev.bytes,
      transferMBs: ev.bytes / 2 ** 20 / (ev.transferMs / 1000),
      protocolMBs
    }
  } finally {
    await stopCluster(coord)
  }
}

const rows: Row[] = []
for (const blocks of [2, 8]) {
  const r = await measure(blocks)
  rows.push(r)
  console.log(`stage ${r.mb.toFixed(1)} MB: detect ${r.detect} ms, transfer ${r.transfer.toFixed(0)} ms (${(r.bytes / 2 ** 20).toFixed(0)} MB from 2 neighbours at ${r.transferMBs.toFixed(0)} MB/s; protocol alone ${r.protocolMBs.toFixed(0)} MB/s), rebuild ${r.rebuild.toFixed(0)} ms, resume ${r.resume.toFixed(0)} ms (of which one iteration, ${r.iterMs.toFixed(0)} ms before the failure); SIGKILL -> first commit ${r.total.toFixed(0)} ms`)
}
const big = rows[rows.length - 1]
console.log(`rebuild + resume beyond one ordinary iteration, ${big.mb.toFixed(0)} MB stage: ${((big.rebuild + big.resume - big.iterMs) / 1000).toFixed(3)} s`)
console.log(`bench: recovery_rebuild_resume_s=${((big.rebuild + big.resume) / 1000).toFixed(3)}`)
process.exit(0)

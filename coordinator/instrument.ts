/**
 * Connects a Coordinator's events to the Prometheus metrics of metrics.ts: iteration, epoch, loss,
 * tokens/s, peers by role, recoveries by rung, recovery phase durations, bytes moved, the sparse
 * checkpoints (by outcome, their durations and bytes, the newest one's iteration), and the replicas:
 * serving and joining peers per stage, the stages at risk (at most one live serving replica) and
 * each stage's all-reduce time in the last committed iteration.
 */
import { servingPeers } from '../protocols/index.js'
import type { CheckpointEvent, Coordinator, IterationRecord, RecoveryEvent } from './coordinator.js'
import { createSpotpipeMetrics, type SpotpipeMetrics } from './metrics.js'

export function instrument (c: Coordinator, metrics: SpotpipeMetrics = createSpotpipeMetrics()): SpotpipeMetrics {
  const refreshPeers = (): void => {
    const assigned = new Set(c.assignedPeers())
    const live = c.livePeers()
    metrics.peers.set(live.filter(p => assigned.has(p)).length, { role: 'stage' })
    metrics.peers.set(live.filter(p => !assigned.has(p)).length, { role: 'spare' })
    metrics.epoch.set(c.epoch)
    refreshReplicas(live)
  }
  // the replicas per stage under the current assignment, and the stages one loss from failing
  const refreshReplicas = (live: string[]): void => {
    const a = c.assignment
    metrics.stageReplicas.reset()
    metrics.stageJoining.reset()
    if (a == null) { metrics.stagesAtRisk.set(0); return }
    const alive = new Set(live)
    let atRisk = 0
    for (const st of a.stages) {
      const serving = servingPeers(a, st.stage)
      metrics.stageReplicas.set(serving.length, { stage: st.stage })
      metrics.stageJoining.set(st.peers.length - serving.length, { stage: st.stage })
      if (serving.filter(p => alive.has(p)).length <= 1) atRisk += 1
    }
    metrics.stagesAtRisk.set(atRisk)
  }
  c.on('epoch', () => { refreshPeers() })
  c.on('iteration', (r: IterationRecord) => {
    metrics.iteration.set(r.iteration)
    metrics.loss.set(r.loss)
    metrics.tokensPerSecond.set(r.tokensPerSec)
    r.allReduceMs.forEach((ms, stage) => { metrics.allReduceSeconds.set(ms / 1000, { stage }) })
    refreshPeers()
  })
  c.on('recovery', (events: RecoveryEvent[]) => {
    for (const e of events) {
      metrics.recoveries.inc(1, { rung: e.rung })
      metrics.bytesMoved.inc(e.bytes)
      metrics.recoverySeconds.observe(e.detectMs / 1000, { phase: 'detect' })
      metrics.recoverySeconds.observe(e.transferMs / 1000, { phase: 'transfer' })
      metrics.recoverySeconds.observe(e.rebuildMs / 1000, { phase: 'rebuild' })
    }
    refreshPeers()
  })
  c.on('recovered', (events: RecoveryEvent[]) => {
    for (const e of events) metrics.recoverySeconds.observe(e.resumeMs / 1000, { phase: 'resume' })
  })
  c.on('checkpoint', (e: CheckpointEvent) => {
    metrics.checkpoints.inc(1, { outcome: e.outcome })
    if (e.outcome === 'abandoned') return
    metrics.checkpointBytes.inc(e.bytes)
    metrics.checkpointSeconds.observe(e.ms / 1000)
    if (e.complete) metrics.checkpointIteration.set(e.iteration)
  })
  const timer = setInterval(refreshPeers, 1000)
  timer.unref()
  c.once('stopped', () => { clearInterval(timer) })
  refreshPeers()
  return metrics
}

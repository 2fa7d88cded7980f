/**
 * Connects a Coordinator's events to the Prometheus metrics of metrics.ts: iteration (and each
 * iteration's duration), epoch, loss, tokens/s, peers by role, recoveries and failed attempts by
 * rung, recovery phase durations, bytes moved, the sparse checkpoints (by outcome, their durations
 * and bytes, the newest one's iteration), and the replicas: serving and joining peers per stage,
 * which stages are at risk (at most one live serving replica) and each stage's all-reduce time in
 * the last committed iteration.
 */
import { servingPeers } from '../protocols/index.js'
import type { CheckpointEvent, Coordinator, IterationRecord, RecoveryEvent } from './coordinator.js'
import { createSpotpipeMetrics, type SpotpipeMetrics } from './metrics.js'

export function instrument (c: Coordinator, metrics: SpotpipeMetrics = createSpotpipeMetrics()): SpotpipeMetrics {
  const refreshPeers = (): void => {
    const assigned = new Set(c.assignedPeers())
    const live = c.livePeers()
    metrics.peers.set({ role: 'stage' }, live.filter(p => assigned.has(p)).length)
    metrics.peers.set({ role: 'spare' }, live.filter(p => !assigned.has(p)).length)
    metrics.epoch.set(c.epoch)
    refreshReplicas(live)
  }
  // the replicas per stage under the current assignment, and the stages one loss from failing
  const refreshReplicas = (live: string[]): void => {
    const a = c.assignment
    metrics.stageReplicas.reset()
    metrics.stageJoining.reset()
    metrics.stageAtRisk.reset()
    if (a == null) { metrics.stagesAtRisk.set(0); return }
    const alive = new Set(live)
    let atRisk = 0
    for (const st of a.stages) {
      const serving = servingPeers(a, st.stage)
      const risky = serving.filter(p => alive.has(p)).length <= 1
      metrics.stageReplicas.set({ stage: st.stage }, serving.length)
      metrics.stageJoining.set({ stage: st.stage }, st.peers.length - serving.length)
      metrics.stageAtRisk.set({ stage: st.stage }, risky ? 1 : 0)
      if (risky) atRisk += 1
    }
    metrics.stagesAtRisk.set(atRisk)
  }
  c.on('epoch', () => { refreshPeers() })
  c.on('iteration', (r: IterationRecord) => {
    metrics.iteration.set(r.iteration)
    metrics.loss.set(r.loss)
    metrics.tokensPerSecond.set(r.tokensPerSec)
    metrics.iterationSeconds.observe(r.ms / 1000)
    r.allReduceMs.forEach((ms, stage) => { metrics.allReduceSeconds.set({ stage }, ms / 1000) })
    refreshPeers()
  })
  c.on('recovery', (events: RecoveryEvent[]) => {
    for (const e of events) {
      metrics.recoveries.inc({ rung: e.rung })
      metrics.bytesMoved.inc(e.bytes)
      metrics.recoverySeconds.observe({ phase: 'detect' }, e.detectMs / 1000)
      metrics.recoverySeconds.observe({ phase: 'transfer' }, e.transferMs / 1000)
      metrics.recoverySeconds.observe({ phase: 'rebuild' }, e.rebuildMs / 1000)
    }
    refreshPeers()
  })
  c.on('recovery-failed', (e: RecoveryEvent) => { metrics.recoveryFailures.inc({ rung: e.rung }) })
  c.on('recovered', (events: RecoveryEvent[]) => {
    for (const e of events) metrics.recoverySeconds.observe({ phase: 'resume' }, e.resumeMs / 1000)
  })
  c.on('checkpoint', (e: CheckpointEvent) => {
    metrics.checkpoints.inc({ outcome: e.outcome })
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

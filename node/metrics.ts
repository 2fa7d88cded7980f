/**
 * A peer's own Prometheus series (`spotpipe peer --metrics-port`), on a registry of its own with the
 * default process metrics (net/metrics.ts). The coordinator's metrics describe the cluster; these
 * describe one machine: which stage it serves, how long its compute and its all-reduce take, what
 * it moves over the network, whether its heartbeats get out, and what it drops.
 *
 * Durations are histograms observed from the peer's `done` events; totals the Peer keeps as plain
 * numbers (Peer.totals, its weights server's and activation links' counters) are read when scraped.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { ITERATION_SECONDS_BUCKETS, createMetricsRegistry } from '../net/index.js'
import type { Peer, PeerDoneEvent, RebuildFailure, StageEvent } from './peer.js'

/**
 * Buckets of `spotpipe_peer_allreduce_seconds`, 1 ms to 1 min: a stage's replicas add their
 * gradient sums in a ring, which takes milliseconds on loopback, tens of milliseconds between VMs
 * of one zone for the demo's stages (about 1.6 MB of sums) and seconds for large stages or links
 * across regions; the round gives up after 2 min.
 */
export const ALLREDUCE_SECONDS_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

export interface PeerMetrics {
  registry: Registry
  /** spotpipe_peer_info{peer_id}: 1, naming the peer id of this process. */
  info: Gauge<'peer_id'>
  /** spotpipe_peer_stage: the stage this peer holds under the current assignment (-1: a spare). */
  stage: Gauge
  /** spotpipe_peer_epoch: the epoch of the assignment this peer acts on. */
  epoch: Gauge
  /** spotpipe_peer_departing: 1 once the peer announced its departure (spot notice, SIGTERM). */
  departing: Gauge
  /** spotpipe_peer_iteration: the last iteration this peer reported done. */
  iteration: Gauge
  /** spotpipe_peer_loss: mean loss of this replica's microbatches in that iteration (only on the stage running the head). */
  loss: Gauge
  /** spotpipe_peer_compute_seconds: forward and backward compute of this peer's stage per iteration (histogram). */
  computeSeconds: Histogram
  /** spotpipe_peer_allreduce_seconds: this replica's gradient all-reduce per iteration, only with replicas (histogram). */
  allReduceSeconds: Histogram
  /** spotpipe_peer_activation_bytes_total{direction}: activation and gradient frame payload bytes sent and received. */
  activationBytes: Counter<'direction'>
  /** spotpipe_peer_weights_bytes_total{direction}: weights protocol bytes served to pullers and pulled from donors. */
  weightsBytes: Counter<'direction'>
  /** spotpipe_peer_heartbeats_total{outcome}: heartbeats published, and those whose publish failed. */
  heartbeats: Counter<'outcome'>
  /** spotpipe_peer_frames_dropped_total{reason}: activation frames refused by admission, or from an older epoch. */
  framesDropped: Counter<'reason'>
  /** spotpipe_peer_stage_installs_total{source}: stages installed, by where their state came from (seed, kept, rebuilt). */
  stageInstalls: Counter<'source'>
  /** spotpipe_peer_recovery_failures_total{rung}: recovery plans this peer could not carry out. */
  recoveryFailures: Counter<'rung'>
}

/** Declares a peer's metrics and feeds them from `p` (instrument before `p.start()` to see its first stage). */
export function instrumentPeer (p: Peer, registry: Registry = createMetricsRegistry()): PeerMetrics {
  const registers = [registry]
  // a total the Peer keeps, exported as a counter per label value when scraped
  const totals = <L extends string>(name: string, help: string, label: L, read: () => Record<string, number>): Counter<L> =>
    new Counter({
      name,
      help,
      labelNames: [label],
      registers,
      collect () {
        this.reset()
        for (const [value, n] of Object.entries(read())) this.inc({ [label]: value } as Partial<Record<L, string>>, n)
      }
    })
  const m: PeerMetrics = {
    registry,
    info: new Gauge({
      name: 'spotpipe_peer_info',
      help: 'Always 1; its peer_id label is the libp2p peer id of this peer (the one the coordinator and spotpipe status name).',
      labelNames: ['peer_id'],
      registers,
      collect () {
        this.reset()
        if (p.node != null) this.set({ peer_id: p.peerId }, 1)
      }
    }),
    stage: new Gauge({ name: 'spotpipe_peer_stage', help: 'Stage this peer holds under the current assignment (-1: a spare).', registers, collect () { this.set(p.stageIndex) } }),
    epoch: new Gauge({ name: 'spotpipe_peer_epoch', help: 'Epoch of the assignment this peer acts on.', registers, collect () { this.set(p.epoch) } }),
    departing: new Gauge({ name: 'spotpipe_peer_departing', help: '1 once this peer announced its departure (spot interruption notice or SIGTERM), else 0.', registers, collect () { this.set(p.isDeparting ? 1 : 0) } }),
    iteration: new Gauge({ name: 'spotpipe_peer_iteration', help: 'Last iteration this peer reported done.', registers }),
    loss: new Gauge({ name: 'spotpipe_peer_loss', help: "Mean loss of this replica's microbatches in its last iteration, in nats per token (only on the stage that runs the head).", registers }),
    computeSeconds: new Histogram({ name: 'spotpipe_peer_compute_seconds', help: "Seconds of this peer's forward and backward compute per iteration.", buckets: ITERATION_SECONDS_BUCKETS, registers }),
    allReduceSeconds: new Histogram({ name: 'spotpipe_peer_allreduce_seconds', help: "Seconds of this replica's gradient all-reduce per iteration (only for a stage with replicas).", buckets: ALLREDUCE_SECONDS_BUCKETS, registers }),
    activationBytes: totals('spotpipe_peer_activation_bytes_total', 'Payload bytes of activation and gradient frames, by direction (sent, received).', 'direction',
      () => ({ sent: p.totals.activationBytesSent, received: p.totals.activationBytesReceived })),
    weightsBytes: totals('spotpipe_peer_weights_bytes_total', 'Weights protocol bytes, by direction: sent to pullers of what this peer serves, received from donors.', 'direction',
      () => ({ sent: p.weightsBytesSent, received: p.totals.weightsBytesReceived })),
    heartbeats: totals('spotpipe_peer_heartbeats_total', 'Heartbeats by outcome (published, failed: gossip refused or had no peers).', 'outcome',
      () => ({ published: p.totals.heartbeatsPublished, failed: p.totals.heartbeatsFailed })),
    framesDropped: totals('spotpipe_peer_frames_dropped_total', 'Activation frames dropped, by reason (rejected by admission, stale_epoch: from an older assignment).', 'reason',
      () => ({ rejected: p.framesRejected, stale_epoch: p.staleFrames })),
    stageInstalls: new Counter({ name: 'spotpipe_peer_stage_installs_total', help: 'Stages this peer installed, by the source of their state (seed, kept, rebuilt).', labelNames: ['source'], registers }),
    recoveryFailures: new Counter({ name: 'spotpipe_peer_recovery_failures_total', help: 'Recovery plans this peer could not carry out, by rung.', labelNames: ['rung'], registers })
  }
  p.on('done', (e: PeerDoneEvent) => {
    m.iteration.set(e.iteration)
    if (e.loss != null) m.loss.set(e.loss)
    m.computeSeconds.observe(e.computeMs / 1000)
    if (e.allReduceMs != null) m.allReduceSeconds.observe(e.allReduceMs / 1000)
  })
  p.on('stage', (e: StageEvent) => { m.stageInstalls.inc({ source: e.source }) })
  p.on('recovery-failed', (e: RebuildFailure) => { m.recoveryFailures.inc({ rung: e.rung }) })
  return m
}

/**
 * The checkpoint phase of bench:costmodel (costmodel.ts): a checkpoint's cost measured apart from
 * the failures, with a checkpoint every other commit.
 */
import type { CheckpointEvent, Coordinator } from '../coordinator/index.js'
import { cpuMs } from './costmodel-probes.js'
import type { BenchPeer } from './harness.js'

export interface CheckpointPhase {
  /** Per attempt after a snapshot commit: its period less the mean of its two neighbours' (after plain commits). */
  overheadS: number[]
  /** The neighbours' periods, for the print. */
  plainS: number[]
  /** Per attempt after a snapshot commit: the CPU (this process and the peers) beyond its neighbours' mean. */
  extraCpuS: number[]
  /** The CPU the neighbours took over their wall time: how many cores the cluster keeps busy. */
  plainCores: number[]
  uploadsMs: number[]
}

/** CPU seconds of this process and every live peer so far (/proc: 10 ms ticks). */
function clusterCpuS (peers: BenchPeer[]): number {
  const c = process.cpuUsage()
  let s = (c.user + c.system) / 1e6
  for (const p of peers) if (p.child.exitCode == null && p.child.signalCode == null) s += cpuMs(p.child.pid) / 1000
  return s
}

/**
 * A checkpoint's cost, measured apart from the failures: with a checkpoint every other commit, each
 * attempt after a snapshot commit (which carries the peers' snapshot copy and the store's background
 * pull) sits between two attempts after plain commits, and its excess over their mean is one
 * checkpoint's overhead. The neighbours are taken in the same seconds, so the load's drift cancels;
 * the median over `opts.pairs` such attempts resolves what the difference of two pairs of
 * iterations could not. `init` is the coordinator's own init, whose `checkpointEvery` it reads at
 * each commit. No compute step is measured inside the phase: it would hide the background pull.
 */
export async function checkpointPhase (coord: Coordinator, peers: BenchPeer[], init: { checkpointEvery?: number }, opts: { pairs: number, every: number }): Promise<CheckpointPhase> {
  const uploads: number[] = []
  const onCheckpoint = (e: CheckpointEvent): void => { uploads.push(e.ms) }
  await coord.flushCheckpoints()
  init.checkpointEvery = 2
  coord.on('checkpoint', onCheckpoint)
  const periods: Array<{ s: number, cpuS: number, afterSnapshot: boolean }> = []
  let lastSnapshot = false
  try {
    // commits alternate snapshot and plain: 2 x PAIRS + 3 attempts give PAIRS inner ones after a snapshot
    for (let k = 0; k < 2 * opts.pairs + 3; k++) {
      const t0 = performance.now()
      const c0 = clusterCpuS(peers)
      const r = await coord.runIteration({ timeoutMs: 120_000 })
      periods.push({ s: (performance.now() - t0) / 1000, cpuS: clusterCpuS(peers) - c0, afterSnapshot: lastSnapshot })
      lastSnapshot = (r.iteration + 1) % 2 === 0
    }
    await coord.flushCheckpoints()
  } finally {
    coord.off('checkpoint', onCheckpoint)
    init.checkpointEvery = opts.every
  }
  const overheadS: number[] = []
  const plainS: number[] = []
  const extraCpuS: number[] = []
  const plainCores: number[] = []
  // the first attempt follows a commit of the replay's schedule: only from the second on
  for (let i = 2; i < periods.length - 1; i++) {
    const [prev, cur, next] = [periods[i - 1], periods[i], periods[i + 1]]
    if (!cur.afterSnapshot || prev.afterSnapshot || next.afterSnapshot) continue
    overheadS.push(cur.s - (prev.s + next.s) / 2)
    plainS.push(prev.s, next.s)
    extraCpuS.push(cur.cpuS - (prev.cpuS + next.cpuS) / 2)
    plainCores.push(prev.cpuS / prev.s, next.cpuS / next.s)
  }
  return { overheadS, plainS, extraCpuS, plainCores, uploadsMs: uploads }
}

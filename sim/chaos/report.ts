/** Printing a chaos run's results: the violations by invariant, the figures, and the bench lines. */
import type { ChaosHistory } from './history.js'
import { INVARIANTS, type ChaosReport } from './invariants.js'

/** The closing lines of `npm run chaos`, in this order (with replicas, six more after them). */
export function benchLines (r: ChaosReport): string[] {
  const f = r.figures
  const replicated = f.replicas > 1
    ? [
        `bench: chaos_replica_losses=${f.replicaLosses}`,
        `bench: chaos_rebuilds_after_replica_loss=${f.rebuildsAfterReplicaLoss}`,
        `bench: chaos_replica_stages_compared=${f.replicaStagesCompared}`,
        `bench: chaos_replicas_mismatched=${f.replicaMismatches}`,
        `bench: chaos_drifts_mended=${f.driftsMended}/${f.driftsLanded}`,
        `bench: chaos_unplanted_drifts=${f.unplantedDrifts}`
      ]
    : []
  return [
    `bench: chaos_faults=${f.faults}`,
    `bench: chaos_exits=${f.exits}`,
    `bench: chaos_stalls=${f.stalls}`,
    `bench: chaos_unrecorded_reinits=${f.unrecordedReinits}`,
    `bench: chaos_checkpoints_abandoned=${f.checkpointsAbandonedFraction.toFixed(3)}`,
    `bench: chaos_max_staleness_iters=${f.maxStalenessIters}`,
    ...replicated
  ]
}

/** A readable summary: bounds, figures, each invariant with its first violations, notes. */
export function formatReport (h: ChaosHistory, r: ChaosReport, maxPerInvariant = 5): string[] {
  const f = r.figures
  const b = h.bounds
  const out: string[] = []
  const seconds = (ms: number): string => (ms / 1000).toFixed(1)
  out.push(`chaos seed ${h.seed}: ${seconds(h.chaosEnd - h.chaosStart)} s of faults, ${f.faults} faults applied (${h.skipped.length} skipped), ${f.commits} commits, ${f.recoveries} recovery records, ${f.lostStages} stages taken away`)
  out.push(`bounds: detection ${b.detectionMs} ms, transfer ${b.transferMs} ms, bound ${b.boundMs} ms, resume grace ${b.resumeGraceMs} ms, checkpoint every ${b.checkpointEvery}, strategy ${b.strategy}`)
  out.push(`stall rule: ${r.stallRule}`)
  out.push(`checkpoints: ${f.checkpointsWritten} written, ${f.checkpointsPartial} partial, ${f.checkpointsAbandoned} abandoned (${f.stageFilesLost} of ${f.stageFilesTaken} stage files lost); longest gap between commits ${seconds(f.longestGapMs)} s; recovery failures ${f.recoveryFailures}; divergence reports ${f.divergences}`)
  if (f.replicas > 1) out.push(`replicas: ${f.replicas} per stage; ${f.replicaLosses} replica losses (${f.rebuildsAfterReplicaLoss} followed by a rebuild), ${(h.perturbations ?? []).length} drifts landed (${f.driftsMended} mended), ${f.replicaStagesCompared} stages compared at the end (${f.replicaMismatches} differ), ${f.unplantedDrifts} replicas dropped as drifted with no drift planted`)
  const weights = h.weights.map(w => `stage ${w.stage}${w.replica != null ? `/${w.replica}` : ''} ${w.ok ? `ok (iteration ${w.iteration ?? '?'}${w.digest != null ? ` ${w.digest.slice(0, 8)}` : ''})` : 'FAILED'}`).join(', ')
  out.push(`final weights: ${weights === '' ? 'none checked' : weights}`)
  for (const name of INVARIANTS) {
    const vs = r.violations.filter(x => x.invariant === name)
    out.push(`  ${vs.length === 0 ? 'ok  ' : 'FAIL'} ${name}${vs.length > 0 ? ` (${vs.length})` : ''}`)
    for (const x of vs.slice(0, maxPerInvariant)) out.push(`         ${x.at != null && h.chaosStart > 0 ? `[+${seconds(x.at - h.chaosStart)} s] ` : ''}${x.detail}`)
    if (vs.length > maxPerInvariant) out.push(`         ... and ${vs.length - maxPerInvariant} more`)
  }
  for (const n of r.notes) out.push(`note: ${n}`)
  for (const s of h.skipped.slice(0, 10)) out.push(`skipped: item #${s.item}: ${s.why}`)
  return out
}

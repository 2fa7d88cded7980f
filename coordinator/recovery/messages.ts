/** The recovery-plan messages the coordinator publishes for a round of plans. */
import type { RecoveryPlan } from '../../protocols/index.js'
import type { StagePlan } from '../ladder.js'

/** The recovery-plan messages for `plans` under `epoch`, each donor with a dialable address ('' if unknown). */
export async function recoveryPlanMessages (epoch: number, plans: StagePlan[], donorAddr: (peerId: string) => Promise<string>): Promise<RecoveryPlan[]> {
  return await Promise.all(plans.map(async p => ({
    kind: 'recovery-plan' as const,
    epoch,
    stage: p.stage,
    rung: p.rung,
    targetPeer: p.target,
    donors: await Promise.all(p.donors.map(async d => ({ ...d, addr: await donorAddr(d.peerId) }))),
    lrScale: p.lrScale,
    weights: p.weights.some(w => w > 0) ? p.weights : [],
    checkpointId: p.checkpointId
  })))
}

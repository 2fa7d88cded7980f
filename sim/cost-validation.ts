/**
 * What the cost model predicts for a short trace replayed on a real cluster (bench:costmodel), and
 * how far a prediction is from a measurement. Pure: the parameters come in as a CostModel, the rung
 * of every failure from the coordinator's ladder (through ladder-adapter.ts, as model mode plans).
 *
 * The figures, each charged as model mode charges it (model-mode.ts), from the moment of the
 * failure (the elapsed part of the aborted attempt lies before it and is left out of both sides):
 *  - iteration: cost.iterationS of the plain route;
 *  - a crash: detectionS plus the rung's recovery round (CostModel.recoveryS: the epoch taken, the
 *    rebuilt peer's pull and install, the cold first iteration);
 *  - a notice: the notice heard, then the handover beyond the notice lead (CostModel.noticeStallS);
 *  - a checkpoint: its blocking snapshot copy plus the slow-down from the background upload.
 * The redone iteration after a failure is an ordinary iteration on both sides.
 */
import { SpotpipeError } from '../common/index.js'
import type { CostModel, IterationShape } from './cost-model.js'
import { planBatch } from './ladder-adapter.js'
import type { SimRung, StrategyName } from './strategies.js'

export class CostValidationError extends SpotpipeError {
  constructor (message: string) { super('ERR_COST_VALIDATION', message) }
}

const PLAIN: IterationShape = { swaps: false, redundantCompute: false }

export interface ValidationFailure {
  kind: 'crash' | 'notice'
  stage: number
  /** Iteration of the newest checkpoint that could be loaded at the failure (0: the seeded weights). */
  checkpoint: number
}

export interface PredictedRecovery extends ValidationFailure {
  rung: SimRung
  /** The stages whose peers serve the rung's state (none: the store, or seeded weights). */
  donors: number[]
  /** What the failure costs from its moment to the redone iteration's start, s. */
  seconds: number
  detectionS: number
  /** The rung's transfer, the recovery round included. */
  transferS: number
  bytes: number
}

export interface CostPrediction {
  iterationS: number
  recoveries: PredictedRecovery[]
  /** Per checkpoint: blocking copy + upload contention, s. */
  checkpointS: number
  checkpointCopyS: number
  checkpointContentionS: number
}

/** The cost model's figures for `failures` (each recovered alone) under `strategy`. */
export function predictFigures (cost: CostModel, strategy: StrategyName, failures: readonly ValidationFailure[]): CostPrediction {
  const recoveries = failures.map(f => predictRecovery(cost, strategy, f))
  const save = cost.checkpointSave(PLAIN)
  return {
    iterationS: cost.iterationS(PLAIN),
    recoveries,
    checkpointS: save.copyS + save.contentionS,
    checkpointCopyS: save.copyS,
    checkpointContentionS: save.contentionS
  }
}

/** One failure's recovery, by the rung the coordinator's ladder gives it. */
export function predictRecovery (cost: CostModel, strategy: StrategyName, f: ValidationFailure): PredictedRecovery {
  if (!Number.isInteger(f.stage) || f.stage < 0 || f.stage >= cost.stages) throw new CostValidationError(`failure of stage ${f.stage}: the cost model has stages 0..${cost.stages - 1}`)
  const { plans, waiting, rollbackAll } = planBatch({ strategy, stages: cost.stages, lost: [{ stage: f.stage, kind: f.kind }], checkpoint: f.checkpoint })
  if (waiting.length > 0 || plans.length !== 1) throw new CostValidationError(`the ladder left stage ${f.stage} without a plan`)
  if (rollbackAll) throw new CostValidationError(`the ladder rolls every stage back for stage ${f.stage}: not a figure this validation predicts`)
  const rung = plans[0].rung
  const t = rung === 'checkfree'
    ? cost.checkfreeRebuild(f.stage)
    : rung === 'checkfree-plus'
      ? cost.checkfreePlusCopy(f.stage)
      : rung === 'checkpoint'
        // the seeded weights are rebuilt where they are needed: nothing moves (model mode does the same)
        ? (f.checkpoint === 0 ? cost.seededRebuild([f.stage]) : cost.checkpointLoad([f.stage]))
        : cost.exactCopy(f.stage)
  const detectionS = f.kind === 'crash' ? cost.p.detectionS : 0
  const seconds = f.kind === 'crash' ? detectionS + t.seconds : cost.noticeStallS(t.seconds)
  return { ...f, rung, donors: [...plans[0].donors], seconds, detectionS, transferS: t.seconds, bytes: t.bytes }
}

/** |predicted - measured| / measured; the measurement must be a positive finite number. */
export function relativeError (predicted: number, measured: number): number {
  if (!Number.isFinite(measured) || measured <= 0) throw new CostValidationError(`a relative error needs a positive measurement, got ${String(measured)}`)
  if (!Number.isFinite(predicted)) throw new CostValidationError(`a relative error needs a finite prediction, got ${String(predicted)}`)
  return Math.abs(predicted - measured) / measured
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median (xs: readonly number[]): number {
  if (xs.length === 0) throw new CostValidationError('the median of no values')
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

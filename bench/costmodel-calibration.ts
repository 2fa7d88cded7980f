/**
 * The calibration recoveries of bench:costmodel (costmodel.ts): recoveries the cluster runs apart
 * from the failures the bench predicts, which give the detector's path, the coordinator's own part
 * of a round and each rebuilt stage's cold first iteration.
 */
import { StageLostError, type Coordinator, type RecoveryEvent } from '../coordinator/index.js'
import { CostValidationError, median } from '../sim/cost-validation.js'
import { BUSY_AT, EpochWatch, cleanPeriod, ms, sleep } from './costmodel-probes.js'
import { holder, type BenchPeer } from './harness.js'

/**
 * One calibration recovery: the detector's path and the coordinator's own part of the round, then
 * the first iteration after it and the median of the next two, whole (the coordinator's call) and
 * the rebuilt peer's own compute. Seconds.
 */
export interface CalibrationSample {
  stage: number
  rung: string
  /** SIGKILL -> the loss known (the coordinator's needsRound()). */
  detectS: number
  /** The loss known -> the round's epoch published: the aborted iteration returned, the survey and plan, the epoch persisted and published. */
  beforePublishS: number
  /** The last stage's take of the epoch -> the round's end (reconcile returned): the recoveries settled and persisted. */
  afterTakesS: number
  firstPeriodS: number
  warmPeriodS: number
  firstOwnS: number
  warmOwnS: number
}

/**
 * A recovery as the cluster runs one, apart from the failures the bench predicts: BUSY_AT into an
 * iteration (where the trace's crashes land; of the clean iteration run just before) the peer holding `stage` is SIGKILLed, the
 * detector finds it lost, and the coordinator's ladder recovers the stage (a spare is given it, as
 * in every recovery of the replay); then three iterations run. From it: the detector's path for a
 * killed stage holder, through whatever hint comes first (its connection closing, a neighbour's
 * broken stream) and the confirming ping; the coordinator's own part of the round around the
 * stages' takes; and the rebuilt stage's cold first iteration, measured in the busy cluster where
 * the rebuilt stage computes beside the other stages' processes (unlike a fresh probe process
 * computing alone on the idle cluster, whose cold share moved from 47% to 117% between runs and
 * was above what the rebuilt peers showed in every run). These recoveries are the bench's
 * calibration, before and after the replay: none of the failures it predicts is among them.
 */
export async function probeCalibration (coord: Coordinator, peers: BenchPeer[], stage: number): Promise<CalibrationSample> {
  const periodS = await cleanPeriod(coord)
  const victim = holder(coord, peers, stage)
  const rungs: string[] = []
  const onRecovery = (evs: RecoveryEvent[]): void => { for (const e of evs) if (e.stage === stage) rungs.push(e.rung) }
  coord.on('recovery', onRecovery)
  const watch = new EpochWatch(coord, () => performance.now())
  let killedAt = NaN
  let endAt = NaN
  try {
    const running = coord.runIteration({ timeoutMs: 120_000 }).then(() => true, (err: unknown) => {
      if (err instanceof StageLostError) return false
      throw err
    })
    await sleep(BUSY_AT * periodS * 1000)
    killedAt = performance.now()
    victim.child.kill('SIGKILL')
    if (await running) throw new CostValidationError(`the calibration iteration committed although stage ${stage}'s peer was killed ${ms(BUSY_AT * periodS)} into it`)
    await coord.until(() => coord.needsRound(), `the loss of stage ${stage} to be known`, 30_000)
    await coord.reconcile({ timeoutMs: 120_000 })
    endAt = performance.now()
  } finally {
    coord.off('recovery', onRecovery)
    watch.stop()
  }
  const rebuilt = holder(coord, peers, stage)
  if (rebuilt.peerId === victim.peerId) throw new CostValidationError(`stage ${stage} is still held by the killed peer ${victim.peerId}`)
  const takes = [...watch.takenAt.values()]
  const knownAt = watch.knownAt
  if (knownAt == null || watch.publishedAt == null || takes.length !== (coord.assignment?.stages.length ?? -1)) throw new CostValidationError(`the calibration recovery of stage ${stage} was not seen whole: loss known ${knownAt != null}, epoch published ${watch.publishedAt != null}, ${takes.length} stages took it`)
  const own: number[] = []
  const periods: number[] = []
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now()
    own.push((await coord.runIteration({ timeoutMs: 120_000 })).computeMs[stage] / 1000)
    periods.push((performance.now() - t0) / 1000)
  }
  return {
    stage,
    rung: rungs.at(-1) ?? '?',
    detectS: (knownAt - killedAt) / 1000,
    beforePublishS: (watch.publishedAt - knownAt) / 1000,
    afterTakesS: (endAt - Math.max(...takes)) / 1000,
    firstPeriodS: periods[0],
    warmPeriodS: median(periods.slice(1)),
    firstOwnS: own[0],
    warmOwnS: median(own.slice(1))
  }
}

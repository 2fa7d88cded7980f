/**
 * The calibration recoveries of bench:costmodel (costmodel.ts): recoveries the cluster runs apart
 * from the failures the bench predicts, which give the detector's path, the path of a notice, the
 * coordinator's own part of a round, the rebuilt peer's own part of it and each rebuilt stage's
 * cold first iteration.
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
  /** A crash (SIGKILL) or a spot notice (SIGTERM: the peer announces its departure). */
  kind: 'crash' | 'notice'
  rung: string
  /** The signal -> the loss or the departure known (the coordinator's needsRound()). */
  knownS: number
  /** The loss known -> the round's epoch published: the aborted iteration returned, the survey and plan, the epoch persisted and published. */
  beforePublishS: number
  /** The last stage's take of the epoch -> the round's end (reconcile returned): the recoveries settled and persisted. */
  afterTakesS: number
  /** The round's epoch published -> the rebuilt stage's take of it (its peer pulled and installed the state). */
  rebuiltTakeS: number
  /** The round's epoch published -> the latest of the rung's donor peers taking it (a departing donor too); 0 for the store; undefined if a donor's take was not seen. */
  donorsReadyS?: number
  /** What the rebuilt peer pulled (the coordinator's record). */
  bytes: number
  firstPeriodS: number
  warmPeriodS: number
  firstOwnS: number
  warmOwnS: number
}

/**
 * A recovery as the cluster runs one, apart from the failures the bench predicts: BUSY_AT into an
 * iteration (where the trace's failures land; of the clean iteration run just before) the peer
 * holding `stage` is SIGKILLed (a crash: the detector finds it lost) or SIGTERMed (a notice: it
 * announces its departure once it is through the compute it is inside), and the coordinator's
 * ladder recovers the stage (a spare is given it, as in every recovery of the replay); then three
 * iterations run, each after `before(k)`: what the replay runs before its attempts (a step of the
 * stages in the probe processes before each, a pull over the link before every second), so that
 * the first meets the rebuilt peer as the replay's redone attempt does and the next two are timed
 * as the replay's clean attempts are.
 *
 * From it: the path from the signal to the coordinator knowing, for a crash through whatever hint
 * comes first (its connection closing, a neighbour's broken stream) and the confirming ping; the
 * coordinator's own part of the round around the stages' takes; the rebuilt stage's and its donor
 * peers' takes of the round's epoch; and the rebuilt stage's cold first iteration, measured in the
 * busy cluster where the rebuilt stage computes beside the other stages' processes (unlike a fresh
 * probe process computing alone on the idle cluster, whose cold share moved from 47% to 117%
 * between runs and was above what the rebuilt peers showed in every run). These recoveries are
 * the bench's calibration, before and after the replay: none of the failures it predicts is among
 * them.
 */
export async function probeCalibration (coord: Coordinator, peers: BenchPeer[], stage: number, kind: 'crash' | 'notice', before: (k: number) => Promise<unknown>): Promise<CalibrationSample> {
  const periodS = await cleanPeriod(coord)
  const victim = holder(coord, peers, stage)
  const records: RecoveryEvent[] = []
  const onRecovery = (evs: RecoveryEvent[]): void => { for (const e of evs) if (e.stage === stage) records.push(e) }
  coord.on('recovery', onRecovery)
  const watch = new EpochWatch(coord, () => performance.now())
  let signalAt = NaN
  let endAt = NaN
  try {
    const running = coord.runIteration({ timeoutMs: 120_000 }).then(() => true, (err: unknown) => {
      if (err instanceof StageLostError) return false
      throw err
    })
    await sleep(BUSY_AT * periodS * 1000)
    signalAt = performance.now()
    victim.child.kill(kind === 'crash' ? 'SIGKILL' : 'SIGTERM')
    if (await running) throw new CostValidationError(`the calibration iteration committed although stage ${stage}'s peer was sent its ${kind === 'crash' ? 'SIGKILL' : 'SIGTERM'} ${ms(BUSY_AT * periodS)} into it`)
    await coord.until(() => coord.needsRound(), `the ${kind === 'crash' ? 'loss' : 'departure'} of stage ${stage} to be known`, 30_000)
    await coord.reconcile({ timeoutMs: 120_000 })
    endAt = performance.now()
  } finally {
    coord.off('recovery', onRecovery)
    watch.stop()
  }
  const rebuilt = holder(coord, peers, stage)
  if (rebuilt.peerId === victim.peerId) throw new CostValidationError(`stage ${stage} is still held by the peer sent its ${kind === 'crash' ? 'SIGKILL' : 'SIGTERM'}, ${victim.peerId}`)
  const takes = [...watch.takenAt.values()]
  const knownAt = watch.knownAt
  if (knownAt == null || watch.publishedAt == null || takes.length !== (coord.assignment?.stages.length ?? -1)) throw new CostValidationError(`the calibration recovery of stage ${stage} (${kind}) was not seen whole: ${kind === 'crash' ? 'loss' : 'departure'} known ${knownAt != null}, epoch published ${watch.publishedAt != null}, ${takes.length} stages took it`)
  const published = watch.publishedAt
  const record = records.at(-1)
  if (record == null) throw new CostValidationError(`the calibration recovery of stage ${stage} (${kind}) emitted no recovery record`)
  // a donor's take after the publication (the store, this process, is no peer: ready at once)
  const donorTakes = record.donors.filter(d => d !== coord.peerId).map(d => watch.peerTakenAt.get(d))
  const donorsReadyS = donorTakes.some(t => t == null) ? undefined : Math.max(0, ...donorTakes.map(t => ((t as number) - published) / 1000))
  const own: number[] = []
  const periods: number[] = []
  for (let i = 0; i < 3; i++) {
    await before(i)
    const t0 = performance.now()
    own.push((await coord.runIteration({ timeoutMs: 120_000 })).computeMs[stage] / 1000)
    periods.push((performance.now() - t0) / 1000)
  }
  return {
    stage,
    kind,
    rung: record.rung,
    knownS: (knownAt - signalAt) / 1000,
    beforePublishS: (watch.publishedAt - knownAt) / 1000,
    afterTakesS: (endAt - Math.max(...takes)) / 1000,
    rebuiltTakeS: ((watch.takenAt.get(stage) as number) - published) / 1000,
    ...(donorsReadyS != null ? { donorsReadyS } : {}),
    bytes: record.bytes,
    firstPeriodS: periods[0],
    warmPeriodS: median(periods.slice(1)),
    firstOwnS: own[0],
    warmOwnS: median(own.slice(1))
  }
}

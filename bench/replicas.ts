/**
 * bench:replicas — the replicas projection (sim/replicas.ts) on the CheckFree paper's 7-stage
 * throughput harness shape: tokens/s and whole-stage losses per hour for R = 1, 2, 3 replicas per
 * stage at 10% and 33% per-peer failures per hour. R = 1 (today's one peer per stage) is the
 * baseline, computed in the same run. Ends with `bench: stage_loss_reduction_r3=<losses/h at R=1 /
 * losses/h at R=3>` at 33%/h (the steady-state rates: R = 3 losses are too rare to count in the
 * simulated hours; the simulated counts for R = 1, 2 are printed beside them), and the tokens/s
 * gain of R = 3 over R = 1 under churn.
 */
import { parseArgs } from 'node:util'
import { formatReplicaProjections, runReplicaProjection, type ReplicaProjectionResult } from '../sim/index.js'

const { values } = parseArgs({ options: { hours: { type: 'string', default: '2000' }, seed: { type: 'string', default: '1' } }, strict: true })
const hours = Number(values.hours)
const seed = Number(values.seed)
if (!(hours > 0) || !Number.isInteger(seed)) {
  process.stderr.write(`bench:replicas: --hours must be > 0 and --seed an integer, got ${String(values.hours)}, ${String(values.seed)}\n`)
  process.exit(2)
}
const rows: ReplicaProjectionResult[] = []
for (const rate of [0.10, 0.33]) for (const R of [1, 2, 3]) rows.push(runReplicaProjection({ replicas: R, hourlyRate: rate, hours, seed }))
console.log(formatReplicaProjections(rows))
const at = (R: number, rate: number): ReplicaProjectionResult => rows.find(r => r.replicas === R && r.hourlyRate === rate) as ReplicaProjectionResult
for (const rate of [0.10, 0.33]) {
  console.log(`${(rate * 100).toFixed(0)}%/h: whole-stage losses per hour R=1 ${at(1, rate).expectedStageLossesPerHour.toPrecision(3)}, R=2 ${at(2, rate).expectedStageLossesPerHour.toPrecision(3)}, R=3 ${at(3, rate).expectedStageLossesPerHour.toPrecision(3)}; tokens/s under churn R=3 / R=1 = ${(at(3, rate).churnTokensPerS / at(1, rate).churnTokensPerS).toFixed(2)}`)
}
console.log(`bench: stage_loss_reduction_r3=${(at(1, 0.33).expectedStageLossesPerHour / at(3, 0.33).expectedStageLossesPerHour).toPrecision(4)}`)
console.log(`bench: stage_loss_reduction_r3_10pct=${(at(1, 0.10).expectedStageLossesPerHour / at(3, 0.10).expectedStageLossesPerHour).toPrecision(4)}`)
console.log(`bench: replicas_tokens_gain_r3=${(at(3, 0.33).churnTokensPerS / at(1, 0.33).churnTokensPerS).toFixed(3)}`)

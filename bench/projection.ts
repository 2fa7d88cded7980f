/**
 * bench:projection — the cost-model projection of a 70B model on 1,000 stages over 500 Mb/s links for
 * 100k iterations at 16%/h per stage, every strategy. Ends with `bench: projection_s=<seconds>`
 * (the projection's own compute time; target under 10 s).
 */
import { formatProjection, runProjection } from '../sim/projection.js'

const t0 = performance.now()
const r = runProjection({ iterations: 100_000, rate: { hourlyRate: 0.16 }, seed: 1 })
const seconds = (performance.now() - t0) / 1000
console.log(formatProjection(r))
console.log(`bench: projection_s=${seconds.toFixed(2)}`)

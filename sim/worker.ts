/**
 * One model-mode run in its own process, for experiments with workers (tfjs keeps one backend per
 * process). Argument: the path of a WorkerJob JSON file. Protocol: JSON lines on stdout
 * ({type: 'progress', attempt, iteration, wallS}, then {type: 'done'}). The run is synchronous, so
 * a target the reference run sets later arrives as a file (job.targetPath) that the stop check polls.
 * The RunResult goes to job.resultPath.
 */
import '../model/polyfill.js'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { initBackend } from '../model/backend.js'
import { CostModel } from './cost-model.js'
import { replaceNumbers, type WorkerJob } from './experiment.js'
import { runModelMode } from './model-mode.js'
import { readTrace } from './trace.js'

const job = JSON.parse(readFileSync(process.argv[2], 'utf8')) as WorkerJob
let target = job.target
let lastPoll = 0
const currentTarget = (): number | undefined => {
  const now = performance.now()
  if (target == null && now - lastPoll > 500) {
    lastPoll = now
    try {
      if (existsSync(job.targetPath)) target = (JSON.parse(readFileSync(job.targetPath, 'utf8')) as { target: number }).target
    } catch { /* being written: next poll */ }
  }
  return target
}
await initBackend({ backend: job.backend, strict: true })
let lastSent = 0
const run = runModelMode({
  model: job.model,
  train: job.train,
  iterations: job.iterations,
  strategy: job.strategy,
  options: job.options,
  trace: job.tracePath != null ? readTrace(job.tracePath) : undefined,
  cost: new CostModel(job.cost),
  seed: job.seed,
  stopAtTarget: job.stopAtTarget ? currentTarget : undefined,
  onProgress: p => {
    const now = performance.now()
    if (now - lastSent < 250) return
    lastSent = now
    process.stdout.write(JSON.stringify({ type: 'progress', attempt: p.attempt, iteration: p.iteration, wallS: p.wallS }) + '\n')
  }
})
writeFileSync(job.resultPath, JSON.stringify(run, replaceNumbers))
process.stdout.write(JSON.stringify({ type: 'done' }) + '\n')

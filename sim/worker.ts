/**
 * One model-mode run in its own process, for experiments with workers (tfjs keeps one backend per
 * process). Argument: the path of a WorkerJob JSON file. Protocol: JSON lines on stdout
 * ({type: 'progress', attempt, iteration, wallS}, then {type: 'done'}). The RunResult goes to
 * job.resultPath.
 */
import '../common/polyfill.js'
import { readFileSync, writeFileSync } from 'node:fs'
import { initBackend } from '../model/index.js'
import { CostModel } from './cost-model.js'
import { replaceNumbers, type WorkerJob } from './experiment.js'
import { runModelMode } from './model-mode.js'
import { readTrace } from './trace.js'

const job = JSON.parse(readFileSync(process.argv[2], 'utf8')) as WorkerJob
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
  failAtStart: job.failAtStart,
  stopAtTarget: job.stopAtTarget ? job.target : undefined,
  onProgress: p => {
    const now = performance.now()
    if (now - lastSent < 250) return
    lastSent = now
    process.stdout.write(JSON.stringify({ type: 'progress', attempt: p.attempt, iteration: p.iteration, wallS: p.wallS }) + '\n')
  }
})
writeFileSync(job.resultPath, JSON.stringify(run, replaceNumbers))
process.stdout.write(JSON.stringify({ type: 'done' }) + '\n')

/**
 * bench:pipeline — tokens/s of a coordinator + 4 peer processes on loopback against the local
 * pipeline trainer (all stages in one process) with the same model, stages and microbatches, in
 * the same run. Ends with `bench: pipeline_efficiency=<distributed / local>`.
 *
 * On this 2-core machine the 4 peers share 2 cores, so the distributed run can overlap two stages'
 * compute while the local trainer runs everything on one core: efficiency above 1 is possible.
 */
import '../common/polyfill.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { initBackend } from '../model/backend.js'
import { DEFAULT_MODEL, DEFAULT_TRAIN } from '../model/config.js'
import { loadBrownCorpus } from '../model/data.js'
import { tuneHeapGrowth } from '../common/index.js'
import { LocalPipelineTrainer } from '../model/trainer.js'
import { accessArgs } from '../sim/peer-process.js'
import { benchSecret } from './harness.js'

// the local trainer runs in this process: tuned as the `spotpipe` processes it is compared with are
tuneHeapGrowth()

const ITERS = Number(process.env.BENCH_ITERS ?? 14)
const WARMUP = 2
const CLI = fileURLToPath(new URL('../cli/main-entry.ts', import.meta.url))
const children: ChildProcess[] = []

function start (args: string[]): { child: ChildProcess, lines: AsyncIterableIterator<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, SPOTPIPE_QUIET: '1' } })
  children.push(child)
  return { child, lines: createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]() }
}

function killAll (): void { for (const c of children) if (c.exitCode == null) c.kill('SIGKILL') }
process.on('exit', killAll)
process.on('SIGINT', () => { killAll(); process.exit(130) })

async function distributed (): Promise<number> {
  const { access } = await benchSecret()
  const secret = accessArgs(access)
  const coord = start(['coordinator', '--cluster', 'bench', '--iterations', String(ITERS), ...secret])
  const first = await coord.lines.next()
  const addr = String(first.value).split(' ')[1]
  for (let i = 0; i < DEFAULT_TRAIN.stages; i++) start(['peer', '--cluster', 'bench', '--coordinator', addr, '--backend', 'wasm', ...secret])
  const times: number[] = []
  for await (const line of coord.lines) {
    const m = /^iter (\d+) loss \S+ ms (\d+)/.exec(line)
    if (m == null) continue
    times.push(Number(m[2]))
    if (times.length === ITERS) break
  }
  killAll()
  const measured = times.slice(WARMUP)
  const tokens = measured.length * DEFAULT_TRAIN.microbatches * DEFAULT_TRAIN.microbatchSize * DEFAULT_MODEL.seqLen
  return tokens / (measured.reduce((a, b) => a + b, 0) / 1000)
}

async function local (): Promise<number> {
  await initBackend({ backend: 'wasm', strict: true })
  const t = new LocalPipelineTrainer({ trainTokens: loadBrownCorpus().train })
  let ms = 0
  for (let i = 0; i < ITERS; i++) {
    const r = t.step()
    if (i >= WARMUP) ms += r.ms
  }
  t.dispose()
  return (ITERS - WARMUP) * DEFAULT_TRAIN.microbatches * DEFAULT_TRAIN.microbatchSize * DEFAULT_MODEL.seqLen / (ms / 1000)
}

console.log(`demo model: d=${DEFAULT_MODEL.dModel}, ${DEFAULT_MODEL.nBlocks} blocks, seq ${DEFAULT_MODEL.seqLen}; ${DEFAULT_TRAIN.stages} stages x ${DEFAULT_TRAIN.microbatches} microbatches of ${DEFAULT_TRAIN.microbatchSize}; ${ITERS - WARMUP} timed iterations after ${WARMUP} warm-up`)
const localTps = await local()
console.log(`local pipeline trainer (1 process): ${localTps.toFixed(0)} tokens/s`)
const distTps = await distributed()
console.log(`coordinator + ${DEFAULT_TRAIN.stages} peer processes:   ${distTps.toFixed(0)} tokens/s`)
console.log(`bench: pipeline_efficiency=${(distTps / localTps).toFixed(3)}`)
process.exit(0)

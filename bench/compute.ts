/**
 * bench:compute — median step time and GFLOP/s of a middle pipeline stage (d=256, 4 heads, 2 blocks,
 * seq 128, batch 8, Adam): forward, backward (with the activation recomputation the stage uses) and
 * an optimizer step, on each available backend.
 *
 * FLOPs are model FLOPs: 6 per matmul weight per token (2 forward, 4 backward) plus attention's
 * 12*B*T*T*D per block; the recomputed forward is NOT counted (it is overhead of our design), so the
 * figure is comparable to the usual MFU-style numbers. Hardware FLOP/s is 4/3 of it for the matmuls.
 * Runs each backend in a child process, since tfjs keeps one backend per process.
 */
import '../common/polyfill.js'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { initBackend, type BackendName } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig } from '../model/config.js'
import { stageLayout } from '../model/params.js'
import { Stage } from '../model/stage.js'

const SHAPE = { dModel: 256, nHeads: 4, blocks: 2, seqLen: 128, batch: 8 }

export function stageFlops (d: number, blocks: number, B: number, T: number, mlpRatio = 4): number {
  const matmulWeights = blocks * (4 * d * d + 2 * mlpRatio * d * d)
  const attention = blocks * 4 * B * T * T * d // QK^T and AV, forward
  return 6 * matmulWeights * B * T + 3 * attention
}

async function measure (backend: BackendName, steps: number, warmup: number): Promise<{ medianMs: number, gflops: number }> {
  const got = await initBackend({ backend, strict: true })
  if (got !== backend) throw new Error(`wanted ${backend}, got ${got}`)
  const model = resolveModelConfig({ dModel: SHAPE.dModel, nHeads: SHAPE.nHeads, nBlocks: 3 * SHAPE.blocks, seqLen: SHAPE.seqLen })
  const train = resolveTrainConfig({ stages: 3 }, model)
  const stage = new Stage({ model, train, layout: stageLayout(model, 3, 1) }) // the middle stage: 2 blocks
  const x = tf.randomNormal([SHAPE.batch, SHAPE.seqLen, SHAPE.dModel], 0, 1, 'float32', 1)
  const dy = tf.randomNormal([SHAPE.batch, SHAPE.seqLen, SHAPE.dModel], 0, 1e-3, 'float32', 2)
  const times: number[] = []
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now()
    const out = stage.forward('mb', x, ['blocks'])
    const dx = stage.backward('mb', dy)
    stage.step(1)
    dx?.dataSync()
    out.dispose(); dx?.dispose()
    if (i >= warmup) times.push(performance.now() - t0)
  }
  stage.dispose(); x.dispose(); dy.dispose()
  times.sort((a, b) => a - b)
  const medianMs = times[Math.floor(times.length / 2)]
  return { medianMs, gflops: stageFlops(SHAPE.dModel, SHAPE.blocks, SHAPE.batch, SHAPE.seqLen) / (medianMs / 1000) / 1e9 }
}

async function child (backend: BackendName): Promise<void> {
  const steps = backend === 'cpu' ? 3 : 12 // cpu is ~20x slower: 3 steps keep the bench short
  try {
    const r = await measure(backend, steps, backend === 'cpu' ? 1 : 3)
    process.stdout.write(JSON.stringify({ backend, steps, ...r }) + '\n')
  } catch (err) {
    process.stdout.write(JSON.stringify({ backend, error: (err as Error).message.split('\n')[0] }) + '\n')
  }
}

async function parent (): Promise<void> {
  const self = fileURLToPath(import.meta.url)
  const gf = stageFlops(SHAPE.dModel, SHAPE.blocks, SHAPE.batch, SHAPE.seqLen) / 1e9
  console.log(`middle stage: d=${SHAPE.dModel}, ${SHAPE.nHeads} heads, ${SHAPE.blocks} blocks, seq ${SHAPE.seqLen}, batch ${SHAPE.batch}, Adam; ${gf.toFixed(2)} model GFLOP per step`)
  const results: Record<string, { medianMs: number, gflops: number }> = {}
  for (const backend of ['tensorflow', 'wasm', 'cpu'] as BackendName[]) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--child', backend], { encoding: 'utf8', env: { ...process.env, SPOTPIPE_QUIET: '1' }, timeout: 600_000 })
    const line = r.stdout.trim().split('\n').filter(l => l.startsWith('{')).pop()
    const j = line != null ? JSON.parse(line) as { backend: string, steps: number, medianMs: number, gflops: number, error?: string } : undefined
    if (j == null || j.error != null) {
      console.log(`${backend.padEnd(10)} unavailable: ${(j?.error ?? r.stderr.trim().split('\n').pop() ?? 'no output').slice(0, 200)}`)
      continue
    }
    results[backend] = j
    console.log(`${backend.padEnd(10)} median step ${j.medianMs.toFixed(1)} ms over ${j.steps} steps  ${j.gflops.toFixed(2)} GFLOP/s`)
  }
  if (results.wasm != null && results.cpu != null) console.log(`wasm / cpu speed-up: ${(results.cpu.medianMs / results.wasm.medianMs).toFixed(1)}x`)
  if (results.wasm == null) { console.log('bench: wasm_gflops=0'); process.exitCode = 1; return }
  console.log(`bench: wasm_gflops=${results.wasm.gflops.toFixed(2)}`)
}

const i = process.argv.indexOf('--child')
if (i >= 0) await child(process.argv[i + 1] as BackendName)
else await parent()

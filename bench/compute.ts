/**
 * bench:compute — a middle pipeline stage's full training step (forward, backward, gradient
 * clipping, Adam; d=256, 4 heads, 2 blocks, seq 128, batch 8) on each available backend, against
 * the same backend's plain matMul at the stage's largest shapes, measured in the same process.
 *
 * FLOPs are model FLOPs, counted from the shapes: 2 per weight per token for each forward matmul,
 * and backward twice that (dx and dW), so a step is 3x the forward matmul FLOPs. Attention's
 * QK^T and PV count the full T x T square (2*T*T*D each per sequence, forward), not the causal half
 * that is used. Softmax, LayerNorm, GELU, Adam and the copies are not counted: they are overhead.
 *
 *   bench: wasm_gflops=<step GFLOP/s on wasm>
 *   bench: step_vs_matmul=<step GFLOP/s / plain matMul GFLOP/s, on the default backend>
 *   bench: torch_ratio=<spotpipe step time / PyTorch step time>   (only when python3 has torch)
 *   bench: gpt2_small_stage_tokens_s=<n>                           (only with --gpt2)
 *
 * Flags: --gpt2 also times a gpt2-small middle stage; --backend <name> runs only that backend.
 *
 * Each backend runs in a child process, since tfjs keeps one backend per process.
 */
import '../common/polyfill.js'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { initBackend, type BackendName } from '../model/backend.js'
import { resolveModelConfig, resolveTrainConfig, type ModelConfig } from '../model/config.js'
import { stageLayout, stageSpecs } from '../model/params.js'
import { Stage } from '../model/stage.js'

interface Shape { dModel: number, nHeads: number, blocks: number, seqLen: number, batch: number, vocab: number }
const SHAPE: Shape = { dModel: 256, nHeads: 4, blocks: 2, seqLen: 128, batch: 8, vocab: 256 }
const GPT2_SMALL: Shape = { dModel: 768, nHeads: 12, blocks: 3, seqLen: 1024, batch: 1, vocab: 50257 }

/** Model FLOPs of one training step of `blocks` blocks on B sequences of T tokens (see the top). */
export function stageFlops (d: number, blocks: number, B: number, T: number, mlpRatio = 4): number {
  const matmulWeights = blocks * (4 * d * d + 2 * mlpRatio * d * d) // q, k, v, o; w1, w2
  const attention = blocks * 2 * (2 * B * T * T * d) //                QK^T and PV, forward
  return 3 * (2 * matmulWeights * B * T + attention)
}

interface Measured { medianMs: number, gflops: number, matmulGflops: number, steps: number }

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/**
 * The stage's two largest products, [N,D] @ [D,F] and [N,F] @ [F,D], as a plain matMul on fixed
 * operands (the weight packed once, as a stage's weights are between steps): returns a function
 * that times one pair in ms, and the pair's FLOPs.
 */
function matmulPair (s: Shape): { time: () => number, flops: number, dispose: () => void } {
  const N = s.batch * s.seqLen
  const F = 4 * s.dModel
  const pairs = [[tf.randomNormal([N, s.dModel]), tf.randomNormal([s.dModel, F])], [tf.randomNormal([N, F]), tf.randomNormal([F, s.dModel])]] as tf.Tensor2D[][]
  const time = (): number => {
    const t0 = performance.now()
    for (const [a, b] of pairs) tf.tidy(() => { tf.matMul(a, b).dataSync() })
    return performance.now() - t0
  }
  return { time, flops: 2 * 2 * N * s.dModel * F, dispose: () => { for (const t of pairs.flat()) t.dispose() } }
}

function model (s: Shape): ModelConfig {
  return resolveModelConfig({ dModel: s.dModel, nHeads: s.nHeads, nBlocks: 3 * s.blocks, seqLen: s.seqLen, vocab: s.vocab })
}

/**
 * Median step time of the middle stage, and plain matMul GFLOP/s timed between the steps (each step
 * is followed by one matMul pair), so both see the same machine load.
 */
function measure (s: Shape, steps: number, warmup: number): Measured {
  const m = model(s)
  const stage = new Stage({ model: m, train: resolveTrainConfig({ stages: 3 }, m), layout: stageLayout(m, 3, 1) }) // the middle stage
  const x = tf.randomNormal([s.batch, s.seqLen, s.dModel], 0, 1, 'float32', 1)
  const dy = tf.randomNormal([s.batch, s.seqLen, s.dModel], 0, 1e-3, 'float32', 2)
  const mm = matmulPair(s)
  const times: number[] = []
  const mmTimes: number[] = []
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now()
    const out = stage.forward('mb', x, ['blocks'])
    const dx = stage.backward('mb', dy)
    stage.step(1)
    dx?.dataSync()
    out.dispose(); dx?.dispose()
    if (i >= warmup) times.push(performance.now() - t0)
    const mmMs = mm.time()
    if (i >= warmup) mmTimes.push(mmMs)
  }
  stage.dispose(); x.dispose(); dy.dispose(); mm.dispose()
  const medianMs = median(times)
  return { medianMs, steps, gflops: stageFlops(s.dModel, s.blocks, s.batch, s.seqLen) / (medianMs / 1000) / 1e9, matmulGflops: mm.flops / (median(mmTimes) / 1000) / 1e9 }
}

async function child (backend: BackendName, gpt2: boolean): Promise<void> {
  try {
    const got = await initBackend({ backend, strict: true })
    if (got !== backend) throw new Error(`wanted ${backend}, got ${got}`)
    // cpu is ~25x slower than wasm (40 s a step): one step keeps the bench short
    const r = gpt2 ? measure(GPT2_SMALL, 2, 1) : backend === 'cpu' ? measure(SHAPE, 1, 0) : measure(SHAPE, 12, 3)
    process.stdout.write(JSON.stringify({ backend, ...r }) + '\n')
  } catch (err) {
    process.stdout.write(JSON.stringify({ backend, error: (err as Error).message.split('\n')[0] }) + '\n')
  }
}

/**
 * Pythons to try for torch: the one on PATH, then Debian's own (a pyenv or venv python3 on PATH
 * does not see Debian's python3-torch, which installs for /usr/bin/python3).
 */
const PYTHONS = ['python3', '/usr/bin/python3']

/**
 * The same middle stage in PyTorch (float32, pre-LN blocks, Adam), median ms per step, on one
 * thread like a wasm peer (model/backend.ts runs wasm single-threaded, one peer per core); skipped
 * without torch.
 */
function torchStepMs (s: Shape): { ms: number, threads: number, python: string, blas: string } | { skipped: string } {
  const python = PYTHONS.find(p => {
    const probe = spawnSync(p, ['-c', 'import torch'], { encoding: 'utf8' })
    return probe.error == null && probe.status === 0
  })
  if (python == null) return { skipped: `torch is not importable by ${PYTHONS.join(' or ')}` }
  const py = `
import math, time, torch
torch.manual_seed(0)
torch.set_num_threads(1)
torch.ones(2, 2) @ torch.ones(2, 2)
# Debian builds torch against the generic libblas.so.3; which one serves it is what is mapped
blas = 'openblas' if any('openblas' in l for l in open('/proc/self/maps')) else 'not-openblas'
D, H, L, T, B = ${s.dModel}, ${s.nHeads}, ${s.blocks}, ${s.seqLen}, ${s.batch}
class Block(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.ln1, s.ln2 = torch.nn.LayerNorm(D), torch.nn.LayerNorm(D)
        s.q, s.k, s.v, s.o = (torch.nn.Linear(D, D, bias=False) for _ in range(4))
        s.w1, s.w2 = torch.nn.Linear(D, 4 * D), torch.nn.Linear(4 * D, D)
    def forward(s, x):
        h = s.ln1(x)
        sp = lambda t: t.view(B, T, H, D // H).transpose(1, 2)
        a = torch.softmax((sp(s.q(h)) @ sp(s.k(h)).transpose(-1, -2)) / math.sqrt(D // H) + mask, -1) @ sp(s.v(h))
        x = x + s.o(a.transpose(1, 2).reshape(B, T, D))
        return x + s.w2(torch.nn.functional.gelu(s.w1(s.ln2(x)), approximate='tanh'))
mask = torch.triu(torch.full((T, T), -1e9), 1)
net = torch.nn.Sequential(*[Block() for _ in range(L)])
opt = torch.optim.Adam(net.parameters(), lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
x, dy = torch.randn(B, T, D, requires_grad=True), torch.randn(B, T, D) * 1e-3
ts = []
for i in range(15):
    t0 = time.perf_counter()
    opt.zero_grad()
    net(x).backward(dy)
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    if i >= 3: ts.append(time.perf_counter() - t0)
ts.sort()
print(ts[len(ts) // 2] * 1000, torch.get_num_threads(), blas)
`
  const r = spawnSync(python, ['-c', py], { encoding: 'utf8', timeout: 300_000 })
  const [msText, threadsText, blas] = r.stdout.trim().split(/\s+/)
  const ms = Number(msText)
  if (r.status !== 0 || !Number.isFinite(ms)) return { skipped: `the PyTorch step failed: ${(r.stderr.trim().split('\n').pop() ?? '').slice(0, 200)}` }
  return { ms, threads: Number(threadsText), python, blas: blas ?? 'unknown' }
}

/** Float32 memory of one gpt2-small stage (12 blocks over 4 stages), from the shapes. */
function gpt2Memory (): void {
  const m = resolveModelConfig({ dModel: 768, nHeads: 12, nBlocks: 12, seqLen: 1024, vocab: 50257 })
  const N = m.seqLen // one sequence per microbatch
  const D = m.dModel
  const F = m.mlpRatio * D
  // What the forward keeps per block (layers.ts caches): ln1 xhat, attention input, q, k, v, y;
  // ln2 xhat, MLP input; GELU input, tanh, output; two rstd columns; the H x T x T probabilities.
  const perBlock = 8 * N * D + 3 * N * F + 2 * N + m.nHeads * N * N
  const MB = (floats: number): string => `${(floats * 4 / 2 ** 20).toFixed(0)} MB`
  console.log('gpt2-small stages (d 768, 12 heads, 12 blocks over 4 stages, context 1024, vocab 50,257), float32, microbatch of 1 sequence:')
  for (const [label, stage] of [['stage 0 (embedding + 3 blocks)', 0], ['stage 1 (3 blocks)', 1], ['stage 3 (3 blocks + head)', 3]] as const) {
    const layout = stageLayout(m, 4, stage)
    const P = stageSpecs(m, layout).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0)
    const blocks = layout.endBlock - layout.firstBlock
    const extra = (layout.hasEmbed ? N * m.vocab : 0) + (layout.hasHead ? N * D + N + N * D + 2 * N * m.vocab : 0) // one-hot; ln, h, log-probs, one-hot targets
    const act = blocks * perBlock + extra
    console.log(`  ${label.padEnd(32)} params ${(P / 1e6).toFixed(1)}M = ${MB(P)}, gradients ${MB(P)}, Adam ${MB(2 * P)}, activations ${MB(act)} per microbatch (${MB(perBlock)} per block)`)
  }
}

async function parent (): Promise<void> {
  const self = fileURLToPath(import.meta.url)
  const gpt2 = process.argv.includes('--gpt2')
  const gf = stageFlops(SHAPE.dModel, SHAPE.blocks, SHAPE.batch, SHAPE.seqLen) / 1e9
  console.log(`middle stage: d=${SHAPE.dModel}, ${SHAPE.nHeads} heads, ${SHAPE.blocks} blocks, seq ${SHAPE.seqLen}, batch ${SHAPE.batch}, Adam; ${gf.toFixed(2)} model GFLOP per step`)
  const results: Partial<Record<BackendName, Measured>> = {}
  const run = (backend: BackendName, big: boolean): Measured | string => {
    const args = ['--import', 'tsx', self, '--child', backend, ...(big ? ['--gpt2'] : [])]
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, SPOTPIPE_QUIET: '1' }, timeout: 900_000 })
    const line = r.stdout.trim().split('\n').filter(l => l.startsWith('{')).pop()
    const j = line != null ? JSON.parse(line) as Measured & { error?: string } : undefined
    if (j == null || j.error != null) return (j?.error ?? r.stderr.trim().split('\n').pop() ?? 'no output').slice(0, 200)
    return j
  }
  const only = process.argv.indexOf('--backend') // e.g. --backend wasm: just that one
  const backends: BackendName[] = only >= 0 ? [process.argv[only + 1] as BackendName] : ['tensorflow', 'wasm', 'cpu']
  for (const backend of backends) {
    const j = run(backend, false)
    if (typeof j === 'string') { console.log(`${backend.padEnd(10)} unavailable: ${j}`); continue }
    results[backend] = j
    console.log(`${backend.padEnd(10)} median step ${j.medianMs.toFixed(1)} ms over ${j.steps} steps  ${j.gflops.toFixed(2)} GFLOP/s; plain matMul ${j.matmulGflops.toFixed(2)} GFLOP/s (step / matMul ${(j.gflops / j.matmulGflops).toFixed(2)})`)
  }
  if (results.wasm != null && results.cpu != null) console.log(`wasm / cpu speed-up: ${(results.cpu.medianMs / results.wasm.medianMs).toFixed(1)}x`)
  const torch = torchStepMs(SHAPE)
  if ('skipped' in torch) console.log(`torch: skipped (${torch.skipped})`)
  else console.log(`torch      median step ${torch.ms.toFixed(1)} ms (${torch.threads} thread(s), ${torch.python}, BLAS ${torch.blas})  ${(gf / (torch.ms / 1000)).toFixed(2)} GFLOP/s`)
  gpt2Memory()
  let gpt2Tokens: number | undefined
  if (gpt2) {
    const j = run('wasm', true)
    if (typeof j === 'string') console.log(`gpt2-small middle stage on wasm: failed: ${j}`)
    else {
      gpt2Tokens = GPT2_SMALL.seqLen * GPT2_SMALL.batch / (j.medianMs / 1000)
      console.log(`gpt2-small middle stage (3 blocks, 1 x 1024 tokens) on wasm: ${(j.medianMs / 1000).toFixed(1)} s per step, ${j.gflops.toFixed(2)} GFLOP/s (plain matMul ${j.matmulGflops.toFixed(2)})`)
    }
  } else console.log('gpt2-small middle stage step: not measured (add --gpt2: one warm-up and two steps of 1 x 1024 tokens, 2-4 minutes on wasm)')
  const def = (['tensorflow', 'wasm', 'cpu'] as BackendName[]).find(b => results[b] != null)
  if (results.wasm == null || def == null) { console.log('bench: wasm_gflops=0'); process.exitCode = 1; return }
  console.log(`bench: wasm_gflops=${results.wasm.gflops.toFixed(2)}`)
  if (!('skipped' in torch)) console.log(`bench: torch_ratio=${(results[def]!.medianMs / torch.ms).toFixed(2)}`)
  if (gpt2Tokens != null) console.log(`bench: gpt2_small_stage_tokens_s=${gpt2Tokens.toFixed(1)}`)
  console.log(`bench: step_vs_matmul=${(results[def]!.gflops / results[def]!.matmulGflops).toFixed(3)}`)
}

const i = process.argv.indexOf('--child')
if (i >= 0) await child(process.argv[i + 1] as BackendName, process.argv.includes('--gpt2'))
else await parent()

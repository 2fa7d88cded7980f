/**
 * Probe process of bench:costmodel (not run directly): a process holding one stage. Told over IPC,
 * it runs iterations of its stage's compute (M forwards, M backwards, the step) on fixed inputs: the
 * first is cold (wasm kernels and buffers made on first use), the later ones warm. Several probes computing at once
 * give what the host's cores do with that many busy stage processes; the probes computing one after
 * another give the compute of one training step, measured outside the coordinator's process (a
 * step measured inside it stalled its event loop for 1.3 s before every attempt).
 */
import '../common/polyfill.js'
import { once } from 'node:events'
import * as tf from '@tensorflow/tfjs'
import { initBackend, resolveModelConfig, resolveTrainConfig, route, sampleBatch, stageLayout, Stage, loadBrownCorpus, type ModelConfig, type TrainConfig } from '../model/index.js'

export type ProbeRequest =
  | { type: 'start', model: Partial<ModelConfig>, train: Partial<TrainConfig>, stage: number }
  | { type: 'compute', iterations: number }
  | { type: 'sample', iteration: number }

export type ProbeReply =
  | { type: 'ready' }
  | { type: 'computed', seconds: number[] }
  | { type: 'sampled', forwardS: number, backwardS: number, stepS: number }
  | { type: 'error', message: string }

const send = (m: ProbeReply): void => { process.send?.(m) }

async function main (): Promise<void> {
  process.on('disconnect', () => { process.exit(1) }) // the bench is gone
  const [start] = await once(process, 'message') as [ProbeRequest]
  if (start.type !== 'start') throw new Error(`expected start, got ${start.type}`)
  await initBackend({ backend: 'wasm', strict: true })
  const model = resolveModelConfig(start.model)
  const train = resolveTrainConfig(start.train, model)
  const S = train.stages
  const M = train.microbatches
  const s = start.stage
  const stage = new Stage({ model, train, layout: stageLayout(model, S, s) })
  const hop = route(S, 0, false).findIndex(h => h.stage === s)
  const parts = route(S, 0, false)[hop].parts
  const last = s === S - 1
  const tokens = loadBrownCorpus().train
  const act = [train.microbatchSize, model.seqLen, model.dModel]
  /** One iteration of this stage's compute as its peer runs it: M forwards, M backwards, the step (seconds of each part). */
  const computeOnce = (it: number): { forwardS: number, backwardS: number, stepS: number } => {
    const t0 = performance.now()
    for (let mb = 0; mb < M; mb++) {
      const b = sampleBatch(tokens, { seed: train.dataSeed, iteration: it, microbatch: mb, replica: 0 }, train.microbatchSize, model.seqLen)
      // the stage's input as a peer receives it: tokens on stage 0, a host copy of activations elsewhere
      const x = s === 0 ? tf.tensor2d(b.inputs, [train.microbatchSize, model.seqLen], 'int32') : tf.tensor(new Float32Array(act[0] * act[1] * act[2]).fill(0.01), act, 'float32')
      const targets = last ? tf.tensor2d(b.targets, [train.microbatchSize, model.seqLen], 'int32') : undefined
      const y = stage.forward(`${mb}:${hop}`, x, parts, targets)
      y.dataSync()
      y.dispose()
      x.dispose()
      targets?.dispose()
    }
    const t1 = performance.now()
    for (let mb = 0; mb < M; mb++) {
      const dy = last ? undefined : tf.tensor(new Float32Array(act[0] * act[1] * act[2]).fill(1e-4), act, 'float32')
      const dx = stage.backward(`${mb}:${hop}`, dy)
      dx?.dataSync()
      dx?.dispose()
      dy?.dispose()
    }
    const t2 = performance.now()
    tf.tidy(() => { stage.step(M) })
    return { forwardS: (t1 - t0) / 1000, backwardS: (t2 - t1) / 1000, stepS: (performance.now() - t2) / 1000 }
  }
  send({ type: 'ready' })
  process.on('message', (m: ProbeRequest) => {
    void (async () => {
      if (m.type === 'compute') {
        const seconds: number[] = []
        for (let i = 0; i < m.iterations; i++) {
          const c = computeOnce(i)
          seconds.push(c.forwardS + c.backwardS + c.stepS)
        }
        send({ type: 'computed', seconds })
      } else if (m.type === 'sample') {
        send({ type: 'sampled', ...computeOnce(m.iteration) })
      }
    })().catch((err: Error) => { send({ type: 'error', message: err.stack ?? err.message }) })
  })
}

main().catch((err: Error) => { send({ type: 'error', message: err.stack ?? err.message }); process.exit(1) })

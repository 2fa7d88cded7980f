/**
 * Probe process of bench:costmodel (not run directly): a fresh process standing in for a spare peer
 * that has just been given a stage. Told over IPC, it pulls a stage's state from a cluster peer over
 * the weights protocol (its first pull is cold, as a rebuilt peer's is) and, when told, installs it
 * as a rebuilt peer does (the stage built from the pulled state, its weights packed), and runs iterations of its
 * own stage's compute (M forwards, M backwards, the step) on fixed inputs: the first is cold (wasm
 * kernels and buffers made on first use), the later ones warm. Several probes computing at once
 * give what the host's cores do with that many busy stage processes; the probes computing one after
 * another give the compute of one training step, measured outside the coordinator's process (a
 * step measured inside it stalled its event loop for 1.3 s before every attempt).
 */
import '../common/polyfill.js'
import { once } from 'node:events'
import * as tf from '@tensorflow/tfjs'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { initBackend, resolveModelConfig, resolveTrainConfig, route, sampleBatch, stageLayout, Stage, loadBrownCorpus, loadStageState, stateFromTensorSet, type ModelConfig, type TrainConfig } from '../model/index.js'
import { createPeerLibp2p, fetchWeights, loadSwarmKey, type PeerLibp2p } from '../net/index.js'

export type ProbeRequest =
  | { type: 'start', model: Partial<ModelConfig>, train: Partial<TrainConfig>, stage: number, swarmKeyFile: string }
  | { type: 'pull', donor: string, donorAddrs: string[], stage: number, install?: boolean }
  | { type: 'compute', iterations: number }
  | { type: 'sample', iteration: number }

export type ProbeReply =
  | { type: 'ready' }
  | { type: 'pulled', seconds: number, bytes: number, installS: number }
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
  let stage = new Stage({ model, train, layout: stageLayout(model, S, s) })
  const hop = route(S, 0, false).findIndex(h => h.stage === s)
  const parts = route(S, 0, false)[hop].parts
  const last = s === S - 1
  const tokens = loadBrownCorpus().train
  const act = [train.microbatchSize, model.seqLen, model.dModel]
  let node: PeerLibp2p | undefined
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
      if (m.type === 'pull') {
        node ??= await createPeerLibp2p({ swarmKey: await loadSwarmKey(start.swarmKeyFile) })
        const id = peerIdFromString(m.donor)
        await node.peerStore.merge(id, { multiaddrs: m.donorAddrs.map(a => multiaddr(a)) })
        const t0 = performance.now()
        const r = await fetchWeights(node, { donors: [{ peer: id }], stage: m.stage, includeOptimizer: true, timeoutMs: 120_000 })
        const seconds = (performance.now() - t0) / 1000
        let installS = 0
        if (m.install === true) {
          // as a rebuilt peer installs its stage: built from the pulled state (node/recovery.ts
          // exactCopy), then its weights packed for the first forward (node/peer.ts install)
          const t1 = performance.now()
          const state = stateFromTensorSet(r.tensors)
          const built = new Stage({ model, train, layout: stageLayout(model, S, m.stage) })
          loadStageState(built, state.tensors, state.meta, { optimizer: true })
          stage.dispose()
          stage = built
          stage.prepack()
          installS = (performance.now() - t1) / 1000
        }
        send({ type: 'pulled', seconds, bytes: r.bytes, installS })
      } else if (m.type === 'compute') {
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

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../model/backend.js'
import { loadBrownCorpus } from '../model/data.js'
import { runClusterExperiment } from '../sim/cluster-experiment.js'
import { makeTrace } from '../sim/trace.js'
import { killSpawnedPeers } from '../sim/peer-process.js'

let out = ''
beforeAll(async () => {
  await initBackend({ backend: 'wasm', strict: true })
  out = await mkdtemp(join(tmpdir(), 'spotpipe-sim-'))
})
// a run cut off by its timeout never reaches its own cleanup: its peers are killed here
afterEach(async () => { await killSpawnedPeers() })
afterAll(async () => { await rm(out, { recursive: true, force: true }) })

/** The small run both tests replay their traces on. */
const TINY = { model: { dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 16 }, train: { stages: 4, microbatches: 2, microbatchSize: 4 }, iterations: 12, evalEvery: 6, checkpointEvery: 4 }

describe('local-cluster churn simulation', () => {
  it('survives every injected failure, and each appears in the event log with the rung that recovered it', async () => {
    const trace = makeTrace({
      stages: 4,
      iterations: 12,
      seed: 1,
      events: [
        { iteration: 2, stage: 1, kind: 'crash' }, { iteration: 2, stage: 1, kind: 'join' },
        { iteration: 5, stage: 2, kind: 'notice' }, { iteration: 5, stage: 2, kind: 'join' },
        { iteration: 8, stage: 0, kind: 'crash' }, { iteration: 8, stage: 0, kind: 'join' }
      ]
    })
    const r = await runClusterExperiment({
      strategies: ['checkfree-plus', 'checkpoint'],
      trace,
      ...TINY,
      validationTokens: loadBrownCorpus().validation,
      outDir: out
    })
    const rungs = (strategy: string): string[] => (r.runs.find(x => x.strategy === strategy)?.recoveries ?? []).map(e => `${e.stage}:${e.rung}`)
    expect(rungs('checkfree-plus')).toEqual(['1:checkfree', '2:handover', '0:checkfree-plus'])
    expect(rungs('checkpoint')).toEqual(['1:checkpoint', '2:handover', '0:checkpoint'])
    for (const run of r.runs) {
      expect(run.applied).toBe(3)
      expect(run.rows.filter(x => x.iteration >= 0).map(x => x.iteration)).toEqual(Array.from({ length: 12 }, (_, i) => i))
      expect(run.rows.some(x => x.events.includes('recovered by'))).toBe(true)
    }
    const svg = await readFile(r.plot, 'utf8')
    const lines = [...svg.matchAll(/<(?:path|polyline)[^>]*data-strategy="([^"]+)"/g)].map(m => m[1])
    expect(new Set(lines)).toEqual(new Set(['checkfree-plus', 'checkpoint']))
    expect(r.table).toMatch(/checkfree-plus/)
    expect(await readFile(join(out, 'checkpoint.csv'), 'utf8')).toMatch(/^iteration,wall_s,loss,val_loss,events/)
  }, 240_000)

  it('with 2 replicas per stage, a replica loss is taken by its survivor and only a whole-stage loss reaches the ladder', async () => {
    const trace = {
      ...makeTrace({
        stages: 4,
        iterations: 12,
        seed: 2,
        events: [
          { iteration: 2, stage: 1, kind: 'replica-loss' },
          { iteration: 7, stage: 2, kind: 'crash' }, { iteration: 7, stage: 2, kind: 'join' }, { iteration: 7, stage: 2, kind: 'join' }
        ]
      }),
      replicas: 2
    }
    const r = await runClusterExperiment({
      strategies: ['checkfree'],
      trace,
      ...TINY,
      validationTokens: loadBrownCorpus().validation,
      outDir: join(out, 'replicas')
    })
    const run = r.runs[0]
    const recovered = run.recoveries.filter(e => e.outcome === 'recovered').map(e => `${e.stage}:${e.rung}`)
    // the replica loss of stage 1: its survivor, then a spare joins it; stage 2 lost whole: CheckFree
    expect(recovered.filter(x => x.startsWith('1:'))).toEqual(['1:survivors', '1:replica'])
    expect(recovered.filter(x => x.startsWith('2:'))[0]).toBe('2:checkfree')
    expect(run.applied).toBe(2)
    expect(run.rows.filter(x => x.iteration >= 0).map(x => x.iteration)).toEqual(Array.from({ length: 12 }, (_, i) => i))
  }, 240_000)
})

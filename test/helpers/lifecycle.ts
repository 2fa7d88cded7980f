/**
 * What every cluster test file needs around its tests, in one place: the WASM backend before the
 * first test, and after each test, pass or fail, every process it started killed, every cluster it
 * made stopped, every temporary directory removed. A cleanup step that fails is reported on stderr
 * with what it was (a test's own failure stays the one vitest shows), and the other steps still run.
 *
 *   const { track, tempDir } = clusterLifecycle('spotpipe-ck-')
 *   it('...', async () => {
 *     const c = track(new TestCluster({ ... }))
 *     const dir = await tempDir()
 *   })
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeAll } from 'vitest'
import { initBackend } from '../../model/backend.js'
import { killAll } from './procs.js'

export interface Stoppable { stop: () => Promise<void> }

export interface ClusterLifecycle {
  /** Stops `c` after the test (clusters, coordinators, servers); returns `c`. */
  track: <T extends Stoppable>(c: T) => T
  /** A fresh temporary directory, removed after the test. */
  tempDir: () => Promise<string>
}

async function step (what: string, f: () => Promise<unknown> | unknown): Promise<void> {
  try {
    await f()
  } catch (err) {
    process.stderr.write(`test cleanup: ${what} failed: ${(err as Error).message}\n`)
  }
}

/** Registers the hooks (call once, at the top of a test file) and returns the test's handles. */
export function clusterLifecycle (prefix = 'spotpipe-test-'): ClusterLifecycle {
  const stoppable: Stoppable[] = []
  const dirs: string[] = []
  beforeAll(async () => { await initBackend({ backend: 'wasm', strict: true }) })
  afterEach(async () => {
    // processes first: a cluster's coordinator stops faster with no peer left to say goodbye to
    await step('killing the test\'s processes', killAll)
    for (const s of stoppable.splice(0).reverse()) await step('stopping a cluster', async () => { await s.stop() })
    for (const d of dirs.splice(0)) await step(`removing ${d}`, async () => { await rm(d, { recursive: true, force: true }) })
  })
  return {
    track: c => { stoppable.push(c); return c },
    tempDir: async () => {
      const d = await mkdtemp(join(tmpdir(), prefix))
      dirs.push(d)
      return d
    }
  }
}

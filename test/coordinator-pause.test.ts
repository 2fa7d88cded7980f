/**
 * Issue 10, failure 4: a paused coordinator must not declare every peer lost on its own silence.
 * `spotpipe coordinator` and 4 stage peers run as real processes; the coordinator is stopped with
 * SIGSTOP for 20 s (a VM hiccup, a long GC) and continued with SIGCONT. Training must go on under
 * the same epoch, with no peer declared lost and no recovery.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { generateSwarmKey, saveSwarmKey } from '../net/index.js'
import { killAll, spotpipe } from './helpers/procs.js'

const MODEL = ['--d-model', '32', '--heads', '2', '--blocks', '4', '--seq-len', '16', '--stages', '4', '--microbatches', '2', '--microbatch-size', '4']
const PAUSE_MS = 20_000

let dir: string | undefined
afterEach(async () => {
  await killAll()
  if (dir != null) await rm(dir, { recursive: true, force: true })
  dir = undefined
})

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** The highest iteration among the coordinator's `iter N ...` lines so far (-1 if none). */
function lastIter (lines: string[]): number {
  let n = -1
  for (const l of lines) {
    const m = /^iter (\d+) /.exec(l)
    if (m != null) n = Math.max(n, Number(m[1]))
  }
  return n
}

describe('a coordinator paused with SIGSTOP', () => {
  it('keeps training under the same epoch after SIGCONT: no peer lost, no recovery', async () => {
    // A 10 s floor, as the other cluster tests use: a peer building its stage on this shared machine
    // can block its heartbeats for seconds. The pause (20 s) is still twice the floor.
    dir = await mkdtemp(join(tmpdir(), 'spotpipe-pause-'))
    const key = join(dir, 'swarm.key')
    await saveSwarmKey(key, generateSwarmKey())
    const coord = spotpipe(['coordinator', '--cluster', 'pause', '--swarm-key', key, '--heartbeat-timeout', '10000', ...MODEL], { SPOTPIPE_QUIET: '0' })
    const [, addr] = await coord.waitFor(/^coordinator (\S+)/)
    for (let i = 0; i < 4; i++) spotpipe(['peer', '--cluster', 'pause', '--coordinator', addr, '--swarm-key', key, '--backend', 'wasm'])
    await coord.waitFor(/^iter 2 /, 90_000)

    coord.child.kill('SIGSTOP')
    await sleep(PAUSE_MS)
    const before = lastIter(coord.lines)
    coord.child.kill('SIGCONT')

    // a few more iterations, within a bound far below "waits forever for spares"
    await coord.waitFor(new RegExp(`^iter ${before + 3} `), 45_000)
    const err = coord.stderr.join('\n')
    expect(err).toMatch(/coordinator paused for \d+ ms; re-confirming peers before acting on silence/)
    expect(err).not.toMatch(/ lost: /)
    expect(coord.lines.filter(l => l.startsWith('recovery '))).toEqual([])
    // every iteration ran under the first assignment's epoch: nothing was re-assigned
    const epochs = new Set(coord.lines.filter(l => l.startsWith('iter ')).map(l => /epoch (\d+)$/.exec(l)?.[1]))
    expect([...epochs]).toEqual(['1'])
  }, 180_000)
})

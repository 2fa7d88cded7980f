/**
 * `spotpipe top` in a real pseudo-terminal (a private tmux server) against a local cluster: the
 * stage table shows, a SIGKILLed stage's CheckFree recovery appears in the event feed, `q` quits
 * with exit 0. Plus the pure renderers on narrow terminals.
 */
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { StageLostError } from '../coordinator/index.js'
import { ClusterModel } from '../cli/observer.js'
import { textWidth } from '../cli/render/format.js'
import { renderSnapshot, renderTop } from '../cli/render/screen.js'
import { SPARK_CHARS, sparkline } from '../cli/render/sparkline.js'
import { frame } from '../cli/render/terminal.js'
import type { Heartbeat, RecoveryPlan } from '../protocols/index.js'
import { killAll } from './helpers/procs.js'
import { TestCluster } from './helpers/cluster.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SOCKET = `spotpipe-top-test-${process.pid}`

/** Runs a tmux command on this test's own server (-L), so no user session is touched. */
async function tmux (...args: string[]): Promise<{ ok: boolean, stdout: string }> {
  return await new Promise(resolve => {
    execFile('tmux', ['-L', SOCKET, '-f', '/dev/null', ...args], { timeout: 10_000 }, (err, stdout) => { resolve({ ok: err == null, stdout }) })
  })
}

async function poll<T> (what: string, timeoutMs: number, probe: () => Promise<T | undefined>, last: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; screen:\n${await last()}`)
    await new Promise(resolve => setTimeout(resolve, 250))
  }
}

const sq = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`

let cluster: TestCluster | undefined
afterEach(async () => {
  await tmux('kill-server')
  // the server may leave its socket file behind
  await fs.rm(join(process.env.TMUX_TMPDIR ?? '/tmp', `tmux-${process.getuid?.() ?? 0}`, SOCKET), { force: true })
  await killAll()
  await cluster?.stop().catch(() => {})
  cluster = undefined
})

describe('spotpipe top in a terminal', () => {
  it('shows the stage table, then the recovery of a SIGKILLed stage; q quits', async () => {
    const dir = await fs.mkdtemp(join(tmpdir(), 'spotpipe-top-'))
    try {
      // a loaded CI machine can stall a peer's heartbeats for seconds while it builds its stage
      cluster = new TestCluster({ clusterId: 'top-live', model: { dModel: 16, nHeads: 2, nBlocks: 4, seqLen: 8 }, train: { stages: 4, microbatches: 2, microbatchSize: 2 }, heartbeatTimeoutMs: 10_000 })
      const c = cluster
      await c.start(5)
      await c.coord.assignInitial({ timeoutMs: 30_000 })
      for (let i = 0; i < 2; i++) await c.coord.runIteration({ timeoutMs: 30_000 })

      const cmd = `cd ${sq(ROOT)} && env -u DEBUG SPOTPIPE_QUIET=1 ${sq(process.execPath)} --import tsx cli/main-entry.ts top --cluster top-live --coordinator ${sq(c.coord.addrs[0])} ${c.accessArgs().map(sq).join(' ')} 2>${sq(join(dir, 'stderr'))}; echo $? >${sq(join(dir, 'rc'))}`
      const started = await tmux('-u', 'new-session', '-d', '-s', 'top', '-x', '120', '-y', '40', cmd)
      expect(started.ok, 'tmux new-session (is tmux installed? .ci/run installs it)').toBe(true)
      const screen = async (): Promise<string> => (await tmux('capture-pane', '-p', '-t', 'top')).stdout

      // the header and one row per stage, plus the spare
      await poll('the stage table', 20_000, async () => {
        const s = await screen()
        const rows = [0, 1, 2, 3].every(st => new RegExp(`^${st}\\s+…${c.holder(st).peerId.slice(-6)}\\s+stage\\b`, 'm').test(s))
        return /^spotpipe top\s+epoch 1\b/m.test(s) && /^STAGE\s+PEER\s+ROLE\s+ITER\s+LOSS/m.test(s) && rows && /^-\s+…\S+\s+spare\b/m.test(s) ? s : undefined
      }, screen)

      // SIGKILL stage 2's holder mid-iteration and let the coordinator recover it from its neighbours
      const victim = c.holder(2)
      const running = c.coord.runIteration({ timeoutMs: 30_000 })
      setTimeout(() => { victim.proc.child.kill('SIGKILL') }, 20)
      try {
        await running
      } catch (err) {
        if (!(err instanceof StageLostError)) throw err
      }
      await c.coord.until(() => c.coord.failedStages().length > 0, 'the failure to be detected', 10_000)
      const events = await c.coord.recover({ timeoutMs: 30_000 })
      expect(events[0]).toMatchObject({ stage: 2, rung: 'checkfree' })

      const after = await poll('the recovery event', 15_000, async () => {
        const s = await screen()
        return /^\d\d:\d\d:\d\d .*stage 2\b.*checkfree/m.test(s) && new RegExp(`^2\\s+…${c.holder(2).peerId.slice(-6)}\\s`, 'm').test(s) ? s : undefined
      }, screen)
      expect(after).toMatch(/^spotpipe top\s+epoch 2\b/m)
      expect(after).toMatch(/^EVENTS/m)
      for (const l of after.split('\n')) expect(textWidth(l)).toBeLessThanOrEqual(120)

      await tmux('send-keys', '-t', 'top', 'q')
      await poll('top to quit', 10_000, async () => (await tmux('has-session', '-t', 'top')).ok ? undefined : true, screen)
      expect((await fs.readFile(join(dir, 'rc'), 'utf8')).trim()).toBe('0')
      expect(await fs.readFile(join(dir, 'stderr'), 'utf8')).toBe('')
    } finally {
      await tmux('kill-server')
      await fs.rm(dir, { recursive: true, force: true })
    }
  })
})

// ---------------------------------------------------------------- the renderers, no network

const ID = (n: number): string => `12D3KooWPeer${String(n).padStart(4, '0')}abcdefghijklmnopqrstuvwxyz${n}`

function hb (n: number, stage: number, over: Partial<Heartbeat> = {}): Heartbeat {
  return {
    kind: 'heartbeat', peerId: ID(n), role: stage >= 0 ? 'stage' : 'spare', stage, iteration: 40, gradNorm: 0.25,
    weightDigest: '', tokensPerSec: stage === 0 ? 3120 : 0, rssBytes: 1e8, epoch: 2, timestampMs: 0, departing: false, stateIteration: stage >= 0 ? 40 : -1, held: [], ...over
  }
}

/** A cluster model with 4 stages, a spare, a loss history, a recovery and a few events. */
function sampleModel (t0: number): ClusterModel {
  const m = new ClusterModel({ clusterId: 'narrow', coordinator: '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWCoord', startedAt: t0 })
  for (let it = 0; it < 30; it++) m.onMessage(hb(3, 3, { iteration: it, loss: 5.5 - it * 0.1 }), t0 + it * 100)
  for (const [n, s] of [[0, 0], [1, 1], [2, 2], [4, -1]]) m.onMessage(hb(n, s), t0 + 3000)
  m.onMessage({ kind: 'recovery-plan', epoch: 3, stage: 2, rung: 'checkfree', targetPeer: ID(4), donors: [{ peerId: ID(1), stage: 1 }, { peerId: ID(3), stage: 3 }], lrScale: 1.1, weights: [0.4, 0.6], checkpointId: '' }, t0 + 3100)
  m.onMessage({ kind: 'abort', epoch: 2, iteration: 41, reason: 'stages 2 lost because of a very long reason that goes on and on well past any terminal width you might have' }, t0 + 3050)
  m.onMessage({ kind: 'recovery-done', peerId: ID(4), epoch: 3, stage: 2, rung: 'checkfree', bytes: 41_900_000, transferMs: 5100, rebuildMs: 1100 }, t0 + 3200)
  return m
}

describe('top rendering', () => {
  it('never draws a line wider than the terminal, and drops columns as it narrows', () => {
    const t0 = Date.UTC(2025, 0, 1, 12)
    const m = sampleModel(t0)
    m.tick(t0 + 7000) // everyone silent by now: '!' flags and silent events
    const v = m.view(t0 + 7000, { coordinatorId: '12D3KooWCoord', connected: true })
    expect(v.status.events.map(e => e.kind)).toEqual(expect.arrayContaining(['abort', 'recovery', 'recovery-done', 'silent']))
    for (const width of [20, 50, 60, 80, 100, 140]) {
      for (const lines of [renderTop(v, width, 40), renderTop(v, width, 8), renderSnapshot(v, width)]) {
        for (const l of lines) expect(textWidth(l), `width ${width}: ${l}`).toBeLessThanOrEqual(Math.max(width, 20))
      }
      expect(renderTop(v, width, 8).length).toBeLessThanOrEqual(8)
    }
    const narrow = renderTop(v, 50, 40)
    const head50 = narrow.find(l => l.startsWith('STAGE')) ?? ''
    expect(head50).toMatch(/PEER/)
    expect(head50).toMatch(/LOSS/)
    expect(head50).toMatch(/HEARTBEAT/)
    expect(head50).not.toMatch(/ROLE|TOK\/S|GRAD/)
    expect(narrow.join('\n')).not.toMatch(new RegExp(`[${SPARK_CHARS.join('')}]`))
    const mid = renderTop(v, 80, 40)
    const head80 = mid.find(l => l.startsWith('STAGE')) ?? ''
    expect(head80).toMatch(/ROLE.*ITER.*LOSS.*TOK\/S.*HEARTBEAT/)
    // one replica per stage: no replica columns and no risk in the header (every stage would be)
    expect(v.replicated).toBe(false)
    expect(v.status.stagesAtRisk).toEqual([0, 1, 2, 3])
    expect(renderTop(v, 200, 40).find(l => l.startsWith('STAGE'))).not.toMatch(/REPL|ALLRED/)
    expect(renderTop(v, 200, 40)[0]).not.toMatch(/at risk/)
    expect(mid.join('\n')).toMatch(/[▁▂▃▄▅▆▇█]{5,}/)
    const wide = renderTop(v, 140, 40).join('\n')
    expect(wide).toMatch(/GRAD/)
    expect(wide).toMatch(/stage 2 lost: recovery by checkfree -> …/)
    expect(wide).toMatch(/stage 2 rebuilt by checkfree .*41\.9 MB/)
    expect(wide).toMatch(/s !/) // stale heartbeats are flagged
    // every stage row and the spare, events newest last
    expect(renderTop(v, 80, 40).filter(l => /^[0-3-]\s+…/.test(l))).toHaveLength(5)
    const ev = renderTop(v, 80, 40).filter(l => /^\d\d:\d\d:\d\d /.test(l))
    expect(ev[ev.length - 1]).toMatch(/silent/)
    // a short screen keeps the header and shows what fits
    const short = renderTop(v, 80, 5)
    expect(short[0]).toMatch(/^spotpipe top/)
    expect(short[short.length - 1]).toMatch(/more/)
    expect(frame(['a', 'b'])).not.toMatch(/\n$/)
  })

  it('shows the newest checkpoint a commit announced, and none before one does', () => {
    const t0 = Date.UTC(2025, 0, 1, 12)
    const m = sampleModel(t0)
    const header = (): string => renderTop(m.view(t0 + 4000, { coordinatorId: '12D3KooWCoord', connected: true }), 140, 40)[0]
    expect(m.snapshot(t0 + 4000).checkpoint).toBeNull()
    expect(header()).not.toMatch(/ckpt/)
    m.onMessage({ kind: 'commit', epoch: 3, iteration: 41 }, t0 + 3300)
    expect(m.snapshot(t0 + 4000).checkpoint).toBeNull()
    m.onMessage({ kind: 'commit', epoch: 3, iteration: 42, checkpoint: 39 }, t0 + 3400)
    // a late copy of an older commit does not move it back
    m.onMessage({ kind: 'commit', epoch: 3, iteration: 41, checkpoint: 19 }, t0 + 3500)
    expect(m.snapshot(t0 + 4000)).toMatchObject({ iteration: 42, checkpoint: 39 })
    expect(header()).toMatch(/iter 42 .*ckpt 39/)
  })

  it('sparklines scale between min and max, newest on the right', () => {
    expect(sparkline([1, 2, 3, 4, 5, 6, 7, 8], 8)).toBe('▁▂▃▄▅▆▇█')
    expect(sparkline([9, 1, 2, 3], 3)).toBe('▁▅█')
    expect(sparkline([2, 2], 5)).toBe('▄▄')
    expect(sparkline([], 5)).toBe('')
  })

  it('re-published control messages make one event each', () => {
    const t0 = 1_000_000
    const m = new ClusterModel({ clusterId: 'c', coordinator: 'x', startedAt: t0 })
    const plan: RecoveryPlan = { kind: 'recovery-plan', epoch: 2, stage: 1, rung: 'checkfree', targetPeer: ID(9), donors: [], lrScale: 1, weights: [], checkpointId: '' }
    expect(m.onMessage(plan, t0)).toBe(true)
    expect(m.onMessage(plan, t0 + 1000)).toBe(false)
    expect(m.events).toHaveLength(1)
    expect(m.events[0]).toMatchObject({ kind: 'recovery', stage: 1, at: t0 })
  })
})

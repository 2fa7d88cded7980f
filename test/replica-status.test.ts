/**
 * What `status`, `status --json` and `top` say about replicas, with hand-made gossip messages (no
 * network): serving and joining peers per stage, the all-reduce time per stage, the stages one loss
 * away from a whole-stage failure, the event texts of joins, and the REPL/ALLRED columns and the
 * header's "at risk" on wide and narrow terminals.
 */
import { describe, expect, it } from 'vitest'
import { ClusterModel } from '../cli/observer.js'
import { shortId, textWidth } from '../cli/render/format.js'
import { layoutColumns, renderSnapshot, renderTop } from '../cli/render/screen.js'
import type { Assignment, DoneReport, Heartbeat, RecoveryPlan } from '../protocols/index.js'

const ID = (name: string): string => `12D3KooWReplica${name}xyzxyzxyzxyz${name}`
const A0 = ID('A0')
const A1 = ID('A1')
const B0 = ID('B0')
const B1 = ID('B1')
const J = ID('JJ')
const C0 = ID('C0')
const SPARE = ID('SP')

function hb (peerId: string, stage: number, over: Partial<Heartbeat> = {}): Heartbeat {
  return {
    kind: 'heartbeat', peerId, role: stage >= 0 ? 'stage' : 'spare', stage, iteration: 5, gradNorm: 0.5, weightDigest: '',
    tokensPerSec: stage === 0 ? 1000 : 0, rssBytes: 1e8, epoch: 3, timestampMs: 0, departing: false, stateIteration: stage >= 0 ? 5 : -1, held: [], ...over
  }
}

function assignment (epoch: number, stages: string[][], joining?: string[], training: Record<string, unknown> = {}): Assignment {
  return {
    kind: 'assignment', clusterId: 'reps', runId: 'run', epoch, iteration: 6,
    stages: stages.map((peers, stage) => ({ stage, peers, addrs: peers.map(() => '/ip4/127.0.0.1/tcp/1') })),
    modelConfig: JSON.stringify({ seqLen: 8 }),
    trainingConfig: JSON.stringify({ microbatches: 4, microbatchSize: 2, ...training }),
    rebuilt: [],
    ...(joining != null ? { joining } : {})
  }
}

function done (peerId: string, stage: number, iteration: number, allReduceMs?: number, epoch = 3): DoneReport {
  return { kind: 'done', peerId, stage, epoch, iteration, gradNorm: 0.5, computeMs: 10, ...(allReduceMs != null ? { allReduceMs } : {}) }
}

const joinPlan: RecoveryPlan = {
  kind: 'recovery-plan', epoch: 3, stage: 1, rung: 'replica', targetPeer: J,
  donors: [{ peerId: B0, stage: 1 }, { peerId: B1, stage: 1 }], lrScale: 1, weights: [], checkpointId: ''
}

/**
 * 3 stages: stage 0 with two replicas, stage 1 with two and a peer joining it, stage 2 with one
 * (below the target). As the coordinator does, the join's plan is published before its assignment.
 */
function replicatedModel (t0: number): ClusterModel {
  const m = new ClusterModel({ clusterId: 'reps', coordinator: '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWCoord', startedAt: t0 })
  m.onMessage(assignment(2, [[A0, A1], [B0, B1], [C0]]), t0)
  m.onMessage(joinPlan, t0 + 10)
  m.onMessage(assignment(3, [[A0, A1], [B0, B1, J], [C0]], [J]), t0 + 20)
  m.onMessage(joinPlan, t0 + 30) // re-published: no second event
  for (const p of [A0, A1]) m.onMessage(hb(p, 0), t0 + 100)
  for (const p of [B0, B1]) m.onMessage(hb(p, 1), t0 + 100)
  m.onMessage(hb(J, 1, { stateIteration: -1 }), t0 + 100)
  m.onMessage(hb(C0, 2, { loss: 4.2 }), t0 + 100)
  m.onMessage(hb(SPARE, -1), t0 + 100)
  return m
}

describe('cluster model with replicas', () => {
  it('counts serving and joining replicas, flags the stages one loss from failing, and keeps the newest all-reduce time', () => {
    const t0 = 1_000_000
    const m = replicatedModel(t0)
    // all-reduce: the max over a stage's replicas for the newest iteration heard
    expect(m.onMessage(done(A0, 0, 5, 12), t0 + 200)).toBe(true)
    expect(m.onMessage(done(A1, 0, 5, 20), t0 + 210)).toBe(true)
    expect(m.onMessage(done(A0, 0, 5, 15), t0 + 220)).toBe(false) // below the max: nothing changed
    expect(m.onMessage(done(B0, 1, 5, 7), t0 + 230)).toBe(true)
    expect(m.onMessage(done(C0, 2, 5), t0 + 240)).toBe(false) // one replica: no all-reduce
    let s = m.snapshot(t0 + 500)
    expect(s.stages.map(st => ({ stage: st.stage, replicas: st.replicas, joining: st.joining, atRisk: st.atRisk, allReduceMs: st.allReduceMs }))).toEqual([
      { stage: 0, replicas: 2, joining: [], atRisk: false, allReduceMs: 20 },
      { stage: 1, replicas: 2, joining: [J], atRisk: false, allReduceMs: 7 },
      { stage: 2, replicas: 1, joining: [], atRisk: true, allReduceMs: null }
    ])
    expect(s.stages[1].peers.map(p => p.peerId)).toEqual([B0, B1, J])
    expect(s.stagesAtRisk).toEqual([2])
    expect(s.spares.map(p => p.peerId)).toEqual([SPARE])

    // a newer iteration replaces the time; a late report of an older one does not bring it back
    m.onMessage(done(A1, 0, 6, 9), t0 + 600)
    m.onMessage(done(A0, 0, 5, 50), t0 + 610)
    expect(m.snapshot(t0 + 700).stages[0].allReduceMs).toBe(9)
    // an iteration redone under a newer epoch starts over
    m.onMessage(done(A0, 0, 6, 4, 4), t0 + 620)
    expect(m.snapshot(t0 + 700).stages[0].allReduceMs).toBe(4)

    // the join reads as a join, not as a lost stage, and the assignment names the joining peer
    const texts = m.events.map(e => e.text)
    expect(texts).toContain(`${shortId(J)} joins stage 1 as a replica, copying from ${shortId(B0)} and ${shortId(B1)}`)
    expect(texts.filter(t => /joins stage 1/.test(t))).toHaveLength(1)
    expect(texts.some(t => /stage 1 lost/.test(t))).toBe(false)
    // a stage that only gains a joining peer is told by the note alone
    expect(texts).toContain(`epoch 3, iteration 6 (joining: stage 1 <- ${shortId(J)})`)

    // B1 goes silent: stage 1 is down to one live serving replica (the joining peer does not count)
    for (const p of [A0, A1, B0, J, C0]) m.onMessage(hb(p, p === A0 || p === A1 ? 0 : p === C0 ? 2 : 1, { timestampMs: 1, stateIteration: p === J ? -1 : 5 }), t0 + 3000)
    expect(m.tick(t0 + 3200)).toBe(true)
    expect(m.events.filter(e => e.kind === 'silent').map(e => e.text)).toEqual([
      `${shortId(B1)} (stage 1) silent for 3.1 s: stage 1 is down to 1 live replica`,
      `${shortId(SPARE)} silent for 3.1 s`
    ])
    s = m.snapshot(t0 + 3300)
    expect(s.stages[1]).toMatchObject({ replicas: 2, atRisk: true })
    expect(s.stagesAtRisk).toEqual([1, 2])
    // a departing replica counts as gone too
    m.onMessage(hb(A1, 0, { timestampMs: 2, departing: true }), t0 + 3400)
    expect(m.snapshot(t0 + 3500).stagesAtRisk).toEqual([0, 1, 2])

    // the joiner's copy is done, then it serves while the lost replica is dropped
    m.onMessage({ kind: 'recovery-done', peerId: J, epoch: 3, stage: 1, rung: 'replica', bytes: 42_000, transferMs: 300, rebuildMs: 20 }, t0 + 3600)
    expect(m.events.at(-1)?.text).toBe(`${shortId(J)} copied stage 1 as a joining replica: 42.0 kB in 320 ms (transfer 300 ms)`)
    m.onMessage(assignment(4, [[A0, A1], [B0, J], [C0]]), t0 + 3700)
    expect(m.events.at(-1)?.text).toBe(`epoch 4: stage 1 ${shortId(B0)},${shortId(B1)},${shortId(J)} -> ${shortId(B0)},${shortId(J)} (now serving: stage 1 ${shortId(J)})`)
    m.onMessage(hb(J, 1, { timestampMs: 3, epoch: 4, stateIteration: 6 }), t0 + 3800)
    m.onMessage(hb(B0, 1, { timestampMs: 3, epoch: 4 }), t0 + 3800)
    s = m.snapshot(t0 + 3900)
    expect(s.stages[1]).toMatchObject({ replicas: 2, joining: [], atRisk: false })
    expect(s.stagesAtRisk).toEqual([0, 2])
  })

  it('a replica plan for a lost stage (redundant shadow) still reads as a recovery', () => {
    const t0 = 2_000_000
    const m = new ClusterModel({ clusterId: 'reps', coordinator: 'x', startedAt: t0 })
    m.onMessage(assignment(2, [[A0], [B0], [C0]]), t0)
    // stage 1's shadow is held by stage 0's peer
    m.onMessage({ ...joinPlan, targetPeer: SPARE, donors: [{ peerId: A0, stage: 1 }] }, t0 + 10)
    expect(m.events.at(-1)?.text).toBe(`stage 1 lost: recovery by replica -> ${shortId(SPARE)} from stage 1 (${shortId(A0)})`)
    // once the plan's assignment is heard, its joining list decides
    m.onMessage(assignment(3, [[A0], [SPARE], [C0]]), t0 + 20)
    m.onMessage({ ...joinPlan, epoch: 3, stage: 0, targetPeer: B1, donors: [{ peerId: A0, stage: 0 }] }, t0 + 30)
    expect(m.events.at(-1)?.text).toMatch(/^stage 0 lost: recovery by replica/)
    m.onMessage(assignment(4, [[A0, B1], [SPARE], [C0]], [B1]), t0 + 40)
    m.onMessage({ ...joinPlan, epoch: 4, stage: 0, targetPeer: B1, donors: [{ peerId: A0, stage: 0 }] }, t0 + 50)
    expect(m.events.at(-1)?.text).toBe(`${shortId(B1)} joins stage 0 as a replica, copying from ${shortId(A0)}`)
  })

  it('a replica moved from a well-served stage to one down to its last replica reads as a move', () => {
    const t0 = 2_500_000
    const m = new ClusterModel({ clusterId: 'reps', coordinator: 'x', startedAt: t0 })
    m.onMessage(assignment(5, [[A0, A1, J], [B0]]), t0)
    const move: RecoveryPlan = { ...joinPlan, epoch: 6, stage: 1, targetPeer: J, donors: [{ peerId: B0, stage: 1 }] }
    m.onMessage(move, t0 + 10)
    m.onMessage(assignment(6, [[A0, A1], [B0, J]], [J]), t0 + 20)
    const texts = m.events.map(e => e.text)
    expect(texts).toContain(`${shortId(J)} moves from stage 0 to stage 1 as a replica, copying from ${shortId(B0)}`)
    expect(texts.at(-1)).toBe(`epoch 6: stage 0 ${shortId(A0)},${shortId(A1)},${shortId(J)} -> ${shortId(A0)},${shortId(A1)} (joining: stage 1 <- ${shortId(J)})`)
    // heard after its assignment (a re-publication to an observer that missed the first), still a move
    const late = new ClusterModel({ clusterId: 'reps', coordinator: 'x', startedAt: t0 })
    late.onMessage(assignment(5, [[A0, A1, J], [B0]]), t0)
    late.onMessage(assignment(6, [[A0, A1], [B0, J]], [J]), t0 + 20)
    late.onMessage(move, t0 + 30)
    expect(late.events.at(-1)?.text).toBe(`${shortId(J)} moves from stage 0 to stage 1 as a replica, copying from ${shortId(B0)}`)
  })

  it('without an assignment heard, a peer heartbeating a stage with no state of it while another holds it is joining', () => {
    const t0 = 3_000_000
    const m = new ClusterModel({ clusterId: 'reps', coordinator: 'x', startedAt: t0 })
    m.onMessage(hb(A0, 0, { stateIteration: -1 }), t0) // a fresh cluster: everyone at -1, nobody joining
    m.onMessage(hb(B0, 1), t0)
    m.onMessage(hb(J, 1, { stateIteration: -1 }), t0)
    const s = m.snapshot(t0 + 100)
    expect(s.stages.map(st => [st.replicas, st.joining])).toEqual([[1, []], [1, [J]]])
    expect(s.stagesAtRisk).toEqual([0, 1])
    // two peers on a stage: the cluster runs with replicas
    expect(m.view(t0 + 100, { coordinatorId: 'c', connected: true }).replicated).toBe(true)
  })

  it('one replica per stage: every stage is at risk, but the cluster is not replicated unless its config asks for replicas', () => {
    const t0 = 4_000_000
    const m = new ClusterModel({ clusterId: 'reps', coordinator: 'x', startedAt: t0 })
    m.onMessage(assignment(1, [[A0], [B0]]), t0)
    for (const [p, st] of [[A0, 0], [B0, 1]] as const) m.onMessage(hb(p, st, { epoch: 1 }), t0 + 10)
    const v = m.view(t0 + 100, { coordinatorId: 'c', connected: true })
    expect(v.status.stagesAtRisk).toEqual([0, 1])
    expect(v.replicated).toBe(false)
    expect(renderTop(v, 140, 30)[0]).not.toMatch(/at risk/)
    expect(renderTop(v, 140, 30).find(l => l.startsWith('STAGE'))).not.toMatch(/REPL|ALLRED/)
    // a replica target in the training config (a cluster down to its last replicas) makes it one
    m.onMessage(assignment(2, [[A0], [B0]], undefined, { replicas: 2 }), t0 + 200)
    const v2 = m.view(t0 + 300, { coordinatorId: 'c', connected: true })
    expect(v2.replicated).toBe(true)
    expect(renderTop(v2, 140, 30)[0]).toMatch(/at risk: 0, 1/)
  })
})

describe('top and status with replicas', () => {
  function view (): ReturnType<ClusterModel['view']> {
    const t0 = Date.UTC(2025, 0, 1, 12)
    const m = replicatedModel(t0)
    m.onMessage(done(A0, 0, 5, 12), t0 + 200)
    m.onMessage(done(A1, 0, 5, 1500), t0 + 210)
    m.onMessage(done(B0, 1, 5, 340), t0 + 220)
    return m.view(t0 + 500, { coordinatorId: '12D3KooWCoord', connected: true })
  }

  it('shows REPL, ALLRED and the stages at risk, and the joining peer as joining', () => {
    const v = view()
    expect(v.replicated).toBe(true)
    const lines = renderTop(v, 140, 40)
    expect(lines[0]).toMatch(/^spotpipe top {2}epoch 3 {2}iter \d+ {2}at risk: 2 {2}loss/)
    const head = lines.find(l => l.startsWith('STAGE')) ?? ''
    expect(head).toMatch(/^STAGE\s+REPL\s+PEER\s+ROLE\s+ITER\s+LOSS\s+GRAD\s+ALLRED\s+TOK\/S\s+HEARTBEAT$/)
    const row = (id: string): string => lines.find(l => l.includes(shortId(id))) ?? ''
    // per-stage cells on the stage's first row only
    expect(row(A0)).toMatch(/^0\s+2\s+…\S+\s+stage\b.*\s1\.5 s\s+1,000\s/)
    expect(row(A1)).toMatch(/^0\s+…\S+\s+stage\b/)
    expect(row(B0)).toMatch(/^1\s+2\+1\s+…\S+\s+stage\b.*\s340 ms\s/)
    expect(row(J)).toMatch(/^1\s+…\S+\s+joining\b/)
    expect(row(C0)).toMatch(/^2\s+1 !\s+…\S+\s+stage\b.*\s-\s+-\s+\S+\s*$/)
    expect(row(SPARE)).toMatch(/^-\s+…\S+\s+spare\b/)
    // none at risk
    const snap = renderSnapshot({ ...v, status: { ...v.status, stagesAtRisk: [] } }, 140)
    expect(snap[0]).toMatch(/at risk: none/)
    expect(snap.join('\n')).toMatch(/joins stage 1 as a replica/)
  })

  it('drops ALLRED early and REPL late as the terminal narrows; no line is wider than the terminal', () => {
    const v = view()
    const titles = (w: number): string[] => layoutColumns(w, true).map(c => c.title)
    expect(titles(100)).toEqual(['STAGE', 'REPL', 'PEER', 'ROLE', 'ITER', 'LOSS', '', 'GRAD', 'ALLRED', 'TOK/S', 'HEARTBEAT'])
    expect(titles(99)).not.toContain('GRAD')
    expect(titles(91)).toContain('ALLRED')
    expect(titles(90)).not.toContain('ALLRED')
    expect(titles(90)).toContain('')
    expect(titles(51)).toEqual(['STAGE', 'REPL', 'PEER', 'ITER', 'LOSS', 'HEARTBEAT'])
    expect(titles(50)).toEqual(['STAGE', 'REPL', 'PEER', 'LOSS', 'HEARTBEAT'])
    expect(titles(42)).toEqual(['STAGE', 'PEER', 'LOSS', 'HEARTBEAT'])
    // without replicas the layout is the one it always was
    expect(layoutColumns(100).map(c => c.title)).toEqual(['STAGE', 'PEER', 'ROLE', 'ITER', 'LOSS', '', 'GRAD', 'TOK/S', 'HEARTBEAT'])
    for (const width of [10, 20, 42, 43, 50, 51, 62, 72, 82, 91, 100, 160]) {
      for (const lines of [renderTop(v, width, 40), renderTop(v, width, 6), renderSnapshot(v, width)]) {
        for (const l of lines) expect(textWidth(l), `width ${width}: ${l}`).toBeLessThanOrEqual(Math.max(width, 20))
      }
    }
    // on a narrow terminal the risk is still shown: in the header and in REPL
    const narrow = renderTop(v, 50, 40)
    expect(narrow[0]).toMatch(/at risk: 2/)
    expect(narrow.find(l => l.includes(shortId(C0)))).toMatch(/^2\s+1 !/)
  })
})

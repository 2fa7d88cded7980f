import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { TraceError } from '../sim/errors.js'
import {
  forEachFailure, generateTrace, hourlyRateOf, impliedIterationS, makeTrace, parseTrace, perIterationProbability,
  readTrace, resolveFailureRate, serializeTrace, writeTrace, type Trace
} from '../sim/trace.js'

const dir = mkdtempSync(join(tmpdir(), 'spotpipe-trace-'))
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

function trace (seed: number, iterations = 2000, p = 0.01, stages = 4): Trace {
  return generateTrace({ seed, stages, iterations, conversion: resolveFailureRate({ perIteration: p, iterationS: 30 }) })
}

describe('trace generation', () => {
  it('is deterministic per seed and differs between seeds', () => {
    expect(trace(7)).toEqual(trace(7))
    expect(trace(7).events).not.toEqual(trace(8).events)
    expect(trace(7).events.length).toBeGreaterThan(0)
  })

  it('a longer horizon only appends events', () => {
    const short = trace(3, 500)
    const long = trace(3, 1000)
    expect(long.events.slice(0, short.events.length)).toEqual(short.events)
    expect(long.events.length).toBeGreaterThanOrEqual(short.events.length)
  })

  it('places each failure inside its iteration, follows it by a join of a new peer, and sorts events', () => {
    const t = trace(5, 3000, 0.02)
    const failures = t.events.filter(e => e.kind !== 'join')
    const joins = t.events.filter(e => e.kind === 'join')
    expect(joins.length).toBe(failures.length)
    for (const e of t.events) {
      expect(e.timeS).toBeGreaterThanOrEqual(e.iteration * t.iterationS)
      expect(e.timeS).toBeLessThan((e.iteration + 1) * t.iterationS)
      expect(e.stage).toBeGreaterThanOrEqual(0)
      expect(e.stage).toBeLessThan(4)
    }
    for (let i = 1; i < t.events.length; i++) {
      const a = t.events[i - 1]
      const b = t.events[i]
      expect(b.iteration > a.iteration || (b.iteration === a.iteration && b.timeS >= a.timeS)).toBe(true)
    }
    // Generations count up per stage: s2.0 fails, s2.1 joins, later s2.1 fails.
    const s2 = t.events.filter(e => e.stage === 2).map(e => e.peer)
    expect(s2.slice(0, 3)).toEqual(['s2.0', 's2.1', 's2.1'])
  })

  it('marks the requested share of failures as spot notices', () => {
    const t = generateTrace({ seed: 1, stages: 8, iterations: 20000, noticeFraction: 0.25, conversion: resolveFailureRate({ perIteration: 0.01, iterationS: 1 }) })
    const f = t.events.filter(e => e.kind !== 'join')
    const share = f.filter(e => e.kind === 'notice').length / f.length
    expect(Math.abs(share - 0.25)).toBeLessThan(0.03)
  })
})

describe('rate conversion', () => {
  it('p = 1 - (1 - h)^(t/3600), its inverse, and the paper presets', () => {
    expect(perIterationProbability(0.16, 3600)).toBeCloseTo(0.16, 12)
    expect(perIterationProbability(0.16, 1800)).toBeCloseTo(1 - Math.sqrt(0.84), 12)
    for (const [h, t] of [[0.05, 10], [0.16, 82], [0.33, 0.04], [0.5, 7200]]) {
      expect(hourlyRateOf(perIterationProbability(h, t), t)).toBeCloseTo(h, 9)
    }
    // The paper's 500M rates imply about 83 s (16%/h) and 90 s (33%/h) per iteration.
    expect(impliedIterationS(0.004, 0.16)).toBeCloseTo(82.76, 1)
    expect(impliedIterationS(0.01, 0.33)).toBeCloseTo(90.35, 1)
    const preset = resolveFailureRate({ preset: '500m-33', iterationS: impliedIterationS(0.01, 0.33) })
    expect(preset.perIteration).toBe(0.01)
    expect(preset.hourlyRate).toBeCloseTo(0.33, 9)
    expect(preset.formula).toContain('500m-33')
  })

  // Property: over many stage-hours, the share of (stage, hour) windows with at least one failure is h.
  for (const [h, seed] of [[0.16, 11], [0.33, 12], [0.05, 13]]) {
    it(`the empirical share of stage-hours with a failure matches h = ${h}`, () => {
      const iterationS = 36 // 100 iterations per hour
      const stages = 50
      const hours = 400
      const conv = resolveFailureRate({ hourlyRate: h, iterationS })
      const hit = new Set<number>()
      forEachFailure({ seed, stages, iterations: hours * 100, perIteration: conv.perIteration }, (it, stage) => { hit.add(stage * hours + Math.floor(it / 100)) })
      const share = hit.size / (stages * hours)
      const se = Math.sqrt(h * (1 - h) / (stages * hours))
      expect(Math.abs(share - h)).toBeLessThan(5 * se)
    })
  }

  it('the per-iteration failure count matches p over many cells', () => {
    const p = 0.004
    let n = 0
    const cells = 8 * 200_000
    forEachFailure({ seed: 99, stages: 8, iterations: 200_000, perIteration: p }, () => { n++ })
    expect(Math.abs(n / cells - p)).toBeLessThan(5 * Math.sqrt(p * (1 - p) / cells))
  })
})

describe('trace files', () => {
  it('round-trip exactly through a file', () => {
    const t = trace(21, 3000, 0.02)
    const path = join(dir, 'a.json')
    writeTrace(path, t)
    expect(readTrace(path)).toEqual(t)
    expect(parseTrace(serializeTrace(t))).toEqual(t)
  })

  it('hand-made traces validate', () => {
    const t = makeTrace({ stages: 4, iterations: 10, events: [{ iteration: 3, stage: 1, kind: 'crash' }] })
    expect(t.events[0].timeS).toBe(3.5)
  })

  const good = (): Record<string, unknown> => JSON.parse(serializeTrace(trace(2, 400, 0.02))) as Record<string, unknown>
  const cases: Array<[string, (o: Record<string, unknown>) => unknown, RegExp]> = [
    ['wrong format tag', o => { o.format = 'other' }, /format/],
    ['unsupported version', o => { o.version = 2 }, /version/],
    ['non-integer stages', o => { o.stages = 2.5 }, /stages/],
    ['events not an array', o => { o.events = {} }, /events: expected an array/],
    ['stage out of range', o => { (o.events as Array<Record<string, unknown>>)[0].stage = 9 }, /events\[0\]\.stage: 9 is outside 0\.\.3/],
    ['unknown kind', o => { (o.events as Array<Record<string, unknown>>)[1].kind = 'explode' }, /events\[1\]\.kind/],
    ['negative time', o => { (o.events as Array<Record<string, unknown>>)[0].timeS = -1 }, /events\[0\]\.timeS/],
    ['beyond the horizon', o => { (o.events as Array<Record<string, unknown>>)[0].iteration = 100000 }, /horizon/],
    ['unsorted', o => { const e = o.events as unknown[]; e.reverse() }, /sorted/],
    ['missing conversion', o => { delete o.conversion }, /conversion/]
  ]
  for (const [name, mutate, message] of cases) {
    it(`rejects a trace file with ${name}, naming the problem`, () => {
      const o = good()
      mutate(o)
      const path = join(dir, 'bad.json')
      writeFileSync(path, JSON.stringify(o))
      let err: unknown
      try { readTrace(path) } catch (e) { err = e }
      expect(err).toBeInstanceOf(TraceError)
      expect((err as TraceError).code).toBe('ERR_TRACE')
      expect((err as Error).message).toMatch(message)
      expect((err as Error).message).toContain(path)
    })
  }

  it('rejects invalid JSON and a missing file with TraceError', () => {
    expect(() => parseTrace('{"format": ')).toThrow(TraceError)
    expect(() => parseTrace('[]')).toThrow(/expected an object/)
    expect(() => readTrace(join(dir, 'nope.json'))).toThrow(TraceError)
  })
})

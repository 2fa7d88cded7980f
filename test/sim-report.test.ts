import { describe, expect, it } from 'vitest'
import type { EvalPoint, RunResult, RunTotals } from '../sim/model-mode.js'
import { formatSummary, rowsToCsv, spread, summarize, targetFromReference, timeToTarget } from '../sim/report.js'
import { SIM_RUNGS, STRATEGIES, type StrategyName } from '../sim/strategies.js'
import { linePlot, niceTicks, validationSeries } from '../sim/svg.js'

interface XmlElement { name: string, attrs: Record<string, string>, children: XmlElement[] }

/** A small strict XML parser (elements, attributes, text, self-closing tags, a prolog). */
function parseXml (text: string): XmlElement {
  const root: XmlElement = { name: '#root', attrs: {}, children: [] }
  const stack = [root]
  const tag = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[\w:.-]+="[^"]*")*)\s*(\/?)>|<\?[^>]*\?>|<!--[\s\S]*?-->/g
  let last = 0
  for (const m of text.matchAll(tag)) {
    const between = text.slice(last, m.index)
    if (between.includes('<') || between.includes('>')) throw new Error(`malformed markup near offset ${last}`)
    last = (m.index ?? 0) + m[0].length
    if (m[2] == null) continue // prolog or comment
    const [, closing, name, attrText, selfClosing] = m
    if (closing === '/') {
      const open = stack.pop()
      if (open?.name !== name) throw new Error(`</${name}> closes <${open?.name ?? 'nothing'}>`)
      continue
    }
    const attrs: Record<string, string> = {}
    for (const a of attrText.matchAll(/([\w:.-]+)="([^"]*)"/g)) {
      if (a[1] in attrs) throw new Error(`duplicate attribute ${a[1]} on <${name}>`)
      attrs[a[1]] = a[2]
    }
    const el: XmlElement = { name, attrs, children: [] }
    stack[stack.length - 1].children.push(el)
    if (selfClosing !== '/') stack.push(el)
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1].name}>`)
  if (text.slice(last).trim() !== '') throw new Error('trailing text')
  return root
}

function all (el: XmlElement): XmlElement[] {
  return [el, ...el.children.flatMap(all)]
}

function totals (over: Partial<RunTotals> = {}): RunTotals {
  return {
    wallS: 100,
    attempts: 10,
    iterations: 10,
    computedIterations: 10,
    abortedAttempts: 0,
    crashes: 0,
    notices: 0,
    recoveries: Object.fromEntries(SIM_RUNGS.map(r => [r, 0])) as RunTotals['recoveries'],
    wholeRollbacks: 0,
    stageIterationsLost: 0,
    iterationsRedone: 0,
    skippedSteps: 0,
    replicaLosses: 0,
    checkpoints: 0,
    bytes: { activations: 1, checkpointSave: 0, checkpointLoad: 0, recovery: 0, mirrors: 0, shadows: 0 },
    seconds: { iterations: 100, wasted: 0, detection: 0, recovery: 0, checkpointCopy: 0, contention: 0, handover: 0, shadowWait: 0 },
    finalValLoss: 2,
    minValLoss: 2,
    truncated: false,
    ...over
  }
}

/** A synthetic run whose loss falls as 5 - t/speed (reaching 3 at t = 2 speed), evaluated every 10 s. */
function fakeRun (strategy: StrategyName, seed: number, speed: number, end = 400): RunResult {
  const evals: EvalPoint[] = []
  for (let t = 0; t <= end; t += 10) evals.push({ step: t, iteration: t, wallS: t, valLoss: 5 - t / speed })
  return {
    strategy,
    seed,
    rows: evals.map(e => ({ step: e.step, iteration: e.iteration, wallS: e.wallS, loss: e.valLoss + 0.1, valLoss: e.valLoss, events: e.step === 20 ? 'crash s1 -> checkfree' : '' })),
    evals,
    recoveries: [],
    totals: totals({ wallS: end }),
    iterationS: 1,
    options: { checkpointEvery: 50, mirrorEvery: 10, lrScale: 1.1, weighting: 'norm', plusLayout: 'spotpipe' }
  }
}

describe('time to target and ratios', () => {
  it('time to target is the first evaluation at or below it', () => {
    const r = fakeRun('checkfree', 1, 100)
    expect(timeToTarget(r.evals, 4)).toBe(100)
    expect(timeToTarget(r.evals, 4.05)).toBe(100)
    expect(timeToTarget(r.evals, -100)).toBeNull()
    expect(targetFromReference(r.evals, 400, 0.8)).toBe(5 - 320 / 100)
  })

  it('ratios are per seed against the reference, with their spread; unreached runs are lower bounds', () => {
    const runs = [
      fakeRun('checkfree-plus', 1, 100), fakeRun('checkfree-plus', 2, 100), fakeRun('checkfree-plus', 3, 50),
      fakeRun('checkpoint', 1, 200), fakeRun('checkpoint', 2, 250, 500), fakeRun('checkpoint', 3, 100),
      fakeRun('redundant', 1, 100, 150), fakeRun('redundant', 2, 100), fakeRun('redundant', 3, 100),
      fakeRun('none', 0, 200)
    ]
    const s = summarize('t', runs, 3, 'test')
    const by = Object.fromEntries(s.strategies.map(x => [x.strategy, x]))
    expect(by['checkfree-plus'].ratio).toEqual([1, 1, 1])
    expect(by.checkpoint.ratio).toEqual([2, 2.5, 2])
    expect(by.checkpoint.ratioStats).toMatchObject({ n: 3, min: 2, median: 2, max: 2.5 })
    expect(by.redundant.reached).toBe(2)
    expect(by.redundant.ratio[0]).toBeNull()
    expect(by.redundant.ratioLowerBound[0]).toBe(150 / 200)
    // `none` ran once and is paired with every reference seed.
    expect(by.none.seeds).toEqual([1, 2, 3])
    expect(by.none.ratio).toEqual([2, 2, 4])
    const text = formatSummary(s)
    for (const name of ['checkfree-plus', 'checkpoint', 'redundant', 'none']) expect(text).toContain(name)
    expect(text).toContain('>0.75')
  })

  it('spread gives min, median, max, mean and sd', () => {
    expect(spread([3, 1, 2])).toEqual({ n: 3, min: 1, median: 2, max: 3, mean: 2, sd: 1 })
    expect(spread([])).toBeNull()
  })

  it('CSV rows have the documented columns and quote event text', () => {
    const csv = rowsToCsv({ ...fakeRun('checkfree', 1, 100), rows: [{ step: 0, iteration: 1, wallS: 1.5, loss: 5, valLoss: null, events: 'a, "b"' }] }).trim().split('\n')
    expect(csv).toEqual(['step,iteration,wall_s,loss,val_loss,events', '0,1,1.500000,5.000000,,"a, ""b"""'])
  })
})

describe('SVG plot', () => {
  it('is well-formed XML with one line per strategy, axes, ticks and a legend', () => {
    const runs = STRATEGIES.flatMap(s => s === 'none' ? [fakeRun(s, 0, 200)] : [1, 2, 3].map(seed => fakeRun(s, seed, 80 + seed * 10)))
    const svg = linePlot(validationSeries(runs), { title: 'loss <&> time', xLabel: 'seconds', yLabel: 'loss', hline: { y: 3, label: 'target' } })
    const doc = parseXml(svg)
    const els = all(doc)
    expect(doc.children.length).toBe(1)
    expect(doc.children[0].name).toBe('svg')
    const lines = els.filter(e => 'data-strategy' in e.attrs)
    expect(lines.map(e => e.attrs['data-strategy']).sort()).toEqual([...STRATEGIES].sort())
    for (const l of lines) {
      expect(l.name).toBe('polyline')
      const pts = l.attrs.points.split(' ').map(p => p.split(',').map(Number))
      expect(pts.length).toBeGreaterThan(10)
      for (const [x, y] of pts) { expect(Number.isFinite(x)).toBe(true); expect(Number.isFinite(y)).toBe(true) }
    }
    // Per-seed lines are there too, but without data-strategy.
    expect(els.filter(e => 'data-run' in e.attrs).length).toBe((STRATEGIES.length - 1) * 3)
    const texts = els.filter(e => e.name === 'text').length
    expect(texts).toBeGreaterThan(STRATEGIES.length + 6) // legend entries, tick labels, title, axis labels
  })

  it('nice ticks are round and cover the range', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10])
    expect(niceTicks(2.31, 2.77, 5)).toEqual([2.4, 2.5, 2.6, 2.7])
  })
})

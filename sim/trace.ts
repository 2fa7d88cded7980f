/**
 * Churn traces: seeded, replayable lists of stage failures.
 *
 * Rate conversion. A failure rate is given per hour: h = the fraction of stages that fail within an
 * hour. Failures are memoryless, so the per-stage, per-iteration probability with iterations of t
 * seconds is
 *
 *   p = 1 - (1 - h)^(t / 3600)
 *
 * (a stage survives an hour of 3600/t iterations with probability (1-p)^(3600/t) = 1-h). The paper
 * instead quotes per-iteration probabilities for its configs (PAPER_RATES); those can be used as they
 * are, and the hourly rate they imply at our iteration time is reported next to them.
 *
 * Generation. Every (iteration, stage) cell fails independently with probability p. Cells are visited
 * in the order iteration * stages + stage with geometric skips (one random draw per event, not per
 * cell), from one mulberry32 stream seeded by the trace seed: the same seed gives the same events, a
 * longer horizon only appends events, and 10^8 cells cost as little as the events they contain.
 * Each failure gets an offset u in [0, 1) inside its iteration (timeS = (iteration + u) * t) and is a
 * spot `notice` with probability noticeFraction, else a `crash`. After each failure a replacement
 * peer `join`s (the simulator assumes a spare is always available, as the paper does).
 *
 * File format (JSON): { format: 'spotpipe-trace', version: 1, seed, stages, iterations, iterationS,
 * conversion, events: [{ iteration, timeS, stage, peer, kind }] }, events sorted by (iteration, timeS).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { hashKey, mulberry32 } from '../model/index.js'
import { SimConfigError, TraceError } from './errors.js'

/**
 * crash / notice: the stage's state is lost (its last replica failed); join: a replacement peer;
 * replica-loss: with replicas, one of a stage's replicas failed while another was up: no state is
 * lost, the iteration in flight is redone by the survivors (sim/replica-trace.ts).
 */
export type TraceEventKind = 'crash' | 'notice' | 'join' | 'replica-loss'
export const TRACE_EVENT_KINDS: readonly TraceEventKind[] = ['crash', 'notice', 'join', 'replica-loss']

export interface TraceEvent {
  /** Iteration attempt in which the event happens (0-based, on the trace's iteration clock). */
  iteration: number
  /** Seconds since the start on the trace's nominal clock: (iteration + u) * iterationS. */
  timeS: number
  stage: number
  /** Peer label, `s<stage>.<generation>` in generated traces (a join names the newcomer). */
  peer?: string
  kind: TraceEventKind
}

export interface RateConversion {
  /** 'hourly': p derived from h and iterationS; 'per-iteration': p given (e.g. a paper preset). */
  kind: 'hourly' | 'per-iteration'
  /** Per-stage failure rate per hour: given (hourly) or implied by p at iterationS (per-iteration). */
  hourlyRate: number
  /** Per-stage, per-iteration failure probability the trace was drawn with. */
  perIteration: number
  /** Seconds per iteration used for the conversion and for timeS. */
  iterationS: number
  /** Paper preset name, when one was used. */
  preset?: string
  formula: string
}

export interface Trace {
  format: 'spotpipe-trace'
  version: 1
  seed: number
  stages: number
  /** Iterations covered: no event has iteration >= this. */
  iterations: number
  /** Nominal seconds per iteration (the clock of timeS). */
  iterationS: number
  conversion: RateConversion
  /**
   * Replicas per stage (sim/replica-trace.ts): the rate is then per peer, and crash/notice events
   * are whole-stage losses. Absent: 1.
   */
  replicas?: number
  events: TraceEvent[]
}

/**
 * The paper's per-iteration failure probabilities (CHECKFREE.md, "Failure rates used"), keyed by
 * `<config>-<percent per hour>`. Used here as per-stage, per-iteration probabilities.
 */
export const PAPER_RATES: Readonly<Record<string, { hourlyRate: number, perIteration: number }>> = {
  '500m-5': { hourlyRate: 0.05, perIteration: 0.0009 },
  '500m-10': { hourlyRate: 0.10, perIteration: 0.002 },
  '500m-16': { hourlyRate: 0.16, perIteration: 0.004 },
  '500m-33': { hourlyRate: 0.33, perIteration: 0.01 },
  '124m-10': { hourlyRate: 0.10, perIteration: 0.0006 },
  '124m-16': { hourlyRate: 0.16, perIteration: 0.001 },
  '1.5b-10': { hourlyRate: 0.10, perIteration: 0.004 },
  '1.5b-16': { hourlyRate: 0.16, perIteration: 0.008 }
}

export const HOURLY_FORMULA = 'p = 1 - (1 - h)^(t / 3600) per stage per iteration'

function checkProbability (name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v >= 1) throw new SimConfigError(`${name} must be in [0, 1), got ${String(v)}`)
}

function checkPositive (name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new SimConfigError(`${name} must be a positive finite number, got ${String(v)}`)
}

/** Per-stage, per-iteration failure probability from an hourly rate h and t seconds per iteration. */
export function perIterationProbability (hourlyRate: number, iterationS: number): number {
  checkProbability('hourly rate', hourlyRate)
  checkPositive('iteration time', iterationS)
  return -Math.expm1(Math.log1p(-hourlyRate) * iterationS / 3600)
}

/** The hourly rate that a per-iteration probability p amounts to with t seconds per iteration. */
export function hourlyRateOf (perIteration: number, iterationS: number): number {
  checkProbability('per-iteration probability', perIteration)
  checkPositive('iteration time', iterationS)
  return -Math.expm1(Math.log1p(-perIteration) * 3600 / iterationS)
}

/** Seconds per iteration at which p per iteration equals h per hour (the paper's implied clock). */
export function impliedIterationS (perIteration: number, hourlyRate: number): number {
  checkProbability('per-iteration probability', perIteration)
  checkProbability('hourly rate', hourlyRate)
  if (perIteration === 0 || hourlyRate === 0) throw new SimConfigError('the implied iteration time needs non-zero rates')
  return 3600 * Math.log1p(-perIteration) / Math.log1p(-hourlyRate)
}

export interface FailureRateSpec {
  /** Per-stage hourly rate h. */
  hourlyRate?: number
  /** Per-stage per-iteration probability p (takes precedence over hourlyRate). */
  perIteration?: number
  /** A PAPER_RATES key (takes precedence over both). */
  preset?: string
  /** Seconds per iteration of the run's clock. */
  iterationS: number
}

/** One explicit description of how the trace's p was obtained. */
export function resolveFailureRate (spec: FailureRateSpec): RateConversion {
  checkPositive('iterationS', spec.iterationS)
  if (spec.preset != null) {
    const r = PAPER_RATES[spec.preset]
    if (r == null) throw new SimConfigError(`unknown paper rate preset "${spec.preset}" (known: ${Object.keys(PAPER_RATES).join(', ')})`)
    return {
      kind: 'per-iteration',
      hourlyRate: hourlyRateOf(r.perIteration, spec.iterationS),
      perIteration: r.perIteration,
      iterationS: spec.iterationS,
      preset: spec.preset,
      formula: `p = ${r.perIteration} per stage per iteration (paper preset ${spec.preset}, quoted for ${r.hourlyRate * 100}%/h); at ${fmtS(spec.iterationS)} per iteration that is ${pct(hourlyRateOf(r.perIteration, spec.iterationS))}/h (${HOURLY_FORMULA})`
    }
  }
  if (spec.perIteration != null) {
    checkProbability('perIteration', spec.perIteration)
    const h = hourlyRateOf(spec.perIteration, spec.iterationS)
    return { kind: 'per-iteration', hourlyRate: h, perIteration: spec.perIteration, iterationS: spec.iterationS, formula: `p = ${spec.perIteration} per stage per iteration given; at ${fmtS(spec.iterationS)} per iteration that is ${pct(h)}/h (${HOURLY_FORMULA})` }
  }
  if (spec.hourlyRate == null) throw new SimConfigError('a failure rate needs hourlyRate, perIteration or preset')
  const p = perIterationProbability(spec.hourlyRate, spec.iterationS)
  return { kind: 'hourly', hourlyRate: spec.hourlyRate, perIteration: p, iterationS: spec.iterationS, formula: `${HOURLY_FORMULA}: h = ${pct(spec.hourlyRate)}/h, t = ${fmtS(spec.iterationS)} -> p = ${p.toPrecision(4)}` }
}

function pct (x: number): string { return `${(x * 100).toPrecision(3)}%` }
function fmtS (s: number): string { return s >= 1 ? `${s.toPrecision(4)} s` : `${(s * 1000).toPrecision(4)} ms` }

export interface FailureStreamOptions {
  seed: number
  stages: number
  /** Horizon: iterations 0 .. iterations-1. */
  iterations: number
  /** Per-stage, per-iteration failure probability. */
  perIteration: number
  /** Share of failures that are announced (spot notice) instead of crashes. @default 0 */
  noticeFraction?: number
}

/**
 * Calls `visit(iteration, stage, u, kind)` for every failure in (iteration, stage) order, without
 * building a list: the projection walks 10^8 cells this way. The events are exactly generateTrace's.
 * `visit` returning false stops the walk. Returns the number of failures visited.
 */
export function forEachFailure (opts: FailureStreamOptions, visit: (iteration: number, stage: number, u: number, kind: 'crash' | 'notice') => boolean | void): number {
  const { seed, stages, iterations, perIteration: p } = opts
  const noticeFraction = opts.noticeFraction ?? 0
  if (!Number.isSafeInteger(seed)) throw new SimConfigError(`trace seed must be an integer, got ${String(seed)}`)
  if (!Number.isInteger(stages) || stages < 1) throw new SimConfigError(`stages must be a positive integer, got ${String(stages)}`)
  if (!Number.isInteger(iterations) || iterations < 0) throw new SimConfigError(`iterations must be a non-negative integer, got ${String(iterations)}`)
  checkProbability('perIteration', p)
  if (!(noticeFraction >= 0 && noticeFraction <= 1)) throw new SimConfigError(`noticeFraction must be in [0, 1], got ${String(noticeFraction)}`)
  if (p === 0) return 0
  const rand = mulberry32(hashKey(seed, 0x7ace))
  const cells = iterations * stages
  const logq = Math.log1p(-p)
  let cell = 0
  let count = 0
  for (;;) {
    // Failures before the next success of a Bernoulli(p) sequence: floor(ln(V) / ln(1-p)), V in (0,1].
    cell += Math.floor(Math.log(1 - rand()) / logq)
    if (cell >= cells) return count
    const u = rand()
    const kind = rand() < noticeFraction ? 'notice' : 'crash'
    const iteration = Math.floor(cell / stages)
    count++
    if (visit(iteration, cell - iteration * stages, u, kind) === false) return count
    cell++
  }
}

export interface GenerateTraceOptions {
  seed: number
  stages: number
  iterations: number
  /** How p was obtained (resolveFailureRate); its iterationS is the trace's clock. */
  conversion: RateConversion
  noticeFraction?: number
  /** Emit a `join` of a replacement peer after every failure. @default true */
  joins?: boolean
  /** Seconds between a failure and its replacement's join. @default 0 */
  joinDelayS?: number
  /** Refuse to build a list longer than this (use forEachFailure instead). @default 2_000_000 */
  maxEvents?: number
}

/** A replayable trace: failures from forEachFailure, peer labels and replacement joins. */
export function generateTrace (opts: GenerateTraceOptions): Trace {
  const { seed, stages, iterations, conversion } = opts
  const t = conversion.iterationS
  checkPositive('conversion.iterationS', t)
  const joins = opts.joins ?? true
  const joinDelayS = opts.joinDelayS ?? 0
  const maxEvents = opts.maxEvents ?? 2_000_000
  const generation = new Array<number>(stages).fill(0)
  const events: TraceEvent[] = []
  const delayed: TraceEvent[] = [] // joins that land in a later iteration, merged below
  forEachFailure({ seed, stages, iterations, perIteration: conversion.perIteration, noticeFraction: opts.noticeFraction }, (iteration, stage, u, kind) => {
    if (events.length + delayed.length >= maxEvents) throw new SimConfigError(`the trace would exceed ${maxEvents} events; lower the rate or the horizon, or stream it with forEachFailure`)
    const timeS = (iteration + u) * t
    events.push({ iteration, timeS, stage, peer: `s${stage}.${generation[stage]}`, kind })
    generation[stage] += 1
    if (joins) {
      const jt = timeS + joinDelayS
      const ji = Math.floor(jt / t)
      if (ji >= iterations) return
      const join: TraceEvent = { iteration: ji, timeS: jt, stage, peer: `s${stage}.${generation[stage]}`, kind: 'join' }
      if (ji === iteration) events.push(join)
      else delayed.push(join)
    }
  })
  if (delayed.length > 0) events.push(...delayed)
  events.sort((a, b) => a.iteration - b.iteration || a.timeS - b.timeS || a.stage - b.stage)
  return { format: 'spotpipe-trace', version: 1, seed, stages, iterations, iterationS: t, conversion: { ...conversion }, events }
}

/** A trace from a hand-written list of events (tests, what-if scenarios). */
export function makeTrace (init: { stages: number, iterations: number, iterationS?: number, seed?: number, events: Array<Omit<TraceEvent, 'timeS'> & { timeS?: number }> }): Trace {
  const t = init.iterationS ?? 1
  const events = init.events.map(e => ({ ...e, timeS: e.timeS ?? (e.iteration + 0.5) * t }))
  return validateTrace({
    format: 'spotpipe-trace',
    version: 1,
    seed: init.seed ?? 0,
    stages: init.stages,
    iterations: init.iterations,
    iterationS: t,
    conversion: { kind: 'per-iteration', hourlyRate: 0, perIteration: 0, iterationS: t, formula: 'hand-made trace' },
    events
  })
}

// ---------------------------------------------------------------------------------------------
// Validation and files

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describe (v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v)
  if (Array.isArray(v)) return 'an array'
  if (v === null) return 'null'
  return typeof v === 'object' ? 'an object' : String(v)
}

/**
 * Checks an untrusted value (a parsed trace file) and returns it as a Trace. Throws TraceError naming
 * the first bad field, e.g. `events[3].stage: 7 is outside 0..3`.
 */
export function validateTrace (value: unknown, source = 'trace'): Trace {
  const fail = (field: string, problem: string): never => { throw new TraceError(`${source}: ${field}: ${problem}`) }
  if (!isObject(value)) return fail('(top level)', `expected an object with format "spotpipe-trace", got ${describe(value)}`)
  if (value.format !== 'spotpipe-trace') fail('format', `expected "spotpipe-trace", got ${describe(value.format)}`)
  if (value.version !== 1) fail('version', `unsupported version ${describe(value.version)} (this build reads 1)`)
  const int = (field: string, v: unknown, min: number): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) fail(field, `expected an integer >= ${min}, got ${describe(v)}`)
    return v as number
  }
  const finite = (field: string, v: unknown, positive: boolean): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || (positive ? v <= 0 : v < 0)) fail(field, `expected a ${positive ? 'positive' : 'non-negative'} finite number, got ${describe(v)}`)
    return v as number
  }
  const seed = typeof value.seed === 'number' && Number.isSafeInteger(value.seed) ? value.seed : fail('seed', `expected an integer, got ${describe(value.seed)}`)
  const stages = int('stages', value.stages, 1)
  const iterations = int('iterations', value.iterations, 0)
  const iterationS = finite('iterationS', value.iterationS, true)
  const c = value.conversion
  if (!isObject(c)) return fail('conversion', `expected an object, got ${describe(c)}`)
  if (c.kind !== 'hourly' && c.kind !== 'per-iteration') fail('conversion.kind', `expected "hourly" or "per-iteration", got ${describe(c.kind)}`)
  for (const k of ['hourlyRate', 'perIteration'] as const) {
    const v = c[k]
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(`conversion.${k}`, `expected a probability in [0, 1], got ${describe(v)}`)
  }
  finite('conversion.iterationS', c.iterationS, true)
  if (typeof c.formula !== 'string') fail('conversion.formula', `expected a string, got ${describe(c.formula)}`)
  if (c.preset != null && typeof c.preset !== 'string') fail('conversion.preset', `expected a string, got ${describe(c.preset)}`)
  if (!Array.isArray(value.events)) return fail('events', `expected an array, got ${describe(value.events)}`)
  const events: TraceEvent[] = []
  let prev: TraceEvent | undefined
  value.events.forEach((e: unknown, i: number) => {
    const f = `events[${i}]`
    if (!isObject(e)) return fail(f, `expected an object, got ${describe(e)}`)
    const iteration = int(`${f}.iteration`, e.iteration, 0)
    if (iteration >= iterations) fail(`${f}.iteration`, `${iteration} is beyond the trace's horizon of ${iterations} iterations`)
    const timeS = finite(`${f}.timeS`, e.timeS, false)
    const stage = int(`${f}.stage`, e.stage, 0)
    if (stage >= stages) fail(`${f}.stage`, `${stage} is outside 0..${stages - 1}`)
    if (!TRACE_EVENT_KINDS.includes(e.kind as TraceEventKind)) fail(`${f}.kind`, `expected one of ${TRACE_EVENT_KINDS.join(', ')}, got ${describe(e.kind)}`)
    if (e.peer != null && typeof e.peer !== 'string') fail(`${f}.peer`, `expected a string, got ${describe(e.peer)}`)
    const ev: TraceEvent = { iteration, timeS, stage, kind: e.kind as TraceEventKind }
    if (typeof e.peer === 'string') ev.peer = e.peer
    if (prev != null && (ev.iteration < prev.iteration || (ev.iteration === prev.iteration && ev.timeS < prev.timeS))) {
      fail(f, `events must be sorted by (iteration, timeS): iteration ${ev.iteration} at ${ev.timeS} s follows iteration ${prev.iteration} at ${prev.timeS} s`)
    }
    prev = ev
    events.push(ev)
  })
  const conversion: RateConversion = {
    kind: c.kind as RateConversion['kind'],
    hourlyRate: c.hourlyRate as number,
    perIteration: c.perIteration as number,
    iterationS: c.iterationS as number,
    formula: c.formula as string
  }
  if (typeof c.preset === 'string') conversion.preset = c.preset
  const replicas = value.replicas != null ? int('replicas', value.replicas, 1) : undefined
  return { format: 'spotpipe-trace', version: 1, seed, stages, iterations, iterationS, conversion, ...(replicas != null ? { replicas } : {}), events }
}

/** Parses trace JSON text; syntax errors and bad fields raise TraceError. */
export function parseTrace (text: string, source = 'trace'): Trace {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new TraceError(`${source}: not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  return validateTrace(value, source)
}

/** JSON text of a trace: header fields, then one event per line (diff-friendly, exact numbers). */
export function serializeTrace (trace: Trace): string {
  const { events, ...head } = trace
  const lines = events.map(e => '    ' + JSON.stringify(e))
  const headJson = JSON.stringify(head, null, 2)
  return `${headJson.slice(0, -2)},\n  "events": [\n${lines.join(',\n')}\n  ]\n}\n`
}

export function writeTrace (path: string, trace: Trace): void {
  writeFileSync(path, serializeTrace(trace))
}

export function readTrace (path: string): Trace {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new TraceError(`cannot read trace file ${path}: ${(err as Error).message}`, { cause: err })
  }
  return parseTrace(text, path)
}

/** Failures (crash and notice) grouped by iteration, for replay; joins are left out. */
export function failuresByIteration (trace: Trace): Map<number, TraceEvent[]> {
  const out = new Map<number, TraceEvent[]>()
  for (const e of trace.events) {
    if (e.kind === 'join') continue
    const list = out.get(e.iteration)
    if (list == null) out.set(e.iteration, [e])
    else list.push(e)
  }
  return out
}

/** Where inside its iteration an event falls, in [0, 1). */
export function offsetInIteration (trace: Pick<Trace, 'iterationS'>, e: TraceEvent): number {
  const u = e.timeS / trace.iterationS - e.iteration
  return Math.min(Math.max(u, 0), 1 - 1e-12)
}

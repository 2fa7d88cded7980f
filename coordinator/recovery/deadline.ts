/**
 * How long a recovery may take before it fails for making no progress (README "Recovery"): a base
 * for building and installing the stage, plus a slack factor times the bytes it must move at the
 * throughput measured over the recoveries so far.
 */
import type { ModelConfig } from '../../model/index.js'
import { countParams, stageLayout, stageSpecs } from '../../model/index.js'
import type { StagePlan } from '../ladder.js'

/** Time a recovery gets beyond moving its bytes: building the stage, installing it, taking the epoch. */
export const RECOVERY_BASE_DEADLINE_MS = 20_000
/** Throughput assumed before any transfer was measured (bytes/ms = kB/s): 10 MB/s, a slow WAN link. */
export const DEFAULT_THROUGHPUT_BYTES_PER_MS = 10_000
/** A deadline allows this many times the expected transfer time. */
export const DEADLINE_SLACK = 4

/** Bytes plan `p` moves: the donors' parameters for CheckFree(+), a stage's parameters and both Adam moments for an exact copy. */
export function planBytes (model: ModelConfig, stages: number, p: StagePlan): number {
  const stageBytes = (s: number): number => 4 * countParams(stageSpecs(model, stageLayout(model, stages, s)))
  if (p.rung === 'checkfree') return p.donors.reduce((n, d) => n + stageBytes(d.stage), 0)
  if (p.rung === 'checkfree-plus') return stageBytes(p.donors[0]?.stage ?? p.stage) + stageBytes(p.stage)
  if (p.rung === 'checkpoint' && p.checkpointId === 'init') return 0
  return 3 * stageBytes(p.stage)
}

/** The deadline of plan `p` in ms, at `throughput` bytes per ms. */
export function recoveryDeadlineMs (model: ModelConfig, stages: number, p: StagePlan, throughput: number): number {
  return Math.round(RECOVERY_BASE_DEADLINE_MS + DEADLINE_SLACK * planBytes(model, stages, p) / throughput)
}

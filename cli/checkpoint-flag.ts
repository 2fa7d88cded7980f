/**
 * What `spotpipe export`, `generate` and `eval` share: where their output goes (so tests can run
 * them in-process), the --checkpoint flag, and the line saying which checkpoint was read.
 */
import { readCheckpointAt, type FoundCheckpoint } from '../coordinator/index.js'
import { UsageError } from './errors.js'

/** Where a command writes: `out` is its result (stdout), `err` what it tells the user (stderr). */
export interface CommandIo {
  out: (text: string) => void
  err: (text: string) => void
}

export const STDIO: CommandIo = {
  out: text => { process.stdout.write(text) },
  err: text => { process.stderr.write(text) }
}

export const CHECKPOINT_HELP = `  --checkpoint DIR     a checkpoint's directory (<store>/ckpt-<iteration>), a checkpoint store
                       (its newest complete checkpoint) or a coordinator's --state-dir
`

/** The value of string flag `name`, which must be given and not be empty. */
export function requiredFlag (values: Record<string, unknown>, name: string, what: string): string {
  const v = values[name]
  if (typeof v !== 'string') throw new UsageError(`--${name} ${what} is required`)
  if (v === '') throw new UsageError(`--${name} must not be empty`)
  return v
}

/** Reads the checkpoint --checkpoint names (see coordinator/checkpoint-read.ts). */
export async function loadCheckpointFlag (values: Record<string, unknown>): Promise<FoundCheckpoint> {
  return await readCheckpointAt(requiredFlag(values, 'checkpoint', 'DIR'))
}

/** One line naming the checkpoint read and why it was that one. */
export function describeCheckpoint (found: FoundCheckpoint): string {
  const { loaded, model } = found
  const what = found.source === 'checkpoint'
    ? 'the checkpoint directory given'
    : `the newest of ${found.complete} complete checkpoint(s) in the ${found.source === 'store' ? 'checkpoint store' : 'state directory\'s store'}`
  return `checkpoint ${loaded.iteration} (${loaded.stages} stage(s), ${model.nBlocks} blocks, d ${model.dModel}, ${model.nHeads} heads, seq ${model.seqLen}) at ${found.dir}: ${what}`
}

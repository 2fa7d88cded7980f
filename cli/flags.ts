/**
 * Flag parsing shared by the commands: node:util parseArgs in strict mode, plus typed number
 * conversion that names the flag on bad input.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { UsageError } from './errors.js'

export type FlagSpec = NonNullable<ParseArgsConfig['options']>

export function parseFlags<T extends FlagSpec> (argv: string[], options: T): { values: Record<string, string | boolean | undefined>, positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals: true })
    return { values: values as Record<string, string | boolean | undefined>, positionals }
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify.*$/s, ''))
  }
}

export function intFlag (values: Record<string, unknown>, name: string, fallback: number, min = 1): number {
  const raw = values[name]
  if (raw == null) return fallback
  const v = Number(raw)
  if (!Number.isInteger(v) || v < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${String(raw)}"`)
  return v
}

export function numFlag (values: Record<string, unknown>, name: string, fallback: number): number {
  const raw = values[name]
  if (raw == null) return fallback
  const v = Number(raw)
  if (!Number.isFinite(v) || v <= 0) throw new UsageError(`--${name} must be a positive number, got "${String(raw)}"`)
  return v
}

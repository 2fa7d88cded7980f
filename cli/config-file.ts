/**
 * Flag values from three more places than the command line. Precedence, highest first:
 *
 *   1. flags on the command line
 *   2. environment variables: SPOTPIPE_ + the flag name in upper snake case
 *      (--swarm-key -> SPOTPIPE_SWARM_KEY, --d-model -> SPOTPIPE_D_MODEL)
 *   3. a JSON config file: `--config FILE` (or SPOTPIPE_CONFIG), one object keyed by flag name,
 *      e.g. {"coordinator": "/ip4/10.0.0.5/tcp/4001/p2p/12D3Koo...", "listen": ["/ip4/0.0.0.0/tcp/4001"]}
 *   4. the `default` of the flag's spec entry, if it has one
 *
 * Only flags the command declares are read, and never `help` or `config` themselves. Types follow
 * the spec: a string flag takes a JSON string or number (numeric flags are string flags, parsed
 * later by intFlag/numFlag); a boolean flag takes true/false (environment: 1/0, true/false, yes/no,
 * on/off); a repeatable flag takes a JSON array (environment: comma-separated). An empty
 * environment variable counts as unset. A file key the command does not know is an error, so a
 * typo never silently does nothing.
 *
 * Values from the environment or the file are checked later by the same code as flags (intFlag,
 * ...), whose messages name the flag (--stages), not the variable or the key.
 */
import { promises as fs } from 'node:fs'
import { SpotpipeError } from '../common/index.js'
import { parseFlags, type FlagSpec } from './flags.js'

/** A config file is missing, unreadable, not JSON, or has an unknown key or a wrongly typed value. */
export class ConfigFileError extends SpotpipeError {
  readonly path: string
  constructor (path: string, detail: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG_FILE', `config file ${path}: ${detail}`, options)
    this.path = path
  }
}

/** A SPOTPIPE_* environment variable holds a value its flag cannot take. */
export class ConfigEnvError extends SpotpipeError {
  readonly variable: string
  constructor (variable: string, detail: string) {
    super('ERR_CONFIG_ENV', `environment variable ${variable}: ${detail}`)
    this.variable = variable
  }
}

/** Spread into a command's flag spec to accept --config FILE. */
export const CONFIG_FLAG = { config: { type: 'string' } } as const satisfies FlagSpec

export const CONFIG_HELP = `  --config FILE        JSON object of flag values, e.g. {"cluster": "run-7"} (also SPOTPIPE_CONFIG);
                       precedence: flags > SPOTPIPE_<FLAG> environment variables > file > defaults
`

/** The environment variable naming the config file when --config is not given. */
export const CONFIG_ENV = 'SPOTPIPE_CONFIG'

/** Flags only the command line sets. */
const COMMAND_LINE_ONLY = new Set(['help', 'config'])

type FlagOption = FlagSpec[string]

/** The environment variable for a flag: 'swarm-key' -> 'SPOTPIPE_SWARM_KEY'. */
export function envVarName (flag: string): string {
  return 'SPOTPIPE_' + flag.toUpperCase().replace(/[^A-Z0-9]/g, '_')
}

/**
 * Fills the flags the command line left unset from the environment, then the config file, then
 * the spec's defaults (see the precedence above). `values` is what parseFlags returned for `spec`;
 * parse with a spec without `default`s (parseFlagsWithConfig does), otherwise parseArgs fills them
 * in and they would look like flags given on the command line.
 * Throws ConfigFileError or ConfigEnvError; returns a new object.
 */
export async function mergeConfig<V extends Record<string, unknown>> (values: V, spec: FlagSpec, env: NodeJS.ProcessEnv = process.env): Promise<V> {
  let path: string | undefined
  if (Object.hasOwn(spec, 'config')) {
    const flag = values.config
    path = typeof flag === 'string' ? flag : nonEmpty(env[CONFIG_ENV])
  }
  const file = path != null ? await readConfigFile(path, spec) : {}
  const out: Record<string, unknown> = { ...values }
  for (const [name, option] of Object.entries(spec)) {
    if (COMMAND_LINE_ONLY.has(name) || values[name] !== undefined) continue
    const fromEnv = envValue(name, option, env)
    if (fromEnv !== undefined) out[name] = fromEnv
    else if (file[name] !== undefined) out[name] = file[name]
    else if (option.default !== undefined) out[name] = option.default
  }
  if (path != null) out.config = path
  return out as V
}

/** parseFlags, then mergeConfig: the whole precedence chain in one call. */
export async function parseFlagsWithConfig (argv: string[], spec: FlagSpec, env: NodeJS.ProcessEnv = process.env): Promise<{ values: Record<string, unknown>, positionals: string[] }> {
  const bare: FlagSpec = {}
  for (const [name, option] of Object.entries(spec)) {
    const { default: _ignored, ...rest } = option
    bare[name] = rest as FlagOption
  }
  const { values, positionals } = parseFlags(argv, bare)
  if (values.help === true) return { values, positionals } // --help works even with a broken file
  return { values: await mergeConfig(values, spec, env), positionals }
}

/** Reads and checks a config file against `spec`; returns the flag values it sets. */
export async function readConfigFile (path: string, spec: FlagSpec): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await fs.readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const detail = code === 'ENOENT' ? 'not found' : code === 'EISDIR' ? 'is a directory, expected a JSON file' : `cannot read: ${(err as Error).message}`
    throw new ConfigFileError(path, detail, { cause: err })
  }
  let data: unknown
  try {
    data = JSON.parse(text.replace(/^\uFEFF/, ''))
  } catch (err) {
    throw new ConfigFileError(path, `not valid JSON: ${(err as Error).message.split('\n')[0]}`, { cause: err })
  }
  if (data == null || typeof data !== 'object' || Array.isArray(data)) throw new ConfigFileError(path, `must hold a JSON object of flag values, found ${kindOf(data)}`)
  const known = Object.keys(spec).filter(k => !COMMAND_LINE_ONLY.has(k))
  const out: Record<string, unknown> = {}
  for (const [key, raw] of Object.entries(data)) {
    if (COMMAND_LINE_ONLY.has(key)) throw new ConfigFileError(path, `"${key}" can only be given on the command line`)
    if (!known.includes(key)) throw new ConfigFileError(path, `unknown key "${key}" (this command takes: ${known.join(', ')})`)
    const v = fileValue(spec[key], raw)
    if (v === undefined) throw new ConfigFileError(path, `"${key}" must be ${expected(spec[key])}, found ${kindOf(raw)}`)
    out[key] = v
  }
  return out
}

function fileValue (option: FlagOption, raw: unknown): unknown {
  const one = (x: unknown): string | boolean | undefined => {
    if (option.type === 'boolean') return typeof x === 'boolean' ? x : undefined
    if (typeof x === 'string') return x
    if (typeof x === 'number' && Number.isFinite(x)) return String(x)
    return undefined
  }
  if (option.multiple !== true) return one(raw)
  const items = Array.isArray(raw) ? raw.map(one) : [one(raw)]
  return items.includes(undefined) ? undefined : items
}

function envValue (name: string, option: FlagOption, env: NodeJS.ProcessEnv): unknown {
  const variable = envVarName(name)
  const raw = nonEmpty(env[variable])
  if (raw == null) return undefined
  const items = option.multiple === true ? raw.split(',').map(s => s.trim()).filter(s => s !== '') : [raw]
  const parsed = items.map(s => {
    if (option.type !== 'boolean') return s
    const b = parseBool(s)
    if (b == null) throw new ConfigEnvError(variable, `expected 1/0, true/false, yes/no or on/off, got "${s}"`)
    return b
  })
  return option.multiple === true ? parsed : parsed[0]
}

function parseBool (s: string): boolean | undefined {
  const v = s.trim().toLowerCase()
  if (['1', 'true', 'yes', 'on'].includes(v)) return true
  if (['0', 'false', 'no', 'off'].includes(v)) return false
  return undefined
}

function nonEmpty (s: string | undefined): string | undefined {
  return s == null || s === '' ? undefined : s
}

function expected (option: FlagOption): string {
  const one = option.type === 'boolean' ? 'true or false' : 'a string or a number'
  return option.multiple === true ? `${one}, or an array of them` : one
}

function kindOf (v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'object') return 'an object'
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v)}`
  return `${typeof v === 'number' ? 'the number' : 'the value'} ${String(v)}`
}

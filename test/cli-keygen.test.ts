/**
 * `spotpipe keygen` as a real child process (files, modes, refusals, one-line errors), and the
 * precedence and errors of cli/config-file.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigEnvError, ConfigFileError, envVarName, mergeConfig, parseFlagsWithConfig, readConfigFile, CONFIG_FLAG } from '../cli/config-file.js'
import type { FlagSpec } from '../cli/flags.js'
import { loadIdentity, loadSwarmKey } from '../net/index.js'
import { spotpipeArgs } from '../sim/peer-process.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs `spotpipe <args>` to completion; the child is killed if it outlives the timeout. */
async function spotpipe (args: string[], timeoutMs = 20_000): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env }
  delete env.DEBUG // with DEBUG set the CLI prints stack traces on purpose
  delete env.SPOTPIPE_QUIET
  let child: ChildProcess | undefined
  try {
    child = spawn(process.execPath, [...spotpipeArgs(), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (b: Buffer) => { stdout += b.toString() })
    child.stderr?.on('data', (b: Buffer) => { stderr += b.toString() })
    const c = child
    const code = await new Promise<number | null>((resolve, reject) => {
      const t = setTimeout(() => { reject(new Error(`spotpipe ${args.join(' ')} did not exit in ${timeoutMs} ms`)) }, timeoutMs)
      c.once('close', (exitCode) => { clearTimeout(t); resolve(exitCode) })
    })
    return { code, stdout, stderr }
  } finally {
    if (child != null && child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
  }
}

/** stderr lines from the top-level error handler, ignoring informational [component] lines. */
function errorLines (r: Run): string[] {
  return r.stderr.split('\n').filter(l => l !== '' && !l.startsWith('['))
}

function expectOneLineError (r: Run, code: number, re: RegExp): void {
  expect(r.code).toBe(code)
  const lines = errorLines(r)
  expect(lines, r.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^spotpipe: /)
  expect(lines[0]).toMatch(re)
  expect(r.stderr).not.toMatch(/\n\s+at /) // no stack trace
}

let dir: string
beforeAll(async () => { dir = await fs.mkdtemp(join(tmpdir(), 'spotpipe-keygen-')) })
afterAll(async () => { await fs.rm(dir, { recursive: true, force: true }) })

describe('spotpipe keygen', () => {
  it('writes an identity and a swarm key (mode 0600), prints the peer id, refuses to overwrite', async () => {
    const id = join(dir, 'a', 'identity.key')
    const swarm = join(dir, 'a', 'swarm.key')
    const r = await spotpipe(['keygen', '--identity', id, '--swarm-key', swarm])
    expect(r.code, r.stderr).toBe(0)
    const peerId = r.stdout.trim()
    expect(peerId).toMatch(/^12D3KooW[1-9A-HJ-NP-Za-km-z]+$/)
    expect(r.stdout).toBe(`${peerId}\n`)
    expect(peerIdFromPrivateKey(await loadIdentity(id)).toString()).toBe(peerId)
    expect((await loadSwarmKey(swarm)).byteLength).toBeGreaterThan(64)
    if (process.platform !== 'win32') {
      expect((await fs.stat(id)).mode & 0o777).toBe(0o600)
      expect((await fs.stat(swarm)).mode & 0o777).toBe(0o600)
    }

    const before = await fs.readFile(id, 'utf8')
    const again = await spotpipe(['keygen', '--identity', id])
    expectOneLineError(again, 1, /already exists.*--force.*\[ERR_FILE_EXISTS\]$/)
    expect(again.stdout).toBe('')
    expect(await fs.readFile(id, 'utf8')).toBe(before)

    // neither file is written when one of them is refused
    const fresh = join(dir, 'a', 'other.key')
    const partial = await spotpipe(['keygen', '--identity', fresh, '--swarm-key', swarm])
    expectOneLineError(partial, 1, /swarm\.key already exists/)
    await expect(fs.stat(fresh)).rejects.toThrow(/ENOENT/)

    const forced = await spotpipe(['keygen', '--identity', id, '--force'])
    expect(forced.code, forced.stderr).toBe(0)
    expect(forced.stdout.trim()).not.toBe(peerId)
    expect(peerIdFromPrivateKey(await loadIdentity(id)).toString()).toBe(forced.stdout.trim())
  })

  it('writes a swarm key alone', async () => {
    const swarm = join(dir, 'only-swarm.key')
    const r = await spotpipe(['keygen', '--swarm-key', swarm])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('')
    expect((await fs.readFile(swarm, 'utf8')).split('\n')[0]).toBe('/key/swarm/psk/1.0.0/')
  })

  it('bad command lines and unwritable paths give a one-line error and a non-zero exit', async () => {
    const file = join(dir, 'plain-file')
    await fs.writeFile(file, 'x')
    const runs = await Promise.all([
      spotpipe(['keygen', '--bogus']),
      spotpipe(['keygen']),
      spotpipe(['keygen', '--identity']),
      spotpipe(['keygen', '--identity', join(dir, 'x.key'), 'extra']),
      spotpipe(['keygen', '--identity', join(file, 'id.key')])
    ])
    expectOneLineError(runs[0], 2, /Unknown option '--bogus'.*\[ERR_USAGE\]/)
    expectOneLineError(runs[1], 2, /--identity FILE and\/or --swarm-key FILE/)
    expectOneLineError(runs[2], 2, /--identity/)
    expectOneLineError(runs[3], 2, /unexpected argument "extra"/)
    expectOneLineError(runs[4], 1, /identity file .*plain-file.*\[ERR_IDENTITY_FILE\]$/)
    for (const r of runs) expect(r.stdout).toBe('')
  })

  it('--help prints usage and is listed by spotpipe --help', async () => {
    const [help, top] = await Promise.all([spotpipe(['keygen', '--help']), spotpipe(['--help'])])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^usage: spotpipe keygen/)
    expect(help.stdout).toContain('--force')
    expect(top.stdout).toMatch(/^\s+keygen\s+/m)
  })
})

describe('config precedence: flags > environment > file > defaults', () => {
  const spec = {
    ...CONFIG_FLAG,
    cluster: { type: 'string', default: 'spotpipe' },
    stages: { type: 'string' },
    lr: { type: 'string' },
    listen: { type: 'string', multiple: true },
    'swarm-key': { type: 'string' },
    'create-identity': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' }
  } as const satisfies FlagSpec

  async function configFile (name: string, content: unknown): Promise<string> {
    const p = join(dir, name)
    await fs.writeFile(p, typeof content === 'string' ? content : JSON.stringify(content))
    return p
  }

  it('names environment variables in upper snake case', () => {
    expect(envVarName('swarm-key')).toBe('SPOTPIPE_SWARM_KEY')
    expect(envVarName('d-model')).toBe('SPOTPIPE_D_MODEL')
  })

  it('takes each value from the highest source that sets it', async () => {
    const file = await configFile('all.json', { cluster: 'from-file', stages: 8, lr: '1e-3', listen: ['/ip4/0.0.0.0/tcp/4001'], 'swarm-key': '/file/swarm.key', 'create-identity': true })
    const env = { SPOTPIPE_STAGES: '6', SPOTPIPE_SWARM_KEY: '/env/swarm.key', SPOTPIPE_LISTEN: '/ip4/0.0.0.0/tcp/1, /ip4/0.0.0.0/tcp/2', SPOTPIPE_LR: '' }
    const { values } = await parseFlagsWithConfig(['--config', file, '--stages', '2'], spec, env)
    expect(values).toEqual({
      config: file,
      stages: '2', // flag beats environment and file
      'swarm-key': '/env/swarm.key', // environment beats file
      listen: ['/ip4/0.0.0.0/tcp/1', '/ip4/0.0.0.0/tcp/2'], // comma-separated in the environment
      lr: '1e-3', // an empty variable is unset, so the file wins
      cluster: 'from-file', // file beats default
      'create-identity': true
    })
  })

  it('falls back to defaults, reads SPOTPIPE_CONFIG, and parses booleans from the environment', async () => {
    expect(await mergeConfig({}, spec, {})).toEqual({ cluster: 'spotpipe' })
    const file = await configFile('env-named.json', { stages: '3' })
    expect(await mergeConfig({}, spec, { SPOTPIPE_CONFIG: file, SPOTPIPE_CREATE_IDENTITY: 'yes' })).toEqual({ config: file, stages: '3', cluster: 'spotpipe', 'create-identity': true })
    expect(await mergeConfig({ 'create-identity': true }, spec, { SPOTPIPE_CREATE_IDENTITY: 'off' })).toMatchObject({ 'create-identity': true })
    expect(await mergeConfig({}, spec, { SPOTPIPE_CREATE_IDENTITY: '0' })).toMatchObject({ 'create-identity': false })
    // a spec default given on the command line is still a flag (parseFlagsWithConfig strips defaults before parsing)
    const { values } = await parseFlagsWithConfig(['--cluster', 'spotpipe'], spec, { SPOTPIPE_CLUSTER: 'from-env' })
    expect(values.cluster).toBe('spotpipe')
    // --help never reads the file
    const help = await parseFlagsWithConfig(['--help', '--config', join(dir, 'missing.json')], spec, {})
    expect(help.values.help).toBe(true)
    // commands without --config ignore SPOTPIPE_CONFIG
    const { config: _c, ...noConfig } = spec
    expect(await mergeConfig({}, noConfig, { SPOTPIPE_CONFIG: join(dir, 'missing.json') })).toEqual({ cluster: 'spotpipe' })
  })

  it('reports missing and malformed files, unknown keys and wrong types, naming the file', async () => {
    const missing = join(dir, 'nope.json')
    await expect(mergeConfig({ config: missing }, spec, {})).rejects.toThrow(new ConfigFileError(missing, 'not found'))
    const cases: Array<[unknown, RegExp]> = [
      ['{"stages": 4,', /not valid JSON/],
      ['[1, 2]', /must hold a JSON object of flag values, found an array/],
      ['null', /found null/],
      [{ stagez: 4 }, /unknown key "stagez" \(this command takes: cluster, stages, lr, listen, swarm-key, create-identity\)/],
      [{ help: true }, /"help" can only be given on the command line/],
      [{ config: 'other.json' }, /"config" can only be given on the command line/],
      [{ stages: [4] }, /"stages" must be a string or a number, found an array/],
      [{ stages: null }, /"stages" must be a string or a number, found null/],
      [{ 'create-identity': 'yes' }, /"create-identity" must be true or false, found the string "yes"/],
      [{ listen: [1, { a: 1 }] }, /"listen" must be a string or a number, or an array of them/]
    ]
    for (const [i, [content, re]] of cases.entries()) {
      const p = await configFile(`bad-${i}.json`, content)
      const err = await mergeConfig({ config: p }, spec, {}).then(() => undefined, (e: unknown) => e)
      expect(err, String(re)).toBeInstanceOf(ConfigFileError)
      expect((err as ConfigFileError).code).toBe('ERR_CONFIG_FILE')
      expect((err as Error).message).toContain(`config file ${p}: `)
      expect((err as Error).message).toMatch(re)
      expect((err as Error).message).not.toContain('\n')
    }
    await expect(readConfigFile(dir, spec)).rejects.toThrow(/is a directory/)
  })

  it('reports a bad boolean in the environment, naming the variable', async () => {
    const err = await mergeConfig({}, spec, { SPOTPIPE_CREATE_IDENTITY: 'maybe' }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigEnvError)
    expect((err as ConfigEnvError).message).toBe('environment variable SPOTPIPE_CREATE_IDENTITY: expected 1/0, true/false, yes/no or on/off, got "maybe"')
  })
})

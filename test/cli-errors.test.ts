import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { killAll, spotpipe } from './helpers/procs.js'

let dir = ''
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'spotpipe-cli-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })
afterEach(async () => { await killAll() })

const COORD = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWBDpAn6bwDqEBQc6nSYkFmqFSBqpW2p37X4mpwAGpJkRD'

async function fails (args: string[], pattern: RegExp, code = 1): Promise<void> {
  const p = spotpipe(args, { DEBUG: '' })
  const r = await p.exited
  expect(r.code, p.stderr.join('\n')).toBe(code)
  const lines = p.stderr.filter(l => !l.startsWith('['))
  expect(lines).toHaveLength(1)
  expect(lines[0]).toMatch(/^spotpipe: /)
  expect(lines[0]).toMatch(pattern)
  expect(p.stderr.some(l => /^\s+at /.test(l))).toBe(false)
}

describe('the spotpipe command on bad input', () => {
  it('bad flags and values: a usage error, exit 2', async () => {
    await fails(['peer', '--nope'], /Unknown option '--nope'/, 2)
    await fails(['coordinator', '--stages', 'two'], /--stages must be an integer/, 2)
    await fails(['coordinator', '--strategy', 'magic'], /--strategy must be one of/, 2)
    await fails(['coordinator', '--replicas', '5', '--microbatches', '4'], /--replicas \(5\) must be at most --microbatches \(4\)/, 2)
    await fails(['coordinator', '--replicas', '0'], /--replicas must be an integer >= 1/, 2)
    await fails(['coordinator', '--replicas', '2', '--min-replicas', '3'], /--min-replicas \(3\) must be at most --replicas \(2\)/, 2)
    await fails(['peer'], /--coordinator is required/, 2)
    await fails(['peer', '--coordinator', '/ip4/127.0.0.1/tcp/9'], /must end in \/p2p\//, 2)
    await fails(['frobnicate'], /unknown command "frobnicate"/, 2)
  }, 60_000)

  it('a peer without the cluster secret or --open: a usage error naming both, exit 2', async () => {
    await Promise.all([
      fails(['peer', '--coordinator', COORD], /private by default: give --swarm-key FILE .* or --open/, 2),
      fails(['peer', '--coordinator', COORD, '--open', '--swarm-key', 'x.key'], /--open and --swarm-key/, 2)
    ])
  }, 60_000)

  it('missing and malformed key files name the file', async () => {
    await fails(['peer', '--coordinator', COORD, '--identity', join(dir, 'missing.key')], /missing\.key/)
    const bad = join(dir, 'bad.key')
    await writeFile(bad, 'not a key')
    await fails(['peer', '--coordinator', COORD, '--swarm-key', bad], /bad\.key/)
    await fails(['coordinator', '--swarm-key', join(dir, 'nope.swarm')], /nope\.swarm/)
  }, 60_000)

  it('an unreachable coordinator: retried until --join-timeout, then one line naming the address and the attempts', async () => {
    const t0 = Date.now()
    await fails(['peer', '--coordinator', COORD, '--open', '--join-timeout', '2000'], /cannot reach the coordinator at \/ip4\/127\.0\.0\.1\/tcp\/1\/.* \([3-9] attempts over 2 s\)/)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000)
    await fails(['peer', '--coordinator', COORD, '--open', '--join-timeout', '0'], /cannot reach the coordinator at \/ip4\/127\.0\.0\.1\/tcp\/1\/p2p\/\w+: /)
    await fails(['peer', '--coordinator', COORD, '--open', '--join-timeout=-1'], /--join-timeout must be an integer >= 0/, 2)
  }, 60_000)
})

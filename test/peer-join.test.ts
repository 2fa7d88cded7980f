/**
 * A peer started while its coordinator is not (yet) reachable: a VM that boots its peer first, or
 * a peer restarted while the coordinator restarts (the chaos suite saw such a peer exit at once
 * with ERR_UNREACHABLE). It keeps dialling, with backoff, for --join-timeout, and joins.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { generateSwarmKey, saveSwarmKey } from '../net/index.js'
import { killAll, spotpipe } from './helpers/procs.js'
import { freePort } from './helpers/ports.js'

const MODEL = ['--d-model', '32', '--heads', '2', '--blocks', '4', '--seq-len', '16', '--stages', '4', '--microbatches', '2', '--microbatch-size', '4']

let dir = ''
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'spotpipe-join-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })
afterEach(async () => { await killAll() })

describe('peers started before their coordinator', () => {
  it('keep dialling and join once it listens; the run trains', async () => {
    const key = ['--swarm-key', join(dir, 'swarm.key')]
    await saveSwarmKey(key[1], generateSwarmKey())
    const identity = join(dir, 'coord.key')
    const keygen = spotpipe(['keygen', '--identity', identity])
    const [coordId] = await keygen.waitFor(/^12D3\S+$/)
    expect((await keygen.exited).code).toBe(0)
    const port = await freePort()
    const listen = `/ip4/127.0.0.1/tcp/${port}`
    const addr = `${listen}/p2p/${coordId}`
    const peers = Array.from({ length: 4 }, () => spotpipe(['peer', '--cluster', 'join', '--coordinator', addr, '--backend', 'wasm', '--join-timeout', '30000', ...key], { SPOTPIPE_QUIET: '0' }))
    // every peer has found the coordinator unreachable and is retrying
    const retrying = async (p: (typeof peers)[number]): Promise<void> => {
      for (let t = 0; t < 200 && !p.stderr.some(l => /unreachable .*retrying for up to 30 s/.test(l)); t++) await new Promise(resolve => setTimeout(resolve, 100))
    }
    await Promise.all(peers.map(retrying))
    for (const p of peers) expect(p.stderr.join('\n')).toMatch(/coordinator at \S+ unreachable .*retrying for up to 30 s/)
    expect(peers.every(p => p.child.exitCode == null)).toBe(true)
    const coord = spotpipe(['coordinator', '--cluster', 'join', '--listen', listen, '--identity', identity, '--iterations', '3', ...key, ...MODEL])
    const done = await coord.exited
    expect(done.code, coord.stderr.slice(-10).join('\n')).toBe(0)
    expect(coord.lines.filter(l => l.startsWith('iter ')).length).toBe(3)
    for (const p of peers) expect(p.stderr.join('\n')).toMatch(/reached the coordinator at \S+ \(attempt \d+\)/)
  }, 120_000)

  it('a peer started while the coordinator is paused (SIGSTOP) retries its timed-out handshake and joins after SIGCONT', async () => {
    const key = ['--swarm-key', join(dir, 'swarm2.key')]
    await saveSwarmKey(key[1], generateSwarmKey())
    const coord = spotpipe(['coordinator', '--cluster', 'paused', '--iterations', '1', ...key, ...MODEL])
    const [, addr] = await coord.waitFor(/^coordinator (\S+)/)
    coord.child.kill('SIGSTOP')
    try {
      const peer = spotpipe(['peer', '--cluster', 'paused', '--coordinator', addr, '--backend', 'wasm', '--join-timeout', '60000', ...key], { SPOTPIPE_QUIET: '0' })
      for (let t = 0; t < 300 && !peer.stderr.some(l => /unreachable .*retrying/.test(l)); t++) await new Promise(resolve => setTimeout(resolve, 100))
      expect(peer.stderr.join('\n')).toMatch(/coordinator at \S+ unreachable \(.*(timeout|aborted).*\); retrying for up to \d+ s/)
      expect(peer.child.exitCode).toBeNull()
      coord.child.kill('SIGCONT')
      await peer.waitFor(/^peer \S+\/p2p\//, 60_000)
      expect(peer.stderr.join('\n')).toMatch(/reached the coordinator at \S+ \(attempt \d+\)/)
    } finally {
      coord.child.kill('SIGCONT')
    }
  }, 120_000)
})

/**
 * Clusters are private by default (issue 10 item 8): `spotpipe coordinator` without --swarm-key
 * creates the cluster secret and names it; a libp2p node without that secret cannot connect (so it
 * cannot open a stream or publish); a peer without --swarm-key or --open refuses to start. With
 * --open the coordinator makes an open cluster, and the same stranger connects.
 */
import { promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { createPeerLibp2p, generateSwarmKey, loadSwarmKey, type PeerLibp2p } from '../net/index.js'
import { controlTopic } from '../protocols/index.js'
import { killAll, spotpipe } from './helpers/procs.js'

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {})
  await killAll()
})

async function tempDir (): Promise<string> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'spotpipe-private-'))
  cleanup.push(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  return dir
}

async function node (swarmKey?: Uint8Array): Promise<PeerLibp2p> {
  const n = await createPeerLibp2p({ swarmKey, listen: [] })
  cleanup.push(async () => { await n.stop() })
  return n
}

/** Starts a coordinator (it waits for peers) and returns its address and its "peers join with" line. */
async function coordinator (args: string[]): Promise<{ addr: string, join: string, lines: string[] }> {
  const proc = spotpipe(['coordinator', '--cluster', 'priv', '--stages', '2', ...args])
  const [, addr] = await proc.waitFor(/^coordinator (\S+)/)
  const [join] = await proc.waitFor(/^peers join with: .*/)
  await proc.waitFor(/^waiting for 2 peers/)
  return { addr, join, lines: proc.lines }
}

describe('a cluster started with the defaults', () => {
  it('is private: the coordinator creates and names the secret, and a node without it cannot connect', async () => {
    const dir = await tempDir()
    const { addr, join: joinLine, lines } = await coordinator(['--state-dir', dir])
    const keyFile = join(dir, 'swarm.key')
    expect(joinLine).toBe(`peers join with: spotpipe peer --coordinator ${addr} --swarm-key ${keyFile}`)
    expect(lines.some(l => l.startsWith(`created the cluster secret ${keyFile}`))).toBe(true)
    expect((await fs.stat(keyFile)).mode & 0o777).toBe(0o600)

    const target = multiaddr(addr)
    const timeout = (): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(5000) })
    // a stranger: no secret, or another one
    for (const stranger of [await node(), await node(generateSwarmKey())]) {
      await expect(stranger.dial(target, timeout())).rejects.toThrow()
      // without a connection there is no one to publish to: the coordinator never hears it
      stranger.services.pubsub.subscribe(controlTopic('priv'))
      expect(stranger.getPeers()).toEqual([])
    }
    // a node with the printed file connects
    const member = await node(await loadSwarmKey(keyFile))
    const conn = await member.dial(target, timeout())
    expect(conn.remotePeer.toString()).toBe(addr.split('/p2p/')[1])
  }, 60_000)

  it('turns away a peer that has neither --swarm-key nor --open, with one line naming both', async () => {
    const dir = await tempDir()
    const { addr } = await coordinator(['--state-dir', dir])
    const peer = spotpipe(['peer', '--cluster', 'priv', '--coordinator', addr, '--backend', 'wasm'])
    const { code } = await peer.exited
    expect(code).toBe(2)
    expect(peer.stderr).toHaveLength(1)
    expect(peer.stderr[0]).toMatch(/--swarm-key FILE.*--open.*\[ERR_USAGE\]/)
  }, 60_000)
})

describe('a cluster started with --open', () => {
  it('lets any node connect, and says so', async () => {
    const dir = await tempDir()
    const { addr, join: joinLine, lines } = await coordinator(['--state-dir', dir, '--open'])
    expect(joinLine).toBe(`peers join with: spotpipe peer --coordinator ${addr} --open`)
    expect(lines.some(l => l.startsWith('open cluster (--open)'))).toBe(true)
    await expect(fs.stat(join(dir, 'swarm.key'))).rejects.toMatchObject({ code: 'ENOENT' })
    const stranger = await node()
    const conn = await stranger.dial(multiaddr(addr), { signal: AbortSignal.timeout(5000) })
    expect(conn.remotePeer.toString()).toBe(addr.split('/p2p/')[1])
  }, 60_000)
})

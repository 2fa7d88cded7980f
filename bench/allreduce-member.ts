/**
 * One member process of bench:allreduce (not run directly): a libp2p node in a private cluster (the
 * default deployment) holding N MB of float32 "gradients", running the all-reduce service and a
 * weights server over the same arrays. The bench drives it over IPC: tell it the other members'
 * addresses, run a round among a group, or fetch a peer's weights point to point.
 *
 * The weights server serves a copy of the gradients as stage 1 at iteration 1 every time (checksums cached
 * after the first request, like bench:transfer's "warm" fetch): the fastest the weights protocol
 * goes, so the point-to-point baseline is not lowered by the donor's summing.
 */
import '../common/polyfill.js'
import { once } from 'node:events'
import { pathToFileURL } from 'node:url'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { tuneHeapGrowth } from '../common/index.js'
import type { TensorSet } from '../model/safetensors.js'
import { createPeerLibp2p, fetchWeights, serveWeights, startAllReduce, tensorCrc } from '../net/index.js'

export type MemberCommand =
  | { type: 'start', rank: number, totalBytes: number, tensorBytes: number, swarmKey: string }
  | { type: 'peers', peers: Array<{ id: string, addrs: string[] }> }
  | { type: 'round', group: string[], key: string }
  | { type: 'fetch', from: string }
  | { type: 'cpu' }

export type MemberReply =
  | { type: 'ready', id: string, addrs: string[] }
  | { type: 'ok' }
  | { type: 'round', ms: number, waitMs: number, bytesSent: number, crc: number, cpuMs: number }
  | { type: 'fetched', ms: number, bytes: number, cpuMs: number }
  | { type: 'cpu', cpuMs: number }
  | { type: 'error', message: string }

const send = (m: MemberReply): void => { process.send?.(m) }
const cpuMs = (since: NodeJS.CpuUsage): number => { const c = process.cpuUsage(since); return (c.user + c.system) / 1000 }

async function main (): Promise<void> {
  // as a real peer runs (cli/main.ts): without it (BENCH_HEAP_TUNING=0), the 64 KiB transport
  // buffers promoted between scavenges brought a full collection every ~20 MB moved (~8 per member
  // per 4-member round)
  if (process.env.BENCH_HEAP_TUNING !== '0') tuneHeapGrowth()
  process.on('disconnect', () => { process.exit(1) }) // the bench is gone
  const [cfg] = await once(process, 'message') as [MemberCommand]
  if (cfg.type !== 'start') throw new Error(`expected start, got ${cfg.type}`)
  // gradient-like values, different on every member (seeded by rank)
  let seed = 1 + cfg.rank * 7919
  const gradients: Float32Array[] = []
  for (let left = cfg.totalBytes; left > 0; left -= cfg.tensorBytes) {
    const g = new Float32Array(cfg.tensorBytes / 4)
    for (let j = 0; j < g.length; j++) {
      seed = (seed * 1103515245 + 12345) >>> 0
      g[j] = (seed / 2 ** 32 - 0.5) * 0.02
    }
    gradients.push(g)
  }
  // a copy: the rounds average `gradients` in place, and the donor's cached checksums must stay true
  const served: TensorSet = new Map(gradients.map((g, i) => [`blocks.${i}.grad`, { dtype: 'F32', shape: [g.length], data: g.slice() }]))
  const node = await createPeerLibp2p({ swarmKey: new TextEncoder().encode(cfg.swarmKey) })
  const weights = await serveWeights(node, { snapshot: (stage, minIteration) => stage === 1 && minIteration <= 1 ? { iteration: 1, tensors: served } : undefined })
  const allReduce = await startAllReduce(node, { timeoutMs: 600_000 })
  const addrs = new Map<string, string[]>()

  process.on('message', (m: MemberCommand) => {
    void (async () => {
      try {
        if (m.type === 'peers') {
          for (const p of m.peers) {
            if (p.id === node.peerId.toString()) continue
            addrs.set(p.id, p.addrs)
            await node.peerStore.merge(peerIdFromString(p.id), { multiaddrs: p.addrs.map(a => multiaddr(a)) })
          }
          send({ type: 'ok' })
        } else if (m.type === 'round') {
          const cpu0 = process.cpuUsage()
          // in place: the same arrays every round (their values become the mean, and stay finite)
          const r = await allReduce.allReduce({ group: m.group, key: m.key, tensors: gradients, inPlace: true })
          const cpu = cpuMs(cpu0)
          let crc = 0
          for (const t of r.tensors) crc = tensorCrc(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), crc)
          send({ type: 'round', ms: r.ms, waitMs: r.waitMs, bytesSent: r.bytesSent, crc, cpuMs: cpu })
        } else if (m.type === 'cpu') {
          send({ type: 'cpu', cpuMs: cpuMs({ user: 0, system: 0 }) })
        } else if (m.type === 'fetch') {
          const cpu0 = process.cpuUsage()
          const t0 = performance.now()
          const got = await fetchWeights(node, { donors: [{ peer: multiaddr(addrs.get(m.from)?.[0] ?? '') }], stage: 1, timeoutMs: 600_000 })
          send({ type: 'fetched', ms: performance.now() - t0, bytes: got.bytes, cpuMs: cpuMs(cpu0) })
        }
      } catch (err) {
        send({ type: 'error', message: (err as Error).stack ?? (err as Error).message })
      }
    })()
  })
  process.on('SIGTERM', () => {
    void Promise.allSettled([allReduce.stop(), weights.stop()]).then(async () => { await node.stop() }).finally(() => process.exit(0))
  })
  send({ type: 'ready', id: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: Error) => {
    send({ type: 'error', message: err.stack ?? err.message })
    process.exit(1)
  })
}

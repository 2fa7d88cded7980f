/**
 * bench:transfer — how fast the weights protocol moves a stage between two processes, compared with
 * the least any secure transport must do (a raw loopback socket sealed with chacha20-poly1305 in
 * 64 KiB records, bench/transfer-raw.ts).
 *
 * The donor is a child process (bench/transfer-peer.ts) serving N MB (default 256) of float32
 * tensors as stage 0; this process fetches them with fetchWeights over libp2p (tcp + noise + yamux),
 * with and without a swarm key (pnet), each fetch fully verified (bounds, NaN/Inf, sha256 per tensor).
 * "cold" fetches get a new version each time, so the donor hashes every tensor before its manifest;
 * "warm" fetches repeat a version whose checksums the donor has cached. MB = 2^20 bytes. Each figure
 * is the median of RUNS runs (best in brackets). The last line is
 * `bench: transfer_ratio=<cold weights without swarm key / sealed raw>`.
 *
 *   npm run bench:transfer [-- MB]
 */
import '../model/polyfill.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { MAX_WEIGHTS_CHUNK_BYTES, decodeWeightsMessage, encodeWeightsMessage, firstNonFinite } from '../protocols/index.js'
import { createPeerLibp2p, generateSwarmKey, type PeerLibp2p } from '../node/transport/index.js'
import { fetchWeights } from '../node/weights/index.js'
import type { DonorConfig, DonorReply } from './transfer-peer.js'
import { measureSealedRawTransfer } from './transfer-raw.js'

const MB = 1024 * 1024
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const TENSOR_BYTES = 8 * MB
const DONOR = fileURLToPath(new URL('./transfer-peer.ts', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))

const children = new Set<ChildProcess>()
function killChildren (): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  children.clear()
}
process.on('exit', killChildren)
process.on('SIGINT', () => { killChildren(); process.exit(130) })
process.on('SIGTERM', () => { killChildren(); process.exit(143) })

interface Stats { median: number, best: number, all: number[] }
function stats (xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b)
  return { median: s[Math.floor(s.length / 2)], best: s[s.length - 1], all: xs }
}
const fmt = (s: Stats): string => `${s.median.toFixed(1)} MB/s (best ${s.best.toFixed(1)}; runs ${s.all.map(x => x.toFixed(0)).join(', ')})`

/** Starts a donor child and waits for its addresses. */
async function startDonor (cfg: Omit<DonorConfig, 'type'>, signal: AbortSignal): Promise<{ child: ChildProcess, addrs: string[] }> {
  const child = spawn(process.execPath, ['--import', 'tsx', DONOR], {
    cwd: ROOT,
    env: { ...process.env, SPOTPIPE_QUIET: '1' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  children.add(child)
  child.send({ type: 'start', ...cfg } satisfies DonorConfig)
  const [reply] = await Promise.race([
    once(child, 'message', { signal }) as Promise<[DonorReply]>,
    once(child, 'exit', { signal }).then(([code, sig]) => { throw new Error(`donor exited early (${String(sig ?? code)})`) })
  ])
  if (reply.type === 'error') throw new Error(`donor: ${reply.message}`)
  if (reply.type !== 'ready') throw new Error(`donor sent ${reply.type} before ready`)
  return { child, addrs: reply.addrs }
}

async function stopDonor (child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit')
    child.kill('SIGKILL')
    await exited
  }
  children.delete(child)
}

/** A donor child and a local node that can reach it (same swarm key, or none). */
interface Link { child: ChildProcess, node: PeerLibp2p, donor: Multiaddr }

async function link (totalBytes: number, swarmKey: Uint8Array | undefined, signal: AbortSignal): Promise<Link> {
  const keyText = swarmKey === undefined ? undefined : new TextDecoder().decode(swarmKey)
  const { child, addrs } = await startDonor({ totalBytes, tensorBytes: TENSOR_BYTES, swarmKey: keyText }, signal)
  try {
    const node = await createPeerLibp2p({ swarmKey })
    return { child, node, donor: multiaddr(addrs[0]) }
  } catch (err) {
    await stopDonor(child)
    throw err
  }
}

/** One verified fetch; MB/s. Stage 0 is a new version each time (cold), stage 1 a cached one (warm). */
async function fetchOnce (l: Link, mode: 'cold' | 'warm', totalBytes: number, signal: AbortSignal): Promise<number> {
  const t0 = performance.now()
  const got = await fetchWeights(l.node, { donors: [{ peer: l.donor }], stage: mode === 'cold' ? 0 : 1, signal })
  const s = (performance.now() - t0) / 1000
  if (got.bytes !== totalBytes || got.tensors.size !== totalBytes / TENSOR_BYTES) throw new Error(`fetched ${got.bytes} bytes, expected ${totalBytes}`)
  return totalBytes / MB / s
}

/** In-process costs of what the puller does per byte besides the network (single-threaded). */
function localCosts (totalBytes: number): Record<string, number> {
  const src = new Float32Array(totalBytes / 4)
  for (let i = 0; i < src.length; i++) src[i] = (i % 1000) * 1e-3
  const bytes = new Uint8Array(src.buffer)
  const time = (f: () => void): number => { const t0 = performance.now(); f(); return performance.now() - t0 }
  const best = (f: () => void): number => Math.min(time(f), time(f))
  const dst = new Uint8Array(totalBytes)
  const out: Record<string, number> = {}
  out.sha256 = best(() => {
    const h = createHash('sha256')
    for (let o = 0; o < totalBytes; o += MAX_WEIGHTS_CHUNK_BYTES) h.update(bytes.subarray(o, o + MAX_WEIGHTS_CHUNK_BYTES))
    h.digest()
  })
  out.copy = best(() => { for (let o = 0; o < totalBytes; o += MAX_WEIGHTS_CHUNK_BYTES) dst.set(bytes.subarray(o, o + MAX_WEIGHTS_CHUNK_BYTES), o) })
  out.finiteCheck = best(() => { for (let o = 0; o < totalBytes; o += MAX_WEIGHTS_CHUNK_BYTES) firstNonFinite(bytes.subarray(o, o + MAX_WEIGHTS_CHUNK_BYTES)) })
  out.encodeChunks = best(() => {
    for (let o = 0; o < totalBytes; o += MAX_WEIGHTS_CHUNK_BYTES) encodeWeightsMessage({ kind: 'chunk', index: 0, offset: o % (8 * MB), data: bytes.subarray(o, o + MAX_WEIGHTS_CHUNK_BYTES) })
  })
  const frame = encodeWeightsMessage({ kind: 'chunk', index: 0, offset: 0, data: bytes.subarray(0, MAX_WEIGHTS_CHUNK_BYTES) })
  out.decodeChunks = best(() => { for (let o = 0; o < totalBytes; o += MAX_WEIGHTS_CHUNK_BYTES) decodeWeightsMessage(frame) })
  return out
}

async function main (): Promise<void> {
  const mb = Number(process.argv[2] ?? 256)
  if (!(mb > 0) || (mb * MB) % TENSOR_BYTES !== 0) throw new Error(`usage: transfer.ts [MB, a multiple of ${TENSOR_BYTES / MB}], got ${process.argv[2]}`)
  const totalBytes = mb * MB
  console.log(`bench:transfer — ${mb} MB of float32 (${totalBytes / TENSOR_BYTES} tensors of ${TENSOR_BYTES / MB} MB), donor in a child process, 127.0.0.1`)
  console.log(`figures: median of ${RUNS} runs (best and every run in brackets), MB = 2^20 bytes\n`)

  const costs = localCosts(totalBytes)
  const rate = (ms: number): string => `${ms.toFixed(0)} ms = ${(mb / (ms / 1000)).toFixed(0)} MB/s`
  console.log(`in-process cost of ${mb} MB on one core:`)
  console.log(`  sha256 (1 MiB updates)      ${rate(costs.sha256)}`)
  console.log(`  copy into destination       ${rate(costs.copy)}`)
  console.log(`  NaN/Inf check (aligned)     ${rate(costs.finiteCheck)}`)
  console.log(`  encode chunk frames (donor) ${rate(costs.encodeChunks)}`)
  console.log(`  decode chunk frames         ${rate(costs.decodeChunks)}\n`)

  // Interleaved rounds, so that load from other processes on the machine hits every variant alike.
  const signal = AbortSignal.timeout(600_000)
  const swarmKey = generateSwarmKey()
  const links: Link[] = []
  const rates: Record<string, number[]> = { raw: [], cold: [], warm: [], pnetCold: [], pnetWarm: [] }
  try {
    links.push(await link(totalBytes, undefined, signal), await link(totalBytes, swarmKey, signal))
    const [plain, pnet] = links
    // warm-up: JIT, yamux window growth, and the donors' checksum caches for stage 1
    await fetchOnce(plain, 'warm', totalBytes, signal)
    await fetchOnce(pnet, 'warm', totalBytes, signal)
    for (let round = 0; round < RUNS; round++) {
      rates.raw.push(await measureSealedRawTransfer(totalBytes))
      rates.cold.push(await fetchOnce(plain, 'cold', totalBytes, signal))
      rates.warm.push(await fetchOnce(plain, 'warm', totalBytes, signal))
      rates.pnetCold.push(await fetchOnce(pnet, 'cold', totalBytes, signal))
      rates.pnetWarm.push(await fetchOnce(pnet, 'warm', totalBytes, signal))
    }
  } finally {
    await Promise.allSettled(links.map(async l => { await l.node.stop(); await stopDonor(l.child) }))
  }

  const raw = stats(rates.raw)
  const cold = stats(rates.cold)
  const warm = stats(rates.warm)
  const pnetCold = stats(rates.pnetCold)
  const pnetWarm = stats(rates.pnetWarm)
  console.log(`raw TCP + chacha20-poly1305, 64 KiB records, tags verified   ${fmt(raw)}`)
  console.log(`weights, no swarm key, cold (donor hashes before manifest)   ${fmt(cold)}`)
  console.log(`weights, no swarm key, warm (donor's checksums cached)       ${fmt(warm)}`)
  console.log(`weights, swarm key (pnet), cold                              ${fmt(pnetCold)}`)
  console.log(`weights, swarm key (pnet), warm                              ${fmt(pnetWarm)}`)
  console.log('')
  const ms = (rate: number): string => `${(mb / rate * 1000).toFixed(0)} ms`
  console.log(`one ${mb} MB fetch (median): cold ${ms(cold.median)}, warm ${ms(warm.median)}; sha256 of ${mb} MB alone ${costs.sha256.toFixed(0)} ms,`)
  console.log('  paid twice per cold fetch: by the donor before its manifest (cold - warm), and by the puller, overlapped with the transfer')
  console.log(`ratios to sealed raw (medians): cold ${(cold.median / raw.median).toFixed(3)}, warm ${(warm.median / raw.median).toFixed(3)}, pnet cold ${(pnetCold.median / raw.median).toFixed(3)}, pnet warm ${(pnetWarm.median / raw.median).toFixed(3)}`)
  console.log(`bench: transfer_ratio=${(cold.median / raw.median).toFixed(3)}`)
}

main().then(() => { killChildren(); process.exit(0) }, (err: Error) => {
  killChildren()
  console.error(err.stack ?? err.message)
  process.exit(1)
})

/**
 * bench:transfer — how fast the weights protocol moves a stage between two processes, compared with
 * the least any secure transport must do (a raw loopback socket sealed with chacha20-poly1305 in
 * 64 KiB records, bench/transfer-raw.ts).
 *
 * The donor is a child process (bench/transfer-peer.ts) serving N MB (default 256) of float32
 * tensors as stage 0; this process fetches them with fetchWeights over libp2p (tcp + noise + yamux),
 * in an open cluster and in a private one (a swarm key: the cluster secret, mixed into the noise
 * handshake), each fetch fully verified (bounds, NaN/Inf, CRC-32 per tensor).
 * "cold" fetches get a new iteration each time, so the donor sums every tensor before its manifest;
 * "warm" fetches repeat an iteration whose checksums the donor has cached. Bare 1 MiB frames over the
 * same libp2p connection give the ceiling libp2p itself sets. The variants run in interleaved
 * rounds (BENCH_RUNS, default 5); MB/s figures are medians (best and every run in brackets). Each
 * row also gives the CPU time the puller (this process) and the donor spent, which load from other
 * processes distorts much less than wall time, and the split below is computed from it.
 * MB = 2^20 bytes. The last lines are `bench: transfer_ratio=<cold weights, open / sealed raw>` and
 * `bench: private_transfer_ratio=<private / open>`: the median over rounds of each round's private
 * MB/s over its open MB/s, cold and warm fetches together (within a round the two alternate, in
 * ABBA order, so a load change on the machine hits both alike).
 *
 *   npm run bench:transfer [-- MB]
 */
import '../common/polyfill.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { MAX_WEIGHTS_CHUNK_BYTES, firstNonFinite } from '../protocols/index.js'
import { createPeerLibp2p, generateSwarmKey, openStream, readFrames, type PeerLibp2p } from '../net/index.js'
import { fetchWeights, tensorCrc } from '../net/index.js'
import { FRAMES_PROTOCOL, type DonorConfig, type DonorReply } from './transfer-peer.js'
import { measureSealedRawTransfer } from './transfer-raw.js'
import { children, killChildren } from './children.js'

const MB = 1024 * 1024
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const TENSOR_BYTES = 8 * MB
/** USER_HZ, the unit of CPU times in /proc/<pid>/stat (100 on Linux). */
const CLOCK_TICKS = 100
const DONOR = fileURLToPath(new URL('./transfer-peer.ts', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))


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

/** CPU time (user + system) a process has used, in ms; undefined where /proc is not available. */
function processCpuMs (pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 1000 / CLOCK_TICKS
  } catch {
    return undefined
  }
}

/** One measured transfer: throughput, and CPU used by this process (the puller) and the donor. */
interface Sample { mbps: number, pullerCpuMs: number, donorCpuMs?: number }

async function measure (l: Link, totalBytes: number, work: () => Promise<void>): Promise<Sample> {
  const donor0 = processCpuMs(l.child.pid as number)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await work()
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const donor1 = processCpuMs(l.child.pid as number)
  return {
    mbps: totalBytes / MB / seconds,
    pullerCpuMs: (cpu.user + cpu.system) / 1000,
    donorCpuMs: donor0 === undefined || donor1 === undefined ? undefined : donor1 - donor0
  }
}

/** One verified fetch. Stage 0 is a new iteration each time (cold), stage 1 a cached one (warm). */
async function fetchOnce (l: Link, mode: 'cold' | 'warm', totalBytes: number, signal: AbortSignal): Promise<Sample> {
  return await measure(l, totalBytes, async () => {
    const got = await fetchWeights(l.node, { donors: [{ peer: l.donor }], stage: mode === 'cold' ? 0 : 1, signal })
    if (got.bytes !== totalBytes || got.tensors.size !== totalBytes / TENSOR_BYTES) throw new Error(`fetched ${got.bytes} bytes, expected ${totalBytes}`)
  })
}

/** Bare 1 MiB frames from the donor, read and dropped: libp2p's own ceiling. */
async function framesOnce (l: Link, totalBytes: number, signal: AbortSignal): Promise<Sample> {
  return await measure(l, totalBytes, async () => {
    const stream = await openStream(l.node, l.donor, FRAMES_PROTOCOL, { signal })
    let n = 0
    for await (const f of readFrames(stream, { maxFrameBytes: 4 * MB, signal })) n += f.byteLength
    if (n !== totalBytes) throw new Error(`read ${n} bytes of bare frames, expected ${totalBytes}`)
  })
}

/** In-process costs of the per-byte checks, on one core (best of two). */
function localCosts (totalBytes: number): Record<'crc32' | 'sha256' | 'finite' | 'copy', number> {
  const src = new Float32Array(totalBytes / 4)
  for (let i = 0; i < src.length; i++) src[i] = (i % 1000) * 1e-3
  const bytes = new Uint8Array(src.buffer)
  const time = (f: () => void): number => { const t0 = performance.now(); f(); return performance.now() - t0 }
  const best = (f: () => void): number => Math.min(time(f), time(f))
  const chunks = (f: (o: number) => void): void => { for (let o = 0; o < totalBytes; o += MAX_WEIGHTS_CHUNK_BYTES) f(o) }
  const dst = new Uint8Array(totalBytes)
  return {
    crc32: best(() => { let c = 0; chunks(o => { c = tensorCrc(bytes.subarray(o, o + MAX_WEIGHTS_CHUNK_BYTES), c) }) }),
    sha256: best(() => { const h = createHash('sha256'); chunks(o => h.update(bytes.subarray(o, o + MAX_WEIGHTS_CHUNK_BYTES))); h.digest() }),
    finite: best(() => { chunks(o => firstNonFinite(bytes.subarray(o, o + MAX_WEIGHTS_CHUNK_BYTES))) }),
    copy: best(() => { chunks(o => dst.set(bytes.subarray(o, o + MAX_WEIGHTS_CHUNK_BYTES), o)) })
  }
}

interface Row { label: string, samples: Sample[] }

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function main (): Promise<void> {
  const mb = Number(process.argv[2] ?? 256)
  if (!(mb > 0) || (mb * MB) % TENSOR_BYTES !== 0) throw new Error(`usage: transfer.ts [MB, a multiple of ${TENSOR_BYTES / MB}], got ${process.argv[2]}`)
  const totalBytes = mb * MB
  console.log(`bench:transfer — ${mb} MB of float32 (${totalBytes / TENSOR_BYTES} tensors of ${TENSOR_BYTES / MB} MB), donor in a child process, 127.0.0.1`)
  console.log(`MB/s: median of ${RUNS} interleaved rounds (best, then every run); CPU: median ms per ${mb} MB; MB = 2^20 bytes`)
  console.log('')

  const costs = localCosts(totalBytes)
  const rate = (ms: number): string => `${ms.toFixed(0).padStart(4)} ms  (${(mb / (ms / 1000)).toFixed(0)} MB/s)`
  console.log(`in-process, one core, ${mb} MB:`)
  console.log(`  CRC-32 (the manifest checksum) ${rate(costs.crc32)}`)
  console.log(`  sha256 (for comparison)       ${rate(costs.sha256)}`)
  console.log(`  NaN/Inf scan                  ${rate(costs.finite)}`)
  console.log(`  copy into touched memory      ${rate(costs.copy)}  (new tensors add page faults on top)\n`)

  // Interleaved rounds, so that load from other processes on the machine hits every variant alike.
  const signal = AbortSignal.timeout(900_000)
  const swarmKey = generateSwarmKey()
  const links: Link[] = []
  const raw: number[] = []
  const rows: Record<'frames' | 'cold' | 'warm' | 'privateCold' | 'privateWarm', Row> = {
    frames: { label: 'libp2p, bare 1 MiB frames, no protocol work', samples: [] },
    cold: { label: 'weights, open cluster, cold (donor sums)', samples: [] },
    warm: { label: 'weights, open cluster, warm (sums cached)', samples: [] },
    privateCold: { label: 'weights, private cluster (swarm key), cold', samples: [] },
    privateWarm: { label: 'weights, private cluster (swarm key), warm', samples: [] }
  }
  // each round's private/open throughput ratio, cold and warm
  const privateRatios: number[] = []
  try {
    links.push(await link(totalBytes, undefined, signal), await link(totalBytes, swarmKey, signal))
    const [open, closed] = links
    // warm-up: JIT, yamux window growth, and the donors' checksum caches for stage 1
    await fetchOnce(open, 'warm', totalBytes, signal)
    await fetchOnce(closed, 'warm', totalBytes, signal)
    await framesOnce(open, totalBytes, signal)
    for (let round = 0; round < RUNS; round++) {
      raw.push(await measureSealedRawTransfer(totalBytes))
      rows.frames.samples.push(await framesOnce(open, totalBytes, signal))
      for (const mode of ['cold', 'warm'] as const) {
        // ABBA across the two modes: open, private, then private, open
        const pair = mode === 'cold' ? [open, closed] : [closed, open]
        const got = new Map<Link, Sample>()
        for (const l of pair) got.set(l, await fetchOnce(l, mode, totalBytes, signal))
        const o = got.get(open) as Sample
        const p = got.get(closed) as Sample
        rows[mode].samples.push(o)
        rows[mode === 'cold' ? 'privateCold' : 'privateWarm'].samples.push(p)
        privateRatios.push(p.mbps / o.mbps)
      }
    }
  } finally {
    await Promise.allSettled(links.map(async l => { await l.node.stop(); await stopDonor(l.child) }))
  }

  const rawStats = stats(raw)
  const mbps = (r: Row): number => median(r.samples.map(s => s.mbps))
  const cpu = (r: Row, side: 'pullerCpuMs' | 'donorCpuMs'): string => {
    const xs = r.samples.map(s => s[side]).filter((x): x is number => x !== undefined)
    return xs.length === 0 ? '   n/a' : median(xs).toFixed(0).padStart(6)
  }
  console.log(`${'raw TCP + chacha20-poly1305, 64 KiB records'.padEnd(46)} ${fmt(rawStats)}`)
  for (const r of Object.values(rows)) {
    const s = stats(r.samples.map(x => x.mbps))
    console.log(`${r.label.padEnd(46)} ${fmt(s)}  ratio ${(s.median / rawStats.median).toFixed(3)}  CPU puller ${cpu(r, 'pullerCpuMs')} donor ${cpu(r, 'donorCpuMs')}`)
  }

  // where the time goes, from CPU time (which load from other processes distorts less than wall time)
  const pullerCpu = (r: Row): number => median(r.samples.map(s => s.pullerCpuMs))
  const donorCpu = (r: Row): number | undefined => {
    const xs = r.samples.map(s => s.donorCpuMs).filter((x): x is number => x !== undefined)
    return xs.length === 0 ? undefined : median(xs)
  }
  const framesCpu = pullerCpu(rows.frames)
  const warmCpu = pullerCpu(rows.warm)
  const checks = costs.crc32 + costs.finite
  const coldDonor = donorCpu(rows.cold)
  const warmDonor = donorCpu(rows.warm)
  console.log('')
  console.log(`split (medians): the puller's one thread is the bottleneck; per ${mb} MB it spends`)
  console.log(`  ${framesCpu.toFixed(0).padStart(5)} ms CPU in libp2p (tcp + noise + yamux + framing: bare frames)`)
  console.log(`  ${(warmCpu - framesCpu).toFixed(0).padStart(5)} ms CPU more in a verified fetch: CRC-32 ~${costs.crc32.toFixed(0)} + NaN/Inf ~${costs.finite.toFixed(0)} ms, the rest writing new tensors (the copy, and page faults taken by the prefault thread, whose CPU counts here too)`)
  if (coldDonor !== undefined && warmDonor !== undefined) {
    console.log(`  the donor spends ${warmDonor.toFixed(0)} ms CPU per warm fetch, ${coldDonor.toFixed(0)} ms per cold one: summing ${(coldDonor - warmDonor).toFixed(0)} ms before its manifest, not overlapped`)
  }
  console.log(`  verification (CRC-32 + NaN/Inf, both ends) ~${(checks + costs.crc32).toFixed(0)} ms of CPU per cold ${mb} MB fetch`)
  console.log(`  private/open, each round (cold, warm): ${privateRatios.map(r => r.toFixed(2)).join(', ')}`)
  console.log(`bench: transfer_ratio=${(mbps(rows.cold) / rawStats.median).toFixed(3)}`)
  console.log(`bench: private_transfer_ratio=${median(privateRatios).toFixed(3)}`)
}

main().then(() => { killChildren(); process.exit(0) }, (err: Error) => {
  killChildren()
  console.error(err.stack ?? err.message)
  process.exit(1)
})

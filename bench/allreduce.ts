/**
 * bench:allreduce — the stage replicas' gradient all-reduce (net/allreduce: a ring, reduce-scatter
 * then all-gather) among 2, 3 and 4 member processes, against the weights protocol's point-to-point
 * throughput between two of the same processes, measured in the same run.
 *
 * Each member (bench/allreduce-member.ts) is its own process with its own libp2p node on 127.0.0.1,
 * in a private cluster (a swarm key, the default deployment), holding N MB (default 100) of float32
 * gradients in 4 MiB tensors. The variants run in interleaved rounds (BENCH_RUNS, default 5):
 * point to point (member 1 pulls member 0's tensors over the weights protocol, checksums cached on
 * the donor: its fastest), then a round among 2, 3 and 4 members. A round's time is from this
 * process's "go" to the last member's result; every member's result must have the same bytes
 * (CRC-32 over all of them), or the bench fails.
 *
 *   algorithm bandwidth  algbw = bytes / time
 *   bus bandwidth        busbw = bytes x 2(R-1)/R / time   (what each member sent, per second)
 *
 * The bus bandwidth of a bandwidth-optimal all-reduce approaches the point-to-point throughput of
 * one link when every member has its own machine. Here the members share this machine's cores
 * (printed): every member encrypts and decrypts its 2(R-1)/R share at the same time, so past the
 * core count the figure measures CPU sharing as much as the algorithm. Each row also gives the
 * members' CPU time, which says what the algorithm costs per byte regardless of sharing.
 * MB = 2^20 bytes. Ends with `bench: allreduce_efficiency=<busbw at 4 members / point-to-point>`.
 *
 *   npm run bench:allreduce [-- MB]
 */
import '../common/polyfill.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { generateSwarmKey } from '../net/index.js'
import type { MemberCommand, MemberReply } from './allreduce-member.js'
import { children, killChildren } from './children.js'

const MB = 1024 * 1024
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const TENSOR_BYTES = 4 * MB
const SIZES = [2, 3, 4] as const
/** For experiments: BENCH_SIZES=4 runs only some group sizes (the efficiency line needs 4), BENCH_P2P=0 skips point to point, BENCH_MEMBER_ARGS='--cpu-prof' passes node flags to the members. */
const RUN_SIZES: number[] = (process.env.BENCH_SIZES ?? SIZES.join(',')).split(',').map(Number)
const RUN_P2P = process.env.BENCH_P2P !== '0'
const MEMBER_ARGS = (process.env.BENCH_MEMBER_ARGS ?? '').split(' ').filter(a => a !== '')
const MEMBER = fileURLToPath(new URL('./allreduce-member.ts', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))


/** A member process and the next reply it sends. */
class Member {
  readonly child: ChildProcess
  id = ''
  addrs: string[] = []
  private readonly replies: MemberReply[] = []
  private waiting?: (m: MemberReply) => void
  private exited?: Error

  constructor () {
    this.child = spawn(process.execPath, [...MEMBER_ARGS, '--import', 'tsx', MEMBER], { cwd: ROOT, env: { ...process.env, SPOTPIPE_QUIET: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.add(this.child)
    this.child.on('message', (m: MemberReply) => {
      if (this.waiting != null) { const w = this.waiting; this.waiting = undefined; w(m) } else this.replies.push(m)
    })
    this.child.once('exit', (code, sig) => {
      this.exited = new Error(`member ${this.id.slice(-8) || '(starting)'} exited (${String(sig ?? code)})`)
      children.delete(this.child)
      if (this.waiting != null) { const w = this.waiting; this.waiting = undefined; w({ type: 'error', message: this.exited.message }) }
    })
  }

  send (m: MemberCommand): void { this.child.send(m) }

  /** The next reply; a member's error (or exit) fails the bench with its message. */
  async reply<T extends MemberReply['type']> (type: T): Promise<Extract<MemberReply, { type: T }>> {
    const m = this.replies.shift() ?? (this.exited != null
      ? { type: 'error' as const, message: this.exited.message }
      : await new Promise<MemberReply>(resolve => { this.waiting = resolve }))
    if (m.type === 'error') throw new Error(`member ${this.id.slice(-8)}: ${m.message}`)
    if (m.type !== type) throw new Error(`member ${this.id.slice(-8)} sent ${m.type}, expected ${type}`)
    return m as Extract<MemberReply, { type: T }>
  }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }
const runs = (xs: number[]): string => xs.map(x => x.toFixed(0)).join(', ')

async function main (): Promise<void> {
  const mb = Number(process.argv[2] ?? 100)
  if (!(mb > 0) || (mb * MB) % TENSOR_BYTES !== 0) throw new Error(`usage: allreduce.ts [MB, a multiple of ${TENSOR_BYTES / MB}], got ${process.argv[2]}`)
  const totalBytes = mb * MB
  const cores = cpus().length
  console.log(`bench:allreduce — ${mb} MB of float32 gradients (${totalBytes / TENSOR_BYTES} tensors of ${TENSOR_BYTES / MB} MB) per member, one process per member, 127.0.0.1, private cluster`)
  console.log(`this machine: ${cores} cores for up to ${SIZES.at(-1)} members; median of ${RUNS} interleaved rounds (then every run); MB = 2^20 bytes`)
  console.log('')

  const swarmKey = new TextDecoder().decode(generateSwarmKey())
  const members = Array.from({ length: SIZES.at(-1) as number }, () => new Member())
  members.forEach((m, rank) => { m.send({ type: 'start', rank, totalBytes, tensorBytes: TENSOR_BYTES, swarmKey }) })
  for (const m of members) {
    const r = await m.reply('ready')
    m.id = r.id
    m.addrs = r.addrs
  }
  const peers = members.map(m => ({ id: m.id, addrs: m.addrs }))
  for (const m of members) m.send({ type: 'peers', peers })
  for (const m of members) await m.reply('ok')

  let roundNo = 0
  /** One all-reduce among the first `n` members: wall time, and the members' CPU. */
  const round = async (n: number): Promise<{ ms: number, cpuMs: number[], waitMs: number[], busy: number }> => {
    const group = members.slice(0, n)
    const key = `bench/${n}/${roundNo++}`
    const t0 = performance.now()
    for (const m of group) m.send({ type: 'round', group: group.map(g => g.id), key })
    const got = await Promise.all(group.map(async m => await m.reply('round')))
    const ms = performance.now() - t0
    if (new Set(got.map(g => g.crc)).size !== 1) throw new Error(`round ${key}: the members' results differ (CRC-32 ${got.map(g => g.crc.toString(16)).join(', ')})`)
    const expectSent = totalBytes * 2 * (n - 1) / n // 2(R-1) chunks of about 1/R each
    for (const g of got) if (Math.abs(g.bytesSent - expectSent) > 16 * n) throw new Error(`round ${key}: a member sent ${g.bytesSent} bytes, expected about ${expectSent}`)
    return { ms, cpuMs: got.map(g => g.cpuMs), waitMs: got.map(g => g.waitMs), busy: got.reduce((sum, g) => sum + g.cpuMs, 0) / (ms * Math.min(n, cores)) }
  }
  /** A member's CPU time so far (user + system), in ms. */
  const cpuOf = async (m: Member): Promise<number> => { m.send({ type: 'cpu' }); return (await m.reply('cpu')).cpuMs }
  const pointToPoint = async (): Promise<{ ms: number, cpuMs: number, donorCpuMs: number }> => {
    const donor0 = await cpuOf(members[0])
    members[1].send({ type: 'fetch', from: members[0].id })
    const r = await members[1].reply('fetched')
    const donorCpuMs = await cpuOf(members[0]) - donor0
    if (r.bytes !== totalBytes) throw new Error(`point to point: fetched ${r.bytes} bytes, expected ${totalBytes}`)
    return { ms: r.ms, cpuMs: r.cpuMs, donorCpuMs }
  }

  // warm-up: JIT, connections, yamux windows, the donor's checksum cache
  if (RUN_P2P) await pointToPoint()
  for (const n of RUN_SIZES) await round(n)

  const p2p: number[] = []
  const p2pCpu: number[] = []
  const p2pDonorCpu: number[] = []
  const rows = new Map<number, { ms: number[], cpu: number[], wait: number[], busy: number[] }>(RUN_SIZES.map(n => [n, { ms: [], cpu: [], wait: [], busy: [] }]))
  for (let r = 0; r < RUNS; r++) {
    if (RUN_P2P) {
      const p = await pointToPoint()
      p2p.push(totalBytes / MB / (p.ms / 1000))
      p2pCpu.push(p.cpuMs)
      p2pDonorCpu.push(p.donorCpuMs)
    }
    for (const n of RUN_SIZES) {
      const x = await round(n)
      const row = rows.get(n) as { ms: number[], cpu: number[], wait: number[], busy: number[] }
      row.ms.push(x.ms)
      row.busy.push(x.busy)
      row.cpu.push(median(x.cpuMs))
      row.wait.push(median(x.waitMs))
    }
  }
  await Promise.allSettled(members.map(async m => { const e = once(m.child, 'exit'); m.child.kill('SIGTERM'); await Promise.race([e, new Promise(resolve => setTimeout(resolve, 5000))]) }))
  killChildren()

  const p2pMbps = RUN_P2P ? median(p2p) : NaN
  if (RUN_P2P) console.log(`weights protocol, point to point (member 1 pulls member 0): ${p2pMbps.toFixed(1)} MB/s (runs ${runs(p2p)}); puller CPU ${median(p2pCpu).toFixed(0)} ms, donor CPU ${median(p2pDonorCpu).toFixed(0)} ms (${(100 * (median(p2pCpu) + median(p2pDonorCpu)) / (totalBytes / MB / p2pMbps * 1000 * Math.min(2, cores))).toFixed(0)}% of ${Math.min(2, cores)} cores)`)
  let bus4 = 0
  let cpuBound = ''
  for (const n of RUN_SIZES) {
    const row = rows.get(n) as { ms: number[], cpu: number[], wait: number[], busy: number[] }
    const ms = median(row.ms)
    const alg = totalBytes / MB / (ms / 1000)
    const bus = alg * 2 * (n - 1) / n
    if (n === 4) bus4 = bus
    if (n > cores && RUN_P2P) {
      // n processes share the cores: even with every core busy all the time, a round takes at least their CPU time over the cores
      const floorMs = n * median(row.cpu) / cores
      cpuBound = `with ${n} members on ${cores} cores, the members' CPU time alone (${median(row.cpu).toFixed(0)} ms each) needs >= ${floorMs.toFixed(0)} ms of wall time per round: busbw <= ${(totalBytes / MB / (floorMs / 1000) * 2 * (n - 1) / n).toFixed(1)} MB/s, ${(totalBytes / MB / (floorMs / 1000) * 2 * (n - 1) / n / p2pMbps).toFixed(2)} of point to point`
    }
    console.log(`all-reduce, ${n} members: ${ms.toFixed(0)} ms (runs ${runs(row.ms)}), algbw ${alg.toFixed(1)} MB/s, busbw ${bus.toFixed(1)} MB/s (${(bus / p2pMbps).toFixed(2)} of point to point); CPU per member ${median(row.cpu).toFixed(0)} ms (the members kept ${(100 * median(row.busy)).toFixed(0)}% of ${Math.min(n, cores)} cores busy), waiting for the predecessor ${median(row.wait).toFixed(0)} ms; bit-identical on every member`)
  }
  if (cpuBound !== '') console.log(cpuBound)
  console.log('')
  console.log(`bench: allreduce_efficiency=${(bus4 / p2pMbps).toFixed(3)}`)
}

main().then(() => { killChildren(); process.exit(0) }, (err: Error) => {
  killChildren()
  console.error(err.stack ?? err.message)
  process.exit(1)
})

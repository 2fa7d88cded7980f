/**
 * bench:checkpoint — iteration time with a sparse checkpoint every iteration against none, in the
 * same run (same peers, alternating phases to spread the machine's noise). Checkpoints snapshot at
 * the commit and are pulled and written in the background. Ends with
 * `bench: checkpoint_overhead=<(with - without) / without>`.
 */
import '../common/polyfill.js'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Coordinator } from '../coordinator/index.js'
import { DEFAULT_MODEL, DEFAULT_TRAIN } from '../model/config.js'
import { benchSecret, startPeer, stopCluster } from './harness.js'

const ITERS = Number(process.env.BENCH_ITERS ?? 10)
/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ: 100 on Linux). */
const USER_HZ = 100

/** CPU time (user + system) a process has used so far, in ms; undefined where /proc is missing. */
function cpuMs (pid: number | undefined): number | undefined {
  if (pid == null) return undefined
  try {
    // fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15
    const after = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(after[11]) + Number(after[12])) * 1000 / USER_HZ
  } catch {
    return undefined
  }
}
/** Paired rounds; the figure is the median round's overhead. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)

interface PhaseResult {
  /** Median iteration time. */
  meanMs: number
  checkpoints: number
  /** CPU per timed iteration of this process (the coordinator) and of all peers together, ms; undefined without /proc. */
  coordCpuMs: number
  peersCpuMs?: number
}

/** Median iteration time of one phase, the checkpoints it left on disk, and the CPU it took. */
async function phase (checkpointEvery: number, dir: string): Promise<PhaseResult> {
  // a new state directory every phase: one left by an earlier phase would restore that run
  const stateDir = await mkdtemp(join(dir, `every${checkpointEvery}-`))
  const secret = await benchSecret()
  const coord = new Coordinator({ clusterId: `ckb${checkpointEvery}`, stateDir, checkpointEvery, swarmKey: secret.swarmKey })
  await coord.start()
  try {
    const peers = await Promise.all(Array.from({ length: DEFAULT_TRAIN.stages }, async () => await startPeer(coord.addrs[0], coord.init.clusterId, secret.access)))
    await coord.assignInitial({ timeoutMs: 120_000 })
    for (let i = 0; i < 2; i++) await coord.runIteration() // warm-up
    const peersCpu = (): number | undefined => peers.reduce<number | undefined>((sum, p) => { const c = cpuMs(p.child.pid); return sum === undefined || c === undefined ? undefined : sum + c }, 0)
    const peers0 = peersCpu()
    const coord0 = process.cpuUsage()
    const times: number[] = []
    for (let i = 0; i < ITERS; i++) {
      const t0 = performance.now()
      await coord.runIteration()
      times.push(performance.now() - t0)
    }
    const coordUsed = process.cpuUsage(coord0)
    const peers1 = peersCpu()
    // The median resists the odd iteration that a background job on this shared machine slows down.
    const meanMs = times.sort((x, y) => x - y)[Math.floor(times.length / 2)]
    await coord.flushCheckpoints()
    return {
      meanMs,
      checkpoints: coord.store?.list().length ?? 0,
      coordCpuMs: (coordUsed.user + coordUsed.system) / 1000 / ITERS,
      peersCpuMs: peers0 !== undefined && peers1 !== undefined ? (peers1 - peers0) / ITERS : undefined
    }
  } finally {
    await stopCluster(coord)
  }
}

const dir = await mkdtemp(join(tmpdir(), 'spotpipe-ckpt-bench-'))
try {
  console.log(`demo model (d=${DEFAULT_MODEL.dModel}, ${DEFAULT_MODEL.nBlocks} blocks, ${DEFAULT_TRAIN.stages} stages), ${ITERS} timed iterations per phase, ${ROUNDS} paired rounds`)
  const without: number[] = []
  const withCk: number[] = []
  const extraCoord: number[] = []
  const extraPeers: number[] = []
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which phase goes first, so drift in the machine's load does not favour one.
    const first = round % 2 === 0 ? 0 : 1
    const r1 = await phase(first, dir)
    const r2 = await phase(1 - first, dir)
    const [a, b] = first === 0 ? [r1, r2] : [r2, r1]
    without.push(a.meanMs)
    withCk.push(b.meanMs)
    extraCoord.push(b.coordCpuMs - a.coordCpuMs)
    if (a.peersCpuMs !== undefined && b.peersCpuMs !== undefined) extraPeers.push(b.peersCpuMs - a.peersCpuMs)
    console.log(`round ${round + 1}: no checkpoints ${a.meanMs.toFixed(0)} ms/iteration (median); a checkpoint every iteration ${b.meanMs.toFixed(0)} ms/iteration (${b.checkpoints} kept on disk); overhead ${(b.meanMs / a.meanMs - 1).toFixed(3)}`)
  }
  const overheads = without.map((w, i) => withCk[i] / w - 1).sort((x, y) => x - y)
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]
  // Where the time goes: the machine's cores are shared by all five processes, so checkpoint CPU
  // anywhere lengthens iterations.
  console.log(`CPU a checkpoint adds per iteration (median of rounds): coordinator ${median(extraCoord).toFixed(0)} ms` +
    (extraPeers.length > 0 ? `, the ${DEFAULT_TRAIN.stages} peers together ${median(extraPeers).toFixed(0)} ms` : ' (peers: no /proc here)'))
  console.log(`bench: checkpoint_overhead=${overheads[Math.floor(overheads.length / 2)].toFixed(3)}`)
} finally {
  await rm(dir, { recursive: true, force: true })
}
process.exit(0)

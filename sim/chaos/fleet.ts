/**
 * The chaos suite's fleet: a `spotpipe coordinator` and `spotpipe peer` processes, each started
 * with an identity file (so a restart keeps its peer id) and an `--events` file, their stdout and
 * stderr read line by line, and every one recorded (ProcessRecord) from start to exit. The fleet
 * only starts, signals and restarts processes; what to do when (the faults, the spot fleet's
 * top-ups) is the runner's.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { spotpipeArgs, PEER_READY } from '../peer-process.js'
import { ChaosFleetError } from './errors.js'
import type { ProcessRecord } from './history.js'

/** What the coordinator prints first: `coordinator <multiaddr>`. */
export const COORDINATOR_READY = /^coordinator (\S+\/p2p\/(\S+))/

const TAIL_LINES = 60
/** The repository: children run from it, so `--import tsx` resolves. */
const ROOT_DIR = fileURLToPath(new URL('../..', import.meta.url))

export interface FleetOptions {
  /** Working directory: identities, events files, the coordinator's state dir. */
  dir: string
  clusterId: string
  stages: number
  checkpointEvery: number
  /** Model and training flags for the coordinator (the assignment carries them to the peers). */
  modelArgs: string[]
  /** More coordinator flags (--strategy, --heartbeat-timeout, ...). */
  coordinatorArgs?: string[]
  /** Private cluster: every process gets `--swarm-key FILE`. */
  swarmKeyFile?: string
}

/** One running (or finished) process of the fleet. */
export class FleetProcess {
  readonly record: ProcessRecord
  readonly child: ChildProcess
  /** Resolves once the process printed its ready line; rejects if it exits first. */
  readonly ready: Promise<void>
  readonly exited: Promise<void>
  /** Held by SIGSTOP right now. */
  stopped = false

  constructor (record: ProcessRecord, child: ChildProcess, readyLine: RegExp, onLine: (p: FleetProcess, stream: 'stdout' | 'stderr', line: string) => void) {
    this.record = record
    this.child = child
    record.pid = child.pid
    let markReady: () => void = () => {}
    let failReady: (e: Error) => void = () => {}
    this.ready = new Promise<void>((resolve, reject) => { markReady = resolve; failReady = reject })
    this.ready.catch(() => {}) // a process that never gets ready is reported through its record
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const m = readyLine.exec(line)
      if (m != null && record.readyAt == null) {
        record.readyAt = Date.now()
        record.addr = m[1]
        record.peerId = m[2]
        markReady()
      }
      onLine(this, 'stdout', line)
    })
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      record.stderrTail.push(line)
      if (record.stderrTail.length > TAIL_LINES) record.stderrTail.shift()
      onLine(this, 'stderr', line)
    })
    this.exited = new Promise<void>(resolve => {
      child.once('exit', (code, signal) => {
        record.exitAt = Date.now()
        record.exitCode = code
        record.exitSignal = signal
        this.stopped = false
        failReady(new ChaosFleetError(`${record.name} exited (${code ?? signal ?? '?'}) before it was ready: ${record.stderrTail.slice(-3).join(' | ')}`))
        resolve()
      })
    })
  }

  get alive (): boolean { return this.record.exitAt == null }
  get isReady (): boolean { return this.record.readyAt != null && this.alive }
}

export class Fleet extends EventEmitter {
  readonly opts: FleetOptions
  readonly processes: FleetProcess[] = []
  coordinator?: FleetProcess
  /** The coordinator's address with its peer id; fixed after the first start (a restart listens on the same port). */
  coordinatorAddr?: string
  private listen = '/ip4/127.0.0.1/tcp/0'
  private peerCount = 0
  private readonly starts = new Map<string, number>()
  shuttingDown = false

  constructor (opts: FleetOptions) {
    super()
    this.opts = opts
  }

  get stateDir (): string { return join(this.opts.dir, 'state') }
  get coordinatorEventsFile (): string { return join(this.opts.dir, 'coordinator.events.jsonl') }
  get peers (): FleetProcess[] { return this.processes.filter(p => p.record.role === 'peer') }
  /** The live process with this peer id (the newest, after a restart under the same identity). */
  byPeerId (peerId: string): FleetProcess | undefined {
    return [...this.peers].reverse().find(p => p.alive && p.record.peerId === peerId)
  }

  private swarmArgs (): string[] { return this.opts.swarmKeyFile != null ? ['--swarm-key', this.opts.swarmKeyFile] : [] }

  private spawnProc (name: string, role: 'coordinator' | 'peer', identity: string, args: string[], readyLine: RegExp, eventsFile: string, env: Record<string, string> = {}): FleetProcess {
    const n = (this.starts.get(name) ?? 0) + 1
    this.starts.set(name, n)
    const child = spawn(process.execPath, [...spotpipeArgs(), ...args], {
      cwd: ROOT_DIR,
      // info logs on stderr: the runner reads detection and rebuild lines from them
      env: { ...process.env, SPOTPIPE_QUIET: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const record: ProcessRecord = { name: n === 1 ? name : `${name}#${n}`, role, identity, startedAt: Date.now(), eventsFile, stderrTail: [], ...(Object.keys(env).length > 0 ? { env } : {}) }
    // every line also goes to <dir>/<name>.log, timestamped, for reading a run afterwards
    const logFile = createWriteStream(join(this.opts.dir, `${record.name}.log`), { flags: 'a' })
    logFile.on('error', () => {}) // the log is a convenience; the record keeps the stderr tail
    const p = new FleetProcess(record, child, readyLine, (proc, stream, line) => {
      logFile.write(`${new Date().toISOString()} ${stream} ${line}\n`)
      this.emit('line', proc, stream, line)
    })
    this.processes.push(p)
    void p.exited.then(() => {
      logFile.end(`${new Date().toISOString()} exit ${record.exitCode ?? record.exitSignal ?? '?'}\n`)
      this.emit('exit', p)
    })
    return p
  }

  /** Starts the coordinator (again: same state dir, identity, address and events file). */
  startCoordinator (): FleetProcess {
    const o = this.opts
    const args = [
      'coordinator', '--cluster', o.clusterId, '--stages', String(o.stages), ...o.modelArgs,
      '--state-dir', this.stateDir, '--checkpoint-every', String(o.checkpointEvery),
      '--identity', join(o.dir, 'coordinator.key'), '--create-identity', '--listen', this.listen,
      '--events', this.coordinatorEventsFile, ...this.swarmArgs(), ...(o.coordinatorArgs ?? [])
    ]
    const p = this.spawnProc('coordinator', 'coordinator', join(o.dir, 'coordinator.key'), args, COORDINATOR_READY, this.coordinatorEventsFile)
    this.coordinator = p
    void p.ready.then(() => {
      if (this.coordinatorAddr != null) return
      this.coordinatorAddr = p.record.addr
      // a restarted coordinator must come back on the same address: pin the port it was given
      const port = /\/tcp\/(\d+)/.exec(p.record.addr ?? '')?.[1]
      if (port != null) this.listen = `/ip4/127.0.0.1/tcp/${port}`
    })
    return p
  }

  /** A new identity name for a peer machine the fleet has not had before. */
  newIdentity (): string {
    this.peerCount += 1
    return `peer-${this.peerCount}`
  }

  /** Starts `spotpipe peer` under identity `name` (its key file is created on the first start). */
  startPeer (name: string, env: Record<string, string> = {}): FleetProcess {
    const addr = this.coordinatorAddr
    if (addr == null) throw new ChaosFleetError('start the coordinator (and wait until it is ready) before the peers')
    const identity = join(this.opts.dir, `${name}.key`)
    const n = (this.starts.get(name) ?? 0) + 1
    const eventsFile = join(this.opts.dir, `${name}.${n}.events.jsonl`)
    const args = ['peer', '--cluster', this.opts.clusterId, '--coordinator', addr, '--backend', 'wasm', '--identity', identity, '--create-identity', '--events', eventsFile, ...this.swarmArgs()]
    return this.spawnProc(name, 'peer', identity, args, PEER_READY, eventsFile, env)
  }

  /** The identity name of a peer process (its key file without the directory and `.key`). */
  identityName (p: FleetProcess): string { return p.record.identity.replace(/^.*\//, '').replace(/\.key$/, '') }

  /**
   * Sends `sig`. SIGKILL and SIGTERM are recorded on the process as the harness's doing, so its
   * exit is not counted against the cluster. Returns false if it had already exited.
   */
  signal (p: FleetProcess, sig: NodeJS.Signals): boolean {
    if (!p.alive) return false
    if (sig === 'SIGKILL' || sig === 'SIGTERM') p.record.harnessSignal ??= sig
    if (sig === 'SIGKILL' && p.stopped) p.stopped = false
    const ok = p.child.kill(sig)
    if (ok && sig === 'SIGSTOP') p.stopped = true
    if (ok && sig === 'SIGCONT') p.stopped = false
    return ok
  }

  /** SIGKILLs every process still running (stopped ones too) and waits for them to exit. */
  async shutdown (): Promise<void> {
    this.shuttingDown = true
    for (const p of this.processes) {
      if (!p.alive) continue
      p.record.atShutdown = true
      p.child.kill('SIGKILL')
    }
    await Promise.all(this.processes.map(async p => { await p.exited }))
  }

  /** For process 'exit' handlers: kill everything without waiting. */
  killNow (): void {
    this.shuttingDown = true
    for (const p of this.processes) if (p.alive) { p.record.atShutdown = true; p.child.kill('SIGKILL') }
  }
}

/** `spotpipe peer`: joins a cluster, takes the stage the coordinator assigns, and trains it. */
import { multiaddr } from '@multiformats/multiaddr'
import { Peer, instrumentPeer } from '../../node/index.js'
import { serveMetrics } from '../../net/index.js'
import { UsageError } from '../errors.js'
import { CONFIG_FLAG, CONFIG_HELP, parseFlagsWithConfig } from '../config-file.js'
import { intFlag } from '../flags.js'
import { SpotWatcher } from '../../node/index.js'
import { FAULT_NONFINITE_ENV, FAULT_PERTURB_ENV, NonFiniteFaults, PerturbFaults, parseNonFiniteFaults, parsePerturbFault } from '../../node/index.js'
import { NODE_FLAGS, NODE_HELP, nodeFromFlags } from '../node-flags.js'
import { EventsFile, PEER_EVENTS, type EventSource } from '../events-file.js'
import { DATA_FLAGS, DATA_HELP, dataFromFlags } from '../data-flags.js'

const HELP = `usage: spotpipe peer --coordinator MULTIADDR (--swarm-key FILE | --open) [flags]

  --coordinator ADDR   the coordinator's multiaddr, ending in /p2p/<peer id> (printed by spotpipe coordinator)
  --backend NAME       tensorflow | wasm | cpu (default: SPOTPIPE_BACKEND, else best available)
  --spot PROVIDER      watch for spot interruption notices: aws | gcp | azure | auto | none (default none);
                       on a notice (or SIGTERM) the peer hands its stage to a spare, then exits
  --metadata-url URL   base URL of the metadata service (default: the provider's own)
  --spot-interval MS   metadata poll period (default 5000)
  --events FILE        append this peer's events (start, stage installs, departure) as JSON lines
  --join-timeout MS    keep dialling an unreachable coordinator this long before giving up
                       (default 60000; 0 tries once)
  --metrics-port PORT  serve this peer's Prometheus metrics on http://<metrics-host>:PORT/metrics
                       (default: off; 0 = any free port); prints "metrics <url>"
  --metrics-host HOST  address for the metrics server (default 127.0.0.1)
${CONFIG_HELP}${NODE_HELP}
${DATA_HELP}  Stage 0 and the head's stage (the last, or with CheckFree+ swaps the one holding a
  microbatch's last hop) read tokens: give them the coordinator's --data and --tokenizer (the
  other stages need none); a peer holding other data than the coordinator's is refused.
`

/**
 * Fault injection for tests and the chaos suite, never for real runs: SPOTPIPE_FAULT_CORRUPT_CHUNK=N
 * makes this peer's weights server flip a byte of the N-th chunk of every transfer it sends.
 */
function weightsFaultsFromEnv (): { corruptChunk: number } | undefined {
  const v = process.env.SPOTPIPE_FAULT_CORRUPT_CHUNK
  if (v == null || v === '') return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`SPOTPIPE_FAULT_CORRUPT_CHUNK must be a chunk index (0, 1, ...), got "${v}"`)
  return { corruptChunk: n }
}

export async function peer (argv: string[]): Promise<void> {
  const { values } = await parseFlagsWithConfig(argv, {
    ...CONFIG_FLAG,
    ...NODE_FLAGS,
    ...DATA_FLAGS,
    coordinator: { type: 'string' },
    backend: { type: 'string' },
    spot: { type: 'string' },
    'metadata-url': { type: 'string' },
    'spot-interval': { type: 'string' },
    events: { type: 'string' },
    'join-timeout': { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  })
  const spot = (values.spot as string | undefined) ?? 'none'
  if (!['aws', 'gcp', 'azure', 'auto', 'none'].includes(spot)) throw new UsageError(`--spot must be aws, gcp, azure, auto or none, got "${spot}"`)
  if (values.help === true) { process.stdout.write(HELP); return }
  const addr = values.coordinator as string | undefined
  if (addr == null) throw new UsageError('--coordinator is required (the multiaddr printed by spotpipe coordinator)')
  let coordinatorId: string | undefined
  try {
    coordinatorId = multiaddr(addr).getComponents().find(c => c.name === 'p2p')?.value
  } catch (err) {
    throw new UsageError(`--coordinator "${addr}" is not a multiaddr: ${(err as Error).message}`)
  }
  if (coordinatorId == null) throw new UsageError(`--coordinator "${addr}" must end in /p2p/<coordinator peer id>`)
  const node = await nodeFromFlags(values)
  const data = values.data != null || values.tokenizer != null ? await dataFromFlags(values) : undefined
  if (data?.description != null) process.stdout.write(data.description + '\n')
  const { initBackend, parseBackendName } = await import('../../model/index.js')
  await initBackend({ backend: values.backend != null ? parseBackendName(values.backend as string) : undefined, announce: true })
  // test-only fault injection (node/faults.ts), read once here; loud so it is never on by accident
  const faultSpec = process.env[FAULT_NONFINITE_ENV] ?? ''
  const faults = faultSpec !== '' ? new NonFiniteFaults(parseNonFiniteFaults(faultSpec)) : undefined
  if (faults != null) process.stderr.write(`FAULT INJECTION: ${FAULT_NONFINITE_ENV}=${faultSpec}: non-finite gradients will be injected\n`)
  const perturbSpec = process.env[FAULT_PERTURB_ENV] ?? ''
  const perturb = perturbSpec !== '' ? new PerturbFaults(parsePerturbFault(perturbSpec)) : undefined
  if (perturb != null) process.stderr.write(`FAULT INJECTION: ${FAULT_PERTURB_ENV}=${perturbSpec}: a replica's weights will be perturbed\n`)
  const weights = weightsFaultsFromEnv()
  const p = new Peer({
    ...node,
    coordinatorId,
    coordinatorAddrs: [addr],
    ...(values['join-timeout'] != null ? { joinTimeoutMs: intFlag(values, 'join-timeout', 0, 0) } : {}),
    ...(data != null ? { trainTokens: data.train, data: { fingerprint: data.fingerprint, tokenizer: data.tokenizer } } : {}),
    faults: { nonFinite: faults, weights, perturb }
  })
  const eventsFile = values.events != null ? new EventsFile(values.events as string) : undefined
  // the Peer raises events only once it is an emitter (stage installs): record them when it is
  const source = p as unknown as Partial<EventSource>
  if (eventsFile != null && typeof source.on === 'function' && typeof source.off === 'function') eventsFile.record(source as EventSource, PEER_EVENTS)
  // instrumented before it starts, so the first stage it installs is counted
  const metrics = values['metrics-port'] != null ? instrumentPeer(p) : undefined
  const metricsPort = values['metrics-port'] != null ? intFlag(values, 'metrics-port', 0, 0) : 0
  await p.start()
  const metricsServer = metrics != null
    ? await serveMetrics({ port: metricsPort, host: (values['metrics-host'] as string | undefined) ?? '127.0.0.1', registry: metrics.registry })
    : undefined
  eventsFile?.write('start', { pid: process.pid, peerId: p.peerId, addr: p.node.getMultiaddrs()[0]?.toString() ?? '' })
  process.stdout.write(`peer ${p.node.getMultiaddrs()[0]?.toString() ?? ''}\n`)
  if (metricsServer != null) process.stdout.write(`metrics ${metricsServer.url}\n`)
  // A spot notice or SIGTERM (systemd stop) hands the stage over before leaving; SIGINT just leaves.
  let watcher: SpotWatcher | undefined
  let refused: Error | undefined
  const reason = await new Promise<string>(resolve => {
    p.once('fatal', (err: Error) => { refused = err; resolve('refused') })
    process.once('SIGINT', () => { resolve('SIGINT') })
    process.once('SIGTERM', () => { resolve('SIGTERM') })
    if (spot !== 'none') {
      const base = values['metadata-url'] as string | undefined
      watcher = new SpotWatcher({
        provider: spot as 'aws' | 'gcp' | 'azure' | 'auto',
        intervalMs: intFlag(values, 'spot-interval', 5000),
        baseUrls: base != null ? { aws: base, gcp: base, azure: base } : undefined
      })
      watcher.once('notice', (n) => { resolve(`${n.provider} interruption notice (${n.action})`) })
      watcher.start()
    }
  })
  watcher?.stop()
  if (refused == null) eventsFile?.write('departing', { reason })
  if (reason !== 'SIGINT' && refused == null) {
    process.stdout.write(`departing: ${reason}\n`)
    await p.depart()
  }
  await p.stop()
  await metricsServer?.close()
  eventsFile?.write('stop', {})
  eventsFile?.close()
  if (refused != null) throw refused
}

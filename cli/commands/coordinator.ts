/** `spotpipe coordinator`: assigns stages to the peers that join and drives training iterations. */
import { Coordinator, DIVERGENCE_ACTIONS, STRATEGIES, StageLostError, instrument, type DivergenceAction, type DivergenceEvent, type RecoveryEvent, type Strategy } from '../../coordinator/index.js'
import { DEFAULT_TRAIN, PLUS_LAYOUTS, type PlusLayout } from '../../model/index.js'
import { serveMetrics } from '../../net/index.js'
import { UsageError } from '../errors.js'
import { CONFIG_FLAG, CONFIG_HELP, parseFlagsWithConfig } from '../config-file.js'
import { intFlag, numFlag } from '../flags.js'
import { MODEL_FLAGS, MODEL_HELP, modelFromFlags } from '../model-flags.js'
import { DATA_FLAGS, DATA_HELP, dataFromFlags } from '../data-flags.js'
import { join } from 'node:path'
import { NODE_FLAGS, NODE_HELP, accessArgs, nodeFromFlags } from '../node-flags.js'
import { COORDINATOR_EVENTS, EventsFile } from '../events-file.js'

const HELP = `usage: spotpipe coordinator [flags]

Waits for one peer per stage (--replicas per stage), assigns stages, then runs training iterations and prints the loss.
The first stdout line is "coordinator <multiaddr>": give it to every peer with --coordinator.
The cluster is private: without --swarm-key (or --open) the coordinator uses the secret in
<state-dir>/swarm.key, or ./swarm.key without --state-dir, creating it if needed; the second line,
"peers join with: spotpipe peer ...", names the file every peer needs.

${CONFIG_HELP}${NODE_HELP}  --iterations N       train until N iterations are committed, then exit (default: run until stopped)
  --replicas R         data-parallel replicas per stage (default 1): each iteration's microbatches are
                       spread over a stage's replicas, which add their gradients before the step
                       (at most --microbatches); a lost replica's microbatches move to the stage's
                       other replicas, and a joining peer becomes a replica of the stage with the fewest
  --min-replicas N     replicas per stage to start with (default --replicas): waits for stages x N
                       peers; peers beyond that join as replicas while training goes on
  --state-dir DIR      durable coordinator state and checkpoints; a restarted coordinator resumes from it
  --checkpoint-every K sparse checkpoint every K iterations (default 50 with --state-dir; 0 = never)
  --keep-checkpoints N complete checkpoints kept (default 3)
  --metrics-port PORT  serve Prometheus metrics on http://<metrics-host>:PORT/metrics (default: off;
                       0 = any free port); prints "metrics <url>"
  --metrics-host HOST  address for the metrics server (default 127.0.0.1)
  --strategy NAME      recovery strategy: checkfree | checkfree-plus | checkpoint | checkpoint-whole | redundant | redundant-compute | none (default checkfree);
                       redundant: each peer keeps a shadow copy of its successor stage, pulled after every commit;
                       redundant-compute: each peer trains a shadow of its successor by redundant computation
                       (its forward and backward too, Bamboo-style; one replica per stage, no --checkfree-plus)
  --heartbeat-timeout MS  floor: no peer is lost for a shorter silence (default 3000); beyond it the
                       peer's own heartbeat rhythm decides (phi accrual)
  --heartbeat-timeout-max MS  ceiling: a peer silent this long is lost, whatever its rhythm
                       (default 30000, or the floor if that is higher)
  --phi-threshold X    suspicion at which a silent peer is lost, between floor and ceiling: 8 means
                       a 1-in-10^8 chance it is only late (default 8; lower detects sooner)
  --pause-grace MS     after the coordinator itself stalled (SIGSTOP, GC, a suspended VM), each peer
                       has this long to be heard again before a ping decides (default 5000)
  --checkfree-plus     train with CheckFree+ swapped microbatches (implied by --strategy checkfree-plus)
  --plus-layout L      where a swapped microbatch embeds and runs the head: spotpipe (stage 0's
                       embedding, S-1's head: two extra hops each way) or paper (stage 1 and S-2 run
                       copies of them, as in the CheckFree paper: no extra hop, but an all-reduce of
                       the two parts and a pull of their weights every iteration; one replica per
                       stage) (default spotpipe)
  --on-divergence WHAT after --divergence-limit iterations in a row with a non-finite loss or gradient
                       (each one's step is skipped): rollback = every stage reloads the newest checkpoint
                       from before them (the seeded weights if none) at a lower learning rate;
                       stop = exit with one line naming the cause
                       (default: rollback when checkpoints are taken, i.e. with --state-dir, else stop)
  --divergence-limit N non-finite iterations in a row before --on-divergence acts (default 3)
  --divergence-lr-factor X  learning-rate multiplier per rollback, compounding, in (0, 1] (default 0.5)
  --events FILE        append every coordinator event (begin, iteration, recovery, checkpoint, ...) as a JSON line
${MODEL_HELP}
${DATA_HELP}`

export async function coordinator (argv: string[]): Promise<void> {
  const { values } = await parseFlagsWithConfig(argv, {
    ...CONFIG_FLAG,
    ...NODE_FLAGS,
    ...MODEL_FLAGS,
    ...DATA_FLAGS,
    iterations: { type: 'string' },
    replicas: { type: 'string' },
    'min-replicas': { type: 'string' },
    strategy: { type: 'string' },
    'heartbeat-timeout': { type: 'string' },
    'heartbeat-timeout-max': { type: 'string' },
    'phi-threshold': { type: 'string' },
    'pause-grace': { type: 'string' },
    'state-dir': { type: 'string' },
    'checkpoint-every': { type: 'string' },
    'keep-checkpoints': { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string' },
    'checkfree-plus': { type: 'boolean' },
    'plus-layout': { type: 'string' },
    'on-divergence': { type: 'string' },
    'divergence-limit': { type: 'string' },
    'divergence-lr-factor': { type: 'string' },
    events: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { process.stdout.write(HELP); return }
  const node = await nodeFromFlags(values, join((values['state-dir'] as string | undefined) ?? '.', 'swarm.key'))
  const { model, train, tokenizer } = modelFromFlags(values)
  // only the data's identity goes to the peers (the coordinator samples no batches itself)
  const data = await dataFromFlags(values, tokenizer)
  if (data.description != null) process.stdout.write(data.description + '\n')
  model.vocab = data.vocab
  const iterations = intFlag(values, 'iterations', Number.MAX_SAFE_INTEGER)
  const replicas = intFlag(values, 'replicas', 1)
  const minReplicas = intFlag(values, 'min-replicas', replicas)
  if (minReplicas > replicas) throw new UsageError(`--min-replicas (${minReplicas}) must be at most --replicas (${replicas})`)
  const microbatches = train.microbatches ?? DEFAULT_TRAIN.microbatches
  if (replicas > microbatches) throw new UsageError(`--replicas (${replicas}) must be at most --microbatches (${microbatches}): each replica runs at least one microbatch per iteration`)
  const strategy = (values.strategy as string | undefined) ?? 'checkfree'
  if (!(STRATEGIES as readonly string[]).includes(strategy)) throw new UsageError(`--strategy must be one of ${STRATEGIES.join(', ')}, got "${strategy}"`)
  const plusLayout = (values['plus-layout'] as string | undefined) ?? 'spotpipe'
  if (!(PLUS_LAYOUTS as readonly string[]).includes(plusLayout)) throw new UsageError(`--plus-layout must be ${PLUS_LAYOUTS.join(' or ')}, got "${plusLayout}"`)
  if (plusLayout === 'paper' && replicas > 1) throw new UsageError(`--plus-layout paper works with one replica per stage, not --replicas ${replicas}`)
  const floor = intFlag(values, 'heartbeat-timeout', 3000)
  const ceiling = values['heartbeat-timeout-max'] != null ? intFlag(values, 'heartbeat-timeout-max', 0) : undefined
  if (ceiling != null && ceiling < floor) throw new UsageError(`--heartbeat-timeout-max (${ceiling}) must be at least --heartbeat-timeout (${floor})`)
  const onDivergence = values['on-divergence'] as string | undefined
  if (onDivergence != null && !(DIVERGENCE_ACTIONS as readonly string[]).includes(onDivergence)) throw new UsageError(`--on-divergence must be ${DIVERGENCE_ACTIONS.join(' or ')}, got "${onDivergence}"`)
  const lrFactor = values['divergence-lr-factor'] != null ? numFlag(values, 'divergence-lr-factor', 0.5) : undefined
  if (lrFactor != null && lrFactor > 1) throw new UsageError(`--divergence-lr-factor must be in (0, 1], got "${String(values['divergence-lr-factor'])}"`)
  const c = new Coordinator({
    ...node,
    model,
    train,
    data: { fingerprint: data.fingerprint, tokenizer: data.tokenizer },
    strategy: strategy as Strategy,
    replicas,
    minReplicas,
    heartbeatTimeoutMs: floor,
    detector: {
      maxHeartbeatTimeoutMs: ceiling,
      phiThreshold: values['phi-threshold'] != null ? numFlag(values, 'phi-threshold', 0) : undefined,
      pauseGraceMs: values['pause-grace'] != null ? intFlag(values, 'pause-grace', 0, 0) : undefined
    },
    stateDir: values['state-dir'] as string | undefined,
    checkpointEvery: values['checkpoint-every'] != null ? intFlag(values, 'checkpoint-every', 0, 0) : undefined,
    keepCheckpoints: intFlag(values, 'keep-checkpoints', 3),
    checkfreePlus: values['checkfree-plus'] === true ? true : undefined,
    plusLayout: plusLayout as PlusLayout,
    onDivergence: onDivergence as DivergenceAction | undefined,
    divergenceLimit: values['divergence-limit'] != null ? intFlag(values, 'divergence-limit', 3) : undefined,
    divergenceLrFactor: lrFactor
  })
  const eventsFile = values.events != null ? new EventsFile(values.events as string) : undefined
  eventsFile?.record(c, COORDINATOR_EVENTS)
  c.on('recovery', (events: RecoveryEvent[]) => {
    for (const e of events) process.stdout.write(`recovery stage ${e.stage} rung ${e.rung} cause "${e.cause}" bytes ${e.bytes} detect_ms ${e.detectMs} transfer_ms ${e.transferMs.toFixed(0)} rebuild_ms ${e.rebuildMs.toFixed(0)}\n`)
  })
  c.on('recovery-failed', (e: RecoveryEvent) => {
    process.stdout.write(`recovery-failed stage ${e.stage} rung ${e.rung} reason "${e.reason ?? ''}"\n`)
  })
  c.on('divergence', (e: DivergenceEvent) => {
    const act = e.action === 'rollback' ? `rollback to ${e.rollbackTo === -1 ? 'the seeded initial weights' : `checkpoint ${String(e.rollbackTo)}`} at lr x${e.lrFactor}` : e.action
    process.stdout.write(`divergence iteration ${e.iteration} stage ${e.stage} non-finite ${e.what}: step skipped (${e.consecutive} in a row) action ${act}\n`)
  })
  c.on('recovered', (events: RecoveryEvent[]) => {
    for (const e of events) process.stdout.write(`resumed stage ${e.stage} resume_ms ${e.resumeMs.toFixed(0)}\n`)
  })
  await c.start()
  eventsFile?.write('start', { pid: process.pid, peerId: c.peerId, addrs: c.addrs, restored: c.restored != null, iteration: c.iteration, epoch: c.epoch })
  const metricsServer = values['metrics-port'] != null
    ? await serveMetrics({ port: intFlag(values, 'metrics-port', 0, 0), host: (values['metrics-host'] as string | undefined) ?? '127.0.0.1', registry: instrument(c).registry })
    : undefined
  if (metricsServer != null) process.stdout.write(`metrics ${metricsServer.url}\n`)
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort(new Error('stopped by signal')) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    process.stdout.write(`coordinator ${c.addrs[0]}\n`)
    process.stdout.write(`peers join with: spotpipe peer --coordinator ${c.addrs[0]} ${accessArgs(node.access).join(' ')}\n`)
    if (node.access.open) process.stdout.write('open cluster (--open): any host that can reach this address can join it\n')
    else if (node.access.created) process.stdout.write(`created the cluster secret ${node.access.file} (mode 0600): copy it to every peer over a secure channel\n`)
    if (c.restored != null) {
      process.stdout.write(`resuming at iteration ${c.iteration} (epoch ${c.epoch})\n`)
      await c.resume({ signal: stop.signal })
    } else {
      process.stdout.write(`waiting for ${c.train.stages} peers\n`)
      try {
        await c.assignInitial({ signal: stop.signal, timeoutMs: 24 * 3600_000 })
      } catch (err) {
        // A peer lost while taking its stage is recovered like any other loss by run() below.
        if (!(err instanceof StageLostError)) throw err
        process.stdout.write(`${err.message}; recovering\n`)
      }
    }
    await c.run(Math.max(0, iterations - c.iteration), {
      signal: stop.signal,
      onIteration: (r) => { if (r.skipped == null) process.stdout.write(`iter ${r.iteration} loss ${r.loss.toPrecision(10)} ms ${r.ms.toFixed(0)} tok/s ${r.tokensPerSec.toFixed(0)} epoch ${r.epoch}\n`) }
    })
  } catch (err) {
    if (!stop.signal.aborted) {
      eventsFile?.write('error', { message: (err as Error).message, code: (err as { code?: string }).code })
      throw err
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await metricsServer?.close()
    await c.stop()
    eventsFile?.write('stop', { iteration: c.iteration })
    eventsFile?.close()
  }
}

/** `spotpipe coordinator`: assigns stages to the peers that join and drives training iterations. */
import { Coordinator, STRATEGIES, StageLostError, instrument, serveMetrics, type RecoveryEvent, type Strategy } from '../../coordinator/index.js'
import { UsageError } from '../errors.js'
import { CONFIG_FLAG, CONFIG_HELP, parseFlagsWithConfig } from '../config-file.js'
import { intFlag } from '../flags.js'
import { MODEL_FLAGS, MODEL_HELP, modelFromFlags } from '../model-flags.js'
import { NODE_FLAGS, NODE_HELP, nodeFromFlags } from '../node-flags.js'

const HELP = `usage: spotpipe coordinator [flags]

Waits for one peer per stage, assigns stages, then runs training iterations and prints the loss.
The first stdout line is "coordinator <multiaddr>": give it to every peer with --coordinator.

${CONFIG_HELP}${NODE_HELP}  --iterations N       train until N iterations are committed, then exit (default: run until stopped)
  --state-dir DIR      durable coordinator state and checkpoints; a restarted coordinator resumes from it
  --checkpoint-every K sparse checkpoint every K iterations (default 50 with --state-dir; 0 = never)
  --keep-checkpoints N complete checkpoints kept (default 3)
  --metrics-port PORT  serve Prometheus metrics on http://<metrics-host>:PORT/metrics (default: off)
  --metrics-host HOST  address for the metrics server (default 127.0.0.1)
  --strategy NAME      recovery strategy: checkfree | checkfree-plus | checkpoint | checkpoint-whole | redundant | none (default checkfree);
                       redundant: each peer keeps a shadow copy of its successor stage, pulled after every commit
  --heartbeat-timeout MS  a peer silent this long is lost (default 3000)
  --checkfree-plus     train with CheckFree+ swapped microbatches (implied by --strategy checkfree-plus)
${MODEL_HELP}`

export async function coordinator (argv: string[]): Promise<void> {
  const { values } = await parseFlagsWithConfig(argv, {
    ...CONFIG_FLAG,
    ...NODE_FLAGS,
    ...MODEL_FLAGS,
    iterations: { type: 'string' },
    strategy: { type: 'string' },
    'heartbeat-timeout': { type: 'string' },
    'state-dir': { type: 'string' },
    'checkpoint-every': { type: 'string' },
    'keep-checkpoints': { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string' },
    'checkfree-plus': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { process.stdout.write(HELP); return }
  const node = await nodeFromFlags(values)
  const { model, train } = modelFromFlags(values)
  const iterations = intFlag(values, 'iterations', Number.MAX_SAFE_INTEGER)
  const strategy = (values.strategy as string | undefined) ?? 'checkfree'
  if (!(STRATEGIES as readonly string[]).includes(strategy)) throw new UsageError(`--strategy must be one of ${STRATEGIES.join(', ')}, got "${strategy}"`)
  const c = new Coordinator({
    ...node,
    model,
    train,
    strategy: strategy as Strategy,
    heartbeatTimeoutMs: intFlag(values, 'heartbeat-timeout', 3000),
    stateDir: values['state-dir'] as string | undefined,
    checkpointEvery: values['checkpoint-every'] != null ? intFlag(values, 'checkpoint-every', 0, 0) : undefined,
    keepCheckpoints: intFlag(values, 'keep-checkpoints', 3),
    checkfreePlus: values['checkfree-plus'] === true ? true : undefined
  })
  c.on('recovery', (events: RecoveryEvent[]) => {
    for (const e of events) process.stdout.write(`recovery stage ${e.stage} rung ${e.rung} cause "${e.cause}" bytes ${e.bytes} detect_ms ${e.detectMs} transfer_ms ${e.transferMs.toFixed(0)} rebuild_ms ${e.rebuildMs.toFixed(0)}\n`)
  })
  c.on('recovered', (events: RecoveryEvent[]) => {
    for (const e of events) process.stdout.write(`resumed stage ${e.stage} resume_ms ${e.resumeMs.toFixed(0)}\n`)
  })
  await c.start()
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
      onIteration: (r) => { process.stdout.write(`iter ${r.iteration} loss ${r.loss.toPrecision(10)} ms ${r.ms.toFixed(0)} tok/s ${r.tokensPerSec.toFixed(0)} epoch ${r.epoch}\n`) }
    })
  } catch (err) {
    if (!stop.signal.aborted) throw err
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await metricsServer?.close()
    await c.stop()
  }
}

/** `spotpipe coordinator`: assigns stages to the peers that join and drives training iterations. */
import { Coordinator } from '../../coordinator/index.js'
import { intFlag, parseFlags } from '../flags.js'
import { MODEL_FLAGS, MODEL_HELP, modelFromFlags } from '../model-flags.js'
import { NODE_FLAGS, NODE_HELP, nodeFromFlags } from '../node-flags.js'

const HELP = `usage: spotpipe coordinator [flags]

Waits for one peer per stage, assigns stages, then runs training iterations and prints the loss.
The first stdout line is "coordinator <multiaddr>": give it to every peer with --coordinator.

${NODE_HELP}  --iterations N       iterations to run, then exit (default: run until stopped)
  --checkfree-plus     train with CheckFree+ swapped microbatches
${MODEL_HELP}`

export async function coordinator (argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, { ...NODE_FLAGS, ...MODEL_FLAGS, iterations: { type: 'string' }, 'checkfree-plus': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } })
  if (values.help === true) { process.stdout.write(HELP); return }
  const node = await nodeFromFlags(values)
  const { model, train } = modelFromFlags(values)
  const iterations = intFlag(values, 'iterations', Number.MAX_SAFE_INTEGER)
  const c = new Coordinator({ ...node, model, train, checkfreePlus: values['checkfree-plus'] === true })
  await c.start()
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort(new Error('stopped by signal')) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    process.stdout.write(`coordinator ${c.addrs[0]}\n`)
    process.stdout.write(`waiting for ${c.train.stages} peers\n`)
    await c.assignInitial({ signal: stop.signal, timeoutMs: 24 * 3600_000 })
    for (let i = 0; i < iterations && !stop.signal.aborted; i++) {
      const r = await c.runIteration({ signal: stop.signal })
      process.stdout.write(`iter ${r.iteration} loss ${r.loss.toPrecision(10)} ms ${r.ms.toFixed(0)} tok/s ${r.tokensPerSec.toFixed(0)}\n`)
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await c.stop()
  }
}

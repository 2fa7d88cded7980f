/** `spotpipe status`: listens to a cluster for a moment and prints what it heard, as a table or JSON. */
import { Observer, OBSERVER_FLAGS, OBSERVER_HELP, observerFromFlags } from '../observer.js'
import { CONFIG_FLAG, CONFIG_HELP, parseFlagsWithConfig } from '../config-file.js'
import { UsageError } from '../errors.js'
import { intFlag } from '../flags.js'
import { renderSnapshot } from '../render/screen.js'

const HELP = `usage: spotpipe status --coordinator MULTIADDR [flags]

Joins the cluster read-only, listens for --wait ms, then prints who holds which stage, their
heartbeats and the events heard. Nothing is sent to the cluster.

${OBSERVER_HELP}  --wait MS            how long to listen before answering (default 3000)
  --json               print one JSON object (schema: docs/status-schema.json)
${CONFIG_HELP}`

export async function status (argv: string[]): Promise<void> {
  const { values, positionals } = await parseFlagsWithConfig(argv, {
    ...CONFIG_FLAG,
    ...OBSERVER_FLAGS,
    json: { type: 'boolean' },
    wait: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  })
  if (values.help === true) { process.stdout.write(HELP); return }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}" (spotpipe status takes only flags)`)
  const waitMs = intFlag(values, 'wait', 3000, 0)
  const obs = new Observer(await observerFromFlags(values))
  await obs.start()
  let view
  try {
    await new Promise(resolve => setTimeout(resolve, waitMs))
    view = obs.view()
  } finally {
    await obs.stop()
  }
  if (values.json === true) process.stdout.write(JSON.stringify(view.status) + '\n')
  else process.stdout.write(renderSnapshot(view, process.stdout.columns ?? 100).join('\n') + '\n')
}

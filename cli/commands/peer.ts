/** `spotpipe peer`: joins a cluster, takes the stage the coordinator assigns, and trains it. */
import { multiaddr } from '@multiformats/multiaddr'
import { Peer } from '../../node/index.js'
import { UsageError } from '../errors.js'
import { parseFlags } from '../flags.js'
import { NODE_FLAGS, NODE_HELP, nodeFromFlags } from '../node-flags.js'

const HELP = `usage: spotpipe peer --coordinator MULTIADDR [flags]

  --coordinator ADDR   the coordinator's multiaddr, ending in /p2p/<peer id> (printed by spotpipe coordinator)
  --backend NAME       tensorflow | wasm | cpu (default: SPOTPIPE_BACKEND, else best available)
${NODE_HELP}`

export async function peer (argv: string[]): Promise<void> {
  const { values } = parseFlags(argv, { ...NODE_FLAGS, coordinator: { type: 'string' }, backend: { type: 'string' }, help: { type: 'boolean', short: 'h' } })
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
  const { initBackend, parseBackendName } = await import('../../model/backend.js')
  await initBackend({ backend: values.backend != null ? parseBackendName(values.backend as string) : undefined, announce: true })
  const p = new Peer({ ...node, coordinatorId, coordinatorAddrs: [addr] })
  await p.start()
  process.stdout.write(`peer ${p.node.getMultiaddrs()[0]?.toString() ?? ''}\n`)
  // SIGTERM (a spot notice, systemd stop) hands the stage over before leaving; SIGINT just leaves.
  const signal = await new Promise<NodeJS.Signals>(resolve => {
    process.once('SIGINT', () => { resolve('SIGINT') })
    process.once('SIGTERM', () => { resolve('SIGTERM') })
  })
  if (signal === 'SIGTERM') await p.depart()
  await p.stop()
}

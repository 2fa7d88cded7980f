/**
 * A stand-in for the clouds' instance metadata services on 127.0.0.1 (port 0), answering as the
 * real ones do: AWS IMDSv2 (a session token first, then spot/instance-action: 404 until a notice),
 * GCP's instance/preempted (FALSE or TRUE, with Metadata-Flavor: Google), Azure's scheduled events
 * (an Events list, header Metadata: true). Each test sets what it plays in `state`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { SpotProvider } from '../../node/index.js'

export interface FakeState {
  /** Which services the fake plays; the others answer 404 like an unrelated web server. */
  serve: Set<SpotProvider>
  awsAction?: { action: string, time: string }
  gcpPreempted: boolean
  azureEvents: Array<Record<string, unknown>>
}

export interface Fake {
  base: string
  state: FakeState
  /** Every request as "METHOD path status". */
  log: string[]
  tokens: Set<string>
  close: () => Promise<void>
}

/** Listens on 127.0.0.1, a port the system picks; returns the port. */
export async function listen (server: Server): Promise<number> {
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  return (server.address() as AddressInfo).port
}

/** Closes the server and the connections it still holds. */
export async function closeServer (server: Server): Promise<void> {
  await new Promise<void>(resolve => {
    server.close(() => { resolve() })
    server.closeAllConnections()
  })
}

/** A fake playing the services in `serve`, listening on loopback. */
export async function fakeMetadata (serve: SpotProvider[]): Promise<Fake> {
  const state: FakeState = { serve: new Set(serve), gcpPreempted: false, azureEvents: [] }
  const log: string[] = []
  const tokens = new Set<string>()
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const reply = (status: number, body = '', headers: Record<string, string> = {}): void => {
      log.push(`${req.method ?? ''} ${req.url ?? ''} ${status}`)
      res.writeHead(status, headers).end(body)
    }
    const url = req.url ?? ''
    if (state.serve.has('aws') && url === '/latest/api/token') {
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds'])
      if (req.method !== 'PUT' || !(ttl >= 1 && ttl <= 21600)) { reply(400); return }
      const t = randomBytes(16).toString('base64')
      tokens.add(t)
      reply(200, t)
      return
    }
    if (state.serve.has('aws') && url === '/latest/meta-data/spot/instance-action') {
      const t = req.headers['x-aws-ec2-metadata-token']
      if (typeof t !== 'string' || !tokens.has(t)) { reply(401); return }
      if (state.awsAction == null) reply(404, 'Not Found')
      else reply(200, JSON.stringify(state.awsAction), { 'Content-Type': 'text/plain' })
      return
    }
    if (state.serve.has('gcp') && url === '/computeMetadata/v1/instance/preempted') {
      if (req.headers['metadata-flavor'] !== 'Google') { reply(403); return }
      reply(200, state.gcpPreempted ? 'TRUE' : 'FALSE', { 'Metadata-Flavor': 'Google', 'Content-Type': 'application/text' })
      return
    }
    if (state.serve.has('azure') && url === '/metadata/scheduledevents?api-version=2020-07-01') {
      if (req.headers.metadata !== 'true') { reply(400, '{"error":"Bad request"}'); return }
      reply(200, JSON.stringify({ DocumentIncarnation: state.azureEvents.length, Events: state.azureEvents }), { 'Content-Type': 'application/json' })
      return
    }
    reply(404)
  })
  const port = await listen(server)
  return { base: `http://127.0.0.1:${port}`, state, log, tokens, close: async () => { await closeServer(server) } }
}

/** Makes the fake announce an interruption the way `provider`'s service does. */
export function announceInterruption (f: Fake, provider: SpotProvider): void {
  if (provider === 'aws') f.state.awsAction = { action: 'terminate', time: new Date(Date.now() + 120_000).toISOString() }
  else if (provider === 'gcp') f.state.gcpPreempted = true
  else {
    f.state.azureEvents.push({
      EventId: 'preempt-1',
      EventType: 'Preempt',
      ResourceType: 'VirtualMachine',
      Resources: ['peer-vm'],
      EventStatus: 'Scheduled',
      NotBefore: new Date(Date.now() + 30_000).toUTCString()
    })
  }
}

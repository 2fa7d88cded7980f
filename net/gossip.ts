/**
 * Gossip plumbing shared by peers, the coordinator and observers: subscribe to a cluster's topics,
 * decode and validate every message, and tell whether a coordinator-only message really comes from
 * the pinned coordinator (gossipsub's strict signing makes `from` trustworthy).
 */
import type { Message as PubsubMessage } from '@libp2p/gossipsub'
import { createLog } from '../common/index.js'
import {
  COORDINATOR_KINDS, CONTROL_TOPIC_KINDS, HEARTBEAT_TOPIC_KINDS, controlTopic, decodeMessage, encodeMessage,
  heartbeatTopic, type Message
} from '../protocols/index.js'
import { publishChecked, type PeerLibp2p } from './transport/index.js'

const log = createLog('gossip')

export interface GossipInit {
  clusterId: string
  /** Peer id whose signature coordinator-only messages must carry; undefined on the coordinator itself. */
  coordinatorId?: string
  onMessage: (msg: Message, from: string) => void
}

export class ClusterGossip {
  readonly node: PeerLibp2p
  readonly heartbeatTopic: string
  readonly controlTopic: string
  private readonly init: GossipInit
  /** Messages dropped: undecodable, on the wrong topic, or coordinator kinds from someone else. */
  rejected = 0
  /** Of those, control messages not signed by the coordinator. */
  forgedControl = 0
  private readonly listener = (evt: CustomEvent<PubsubMessage>): void => { this.handle(evt.detail) }

  constructor (node: PeerLibp2p, init: GossipInit) {
    this.node = node
    this.init = init
    this.heartbeatTopic = heartbeatTopic(init.clusterId)
    this.controlTopic = controlTopic(init.clusterId)
  }

  start (): void {
    const ps = this.node.services.pubsub
    ps.addEventListener('message', this.listener)
    ps.subscribe(this.heartbeatTopic)
    ps.subscribe(this.controlTopic)
  }

  stop (): void {
    const ps = this.node.services.pubsub
    ps.removeEventListener('message', this.listener)
    try {
      ps.unsubscribe(this.heartbeatTopic)
      ps.unsubscribe(this.controlTopic)
    } catch (err) {
      log('unsubscribe after stop: %s', (err as Error).message)
    }
  }

  private handle (m: PubsubMessage): void {
    if (m.topic !== this.heartbeatTopic && m.topic !== this.controlTopic) return
    if (m.type !== 'signed') { this.rejected += 1; log.error('unsigned message on %s dropped', m.topic); return }
    const from = m.from.toString()
    let msg: Message
    try {
      msg = decodeMessage(m.data)
    } catch (err) {
      this.rejected += 1
      log.error('malformed message from %s on %s: %s', from, m.topic, (err as Error).message)
      return
    }
    const allowed = m.topic === this.heartbeatTopic ? HEARTBEAT_TOPIC_KINDS : CONTROL_TOPIC_KINDS
    if (!allowed.has(msg.kind)) { this.rejected += 1; log.error('%s message from %s on the wrong topic %s', msg.kind, from, m.topic); return }
    if (COORDINATOR_KINDS.has(msg.kind) && this.init.coordinatorId != null && from !== this.init.coordinatorId) {
      this.rejected += 1
      this.forgedControl += 1
      log.info(`ignored ${msg.kind} from ${from}: control messages are accepted only from the coordinator ${this.init.coordinatorId}`)
      return
    }
    if (msg.kind === 'heartbeat' && msg.peerId !== from) { this.rejected += 1; log.error('heartbeat from %s claims to be %s', from, msg.peerId); return }
    if ((msg.kind === 'done' && msg.peerId !== from) || (msg.kind === 'stream-break' && msg.reporter !== from)) {
      this.rejected += 1
      log.error('%s report from %s names another peer', msg.kind, from)
      return
    }
    this.init.onMessage(msg, from)
  }

  /** Publishes on the topic the message kind belongs to. Returns the number of direct recipients. */
  async publish (msg: Message): Promise<number> {
    const topic = HEARTBEAT_TOPIC_KINDS.has(msg.kind) ? this.heartbeatTopic : this.controlTopic
    return await publishChecked(this.node, topic, encodeMessage(msg))
  }

  /** Peers subscribed to the control topic (as seen by this node). */
  controlSubscribers (): string[] {
    return this.node.services.pubsub.getSubscribers(this.controlTopic).map(p => p.toString())
  }
}

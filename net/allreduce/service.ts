/**
 * The all-reduce service: owns the protocol handler, checks a caller's options into a round's plan,
 * and routes each inbound stream to its round, or holds it (bounded in number and time) until that
 * round begins here; a stream for a round that failed, or that cannot be ours, is refused at once.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { ConfigError, createLog } from '../../common/index.js'
import { ALLREDUCE_PROTOCOL, MAX_GROUP_SIZE, MAX_STREAMS_PER_CONNECTION, MAX_TOTAL_ELEMENTS } from './constants.js'
import { abortFrameOf, decodeFrame, message, roundKeyString, type AllReduceFrame, type HeaderFrame } from './codec.js'
import {
  ALLREDUCE_ERROR_CODES, AllReduceAbortedError, AllReduceBusyError, AllReduceError, AllReduceProtocolError, AllReduceTimeoutError,
  RoundKeyMismatchError
} from './errors.js'
import { Inbound, positive, sendControl } from './inbound.js'
import type {
  AllReduceFaults, AllReduceInit, AllReduceNode, AllReduceOptions, AllReduceResult, AllReduceService, AllReduceStats
} from './index.js'
import { Round, type Plan } from './round.js'

const log = createLog('allreduce')

/** Failures remembered per key, so a stream that comes late for a round that already failed is told at once. */
const RECENT_FAILURES = 32

/** A stream still due from the predecessor of a round that failed for a key mismatch (see rememberMismatch). */
interface Mismatch {
  /** The failed round's key. */
  ours: string
  /** The key of the stream due; undefined: any other key than `ours` (known only from an abort). */
  theirs: string | undefined
  /** performance.now() after which it no longer comes. */
  until: number
}

export class AllReduceServiceImpl implements AllReduceService {
  readonly node: AllReduceNode
  readonly self: string
  readonly timeoutMs: number
  readonly dialTimeoutMs: number
  readonly helloTimeoutMs: number
  readonly pendingTimeoutMs: number
  readonly maxPendingStreams: number
  readonly faults: AllReduceFaults | undefined
  /** Aborted by stop(): ends lingering closes and background reads. */
  readonly closing = new AbortController()
  private readonly onRefused: AllReduceInit['onRefused']
  private readonly rounds = new Map<string, Round>()
  /** Streams whose round has not begun here, by remote peer (at most one each). */
  private readonly pending = new Map<string, Inbound>()
  private readonly inbound = new Set<Inbound>()
  private readonly recentFailures = new Map<string, Error>()
  /** Predecessors of rounds that failed here for a key mismatch, whose stream is still due; see rememberMismatch. */
  private readonly recentMismatches = new Map<string, Mismatch>()
  private readonly tasks = new Set<Promise<void>>()
  private readonly counters = { rounds: 0, failed: 0, refused: 0 }
  private stopped = false

  constructor (node: AllReduceNode, init: AllReduceInit) {
    this.node = node
    this.self = node.peerId.toString()
    this.timeoutMs = positive('timeoutMs', init.timeoutMs, 30_000)
    this.dialTimeoutMs = positive('dialTimeoutMs', init.dialTimeoutMs, 10_000)
    this.helloTimeoutMs = positive('helloTimeoutMs', init.helloTimeoutMs, 10_000)
    this.pendingTimeoutMs = positive('pendingTimeoutMs', init.pendingTimeoutMs, 30_000)
    const maxPending = init.maxPendingStreams ?? 16
    if (!Number.isSafeInteger(maxPending) || maxPending < 0) throw new ConfigError(`maxPendingStreams must be a non-negative integer, got ${maxPending}`)
    this.maxPendingStreams = maxPending
    this.onRefused = init.onRefused
    this.faults = init.faults
    if (this.faults !== undefined) log.info(`FAULT INJECTION: stalling before step ${this.faults.stallBeforeStep} of every round`)
  }

  get stats (): AllReduceStats {
    return { ...this.counters, active: this.rounds.size, pending: this.pending.size }
  }

  async start (): Promise<void> {
    await this.node.handle(ALLREDUCE_PROTOCOL, (stream, connection) => {
      this.accept(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: MAX_STREAMS_PER_CONNECTION, maxOutboundStreams: MAX_STREAMS_PER_CONNECTION })
  }

  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    try {
      await this.node.unhandle(ALLREDUCE_PROTOCOL)
    } catch (err) {
      log('unhandle failed (node stopped?): %s', message(err))
    }
    for (const r of this.rounds.values()) r.fail(new AllReduceAbortedError(this.self, ALLREDUCE_ERROR_CODES.stopped, 'the all-reduce service is stopping', { peer: this.self }))
    for (const inb of [...this.inbound]) {
      if (inb.attached) continue // its round's failure closes it
      this.unpend(inb)
      inb.close(new Error('all-reduce service stopping'))
      if (inb.stream.status === 'open') inb.stream.abort(new Error('all-reduce service stopping'))
    }
    // lingering clean closes end now; abort frames still get their CONTROL_FLUSH_MS
    this.closing.abort(new Error('all-reduce service stopped'))
    await Promise.allSettled([...this.tasks])
  }

  /** Runs `p` in the background; stop() waits for it. */
  track (p: Promise<unknown>): void {
    const t: Promise<void> = p.then(() => {}, err => { log('background task failed: %s', message(err)) }).finally(() => { this.tasks.delete(t) })
    this.tasks.add(t)
  }

  async allReduce (options: AllReduceOptions): Promise<AllReduceResult> {
    if (this.stopped) throw new AllReduceAbortedError(this.self, ALLREDUCE_ERROR_CODES.stopped, 'the all-reduce service is stopped', { peer: this.self })
    const plan = this.plan(options)
    plan.signal?.throwIfAborted()
    const t0 = performance.now()
    if (plan.group.length === 1) {
      this.counters.rounds++
      return { tensors: plan.tensors, rank: 0, groupSize: 1, bytesSent: 0, bytesReceived: 0, ms: performance.now() - t0, waitMs: 0 }
    }
    if (this.rounds.has(plan.key)) throw new ConfigError(`an all-reduce round with key ${plan.key} is already running on this node`)
    const round = new Round(this, plan)
    this.rounds.set(plan.key, round)
    this.recentFailures.delete(plan.key)
    // streams for this key are this round's now, not a mismatched round's
    for (const [pred, m] of [...this.recentMismatches]) if (m.theirs === plan.key || m.until <= t0) this.recentMismatches.delete(pred)
    try {
      this.claimPending(round)
      const result = await round.run(t0)
      this.counters.rounds++
      return result
    } catch (err) {
      this.counters.failed++
      const failure = round.failure ?? (err as Error)
      this.recentFailures.set(plan.key, failure)
      while (this.recentFailures.size > RECENT_FAILURES) this.recentFailures.delete(this.recentFailures.keys().next().value as string)
      // before the round leaves `rounds` (finally): no stream can slip between the two
      this.rememberMismatch(round, failure)
      throw err
    } finally {
      this.rounds.delete(plan.key)
    }
  }

  private plan (o: AllReduceOptions): Plan {
    const op = o.op ?? 'mean'
    if (op !== 'mean' && op !== 'sum') throw new ConfigError(`allReduce: op must be 'mean' or 'sum', got ${String(op)}`)
    // the operation is part of the round's key: members that disagree on it are refused with a key
    // mismatch instead of producing different results
    const key = op === 'sum' ? `${roundKeyString(o.key)}:sum` : roundKeyString(o.key)
    if (!Array.isArray(o.group) || o.group.length === 0) throw new ConfigError('allReduce: group must list at least this member')
    if (o.group.length > MAX_GROUP_SIZE) throw new ConfigError(`allReduce: at most ${MAX_GROUP_SIZE} members, got ${o.group.length}`)
    const peers: PeerId[] = o.group.map(p => {
      if (typeof p !== 'string') return p
      try {
        return peerIdFromString(p)
      } catch (err) {
        throw new ConfigError(`allReduce: ${JSON.stringify(p)} is not a peer id: ${message(err)}`)
      }
    })
    const group = peers.map(p => p.toString())
    if (new Set(group).size !== group.length) throw new ConfigError('allReduce: group must not list a peer twice')
    const rank = group.indexOf(this.self)
    if (rank < 0) throw new ConfigError(`allReduce: this node (${this.self}) is not in the group`)
    if (!Array.isArray(o.tensors)) throw new ConfigError('allReduce: tensors must be an array of Float32Array')
    let total = 0
    for (const [i, t] of o.tensors.entries()) {
      if (!(t instanceof Float32Array)) throw new ConfigError(`allReduce: tensors[${i}] is a ${(t as object)?.constructor?.name}, not a Float32Array`)
      total += t.length
    }
    if (total > MAX_TOTAL_ELEMENTS) throw new ConfigError(`allReduce: at most ${MAX_TOTAL_ELEMENTS} elements per round, got ${total}`)
    const timeoutMs = positive('allReduce: timeoutMs', o.timeoutMs, this.timeoutMs)
    const tensors = o.inPlace === true ? [...o.tensors] : o.tensors.map(t => t.slice())
    return { key, op, group, peers, rank, tensors, total, timeoutMs, signal: o.signal }
  }

  // ---- inbound streams

  private accept (stream: Stream, from: string): void {
    if (this.stopped) { stream.abort(new Error('all-reduce service stopped')); return }
    const inb = new Inbound(stream, from)
    this.inbound.add(inb)
    stream.addEventListener('close', () => {
      this.inbound.delete(inb)
      if (this.pending.get(from) === inb) {
        this.unpend(inb)
        inb.close(new Error('stream closed while waiting for its round'))
      }
    }, { once: true })
    this.track(this.hello(inb))
  }

  /** Reads the stream's first header (nothing behind it yet) and routes it. */
  private async hello (inb: Inbound): Promise<void> {
    const timer = setTimeout(() => {
      inb.controller.abort(new AllReduceTimeoutError(`${inb.from} opened an all-reduce stream but sent no header within ${this.helloTimeoutMs} ms`, { peer: inb.from }))
    }, this.helloTimeoutMs)
    let frame: AllReduceFrame
    try {
      const list = await inb.next()
      if (list === undefined) { inb.close(new Error('ended before a header')); return }
      frame = decodeFrame(list, inb.from)
    } catch (err) {
      if (err instanceof AllReduceError) this.refuse(inb, err)
      else {
        inb.close(err as Error)
        if (inb.stream.status === 'open') inb.stream.abort(err as Error)
      }
      return
    } finally {
      clearTimeout(timer)
    }
    if (frame.kind !== 'header' || frame.step !== 0) {
      const what = frame.kind === 'header' ? `a header for step ${frame.step}` : `a ${frame.kind} frame`
      this.refuse(inb, new AllReduceProtocolError(frame.kind === 'header' ? 'step' : 'kind', `${inb.from} opened an all-reduce stream with ${what} instead of the header of step 0`, { peer: inb.from, step: 0 }))
      return
    }
    inb.first = frame
    this.route(inb, frame)
  }

  private route (inb: Inbound, h: HeaderFrame): void {
    if (this.stopped) { this.refuse(inb, new AllReduceAbortedError(this.self, ALLREDUCE_ERROR_CODES.stopped, 'the all-reduce service is stopping', { peer: this.self })); return }
    const round = this.rounds.get(h.key)
    if (round !== undefined) { round.offer(inb, h); return }
    const failed = this.recentFailures.get(h.key)
    if (failed !== undefined) {
      // the round already failed here: tell the sender now rather than let it wait for its timeout
      inb.close(failed)
      this.track(sendControl(inb.stream, abortFrameOf(failed, { key: h.key, self: this.self, refusal: false })))
      return
    }
    // the predecessor's stream of the round whose key mismatch failed ours, come after ours ended:
    // refused as our round would have refused it (rememberMismatch says why)
    const mismatch = this.takeMismatch(inb.from, h.key)
    if (mismatch !== undefined) {
      this.refuse(inb, new RoundKeyMismatchError(mismatch, h.key, `${inb.from} sent round ${h.key}, but this member's round with it was ${mismatch}, which failed for that key mismatch`, { peer: inb.from, step: 0 }), mismatch)
      return
    }
    // a round waiting for this peer's stream under another key: the peer is in another round
    for (const r of this.rounds.values()) {
      if (r.pred === inb.from && !r.hasInbound) {
        r.refusedPredecessor = true
        this.refuse(inb, new RoundKeyMismatchError(r.key, h.key, `${inb.from} sent round ${h.key} while this member waits for its stream of round ${r.key}`, { peer: inb.from, step: 0 }), r.key)
        return
      }
    }
    // early: its round has not begun here (the predecessor began first)
    const old = this.pending.get(inb.from)
    if (old !== undefined) {
      this.unpend(old)
      this.refuse(old, new AllReduceBusyError(`superseded by a newer stream from ${inb.from} (round ${h.key})`, { peer: inb.from }))
    } else if (this.pending.size >= this.maxPendingStreams) {
      this.refuse(inb, new AllReduceBusyError(`${this.pending.size} streams already wait for rounds not begun here; refusing ${inb.from}'s stream for round ${h.key}`, { peer: inb.from }))
      return
    }
    this.pending.set(inb.from, inb)
    // read nothing more until the round begins: what the sender pushed behind its header stays in
    // the muxer, bounded by the window it had granted (yamux grants no more to a paused stream);
    // the reader resumes the stream when the round asks for the next frame
    if (inb.stream.readStatus === 'readable') inb.stream.pause()
    inb.pendingTimer = setTimeout(() => {
      if (this.pending.get(inb.from) !== inb) return
      this.unpend(inb)
      this.refuse(inb, new AllReduceTimeoutError(`round ${h.key} did not begin here within ${this.pendingTimeoutMs} ms of ${inb.from}'s stream`, { peer: inb.from }))
    }, this.pendingTimeoutMs)
    log('holding %s\'s stream for round %s until it begins here', inb.from, h.key)
  }

  /** Hands the early streams of `round` to it, and refuses its predecessor's stream for another round. */
  private claimPending (round: Round): void {
    for (const [from, inb] of [...this.pending]) {
      const h = inb.first as HeaderFrame
      if (h.key === round.key) {
        this.unpend(inb)
        round.offer(inb, h)
      } else if (from === round.pred) {
        this.unpend(inb)
        round.refusedPredecessor = true
        this.refuse(inb, new RoundKeyMismatchError(round.key, h.key, `${from} sent round ${h.key}, but this member's round with it is ${round.key}`, { peer: from, step: 0 }), round.key)
      }
    }
  }

  /**
   * Why this exists (a refusal that reached only one of the two callers). Our round's stream is
   * refused by its successor with RoundKeyMismatchError because the successor waits for it under
   * another key K (the refusal carries K): the successor is in round K, and so is our predecessor
   * (the same member in a pair; in a larger ring, the members that agree with each other), whose
   * stream for K must be refused by us in turn, or its call ends only at its timeout. While our
   * round waits, route() and claimPending() do that. But our round fails the moment the refusal
   * arrives and leaves `rounds`; when the predecessor's stream comes after that, nothing here waits
   * for it, recentFailures knows only our own key, and route() used to hold it as the early stream
   * of a round that never begins here. That order is common, not rare: the refusal is one frame on
   * a stream already open, the predecessor's stream is a stream opening and a protocol negotiation
   * away (on warm connections, e.g. a pair that goes on after a 3-member round on the connection
   * that round left, this order was the rule; on cold ones both streams waited for the connections
   * and mostly crossed in time), and a member that begins later refuses our early stream in
   * claimPending before it opens its own.
   *
   * The same one hop further, in a ring of 3 or more: when our predecessor is the member that
   * disagrees, it refuses its own predecessor's stream, whose failure reaches us relayed as an
   * abort (originCode ERR_ROUND_KEY_MISMATCH, about our predecessor); our round ends, and our
   * predecessor's own stream, whose key the abort does not carry, may arrive only afterwards.
   *
   * So the stream still due is remembered for our predecessor (unless our round already has its
   * stream, or refused one), and refused as our round would have refused it: the one for K after a refusal,
   * the next one with another key than ours after an abort. In a pair, and after an abort, that
   * stream is certainly on its way: the member that refused is then our predecessor, and it was in
   * its round, which opens its stream as it begins. Only that one: another key (after a refusal),
   * or a second stream, may be a later round the predecessor began first, which must still wait
   * here. For as long as that stream can take: it was being opened when our round failed, so it
   * is here within the dial timeout and the hello timeout (the same configuration on every
   * member), or never. Forgotten when a round for K begins here.
   */
  private rememberMismatch (round: Round, failure: Error): void {
    // the predecessor's stream came (it agreed with us), or was refused already: nothing is due
    if (round.hasInbound || round.refusedPredecessor) return
    let theirs: string | undefined
    if (failure instanceof RoundKeyMismatchError && failure.remote) {
      theirs = failure.expected // the refusal carries the refusing member's key
      if (theirs === '' || theirs === round.key) return
    } else if (!(failure instanceof AllReduceAbortedError && failure.originCode === ALLREDUCE_ERROR_CODES.roundKeyMismatch && failure.peer === round.pred)) {
      return
    }
    const now = performance.now()
    for (const [pred, m] of [...this.recentMismatches]) if (m.until <= now) this.recentMismatches.delete(pred)
    this.recentMismatches.delete(round.pred)
    this.recentMismatches.set(round.pred, { ours: round.key, theirs, until: now + this.dialTimeoutMs + this.helloTimeoutMs })
    while (this.recentMismatches.size > RECENT_FAILURES) this.recentMismatches.delete(this.recentMismatches.keys().next().value as string)
  }

  /** The key of our failed round to refuse `from`'s stream for round `key` with, if rememberMismatch expects that stream (once). */
  private takeMismatch (from: string, key: string): string | undefined {
    const m = this.recentMismatches.get(from)
    if (m === undefined || (m.theirs !== undefined ? key !== m.theirs : key === m.ours)) return undefined
    this.recentMismatches.delete(from)
    return m.until > performance.now() ? m.ours : undefined
  }

  private unpend (inb: Inbound): void {
    if (this.pending.get(inb.from) === inb) this.pending.delete(inb.from)
    clearTimeout(inb.pendingTimer)
    inb.pendingTimer = undefined
  }

  /** Refuses a stream before reading any body: tells `onRefused` and the sender, then resets it. */
  refuse (inb: Inbound, err: AllReduceError, key?: string): void {
    this.counters.refused++
    log('refusing %s: %s', inb.from, err.message)
    try {
      this.onRefused?.(err, inb.from)
    } catch (e) {
      log.error('onRefused threw: %s', message(e))
    }
    inb.close(err)
    this.track(sendControl(inb.stream, abortFrameOf(err, { key: key ?? inb.first?.key ?? '', self: this.self, refusal: true })))
  }
}

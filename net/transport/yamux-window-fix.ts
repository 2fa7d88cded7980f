/**
 * Fewer yamux window updates: @chainsafe/libp2p-yamux 8.0.1 sends one after every data frame it
 * receives (each a noise-encrypted 12-byte frame and a socket write), about 4,000 per 256 MB at its
 * 64 KiB frames. Profiles of weight transfers and checkpoint pulls showed those writes as the
 * receiver's largest single cost after decryption. go-yamux, whose window logic this one follows
 * (auto-tuning: double the window when a full one was consumed within four round trips), only sends
 * an update once at least half the window has been consumed, or when flags must go out; this patch
 * adds that rule. The sender always keeps at least half a window to send into, so throughput is
 * unaffected and nothing can stall. Applied once per process by createPeerLibp2p. Remove when
 * upstream does the same.
 */
import { YamuxStream, StreamState } from '@chainsafe/libp2p-yamux/stream'

/** The fields of YamuxStream the window logic reads and writes (private in its typings). */
interface WindowState {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
  maxStreamWindowSize: number
  epochStart: number
  getRTT: () => number
  getSendFlags: () => number
  sendFrame: (frame: { type: number, flag: number, streamID: number, length: number }) => void
  streamId: number
}

/** yamux frame type of a window update (spec: 0x1). */
const WINDOW_UPDATE = 1

let patched = false

export function patchYamuxWindowUpdates (): void {
  if (patched) return
  patched = true
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: WindowState) => void }
  proto.sendWindowUpdate = function (this: WindowState): void {
    if (this.state === StreamState.Paused) {
      // no more data wanted for now; restart the epoch so a resume does not count the pause
      this.epochStart = Date.now()
      return
    }
    const flags = this.getSendFlags()
    const now = Date.now()
    const rtt = this.getRTT()
    if (flags === 0 && rtt > -1 && now - this.epochStart <= rtt * 4) {
      this.recvWindow = Math.min(this.recvWindow * 2, this.maxStreamWindowSize)
    }
    const delta = this.recvWindow - this.recvWindowCapacity
    // the one change: wait until half the window is used up (go-yamux does the same)
    if (flags === 0 && delta < this.recvWindow / 2) return
    this.recvWindowCapacity = this.recvWindow
    this.epochStart = now
    this.sendFrame({ type: WINDOW_UPDATE, flag: flags, streamID: this.streamId, length: delta })
  }
}

/**
 * Public surface of the transport layer: node construction, identity and swarm-key files, framed
 * streams and the typed errors they raise.
 */
export {
  createPeerLibp2p, publishChecked, clusterPrologue, MAX_GOSSIP_PAYLOAD_BYTES,
  type PeerNodeInit, type PeerLibp2p, type PeerServices
} from './create-node.js'
export {
  loadIdentity, saveIdentity, loadOrCreateIdentity,
  generateSwarmKey, parseSwarmKey, swarmKeySecret, loadSwarmKey, loadOrCreateSwarmKey, saveSwarmKey, SWARM_KEY_FILE_BYTES
} from './identity.js'
export {
  writeFrame, endFrames, waitForDrain, readFrames, readFrameLists, readOneFrame, openStream, streamEnd,
  type FrameData, type ReadFramesOptions, type OpenStreamOptions, type StreamEndKind
} from './framed-stream.js'
/** The frame length prefix's encoding (for tests that write raw frames). */
export { encodeVarint } from '../../protocols/index.js'
export {
  IdentityFileError, SwarmKeyError, StreamClosedError, FrameTooLargeError, TruncatedFrameError,
  MalformedFrameError, PeerGoneError, DialError, MessageTooLargeError, isPeerGone, secretMismatchHint,
  type KeyFileProblem, type StreamCloseReason
} from './errors.js'

/**
 * The networking both the peer (node/) and the coordinator run on: libp2p node creation, identity
 * and swarm-key files, framed streams and their errors (transport/), the weights protocol's server
 * and client (weights/), cluster gossip, and the Prometheus registry and /metrics server both
 * export their metrics with (metrics.ts). Wire formats themselves are in protocols/.
 */
export * from './transport/index.js'
export * from './weights/index.js'
export * from './allreduce/index.js'
export { ClusterGossip, type GossipInit } from './gossip.js'
export { ITERATION_SECONDS_BUCKETS, createMetricsRegistry, serveMetrics, MetricsListenError, PROMETHEUS_CONTENT_TYPE, type MetricsServer, type ServeMetricsOptions } from './metrics.js'

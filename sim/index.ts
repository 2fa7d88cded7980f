/**
 * Churn simulation: the public surface.
 *
 *   traces       generateTrace / forEachFailure / resolveFailureRate / readTrace / writeTrace;
 *                replicaTrace (per-peer failures of R replicas per stage, folded into stage events)
 *   cost model   CostModel, costModelForModel (model mode), costModelForLlm (projections)
 *   strategies   names (the cluster's, plus redundant-compute) and traits
 *   ladder       planBatch: the coordinator's planRecovery on a simulated failure batch (ladder-adapter)
 *   model mode   runModelMode (one strategy on one trace), runModelExperiment (scenarios x seeds x
 *                strategies with outputs), measureStepS
 *   projection   runProjection / formatProjection
 *   replicas     runReplicaProjection / formatReplicaProjections: R replicas per stage, failures per peer
 *   cluster mode runClusterExperiment: a real coordinator and peer processes on one machine
 *   outputs      summarize / formatSummary / timeToTarget / writeRunFiles, linePlot, linePlotPng / renderSvg (resvg), ProgressBar
 */
export * from './errors.js'
export * from './trace.js'
export * from './replica-trace.js'
export * from './cost-model.js'
export * from './cost-profiles.js'
export * from './strategies.js'
export * from './ladder-adapter.js'
export * from './model-mode.js'
export * from './projection.js'
export * from './replicas.js'
export * from './report.js'
export * from './svg.js'
export * from './png.js'
export * from './progress.js'
export * from './presets.js'
export * from './paper.js'
export * from './reproduce.js'
export { measureStepS, paperProxy, runModelExperiment, scenarioClock, retimeFailureFree, type ExperimentConfig, type ExperimentResult, type PaperProxy, type ScenarioResult } from './experiment.js'
export {
  runClusterExperiment, clusterTimeToTarget, type ClusterExperimentConfig, type ClusterExperimentResult
} from './cluster-experiment.js'
export type { ClusterRow, ClusterRun } from './cluster-mode.js'

/**
 * The model layer's public surface: configuration, compute backend, byte tokenizer and Brown-corpus
 * data, parameter layout, the pipeline stage and its serialized state (safetensors), recovery
 * arithmetic and the local pipeline trainer. Its typed errors are in common/.
 *
 * Named exports, not `export *`: the surface is what other folders use, and layers.ts and
 * transformer.ts both export a `Params` type. Tests may import the internals (adam, layers, ops,
 * transformer) directly.
 */
export { DEFAULT_MODEL, DEFAULT_TRAIN, resolveModelConfig, resolveTrainConfig, type ModelConfig, type TrainConfig } from './config.js'
export { BACKENDS, initBackend, parseBackendName, type BackendName, type InitBackendOptions } from './backend.js'
export {
  VOCAB_SIZE, encode, decode, loadBrownCorpus, sampleBatch, validationBatches,
  type Batch, type Corpus, type LoadCorpusOptions
} from './data.js'
export { hashKey, mulberry32, normalSampler, randInt } from './rng.js'
export {
  countParams, embedSpecs, headSpecs, partSpecs, stageLayout, stageSpecs,
  type ParamSpec, type Part, type StageLayout
} from './params.js'
export { laneMicrobatches, route, type Hop } from './schedule.js'
export { hostCopy } from './ops.js'
export {
  assertFinite, decodeSafetensors, encodeSafetensors,
  type DType, type DecodeOptions, type HostTensor, type TensorSet
} from './safetensors.js'
export { Stage, type StageInit, type StepResult } from './stage.js'
export {
  META_TENSOR, OPTIM_M, OPTIM_V, decodeStageState, encodeStageState, encodeStageStateParts, exportStageState,
  loadStageState, mergeTensorSets, metaToTensor, stateFromTensorSet, stateToTensorSet,
  type ExportOptions, type StageMeta, type StageState
} from './state.js'
export {
  DEFAULT_LR_SCALE, checkfreeAverage, mirrorHolder, mirroredNames, mirroredOwners, neighbourCopy, shadowHolder,
  shadowedStage, type NamedValues, type Weighting
} from './recovery.js'
export {
  LocalPipelineTrainer, batchTensors, evaluateBatch, runMicrobatch,
  type IterationResult, type LocalTrainerInit
} from './trainer.js'

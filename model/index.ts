/**
 * The model layer's public surface: configuration, compute backend, tokenizers (byte, gpt2, hf:PATH),
 * Brown-corpus data and your own text (loadTokenStore: text/JSONL through a token shard cache),
 * parameter layout, the pipeline stage and its serialized state (safetensors), recovery arithmetic
 * and the local pipeline trainer. Its typed errors are in common/.
 *
 * Named exports, not `export *`: the surface is what other folders use, and layers.ts and
 * transformer.ts both export a `Params` type. Tests may import the internals (adam, layers, ops,
 * transformer) directly.
 */
export { DEFAULT_MODEL, DEFAULT_TRAIN, modelConfigDiff, resolveModelConfig, resolveTrainConfig, type ModelConfig, type TrainConfig } from './config.js'
export { CONFIG_PRESETS, CONFIG_PRESET_NAMES, configPreset, type ConfigPreset, type ConfigPresetName } from './presets.js'
export { BACKENDS, initBackend, parseBackendName, type BackendName, type InitBackendOptions } from './backend.js'
export {
  VOCAB_SIZE, encode, decode, isTokenArray, loadBrownCorpus, loadBrownDocuments, sampleBatch, validationBatches,
  type Batch, type Corpus, type LoadCorpusOptions, type TokenArray
} from './data.js'
export {
  BYTE_TOKENIZER, GPT2_END_OF_TEXT, GPT2_VOCAB_SIZE, TOKENIZER_SPECS, loadGpt2TokenBytes, loadTokenizer, parseTokenizerSpec,
  type TokenIds, type Tokenizer
} from './tokenizers/index.js'
export {
  buildTokenStore, dataFingerprint, describeTokenStore, listSources, loadTokenStore, readDocuments, tokenDtype,
  type LoadTokenStoreOptions, type SourceDocument, type SourceFile, type TokenStore
} from './corpus.js'
export { hashKey, mulberry32, normalSampler, randInt } from './rng.js'
export {
  countParams, embedSpecs, headSpecs, partSpecs, stageLayout, stageSpecs,
  type ParamSpec, type Part, type StageLayout
} from './params.js'
export { checkReplicas, laneCount, laneMicrobatches, lossMicrobatchesByStage, PLUS_LAYOUTS, replicaMicrobatches, route, servingReplica, sharedPart, type Hop, type PlusLayout } from './schedule.js'
export { hostCopy } from './ops.js'
export {
  assertFinite, decodeSafetensors, encodeSafetensors,
  type DType, type DecodeOptions, type HostTensor, type TensorSet
} from './safetensors.js'
export { Stage, type StageInit, type StepResult } from './stage.js'
export {
  META_TENSOR, OPTIM_M, OPTIM_V, decodeStageState, encodeStageState, encodeStageStateParts, exportStageState,
  loadStageState, mergeTensorSets, metaToTensor, stageDigest, stateFromTensorSet, stateToTensorSet,
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
export {
  HF_BASE_PREFIX, HF_METADATA, HF_NAMES, bpeMerges, bytesToUnicode, byteTokenizerFiles, gpt2TokenizerFiles, hfConfig, toHfTensors
} from './export-hf.js'
export {
  InferenceModel, argmax, evalWindows, evaluateTokens, generate, sampleToken,
  type EvalResult, type EvalWindow, type GenerateOptions, type SampleOptions
} from './inference.js'

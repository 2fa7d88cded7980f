/**
 * Data and tokenizer flags shared by `train`, `coordinator` and `peer` (docs/data.md), and the one
 * function that turns them into token arrays: the Brown corpus with bytes unless --data or
 * --tokenizer say otherwise.
 */
import {
  buildTokenStore, describeTokenStore, loadBrownCorpus, loadBrownDocuments, loadTokenStore, loadTokenizer, parseTokenizerSpec,
  TOKENIZER_SPECS, type TokenArray
} from '../model/index.js'
import { DEFAULT_DATA_IDENTITY } from '../protocols/index.js'
import { UsageError } from './errors.js'
import type { FlagSpec } from './flags.js'

export const DATA_FLAGS = {
  data: { type: 'string' },
  'data-field': { type: 'string' },
  'data-cache': { type: 'string' },
  tokenizer: { type: 'string' }
} as const satisfies FlagSpec

export const DATA_HELP = `data (default: the Brown corpus, byte tokens):
  --data PATH          a text file, a JSONL file, or a directory of .txt/.md/.jsonl/.gz files;
                       a text file is one document, a JSONL line is one; whole documents are
                       held out for validation
  --data-field F       the JSONL field holding the text (default text)
  --data-cache DIR     where the tokenised shard cache goes (default <PATH's dir>/.spotpipe-cache)
  --tokenizer T        ${TOKENIZER_SPECS} (default byte); the model's vocabulary becomes the
                       tokenizer's (byte 256, gpt2 50257)
`


export interface LoadedData {
  train: TokenArray
  validation: TokenArray
  vocab: number
  /** Names the data and tokenizer exactly (model/corpus.ts); DEFAULT_DATA_IDENTITY's for the default. */
  fingerprint: string
  tokenizer: string
  /** Whether --data or --tokenizer was given (false: the default Brown corpus with bytes). */
  custom: boolean
  /** One line saying what was loaded (absent for the default). */
  description?: string
}

/**
 * Loads what the data flags name; `defaultTokenizer` (a preset's) applies when --tokenizer is not
 * given. Throws DataError (common/errors.ts) or UsageError.
 */
export async function dataFromFlags (v: Record<string, unknown>, defaultTokenizer = 'byte'): Promise<LoadedData> {
  const dataPath = v.data != null ? String(v.data) : undefined
  const spec = v.tokenizer != null ? String(v.tokenizer) : defaultTokenizer
  try {
    parseTokenizerSpec(spec)
  } catch (err) {
    throw new UsageError(`--tokenizer: ${(err as Error).message}`)
  }
  if (dataPath == null && spec === 'byte') {
    const corpus = loadBrownCorpus()
    return { train: corpus.train, validation: corpus.validation, vocab: 256, ...DEFAULT_DATA_IDENTITY, custom: false }
  }
  const store = dataPath != null
    ? await loadTokenStore(dataPath, spec, {
      field: v['data-field'] != null ? String(v['data-field']) : undefined,
      cacheDir: v['data-cache'] != null ? String(v['data-cache']) : undefined
    })
    : buildTokenStore(loadBrownDocuments(), await loadTokenizer(spec))
  return {
    train: store.train,
    validation: store.validation,
    vocab: store.vocabSize,
    fingerprint: store.fingerprint,
    tokenizer: store.tokenizer.fingerprint,
    custom: true,
    description: describeTokenStore(store)
  }
}

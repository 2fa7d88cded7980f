/**
 * `gpt2`: GPT-2's byte-level BPE (tiktoken's `r50k_base`, vocabulary 50,257, `<|endoftext|>` =
 * 50256) from the npm package `gpt-tokenizer`, which ships the merge ranks inside the package: no
 * download at run time. Loaded on first use (the ranks are a 1 MB module), so runs that never ask
 * for GPT-2 do not pay for it. See docs/data.md for why this package.
 *
 * Text is encoded as ordinary text: a literal "<|endoftext|>" in a document becomes the 7 ordinary
 * tokens of its characters, never the special id, so data cannot forge document boundaries (the
 * corpus loader places 50256 between documents itself). decode(50256) is "<|endoftext|>".
 */
import { createRequire } from 'node:module'
import { DataError } from '../../common/index.js'
import { checkIds, sha256Hex, type Tokenizer } from './types.js'

export const GPT2_VOCAB_SIZE = 50257
export const GPT2_END_OF_TEXT = 50256

const PACKAGE = 'gpt-tokenizer'

function packageVersion (): string {
  try {
    const pkg = createRequire(import.meta.url)(`${PACKAGE}/package.json`) as { version: string }
    return pkg.version
  } catch (err) {
    throw new DataError(`cannot locate the ${PACKAGE} package (npm install): ${(err as Error).message}`, 'ERR_TOKENIZER')
  }
}

let loading: Promise<Tokenizer> | undefined

/** The GPT-2 tokenizer; the package's module is imported once per process. */
export async function loadGpt2Tokenizer (): Promise<Tokenizer> {
  loading ??= (async () => {
    const version = packageVersion()
    let bpe: typeof import('gpt-tokenizer/encoding/r50k_base')
    try {
      bpe = await import('gpt-tokenizer/encoding/r50k_base')
    } catch (err) {
      throw new DataError(`cannot load ${PACKAGE}'s r50k_base encoding: ${(err as Error).message}`, 'ERR_TOKENIZER')
    }
    if (bpe.vocabularySize !== GPT2_VOCAB_SIZE) {
      throw new DataError(`${PACKAGE}@${version} r50k_base has ${bpe.vocabularySize} tokens, expected ${GPT2_VOCAB_SIZE}`, 'ERR_TOKENIZER')
    }
    const plain = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() }
    const tokenizer: Tokenizer = Object.freeze({
      name: 'gpt2',
      vocabSize: GPT2_VOCAB_SIZE,
      endOfText: GPT2_END_OF_TEXT,
      fingerprint: sha256Hex('spotpipe-tokenizer', 'gpt2', 'r50k_base', `${PACKAGE}@${version}`),
      encode: (text: string): number[] => bpe.encode(text, plain),
      decode: (ids: ArrayLike<number>): string => {
        checkIds(ids, GPT2_VOCAB_SIZE, 'gpt2 decode')
        return bpe.decode(Array.isArray(ids) ? ids : Array.from(ids))
      }
    })
    return tokenizer
  })()
  try {
    return await loading
  } catch (err) {
    loading = undefined
    throw err
  }
}

/**
 * The bytes of every GPT-2 id below 50256 (`<|endoftext|>`), from the merge ranks gpt-tokenizer
 * ships (an id's entry is its text when that is valid UTF-8, else its bytes): what GPT-2's
 * vocab.json and merges.txt are written from (model/export-hf.ts gpt2TokenizerFiles).
 */
export async function loadGpt2TokenBytes (): Promise<Uint8Array[]> {
  let ranks: Array<string | number[]>
  try {
    ranks = (await import('gpt-tokenizer/bpeRanks/r50k_base')).default
  } catch (err) {
    throw new DataError(`cannot load ${PACKAGE}'s r50k_base ranks: ${(err as Error).message}`, 'ERR_TOKENIZER')
  }
  if (ranks.length !== GPT2_END_OF_TEXT) throw new DataError(`${PACKAGE} r50k_base lists ${ranks.length} ranked tokens, expected ${GPT2_END_OF_TEXT}`, 'ERR_TOKENIZER')
  return ranks.map(r => typeof r === 'string' ? new Uint8Array(Buffer.from(r, 'utf8')) : Uint8Array.from(r))
}

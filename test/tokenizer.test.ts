import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError, DataError, SpotpipeError } from '../common/index.js'
import { decode, encode, loadBrownDocuments } from '../model/data.js'
import {
  BYTE_TOKENIZER, GPT2_END_OF_TEXT, GPT2_VOCAB_SIZE, loadGpt2Tokenizer, loadHfTokenizer, loadTokenizer, parseTokenizerSpec,
  type Tokenizer
} from '../model/tokenizers/index.js'

const dir = mkdtempSync(join(tmpdir(), 'spotpipe-tok-'))
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

const UNICODE = [
  'naïve café — “quoted” Ünïcödé, 日本語のテキスト, Ελληνικά, עברית',
  '👍🏽 family 👨‍👩‍👧‍👦 flags 🇩🇪🇯🇵 robot 🤖 and a lone combining mark e\u0301',
  '  two  spaces\n\n\ttab\r\nend ',
  "it's they'll I'M 12345 3.14 <|endoftext|> <|not special|>"
]

function caught (fn: () => unknown): SpotpipeError {
  try { fn() } catch (err) { expect(err).toBeInstanceOf(SpotpipeError); return err as SpotpipeError }
  throw new Error('expected a throw')
}

/** A tiny WordLevel tokenizer.json, as `tokenizers` writes one (lower-casing, whitespace split). */
const WORD_LEVEL = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [
    { id: 0, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 1, content: '[EOS]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }
  ],
  normalizer: { type: 'Lowercase' },
  pre_tokenizer: { type: 'Whitespace' },
  post_processor: null,
  decoder: null,
  model: { type: 'WordLevel', vocab: { '[UNK]': 0, '[EOS]': 1, the: 2, cat: 3, sat: 4, on: 5, mat: 6, '.': 7 }, unk_token: '[UNK]' }
}

/** A tiny byte-level BPE tokenizer.json (GPT-2's layout: Ġ is a space) with two merges and an end-of-text token. */
const BYTE_BPE = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [{ id: 9, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
  normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: null,
  decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  model: {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    vocab: { a: 0, b: 1, c: 2, 'Ġ': 3, ab: 4, 'Ġab': 5, abc: 6 },
    merges: ['a b', 'Ġ ab', 'ab c']
  }
}

function writeJson (name: string, value: unknown): string {
  const file = join(dir, name)
  mkdirSync(join(file, '..'), { recursive: true })
  writeFileSync(file, JSON.stringify(value))
  return file
}

describe('gpt2 tokenizer (gpt-tokenizer r50k_base, bundled)', () => {
  it('gives the known GPT-2 ids and vocabulary', async () => {
    const t = await loadTokenizer('gpt2')
    expect(t).toBe(await loadGpt2Tokenizer()) // loaded once
    expect(t.name).toBe('gpt2')
    expect(t.vocabSize).toBe(50257)
    expect(GPT2_VOCAB_SIZE).toBe(50257)
    expect(Array.from(t.encode('Hello world'))).toEqual([15496, 995])
    expect(Array.from(t.encode(' the'))).toEqual([262])
    expect(Array.from(t.encode('Hello, world!'))).toEqual([15496, 11, 995, 0])
    expect(t.endOfText).toBe(50256)
    expect(GPT2_END_OF_TEXT).toBe(50256)
    expect(t.decode([50256])).toBe('<|endoftext|>')
    // Text is plain text: a literal "<|endoftext|>" is not the special id.
    const literal = Array.from(t.encode('<|endoftext|>'))
    expect(literal).not.toContain(50256)
    expect(literal).toEqual([27, 91, 437, 1659, 5239, 91, 29])
    expect(t.decode(literal)).toBe('<|endoftext|>')
    expect(t.fingerprint).toMatch(/^[0-9a-f]{64}$/)
  })

  it('round-trips non-ASCII text, emoji and whitespace exactly, from any id array type', async () => {
    const t = await loadTokenizer('gpt2')
    for (const s of UNICODE) {
      const ids = t.encode(s)
      expect(t.decode(ids)).toBe(s)
      expect(t.decode(Uint16Array.from(ids))).toBe(s)
      expect(t.decode(Uint32Array.from(ids))).toBe(s)
    }
    const doc = loadBrownDocuments()[0].text
    expect(t.decode(t.encode(doc))).toBe(doc)
    expect(t.decode([])).toBe('')
  })

  it('rejects ids outside the vocabulary on decode', async () => {
    const t = await loadTokenizer('gpt2')
    const e = caught(() => t.decode([15496, 50257]))
    expect(e).toBeInstanceOf(DataError)
    expect(e.code).toBe('ERR_DATA_TOKEN_RANGE')
    expect(e.message).toMatch(/token id 50257 at position 1/)
    expect(caught(() => t.decode([-1])).code).toBe('ERR_DATA_TOKEN_RANGE')
  })
})

describe('byte tokenizer', () => {
  it('is model/data.ts encode/decode: UTF-8 bytes, vocabulary 256, no end-of-text id', () => {
    const t = BYTE_TOKENIZER
    expect(t.name).toBe('byte')
    expect(t.vocabSize).toBe(256)
    expect(t.endOfText).toBeUndefined()
    for (const s of [...UNICODE, loadBrownDocuments()[3].text]) {
      const ids = t.encode(s)
      expect(ids).toBeInstanceOf(Uint8Array)
      expect(Array.from(ids)).toEqual(Array.from(encode(s)))
      expect(t.decode(ids)).toBe(s)
      expect(t.decode(Array.from(ids))).toBe(decode(encode(s)))
    }
    expect(caught(() => t.decode([256])).code).toBe('ERR_DATA_TOKEN_RANGE')
  })

  it('has a fingerprint distinct from the others', async () => {
    const gpt2 = await loadTokenizer('gpt2')
    const hf = loadHfTokenizer(writeJson('fp/tokenizer.json', WORD_LEVEL))
    const fps = [BYTE_TOKENIZER.fingerprint, gpt2.fingerprint, hf.fingerprint]
    expect(new Set(fps).size).toBe(3)
    expect((await loadTokenizer('byte')).fingerprint).toBe(BYTE_TOKENIZER.fingerprint)
  })
})

describe('hf:PATH tokenizer (a tokenizer.json written here)', () => {
  it('loads a WordLevel tokenizer.json and encodes as expected', async () => {
    const file = writeJson('wl/tokenizer.json', WORD_LEVEL)
    const t = await loadTokenizer(`hf:${file}`)
    expect(t.name).toBe(`hf:${file}`)
    expect(t.vocabSize).toBe(8)
    expect(Array.from(t.encode('The cat sat on the mat.'))).toEqual([2, 3, 4, 5, 2, 6, 7])
    expect(Array.from(t.encode('the dog sat'))).toEqual([2, 0, 4]) // dog is unknown
    expect(t.endOfText).toBe(1) // [EOS]
    expect(t.decode([2, 3, 4])).toBe('the cat sat')
    expect(t.decode([])).toBe('')
    expect(caught(() => t.decode([8])).code).toBe('ERR_DATA_TOKEN_RANGE')
  })

  it('loads a byte-level BPE tokenizer.json from its directory, merges applied, lossless', async () => {
    writeJson('bpe/tokenizer.json', BYTE_BPE)
    const t = await loadTokenizer(`hf:${join(dir, 'bpe')}`)
    expect(t.vocabSize).toBe(10) // ids 0..6 and the added token 9
    expect(Array.from(t.encode('ab abc'))).toEqual([4, 5, 2])
    expect(Array.from(t.encode('abc'))).toEqual([6])
    expect(t.endOfText).toBe(9) // <|endoftext|> found among the added tokens
    expect(t.decode([4, 5, 2])).toBe('ab abc')
    expect(t.decode([5, 5, 9])).toBe(' ab ab<|endoftext|>')
  })

  it('takes the end-of-text token from tokenizer_config.json, and fingerprints both files', () => {
    const file = writeJson('cfg/tokenizer.json', WORD_LEVEL)
    const before = loadHfTokenizer(file)
    writeJson('cfg/tokenizer_config.json', { eos_token: '.' })
    const t = loadHfTokenizer(file)
    expect(t.endOfText).toBe(7)
    expect(t.fingerprint).not.toBe(before.fingerprint)
    const changed = writeJson('cfg2/tokenizer.json', { ...WORD_LEVEL, model: { ...WORD_LEVEL.model, vocab: { ...WORD_LEVEL.model.vocab, dog: 8 } } })
    const t2 = loadHfTokenizer(changed)
    expect(t2.vocabSize).toBe(9)
    expect(Array.from(t2.encode('the dog'))).toEqual([2, 8])
    expect(t2.fingerprint).not.toBe(before.fingerprint)
    expect(loadHfTokenizer(writeJson('cfg3/tokenizer.json', WORD_LEVEL)).fingerprint).toBe(before.fingerprint) // content, not path
  })

  it('throws typed errors for a missing, malformed or incomplete tokenizer.json', () => {
    let e = caught(() => loadHfTokenizer(join(dir, 'nope', 'tokenizer.json')))
    expect(e).toBeInstanceOf(DataError)
    expect(e.code).toBe('ERR_TOKENIZER')
    expect(e.message).toMatch(/does not exist/)
    mkdirSync(join(dir, 'empty-dir'), { recursive: true })
    e = caught(() => loadHfTokenizer(join(dir, 'empty-dir')))
    expect(e.code).toBe('ERR_TOKENIZER')
    expect(e.message).toMatch(/empty-dir\/tokenizer\.json/)
    writeFileSync(join(dir, 'broken.json'), '{"model": ')
    e = caught(() => loadHfTokenizer(join(dir, 'broken.json')))
    expect(e.code).toBe('ERR_TOKENIZER')
    expect(e.message).toMatch(/broken\.json is not valid JSON/)
    e = caught(() => loadHfTokenizer(writeJson('novocab.json', { model: { type: 'BPE' } })))
    expect(e.message).toMatch(/model\.vocab is missing/)
    // No unk token: a word outside the vocabulary has no id.
    const noUnk: Tokenizer = loadHfTokenizer(writeJson('nounk/tokenizer.json', {
      ...WORD_LEVEL, added_tokens: [], model: { type: 'WordLevel', vocab: { the: 0, cat: 1 } }
    }))
    e = caught(() => noUnk.encode('the dog'))
    expect(e.code).toBe('ERR_TOKENIZER')
    expect(e.message).toMatch(/no id for token "dog"/)
  })
})

describe('tokenizer specs', () => {
  it('parses byte, gpt2 and hf:PATH and rejects anything else', async () => {
    expect(parseTokenizerSpec('byte')).toEqual({ kind: 'byte' })
    expect(parseTokenizerSpec('gpt2')).toEqual({ kind: 'gpt2' })
    expect(parseTokenizerSpec('hf:/x/tokenizer.json')).toEqual({ kind: 'hf', path: '/x/tokenizer.json' })
    expect(() => parseTokenizerSpec('hf:')).toThrow(ConfigError)
    expect(() => parseTokenizerSpec('GPT2')).toThrow(/unknown tokenizer "GPT2" \(expected byte \| gpt2 \| hf:PATH\)/)
    await expect(loadTokenizer('sentencepiece')).rejects.toThrow(ConfigError)
  })
})

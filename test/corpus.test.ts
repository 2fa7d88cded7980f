import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { DataError, SpotpipeError } from '../common/index.js'
import {
  buildTokenStore, describeTokenStore, listSources, loadTokenStore, type TokenStore
} from '../model/corpus.js'
import { loadBrownCorpus, loadBrownDocuments, sampleBatch, validationBatches } from '../model/data.js'
import { BYTE_TOKENIZER, loadTokenizer, type Tokenizer } from '../model/tokenizers/index.js'
import { LocalPipelineTrainer } from '../model/trainer.js'
import { killAll, spotpipe } from './helpers/procs.js'

const root = mkdtempSync(join(tmpdir(), 'spotpipe-corpus-'))
afterAll(() => { rmSync(root, { recursive: true, force: true }) })
afterEach(async () => { await killAll() })

let n = 0
/** A fresh directory `<root>/<k>/data` with `files` written into it (Buffers as given, strings as UTF-8). */
function dataDir (files: Record<string, string | Buffer>): string {
  const dir = join(root, String(n++), 'data')
  mkdirSync(dir, { recursive: true })
  for (const [name, body] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true })
    writeFileSync(join(dir, name), body)
  }
  return dir
}

/** A tokenizer that counts its encode calls. */
function counting (base: Tokenizer): { tok: Tokenizer, calls: () => number } {
  let calls = 0
  return { tok: { ...base, encode: (t: string) => { calls++; return base.encode(t) } }, calls: () => calls }
}

async function rejection (p: Promise<unknown>): Promise<SpotpipeError> {
  try { await p } catch (err) { expect(err).toBeInstanceOf(DataError); return err as SpotpipeError }
  throw new Error('expected a rejection')
}

/** Split `tokens` at every occurrence of `sep` (a single id). */
function splitAt (tokens: ArrayLike<number>, sep: number): number[][] {
  const out: number[][] = [[]]
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === sep) out.push([])
    else out[out.length - 1].push(tokens[i])
  }
  return out
}

const docs = loadBrownDocuments()
const text = (i: number, chars = 3000): string => docs[i].text.slice(0, chars)

describe('sources', () => {
  it('walks a directory recursively in sorted path order, skipping hidden names and other extensions', () => {
    const dir = dataDir({
      'b.txt': 'b', 'a/z.md': 'z', 'a/y.txt.gz': gzipSync('y'), 'a/x.jsonl': '{"text":"x"}',
      '.hidden.txt': 'h', '.spotpipe-cache/c.txt': 'c', 'notes.json': '{}', 'img.png': 'p', 'A.txt': 'upper'
    })
    const files = listSources(dir)
    expect(files.map(f => f.rel)).toEqual(['A.txt', 'a/x.jsonl', 'a/y.txt.gz', 'a/z.md', 'b.txt'])
    expect(files.map(f => [f.format, f.gzip])).toEqual([['text', false], ['jsonl', false], ['text', true], ['text', false], ['text', false]])
    const one = listSources(join(dir, 'a', 'x.jsonl'))
    expect(one.map(f => [f.rel, f.format])).toEqual([['x.jsonl', 'jsonl']])
  })
})

describe('loadTokenStore', () => {
  it('tokenises text files once, then reuses the shard cache until a source changes', async () => {
    const dir = dataDir({ 'one.txt': text(0), 'two.md': text(1), 'sub/three.txt': text(2) })
    const c = counting(BYTE_TOKENIZER)
    const first = await loadTokenStore(dir, c.tok)
    expect(first.cache).toBe('miss')
    expect(c.calls()).toBe(3 + 1) // three documents, and the "\n\n" separator
    expect(first.documents).toBe(3)
    expect(first.sources).toBe(3)
    expect(first.tokens).toBe(3 * 3000) // ASCII: one byte per character
    expect(first.fingerprint).toMatch(/^[0-9a-f]{64}$/)
    expect(first.cachePath).toBe(join(dir, '..', '.spotpipe-cache', `${first.fingerprint}.tokens`))
    expect(first.train).toBeInstanceOf(Uint8Array)
    const mtime = statSync(first.cachePath!).mtimeMs

    const second = await loadTokenStore(dir, c.tok)
    expect(second.cache).toBe('hit')
    expect(c.calls()).toBe(4 + 1) // only the separator: no document re-tokenised
    expect(statSync(first.cachePath!).mtimeMs).toBe(mtime) // not rewritten
    expect(second.fingerprint).toBe(first.fingerprint)
    expect(Array.from(second.train)).toEqual(Array.from(first.train))
    expect(Array.from(second.validation)).toEqual(Array.from(first.validation))
    expect(second.validationDocs).toEqual(first.validationDocs)

    // Same size, same mtime, different content: the content hash still sees it.
    const path = join(dir, 'two.md')
    const st = statSync(path)
    writeFileSync(path, text(1).toUpperCase())
    utimesSync(path, st.atime, st.mtime)
    const third = await loadTokenStore(dir, c.tok)
    expect(third.cache).toBe('miss')
    expect(third.fingerprint).not.toBe(first.fingerprint)
    expect(c.calls()).toBe(5 + 3 + 1)
    // A new file changes it too, as does another tokenizer or field.
    writeFileSync(join(dir, 'four.txt'), text(3))
    const fourth = await loadTokenStore(dir, c.tok)
    expect(fourth.cache).toBe('miss')
    expect(fourth.documents).toBe(4)
    const gpt2 = await loadTokenStore(dir, 'gpt2')
    expect(gpt2.cache).toBe('miss')
    expect(gpt2.train).toBeInstanceOf(Uint16Array)
    expect(gpt2.vocabSize).toBe(50257)
    expect((await loadTokenStore(dir, 'gpt2', { field: 'body' })).fingerprint).not.toBe(gpt2.fingerprint)
    expect((await loadTokenStore(dir, 'gpt2')).cache).toBe('hit')
    expect(readdirSync(join(dir, '..', '.spotpipe-cache')).filter(f => f.endsWith('.tmp'))).toEqual([]) // atomic writes leave no temp files
  })

  it('rebuilds a corrupt or truncated cache file, and honours --data-cache', async () => {
    const dir = dataDir({ 'a.txt': text(4), 'b.txt': text(5) })
    const cacheDir = join(root, 'elsewhere-cache')
    const first = await loadTokenStore(dir, 'byte', { cacheDir })
    expect(first.cachePath!.startsWith(cacheDir)).toBe(true)
    const bytes = readFileSync(first.cachePath!)
    writeFileSync(first.cachePath!, bytes.subarray(0, bytes.length - 7))
    const again = await loadTokenStore(dir, 'byte', { cacheDir })
    expect(again.cache).toBe('miss')
    expect(Array.from(again.train)).toEqual(Array.from(first.train))
    writeFileSync(first.cachePath!, 'garbage')
    expect((await loadTokenStore(dir, 'byte', { cacheDir })).cache).toBe('miss')
    expect((await loadTokenStore(dir, 'byte', { cacheDir })).cache).toBe('hit')
  })

  it('reads JSONL by field, one document per line, blank lines skipped, names file:line', async () => {
    const lines = [
      JSON.stringify({ id: 1, text: 'ignored', body: 'alpha document' }),
      '',
      JSON.stringify({ body: 'beta document', text: 'no' }),
      '   ',
      JSON.stringify({ body: 'gamma document' }) + '\r'
    ]
    const dir = dataDir({ 'part.jsonl': lines.join('\n') + '\n' })
    const store = await loadTokenStore(join(dir, 'part.jsonl'), 'gpt2', { field: 'body', validationDocs: 1 })
    expect(store.documents).toBe(3)
    expect([...store.trainDocs, ...store.validationDocs].sort()).toEqual(['part.jsonl:1', 'part.jsonl:3', 'part.jsonl:5'])
    const tok = store.tokenizer
    const all = [...splitAt(store.train, 50256), ...splitAt(store.validation, 50256)].map(ids => tok.decode(ids)).sort()
    expect(all).toEqual(['alpha document', 'beta document', 'gamma document'])
    // The default field is `text`.
    const byText = await loadTokenStore(dataDir({ 'x.jsonl': '{"text":"one"}\n{"text":"two"}' }), 'byte')
    expect(byText.documents).toBe(2)
  })

  it('reads gzipped text and JSONL like the plain files', async () => {
    const jsonl = Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: text(10 + i, 500) })).join('\n')
    const plain = dataDir({ 'a.txt': text(6), 'b.jsonl': jsonl })
    const gz = dataDir({ 'a.txt.gz': gzipSync(text(6)), 'b.jsonl.gz': gzipSync(jsonl) })
    const p = await loadTokenStore(plain, 'gpt2')
    const g = await loadTokenStore(gz, 'gpt2')
    expect(g.documents).toBe(7)
    expect(g.tokens).toBe(p.tokens)
    expect(Array.from(g.train)).toEqual(Array.from(p.train))
    expect(g.validationDocs.map(d => d.replace('.gz', ''))).toEqual(p.validationDocs)
    expect(g.fingerprint).not.toBe(p.fingerprint) // the raw bytes differ
  })

  it('holds out whole documents only, deterministically by seed', async () => {
    const jsonl = Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: `Document ${i}. ${text(i, 400)}` })).join('\n')
    const dir = dataDir({ 'docs.jsonl': jsonl })
    const gpt2 = await loadTokenizer('gpt2')
    const expected = new Map(Array.from({ length: 40 }, (_, i) => [`docs.jsonl:${i + 1}`, `Document ${i}. ${text(i, 400)}`]))
    const check = (s: TokenStore): void => {
      expect(s.validationDocs.length).toBe(s.validationDocCount)
      expect(s.trainDocs.length + s.validationDocs.length).toBe(40)
      const held = new Set(s.validationDocs)
      expect(s.trainDocs.some(d => held.has(d))).toBe(false)
      for (const [names, tokens] of [[s.trainDocs, s.train], [s.validationDocs, s.validation]] as const) {
        const pieces = splitAt(tokens, 50256)
        expect(pieces.length).toBe(names.length)
        pieces.forEach((ids, i) => {
          expect(ids).toEqual(Array.from(gpt2.encode(expected.get(names[i])!))) // a whole document, nothing more
        })
      }
    }
    const a = await loadTokenStore(dir, gpt2)
    expect(a.validationDocCount).toBe(2) // 5% of 40
    check(a)
    const again = await loadTokenStore(dir, gpt2)
    expect(again.validationDocs).toEqual(a.validationDocs)
    const other = await loadTokenStore(dir, gpt2, { seed: 3, validationDocs: 8 })
    check(other)
    expect(other.validationDocs.length).toBe(8)
    expect((await loadTokenStore(dir, gpt2, { seed: 3, validationDocs: 8 })).validationDocs).toEqual(other.validationDocs)
    expect((await loadTokenStore(dir, gpt2, { seed: 1 })).validationDocs).not.toEqual(a.validationDocs)
    expect(describeTokenStore(again)).toMatch(new RegExp(`^data ${a.fingerprint} 40 documents \\(38 train, 2 validation\\) ${a.tokens} tokens .* tokenizer gpt2 vocab 50257 cache hit `))
  })

  it('equals loadBrownCorpus for the Brown documents with the byte tokenizer', () => {
    const store = buildTokenStore(docs, BYTE_TOKENIZER)
    const brown = loadBrownCorpus()
    expect(store.cache).toBe('none')
    expect(store.validationDocCount).toBe(25)
    expect(store.validationDocs).toEqual(brown.validationDocs)
    expect(store.trainDocs).toEqual(brown.trainDocs)
    expect(store.train).toBeInstanceOf(Uint8Array)
    expect(Buffer.from(store.train).equals(Buffer.from(brown.train))).toBe(true)
    expect(Buffer.from(store.validation).equals(Buffer.from(brown.validation))).toBe(true)
  })

  it('samples any token array type identically, and uses Uint32 ids above 65,536', async () => {
    const brown = loadBrownCorpus().validation
    const key = { seed: 5, iteration: 9, microbatch: 2, replica: 1 }
    const a = sampleBatch(brown, key, 4, 32)
    for (const arr of [Uint16Array.from(brown), Uint32Array.from(brown)]) {
      const b = sampleBatch(arr, key, 4, 32)
      expect(Array.from(b.inputs)).toEqual(Array.from(a.inputs))
      expect(Array.from(b.targets)).toEqual(Array.from(a.targets))
      expect(Array.from(validationBatches(arr, 2, 2, 16, 1)[1].inputs)).toEqual(Array.from(validationBatches(brown, 2, 2, 16, 1)[1].inputs))
    }
    // A 70,000-token vocabulary: ids above 65,535 survive the cache.
    const big: Tokenizer = {
      name: 'big', vocabSize: 70_000, endOfText: 69_999, fingerprint: 'big-1',
      encode: (t: string) => Array.from(t, ch => 66_000 + (ch.codePointAt(0)! % 3_000)),
      decode: () => ''
    }
    const dir = dataDir({ 'a.txt': 'hello there', 'b.txt': 'general kenobi' })
    for (const cache of ['miss', 'hit']) {
      const s = await loadTokenStore(dir, big, { validationDocs: 1 })
      expect(s.cache).toBe(cache)
      expect(s.train).toBeInstanceOf(Uint32Array)
      expect(Math.max(...s.train, ...s.validation)).toBeGreaterThan(65_535)
    }
  })

  it('a single document (one text file) is split by position: its last 5% is the validation text', async () => {
    const text = 'The quick brown fox jumps over the lazy dog. '.repeat(100) // 4,500 bytes
    const s = await loadTokenStore(dataDir({ 'book.txt': text }), 'byte')
    expect(s.train.length + s.validation.length).toBe(4500)
    expect(s.validation.length).toBe(4500 - Math.floor(4500 * 0.95))
    // train is the head and validation the tail, with nothing shared or dropped
    expect(Buffer.from([...s.train, ...s.validation]).toString('utf8')).toBe(text)
    expect(s.trainDocs[0]).toMatch(/book\.txt \(first 95%\)/)
    expect(s.validationDocs[0]).toMatch(/book\.txt \(last 5%\)/)
  })

  it('throws typed errors naming the file (and line)', async () => {
    let e = await rejection(loadTokenStore(join(root, 'no-such-dir'), 'byte'))
    expect(e.code).toBe('ERR_DATA_MISSING')
    expect(e.message).toMatch(/no-such-dir does not exist/)
    e = await rejection(loadTokenStore(dataDir({}), 'byte'))
    expect(e.code).toBe('ERR_DATA_EMPTY')
    expect(e.message).toMatch(/holds no \.txt, \.md, \.jsonl or \.gz files/)
    e = await rejection(loadTokenStore(dataDir({ 'x.json': '{}', '.a.txt': 'hidden' }), 'byte'))
    expect(e.code).toBe('ERR_DATA_EMPTY')
    e = await rejection(loadTokenStore(dataDir({ 'a.txt': '', 'b.txt': '' }), 'byte'))
    expect(e.code).toBe('ERR_DATA_EMPTY')
    expect(e.message).toMatch(/holds no documents \(2 files, all empty\)/)
    e = await rejection(loadTokenStore(dataDir({ 'only.txt': 'ab' }), 'byte'))
    expect(e.code).toBe('ERR_DATA_EMPTY')
    expect(e.message).toMatch(/holds one document of 2 tokens: too short/)

    e = await rejection(loadTokenStore(dataDir({ 'sub/bad.jsonl': '{"text":"fine"}\n\n{"text": oops}\n' }), 'byte'))
    expect(e.code).toBe('ERR_DATA_FORMAT')
    expect(e.message).toMatch(/^sub\/bad\.jsonl:3: not valid JSON/)
    e = await rejection(loadTokenStore(dataDir({ 'f.jsonl': '{"text":"a"}\n{"body":"b"}' }), 'byte'))
    expect(e.code).toBe('ERR_DATA_FORMAT')
    expect(e.message).toMatch(/^f\.jsonl:2: the JSON object has no field "text"/)
    e = await rejection(loadTokenStore(dataDir({ 'f.jsonl': '{"text":"a"}\n{"text":"b"}\n{"text":7}' }), 'byte'))
    expect(e.message).toMatch(/^f\.jsonl:3: the JSON object has a number, not a string, in field "text"/)
    e = await rejection(loadTokenStore(dataDir({ 'f.jsonl': '["text"]' }), 'byte'))
    expect(e.message).toMatch(/^f\.jsonl:1: expected a JSON object/)

    e = await rejection(loadTokenStore(dataDir({ 'a.txt': 'x', 'b.txt.gz': 'not gzip at all' }), 'byte'))
    expect(e.code).toBe('ERR_DATA_GZIP')
    expect(e.message).toMatch(/^cannot gunzip b\.txt\.gz/)
    const gz = gzipSync(Array.from({ length: 50 }, (_, i) => JSON.stringify({ text: text(30 + i, 800) })).join('\n'))
    e = await rejection(loadTokenStore(dataDir({ 'a.txt': 'x', 'c.jsonl.gz': gz.subarray(0, gz.length >> 1) }), 'byte'))
    expect(e.code).toBe('ERR_DATA_GZIP')

    const liar: Tokenizer = { ...BYTE_TOKENIZER, name: 'liar', fingerprint: 'liar', encode: () => [1, 2, 300] }
    e = await rejection(loadTokenStore(dataDir({ 'a.txt': 'x', 'b.txt': 'y' }), liar))
    expect(e.code).toBe('ERR_DATA_TOKEN_RANGE')
    expect(e.message).toMatch(/^a\.txt \(tokenizer liar\): token id 300 at position 2 is outside the vocabulary \(0 \.\. 255\)/)

    const fileAsDir = join(root, 'a-file')
    writeFileSync(fileAsDir, 'x')
    e = await rejection(loadTokenStore(dataDir({ 'a.txt': 'x', 'b.txt': 'y' }), 'byte', { cacheDir: join(fileAsDir, 'cache') }))
    expect(e.code).toBe('ERR_DATA_CACHE')
    expect(e.message).toMatch(/--data-cache/)
  })

  it('the trainer refuses token ids beyond the model vocabulary', () => {
    const tokens = Uint16Array.from({ length: 200 }, (_, i) => i * 10)
    let caught: unknown
    try {
      // eslint-disable-next-line no-new
      new LocalPipelineTrainer({ model: { vocab: 256, dModel: 8, nHeads: 2, nBlocks: 1, seqLen: 8 }, train: { stages: 1 }, trainTokens: tokens })
    } catch (err) { caught = err }
    expect(caught).toBeInstanceOf(DataError)
    expect((caught as SpotpipeError).code).toBe('ERR_DATA_TOKEN_RANGE')
    expect((caught as Error).message).toMatch(/train tokens hold id 1990, outside the model's vocabulary of 256/)
  })
})

describe('spotpipe train --data', () => {
  it('trains a tiny model on a directory of text files with the gpt2 tokenizer: loss finite and falling', async () => {
    const dir = dataDir({ 'a.txt': text(20, 6000), 'b.txt': text(21, 6000), 'more/c.md': text(22, 6000), 'more/d.txt.gz': gzipSync(text(23, 6000)) })
    const p = spotpipe(['train', '--data', dir, '--tokenizer', 'gpt2', '--d-model', '32', '--heads', '2', '--blocks', '2', '--seq-len', '16',
      '--stages', '2', '--microbatches', '2', '--microbatch-size', '2', '--iterations', '6', '--eval-every', '1', '--lr', '1e-2', '--backend', 'wasm'])
    const { code } = await p.exited
    expect(code, p.stderr.join('\n')).toBe(0)
    const data = p.lines.find(l => l.startsWith('data '))
    expect(data).toMatch(/^data [0-9a-f]{64} 4 documents \(3 train, 1 validation\) \d+ tokens .* tokenizer gpt2 vocab 50257 cache miss /)
    expect(p.lines.indexOf(data!)).toBeLessThan(p.lines.findIndex(l => l.startsWith('training ')))
    const losses = p.lines.flatMap(l => { const m = /^iter\s+\d+\s+loss (\S+)\s+val (\S+)/.exec(l); return m == null ? [] : [[Number(m[1]), Number(m[2])]] })
    expect(losses.length).toBe(6)
    for (const [loss, val] of losses) {
      expect(Number.isFinite(loss)).toBe(true)
      expect(Number.isFinite(val)).toBe(true)
    }
    expect(losses[0][0]).toBeGreaterThan(9) // about ln 50257 = 10.8 at the start
    expect(losses[5][0]).toBeLessThan(losses[0][0])
    expect(losses[5][1]).toBeLessThan(losses[0][1])
    expect(p.lines.at(-1)).toMatch(/ln 50257 = 10\.825 at chance/)
  })

  it('names the file and line of a bad JSONL line, and rejects an unknown tokenizer as a usage error', async () => {
    const dir = dataDir({ 'a.jsonl': '{"text":"ok"}\n{"txt":"typo"}\n' })
    let p = spotpipe(['train', '--data', join(dir, 'a.jsonl'), '--iterations', '1'], { DEBUG: '' })
    expect((await p.exited).code).toBe(1)
    expect(p.stderr.join('\n')).toMatch(/spotpipe: a\.jsonl:2: the JSON object has no field "text" \(--data-field\) \[ERR_DATA_FORMAT\]/)
    p = spotpipe(['train', '--tokenizer', 'gpt3'], { DEBUG: '' })
    expect((await p.exited).code).toBe(2)
    expect(p.stderr.join('\n')).toMatch(/--tokenizer: unknown tokenizer "gpt3"/)
  })
})

/**
 * Your own text as training data: a text file, a directory of them, or JSONL, tokenised once into a
 * binary shard cache and split into train and validation by whole documents.
 *
 * loadTokenStore(source, tokenizer, options) is the one entry point: it turns a path and a tokenizer
 * spec (`byte`, `gpt2`, `hf:PATH`) into a TokenStore (train and validation token arrays, document
 * names, a fingerprint of the data and tokenizer, and whether the cache was hit).
 *
 * - Sources. A file is read as JSONL when its name ends in .jsonl (or .jsonl.gz), else as text. A
 *   directory is walked recursively for .txt, .md, .jsonl and .gz files (names and folders starting
 *   with "." are skipped, so a cache inside it is never read back as data), in sorted order of the
 *   path relative to the directory. A .gz file is gunzipped (node:zlib) and typed by its inner name.
 * - Documents. A text file is one document; each non-blank JSONL line is one, its text the string
 *   field `field` (default "text") of the line's JSON object. Empty documents are skipped.
 * - Cache. The ids of every document (Uint8Array for vocabularies up to 256, Uint16Array up to
 *   65,536, else Uint32Array) go into one shard file `<cacheDir>/<fingerprint>.tokens`, written
 *   atomically (temp file + rename). The fingerprint is sha256 over the cache format, the data
 *   field, the tokenizer's fingerprint and, per source file, its relative path, size and content
 *   sha256; so the cache is reused exactly when nothing that decides the ids changed, and a new one
 *   is built when anything did (the old file stays until you delete it). Node has no mmap: a cache
 *   hit is one fs read of the whole file into an ArrayBuffer, viewed as typed arrays in place.
 * - Split. As loadBrownCorpus does for Brown: documents in source order are shuffled by a seeded
 *   Fisher-Yates (mulberry32(hashKey(seed, 0x5eed))) and the first `validationDocs` (default 5%,
 *   at least 1) are held out. Each side is its documents in source order joined by the tokenizer's
 *   end-of-text id, or by the encoding of "\n\n" when it has none (the byte tokenizer: so Brown
 *   built this way equals loadBrownCorpus byte for byte).
 *
 * Errors are DataErrors with a code: ERR_DATA_MISSING (no such path, unreadable file),
 * ERR_DATA_EMPTY (no source files, no documents, too few documents to split), ERR_DATA_FORMAT (a
 * JSONL line that is not JSON or lacks the field: file and line named), ERR_DATA_GZIP (not gzip, or
 * corrupt), ERR_DATA_TOKEN_RANGE (a tokenizer produced an id >= its vocabulary), ERR_DATA_CACHE
 * (the cache directory cannot be written); ERR_TOKENIZER from tokenizers/.
 */
import { createHash, randomBytes } from 'node:crypto'
import {
  closeSync, createReadStream, fstatSync, mkdirSync, openSync, readSync, readdirSync, realpathSync, renameSync,
  statSync, unlinkSync, writeFileSync
} from 'node:fs'
import { basename, dirname, join, relative, resolve, sep } from 'node:path'
import { pipeline, type Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { ConfigError, DataError } from '../common/index.js'
import { DOC_SEPARATOR, type TokenArray } from './data.js'
import { hashKey, mulberry32 } from './rng.js'
import { checkIds, loadTokenizer, sha256Hex, type TokenIds, type Tokenizer } from './tokenizers/index.js'

/** Cache file format version: part of the fingerprint, so a format change rebuilds every cache. */
const FORMAT = 1
const MAGIC = 'SPTOKS01'
const DATA_EXT = /\.(txt|md|jsonl|gz)$/i

/** One source file. */
export interface SourceFile {
  /** Absolute path. */
  readonly path: string
  /** Path relative to the source (its base name when the source is a file), with "/" separators. */
  readonly rel: string
  readonly size: number
  readonly format: 'text' | 'jsonl'
  readonly gzip: boolean
}

export interface LoadTokenStoreOptions {
  /** JSONL field holding a document's text. @default 'text' */
  field?: string
  /** Where shard caches go. @default `<dirname(source)>/.spotpipe-cache` */
  cacheDir?: string
  /** Whole documents held out for validation. @default max(1, round(5% of documents)) */
  validationDocs?: number
  /** Seed of the shuffle choosing the held-out documents. @default 0 */
  seed?: number
}

/** Train and validation tokens of a source, split by whole documents. Treat the arrays as read-only. */
export interface TokenStore {
  /** Train documents' ids, each document followed by the separator except the last. */
  readonly train: TokenArray
  /** Held-out documents' ids, joined the same way. */
  readonly validation: TokenArray
  /** Train document names in source order: `rel` for a text file, `rel:LINE` for a JSONL line. */
  readonly trainDocs: readonly string[]
  readonly validationDocs: readonly string[]
  /** The tokenizer's vocabulary: the model's `vocab`. */
  readonly vocabSize: number
  readonly seed: number
  readonly validationDocCount: number
  readonly tokenizer: Tokenizer
  /** sha256 hex over the sources, the field and the tokenizer (see the file comment): the cache key. */
  readonly fingerprint: string
  /** Source files read (0 for an in-memory corpus). */
  readonly sources: number
  /** Documents over both splits. */
  readonly documents: number
  /** Token ids over all documents, separators not counted. */
  readonly tokens: number
  /** `hit`: read from the shard cache; `miss`: tokenised now (and cached); `none`: built in memory, not cached. */
  readonly cache: 'hit' | 'miss' | 'none'
  /** The shard file (absent when cache is `none`). */
  readonly cachePath?: string
}

// ---------------------------------------------------------------------------------------------
// Sources

function errCode (err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message
}

function sourceFile (path: string, rel: string, size: number): SourceFile {
  const gzip = /\.gz$/i.test(path)
  const inner = gzip ? path.slice(0, -3) : path
  return Object.freeze({ path, rel, size, format: /\.jsonl$/i.test(inner) ? 'jsonl' : 'text', gzip })
}

/**
 * The source files of `source` (a file or a directory), sorted by relative path. Throws
 * ERR_DATA_MISSING for a path that does not exist, ERR_DATA_EMPTY for a directory without data files.
 */
export function listSources (source: string): SourceFile[] {
  const root = resolve(source)
  let st
  try {
    st = statSync(root)
  } catch (err) {
    throw new DataError(`data source ${source} does not exist (${errCode(err)})`, 'ERR_DATA_MISSING')
  }
  if (st.isFile()) return [sourceFile(root, basename(root), st.size)]
  if (!st.isDirectory()) throw new DataError(`data source ${source} is neither a file nor a directory`, 'ERR_DATA_MISSING')
  const out: SourceFile[] = []
  const seen = new Set<string>()
  const walk = (dir: string): void => {
    const real = realpathSync(dir)
    if (seen.has(real)) return // a symlink loop
    seen.add(real)
    let names: string[]
    try {
      names = readdirSync(dir)
    } catch (err) {
      throw new DataError(`cannot list ${dir} (${errCode(err)})`, 'ERR_DATA_MISSING')
    }
    for (const name of names) {
      if (name.startsWith('.')) continue
      const path = join(dir, name)
      let s
      try {
        s = statSync(path)
      } catch (err) {
        throw new DataError(`cannot read ${path} (${errCode(err)})`, 'ERR_DATA_MISSING')
      }
      if (s.isDirectory()) walk(path)
      else if (s.isFile() && DATA_EXT.test(name)) out.push(sourceFile(path, relative(root, path).split(sep).join('/'), s.size))
    }
  }
  walk(root)
  if (out.length === 0) throw new DataError(`data directory ${source} holds no .txt, .md, .jsonl or .gz files`, 'ERR_DATA_EMPTY')
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))
}

/** The file's bytes as a stream, gunzipped when it is a .gz file. */
function openSource (file: SourceFile): Readable {
  const input = createReadStream(file.path)
  if (!file.gzip) return input
  const gunzip = createGunzip()
  pipeline(input, gunzip, () => {}) // an error on either side destroys gunzip with it: the reader sees it
  return gunzip
}

function readError (file: SourceFile, err: unknown): DataError {
  if (err instanceof DataError) return err
  const code = (err as NodeJS.ErrnoException).code ?? ''
  if (file.gzip && code.startsWith('Z_')) { // zlib: not gzip, corrupt, truncated
    return new DataError(`cannot gunzip ${file.rel}: ${(err as Error).message}`, 'ERR_DATA_GZIP')
  }
  return new DataError(`cannot read ${file.rel} (${code !== '' ? code : (err as Error).message})`, 'ERR_DATA_MISSING')
}

/** sha256 hex of the file's raw (not gunzipped) bytes. */
async function hashFile (file: SourceFile): Promise<string> {
  const h = createHash('sha256')
  try {
    for await (const chunk of createReadStream(file.path)) h.update(chunk as Buffer)
  } catch (err) {
    throw readError(file, err)
  }
  return h.digest('hex')
}

/**
 * The fingerprint of (sources, field, tokenizer): sha256 over the cache format, the field, the
 * tokenizer's fingerprint and every file's relative path, size and content sha256.
 */
export async function dataFingerprint (files: readonly SourceFile[], field: string, tokenizer: Tokenizer): Promise<string> {
  const parts: string[] = ['spotpipe-data', String(FORMAT), field, tokenizer.fingerprint]
  for (const f of files) parts.push(f.rel, String(f.size), await hashFile(f))
  return sha256Hex(...parts)
}

/** One document of a source file; `line` is the JSONL line (1-based), 0 for a whole text file. */
export interface SourceDocument {
  readonly line: number
  readonly text: string
}

/** The documents of one source file, in order. Empty documents and blank JSONL lines are skipped. */
export async function * readDocuments (file: SourceFile, field = 'text'): AsyncGenerator<SourceDocument> {
  const decoder = new TextDecoder('utf-8')
  const stream = openSource(file)
  if (file.format === 'text') {
    let text = ''
    try {
      for await (const chunk of stream) text += decoder.decode(chunk as Buffer, { stream: true })
      text += decoder.decode()
    } catch (err) {
      throw readError(file, err)
    }
    if (text.length > 0) yield { line: 0, text }
    return
  }
  let rest = ''
  let line = 0
  const parse = (raw: string): SourceDocument | undefined => {
    line++
    const s = raw.endsWith('\r') ? raw.slice(0, -1) : raw
    if (s.trim().length === 0) return undefined
    let value: unknown
    try {
      value = JSON.parse(s)
    } catch (err) {
      throw new DataError(`${file.rel}:${line}: not valid JSON (${(err as Error).message})`, 'ERR_DATA_FORMAT')
    }
    if (value == null || typeof value !== 'object' || Array.isArray(value)) {
      throw new DataError(`${file.rel}:${line}: expected a JSON object with a string field "${field}"`, 'ERR_DATA_FORMAT')
    }
    const text = (value as Record<string, unknown>)[field]
    if (typeof text !== 'string') {
      const what = text === undefined ? 'has no field' : `has a ${text === null ? 'null' : typeof text}, not a string, in field`
      throw new DataError(`${file.rel}:${line}: the JSON object ${what} "${field}" (--data-field)`, 'ERR_DATA_FORMAT')
    }
    return text.length > 0 ? { line, text } : undefined
  }
  try {
    for await (const chunk of stream) {
      const lines = (rest + decoder.decode(chunk as Buffer, { stream: true })).split('\n')
      rest = lines.pop() ?? ''
      for (const l of lines) {
        const d = parse(l)
        if (d !== undefined) yield d
      }
    }
    rest += decoder.decode()
  } catch (err) {
    stream.destroy()
    throw readError(file, err)
  }
  const d = parse(rest)
  if (d !== undefined) yield d
}

// ---------------------------------------------------------------------------------------------
// Token shards

type TokenArrayCtor = Uint8ArrayConstructor | Uint16ArrayConstructor | Uint32ArrayConstructor
type DType = 'uint8' | 'uint16' | 'uint32'

/** The narrowest unsigned array type that holds ids below `vocabSize`. */
export function tokenDtype (vocabSize: number): DType {
  return vocabSize <= 256 ? 'uint8' : vocabSize <= 65536 ? 'uint16' : 'uint32'
}

function ctorOf (dtype: DType): TokenArrayCtor {
  return dtype === 'uint8' ? Uint8Array : dtype === 'uint16' ? Uint16Array : Uint32Array
}

/** Every document's ids, back to back: document d is tokens[offsets[d] .. offsets[d + 1]). */
interface Shard {
  readonly tokens: TokenArray
  readonly offsets: Float64Array
  /** Per document: index into `sources`, and its JSONL line (0 for a text file). */
  readonly sourceIndex: Uint32Array
  readonly lines: Uint32Array
  readonly sources: readonly string[]
}

/** Growable token array of one dtype. */
class TokenBuffer {
  private buf: TokenArray
  length = 0
  constructor (private readonly ctor: TokenArrayCtor) { this.buf = new ctor(1 << 16) }
  push (ids: TokenIds): void {
    if (this.length + ids.length > this.buf.length) {
      const next = new this.ctor(Math.max(this.buf.length * 2, this.length + ids.length))
      next.set(this.buf.subarray(0, this.length))
      this.buf = next
    }
    this.buf.set(ids as ArrayLike<number>, this.length)
    this.length += ids.length
  }
  finish (): TokenArray { return this.buf.slice(0, this.length) }
}

class GrowU32 {
  private buf = new Uint32Array(1024)
  length = 0
  push (v: number): void {
    if (this.length === this.buf.length) { const n = new Uint32Array(this.buf.length * 2); n.set(this.buf); this.buf = n }
    this.buf[this.length++] = v
  }
  finish (): Uint32Array { return this.buf.slice(0, this.length) }
}

/** Tokenise every document of every file into one shard. */
async function tokenizeSources (files: readonly SourceFile[], field: string, tokenizer: Tokenizer): Promise<Shard> {
  const tokens = new TokenBuffer(ctorOf(tokenDtype(tokenizer.vocabSize)))
  const offsets: number[] = [0]
  const sourceIndex = new GrowU32()
  const lines = new GrowU32()
  for (let s = 0; s < files.length; s++) {
    const f = files[s]
    for await (const doc of readDocuments(f, field)) {
      const ids = tokenizer.encode(doc.text)
      checkIds(ids, tokenizer.vocabSize, `${f.rel}${doc.line > 0 ? `:${doc.line}` : ''} (tokenizer ${tokenizer.name})`)
      if (ids.length === 0) continue
      tokens.push(ids)
      offsets.push(tokens.length)
      sourceIndex.push(s)
      lines.push(doc.line)
    }
  }
  return {
    tokens: tokens.finish(),
    offsets: Float64Array.from(offsets),
    sourceIndex: sourceIndex.finish(),
    lines: lines.finish(),
    sources: files.map(f => f.rel)
  }
}

interface ShardHeader {
  format: number
  fingerprint: string
  tokenizer: { name: string, fingerprint: string, vocabSize: number }
  field: string
  dtype: DType
  documents: number
  tokens: number
  sources: string[]
}

const align8 = (n: number): number => Math.ceil(n / 8) * 8

/**
 * Shard file layout: MAGIC (8 bytes), u32 LE header length H, H bytes of JSON header, zero padding
 * to 8; Float64 offsets[documents + 1]; Uint32 sourceIndex[documents]; Uint32 lines[documents];
 * padding to 8; tokens (header.dtype) [tokens]. Everything is little-endian (as typed arrays are on
 * every platform Node runs on).
 */
function encodeShard (shard: Shard, header: ShardHeader): Uint8Array {
  const head = Buffer.from(JSON.stringify(header), 'utf8')
  const n = header.documents
  const offOffsets = align8(12 + head.length)
  const offIndex = offOffsets + 8 * (n + 1)
  const offLines = offIndex + 4 * n
  const offTokens = align8(offLines + 4 * n)
  const total = offTokens + shard.tokens.byteLength
  const out = new Uint8Array(total)
  out.set(Buffer.from(MAGIC, 'latin1'), 0)
  new DataView(out.buffer).setUint32(8, head.length, true)
  out.set(head, 12)
  out.set(new Uint8Array(shard.offsets.buffer, shard.offsets.byteOffset, shard.offsets.byteLength), offOffsets)
  out.set(new Uint8Array(shard.sourceIndex.buffer, shard.sourceIndex.byteOffset, shard.sourceIndex.byteLength), offIndex)
  out.set(new Uint8Array(shard.lines.buffer, shard.lines.byteOffset, shard.lines.byteLength), offLines)
  out.set(new Uint8Array(shard.tokens.buffer, shard.tokens.byteOffset, shard.tokens.byteLength), offTokens)
  return out
}

/**
 * Read a shard file with one fs read into a fresh ArrayBuffer (Node has no mmap) and view its parts
 * in place. Returns undefined when the file is absent, or is not a complete shard for `fingerprint`
 * and `vocabSize` (then it is rebuilt).
 */
function readShard (file: string, fingerprint: string, vocabSize: number): Shard | undefined {
  let fd: number
  try {
    fd = openSync(file, 'r')
  } catch {
    return undefined
  }
  let ab: ArrayBuffer
  let bytes: Uint8Array
  try {
    const size = fstatSync(fd).size
    ab = new ArrayBuffer(size)
    bytes = new Uint8Array(ab)
    let got = 0
    while (got < size) {
      const n = readSync(fd, bytes, got, size - got, got)
      if (n === 0) break
      got += n
    }
    if (got !== size) return undefined
  } catch {
    return undefined
  } finally {
    closeSync(fd)
  }
  if (bytes.length < 12 || Buffer.from(bytes.buffer, 0, 8).toString('latin1') !== MAGIC) return undefined
  const headLen = new DataView(bytes.buffer).getUint32(8, true)
  if (12 + headLen > bytes.length) return undefined
  let header: ShardHeader
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, 12, headLen).toString('utf8')) as ShardHeader
  } catch {
    return undefined
  }
  if (header.format !== FORMAT || header.fingerprint !== fingerprint || header.tokenizer?.vocabSize !== vocabSize) return undefined
  if (header.dtype !== tokenDtype(vocabSize) || !Array.isArray(header.sources)) return undefined
  const n = header.documents
  const offOffsets = align8(12 + headLen)
  const offIndex = offOffsets + 8 * (n + 1)
  const offLines = offIndex + 4 * n
  const offTokens = align8(offLines + 4 * n)
  const ctor = ctorOf(header.dtype)
  if (!Number.isSafeInteger(n) || n < 0 || offTokens + header.tokens * ctor.BYTES_PER_ELEMENT !== bytes.length) return undefined
  const shard: Shard = {
    offsets: new Float64Array(bytes.buffer, offOffsets, n + 1),
    sourceIndex: new Uint32Array(bytes.buffer, offIndex, n),
    lines: new Uint32Array(bytes.buffer, offLines, n),
    tokens: new ctor(ab, offTokens, header.tokens),
    sources: header.sources
  }
  if (shard.offsets[0] !== 0 || shard.offsets[n] !== header.tokens) return undefined
  for (let d = 0; d < n; d++) {
    if (!(shard.offsets[d + 1] > shard.offsets[d]) || shard.sourceIndex[d] >= header.sources.length) return undefined
  }
  // A flipped bit must not reach the embedding as an out-of-range id.
  for (let i = 0; i < shard.tokens.length; i++) if (shard.tokens[i] >= vocabSize) return undefined
  return shard
}

/** Write `bytes` to `file` atomically: a temp file beside it, then rename. */
function writeAtomic (file: string, bytes: Uint8Array): void {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(tmp, bytes)
    renameSync(tmp, file)
  } catch (err) {
    try { unlinkSync(tmp) } catch {}
    throw new DataError(`cannot write the token cache ${file} (${errCode(err)}); choose another directory with --data-cache`, 'ERR_DATA_CACHE')
  }
}

// ---------------------------------------------------------------------------------------------
// Split

function separatorIds (tokenizer: Tokenizer): number[] {
  return tokenizer.endOfText !== undefined ? [tokenizer.endOfText] : Array.from(tokenizer.encode(DOC_SEPARATOR))
}

/** With a single document, the share of its tokens (its tail) held out for validation. */
const SINGLE_DOC_VALIDATION_FRACTION = 0.05

function splitShard (shard: Shard, tokenizer: Tokenizer, opts: { seed?: number, validationDocs?: number }, where: string): Pick<TokenStore, 'train' | 'validation' | 'trainDocs' | 'validationDocs' | 'seed' | 'validationDocCount'> {
  const n = shard.offsets.length - 1
  const seed = opts.seed ?? 0
  if (!Number.isSafeInteger(seed)) throw new ConfigError(`corpus seed must be an integer, got ${String(seed)}`)
  if (n === 1) {
    // one document (`--data book.txt`, the commonest case): there is no whole document to hold out,
    // so its last SINGLE_DOC_VALIDATION_FRACTION of tokens is the validation text (a contiguous
    // tail: no training window overlaps it)
    const len = shard.offsets[1] - shard.offsets[0]
    const cut = Math.floor(len * (1 - SINGLE_DOC_VALIDATION_FRACTION))
    if (cut < 2 || len - cut < 2) throw new DataError(`${where} holds one document of ${len} tokens: too short to hold out a validation tail`, 'ERR_DATA_EMPTY')
    const src = shard.sources[shard.sourceIndex[0]]
    return {
      train: shard.tokens.subarray(shard.offsets[0], shard.offsets[0] + cut),
      validation: shard.tokens.subarray(shard.offsets[0] + cut, shard.offsets[1]),
      trainDocs: Object.freeze([`${src} (first ${Math.round((1 - SINGLE_DOC_VALIDATION_FRACTION) * 100)}%)`]),
      validationDocs: Object.freeze([`${src} (last ${Math.round(SINGLE_DOC_VALIDATION_FRACTION * 100)}%)`]),
      seed,
      validationDocCount: 1
    }
  }
  if (n < 2) throw new DataError(`${where} holds no documents`, 'ERR_DATA_EMPTY')
  const k = opts.validationDocs ?? Math.max(1, Math.round(n * 0.05))
  if (!Number.isInteger(k) || k < 1 || k >= n) {
    throw new ConfigError(`validationDocs must be an integer in [1, ${n - 1}], got ${String(k)}`)
  }
  const order = Array.from({ length: n }, (_, i) => i)
  const rand = mulberry32(hashKey(seed, 0x5eed)) // the same stream as loadBrownCorpus's split
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    const t = order[i]; order[i] = order[j]; order[j] = t
  }
  const held = new Uint8Array(n)
  for (let i = 0; i < k; i++) held[order[i]] = 1
  const sepIds = separatorIds(tokenizer)
  const name = (d: number): string => {
    const src = shard.sources[shard.sourceIndex[d]]
    return shard.lines[d] > 0 ? `${src}:${shard.lines[d]}` : src
  }
  const join = (want: number): { tokens: TokenArray, names: string[] } => {
    let len = 0
    let count = 0
    for (let d = 0; d < n; d++) if (held[d] === want) { len += shard.offsets[d + 1] - shard.offsets[d]; count++ }
    len += sepIds.length * Math.max(0, count - 1)
    const Ctor = shard.tokens.constructor as TokenArrayCtor
    const out = new Ctor(len)
    const names: string[] = []
    let at = 0
    for (let d = 0; d < n; d++) {
      if (held[d] !== want) continue
      if (names.length > 0) { out.set(sepIds, at); at += sepIds.length }
      out.set(shard.tokens.subarray(shard.offsets[d], shard.offsets[d + 1]), at)
      at += shard.offsets[d + 1] - shard.offsets[d]
      names.push(name(d))
    }
    return { tokens: out, names }
  }
  const train = join(0)
  const validation = join(1)
  return {
    train: train.tokens,
    validation: validation.tokens,
    trainDocs: Object.freeze(train.names),
    validationDocs: Object.freeze(validation.names),
    seed,
    validationDocCount: k
  }
}

// ---------------------------------------------------------------------------------------------
// Entry points

/**
 * Tokenise `source` (a text or JSONL file or a directory of them; see the file comment) with
 * `tokenizer` (a spec `byte` | `gpt2` | `hf:PATH`, or a Tokenizer), through the shard cache, and
 * split it into train and validation by whole documents.
 */
export async function loadTokenStore (source: string, tokenizer: string | Tokenizer = 'byte', opts: LoadTokenStoreOptions = {}): Promise<TokenStore> {
  const tok = typeof tokenizer === 'string' ? await loadTokenizer(tokenizer) : tokenizer
  const field = opts.field ?? 'text'
  if (field.length === 0) throw new ConfigError('the JSONL data field must be a non-empty name')
  const files = listSources(source)
  const fingerprint = await dataFingerprint(files, field, tok)
  const cacheDir = resolve(opts.cacheDir ?? join(dirname(resolve(source)), '.spotpipe-cache'))
  const cachePath = join(cacheDir, `${fingerprint}.tokens`)
  let shard = readShard(cachePath, fingerprint, tok.vocabSize)
  const hit = shard !== undefined
  if (shard === undefined) {
    shard = await tokenizeSources(files, field, tok)
    if (shard.offsets.length === 1) {
      throw new DataError(`data source ${source} holds no documents (${files.length} file${files.length === 1 ? '' : 's'}, all empty)`, 'ERR_DATA_EMPTY')
    }
    const header: ShardHeader = {
      format: FORMAT,
      fingerprint,
      tokenizer: { name: tok.name, fingerprint: tok.fingerprint, vocabSize: tok.vocabSize },
      field,
      dtype: tokenDtype(tok.vocabSize),
      documents: shard.offsets.length - 1,
      tokens: shard.tokens.length,
      sources: [...shard.sources]
    }
    writeAtomic(cachePath, encodeShard(shard, header))
  }
  const split = splitShard(shard, tok, opts, `data source ${source}`)
  return Object.freeze({
    ...split,
    vocabSize: tok.vocabSize,
    tokenizer: tok,
    fingerprint,
    sources: files.length,
    documents: shard.offsets.length - 1,
    tokens: shard.tokens.length,
    cache: hit ? 'hit' : 'miss',
    cachePath
  })
}

/**
 * An in-memory TokenStore from documents you already hold (the Brown corpus with another tokenizer,
 * say): tokenised now, not cached, split as loadTokenStore does. Its fingerprint covers the
 * documents' names and texts and the tokenizer.
 */
export function buildTokenStore (docs: ReadonlyArray<{ readonly id: string, readonly text: string }>, tokenizer: Tokenizer, opts: Pick<LoadTokenStoreOptions, 'seed' | 'validationDocs'> = {}): TokenStore {
  const tokens = new TokenBuffer(ctorOf(tokenDtype(tokenizer.vocabSize)))
  const offsets: number[] = [0]
  const kept: string[] = []
  const h = createHash('sha256').update(`spotpipe-docs\0${FORMAT}\0${tokenizer.fingerprint}\0`)
  for (const d of docs) {
    h.update(`${Buffer.byteLength(d.id)}:${d.id}${Buffer.byteLength(d.text)}:`).update(d.text)
    const ids = tokenizer.encode(d.text)
    checkIds(ids, tokenizer.vocabSize, `document ${d.id} (tokenizer ${tokenizer.name})`)
    if (ids.length === 0) continue
    tokens.push(ids)
    offsets.push(tokens.length)
    kept.push(d.id)
  }
  const shard: Shard = {
    tokens: tokens.finish(),
    offsets: Float64Array.from(offsets),
    sourceIndex: Uint32Array.from(kept, (_, i) => i),
    lines: new Uint32Array(kept.length),
    sources: kept
  }
  const split = splitShard(shard, tokenizer, opts, 'the document list')
  return Object.freeze({
    ...split,
    vocabSize: tokenizer.vocabSize,
    tokenizer,
    fingerprint: h.digest('hex'),
    sources: 0,
    documents: kept.length,
    tokens: shard.tokens.length,
    cache: 'none'
  })
}

/** One line for a log: fingerprint, documents, tokens, tokenizer and the cache outcome. */
export function describeTokenStore (s: TokenStore): string {
  const cache = s.cache === 'none' ? 'not cached' : `cache ${s.cache} ${s.cachePath ?? ''}`
  return `data ${s.fingerprint} ${s.documents} documents (${s.trainDocs.length} train, ${s.validationDocs.length} validation) ` +
    `${s.tokens} tokens (train ${s.train.length}, validation ${s.validation.length}) tokenizer ${s.tokenizer.name} vocab ${s.vocabSize} ${cache}`
}

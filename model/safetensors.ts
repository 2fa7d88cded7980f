/**
 * Reader and writer for the safetensors layout, used for the weights wire protocol and for
 * checkpoints. Pure (no tfjs) so it can run anywhere bytes are handled.
 *
 * Layout (compatible with the Python `safetensors` library):
 *   [8 bytes] little-endian u64 N = header length
 *   [N bytes] UTF-8 JSON: { "__metadata__"?: {str: str}, "<name>": { dtype, shape, data_offsets } }
 *             padded with spaces so the data section starts on an 8-byte boundary
 *   [rest]    raw little-endian tensor data; offsets are relative to the start of this section and
 *             the tensors must cover it exactly (no holes, no overlap, nothing after the last one)
 *
 * Only F32 and I32 are supported. The host must be little-endian: we copy bytes verbatim instead of
 * byte-swapping, and every entry point throws on a big-endian host.
 */
import { endianness } from 'node:os'
import { CorruptStateError, NonFiniteError, ShapeMismatchError, SpotpipeError } from '../common/index.js'

export type DType = 'F32' | 'I32'

export interface HostTensor {
  dtype: DType
  shape: number[]
  data: Float32Array | Int32Array
}

export type TensorSet = Map<string, HostTensor>

export interface DecodeOptions {
  /** Largest header accepted, in bytes. @default 16 MiB */
  maxHeaderBytes?: number
  /** Largest number of tensors accepted. @default 100_000 */
  maxTensors?: number
  /** Reject NaN/Inf in F32 data with a NonFiniteError. @default true */
  requireFinite?: boolean
}

const METADATA_KEY = '__metadata__'
const MAX_RANK = 8
const ALIGN = 8
const BYTES_PER_ELEMENT = 4
const DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024
const DEFAULT_MAX_TENSORS = 100_000
const LIST_LIMIT = 5

// Checked once; the byte copies below are only correct on a little-endian host.
const HOST_IS_LE = endianness() === 'LE'

function assertLittleEndian (): void {
  if (!HOST_IS_LE) {
    throw new SpotpipeError('ERR_UNSUPPORTED_PLATFORM', 'safetensors: big-endian hosts are not supported')
  }
}

function isDType (x: unknown): x is DType {
  return x === 'F32' || x === 'I32'
}

function fmtShape (shape: readonly number[]): string {
  return `[${shape.join(', ')}]`
}

/** Product of dims, or throws if a dim is not a non-negative safe integer or the rank is too high. */
function elementCount (shape: unknown, fail: (problem: string) => Error): number {
  if (!Array.isArray(shape)) throw fail('shape is not an array')
  if (shape.length > MAX_RANK) throw fail(`shape has ${shape.length} dims (max ${MAX_RANK})`)
  let n = 1n
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw fail(`shape ${JSON.stringify(shape)} has a dim that is not a non-negative integer`)
    }
    n *= BigInt(d)
  }
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`shape ${JSON.stringify(shape)} has too many elements`)
  return Number(n)
}

/** Validates a tensor supplied by the caller (encode / checksum). */
function checkHostTensor (label: string, t: HostTensor): void {
  const fail = (problem: string): Error => new ShapeMismatchError(`${label}: ${problem}`)
  if (t == null || typeof t !== 'object') throw fail('not a tensor')
  if (!isDType(t.dtype)) throw fail(`unsupported dtype ${JSON.stringify(t.dtype)} (supported: F32, I32)`)
  const want = t.dtype === 'F32' ? Float32Array : Int32Array
  if (!(t.data instanceof want)) throw fail(`dtype ${t.dtype} needs a ${want.name} but data is ${describe(t.data)}`)
  const n = elementCount(t.shape, fail)
  if (t.data.length !== n) {
    throw fail(`shape ${fmtShape(t.shape)} needs ${n} elements but data has ${t.data.length}`)
  }
}

function describe (x: unknown): string {
  if (x == null) return String(x)
  if (typeof x === 'object') return (x as object).constructor?.name ?? 'object'
  return typeof x
}

function rawBytes (t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
}

function byName (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * Serializes tensors (sorted by name, data contiguous) into one freshly allocated buffer.
 * `__metadata__` is written only when `metadata` is given.
 */
export function encodeSafetensors (tensors: TensorSet, metadata?: Record<string, string>): Uint8Array {
  const parts = safetensorsParts(tensors, metadata)
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const p of parts) { out.set(p, offset); offset += p.byteLength }
  return out
}

/**
 * encodeSafetensors without joining: the header (length and padded JSON), then each tensor's bytes
 * as a view of its data (no copy), in file order. For writing a large file with one writev.
 * Checks the same things; throws the same errors.
 */
export function safetensorsParts (tensors: TensorSet, metadata?: Record<string, string>): Uint8Array[] {
  assertLittleEndian()
  const names = [...tensors.keys()].sort(byName)

  // Build the JSON by hand so keys like "__proto__" are written as plain keys.
  const parts: string[] = []
  if (metadata !== undefined) {
    const entries = Object.entries(metadata)
    for (const [k, v] of entries) {
      if (typeof v !== 'string') throw new TypeError(`safetensors metadata value for ${JSON.stringify(k)} is ${typeof v}, not a string`)
    }
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`)
  }
  let dataLen = 0
  for (const name of names) {
    const label = `tensor ${JSON.stringify(name)}`
    if (name === '') throw new ShapeMismatchError('tensor name must not be empty')
    if (name === METADATA_KEY) throw new ShapeMismatchError(`tensor name ${JSON.stringify(METADATA_KEY)} is reserved`)
    if (/\p{Surrogate}/u.test(name)) throw new ShapeMismatchError(`${label}: name is not well-formed Unicode`)
    const t = tensors.get(name) as HostTensor
    checkHostTensor(label, t)
    const end = dataLen + t.data.byteLength
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${dataLen},${end}]}`)
    dataLen = end
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`)
  const headerLen = Math.ceil(json.length / ALIGN) * ALIGN
  const header = new Uint8Array(8 + headerLen)
  new DataView(header.buffer).setBigUint64(0, BigInt(headerLen), true)
  header.set(json, 8)
  header.fill(0x20, 8 + json.length)
  return [header, ...names.map(name => rawBytes(tensors.get(name) as HostTensor))]
}

interface Entry { name: string, dtype: DType, shape: number[], begin: number, end: number }

/**
 * Parses and fully validates a safetensors buffer. Returned typed arrays are fresh copies that
 * share no memory with `bytes` (so `bytes` may be unaligned or reused afterwards).
 */
export function decodeSafetensors (
  bytes: Uint8Array,
  opts: DecodeOptions = {}
): { tensors: TensorSet, metadata: Record<string, string> } {
  assertLittleEndian()
  const maxHeaderBytes = opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES
  const maxTensors = opts.maxTensors ?? DEFAULT_MAX_TENSORS
  const requireFinite = opts.requireFinite ?? true
  const corrupt = (problem: string): CorruptStateError => new CorruptStateError(`safetensors: ${problem}`)

  if (!(bytes instanceof Uint8Array)) throw corrupt(`expected a Uint8Array, got ${describe(bytes)}`)
  if (bytes.length < 8) throw corrupt(`buffer is ${bytes.length} bytes, shorter than the 8-byte header length`)

  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)
  if (n > BigInt(bytes.length - 8)) {
    throw corrupt(`header length ${n} exceeds the ${bytes.length - 8} bytes after the length prefix`)
  }
  if (n > BigInt(maxHeaderBytes)) throw corrupt(`header length ${n} exceeds the limit of ${maxHeaderBytes} bytes`)
  const headerLen = Number(n)
  const dataStart = 8 + headerLen
  const dataLen = bytes.length - dataStart

  // Parse the header. Like the reference reader, it must start with '{' (no BOM or leading space).
  const headerBytes = bytes.subarray(8, dataStart)
  if (headerBytes[0] !== 0x7b) throw corrupt('header is not a JSON object (does not start with "{")')
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes)
  } catch {
    throw corrupt('header is not valid UTF-8')
  }
  let header: unknown
  try {
    header = JSON.parse(text)
  } catch (err) {
    throw corrupt(`header is not valid JSON (${(err as Error).message})`)
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw corrupt('header is not a JSON object')
  }

  const metadata = parseMetadata((header as Record<string, unknown>)[METADATA_KEY], corrupt)
  const raw = Object.entries(header).filter(([k]) => k !== METADATA_KEY)
  if (raw.length > maxTensors) throw corrupt(`header lists ${raw.length} tensors (limit ${maxTensors})`)

  const entries: Entry[] = raw.map(([name, info]) => parseEntry(name, info, dataLen, corrupt))

  // The tensors must tile [0, dataLen) exactly; zero-length tensors may sit anywhere on the way.
  const byOffset = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end)
  let cursor = 0
  let prev = byOffset[0]
  for (const e of byOffset) {
    if (e.begin < cursor) {
      throw corrupt(`tensor ${JSON.stringify(e.name)} [${e.begin}, ${e.end}) overlaps tensor ${JSON.stringify(prev.name)} [${prev.begin}, ${prev.end})`)
    }
    if (e.begin > cursor) {
      throw corrupt(`hole in the data section: bytes [${cursor}, ${e.begin}) before tensor ${JSON.stringify(e.name)} belong to no tensor`)
    }
    cursor = e.end
    prev = e
  }
  if (cursor !== dataLen) {
    throw corrupt(`${dataLen - cursor} trailing bytes after the data section (tensors end at ${cursor}, data section is ${dataLen} bytes)`)
  }

  const tensors: TensorSet = new Map()
  for (const e of [...entries].sort((a, b) => byName(a.name, b.name))) {
    const count = (e.end - e.begin) / BYTES_PER_ELEMENT
    const data = e.dtype === 'F32' ? new Float32Array(count) : new Int32Array(count)
    new Uint8Array(data.buffer).set(bytes.subarray(dataStart + e.begin, dataStart + e.end))
    if (requireFinite && data instanceof Float32Array) assertFinite(e.name, data)
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data })
  }
  return { tensors, metadata }
}

function parseMetadata (value: unknown, corrupt: (p: string) => CorruptStateError): Record<string, string> {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw corrupt(`${METADATA_KEY} is not a string-to-string map`)
  }
  const entries = Object.entries(value)
  for (const [k, v] of entries) {
    if (typeof v !== 'string') throw corrupt(`${METADATA_KEY} value for ${JSON.stringify(k)} is not a string`)
  }
  // fromEntries defines own properties, so a "__proto__" key stays a plain key.
  return Object.fromEntries(entries) as Record<string, string>
}

function parseEntry (
  name: string,
  info: unknown,
  dataLen: number,
  corrupt: (p: string) => CorruptStateError
): Entry {
  const label = `tensor ${JSON.stringify(name)}`
  const fail = (problem: string): CorruptStateError => corrupt(`${label}: ${problem}`)
  if (name === '') throw corrupt('tensor with an empty name')
  if (info === null || typeof info !== 'object' || Array.isArray(info)) throw fail('entry is not an object')
  const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>
  if (dtype === undefined) throw fail('missing dtype')
  if (shape === undefined) throw fail('missing shape')
  if (offsets === undefined) throw fail('missing data_offsets')
  if (typeof dtype !== 'string') throw fail('dtype is not a string')
  if (!isDType(dtype)) throw fail(`unsupported dtype ${JSON.stringify(dtype)} (supported: F32, I32)`)
  const count = elementCount(shape, fail)
  if (!Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every(o => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
    throw fail(`data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`)
  }
  const [begin, end] = offsets as [number, number]
  if (begin > end) throw fail(`data_offsets [${begin}, ${end}] has begin > end`)
  if (end - begin !== count * BYTES_PER_ELEMENT) {
    throw fail(`byte length ${end - begin} does not match shape ${fmtShape(shape as number[])} (${count} x ${BYTES_PER_ELEMENT} = ${count * BYTES_PER_ELEMENT} bytes)`)
  }
  if (end > dataLen) throw fail(`data_offsets [${begin}, ${end}] lie outside the ${dataLen}-byte data section`)
  return { name, dtype, shape: (shape as number[]).slice(), begin, end }
}

/** Throws NonFiniteError naming the tensor, the count and the first bad value if `data` holds NaN or Inf. */
export function assertFinite (name: string, data: Float32Array): void {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length)
  let first = -1
  let count = 0
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7f800000) === 0x7f800000) {
      if (first < 0) first = i
      count++
    }
  }
  if (count > 0) {
    throw new NonFiniteError(`safetensors: tensor ${JSON.stringify(name)} has ${count} non-finite value(s); first is ${data[first]} at index ${first}`)
  }
}

/**
 * Checks that `got` has exactly the names and shapes of `expected`. Throws a ShapeMismatchError
 * listing the first few missing names, unexpected names and shape differences.
 */
export function assertSameLayout (expected: Map<string, { shape: number[] }>, got: TensorSet, context: string): void {
  const missing: string[] = []
  const unexpected: string[] = []
  const differs: string[] = []
  for (const [name, want] of expected) {
    const t = got.get(name)
    if (t === undefined) missing.push(name)
    else if (!sameShape(want.shape, t.shape)) differs.push(`${name}: expected ${fmtShape(want.shape)}, got ${fmtShape(t.shape)}`)
  }
  for (const name of got.keys()) if (!expected.has(name)) unexpected.push(name)
  if (missing.length + unexpected.length + differs.length === 0) return

  const list = (label: string, items: string[]): string | undefined => {
    if (items.length === 0) return undefined
    const head = items.slice(0, LIST_LIMIT).join('; ')
    const more = items.length > LIST_LIMIT ? `; ... ${items.length - LIST_LIMIT} more` : ''
    return `${items.length} ${label} (${head}${more})`
  }
  const parts = [
    list('missing', missing),
    list('unexpected', unexpected),
    list('with a different shape', differs)
  ].filter((p): p is string => p !== undefined)
  throw new ShapeMismatchError(`${context}: tensor layout mismatch: ${parts.join(', ')}`)
}

function sameShape (a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i])
}

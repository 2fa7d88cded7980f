import { describe, expect, it } from 'vitest'
import { CorruptStateError, NonFiniteError, ShapeMismatchError } from '../common/index.js'
import {
  assertSameLayout,
  decodeSafetensors,
  encodeSafetensors,
  type DecodeOptions,
  type HostTensor,
  type TensorSet
} from '../model/safetensors.js'

const f32 = (shape: number[], values: number[]): HostTensor => ({ dtype: 'F32', shape, data: Float32Array.from(values) })
const i32 = (shape: number[], values: number[]): HostTensor => ({ dtype: 'I32', shape, data: Int32Array.from(values) })
const f32Bits = (shape: number[], bits: number[]): HostTensor =>
  ({ dtype: 'F32', shape, data: new Float32Array(Uint32Array.from(bits).buffer) })

/** The bit patterns of a tensor's data, for bit-exact comparisons (NaN !== NaN, -0 === 0). */
const bitsOf = (t: HostTensor): number[] => [...new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length)]

/** Splits an encoded buffer by hand: 8-byte LE length, header text, data section. */
function split (bytes: Uint8Array): { n: number, headerText: string, header: Record<string, any>, data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true))
  const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n))
  return { n, headerText, header: JSON.parse(headerText), data: bytes.subarray(8 + n) }
}

/** Builds a file from a raw header (object or text) and data section, bypassing the encoder. */
function craft (header: unknown, data: Uint8Array | number = 0, headerLength?: bigint): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header)
  const json = new TextEncoder().encode(text)
  const body = typeof data === 'number' ? new Uint8Array(data) : data
  const out = new Uint8Array(8 + json.length + body.length)
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true)
  out.set(json, 8)
  out.set(body, 8 + json.length)
  return out
}

const entry = (shape: number[], begin: number, end: number, dtype = 'F32'): unknown => ({ dtype, shape, data_offsets: [begin, end] })

function expectCorrupt (bytes: Uint8Array, message: RegExp, opts?: DecodeOptions): void {
  let caught: unknown
  try {
    decodeSafetensors(bytes, opts)
  } catch (err) {
    caught = err
  }
  expect(caught).toBeInstanceOf(CorruptStateError)
  expect((caught as Error).message).toMatch(message)
}

function sample (): TensorSet {
  return new Map<string, HostTensor>([
    ['w', f32([2, 3], [1, -2, 3.5, 0, 1e-30, -1e30])],
    ['b', f32([3], [0.25, -0.5, 7])],
    ['step', i32([], [42])],
    ['ids', i32([2, 2], [-2147483648, 2147483647, 0, -1])],
    ['empty', f32([0, 4], [])]
  ])
}

describe('safetensors round trip', () => {
  it('round-trips tensors, metadata and odd names bit-exactly', () => {
    const tensors = sample()
    tensors.set('__proto__', f32([1], [3]))
    tensors.set('constructor', i32([1], [5]))
    tensors.set('层.ß/ü', f32([1, 1], [9]))
    // JSON.parse makes "__proto__" an own key rather than setting the prototype.
    const metadata: Record<string, string> = JSON.parse('{"format":"spotpipe","step":"17","__proto__":"y","ключ":"значение"}')
    const { tensors: out, metadata: meta } = decodeSafetensors(encodeSafetensors(tensors, metadata))

    expect(meta).toEqual(metadata)
    expect(Object.keys(meta)).toContain('__proto__')
    expect(Object.getPrototypeOf(meta)).toBe(Object.prototype)
    expect([...out.keys()]).toEqual([...tensors.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
    for (const [name, t] of tensors) {
      const got = out.get(name)!
      expect(got.dtype, name).toBe(t.dtype)
      expect(got.shape, name).toEqual(t.shape)
      expect(got.data.constructor, name).toBe(t.data.constructor)
      expect(bitsOf(got), name).toEqual(bitsOf(t))
    }
  })

  it('keeps -0, subnormals and extreme values bit-exact', () => {
    const t = f32Bits([8], [
      0x80000000, // -0
      0x00000001, // smallest subnormal
      0x807fffff, // largest negative subnormal
      0x00800000, // smallest normal
      0x7f7fffff, // largest finite
      0xff7fffff, // most negative finite
      0x3f800000, // 1
      0x00000000
    ])
    const got = decodeSafetensors(encodeSafetensors(new Map([['x', t]]))).tensors.get('x')!
    expect(bitsOf(got)).toEqual(bitsOf(t))
    expect(Object.is(got.data[0], -0)).toBe(true)
  })

  it('preserves NaN payloads and infinities only when requireFinite is off', () => {
    const bits = [0x7fc00000, 0x7fc00001, 0xffc12345, 0x7f800001, 0x7f800000, 0xff800000, 0x3f800000]
    const bytes = encodeSafetensors(new Map([['ok', f32([1], [1])], ['weird', f32Bits([bits.length], bits)]]))
    const got = decodeSafetensors(bytes, { requireFinite: false }).tensors.get('weird')!
    expect(bitsOf(got)).toEqual(bits)

    let caught: unknown
    try { decodeSafetensors(bytes) } catch (err) { caught = err }
    expect(caught).toBeInstanceOf(NonFiniteError)
    expect((caught as Error).message).toMatch(/"weird".*6 non-finite.*NaN at index 0/)

    // Only a single Inf: still rejected by default.
    expect(() => decodeSafetensors(encodeSafetensors(new Map([['inf', f32([2], [1, -Infinity])]]))))
      .toThrow(/"inf".*-Infinity at index 1/)
    // I32 data with a NaN-looking bit pattern is just an integer.
    const ints = i32([1], [0x7fc00000])
    expect(bitsOf(decodeSafetensors(encodeSafetensors(new Map([['i', ints]]))).tensors.get('i')!)).toEqual([0x7fc00000])
  })

  it('returns arrays that own their memory, from unaligned Buffer input', () => {
    const encoded = encodeSafetensors(sample())
    const backing = Buffer.alloc(encoded.length + 3)
    backing.set(encoded, 3)
    const input = backing.subarray(3) // unaligned Buffer view
    const { tensors } = decodeSafetensors(input)
    const w = tensors.get('w')!
    expect(w.data.byteOffset).toBe(0)
    expect(w.data.buffer.byteLength).toBe(w.data.byteLength)
    expect(w.data.buffer).not.toBe(backing.buffer)
    backing.fill(0)
    expect([...w.data]).toEqual([...sample().get('w')!.data])
  })

  it('encodes from typed-array views without reading outside them', () => {
    const big = new Float32Array([100, 1, 2, 3, 200])
    const view: HostTensor = { dtype: 'F32', shape: [3], data: big.subarray(1, 4) }
    const { data } = split(encodeSafetensors(new Map([['v', view]])))
    expect([...new Float32Array(data.slice().buffer)]).toEqual([1, 2, 3])
  })

  it('round-trips a 4M-float tensor quickly', () => {
    const n = 4 * 1024 * 1024
    const data = new Float32Array(n)
    for (let i = 0; i < n; i++) data[i] = Math.sin(i) * 1e3
    const t0 = performance.now()
    const bytes = encodeSafetensors(new Map([['big', { dtype: 'F32', shape: [2048, 2048], data }]]))
    const { tensors } = decodeSafetensors(bytes)
    const ms = performance.now() - t0
    expect(bytes.length).toBe(8 + split(bytes).n + n * 4)
    const got = tensors.get('big')!.data
    expect(Buffer.from(got.buffer).equals(Buffer.from(data.buffer))).toBe(true)
    expect(ms).toBeLessThan(3000)
  })
})

describe('safetensors byte layout', () => {
  it('matches the spec: LE length, padded JSON header, sorted contiguous data', () => {
    const tensors = sample()
    const bytes = encodeSafetensors(tensors, { k: 'v' })
    const { n, headerText, header, data } = split(bytes)

    expect(n % 8).toBe(0)
    expect(headerText.startsWith('{')).toBe(true)
    expect(headerText.trimEnd().endsWith('}')).toBe(true)
    expect(/^ *$/.test(headerText.slice(headerText.trimEnd().length))).toBe(true)
    expect(headerText.trimEnd().length).toBeGreaterThan(n - 8)

    const names = Object.keys(header)
    expect(names[0]).toBe('__metadata__')
    expect(header.__metadata__).toEqual({ k: 'v' })
    const sorted = ['b', 'empty', 'ids', 'step', 'w']
    expect(names.slice(1)).toEqual(sorted)

    let offset = 0
    for (const name of sorted) {
      const t = tensors.get(name)!
      const e = header[name]
      expect(Object.keys(e)).toEqual(['dtype', 'shape', 'data_offsets'])
      expect(e.dtype).toBe(t.dtype)
      expect(e.shape).toEqual(t.shape)
      expect(e.data_offsets).toEqual([offset, offset + t.data.byteLength])
      const raw = data.subarray(offset, offset + t.data.byteLength)
      expect(Buffer.from(raw).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))).toBe(true)
      offset += t.data.byteLength
    }
    expect(data.length).toBe(offset)
  })

  it('writes the same bytes as the reference implementation for a small file', () => {
    // What `safetensors.numpy.save_file({"a": np.array([1, 2], np.float32)})` produces.
    const json = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' // 54 bytes -> padded to 56
    expect(json.length).toBe(54)
    const expected = new Uint8Array(8 + 56 + 8)
    expected[0] = 56
    expected.set(new TextEncoder().encode(json), 8)
    expected.set([0x20, 0x20], 8 + 54)
    expected.set([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40], 64)

    expect(Buffer.from(encodeSafetensors(new Map([['a', f32([2], [1, 2])]]))).equals(Buffer.from(expected))).toBe(true)
    expect([...decodeSafetensors(expected).tensors.get('a')!.data]).toEqual([1, 2])
  })

  it('omits __metadata__ unless given, and encodes an empty set', () => {
    expect(split(encodeSafetensors(new Map())).headerText).toBe('{}      ')
    expect(decodeSafetensors(encodeSafetensors(new Map()))).toEqual({ tensors: new Map(), metadata: {} })
    expect(split(encodeSafetensors(new Map(), {})).header).toEqual({ __metadata__: {} })
  })

  it('accepts headers written in another key order with extra padding and fields', () => {
    const data = new Uint8Array(new Float32Array([1, 2, 3]).buffer)
    const header = '{"b":{"shape":[1],"data_offsets":[8,12],"dtype":"F32","extra":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"x":"1"}}   \n\t '
    const { tensors, metadata } = decodeSafetensors(craft(header, data))
    expect(metadata).toEqual({ x: '1' })
    expect([...tensors.keys()]).toEqual(['a', 'b'])
    expect([...tensors.get('b')!.data]).toEqual([3])
  })

  it('allows zero-length tensors at any boundary', () => {
    const header = { z1: entry([0], 0, 0), a: entry([1], 0, 4), z2: entry([3, 0], 4, 4), b: entry([1], 4, 8, 'I32'), z3: entry([0], 8, 8) }
    const { tensors } = decodeSafetensors(craft(header, 8))
    expect(tensors.get('z2')!.shape).toEqual([3, 0])
    expect(tensors.get('z2')!.data.length).toBe(0)
  })
})

describe('safetensors decode validation', () => {
  const good = encodeSafetensors(sample(), { k: 'v' })
  const n = split(good).n

  it('rejects buffers shorter than 8 bytes', () => {
    for (const len of [0, 1, 7]) expectCorrupt(good.subarray(0, len), /shorter than the 8-byte/)
  })

  it('rejects truncation at every region of the file', () => {
    for (const len of [8, 9, 8 + n - 1]) expectCorrupt(good.slice(0, len), /header length \d+ exceeds the \d+ bytes/)
    for (const len of [8 + n, 8 + n + 4, good.length - 1]) expectCorrupt(good.slice(0, len), /lie outside the \d+-byte data section/)
  })

  it('rejects a corrupted header length', () => {
    const withLength = (len: bigint): Uint8Array => {
      const b = good.slice()
      new DataView(b.buffer).setBigUint64(0, len, true)
      return b
    }
    expectCorrupt(withLength(0xffffffffffffffffn), /header length 18446744073709551615 exceeds/)
    expectCorrupt(withLength(1n << 40n), /header length \d+ exceeds/)
    expectCorrupt(withLength(BigInt(good.length)), /exceeds/)
    expectCorrupt(withLength(BigInt(n - 8)), /not valid JSON/)
    expectCorrupt(withLength(0n), /not a JSON object/)
    expectCorrupt(withLength(BigInt(n + 8)), /not valid (JSON|UTF-8)/)
    // Flipping a high bit of the low byte changes the length by 128.
    const flipped = good.slice()
    flipped[0] ^= 0x80
    expectCorrupt(flipped, /CorruptState|header|tensor/)
    expectCorrupt(good, /limit of 16 bytes/, { maxHeaderBytes: 16 })
  })

  it('rejects headers that are not UTF-8 JSON objects', () => {
    const invalidUtf8 = craft('{"a":1}')
    invalidUtf8[8 + 2] = 0xff
    expectCorrupt(invalidUtf8, /not valid UTF-8/)
    expectCorrupt(craft('{"a": '), /not valid JSON/)
    expectCorrupt(craft('{} x'), /not valid JSON/)
    expectCorrupt(craft('[]'), /not a JSON object/)
    expectCorrupt(craft('"str"'), /not a JSON object/)
    expectCorrupt(craft('  {}'), /does not start with/)
    expectCorrupt(craft('\uFEFF{}'), /does not start with/)
  })

  it('rejects malformed entries, naming the tensor', () => {
    expectCorrupt(craft({ t: 5 }), /"t": entry is not an object/)
    expectCorrupt(craft({ t: [] }), /"t": entry is not an object/)
    expectCorrupt(craft({ t: { shape: [1], data_offsets: [0, 4] } }, 4), /"t": missing dtype/)
    expectCorrupt(craft({ t: { dtype: 'F32', data_offsets: [0, 4] } }, 4), /"t": missing shape/)
    expectCorrupt(craft({ t: { dtype: 'F32', shape: [1] } }, 4), /"t": missing data_offsets/)
    expectCorrupt(craft({ t: entry([1], 0, 4, 7 as unknown as string) }, 4), /"t": dtype is not a string/)
    expectCorrupt(craft({ t: { dtype: 'F32', shape: '1', data_offsets: [0, 4] } }, 4), /"t": shape is not an array/)
    expectCorrupt(craft({ '': entry([1], 0, 4) }, 4), /empty name/)
  })

  it('rejects unknown dtypes', () => {
    for (const dtype of ['F16', 'BF16', 'I64', 'f32', '']) {
      expectCorrupt(craft({ t: entry([1], 0, 4, dtype) }, 4), /"t": unsupported dtype/)
    }
  })

  it('rejects bad shapes', () => {
    expectCorrupt(craft({ t: entry([-1], 0, 4) }, 4), /"t": shape \[-1\] has a dim that is not a non-negative integer/)
    expectCorrupt(craft({ t: entry([1.5], 0, 4) }, 4), /"t": shape .* not a non-negative integer/)
    expectCorrupt(craft({ t: { dtype: 'F32', shape: ['1'], data_offsets: [0, 4] } }, 4), /not a non-negative integer/)
    expectCorrupt(craft({ t: entry([1, 1, 1, 1, 1, 1, 1, 1, 1], 0, 4) }, 4), /"t": shape has 9 dims \(max 8\)/)
    expectCorrupt(craft({ t: entry([2 ** 40, 2 ** 40], 0, 4) }, 4), /"t": shape .* too many elements/)
  })

  it('rejects bad data_offsets', () => {
    const bad = [[0], [0, 4, 8], [-4, 0], [0.5, 4.5], ['0', '4'], null, { begin: 0 }]
    for (const offsets of bad) {
      expectCorrupt(craft({ t: { dtype: 'F32', shape: [1], data_offsets: offsets } }, 4), /"t": data_offsets .* not a pair of non-negative integers/)
    }
    expectCorrupt(craft({ t: entry([1], 8, 4) }, 8), /"t": data_offsets \[8, 4\] has begin > end/)
  })

  it('rejects a byte length that does not match the shape', () => {
    expectCorrupt(craft({ t: entry([3], 0, 8) }, 8), /"t": byte length 8 does not match shape \[3\]/)
    expectCorrupt(craft({ t: entry([0], 0, 4) }, 4), /"t": byte length 4 does not match/)
    expectCorrupt(craft({ t: entry([1], 0, 3) }, 3), /"t": byte length 3/)
  })

  it('rejects offsets outside the data section', () => {
    expectCorrupt(craft({ t: entry([2], 4, 12) }, 8), /"t": data_offsets \[4, 12\] lie outside the 8-byte data section/)
  })

  it('rejects overlaps, holes and trailing bytes', () => {
    expectCorrupt(craft({ a: entry([2], 0, 8), b: entry([2], 4, 12) }, 12), /"b" \[4, 12\) overlaps tensor "a" \[0, 8\)/)
    expectCorrupt(craft({ a: entry([2], 0, 8), b: entry([2], 0, 8) }, 8), /overlaps/)
    expectCorrupt(craft({ a: entry([1], 0, 4), b: entry([1], 8, 12) }, 12), /hole .* \[4, 8\) before tensor "b"/)
    expectCorrupt(craft({ a: entry([1], 4, 8) }, 8), /hole .* \[0, 4\)/)
    expectCorrupt(craft({ a: entry([1], 0, 4) }, 9), /5 trailing bytes after the data section/)
    expectCorrupt(craft({}, 1), /1 trailing bytes/)
    const appended = new Uint8Array(good.length + 4)
    appended.set(good)
    expectCorrupt(appended, /4 trailing bytes/)
  })

  it('rejects too many tensors', () => {
    expectCorrupt(good, /lists 5 tensors \(limit 4\)/, { maxTensors: 4 })
    expect(decodeSafetensors(good, { maxTensors: 5 }).tensors.size).toBe(5)
  })

  it('rejects metadata that is not a string-to-string map', () => {
    for (const meta of [[], null, 'x', 1]) {
      expectCorrupt(craft({ __metadata__: meta }), /__metadata__ is not a string-to-string map/)
    }
    expectCorrupt(craft({ __metadata__: { a: 'x', n: 1 } }), /__metadata__ value for "n" is not a string/)
    expectCorrupt(craft({ __metadata__: { o: {} } }), /value for "o"/)
  })

  it('throws only CorruptStateError or NonFiniteError for random single-byte corruption', () => {
    let seed = 12345
    const rand = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed }
    for (let i = 0; i < 300; i++) {
      const b = good.slice()
      b[rand() % b.length] ^= 1 << (rand() % 8)
      try {
        decodeSafetensors(b)
      } catch (err) {
        expect(err instanceof CorruptStateError || err instanceof NonFiniteError, String(err)).toBe(true)
      }
    }
  })
})

describe('safetensors encode validation', () => {
  const expectShapeError = (tensors: TensorSet, message: RegExp): void => {
    expect(() => encodeSafetensors(tensors)).toThrow(ShapeMismatchError)
    expect(() => encodeSafetensors(tensors)).toThrow(message)
  }

  it('rejects shape/data length mismatches, naming the tensor', () => {
    expectShapeError(new Map([['ok', f32([1], [1])], ['bad', f32([2, 2], [1, 2, 3])]]), /tensor "bad": shape \[2, 2\] needs 4 elements but data has 3/)
    expectShapeError(new Map([['s', f32([], [1, 2])]]), /"s": shape \[\] needs 1 elements/)
  })

  it('rejects bad shapes and dtype/array mismatches', () => {
    expectShapeError(new Map([['n', f32([-1], [])]]), /"n": shape .* not a non-negative integer/)
    expectShapeError(new Map([['r', f32(new Array(9).fill(1), [1])]]), /"r": shape has 9 dims/)
    expectShapeError(new Map([['d', { dtype: 'F32', shape: [1], data: new Int32Array(1) } as HostTensor]]), /"d": dtype F32 needs a Float32Array but data is Int32Array/)
    expectShapeError(new Map([['d', { dtype: 'F64', shape: [1], data: new Float32Array(1) } as unknown as HostTensor]]), /"d": unsupported dtype/)
  })

  it('rejects empty and reserved names', () => {
    expectShapeError(new Map([['', f32([1], [1])]]), /name must not be empty/)
    expectShapeError(new Map([['__metadata__', f32([1], [1])]]), /"__metadata__" is reserved/)
    expectShapeError(new Map([['\uD800x', f32([1], [1])]]), /not well-formed Unicode/)
  })

  it('rejects non-string metadata values', () => {
    expect(() => encodeSafetensors(new Map(), { a: 1 } as unknown as Record<string, string>)).toThrow(/metadata value for "a"/)
  })
})

describe('assertSameLayout', () => {
  const expected = new Map([['a', { shape: [2, 3] }], ['b', { shape: [3] }], ['c', { shape: [] }]])

  it('passes when names and shapes match', () => {
    const got = new Map([['a', f32([2, 3], [1, 2, 3, 4, 5, 6])], ['b', f32([3], [1, 2, 3])], ['c', i32([], [1])]])
    expect(() => assertSameLayout(expected, got, 'stage 1')).not.toThrow()
  })

  it('lists missing names, unexpected names and shape differences', () => {
    const got = new Map([['a', f32([3, 2], [1, 2, 3, 4, 5, 6])], ['c', i32([], [1])], ['zz', f32([1], [1])]])
    let caught: unknown
    try { assertSameLayout(expected, got, 'checkpoint stage 2') } catch (err) { caught = err }
    expect(caught).toBeInstanceOf(ShapeMismatchError)
    const msg = (caught as Error).message
    expect(msg).toMatch(/^checkpoint stage 2: /)
    expect(msg).toMatch(/1 missing \(b\)/)
    expect(msg).toMatch(/1 unexpected \(zz\)/)
    expect(msg).toMatch(/a: expected \[2, 3\], got \[3, 2\]/)
  })

  it('truncates long lists', () => {
    const many = new Map(Array.from({ length: 12 }, (_, i) => [`p${i}`, { shape: [1] }]))
    expect(() => assertSameLayout(many, new Map(), 'ctx')).toThrow(/12 missing \(p0; p1; p2; p3; p4; \.\.\. 7 more\)/)
  })
})

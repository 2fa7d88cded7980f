import { describe, expect, it } from 'vitest'
import { expectError } from './helpers/errors.js'
import { Uint8ArrayList } from 'uint8arraylist'
import {
  MAX_TENSOR_DIMS, MAX_TENSOR_FRAME_BYTES, BadDTypeError, BadShapeError, FrameTooLargeError, LimitExceededError,
  MalformedMessageError, NonFiniteTensorError, ProtocolError, TruncatedFrameError, UnsupportedVersionError,
  decodeTensorFrame, decodeTensorFrameHeader, encodeTensorFrame, encodeVarint, pushVarint, readVarint, tensorFrameHeaderLength
} from '../protocols/index.js'
import type { TensorFrameHeaderInit } from '../protocols/index.js'

const base: TensorFrameHeaderInit = {
  runId: 'run-7', epoch: 3, iteration: 41, microbatch: 2, hop: 5, direction: 'forward', shape: [2, 3, 4]
}

function join (chunks: Uint8Array[], offset = 0): Uint8Array {
  const total = chunks.reduce((n, c) => n + c.byteLength, 0)
  const out = new Uint8Array(total + offset).subarray(offset)
  let at = 0
  for (const c of chunks) { out.set(c, at); at += c.byteLength }
  return out
}

function ramp (n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3)
}

function frame (header: Partial<TensorFrameHeaderInit> = {}, data?: Float32Array | Int32Array): Uint8Array {
  const h = { ...base, ...header }
  const n = h.shape.reduce((a, b) => a * b, 1)
  return join(encodeTensorFrame(h, data ?? ramp(n)))
}

/** A copy of `bytes` with byte `i` set to `v`. */
function poke (bytes: Uint8Array, i: number, v: number): Uint8Array {
  const out = bytes.slice()
  out[i] = v
  return out
}

describe('tensor frames', () => {
  it('round-trips float32 and int32 with every field', () => {
    const data = ramp(24)
    const { header, data: out } = decodeTensorFrame(frame({}, data))
    expect(header).toEqual({ ...base, dtype: 'float32', flags: 0 })
    expect(out).toBeInstanceOf(Float32Array)
    expect(Array.from(out)).toEqual(Array.from(data))

    const ints = Int32Array.from([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 65, 66, 67])
    const h = { ...base, direction: 'backward' as const, shape: [8], flags: 0xa5, hop: 65535, epoch: 2 ** 32 - 1 }
    const back = decodeTensorFrame(frame(h, ints))
    expect(back.header).toEqual({ ...h, dtype: 'int32' })
    expect(back.data).toBeInstanceOf(Int32Array)
    expect(Array.from(back.data)).toEqual(Array.from(ints))
  })

  it('pads the header to a multiple of 4 for every run id length and rank', () => {
    for (let idLen = 1; idLen <= 64; idLen++) {
      for (let rank = 1; rank <= MAX_TENSOR_DIMS; rank++) {
        const shape = Array.from({ length: rank }, (_, i) => (i % 3) + 1)
        const runId = 'r'.repeat(idLen)
        const chunks = encodeTensorFrame({ ...base, runId, shape }, ramp(shape.reduce((a, b) => a * b, 1)))
        expect(chunks[0].byteLength % 4).toBe(0)
        expect(chunks[0].byteLength).toBe(tensorFrameHeaderLength(idLen, rank))
        const { header } = decodeTensorFrame(join(chunks), { shape })
        expect(header.runId).toBe(runId)
        expect(header.shape).toEqual(shape)
      }
    }
  })

  it('does not copy the tensor on either side when it can avoid it', () => {
    const data = ramp(24)
    const [, body] = encodeTensorFrame(base, data)
    expect(body.buffer).toBe(data.buffer)
    const bytes = frame()
    const out = decodeTensorFrame(bytes).data
    expect(out.buffer).toBe(bytes.buffer)
  })

  it('copies when the frame is unaligned or split over several chunks', () => {
    const chunks = encodeTensorFrame(base, ramp(24))
    const unaligned = join(chunks, 1)
    expect(unaligned.byteOffset % 4).toBe(1)
    expect(Array.from(decodeTensorFrame(unaligned).data)).toEqual(Array.from(ramp(24)))
    const bytes = join(chunks)
    const list = new Uint8ArrayList(bytes.subarray(0, 5), bytes.subarray(5, 41), bytes.subarray(41))
    expect(Array.from(decodeTensorFrame(list).data)).toEqual(Array.from(ramp(24)))
    expect(Array.from(decodeTensorFrame(new Uint8ArrayList(...chunks)).data)).toEqual(Array.from(ramp(24)))
  })

  it('rejects every truncation as truncated', () => {
    const bytes = frame()
    for (let n = 0; n < bytes.byteLength; n++) {
      expectError(() => decodeTensorFrame(bytes.subarray(0, n)), TruncatedFrameError)
    }
  })

  it('rejects trailing bytes', () => {
    const bytes = frame()
    expectError(() => decodeTensorFrame(join([bytes, new Uint8Array(4)])), MalformedMessageError, 'frame.data')
  })

  it('rejects oversized frames, ranks, run ids and shapes', () => {
    const bytes = frame()
    expectError(() => decodeTensorFrame(bytes, { maxBytes: bytes.byteLength - 1 }), FrameTooLargeError)
    expect(decodeTensorFrame(bytes, { maxBytes: bytes.byteLength }).header.shape).toEqual([2, 3, 4])
    // the ceiling cannot be raised, and the length is checked before anything is read
    const fake = { byteLength: MAX_TENSOR_FRAME_BYTES + 1, subarray: () => { throw new Error('read') } } as unknown as Uint8ArrayList
    expectError(() => decodeTensorFrame(fake, { maxBytes: 2 * MAX_TENSOR_FRAME_BYTES }), FrameTooLargeError)
    expectError(() => decodeTensorFrame(poke(bytes, 7, 9)), LimitExceededError, 'frame.shape')
    expectError(() => decodeTensorFrame(poke(bytes, 7, 0)), BadShapeError, 'frame.shape')
    expectError(() => decodeTensorFrame(poke(bytes, 22, 65)), LimitExceededError, 'frame.runId')
    // dims start at 28 for a 5-byte run id; a zero dim and a shape far over the limit
    expect(tensorFrameHeaderLength(5, 3)).toBe(40)
    expectError(() => decodeTensorFrame(poke(bytes, 28, 0)), BadShapeError, 'frame.shape[0]')
    const huge = bytes.slice()
    new DataView(huge.buffer).setUint32(28, 0xffffffff, true)
    new DataView(huge.buffer).setUint32(32, 0xffffffff, true)
    expectError(() => decodeTensorFrame(huge), BadShapeError, 'frame.shape')
    // a shape that fits the limit but not the bytes present is a truncation
    const big = bytes.slice()
    new DataView(big.buffer).setUint32(28, 1000, true)
    expectError(() => decodeTensorFrame(big), TruncatedFrameError, 'frame.data')
  })

  it('checks the expected shape, dtype, direction and run id', () => {
    const bytes = frame()
    expect(decodeTensorFrame(bytes, { shape: [2, 3, 4], dtype: 'float32', direction: 'forward', runId: 'run-7' }).data.length).toBe(24)
    expect(decodeTensorFrame(bytes, { shape: [-1, 3, -1] }).data.length).toBe(24)
    expectError(() => decodeTensorFrame(bytes, { shape: [2, 3, 5] }), BadShapeError, 'frame.shape')
    expectError(() => decodeTensorFrame(bytes, { shape: [2, 12] }), BadShapeError, 'frame.shape')
    expectError(() => decodeTensorFrame(bytes, { shape: [-1, 3, 4, 1] }), BadShapeError, 'frame.shape')
    expectError(() => decodeTensorFrame(bytes, { dtype: 'int32' }), BadDTypeError, 'frame.dtype')
    expectError(() => decodeTensorFrame(bytes, { direction: 'backward' }), MalformedMessageError, 'frame.direction')
    expectError(() => decodeTensorFrame(bytes, { runId: 'run-8' }), MalformedMessageError, 'frame.runId')
  })

  it('rejects NaN and Inf in float data unless told not to', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const data = ramp(24)
      data[17] = bad
      const bytes = join(encodeTensorFrame(base, data, { rejectNonFinite: false }))
      const e = expectError(() => decodeTensorFrame(bytes), NonFiniteTensorError, 'frame.data')
      expect(e.message).toContain('element 17')
      expect(decodeTensorFrame(bytes, { rejectNonFinite: false }).data[17]).toBe(bad)
      expectError(() => encodeTensorFrame(base, data), NonFiniteTensorError, 'frame.data')
      // the unaligned path finds it too
      expectError(() => decodeTensorFrame(join([bytes], 3)), NonFiniteTensorError)
    }
    // int32 data is never checked: any bit pattern is a valid int
    const ints = new Int32Array(new Float32Array([NaN, Infinity]).buffer)
    expect(decodeTensorFrame(frame({ shape: [2] }, ints)).data.length).toBe(2)
  })

  it('turns garbage headers into typed errors', () => {
    const bytes = frame()
    expectError(() => decodeTensorFrame(poke(bytes, 0, 0x00)), MalformedMessageError, 'frame.magic')
    expectError(() => decodeTensorFrame(Uint8Array.of(0x47)), MalformedMessageError, 'frame.magic')
    expectError(() => decodeTensorFrame(poke(bytes, 3, 2)), UnsupportedVersionError, 'frame.version')
    expectError(() => decodeTensorFrame(poke(bytes, 5, 2)), MalformedMessageError, 'frame.direction')
    expectError(() => decodeTensorFrame(poke(bytes, 6, 3)), BadDTypeError, 'frame.dtype')
    expectError(() => decodeTensorFrame(poke(bytes, 6, 0)), BadDTypeError, 'frame.dtype')
    expectError(() => decodeTensorFrame(poke(bytes, 23, 0x20)), MalformedMessageError, 'frame.runId')
    expectError(() => decodeTensorFrame(poke(bytes, 23, 0xc3)), MalformedMessageError, 'frame.runId')
    expectError(() => decodeTensorFrame(poke(bytes, 22, 0)), MalformedMessageError, 'frame.runId')
    // a 4-byte run id leaves one padding byte, at 27
    expectError(() => decodeTensorFrame(poke(frame({ runId: 'run7' }), 27, 1)), MalformedMessageError, 'frame.padding')
    expectError(() => decodeTensorFrame(new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n')), MalformedMessageError, 'frame.magic')
  })

  it('encoder validates the header and that the data matches it', () => {
    expectError(() => encodeTensorFrame(base, ramp(23)), BadShapeError, 'frame.shape')
    expectError(() => encodeTensorFrame({ ...base, dtype: 'int32' }, ramp(24)), BadDTypeError, 'frame.dtype')
    expectError(() => encodeTensorFrame(base, new Float64Array(24) as unknown as Float32Array), BadDTypeError, 'frame.data')
    expectError(() => encodeTensorFrame({ ...base, hop: 65536 }, ramp(24)), MalformedMessageError, 'frame.hop')
    expectError(() => encodeTensorFrame({ ...base, epoch: -1 }, ramp(24)), MalformedMessageError, 'frame.epoch')
    expectError(() => encodeTensorFrame({ ...base, flags: 256 }, ramp(24)), MalformedMessageError, 'frame.flags')
    expectError(() => encodeTensorFrame({ ...base, runId: 'a b' }, ramp(24)), MalformedMessageError, 'frame.runId')
    expectError(() => encodeTensorFrame({ ...base, runId: 'r'.repeat(65) }, ramp(24)), LimitExceededError, 'frame.runId')
    expectError(() => encodeTensorFrame({ ...base, direction: 'sideways' as 'forward' }, ramp(24)), MalformedMessageError, 'frame.direction')
    expectError(() => encodeTensorFrame({ ...base, shape: [] }, ramp(1)), BadShapeError, 'frame.shape')
    expectError(() => encodeTensorFrame({ ...base, shape: [1, 1, 1, 1, 1, 1, 1, 1, 1] }, ramp(1)), LimitExceededError, 'frame.shape')
    expectError(() => encodeTensorFrame({ ...base, shape: [2, 0] }, ramp(0)), BadShapeError, 'frame.shape[1]')
    expectError(() => encodeTensorFrame({ ...base, shape: [4] }, ramp(4), { maxBytes: 40 }), BadShapeError, 'frame.shape')
  })

  it('parses the header alone', () => {
    const bytes = frame()
    const { header, headerLength, dataLength } = decodeTensorFrameHeader(bytes.subarray(0, 40))
    expect(header.epoch).toBe(3)
    expect(headerLength).toBe(40)
    expect(dataLength).toBe(96)
  })

  it('handles a large tensor quickly', () => {
    const n = 4 * 1024 * 1024
    const data = new Float32Array(n)
    for (let i = 0; i < n; i++) data[i] = Math.sin(i)
    const t0 = performance.now()
    const chunks = encodeTensorFrame({ ...base, shape: [4, 1024, 1024] }, data)
    const out = decodeTensorFrame(new Uint8ArrayList(...chunks), { shape: [4, 1024, 1024] })
    expect(performance.now() - t0).toBeLessThan(2000)
    expect(out.data[n - 1]).toBe(data[n - 1])
  })
})

describe('varints', () => {
  it('round-trip as protobuf writes them, report incomplete ones, and refuse what they cannot encode', () => {
    const cases: Array<[number, number[]]> = [[0, [0]], [1, [1]], [127, [0x7f]], [128, [0x80, 0x01]], [300, [0xac, 0x02]], [2 ** 31 + 4, [0x84, 0x80, 0x80, 0x80, 0x08]]]
    for (const [value, bytes] of cases) {
      expect([...encodeVarint(value)]).toEqual(bytes)
      const out = [0xff]
      pushVarint(value, out)
      expect(out).toEqual([0xff, ...bytes])
      // read from the middle of a buffer, with a byte after it
      expect(readVarint(Uint8Array.from([9, ...bytes, 9]), 1)).toEqual({ value, end: 1 + bytes.length, complete: true })
    }
    const max = Number.MAX_SAFE_INTEGER
    expect(readVarint(encodeVarint(max)).value).toBe(max)
    expect(readVarint(Uint8Array.from([0x80, 0x80]))).toEqual({ value: 0, end: 2, complete: false })
    expect(readVarint(Uint8Array.from([0xff, 0xff, 0x01]), 0, 2)).toMatchObject({ complete: false, end: 2 })
    expect(readVarint(new Uint8Array(0))).toEqual({ value: 0, end: 0, complete: false })
    for (const bad of [-1, 1.5, 2 ** 53, NaN]) expect(() => encodeVarint(bad)).toThrow(RangeError)
  })
})

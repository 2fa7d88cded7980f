/** Assertions on the typed errors the protocol codecs throw, shared by the protocol tests. */
import { expect } from 'vitest'
import { SpotpipeError } from '../../common/index.js'
import type { ProtocolError } from '../../protocols/index.js'

/** What `fn` throws; fails the test when it returns instead. */
export function catchError (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected a throw')
}

/**
 * Expects `fn` to throw a `cls` (a SpotpipeError) and returns it. `field`: the field the error
 * names (a string), or a pattern its message matches (a RegExp).
 */
export function expectError (fn: () => unknown, cls: new (...args: any[]) => ProtocolError, field?: string | RegExp): ProtocolError {
  const err = catchError(fn)
  expect(err).toBeInstanceOf(cls)
  expect(err).toBeInstanceOf(SpotpipeError)
  const e = err as ProtocolError
  if (typeof field === 'string') expect(e.field).toBe(field)
  if (field instanceof RegExp) expect(e.message).toMatch(field)
  return e
}

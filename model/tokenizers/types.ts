/**
 * The tokenizer interface every data path uses, and the checks shared by its implementations.
 */
import { createHash } from 'node:crypto'
import { DataError } from '../../common/index.js'

/** Token ids as a tokenizer returns them. */
export type TokenIds = number[] | Uint8Array | Uint16Array | Uint32Array

export interface Tokenizer {
  /** `byte`, `gpt2`, or `hf:PATH` (PATH as given). */
  readonly name: string
  /** Ids are 0 .. vocabSize - 1: the model's embedding and head size. */
  readonly vocabSize: number
  /** The id placed between documents, when the tokenizer has one (GPT-2: 50256 `<|endoftext|>`). */
  readonly endOfText?: number
  /**
   * sha256 (hex) of everything that decides the ids: the algorithm, its vocabulary (the package
   * version that ships it, or the tokenizer.json bytes). Equal fingerprints, equal ids.
   */
  readonly fingerprint: string
  /** Text to ids. Plain text only: special-token strings in the text are not turned into special ids (hf: see hf.ts). */
  encode: (text: string) => TokenIds
  /** Ids to text. Throws a DataError (ERR_DATA_TOKEN_RANGE) for an id outside the vocabulary. */
  decode: (ids: ArrayLike<number>) => string
}

/** sha256 hex of the parts, each length-prefixed so that ("ab", "c") and ("a", "bc") differ. */
export function sha256Hex (...parts: Array<string | Uint8Array>): string {
  const h = createHash('sha256')
  for (const p of parts) {
    const bytes = typeof p === 'string' ? Buffer.from(p, 'utf8') : p
    h.update(`${bytes.length}:`)
    h.update(bytes)
  }
  return h.digest('hex')
}

/** Throw ERR_DATA_TOKEN_RANGE unless every id is an integer in [0, vocabSize). `where` names the text or file. */
export function checkIds (ids: ArrayLike<number>, vocabSize: number, where: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]
    if (!(Number.isInteger(id) && id >= 0 && id < vocabSize)) {
      throw new DataError(`${where}: token id ${String(id)} at position ${i} is outside the vocabulary (0 .. ${vocabSize - 1})`, 'ERR_DATA_TOKEN_RANGE')
    }
  }
}

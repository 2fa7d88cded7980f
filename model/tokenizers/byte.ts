/**
 * `byte`: every UTF-8 byte is a token (vocabulary 256), exactly model/data.ts's encode/decode, the
 * tokenizer the Brown corpus has always been trained with. No end-of-text id: documents are
 * separated by a blank line ("\n\n"), as in loadBrownCorpus.
 */
import { VOCAB_SIZE, decode, encode } from '../data.js'
import { checkIds, sha256Hex, type Tokenizer } from './types.js'

export const BYTE_TOKENIZER: Tokenizer = Object.freeze({
  name: 'byte',
  vocabSize: VOCAB_SIZE,
  fingerprint: sha256Hex('spotpipe-tokenizer', 'byte', 'utf-8', '1'),
  encode: (text: string): Uint8Array => encode(text),
  decode: (ids: ArrayLike<number>): string => {
    if (!(ids instanceof Uint8Array)) checkIds(ids, VOCAB_SIZE, 'byte tokenizer decode')
    return decode(ids)
  }
})

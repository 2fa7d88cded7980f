/**
 * Tokenizers by spec: `byte` (UTF-8 bytes, vocabulary 256: the Brown default), `gpt2` (GPT-2's
 * BPE, vocabulary 50,257, from the bundled `gpt-tokenizer` package) and `hf:PATH` (a Hugging Face
 * tokenizer.json). Every one implements Tokenizer (types.ts) and carries a fingerprint of what
 * decides its ids, which the corpus cache keys on.
 */
import { ConfigError } from '../../common/index.js'
import { BYTE_TOKENIZER } from './byte.js'
import { loadGpt2Tokenizer } from './gpt2.js'
import { loadHfTokenizer } from './hf.js'
import type { Tokenizer } from './types.js'

export { BYTE_TOKENIZER } from './byte.js'
export { GPT2_END_OF_TEXT, GPT2_VOCAB_SIZE, loadGpt2TokenBytes, loadGpt2Tokenizer } from './gpt2.js'
export { loadHfTokenizer } from './hf.js'
export { checkIds, sha256Hex, type TokenIds, type Tokenizer } from './types.js'

/** The spec strings `--tokenizer` takes. */
export const TOKENIZER_SPECS = 'byte | gpt2 | hf:PATH'

/** Check a tokenizer spec without loading it; throws ConfigError naming the choices. */
export function parseTokenizerSpec (spec: string): { kind: 'byte' } | { kind: 'gpt2' } | { kind: 'hf', path: string } {
  if (spec === 'byte') return { kind: 'byte' }
  if (spec === 'gpt2') return { kind: 'gpt2' }
  if (spec.startsWith('hf:')) {
    const path = spec.slice(3)
    if (path.length === 0) throw new ConfigError('tokenizer hf:PATH needs a path to a tokenizer.json (or its directory)')
    return { kind: 'hf', path }
  }
  throw new ConfigError(`unknown tokenizer "${spec}" (expected ${TOKENIZER_SPECS})`)
}

/** Load a tokenizer by spec (`byte`, `gpt2`, `hf:PATH`). */
export async function loadTokenizer (spec: string): Promise<Tokenizer> {
  const s = parseTokenizerSpec(spec)
  switch (s.kind) {
    case 'byte': return BYTE_TOKENIZER
    case 'gpt2': return await loadGpt2Tokenizer()
    case 'hf': return loadHfTokenizer(s.path, spec)
  }
}

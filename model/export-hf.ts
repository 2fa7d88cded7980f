/**
 * spotpipe's parameters as a Hugging Face GPT-2 folder (`GPT2LMHeadModel`): the name and layout
 * mapping, `config.json`, and the tokenizer files of the byte or the GPT-2 tokenizer. Pure (no tfjs, no I/O):
 * the caller writes the files (cli/commands/export.ts).
 *
 * spotpipe's model (model/transformer.ts) is GPT-2's architecture: pre-LayerNorm blocks, learned
 * positions, causal multi-head attention scaled by 1/sqrt(head size), a GELU MLP (tanh
 * approximation), a final LayerNorm. Every difference, and how this module closes it:
 *
 * | spotpipe                                  | GPT-2 (transformers)                         | closed by                                                     |
 * |-------------------------------------------|----------------------------------------------|---------------------------------------------------------------|
 * | names `embed.tok`, `blocks.i.ln1.g`, ...  | `transformer.wte.weight`, `transformer.h.i.ln_1.weight`, ... | the table HF_NAMES below (renaming only)      |
 * | `attn.wq`, `attn.wk`, `attn.wv`: three [D,D] | one fused `c_attn.weight` [D,3D] (Conv1D: [in,out], y = x @ W + b), split into q, k, v in that order along the output axis | concatenating [wq \| wk \| wv] column-wise; heads are split the same way in both (reshape [..,H,hd]) |
 * | no bias on q, k, v, o                     | `c_attn.bias` [3D], `attn.c_proj.bias` [D]   | written as zeros: x @ W + 0 is x @ W                           |
 * | `head.w` [D,V], its own matrix            | `lm_head.weight` [V,D] (nn.Linear: [out,in]), tied to `wte` by default | transposed; `tie_word_embeddings: false`     |
 * | MLP width F = mlpRatio * D                | `n_inner` (null means 4 D)                   | `n_inner: F` written explicitly                               |
 * | GELU 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))) (ops.ts) | `activation_function`           | `"gelu_new"`, the same formula                                |
 * | LayerNorm eps 1e-5, biased variance        | nn.LayerNorm, `layer_norm_epsilon`           | `layer_norm_epsilon: 1e-5`                                     |
 * | context seqLen, `embed.pos` [seqLen,D]    | `n_positions`, `wpe` [n_positions,D]         | `n_positions` (and the older `n_ctx`) = seqLen                |
 * | scores / sqrt(hd), no layer-index scaling | `scale_attn_weights`, `scale_attn_by_inverse_layer_idx`, `reorder_and_upcast_attn` | true, false, false            |
 * | causal mask: additive -1e9                | masked_fill with the dtype's minimum         | nothing to do: exp underflows to 0 in both                    |
 * | no dropout anywhere                       | `*_pdrop` 0.1 by default (training only)     | `resid_pdrop`, `embd_pdrop`, `attn_pdrop` = 0                 |
 * | no mask buffers                           | `h.i.attn.bias` / `masked_bias` in old checkpoints | not written (current transformers builds them as non-persistent buffers) |
 * | bytes, vocab 256, no special tokens       | 50257 BPE tokens, `<\|endoftext\|>` = 50256  | a ByteLevel BPE whose vocabulary is the 256 byte symbols of GPT-2's bytes_to_unicode with id = byte and no merges (exactly byte tokenization); `bos/eos_token_id: null`, no special tokens, `add_prefix_space: false` |
 * | or GPT-2's BPE (gpt-tokenizer's r50k ranks) | the same, as vocab.json + merges.txt       | gpt2TokenizerFiles: vocabulary from the ranks' bytes, merges derived from them (bpeMerges), `bos/eos_token_id: 50256` |
 * | embedding by one-hot matmul (wasm)        | embedding lookup                             | the same numbers                                              |
 * | F32 only                                  | any dtype                                    | `torch_dtype: "float32"`, safetensors metadata `format: pt`   |
 *
 * Tensor names carry the `transformer.` prefix of the base model, as GPT2LMHeadModel.save_pretrained
 * writes them: OpenAI's original files name only the base model (`wte.weight`, `h.0...`), which works
 * there because their head is tied; transformers adds the prefix to every key of a file with no
 * prefixed key, which would turn a separate `lm_head.weight` into an unexpected
 * `transformer.lm_head.weight`.
 */
import { ConfigError, ShapeMismatchError } from '../common/index.js'
import type { ModelConfig } from './config.js'
import { stageLayout, stageSpecs, type ParamSpec } from './params.js'
import type { HostTensor, TensorSet } from './safetensors.js'

/** Safetensors `__metadata__` of the exported weights (transformers refuses metadata without a known `format`). */
export const HF_METADATA: Readonly<Record<string, string>> = Object.freeze({ format: 'pt' })

/** Prefix of the base model's tensors inside GPT2LMHeadModel. */
export const HF_BASE_PREFIX = 'transformer.'

/** The byte vocabulary the tokenizer files describe. */
const BYTE_VOCAB = 256

/**
 * spotpipe name -> GPT-2 name for the tensors that are copied as they are (same layout), with `i`
 * standing for the block index. The fused and transposed ones are built in toHfTensors.
 */
export const HF_NAMES: ReadonlyArray<readonly [string, string]> = [
  ['embed.tok', 'wte.weight'], //                     [V,D]
  ['embed.pos', 'wpe.weight'], //                     [seqLen,D]
  ['blocks.i.ln1.g', 'h.i.ln_1.weight'], //           [D]
  ['blocks.i.ln1.b', 'h.i.ln_1.bias'], //             [D]
  ['blocks.i.attn.wo', 'h.i.attn.c_proj.weight'], //  [D,D]   Conv1D [in,out]
  ['blocks.i.ln2.g', 'h.i.ln_2.weight'], //           [D]
  ['blocks.i.ln2.b', 'h.i.ln_2.bias'], //             [D]
  ['blocks.i.mlp.w1', 'h.i.mlp.c_fc.weight'], //      [D,F]   Conv1D [in,out]
  ['blocks.i.mlp.b1', 'h.i.mlp.c_fc.bias'], //        [F]
  ['blocks.i.mlp.w2', 'h.i.mlp.c_proj.weight'], //    [F,D]   Conv1D [in,out]
  ['blocks.i.mlp.b2', 'h.i.mlp.c_proj.bias'], //      [D]
  ['head.ln.g', 'ln_f.weight'], //                    [D]
  ['head.ln.b', 'ln_f.bias'] //                       [D]
]

/** Every parameter of the whole model, in order (embed, blocks, head). */
export function allParamSpecs (m: ModelConfig): ParamSpec[] {
  return stageSpecs(m, stageLayout(m, 1, 0))
}

/** Hugging Face `config.json` of a GPT2LMHeadModel with spotpipe's architecture. */
export function hfConfig (m: ModelConfig, opts: { endOfText?: number } = {}): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: m.vocab,
    n_positions: m.seqLen,
    n_ctx: m.seqLen,
    n_embd: m.dModel,
    n_layer: m.nBlocks,
    n_head: m.nHeads,
    n_inner: m.mlpRatio * m.dModel,
    activation_function: 'gelu_new',
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    layer_norm_epsilon: 1e-5,
    initializer_range: m.initStd,
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: false,
    use_cache: true,
    // GPT-2's <|endoftext|> is both; the byte vocabulary has no special token
    bos_token_id: opts.endOfText ?? null,
    eos_token_id: opts.endOfText ?? null,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    // GPT2DoubleHeadsModel's summary head (unused by the LM head model), at GPT2Config's defaults
    summary_type: 'cls_index',
    summary_use_proj: true,
    summary_activation: null,
    summary_proj_to_labels: true,
    summary_first_dropout: 0.1
  }
}

function f32 (shape: number[], data: Float32Array): HostTensor {
  return { dtype: 'F32', shape, data }
}

/**
 * The GPT2LMHeadModel tensors of spotpipe parameters `params` (global names, e.g. the merged
 * stage files of a checkpoint; Adam moments and other names are ignored). Throws a
 * ShapeMismatchError naming the parameters that are missing or misshapen.
 */
export function toHfTensors (m: ModelConfig, params: TensorSet): TensorSet {
  const D = m.dModel
  const V = m.vocab
  const missing: string[] = []
  const differs: string[] = []
  for (const spec of allParamSpecs(m)) {
    const t = params.get(spec.name)
    if (t === undefined) missing.push(spec.name)
    else if (t.dtype !== 'F32' || t.shape.join(',') !== spec.shape.join(',')) differs.push(`${spec.name}: expected F32 [${spec.shape.join(',')}], got ${t.dtype} [${t.shape.join(',')}]`)
  }
  if (missing.length > 0 || differs.length > 0) {
    const parts = []
    if (missing.length > 0) parts.push(`${missing.length} missing (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''})`)
    if (differs.length > 0) parts.push(`${differs.length} with a different shape (${differs.slice(0, 5).join('; ')}${differs.length > 5 ? '; ...' : ''})`)
    throw new ShapeMismatchError(`parameters do not match the model config: ${parts.join(', ')}`)
  }
  const get = (name: string): Float32Array => (params.get(name) as HostTensor).data as Float32Array
  const out: TensorSet = new Map()
  const put = (name: string, t: HostTensor): void => { out.set(HF_BASE_PREFIX + name, t) }

  for (const [from, to] of HF_NAMES) {
    const blocks = from.startsWith('blocks.i.') ? m.nBlocks : 1
    for (let i = 0; i < blocks; i++) {
      const src = from.replace('.i.', `.${i}.`)
      const t = params.get(src) as HostTensor
      put(to.replace('.i.', `.${i}.`), f32([...t.shape], (t.data as Float32Array).slice()))
    }
  }
  for (let i = 0; i < m.nBlocks; i++) {
    const pre = `blocks.${i}.attn`
    const wq = get(`${pre}.wq`)
    const wk = get(`${pre}.wk`)
    const wv = get(`${pre}.wv`)
    const fused = new Float32Array(D * 3 * D) // [D,3D]: row r = [wq[r,:], wk[r,:], wv[r,:]]
    for (let r = 0; r < D; r++) {
      fused.set(wq.subarray(r * D, (r + 1) * D), r * 3 * D)
      fused.set(wk.subarray(r * D, (r + 1) * D), r * 3 * D + D)
      fused.set(wv.subarray(r * D, (r + 1) * D), r * 3 * D + 2 * D)
    }
    put(`h.${i}.attn.c_attn.weight`, f32([D, 3 * D], fused))
    put(`h.${i}.attn.c_attn.bias`, f32([3 * D], new Float32Array(3 * D)))
    put(`h.${i}.attn.c_proj.bias`, f32([D], new Float32Array(D)))
  }
  const w = get('head.w') // [D,V]
  const lm = new Float32Array(V * D) //                      [V,D]
  for (let d = 0; d < D; d++) for (let v = 0; v < V; v++) lm[v * D + d] = w[d * V + v]
  out.set('lm_head.weight', f32([V, D], lm))
  return out
}

/**
 * GPT-2's bytes_to_unicode: byte b -> the printable character that stands for it in the BPE
 * vocabulary. Printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other
 * 68 bytes, in increasing order, take U+0100, U+0101, ...
 */
export function bytesToUnicode (): string[] {
  const out = new Array<string>(256)
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)
  let next = 0
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(printable(b) ? b : 256 + next++)
  return out
}

/** The files of a Hugging Face tokenizer that reproduces spotpipe's byte tokenization (id = byte). */
export function byteTokenizerFiles (m: ModelConfig): TokenizerFiles {
  if (m.vocab !== BYTE_VOCAB) throw new ConfigError(`the byte tokenizer has ${BYTE_VOCAB} tokens, but the model's vocabulary is ${m.vocab}`)
  const symbols = bytesToUnicode()
  const vocab: Record<string, number> = {}
  symbols.forEach((s, b) => { vocab[s] = b })
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      vocab,
      merges: []
    }
  }
  const config = {
    tokenizer_class: 'GPT2Tokenizer',
    model_max_length: m.seqLen,
    add_prefix_space: false,
    add_bos_token: false,
    bos_token: null,
    eos_token: null,
    unk_token: null,
    pad_token: null,
    errors: 'replace',
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: {}
  }
  return {
    'tokenizer.json': JSON.stringify(tokenizer, null, 2) + '\n',
    'tokenizer_config.json': JSON.stringify(config, null, 2) + '\n',
    'vocab.json': JSON.stringify(vocab) + '\n',
    // GPT2Tokenizer skips the first line and the empty one after the last newline: no merges
    'merges.txt': '#version: 0.2\n'
  }
}

type TokenizerFiles = Record<'tokenizer.json' | 'tokenizer_config.json' | 'vocab.json' | 'merges.txt', string>

/** GPT-2's vocabulary: 50,256 ranked BPE tokens and `<|endoftext|>`. */
const GPT2_RANKED = 50256
const GPT2_EOT = '<|endoftext|>'

/**
 * The merges of a byte-level BPE given only its tokens' bytes in rank order (a tiktoken-style rank
 * list, where id = rank and ids 0..255 are the single bytes): for each id from 256 on, the two
 * lower-ranked tokens it is the merge of. Found by running the BPE itself on the token's bytes with
 * the ranks below its own (always merge the adjacent pair whose concatenation ranks lowest): it
 * must end in exactly two parts, or the list is not a BPE's. Returns [left id, right id] per id.
 */
export function bpeMerges (tokens: readonly Uint8Array[]): Array<[number, number]> {
  const key = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1')
  const rank = new Map<string, number>()
  tokens.forEach((t, id) => {
    const k = key(t)
    if (rank.has(k)) throw new ConfigError(`BPE token ${id} repeats token ${String(rank.get(k))}`)
    rank.set(k, id)
  })
  for (let id = 0; id < Math.min(256, tokens.length); id++) {
    if (tokens[id].length !== 1) throw new ConfigError(`BPE token ${id} has ${tokens[id].length} bytes: ids 0..255 must be the single bytes`)
  }
  const merges: Array<[number, number]> = []
  for (let id = 256; id < tokens.length; id++) {
    const parts = Array.from(tokens[id], b => String.fromCharCode(b)) // latin1: one char per byte
    for (;;) {
      let best = -1
      let bestRank = id
      for (let i = 0; i + 1 < parts.length; i++) {
        const r = rank.get(parts[i] + parts[i + 1])
        if (r !== undefined && r < bestRank) { bestRank = r; best = i }
      }
      if (best < 0) break
      parts.splice(best, 2, parts[best] + parts[best + 1])
    }
    if (parts.length !== 2) throw new ConfigError(`BPE token ${id} is not the merge of two lower-ranked tokens (its bytes end in ${parts.length} parts)`)
    merges.push([rank.get(parts[0]) as number, rank.get(parts[1]) as number])
  }
  return merges
}

/**
 * The Hugging Face files of GPT-2's own tokenizer, written from `tokenBytes` (the bytes of ids
 * 0..50255 in rank order: model/tokenizers/gpt2.ts loadGpt2TokenBytes): vocab.json and merges.txt as
 * GPT2Tokenizer reads them, and the same vocabulary and merges in tokenizer.json, with
 * `<|endoftext|>` = 50256 as its one special token (bos, eos and unk, as GPT-2 has it).
 */
export function gpt2TokenizerFiles (m: ModelConfig, tokenBytes: readonly Uint8Array[]): TokenizerFiles {
  if (m.vocab !== GPT2_RANKED + 1) throw new ConfigError(`the GPT-2 tokenizer has ${GPT2_RANKED + 1} tokens, but the model's vocabulary is ${m.vocab}`)
  if (tokenBytes.length !== GPT2_RANKED) throw new ConfigError(`GPT-2's ranked tokens are ${GPT2_RANKED}, got ${tokenBytes.length}`)
  const unicode = bytesToUnicode()
  const symbol = tokenBytes.map(b => Array.from(b, x => unicode[x]).join(''))
  const vocab: Record<string, number> = {}
  symbol.forEach((s, id) => { vocab[s] = id })
  vocab[GPT2_EOT] = GPT2_RANKED
  const merges = bpeMerges(tokenBytes).map(([a, b]) => `${symbol[a]} ${symbol[b]}`)
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: GPT2_RANKED, content: GPT2_EOT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges }
  }
  const special = { content: GPT2_EOT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }
  const config = {
    tokenizer_class: 'GPT2Tokenizer',
    model_max_length: m.seqLen,
    add_prefix_space: false,
    add_bos_token: false,
    bos_token: GPT2_EOT,
    eos_token: GPT2_EOT,
    unk_token: GPT2_EOT,
    pad_token: null,
    errors: 'replace',
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: { [String(GPT2_RANKED)]: special }
  }
  return {
    'tokenizer.json': JSON.stringify(tokenizer) + '\n',
    'tokenizer_config.json': JSON.stringify(config, null, 2) + '\n',
    'vocab.json': JSON.stringify(vocab) + '\n',
    'merges.txt': '#version: 0.2\n' + merges.join('\n') + '\n'
  }
}

#!/usr/bin/env python3
"""GPT-2 forward pass in numpy alone, over a Hugging Face folder (config.json + model.safetensors).

An implementation independent of spotpipe, written from GPT-2's definition (transformers'
GPT2LMHeadModel): it checks what `spotpipe export` writes. Needs only numpy (no torch, no
transformers, no safetensors package).

    python3 gpt2_numpy.py DIR --tokens 1,2,3 [--text TEXT]

prints one JSON object: {"logits": [[...V floats] per position], "config": {...},
"tokenizer_ids": [...] (with --text: the ids the tokenizer files give TEXT)}.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    """The tensors of a safetensors file: u64 LE header length, JSON header, raw LE data."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SystemExit(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise SystemExit(f"{path}: header length {n} exceeds the file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    covered = 0
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        shape = tuple(info["shape"])
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * dtype.itemsize:
            raise SystemExit(f"{path}: {name}: {end - begin} bytes for shape {shape}")
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).astype(np.float64)
        covered += end - begin
    if covered != len(data):
        raise SystemExit(f"{path}: tensors cover {covered} of {len(data)} data bytes")
    return tensors, metadata


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * np.power(x, 3))))


ACTIVATIONS = {"gelu_new": gelu_new}


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def conv1d(x, w, b):
    """transformers' Conv1D: weight [in, out], y = x @ W + b."""
    return x @ w + b


def forward(cfg, t, ids):
    """GPT2LMHeadModel logits [T, V] for one sequence (eval mode: no dropout)."""
    D, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hd = D // H
    eps = cfg["layer_norm_epsilon"]
    act = ACTIVATIONS[cfg["activation_function"]]
    T = len(ids)
    if T > cfg["n_positions"]:
        raise SystemExit(f"{T} tokens exceed n_positions {cfg['n_positions']}")
    p = lambda name: t["transformer." + name] if "transformer." + name in t else t[name]
    inner = cfg.get("n_inner") or 4 * D  # GPT2MLP: n_inner, else 4 * n_embd
    if p("h.0.mlp.c_fc.weight").shape != (D, inner):
        raise SystemExit(f"c_fc.weight is {p('h.0.mlp.c_fc.weight').shape}, config says ({D}, {inner})")
    h = p("wte.weight")[np.array(ids)] + p("wpe.weight")[np.arange(T)]
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(L):
        a = layer_norm(h, p(f"h.{i}.ln_1.weight"), p(f"h.{i}.ln_1.bias"), eps)
        qkv = conv1d(a, p(f"h.{i}.attn.c_attn.weight"), p(f"h.{i}.attn.c_attn.bias"))
        q, k, v = np.split(qkv, 3, axis=-1)  # query, key, value = split(n_embd, dim=2)
        heads = lambda z: z.reshape(T, H, hd).transpose(1, 0, 2)  # [H, T, hd]
        q, k, v = heads(q), heads(k), heads(v)
        w = q @ k.transpose(0, 2, 1)
        if cfg.get("scale_attn_weights", True):
            w = w / math.sqrt(hd)
        if cfg.get("scale_attn_by_inverse_layer_idx", False):
            w = w / float(i + 1)
        w = np.where(causal, w, np.finfo(np.float32).min)
        w = np.exp(w - w.max(-1, keepdims=True))
        w = w / w.sum(-1, keepdims=True)
        y = (w @ v).transpose(1, 0, 2).reshape(T, D)
        h = h + conv1d(y, p(f"h.{i}.attn.c_proj.weight"), p(f"h.{i}.attn.c_proj.bias"))
        m = layer_norm(h, p(f"h.{i}.ln_2.weight"), p(f"h.{i}.ln_2.bias"), eps)
        m = act(conv1d(m, p(f"h.{i}.mlp.c_fc.weight"), p(f"h.{i}.mlp.c_fc.bias")))
        h = h + conv1d(m, p(f"h.{i}.mlp.c_proj.weight"), p(f"h.{i}.mlp.c_proj.bias"))
    h = layer_norm(h, p("ln_f.weight"), p("ln_f.bias"), eps)
    head = p("wte.weight") if cfg.get("tie_word_embeddings", True) else t["lm_head.weight"]  # nn.Linear [V, D]
    return h @ head.T


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def tokenizer_ids(folder, text):
    """Byte-level BPE over the folder's vocab.json / merges.txt / tokenizer.json: the ids of `text`."""
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
        merges = [line for line in f.read().split("\n")[1:] if line.strip() != ""]
    with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    if tok["model"]["type"] != "BPE" or tok["model"]["vocab"] != vocab or tok["model"]["merges"] != merges:
        raise SystemExit("tokenizer.json's BPE model differs from vocab.json / merges.txt")
    if merges:
        raise SystemExit("this checker implements only the merge-free (byte) vocabulary")
    b2u = bytes_to_unicode()
    return [vocab[b2u[b]] for b in text.encode("utf-8")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--text", help="also tokenize this text with the folder's tokenizer files")
    args = ap.parse_args()
    with open(os.path.join(args.folder, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "gpt2":
        raise SystemExit(f"model_type is {cfg.get('model_type')!r}, not 'gpt2'")
    tensors, metadata = read_safetensors(os.path.join(args.folder, "model.safetensors"))
    ids = [int(x) for x in args.tokens.split(",")]
    logits = forward(cfg, tensors, ids)
    out = {"logits": logits.tolist(), "config": cfg, "metadata": metadata, "names": sorted(tensors)}
    if args.text is not None:
        out["tokenizer_ids"] = tokenizer_ids(args.folder, args.text)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

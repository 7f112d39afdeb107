#!/usr/bin/env python3
"""An independent float64 forward pass for `llama` / `qwen2` GGUF models, to check the Swift engine against.

Written from the math, not from the Swift code:
  x = E[token]
  per layer:  h = rmsnorm(x) * w_attn_norm
              q, k, v = Wq h (+bq), Wk h (+bk), Wv h (+bv)       -- per head of head_dim
              q, k = rope(q, pos), rope(k, pos)                   -- llama: adjacent pairs; qwen2: halves (NeoX)
              a_h = softmax(q_h . K_g^T / sqrt(head_dim), causal) V_g   with g = h // (n_head / n_head_kv)
              x = x + Wo concat(a_h)
              h = rmsnorm(x) * w_ffn_norm
              x = x + Wdown (silu(Wgate h) * Wup h)
  logits = Wout (rmsnorm(x) * w_output_norm)      -- Wout = E when output.weight is absent
  rmsnorm(x) = x / sqrt(mean(x^2) + eps);  rope pair (a, b) at position p, pair index i of d/2:
  theta = (p / linear_scale) * base^(-2i/rope_dims) / rope_freqs[i];  (a, b) -> (a cos - b sin, a sin + b cos)

Weights are dequantized to float64 (F32, F16; Q8_0, BF16 and the other block types such as Q4_K or Q6_K through
gguf-py); activations stay float64 (the engine quantizes them to Q8_0, so expect differences of about 1e-2 relative;
--emulate-q8 rounds them the same way, rounds keys and values to f16 as the engine's KV cache stores them, and
requantizes every matrix to Q8_0 as the engine does at load, to tell quantization error from a real mistake).

Usage: python3 scripts/engine/reference.py MODEL.gguf --tokens 1,2,3 [--generate 16] [--check-permutation]
Prints JSON: {"tokens", "logits" (one row per position), "generated", "generated_margins"}.
--check-permutation (llama only) also runs the model the Hugging Face way (q/k rows un-permuted, NeoX RoPE) and
fails unless both agree, which checks that make_model.py permutes the way the convention needs.
"""
import argparse
import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT


def load(path):
    reader = gguf.GGUFReader(path)

    def field(key, default=None):
        f = reader.fields.get(key)
        if f is None:
            return default
        value = f.parts[f.data[0]]
        return value.tobytes().decode() if f.types[0] == gguf.GGUFValueType.STRING else value[0].item()

    arch = field("general.architecture")
    if arch not in ("llama", "qwen2"):
        sys.exit(f"unsupported architecture {arch}")
    cfg = dict(
        arch=arch,
        n_embd=field(f"{arch}.embedding_length"),
        layers=field(f"{arch}.block_count"),
        n_head=field(f"{arch}.attention.head_count"),
        n_kv=field(f"{arch}.attention.head_count_kv"),
        eps=field(f"{arch}.attention.layer_norm_rms_epsilon"),
        base=field(f"{arch}.rope.freq_base", 10000.0),
    )
    cfg["head_dim"] = field(f"{arch}.attention.key_length", cfg["n_embd"] // cfg["n_head"])
    cfg["rope_dims"] = field(f"{arch}.rope.dimension_count", cfg["head_dim"])
    scaling = field(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        sys.exit(f"unsupported rope scaling {scaling}")
    cfg["rope_scale"] = field(f"{arch}.rope.scaling.factor", 1.0) if scaling == "linear" else 1.0

    weights = {}
    for t in reader.tensors:
        qtype = QT(t.tensor_type)
        if qtype in (QT.F16, QT.F32):
            array = np.asarray(t.data)
        else:
            # Q8_0, BF16 and the other block types (Q4_0 ... Q6_K, IQ4_NL, IQ4_XS): gguf-py's dequantizers.
            array = gguf.quants.dequantize(t.data, qtype)
        # numpy order is GGUF order reversed: a [n_in, n_out] GGUF matrix is (n_out, n_in) here.
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        weights[t.name] = np.asarray(array, dtype=np.float64).reshape(shape)
    if "output.weight" not in weights:
        weights["output.weight"] = weights["token_embd.weight"]
    return cfg, weights


def q8_round_trip(x):
    """x as the engine sees it after Q8_0 quantization along the last axis (blocks of 32, f16 scale)."""
    blocks = x.reshape(*x.shape[:-1], -1, 32).astype(np.float32)
    d = np.abs(blocks).max(axis=-1, keepdims=True) / np.float32(127)
    inverse = np.where(d == 0, np.float32(0), np.float32(1) / np.where(d == 0, 1, d))
    scaled = blocks * inverse
    q = np.trunc(scaled + np.copysign(np.float32(0.5), scaled))  # round half away from zero, like roundf
    return (q * d.astype(np.float16).astype(np.float32)).reshape(x.shape).astype(np.float64)


ACTIVATIONS = {"quantize": False}


def matmul(x, W):
    """x @ W.T, with x rounded to Q8_0 first when emulating the engine (--emulate-q8)."""
    return (q8_round_trip(x) if ACTIVATIONS["quantize"] else x) @ W.T


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, positions, cfg, factors, neox):
    """x: (T, heads, head_dim). Rotates the first rope_dims dimensions of every head.
    Linear scaling divides positions by its factor; rope_freqs.weight (if any) divides pair i's angle by factors[i]."""
    base, rope_dims = cfg["base"], cfg["rope_dims"]
    half = rope_dims // 2
    i = np.arange(half, dtype=np.float64)
    frequencies = base ** (-2.0 * i / rope_dims) / factors
    theta = (positions[:, None].astype(np.float64) / cfg["rope_scale"]) * frequencies  # (T, half)
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    out = x.copy()
    if neox:
        a, b = x[..., :half], x[..., half:rope_dims]
        out[..., :half] = a * cos - b * sin
        out[..., half:rope_dims] = a * sin + b * cos
    else:
        a, b = x[..., 0:rope_dims:2], x[..., 1:rope_dims:2]
        out[..., 0:rope_dims:2] = a * cos - b * sin
        out[..., 1:rope_dims:2] = a * sin + b * cos
    return out


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(cfg, w, tokens, neox=None, unpermute=False):
    """Logits (T, vocab) for every position of `tokens`."""
    if neox is None:
        neox = cfg["arch"] == "qwen2"
    n_head, n_kv, hd = cfg["n_head"], cfg["n_kv"], cfg["head_dim"]
    T = len(tokens)
    positions = np.arange(T)
    x = w["token_embd.weight"][np.array(tokens)]  # (T, n_embd)
    causal = np.triu(np.full((T, T), -np.inf), k=1)
    for layer in range(cfg["layers"]):
        p = f"blk.{layer}."
        h = rmsnorm(x, w[p + "attn_norm.weight"], cfg["eps"])
        proj = {}
        for name, heads in (("q", n_head), ("k", n_kv), ("v", n_kv)):
            W = w[p + f"attn_{name}.weight"]
            bias = w.get(p + f"attn_{name}.bias")
            if unpermute and name in ("q", "k"):
                W = unpermute_rows(W, heads)
                bias = None if bias is None else unpermute_rows(bias, heads)
            y = matmul(h, W)
            if bias is not None:
                y = y + bias
            proj[name] = y.reshape(T, heads, hd)
        factors = w.get("rope_freqs.weight", np.ones(cfg["rope_dims"] // 2))
        q = rope(proj["q"], positions, cfg, factors, neox)
        k = rope(proj["k"], positions, cfg, factors, neox)
        v = proj["v"]
        if ACTIVATIONS["quantize"]:
            # The engine's KV cache holds keys and values as f16.
            k = k.astype(np.float16).astype(np.float64)
            v = v.astype(np.float16).astype(np.float64)
        group = n_head // n_kv
        att = np.empty((T, n_head, hd))
        for head in range(n_head):
            g = head // group
            scores = q[:, head, :] @ k[:, g, :].T / np.sqrt(hd) + causal  # (T, T)
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            att[:, head, :] = probs @ v[:, g, :]
        x = x + matmul(att.reshape(T, n_head * hd), w[p + "attn_output.weight"])
        h = rmsnorm(x, w[p + "ffn_norm.weight"], cfg["eps"])
        gate = matmul(h, w[p + "ffn_gate.weight"])
        up = matmul(h, w[p + "ffn_up.weight"])
        x = x + matmul(silu(gate) * up, w[p + "ffn_down.weight"])
    x = rmsnorm(x, w["output_norm.weight"], cfg["eps"])
    return matmul(x, w["output.weight"])


def unpermute_rows(W, heads):
    """Inverse of the converter's permutation: adjacent pairs (2i, 2i+1) back to halves (i, i + d/2)."""
    rows = W.shape[0]
    return W.reshape(heads, rows // heads // 2, 2, *W.shape[1:]).swapaxes(1, 2).reshape(W.shape)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--tokens", required=True, help="comma-separated prompt token ids")
    p.add_argument("--generate", type=int, default=0, help="greedy tokens to generate after the prompt")
    p.add_argument("--check-permutation", action="store_true")
    p.add_argument("--decimals", type=int, default=5)
    p.add_argument("--emulate-q8", action="store_true",
                   help="round every matrix input (and F16/F32 matrices) to Q8_0 and keys/values to f16 the way the engine does; "
                        "shows how much of a difference from the engine is quantization")
    a = p.parse_args()

    cfg, w = load(a.model)
    if a.emulate_q8:
        ACTIVATIONS["quantize"] = True
        for name, W in w.items():
            if W.ndim == 2:
                w[name] = q8_round_trip(W)  # a no-op for Q8_0 weights, the load-time conversion for others
    tokens = [int(t) for t in a.tokens.split(",")]
    logits = forward(cfg, w, tokens)

    if a.check_permutation and cfg["arch"] == "llama":
        hf = forward(cfg, w, tokens, neox=True, unpermute=True)
        diff = np.abs(hf - logits).max()
        if diff > 1e-9:
            sys.exit(f"permutation check failed: HF-style and GGUF-style logits differ by {diff}")

    generated, margins = [], []
    sequence = list(tokens)
    for _ in range(a.generate):
        last = forward(cfg, w, sequence)[-1]
        top2 = np.sort(last)[-2:]
        nxt = int(np.argmax(last))
        generated.append(nxt)
        margins.append(round(float(top2[1] - top2[0]), 6))
        sequence.append(nxt)

    json.dump({
        "tokens": tokens,
        "logits": [[round(float(v), a.decimals) for v in row] for row in logits],
        "generated": generated,
        "generated_margins": margins,
    }, sys.stdout, separators=(",", ":"))
    print()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Convert a Hugging Face Llama or Qwen2 checkpoint to a GGUF file that Flywheel's engine serves.

Input: a directory as `save_pretrained` writes it: config.json, model.safetensors (or shards with
model.safetensors.index.json), tokenizer.json, tokenizer_config.json and, with recent transformers,
chat_template.jinja. Output: one GGUF file with Q8_0 (default) or F16 matrices; norms and biases stay F32.

    python3 deploy/train/to_gguf.py out/merged out/model-q8_0.gguf [--outtype q8_0|f16] [--name NAME]

Needs only `pip install gguf numpy` (safetensors are read directly; BF16, F16 and F32 inputs).

The layout is the one llama.cpp's convert_hf_to_gguf.py writes for these two architectures, and that
scripts/engine/make_model.py documents for the engine's tests:

  model.embed_tokens.weight                   -> token_embd.weight       GGUF shape [n_embd, n_vocab]
  model.layers.N.input_layernorm.weight       -> blk.N.attn_norm.weight  F32
  model.layers.N.self_attn.{q,k,v}_proj.weight-> blk.N.attn_{q,k,v}.weight (llama: rows permuted, see below)
  model.layers.N.self_attn.{q,k,v}_proj.bias  -> blk.N.attn_{q,k,v}.bias F32 (qwen2; llama with attention_bias)
  model.layers.N.self_attn.o_proj.weight      -> blk.N.attn_output.weight
  model.layers.N.post_attention_layernorm     -> blk.N.ffn_norm.weight   F32
  model.layers.N.mlp.{gate,up,down}_proj      -> blk.N.ffn_{gate,up,down}.weight
  model.norm.weight                           -> output_norm.weight      F32
  lm_head.weight                              -> output.weight           (absent when the embeddings are tied)

GGUF lists dimensions innermost first, so a PyTorch [out, in] matrix is written as GGUF [in, out]; numpy's
row-major bytes are the same, only the shape list is reversed (gguf-py does that). Q8_0 blocks run along
the innermost (input) dimension: 32 int8 values and one F16 scale per block.

RoPE: Hugging Face pairs dimension i of a head with i + head_dim/2 (rotate_half). For `llama` the rows of q
and k are permuted inside every head so that those pairs become adjacent (2i, 2i+1), the order ggml's
"normal" RoPE expects; `qwen2` is written unpermuted and run in NeoX (halves) mode.

Tokenizer: byte-level BPE tokenizer.json files become `tokenizer.ggml.model = "gpt2"` with the merges and
a `tokenizer.ggml.pre` naming the split rules Flywheel's tokenizer implements: "gpt-2", "smollm" (digits
isolated, then GPT-2), "llama-bpe" (Llama 3), "qwen2", "tekken". The pre-tokenizer is recognised from
tokenizer.json itself (its split regex and steps); anything else is refused with an error rather than
written with rules that would cut text differently. SentencePiece tokenizers (Llama 2, Mistral v0.1,
TinyLlama) are refused too: convert those with llama.cpp's convert_hf_to_gguf.py.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT


class ConversionError(Exception):
    """The checkpoint has something this converter cannot write faithfully."""


# ---------------------------------------------------------------- safetensors

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


class SafeTensors:
    """Reads tensors from a directory's safetensors files (one file or an index with shards) without torch."""

    def __init__(self, directory: str):
        self.entries: dict[str, tuple[str, dict, int]] = {}
        index = os.path.join(directory, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        elif os.path.exists(os.path.join(directory, "model.safetensors")):
            files = ["model.safetensors"]
        else:
            raise ConversionError(f"{directory}: no model.safetensors or model.safetensors.index.json "
                                  "(save the model with save_pretrained(..., safe_serialization=True))")
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(size))
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                if info["dtype"] not in _ST_DTYPES:
                    raise ConversionError(f"{name}: tensor {key} has dtype {info['dtype']}; "
                                          "supported: F32, F16, BF16 (dequantize the model first)")
                self.entries[key] = (path, info, 8 + size)

    def names(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> list[int]:
        return list(self.entries[name][1]["shape"])

    def load(self, name: str) -> np.ndarray:
        """The tensor as float32."""
        path, info, data_start = self.entries[name]
        begin, end = info["data_offsets"]
        dtype = _ST_DTYPES[info["dtype"]]
        count = (end - begin) // np.dtype(dtype).itemsize
        raw = np.fromfile(path, dtype=dtype, count=count, offset=data_start + begin).reshape(info["shape"])
        if info["dtype"] == "BF16":  # the top half of a float32
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)


# ---------------------------------------------------------------- model metadata

SUPPORTED = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


def hyperparameters(config: dict) -> dict:
    """Checks config.json and returns what the GGUF header needs."""
    archs = config.get("architectures") or []
    if len(archs) != 1 or archs[0] not in SUPPORTED:
        raise ConversionError(f"config.json architectures {archs}: supported are {', '.join(SUPPORTED)}")
    arch = SUPPORTED[archs[0]]
    if config.get("hidden_act", "silu") != "silu":
        raise ConversionError(f"hidden_act {config['hidden_act']!r}: the engine runs SwiGLU with silu only")
    if config.get("mlp_bias"):
        raise ConversionError("mlp_bias: the engine has no feed-forward biases")
    if (arch == "qwen2" and config.get("use_sliding_window")) or any(
            t != "full_attention" for t in config.get("layer_types") or []):
        raise ConversionError("sliding-window layers: the engine has full attention only")
    d = config["hidden_size"]
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    head_dim = config.get("head_dim") or d // n_head
    ffn = config["intermediate_size"]
    if n_head % n_kv:
        raise ConversionError(f"num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_kv}")
    if head_dim % 2:
        raise ConversionError(f"head_dim {head_dim} is odd; RoPE needs pairs")
    # The engine multiplies Q8_0 rows: every matrix input width must be whole blocks of 32.
    for what, width in (("hidden_size", d), ("intermediate_size", ffn), ("num_attention_heads * head_dim",
                                                                        n_head * head_dim)):
        if width % 32:
            raise ConversionError(f"{what} {width} is not a multiple of 32 (the Q8_0 block the engine needs)")

    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    theta = config.get("rope_theta") or rope.get("rope_theta") or 10000.0
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ConversionError("partial_rotary_factor != 1 is not supported")
    hp = dict(arch=arch, d=d, n_head=n_head, n_kv=n_kv, head_dim=head_dim, ffn=ffn,
              layers=config["num_hidden_layers"], vocab=config["vocab_size"],
              ctx=config.get("max_position_embeddings") or 4096, eps=config.get("rms_norm_eps", 1e-6),
              theta=float(theta), tied=bool(config.get("tie_word_embeddings", False)),
              rope_linear=None, rope_freqs=None)
    if rope_type == "default":
        pass
    elif rope_type == "linear":
        hp["rope_linear"] = float(rope["factor"])
    elif rope_type == "llama3" and arch == "llama":
        hp["rope_freqs"] = llama3_rope_factors(rope, theta, head_dim)
    else:
        raise ConversionError(f"RoPE scaling {rope_type!r} is not supported (none, linear, llama3)")
    return hp


def llama3_rope_factors(rope: dict, theta: float, head_dim: int) -> np.ndarray:
    """Llama 3.1's frequency scaling as per-pair divisors (rope_freqs.weight): the base inverse frequency
    of pair i divided by the scaled one Hugging Face computes (_compute_llama3_parameters)."""
    factor, low, high = float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"])
    old_ctx = float(rope["original_max_position_embeddings"])
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old_ctx / low, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
    scaled = np.where(medium, smoothed, scaled)
    return (inv_freq / scaled).astype(np.float32)


# ---------------------------------------------------------------- tokenizer

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
               r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
TEKKEN_REGEX = (r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
                r"""|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}"""
                r"""| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
# split regex -> (tokenizer.ggml.pre, whether the engine runs it with ignore_merges)
SPLIT_RULES = {GPT2_REGEX: ("gpt-2", False), LLAMA3_REGEX: ("llama-bpe", True), QWEN2_REGEX: ("qwen2", False),
               TEKKEN_REGEX: ("tekken", True)}


def _steps(node: dict | None) -> list[dict]:
    if node is None:
        return []
    return node["pretokenizers"] if node.get("type") == "Sequence" else [node]


def pre_tokenizer_name(tok: dict) -> str:
    """The GGUF `pre` whose split rules are exactly tokenizer.json's, or a ConversionError."""
    steps = _steps(tok.get("pre_tokenizer"))
    kinds = [s.get("type") for s in steps]
    byte_level = steps[-1] if kinds and kinds[-1] == "ByteLevel" else None
    if byte_level is None:
        raise ConversionError(f"pre_tokenizer {kinds}: not a byte-level BPE tokenizer")
    if byte_level.get("add_prefix_space"):
        raise ConversionError("ByteLevel add_prefix_space=true is not supported by the engine's tokenizer")
    rest = steps[:-1]
    ignore_merges = bool(tok["model"].get("ignore_merges", False))
    if byte_level.get("use_regex", True):
        # ByteLevel's own regex is GPT-2's.
        if not rest:
            name, engine_ignores = "gpt-2", False
        elif kinds[:-1] == ["Digits"] and rest[0].get("individual_digits"):
            name, engine_ignores = "smollm", False
        else:
            raise ConversionError(f"pre_tokenizer steps {kinds} are not a split the engine implements")
    else:
        if len(rest) != 1 or rest[0].get("type") != "Split":
            raise ConversionError(f"pre_tokenizer steps {kinds} are not a split the engine implements")
        split = rest[0]
        pattern = (split.get("pattern") or {}).get("Regex")
        if split.get("behavior") != "Isolated" or split.get("invert") or pattern not in SPLIT_RULES:
            raise ConversionError(f"pre_tokenizer split regex {pattern!r} (behavior {split.get('behavior')}) is "
                                  "not one the engine implements (GPT-2, Llama 3, Qwen2, Tekken)")
        name, engine_ignores = SPLIT_RULES[pattern]
    if ignore_merges != engine_ignores:
        raise ConversionError(f"tokenizer model ignore_merges={ignore_merges}, but the engine runs pre "
                              f"{name!r} with ignore_merges={engine_ignores}")
    return name


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def tokenizer_metadata(directory: str, n_vocab: int, config: dict) -> dict:
    """tokenizer.ggml.* values from tokenizer.json / tokenizer_config.json / chat_template.jinja."""
    path = os.path.join(directory, "tokenizer.json")
    if not os.path.exists(path):
        raise ConversionError(f"{directory}: no tokenizer.json (save the tokenizer with save_pretrained)")
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        raise ConversionError(f"tokenizer model {model.get('type')!r}: only byte-level BPE is supported")
    if model.get("byte_fallback") or any(s.get("type") == "Metaspace" for s in _steps(tok.get("pre_tokenizer"))):
        raise ConversionError("a SentencePiece-style tokenizer (byte_fallback/Metaspace): convert it with "
                              "llama.cpp's convert_hf_to_gguf.py, which reads tokenizer.model")
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(key):
            raise ConversionError(f"BPE {key}={model[key]!r} is not supported")
    normalizer = tok.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        raise ConversionError(f"normalizer {normalizer.get('type')!r} is not supported")
    if normalizer is not None:
        # As llama.cpp: Qwen2's NFC normalizer is not applied at inference (text is usually NFC already).
        print("to_gguf: note: the tokenizer's NFC normalizer is not written (llama.cpp does the same)",
              file=sys.stderr)
    decoder = tok.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        raise ConversionError(f"decoder {decoder.get('type')!r}: expected ByteLevel")
    pre = pre_tokenizer_name(tok)

    vocab: dict[int, str] = {i: t for t, i in model["vocab"].items()}
    types: dict[int, int] = {i: int(gguf.TokenType.NORMAL) for i in vocab}
    for added in tok.get("added_tokens", []):
        i = added["id"]
        if i in vocab and vocab[i] != added["content"]:
            raise ConversionError(f"added token {added['content']!r} reuses id {i} of {vocab[i]!r}")
        vocab[i] = added["content"]
        types[i] = int(gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED)
    size = max(vocab) + 1
    if size > n_vocab:
        raise ConversionError(f"the tokenizer has {size} ids but the model only {n_vocab} embedding rows")
    tokens, token_types = [], []
    for i in range(n_vocab):
        if i in vocab:
            tokens.append(vocab[i])
            token_types.append(types[i])
        else:  # padding rows of the embedding, as llama.cpp's converter names them
            tokens.append(f"[PAD{i}]")
            token_types.append(int(gguf.TokenType.UNUSED))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    if not merges:
        raise ConversionError("tokenizer.json has no merges")

    cfg = {}
    cfg_path = os.path.join(directory, "tokenizer_config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    ids = {t: i for i, t in enumerate(tokens)}

    def special_id(key: str, config_key: str):
        text = _token_text(cfg.get(key))
        if text is not None:
            if text not in ids:
                raise ConversionError(f"tokenizer_config {key} {text!r} is not in the vocabulary")
            return ids[text]
        value = config.get(config_key)
        if isinstance(value, list):
            value = value[0] if value else None
        return value

    # BOS/EOS added by the post-processor (TemplateProcessing: a special token first or last in `single`).
    add_bos = add_eos = False
    post = tok.get("post_processor") or {}
    for proc in (post.get("processors") or [post]):
        if proc.get("type") == "TemplateProcessing":
            single = proc.get("single") or []
            add_bos = bool(single) and "SpecialToken" in single[0]
            add_eos = bool(single) and "SpecialToken" in single[-1]
    add_bos = cfg.get("add_bos_token", add_bos) or False
    add_eos = cfg.get("add_eos_token", add_eos) or False

    template = None
    jinja = os.path.join(directory, "chat_template.jinja")
    if os.path.exists(jinja):
        with open(jinja, encoding="utf-8") as f:
            template = f.read()
    elif isinstance(cfg.get("chat_template"), str):
        template = cfg["chat_template"]
    elif isinstance(cfg.get("chat_template"), list):  # named templates: the default one
        template = next((t["template"] for t in cfg["chat_template"] if t.get("name") == "default"), None)
    if template is None:
        print("to_gguf: warning: no chat template; /v1/chat/completions will need local_models[].chat_template",
              file=sys.stderr)

    return dict(pre=pre, tokens=tokens, types=token_types, merges=merges,
                bos=special_id("bos_token", "bos_token_id"), eos=special_id("eos_token", "eos_token_id"),
                pad=special_id("pad_token", "pad_token_id"), add_bos=bool(add_bos), add_eos=bool(add_eos),
                chat_template=template)


# ---------------------------------------------------------------- tensors

def permute_for_normal_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of each head from HF's halves order (i, i + d/2) to adjacent pairs (2i, 2i + 1)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensor_plan(st: SafeTensors, hp: dict) -> list[tuple[str, str, list[int], str | None]]:
    """(gguf name, hf name, expected HF shape, permute: None | 'q' | 'k') for every tensor to write, in order."""
    d, f, v = hp["d"], hp["ffn"], hp["vocab"]
    q, kv = hp["n_head"] * hp["head_dim"], hp["n_kv"] * hp["head_dim"]
    names = set(st.names())
    plan = [("token_embd.weight", "model.embed_tokens.weight", [v, d], None)]
    for i in range(hp["layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", p + "input_layernorm.weight", [d], None),
            (b + "attn_q.weight", p + "self_attn.q_proj.weight", [q, d], "q"),
            (b + "attn_k.weight", p + "self_attn.k_proj.weight", [kv, d], "k"),
            (b + "attn_v.weight", p + "self_attn.v_proj.weight", [kv, d], None),
        ]
        for proj, rows, perm in (("q", q, "q"), ("k", kv, "k"), ("v", kv, None)):
            if p + f"self_attn.{proj}_proj.bias" in names:
                plan.append((b + f"attn_{proj}.bias", p + f"self_attn.{proj}_proj.bias", [rows], perm))
        plan += [
            (b + "attn_output.weight", p + "self_attn.o_proj.weight", [d, q], None),
            (b + "ffn_norm.weight", p + "post_attention_layernorm.weight", [d], None),
            (b + "ffn_gate.weight", p + "mlp.gate_proj.weight", [f, d], None),
            (b + "ffn_up.weight", p + "mlp.up_proj.weight", [f, d], None),
            (b + "ffn_down.weight", p + "mlp.down_proj.weight", [d, f], None),
        ]
    plan.append(("output_norm.weight", "model.norm.weight", [d], None))
    if not hp["tied"]:
        plan.append(("output.weight", "lm_head.weight", [v, d], None))

    used = {hf for _, hf, _, _ in plan}
    ignorable = {"lm_head.weight"} if hp["tied"] else set()  # some checkpoints store the tied copy too
    extra = sorted(n for n in names - used - ignorable if not n.endswith("rotary_emb.inv_freq"))
    if extra:
        raise ConversionError(f"tensors the engine has no place for: {', '.join(extra[:8])}"
                              + (" ..." if len(extra) > 8 else ""))
    for _, hf, shape, _ in plan:
        if hf not in names:
            raise ConversionError(f"missing tensor {hf}")
        if st.shape(hf) != shape:
            raise ConversionError(f"{hf} has shape {st.shape(hf)}, expected {shape}")
    return plan


def convert(src: str, out: str, outtype: str = "q8_0", name: str | None = None) -> dict:
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    hp = hyperparameters(config)
    st = SafeTensors(src)
    plan = tensor_plan(st, hp)
    tk = tokenizer_metadata(src, hp["vocab"], config)
    arch = hp["arch"]

    w = gguf.GGUFWriter(out, arch)
    w.add_name(name or os.path.basename(os.path.normpath(src)))
    w.add_context_length(hp["ctx"])
    w.add_embedding_length(hp["d"])
    w.add_block_count(hp["layers"])
    w.add_feed_forward_length(hp["ffn"])
    w.add_head_count(hp["n_head"])
    w.add_head_count_kv(hp["n_kv"])
    if hp["head_dim"] != hp["d"] // hp["n_head"]:
        w.add_key_length(hp["head_dim"])
        w.add_value_length(hp["head_dim"])
    w.add_layer_norm_rms_eps(hp["eps"])
    w.add_rope_freq_base(hp["theta"])
    w.add_rope_dimension_count(hp["head_dim"])
    if hp["rope_linear"]:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(hp["rope_linear"])
    w.add_vocab_size(hp["vocab"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if outtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(tk["pre"])
    w.add_token_list(tk["tokens"])
    w.add_token_types(tk["types"])
    w.add_token_merges(tk["merges"])
    for setter, value in ((w.add_bos_token_id, tk["bos"]), (w.add_eos_token_id, tk["eos"]),
                          (w.add_pad_token_id, tk["pad"])):
        if value is not None:
            setter(value)
    w.add_add_bos_token(tk["add_bos"])
    w.add_add_eos_token(tk["add_eos"])
    if tk["chat_template"] is not None:
        w.add_chat_template(tk["chat_template"])

    # Tensor infos first (shapes and sizes only), then the data one tensor at a time: memory stays at one tensor.
    def encoded_info(shape: list[int]):
        if len(shape) == 1:
            return shape, np.float32, shape[0] * 4, None
        rows, cols = shape
        if outtype == "q8_0":
            block = gguf.GGML_QUANT_SIZES[QT.Q8_0]  # (32 values, 34 bytes)
            return [rows, cols // block[0] * block[1]], np.uint8, rows * cols // block[0] * block[1], QT.Q8_0
        return shape, np.float16, rows * cols * 2, None

    if hp["rope_freqs"] is not None:
        w.add_tensor_info("rope_freqs.weight", [len(hp["rope_freqs"])], np.float32, hp["rope_freqs"].nbytes)
    for gname, _, shape, _ in plan:
        byte_shape, dtype, nbytes, raw = encoded_info(shape)
        w.add_tensor_info(gname, byte_shape, dtype, nbytes, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    if hp["rope_freqs"] is not None:
        w.write_tensor_data(hp["rope_freqs"])
    for gname, hf, shape, perm in plan:
        t = st.load(hf)
        if not np.all(np.isfinite(t)):
            raise ConversionError(f"{hf} has non-finite values")
        if arch == "llama" and perm:
            t = permute_for_normal_rope(t, hp["n_head"] if perm == "q" else hp["n_kv"])
        if t.ndim == 1:
            data = np.ascontiguousarray(t, dtype=np.float32)
        elif outtype == "q8_0":
            data = gguf.quants.quantize(t, QT.Q8_0)
        else:
            data = t.astype(np.float16)
        w.write_tensor_data(data)
    w.close()
    return dict(arch=arch, tensors=len(plan), vocab=hp["vocab"], pre=tk["pre"], bytes=os.path.getsize(out))


def main() -> int:
    p = argparse.ArgumentParser(description="Hugging Face Llama/Qwen2 directory -> GGUF for Flywheel's engine")
    p.add_argument("model_dir", help="directory with config.json, safetensors and tokenizer.json")
    p.add_argument("out", help="GGUF file to write")
    p.add_argument("--outtype", choices=["q8_0", "f16"], default="q8_0")
    p.add_argument("--name", help="general.name (default: the directory name)")
    a = p.parse_args()
    tmp = a.out + ".partial"  # written aside and renamed, so a failed conversion leaves no file behind
    try:
        info = convert(a.model_dir, tmp, a.outtype, a.name)
        os.replace(tmp, a.out)
    except ConversionError as e:
        print(f"to_gguf: cannot convert {a.model_dir}: {e}", file=sys.stderr)
        return 2
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"to_gguf: wrote {a.out}: {info['arch']}, {info['tensors']} tensors, vocab {info['vocab']}, "
          f"pre {info['pre']}, {a.outtype}, {info['bytes'] / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

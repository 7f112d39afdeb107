#!/usr/bin/env python3
"""Write a random-weight GGUF model laid out the way llama.cpp's converter writes `llama` and `qwen2` models.

Needs `pip install gguf numpy`. The Swift tests read checked-in outputs of this script; it is only needed to
regenerate fixtures or to make benchmark-sized files.

Layout (facts from gguf-py's constants and llama.cpp's convert_hf_to_gguf.py):
  token_embd.weight                 [n_embd, n_vocab]   (GGUF order: innermost first)
  blk.N.attn_norm.weight            [n_embd]            F32
  blk.N.attn_q.weight               [n_embd, n_head * head_dim]
  blk.N.attn_k.weight / attn_v      [n_embd, n_head_kv * head_dim]
  blk.N.attn_q/k/v.bias             [rows]              F32, qwen2 only
  blk.N.attn_output.weight          [n_head * head_dim, n_embd]
  blk.N.ffn_norm.weight             [n_embd]            F32
  blk.N.ffn_gate/up.weight          [n_embd, n_ff]
  blk.N.ffn_down.weight             [n_ff, n_embd]
  output_norm.weight                [n_embd]            F32
  output.weight                     [n_embd, n_vocab]   absent when --tied (then token_embd is the output too)
  rope_freqs.weight                 [rope_dims / 2]     F32, with --rope-freqs (Llama 3.1-style: pair i's angle
                                                        is divided by factor i)

RoPE: the weights are drawn as Hugging Face would hold them (rotate_half convention: dimension i of a head pairs
with i + head_dim/2). For `llama` the converter permutes the rows of q and k inside every head so that the pairs
become adjacent (2i, 2i+1), and llama.cpp runs "normal" RoPE on them; `qwen2` is written unpermuted and llama.cpp
runs NeoX RoPE (halves). This script does exactly that, so reference.py can check both views agree.

Usage:
  python3 scripts/engine/make_model.py OUT.gguf --arch llama --n-embd 64 --layers 2 --heads 4 --kv-heads 2 \
      --ffn 128 --vocab 384 --type q8_0 --seed 1
  python3 scripts/engine/make_model.py /tmp/smollm2.gguf --preset smollm2-135m
  python3 scripts/engine/make_model.py --fixtures     # the checked-in test models and their expected outputs

The fixtures (Tests/FlywheelEngineTests/Fixtures/model-*.gguf and .json) are small random models; each JSON holds
reference.py's float64 logits for a 12-token prompt at every position, 16 greedy tokens, and for the last four
positions the logits with the engine's Q8_0 rounding emulated (reference.py --emulate-q8). Their seeds were
picked so that every greedy step's top-2 margin is well above the engine's Q8_0 error (see generated_margins).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

PRESETS = {
    "smollm2-135m": dict(arch="llama", n_embd=576, layers=30, heads=9, kv_heads=3, ffn=1536, vocab=49152,
                         ctx=8192, tied=True, rope_base=100000.0, eps=1e-5, pre="smollm"),
    "qwen2.5-0.5b": dict(arch="qwen2", n_embd=896, layers=24, heads=14, kv_heads=2, ffn=4864, vocab=151936,
                         ctx=32768, tied=True, rope_base=1000000.0, eps=1e-6, pre="qwen2"),
}

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A little text to learn merges from, so the vocabulary holds real byte-level BPE merges.
CORPUS = (
    "the quick brown fox jumps over the lazy dog. the rain in spain stays mainly in the plain. "
    "hello world! this is a test of the tokenizer and the model. there is nothing there, then there was. "
    "in the beginning the engine reads the file and then it runs the transformer on the tokens."
)


def byte_level_alphabet():
    """GPT-2's byte -> printable character table: printable bytes map to themselves, the rest to 256+n."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def learn_merges(count):
    """Plain BPE over the corpus words (byte-level, a leading space folded into the word as GPT-2 does)."""
    alphabet = byte_level_alphabet()
    words = {}
    for i, word in enumerate(CORPUS.split(" ")):
        text = (" " if i else "") + word
        symbols = tuple(alphabet[b] for b in text.encode("utf-8"))
        words[symbols] = words.get(symbols, 0) + 1
    merges = []
    for _ in range(count):
        pairs = {}
        for symbols, freq in words.items():
            for a, b in zip(symbols, symbols[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + freq
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])  # sorted first: ties break the same way every run
        merges.append(best)
        merged = {}
        for symbols, freq in words.items():
            out = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + freq
        words = merged
    return merges


def vocabulary(n_vocab, merge_count):
    """Tokens: 256 byte characters, merged tokens, the three specials, then [PADn] fillers up to n_vocab."""
    alphabet = byte_level_alphabet()
    tokens = [alphabet[b] for b in range(256)]
    types = [gguf.TokenType.NORMAL] * 256
    merges = []
    for a, b in learn_merges(merge_count):
        if a + b in tokens:
            continue
        if len(tokens) + 1 + len(SPECIALS) > n_vocab:
            break
        tokens.append(a + b)
        types.append(gguf.TokenType.NORMAL)
        merges.append(f"{a} {b}")
    specials = {}
    for s in SPECIALS:
        specials[s] = len(tokens)
        tokens.append(s)
        types.append(gguf.TokenType.CONTROL)
    if len(tokens) > n_vocab:
        sys.exit(f"vocabulary of {n_vocab} is too small for {len(tokens)} base tokens")
    while len(tokens) < n_vocab:
        # llama.cpp's converter pads a short vocabulary the same way.
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(gguf.TokenType.UNUSED)
    return tokens, types, merges, specials


def permute_for_normal_rope(w, n_head):
    """HF (halves) row order -> GGUF llama (adjacent pairs): inside each head, row i and i + d/2 become 2i, 2i+1."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def encode(w, qtype):
    """(array to write, raw dtype) for a 2D weight in the requested type."""
    if qtype == "q8_0":
        return gguf.quants.quantize(w.astype(np.float32), QT.Q8_0), QT.Q8_0
    if qtype == "f16":
        return w.astype(np.float16), None
    return w.astype(np.float32), None


HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "Tests", "FlywheelEngineTests", "Fixtures")
FIXTURE_PROMPT = [258, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100]
FIXTURE_MODELS = {
    "model-llama-q8": ["--arch", "llama", "--ffn", "96", "--vocab", "320", "--merges", "50", "--seed", "11"],
    "model-llama-ropefreqs-q8": ["--arch", "llama", "--tied", "--layers", "1", "--ffn", "64", "--vocab", "288",
                                 "--merges", "24", "--rope-freqs", "--rope-scaling-linear", "2", "--rope-base",
                                 "500000", "--seed", "3"],
    "model-qwen2-q8": ["--arch", "qwen2", "--tied", "--ffn", "96", "--vocab", "320", "--merges", "50",
                       "--no-rope-dims", "--seed", "1"],
    "model-qwen2-f16": ["--arch", "qwen2", "--type", "f16", "--tied", "--layers", "1", "--ffn", "64",
                        "--vocab", "288", "--merges", "24", "--seed", "3"],
}


def write_fixtures():
    for name, args in FIXTURE_MODELS.items():
        model = os.path.join(FIXTURES, name + ".gguf")
        subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), model] + args, check=True)
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "reference.py"), model, "--tokens",
             ",".join(map(str, FIXTURE_PROMPT)), "--generate", "16", "--check-permutation", "--decimals", "4"],
            check=True, capture_output=True, text=True).stdout
        result = json.loads(out)
        # The same prompt with the engine's Q8_0 rounding emulated (last four positions, to keep the file
        # small): the engine should match these to float rounding, far tighter than the exact logits.
        emulated = json.loads(subprocess.run(
            [sys.executable, os.path.join(HERE, "reference.py"), model, "--tokens",
             ",".join(map(str, FIXTURE_PROMPT)), "--emulate-q8", "--decimals", "4"],
            check=True, capture_output=True, text=True).stdout)
        result["logits_q8_tail"] = emulated["logits"][-4:]
        result["made_with"] = "scripts/engine/make_model.py " + " ".join(args)
        with open(os.path.join(FIXTURES, name + ".json"), "w") as f:
            json.dump(result, f, separators=(",", ":"))
            f.write("\n")
        print(f"{name}: min greedy margin {min(result['generated_margins'])}")


def main():
    if sys.argv[1:] == ["--fixtures"]:
        write_fixtures()
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, help="attention.key_length/value_length (default n_embd / heads)")
    p.add_argument("--ffn", type=int, default=128)
    p.add_argument("--vocab", type=int, default=384)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--type", choices=["q8_0", "f16", "f32"], default="q8_0")
    p.add_argument("--tied", action="store_true", help="no output.weight: the output reuses token_embd")
    p.add_argument("--bias", action="store_true", help="q/k/v biases (always on for qwen2)")
    p.add_argument("--rope-base", type=float)
    p.add_argument("--eps", type=float)
    p.add_argument("--no-rope-dims", action="store_true", help="omit rope.dimension_count (readers default it)")
    p.add_argument("--rope-freqs", action="store_true", help="write rope_freqs.weight (factors 1..8)")
    p.add_argument("--rope-scaling-linear", type=float, help="rope.scaling.type linear with this factor")
    p.add_argument("--merges", type=int, default=120)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()

    cfg = dict(arch=a.arch, n_embd=a.n_embd, layers=a.layers, heads=a.heads, kv_heads=a.kv_heads, ffn=a.ffn,
               vocab=a.vocab, ctx=a.ctx, tied=a.tied,
               rope_base=10000.0 if a.arch == "llama" else 1000000.0, eps=1e-5 if a.arch == "llama" else 1e-6,
               pre="smollm" if a.arch == "llama" else "qwen2")
    if a.preset:
        cfg.update(PRESETS[a.preset])
    if a.rope_base is not None:
        cfg["rope_base"] = a.rope_base
    if a.eps is not None:
        cfg["eps"] = a.eps
    arch, n_embd, n_head, n_kv = cfg["arch"], cfg["n_embd"], cfg["heads"], cfg["kv_heads"]
    head_dim = a.head_dim or n_embd // n_head
    assert (a.head_dim or n_embd % n_head == 0) and n_head % n_kv == 0 and head_dim % 2 == 0
    bias = a.bias or arch == "qwen2"
    rng = np.random.default_rng(a.seed)

    def normal(*shape, std):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def norm_weight(n):
        return (1.0 + normal(n, std=0.1)).astype(np.float32)

    w = gguf.GGUFWriter(a.out, arch)
    w.add_name(a.preset or f"random-{arch}")
    w.add_context_length(cfg["ctx"])
    w.add_embedding_length(n_embd)
    w.add_block_count(cfg["layers"])
    w.add_feed_forward_length(cfg["ffn"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    if a.head_dim:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg["eps"])
    w.add_rope_freq_base(cfg["rope_base"])
    if not a.no_rope_dims:
        w.add_rope_dimension_count(head_dim)
    if a.rope_scaling_linear:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(a.rope_scaling_linear)
    w.add_file_type({"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "f32": gguf.LlamaFileType.ALL_F32}[a.type])

    tokens, types, merges, specials = vocabulary(cfg["vocab"], a.merges)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(cfg["pre"])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(specials["<|endoftext|>"])
    w.add_eos_token_id(specials["<|im_end|>"])
    w.add_eot_token_id(specials["<|im_end|>"])
    w.add_pad_token_id(specials["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)

    # Scales: a matrix fed a unit-RMS vector gives unit-RMS outputs (std 1/sqrt(n_in)); the embedding/output
    # matrix is larger so logits spread over several units instead of being flat.
    def add_matrix(name, matrix):
        data, raw = encode(matrix, a.type)
        w.add_tensor(name, data, raw_dtype=raw)

    if a.rope_freqs:
        # Low-frequency pairs slowed down the most, as Llama 3.1's scaling does.
        w.add_tensor("rope_freqs.weight", np.linspace(1, 8, head_dim // 2, dtype=np.float32))
    embed_std = 2.5 / np.sqrt(n_embd)
    add_matrix("token_embd.weight", normal(cfg["vocab"], n_embd, std=embed_std))
    for layer in range(cfg["layers"]):
        blk = f"blk.{layer}"
        w.add_tensor(f"{blk}.attn_norm.weight", norm_weight(n_embd))
        q = normal(n_head * head_dim, n_embd, std=1 / np.sqrt(n_embd))
        k = normal(n_kv * head_dim, n_embd, std=1 / np.sqrt(n_embd))
        v = normal(n_kv * head_dim, n_embd, std=1 / np.sqrt(n_embd))
        qb = normal(n_head * head_dim, std=0.1)
        kb = normal(n_kv * head_dim, std=0.1)
        vb = normal(n_kv * head_dim, std=0.1)
        if arch == "llama":
            # The converter's permutation (biases, if any, are rows too and get the same treatment).
            q, k = permute_for_normal_rope(q, n_head), permute_for_normal_rope(k, n_kv)
            qb, kb = permute_for_normal_rope(qb, n_head), permute_for_normal_rope(kb, n_kv)
        add_matrix(f"{blk}.attn_q.weight", q)
        add_matrix(f"{blk}.attn_k.weight", k)
        add_matrix(f"{blk}.attn_v.weight", v)
        if bias:
            w.add_tensor(f"{blk}.attn_q.bias", qb)
            w.add_tensor(f"{blk}.attn_k.bias", kb)
            w.add_tensor(f"{blk}.attn_v.bias", vb)
        add_matrix(f"{blk}.attn_output.weight", normal(n_embd, n_head * head_dim, std=1 / np.sqrt(n_embd)))
        w.add_tensor(f"{blk}.ffn_norm.weight", norm_weight(n_embd))
        add_matrix(f"{blk}.ffn_gate.weight", normal(cfg["ffn"], n_embd, std=1 / np.sqrt(n_embd)))
        add_matrix(f"{blk}.ffn_up.weight", normal(cfg["ffn"], n_embd, std=1 / np.sqrt(n_embd)))
        add_matrix(f"{blk}.ffn_down.weight", normal(n_embd, cfg["ffn"], std=1 / np.sqrt(cfg["ffn"])))
    w.add_tensor("output_norm.weight", norm_weight(n_embd))
    if not cfg["tied"]:
        add_matrix("output.weight", normal(cfg["vocab"], n_embd, std=embed_std))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()

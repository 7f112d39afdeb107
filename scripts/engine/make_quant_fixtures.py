#!/usr/bin/env python3
"""Reference values for the engine's dequantizers and a K-quant model fixture, taken from llama.cpp itself.

Needs numpy, gguf (gguf-py) and llama-cpp-python (its libggml-base.so and libllama.so do the work). The Swift
tests read the checked-in outputs; this script is only needed to regenerate them.

  blocks   Tests/FlywheelEngineTests/Fixtures/quant-blocks.json: for every tensor type the engine requantizes
           (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS), a few blocks of
           seeded random bytes (scale fields overwritten with sane f16 values: positive, negative, subnormal and
           zero, never NaN or inf) and the floats llama.cpp's own C `dequantize_row_*` (ggml_fp16/bf16_to_fp32_row
           for the plain types) makes of them, called through ctypes. gguf-py's numpy dequantizers are run too and
           must agree bit for bit (the script stops otherwise). Bytes and floats (little-endian binary32) are
           base64; the Swift dequantizers must reproduce the floats exactly.
  model    Tests/FlywheelEngineTests/Fixtures/model-llama-q4km.gguf and .json: a small random llama model written
           F32 by make_model.py, quantized by llama.cpp (llama_model_quantize, Q4_K_M), so it mixes the types
           llama.cpp picks: Q4_K, Q6_K, and Q5_0 / Q8_0 where a row (64 elements) is not a whole K-quant
           super-block. Its dimensions keep it small: d=256 (the K-quant row), 2 heads of 32 (attention.key_length),
           1 KV head, ffn 64, vocabulary 288, one layer, an output matrix of its own. The JSON holds reference.py's float64
           logits for a 12-token prompt (weights dequantized by gguf-py), its 16 greedy tokens and margins, the
           logits with the engine's Q8_0 rounding emulated (reference.py --emulate-q8, last four positions),
           llama.cpp's own logits for the prompt and its 16 greedy tokens (llama-cpp-python, 1 thread), and an
           FNV-1a 64 checksum of the Q8_0 bytes each requantized matrix must have (gguf-py's dequantize, then
           its Q8_0 quantize, which is bit-exact with ggml's).
  quantize IN OUT FTYPE   llama_model_quantize IN to OUT (FTYPE a llama.cpp name such as Q4_K_M, Q6_K, Q4_0).
           Tests/E2E/test_quantized_models.py imports this module for quantize() and llama().

Usage: python3 scripts/engine/make_quant_fixtures.py [blocks|model]   (no argument: both)
"""
import base64
import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "Tests", "FlywheelEngineTests", "Fixtures")

# Byte offsets of the f16 scale fields in one block: (d fields, min fields). Everything else is random bytes.
SCALE_FIELDS = {
    QT.Q4_0: ([0], []), QT.Q4_1: ([0], [2]), QT.Q5_0: ([0], []), QT.Q5_1: ([0], [2]), QT.Q8_0: ([0], []),
    QT.IQ4_NL: ([0], []), QT.Q2_K: ([80], [82]), QT.Q3_K: ([108], []), QT.Q4_K: ([0], [2]),
    QT.Q5_K: ([0], [2]), QT.Q6_K: ([208], []), QT.IQ4_XS: ([0], []),
}
PLAIN = [QT.F16, QT.BF16]
SEED = 20240611
FIXTURE_PROMPT = [258, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100]
MODEL_NAME = "model-llama-q4km"
MODEL_ARGS = ["--arch", "llama", "--type", "f32", "--layers", "1", "--n-embd", "256", "--heads", "2",
              "--kv-heads", "1", "--head-dim", "32", "--ffn", "64", "--vocab", "288", "--merges", "24"]
MODEL_SEED = 51


def ggml_base():
    import llama_cpp
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    return lib


def c_dequantize(lib, qtype, raw, count):
    """llama.cpp's own dequantization of `raw` (bytes) into `count` float32s."""
    name = {QT.F16: "ggml_fp16_to_fp32_row", QT.BF16: "ggml_bf16_to_fp32_row"}.get(
        qtype, "dequantize_row_" + qtype.name.lower().replace("_k", "_K"))
    fn = getattr(lib, name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None
    src = np.frombuffer(raw, dtype=np.uint8).copy()
    out = np.zeros(count, dtype=np.float32)
    fn(src.ctypes.data, out.ctypes.data, count)
    return out


def sane_half(rng, kind):
    """An f16 scale: 'pos' / 'neg' (1e-4 ... 1 in magnitude), 'sub' (an f16 subnormal) or 'zero'."""
    if kind == "zero":
        return np.float16(0)
    if kind == "sub":
        return np.float16(rng.integers(1, 1024) * 2.0 ** -24)
    value = np.float16(10 ** rng.uniform(-4, 0))
    return -value if kind == "neg" else value


def random_blocks(rng, qtype):
    block_size, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    if qtype in PLAIN:
        count = 96
        bits = rng.integers(0, 1 << 16, size=count, dtype=np.uint16)
        if qtype == QT.F16:
            bits[(bits & 0x7C00) == 0x7C00] &= 0xBFFF   # exponent all ones (inf/NaN) -> a finite value
        else:
            bits[(bits & 0x7F80) == 0x7F80] &= 0xBFFF
        return bits.tobytes(), count
    # 32-element types: 5 blocks (positive, negative, subnormal, zero and positive scales); K-quants: 3 super-blocks.
    kinds = ["pos", "neg", "sub", "zero", "pos"] if block_size == 32 else ["pos", "neg", "sub"]
    raw = bytearray(rng.integers(0, 256, size=block_bytes * len(kinds), dtype=np.uint8).tobytes())
    d_fields, min_fields = SCALE_FIELDS[qtype]
    for b, kind in enumerate(kinds):
        for off in d_fields:
            raw[b * block_bytes + off: b * block_bytes + off + 2] = sane_half(rng, kind).tobytes()
        for off in min_fields:
            # Mins: positive as quantizers write them, except a negative one in the second block.
            m = sane_half(rng, "neg" if kind == "neg" else ("zero" if kind == "sub" else "pos"))
            raw[b * block_bytes + off: b * block_bytes + off + 2] = m.tobytes()
    return bytes(raw), block_size * len(kinds)


def write_blocks():
    lib = ggml_base()
    rng = np.random.default_rng(SEED)
    entries = []
    for qtype in PLAIN + list(SCALE_FIELDS):
        raw, count = random_blocks(rng, qtype)
        expected = c_dequantize(lib, qtype, raw, count)
        numpy_values = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qtype).astype(np.float32)
        if not np.all(np.isfinite(expected)):
            sys.exit(f"{qtype.name}: non-finite reference values")
        if expected.view(np.uint32).tolist() != numpy_values.view(np.uint32).tolist():
            diff = np.abs(expected - numpy_values).max()
            sys.exit(f"{qtype.name}: llama.cpp's C and gguf-py disagree (max |diff| {diff})")
        block_size, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        entries.append({
            "name": qtype.name, "type": int(qtype), "block_size": block_size, "block_bytes": block_bytes,
            "count": count, "bytes": base64.b64encode(raw).decode(),
            "expected": base64.b64encode(expected.astype("<f4").tobytes()).decode(),
        })
        print(f"{qtype.name}: {count} elements, C and gguf-py agree bit for bit, range "
              f"{expected.min():.4g} ... {expected.max():.4g}")
    import llama_cpp
    out = {"made_with": "scripts/engine/make_quant_fixtures.py blocks",
           "reference": f"llama.cpp dequantize_row_* from llama-cpp-python {llama_cpp.__version__}, "
                        f"cross-checked with gguf-py's gguf.quants.dequantize",
           "seed": SEED, "types": entries}
    with open(os.path.join(FIXTURES, "quant-blocks.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- llama.cpp through llama-cpp-python

def quantize(src, dst, ftype_name, threads=1):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + ftype_name)
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize {src} -> {ftype_name} failed ({rc})")


def llama(path, logits_all=False):
    """A llama-cpp-python model on the regular CPU kernels (AMX repacking off: it dies with SIGILL on VMs that do
    not grant the tile state, see scripts/bench/engine.py)."""
    import llama_cpp
    import llama_cpp.llama as high_level
    params = llama_cpp.llama_model_default_params()
    if hasattr(params, "use_extra_bufts"):
        params.use_extra_bufts = False
    saved = high_level.llama_cpp.llama_model_default_params
    high_level.llama_cpp.llama_model_default_params = lambda: params
    try:
        return llama_cpp.Llama(model_path=path, n_ctx=64, n_batch=64, n_threads=1, n_threads_batch=1,
                               logits_all=logits_all, verbose=False)
    finally:
        high_level.llama_cpp.llama_model_default_params = saved


def llama_greedy(llm, tokens, n):
    """llama.cpp's greedy continuation of `tokens`: (generated, top-1 minus top-2 margins)."""
    llm.reset()
    llm.eval(tokens)
    generated, margins = [], []
    for _ in range(n):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        top2 = np.sort(row)[-2:]
        nxt = int(np.argmax(row))
        generated.append(nxt)
        margins.append(round(float(top2[1] - top2[0]), 6))
        llm.eval([nxt])
    return generated, margins


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def requantized_checksums(path):
    """FNV-1a 64 of the Q8_0 bytes the engine must make of every matrix not stored as Q8_0: gguf-py's dequantize,
    then gguf-py's Q8_0 quantize (bit-exact with ggml's reference quantizer, as the engine's is)."""
    sums = {}
    for t in gguf.GGUFReader(path).tensors:
        qtype = QT(t.tensor_type)
        if len(t.shape) != 2 or qtype == QT.Q8_0:
            continue
        rows, cols = int(t.shape[1]), int(t.shape[0])
        values = np.asarray(t.data) if qtype in (QT.F16, QT.F32) else gguf.quants.dequantize(t.data, qtype)
        q8 = gguf.quants.quantize(np.asarray(values, dtype=np.float32).reshape(rows, cols), QT.Q8_0)
        sums[t.name] = fnv1a64(q8.tobytes())
    return sums


def tensor_types(path):
    counts = {}
    for t in gguf.GGUFReader(path).tensors:
        if len(t.shape) == 2:
            name = QT(t.tensor_type).name
            counts[name] = counts.get(name, 0) + 1
    return counts


def write_model():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "f32.gguf")
        subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), base] + MODEL_ARGS
                       + ["--seed", str(MODEL_SEED)], check=True)
        model = os.path.join(FIXTURES, MODEL_NAME + ".gguf")
        quantize(base, model, "Q4_K_M")

    prompt = ",".join(map(str, FIXTURE_PROMPT))
    ref = [sys.executable, os.path.join(HERE, "reference.py"), model, "--tokens", prompt, "--decimals", "4"]
    result = json.loads(subprocess.run(ref + ["--generate", "16"], check=True, capture_output=True,
                                       text=True).stdout)
    emulated = json.loads(subprocess.run(ref + ["--emulate-q8"], check=True, capture_output=True,
                                         text=True).stdout)
    result["logits_q8_tail"] = emulated["logits"][-4:]

    llm = llama(model, logits_all=True)
    llm.eval(FIXTURE_PROMPT)
    logits = np.array(llm.scores[:len(FIXTURE_PROMPT)], dtype=np.float64)
    generated, margins = llama_greedy(llm, FIXTURE_PROMPT, 16)
    result["llama_cpp"] = {"logits": [[round(float(v), 4) for v in row] for row in logits],
                           "generated": generated, "generated_margins": margins}
    result["tensor_types"] = tensor_types(model)
    result["requantized_fnv1a64"] = requantized_checksums(model)
    result["made_with"] = (f"scripts/engine/make_quant_fixtures.py model: make_model.py {' '.join(MODEL_ARGS)} "
                           f"--seed {MODEL_SEED}, then llama_model_quantize Q4_K_M")
    with open(os.path.join(FIXTURES, MODEL_NAME + ".json"), "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    exact = np.array(result["logits"])
    spread = exact.max() - exact.min()
    print(f"{MODEL_NAME}: {os.path.getsize(model)} bytes, matrices {result['tensor_types']}")
    print(f"  reference greedy {result['generated']} (min margin {min(result['generated_margins'])})")
    print(f"  llama.cpp greedy {generated} (min margin {min(margins)})")
    print(f"  llama.cpp vs float64 reference: max |diff| {np.abs(logits - exact).max():.4f}, "
          f"logit spread {spread:.3f}")


def main():
    args = sys.argv[1:]
    if args[:1] == ["quantize"] and len(args) == 4:
        quantize(args[1], args[2], args[3])
    elif args in ([], ["blocks"], ["model"]):
        if args != ["model"]:
            write_blocks()
        if args != ["blocks"]:
            write_model()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

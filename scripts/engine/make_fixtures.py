#!/usr/bin/env python3
"""Generate the tiny GGUF fixtures for Tests/FlywheelEngineTests.

Needs `pip install gguf numpy` (only to regenerate; the Swift tests read the checked-in outputs).
Writes, into Tests/FlywheelEngineTests/Fixtures/:
  tiny.gguf         GGUF v3, default alignment 32: metadata of every value type (scalars, strings,
                    typed arrays, a nested array, a tiny tokenizer vocabulary) and three tensors:
                    F32 [4, 3], F16 [8], Q8_0 [64, 2] (shapes in GGUF order, innermost first).
  unsupported.gguf  GGUF v3, general.alignment = 64: one F32 tensor and one IQ2_XXS tensor
                    (a type the reader lists but refuses to hand out).
  expected.json     What the Swift tests must find in both files (read back with gguf.GGUFReader
                    as an independent check of offsets).
Usage: python3 scripts/engine/make_fixtures.py
"""
import json
import os
import struct

import numpy as np
import gguf
from gguf import GGUFValueType as VT, GGMLQuantizationType as QT

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "FlywheelEngineTests", "Fixtures")


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f16(x):
    return float(np.float16(x))


def q8_0_blocks(n_blocks):
    """Q8_0 blocks with known values: block k has scale 0.5*(k+1), quants (i - 16 + k)."""
    raw = bytearray()
    blocks = []
    for k in range(n_blocks):
        d = np.float16(0.5 * (k + 1))
        qs = [i - 16 + k for i in range(32)]
        raw += d.tobytes() + struct.pack("<32b", *qs)
        blocks.append({"scale": float(d), "first_ints": qs[:4],
                       "first_values": [float(d) * q for q in qs[:4]]})
    return bytes(raw), blocks


def write_tiny(path):
    w = gguf.GGUFWriter(path, "llama")
    meta = [("general.architecture", "string", "llama")]

    def add(key, vtype, value, kind, json_value=None, sub=None):
        w.add_key_value(key, value, vtype, sub_type=sub)
        meta.append((key, kind, value if json_value is None else json_value))

    add("general.name", VT.STRING, "flywheel-tiny", "string")
    add("test.u8", VT.UINT8, 200, "uint8")
    add("test.i8", VT.INT8, -100, "int8")
    add("test.u16", VT.UINT16, 60000, "uint16")
    add("test.i16", VT.INT16, -30000, "int16")
    add("test.u32", VT.UINT32, 4000000000, "uint32")
    add("test.i32", VT.INT32, -2000000000, "int32")
    add("test.u64", VT.UINT64, 2**63 + 5, "uint64")
    add("test.i64", VT.INT64, -(2**62), "int64")
    add("test.f32", VT.FLOAT32, 1.5, "float32")
    add("test.f64", VT.FLOAT64, 3.141592653589793, "float64")
    add("test.bool", VT.BOOL, True, "bool")
    add("test.string", VT.STRING, "h\u00e9llo \u2713", "string")
    add("test.empty_string", VT.STRING, "", "string")
    add("llama.context_length", VT.UINT32, 128, "uint32")
    add("llama.rope.freq_base", VT.FLOAT32, 10000.0, "float32")
    tokens = ["<unk>", "<s>", "</s>", "hello", " world", "\u2581tok"]
    add("tokenizer.ggml.model", VT.STRING, "gpt2", "string")
    add("tokenizer.ggml.tokens", VT.ARRAY, tokens, "array:string", sub=VT.STRING)
    scores = [0.0, -1.0, -1.5, -2.25, -3.0, -4.5]
    add("tokenizer.ggml.scores", VT.ARRAY, scores, "array:float32", sub=VT.FLOAT32)
    add("tokenizer.ggml.token_type", VT.ARRAY, [2, 3, 3, 1, 1, 1], "array:int32", sub=VT.INT32)
    add("test.array.u8", VT.ARRAY, [1, 2, 255], "array:uint8", sub=VT.UINT8)
    add("test.array.i16", VT.ARRAY, [-1, 300], "array:int16", sub=VT.INT16)
    add("test.array.u64", VT.ARRAY, [0, 2**40], "array:uint64", sub=VT.UINT64)
    add("test.array.f64", VT.ARRAY, [0.25, -8.5], "array:float64", sub=VT.FLOAT64)
    add("test.array.bool", VT.ARRAY, [True, False, True], "array:bool", sub=VT.BOOL)
    add("test.array.nested", VT.ARRAY, [[1, 2], [3]], "array:array", sub=VT.ARRAY)

    emb = (np.arange(12, dtype=np.float32) * 0.5 - 1.0).reshape(3, 4)
    w.add_tensor("token_embd.weight", emb)
    norm = (np.arange(8, dtype=np.float32) * 0.25 - 1.0).astype(np.float16)
    w.add_tensor("blk.0.attn_norm.weight", norm)
    raw, blocks = q8_0_blocks(4)
    q = np.frombuffer(raw, dtype=np.uint8).reshape(2, 68)
    w.add_tensor("blk.0.ffn_up.weight", q, raw_dtype=QT.Q8_0)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    tensors = [
        {"name": "token_embd.weight", "shape": [4, 3], "type": 0, "byte_count": 48,
         "values": [f32(v) for v in emb.flatten().tolist()]},
        {"name": "blk.0.attn_norm.weight", "shape": [8], "type": 1, "byte_count": 16,
         "values": [f16(v) for v in norm.astype(np.float32).tolist()]},
        {"name": "blk.0.ffn_up.weight", "shape": [64, 2], "type": 8, "byte_count": 136,
         "blocks": blocks},
    ]
    return meta, tensors


def write_unsupported(path):
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    w.add_tensor("a", np.array([1.0, 2.0, 3.0], dtype=np.float32))
    # IQ2_XXS: super-blocks of 256 elements, 66 bytes each (a type the engine has no layout for; it used to
    # be Q4_0, until the engine learned Q4_0).
    raw = np.frombuffer(np.float16(1.0).tobytes() + bytes(range(64)), dtype=np.uint8).reshape(1, 66)
    w.add_tensor("b", raw, raw_dtype=QT.IQ2_XXS)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return [
        {"name": "a", "shape": [3], "type": 0, "byte_count": 12, "values": [1.0, 2.0, 3.0]},
        {"name": "b", "shape": [256, 1], "type": 16, "byte_count": None},
    ]


def offsets(path):
    r = gguf.GGUFReader(path)
    base = int(r.data_offset)
    return base, {t.name: int(t.data_offset) - base for t in r.tensors}


def describe(path, meta, tensors, alignment):
    data_offset, offs = offsets(path)
    for t in tensors:
        t["offset"] = offs[t["name"]]
    out = {"file": os.path.basename(path), "version": 3, "alignment": alignment,
           "data_offset": data_offset, "file_size": os.path.getsize(path), "tensors": tensors}
    if meta is not None:
        # Integers as decimal strings (u64 does not survive a JSON double); floats as numbers.
        def enc(kind, v):
            if kind.startswith("array:"):
                sub = kind[6:]
                if sub == "array":
                    return [[str(x) for x in inner] for inner in v]
                return [enc(sub, x) for x in v]
            if kind in ("string", "bool", "float32", "float64"):
                return v
            return str(v)
        out["metadata"] = [{"key": k, "type": kind, "value": enc(kind, v)} for k, kind, v in meta]
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    tiny = os.path.join(OUT, "tiny.gguf")
    meta, tensors = write_tiny(tiny)
    uns = os.path.join(OUT, "unsupported.gguf")
    uns_tensors = write_unsupported(uns)
    expected = {"tiny": describe(tiny, meta, tensors, 32),
                "unsupported": describe(uns, None, uns_tensors, 64)}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()

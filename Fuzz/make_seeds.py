#!/usr/bin/env python3
"""Write the hand-made seed inputs of each fuzz target into Fuzz/corpus/<target>/ (as seed-*).

The committed corpora are these seeds plus what fuzzing found, minimised with `scripts/fuzz --merge`
(which may drop a seed that adds no coverage). Rerun only to reseed; fuzzing does not need it.
Needs the repo's fixtures (chat templates, GGUF files) and, for the small model seed, `pip install gguf numpy`.
Usage: python3 Fuzz/make_seeds.py
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CORPUS = os.path.join(ROOT, "Fuzz", "corpus")


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, target, "seed-" + name), "wb") as f:
        f.write(data)


def http_seeds():
    # The first byte configures the harness: limits (bits 0-3), a per-path body limit (bit 4), reads (bits 5-7).
    chat = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    requests = {
        "get": "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        "post": f"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(chat)}\r\n\r\n{chat}",
        "chunked": "POST /v1/feedback HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                   "5;ext=\"q\\\"v\";e2\r\nhello\r\n0\r\nTrailer: t\r\n\r\n",
        "chunked-ok": "POST /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nA ; x = y\r\n0123456789\r\n0\r\n\r\n",
        "pipelined": "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /small HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                     "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                     "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n",
        "expect": "POST /v1/embeddings HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2, 2\r\n\r\n{}",
        "smuggle": "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "bare-lf": "GET / HTTP/1.1\nHost: a\n\n",
        "fold": "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        "version": "GET * HTTP/2.0\r\n\r\n",
    }
    for config, (name, text) in zip([0x0F, 0x2E, 0x4F, 0x6E, 0x8F, 0xAF, 0xCF, 0xEF, 0x1F, 0x3F], requests.items()):
        write("http", name, bytes([config]) + text.encode())


def json_seeds():
    docs = {
        "chat": {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello \u00e9\u4f60 \U0001F600"}],
                 "temperature": 0.7, "max_tokens": 16, "stream": True, "stop": None, "n": 1},
        "numbers": [0, -0, 1e308, -1.5e-7, 9223372036854775807, -9223372036854775808, 9223372036854775808, 0.1, 1.0],
        "nested": {"a": {"b": {"c": {"d": {"e": [[[[1]]]]}}}}},
        "tools": {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    }
    for name, doc in docs.items():
        write("json", name, json.dumps(doc))
    write("json", "escapes", '"\\u0000\\ud83d\\ude00\\n\\t\\"\\\\\\/\\b\\f\\r"')
    write("json", "duplicates", '{"k":1,"k":2," ":[],"":{}}')
    write("json", "literals", ' [true,false,null,"",{}] ')


def gguf_seeds():
    fixtures = os.path.join(ROOT, "Tests", "FlywheelEngineTests", "Fixtures")
    for name in ["tiny.gguf", "unsupported.gguf"]:
        with open(os.path.join(fixtures, name), "rb") as f:
            write("gguf", name, f.read())
    # A whole (tiny) model: tokenizer metadata, configuration and weights for the engine's readers.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.gguf")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "engine", "make_model.py"), path,
                        "--n-embd", "32", "--layers", "1", "--heads", "1", "--kv-heads", "1", "--ffn", "32",
                        "--vocab", "260", "--merges", "4", "--ctx", "32", "--tied"], check=True)
        with open(path, "rb") as f:
            write("gguf", "model.gguf", f.read())


def tokenizer_seeds():
    # The first byte picks the vocabulary (bits 0-2: five byte-level BPE pre-tokenizers, SentencePiece with and
    # without the space prefix, or a vocabulary from the input) and the flags (bits 3-5).
    texts = ["Hello, world! It's 2024: the année of 你好 \U0001F600.\n\n  tabs\tand   spaces",
             "<|im_start|>user\nhi<|im_end|><|tool|>@@ 12345 000 \u2581x \u00e9\u0301",
             "camelCaseWords HTTPServer don't WE'LL 3.14159 \r\n\r\n"]
    for config in range(7):
        write("tokenizer", f"text-{config}", bytes([config | (0x08 if config % 2 else 0)]) + texts[config % 3].encode())
    vocabulary = b"\0".join([b"\0", "a\nb\nab\n\u0120\n\u0120a".encode(), b"a b\n\u0120 a", b"\1\1\1\1\3", b"\2\3\4", b"ab a"])
    write("tokenizer", "vocabulary", bytes([7]) + vocabulary)


def chat_template_seeds():
    # The first byte sets the render flags; then the template, then NUL-separated role/content pairs.
    fixtures = os.path.join(ROOT, "Tests", "FlywheelChatTemplateTests", "Fixtures")
    messages = "\0".join(["system", "You are terse.", "user", "What is 2+2?", "assistant", '{"city": "Paris"}',
                          "tool", "22 C", "user", "Thanks"])
    templates = os.path.join(fixtures, "templates")
    for index, name in enumerate(sorted(os.listdir(templates))):
        with open(os.path.join(templates, name), encoding="utf-8") as f:
            source = f.read()
        write("chat-template", name.replace(".jinja", ""), bytes([index * 7 % 64]) + (source + "\0" + messages).encode())
    with open(os.path.join(fixtures, "jinja_features.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    for case in cases:
        write("chat-template", "feature-" + case["name"], bytes([1]) + (case["template"] + "\0" + messages).encode())


if __name__ == "__main__":
    http_seeds()
    json_seeds()
    gguf_seeds()
    tokenizer_seeds()
    chat_template_seeds()

#!/usr/bin/env python3
"""Sustained mixed and hostile load on a local model through the gateway, watching the daemon's anonymous memory.

Starts `flywheel serve` with one local model (4 slots, a 4 MiB KV cache budget, its own log in a temp dir) and sends
N requests from 12 client threads, cycling through ten kinds: streamed chat with control characters in the text,
seeded sampled chat, completions, embeddings, malformed JSON (400), a prompt far past the context (400), a stream
whose client vanishes after the first bytes (499), an escape sequence in x-request-id (400 at the HTTP layer),
streams sharing a system prompt (prefix reuse), and max_tokens = 2^63-1 (400). Prints the statuses, RssAnon of the
daemon every `--every` requests (it must be flat after a warm-up), and the local engine's metrics.

    python3 scripts/bench/local_soak.py --flywheel .build/release/flywheel \
        --model Tests/FlywheelEngineTests/Fixtures/model-qwen2-q8.gguf --requests 480000
"""
import argparse
import json
import os
import random
import socket
import subprocess
import tempfile
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--flywheel", default=".build/release/flywheel")
    a.add_argument("--model", default="Tests/FlywheelEngineTests/Fixtures/model-qwen2-q8.gguf")
    a.add_argument("--requests", type=int, default=100000)
    a.add_argument("--every", type=int, default=40000, help="requests between memory samples")
    a.add_argument("--kinds", default="0,1,2,3,4,5,6,7,8,9", help="request kinds to cycle through (0...9)")
    args = a.parse_args()
    kinds = [int(k) for k in args.kinds.split(",")]
    work = tempfile.mkdtemp(prefix="fw-soak-")
    port = free_port()
    cfg = os.path.join(work, "flywheel.yaml")
    with open(cfg, "w") as f:
        f.write(f"server:\n  listen: 127.0.0.1:{port}\nlocal_models:\n  - name: tiny\n    path: {os.path.abspath(args.model)}\n"
                f"inference:\n  slots: 4\n  max_queued: 64\n  kv_cache_mb: 4\nlog:\n  path: {work}/soak.db\n")
    daemon = subprocess.Popen([args.flywheel, "serve", "--config", cfg], stdout=open(os.path.join(work, "out.log"), "w"),
                              stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)

    def rss_anon() -> int:
        with open(f"/proc/{daemon.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))

    def send(body: bytes, path="/v1/chat/completions", close_early=False, extra=b"") -> int:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\n" + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        if close_early:
            s.recv(100)
            s.close()
            return 0
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1") else -1

    def request(i: int) -> int:
        r = random.Random(i)
        k = kinds[i % len(kinds)]
        ctl = "".join(chr(c) for c in r.sample(list(range(32)) + [127, 0x1b], 5))

        def chat(content, **kw):
            return json.dumps({"model": "tiny", "messages": [{"role": "user", "content": content}], **kw}).encode()
        if k == 0:
            return send(chat("hello " + ctl, stream=True, max_tokens=4))
        if k == 1:
            return send(chat("tell me", max_tokens=3, temperature=0.7, seed=i))
        if k == 2:
            return send(json.dumps({"model": "tiny", "prompt": "once" + ctl, "max_tokens": 3}).encode(), "/v1/completions")
        if k == 3:
            return send(json.dumps({"model": "tiny", "input": ["a b c", "x" + ctl]}).encode(), "/v1/embeddings")
        if k == 4:
            return send(b'{"model": "tiny", "messages": [')
        if k == 5:
            return send(chat("word " * 20000, max_tokens=2))
        if k == 6:
            return send(chat("bye", stream=True, max_tokens=50), close_early=True)
        if k == 7:
            return send(chat("hi", max_tokens=2), extra=b"x-request-id: \x1b[31m" + str(i).encode() + b"\r\n")
        if k == 8:
            return send(chat("same system prompt for everyone " * 4 + str(i % 7), stream=True, max_tokens=3))
        return send(chat("x", max_tokens=2**63 - 1))

    statuses: dict = {}
    samples = []
    lock = threading.Lock()
    counter = [0]

    def worker():
        while True:
            with lock:
                i = counter[0]
                counter[0] += 1
            if i >= args.requests:
                return
            try:
                status = request(i)
            except Exception as e:  # noqa: BLE001 - counted and printed
                status = type(e).__name__
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if i % args.every == 0:
                    samples.append((i, rss_anon()))

    started = time.time()
    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples.append((args.requests, rss_anon()))
    print(f"{args.requests} requests in {time.time() - started:.0f} s; statuses {statuses}")
    print("RssAnon kB by requests sent:", samples)
    print("daemon alive:", daemon.poll() is None)
    metrics = subprocess.run(["curl", "-s", f"127.0.0.1:{port}/metrics"], capture_output=True, text=True).stdout
    print("\n".join(line for line in metrics.splitlines()
                    if line.startswith("flywheel_local_") or line.startswith("flywheel_log_dropped")))
    daemon.terminate()
    print("exit code after SIGTERM:", daemon.wait(30))


if __name__ == "__main__":
    main()

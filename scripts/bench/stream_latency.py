#!/usr/bin/env python3
"""Stream pass-through delay: does Flywheel add buffering delay to SSE events?

One run: a local upstream streams chat.completion.chunk events, each stamped with the CLOCK_MONOTONIC time it
was written (`"t_ns"`); a client reads the same stream straight from the upstream and then through Flywheel
and, per event, subtracts the stamp from its own arrival time (same machine, same clock). Prints the median
and p99 per-event delay for both and the difference, i.e. what the gateway adds per event.

Usage: scripts/bench/stream_latency.py [--flywheel PATH] [--events 200] [--interval-ms 5] [--streams 10]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class StampingUpstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    events = 200
    interval = 0.005

    def log_message(self, *_):  # quiet
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(self.events):
            chunk = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}],
                     "t_ns": time.monotonic_ns()}
            self._chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            time.sleep(self.interval)
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def read_stream(port: int, body: bytes) -> list[float]:
    """POSTs and returns per-event delays in microseconds (arrival minus the upstream's stamp)."""
    delays = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        buf = b""
        while True:
            data = s.recv(65536)
            now = time.monotonic_ns()
            if not data:
                break
            buf += data
            for m in re.finditer(rb'"t_ns": ?(\d+)', data):
                delays.append((now - int(m.group(1))) / 1000)
    return delays


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flywheel", default=str(REPO / ".build/release/flywheel"))
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--interval-ms", type=float, default=5)
    ap.add_argument("--streams", type=int, default=10)
    args = ap.parse_args()
    StampingUpstream.events = args.events
    StampingUpstream.interval = args.interval_ms / 1000

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), StampingUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    up_port = upstream.server_address[1]

    work = Path(tempfile.mkdtemp(prefix="fw-stream-"))
    fw = subprocess.Popen([args.flywheel, "serve", "--listen", "127.0.0.1:0", "--db", str(work / "s.db"),
                           "--upstream-url", f"http://127.0.0.1:{up_port}/v1"],
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "OPENAI_API_KEY": "sk-bench"})
    line = fw.stderr.readline()
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if not m:
        print("flywheel did not start:", line, file=sys.stderr)
        return 1
    fw_port = int(m.group(1))
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    try:
        results = {}
        for name, port in (("direct", up_port), ("flywheel", fw_port)):
            delays: list[float] = []
            for _ in range(args.streams):
                delays += read_stream(port, body)
            results[name] = delays
    finally:
        fw.send_signal(signal.SIGTERM)
        fw.wait(timeout=30)
        upstream.shutdown()
    print(f"{args.streams} streams x {args.events} events, {args.interval_ms} ms apart; per-event delay from the"
          f" upstream's write to the client's read (us)")
    print(f"{'path':10} {'events':>7} {'p50':>8} {'p90':>8} {'p99':>8}")
    for name, d in results.items():
        print(f"{name:10} {len(d):7d} {pct(d, .5):8.0f} {pct(d, .9):8.0f} {pct(d, .99):8.0f}")
    d, f = results["direct"], results["flywheel"]
    print(f"added by flywheel: p50 {pct(f, .5) - pct(d, .5):.0f} us, p99 {pct(f, .99) - pct(d, .99):.0f} us"
          f"; flywheel exit code {fw.returncode}")
    return 0 if len(f) == len(d) else 1


if __name__ == "__main__":
    sys.exit(main())

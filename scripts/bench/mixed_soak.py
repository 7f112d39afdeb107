#!/usr/bin/env python3
"""Steady mixed load for a long time, proxied and local, with streams and feedback, sampling the daemon's resources.

Starts a fake upstream (Tests/E2E/fake_upstream.py, streams paced by --chunk-delay) and `flywheel serve` with a route
to it and one local model, then sends requests at a steady rate (--rate per second, spread over --threads client
threads) for --minutes, cycling through: proxied chat, proxied stream (keep-alive, consumed to the end), local chat,
local stream, a proxied stream whose client vanishes after the first bytes, and feedback (with an Idempotency-Key) on
the request answered just before. Every --every seconds it samples the daemon's RssAnon (kB), open file descriptors
(/proc/PID/fd), threads, and the log's request and feedback rows (read-only SQLite), and prints one Markdown row; at
the end the statuses, the request rate achieved, and whether every acknowledged feedback is in the log.

    nice -n 10 python3 scripts/bench/mixed_soak.py --flywheel .build/release/flywheel --minutes 30

Memory and descriptors must be flat after the warm-up: the writer's SQLite page cache grows with the log up to
log.cache_mb (--cache-mb, 4 by default so that it is full within minutes; the daemon's default is 32), then stays.
The log's rows grow with the traffic.
"""
import argparse
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "E2E"))
from fake_upstream import FakeUpstream, free_port  # noqa: E402


def proc_sample(pid: int) -> tuple[int, int, int]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    rss = int(fields["RssAnon"].split()[0])
    threads = int(fields["Threads"].strip())
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds, threads


def log_rows(db: str) -> tuple[int, int]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return (con.execute("SELECT count(*) FROM requests").fetchone()[0],
                    con.execute("SELECT count(*) FROM feedback").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return (-1, -1)


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--flywheel", default=".build/release/flywheel")
    a.add_argument("--model", default="Tests/FlywheelEngineTests/Fixtures/model-qwen2-q8.gguf")
    a.add_argument("--minutes", type=float, default=30)
    a.add_argument("--rate", type=float, default=40, help="requests per second, all threads together")
    a.add_argument("--threads", type=int, default=8)
    a.add_argument("--every", type=float, default=120, help="seconds between samples")
    a.add_argument("--chunk-delay", type=float, default=0.005, help="fake upstream's pause between stream chunks")
    a.add_argument("--cache-mb", type=int, default=4,
                   help="log.cache_mb: the writer's SQLite page cache grows with the log up to this, then stays")
    args = a.parse_args()

    work = tempfile.mkdtemp(prefix="fw-mixed-soak-")
    db = os.path.join(work, "soak.db")
    fake = FakeUpstream(chunk_delay=args.chunk_delay).start()
    fake._server.handle_error = lambda *_: None  # vanishing clients reset upstream connections; no tracebacks
    port = free_port()
    cfg = os.path.join(work, "flywheel.yaml")
    with open(cfg, "w") as f:
        f.write(f"""server:
  listen: 127.0.0.1:{port}
upstreams:
  - name: fake
    base_url: {fake.url}
    api_key_env: OPENAI_API_KEY
routes:
  - model: gpt-4o-mini
    upstreams: [fake]
local_models:
  - name: tiny
    path: {os.path.abspath(args.model)}
inference:
  slots: 4
  max_queued: 64
  kv_cache_mb: 4
log:
  path: {db}
  cache_mb: {args.cache_mb}
""")
    env = dict(os.environ, OPENAI_API_KEY="sk-soak")
    out = open(os.path.join(work, "out.log"), "w")
    daemon = subprocess.Popen([args.flywheel, "serve", "--config", cfg], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 30
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            c.getresponse().read()
            c.close()
            break
        except OSError:
            if time.time() > deadline or daemon.poll() is not None:
                sys.exit(f"daemon did not start; see {work}/out.log")
            time.sleep(0.1)

    lock = threading.Lock()
    statuses: dict = {}
    acked_feedback: list[str] = []   # idempotency keys of feedback answered 200
    sent = [0]
    stop_at = time.time() + args.minutes * 60
    interval = args.threads / args.rate  # each thread's pace

    def chat(model: str, stream: bool, text: str) -> bytes:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8, "stream": stream}
        return json.dumps(body).encode()

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        last_id = None
        i = n
        next_at = time.time()
        while time.time() < stop_at:
            kind = i % 6
            i += args.threads
            status: object
            try:
                if kind == 5 and last_id:
                    key = uuid.uuid4().hex
                    conn.request("POST", "/v1/feedback", json.dumps({"request_id": last_id, "signal": "accepted"}),
                                 {"Content-Type": "application/json", "Idempotency-Key": key})
                    r = conn.getresponse()
                    r.read()
                    status = ("feedback", r.status)
                    if r.status == 200:
                        with lock:
                            acked_feedback.append(key)
                elif kind == 4:
                    # A client that vanishes after the first bytes of a stream.
                    vc = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    vc.request("POST", "/v1/chat/completions", chat("gpt-4o-mini", True, "going away now " * 8),
                               {"Content-Type": "application/json"})
                    r = vc.getresponse()
                    r.read(1)
                    vc.close()
                    status = ("vanish", r.status)
                else:
                    model = "gpt-4o-mini" if kind in (0, 1) else "tiny"
                    stream = kind in (1, 3)
                    conn.request("POST", "/v1/chat/completions", chat(model, stream, f"soak {i} hello there"),
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    last_id = r.getheader("x-request-id")
                    status = (("proxy" if kind < 2 else "local") + ("-stream" if stream else ""), r.status)
            except (OSError, http.client.HTTPException) as e:
                status = ("error", type(e).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                sent[0] += 1
            next_at += interval
            pause = next_at - time.time()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.time()
        conn.close()

    print(f"work dir {work}; daemon pid {daemon.pid}; {args.rate}/s target over {args.threads} threads for {args.minutes} min")
    print("| minute | requests sent | RssAnon kB | fds | threads | log requests | log feedback | database + WAL MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    started = time.time()

    def sample() -> None:
        rss, fds, threads = proc_sample(daemon.pid)
        reqs, fbs = log_rows(db)
        size = sum(os.path.getsize(db + suffix) for suffix in ("", "-wal") if os.path.exists(db + suffix)) / 2**20
        print(f"| {(time.time() - started) / 60:.1f} | {sent[0]} | {rss} | {fds} | {threads} | {reqs} | {fbs} | {size:.1f} |", flush=True)

    sample()
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
    for t in workers:
        t.start()
    next_sample = started + args.every
    while any(t.is_alive() for t in workers):
        time.sleep(max(0.0, min(1.0, next_sample - time.time())))
        if time.time() >= next_sample:
            sample()
            next_sample += args.every
    for t in workers:
        t.join()
    elapsed = time.time() - started
    time.sleep(1)  # the writer's batch interval, so the last rows are in
    sample()
    print(f"\n{sent[0]} requests in {elapsed:.0f} s = {sent[0] / elapsed:.1f}/s; statuses {dict(sorted(statuses.items(), key=str))}")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    stored = {row[0] for row in con.execute("SELECT idempotency_key FROM feedback WHERE idempotency_key IS NOT NULL")}
    con.close()
    missing = [k for k in acked_feedback if k not in stored]
    print(f"feedback acknowledged {len(acked_feedback)}, in the log {len(acked_feedback) - len(missing)}, missing {len(missing)}")
    print("daemon alive:", daemon.poll() is None)
    daemon.terminate()
    print("exit code after SIGTERM:", daemon.wait(60))
    fake.stop()


if __name__ == "__main__":
    main()

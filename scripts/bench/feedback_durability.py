#!/usr/bin/env python3
"""What `log.feedback_durability: full` costs: feedback latency with the WAL fsynced per feedback commit, against
`normal`. Starts `flywheel serve` once per setting (a fake upstream, the log in --dir, which should be on the disk you
care about), logs --n requests, then posts feedback on them one at a time (each waits for its commit) and from
--concurrency clients at once (commits then carry several feedbacks, one fsync for all), and prints the latencies.

    python3 scripts/bench/feedback_durability.py --flywheel .build/release/flywheel --dir /var/tmp --n 400
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "E2E"))
from fake_upstream import FakeUpstream, free_port  # noqa: E402


def post(conn: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, dict, float]:
    started = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, dict(r.getheaders()), time.perf_counter() - started


def run(flywheel: str, directory: str, durability: str, n: int, concurrency: int, fake_url: str) -> dict:
    work = tempfile.mkdtemp(prefix=f"fw-durability-{durability}-", dir=directory)
    port = free_port()
    cfg = os.path.join(work, "flywheel.yaml")
    with open(cfg, "w") as f:
        f.write(f"server:\n  listen: 127.0.0.1:{port}\nupstreams:\n  - name: fake\n    base_url: {fake_url}\n"
                f"    api_key_env: OPENAI_API_KEY\nroutes:\n  - model: gpt-4o-mini\n    upstreams: [fake]\n"
                f"log:\n  path: {work}/log.db\n  feedback_durability: {durability}\n")
    daemon = subprocess.Popen([flywheel, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, OPENAI_API_KEY="sk-bench"))
    try:
        for _ in range(300):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                break
            except OSError:
                time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        ids = []
        for i in range(n):
            status, headers, _ = post(conn, "/v1/chat/completions",
                                      {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q {i}"}]})
            assert status == 200
            ids.append(headers["x-request-id"])
        time.sleep(0.5)  # the rows' group commit
        serial = []
        for rid in ids[: n // 2]:
            status, _, seconds = post(conn, "/v1/feedback", {"request_id": rid, "signal": "accepted"})
            assert status == 200
            serial.append(seconds)
        parallel: list[float] = []
        lock = threading.Lock()
        rest = ids[n // 2:]

        def client(part: list[str]) -> None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for rid in part:
                status, _, seconds = post(c, "/v1/feedback", {"request_id": rid, "signal": "rejected"})
                assert status == 200
                with lock:
                    parallel.append(seconds)
        threads = [threading.Thread(target=client, args=(rest[k::concurrency],)) for k in range(concurrency)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    finally:
        daemon.terminate()
        daemon.wait(30)

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000
    return {"durability": durability, "serial_p50_ms": pct(serial, 0.5), "serial_p99_ms": pct(serial, 0.99),
            "serial_mean_ms": statistics.mean(serial) * 1000, "parallel_p50_ms": pct(parallel, 0.5),
            "parallel_p99_ms": pct(parallel, 0.99), "parallel_per_s": len(parallel) / wall}


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--flywheel", default=".build/release/flywheel")
    a.add_argument("--dir", default=tempfile.gettempdir(), help="where the logs go (the file system measured)")
    a.add_argument("--n", type=int, default=400, help="requests; half get serial feedback, half parallel")
    a.add_argument("--concurrency", type=int, default=8)
    args = a.parse_args()
    with FakeUpstream() as fake:
        rows = [run(args.flywheel, args.dir, d, args.n, args.concurrency, fake.url) for d in ("normal", "full", "normal", "full")]
    print("| feedback_durability | one at a time p50 / p99 ms | mean ms | "
          f"{args.concurrency} clients p50 / p99 ms | {args.concurrency} clients feedback/s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['durability']} | {r['serial_p50_ms']:.2f} / {r['serial_p99_ms']:.2f} | {r['serial_mean_ms']:.2f} | "
              f"{r['parallel_p50_ms']:.2f} / {r['parallel_p99_ms']:.2f} | {r['parallel_per_s']:.0f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes a Flywheel log with N synthetic chat completions (and feedback on a share of them), for timing
`flywheel export` and `flywheel report` on a large log. The schema comes from the daemon itself: the script
first lets `flywheel serve` create and migrate an empty log, then fills it with sqlite3.

Usage: scripts/bench/make_log.py BINARY OUT.db [--rows 1000000]
"""
import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import tempfile
import time


def create_empty_log(binary: str, path: str) -> None:
    env = dict(os.environ, OPENAI_API_KEY="sk-unused")
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--db", path,
                             "--upstream-url", "http://127.0.0.1:9/v1"], stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if re.search(r"listening on", line):
            break
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    if os.path.exists(a.out):
        os.remove(a.out)
    create_empty_log(a.binary, a.out)
    rng = random.Random(7)
    teams = ["billing", "identity", "hardware", "shipping", "refunds"]
    con = sqlite3.connect(a.out)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    t0 = time.time()
    base = 1_764_000_000_000
    batch, fb = [], []
    for i in range(a.rows):
        rid = f"req-{i:08d}"
        question = f"Ticket {i}: my {rng.choice(['printer', 'invoice', 'login', 'parcel', 'refund'])} " \
                   f"{rng.choice(['is broken', 'is late', 'failed', 'is wrong', 'needs help'])}; contact user{i % 977}@example.com"
        answer = json.dumps({"team": rng.choice(teams), "priority": rng.choice(["low", "normal", "high"])})
        request = json.dumps({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Route the ticket. Answer JSON."}, {"role": "user", "content": question}]})
        response = json.dumps({"id": f"chatcmpl-{i}", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                            "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}})
        batch.append((rid, base + i * 10, "POST", "/v1/chat/completions", "[]", "gpt-4o-mini", "gpt-4o-mini-2024-07-18",
                      "upstream", "primary", 200, request, response, 120.0 + rng.random() * 50, 40, 12, 52, 0.0000132, 1))
        if i % 10 == 0:
            fb.append((rid, base + i * 10 + 5, "accepted" if rng.random() < 0.8 else "rejected"))
        if len(batch) == 50_000:
            flush(con, batch, fb)
            batch, fb = [], []
    flush(con, batch, fb)
    con.commit()
    con.close()
    print(f"{a.rows} rows in {time.time() - t0:.1f} s -> {a.out} ({os.path.getsize(a.out) / 1e6:.0f} MB)")


def flush(con, batch, fb) -> None:
    con.executemany(
        "INSERT INTO requests (id, created_at, method, endpoint, tags, model_requested, model_served, route, upstream,"
        " status, request_json, response_json, latency_ms, prompt_tokens, completion_tokens, total_tokens, cost_usd,"
        " attempts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
    con.executemany("INSERT INTO feedback (request_id, created_at, signal) VALUES (?,?,?)", fb)
    con.commit()


if __name__ == "__main__":
    main()

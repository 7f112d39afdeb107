"""Crash safety: `kill -9` under mixed load (chat, streams, feedback from several threads), restart on the same
database, and count what was lost against what was acknowledged.

What must hold after every kill:
  * `PRAGMA integrity_check` is ok and no feedback row points at a missing request;
  * every feedback that got a 200 is in the log (it is answered only after its commit);
  * every request whose whole answer had arrived before some later-acknowledged feedback was *sent* is in the log
    (the writer commits request rows queued before a feedback in the same transaction or an earlier one);
  * the restarted daemon serves and takes feedback again.
Request rows are written in the background after the answer (group commit every `log.flush_interval`), so the
requests answered after the last acknowledged feedback was sent may be lost: they are counted, not failed.

As a script, for many rounds and the figures in RELIABILITY.md:
    python3 Tests/E2E/test_crash_safety.py --flywheel .build/debug/flywheel --rounds 40
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import Flywheel, base_config, flywheel_path, wait_logged
from fake_upstream import FakeUpstream
from helpers import httpx, poll, user_msg


class Load:
    """Mixed traffic from threads, recording what the daemon acknowledged, in one global order of events."""

    def __init__(self, fw: Flywheel, threads: int, seed: int):
        self.fw = fw
        self.no_feedback = threading.Event()  # the last phase: requests only, so the kill finds rows still queued
        self.lock = threading.Lock()
        self.seq = 0
        self.requests: dict[str, int] = {}       # request id -> seq when its whole answer had arrived
        self.feedback: dict[str, tuple[str, int]] = {}  # idempotency key -> (request id, seq when it was sent)
        self.stop = threading.Event()
        self.killing = threading.Event()   # set just before the SIGKILL: errors from then on are expected
        self.errors_after_kill = 0
        self.unexpected: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(seed * 100 + n,), daemon=True) for n in range(threads)]

    def _next(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    def _run(self, seed: int) -> None:
        rnd = random.Random(seed)
        with httpx.Client(base_url=self.fw.base_url, timeout=20) as client:
            while not self.stop.is_set():
                kind = rnd.choice(["chat", "chat", "stream"] if self.no_feedback.is_set() else ["chat", "chat", "stream", "feedback", "feedback"])
                try:
                    if kind == "chat":
                        r = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg(f"c {rnd.random()}")})
                        if r.status_code == 200:
                            done = self._next()
                            with self.lock:
                                self.requests[r.headers["x-request-id"]] = done
                        else:
                            self.unexpected.append(f"chat {r.status_code} {r.text[:200]}")
                    elif kind == "stream":
                        body = {"model": "gpt-4o-mini", "stream": True, "messages": user_msg(f"s {rnd.random()} three more words")}
                        with client.stream("POST", "/v1/chat/completions", json=body) as r:
                            text = "".join(r.iter_text())
                            if r.status_code == 200 and "data: [DONE]" in text:
                                done = self._next()
                                with self.lock:
                                    self.requests[r.headers["x-request-id"]] = done
                            elif r.status_code != 200:
                                self.unexpected.append(f"stream {r.status_code}")
                    else:
                        with self.lock:
                            known = list(self.requests)
                        if not known:
                            continue
                        rid = rnd.choice(known)
                        key = uuid.uuid4().hex
                        sent = self._next()
                        r = client.post("/v1/feedback", json={"request_id": rid, "signal": rnd.choice(["accepted", "rejected"])},
                                        headers={"Idempotency-Key": key})
                        if r.status_code == 200:
                            with self.lock:
                                self.feedback[key] = (rid, sent)
                        else:
                            self.unexpected.append(f"feedback {r.status_code} {r.text[:200]}")
                except (httpx.HTTPError, OSError) as e:
                    if not self.killing.is_set():
                        self.unexpected.append(f"{kind}: {type(e).__name__}: {e}")
                    else:
                        self.errors_after_kill += 1
                        return

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive(), "a load thread hung"


def config(fake_url: str, db: Path) -> dict:
    cfg = base_config(fake_url, fake_url)
    cfg["log"] = {"path": str(db)}
    return cfg


def crash_round(binary: Path, workdir: Path, fake_url: str, round_no: int, kill_after: int, tail_requests: int = 0,
                threads: int = 6) -> dict:
    """Starts the daemon on workdir/crash.db, loads it, and once `kill_after` feedbacks were acknowledged sends
    requests only until `tail_requests` more were answered, then SIGKILLs it, restarts it on the same file and checks
    what survived. Returns the round's figures."""
    db = workdir / "crash.db"
    fw = Flywheel(binary, workdir, "crash", config(fake_url, db), ["--db", str(db)], None)
    load = Load(fw, threads, seed=round_no)
    started = time.monotonic()
    load.start()
    try:
        poll(lambda: len(load.feedback) >= kill_after or load.unexpected, timeout=60, interval=0.001,
             what=f"{kill_after} acknowledged feedbacks")
        if tail_requests:
            load.no_feedback.set()
            with load.lock:
                target = len(load.requests) + tail_requests
            poll(lambda: len(load.requests) >= target or load.unexpected, timeout=60, interval=0.001,
                 what=f"{tail_requests} more answered requests")
    finally:
        load.killing.set()
        load_seconds = time.monotonic() - started
        fw.proc.send_signal(signal.SIGKILL)
        fw.wait(10)
        load.join()
    assert not load.unexpected, load.unexpected[:5]

    # Restart on the same database: the daemon recovers the WAL as it opens it.
    fw = Flywheel(binary, workdir, "crash", config(fake_url, db), ["--db", str(db)], None)
    try:
        con = sqlite3.connect(db, timeout=10)
        try:
            integrity = con.execute("PRAGMA integrity_check").fetchall()
            orphans = con.execute("SELECT count(*) FROM feedback WHERE request_id NOT IN (SELECT id FROM requests)").fetchone()[0]
            stored_requests = {row[0] for row in con.execute("SELECT id FROM requests")}
            stored_keys = {row[0] for row in con.execute("SELECT idempotency_key FROM feedback WHERE idempotency_key IS NOT NULL")}
        finally:
            con.close()
        assert integrity == [("ok",)], integrity
        assert orphans == 0
        lost_feedback = [k for k in load.feedback if k not in stored_keys]
        assert not lost_feedback, f"{len(lost_feedback)} acknowledged feedbacks lost: {lost_feedback[:5]}"
        last_acked_send = max(sent for _, sent in load.feedback.values())
        covered = [rid for rid, done in load.requests.items() if done < last_acked_send]
        missing_covered = [rid for rid in covered if rid not in stored_requests]
        assert not missing_covered, f"requests answered before acknowledged feedback was sent are missing: {missing_covered[:5]}"
        lost_requests = [rid for rid in load.requests if rid not in stored_requests]

        # It serves again: a request, its row, feedback on it.
        with httpx.Client(base_url=fw.base_url, timeout=20) as client:
            r = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("after the crash")})
            assert r.status_code == 200, r.text
            f = client.post("/v1/feedback", json={"request_id": r.headers["x-request-id"], "signal": "accepted"})
            assert f.status_code == 200, f.text
    finally:
        rc = fw.stop()
    assert rc == 0, fw.stderr()[-2000:]
    return {"round": round_no, "acked_requests": len(load.requests), "acked_feedback": len(load.feedback),
            "lost_feedback": 0, "lost_requests": len(lost_requests),
            "answered_after_last_acked_feedback": len(load.requests) - len(covered),
            "requests_per_s": round(len(load.requests) / load_seconds, 1)}


def test_kill_9_under_mixed_load_loses_no_acknowledged_feedback(flywheel_bin, tmp_path, fake):
    # Rounds alternate: killed right after an acknowledged feedback, and after a burst of requests only.
    results = [crash_round(flywheel_bin, tmp_path, fake.url, n, kill_after=15 + 10 * n, tail_requests=(n % 2) * 30)
               for n in range(4)]
    for r in results:
        # What may be lost is bounded by what was answered after the last acknowledged feedback was sent.
        assert r["lost_requests"] <= r["answered_after_last_acked_feedback"], r
    con = sqlite3.connect(tmp_path / "crash.db")
    total = con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    con.close()
    assert total >= sum(r["acked_feedback"] for r in results)


def strace_or_skip(tmp_path: Path) -> str:
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace is not installed")
    probe = subprocess.run([strace, "-qq", "-e", "trace=fsync", "-o", str(tmp_path / "probe.trace"), "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.strip()}")
    return strace


def wal_syncs(trace: Path, start: float, end: float) -> int:
    """fsync/fdatasync calls on the log's WAL that strace saw between two wall-clock times."""
    count = 0
    for line in trace.read_text().splitlines():
        m = re.match(r"^\d+\s+(\d+\.\d+) (?:fsync|fdatasync)\(\d+<([^>]*)>", line)
        if m and m.group(2).endswith("-wal") and start <= float(m.group(1)) <= end:
            count += 1
    return count


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_feedback_durability_full_fsyncs_the_wal_before_the_200_and_normal_does_not(flywheel_bin, tmp_path, fake, durability):
    """What `log.feedback_durability` means on disk. In WAL mode a commit is appended to the -wal file; with
    synchronous=NORMAL the WAL is fsynced only at checkpoints, so a commit survives the process dying (the kernel
    has the pages) but the last ones may roll back on power loss; with FULL the WAL is fsynced before the commit
    returns, and the 200 is sent only after that. strace shows the fsyncs; request rows stay NORMAL either way."""
    strace = strace_or_skip(tmp_path)
    trace = tmp_path / "daemon.trace"
    wrapper = tmp_path / "flywheel-under-strace"
    wrapper.write_text(f'#!/bin/sh\nexec {strace} -f -qq -ttt -y -e trace=fsync,fdatasync -o {trace} {flywheel_bin} "$@"\n')
    wrapper.chmod(0o755)
    db = tmp_path / "durable.db"
    cfg = config(fake.url, db)
    cfg["log"]["feedback_durability"] = durability
    fw = Flywheel(wrapper, tmp_path, "durable", cfg, ["--db", str(db)], None)
    try:
        with httpx.Client(base_url=fw.base_url, timeout=20) as client:
            def chat(text: str) -> str:
                r = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg(text)})
                assert r.status_code == 200, r.text
                return r.headers["x-request-id"]
            ids = [chat(f"to be rated {i}") for i in range(5)]
            for rid in ids:
                wait_logged(flywheel_bin, db, rid)  # not fw.wait_logged: its CLI would run under strace too
            feedback_start = time.time()
            for rid in ids:
                r = client.post("/v1/feedback", json={"request_id": rid, "signal": "accepted"})
                assert r.status_code == 200, r.text
            feedback_end = time.time()
            more = [chat(f"request rows only {i}") for i in range(5)]
            for rid in more:
                wait_logged(flywheel_bin, db, rid)
            requests_end = time.time()
    finally:
        # SIGTERM to strace would only detach it; the daemon is its child. strace exits with the daemon's code.
        children = Path(f"/proc/{fw.proc.pid}/task/{fw.proc.pid}/children").read_text().split()
        for child in children:
            os.kill(int(child), signal.SIGTERM)
        rc = fw.wait(30)
    assert children and rc == 0, fw.stderr()[-2000:]
    during_feedback = wal_syncs(trace, feedback_start, feedback_end)
    if durability == "full":
        assert during_feedback >= 5, f"{during_feedback} WAL syncs for 5 feedback commits"
    else:
        assert during_feedback == 0, f"{during_feedback} WAL syncs with feedback_durability: normal"
    assert wal_syncs(trace, feedback_end, requests_end) == 0, "request rows must stay synchronous=NORMAL"


def main() -> None:
    a = argparse.ArgumentParser(description="kill -9 rounds under mixed load; prints a Markdown table")
    a.add_argument("--flywheel", default=str(flywheel_path()))
    a.add_argument("--rounds", type=int, default=20)
    a.add_argument("--threads", type=int, default=6)
    a.add_argument("--min-feedback", type=int, default=20)
    a.add_argument("--max-feedback", type=int, default=200)
    a.add_argument("--max-tail", type=int, default=300, help="requests-only burst before the kill: 0 to this, at random")
    args = a.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fw-crash-"))
    rnd = random.Random(12)
    rows = []
    with FakeUpstream() as fake:
        for n in range(args.rounds):
            fake._server.handle_error = lambda *_: None  # clients vanish at every kill; no tracebacks
            r = crash_round(Path(args.flywheel), work, fake.url, n, rnd.randint(args.min_feedback, args.max_feedback),
                            rnd.randint(0, args.max_tail), args.threads)
            rows.append(r)
            print(json.dumps(r), flush=True)
    print("\n| rounds | requests acknowledged | feedback acknowledged | feedback lost | requests lost (max per round) "
          "| answered after the last acknowledged feedback was sent (max per round) |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(rows)} | {sum(r['acked_requests'] for r in rows)} | {sum(r['acked_feedback'] for r in rows)} | "
          f"{sum(r['lost_feedback'] for r in rows)} | {sum(r['lost_requests'] for r in rows)} "
          f"({max(r['lost_requests'] for r in rows)}) | "
          f"{sum(r['answered_after_last_acked_feedback'] for r in rows)} ({max(r['answered_after_last_acked_feedback'] for r in rows)}) |")
    rate = sum(r["acked_requests"] for r in rows) / sum(r["acked_requests"] / r["requests_per_s"] for r in rows)
    print(f"\nmean request rate {rate:.0f}/s; lost requests per round at most {max(r['lost_requests'] for r in rows)}, "
          f"i.e. {1000 * max(r['lost_requests'] for r in rows) / rate:.0f} ms of that traffic")
    print(f"database: {work / 'crash.db'}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()

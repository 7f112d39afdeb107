#!/usr/bin/env python3
"""Client-fault figures for RELIABILITY.md: memory per idle connection, serving beside them, their idle timeout,
and descriptor exhaustion (CPU while out of descriptors, recovery).

    python3 scripts/bench/client_faults.py --flywheel .build/release/flywheel --idle 3000

Starts a fake upstream and `flywheel serve` (temp dir, port 0), then:
  1. opens N idle connections (half of them used once for GET /healthz, so idle keep-alive, half never sent a
     byte) and reads the daemon's RssAnon/VmRSS and open descriptors before and after; times requests served
     beside them; waits for the idle timeout to close all of them.
  2. lowers the daemon's soft RLIMIT_NOFILE to what it has open + 16 (prlimit on its pid), connects until it
     says it cannot accept, measures its CPU for --window seconds while exhausted, checks a held connection is
     still served, frees the descriptors and times the recovery of a connection left in the backlog.
Needs `ulimit -n` above N + 100 for the script itself."""
from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Tests" / "E2E"))
from conftest import Launcher, base_config  # noqa: E402
from fake_upstream import FakeUpstream  # noqa: E402


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "Threads"):
            out[key] = int(value.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def readable(s: socket.socket, seconds: float) -> bool:
    """poll(2), not select(2): descriptors above 1024 are fine."""
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(p.poll(seconds * 1000))


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(s: socket.socket) -> bytes:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
        got = s.recv(65536)
        if not got:
            break
        data += got
        if b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")), 0)
            if len(body) >= length:
                break
    return data


def closed(s: socket.socket) -> bool:
    try:
        while readable(s, 0):
            if not s.recv(65536):
                return True
        return False
    except OSError:
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flywheel", default=str(Path(__file__).resolve().parents[2] / ".build" / "release" / "flywheel"))
    ap.add_argument("--idle", type=int, default=3000)
    ap.add_argument("--idle-timeout", type=float, default=5)
    ap.add_argument("--window", type=float, default=5, help="seconds of CPU measured while out of descriptors")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, a.idle + 200)), hard))
    out: dict = {"idle_connections": a.idle}
    with FakeUpstream() as fake, tempfile.TemporaryDirectory() as tmp:
        launcher = Launcher(Path(a.flywheel).resolve(), Path(tmp))
        fw = launcher(base_config(fake.url, fake.url, idle_timeout=a.idle_timeout, request_timeout=5,
                                  max_connections=a.idle + 100), name="faults")
        pid = fw.proc.pid
        warm = socket.create_connection(("127.0.0.1", fw.port))
        for _ in range(50):
            get(warm)
        warm.close()
        before = status(pid)
        t0 = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", fw.port), timeout=30) for _ in range(a.idle)]
        for s in idle[: a.idle // 2]:
            get(s)
        opened = time.monotonic() - t0
        with_idle = status(pid)
        lat = []
        with socket.create_connection(("127.0.0.1", fw.port), timeout=30) as s:
            for _ in range(200):
                t = time.perf_counter()
                assert get(s).startswith(b"HTTP/1.1 200")
                lat.append(time.perf_counter() - t)
        lat.sort()
        t1 = time.monotonic()
        while not all(closed(s) for s in idle):
            time.sleep(0.05)
        gone = time.monotonic() - t1
        for s in idle:
            s.close()
        after = status(pid)
        out["idle"] = {"before": before, "with_idle": with_idle, "after_idle_timeout": after,
                       "open_and_half_use_seconds": round(opened, 2),
                       "rss_anon_kb_per_connection": round((with_idle["RssAnon"] - before["RssAnon"]) / a.idle, 2),
                       "vm_rss_kb_per_connection": round((with_idle["VmRSS"] - before["VmRSS"]) / a.idle, 2),
                       "healthz_beside_them_ms_p50_p99": [round(lat[len(lat) // 2] * 1e3, 3), round(lat[int(len(lat) * .99)] * 1e3, 3)],
                       "all_closed_seconds_after_requests": round(gone, 2)}

        # 2. descriptor exhaustion
        held = [socket.create_connection(("127.0.0.1", fw.port), timeout=30)]
        get(held[0])
        open_now = len(os.listdir(f"/proc/{pid}/fd"))
        dsoft, dhard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_now + 16, dhard))
        while "cannot accept connections" not in fw.stderr():
            held.append(socket.create_connection(("127.0.0.1", fw.port), timeout=30))
            time.sleep(0.01)
        waiting = socket.create_connection(("127.0.0.1", fw.port), timeout=30)  # surely in the backlog
        held.append(waiting)
        waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        c0, w0 = cpu_seconds(pid), time.monotonic()
        time.sleep(a.window)
        cpu = cpu_seconds(pid) - c0
        wall = time.monotonic() - w0
        served = get(held[0]).startswith(b"HTTP/1.1 200")
        for s in held[1:-1]:
            s.close()
        t2 = time.monotonic()
        waiting.settimeout(30)
        answered = waiting.recv(65536).startswith(b"HTTP/1.1 200")
        recovered = time.monotonic() - t2
        while "accepting connections again" not in fw.stderr():
            time.sleep(0.01)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (dsoft, dhard))
        lines = [l for l in fw.stderr().splitlines() if "accept" in l and "listening" not in l]
        out["exhaustion"] = {"connections_attempted": len(held), "cpu_share_while_exhausted": round(cpu / wall, 4),
                             "held_connection_served": served, "backlog_connection_answered": answered,
                             "recovery_seconds": round(recovered, 3), "daemon_lines": lines}
        waiting.close()
        held[0].close()
        problems = launcher.stop_all()
        out["clean_exit"] = not problems
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

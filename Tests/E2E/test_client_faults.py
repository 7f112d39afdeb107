"""Client faults: slowloris (a head or a body trickled), many idle connections, and file-descriptor exhaustion.
Clients that vanish mid-stream have their tests beside the paths they cut: test_errors.py and test_hardening.py
(proxied), test_local_model.py and test_batching_hostile.py (local generation). Figures: RELIABILITY.md."""
from __future__ import annotations

import json
import os
import resource
import select
import socket
import threading
import time

from conftest import base_config
from helpers import poll, user_msg

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


def chat_request(text: str) -> bytes:
    body = json.dumps({"model": "gpt-4o-mini", "messages": user_msg(text)}).encode()
    return HEAD % len(body) + body


def closed_by_server(s: socket.socket) -> bool:
    """True once the server closed `s` (EOF or reset), whatever it sent first."""
    try:
        while True:
            if not readable(s, 0):
                return False
            if not s.recv(65536):
                return True
    except OSError:
        return True


def answered(s: socket.socket, request: bytes) -> bytes:
    """Sends `request` on a keep-alive connection and reads one whole response (Content-Length framed)."""
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        got = s.recv(65536)
        assert got, f"closed before an answer: {data!r}"
        data += got
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def test_slowloris_heads_and_bodies_are_cut_by_the_request_timeout_while_others_are_served(start_flywheel, fake, fake_backup):
    fw = start_flywheel(base_config(fake.url, fake_backup.url, request_timeout=1))
    whole = chat_request("trickled")
    head_only = whole[:whole.index(b"\r\n\r\n")]          # the head, one byte at a time
    body_after = whole[:whole.index(b"\r\n\r\n") + 4]      # the whole head at once, then the body byte by byte
    stop = threading.Event()
    cut: dict[str, int] = {}

    def trickle(name: str, first: bytes, rest: bytes) -> None:
        s = socket.create_connection(("127.0.0.1", fw.port), timeout=30)
        s.sendall(first)
        sent = 0
        for b in rest:
            if stop.is_set() or closed_by_server(s):
                break
            try:
                s.send(bytes([b]))
            except OSError:
                break
            sent += 1
            stop.wait(0.1)
        cut[name] = sent
        s.close()

    threads = [threading.Thread(target=trickle, args=("head", b"", head_only)),
               threading.Thread(target=trickle, args=("body", body_after, whole[len(body_after):]))]
    for t in threads:
        t.start()
    try:
        # Served meanwhile, on fresh connections.
        client = fw.client()
        for i in range(5):
            assert client.chat.completions.create(model="gpt-4o-mini", messages=user_msg(f"other {i}")).choices[0] \
                .message.content == f"echo: other {i}"
        for t in threads:
            t.join(60)
    finally:
        stop.set()
    assert cut["head"] < len(head_only), "the trickled head was never cut"
    assert cut["body"] < len(whole) - len(body_after), "the trickled body was never cut"
    assert all(b"trickled" not in r.body for r in fake.requests)


def test_idle_connections_are_closed_at_the_idle_timeout_and_new_requests_are_served_meanwhile(start_flywheel, fake, fake_backup):
    n = min(500, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2 - 50)
    fw = start_flywheel(base_config(fake.url, fake_backup.url, idle_timeout=1, request_timeout=5))
    idle = [socket.create_connection(("127.0.0.1", fw.port), timeout=30) for _ in range(n)]
    try:
        # Half of them have been used once: idle keep-alive connections, the rest never sent a byte.
        for s in idle[: n // 2]:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        with socket.create_connection(("127.0.0.1", fw.port), timeout=30) as s:
            assert answered(s, chat_request("beside the idle ones")).startswith(b"HTTP/1.1 200")
        poll(lambda: all(closed_by_server(s) for s in idle), timeout=60, interval=0.2,
             what=f"all {n} idle connections closed by the daemon")
        with socket.create_connection(("127.0.0.1", fw.port), timeout=30) as s:
            assert answered(s, chat_request("after them")).startswith(b"HTTP/1.1 200")
    finally:
        for s in idle:
            s.close()


def readable(s: socket.socket, seconds: float) -> bool:
    """poll(2), not select(2): descriptors above 1024 are fine."""
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(p.poll(seconds * 1000))


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_the_daemon_keeps_serving_says_so_once_and_recovers(start_flywheel, fake, fake_backup):
    fw = start_flywheel(base_config(fake.url, fake_backup.url, request_timeout=5, idle_timeout=60))
    pid = fw.proc.pid
    held = [socket.create_connection(("127.0.0.1", fw.port), timeout=30)]
    assert answered(held[0], b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").startswith(b"HTTP/1.1 200")
    open_now = len(os.listdir(f"/proc/{pid}/fd"))
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_now + 8, hard))
    try:
        # Connect until the daemon cannot take more: the kernel completes the handshakes, accept(2) fails.
        for _ in range(40):
            held.append(socket.create_connection(("127.0.0.1", fw.port), timeout=30))
        poll(lambda: "cannot accept connections" in fw.stderr(), timeout=20, what="the EMFILE line")
        waiting = held[-1]  # still in the listen backlog
        waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")

        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        # The connections it has are served; a proxied request needs a socket it cannot open: a clear 503.
        for _ in range(10):
            assert answered(held[0], b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").startswith(b"HTTP/1.1 200")
        r = answered(held[0], chat_request("no socket for the upstream"))
        assert r.startswith(b"HTTP/1.1 503"), r[:300]
        assert b"retry-after: 1" in r.lower() and b"out of file descriptors" in r
        rid = next(line.split(b": ")[1].decode() for line in r.split(b"\r\n") if line.lower().startswith(b"x-request-id"))
        assert not readable(waiting, 1.0), "answered while out of descriptors?"
        cpu = cpu_seconds(pid) - cpu0
        wall = time.monotonic() - wall0
        assert cpu < 0.2 * wall + 0.05, f"{cpu:.2f} s of CPU in {wall:.2f} s while out of descriptors: spinning on accept?"
        assert fw.stderr().count("cannot accept connections") == 1, fw.stderr()

        # Descriptors come back: the waiting connection is accepted and answered, and that is said once.
        for s in held[1:-1]:
            s.close()
        waiting.settimeout(30)
        assert waiting.recv(65536).startswith(b"HTTP/1.1 200")
        poll(lambda: "accepting connections again" in fw.stderr(), timeout=20, what="the recovery line")
        # SQLite kept working throughout: the 503 is in the log.
        row = fw.wait_logged(rid)
        assert row["status"] == 503 and row["error"]["type"] == "overloaded"
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        for s in held:
            s.close()
    assert fw.client().chat.completions.create(model="gpt-4o-mini", messages=user_msg("after")).choices[0] \
        .message.content == "echo: after"

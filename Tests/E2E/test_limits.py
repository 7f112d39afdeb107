"""Connection-level limits: slow clients, concurrency."""
from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import base_config
from helpers import poll, recv_until, user_msg


def test_slow_client_is_dropped_by_request_timeout(start_flywheel, fake, fake_backup):
    fw = start_flywheel(base_config(fake.url, fake_backup.url, request_timeout=2))
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
               b"Content-Length: 64\r\n\r\n" + b"{" * 64)
    s = socket.create_connection(("127.0.0.1", fw.port), timeout=10)
    stop = threading.Event()

    def trickle() -> None:  # one byte per second
        for b in request:
            if stop.is_set():
                return
            try:
                s.send(bytes([b]))
            except OSError:
                return
            stop.wait(1.0)

    t0 = time.monotonic()
    threading.Thread(target=trickle, daemon=True).start()
    data = recv_until(s, b"", lambda _: False)  # until the server closes
    elapsed = time.monotonic() - t0
    stop.set()
    s.close()
    assert elapsed < 6, f"slow client held the connection {elapsed:.1f}s with request_timeout 2"
    assert elapsed >= 1.5, f"dropped after {elapsed:.1f}s, before request_timeout"
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
    assert fake.requests == []
    r = fw.client().chat.completions.create(model="gpt-4o-mini", messages=user_msg("still fine"))
    assert r.choices[0].message.content == "echo: still fine"


def test_fifty_concurrent_requests_all_succeed_and_are_logged(gw):
    client = gw.client()

    def one(i: int) -> tuple[str, str]:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                               messages=user_msg(f"concurrent {i}"))
        return raw.parse().choices[0].message.content, raw.headers["x-request-id"]

    with ThreadPoolExecutor(50) as ex:
        results = list(ex.map(one, range(50)))
    assert [c for c, _ in results] == [f"echo: concurrent {i}" for i in range(50)]
    ids = {rid for _, rid in results}
    assert len(ids) == 50
    poll(lambda: ids <= {r["id"] for r in gw.fw.tail("-n", "500") if r.get("type") == "request"},
         timeout=10, interval=0.2, what="all 50 concurrent requests in the log")


def test_many_connections_opened_at_once(gw):
    """50 separate clients (separate TCP connections) at once."""
    def one(i: int) -> str:
        c = gw.fw.client()
        try:
            return c.chat.completions.create(model="gpt-4o-mini", messages=user_msg(f"conn {i}")).choices[0] \
                .message.content
        finally:
            c.close()

    with ThreadPoolExecutor(50) as ex:
        assert list(ex.map(one, range(50))) == [f"echo: conn {i}" for i in range(50)]

"""Upstream faults the fake upstream cannot script: Retry-After as an HTTP-date or beyond the retry cap, a
stream that stalls or drips forever, event streams that are not what they claim, and a TCP reset after bytes
reached the client. Each must end with the right retry, fallback or OpenAI error, and a logged row.

The upstream here is a raw socket server answering each request with the next queued script.
(The other faults have their tests next to the features: test_errors.py, test_hardening.py, test_stream.py,
test_policies.py; RELIABILITY.md has the whole table.)"""
from __future__ import annotations

import email.utils
import json
import socket
import struct
import threading
import time
from typing import Callable

import openai
import pytest

from conftest import Launcher, base_config, upstream_cfg
from fake_upstream import FakeUpstream
from helpers import assert_openai_error, httpx, poll, user_msg

Script = Callable[[socket.socket], None]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(obj) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def delta(content: str | None = None, finish: str | None = None, role: bool = False) -> dict:
    d: dict = {"role": "assistant", "content": ""} if role else ({"content": content} if content is not None else {})
    return {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "raw-upstream",
            "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"


def answer(status: int, body: dict, headers: dict | None = None) -> Script:
    def script(conn: socket.socket) -> None:
        data = json.dumps(body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                     f"Connection: close\r\n{extra}\r\n".encode() + data)
    return script


def ok(text: str) -> Script:
    return answer(200, {"id": "chatcmpl-raw", "object": "chat.completion", "created": 1, "model": "raw-upstream",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def rate_limited(retry_after: str, status: int = 429) -> Script:
    return answer(status, {"error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}},
                  {"Retry-After": retry_after})


class RawUpstream:
    """A loopback HTTP/1.1 server: each request (one per connection) is answered by the next queued script, or
    `ok("default")`. `arrivals` has the wall time of every request; `peer_closed` is set when a script that
    waits for it sees the gateway close the connection."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.scripts: list[Script] = []
        self.arrivals: list[float] = []
        self.peer_closed = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def queue(self, *scripts: Script) -> None:
        with self.lock:
            self.scripts.extend(scripts)

    def reset(self) -> None:
        with self.lock:
            self.scripts.clear()
            self.arrivals.clear()
        self.peer_closed.clear()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += conn.recv(65536)
            with self.lock:
                self.arrivals.append(time.time())
                script = self.scripts.pop(0) if self.scripts else ok("default")
            try:
                script(conn)
            except OSError:
                pass

    def wait_for_close(self, conn: socket.socket) -> None:
        """Blocks until the gateway closes `conn` (or 30 s), then says so."""
        conn.settimeout(30)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        self.peer_closed.set()

    def stop(self) -> None:
        self.listener.close()


def sse(*events: bytes, end: bool = True, then: str | None = None, up: RawUpstream | None = None) -> Script:
    """An event stream: the events, each in its own chunk, then the chunked end (`end`), then `then`:
    "stall" (send nothing more until the gateway hangs up), "reset" (a TCP RST), "drip" (a comment every
    0.1 s, forever)."""
    def script(conn: socket.socket) -> None:
        conn.sendall(SSE_HEAD)
        for e in events:
            conn.sendall(chunk(e))
        if end:
            conn.sendall(b"0\r\n\r\n")
        if then == "stall":
            up.wait_for_close(conn)
        elif then == "reset":
            time.sleep(0.05)  # let the events leave before the reset discards what is unsent
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif then == "drip":
            while True:
                conn.sendall(chunk(b": still here\n\n"))
                time.sleep(0.1)
    return script


@pytest.fixture(scope="module")
def faulty(flywheel_bin, tmp_path_factory):
    """Routes: raw-model -> [raw]; raw-fb -> [raw, good]; drip-model -> [drip] (the raw server with a 1.5 s total
    deadline and no idle limit); the raw upstream's idle limit is 0.5 s, its retry cap 3 s; events over 64 KiB
    are not assembled."""
    up = RawUpstream()
    good = FakeUpstream().start()
    cfg = base_config(good.url, good.url, max_response_bytes=65536)
    raw = upstream_cfg("raw", up.url, retries=1, first_byte=5, total=20)
    raw["timeouts"]["idle"] = 0.5
    raw["retries"]["max_backoff"] = 3
    drip = upstream_cfg("drip", up.url, retries=0, first_byte=5, total=1.5)
    drip["timeouts"]["idle"] = 0  # off: only the total deadline can end a drip
    cfg["upstreams"] = [raw, drip, upstream_cfg("good", good.url)]
    cfg["routes"] = [{"model": "raw-model", "upstreams": ["raw"]}, {"model": "raw-fb", "upstreams": ["raw", "good"]},
                     {"model": "drip-model", "upstreams": ["drip"]}]
    launcher = Launcher(flywheel_bin, tmp_path_factory.mktemp("faults"))
    try:
        fw = launcher(cfg, name="faults")
        yield type("Faulty", (), {"fw": fw, "up": up, "good": good})
    finally:
        problems = launcher.stop_all()
        up.stop()
        good.stop()
    assert not problems, problems


@pytest.fixture
def f(faulty):
    faulty.up.reset()
    faulty.good.reset()
    yield faulty


def stream_lines(fw, model: str, text: str = "hi") -> tuple[str, list[str]]:
    with fw.http() as c, c.stream("POST", "/v1/chat/completions",
                                  json={"model": model, "stream": True, "messages": user_msg(text)}) as resp:
        assert resp.status_code == 200
        return resp.headers["x-request-id"], [line for line in resp.iter_lines() if line.startswith("data: ")]


def content_of(lines: list[str]) -> str:
    text = ""
    for line in lines:
        try:
            obj = json.loads(line[6:])
        except ValueError:
            continue  # not JSON: passed through as it came
        if isinstance(obj, dict):
            for choice in obj.get("choices", []):
                text += (choice.get("delta") or {}).get("content") or ""
    return text


# ---------------------------------------------------------------- Retry-After

def test_a_retry_after_given_as_an_http_date_is_waited_for(f):
    due = int(time.time()) + 2
    f.up.queue(rate_limited(email.utils.formatdate(due, usegmt=True), status=503), ok("after the date"))
    raw = f.fw.client().chat.completions.with_raw_response.create(model="raw-model", messages=user_msg("x"))
    assert raw.parse().choices[0].message.content == "after the date"
    assert len(f.up.arrivals) == 2 and f.up.arrivals[1] >= due, (f.up.arrivals, due)
    assert f.fw.wait_logged(raw.headers["x-request-id"])["attempts"] == 2


@pytest.mark.parametrize("retry_after", ["120", "Sun, 06 Nov 2094 08:49:37 GMT"])
def test_a_429_asking_for_longer_than_the_retry_cap_reaches_the_client_at_once_with_its_retry_after(f, retry_after):
    f.up.queue(rate_limited(retry_after))
    with pytest.raises(openai.RateLimitError) as ei:
        f.fw.client().chat.completions.create(model="raw-model", messages=user_msg("x"))
    assert ei.value.response.headers["retry-after"] == retry_after
    assert len(f.up.arrivals) == 1, "retrying sooner than the upstream asked would only be refused again"
    row = f.fw.wait_logged(ei.value.request_id)
    assert row["status"] == 429 and row["attempts"] == 1


def test_a_429_asking_for_longer_than_the_cap_moves_on_to_the_next_upstream(f):
    f.up.queue(rate_limited("120"))
    raw = f.fw.client().chat.completions.with_raw_response.create(model="raw-fb", messages=user_msg("next one"))
    assert raw.parse().choices[0].message.content == "echo: next one"
    assert len(f.up.arrivals) == 1
    row = f.fw.wait_logged(raw.headers["x-request-id"])
    assert row["upstream"] == "good" and row["attempts"] == 2


# ---------------------------------------------------------------- stalls and streams that never end

def test_a_stream_that_stalls_midway_ends_with_an_error_event_at_the_idle_limit_and_an_incomplete_row(f):
    f.up.queue(sse(event(delta(role=True)), event(delta("partial ")), end=False, then="stall", up=f.up))
    rid, lines = stream_lines(f.fw, "raw-fb")
    assert content_of(lines) == "partial "
    err = json.loads(lines[-1][6:])["error"]
    assert err["code"] == "upstream_timeout" and "next byte" in err["message"], err
    assert f.up.peer_closed.wait(10), "the stalled upstream transfer was not closed"
    assert f.good.requests == [], "bytes reached the client: no fallback after them"
    row = f.fw.wait_logged(rid)
    assert row["incomplete"] is True and row["error"]["type"] == "upstream_timeout"
    assert "partial" in json.dumps(row["response"])


def test_a_non_streamed_answer_that_stalls_after_its_head_is_a_504(f):
    def script(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":")
        f.up.wait_for_close(conn)
    f.up.queue(script)
    r = httpx.post(f"{f.fw.base_url}/v1/chat/completions", json={"model": "raw-model", "messages": user_msg("x")}, timeout=30)
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=504, code="upstream_timeout")
    assert f.fw.wait_logged(r.headers["x-request-id"])["status"] == 504


def test_a_stream_that_drips_forever_ends_at_the_total_deadline(f):
    f.up.queue(sse(event(delta(role=True)), event(delta("drip ")), end=False, then="drip"))
    rid, lines = stream_lines(f.fw, "drip-model")
    assert content_of(lines) == "drip "
    err = json.loads(lines[-1][6:])["error"]
    assert err["code"] == "upstream_timeout" and "total" in err["message"], err
    row = f.fw.wait_logged(rid)
    assert row["incomplete"] is True and row["error"]["type"] == "upstream_timeout"


# ---------------------------------------------------------------- broken streams

def test_a_reset_after_bytes_reached_the_client_is_an_error_event_not_a_fallback(f):
    f.up.queue(sse(event(delta(role=True)), event(delta("cut ")), end=False, then="reset"))
    rid, lines = stream_lines(f.fw, "raw-fb")
    assert content_of(lines) == "cut "
    err = json.loads(lines[-1][6:])["error"]
    assert err["type"] == "upstream_error" and "127.0.0.1" not in err["message"], err
    assert f.good.requests == []
    row = f.fw.wait_logged(rid)
    assert row["incomplete"] is True and row["upstream"] == "raw"


def test_a_stream_that_ends_without_done_or_a_finish_reason_is_reported_as_cut(f):
    f.up.queue(sse(event(delta(role=True)), event(delta("half an ")), end=True))
    rid, lines = stream_lines(f.fw, "raw-model")
    assert content_of(lines) == "half an "
    assert "error" in json.loads(lines[-1][6:]), lines[-1]
    row = f.fw.wait_logged(rid)
    assert row["incomplete"] is True and row["error"]["type"] == "upstream_unavailable"
    assert "[DONE]" in row["error"]["message"]


def test_a_stream_with_a_finish_reason_but_no_done_is_whole(f):
    f.up.queue(sse(event(delta(role=True)), event(delta("all of it")), event(delta(finish="stop")), end=True))
    rid, lines = stream_lines(f.fw, "raw-model")
    assert content_of(lines) == "all of it"
    assert all('"error"' not in line for line in lines)
    row = f.fw.wait_logged(rid)
    assert row["incomplete"] is False and row["error"] is None


def test_garbage_lines_and_data_that_is_not_json_pass_through_and_are_noted_in_the_log(f):
    f.up.queue(sse(event(delta(role=True)), b": a comment\n\n", b"garbage without a colon\n\n", b"data: {not json\n\n",
                   event(delta("still ")), event(delta("fine", finish="stop")), event(b"[DONE]")))
    rid, lines = stream_lines(f.fw, "raw-model")
    assert content_of(lines) == "still fine"
    assert "data: {not json" in lines and lines[-1] == "data: [DONE]"
    row = f.fw.wait_logged(rid)
    assert row["status"] == 200 and row["incomplete"] is False
    assert row["error"]["type"] == "upstream_stream_unparsed" and "not JSON" in row["error"]["message"]
    assert "still fine" in json.dumps(row["response"])


def test_an_event_over_the_size_cap_reaches_the_client_and_the_log_copy_is_marked(f):
    big = delta("x" * 70_000)
    f.up.queue(sse(event(delta(role=True)), event(delta("before ")), event(big), event(delta(finish="stop")), event(b"[DONE]")))
    rid, lines = stream_lines(f.fw, "raw-model")
    assert content_of(lines) == "before " + "x" * 70_000
    row = f.fw.wait_logged(rid)
    assert row["status"] == 200 and row["response_truncated"] is True
    assert row["error"]["type"] == "upstream_stream_unparsed" and "longer than" in row["error"]["message"]
    assert f.fw.alive()

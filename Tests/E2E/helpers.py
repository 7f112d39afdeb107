"""Small shared helpers for the E2E tests (no fixtures here; see conftest.py)."""
from __future__ import annotations

import json
import re
import socket
import time
from typing import Any, Callable

try:  # openai >= 3 ships the HTTP client as "httpx2"; older stacks call it "httpx"
    import httpx2 as httpx  # type: ignore
except ImportError:  # pragma: no cover
    import httpx  # type: ignore

__all__ = ["httpx", "UUID7_RE", "SANE_ID_RE", "is_uuid7", "assert_openai_error", "raw_http", "poll",
           "user_msg"]

UUID7_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
SANE_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def is_uuid7(value: str | None) -> bool:
    return bool(value) and bool(UUID7_RE.match(value.lower())) and len(value) == 36


def user_msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assert_openai_error(status: int, headers: Any, body: bytes | str | dict, *, expect_status: int,
                        etype: str | None = None, code: str | None = None) -> dict:
    """Check an error response: status, x-request-id, and the OpenAI error shape."""
    assert status == expect_status, f"expected {expect_status}, got {status}: {body!r}"
    rid = headers.get("x-request-id") if headers is not None else None
    assert rid, f"error response {status} has no x-request-id header"
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            raise AssertionError(f"error body is not JSON: {body!r}")
    assert isinstance(body, dict) and set(body) == {"error"}, f"not an OpenAI error body: {body!r}"
    err = body["error"]
    assert isinstance(err, dict), body
    assert {"message", "type", "param", "code"} <= set(err), f"error lacks keys: {err!r}"
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    assert err["param"] is None or isinstance(err["param"], str), err
    assert err["code"] is None or isinstance(err["code"], str), err
    if etype is not None:
        assert err["type"] == etype, err
    if code is not None:
        assert err["code"] == code, err
    return err


def raw_http(port: int, data: bytes, timeout: float = 5.0, host: str = "127.0.0.1"
             ) -> tuple[int | None, dict[str, str], bytes]:
    """Send raw bytes, read one HTTP response.  Returns (status or None if the server closed
    without answering, lower-cased headers, body)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_http_response(s, timeout)


def recv_until(s: socket.socket, buf: bytes, done: Callable[[bytes], bool]) -> bytes:
    """Appends what the peer sends to buf until done(buf), EOF, a reset or the socket's timeout."""
    try:
        while not done(buf):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return buf


def read_http_response(s: socket.socket, timeout: float = 5.0) -> tuple[int | None, dict[str, str], bytes]:
    s.settimeout(timeout)
    buf = recv_until(s, b"", lambda b: b"\r\n\r\n" in b)
    if b"\r\n\r\n" not in buf:
        return None, {}, buf
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        need = int(headers["content-length"])
        rest = recv_until(s, rest, lambda b: len(b) >= need)[:need]
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        rest = _dechunk(recv_until(s, rest, lambda b: b.endswith(b"0\r\n\r\n")))
    return status, headers, rest


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        line, _, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


def poll(fn: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Call fn until it returns a truthy value; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class LoopbackHTTPServer:
    """A small HTTP/1.1 server on a free loopback port for the fakes a test needs (a judge, a webhook receiver, an
    upstream that stalls): `on_post(handler, body_bytes)` answers each POST through the standard library's
    handler (`send_response`, `send_header`, `end_headers`, `wfile`). Stopped with `stop()`."""

    def __init__(self, on_post: Callable[[Any, bytes], None], path: str = "/v1"):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                on_post(self, self.rfile.read(int(self.headers.get("Content-Length", "0"))))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send_json(handler: Any, status: int, body: Any) -> None:
    """Answers a LoopbackHTTPServer request with a JSON body."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)

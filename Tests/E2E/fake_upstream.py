"""A scriptable fake of an OpenAI-compatible API, for Flywheel's end-to-end tests.

Stdlib only.  One ``FakeUpstream`` is a ThreadingHTTPServer on a free loopback
port speaking HTTP/1.1 with keep-alive (Content-Length for plain answers,
chunked transfer encoding for SSE streams).

Deterministic behaviour:
  * chat:        the answer is ``"echo: " + <last user message text>``; usage counts
                 whitespace-separated words (prompt = all message texts, completion =
                 answer).  ``max_tokens`` / ``max_completion_tokens`` truncate the
                 answer and give ``finish_reason: "length"``.
  * tool calls:  with ``tools`` and a ``tool_choice`` of ``"required"`` or a named function, the answer is one
                 call of that function (or the first tool) with arguments ``{"input": <last user message>}``,
                 ``finish_reason: "tool_calls"``; streamed as a call chunk and two argument pieces.
  * completions: ``"echo: " + prompt`` per prompt.
  * embeddings:  ``embedding_for(text, dims)`` (sha256-derived, float32-exact values);
                 ``encoding_format: "base64"`` honoured.
  * models:      ``MODEL_IDS``.
  * streams:     role chunk, one chunk per answer word, finish_reason chunk, a usage
                 chunk when ``stream_options.include_usage``, then ``data: [DONE]``;
                 ``chunk_delay`` seconds between chunks.

Every request (except ``/_control``) is recorded in ``requests`` as a ``Recorded``.

Scripting failures, from Python or over HTTP (``POST /_control/fault`` with the
same keyword arguments as JSON, ``POST /_control/reset``, ``POST /_control/config``
``{"chunk_delay": s}``, ``GET /_control/requests``):
  * ``fail(status, count=1, message=None, retry_after=None)``  answer status with an
    OpenAI-style error body (and optional Retry-After header)
  * ``hang(seconds=30, count=1)``  wait before answering normally (released by
    ``reset()``/``stop()``)
  * ``slow_stream(delay=0.2, count=1)``  stream "tick " chunks forever (until the
    client goes away or ``reset()``/``stop()``)
  * ``close(count=1, after_chunks=None)``  drop the connection without an answer
    (or, for a stream, after that many SSE chunks)
Faults match POST requests by default (``method=None`` matches all, ``path=`` limits
to a path prefix) and are consumed in order.

``down_url()`` gives a base URL of a loopback port nothing listens on.

Run standalone: ``python3 fake_upstream.py --port 9001``.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_IDS = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "fake-model"]
CREATED = 1_700_000_000
DEFAULT_EMBED_DIMS = 8


# ---------------------------------------------------------------- deterministic helpers

def words(text: str) -> int:
    return len(text.split())


def message_text(content: Any) -> str:
    """Text of a chat message's content (string or list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def chat_answer(messages: list) -> str:
    last_user = ""
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            last_user = message_text(m.get("content"))
    return "echo: " + last_user


def tool_call_for(req: dict, cid: str) -> dict | None:
    """The tool call a request asks for (``tool_choice`` "required" or a named function), or None."""
    tools = req.get("tools")
    choice = req.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice in (None, "none", "auto"):
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
    else:
        name = ((tools[0] or {}).get("function") or {}).get("name")
    last_user = ""
    for m in req.get("messages") or []:
        if isinstance(m, dict) and m.get("role") == "user":
            last_user = message_text(m.get("content"))
    return {"id": "call_" + cid.rsplit("-", 1)[-1], "type": "function",
            "function": {"name": str(name), "arguments": json.dumps({"input": last_user})}}


def split_pieces(answer: str) -> list[str]:
    """Split an answer into stream pieces that join back to exactly the answer."""
    parts = answer.split(" ")
    return [parts[0]] + [" " + p for p in parts[1:]]


def embedding_for(text: str, dims: int = DEFAULT_EMBED_DIMS) -> list[float]:
    """Deterministic vector; every value is k/128 - 1, exact in float32."""
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend(b / 128.0 - 1.0 for b in digest)
        counter += 1
    return out[:dims]


ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout_error", None),
    409: ("conflict_error", None),
    422: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def error_body(status: int, message: str | None = None) -> dict:
    etype, code = ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message or f"fake upstream error {status}",
                      "type": etype, "param": None, "code": code}}


# ---------------------------------------------------------------- recorded requests

@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]          # lower-cased names (last value wins)
    raw_headers: list[tuple[str, str]]
    body: bytes
    time: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def to_dict(self) -> dict:
        return {"method": self.method, "path": self.path, "headers": self.headers,
                "body": self.body.decode("utf-8", "replace")}


# ---------------------------------------------------------------- the server

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeUpstream/1.0"
    fake: "FakeUpstream"  # set on the subclass made per server

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet
        pass

    # --- plumbing
    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until blank line
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, obj: Any, extra_headers: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"upstream-{self.fake._next_id()}")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", f"upstream-{self.fake._next_id()}")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _sse(self, obj: Any) -> None:
        payload = obj if isinstance(obj, str) else json.dumps(obj)
        self._chunk(f"data: {payload}\n\n".encode())

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- dispatch
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path.startswith("/_control"):
            return self._control(method, path, body)
        fake = self.fake
        raw = [(k, v) for k, v in self.headers.items()]
        fake._record(Recorded(method, path, {k.lower(): v for k, v in raw}, raw, body))
        fault = fake._take_fault(method, path)
        release = fake._release
        if fault is not None:
            kind = fault["kind"]
            if kind == "fail":
                extra = {}
                if fault.get("retry_after") is not None:
                    extra["Retry-After"] = fault["retry_after"]
                return self._send_json(fault["status"], error_body(fault["status"], fault.get("message")), extra)
            if kind == "close" and fault.get("after_chunks") is None:
                return self._drop()
            if kind == "hang":
                release.wait(fault.get("seconds", 30))
        try:
            req = json.loads(body) if body else {}
        except ValueError:
            return self._send_json(400, error_body(400, "fake upstream: body is not valid JSON"))
        if method == "POST" and not isinstance(req, dict):
            return self._send_json(400, error_body(400, "fake upstream: body must be an object"))
        try:
            if method == "POST" and path.endswith("/chat/completions"):
                return self._chat(req, fault, release)
            if method == "POST" and path.endswith("/completions"):
                return self._completions(req, fault, release)
            if method == "POST" and path.endswith("/embeddings"):
                return self._embeddings(req)
            if method == "GET" and path.endswith("/models"):
                return self._send_json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": CREATED, "owned_by": "fake-upstream"}
                    for m in MODEL_IDS]})
            if method == "GET" and "/models/" in path:
                mid = path.rsplit("/models/", 1)[1]
                if mid in MODEL_IDS:
                    return self._send_json(200, {"id": mid, "object": "model", "created": CREATED,
                                                 "owned_by": "fake-upstream"})
                return self._send_json(404, error_body(404, f"model {mid} not found"))
            return self._send_json(404, error_body(404, f"fake upstream: no route {method} {path}"))
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    # --- endpoints
    def _chat(self, req: dict, fault: dict | None, release: threading.Event) -> None:
        if "model" not in req or not isinstance(req.get("messages"), list):
            return self._send_json(400, error_body(400, "fake upstream: model and messages are required"))
        model = req["model"]
        messages = req["messages"]
        answer = chat_answer(messages)
        finish = "stop"
        limit = req.get("max_completion_tokens") or req.get("max_tokens")
        if isinstance(limit, int) and words(answer) > limit:
            answer = " ".join(answer.split()[:limit])
            finish = "length"
        prompt_tokens = sum(words(message_text(m.get("content"))) for m in messages if isinstance(m, dict))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": words(answer),
                 "total_tokens": prompt_tokens + words(answer)}
        cid = f"chatcmpl-fake-{self.fake._next_id()}"
        call = tool_call_for(req, cid)
        if call is not None:
            finish = "tool_calls"
            usage["completion_tokens"] = words(call["function"]["arguments"])
            usage["total_tokens"] = prompt_tokens + usage["completion_tokens"]
        if not req.get("stream"):
            message = {"role": "assistant", "content": answer, "refusal": None}
            if call is not None:
                message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
            return self._send_json(200, {
                "id": cid, "object": "chat.completion", "created": CREATED, "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage})
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            c = {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                 "system_fingerprint": "fp_fake",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            if include_usage:
                c["usage"] = None
            return c

        self._start_sse()
        delay = self.fake.chunk_delay
        sent = 0
        after = fault.get("after_chunks") if fault and fault["kind"] == "close" else None

        def emit(obj: Any) -> bool:
            nonlocal sent
            if after is not None and sent >= after:
                self._drop()
                return False
            if sent and delay:
                time.sleep(delay)
            self._sse(obj)
            sent += 1
            return True

        if not emit(chunk({"role": "assistant", "content": "", "refusal": None})):
            return
        if fault and fault["kind"] == "slow_stream":
            while not release.is_set():
                self._sse(chunk({"content": "tick "}))
                release.wait(fault.get("delay", 0.2))
            self._drop()
            return
        if call is not None:
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            pieces = [{"index": 0, "id": call["id"], "type": "function",
                       "function": {"name": call["function"]["name"], "arguments": ""}},
                      {"index": 0, "function": {"arguments": arguments[:half]}},
                      {"index": 0, "function": {"arguments": arguments[half:]}}]
            for piece in pieces:
                if not emit(chunk({"tool_calls": [piece]})):
                    return
        else:
            for piece in split_pieces(answer):
                if not emit(chunk({"content": piece})):
                    return
        if not emit(chunk({}, finish)):
            return
        if include_usage:
            if not emit({"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                         "system_fingerprint": "fp_fake", "choices": [], "usage": usage}):
                return
        if not emit("[DONE]"):
            return
        self._end_chunks()

    def _completions(self, req: dict, fault: dict | None, release: threading.Event) -> None:
        if "model" not in req or "prompt" not in req:
            return self._send_json(400, error_body(400, "fake upstream: model and prompt are required"))
        prompts = req["prompt"] if isinstance(req["prompt"], list) else [req["prompt"]]
        prompts = [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompts]
        texts = ["echo: " + p for p in prompts]
        pt = sum(words(p) for p in prompts)
        ct = sum(words(t) for t in texts)
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        cid = f"cmpl-fake-{self.fake._next_id()}"
        base = {"id": cid, "object": "text_completion", "created": CREATED, "model": req["model"]}
        if not req.get("stream"):
            return self._send_json(200, dict(base, choices=[
                {"index": i, "text": t, "logprobs": None, "finish_reason": "stop"} for i, t in enumerate(texts)],
                usage=usage))
        self._start_sse()
        for i, t in enumerate(texts):
            for n, piece in enumerate(split_pieces(t)):
                if self.fake.chunk_delay and (i or n):
                    time.sleep(self.fake.chunk_delay)
                self._sse(dict(base, choices=[{"index": i, "text": piece, "logprobs": None, "finish_reason": None}]))
            self._sse(dict(base, choices=[{"index": i, "text": "", "logprobs": None, "finish_reason": "stop"}]))
        self._sse("[DONE]")
        self._end_chunks()

    def _embeddings(self, req: dict) -> None:
        if "model" not in req or "input" not in req:
            return self._send_json(400, error_body(400, "fake upstream: model and input are required"))
        inp = req["input"]
        if isinstance(inp, str):
            items = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp):
            items = [" ".join(map(str, inp))]
        elif isinstance(inp, list):
            items = [x if isinstance(x, str) else " ".join(map(str, x)) for x in inp]
        else:
            return self._send_json(400, error_body(400, "fake upstream: bad input"))
        dims = req.get("dimensions") or DEFAULT_EMBED_DIMS
        data = []
        for i, text in enumerate(items):
            vec = embedding_for(text, dims)
            if req.get("encoding_format") == "base64":
                emb: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(words(t) for t in items)
        self._send_json(200, {"object": "list", "data": data, "model": req["model"],
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # --- control API
    def _control(self, method: str, path: str, body: bytes) -> None:
        fake = self.fake
        try:
            args = json.loads(body) if body else {}
        except ValueError:
            return self._send_json(400, {"error": "bad json"})
        if method == "GET" and path == "/_control/requests":
            return self._send_json(200, [r.to_dict() for r in fake.requests])
        if method == "POST" and path == "/_control/reset":
            fake.reset()
            return self._send_json(200, {"ok": True})
        if method == "POST" and path == "/_control/config":
            if "chunk_delay" in args:
                fake.chunk_delay = float(args["chunk_delay"])
            return self._send_json(200, {"ok": True})
        if method == "POST" and path == "/_control/fault":
            kind = args.pop("kind", None)
            fn = {"fail": fake.fail, "hang": fake.hang, "slow_stream": fake.slow_stream,
                  "close": fake.close}.get(kind)
            if fn is None:
                return self._send_json(400, {"error": f"unknown kind {kind!r}"})
            fn(**args)
            return self._send_json(200, {"ok": True})
        return self._send_json(404, {"error": "unknown control path"})


class FakeUpstream:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, chunk_delay: float = 0.0,
                 tls: "tuple[str, str] | None" = None):
        """tls: (certificate file, key file) to serve HTTPS instead of HTTP."""
        self.chunk_delay = chunk_delay
        self.requests: list[Recorded] = []
        self._faults: list[dict] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._counter = 0
        handler = type("BoundHandler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.scheme = "http"
        if tls:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    # --- lifecycle
    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL including /v1, as used for OPENAI_BASE_URL / upstream base_url."""
        return self.base + "/v1"

    def start(self) -> "FakeUpstream":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-upstream-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- scripting
    def _add_fault(self, kind: str, count: int, method: str | None, path: str | None, **kw: Any) -> None:
        with self._lock:
            self._faults.append(dict(kind=kind, remaining=count, method=method, path=path, **kw))

    def fail(self, status: int, count: int = 1, message: str | None = None, retry_after: Any = None,
             method: str | None = "POST", path: str | None = None) -> None:
        self._add_fault("fail", count, method, path, status=status, message=message, retry_after=retry_after)

    def hang(self, seconds: float = 30, count: int = 1, method: str | None = "POST", path: str | None = None) -> None:
        self._add_fault("hang", count, method, path, seconds=seconds)

    def slow_stream(self, delay: float = 0.2, count: int = 1, method: str | None = "POST",
                    path: str | None = None) -> None:
        self._add_fault("slow_stream", count, method, path, delay=delay)

    def close(self, count: int = 1, after_chunks: int | None = None, method: str | None = "POST",
              path: str | None = None) -> None:
        self._add_fault("close", count, method, path, after_chunks=after_chunks)

    def reset(self) -> None:
        """Forget faults and recorded requests, release hanging handlers, chunk_delay back to 0."""
        with self._lock:
            self._faults.clear()
            self.requests = []
            old, self._release = self._release, threading.Event()
            self.chunk_delay = 0.0
        old.set()

    def _take_fault(self, method: str, path: str) -> dict | None:
        with self._lock:
            for f in self._faults:
                if f["method"] and f["method"] != method:
                    continue
                if f["path"] and not path.startswith(f["path"]):
                    continue
                f["remaining"] -= 1
                if f["remaining"] <= 0:
                    self._faults.remove(f)
                return f
        return None

    def _record(self, r: Recorded) -> None:
        with self._lock:
            self.requests.append(r)

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    # --- assertions helpers
    def requests_to(self, suffix: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(suffix)]

    def wait_for_requests(self, suffix: str, n: int, timeout: float = 5.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests_to(suffix)
            if len(got) >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def down_url() -> str:
    """Base URL (with /v1) of a loopback port that nothing listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001)
    ap.add_argument("--chunk-delay", type=float, default=0.0)
    a = ap.parse_args()
    fake = FakeUpstream(a.host, a.port, a.chunk_delay)
    print(f"fake upstream on {fake.url}", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

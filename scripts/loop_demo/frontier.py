"""The frontier stand-in: a local OpenAI-compatible server that answers the ticket task the way a capable
general model would, with a latency and token counts (Flywheel prices them), and with mistakes at known rates.

It reads every ticket correctly (task.read), but applies a generic triage policy where the company's differs:
  * cancellations go to accounts, not billing            (`cancel`,   rate MISTAKES["cancel"])
  * a security or outage ticket is "high", not "urgent"  (`security`, rate MISTAKES["security"])
  * pricing and seat questions go to billing, not sales  (`sales`,    rate MISTAKES["sales"])
  * and any ticket gets a wrong priority now and then    (`noise`,    rate MISTAKES["noise"])
The mistakes are systematic, as a frontier model's are on a company's own rules: a model trained on its raw
answers learns them, and only the users' corrections teach the company's policy. Each answer is decided by a
hash of the seed, the ticket and how many times that ticket was asked, so a run is reproducible and a
regenerated answer can come out differently. Stdlib only.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import task

MISTAKES = {"cancel": 0.85, "security": 0.5, "sales": 0.4, "noise": 0.02}
MODEL = "gpt-4.1"


def tokens(text: str) -> int:
    """A token count in the usual proportion for English (about four characters a token)."""
    return max(1, math.ceil(len(text) / 4))


class Frontier:
    def __init__(self, seed: int = 1, latency: float = 0.3, mistakes: dict | None = None):
        self.seed, self.latency = seed, latency
        self.mistakes = dict(MISTAKES, **(mistakes or {}))
        self.lock = threading.Lock()
        self.asked: dict[str, int] = {}
        self.answered = 0
        self.wrong = 0
        frontier = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "demo"}]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    return self._send(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
                if self.path != "/v1/chat/completions" or not isinstance(body.get("messages"), list):
                    return self._send(404, {"error": {"message": "only chat completions", "type": "invalid_request_error"}})
                frontier.chat(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------ the answers

    def answer(self, text: str) -> str:
        with self.lock:
            nth = self.asked.get(text, 0)
            self.asked[text] = nth + 1
        digest = hashlib.sha256(f"{self.seed}\0{nth}\0{text}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        truth = task.read(text)
        if truth is None:
            return task.render("technical", "medium")
        team, priority = truth.team, truth.priority
        if truth.kind == "cancel" and rng.random() < self.mistakes["cancel"]:
            team = "accounts"
        if truth.kind == "security" and rng.random() < self.mistakes["security"]:
            priority = "high"
        if truth.kind == "sales" and rng.random() < self.mistakes["sales"]:
            team = "billing"
        if rng.random() < self.mistakes["noise"]:
            priority = rng.choice([p for p in task.PRIORITIES if p != priority])
        with self.lock:
            self.answered += 1
            self.wrong += (team, priority) != (truth.team, truth.priority)
        return task.render(team, priority)

    def chat(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        messages = body["messages"]
        user = next((m.get("content") for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), "")
        if isinstance(user, list):
            user = " ".join(p.get("text", "") for p in user if isinstance(p, dict))
        content = self.answer(str(user or ""))
        prompt_tokens = sum(tokens(str(m.get("content") or "")) + 4 for m in messages if isinstance(m, dict))
        completion_tokens = tokens(content)
        # a frontier's time: a wait for the first token, then the rest; jittered a little, the same per answer
        jitter = 0.7 + 0.6 * (int(hashlib.sha256(content.encode() + str(user).encode()).hexdigest()[:4], 16) / 65535)
        time.sleep(self.latency * jitter)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        model = body.get("model") or MODEL
        if not body.get("stream"):
            handler._send(200, {"id": ident, "object": "chat.completion", "created": created, "model": model,
                                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                             "finish_reason": "stop"}], "usage": usage})
            return
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()

        def event(payload: dict | str) -> None:
            data = ("data: " + (payload if isinstance(payload, str) else json.dumps(payload)) + "\n\n").encode()
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        head = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        event({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        pieces = content.split(" ")
        for i, piece in enumerate(pieces):
            text = piece + (" " if i < len(pieces) - 1 else "")
            event({**head, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
        event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            event({**head, "choices": [], "usage": usage})
        event("[DONE]")
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def error_rate(self) -> float:
        with self.lock:
            return self.wrong / self.answered if self.answered else 0.0

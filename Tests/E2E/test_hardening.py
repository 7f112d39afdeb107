"""Defects found under load and as a hostile client (issue: one path for every request)."""
from __future__ import annotations

import json
import socket
import time

import pytest

from conftest import CLIENT_KEY, base_config, yaml_dump
from helpers import assert_openai_error, httpx, user_msg


def chat_bytes(port: int, request_id: str, model: str = "gpt-4o-mini") -> bytes:
    body = json.dumps({"model": model, "messages": user_msg("hi")}).encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"x-request-id: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def feedback_bytes(port: int, request_id: str) -> bytes:
    body = json.dumps({"request_id": request_id, "signal": "accepted"}).encode()
    return (f"POST /v1/feedback HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def read_responses(s: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Reads `count` Content-Length responses that may arrive in one segment (pipelining)."""
    buf = b""
    out: list[tuple[int, bytes]] = []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses"
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(v.split(":", 1)[1]) for v in lines[1:] if v.lower().startswith("content-length:"))
        while len(rest) < length:
            chunk = s.recv(65536)
            assert chunk, "connection closed inside a body"
            rest += chunk
        out.append((int(lines[0].split()[1]), rest[:length]))
        buf = rest[length:]
    return out


def test_feedback_pipelined_behind_its_request_always_finds_it(gw):
    """The row is queued before the answer's last byte, and feedback for an id in flight waits for it."""
    with socket.create_connection(("127.0.0.1", gw.fw.port), timeout=10) as s:
        for i in range(60):
            rid = f"pipe-{time.monotonic_ns()}-{i}"
            s.sendall(chat_bytes(gw.fw.port, rid) + feedback_bytes(gw.fw.port, rid))
            (chat_status, _), (feedback_status, body) = read_responses(s, 2)
            assert chat_status == 200
            assert feedback_status == 200, body


def test_feedback_sent_while_the_stream_is_still_running_waits_for_the_row(gw):
    gw.primary.chunk_delay = 0.05
    with httpx.Client(base_url=gw.fw.base_url, timeout=30) as c:
        body = {"model": "gpt-4o-mini", "stream": True, "messages": user_msg("a b c d e f g h")}
        with c.stream("POST", "/v1/chat/completions", json=body) as resp:
            rid = resp.headers["x-request-id"]
            # Posted on another connection before the stream ended: not a 404.
            fb = httpx.post(f"{gw.fw.base_url}/v1/feedback", json={"request_id": rid, "signal": "accepted"}, timeout=30)
            for _ in resp.iter_lines():
                pass
    assert fb.status_code == 200, fb.text


def test_metrics_survive_a_crlf_model_name_and_parse_with_prometheus_client(gw):
    from prometheus_client.parser import text_string_to_metric_families
    evil = "evil\r\n# TYPE injected counter\ninjected 1\r\n" + "x" * 5000
    r = httpx.post(f"{gw.fw.base_url}/v1/chat/completions", json={"model": evil, "messages": user_msg("hi")})
    assert r.status_code in (400, 404)
    text = httpx.get(f"{gw.fw.base_url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "injected" not in families
    samples = families["flywheel_requests"].samples
    assert all(len(s.labels.get("model", "")) <= 128 for s in samples)
    # Requests that reached no route are labelled as such, never with empty labels.
    assert all(s.labels.get("model") != "" and s.labels.get("route") != "" for s in samples)


def test_a_too_long_model_name_is_a_400_naming_the_field(gw):
    r = httpx.post(f"{gw.fw.base_url}/v1/chat/completions", json={"model": "m" * 20_000, "messages": user_msg("hi")})
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=400)
    assert r.json()["error"]["param"] == "model"


def test_a_reused_request_id_keeps_every_row_and_feedback_stays_quick(gw):
    rid = f"reused-{time.monotonic_ns()}"
    with httpx.Client(base_url=gw.fw.base_url, timeout=30) as c:
        for _ in range(300):
            r = c.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("hi")},
                       headers={"x-request-id": rid})
            assert r.status_code == 200
        fb = c.post("/v1/feedback", json={"request_id": rid, "signal": "accepted"})
        assert fb.status_code == 200, fb.text
    rows = gw.fw.tail("-n", "1000")
    ids = [row["id"] for row in rows if row["id"].split("#")[0] == rid]
    assert len(ids) == 300 and len(set(ids)) == 300


def test_a_client_disconnect_is_logged_as_the_clients_doing(gw):
    gw.primary.slow_stream(delay=0.05)
    rid = f"gone-{time.monotonic_ns()}"
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": user_msg("hi")}).encode()
    with socket.create_connection(("127.0.0.1", gw.fw.port), timeout=10) as s:
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"x-request-id: {rid}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        data = b""
        while data.count(b"data:") < 3:
            data += s.recv(65536)
    row = gw.fw.wait_logged(rid)
    assert row["status"] == 499
    assert row["error"]["type"] == "client_closed_request"
    assert row["incomplete"] is True
    # What the client had already received is kept.
    assert row["response"] is not None and "tick" in json.dumps(row["response"])


def test_unreachable_upstream_gives_a_neutral_502_and_logs_the_detail(start_flywheel, fake):
    from fake_upstream import down_url
    down = down_url()
    cfg = base_config(down, down)
    fw = start_flywheel(cfg)
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("hi")},
                   timeout=30)
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=502)
    port = down.split(":")[2].split("/")[0]
    assert "127.0.0.1" not in r.text and port not in r.text
    row = fw.wait_logged(r.headers["x-request-id"])
    assert port in (row["error"]["message"] or "")


def test_models_list_merges_routes_and_the_upstreams_list_and_retrieve_works(gw):
    client = gw.client()
    ids = [m.id for m in client.models.list()]
    # Exact routes first, then what the upstream lists for the wildcard route ("gpt-*").
    assert "renamed-model" in ids and "gpt-4o-mini" in ids and "gpt-4o" in ids
    assert len(ids) == len(set(ids))
    # fake-model is listed by the upstream but no route takes it: not advertised.
    assert "fake-model" not in ids
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    assert client.models.retrieve("renamed-model").owned_by == "flywheel"
    with pytest.raises(Exception) as e:
        client.models.retrieve("no-such-model")
    assert getattr(e.value, "status_code", None) == 404


def test_an_empty_webhook_secret_stops_start_up_with_a_clear_message(flywheel_bin, tmp_path, fake):
    import subprocess
    cfg = base_config(fake.url, fake.url)
    cfg["feedback"] = {"webhook_secret": ""}
    path = tmp_path / "empty-secret.yaml"
    path.write_text(yaml_dump(cfg))
    import os
    p = subprocess.run([str(flywheel_bin), "serve", "--config", str(path), "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=30, env={**os.environ, "OPENAI_API_KEY": "sk-x"})
    assert p.returncode == 78  # EX_CONFIG, as the README documents
    assert "webhook_secret" in p.stderr and "empty" in p.stderr
    assert "Usage:" not in p.stderr


def test_signed_feedback_with_a_timestamp_is_accepted_and_a_replay_is_refused(start_flywheel, fake):
    import hashlib
    import hmac
    cfg = base_config(fake.url, fake.url)
    cfg["feedback"] = {"webhook_secret": "whsec-test"}
    fw = start_flywheel(cfg)
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("hi")})
    rid = r.headers["x-request-id"]

    def signed(ts: int, body: bytes) -> dict:
        mac = hmac.new(b"whsec-test", f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return {"x-flywheel-signature": f"t={ts},v1={mac}", "Content-Type": "application/json"}

    body = json.dumps({"request_id": rid, "signal": "accepted"}).encode()
    ok = httpx.post(f"{fw.base_url}/v1/feedback", content=body, headers=signed(int(time.time()), body))
    assert ok.status_code == 200, ok.text
    old = httpx.post(f"{fw.base_url}/v1/feedback", content=body, headers=signed(int(time.time()) - 3600, body))
    assert_openai_error(old.status_code, old.headers, old.content, expect_status=401, code="signature_expired")


def test_a_stream_beyond_the_response_cap_reaches_the_client_whole_and_the_log_copy_is_marked(start_flywheel, fake):
    cfg = base_config(fake.url, fake.url, max_response_bytes=4096)
    fw = start_flywheel(cfg)
    words = [f"w{i}" for i in range(400)]
    text = ""
    with httpx.Client(base_url=fw.base_url, timeout=30) as c:
        body = {"model": "gpt-4o-mini", "stream": True, "messages": user_msg(" ".join(words))}
        with c.stream("POST", "/v1/chat/completions", json=body) as resp:
            rid = resp.headers["x-request-id"]
            for line in resp.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:]).get("choices", []):
                        text += choice.get("delta", {}).get("content") or ""
    assert text == "echo: " + " ".join(words)
    row = fw.wait_logged(rid)
    assert row["status"] == 200
    assert row["response_truncated"] is True
    assert len(json.dumps(row["response"] or "")) < 8192


def test_a_stream_cut_by_the_end_of_the_shutdown_grace_is_told_why_and_logged_as_the_servers_doing(start_flywheel, fake):
    import signal
    fw = start_flywheel(base_config(fake.url, fake.url, shutdown_grace=0.5))
    fake.slow_stream(delay=0.05)  # never ends by itself
    rid = f"cut-{time.monotonic_ns()}"
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": user_msg("hi")}).encode()
    with socket.create_connection(("127.0.0.1", fw.port), timeout=30) as s:
        s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"x-request-id: {rid}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        data = b""
        while b"tick" not in data:
            data += s.recv(65536)
        fw.send(signal.SIGTERM)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.endswith(b"0\r\n\r\n"), data[-200:]  # the chunked stream was ended, not cut
    events = [line[6:] for line in data.decode(errors="replace").split("\n") if line.startswith("data: {")]
    last = json.loads(events[-1].strip())
    assert last["error"]["code"] == "server_shutdown"
    assert fw.wait(30) == 0
    row = fw.wait_logged(rid)
    assert row["error"]["type"] == "server_shutdown"
    assert row["incomplete"] is True


def test_a_body_with_a_hundred_thousand_keys_is_refused_by_name_and_does_not_hold_up_others(start_flywheel, fake):
    import threading
    fw = start_flywheel(base_config(fake.url, fake.url, max_body_bytes=16 << 20))
    many = "{" + ",".join(f'"k{i}":{i}' for i in range(100_000)) + "}"
    over = ('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"metadata":' + many + "}").encode()
    under = ('{"model":"nope","messages":[{"role":"user","content":"hi"}],"logit_bias":'
             + "{" + ",".join(f'"{i}":0' for i in range(90_000)) + "}}").encode()
    health: list[int] = []

    def probe() -> None:
        with httpx.Client(base_url=fw.base_url, timeout=30) as c:
            for _ in range(20):
                health.append(c.get("/healthz").status_code)

    t = threading.Thread(target=probe)
    t.start()
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", content=over, headers={"Content-Type": "application/json"}, timeout=60)
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=400, code="request_too_complex")
    assert "max_object_members" in r.json()["error"]["message"]
    # Just under the limit it is parsed (in linear time) and answered on its merits.
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", content=under, headers={"Content-Type": "application/json"}, timeout=60)
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=404, code="model_not_found")
    t.join(60)
    assert health == [200] * 20


@pytest.mark.parametrize("raw, status", [
    (b"GET /healthz HTTP/1.1\nHost: x\n\n", 400),                                                    # bare LF
    (b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 2\r\n\r\n{}", 400),
    (b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=\"bad\r\n{}\r\n0\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400),                                              # space before colon
])
def test_ambiguous_framing_is_refused_in_openai_shape(gw, raw, status):
    with socket.create_connection(("127.0.0.1", gw.fw.port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == str(status).encode(), data[:300]
        length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
        while len(body) < length:
            body += s.recv(65536)
    assert json.loads(body[:length])["error"]["type"] in ("invalid_request_error", "server_error")


class RawUpstream:
    """Answers every request on a connection with the same raw bytes (whatever they are), then closes."""

    def __init__(self, answer: bytes) -> None:
        import socketserver
        import threading

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.request.sendall(answer)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_answer(obj: dict, status: str = "200 OK", ctype: str = "application/json") -> bytes:
    body = json.dumps(obj).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 9223372036854775807, "completion_tokens": 1},
    {"prompt_tokens": -5, "completion_tokens": 3, "total_tokens": -2},
    {"prompt_tokens": "many", "completion_tokens": 1.5},
])
def test_absurd_usage_from_an_upstream_is_logged_as_unknown_not_a_crash(start_flywheel, usage):
    up = RawUpstream(json_answer({"id": "x", "object": "chat.completion", "model": "m", "usage": usage,
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}))
    try:
        fw = start_flywheel(base_config(up.url, up.url))
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("hi")})
        assert r.status_code == 200
        assert httpx.get(f"{fw.base_url}/healthz").status_code == 200
        row = fw.wait_logged(r.headers["x-request-id"])
        assert row["usage"] is None or row["usage"]["total_tokens"] is None or row["usage"]["total_tokens"] >= 0
    finally:
        up.stop()


def test_an_upstream_that_does_not_speak_http_is_a_502_not_a_500(start_flywheel):
    up = RawUpstream(b"garbage not http\r\n\r\n")
    try:
        fw = start_flywheel(base_config(up.url, up.url))
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("hi")}, timeout=60)
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=502)
    finally:
        up.stop()


def test_a_non_openai_error_page_reaches_the_client_in_openai_shape_and_the_log_keeps_it(start_flywheel):
    page = b"<html>502 Bad Gateway from 10.1.2.3:8000</html>"
    up = RawUpstream(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(page), page))
    try:
        fw = start_flywheel(base_config(up.url, up.url))
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("hi")})
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=400, code="upstream_status_400")
        assert "10.1.2.3" not in r.text
        row = fw.wait_logged(r.headers["x-request-id"])
        assert "10.1.2.3" in json.dumps(row["response"])
    finally:
        up.stop()


@pytest.mark.parametrize("body, needle", [
    (b'{"model":"expensive","model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}', 'duplicate key \\"model\\"'),
    (b'{"model":"gpt-4o-mini","temperature":1e999,"messages":[{"role":"user","content":"hi"}]}', "out of range"),
])
def test_bodies_that_parsers_read_differently_are_refused(gw, body, needle):
    r = httpx.post(f"{gw.fw.base_url}/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=400)
    assert needle in r.text
    assert all(b"expensive" not in q.body for q in gw.primary.requests)


def test_feedback_can_name_the_renamed_copies_of_a_resent_id(gw):
    rid = f"twice-{time.monotonic_ns()}"
    for text in ("first", "second"):
        r = httpx.post(f"{gw.fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg(text)},
                       headers={"x-request-id": rid})
        assert r.status_code == 200
    gw.fw.wait_logged(f"{rid}#2")
    fb = httpx.post(f"{gw.fw.base_url}/v1/feedback", json={"request_id": f"{rid}#2", "signal": "rejected"})
    assert fb.status_code == 200, fb.text
    second = gw.fw.show(f"{rid}#2")
    assert [f["signal"] for f in second["feedback"]] == ["rejected"]
    assert "second" in json.dumps(second["request"])
    bad = httpx.post(f"{gw.fw.base_url}/v1/feedback", json={"request_id": f"{rid}#x", "signal": "rejected"})
    assert_openai_error(bad.status_code, bad.headers, bad.content, expect_status=400)


def test_an_upstream_dying_mid_stream_marks_the_row_incomplete(gw):
    gw.primary.close(after_chunks=2)
    gw.backup.close(after_chunks=2)
    with httpx.Client(base_url=gw.fw.base_url, timeout=30) as c:
        body = {"model": "gpt-4o-mini", "stream": True, "messages": user_msg("a b c d e f g")}
        with c.stream("POST", "/v1/chat/completions", json=body) as resp:
            rid = resp.headers["x-request-id"]
            lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert '"error"' in lines[-1]
    row = gw.fw.wait_logged(rid)
    assert row["incomplete"] is True


def test_feedback_waiting_for_a_request_that_never_ends_gets_503_with_retry_after(start_flywheel, fake):
    cfg = base_config(fake.url, fake.url)
    cfg["feedback"] = {"wait_timeout": 0.5}
    fw = start_flywheel(cfg)
    fake.slow_stream(delay=0.05)  # never ends by itself
    with httpx.Client(base_url=fw.base_url, timeout=30) as c:
        body = {"model": "gpt-4o-mini", "stream": True, "messages": user_msg("hi")}
        with c.stream("POST", "/v1/chat/completions", json=body) as resp:
            rid = resp.headers["x-request-id"]
            fb = httpx.post(f"{fw.base_url}/v1/feedback", json={"request_id": rid, "signal": "accepted"}, timeout=30)
    assert_openai_error(fb.status_code, fb.headers, fb.content, expect_status=503)
    assert fb.headers.get("retry-after") == "1"


@pytest.mark.parametrize("path", ["/v1/feedback", "/feedback", "/api/public/scores", "/v1/request/abc/feedback"])
def test_an_oversized_feedback_body_is_refused_from_its_head_before_any_byte_of_it(gw, path):
    with socket.create_connection(("127.0.0.1", gw.fw.port), timeout=10) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {2 << 20}\r\nExpect: 100-continue\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
    assert data.startswith(b"HTTP/1.1 413"), data[:100]  # not "100 Continue"

"""Self-test of the fake upstream: the openai SDK talks to it directly (no Flywheel binary
needed), proving the fake speaks the protocol the SDK expects."""
from __future__ import annotations

import json
import socket
import threading
import time

import openai
import pytest

from fake_upstream import FakeUpstream, down_url, embedding_for
from helpers import httpx


@pytest.fixture
def up():
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def sdk(up):
    return openai.OpenAI(base_url=up.url, api_key="sk-direct", max_retries=0, timeout=10)


def test_chat_non_stream_echoes_last_user_message_with_word_usage(up, sdk):
    r = sdk.chat.completions.create(model="gpt-4o-mini", messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there world"}])
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == "echo: hello there world"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 4, 9)
    rec = up.requests_to("/chat/completions")[-1]
    assert rec.headers["authorization"] == "Bearer sk-direct"
    assert rec.json["model"] == "gpt-4o-mini"


def test_chat_max_tokens_truncates_with_length_finish(sdk):
    r = sdk.chat.completions.create(model="m", max_tokens=2, messages=[{"role": "user", "content": "a b c d"}])
    assert r.choices[0].message.content == "echo: a"
    assert r.choices[0].finish_reason == "length"


def test_chat_stream_role_first_content_joins_finish_last_and_usage_chunk(sdk):
    chunks = list(sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}],
        stream=True, stream_options={"include_usage": True}))
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == "echo: one two three"
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


def test_chat_stream_raw_ends_with_done_and_is_incremental(up):
    up.chunk_delay = 0.1
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b c d e f"}]}
    t0 = time.monotonic()
    arrivals = []
    with httpx.Client(timeout=10) as c, c.stream("POST", up.url + "/chat/completions", json=body) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in resp.iter_lines():
            if line:
                lines.append(line)
                arrivals.append(time.monotonic() - t0)
    assert lines[-1] == "data: [DONE]"
    assert all(l.startswith("data: ") for l in lines)
    assert arrivals[-1] - arrivals[0] >= 0.5


def test_completions_embeddings_models(up, sdk):
    c = sdk.completions.create(model="gpt-3.5-turbo-instruct", prompt="say this")
    assert c.choices[0].text == "echo: say this"
    e = sdk.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])  # SDK asks for base64
    assert [d.embedding for d in e.data] == [embedding_for("alpha"), embedding_for("beta")]
    assert up.requests_to("/embeddings")[-1].json.get("encoding_format") in ("base64", None)
    e2 = sdk.embeddings.create(model="x", input="alpha", encoding_format="float", dimensions=4)
    assert e2.data[0].embedding == embedding_for("alpha", 4)
    assert "gpt-4o-mini" in [m.id for m in sdk.models.list()]


@pytest.mark.parametrize("status,exc", [
    (400, openai.BadRequestError), (401, openai.AuthenticationError), (404, openai.NotFoundError),
    (429, openai.RateLimitError), (500, openai.InternalServerError), (502, openai.InternalServerError),
    (503, openai.InternalServerError)])
def test_scripted_status_maps_to_sdk_exception(up, sdk, status, exc):
    up.fail(status, message=f"scripted {status}")
    with pytest.raises(exc) as ei:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == status
    assert ei.value.body["message"] == f"scripted {status}"
    # fault consumed: the next request succeeds
    assert sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices


def test_retry_after_header_and_sdk_retry(up):
    up.fail(429, count=1, retry_after="0")
    sdk = openai.OpenAI(base_url=up.url, api_key="k", max_retries=1, timeout=10)
    r = sdk.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert r.parse().choices[0].message.content == "echo: hi"
    assert len(up.requests_to("/chat/completions")) == 2


def test_close_fault_gives_connection_error(up, sdk):
    up.close()
    with pytest.raises(openai.APIConnectionError):
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_close_after_chunks_cuts_stream(up, sdk):
    up.close(after_chunks=2)
    with pytest.raises((openai.APIConnectionError, httpx.HTTPError)):
        list(sdk.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": "a b c d"}]))


def test_hang_is_released_by_reset(up, sdk):
    up.hang(seconds=30)
    threading.Timer(0.3, up.reset).start()
    t0 = time.monotonic()
    r = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert 0.25 < time.monotonic() - t0 < 5
    assert r.choices[0].message.content == "echo: x"


def test_hang_makes_client_time_out(up):
    up.hang(seconds=5)
    sdk = openai.OpenAI(base_url=up.url, api_key="k", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    up.reset()


def test_slow_stream_forever_until_reset(up, sdk):
    up.slow_stream(delay=0.05)
    stream = sdk.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": "x"}])
    got = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content == "tick ":
            got += 1
            if got == 5:
                break
    stream.close()
    up.reset()
    assert got == 5


def test_control_api_over_http(up, sdk):
    with httpx.Client(timeout=5) as c:
        assert c.post(up.base + "/_control/fault", json={"kind": "fail", "status": 429, "count": 2}).status_code == 200
        for _ in range(2):
            with pytest.raises(openai.RateLimitError):
                sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        recs = c.get(up.base + "/_control/requests").json()
        assert [r["path"] for r in recs] == ["/v1/chat/completions"] * 3
        assert c.post(up.base + "/_control/reset").status_code == 200
        assert c.get(up.base + "/_control/requests").json() == []


def test_keep_alive_and_content_length(up):
    s = socket.create_connection((up.host, up.port), timeout=5)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "k"}]}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    f = s.makefile("rb")
    for _ in range(2):  # two requests on one connection
        s.sendall(req)
        assert f.readline().startswith(b"HTTP/1.1 200")
        headers = {}
        while (line := f.readline()) not in (b"\r\n", b""):
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        data = json.loads(f.read(int(headers["content-length"])))
        assert data["choices"][0]["message"]["content"] == "echo: k"
    s.close()


def test_down_url_refuses_connections():
    sdk = openai.OpenAI(base_url=down_url(), api_key="k", max_retries=0, timeout=2)
    with pytest.raises(openai.APIConnectionError):
        sdk.models.list()

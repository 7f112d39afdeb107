"""Streaming chat completions (SSE) through the gateway."""
from __future__ import annotations

import json
import time

from helpers import is_uuid7, user_msg


def test_sdk_stream_role_first_content_joins_finish_reason_last(gw):
    stream = gw.client().chat.completions.create(model="gpt-4o-mini", messages=user_msg("one two three"),
                                                 stream=True)
    chunks = [c for c in stream if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_sdk_stream_with_include_usage_gets_usage_chunk(gw):
    chunks = list(gw.client().chat.completions.create(
        model="gpt-4o-mini", messages=user_msg("count these words"), stream=True,
        stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 4)


def test_raw_stream_is_sse_and_ends_with_done(gw):
    body = {"model": "gpt-4o-mini", "stream": True, "messages": user_msg("raw stream")}
    with gw.fw.http() as c, c.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert is_uuid7(resp.headers.get("x-request-id"))
        lines = [line for line in resp.iter_lines() if line.strip()]
    assert lines[-1] == "data: [DONE]"
    assert sum(1 for line in lines if line == "data: [DONE]") == 1
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "echo: raw stream"


def test_stream_chunks_arrive_incrementally(gw):
    gw.primary.chunk_delay = 0.15   # ~8 chunks -> ~1.2 s upstream stream
    body = {"model": "gpt-4o-mini", "stream": True, "messages": user_msg("a b c d e")}
    t0 = time.monotonic()
    arrivals = []
    with gw.fw.http() as c, c.stream("POST", "/v1/chat/completions", json=body) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - t0)
    total = arrivals[-1]
    assert total >= 0.9, f"stream finished too fast ({total:.2f}s) for the delay"
    assert arrivals[0] < total - 0.6, f"first chunk at {arrivals[0]:.2f}s, last at {total:.2f}s: buffered"
    # events are spread out, not delivered in one burst at the end
    assert len({round(a, 1) for a in arrivals}) >= 4, arrivals


def test_streamed_response_is_logged_as_assembled_chat_completion(gw):
    raw = gw.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user_msg("log my stream"), stream=True,
        stream_options={"include_usage": True})
    rid = raw.headers["x-request-id"]
    content = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert content == "echo: log my stream"
    row = gw.fw.wait_logged(rid)
    assert row["stream"] is True
    assert row["status"] == 200
    resp = row["response"]
    assert resp["object"] == "chat.completion"
    choice = resp["choices"][0]
    assert choice["message"]["content"] == "echo: log my stream"
    assert choice["message"].get("role", "assistant") == "assistant"
    assert choice["finish_reason"] == "stop"
    assert resp.get("usage", {}).get("completion_tokens") == 4
    assert row["usage"]["prompt_tokens"] == 3 and row["usage"]["completion_tokens"] == 4
    assert isinstance(row["ttft_ms"], (int, float)) and row["ttft_ms"] >= 0
    assert row["ttft_ms"] <= row["latency_ms"]


def test_stream_error_before_first_byte_raises_sdk_error(gw):
    import openai
    import pytest
    gw.primary.fail(400, count=1, message="bad stream request")
    with pytest.raises(openai.BadRequestError) as ei:
        list(gw.client().chat.completions.create(model="gpt-glob", messages=user_msg("x"), stream=True))
    assert ei.value.body["message"] == "bad stream request"


def test_concurrent_streams_do_not_mix(gw):
    from concurrent.futures import ThreadPoolExecutor
    gw.primary.chunk_delay = 0.02
    client = gw.client()

    def run(i: int) -> str:
        s = client.chat.completions.create(model="gpt-4o-mini", messages=user_msg(f"stream {i} x y"), stream=True)
        return "".join(c.choices[0].delta.content or "" for c in s if c.choices)

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(run, range(8)))
    assert results == [f"echo: stream {i} x y" for i in range(8)]

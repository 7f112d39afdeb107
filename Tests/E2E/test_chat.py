"""Non-streaming chat completions through the gateway."""
from __future__ import annotations

from conftest import CLIENT_KEY, UPSTREAM_KEY, uid
from helpers import is_uuid7, user_msg


def test_chat_returns_upstream_content_and_usage(gw):
    r, _ = gw.chat("hello there world")
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "echo: hello there world"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 4, 7)


def test_response_has_uuidv7_request_id_when_client_sends_none(gw):
    raw = gw.client().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=user_msg("id?"))
    rid = raw.headers.get("x-request-id")
    assert is_uuid7(rid), f"x-request-id {rid!r} is not a canonical UUIDv7"
    assert raw.parse().choices[0].message.content == "echo: id?"


def test_request_ids_are_unique_per_request(gw):
    ids = {gw.chat(f"n{i}")[1] for i in range(5)}
    assert len(ids) == 5


def test_client_supplied_request_id_is_echoed_and_used_in_log(gw):
    mine = f"trace.{uid()}:A_b-9"
    raw = gw.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user_msg("mine"), extra_headers={"x-request-id": mine})
    assert raw.headers["x-request-id"] == mine
    row = gw.fw.wait_logged(mine)
    assert row["id"] == mine


def test_insane_client_request_id_is_replaced_by_uuidv7(gw):
    for bad in ("has space", "x" * 129, "semi;colon", "slash/path"):
        raw = gw.client().chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=user_msg("bad id"), extra_headers={"x-request-id": bad})
        assert is_uuid7(raw.headers["x-request-id"]), (bad, raw.headers["x-request-id"])


def test_upstream_gets_bearer_from_openai_api_key_never_the_client_key(gw):
    gw.chat("auth check")
    rec = gw.primary.requests_to("/chat/completions")[-1]
    assert rec.headers.get("authorization") == f"Bearer {UPSTREAM_KEY}"
    auth_values = [v for k, v in rec.raw_headers if k.lower() == "authorization"]
    assert auth_values == [f"Bearer {UPSTREAM_KEY}"], "exactly one Authorization header upstream"
    for k, v in rec.raw_headers:
        assert CLIENT_KEY not in v, f"client key leaked upstream in header {k}"


def test_route_upstream_model_renames_model_sent_upstream(gw):
    _, rid = gw.chat("rename me", model="renamed-model")
    rec = gw.primary.requests_to("/chat/completions")[-1]
    assert rec.json["model"] == "fake-upstream-model-2024"
    row = gw.fw.wait_logged(rid)
    assert row["model_requested"] == "renamed-model"
    assert row["model_served"] == "fake-upstream-model-2024"


def test_glob_route_matches_and_model_is_sent_unchanged(gw):
    r, _ = gw.chat("glob", model="gpt-glob-matched")
    assert r.choices[0].message.content == "echo: glob"
    assert gw.primary.requests_to("/chat/completions")[-1].json["model"] == "gpt-glob-matched"


def test_request_parameters_are_forwarded_upstream(gw):
    gw.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "p"}],
        temperature=0.25, max_tokens=50, seed=7, extra_body={"custom_field": {"nested": [1, 2]}})
    body = gw.primary.requests_to("/chat/completions")[-1].json
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "p"}]
    assert body["temperature"] == 0.25 and body["max_tokens"] == 50 and body["seed"] == 7
    assert body["custom_field"] == {"nested": [1, 2]}


def test_upstream_finish_reason_length_passes_through(gw):
    r, _ = gw.chat("a b c d e", max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "echo: a b"


def test_unicode_content_round_trips(gw):
    text = "héllo wörld ✓ 日本語 🚀"
    r, _ = gw.chat(text)
    assert r.choices[0].message.content == "echo: " + text


def test_keep_alive_connection_serves_many_requests(gw):
    client = gw.client()
    for i in range(10):
        r = client.chat.completions.create(model="gpt-4o-mini", messages=user_msg(f"ka {i}"))
        assert r.choices[0].message.content == f"echo: ka {i}"

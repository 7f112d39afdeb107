"""Error paths: SDK exception classes, retries, fallbacks, limits, and the OpenAI error shape."""
from __future__ import annotations

import json
import time

import openai
import pytest

from conftest import Launcher, base_config, uid, upstream_cfg
from fake_upstream import FakeUpstream, down_url
from helpers import assert_openai_error, is_uuid7, raw_http, user_msg


# ---------------------------------------------------------------- an "edge" gateway with broken upstreams

@pytest.fixture(scope="module")
def edge(flywheel_bin, tmp_path_factory):
    """Upstreams: 'dead' (nothing listens), 'slow' (a fake; first_byte timeout 1 s, no retries),
    'good' (a fake).  Routes: dead-model -> [dead]; slow-model -> [slow];
    fallback-model -> [dead, good]."""
    slow = FakeUpstream().start()
    good = FakeUpstream().start()
    cfg = base_config(good.url, good.url)
    cfg["upstreams"] = [
        upstream_cfg("dead", down_url(), retries=1, connect=1),
        upstream_cfg("slow", slow.url, retries=0, first_byte=1, total=5),
        upstream_cfg("good", good.url),
    ]
    cfg["routes"] = [
        {"model": "dead-model", "upstreams": ["dead"]},
        {"model": "slow-model", "upstreams": ["slow"]},
        {"model": "fallback-model", "upstreams": ["dead", "good"]},
    ]
    launcher = Launcher(flywheel_bin, tmp_path_factory.mktemp("edge"))
    try:
        fw = launcher(cfg, name="edge")
        yield type("Edge", (), {"fw": fw, "slow": slow, "good": good})
    finally:
        slow.reset()
        good.reset()
        problems = launcher.stop_all()
        slow.stop()
        good.stop()
    assert not problems, problems


# ---------------------------------------------------------------- client errors detected by the gateway

def test_bad_json_is_400_invalid_request_error(gw):
    with gw.fw.http() as c:
        r = c.post("/v1/chat/completions", content=b'{"model": "gpt-4o-mini", "messages": [',
                   headers={"content-type": "application/json"})
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=400, etype="invalid_request_error")
    assert gw.primary.requests == [], "bad JSON must not reach the upstream"


def test_missing_messages_raises_bad_request_error(gw):
    with pytest.raises(openai.BadRequestError) as ei:
        gw.client().post("/chat/completions", body={"model": "gpt-4o-mini"}, cast_to=object)
    assert ei.value.status_code == 400
    assert ei.value.type == "invalid_request_error"
    assert ei.value.request_id
    assert gw.primary.requests == []


def test_missing_model_raises_bad_request_error(gw):
    with pytest.raises(openai.BadRequestError):
        gw.client().post("/chat/completions", body={"messages": user_msg("x")}, cast_to=object)
    assert gw.primary.requests == []


def test_non_object_json_body_is_400(gw):
    with gw.fw.http() as c:
        r = c.post("/v1/chat/completions", json=[1, 2, 3])
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=400, etype="invalid_request_error")


def test_unknown_model_raises_not_found_model_not_found(gw):
    with pytest.raises(openai.NotFoundError) as ei:
        gw.client().chat.completions.create(model="no-such-model", messages=user_msg("x"))
    assert ei.value.status_code == 404
    assert ei.value.code == "model_not_found"
    assert is_uuid7(ei.value.request_id)
    assert gw.primary.requests == []


def test_unknown_path_is_404_with_error_shape(gw):
    with gw.fw.http() as c:
        for path in ("/v1/nope", "/nope", "/v1/chat/completions/extra"):
            r = c.get(path)
            assert_openai_error(r.status_code, r.headers, r.content, expect_status=404)


def test_wrong_method_is_405_with_error_shape(gw):
    with gw.fw.http() as c:
        r = c.get("/v1/chat/completions")
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=405)
        r = c.delete("/v1/embeddings")
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=405)


def test_oversized_body_is_413(gw):
    # base_config sets max_body_bytes to 65536
    body = json.dumps({"model": "gpt-4o-mini", "messages": user_msg("x" * 100_000)}).encode()
    with gw.fw.http() as c:
        r = c.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=413)
    assert gw.primary.requests == []


def test_body_just_under_limit_is_accepted(gw):
    text = "y" * 60_000
    r, _ = gw.chat(text)
    assert r.choices[0].message.content == "echo: " + text


def test_oversized_declared_content_length_is_413_without_sending_body(gw):
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n")
    status, headers, body = raw_http(gw.fw.port, head, timeout=5)
    assert_openai_error(status, headers, body, expect_status=413)


def test_oversized_headers_are_431(gw):
    with gw.fw.http() as c:
        r = c.get("/healthz", headers={"x-big": "a" * 20_000})
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=431)


def test_malformed_request_line_is_400(gw):
    status, headers, body = raw_http(gw.fw.port, b"THIS IS NOT HTTP\r\n\r\n")
    assert status == 400, (status, body)
    if body:
        assert_openai_error(status, headers, body, expect_status=400)


def test_gateway_still_healthy_after_protocol_garbage(gw):
    raw_http(gw.fw.port, b"\x00\x01\x02garbage\r\n\r\n", timeout=2)
    raw_http(gw.fw.port, b"GET / HTTP/9.9\r\n\r\n", timeout=2)
    with gw.fw.http() as c:
        assert c.get("/healthz").status_code == 200


def test_every_gateway_error_has_openai_shape_and_request_id(gw):
    cases = [
        ("POST", "/v1/chat/completions", b"{nope", 400),
        ("POST", "/v1/chat/completions", json.dumps({"model": "gpt-4o-mini"}).encode(), 400),
        ("POST", "/v1/chat/completions", json.dumps({"model": "zzz", "messages": user_msg("x")}).encode(), 404),
        ("POST", "/v1/embeddings", b"[]", 400),
        ("GET", "/v1/does-not-exist", b"", 404),
        ("PUT", "/v1/chat/completions", b"{}", 405),
    ]
    with gw.fw.http() as c:
        for method, path, body, status in cases:
            r = c.request(method, path, content=body or None, headers={"content-type": "application/json"})
            assert_openai_error(r.status_code, r.headers, r.content, expect_status=status)


# ---------------------------------------------------------------- upstream errors

def test_upstream_429_passes_through_as_rate_limit_error(gw):
    gw.primary.fail(429, count=100, message="Rate limit reached for fake-org")
    with pytest.raises(openai.RateLimitError) as ei:
        gw.client().chat.completions.create(model="gpt-ratelimited", messages=user_msg("x"))
    assert ei.value.status_code == 429
    assert ei.value.body == {"message": "Rate limit reached for fake-org", "type": "rate_limit_error",
                             "param": None, "code": "rate_limit_exceeded"}
    assert ei.value.request_id
    assert 1 <= len(gw.primary.requests_to("/chat/completions")) <= 3  # retries.max == 2


def test_upstream_400_passes_through_unchanged_without_retry(gw):
    gw.primary.fail(400, count=1, message="upstream says no")
    with pytest.raises(openai.BadRequestError) as ei:
        gw.client().chat.completions.create(model="gpt-badreq", messages=user_msg("x"))
    assert ei.value.body["message"] == "upstream says no"
    assert len(gw.primary.requests_to("/chat/completions")) == 1


def test_retry_succeeds_after_one_upstream_503(gw):
    gw.primary.fail(503, count=1)
    r, rid = gw.chat("retry me", model="gpt-retry")
    assert r.choices[0].message.content == "echo: retry me"
    assert len(gw.primary.requests_to("/chat/completions")) == 2
    row = gw.fw.wait_logged(rid)
    assert row["attempts"] == 2
    assert row["status"] == 200


def test_retry_after_dropped_connection(gw):
    gw.primary.close(count=1)
    r, _ = gw.chat("after drop", model="gpt-drop")
    assert r.choices[0].message.content == "echo: after drop"


def test_upstream_down_is_502_upstream_error(edge):
    t0 = time.monotonic()
    with pytest.raises(openai.InternalServerError) as ei:
        edge.fw.client().chat.completions.create(model="dead-model", messages=user_msg("x"))
    assert time.monotonic() - t0 < 10
    assert ei.value.status_code == 502
    assert isinstance(ei.value, openai.APIStatusError)
    assert ei.value.type == "upstream_error"
    assert is_uuid7(ei.value.request_id)


def test_upstream_down_stream_request_is_502(edge):
    with pytest.raises(openai.InternalServerError) as ei:
        list(edge.fw.client().chat.completions.create(model="dead-model", messages=user_msg("x"), stream=True))
    assert ei.value.status_code == 502


def test_upstream_first_byte_timeout_is_504_gateway_timeout(edge):
    edge.slow.hang(seconds=20)
    t0 = time.monotonic()
    try:
        with pytest.raises(openai.InternalServerError) as ei:
            edge.fw.client().chat.completions.create(model="slow-model", messages=user_msg("x"))
    finally:
        edge.slow.reset()
    assert ei.value.status_code == 504
    assert ei.value.type == "upstream_error"
    assert ei.value.code == "upstream_timeout"
    assert time.monotonic() - t0 < 6, "first_byte timeout (1 s) not applied"


def test_fallback_to_backup_when_primary_down(edge):
    raw = edge.fw.client().chat.completions.with_raw_response.create(model="fallback-model",
                                                                     messages=user_msg("fall back"))
    assert raw.parse().choices[0].message.content == "echo: fall back"
    assert len(edge.good.requests_to("/chat/completions")) == 1
    row = edge.fw.wait_logged(raw.headers["x-request-id"])
    assert row["upstream"] in ("good", edge.good.url)
    assert row["attempts"] >= 2


def test_fallback_to_backup_when_primary_keeps_failing_5xx(gw):
    gw.primary.fail(500, count=100)
    r, rid = gw.chat("to backup")   # gpt-4o-mini -> [primary, backup]
    assert r.choices[0].message.content == "echo: to backup"
    assert len(gw.backup.requests_to("/chat/completions")) == 1
    assert gw.fw.wait_logged(rid)["upstream"] in ("backup", gw.backup.url)


def test_gateway_502_is_logged_with_error(edge):
    with pytest.raises(openai.InternalServerError) as ei:
        edge.fw.client().chat.completions.create(model="dead-model", messages=user_msg("log me"))
    row = edge.fw.wait_logged(ei.value.request_id)
    assert row["status"] == 502
    assert row["error"] and row["error"]["type"] == "upstream_unavailable" and row["error"]["message"]
    assert row["response"] is None or "error" in row["response"]


def test_client_disconnect_mid_stream_does_not_break_gateway(gw):
    gw.primary.slow_stream(delay=0.05)
    with gw.fw.http() as c, c.stream("POST", "/v1/chat/completions",
                                     json={"model": "gpt-4o-mini", "stream": True,
                                           "messages": user_msg("bye")}) as resp:
        for i, _ in enumerate(resp.iter_lines()):
            if i > 3:
                break
    gw.primary.reset()
    r, _ = gw.chat("still alive")
    assert r.choices[0].message.content == "echo: still alive"


def test_client_disconnect_cancels_the_upstream_transfer(gw):
    # The fake's stream never ends, so the request can only finish (and be logged) if the gateway cancels the
    # upstream transfer when the client goes away.
    gw.primary.slow_stream(delay=0.05)
    rid = uid("disc")
    with gw.fw.http() as c, c.stream("POST", "/v1/chat/completions", headers={"x-request-id": rid},
                                     json={"model": "gpt-4o-mini", "stream": True,
                                           "messages": user_msg("cancel me")}) as resp:
        for i, _ in enumerate(resp.iter_lines()):
            if i > 2:
                break
    row = gw.fw.wait_logged(rid)
    assert row["status"] == 499
    assert row["stream"] is True
    gw.primary.reset()


def test_secrets_never_reach_the_log(gw):
    from conftest import UPSTREAM_KEY, CLIENT_KEY
    raw = gw.fw.client().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=user_msg("s"))
    gw.fw.wait_logged(raw.headers["x-request-id"])
    data = b"".join(p.read_bytes() for p in gw.fw.db.parent.glob(gw.fw.db.name + "*"))
    assert UPSTREAM_KEY.encode() not in data
    assert CLIENT_KEY.encode() not in data
    assert UPSTREAM_KEY not in gw.fw.stderr()




# ---------------------------------------------------------------- client authentication

@pytest.fixture
def authgw(start_flywheel, fake, fake_backup):
    cfg = base_config(fake.url, fake_backup.url)
    cfg["auth"] = {"keys": [{"id": "team-a", "key": "sk-flywheel-team-a"},
                            {"id": "team-b", "key_env": "FLYWHEEL_TEST_KEY_B"}]}
    fw = start_flywheel(cfg, env={"FLYWHEEL_TEST_KEY_B": "sk-flywheel-team-b"})
    return fw, fake


def test_wrong_flywheel_key_raises_authentication_error(authgw):
    fw, fake = authgw
    with pytest.raises(openai.AuthenticationError) as ei:
        fw.client(api_key="sk-wrong").chat.completions.create(model="gpt-4o-mini", messages=user_msg("x"))
    assert ei.value.status_code == 401
    assert ei.value.code == "invalid_api_key"
    assert ei.value.request_id
    assert fake.requests == []


def test_missing_authorization_is_401(authgw):
    fw, fake = authgw
    with fw.http() as c:
        r = c.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("x")})
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=401, code="invalid_api_key")
        r = c.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("x")},
                   headers={"authorization": "Basic c2stZmx5d2hlZWwtdGVhbS1h"})
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=401, code="invalid_api_key")
    assert fake.requests == []


def test_valid_keys_literal_and_env_are_accepted_and_not_forwarded(authgw):
    from conftest import UPSTREAM_KEY
    fw, fake = authgw
    for key, key_id in (("sk-flywheel-team-a", "team-a"), ("sk-flywheel-team-b", "team-b")):
        raw = fw.client(api_key=key).chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                                            messages=user_msg(key_id))
        assert raw.parse().choices[0].message.content == "echo: " + key_id
        rec = fake.requests_to("/chat/completions")[-1]
        assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert all(key not in v for _, v in rec.raw_headers)
        assert fw.wait_logged(raw.headers["x-request-id"])["client_key_id"] == key_id


def test_healthz_needs_no_key(authgw):
    fw, _ = authgw
    with fw.http() as c:
        assert c.get("/healthz").status_code == 200

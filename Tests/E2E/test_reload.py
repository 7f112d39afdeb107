"""Configuration reload (SIGHUP): routes, upstreams, client keys, prices, limits and the webhook secret change
for new requests at once, a stream that started before keeps going to its end on the old settings, and a bad
configuration changes nothing and is reported."""
from __future__ import annotations

import json
import signal

from conftest import UPSTREAM_KEY, base_config, yaml_dump
from helpers import assert_openai_error, httpx, poll, user_msg

OLD_KEY = "sk-flywheel-old-key-secret"
NEW_KEY = "sk-flywheel-new-key-secret"


def reload(fw, config: dict) -> str:
    """Writes `config`, sends SIGHUP and waits for the daemon's summary line; returns the output it added."""
    config = dict(config)
    config.setdefault("log", {"path": str(fw.db)})
    before = fw.stderr()
    fw.config_path.write_text(yaml_dump(config))
    fw.send(signal.SIGHUP)
    poll(lambda: "reloaded changes=" in fw.stderr()[len(before):] or "reload failed" in fw.stderr()[len(before):],
         timeout=30, what="the reload's summary line")
    return fw.stderr()[len(before):]


def chat(fw, key: str, text: str = "hi", model: str = "gpt-4o-mini") -> httpx.Response:
    return httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": model, "messages": user_msg(text)},
                      headers={"Authorization": f"Bearer {key}"}, timeout=20)


def test_sighup_applies_routes_keys_prices_and_limits_while_a_running_stream_finishes_on_the_old(start_flywheel, fake,
                                                                                                  fake_backup):
    cfg = base_config(fake.url, fake_backup.url)
    cfg["auth"] = {"keys": [{"id": "old", "key": OLD_KEY}]}
    fw = start_flywheel(cfg)
    fake.chunk_delay = 0.05
    words = " ".join(f"w{i}" for i in range(40))
    # A stream on the old route (primary), read in part before the reload.
    stream = httpx.stream("POST", f"{fw.base_url}/v1/chat/completions", timeout=30,
                          headers={"Authorization": f"Bearer {OLD_KEY}"},
                          json={"model": "gpt-4o-mini", "stream": True, "messages": user_msg(words),
                                "stream_options": {"include_usage": True}})
    response = stream.__enter__()
    try:
        assert response.status_code == 200
        stream_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        first = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in first)

        new = base_config(fake.url, fake_backup.url, max_body_bytes=4096)
        new["routes"][0] = {"model": "gpt-4o-mini", "upstreams": ["backup"]}
        new["auth"] = {"keys": [{"id": "new", "key": NEW_KEY}]}
        new["prices"] = {"gpt-4o-mini": {"input": 10.0, "output": 20.0}}
        said = reload(fw, new)
        assert "reload failed" not in said, said
        assert "routes:" in said and "gpt-4o-mini→backup" in said
        assert "auth.keys: added [new], removed [old]" in said
        assert "prices: changed [gpt-4o-mini]" in said
        assert "server.max_body_bytes: 65536 → 4096" in said

        # New requests: the new key only, the new route, the new limit.
        assert chat(fw, OLD_KEY).status_code == 401
        r = chat(fw, NEW_KEY, "after the reload")
        assert r.status_code == 200, r.text
        assert [q.json["messages"][0]["content"] for q in fake_backup.requests_to("/chat/completions")] == ["after the reload"]
        big = chat(fw, NEW_KEY, "x" * 5000)
        assert_openai_error(big.status_code, big.headers, big.content, expect_status=413)
        new_row = fw.wait_logged(r.headers["x-request-id"])
        usage = new_row["usage"]
        assert abs(new_row["cost_usd"] - (usage["prompt_tokens"] * 10 + usage["completion_tokens"] * 20) / 1e6) < 1e-12

        # The stream that started before goes on to its end, on the old route and the old prices.
        rest = list(lines)
    finally:
        stream.__exit__(None, None, None)
    data = [line[6:] for line in first + rest if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in map(json.loads, data[:-1]) if c["choices"])
    assert text == "echo: " + words
    row = fw.wait_logged(stream_id)
    assert row["status"] == 200 and not row["incomplete"] and row["upstream"] == "primary"
    usage = row["usage"]
    assert abs(row["cost_usd"] - (usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60) / 1e6) < 1e-12
    # Names only: no key of any kind in what the daemon said.
    for secret in (OLD_KEY, NEW_KEY, UPSTREAM_KEY):
        assert secret not in fw.stderr()


def test_a_bad_configuration_is_refused_with_its_reason_and_the_old_one_stays(start_flywheel, fake, fake_backup, tmp_path):
    cfg = base_config(fake.url, fake_backup.url)
    fw = start_flywheel(cfg)
    assert chat(fw, "any").status_code == 200

    fw.config_path.write_text("server: {listen: [unclosed\n")
    fw.send(signal.SIGHUP)
    poll(lambda: "reload failed" in fw.stderr(), timeout=30, what="the YAML error")
    assert "did not find expected" in fw.stderr() or "parser" in fw.stderr()

    broken = base_config(fake.url, fake_backup.url)
    broken["routes"][0] = {"model": "gpt-4o-mini", "upstreams": ["nowhere"]}
    said = reload(fw, broken)
    assert "reload failed" in said and "unknown upstream 'nowhere'" in said, said

    missing = base_config(fake.url, fake_backup.url)
    missing["local_models"] = [{"name": "tiny", "path": str(tmp_path / "missing.gguf")}]
    missing["prices"] = {"gpt-4o-mini": {"input": 99.0, "output": 99.0}}
    said = reload(fw, missing)
    assert "reload failed" in said and "missing.gguf" in said, said

    typo = base_config(fake.url, fake_backup.url)
    typo["server"]["log_levle"] = "debug"
    said = reload(fw, typo)
    assert "reload failed" in said and "unknown key 'log_levle'" in said, said

    # Still the first configuration: the route works, the old prices hold, the listener never moved.
    r = chat(fw, "still here")
    assert r.status_code == 200
    row = fw.wait_logged(r.headers["x-request-id"])
    usage = row["usage"]
    assert abs(row["cost_usd"] - (usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60) / 1e6) < 1e-12
    assert fw.alive()


def test_settings_that_need_a_restart_are_named_and_keep_their_old_value(start_flywheel, fake, fake_backup):
    cfg = base_config(fake.url, fake_backup.url)
    fw = start_flywheel(cfg)
    moved = base_config(fake.url, fake_backup.url, event_loops=1)
    moved["inference"] = {"slots": 3}
    said = reload(fw, moved)
    assert "reload failed" not in said
    assert "needs a restart" in said and "server.event_loops: unset → 1" in said and "inference" in said
    assert chat(fw, "same port").status_code == 200


def test_webhook_secret_and_feedback_limits_follow_the_reload(start_flywheel, fake, fake_backup):
    import hashlib
    import hmac
    fw = start_flywheel(base_config(fake.url, fake_backup.url))
    rid = chat(fw, "rate me").headers["x-request-id"]
    fw.wait_logged(rid)
    signed = base_config(fake.url, fake_backup.url)
    signed["feedback"] = {"webhook_secret": "whsec-reloaded-secret"}
    said = reload(fw, signed)
    assert "feedback.webhook_secret: set" in said and "whsec-reloaded-secret" not in fw.stderr()
    body = json.dumps({"request_id": rid, "signal": "accepted"}).encode()
    unsigned = httpx.post(f"{fw.base_url}/v1/feedback", content=body, headers={"Content-Type": "application/json"})
    assert_openai_error(unsigned.status_code, unsigned.headers, unsigned.content, expect_status=401, code="invalid_signature")
    mac = hmac.new(b"whsec-reloaded-secret", body, hashlib.sha256).hexdigest()
    ok = httpx.post(f"{fw.base_url}/v1/feedback", content=body,
                    headers={"Content-Type": "application/json", "x-flywheel-signature": f"sha256={mac}"})
    assert ok.status_code == 200, ok.text

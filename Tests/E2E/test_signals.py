"""Signals as apps already send them: episodes, implicit feedback, and other tools' feedback shapes."""
from __future__ import annotations

import base64
import json
import time

import pytest

from conftest import base_config
from helpers import assert_openai_error, httpx, user_msg


def chat(fw, text: str, headers: dict | None = None, **body) -> str:
    payload = {"model": "gpt-4o-mini", "messages": body.pop("messages", user_msg(text)), **body}
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json=payload, headers=headers or {})
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def feedback_of(fw, rid: str) -> list[dict]:
    return fw.wait_logged(rid)["feedback"]


def test_episodes_group_requests_and_episode_feedback_reaches_each_of_them(gw):
    fw = gw.fw
    episode = f"ep-{time.monotonic_ns()}"
    first = chat(fw, "turn one", {"x-flywheel-episode": episode})
    second = chat(fw, "turn two", metadata={"episode_id": episode})
    other = chat(fw, "unrelated")
    assert fw.wait_logged(first)["episode_id"] == episode
    assert fw.wait_logged(second)["episode_id"] == episode
    assert fw.wait_logged(other)["episode_id"] is None
    listed = {row["id"] for row in fw.tail("--episode", episode, "-n", "50")}
    assert listed == {first, second}

    # TensorZero's shape, episode-level: one row on every request of the episode.
    r = httpx.post(f"{fw.base_url}/feedback", json={"episode_id": episode, "metric_name": "task_success", "value": True})
    assert r.status_code == 200, r.text
    assert r.json()["feedback_id"]
    for rid in (first, second):
        rows = feedback_of(fw, rid)
        assert [(f["signal"], f["source"], f["episode_id"]) for f in rows] == [("accepted", "tensorzero:task_success", episode)]
    assert feedback_of(fw, other) == []

    missing = httpx.post(f"{fw.base_url}/feedback", json={"episode_id": "ep-none", "metric_name": "m", "value": 1})
    assert_openai_error(missing.status_code, missing.headers, missing.content, expect_status=404, code="episode_not_found")
    bad = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("x")},
                     headers={"x-flywheel-episode": "bad episode!"})
    assert_openai_error(bad.status_code, bad.headers, bad.content, expect_status=400)


def test_regenerate_and_edit_headers_store_implicit_feedback(gw):
    fw = gw.fw
    original = chat(fw, "write a haiku")
    chat(fw, "write a haiku", {"x-flywheel-regenerates": original})
    edited_messages = [{"role": "user", "content": "write a haiku"},
                       {"role": "assistant", "content": [{"type": "text", "text": "the user's better haiku"}]},
                       {"role": "user", "content": "thanks"}]
    chat(fw, "", {"x-flywheel-edits": original}, messages=edited_messages)
    rows = []
    for _ in range(50):
        rows = feedback_of(fw, original)
        if len(rows) == 2:
            break
        time.sleep(0.1)
    by_source = {f["source"]: f for f in rows}
    assert by_source["implicit:regenerate"]["signal"] == "rejected"
    assert by_source["implicit:edit"]["signal"] == "edited"
    assert by_source["implicit:edit"]["correction"] == "the user's better haiku"

    no_answer = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("x")},
                           headers={"x-flywheel-edits": original})
    assert_openai_error(no_answer.status_code, no_answer.headers, no_answer.content, expect_status=400)
    assert no_answer.json()["error"]["param"] == "x-flywheel-edits"


def test_tensorzero_shapes_map_onto_signals(gw):
    fw = gw.fw
    rid = chat(fw, "classify this")
    cases = [
        ({"metric_name": "rating", "value": 4.5}, ("score", 4.5, None, None)),
        ({"metric_name": "comment", "value": "too long"}, ("comment", None, None, "too long")),
        ({"metric_name": "demonstration", "value": [{"type": "text", "text": "the right answer"}]},
         ("edited", None, "the right answer", None)),
        ({"metric_name": "thumbs", "value": False}, ("rejected", None, None, None)),
    ]
    for body, _ in cases:
        r = httpx.post(f"{fw.base_url}/feedback", json={"inference_id": rid, **body})
        assert r.status_code == 200, r.text
    got = [(f["signal"], f["value"], f["correction"], f["comment"]) for f in feedback_of(fw, rid)]
    assert got == [expected for _, expected in cases]
    dry = httpx.post(f"{fw.base_url}/feedback", json={"inference_id": rid, "metric_name": "x", "value": 1, "dryrun": True})
    assert dry.status_code == 200 and len(feedback_of(fw, rid)) == len(cases)
    both = httpx.post(f"{fw.base_url}/feedback", json={"inference_id": rid, "episode_id": "e", "metric_name": "x", "value": 1})
    assert_openai_error(both.status_code, both.headers, both.content, expect_status=400)
    unknown = httpx.post(f"{fw.base_url}/feedback", json={"inference_id": "never-logged", "metric_name": "x", "value": 1})
    assert_openai_error(unknown.status_code, unknown.headers, unknown.content, expect_status=404)


def test_langfuse_scores_and_helicone_ratings_map_onto_signals(gw):
    fw = gw.fw
    rid = chat(fw, "summarise")
    score = {"traceId": rid, "name": "quality", "value": 0.8, "comment": "fine", "id": f"score-{rid}"}
    r = httpx.post(f"{fw.base_url}/api/public/scores", json=score)
    assert r.status_code == 200 and r.json()["id"] == score["id"], r.text
    again = httpx.post(f"{fw.base_url}/api/public/scores", json=score)  # the id is the idempotency key
    assert again.status_code == 200
    changed = httpx.post(f"{fw.base_url}/api/public/scores", json={**score, "value": 0.1})
    assert_openai_error(changed.status_code, changed.headers, changed.content, expect_status=409)
    r = httpx.post(f"{fw.base_url}/api/public/scores",
                   json={"traceId": rid, "name": "helpful", "value": 1, "dataType": "BOOLEAN"})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{fw.base_url}/api/public/scores", json={"traceId": rid, "name": "tone", "value": "formal"})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{fw.base_url}/v1/request/{rid}/feedback", json={"rating": False})
    assert r.status_code == 200, r.text
    got = [(f["signal"], f["source"]) for f in feedback_of(fw, rid)]
    assert got == [("score", "langfuse:quality"), ("accepted", "langfuse:helpful"), ("comment", "langfuse:tone"),
                   ("rejected", "helicone")]
    bad = httpx.post(f"{fw.base_url}/v1/request/{rid}/feedback", json={"rating": "yes"})
    assert_openai_error(bad.status_code, bad.headers, bad.content, expect_status=400)
    nowhere = httpx.post(f"{fw.base_url}/v1/request/{rid}/other", json={"rating": True})
    assert nowhere.status_code == 404


def test_foreign_shapes_follow_the_key_and_signature_rules(start_flywheel, fake):
    import hashlib
    import hmac
    cfg = base_config(fake.url, fake.url)
    cfg["auth"] = {"keys": [{"id": "app", "key": "sk-flywheel-app"}]}
    cfg["feedback"] = {"webhook_secret": "whsec"}
    fw = start_flywheel(cfg)
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("hi")},
                   headers={"Authorization": "Bearer sk-flywheel-app"})
    rid = r.headers["x-request-id"]
    body = json.dumps({"traceId": rid, "name": "q", "value": 1}).encode()
    unsigned = httpx.post(f"{fw.base_url}/api/public/scores", content=body, headers={"Content-Type": "application/json"})
    assert_openai_error(unsigned.status_code, unsigned.headers, unsigned.content, expect_status=401, code="invalid_signature")
    ts = int(time.time())
    mac = hmac.new(b"whsec", f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    signed = httpx.post(f"{fw.base_url}/api/public/scores", content=body,
                        headers={"Content-Type": "application/json", "x-flywheel-signature": f"t={ts},v1={mac}"})
    assert signed.status_code == 200, signed.text


def test_langfuse_basic_auth_carries_a_flywheel_key(start_flywheel, fake):
    cfg = base_config(fake.url, fake.url)
    cfg["auth"] = {"keys": [{"id": "app", "key": "sk-flywheel-app"}]}
    fw = start_flywheel(cfg)
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("hi")},
                   headers={"Authorization": "Bearer sk-flywheel-app"})
    rid = r.headers["x-request-id"]
    basic = "Basic " + base64.b64encode(b"pk-lf-public:sk-flywheel-app").decode()
    ok = httpx.post(f"{fw.base_url}/api/public/scores", json={"traceId": rid, "name": "q", "value": 1},
                    headers={"Authorization": basic})
    assert ok.status_code == 200, ok.text
    wrong = "Basic " + base64.b64encode(b"pk:sk-wrong").decode()
    denied = httpx.post(f"{fw.base_url}/api/public/scores", json={"traceId": rid, "name": "q", "value": 1},
                        headers={"Authorization": wrong})
    assert denied.status_code == 401


def test_report_sums_the_log_per_model_and_route_with_acceptance_and_savings(start_flywheel, fake, tmp_path):
    from conftest import REPO_ROOT, run_cli, yaml_dump
    qwen = REPO_ROOT / "Tests" / "FlywheelEngineTests" / "Fixtures" / "model-qwen2-q8.gguf"
    cfg = base_config(fake.url, fake.url)
    cfg["local_models"] = [{"name": "tiny", "path": str(qwen)}]
    cfg["prices"] = {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}
    fw = start_flywheel(cfg)
    ids = [chat(fw, f"question {i}") for i in range(3)]
    local = []
    for i in range(2):
        r = httpx.post(f"{fw.base_url}/v1/chat/completions",
                       json={"model": "tiny", "max_tokens": 3, "messages": user_msg(f"q{i}")})
        assert r.status_code == 200, r.text
        local.append(r.headers["x-request-id"])
    for rid, signal in [(ids[0], "accepted"), (ids[1], "rejected"), (local[0], "accepted")]:
        assert httpx.post(f"{fw.base_url}/v1/feedback", json={"request_id": rid, "signal": signal}).status_code == 200
    for rid in ids + local:
        fw.wait_logged(rid)
    config_path = tmp_path / "prices.yaml"
    config_path.write_text(yaml_dump({"prices": cfg["prices"]}))
    p = run_cli(fw.binary, "report", "--db", str(fw.db), "--json", "--config", str(config_path),
                "--baseline-model", "gpt-4o-mini")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    rows = {(r["model"], r["route"]): r for r in report["rows"]}
    upstream, tiny = rows[("gpt-4o-mini", "upstream")], rows[("tiny", "local")]
    assert upstream["requests"] == 3 and tiny["requests"] == 2
    assert upstream["feedback"]["acceptance_rate"] == 0.5
    assert tiny["feedback"]["acceptance_rate"] == 1.0
    logged = [fw.show(rid) for rid in local]
    prompt = sum(r["usage"]["prompt_tokens"] for r in logged)
    completion = sum(r["usage"]["completion_tokens"] for r in logged)
    assert tiny["prompt_tokens"] == prompt and tiny["completion_tokens"] == completion
    assert abs(tiny["saved_usd"] - (prompt * 0.15 + completion * 0.6) / 1e6) < 1e-12
    assert report["total"]["requests"] == 5
    table = run_cli(fw.binary, "report", "--db", str(fw.db), "--since", "1h")
    assert table.returncode == 0 and "tiny" in table.stdout and "local" in table.stdout
    bad = run_cli(fw.binary, "report", "--db", str(fw.db), "--since", "yesterday-ish")
    assert bad.returncode != 0 and "not a time" in bad.stderr

"""Traffic policies: a model name apps send is split by weight between a local model and an upstream model,
sticky per caller, with an override header for testing, an ordered fallback when a target fails or stalls
before its first token, every decision logged and shown in headers, and the split changed by a reload.

The local target is the tiny random-weight fixture model (deterministic gibberish); the upstream is the fake.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess

import pytest

from conftest import REPO_ROOT, base_config, yaml_dump
from fake_upstream import FakeUpstream
from helpers import httpx, poll

QWEN = REPO_ROOT / "Tests" / "FlywheelEngineTests" / "Fixtures" / "model-qwen2-q8.gguf"


def policy_config(up_url: str, **policy) -> dict:
    cfg = base_config(up_url, up_url)
    cfg["local_models"] = [{"name": "tiny", "path": str(QWEN)},
                           {"name": "tiny-short", "path": str(QWEN), "context_length": 32}]
    base = {"model": "support-bot", "variants": [{"target": "tiny", "weight": 30}, {"target": "gpt-4o", "weight": 70}]}
    base.update(policy)
    cfg["policies"] = [base]
    return cfg


@pytest.fixture
def up():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


def ask(fw, *, user: str | None = None, headers: dict | None = None, stream: bool = False, content: str = "hello",
        model: str = "support-bot", **body):
    payload = {"model": model, "max_tokens": 3, "messages": [{"role": "user", "content": content}], **body}
    if user:
        payload["user"] = user
    if not stream:
        return httpx.post(f"{fw.base_url}/v1/chat/completions", json=payload, headers=headers or {}, timeout=60)
    payload["stream"] = True
    with httpx.Client(base_url=fw.base_url, timeout=60) as c:
        with c.stream("POST", "/v1/chat/completions", json=payload, headers=headers or {}) as r:
            r.read()
            return r


def logged_rows(fw) -> dict[str, dict]:
    con = sqlite3.connect(f"file:{fw.db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    rows = {r["id"]: dict(r) for r in con.execute("SELECT id, route, variant, decision, user, status FROM requests")}
    con.close()
    return rows


def test_weighted_split_is_sticky_per_user_and_every_decision_is_logged(start_flywheel, up):
    fw = start_flywheel(policy_config(up.url))
    seen: dict[str, str] = {}
    ids = []
    for n in range(300):
        r = ask(fw, user=f"user-{n}")
        assert r.status_code == 200, r.text
        seen[f"user-{n}"] = r.headers["x-flywheel-variant"]
        assert r.headers["x-flywheel-decision"] == "split; sticky=user"
        assert r.headers["x-flywheel-route"] == ("local" if seen[f"user-{n}"] == "tiny" else "upstream")
        ids.append(r.headers["x-request-id"])
    # The share measured from the log: 30% within about four standard errors (sqrt(.3*.7/300) = 0.026).
    for rid in ids:
        fw.wait_logged(rid)
    rows = logged_rows(fw)
    local = sum(1 for rid in ids if rows[rid]["variant"] == "tiny")
    assert 0.2 <= local / len(ids) <= 0.4, local
    for rid in ids:
        row = rows[rid]
        assert row["route"] == ("local" if row["variant"] == "tiny" else "upstream")
        decision = json.loads(row["decision"])
        assert decision["policy"] == "support-bot" and decision["reason"] == "split" and decision["sticky"] == "user"
        assert decision["chosen"] == row["variant"] and decision["tried"] == [] and 0 <= decision["bucket"] < 1
    # Sticky: the same users again, each on the variant it had, streamed or not.
    for n in range(0, 300, 15):
        assert ask(fw, user=f"user-{n}").headers["x-flywheel-variant"] == seen[f"user-{n}"]
        assert ask(fw, user=f"user-{n}", stream=True).headers["x-flywheel-variant"] == seen[f"user-{n}"]
    # Both answers are OpenAI chat completions whichever target served them.
    assert {"tiny", "gpt-4o"} == set(seen.values())
    metrics = httpx.get(f"{fw.base_url}/metrics").text
    assert 'flywheel_policy_decisions_total{policy="support-bot",variant="tiny",reason="split"}' in metrics
    # The log can be read per variant.
    p = fw.cli("tail", "--db", str(fw.db), "--variant", "tiny", "-n", "1000", "--json")
    assert p.returncode == 0, p.stderr
    tailed = [json.loads(line) for line in p.stdout.splitlines()]
    assert tailed and all(t["variant"] == "tiny" and t["decision"]["policy"] == "support-bot" for t in tailed)


def test_the_override_header_chooses_a_target_for_testing(start_flywheel, up):
    fw = start_flywheel(policy_config(up.url))
    for target in ("tiny", "gpt-4o"):
        r = ask(fw, user="someone", headers={"x-flywheel-variant": target})
        assert r.status_code == 200 and r.headers["x-flywheel-variant"] == target
        assert r.headers["x-flywheel-decision"] == "override"
    huge = ask(fw, headers={"x-flywheel-variant": "x" * 8000})
    assert huge.status_code == 400 and huge.json()["error"]["param"] == "x-flywheel-variant"
    assert "xxxx" not in huge.text  # the value is not echoed back
    # An escape sequence (sent raw: HTTP clients refuse it) is refused the same way, and never echoed.
    body = json.dumps({"model": "support-bot", "messages": [{"role": "user", "content": "x"}]}).encode()
    with socket.create_connection(("127.0.0.1", fw.port), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                  b"x-flywheel-variant: tiny\x1b[2J\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 400") and b"\x1b" not in raw
    unknown = ask(fw, headers={"x-flywheel-variant": "claude"})
    assert unknown.status_code == 400 and "tiny, gpt-4o" in unknown.json()["error"]["message"]
    closed = start_flywheel(policy_config(up.url, allow_override=False), name="closed")
    assert ask(closed, headers={"x-flywheel-variant": "tiny"}).status_code == 400


def test_a_failing_upstream_falls_back_to_the_local_model_before_the_client_sees_anything(start_flywheel, up):
    fw = start_flywheel(policy_config(up.url, variants=[{"target": "gpt-4o", "weight": 1}], fallback=["tiny"]))
    up.fail(500, count=20)
    plain = ask(fw, user="a")
    assert plain.status_code == 200, plain.text
    assert plain.headers["x-flywheel-variant"] == "tiny" and plain.headers["x-flywheel-route"] == "local"
    assert plain.headers["x-flywheel-decision"] == "split; sticky=user; fallback after gpt-4o (upstream_status_500)"
    assert plain.json()["object"] == "chat.completion"
    streamed = ask(fw, user="b", stream=True)
    assert streamed.status_code == 200 and streamed.headers["x-flywheel-variant"] == "tiny"
    body = streamed.text
    assert body.rstrip().endswith("data: [DONE]") and '"error"' not in body
    up.reset()
    rid = plain.headers["x-request-id"]
    row = fw.wait_logged(rid)
    assert row["variant"] == "tiny" and row["route"] == "local" and row["status"] == 200
    assert row["decision"]["reason"] == "fallback" and row["decision"]["chosen"] == "gpt-4o"
    assert row["decision"]["tried"] == [{"target": "gpt-4o", "reason": "upstream_status_500"}]
    metrics = httpx.get(f"{fw.base_url}/metrics").text
    assert 'flywheel_policy_fallbacks_total{policy="support-bot",from="gpt-4o",reason="upstream_status_500"}' in metrics
    # With no fallback left, the client gets the last target's error as usual.
    lone = start_flywheel(policy_config(up.url, variants=[{"target": "gpt-4o", "weight": 1}]), name="lone")
    up.fail(500, count=20)
    r = ask(lone, user="c")
    up.reset()
    assert r.status_code == 500 and r.headers["x-request-id"]


def test_an_upstream_with_no_first_byte_within_the_budget_gives_way(start_flywheel, up):
    fw = start_flywheel(policy_config(up.url, variants=[{"target": "gpt-4o", "weight": 1}], fallback=["tiny"],
                                      first_token_budget=0.3))
    up.hang(seconds=60, count=5)
    try:
        r = ask(fw, user="slow")
        assert r.status_code == 200, r.text
        assert r.headers["x-flywheel-variant"] == "tiny"
        assert r.headers["x-flywheel-decision"].endswith("fallback after gpt-4o (first_token_budget)")
    finally:
        up.reset()
    # A target that answers within the budget keeps the request.
    fast = ask(fw, user="fast")
    assert fast.status_code == 200 and fast.headers["x-flywheel-variant"] == "gpt-4o"


def test_a_prompt_too_long_for_the_local_model_goes_to_the_next_target(start_flywheel, up):
    cfg = policy_config(up.url, variants=[{"target": "tiny-short", "weight": 1}], fallback=["gpt-4o"])
    fw = start_flywheel(cfg)
    long_prompt = " ".join(f"word{n}" for n in range(200))
    r = ask(fw, user="long", content=long_prompt)
    assert r.status_code == 200, r.text
    assert r.headers["x-flywheel-variant"] == "gpt-4o"
    assert "fallback after tiny-short (context_length_exceeded)" in r.headers["x-flywheel-decision"]
    short = ask(fw, user="short", content="hi")
    assert short.status_code == 200 and short.headers["x-flywheel-variant"] == "tiny-short"


def test_a_reload_changes_the_split_without_a_restart_and_a_bad_one_changes_nothing(start_flywheel, up):
    cfg = policy_config(up.url, variants=[{"target": "tiny", "weight": 0}, {"target": "gpt-4o", "weight": 1}])
    fw = start_flywheel(cfg)
    users = [f"u{n}" for n in range(40)]
    assert {ask(fw, user=u).headers["x-flywheel-variant"] for u in users} == {"gpt-4o"}
    promoted = policy_config(up.url, variants=[{"target": "tiny", "weight": 1}, {"target": "gpt-4o", "weight": 0}])
    fw.config_path.write_text(yaml_dump(dict(promoted, log={"path": str(fw.db)})))
    fw.send(signal.SIGHUP)
    poll(lambda: "reloaded policies: support-bot" in fw.stderr(), timeout=60, what="the policy reload")
    assert {ask(fw, user=u).headers["x-flywheel-variant"] for u in users} == {"tiny"}
    broken = policy_config(up.url, variants=[{"target": "nowhere", "weight": 1}])
    fw.config_path.write_text(yaml_dump(dict(broken, log={"path": str(fw.db)})))
    fw.send(signal.SIGHUP)
    poll(lambda: "reload failed" in fw.stderr(), timeout=60, what="the failed reload")
    assert "'nowhere' is neither a local model nor routed" in fw.stderr()
    assert {ask(fw, user=u).headers["x-flywheel-variant"] for u in users} == {"tiny"}


def test_a_policy_naming_an_unknown_target_stops_start_up(flywheel_bin, tmp_path, up):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_dump(policy_config(up.url, variants=[{"target": "claude-3", "weight": 1}])))
    p = subprocess.run([str(flywheel_bin), "serve", "--config", str(cfg), "--listen", "127.0.0.1:0",
                        "--db", str(tmp_path / "x.db")], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "OPENAI_API_KEY": "sk-test"}, stdin=subprocess.DEVNULL)
    assert p.returncode == 78
    assert "'claude-3' is neither a local model nor routed upstream" in p.stderr


def shadow_rows(fw, primary_ids: list[str]) -> dict[str, dict]:
    """Shadow rows by the request they shadow."""
    con = sqlite3.connect(f"file:{fw.db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    marks = ",".join("?" * len(primary_ids))
    rows = {r["shadow_of"]: dict(r) for r in con.execute(
        f"SELECT id, shadow_of, route, variant, decision, status, request_json, response_json FROM requests "
        f"WHERE shadow_of IN ({marks})", primary_ids)}
    con.close()
    return rows


def test_shadow_runs_log_the_other_targets_answer_beside_the_real_one(start_flywheel, up):
    fw = start_flywheel(policy_config(up.url, variants=[{"target": "gpt-4o", "weight": 1}],
                                      shadow={"target": "tiny", "rate": 1, "max_concurrent": 8}))
    ids = []
    for n in range(6):
        r = ask(fw, user=f"s{n}", stream=n % 2 == 1)
        assert r.status_code == 200
        assert r.headers["x-flywheel-variant"] == "gpt-4o" and r.headers["x-flywheel-decision"] == "split; sticky=user"
        ids.append(r.headers["x-request-id"])
        # One at a time: a shadow that found the local model with a queue would be shed (by design).
        poll(lambda: r.headers["x-request-id"] in shadow_rows(fw, [r.headers["x-request-id"]]), timeout=60,
             what="the request's shadow row")
    shadows = shadow_rows(fw, ids)
    for rid in ids:
        row = shadows[rid]
        assert row["id"] != rid and row["route"] == "local" and row["variant"] == "tiny" and row["status"] == 200
        decision = json.loads(row["decision"])
        assert decision["reason"] == "shadow" and decision["shadow_of"] == rid
        assert json.loads(row["request_json"]).get("stream") is None  # run buffered
        assert json.loads(row["response_json"])["object"] == "chat.completion"
    primary = logged_rows(fw)
    assert all(primary[rid]["variant"] == "gpt-4o" for rid in ids)
    # Shadows are not client requests: the request metrics count only the six.
    metrics = httpx.get(f"{fw.base_url}/metrics").text
    assert 'flywheel_shadow_runs_total{policy="support-bot",target="tiny",outcome="admitted"} 6' in metrics
    assert "flywheel_in_flight_requests 0" in metrics
    # `tail` can leave shadow runs out or show only them.
    p = fw.cli("tail", "--db", str(fw.db), "-n", "100", "--json", "--variant", "tiny")
    assert p.returncode == 0 and {json.loads(l)["shadow_of"] for l in p.stdout.splitlines()} == set(ids)


def test_a_slow_shadow_never_delays_the_client_and_extra_ones_are_shed(start_flywheel, up):
    fw = start_flywheel(policy_config(up.url, variants=[{"target": "tiny", "weight": 1}],
                                      shadow={"target": "gpt-4o", "rate": 1, "max_concurrent": 1}))
    up.hang(seconds=60, count=1)
    try:
        first = ask(fw, user="a")
        assert first.status_code == 200 and first.headers["x-flywheel-variant"] == "tiny"
        poll(lambda: len(up.requests) == 1, timeout=30, what="the shadow reaching the upstream")
        # The shadow hangs upstream and holds the only place: the next requests are answered, their shadows shed.
        for n in range(3):
            assert ask(fw, user=f"b{n}").status_code == 200
        metrics = httpx.get(f"{fw.base_url}/metrics").text
        assert 'flywheel_shadow_runs_total{policy="support-bot",target="gpt-4o",outcome="shed_concurrency"} 3' in metrics
    finally:
        up.reset()
    rid = first.headers["x-request-id"]
    poll(lambda: rid in shadow_rows(fw, [rid]), timeout=60, what="the released shadow's row")
    assert shadow_rows(fw, [rid])[rid]["status"] == 200
    # With the place free again, the next request is shadowed.
    nxt = ask(fw, user="c").headers["x-request-id"]
    poll(lambda: nxt in shadow_rows(fw, [nxt]), timeout=60, what="the next shadow")


def test_shadows_are_sampled_by_rate(start_flywheel, up):
    fw = start_flywheel(policy_config(up.url, variants=[{"target": "gpt-4o", "weight": 1}],
                                      shadow={"target": "tiny", "rate": 0.25, "max_concurrent": 64}))
    ids = [ask(fw, user=f"r{n}").headers["x-request-id"] for n in range(200)]
    for rid in ids:
        fw.wait_logged(rid)
    # Wait until every admitted shadow has finished (in-flight shadows are counted by admissions).
    def settled():
        m = httpx.get(f"{fw.base_url}/metrics").text
        admitted = next((int(l.rsplit(" ", 1)[1]) for l in m.splitlines()
                         if l.startswith('flywheel_shadow_runs_total{') and 'outcome="admitted"' in l), 0)
        return admitted if len(shadow_rows(fw, ids)) == admitted else None
    admitted = poll(settled, timeout=60, what="every admitted shadow logged")
    # 25% of 200 within about four standard errors (sqrt(.25*.75*200) = 6.1).
    assert 26 <= admitted <= 74, admitted


class StallingUpstream:
    """An upstream that answers 200 text/event-stream with a role chunk, then nothing until released."""

    def __init__(self):
        import threading
        from helpers import LoopbackHTTPServer
        self.release = threading.Event()
        self.server = LoopbackHTTPServer(self.stall)
        self.url = self.server.url

    def stall(self, handler, raw: bytes) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        role = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        handler.wfile.write(f"data: {json.dumps(role)}\n\n".encode())
        handler.wfile.flush()
        self.release.wait(30)

    def stop(self):
        self.release.set()
        self.server.stop()


def test_a_stream_that_stalls_after_its_head_gives_way_within_the_budget(start_flywheel, up):
    from conftest import upstream_cfg
    stall = StallingUpstream()
    try:
        cfg = policy_config(up.url, variants=[{"target": "stalling", "weight": 1}], fallback=["tiny"], first_token_budget=0.3)
        cfg["upstreams"].append(upstream_cfg("stall", stall.url, retries=0))
        cfg["routes"].insert(0, {"model": "stalling", "upstreams": ["stall"]})
        fw = start_flywheel(cfg)
        r = ask(fw, user="x", stream=True)
        assert r.status_code == 200 and r.headers["x-flywheel-variant"] == "tiny"
        assert r.headers["x-flywheel-decision"].endswith("fallback after stalling (first_token_budget)")
        assert r.text.rstrip().endswith("data: [DONE]")
        # The client's stream is the local model's alone: one role chunk, not the stalled upstream's too.
        assert r.text.count('"role":"assistant"') == 1
    finally:
        stall.stop()


def test_invalid_requests_are_refused_not_sent_to_the_fallback_and_errors_carry_the_decision(start_flywheel, up):
    fw = start_flywheel(policy_config(up.url, variants=[{"target": "tiny", "weight": 1}], fallback=["gpt-4o"]))
    bad = ask(fw, user="u", temperature=5)
    assert bad.status_code == 400 and bad.headers["x-flywheel-variant"] == "tiny"
    assert bad.headers["x-flywheel-decision"] == "split; sticky=user"
    # What only the local model cannot do (n > 1) goes to the next target.
    many = ask(fw, user="u", n=2)
    assert many.status_code == 200 and many.headers["x-flywheel-variant"] == "gpt-4o"
    assert "fallback after tiny (unsupported_by_local_model)" in many.headers["x-flywheel-decision"]
    twice = httpx.post(f"{fw.base_url}/v1/chat/completions", headers=[("x-flywheel-variant", "tiny"), ("x-flywheel-variant", "gpt-4o")],
                       json={"model": "support-bot", "messages": [{"role": "user", "content": "x"}]})
    assert twice.status_code == 400 and "once" in twice.json()["error"]["message"]


def test_a_policys_answers_are_priced_as_the_target_that_gave_them_not_as_the_name_the_app_sent(start_flywheel, up):
    """Apps send the frontier's name; when the policy sends a request to the local model, the logged cost is the
    local model's rate (here none, then a price of its own), and the upstream target's answers cost its rate."""
    cfg = policy_config(up.url)
    cfg["prices"] = {"support-bot": {"input": 100.0, "output": 100.0}, "gpt-4o": {"input": 2.5, "output": 10.0}}
    fw = start_flywheel(cfg)

    def rows(n: int, tag: str) -> dict[str, list[dict]]:
        ids = [ask(fw, user=f"{tag}{i}", headers={"x-flywheel-tags": tag}).headers["x-request-id"] for i in range(n)]
        out: dict[str, list[dict]] = {}
        for rid in ids:
            row = fw.wait_logged(rid)
            out.setdefault(row["variant"], []).append(row)
        return out

    first = rows(24, "a")
    assert first.keys() == {"tiny", "gpt-4o"}
    assert all(r["cost_usd"] is None for r in first["tiny"])  # no price for the local model: no cost
    for r in first["gpt-4o"]:
        assert abs(r["cost_usd"] - (r["usage"]["prompt_tokens"] * 2.5 + r["usage"]["completion_tokens"] * 10.0) / 1e6) < 1e-12
    cfg["prices"]["tiny"] = {"input": 0.01, "output": 0.02}
    before = fw.stderr()
    fw.config_path.write_text(yaml_dump(dict(cfg, log={"path": str(fw.db)})))
    fw.send(signal.SIGHUP)
    poll(lambda: "reloaded changes=" in fw.stderr()[len(before):], timeout=60, what="the reload")
    for r in rows(24, "b")["tiny"]:
        assert abs(r["cost_usd"] - (r["usage"]["prompt_tokens"] * 0.01 + r["usage"]["completion_tokens"] * 0.02) / 1e6) < 1e-15


def test_the_report_splits_by_variant_and_prices_local_answers_at_the_policys_upstream_rates(start_flywheel, up, tmp_path):
    cfg = policy_config(up.url)
    cfg["prices"] = {"gpt-4o": {"input": 2.5, "output": 10.0}}
    fw = start_flywheel(cfg)
    ids = [ask(fw, user=f"r{n}").headers["x-request-id"] for n in range(40)]
    for rid in ids:
        fw.wait_logged(rid)
    p = fw.cli("report", "--db", str(fw.db), "--json", "--config", str(fw.config_path))
    assert p.returncode == 0, p.stderr
    rows = {(r["model"], r["route"], r["variant"]): r for r in json.loads(p.stdout)["rows"]}
    local, frontier = rows[("support-bot", "local", "tiny")], rows[("support-bot", "upstream", "gpt-4o")]
    assert local["requests"] + frontier["requests"] == 40
    expected = (local["prompt_tokens"] * 2.5 + local["completion_tokens"] * 10.0) / 1e6
    assert local["saved_usd"] > 0 and abs(local["saved_usd"] - expected) < 1e-12
    assert frontier["saved_usd"] == 0

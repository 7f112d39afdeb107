"""Operator CLI: flywheel tail / show against the request log."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone

import openai
import pytest

from conftest import uid
from helpers import poll, user_msg

REQUEST_KEYS = {"type", "id", "created_at", "method", "endpoint", "model_requested", "model_served", "route",
                "upstream", "stream", "status", "error", "latency_ms", "ttft_ms", "upstream_ms", "usage",
                "cost_usd", "tags", "user", "metadata", "client_key_id", "attempts", "request", "response",
                "feedback"}
FEEDBACK_KEYS = {"type", "id", "request_id", "created_at", "signal", "value", "correction", "comment", "source",
                 "weight"}


def parse_utc(ts: str) -> datetime:
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert dt.tzinfo is not None and dt.utcoffset().total_seconds() == 0, f"{ts!r} is not UTC"
    return dt


def tail_until(fw, rid: str, *args: str) -> list[dict]:
    return poll(lambda: (rows := fw.tail("-n", "200", *args)) and any(r.get("id") == rid for r in rows) and rows,
                timeout=5, interval=0.1, what=f"{rid} in tail {args}")


def test_tail_json_has_full_request_record(gw):
    meta = {"session": "s-1", "app": "e2e"}
    raw = gw.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user_msg("tail me please"), user="user-42",
        extra_body={"metadata": meta}, extra_headers={"x-flywheel-tags": "alpha,beta"})
    rid = raw.headers["x-request-id"]
    before = datetime.now(timezone.utc)
    rows = tail_until(gw.fw, rid)
    (row,) = [r for r in rows if r.get("id") == rid]
    assert REQUEST_KEYS <= set(row), f"missing keys: {REQUEST_KEYS - set(row)}"
    assert row["type"] == "request"
    assert abs((parse_utc(row["created_at"]) - before).total_seconds()) < 60
    assert row["method"] == "POST"
    assert "chat/completions" in row["endpoint"]
    assert row["model_requested"] == "gpt-4o-mini"
    assert row["model_served"] == "gpt-4o-mini"
    assert isinstance(row["route"], str) and row["route"]
    assert row["upstream"] in ("primary", gw.primary.url)
    assert row["stream"] is False
    assert row["status"] == 200 and row["error"] is None
    for k in ("latency_ms", "upstream_ms"):
        assert isinstance(row[k], (int, float)) and row[k] >= 0, (k, row[k])
    assert row["upstream_ms"] <= row["latency_ms"]
    assert row["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert row["cost_usd"] == pytest.approx((3 * 0.15 + 4 * 0.60) / 1e6, rel=1e-6)
    assert row["tags"] == ["alpha", "beta"]
    assert row["user"] == "user-42"
    assert row["metadata"] == meta
    assert row["client_key_id"] is None
    assert row["attempts"] == 1
    assert row["request"]["messages"] == user_msg("tail me please")
    assert row["request"]["model"] == "gpt-4o-mini"
    assert row["response"]["choices"][0]["message"]["content"] == "echo: tail me please"
    assert row["feedback"] == []
    # show --json gives the same record
    shown = gw.fw.show(rid)
    assert shown["id"] == rid and shown["response"] == row["response"] and shown["tags"] == row["tags"]


def test_cost_is_null_or_zero_for_unpriced_model(gw):
    _, rid = gw.chat("no price", model="gpt-unpriced")
    row = gw.fw.wait_logged(rid)
    assert row["cost_usd"] in (None, 0, 0.0)


def test_tail_text_mode_line_has_id_and_status(gw):
    _, rid = gw.chat("text mode line")
    gw.fw.wait_logged(rid)
    p = gw.fw.cli("tail", "--db", str(gw.fw.db), "-n", "50")
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if rid in l]
    assert len(lines) == 1, p.stdout
    assert "200" in lines[0] and "gpt-4o-mini" in lines[0]
    assert not lines[0].lstrip().startswith("{"), "text mode must not print JSON"


def test_tail_n_limits_to_latest_rows(gw):
    ids = [gw.chat(f"n-limit {i}")[1] for i in range(3)]
    gw.fw.wait_logged(ids[-1])
    for rid in ids:
        gw.fw.wait_logged(rid)
    rows = [r for r in gw.fw.tail("-n", "2") if r["type"] == "request"]
    assert [r["id"] for r in rows] == ids[1:], "tail -n 2 should print the two newest, oldest first"


def test_failed_requests_are_logged_with_error_and_errors_filter(gw):
    _, ok_id = gw.chat("fine")
    gw.primary.fail(429, count=100, message="slow down")
    with pytest.raises(openai.RateLimitError) as ei:
        gw.client().chat.completions.create(model="gpt-errors", messages=user_msg("fail"))
    gw.primary.reset()
    bad_id = ei.value.request_id
    row = gw.fw.wait_logged(bad_id)
    assert row["status"] == 429
    assert row["error"] is not None and row["error"]["message"]
    gw.fw.wait_logged(ok_id)
    rows = gw.fw.tail("-n", "200", "--errors")
    ids = {r["id"] for r in rows if r["type"] == "request"}
    assert bad_id in ids and ok_id not in ids
    assert all(r["status"] >= 400 for r in rows if r["type"] == "request")


def test_gateway_rejected_request_is_logged(gw):
    with pytest.raises(openai.NotFoundError) as ei:
        gw.client().chat.completions.create(model="unrouted-model", messages=user_msg("x"))
    row = gw.fw.wait_logged(ei.value.request_id)
    assert row["status"] == 404
    assert row["error"]["type"] and row["error"]["message"]
    assert row["model_requested"] == "unrouted-model"


def test_tail_model_and_route_filters(gw):
    _, a = gw.chat("model a")
    _, b = gw.chat("model b", model="gpt-filter-b")
    gw.fw.wait_logged(a)
    row_b = gw.fw.wait_logged(b)
    rows = gw.fw.tail("-n", "200", "--model", "gpt-filter-b")
    reqs = [r for r in rows if r["type"] == "request"]
    assert b in {r["id"] for r in reqs} and a not in {r["id"] for r in reqs}
    assert all(r["model_requested"] == "gpt-filter-b" or r["model_served"] == "gpt-filter-b" for r in reqs)
    route = row_b["route"]
    by_route = [r for r in gw.fw.tail("-n", "200", "--route", route) if r["type"] == "request"]
    assert b in {r["id"] for r in by_route}
    assert all(r["route"] == route for r in by_route)


def test_tail_feedback_shows_feedback_lines(gw):
    _, rid = gw.chat("with feedback")
    gw.fw.wait_logged(rid)
    with gw.fw.http() as c:
        r = c.post("/v1/feedback", json={"request_id": rid, "signal": "comment", "comment": "nice"})
    assert r.status_code == 200, r.text
    rows = gw.fw.tail("-n", "200", "--feedback")
    fbs = [r for r in rows if r.get("type") == "feedback" and r.get("request_id") == rid]
    assert len(fbs) == 1
    assert FEEDBACK_KEYS <= set(fbs[0])
    assert fbs[0]["signal"] == "comment" and fbs[0]["comment"] == "nice" and fbs[0]["id"] == r.json()["id"]
    parse_utc(fbs[0]["created_at"])
    req = [x for x in rows if x.get("type") == "request" and x["id"] == rid]
    assert req and req[0]["feedback"][0]["id"] == r.json()["id"]
    text = gw.fw.cli("tail", "--db", str(gw.fw.db), "-n", "200", "--feedback")
    assert text.returncode == 0 and "comment" in text.stdout


def test_show_unknown_id_exits_1_with_message(gw):
    p = gw.fw.cli("show", "no-such-id-" + uid(), "--db", str(gw.fw.db))
    assert p.returncode == 1
    assert p.stderr.strip()
    p = gw.fw.cli("show", "no-such-id-" + uid(), "--db", str(gw.fw.db), "--json")
    assert p.returncode == 1


def test_show_text_mode_mentions_id(gw):
    _, rid = gw.chat("show text")
    gw.fw.wait_logged(rid)
    p = gw.fw.cli("show", rid, "--db", str(gw.fw.db))
    assert p.returncode == 0 and rid in p.stdout and "echo: show text" in p.stdout


def test_tail_follow_prints_new_request_then_exits_0_on_sigterm(gw):
    proc = subprocess.Popen([str(gw.fw.binary), "tail", "--db", str(gw.fw.db), "--json", "--follow", "-n", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[dict] = []
    found = threading.Event()
    target: dict = {}

    def reader() -> None:
        for line in proc.stdout:
            if line.strip():
                obj = json.loads(line)
                seen.append(obj)
                if obj.get("id") == target.get("id"):
                    found.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        time.sleep(0.5)  # let tail open the db and reach its follow loop
        assert proc.poll() is None, f"tail --follow exited early: {proc.stderr.read()}"
        _, rid = gw.chat(f"follow {uid()}")
        target["id"] = rid
        if any(o.get("id") == rid for o in seen):
            found.set()
        assert found.wait(8), f"tail --follow did not print {rid}; saw {[o.get('id') for o in seen]}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_missing_log_is_an_error_alone_not_a_usage_text(flywheel_bin, tmp_path):
    from conftest import run_cli
    for args in (["tail", "--db", str(tmp_path / "none.db")], ["show", "x\x1b[31m", "--db", str(tmp_path / "none.db")]):
        p = run_cli(flywheel_bin, *args)
        assert p.returncode == 1
        assert "none.db" in p.stderr and "Usage:" not in p.stderr and "\x1b" not in p.stderr

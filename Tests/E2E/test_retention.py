"""Data hygiene: retention pruned in the background, the x-flywheel-log opt-out, write-time redaction (log.redact)."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import base_config, run_cli, yaml_dump
from helpers import httpx, poll, user_msg

DAY_MS = 86_400_000


def chat(fw, text: str, model: str = "gpt-4o-mini", headers: dict | None = None, stream: bool = False):
    body = {"model": model, "messages": user_msg(text)}
    if stream:
        body["stream"] = True
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json=body, headers=headers or {}, timeout=20)
    return r


def chat_id(fw, text: str, **kw) -> str:
    r = chat(fw, text, **kw)
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def feedback(fw, rid: str, signal: str = "accepted", **extra) -> None:
    r = httpx.post(f"{fw.base_url}/v1/feedback", json={"request_id": rid, "signal": signal, **extra})
    assert r.status_code == 200, r.text


def metric(fw, name: str) -> float:
    text = httpx.get(f"{fw.base_url}/metrics").text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else -1.0


def db_bytes(db: Path) -> bytes:
    """The log's bytes on disk: the database and its write-ahead log."""
    out = b""
    for p in (db, Path(str(db) + "-wal")):
        if p.exists():
            out += p.read_bytes()
    return out


def backdate(db: Path, rid: str, days: float) -> None:
    with sqlite3.connect(db, timeout=30) as c:
        c.execute("UPDATE requests SET created_at = ? WHERE id = ?", (int(time.time() * 1000 - days * DAY_MS), rid))


def ids_in(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
        return {r[0] for r in c.execute("SELECT id FROM requests")}


def retention_config(fake) -> dict:
    cfg = base_config(fake.url, fake.url)
    # Routes in order, first match wins, as for routing: gpt-short-* keeps 1 day, gpt-keep-* for ever, the rest 30.
    cfg["routes"] = [
        {"model": "gpt-short-*", "upstreams": ["primary"], "retention_days": 1},
        {"model": "gpt-keep-*", "upstreams": ["primary"], "retention_days": "forever"},
    ] + cfg["routes"]
    return cfg


def test_old_rows_are_pruned_in_the_background_feedback_rows_kept_longer_route_overrides_honoured(start_flywheel, tmp_path, fake):
    cfg = retention_config(fake)
    db = tmp_path / "retention.db"
    cfg["log"] = {"path": str(db), "retention_days": 30, "retention_days_with_feedback": 365,
                  "prune_interval": 1, "prune_batch_size": 2}
    fw = start_flywheel(cfg, name="retention")
    rows = {
        "old": chat_id(fw, "forty days ago"),                      # 40 days, no feedback: pruned (30)
        "old_feedback": chat_id(fw, "forty days ago, liked"),      # 40 days, feedback: kept (365)
        "ancient_feedback": chat_id(fw, "four hundred days ago"),  # 400 days, feedback: pruned with its feedback
        "short": chat_id(fw, "two days ago", model="gpt-short-1"),  # 2 days, route keeps 1: pruned
        "keep": chat_id(fw, "a thousand days ago", model="gpt-keep-1"),  # route keeps for ever
        "recent": chat_id(fw, "ten days ago"),                     # 10 days: kept
        "new": chat_id(fw, "just now"),
    }
    feedback(fw, rows["old_feedback"])
    feedback(fw, rows["ancient_feedback"], "edited", correction="a better answer")
    for rid in rows.values():
        fw.wait_logged(rid)
    pruned_before = metric(fw, "flywheel_log_pruned_requests_total")
    assert pruned_before == 0, "nothing is old enough before the rows are backdated"
    for key, days in [("old", 40), ("old_feedback", 40), ("ancient_feedback", 400), ("short", 2), ("keep", 1000), ("recent", 10)]:
        backdate(db, rows[key], days)

    # The next pass (every second) prunes the three; wait for the metric, not for a time.
    poll(lambda: metric(fw, "flywheel_log_pruned_requests_total") >= 3, timeout=30, what="the prune pass")
    assert metric(fw, "flywheel_log_pruned_requests_total") == 3
    assert metric(fw, "flywheel_log_pruned_feedback_total") == 1
    assert metric(fw, "flywheel_log_prune_runs_total") >= 1
    left = ids_in(db)
    assert rows["old"] not in left and rows["ancient_feedback"] not in left and rows["short"] not in left
    assert {rows["old_feedback"], rows["keep"], rows["recent"], rows["new"]} <= left
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        assert c.execute("SELECT count(*) FROM feedback WHERE request_id = ?", (rows["ancient_feedback"],)).fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM feedback WHERE request_id = ?", (rows["old_feedback"],)).fetchone()[0] == 1
    poll(lambda: "retention: pruned 3 requests and 1 feedback rows" in fw.stderr(), timeout=10, what="the pass's line")
    # The pruned row is gone for the CLI too, and feedback on it is now an unknown request.
    assert run_cli(fw.binary, "show", rows["old"], "--db", str(db)).returncode != 0
    r = httpx.post(f"{fw.base_url}/v1/feedback", json={"request_id": rows["old"], "signal": "accepted"})
    assert r.status_code == 404
    # Traffic goes on while passes run.
    assert chat(fw, "still serving").status_code == 200
    assert fw.stop() == 0

    # flywheel prune: --dry-run counts and deletes nothing; without it, deletes.
    backdate(db, rows["recent"], 31)
    config_path = str(fw.config_path)
    dry = run_cli(fw.binary, "prune", "--config", config_path, "--db", str(db), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 requests and 0 feedback rows" in dry.stdout
    assert rows["recent"] in ids_in(db)
    real = run_cli(fw.binary, "prune", "--config", config_path, "--db", str(db))
    assert real.returncode == 0, real.stderr
    assert "deleted 1 requests" in real.stdout
    assert rows["recent"] not in ids_in(db)


def test_opt_out_header_serves_normally_and_logs_metadata_only(start_flywheel, tmp_path, fake):
    cfg = base_config(fake.url, fake.url)
    fw = start_flywheel(cfg, name="optout")
    secret = "opt-out-secret-7Q2"
    tag = "optout-tag"
    headers = {"x-flywheel-log": "metadata", "x-flywheel-tags": tag}
    r = chat(fw, f"please keep {secret} private", headers=headers)
    assert r.status_code == 200 and secret in r.json()["choices"][0]["message"]["content"]  # served unchanged
    rid = r.headers["x-request-id"]
    s = chat(fw, f"stream {secret} too", headers={"x-flywheel-log": "Metadata"}, stream=True)
    assert s.status_code == 200 and secret in s.text
    sid = s.headers["x-request-id"]
    normal = chat_id(fw, "an ordinary request", headers={"x-flywheel-tags": tag})

    row = fw.wait_logged(rid)
    assert row["content_withheld"] is True and row["request"] is None and row["response"] is None
    assert row["model_requested"] == "gpt-4o-mini" and row["status"] == 200 and row["route"] == "upstream"
    assert row["usage"]["total_tokens"] > 0 and row["latency_ms"] > 0 and row["tags"] == [tag]
    srow = fw.wait_logged(sid)
    assert srow["content_withheld"] is True and srow["stream"] is True and srow["response"] is None
    assert fw.wait_logged(normal)["content_withheld"] is False

    # tail and show say the content was withheld.
    plain = run_cli(fw.binary, "tail", "--db", str(fw.db), "-n", "10")
    line = next(l for l in plain.stdout.splitlines() if rid in l)
    assert "content withheld" in line and secret not in plain.stdout
    show = run_cli(fw.binary, "show", rid, "--db", str(fw.db))
    assert "withheld" in show.stdout and secret not in show.stdout
    assert any(t["id"] == rid and t["content_withheld"] for t in fw.tail("-n", "10"))

    # Feedback on it still works; export skips it.
    feedback(fw, rid, "accepted")
    out = tmp_path / "sft.jsonl"
    p = run_cli(fw.binary, "export", "--format", "sft", "--out", str(out), "--db", str(fw.db), "--validation-fraction", "0",
                "--tag", tag)
    assert p.returncode == 0, p.stderr
    exported = out.read_text()
    assert secret not in exported and normal in exported and rid not in exported
    manifest = json.loads((tmp_path / "sft.manifest.json").read_text())
    assert manifest["dropped"]["content_withheld"] == 1

    # An unknown value is refused (a misspelt opt-out must not store the content), and logged without content.
    bad = chat(fw, f"misspelt {secret}", headers={"x-flywheel-log": "metadta"})
    assert bad.status_code == 400
    err = bad.json()["error"]
    assert err["param"] == "x-flywheel-log" and "metadata" in err["message"] and secret not in bad.text
    brow = fw.wait_logged(bad.headers["x-request-id"])
    assert brow["content_withheld"] is True and brow["status"] == 400
    assert fw.stop() == 0
    assert secret.encode() not in db_bytes(fw.db)


def test_redact_pii_scrubs_content_before_it_is_stored_and_serves_it_unchanged(start_flywheel, tmp_path, fake):
    cfg = base_config(fake.url, fake.url)
    db = tmp_path / "redact.db"
    cfg["log"] = {"path": str(db), "redact": "pii"}
    fw = start_flywheel(cfg, name="redact")
    email, phone, card = "jane.roe@example.org", "+44 20 7946 0958", "4111 1111 1111 1111"
    text = f"write to {email}, call {phone}, charge {card}"
    r = chat(fw, text)
    assert r.status_code == 200
    answer = r.json()["choices"][0]["message"]["content"]
    assert email in answer and phone in answer and card in answer  # the client gets the real answer
    assert fake.requests[-1].json["messages"][0]["content"] == text  # and the upstream the real request
    s = chat(fw, text, stream=True)
    assert s.status_code == 200 and email in s.text
    row = fw.wait_logged(r.headers["x-request-id"])
    stored = json.dumps(row)
    assert "<EMAIL>" in stored and "<PHONE>" in stored and "<CARD>" in stored
    assert row["request"]["messages"][0]["role"] == "user" and row["request"]["model"] == "gpt-4o-mini"
    srow = fw.wait_logged(s.headers["x-request-id"])
    assert email not in json.dumps(srow) and "<EMAIL>" in json.dumps(srow["response"])
    metrics = httpx.get(f"{fw.base_url}/metrics").text
    assert re.search(r'^flywheel_log_redactions_total\{kind="EMAIL"\} [1-9]', metrics, re.M)
    assert fw.stop() == 0
    data = db_bytes(db)
    for needle in (email, "7946 0958", card, "4111111111111111"):
        assert needle.encode() not in data, f"{needle} reached the database file"


@pytest.mark.parametrize("log, route_retention, expected", [
    ({"retention_days": 0}, None, "log.retention_days must be a whole number of days from 1 to 36500, or forever"),
    ({"retention_days": -5}, None, "log.retention_days must be"),
    ({"retention_days": "soon"}, None, "expected a whole number of days or 'forever'"),
    ({"retention_days": 30, "retention_days_with_feedback": 7}, None, "must be at least log.retention_days"),
    ({"redact": "everything"}, None, "log.redact must be one of none, pii"),
    ({"prune_interval": 0}, None, "log.prune_interval must be 1...86400"),
    ({"retention_dayz": 3}, None, "unknown key 'retention_dayz' in log"),
    ({}, 100000, "retention_days must be a whole number of days"),
])
def test_bad_retention_and_redaction_settings_stop_start_up_with_a_clear_message(flywheel_bin, tmp_path, fake, log, route_retention,
                                                                                 expected):
    cfg = base_config(fake.url, fake.url)
    cfg["log"] = {"path": str(tmp_path / "x.db"), **log}
    if route_retention is not None:
        cfg["routes"][0]["retention_days"] = route_retention
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_dump(cfg))
    p = subprocess.run([str(flywheel_bin), "serve", "--config", str(path)], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "OPENAI_API_KEY": "sk-x"})
    assert p.returncode == 78, p.stderr
    assert expected in p.stderr, p.stderr
    assert "Usage:" not in p.stderr

"""The flywheel's second half in one run: a fake upstream is the frontier model, the tiny local GGUF is the
candidate, a fake judge compares them. Traffic is split and shadowed, the shadow pairs and a golden set are
evaluated and gate the promotion, a promotion shifts traffic (measured from the log), and a forced regression
(users start rejecting the candidate's answers) makes the rollout guardrail move the traffic back by itself.
"""
from __future__ import annotations

import json
import sqlite3

from conftest import REPO_ROOT, base_config, run_cli, upstream_cfg
from fake_upstream import FakeUpstream
from helpers import httpx, poll
from test_eval import FakeJudge

QWEN = REPO_ROOT / "Tests" / "FlywheelEngineTests" / "Fixtures" / "model-qwen2-q8.gguf"


def shares(fw, since_row: int) -> dict[str, int]:
    """Client requests per variant logged after `since_row` (shadow runs left out)."""
    con = sqlite3.connect(f"file:{fw.db}?mode=ro", uri=True)
    rows = dict(con.execute("SELECT variant, count(*) FROM requests WHERE row_id > ? AND variant IS NOT NULL "
                            "AND shadow_of IS NULL GROUP BY variant", (since_row,)).fetchall())
    con.close()
    return rows


def last_row(fw) -> int:
    con = sqlite3.connect(f"file:{fw.db}?mode=ro", uri=True)
    n = con.execute("SELECT coalesce(max(row_id), 0) FROM requests").fetchone()[0]
    con.close()
    return n


def shadow_of(fw, rid: str) -> bool:
    con = sqlite3.connect(f"file:{fw.db}?mode=ro", uri=True)
    n = con.execute("SELECT count(*) FROM requests WHERE shadow_of = ?", (rid,)).fetchone()[0]
    con.close()
    return n == 1


def send(fw, users: range, prefix: str, wait_for_shadows: bool = False) -> list[tuple[str, str]]:
    out = []
    for i in users:
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", timeout=60,
                       json={"model": "support-bot", "user": f"{prefix}{i}", "max_tokens": 4,
                             "messages": [{"role": "user", "content": f"ticket {i}: my order is late"}]})
        assert r.status_code == 200, r.text
        rid, variant = r.headers["x-request-id"], r.headers["x-flywheel-variant"]
        if wait_for_shadows and variant == "gpt-4o":
            # One at a time: a shadow finding the local model busy would be shed (by design).
            poll(lambda: shadow_of(fw, rid), timeout=60, what="the request's shadow run")
        out.append((rid, variant))
    return out


def test_split_shadow_eval_promotion_and_automatic_rollback(start_flywheel, tmp_path):
    up, judge = FakeUpstream().start(), FakeJudge()
    try:
        cfg = base_config(up.url, up.url)
        cfg["upstreams"].append(upstream_cfg("judge", judge.url))
        cfg["routes"].insert(0, {"model": "judge-*", "upstreams": ["judge"]})
        cfg["local_models"] = [{"name": "tiny", "path": str(QWEN)}]
        cfg["inference"] = {"slots": 2, "max_queued": 64}
        cfg["policies"] = [{
            "model": "support-bot",
            "variants": [{"target": "tiny", "weight": 10}, {"target": "gpt-4o", "weight": 90}],
            "fallback": ["gpt-4o"],
            "shadow": {"target": "tiny", "rate": 1, "max_concurrent": 64},
            "rollout": {"steps": [100], "step_seconds": 3600, "check_seconds": 0.2, "window_seconds": 3600,
                        "min_requests": 5, "min_feedback": 5, "max_acceptance_drop": 0.2, "max_error_rate": 0.5},
        }]
        fw = start_flywheel(cfg)

        # 1. Split and shadowed: about 10% local, and the frontier's answers shadowed by the candidate.
        start = last_row(fw)
        first = send(fw, range(60), "a", wait_for_shadows=True)
        split = shares(fw, start)
        assert set(split) == {"tiny", "gpt-4o"} and split["tiny"] < split["gpt-4o"], split
        frontier = [rid for rid, v in first if v == "gpt-4o"]

        # 2. Evaluation: the shadow pairs judged offline (the frontier wins: the candidate's weights are random),
        # and a golden set whose gate the candidate fails: promotion is refused.
        p = run_cli(fw.binary, "eval", "--from-shadows", "--candidate", "tiny", "--judge", "judge-fair",
                    "--gateway", fw.base_url, "--db", str(fw.db), "--json", timeout=300)
        assert p.returncode == 0, p.stderr
        judged = json.loads(p.stdout)["judge"]
        assert judged["losses"] == len(frontier) and judged["wins"] == 0
        golden = tmp_path / "golden.jsonl"
        golden.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"ticket {i}: my order is late"},
                                                           {"role": "assistant", "content": f"echo: ticket {i}: my order is late"}]}) + "\n"
                                  for i in range(5)))
        p = run_cli(fw.binary, "eval", "--dataset", str(golden), "--candidate", "tiny", "--max-tokens", "4",
                    "--min-pass-rate", "0.8", "--gateway", fw.base_url, "--db", str(fw.db), timeout=300)
        assert p.returncode == 3
        p = run_cli(fw.binary, "promote", "support-bot", "--route", "tiny", "--weight", "50", "--db", str(fw.db))
        assert p.returncode == 1 and "failed its gate" in p.stderr

        # 3. Promoted anyway (forced, recorded so): the share moves, measured from the log.
        p = run_cli(fw.binary, "promote", "support-bot", "--route", "tiny", "--weight", "50", "--force",
                    "--reason", "canary despite the gate", "--db", str(fw.db))
        assert p.returncode == 0, p.stderr
        poll(lambda: "promote by cli:" in fw.stderr(), timeout=30, what="the promotion applied")
        start = last_row(fw)
        second = send(fw, range(60, 140), "b")
        after = shares(fw, start)
        assert 0.3 <= after.get("tiny", 0) / sum(after.values()) <= 0.7, after

        # 4. A forced regression: users reject the candidate's answers and accept the frontier's. The rollout
        # guardrail (acceptance) takes the candidate back to 0% by itself.
        for rid, variant in first + second:
            fw.wait_logged(rid)
            r = httpx.post(f"{fw.base_url}/v1/feedback", json={"request_id": rid, "signal": "rejected" if variant == "tiny" else "accepted"})
            assert r.status_code == 200
        poll(lambda: "rolled back to 0%" in fw.stderr(), timeout=60, what="the automatic rollback")
        poll(lambda: "rollout_rollback by daemon:rollout" in fw.stderr(), timeout=30, what="the rollback applied")
        start = last_row(fw)
        send(fw, range(140, 170), "c")
        assert set(shares(fw, start)) == {"gpt-4o"}
        changes = [json.loads(l) for l in run_cli(fw.binary, "promotions", "support-bot", "--db", str(fw.db), "--json").stdout.splitlines()]
        assert [c["action"] for c in changes][:2] == ["rollout_rollback", "promote"]
        assert "acceptance" in changes[0]["reason"] and changes[1]["forced"] is True
    finally:
        judge.stop()
        up.stop()

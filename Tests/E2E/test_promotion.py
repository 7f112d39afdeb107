"""flywheel promote / rollback / promotions: the live split changes without a restart, a promotion needs a passing
evaluation of its target (unless forced), every change is recorded, and the configuration's own split wins
again when the file changes.
"""
from __future__ import annotations

import json
import signal

import pytest

from conftest import REPO_ROOT, base_config, run_cli, yaml_dump
from fake_upstream import FakeUpstream
from helpers import httpx, poll

QWEN = REPO_ROOT / "Tests" / "FlywheelEngineTests" / "Fixtures" / "model-qwen2-q8.gguf"
USERS = [f"user-{n}" for n in range(60)]


def config(up_url: str, weights=(0, 0, 100)) -> dict:
    cfg = base_config(up_url, up_url)
    cfg["local_models"] = [{"name": "tiny", "path": str(QWEN)}]
    cfg["policies"] = [{"model": "support-bot", "variants": [
        {"target": "gpt-4o-candidate", "weight": weights[0]}, {"target": "tiny", "weight": weights[1]},
        {"target": "gpt-4o", "weight": weights[2]}]}]
    return cfg


def variants_seen(fw) -> dict[str, int]:
    seen: dict[str, int] = {}
    for u in USERS:
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", timeout=60,
                       json={"model": "support-bot", "user": u, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        seen[r.headers["x-flywheel-variant"]] = seen.get(r.headers["x-flywheel-variant"], 0) + 1
    return seen


def cli(fw, *args):
    return run_cli(fw.binary, *args, "--db", str(fw.db))


def golden(tmp_path, n=6):
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"echo: q{i}"}]}) + "\n" for i in range(n)))
    return path


@pytest.fixture
def up():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


def test_promotion_needs_a_passing_eval_goes_live_and_rolls_back(start_flywheel, up, tmp_path):
    fw = start_flywheel(config(up.url), name="main")
    assert variants_seen(fw) == {"gpt-4o": len(USERS)}
    # No evaluation on record: refused, and nothing changes.
    p = cli(fw, "promote", "support-bot", "--route", "gpt-4o-candidate", "--weight", "50")
    assert p.returncode == 1 and "no evaluation of 'gpt-4o-candidate'" in p.stderr
    # A passing evaluation, then the promotion goes live within a second, without a restart.
    e = run_cli(fw.binary, "eval", "--gateway", fw.base_url, "--db", str(fw.db), "--dataset", str(golden(tmp_path)),
                "--candidate", "gpt-4o-candidate", "--min-pass-rate", "1", "--json")
    assert e.returncode == 0, e.stderr
    run_id = json.loads(e.stdout)["run_id"]
    p = cli(fw, "promote", "support-bot", "--route", "gpt-4o-candidate", "--weight", "50", "--reason", "passed the golden set")
    assert p.returncode == 0, p.stderr
    assert "gpt-4o-candidate 50%, tiny 0%, gpt-4o 50%" in p.stdout and run_id in p.stdout
    poll(lambda: "promote by cli:" in fw.stderr(), timeout=30, what="the daemon applying the promotion")
    seen = variants_seen(fw)
    assert set(seen) == {"gpt-4o-candidate", "gpt-4o"} and 15 <= seen["gpt-4o-candidate"] <= 45, seen
    # The local model's evaluation fails (random weights): refused, unless forced (and then recorded so).
    e = run_cli(fw.binary, "eval", "--gateway", fw.base_url, "--db", str(fw.db), "--dataset", str(golden(tmp_path)),
                "--candidate", "tiny", "--max-tokens", "3", "--min-pass-rate", "0.9")
    assert e.returncode == 3
    p = cli(fw, "promote", "support-bot", "--route", "tiny", "--weight", "10")
    assert p.returncode == 1 and "failed its gate" in p.stderr
    # An evaluation without a gate proves nothing: still refused.
    e = run_cli(fw.binary, "eval", "--gateway", fw.base_url, "--db", str(fw.db), "--dataset", str(golden(tmp_path)),
                "--candidate", "tiny", "--max-tokens", "3")
    assert e.returncode == 0
    p = cli(fw, "promote", "support-bot", "--route", "tiny", "--weight", "10")
    assert p.returncode == 1 and "ran no gate" in p.stderr
    p = cli(fw, "promote", "support-bot", "--route", "tiny", "--weight", "10", "--force", "--reason", "canary")
    assert p.returncode == 0 and "warning" in p.stderr
    # Rollback restores the split before the latest promotion.
    p = cli(fw, "rollback", "support-bot", "--reason", "canary looked bad")
    assert p.returncode == 0, p.stderr
    assert "gpt-4o-candidate 50%, tiny 0%, gpt-4o 50%" in p.stdout
    poll(lambda: "rollback by cli:" in fw.stderr(), timeout=30, what="the daemon applying the rollback")
    assert "tiny" not in variants_seen(fw)
    # Every change is on record, newest first: what, from where, why, on which evaluation, forced or not.
    p = cli(fw, "promotions", "support-bot", "--json")
    changes = [json.loads(line) for line in p.stdout.splitlines()]
    assert [c["action"] for c in changes] == ["rollback", "promote", "promote", "config"]
    assert changes[1]["forced"] is True and changes[1]["reason"] == "canary"
    assert changes[2]["eval_run"] == run_id and changes[2]["forced"] is False
    assert changes[3]["source"] == "daemon" and changes[0]["source"].startswith("cli:")
    assert "FORCED" in cli(fw, "promotions").stdout
    # A promotion outlives a restart with the same configuration ...
    assert fw.stop() == 0
    fw3 = start_flywheel(config(up.url), name="main")  # the same log file
    assert fw3.db == fw.db
    seen = variants_seen(fw3)
    assert set(seen) == {"gpt-4o-candidate", "gpt-4o"}, seen
    # ... and an edited configuration wins over it (recorded as a config change).
    fw3.config_path.write_text(yaml_dump(dict(config(up.url, weights=(0, 0, 1)), log={"path": str(fw.db)})))
    fw3.send(signal.SIGHUP)
    poll(lambda: "reloaded policies" in fw3.stderr(), timeout=30, what="the reload")
    assert variants_seen(fw3) == {"gpt-4o": len(USERS)}
    assert json.loads(cli(fw3, "promotions", "-n", "1", "--json").stdout)["action"] == "config"


def test_promote_refuses_what_it_cannot_do(start_flywheel, up):
    fw = start_flywheel(config(up.url))
    for args, expected in [
        (["promote", "nope", "--route", "tiny", "--weight", "5"], "no traffic policy for 'nope'"),
        (["promote", "support-bot", "--route", "claude", "--weight", "5", "--force"], "not a variant"),
        (["promote", "support-bot", "--route", "tiny", "--weight", "150", "--force"], "0...100"),
        (["rollback", "support-bot"], "no promotion or rollout step"),
    ]:
        p = cli(fw, *args)
        assert p.returncode != 0 and expected in p.stderr, (args, p.stderr)
    p = run_cli(fw.binary, "promotions", "--db", str(fw.db.parent / "missing.db"))
    assert p.returncode != 0 and "no log at" in p.stderr
    # A promotion that changes nothing records nothing.
    before = cli(fw, "promotions", "--json").stdout
    p = cli(fw, "promote", "support-bot", "--route", "gpt-4o", "--weight", "100")
    assert p.returncode == 0 and "nothing recorded" in p.stdout and cli(fw, "promotions", "--json").stdout == before
    # Another SQLite file is never written to.
    import sqlite3
    other = fw.db.parent / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    p = run_cli(fw.binary, "promotions", "--db", str(other))
    assert p.returncode == 1 and "not a Flywheel log" in p.stderr
    con = sqlite3.connect(other)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["t"]
    con.close()

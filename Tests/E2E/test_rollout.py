"""Progressive rollout: once the candidate's evaluation passes, the daemon raises its share step by step while the
guardrails hold, and rolls it back at once (logged, recorded, webhook notified) when its error rate or its
acceptance falls behind. Steps are short here (1 s) and every wait is for an event: a line on the daemon's
stderr, a webhook call, a row in the log.
"""
from __future__ import annotations

import json

import pytest

from conftest import base_config, run_cli, upstream_cfg
from fake_upstream import FakeUpstream
from helpers import LoopbackHTTPServer, httpx, poll


class Hook:
    """A webhook receiver that keeps what it was sent."""

    def __init__(self):
        self.events: list[dict] = []
        self.server = LoopbackHTTPServer(self.receive, path="/hook")
        self.url = self.server.url

    def receive(self, handler, raw: bytes) -> None:
        self.events.append(json.loads(raw))
        handler.send_response(204)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def stop(self):
        self.server.stop()


@pytest.fixture
def env(start_flywheel):
    base, cand, hook = FakeUpstream().start(), FakeUpstream().start(), Hook()
    cfg = base_config(base.url, base.url)
    cfg["upstreams"].append(upstream_cfg("cand", cand.url, retries=0))
    cfg["routes"].insert(0, {"model": "gpt-4o-candidate", "upstreams": ["cand"]})
    cfg["policies"] = [{
        "model": "support-bot",
        "variants": [{"target": "gpt-4o-candidate", "weight": 0}, {"target": "gpt-4o", "weight": 100}],
        "rollout": {"steps": [20, 50, 100], "step_seconds": 1, "check_seconds": 0.2, "window_seconds": 120,
                    "min_requests": 5, "max_error_rate": 0.2, "min_feedback": 4, "max_acceptance_drop": 0.2,
                    "webhook": hook.url},
    }]
    fw = start_flywheel(cfg)
    yield fw, cand, hook
    hook.stop()
    cand.stop()
    base.stop()


def traffic(fw, n: int = 60, prefix: str = "u") -> dict[str, list[str]]:
    """n users' requests; ids by the variant that answered."""
    out: dict[str, list[str]] = {}
    for i in range(n):
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", timeout=30,
                       json={"model": "support-bot", "user": f"{prefix}{i}", "messages": [{"role": "user", "content": f"ticket {i}"}]})
        out.setdefault(r.headers.get("x-flywheel-variant", "?"), []).append(r.headers["x-request-id"])
    return out


def pass_eval(fw, tmp_path):
    data = tmp_path / "golden.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"echo: q{i}"}]}) + "\n" for i in range(4)))
    p = run_cli(fw.binary, "eval", "--gateway", fw.base_url, "--db", str(fw.db), "--dataset", str(data),
                "--candidate", "gpt-4o-candidate", "--min-pass-rate", "1")
    assert p.returncode == 0, p.stderr


def test_a_rollout_waits_for_an_eval_climbs_the_steps_and_rolls_back_on_errors(env, tmp_path):
    fw, cand, hook = env
    poll(lambda: "waiting for a passing evaluation" in fw.stderr(), timeout=30, what="the rollout waiting for an eval")
    assert set(traffic(fw, 20)) == {"gpt-4o"}
    pass_eval(fw, tmp_path)
    poll(lambda: "step to 20%" in fw.stderr(), timeout=30, what="the first step")
    # Traffic for the guardrails; the steps follow as each one's time has passed.
    seen = traffic(fw, 60)
    assert "gpt-4o-candidate" in seen, seen
    poll(lambda: "step to 100%" in fw.stderr(), timeout=60, what="the last step")
    assert [e["event"] for e in hook.events] == ["rollout_step"] * 3
    assert [e["weight"] for e in hook.events] == [20, 50, 100]
    assert set(traffic(fw, 10, "all")) == {"gpt-4o-candidate"}
    # The candidate starts failing: the error-rate guardrail rolls it back at once.
    cand.fail(500, count=1000)
    traffic(fw, 20, "bad")
    poll(lambda: "rolled back to 0%" in fw.stderr(), timeout=60, what="the automatic rollback")
    cand.reset()
    assert "error rate" in fw.stderr()
    poll(lambda: hook.events[-1]["event"] == "rollout_rollback", timeout=10, what="the rollback webhook")
    assert hook.events[-1]["target"] == "gpt-4o-candidate" and hook.events[-1]["weight"] == 0
    poll(lambda: set(traffic(fw, 10, "after")) == {"gpt-4o"}, timeout=30, what="traffic back on gpt-4o")
    changes = [json.loads(l) for l in run_cli(fw.binary, "promotions", "support-bot", "--db", str(fw.db), "--json").stdout.splitlines()]
    assert [c["action"] for c in changes] == ["rollout_rollback", "rollout_step", "rollout_step", "rollout_step", "config"]
    assert changes[0]["source"] == "daemon:rollout" and "error rate" in changes[0]["reason"]
    assert changes[-2]["eval_run"]  # the first step relied on the evaluation
    # An operator's rollback cannot undo the guardrails' rollback (that would put the failing target back).
    p = run_cli(fw.binary, "rollback", "support-bot", "--db", str(fw.db))
    assert p.returncode == 1 and "guardrails already took the split back" in p.stderr
    # Rolled back: it stays down until an operator acts.
    traffic(fw, 10, "later")
    assert fw.stderr().count("rolled back to 0%") == 1
    assert "step to 20%" not in fw.stderr().split("rolled back to 0%")[1]


def test_an_operators_rollback_or_promotion_to_zero_stops_the_rollout_and_a_promotion_resumes_it(env, tmp_path):
    """Without the stop, the rollout's next check would take again the step the operator just undid."""
    fw, _, _ = env
    pass_eval(fw, tmp_path)
    poll(lambda: "step to 20%" in fw.stderr(), timeout=30, what="the first step")

    def split() -> dict[str, float]:
        last = json.loads(run_cli(fw.binary, "promotions", "support-bot", "--db", str(fw.db), "--json", "-n", "1").stdout)
        return {v["target"]: v["weight"] for v in last["variants"]}

    p = run_cli(fw.binary, "rollback", "support-bot", "--db", str(fw.db))
    assert p.returncode == 0, p.stderr
    poll(lambda: "stopped by the operator's rollback" in fw.stderr(), timeout=30, what="the rollout stopping")
    traffic(fw, 20, "held")  # checks keep running while traffic flows
    assert split()["gpt-4o-candidate"] == 0 and fw.stderr().count("rollout_step by daemon:rollout") == 1
    # A promotion resumes it from the share it sets; a promotion to 0 stops it again.
    p = run_cli(fw.binary, "promote", "support-bot", "--db", str(fw.db), "--route", "gpt-4o-candidate", "--weight", "20")
    assert p.returncode == 0, p.stderr
    poll(lambda: traffic(fw, 10, "resumed") and "step to 50%" in fw.stderr(), timeout=60,
         what="the next step after the promotion")  # traffic for the step's min_requests
    p = run_cli(fw.binary, "promote", "support-bot", "--db", str(fw.db), "--route", "gpt-4o-candidate", "--weight", "0")
    assert p.returncode == 0, p.stderr
    poll(lambda: "stopped by the operator's promote" in fw.stderr(), timeout=30, what="the rollout stopping again")
    traffic(fw, 20, "held-again")
    assert split()["gpt-4o-candidate"] == 0 and fw.stderr().count("rollout_step by daemon:rollout") == 2  # 20%, then 50%


def test_falling_acceptance_rolls_the_candidate_back(env, tmp_path):
    fw, _, hook = env
    pass_eval(fw, tmp_path)
    poll(lambda: "step to 20%" in fw.stderr(), timeout=30, what="the first step")
    seen = traffic(fw, 80)
    # Users accept the frontier's answers and reject the candidate's.
    for variant, ids in seen.items():
        for rid in ids:
            fw.wait_logged(rid)
            r = httpx.post(f"{fw.base_url}/v1/feedback", json={"request_id": rid, "signal": "rejected" if variant == "gpt-4o-candidate" else "accepted"})
            assert r.status_code == 200
    poll(lambda: "rolled back to 0%" in fw.stderr(), timeout=60, what="the acceptance rollback")
    assert "acceptance" in fw.stderr().split("rolled back to 0%")[1].splitlines()[0]
    assert hook.events[-1]["event"] == "rollout_rollback"

"""flywheel eval: a golden set run through the gateway, deterministic checks against the references, a pairwise
judge asked in both orders, results stored and resumable, gates that set the exit status.

The candidate and baseline are models the gateway routes to the fake upstream (which answers "echo: <last user
message>"); the judges are a small fake of our own, routed as `judge-*`, whose behaviour the model name picks:
`judge-fair` prefers an answer that starts with "echo:" (consistently, whatever its position), `judge-biased`
always says [[A]], `judge-garbage` never gives a verdict, `judge-flaky` gives garbage on the first try only.
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest

from conftest import REPO_ROOT, base_config, run_cli, upstream_cfg
from fake_upstream import FakeUpstream
from helpers import LoopbackHTTPServer, httpx, send_json


QWEN = REPO_ROOT / "Tests" / "FlywheelEngineTests" / "Fixtures" / "model-qwen2-q8.gguf"


class FakeJudge:
    def __init__(self):
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.server = LoopbackHTTPServer(self.answer)
        self.url = self.server.url

    def answer(self, handler, raw: bytes) -> None:
        body = json.loads(raw)
        model = body["model"]
        text = body["messages"][-1]["content"]
        with self.lock:
            self.calls[model] = self.calls.get(model, 0) + 1
            n = self.calls[model]
        a = re.search(r"<answer_a>\n(.*?)\n</answer_a>", text, re.S).group(1)
        b = re.search(r"<answer_b>\n(.*?)\n</answer_b>", text, re.S).group(1)
        if model == "judge-fair":
            good_a, good_b = a.startswith("echo:"), b.startswith("echo:")
            reply = "Both are fine. [[TIE]]" if good_a == good_b else ("A is right. [[A]]" if good_a else "B is right. [[B]]")
        elif model == "judge-biased":
            reply = "I always like the first one. [[A]]"
        elif model == "judge-slow":
            self.release.wait(30)
            reply = "[[A]]"
        elif model == "judge-flaky" and n % 2 == 1:
            reply = "Hmm, hard to say."
        elif model == "judge-flaky":
            reply = "[[A]] or [[B]]... on reflection [[TIE]]"
        else:
            reply = "I cannot decide."
        send_json(handler, 200, {"id": "j", "object": "chat.completion", "created": 0, "model": model,
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}})

    def stop(self):
        self.release.set()
        self.server.stop()


@pytest.fixture
def setup(start_flywheel):
    up = FakeUpstream().start()
    judge = FakeJudge()
    cfg = base_config(up.url, up.url)
    cfg["upstreams"].append(upstream_cfg("judge", judge.url))
    cfg["upstreams"].append(upstream_cfg("down", "http://127.0.0.1:9/v1", retries=0))
    cfg["upstreams"].append(upstream_cfg("flaky", up.url, retries=0))
    cfg["routes"] = [{"model": "judge-*", "upstreams": ["judge"]}, {"model": "broken-model", "upstreams": ["down"]},
                     {"model": "gpt-4o-overloaded", "upstreams": ["flaky"]}] + cfg["routes"]
    cfg["prices"]["gpt-4o"] = {"input": 2.5, "output": 10}
    cfg["local_models"] = [{"name": "tiny", "path": str(QWEN)}]
    cfg["policies"] = [{"model": "support-bot", "variants": [{"target": "gpt-4o", "weight": 1}],
                        "shadow": {"target": "tiny", "rate": 1, "max_concurrent": 8}}]
    fw = start_flywheel(cfg)
    yield fw, up, judge
    judge.stop()
    up.stop()


def golden(path: Path, n: int = 10, bad_lines: bool = True) -> Path:
    """n items: even ones have the echo answer as reference (the candidate passes), odd ones another text."""
    lines = []
    for i in range(n):
        ref = f"echo: question {i}" if i % 2 == 0 else f"the right answer is {i}"
        lines.append(json.dumps({"messages": [{"role": "user", "content": f"question {i}"},
                                              {"role": "assistant", "content": ref}],
                                 "flywheel_request_id": f"src-{i}"}))
    if bad_lines:
        lines.insert(3, "{not json")
        lines.insert(6, json.dumps({"something": "else"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def evaluate(fw, *args: str):
    p = run_cli(fw.binary, "eval", "--gateway", fw.base_url, "--db", str(fw.db), "--json", *args, timeout=300)
    summary = json.loads(p.stdout) if p.stdout.strip() else None
    return p, summary


def test_a_golden_set_is_checked_and_judged_in_both_orders_and_stored(setup, tmp_path):
    fw, up, judge = setup
    data = golden(tmp_path / "golden.jsonl")
    p, s = evaluate(fw, "--dataset", str(data), "--candidate", "gpt-4o", "--judge", "judge-fair", "--min-pass-rate", "0.4")
    assert p.returncode == 0, p.stderr
    # The two bad lines are named with their numbers; the rest is evaluated.
    assert "line 4 skipped: not JSON" in p.stderr and "line 7 skipped: no 'messages'" in p.stderr
    assert s["items"] == 10 and s["skipped_lines"] == 2 and s["status"] == "passed"
    c = s["candidate"]
    assert (c["answered"], c["checked"], c["passed"], c["pass_rate"]) == (10, 10, 5, 0.5)
    assert 0.2 < c["pass_rate_ci95"][0] < 0.5 < c["pass_rate_ci95"][1] < 0.8
    assert s["baseline_is_reference"] is True
    # Where the reference is the echo too, the judge says tie; elsewhere the candidate wins in both orders.
    j = s["judge"]
    assert (j["wins"], j["ties"], j["losses"], j["errors"]) == (5, 5, 0, 0)
    assert j["win_rate"] == 0.75 and j["consistent_under_swap"] == 1.0
    assert judge.calls["judge-fair"] == 20  # two orders per item
    assert c["cost_usd"] > 0 and c["latency_ms"]["p50"] > 0
    # Stored: the run with its summary, and each item with its requests, checks and the order of each verdict.
    con = sqlite3.connect(fw.db)
    run = con.execute("SELECT candidate, baseline, judge, status, summary FROM eval_runs WHERE id = ?", (s["run_id"],)).fetchone()
    assert run[:4] == ("gpt-4o", None, "judge-fair", "passed") and json.loads(run[4])["items"] == 10
    items = {row[0]: json.loads(row[1]) for row in con.execute("SELECT item, result FROM eval_items WHERE run_id = ?", (s["run_id"],))}
    con.close()
    assert sorted(items) == [1, 2, 3, 5, 6, 8, 9, 10, 11, 12]  # the dataset's line numbers
    first = items[1]
    assert first["source_id"] == "src-0" and first["candidate"]["checks"] == {"exact": True}
    assert [o["order"] for o in first["judge"]["orders"]] == ["candidate_first", "candidate_second"]
    assert all(o["verdict"] == "TIE" and o["request_id"] for o in first["judge"]["orders"])
    # The candidate's requests are in the log under the run's tag; the judge's under eval-judge.
    rid = first["candidate"]["request_id"]
    row = fw.wait_logged(rid)
    assert {"eval", f"eval:{s['run_id']}"} <= set(row["tags"]) and row["model_requested"] == "gpt-4o"
    jrow = fw.wait_logged(first["judge"]["orders"][0]["request_id"])
    assert "eval-judge" in jrow["tags"]


def test_an_evaluations_own_requests_stay_out_of_exports_and_drift_unless_asked_for(setup, tmp_path):
    """A golden-set replay is not traffic: its requests (and its judge's) would put frontier answers to golden
    prompts, unreviewed, into the next training set, and make a drift check see the golden set as traffic."""
    fw, up, judge = setup
    app = []
    for i in range(3):
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", timeout=30,
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": f"app question {i}"}]})
        assert r.status_code == 200
        app.append(r.headers["x-request-id"])
    p, s = evaluate(fw, "--dataset", str(golden(tmp_path / "golden.jsonl", bad_lines=False)), "--candidate", "gpt-4o",
                    "--judge", "judge-fair")
    assert p.returncode == 0, p.stderr
    items = sqlite3.connect(fw.db).execute("SELECT result FROM eval_items WHERE run_id = ?", (s["run_id"],)).fetchall()
    evals = [json.loads(r[0])["candidate"]["request_id"] for r in items]
    judged = [o["request_id"] for r in items for o in json.loads(r[0])["judge"]["orders"]]
    for rid in app + evals + judged:
        fw.wait_logged(rid)

    def exported(*flags: str) -> set[str]:
        out = tmp_path / f"sft{len(flags)}.jsonl"
        p = run_cli(fw.binary, "export", "--db", str(fw.db), "--format", "sft", "--out", str(out),
                    "--validation-fraction", "0", "--keep-duplicates", *flags)
        assert p.returncode == 0, p.stderr
        manifest = json.loads(out.with_name(out.stem + ".manifest.json").read_text())
        assert manifest["options"]["excluded_tags"] == ([] if flags else ["eval", "eval-judge"])
        return {json.loads(line)["flywheel_request_id"] for line in out.read_text().splitlines()}

    assert exported() == set(app)
    assert exported("--include-evals") == set(app) | set(evals) | set(judged)
    # drift: the window holds the 3 app requests only (fewer than 30: not judged, and it says how many it saw)
    baseline = tmp_path / "sft0.jsonl"
    p = run_cli(fw.binary, "drift", "--db", str(fw.db), "--baseline", str(baseline), "--window", "1h", "--json")
    assert p.returncode == 2, p.stderr
    assert json.loads(p.stdout)["window_requests"] == 3


def test_a_failed_gate_exits_3_and_is_recorded(setup, tmp_path):
    fw, _, _ = setup
    data = golden(tmp_path / "golden.jsonl", bad_lines=False)
    p, s = evaluate(fw, "--dataset", str(data), "--candidate", "gpt-4o", "--min-pass-rate", "0.9", "--max-regression", "0.1")
    assert p.returncode == 3, p.stderr
    assert s["status"] == "failed" and not s["passed"]
    gates = {g["name"]: g for g in s["gates"]}
    assert gates["min_pass_rate"]["passed"] is False and gates["min_pass_rate"]["value"] == 0.5
    assert gates["max_regression"]["passed"] is False and gates["max_regression"]["value"] == 0.5
    table = run_cli(fw.binary, "eval", "--gateway", fw.base_url, "--db", str(fw.db), "--dataset", str(data),
                    "--candidate", "gpt-4o", "--min-pass-rate", "0.9")
    assert table.returncode == 3 and "gate min_pass_rate 0.9: FAILED (0.500)" in table.stdout


def test_a_position_biased_judge_gives_ties_and_a_garbage_judge_errors_never_wins(setup, tmp_path):
    fw, _, judge = setup
    data = golden(tmp_path / "golden.jsonl", n=4, bad_lines=False)
    p, s = evaluate(fw, "--dataset", str(data), "--candidate", "gpt-4o", "--judge", "judge-biased")
    assert p.returncode == 0, p.stderr
    assert s["status"] == "completed"  # no gate: nothing a promotion may rely on
    j = s["judge"]
    assert (j["wins"], j["ties"], j["losses"]) == (0, 4, 0) and j["consistent_under_swap"] == 0.0
    p, s = evaluate(fw, "--dataset", str(data), "--candidate", "gpt-4o", "--judge", "judge-garbage",
                    "--judge-retries", "1", "--min-win-rate", "0.5")
    assert p.returncode == 3, p.stderr
    j = s["judge"]
    assert (j["wins"], j["ties"], j["losses"], j["errors"]) == (0, 0, 0, 4) and j["win_rate"] is None
    assert judge.calls["judge-garbage"] == 4 * 2 * 2  # each order asked once more
    # A judge that answers garbage once and then decides is retried, not counted as an error.
    p, s = evaluate(fw, "--dataset", str(data), "--candidate", "gpt-4o", "--judge", "judge-flaky", "--concurrency", "1")
    assert p.returncode == 0 and s["judge"]["errors"] == 0 and s["judge"]["ties"] == 4


def test_an_interrupted_run_resumes_without_asking_again(setup, tmp_path):
    fw, up, _ = setup
    data = golden(tmp_path / "golden.jsonl", bad_lines=False)
    p, s = evaluate(fw, "--dataset", str(data), "--candidate", "gpt-4o")
    assert p.returncode == 0
    run = s["run_id"]
    con = sqlite3.connect(fw.db)
    con.execute("DELETE FROM eval_items WHERE run_id = ? AND item > 6", (run,))
    con.commit()
    con.close()
    before = len(up.requests)
    p, resumed = evaluate(fw, "--dataset", str(data), "--candidate", "gpt-4o", "--resume", run)
    assert p.returncode == 0, p.stderr
    assert "resuming" in p.stderr and len(up.requests) - before == 4
    assert resumed["candidate"]["passed"] == s["candidate"]["passed"] and resumed["items"] == 10
    wrong = run_cli(fw.binary, "eval", "--gateway", fw.base_url, "--db", str(fw.db), "--dataset", str(data),
                    "--candidate", "gpt-4o-mini", "--resume", run)
    assert wrong.returncode != 0 and "give the same options" in wrong.stderr


def test_edge_cases_empty_dataset_unreachable_candidate_and_the_log_as_a_golden_set(setup, tmp_path):
    fw, _, _ = setup
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    p, _ = evaluate(fw, "--dataset", str(empty), "--candidate", "gpt-4o")
    assert p.returncode == 1 and "no usable items" in p.stderr
    data = golden(tmp_path / "golden.jsonl", n=3, bad_lines=False)
    p, s = evaluate(fw, "--dataset", str(data), "--candidate", "broken-model")
    assert p.returncode == 1 and "answered no item" in p.stderr
    assert s["status"] == "incomplete" and s["candidate"]["errors"] == 3
    # Logged traffic as the golden set: its answers are the references.
    for q in ("alpha", "beta", "gamma"):
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": q}]},
                       headers={"x-flywheel-tags": "golden"})
        fw.wait_logged(r.headers["x-request-id"])
    p, s = evaluate(fw, "--from-log", "--tag", "golden", "--candidate", "gpt-4o", "--baseline", "gpt-4o-mini",
                    "--max-regression", "0")
    assert p.returncode == 0, p.stderr
    assert s["items"] == 3 and s["candidate"]["passed"] == 3 and s["baseline"]["passed"] == 3
    assert s["baseline_is_reference"] is False and s["baseline"]["cost_usd"] > 0
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("Say which one is better.")
    p = run_cli(fw.binary, "eval", "--gateway", fw.base_url, "--db", str(fw.db), "--dataset", str(data), "--candidate", "gpt-4o",
                "--judge", "judge-fair", "--rubric-file", str(rubric))
    assert p.returncode != 0 and "[[A]], [[B]] or [[TIE]]" in p.stderr
    bad = run_cli(fw.binary, "eval", "--candidate", "x", "--db", str(fw.db))
    assert bad.returncode != 0 and "--dataset FILE, --from-log or --from-shadows" in bad.stderr


def test_a_judge_that_times_out_is_an_error_and_an_overloaded_candidate_is_asked_again(setup, tmp_path):
    fw, up, judge = setup
    data = golden(tmp_path / "golden.jsonl", n=2, bad_lines=False)
    p, s = evaluate(fw, "--dataset", str(data), "--candidate", "gpt-4o", "--judge", "judge-slow", "--timeout", "1",
                    "--judge-retries", "0")
    judge.release.set()
    assert p.returncode == 0, p.stderr
    assert s["judge"]["errors"] == 2 and s["judge"]["wins"] == 0
    # 503s from the candidate (the gateway passes them on: this upstream is not retried) are asked again.
    up.fail(503, count=2, retry_after=0)
    p, s = evaluate(fw, "--dataset", str(data), "--candidate", "gpt-4o-overloaded", "--concurrency", "1")
    assert p.returncode == 0, p.stderr
    assert s["candidate"]["answered"] == 2 and s["candidate"]["errors"] == 0
    con = sqlite3.connect(fw.db)
    attempts = [json.loads(r[0])["candidate"]["attempts"] for r in con.execute("SELECT result FROM eval_items WHERE run_id = ?", (s["run_id"],))]
    con.close()
    assert sorted(attempts) == [1, 3]


def test_shadow_pairs_are_judged_offline_from_the_log(setup, tmp_path):
    fw, up, judge = setup
    from helpers import poll

    def shadows_logged(of=None):
        con = sqlite3.connect(fw.db)
        if of is None:
            n = con.execute("SELECT count(*) FROM requests WHERE shadow_of IS NOT NULL").fetchone()[0]
        else:
            n = con.execute("SELECT count(*) FROM requests WHERE shadow_of = ?", (of,)).fetchone()[0]
        con.close()
        return n
    ids = []
    for i in range(4):
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", timeout=60, headers={"x-flywheel-tags": "shadowed"},
                       json={"model": "support-bot", "max_tokens": 4, "messages": [{"role": "user", "content": f"ticket {i}"}]})
        assert r.status_code == 200 and r.headers["x-flywheel-variant"] == "gpt-4o"
        ids.append(r.headers["x-request-id"])
        # Each shadow run is logged before the next request: a local shadow target with generations waiting
        # sheds the next shadow by design, so requests sent faster than the model answers would lose some.
        poll(lambda: shadows_logged(of=ids[-1]) == 1, timeout=60, what=f"the shadow row of request {i}")
    poll(lambda: shadows_logged() == 4, timeout=60, what="the four shadow rows")
    before = len(up.requests)
    # The local model (gibberish) against the frontier's echo: the fair judge prefers the echo in both orders.
    p, s = evaluate(fw, "--from-shadows", "--candidate", "tiny", "--judge", "judge-fair")
    assert p.returncode == 0, p.stderr
    assert s["items"] == 4 and s["judge"]["losses"] == 4 and s["judge"]["consistent_under_swap"] == 1.0
    assert s["baseline"]["name"] == "the other side of each shadow pair"
    assert len(up.requests) == before  # nothing asked of the models, only of the judge
    # From the other side, the frontier wins; pairs where neither side is the candidate are named and skipped.
    p, s = evaluate(fw, "--from-shadows", "--candidate", "gpt-4o", "--judge", "judge-fair")
    assert s["judge"]["wins"] == 4
    p, _ = evaluate(fw, "--from-shadows", "--candidate", "someone-else", "--judge", "judge-fair")
    assert p.returncode == 1 and "neither side is 'someone-else'" in p.stderr
    bad = run_cli(fw.binary, "eval", "--from-shadows", "--candidate", "tiny", "--db", str(fw.db))
    assert bad.returncode != 0 and "needs --judge" in bad.stderr

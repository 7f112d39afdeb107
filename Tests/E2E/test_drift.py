"""flywheel drift: recent traffic against what the model was trained on (an export of earlier traffic): quiet when
the traffic is alike, flagged (with the signals that moved) when a new language and a new tool arrive; JSON,
table, HTML and the exit status a cron job acts on."""
from __future__ import annotations

import json
import random

from conftest import run_cli
from helpers import httpx

EN = ["invoice", "refund", "charge", "payment", "card", "billing", "parcel", "delivery", "order", "late", "address",
      "tracking", "my", "the", "is", "please", "help", "again", "not", "working"]
RU = ["заказ", "посылка", "доставка", "оплата", "счёт", "возврат", "пароль", "почта", "помогите", "пожалуйста", "мой", "не"]
TOOLS = {"route_ticket": {"type": "function", "function": {"name": "route_ticket", "parameters": {"type": "object"}}},
         "lookup_order": {"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}}


def traffic(fw, tag: str, words: list[str], tools: list[str], n: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        rid = ask(fw, " ".join(rng.choice(words) for _ in range(rng.randint(8, 30))), tag, tools)
    fw.wait_logged(rid)


def ask(fw, text: str, tag: str, tools: list[str] = ()) -> str:
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", headers={"x-flywheel-tags": tag},
                   json={"model": "gpt-4o-mini", "tools": [TOOLS[t] for t in tools],
                         "messages": [{"role": "system", "content": "Route the ticket."}, {"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def drift(fw, *args: str):
    return run_cli(fw.binary, "drift", "--db", str(fw.db), "--window", "1h", *args, timeout=180)


def test_alike_traffic_is_quiet_and_a_new_language_and_tool_are_flagged(gw, tmp_path):
    fw = gw.fw
    traffic(fw, "drift-train", EN, ["route_ticket"], 120, seed=1)
    p = run_cli(fw.binary, "export", "--format", "sft", "--out", str(tmp_path / "train.jsonl"), "--db", str(fw.db),
                "--tag", "drift-train", "--validation-fraction", "0", "--keep-duplicates")
    assert p.returncode == 0, p.stderr
    baseline = str(tmp_path / "train.jsonl")

    traffic(fw, "drift-same", EN, ["route_ticket"], 120, seed=2)
    p = drift(fw, "--baseline", baseline, "--tag", "drift-same", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    quiet = json.loads(p.stdout)
    assert quiet["status"] == "ok" and quiet["judged"] and quiet["window_requests"] == 120
    assert quiet["baseline_requests"] == 120

    traffic(fw, "drift-new", RU, ["route_ticket", "lookup_order"], 120, seed=3)
    page = tmp_path / "drift.html"
    p = drift(fw, "--baseline", baseline, "--tag", "drift-new", "--json", "--html", str(page))
    assert p.returncode == 4, p.stdout + p.stderr
    flagged = json.loads(p.stdout)
    assert flagged["status"] == "alert"
    signals = {s["name"]: s for s in flagged["signals"]}
    assert signals["script_mix"]["status"] == "alert" and "cyrillic" in signals["script_mix"]["detail"]
    assert signals["new_tools"]["status"] == "alert" and "lookup_order" in signals["new_tools"]["detail"]
    assert signals["prompt_trigrams"]["status"] in ("warn", "alert") and signals["prompt_trigrams"]["p_value"] < 0.005
    assert signals["error_rate"]["status"] == "skipped"  # an export knows no outcomes
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and "http" not in html.split("<svg", 1)[1].replace("http://www.w3.org/2000/svg", "")
    table = drift(fw, "--baseline", baseline, "--tag", "drift-new")
    assert table.returncode == 4 and "drift: ALERT" in table.stdout and "script_mix" in table.stdout


def test_a_log_window_baseline_knows_outcomes_and_bad_ranges_are_refused(gw, tmp_path):
    fw = gw.fw
    traffic(fw, "drift-log", EN, [], 60, seed=4)
    p = run_cli(fw.binary, "drift", "--db", str(fw.db), "--baseline-window", "1h", "--window", "1h", "--tag", "drift-log", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    signals = {s["name"]: s for s in json.loads(p.stdout)["signals"]}
    assert signals["error_rate"]["status"] == "ok" and signals["error_rate"]["score"] == 0
    for args, expected in [(["--window", "1h"], "--baseline FILE or --baseline-window"),
                           (["--baseline-window", "1h..2h"], "ends before it starts"),
                           (["--baseline-window", "yesterday"], "not a time")]:
        p = run_cli(fw.binary, "drift", "--db", str(fw.db), *args)
        assert p.returncode != 0 and expected in p.stderr, (args, p.stderr)


def test_the_daemon_checks_drift_on_a_schedule_publishes_it_and_calls_the_webhook(start_flywheel, fake, tmp_path):
    from conftest import base_config
    from helpers import poll
    from test_rollout import Hook
    cfg = base_config(fake.url, fake.url)
    first = start_flywheel(cfg, name="drifting")
    traffic(first, "train", EN, ["route_ticket"], 100, seed=5)
    p = run_cli(first.binary, "export", "--format", "sft", "--out", str(tmp_path / "train.jsonl"), "--db", str(first.db),
                "--validation-fraction", "0", "--keep-duplicates")
    assert p.returncode == 0, p.stderr
    assert first.stop() == 0
    hook = Hook()
    try:
        cfg["drift"] = {"baseline": str(tmp_path / "train.jsonl"), "window": "1h", "interval": 1, "webhook": hook.url}
        fw = start_flywheel(cfg, name="drifting")  # the same log
        poll(lambda: "drift OK over 100 requests" in fw.stderr(), timeout=60, what="the first check")
        metrics = httpx.get(f"{fw.base_url}/metrics").text
        assert "flywheel_drift_status 0" in metrics and 'flywheel_drift_score{signal="script_mix"}' in metrics
        traffic(fw, "new", RU, ["route_ticket", "lookup_order"], 150, seed=6)
        poll(lambda: "drift ALERT" in fw.stderr(), timeout=60, what="the alert")
        poll(lambda: "flywheel_drift_status 2" in httpx.get(f"{fw.base_url}/metrics").text, timeout=30, what="the alert in /metrics")
        poll(lambda: hook.events, timeout=30, what="the webhook")
        assert hook.events[0]["event"] == "drift" and hook.events[0]["status"] == "alert"
        assert fw.stderr().count("drift ALERT") == 1  # said once, when the verdict changed
    finally:
        hook.stop()


def test_the_daemon_says_not_judged_when_a_side_has_too_few_requests_never_ok(start_flywheel, fake, tmp_path):
    from conftest import base_config
    from helpers import poll
    baseline = tmp_path / "train.jsonl"
    baseline.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"route ticket {i}: the printer broke"},
                                                         {"role": "assistant", "content": "hardware"}]}) + "\n" for i in range(50)))
    cfg = base_config(fake.url, fake.url)
    cfg["drift"] = {"baseline": str(baseline), "window": "1h", "interval": 1}
    fw = start_flywheel(cfg)
    poll(lambda: "drift NOT JUDGED: too few requests (0 in the window, 50 in the baseline" in fw.stderr(), timeout=60,
         what="the first check")
    assert "drift OK" not in fw.stderr()
    assert "flywheel_drift_status -1" in httpx.get(f"{fw.base_url}/metrics").text


def test_outliers_rank_what_the_baseline_never_saw_first(gw, tmp_path):
    fw = gw.fw
    traffic(fw, "o-train", EN, ["route_ticket"], 80, seed=7)
    p = run_cli(fw.binary, "export", "--format", "sft", "--out", str(tmp_path / "t.jsonl"), "--db", str(fw.db),
                "--tag", "o-train", "--validation-fraction", "0", "--keep-duplicates")
    assert p.returncode == 0, p.stderr
    traffic(fw, "o-win", EN, ["route_ticket"], 30, seed=8)
    odd = {
        ask(fw, "посылка не пришла, помогите пожалуйста, заказ потерян", "o-win", ["route_ticket"]),
        ask(fw, " ".join(["refund"] * 400), "o-win", ["route_ticket"]),
        ask(fw, "where is my parcel please", "o-win", ["route_ticket", "lookup_order"]),
    }
    for rid in odd:
        fw.wait_logged(rid)
    p = run_cli(fw.binary, "outliers", "--db", str(fw.db), "--baseline", str(tmp_path / "t.jsonl"), "--window", "1h",
                "--tag", "o-win", "-n", "3", "--json")
    assert p.returncode == 0, p.stderr
    top = [json.loads(line) for line in p.stdout.splitlines()]
    assert {o["id"] for o in top} == odd, json.dumps(top, ensure_ascii=False)[:3000]
    reasons = " ".join(r for o in top for r in o["reasons"])
    assert "lookup_order" in reasons and "characters" in reasons
    table = run_cli(fw.binary, "outliers", "--db", str(fw.db), "--baseline", str(tmp_path / "t.jsonl"), "--tag", "o-win", "-n", "1")
    assert table.returncode == 0 and table.stdout.split()[1] in odd


def test_corrections_are_ranked_by_weight_change_and_rarity(gw):
    fw = gw.fw
    big = ask(fw, "my invoice shows the wrong vat rate for march", "c-rank")
    small = ask(fw, "parcel late again please help", "c-rank")
    light = ask(fw, "password reset mail never arrives", "c-rank")
    for rid in (big, small, light):
        fw.wait_logged(rid)
    for rid, correction, weight in [(big, "team: billing, priority: high", 3), (small, "echo: parcel late again please help!", None),
                                    (light, "team: identity", None)]:
        body = {"request_id": rid, "signal": "edited", "correction": correction}
        if weight:
            body["weight"] = weight
        assert httpx.post(f"{fw.base_url}/v1/feedback", json=body).status_code == 200
    p = run_cli(fw.binary, "corrections", "--db", str(fw.db), "--tag", "c-rank", "--json")
    assert p.returncode == 0, p.stderr
    ranked = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["id"] for r in ranked] == [big, light, small], ranked
    assert ranked[0]["weight"] == 3 and ranked[-1]["change"] < ranked[1]["change"]


def test_thresholds_and_reviewer_weights_come_from_the_config(gw, tmp_path):
    from conftest import yaml_dump
    fw = gw.fw
    traffic(fw, "t-base", EN, ["route_ticket"], 60, seed=9)
    p = run_cli(fw.binary, "export", "--format", "sft", "--out", str(tmp_path / "b.jsonl"), "--db", str(fw.db),
                "--tag", "t-base", "--validation-fraction", "0", "--keep-duplicates")
    assert p.returncode == 0
    traffic(fw, "t-new", EN, ["route_ticket", "lookup_order"], 60, seed=10)
    # A new tool in every request is an alert by default; with new_share_alert at 1.01 it can only warn.
    config = tmp_path / "flywheel.yaml"
    config.write_text(yaml_dump({"drift": {"baseline": str(tmp_path / "b.jsonl"), "thresholds": {"new_share_alert": 1.01}},
                                 "feedback": {"source_weights": {"implicit:edit": 5}},
                                 "upstreams": [{"name": "u", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "NOT_SET_HERE"}]}))
    p = drift(fw, "--baseline", str(tmp_path / "b.jsonl"), "--tag", "t-new", "--json", "--config", str(config))
    signals = {s["name"]: s for s in json.loads(p.stdout)["signals"]}
    assert signals["new_tools"]["status"] == "warn" and signals["new_tools"]["alert"] == 1.01
    # An implicit edit (no weight sent) weighs what the config says for its source.
    first = ask(fw, "where is my parcel", "w-rank")
    fw.wait_logged(first)
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", headers={"x-flywheel-tags": "w-rank", "x-flywheel-edits": first},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "where is my parcel"},
                                                              {"role": "assistant", "content": "team: shipping"},
                                                              {"role": "user", "content": "thanks"}]})
    assert r.status_code == 200
    fw.wait_logged(first, lambda row: row["feedback"])
    p = run_cli(fw.binary, "corrections", "--db", str(fw.db), "--tag", "w-rank", "--json", "--config", str(config))
    ranked = [json.loads(line) for line in p.stdout.splitlines()]
    assert ranked[0]["id"] == first and ranked[0]["weight"] == 5 and ranked[0]["source"] == "implicit:edit"


def test_a_local_models_tokenizer_adds_the_token_unigram_signal(gw, tmp_path):
    from conftest import REPO_ROOT
    qwen = REPO_ROOT / "Tests" / "FlywheelEngineTests" / "Fixtures" / "model-qwen2-q8.gguf"
    fw = gw.fw
    traffic(fw, "k-base", EN, [], 60, seed=11)
    p = run_cli(fw.binary, "export", "--format", "sft", "--out", str(tmp_path / "k.jsonl"), "--db", str(fw.db),
                "--tag", "k-base", "--validation-fraction", "0", "--keep-duplicates")
    assert p.returncode == 0
    traffic(fw, "k-new", RU, [], 60, seed=12)
    p = drift(fw, "--baseline", str(tmp_path / "k.jsonl"), "--tag", "k-new", "--json", "--local-model", str(qwen))
    signals = {s["name"]: s for s in json.loads(p.stdout)["signals"]}
    assert signals["prompt_tokens"]["status"] in ("warn", "alert") and signals["prompt_tokens"]["p_value"] < 0.005
    assert "hidden states" in signals["prompt_embedding_mmd"]["detail"]
    assert signals["prompt_embedding_mmd"]["status"] in ("warn", "alert"), signals["prompt_embedding_mmd"]
    without = {s["name"]: s for s in json.loads(drift(fw, "--baseline", str(tmp_path / "k.jsonl"), "--tag", "k-new", "--json").stdout)["signals"]}
    assert "prompt_tokens" not in without and "hashed" in without["prompt_embedding_mmd"]["detail"]
    hashed = json.loads(drift(fw, "--baseline", str(tmp_path / "k.jsonl"), "--tag", "k-new", "--json", "--local-model", str(qwen),
                              "--hashed-vectors").stdout)
    assert "hashed" in {s["name"]: s for s in hashed["signals"]}["prompt_embedding_mmd"]["detail"]
    bad = drift(fw, "--baseline", str(tmp_path / "k.jsonl"), "--local-model", str(tmp_path / "missing.gguf"))
    assert bad.returncode == 1 and "cannot read the tokenizer" in bad.stderr

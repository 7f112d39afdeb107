"""flywheel export: training sets from the log in the shapes trainers take, with a manifest and lineage."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import run_cli
from helpers import httpx, user_msg


def chat(fw, messages, tag: str) -> str:
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": messages},
                   headers={"x-flywheel-tags": tag})
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def feedback(fw, rid: str, signal: str, **extra) -> None:
    r = httpx.post(f"{fw.base_url}/v1/feedback", json={"request_id": rid, "signal": signal, **extra})
    assert r.status_code == 200, r.text


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def traffic(gw):
    """A small app's traffic with every kind of feedback, under a tag of its own (the module's daemon is shared);
    returns (fw, ids by role, tag)."""
    import uuid
    fw = gw.fw
    tag = f"export-{uuid.uuid4().hex[:8]}"
    ids = {}
    ids["accepted"] = chat(fw, user_msg("route ticket: printer on fire"), tag)
    feedback(fw, ids["accepted"], "accepted")
    ids["edited"] = chat(fw, user_msg("route ticket: cannot log in"), tag)
    feedback(fw, ids["edited"], "edited", correction="team: identity, priority: high")
    # The same prompt answered twice: one answer rejected, one accepted -> a preference pair.
    same = user_msg("route ticket: refund please")
    ids["rejected"] = chat(fw, same, tag)
    feedback(fw, ids["rejected"], "rejected")
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": same, "max_tokens": 2},
                   headers={"x-flywheel-tags": tag})
    ids["alternative"] = r.headers["x-request-id"]  # a different (shorter) answer to the same prompt
    feedback(fw, ids["alternative"], "accepted")
    ids["pii"] = chat(fw, user_msg("mail me at jane.doe@example.com or card 4111 1111 1111 1111"), tag)
    ids["duplicate"] = chat(fw, user_msg("route ticket: printer on fire"), tag)
    feedback(fw, ids["duplicate"], "accepted")
    bad = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "nope", "messages": user_msg("x")})
    assert bad.status_code == 404
    for rid in ids.values():
        fw.wait_logged(rid)
    return fw, ids, tag


def export(fw, tmp_path: Path, fmt: str, tag: str, *args: str) -> tuple[Path, dict]:
    out = tmp_path / f"{fmt}.jsonl"
    p = run_cli(fw.binary, "export", "--format", fmt, "--out", str(out), "--db", str(fw.db),
                "--validation-fraction", "0", "--tag", tag, *args)
    assert p.returncode == 0, p.stderr
    manifest = json.loads((tmp_path / f"{fmt}.manifest.json").read_text())
    return out, manifest


def test_sft_export_keeps_lineage_scrubs_pii_dedupes_and_applies_corrections(traffic, tmp_path):
    fw, ids, tag = traffic
    out, manifest = export(fw, tmp_path, "sft", tag, "--apply-corrections", "--exclude-rejected")
    rows = read_jsonl(out)
    by_id = {r["flywheel_request_id"]: r for r in rows}
    assert ids["rejected"] not in by_id and ids["duplicate"] not in by_id  # excluded; an exact duplicate
    assert set(by_id) >= {ids["accepted"], ids["edited"], ids["alternative"], ids["pii"]}
    assert by_id[ids["edited"]]["messages"][-1] == {"role": "assistant", "content": "team: identity, priority: high"}
    pii = json.dumps(by_id[ids["pii"]])
    assert "jane.doe@example.com" not in pii and "4111" not in pii and "<EMAIL>" in pii and "<CARD>" in pii
    for row in rows:
        assert row["messages"][-1]["role"] == "assistant"
    assert manifest["dropped"]["duplicate"] == 1 and manifest["dropped"]["rejected"] == 1
    assert manifest["pii_scrubbed"]["EMAIL"] >= 1 and manifest["pii_scrubbed"]["CARD"] >= 1
    assert manifest["files"]["train"]["rows"] == len(rows)
    assert manifest["files"]["train"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    # The file loads unchanged in Hugging Face datasets, as a conversational dataset.
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == len(rows) and "messages" in ds.column_names


def test_near_duplicates_are_removed_by_similarity_and_reported(gw, tmp_path):
    """A long ticket sent twice with one word changed and another system prompt is one example; a different
    ticket on the same template is kept. The threshold and the index are in the manifest."""
    import random
    import uuid
    fw = gw.fw
    tag = f"near-{uuid.uuid4().hex[:8]}"
    rng = random.Random(5)
    words = [rng.choice(["printer", "invoice", "login", "parcel", "refund", "screen", "order", "account", "late",
                         "broken", "again", "since", "monday", "please", "urgent", "customer", "office", "floor"])
             for _ in range(100)]
    first = " ".join(words)
    words[50] = "tuesday"
    near = " ".join(words)
    other = " ".join(rng.sample(words, len(words)))
    ids = {
        "first": chat(fw, [{"role": "system", "content": "Route the ticket."}, *user_msg(first)], tag),
        "near": chat(fw, [{"role": "system", "content": "You route tickets. Answer JSON."}, *user_msg(near)], tag),
        "other": chat(fw, user_msg(other), tag),
    }
    for rid in ids.values():
        fw.wait_logged(rid)
    out, manifest = export(fw, tmp_path, "sft", tag)
    kept = {r["flywheel_request_id"] for r in read_jsonl(out)}
    assert kept == {ids["first"], ids["other"]}
    assert manifest["dropped"] == {"near_duplicate": 1}
    near_info = manifest["deduplication"]["near"]
    assert near_info["threshold"] == 0.8 and near_info["lines_indexed"] == 2 and near_info["index_full_after"] is None
    assert near_info["bands"] * near_info["rows"] <= near_info["hashes"]
    # A stricter threshold, or near-deduplication off, keeps both.
    for args in (["--near-threshold", "0.97"], ["--keep-near-duplicates"]):
        out, manifest = export(fw, tmp_path, "sft", tag, *args)
        assert {r["flywheel_request_id"] for r in read_jsonl(out)} == set(ids.values()), args
        assert "near_duplicate" not in manifest["dropped"]
    assert manifest["deduplication"]["near"] == "off"
    p = run_cli(fw.binary, "export", "--format", "sft", "--out", str(tmp_path / "x.jsonl"), "--db", str(fw.db),
                "--near-threshold", "1.5")
    assert p.returncode != 0 and "--near-threshold" in p.stderr


def test_preference_exports_pair_corrections_and_rejections(traffic, tmp_path):
    fw, ids, tag = traffic
    out, manifest = export(fw, tmp_path, "dpo", tag)
    rows = {r["flywheel_request_id"]: r for r in read_jsonl(out)}
    assert set(rows) == {ids["edited"], ids["rejected"]}
    edited = rows[ids["edited"]]
    assert edited["preferred_output"] == [{"role": "assistant", "content": "team: identity, priority: high"}]
    assert edited["non_preferred_output"][0]["role"] == "assistant"
    assert edited["input"]["messages"][-1]["role"] == "user"
    pair = rows[ids["rejected"]]
    # The accepted alternative for the same prompt is preferred over the rejected answer.
    assert pair["input"]["messages"] == [{"role": "user", "content": "route ticket: refund please"}]
    assert pair["preferred_output"][0]["content"] != pair["non_preferred_output"][0]["content"]
    assert manifest["files"]["train"]["rows"] == 2
    trl_out, _ = export(fw, tmp_path, "dpo-trl", tag)
    trl = read_jsonl(trl_out)
    assert {r["flywheel_request_id"] for r in trl} == set(rows)
    for r in trl:
        assert isinstance(r["prompt"], list) and r["chosen"][0]["role"] == "assistant" and r["rejected"][0]["role"] == "assistant"
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("json", data_files=str(trl_out), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)


def test_split_and_holdout_are_by_prompt_and_the_same_every_run(traffic, tmp_path):
    fw, _, tag = traffic
    runs = []
    for n in range(2):
        d = tmp_path / f"run{n}"
        d.mkdir()
        out = d / "sft.jsonl"
        p = run_cli(fw.binary, "export", "--format", "sft", "--out", str(out), "--db", str(fw.db),
                    "--holdout", "2", "--validation-fraction", "0.5", "--tag", tag)
        assert p.returncode == 0, p.stderr
        runs.append({name: (d / f"sft{suffix}").read_bytes() for name, suffix in
                     [("train", ".jsonl"), ("validation", ".validation.jsonl"), ("holdout", ".holdout.jsonl")]})
    assert runs[0] == runs[1]
    files = {name: [json.loads(l) for l in data.decode().splitlines()] for name, data in runs[0].items()}
    prompts = {name: {json.dumps(r["messages"][:-1]) for r in rows} for name, rows in files.items()}
    assert len(prompts["holdout"]) == 2
    assert not (prompts["train"] & prompts["validation"]) and not (prompts["train"] & prompts["holdout"])


def test_the_holdout_holds_n_of_the_prompts_the_export_takes(gw, tmp_path):
    """--holdout N is N prompts of this export: prompts it leaves out (here rejected answers) do not use up the
    golden set. The first export finds the four lowest prompt keys; those answers are then rejected, and an
    export that leaves rejections out must still hold out four (other) prompts."""
    import uuid
    fw = gw.fw
    tag = f"holdout-{uuid.uuid4().hex[:8]}"
    ids = {}
    for i in range(12):
        ticket = f"ticket {i}: the {['printer', 'invoice', 'login', 'parcel'][i % 4]} broke on {['monday', 'friday', 'sunday'][i % 3]}"
        ids[ticket] = chat(fw, user_msg(ticket), tag)
    for rid in ids.values():
        fw.wait_logged(rid)

    def holdout(*args: str) -> list[str]:
        d = tmp_path / f"h{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        out, manifest = export(fw, d, "sft", tag, "--holdout", "4", *args)
        rows = read_jsonl(d / "sft.holdout.jsonl")
        assert manifest["files"]["holdout"]["rows"] == len(rows)
        return [r["messages"][0]["content"] for r in rows]

    first = holdout()
    assert len(first) == 4
    for ticket in first:
        feedback(fw, ids[ticket], "rejected")
    second = holdout("--exclude-rejected")
    assert len(second) == 4 and not set(second) & set(first)
    assert holdout("--exclude-rejected") == second  # the same every run


def test_local_answers_are_left_out_but_their_corrections_are_taken(start_flywheel, fake, tmp_path):
    """The local model's own answers are not training material; what users corrected in them is: as the corrected
    answer with --apply-corrections, and as a preference pair (the correction over the local answer)."""
    from conftest import REPO_ROOT, base_config
    cfg = base_config(fake.url, fake.url)
    cfg["local_models"] = [{"name": "tiny", "path": str(REPO_ROOT / "Tests" / "FlywheelEngineTests" / "Fixtures" / "model-qwen2-q8.gguf")}]
    fw = start_flywheel(cfg)

    def ask(model: str, text: str) -> str:
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", timeout=60,
                       json={"model": model, "max_tokens": 4, "messages": user_msg(text)})
        assert r.status_code == 200, r.text
        return r.headers["x-request-id"]

    ids = {"upstream": ask("gpt-4o-mini", "route ticket: the vpn is down"), "corrected": ask("tiny", "route ticket: refund"),
           "accepted": ask("tiny", "route ticket: printer"), "silent": ask("tiny", "route ticket: password")}
    feedback(fw, ids["corrected"], "edited", correction="team: billing")
    feedback(fw, ids["accepted"], "accepted")
    for rid in ids.values():
        fw.wait_logged(rid)

    def exported(fmt: str, *flags: str) -> tuple[dict, dict]:
        d = tmp_path / f"{fmt}{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        out = d / f"{fmt}.jsonl"
        p = run_cli(fw.binary, "export", "--format", fmt, "--out", str(out), "--db", str(fw.db), "--validation-fraction", "0", *flags)
        assert p.returncode == 0, p.stderr
        manifest = json.loads((d / f"{fmt}.manifest.json").read_text())
        return {r["flywheel_request_id"]: r for r in read_jsonl(out)}, manifest

    rows, manifest = exported("sft", "--apply-corrections")
    assert set(rows) == {ids["upstream"], ids["corrected"]} and manifest["dropped"]["local_route"] == 2
    assert rows[ids["corrected"]]["messages"][-1] == {"role": "assistant", "content": "team: billing"}
    rows, manifest = exported("sft")  # without corrections applied, a corrected local row would teach its own answer
    assert set(rows) == {ids["upstream"]} and manifest["dropped"]["local_route"] == 3
    rows, _ = exported("dpo")
    assert rows[ids["corrected"]]["preferred_output"] == [{"role": "assistant", "content": "team: billing"}]
    rows, _ = exported("sft", "--include-local")
    assert set(rows) == set(ids.values())


def test_an_empty_log_and_a_bad_format_are_handled(gw, tmp_path):
    p = run_cli(gw.fw.binary, "export", "--format", "csv", "--out", str(tmp_path / "x.jsonl"), "--db", str(gw.fw.db))
    assert p.returncode != 0 and "--format" in p.stderr
    empty_db = tmp_path / "empty.db"
    import sqlite3
    sqlite3.connect(gw.fw.db).backup(sqlite3.connect(empty_db))
    con = sqlite3.connect(empty_db)
    con.execute("DELETE FROM feedback")
    con.execute("DELETE FROM requests")
    con.commit()
    con.close()
    p = run_cli(gw.fw.binary, "export", "--format", "sft", "--out", str(tmp_path / "e.jsonl"), "--db", str(empty_db))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "e.jsonl").read_text() == ""
    assert json.loads((tmp_path / "e.manifest.json").read_text())["requests_read"] == 0


def test_rows_with_malformed_json_are_named_and_skipped_not_fatal(traffic, tmp_path):
    import sqlite3
    fw, ids, tag = traffic
    db = tmp_path / "damaged.db"
    src = sqlite3.connect(fw.db)
    dst = sqlite3.connect(db)
    src.backup(dst)
    src.close()
    dst.execute("UPDATE requests SET response_json = '{\"choices\": [' WHERE id = ?", (ids["accepted"],))
    dst.execute("UPDATE requests SET request_json = 'not json' WHERE id = ?", (ids["pii"],))
    dst.commit()
    dst.close()
    out = tmp_path / "d.jsonl"
    p = run_cli(fw.binary, "export", "--format", "sft", "--out", str(out), "--db", str(db), "--tag", tag,
                "--validation-fraction", "0")
    assert p.returncode == 0, p.stderr
    assert ids["accepted"] in p.stderr and "unreadable" in p.stderr
    manifest = json.loads((tmp_path / "d.manifest.json").read_text())
    assert set(manifest["bad_rows"]) == {ids["accepted"], ids["pii"]}
    assert manifest["dropped"]["unreadable_row"] == 2
    written = {r["flywheel_request_id"] for r in read_jsonl(out)}
    assert ids["edited"] in written and ids["accepted"] not in written


def test_tool_calls_and_streamed_answers_export_with_their_tools_and_corrections(start_flywheel, tmp_path):
    from conftest import base_config
    from test_hardening import RawUpstream, json_answer
    call = {"id": "call_1", "type": "function", "function": {"name": "route_ticket", "arguments": "{\"team\": \"billing\"}"}}
    answer = json_answer({"id": "c1", "object": "chat.completion", "model": "m",
                          "choices": [{"index": 0, "finish_reason": "tool_calls",
                                       "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
                          "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
    chunks = ['{"id":"c2","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}',
              '{"id":"c2","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}']
    sse = "".join(f"data: {c}\n\n" for c in chunks) + "data: [DONE]\n\n"
    stream = (f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {len(sse)}\r\nConnection: close\r\n\r\n" + sse).encode()
    tools_up, stream_up = RawUpstream(answer), RawUpstream(stream)
    try:
        tools = [{"type": "function", "function": {"name": "route_ticket", "parameters": {"type": "object"}}}]
        fw_tools = start_flywheel(base_config(tools_up.url, tools_up.url), name="tools")
        r = httpx.post(f"{fw_tools.base_url}/v1/chat/completions",
                       json={"model": "gpt-4o-mini", "messages": user_msg("my invoice is wrong"), "tools": tools})
        assert r.status_code == 200, r.text
        tool_id = r.headers["x-request-id"]
        fw_tools.wait_logged(tool_id)
        out = export_in(fw_tools, tmp_path, "tools")
        row = next(x for x in read_jsonl(out) if x["flywheel_request_id"] == tool_id)
        assert row["tools"] == tools
        assert row["messages"][-1]["tool_calls"] == [call]

        fw_stream = start_flywheel(base_config(stream_up.url, stream_up.url), name="stream")
        with httpx.Client(base_url=fw_stream.base_url, timeout=30) as c:
            with c.stream("POST", "/v1/chat/completions",
                          json={"model": "gpt-4o-mini", "stream": True, "messages": user_msg("greet")}) as resp:
                streamed_id = resp.headers["x-request-id"]
                for _ in resp.iter_lines():
                    pass
        fw_stream.wait_logged(streamed_id)
        feedback(fw_stream, streamed_id, "edited", correction="Hello there!")
        plain = export_in(fw_stream, tmp_path, "plain")
        assert read_jsonl(plain)[0]["messages"][-1] == {"role": "assistant", "content": "Hello"}
        corrected = export_in(fw_stream, tmp_path, "corrected", "--apply-corrections")
        assert read_jsonl(corrected)[0]["messages"][-1] == {"role": "assistant", "content": "Hello there!"}
    finally:
        tools_up.stop()
        stream_up.stop()


def export_in(fw, tmp_path: Path, name: str, *args: str) -> Path:
    out = tmp_path / f"{name}.jsonl"
    p = run_cli(fw.binary, "export", "--format", "sft", "--out", str(out), "--db", str(fw.db), "--validation-fraction", "0", *args)
    assert p.returncode == 0, p.stderr
    return out

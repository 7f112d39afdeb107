"""The flywheel's first half, proven end to end: a small app's traffic goes through the gateway to a fake frontier
model, feedback arrives in every shape apps send it (explicit, implicit, TensorZero's, Langfuse's, Helicone's),
and every export format is checked against the log it came from and against the real consumers: Hugging Face
`datasets`, TRL's own format checks and trainers (one optimisation step each on a tiny random model), and the
rules OpenAI's fine-tuning API states for chat and preference files.
"""
from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from conftest import Launcher, base_config, run_cli
from fake_upstream import FakeUpstream
from helpers import httpx

SYSTEM = {"role": "system", "content": "You route support tickets to a team. Answer with the team."}
TOOLS = [{"type": "function", "function": {
    "name": "route_ticket", "description": "Send a ticket to a team",
    "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}}}]
TICKETS = [
    "the printer on floor three is on fire", "i cannot log in since the password reset", "my invoice shows the wrong vat",
    "the parcel arrived broken and wet", "please refund my order from march", "the app crashes when i upload a photo",
    "my account was charged twice this month", "the delivery address cannot be changed", "two factor codes never arrive",
    "the screen flickers after the update", "i want to cancel my subscription", "the export button does nothing",
    "a stranger logged into my account", "the discount code is rejected", "my order shows delivered but is missing",
]


class App:
    """The product: sends tickets through the gateway and its users' reactions as feedback."""

    def __init__(self, fw, tag: str):
        self.fw, self.tag = fw, tag

    def chat(self, ticket: str, *, headers: dict | None = None, messages: list | None = None, **body) -> str:
        payload = {"model": "gpt-4o-mini", "messages": messages or [SYSTEM, {"role": "user", "content": ticket}], **body}
        r = httpx.post(f"{self.fw.base_url}/v1/chat/completions", json=payload,
                       headers={"x-flywheel-tags": self.tag, **(headers or {})}, timeout=30)
        assert r.status_code == 200, r.text
        return r.headers["x-request-id"]

    def stream(self, ticket: str, **body) -> str:
        payload = {"model": "gpt-4o-mini", "stream": True, "messages": [SYSTEM, {"role": "user", "content": ticket}], **body}
        with httpx.Client(base_url=self.fw.base_url, timeout=30) as c:
            with c.stream("POST", "/v1/chat/completions", json=payload, headers={"x-flywheel-tags": self.tag}) as r:
                assert r.status_code == 200
                rid = r.headers["x-request-id"]
                for _ in r.iter_lines():
                    pass
        return rid

    def post(self, path: str, body: dict) -> dict:
        r = httpx.post(f"{self.fw.base_url}{path}", json=body, timeout=30)
        assert r.status_code == 200, (path, r.text)
        return r.json()


@pytest.fixture(scope="module")
def loop(flywheel_bin, tmp_path_factory):
    """One daemon, one app's traffic with every kind of feedback; yields (fw, ids by role, tag)."""
    up = FakeUpstream().start()
    launcher = Launcher(flywheel_bin, tmp_path_factory.mktemp("loop"))
    try:
        fw = launcher(base_config(up.url, up.url), name="loop")
        tag = f"proof-{uuid.uuid4().hex[:8]}"
        app = App(fw, tag)
        ids: dict[str, str] = {}
        # Explicit verdicts through /v1/feedback.
        for n in range(4):
            ids[f"accepted{n}"] = app.chat(TICKETS[n])
            app.post("/v1/feedback", {"request_id": ids[f"accepted{n}"], "signal": "accepted"})
        ids["edited"] = app.chat(TICKETS[4])
        app.post("/v1/feedback", {"request_id": ids["edited"], "signal": "edited", "correction": "team: billing"})
        ids["rejected"] = app.chat(TICKETS[5])
        app.post("/v1/feedback", {"request_id": ids["rejected"], "signal": "rejected"})
        ids["alternative"] = app.chat(TICKETS[5], max_tokens=1)  # the same prompt, a different answer
        app.post("/v1/feedback", {"request_id": ids["alternative"], "signal": "accepted"})
        # Implicit: the user regenerated (the first answer is rejected), then rated the second (Helicone's shape).
        ids["regenerated"] = app.chat(TICKETS[6])
        ids["regeneration"] = app.chat(TICKETS[6], headers={"x-flywheel-regenerates": ids["regenerated"]}, max_tokens=1)
        app.post(f"/v1/request/{ids['regeneration']}/feedback", {"rating": True})
        # Implicit: the next turn carries the user's edit of the earlier answer.
        ids["edited_in_place"] = app.chat(TICKETS[7])
        app.chat("", headers={"x-flywheel-edits": ids["edited_in_place"]},
                 messages=[SYSTEM, {"role": "user", "content": TICKETS[7]},
                           {"role": "assistant", "content": "team: shipping"}, {"role": "user", "content": "thanks"}])
        # TensorZero: an episode's outcome reaches each of its requests; a demonstration is a correction.
        episode = f"ep-{uuid.uuid4().hex[:8]}"
        ids["episode1"] = app.chat(TICKETS[8], headers={"x-flywheel-episode": episode})
        ids["episode2"] = app.chat(TICKETS[9], headers={"x-flywheel-episode": episode})
        app.post("/feedback", {"episode_id": episode, "metric_name": "task_success", "value": True})
        ids["demonstrated"] = app.chat(TICKETS[10])
        app.post("/feedback", {"inference_id": ids["demonstrated"], "metric_name": "demonstration",
                               "value": [{"type": "text", "text": "team: accounts"}]})
        # Langfuse: a numeric score and a boolean one.
        ids["scored"] = app.chat(TICKETS[11])
        app.post("/api/public/scores", {"traceId": ids["scored"], "name": "quality", "value": 0.9})
        app.post("/api/public/scores", {"traceId": ids["scored"], "name": "helpful", "value": 1, "dataType": "BOOLEAN"})
        # Corrections on a streamed answer and on tool-call answers (plain and streamed).
        ids["streamed"] = app.stream(TICKETS[12])
        ids["tool_call"] = app.chat(TICKETS[13], tools=TOOLS, tool_choice="required")
        app.post("/v1/feedback", {"request_id": ids["tool_call"], "signal": "accepted"})
        ids["streamed_tool_call"] = app.stream(TICKETS[14], tools=TOOLS, tool_choice="required")
        for rid in (ids["streamed"], ids["streamed_tool_call"]):
            fw.wait_logged(rid)
            app.post("/v1/feedback", {"request_id": rid, "signal": "edited", "correction": "team: security"})
        # Traffic that is not training material: an unknown model, an upstream failure, an embedding.
        assert httpx.post(f"{fw.base_url}/v1/chat/completions", headers={"x-flywheel-tags": tag},
                          json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}).status_code == 404
        up.fail(500, count=20)
        failed = httpx.post(f"{fw.base_url}/v1/chat/completions", headers={"x-flywheel-tags": tag},
                            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "boom"}]})
        assert failed.status_code >= 500
        up.reset()
        ids["embedding"] = httpx.post(f"{fw.base_url}/v1/embeddings", headers={"x-flywheel-tags": tag},
                                      json={"model": "text-embedding-3-small", "input": "hello"}).headers["x-request-id"]
        for rid in ids.values():
            fw.wait_logged(rid)
        fw.wait_logged(failed.headers["x-request-id"])
        yield fw, ids, tag
    finally:
        problems = launcher.stop_all()
        up.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def export(fw, out: Path, fmt: str, tag: str, *args: str) -> tuple[list[dict], dict]:
    p = run_cli(fw.binary, "export", "--format", fmt, "--out", str(out), "--db", str(fw.db), "--tag", tag,
                "--validation-fraction", "0", *args)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    manifest = json.loads(out.with_name(out.name.removesuffix(".jsonl") + ".manifest.json").read_text())
    return lines, manifest


def logged(fw, tag: str) -> dict[str, dict]:
    """The tag's rows straight from the SQLite file, with their feedback: what the export must agree with."""
    con = sqlite3.connect(f"file:{fw.db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    rows = {r["id"]: dict(r) for r in con.execute(
        "SELECT * FROM requests WHERE EXISTS (SELECT 1 FROM json_each(requests.tags) WHERE value = ?)", (tag,))}
    for r in rows.values():
        r["feedback"] = [dict(f) for f in con.execute("SELECT * FROM feedback WHERE request_id = ? ORDER BY row_id", (r["id"],))]
    con.close()
    return rows


def answer_of(row: dict) -> dict:
    message = json.loads(row["response_json"])["choices"][0]["message"]
    out = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    return out


def latest_correction(row: dict) -> str | None:
    edits = [f["correction"] for f in row["feedback"] if f["signal"] == "edited"]
    return edits[-1] if edits else None


# ---------------------------------------------------------------- the log and the manifest agree


def test_sft_lines_are_the_logged_conversations_with_lineage_and_counts(loop, tmp_path):
    fw, ids, tag = loop
    rows = logged(fw, tag)
    lines, manifest = export(fw, tmp_path / "sft.jsonl", "sft", tag)
    # Every line is a logged request: its prompt as sent, its answer as logged (tool calls and tools kept).
    for line in lines:
        row = rows[line["flywheel_request_id"]]
        request = json.loads(row["request_json"])
        assert line["messages"] == request["messages"] + [answer_of(row)]
        assert line.get("tools") == request.get("tools")
    by_id = {line["flywheel_request_id"]: line for line in lines}
    assert by_id[ids["tool_call"]]["messages"][-1]["tool_calls"][0]["function"]["name"] == "route_ticket"
    assert json.loads(by_id[ids["streamed_tool_call"]]["messages"][-1]["tool_calls"][0]["function"]["arguments"]) == \
        {"input": TICKETS[14]}
    # The manifest accounts for every logged row: written or dropped for a reason.
    assert manifest["requests_read"] == len(rows)
    written = sum(f["rows"] for f in manifest["files"].values())
    assert written == len(lines) and written + sum(manifest["dropped"].values()) == len(rows)
    assert manifest["dropped"]["failed"] == 2 and manifest["dropped"]["not_chat_completion"] == 1
    expected = {rid for rid, r in rows.items()
                if r["endpoint"] == "/v1/chat/completions" and r["status"] < 400 and r["route"] != "local"}
    assert "duplicate" not in manifest["dropped"] and "near_duplicate" not in manifest["dropped"]
    assert set(by_id) == expected


def test_corrections_from_every_source_replace_the_answers_they_correct(loop, tmp_path):
    fw, ids, tag = loop
    rows = logged(fw, tag)
    lines, manifest = export(fw, tmp_path / "fixed.jsonl", "sft", tag, "--apply-corrections", "--exclude-rejected")
    by_id = {line["flywheel_request_id"]: line for line in lines}
    expected_corrections = {"edited": "team: billing", "edited_in_place": "team: shipping",
                            "demonstrated": "team: accounts", "streamed": "team: security",
                            "streamed_tool_call": "team: security"}
    for role, text in expected_corrections.items():
        assert latest_correction(rows[ids[role]]) == text, role
        assert by_id[ids[role]]["messages"][-1] == {"role": "assistant", "content": text}, role
    assert ids["rejected"] not in by_id and ids["regenerated"] not in by_id
    assert manifest["dropped"]["rejected"] == 2
    sources = {f["source"] for r in rows.values() for f in r["feedback"]}
    assert {"implicit:regenerate", "implicit:edit", "tensorzero:task_success", "tensorzero:demonstration",
            "langfuse:quality", "langfuse:helpful", "helicone"} <= sources, sources


def test_feedback_filters_select_by_verdict_score_and_correction(loop, tmp_path):
    fw, ids, tag = loop
    accepted, _ = export(fw, tmp_path / "acc.jsonl", "sft", tag, "--accepted-only")
    assert {line["flywheel_request_id"] for line in accepted} == {
        ids[k] for k in ["accepted0", "accepted1", "accepted2", "accepted3", "alternative", "regeneration",
                         "episode1", "episode2", "scored", "tool_call"]}
    scored, _ = export(fw, tmp_path / "score.jsonl", "sft", tag, "--min-score", "0.5")
    assert [line["flywheel_request_id"] for line in scored] == [ids["scored"]]
    corrected, _ = export(fw, tmp_path / "corr.jsonl", "sft", tag, "--corrected-only")
    assert {line["flywheel_request_id"] for line in corrected} == {
        ids[k] for k in ["edited", "edited_in_place", "demonstrated", "streamed", "streamed_tool_call"]}
    episode, _ = export(fw, tmp_path / "ep.jsonl", "sft", tag, "--episode", logged(fw, tag)[ids["episode1"]]["episode_id"])
    assert {line["flywheel_request_id"] for line in episode} == {ids["episode1"], ids["episode2"]}


def test_preference_pairs_come_from_corrections_and_rejections(loop, tmp_path):
    fw, ids, tag = loop
    rows = logged(fw, tag)
    lines, manifest = export(fw, tmp_path / "dpo.jsonl", "dpo", tag)
    by_id = {line["flywheel_request_id"]: line for line in lines}
    corrected = ["edited", "edited_in_place", "demonstrated", "streamed", "streamed_tool_call"]
    assert set(by_id) == {ids[k] for k in corrected + ["rejected", "regenerated"]}
    for role in corrected:
        line = by_id[ids[role]]
        row = rows[ids[role]]
        assert line["input"]["messages"] == json.loads(row["request_json"])["messages"]
        assert line["preferred_output"] == [{"role": "assistant", "content": latest_correction(row)}]
        assert line["non_preferred_output"] == [answer_of(row)]
    # A rejected answer pairs with the accepted answer to the same prompt.
    assert by_id[ids["rejected"]]["preferred_output"] == [answer_of(rows[ids["alternative"]])]
    assert by_id[ids["regenerated"]]["preferred_output"] == [answer_of(rows[ids["regeneration"]])]
    assert by_id[ids["regenerated"]]["non_preferred_output"] == [answer_of(rows[ids["regenerated"]])]
    trl_lines, _ = export(fw, tmp_path / "trl.jsonl", "dpo-trl", tag)
    assert {line["flywheel_request_id"] for line in trl_lines} == set(by_id)
    for line in trl_lines:
        twin = by_id[line["flywheel_request_id"]]
        assert line["prompt"] == twin["input"]["messages"]
        assert line["chosen"] == twin["preferred_output"] and line["rejected"] == twin["non_preferred_output"]
    assert manifest["files"]["train"]["rows"] == len(lines)


# ---------------------------------------------------------------- the consumers accept the files


def check_openai_chat_line(line: dict) -> None:
    """OpenAI's stated rules for a chat fine-tuning example: a `messages` list of role/content messages (system,
    user, assistant, tool), content a string (or null for an assistant turn that calls tools), at least one
    assistant message; tool calls with an id, type function, a name and JSON-encoded arguments."""
    messages = line["messages"]
    assert isinstance(messages, list) and messages
    assert any(m["role"] == "assistant" for m in messages)
    for m in messages:
        assert m["role"] in {"system", "user", "assistant", "tool"}, m
        assert set(m) <= {"role", "content", "tool_calls", "tool_call_id", "name", "weight"}, m
        if m["role"] == "assistant" and m.get("tool_calls"):
            for call in m["tool_calls"]:
                assert call["type"] == "function" and call["id"] and call["function"]["name"]
                json.loads(call["function"]["arguments"])
        else:
            assert isinstance(m["content"], (str, list)), m
    if "tools" in line:
        assert all(t["type"] == "function" and t["function"]["name"] for t in line["tools"])


def test_files_match_openai_rules_and_load_in_datasets(loop, tmp_path):
    datasets = pytest.importorskip("datasets")
    fw, _, tag = loop
    sft, _ = export(fw, tmp_path / "sft.jsonl", "sft", tag, "--apply-corrections")
    for line in sft:
        check_openai_chat_line(line)
    dpo, _ = export(fw, tmp_path / "dpo.jsonl", "dpo", tag)
    for line in dpo:
        check_openai_chat_line({"messages": line["input"]["messages"] + line["preferred_output"]})
        assert len(line["preferred_output"]) == 1 and len(line["non_preferred_output"]) == 1
        assert line["preferred_output"][0]["role"] == line["non_preferred_output"][0]["role"] == "assistant"
    export(fw, tmp_path / "trl.jsonl", "dpo-trl", tag)
    for name, columns in [("sft", {"messages", "tools", "flywheel_request_id"}),
                          ("dpo", {"input", "preferred_output", "non_preferred_output", "flywheel_request_id"}),
                          ("trl", {"prompt", "chosen", "rejected", "flywheel_request_id"})]:
        ds = datasets.load_dataset("json", data_files=str(tmp_path / f"{name}.jsonl"), split="train")
        assert set(ds.column_names) == columns, name
        assert ds.num_rows == len((tmp_path / f"{name}.jsonl").read_text().splitlines())


CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
          "{% if message['content'] is string %}{{ message['content'] }}{% endif %}"
          "{% if message.get('tool_calls') %}{% for call in message['tool_calls'] %}"
          "{{ '<tool_call>' + call['function']['name'] + ' ' + call['function']['arguments'] + '</tool_call>' }}"
          "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def tiny_model_and_tokenizer(texts: list[str]):
    """A byte-level BPE tokenizer learnt from `texts` with ChatML specials, and a random 2-layer Qwen2 model."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                                     pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = transformers.Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=512, tie_word_embeddings=True)
    return transformers.Qwen2ForCausalLM(config), tokenizer


def test_trl_checks_and_trains_one_step_on_each_export(loop, tmp_path, monkeypatch):
    """TRL's own format checks (`is_conversational`, the trainers' dataset preparation) and one optimisation step
    of SFTTrainer on the `sft` file and DPOTrainer on the `dpo-trl` file, lineage field and all."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    import copy
    import math
    from trl.data_utils import is_conversational
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fw, ids, tag = loop
    sft_path, trl_path = tmp_path / "sft.jsonl", tmp_path / "trl.jsonl"
    export(fw, sft_path, "sft", tag, "--apply-corrections", "--exclude-rejected")
    export(fw, trl_path, "dpo-trl", tag)
    sft = datasets.load_dataset("json", data_files=str(sft_path), split="train")
    dpo = datasets.load_dataset("json", data_files=str(trl_path), split="train")
    assert all(is_conversational(example) for example in sft)
    assert all(is_conversational(example) for example in dpo)
    model, tokenizer = tiny_model_and_tokenizer(TICKETS + ["team billing shipping security accounts route_ticket input"])
    common = dict(max_steps=1, per_device_train_batch_size=4, report_to=[], use_cpu=True, save_strategy="no",
                  logging_steps=1, max_length=256, dataloader_num_workers=0)
    sft_trainer = trl.SFTTrainer(model=model, processing_class=tokenizer, train_dataset=sft,
                                 args=trl.SFTConfig(output_dir=str(tmp_path / "sft-out"), **common))
    # The tool-call answer reached the model's input through the chat template, tools and all.
    prepared = sft_trainer.train_dataset
    texts = [tokenizer.decode(example["input_ids"]) for example in prepared]
    assert any("<tool_call>route_ticket" in t for t in texts)
    assert not any(rid in t for t in texts for rid in ids.values())
    loss = sft_trainer.train().training_loss
    assert math.isfinite(loss) and loss > 0
    dpo_trainer = trl.DPOTrainer(model=model, ref_model=copy.deepcopy(model), processing_class=tokenizer,
                                 train_dataset=dpo, args=trl.DPOConfig(output_dir=str(tmp_path / "dpo-out"), **common))
    loss = dpo_trainer.train().training_loss
    assert math.isfinite(loss) and loss > 0

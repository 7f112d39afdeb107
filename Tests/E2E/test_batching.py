"""Continuous batching through the gateway: concurrent streams of a local model run in shared forward passes and
each still gets exactly the answer it gets alone; a shared system prompt is evaluated once; `flywheel generate
--parallel` reports aggregate speed and latency percentiles."""
from __future__ import annotations

import re
import threading

import pytest

from conftest import run_cli
from test_local_model import NO_END, QWEN, tiny_daemon

PROMPTS = ["tell me a story", "what is the weather", "list three colours", "a b c d e f g h i j k l m n o p",
           "why", "translate: good morning, how are you today, my friend?"]


@pytest.fixture
def four_slots(flywheel_bin, tmp_path):
    yield from tiny_daemon(flywheel_bin, tmp_path, "batched", slots=4, max_queued=8, grace=2)


def ask(fw, content, max_tokens, system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    stream = fw.client().chat.completions.create(model="tiny", messages=messages, max_tokens=max_tokens, temperature=0,
                                                 logit_bias=NO_END, stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    return text, usage


def scrape(fw):
    with fw.http() as c:
        text = c.get("/metrics").text
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("flywheel_local_")}


def test_concurrent_streams_get_the_answers_they_get_alone(four_slots):
    lengths = [24, 40, 16, 32, 8, 28]
    alone = [ask(four_slots, p, n)[0] for p, n in zip(PROMPTS, lengths)]
    before = scrape(four_slots)
    assert before["flywheel_local_step_rows_total"] >= before["flywheel_local_steps_total"] > 0
    results: list = [None] * len(PROMPTS)

    def run(i):
        results[i] = ask(four_slots, PROMPTS[i], lengths[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i, (text, usage) in enumerate(results):
        assert text == alone[i], f"stream {i} differs when batched"
        assert usage.completion_tokens == lengths[i]
    after = scrape(four_slots)
    steps = after["flywheel_local_steps_total"] - before["flywheel_local_steps_total"]
    rows = after["flywheel_local_step_rows_total"] - before["flywheel_local_step_rows_total"]
    # 148 tokens generated in fewer steps than tokens: most steps carried several streams.
    assert sum(lengths) - len(lengths) <= rows and steps < sum(lengths), (steps, rows)
    assert after["flywheel_local_generations_active"] == 0
    assert after["flywheel_local_kv_cache_bytes"] > 0  # idle caches kept for prefix reuse


def test_a_shared_system_prompt_is_not_evaluated_again(four_slots):
    system = "You are a helpful assistant for the flywheel support desk. " * 3
    _, first_usage = ask(four_slots, "first question", 8, system=system)
    _, second_usage = ask(four_slots, "another, different question", 8, system=system)
    cached = second_usage.prompt_tokens_details.cached_tokens
    assert cached > 0.6 * first_usage.prompt_tokens, (cached, first_usage.prompt_tokens)
    assert first_usage.prompt_tokens_details.cached_tokens == 0  # a fresh daemon has nothing to reuse


def test_generate_parallel_reports_aggregate_speed_and_latency(flywheel_bin):
    proc = run_cli(flywheel_bin, "generate", "--model", str(QWEN), "--prompt", "once upon a time", "--max-tokens", "12",
                   "--temperature", "0", "--parallel", "4", timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = re.search(r"4 streams, prompt (\d+) tokens each; generated (\d+) tokens", proc.stderr)
    assert line, proc.stderr
    assert 4 <= int(line.group(2)) <= 48
    assert re.search(r"time to first token p50 [\d.]+ ms, p99 [\d.]+ ms; time between tokens p50 [\d.]+ ms", proc.stderr)
    bad = run_cli(flywheel_bin, "generate", "--model", str(QWEN), "--prompt", "x", "--parallel", "0", timeout=60)
    assert bad.returncode != 0 and "--parallel" in bad.stderr

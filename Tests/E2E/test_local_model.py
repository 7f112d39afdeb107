"""Local models: `flywheel serve --local-model NAME=PATH` answers chat and completions requests with the
in-process engine, in OpenAI's shapes, through the official SDK; `flywheel generate` on the command line.

The models are the tiny random-weight GGUF fixtures of the engine's tests (scripts/engine/make_model.py):
their text is gibberish, but it is deterministic, so the tests compare runs with each other.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import openai
import pytest

from conftest import REPO_ROOT, Launcher, base_config, run_cli, tail_json, uid, wait_logged
from fake_upstream import FakeUpstream

FIXTURES = REPO_ROOT / "Tests" / "FlywheelEngineTests" / "Fixtures"
QWEN = FIXTURES / "model-qwen2-q8.gguf"    # ChatML template, vocabulary of 320 with specials 306..308
LLAMA = FIXTURES / "model-llama-q8.gguf"
NO_END = {"306": -100, "307": -100, "308": -100}  # bans the end tokens: generations run to max_tokens


def local_daemon(flywheel_bin, tmp_dir, name: str, extra: dict | None = None):
    """A daemon serving local models tiny-qwen and tiny-llama (CLI flags) and short-qwen (config, context 32), with
    the base config's models routed to a fake upstream (`fw.primary`); `extra` adds config keys. Yields it, then
    stops it and the upstream and fails the test on any problem."""
    primary = FakeUpstream().start()
    launcher = Launcher(flywheel_bin, tmp_dir)
    cfg = base_config(primary.url, primary.url)
    cfg["local_models"] = [{"name": "short-qwen", "path": str(QWEN), "context_length": 32}]
    cfg.update(extra or {})
    try:
        fw = launcher(cfg, args=["--local-model", f"tiny-qwen={QWEN}", "--local-model", f"tiny-llama={LLAMA}"],
                      name=name)
        fw.primary = primary
        yield fw
    finally:
        problems = launcher.stop_all()
        primary.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def local(flywheel_bin, tmp_path_factory):
    """One daemon: local models tiny-qwen, tiny-llama and short-qwen, and gpt-4o-mini routed to a fake upstream."""
    yield from local_daemon(flywheel_bin, tmp_path_factory.mktemp("local"), "local")


def chat(fw, content="hello there", model="tiny-qwen", **kw):
    raw = fw.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], **kw)
    return raw.parse(), raw.headers


def test_chat_completion_has_openai_shape_and_usage(local):
    resp, headers = chat(local, max_tokens=6, temperature=0, logit_bias=NO_END)
    assert resp.object == "chat.completion"
    assert resp.id.startswith("chatcmpl-")
    assert resp.model == "tiny-qwen"
    assert headers["x-flywheel-route"] == "local"
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "length"
    assert resp.usage.completion_tokens == 6
    assert resp.usage.prompt_tokens > 5  # the ChatML wrapping adds tokens around "hello there"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 6


def test_greedy_output_is_deterministic_and_seeded_sampling_reproduces(local):
    a, _ = chat(local, max_tokens=12, temperature=0, logit_bias=NO_END)
    b, _ = chat(local, max_tokens=12, temperature=0, logit_bias=NO_END)
    assert a.choices[0].message.content == b.choices[0].message.content
    s1, _ = chat(local, max_tokens=16, temperature=1.0, seed=1234, logit_bias=NO_END)
    s2, _ = chat(local, max_tokens=16, temperature=1.0, seed=1234, logit_bias=NO_END)
    s3, _ = chat(local, max_tokens=16, temperature=1.0, seed=99, logit_bias=NO_END)
    assert s1.choices[0].message.content == s2.choices[0].message.content
    assert s1.choices[0].message.content != s3.choices[0].message.content


def test_stream_matches_the_non_stream_answer_and_ends_with_usage(local):
    full, _ = chat(local, content="stream me", max_tokens=10, temperature=0, logit_bias=NO_END)
    chunks = list(local.client().chat.completions.create(
        model="tiny-qwen", messages=[{"role": "user", "content": "stream me"}], max_tokens=10, temperature=0,
        logit_bias=NO_END, stream=True, stream_options={"include_usage": True}))
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == full.choices[0].message.content
    assert with_choices[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_raw_stream_ends_with_one_done(local):
    body = {"model": "tiny-llama", "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}
    with local.http() as c, c.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line.strip()]
    assert lines[-1] == "data: [DONE]"
    assert sum(1 for line in lines if line == "data: [DONE]") == 1
    for line in lines[:-1]:
        assert json.loads(line[len("data: "):])["object"] == "chat.completion.chunk"


def test_completions_endpoint_with_text_and_token_prompts(local):
    client = local.client()
    text = client.completions.create(model="tiny-qwen", prompt="once upon a time", max_tokens=5, temperature=0,
                                     logit_bias=NO_END)
    assert text.object == "text_completion"
    assert text.choices[0].finish_reason == "length"
    assert text.usage.completion_tokens == 5
    ids = client.completions.create(model="tiny-qwen", prompt=[10, 20, 30, 40], max_tokens=3, temperature=0,
                                    logit_bias=NO_END)
    assert ids.usage.prompt_tokens == 4
    streamed = list(client.completions.create(model="tiny-qwen", prompt="once upon a time", max_tokens=5,
                                              temperature=0, logit_bias=NO_END, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == text.choices[0].text
    assert streamed[-1].choices[0].finish_reason == "length"


def test_stop_string_cuts_the_output_before_it(local):
    client = local.client()
    args = dict(model="tiny-llama", prompt="stop test", max_tokens=24, temperature=0, logit_bias=NO_END)
    text = client.completions.create(**args).choices[0].text
    # A stop string that first occurs past the start of the greedy output.
    stop = next((text[i:i + 2] for i in range(2, len(text) - 2)
                 if "\ufffd" not in text[i:i + 2] and text.index(text[i:i + 2]) >= 2), None)
    assert stop is not None, f"no usable stop string in {text!r}"
    cut = client.completions.create(stop=[stop], **args)
    assert cut.choices[0].text == text[:text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = list(client.completions.create(stop=[stop], stream=True, **args))
    assert "".join(c.choices[0].text for c in streamed) == text[:text.index(stop)]


def test_local_models_are_listed(local):
    ids = {m.id for m in local.client().models.list().data}
    assert {"tiny-qwen", "tiny-llama", "short-qwen", "gpt-4o-mini"} <= ids


def test_start_up_says_how_local_models_run(local):
    # Which kernels (and, on the AVX2 path, the row-group layout of the weights) and how many threads.
    line = next(l for l in local.stderr().splitlines() if "local inference: kernels " in l)
    flags = open("/proc/cpuinfo").read()
    cap = os.environ.get("FLYWHEEL_KERNELS", "").lower()
    avx2_path = " avx2 " in flags and cap != "portable" and (cap == "avx2" or " avx512_vnni " not in flags)
    assert ("avx2 (weight rows in groups of 4)" in line) == avx2_path, line
    assert "thread" in line, line


@pytest.mark.parametrize("extra,param", [
    ({"n": 2}, "n"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"logprobs": True}, "logprobs"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"stop": 5}, "stop"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logit_bias": {"320": 5}}, "logit_bias"),
])
def test_unsupported_or_invalid_options_are_400_naming_the_param(local, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        local.client().chat.completions.create(model="tiny-qwen", messages=[{"role": "user", "content": "x"}], **extra)
    assert e.value.body["param"] == param


def test_image_parts_are_refused_clearly(local):
    with pytest.raises(openai.BadRequestError) as e:
        local.client().chat.completions.create(model="tiny-qwen", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    assert "text parts only" in e.value.body["message"]


def test_prompt_longer_than_the_context_is_400_context_length_exceeded(local):
    with pytest.raises(openai.BadRequestError) as e:
        chat(local, model="short-qwen", content="word " * 100)
    assert e.value.body["code"] == "context_length_exceeded"


def test_generation_stops_at_the_context_length(local):
    resp, _ = chat(local, model="short-qwen", content="hi", logit_bias=NO_END)
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.total_tokens == 32


def test_local_requests_are_logged_with_route_local(local):
    resp, headers = chat(local, max_tokens=3, temperature=0, logit_bias=NO_END)
    row = local.wait_logged(headers["x-request-id"])
    assert row["route"] == "local"
    assert row["model_served"] == "tiny-qwen"
    assert row["status"] == 200
    assert row["usage"]["completion_tokens"] == 3
    assert row["usage"]["prompt_tokens"] == resp.usage.prompt_tokens
    logged = row["response"] if isinstance(row["response"], dict) else json.loads(row["response"])
    assert logged["choices"][0]["message"]["content"] == resp.choices[0].message.content


def test_upstream_routes_still_work_beside_local_models(local):
    resp = local.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "echo: hi"


# ---------------------------------------------------------------- queueing and disconnects

@pytest.fixture
def one_slot(flywheel_bin, tmp_path):
    """A daemon with one slot and no queue, so a second concurrent request is refused."""
    yield from tiny_daemon(flywheel_bin, tmp_path, "oneslot", slots=1, max_queued=0, grace=2)


def tiny_daemon(flywheel_bin, tmp_path, name: str, *, slots: int, max_queued: int, grace: float):
    """A daemon serving the tiny qwen model as 'tiny' with these inference limits; stopped (and checked) after."""
    launcher = Launcher(flywheel_bin, tmp_path)
    cfg = {"server": {"listen": "127.0.0.1:0", "shutdown_grace": grace},
           "local_models": [{"name": "tiny", "path": str(QWEN)}],
           "inference": {"slots": slots, "max_queued": max_queued}}
    yield launcher(cfg, name=name)
    problems = launcher.stop_all()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def open_stream(fw, max_tokens=200):
    """Starts a long streamed generation on a raw socket and waits for its first token."""
    body = json.dumps({"model": "tiny", "stream": True, "max_tokens": max_tokens, "logit_bias": NO_END,
                       "messages": [{"role": "user", "content": "go on"}]}).encode()
    s = socket.create_connection(("127.0.0.1", fw.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"x-request-id: " + (rid := uid("long")).encode() + b"\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    seen = b""
    while seen.count(b"data: ") < 3:  # the role chunk and two tokens
        chunk = s.recv(65536)
        assert chunk, "stream closed early"
        seen += chunk
    return s, rid


def test_request_beyond_the_queue_gets_503(one_slot):
    s, _ = open_stream(one_slot, max_tokens=250)
    try:
        with pytest.raises(openai.InternalServerError) as e:
            one_slot.client().chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2)
        assert e.value.status_code == 503
        assert e.value.body["code"] == "overloaded"
    finally:
        s.close()


def test_client_disconnect_stops_the_generation_and_logs_499(one_slot):
    s, rid = open_stream(one_slot, max_tokens=250)
    s.close()
    row = one_slot.wait_logged(rid)
    assert row["status"] == 499
    assert row["route"] == "local"
    # What was produced before the client left is logged, marked incomplete.
    assert row["incomplete"] is True
    assert row["usage"]["completion_tokens"] >= 1
    assert row["response"]["choices"][0]["message"]["content"]
    # The slot is free again at once: the next request is served, not refused.
    resp = one_slot.client().chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert resp.choices[0].finish_reason in ("stop", "length")


# ---------------------------------------------------------------- start-up errors and the generate command

def test_missing_model_file_fails_start_up_naming_it(flywheel_bin, tmp_path):
    proc = subprocess.run([str(flywheel_bin), "serve", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "x.db"),
                           "--local-model", f"m={tmp_path / 'nope.gguf'}"], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 78  # EX_CONFIG: the error alone, no usage text
    assert "nope.gguf" in proc.stderr
    assert "Usage:" not in proc.stderr


def test_truncated_model_file_fails_start_up_clearly(flywheel_bin, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(QWEN.read_bytes()[:5000])
    proc = subprocess.run([str(flywheel_bin), "serve", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "x.db"),
                           "--local-model", f"m={broken}"], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 78
    assert "broken.gguf" in proc.stderr
    assert "Usage:" not in proc.stderr


def test_bad_local_model_flag_is_a_usage_error(flywheel_bin, tmp_path):
    proc = subprocess.run([str(flywheel_bin), "serve", "--local-model", "no-equals-sign"], capture_output=True,
                          text=True, timeout=20)
    assert proc.returncode != 0
    assert "NAME=PATH" in proc.stderr


def test_generate_prints_text_and_timings_and_matches_the_server(flywheel_bin, local):
    proc = run_cli(flywheel_bin, "generate", "--model", str(QWEN), "--prompt", "once upon a time",
                   "--max-tokens", "8", "--temperature", "0", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "tokens/s" in proc.stderr and "prompt" in proc.stderr
    served = local.client().completions.create(model="tiny-qwen", prompt="once upon a time", max_tokens=8,
                                               temperature=0)
    assert proc.stdout.rstrip("\n") == served.choices[0].text


def test_generate_chat_uses_the_template(flywheel_bin):
    plain = run_cli(flywheel_bin, "generate", "--model", str(QWEN), "--prompt", "hi", "--max-tokens", "4",
                    "--temperature", "0", timeout=60)
    chatted = run_cli(flywheel_bin, "generate", "--model", str(QWEN), "--prompt", "hi", "--chat", "--max-tokens", "4",
                      "--temperature", "0", timeout=60)
    assert plain.returncode == 0 and chatted.returncode == 0
    prompt_tokens = [int(p.stderr.split("prompt ")[1].split(" tokens")[0]) for p in (plain, chatted)]
    assert prompt_tokens[1] > prompt_tokens[0]


def test_configured_chat_template_replaces_the_files_and_its_errors_are_400(start_flywheel):
    template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System messages are not "
                "supported') }}{% endif %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                "{% if add_generation_prompt %}<assistant>{% endif %}")
    fw = start_flywheel({"server": {"listen": "127.0.0.1:0"},
                         "local_models": [{"name": "custom", "path": str(QWEN), "chat_template": template}]})
    client = fw.client()
    ok = client.chat.completions.create(model="custom", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    # The prompt is exactly the override's rendering, "<user>hi<assistant>" (no ChatML markers).
    same = client.completions.create(model="custom", prompt="<user>hi<assistant>", max_tokens=1)
    assert ok.usage.prompt_tokens == same.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="custom", max_tokens=1, messages=[
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "chat_template_error"
    assert "System messages are not supported" in e.value.body["message"]


def test_chat_template_override_that_does_not_parse_stops_start_up(flywheel_bin, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f'local_models:\n  - name: custom\n    path: {QWEN}\n    chat_template: "{{% if %}}"\n')
    proc = subprocess.run([str(flywheel_bin), "serve", "--config", str(cfg), "--listen", "127.0.0.1:0",
                           "--db", str(tmp_path / "x.db")], capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert "chat template" in proc.stderr and "custom" in proc.stderr


def test_metrics_count_local_tokens(local):
    def scrape():
        with local.http() as c:
            text = c.get("/metrics").text
        return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                if line.startswith("flywheel_local_")}
    before = scrape()
    chat(local, max_tokens=5, temperature=0, logit_bias=NO_END)
    after = scrape()
    assert after["flywheel_local_generated_tokens_total"] - before["flywheel_local_generated_tokens_total"] == 5
    assert after["flywheel_local_prompt_tokens_total"] > before["flywheel_local_prompt_tokens_total"]
    assert after["flywheel_local_generations_active"] == 0


@pytest.fixture
def long_grace(flywheel_bin, tmp_path):
    """One slot and a shutdown grace far longer than any generation here takes, however busy the machine:
    the test waits for the stream's end, not for a time."""
    yield from tiny_daemon(flywheel_bin, tmp_path, "longgrace", slots=1, max_queued=0, grace=600)


def test_sigterm_lets_a_running_local_stream_finish_then_exits_0(long_grace):
    one_slot = long_grace
    s, rid = open_stream(one_slot, max_tokens=120)
    one_slot.send()  # SIGTERM: stop accepting, let the stream finish within shutdown_grace
    data = b""
    s.settimeout(300)
    while not data.endswith(b"0\r\n\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert b"data: [DONE]" in data
    assert one_slot.wait(300) == 0
    assert one_slot.wait_logged(rid)["status"] == 200  # flushed to the log before exit


@pytest.fixture
def busy_queue(flywheel_bin, tmp_path):
    """Two slots and a queue of 4, so queued requests can be abandoned."""
    yield from tiny_daemon(flywheel_bin, tmp_path, "busyqueue", slots=2, max_queued=4, grace=2)


def test_queued_requests_whose_clients_left_give_up_their_places_at_once(busy_queue):
    fw = busy_queue
    running = [open_stream(fw, max_tokens=4000) for _ in range(2)]  # both slots busy
    body = json.dumps({"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]}).encode()
    queued = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", fw.port), timeout=10)
        rid = uid("queued")
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-request-id: "
                  + rid.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        queued.append((s, rid))
    # Wait until all four are queued (the metric says so), then abandon them.
    from helpers import httpx
    def queued_count() -> int:
        for line in httpx.get(f"{fw.base_url}/metrics").text.splitlines():
            if line.startswith("flywheel_local_generations_queued "):
                return int(float(line.split()[1]))
        return -1
    from helpers import poll
    poll(lambda: queued_count() == 4, timeout=30, what="four queued generations")
    for s, _ in queued:
        s.close()
    for _, rid in queued:
        assert fw.wait_logged(rid)["status"] == 499
    assert queued_count() == 0
    # The places are free: a new request is queued (not refused with 503) while the slots are still busy.
    fresh = socket.create_connection(("127.0.0.1", fw.port), timeout=10)
    fresh.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
    poll(lambda: queued_count() == 1, timeout=30, what="the fresh request queued")
    fresh.close()
    for s, _ in running:
        s.close()


def test_sighup_reloads_local_models_without_dropping_a_running_stream(start_flywheel, tmp_path):
    import signal
    from conftest import yaml_dump
    from helpers import httpx, poll
    cfg = {"server": {"listen": "127.0.0.1:0", "shutdown_grace": 60},
           "local_models": [{"name": "a", "path": str(QWEN)}], "inference": {"slots": 2}}
    fw = start_flywheel(cfg)

    def model_ids() -> set[str]:
        return {m["id"] for m in httpx.get(f"{fw.base_url}/v1/models").json()["data"]}

    assert model_ids() == {"a"}
    # A stream on 'a' that is running while 'a' is removed.
    body = json.dumps({"model": "a", "stream": True, "max_tokens": 40, "logit_bias": NO_END,
                       "messages": [{"role": "user", "content": "go on"}]}).encode()
    s = socket.create_connection(("127.0.0.1", fw.port), timeout=60)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    data = s.recv(65536)
    assert b"200" in data.split(b"\r\n", 1)[0]

    new = dict(cfg, local_models=[{"name": "b", "path": str(LLAMA)}])
    fw.config_path.write_text(yaml_dump(dict(new, log={"path": str(fw.db)})))
    fw.send(signal.SIGHUP)
    poll(lambda: model_ids() == {"b"}, timeout=60, what="the reloaded model list")
    while not data.endswith(b"0\r\n\r\n"):
        chunk = s.recv(65536)
        assert chunk, "the running stream was cut by the reload"
        data += chunk
    s.close()
    assert b"data: [DONE]" in data
    ok = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "b", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]})
    assert ok.status_code == 200, ok.text
    gone = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "a", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]})
    assert gone.status_code == 404
    assert "reloaded local models: added [b]" in fw.stderr() and "removed [a]" in fw.stderr()

    # A bad file in the next reload changes nothing.
    broken = dict(cfg, local_models=[{"name": "b", "path": str(LLAMA)}, {"name": "c", "path": str(tmp_path / "missing.gguf")}])
    fw.config_path.write_text(yaml_dump(dict(broken, log={"path": str(fw.db)})))
    fw.send(signal.SIGHUP)
    poll(lambda: "reload failed" in fw.stderr(), timeout=60, what="the failed reload's message")
    assert "missing.gguf" in fw.stderr()
    assert model_ids() == {"b"}
    assert fw.alive()

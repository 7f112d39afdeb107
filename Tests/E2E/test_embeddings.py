"""Local embeddings: `POST /v1/embeddings` for a `--local-model` answers with the mean-pooled, L2-normalised last
hidden state of each input, in OpenAI's shape, through the official SDK (whose default asks for base64).

The models are the tiny random-weight GGUF fixtures of the engine's tests: their vectors mean nothing, so the
tests check exact properties (unit length, determinism, batch independence, float vs base64) and compare with an
independent float64 forward pass (scripts/engine/reference.py), never similarity between texts.
"""
from __future__ import annotations

import json
import math
import socket
import struct
import sys
import threading
import time

import openai
import pytest

from conftest import REPO_ROOT, Launcher, uid
from fake_upstream import embedding_for
from helpers import httpx
from test_local_model import LLAMA, QWEN, local_daemon

WIDTH = 64  # the tiny models' width (vocabulary 320, context 256)


@pytest.fixture(scope="module")
def emb(flywheel_bin, tmp_path_factory):
    """One daemon: tiny-llama and tiny-qwen (context 256), short-qwen (context 32), text-embedding-3-small routed
    to a fake upstream, and a policy 'emb-policy' on tiny-llama falling back to that upstream model."""
    policies = [{"model": "emb-policy", "variants": [{"target": "tiny-llama", "weight": 1}],
                 "fallback": ["text-embedding-3-small"]}]
    yield from local_daemon(flywheel_bin, tmp_path_factory.mktemp("emb"), "emb", {"policies": policies})


def f32(values) -> list[float]:
    """Values rounded to float32, so JSON floats and base64-decoded floats compare exactly."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def norm(v) -> float:
    return math.sqrt(sum(x * x for x in v))


def create(fw, **kw):
    raw = fw.client().embeddings.with_raw_response.create(**kw)
    return raw.parse(), raw.headers


# ---------------------------------------------------------------- answers

def test_float_and_default_base64_answers_are_the_same_unit_vectors(emb):
    texts = ["the quick brown fox", "jumps over", "x"]
    floats, headers = create(emb, model="tiny-llama", input=texts, encoding_format="float")
    default, default_headers = create(emb, model="tiny-llama", input=texts)  # the SDK asks for base64
    assert headers["x-flywheel-route"] == "local"
    assert floats.object == "list" and floats.model == "tiny-llama"
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert all(d.object == "embedding" for d in floats.data)
    for a, b in zip(floats.data, default.data):
        assert len(a.embedding) == WIDTH
        assert abs(norm(a.embedding) - 1) < 1e-4
        assert f32(a.embedding) == f32(b.embedding)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == default.usage.prompt_tokens > 3
    # The SDK's default really was base64 (it decoded the answer itself).
    row = emb.wait_logged(default_headers["x-request-id"])
    request = row["request"] if isinstance(row["request"], dict) else json.loads(row["request"])
    assert request["encoding_format"] == "base64"
    raw = emb.client().embeddings.create(model="tiny-llama", input="x", encoding_format="base64")
    packed = __import__("base64").b64decode(raw.data[0].embedding)
    assert list(struct.unpack(f"<{WIDTH}f", packed)) == f32(floats.data[2].embedding)


def test_same_text_same_vector_whatever_the_batch(emb):
    alone, _ = create(emb, model="tiny-qwen", input="hello there", encoding_format="float")
    again, _ = create(emb, model="tiny-qwen", input="hello there", encoding_format="float")
    batch, _ = create(emb, model="tiny-qwen", input=["something else", "hello there"], encoding_format="float")
    assert alone.data[0].embedding == again.data[0].embedding == batch.data[1].embedding
    assert batch.data[0].embedding != batch.data[1].embedding
    other, _ = create(emb, model="tiny-llama", input="hello there", encoding_format="float")
    assert other.data[0].embedding != alone.data[0].embedding  # another model, another vector


def test_token_id_inputs_and_usage(emb):
    one, _ = create(emb, model="tiny-llama", input=[10, 20, 30, 40], encoding_format="float")
    assert len(one.data) == 1 and one.usage.prompt_tokens == 4
    two, _ = create(emb, model="tiny-llama", input=[[10, 20, 30, 40], [7]], encoding_format="float")
    assert len(two.data) == 2 and two.usage.prompt_tokens == 5
    assert two.data[0].embedding == one.data[0].embedding


@pytest.mark.parametrize("model,path", [("tiny-llama", LLAMA), ("tiny-qwen", QWEN)])
def test_vector_is_the_mean_pooled_last_hidden_state(emb, model, path):
    """Against scripts/engine/reference.py, an independent float64 forward pass: its last-layer residual stream
    (before the output norm) averaged over the tokens and normalised. The engine quantizes activations to Q8_0,
    so the two agree to about 1e-3, not exactly."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("gguf")
    sys.path.insert(0, str(REPO_ROOT / "scripts" / "engine"))
    import reference as ref
    tokens = [3, 17, 42, 99, 5, 250, 7, 8, 100, 200, 31]
    cfg, weights = ref.load(str(path))
    weights = dict(weights)
    weights["output.weight"] = np.eye(weights["token_embd.weight"].shape[1])  # logits := the hidden state
    final = weights["output_norm.weight"]
    rmsnorm = ref.rmsnorm
    ref.rmsnorm = lambda x, w, eps: x if w is final else rmsnorm(x, w, eps)  # skip the output norm
    try:
        hidden = ref.forward(cfg, weights, tokens)
    finally:
        ref.rmsnorm = rmsnorm
    expected = hidden.mean(axis=0)
    expected /= np.linalg.norm(expected)
    got = np.array(emb.client().embeddings.create(model=model, input=tokens).data[0].embedding)
    assert float(got @ expected) > 0.999
    assert float(np.abs(got - expected).max()) < 0.02


def test_requests_are_logged_with_route_local_and_metrics_count_them(emb):
    resp, headers = create(emb, model="tiny-llama", input=["log me", "and me"], encoding_format="float", user="u-emb")
    row = emb.wait_logged(headers["x-request-id"])
    assert row["endpoint"] == "/v1/embeddings"
    assert row["route"] == "local" and row["upstream"] == "local" and row["model_served"] == "tiny-llama"
    assert row["status"] == 200 and row["user"] == "u-emb"
    assert row["usage"]["prompt_tokens"] == row["usage"]["total_tokens"] == resp.usage.prompt_tokens
    assert row["response_truncated"] is False
    logged = row["response"] if isinstance(row["response"], dict) else json.loads(row["response"])
    assert [d["embedding"] for d in logged["data"]] == [d.embedding for d in resp.data]
    metrics = httpx.get(f"{emb.base_url}/metrics").text
    assert 'flywheel_requests_total{endpoint="/v1/embeddings",model="tiny-llama",route="local",status="200"}' in metrics


def test_a_large_answer_is_logged_capped_but_sent_whole(emb):
    texts = [f"item {i}" for i in range(400)]  # 400 x 64 floats: far more than the log keeps
    resp, headers = create(emb, model="tiny-qwen", input=texts, encoding_format="float")
    assert len(resp.data) == 400 and [d.index for d in resp.data] == list(range(400))
    row = emb.wait_logged(headers["x-request-id"])
    assert row["response_truncated"] is True
    logged = row["response"] if isinstance(row["response"], dict) else json.loads(row["response"])
    assert 0 < len(logged["data"]) < 400
    assert logged["data"][0]["embedding"] == resp.data[0].embedding
    assert logged["usage"]["prompt_tokens"] == resp.usage.prompt_tokens


# ---------------------------------------------------------------- refusals

def bad(fw, body: dict, param: str | None, code: str | None = None, status: int = 400) -> dict:
    r = httpx.post(f"{fw.base_url}/v1/embeddings", json=body, timeout=20)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param, err
    assert err["code"] == code, err
    assert r.headers["x-request-id"]
    return err


def test_bad_input_is_a_400_naming_the_field(emb):
    m = "tiny-llama"
    bad(emb, {"model": m, "input": ""}, "input")
    bad(emb, {"model": m, "input": []}, "input")
    bad(emb, {"model": m, "input": ["ok", ""]}, "input[1]")
    bad(emb, {"model": m, "input": [[1, 2], []]}, "input[1]")
    assert "320" in bad(emb, {"model": m, "input": [1, 320]}, "input")["message"]
    bad(emb, {"model": m, "input": [[1], [-1]]}, "input[1]")
    bad(emb, {"model": m, "input": [1.5]}, "input")
    bad(emb, {"model": m, "input": [1, "a"]}, "input")
    bad(emb, {"model": m, "input": ["a", 1]}, "input")
    bad(emb, {"model": m, "input": 42}, "input")
    bad(emb, {"model": m, "input": {"text": "a"}}, "input")
    bad(emb, {"model": m, "input": None}, "input")
    bad(emb, {"model": m}, "input", "missing_required_parameter")
    bad(emb, {"model": m, "input": "a", "encoding_format": "int8"}, "encoding_format")
    bad(emb, {"model": m, "input": "a", "dimensions": -3}, "dimensions")
    assert "2048" in bad(emb, {"model": m, "input": ["a"] * 2049}, "input")["message"]
    # The SDK raises its usual exception.
    with pytest.raises(openai.BadRequestError) as e:
        emb.client().embeddings.create(model=m, input="a", dimensions=8)
    assert e.value.body["param"] == "dimensions"
    assert e.value.body["code"] == "unsupported_by_local_model"
    assert "mean-pooled" in e.value.body["message"]
    # The model's own width is accepted, as a no-op.
    assert len(emb.client().embeddings.create(model=m, input="a", dimensions=WIDTH).data[0].embedding) == WIDTH


def test_an_input_longer_than_the_context_names_its_index(emb):
    err = bad(emb, {"model": "short-qwen", "input": ["fits", "word " * 100]}, "input[1]", "context_length_exceeded")
    assert "32" in err["message"]
    bad(emb, {"model": "short-qwen", "input": "word " * 100}, "input", "context_length_exceeded")
    bad(emb, {"model": "short-qwen", "input": [list(range(1, 34))]}, "input[0]", "context_length_exceeded")
    # A whole context fits: an embedding generates nothing after it.
    ok = emb.client().embeddings.create(model="short-qwen", input=[list(range(1, 33))])
    assert ok.usage.prompt_tokens == 32


def test_a_policy_sends_what_the_local_model_cannot_do_to_its_fallback(emb):
    raw = emb.client().embeddings.with_raw_response.create(model="emb-policy", input="gamma", dimensions=5,
                                                           encoding_format="float")
    resp = raw.parse()
    assert resp.data[0].embedding == embedding_for("gamma", 5)  # the fake upstream's vector
    assert "fallback after tiny-llama (unsupported_by_local_model)" in raw.headers["x-flywheel-decision"]
    local = emb.client().embeddings.with_raw_response.create(model="emb-policy", input="gamma")
    assert local.headers["x-flywheel-route"] == "local" and local.headers["x-flywheel-variant"] == "tiny-llama"


# ---------------------------------------------------------------- load, limits and disconnects

@pytest.fixture
def busy(flywheel_bin, tmp_path):
    """One slot, no waiting generations (so at most one waiting embedding task), the default 16 MiB body limit."""
    launcher = Launcher(flywheel_bin, tmp_path)
    cfg = {"server": {"listen": "127.0.0.1:0", "shutdown_grace": 2},
           "local_models": [{"name": "tiny", "path": str(LLAMA)}],
           "inference": {"slots": 1, "max_queued": 0, "threads": 1}}
    yield launcher(cfg, name="busy")
    problems = launcher.stop_all()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


LONG = "word " * 50  # about 200 tokens of the tiny vocabulary


def post_raw(fw, body: dict, rid: str) -> socket.socket:
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", fw.port), timeout=30)
    s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-request-id: "
              + rid.encode() + b"\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return s


def test_too_many_tokens_in_one_request_is_a_400(busy):
    # 1,250 inputs of ~240 tokens: over the 300,000-token limit (and tokenized off the event loop: ~375 KB).
    err = bad(busy, {"model": "tiny", "input": ["word " * 60] * 1250}, "input", "max_tokens_per_request")
    assert "300000" in err["message"]


def test_a_full_queue_is_a_503_while_a_long_batch_is_served(busy):
    """While a long batch runs, bursts of small requests compete for the one waiting place: some are refused with
    503 overloaded at once (never stalled), the rest are answered, and the long batch still completes."""
    rid = uid("long-batch")
    long_batch = post_raw(busy, {"model": "tiny", "input": [LONG] * 60}, rid)
    statuses: list[int] = []
    errors: list[dict] = []
    lock = threading.Lock()

    def small():
        r = httpx.post(f"{busy.base_url}/v1/embeddings", json={"model": "tiny", "input": "hi"}, timeout=60)
        with lock:
            statuses.append(r.status_code)
            if r.status_code != 200:
                errors.append(r.json()["error"])

    for _ in range(10):
        threads = [threading.Thread(target=small) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if 503 in statuses:
            break
    assert 503 in statuses, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert all(e["code"] == "overloaded" and e["type"] == "server_error" for e in errors), errors
    assert 200 in statuses
    long_batch.settimeout(120)
    data = b""
    while b"total_tokens" not in data:
        chunk = long_batch.recv(1 << 20)
        assert chunk, data[:200]
        data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    long_batch.close()
    assert busy.wait_logged(rid)["status"] == 200


def test_a_client_that_leaves_stops_its_batch_and_is_logged_499(busy):
    rid = uid("leaver")
    s = post_raw(busy, {"model": "tiny", "input": [LONG] * 1000}, rid)  # minutes of work on a debug build
    time.sleep(0.5)
    s.close()
    row = busy.wait_logged(rid)
    assert row["status"] == 499
    assert row["incomplete"] is True
    assert row["route"] == "local"
    # The batch stopped: a new request is answered at once, not after the rest of the thousand inputs.
    started = time.monotonic()
    r = httpx.post(f"{busy.base_url}/v1/embeddings", json={"model": "tiny", "input": "after"}, timeout=30)
    assert r.status_code == 200
    assert time.monotonic() - started < 10
    assert busy.alive()

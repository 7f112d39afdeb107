"""Completions, embeddings, models, healthz, metrics."""
from __future__ import annotations

import re

from fake_upstream import MODEL_IDS, embedding_for
from helpers import user_msg

METRIC_NAMES = [
    "flywheel_requests_total",
    "flywheel_request_duration_seconds",
    "flywheel_gateway_overhead_seconds",
    "flywheel_upstream_errors_total",
    "flywheel_log_queue_depth",
    "flywheel_log_dropped_total",
]


def test_completions_non_stream(gw):
    c = gw.client().completions.create(model="gpt-3.5-turbo-instruct", prompt="say this")
    assert c.object == "text_completion"
    assert c.choices[0].text == "echo: say this"
    assert c.usage.total_tokens == 2 + 3
    assert gw.primary.requests_to("/v1/completions")[-1].json["prompt"] == "say this"


def test_completions_stream(gw):
    s = gw.client().completions.create(model="gpt-3.5-turbo-instruct", prompt="stream me", stream=True)
    assert "".join(c.choices[0].text for c in s if c.choices) == "echo: stream me"


def test_embeddings_default_sdk_encoding(gw):
    e = gw.client().embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert [d.embedding for d in e.data] == [embedding_for("alpha"), embedding_for("beta")]
    assert e.usage.prompt_tokens == 2


def test_embeddings_float_encoding_and_dimensions(gw):
    e = gw.client().embeddings.create(model="text-embedding-3-small", input="gamma", encoding_format="float",
                                      dimensions=5)
    assert e.data[0].embedding == embedding_for("gamma", 5)
    assert gw.primary.requests_to("/embeddings")[-1].json["dimensions"] == 5


def test_models_lists_route_models(gw):
    ids = [m.id for m in gw.client().models.list()]
    for name in ("gpt-4o-mini", "renamed-model", "text-embedding-3-small"):
        assert name in ids, ids
    assert "no-such-model" not in ids


def test_healthz(gw):
    with gw.fw.http() as c:
        r = c.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers.get("x-request-id")


def test_metrics_exposes_all_metric_names_and_counts_requests(gw):
    gw.chat("metrics please")
    with gw.fw.http() as c:
        r = c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in METRIC_NAMES:
        # a sample line, or at least its # TYPE line (labelled counters may have no samples yet)
        assert re.search(rf"^({name}(_bucket|_sum|_count)?({{| )|# TYPE {name} )", text, re.M), \
            f"{name} missing from /metrics"
    for suffix in ("_bucket", "_sum", "_count"):
        assert f"flywheel_request_duration_seconds{suffix}" in text
    lines = [l for l in text.splitlines() if l.startswith("flywheel_requests_total{")]
    ours = [l for l in lines if 'model="gpt-4o-mini"' in l and 'status="200"' in l]
    assert ours, f"no flywheel_requests_total sample for gpt-4o-mini/200 in: {lines}"
    for label in ("endpoint=", "route="):
        assert label in ours[0], ours[0]
    assert float(ours[0].rsplit(" ", 1)[1]) >= 1


def test_metrics_counter_increases(gw):
    def count() -> float:
        with gw.fw.http() as c:
            text = c.get("/metrics").text
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                   if l.startswith("flywheel_requests_total{") and 'model="gpt-counter"' in l)
    before = count()
    for _ in range(3):
        gw.chat("count", model="gpt-counter")
    assert count() - before == 3


def test_upstream_url_only_mode_routes_every_model_and_proxies_models(start_flywheel, fake):
    fw = start_flywheel(None, args=["--upstream-url", fake.url])
    client = fw.client()
    r = client.chat.completions.create(model="anything-at-all", messages=user_msg("free"))
    assert r.choices[0].message.content == "echo: free"
    assert fake.requests_to("/chat/completions")[-1].json["model"] == "anything-at-all"
    assert [m.id for m in client.models.list()] == MODEL_IDS

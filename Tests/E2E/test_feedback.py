"""POST /v1/feedback: storage, validation, idempotency, webhook signatures."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from conftest import base_config, uid
from helpers import assert_openai_error

SECRET = "s3cret-for-tests"


def logged_request(gw, text: str = "feedback target") -> str:
    """A request that is already in the log (feedback is posted after it landed)."""
    _, rid = gw.chat(f"{text} {uid()}")
    gw.fw.wait_logged(rid)
    return rid


def post_feedback(fw, payload, headers: dict | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with fw.http() as c:
        return c.post("/v1/feedback", content=body, headers={"content-type": "application/json", **(headers or {})})


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_accepted_feedback_is_committed_and_shown(gw):
    rid = logged_request(gw)
    r = post_feedback(gw.fw, {"request_id": rid, "signal": "accepted"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["id"], int) and not isinstance(body["id"], bool)
    assert body["object"] == "feedback" and body["request_id"] == rid and body["duplicate"] is False
    assert r.headers.get("x-request-id")
    # "200 only after it's committed": visible immediately, no polling
    fb = gw.fw.show(rid)["feedback"]
    assert [f["signal"] for f in fb] == ["accepted"]
    assert fb[0]["id"] == body["id"] and fb[0]["request_id"] == rid and fb[0]["type"] == "feedback"
    assert fb[0]["created_at"]


def test_score_feedback_keeps_value_source_weight(gw):
    rid = logged_request(gw)
    r = post_feedback(gw.fw, {"request_id": rid, "signal": "score", "value": 0.75, "source": "ui-thumbs",
                              "weight": 2.5})
    assert r.status_code == 200, r.text
    (fb,) = gw.fw.show(rid)["feedback"]
    assert fb["signal"] == "score" and fb["value"] == pytest.approx(0.75)
    assert fb["source"] == "ui-thumbs" and fb["weight"] == pytest.approx(2.5)


def test_edited_feedback_keeps_correction_and_comment_feedback(gw):
    rid = logged_request(gw)
    assert post_feedback(gw.fw, {"request_id": rid, "signal": "edited",
                                 "correction": "the better answer ✓"}).status_code == 200
    assert post_feedback(gw.fw, {"request_id": rid, "signal": "comment",
                                 "comment": "too long"}).status_code == 200
    assert post_feedback(gw.fw, {"request_id": rid, "signal": "rejected"}).status_code == 200
    fb = gw.fw.show(rid)["feedback"]
    by_signal = {f["signal"]: f for f in fb}
    assert set(by_signal) == {"edited", "comment", "rejected"}
    assert by_signal["edited"]["correction"] == "the better answer ✓"
    assert by_signal["comment"]["comment"] == "too long"
    assert len({f["id"] for f in fb}) == 3


def test_feedback_for_unknown_request_is_404(gw):
    r = post_feedback(gw.fw, {"request_id": "no-such-request-" + uid(), "signal": "accepted"})
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=404, code="request_not_found")


@pytest.mark.parametrize("payload", [
    pytest.param({"signal": "accepted"}, id="missing-request_id"),
    pytest.param({"request_id": "RID", "signal": "loved-it"}, id="bad-signal"),
    pytest.param({"request_id": "RID"}, id="missing-signal"),
    pytest.param({"request_id": "RID", "signal": "score"}, id="score-without-value"),
    pytest.param({"request_id": "RID", "signal": "score", "value": "high"}, id="score-non-numeric"),
    pytest.param([{"request_id": "RID", "signal": "accepted"}], id="array-body"),
    pytest.param("just a string", id="string-body"),
    pytest.param(b'{"request_id": ', id="bad-json"),
])
def test_bad_feedback_is_400(gw, payload):
    rid = getattr(gw.fw, "_shared_feedback_rid", None)
    if rid is None:  # one logged request serves all the 400 cases
        rid = gw.fw._shared_feedback_rid = logged_request(gw)
    if isinstance(payload, dict):
        payload = {k: (rid if v == "RID" else v) for k, v in payload.items()}
    elif isinstance(payload, list):
        payload = [{k: (rid if v == "RID" else v) for k, v in p.items()} for p in payload]
    r = post_feedback(gw.fw, payload)
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=400, etype="invalid_request_error")
    assert gw.fw.show(rid)["feedback"] == []


def test_idempotency_key_returns_same_id_as_duplicate(gw):
    rid = logged_request(gw)
    key = uid("idem")
    payload = {"request_id": rid, "signal": "score", "value": 1}
    first = post_feedback(gw.fw, payload, {"Idempotency-Key": key})
    second = post_feedback(gw.fw, payload, {"Idempotency-Key": key})
    assert first.status_code == second.status_code == 200
    assert first.json()["duplicate"] is False and second.json()["duplicate"] is True
    assert first.json()["id"] == second.json()["id"]
    other = post_feedback(gw.fw, payload, {"Idempotency-Key": uid("idem")})
    assert other.status_code == 200 and other.json()["id"] != first.json()["id"]
    assert len(gw.fw.show(rid)["feedback"]) == 2


def test_without_idempotency_key_each_post_is_new(gw):
    rid = logged_request(gw)
    a = post_feedback(gw.fw, {"request_id": rid, "signal": "accepted"}).json()
    b = post_feedback(gw.fw, {"request_id": rid, "signal": "accepted"}).json()
    assert a["id"] != b["id"] and not a["duplicate"] and not b["duplicate"]


# ---------------------------------------------------------------- signed webhooks

@pytest.fixture
def signed(start_flywheel, fake, fake_backup):
    cfg = base_config(fake.url, fake_backup.url)
    cfg["feedback"] = {"webhook_secret_env": "FLYWHEEL_TEST_WEBHOOK_SECRET"}
    fw = start_flywheel(cfg, env={"FLYWHEEL_TEST_WEBHOOK_SECRET": SECRET})
    raw = fw.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "sign"}])
    rid = raw.headers["x-request-id"]
    fw.wait_logged(rid)
    return fw, rid


def test_signature_required_when_secret_configured(signed):
    fw, rid = signed
    r = post_feedback(fw, {"request_id": rid, "signal": "accepted"})
    assert_openai_error(r.status_code, r.headers, r.content, expect_status=401, code="invalid_signature")
    assert fw.show(rid)["feedback"] == []


def test_invalid_signature_is_401(signed):
    fw, rid = signed
    body = json.dumps({"request_id": rid, "signal": "accepted"}).encode()
    for bad in (sign(body, "wrong-secret"), sign(body + b" "), "sha256=zz", sign(body).replace("sha256=", "")):
        r = post_feedback(fw, body, {"x-flywheel-signature": bad})
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=401, code="invalid_signature")
    assert fw.show(rid)["feedback"] == []


def test_valid_signature_over_raw_body_is_accepted(signed):
    fw, rid = signed
    # unusual spacing/key order: the HMAC is over the raw bytes, not a re-serialisation
    body = b'{ "signal" : "score",  "value": 3, "request_id": "%s" }' % rid.encode()
    r = post_feedback(fw, body, {"x-flywheel-signature": sign(body)})
    assert r.status_code == 200, r.text
    (fb,) = fw.show(rid)["feedback"]
    assert fb["signal"] == "score" and fb["value"] == 3

"""Access control: virtual API keys (`flywheel keys`), per-key models, rates and budgets, the admin key, the
loopback rule for a daemon without keys, and secrets that never reach the log or any output. Clients are the
official openai SDK where an SDK would be used; every wait is for an event (a status change), not a fixed time."""
from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import subprocess
import time

import openai
import pytest

from conftest import UPSTREAM_KEY, base_config, run_cli
from helpers import assert_openai_error, httpx, poll, user_msg


def create_key(fw, *args: str) -> dict:
    p = fw.cli("keys", "create", "--db", str(fw.db), "--json", *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def chat(fw, key: str | None, model: str = "gpt-4o-mini", text: str = "hello"):
    return fw.client(api_key=key or "none").chat.completions.with_raw_response.create(model=model, messages=user_msg(text))


def status_with(fw, key: str | None) -> int:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    with fw.http() as c:
        return c.post("/v1/chat/completions", headers=headers,
                      json={"model": "gpt-4o-mini", "messages": user_msg("probe")}).status_code


def wait_in_force(fw, key: str) -> None:
    """Waits until the daemon knows `key`: a request it would refuse as invalid (no messages) gets 400, not 401.
    Such a request never reaches the key's rate window."""
    def state() -> bool:
        with fw.http() as c:
            return c.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "gpt-4o-mini"}).status_code == 400 and status_with(fw, None) == 401
    poll(state, timeout=10, what="the key in force")


def test_a_key_created_while_the_daemon_runs_turns_auth_on_and_revocation_takes_effect_live(start_flywheel, fake):
    fw = start_flywheel(base_config(fake.url, fake.url))
    assert "auth: off" in fw.stderr() and "loopback only" in fw.stderr()
    assert status_with(fw, None) == 200  # open: no key exists yet
    key = create_key(fw, "--name", "alice")
    assert key["key"].startswith("fw_" + key["id"] + "_")
    # Auth turns on once the daemon has seen the key (within about a second).
    poll(lambda: status_with(fw, None) == 401, timeout=10, what="auth turned on by the first key")
    with pytest.raises(openai.AuthenticationError) as ei:
        chat(fw, "fw_" + key["id"] + "_" + "0" * 48)
    assert ei.value.status_code == 401 and ei.value.code == "invalid_api_key"
    raw = chat(fw, key["key"])
    assert raw.parse().choices[0].message.content == "echo: hello"
    row = fw.wait_logged(raw.headers["x-request-id"])
    assert row["client_key_id"] == key["id"]
    assert any(r["client_key_id"] == key["id"] for r in fw.tail("--key", key["id"]))
    # The upstream gets its own key, never the client's.
    assert fake.requests_to("/chat/completions")[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"

    p = fw.cli("keys", "revoke", key["id"], "--db", str(fw.db))
    assert p.returncode == 0, p.stderr
    poll(lambda: status_with(fw, key["key"]) == 401, timeout=10, what="the revoked key refused")
    with pytest.raises(openai.AuthenticationError) as ei:
        chat(fw, key["key"])
    assert "revoked" in ei.value.message
    refused = fw.wait_logged(ei.value.response.headers["x-request-id"])
    assert refused["status"] == 401 and refused["client_key_id"] == key["id"] and refused["error"]["type"] == "invalid_api_key"
    # Revoking the last key does not open the gateway again; revoking twice is an error.
    assert status_with(fw, None) == 401
    p = fw.cli("keys", "revoke", key["id"], "--db", str(fw.db))
    assert p.returncode == 1 and "revoked already" in p.stderr
    listed = [json.loads(line) for line in fw.cli("keys", "list", "--db", str(fw.db), "--json").stdout.splitlines()]
    assert listed[0]["id"] == key["id"] and listed[0]["revoked_at"] and listed[0]["requests"] >= 2
    assert "key" not in listed[0] and key["key"] not in json.dumps(listed)


def test_model_rules_rate_limits_and_budgets_answer_403_and_429_with_retry_after(start_flywheel, fake):
    fw = start_flywheel(base_config(fake.url, fake.url))
    mini = create_key(fw, "--name", "mini-only", "--models", "gpt-4o-mi*", "--rpm", "2")
    tokens = create_key(fw, "--name", "tokens", "--tpm", "5")
    budget = create_key(fw, "--name", "budget", "--budget-usd", "0.0000001")
    for k in (mini, tokens, budget):
        wait_in_force(fw, k["key"])
    mini_answered = [chat(fw, mini["key"])]  # 1 of mini's 2 a minute

    with pytest.raises(openai.PermissionDeniedError) as ei:
        chat(fw, mini["key"], model="renamed-model")
    assert ei.value.status_code == 403 and ei.value.code == "model_not_allowed"
    assert fw.wait_logged(ei.value.response.headers["x-request-id"])["error"]["type"] == "model_not_allowed"

    # Its model list shows only what it may use.
    ids = [m.id for m in fw.client(api_key=mini["key"]).models.list()]
    assert "gpt-4o-mini" in ids and "renamed-model" not in ids
    with pytest.raises(openai.NotFoundError):
        fw.client(api_key=mini["key"]).models.retrieve("renamed-model")
    mini_answered.append(chat(fw, mini["key"]))  # the second request of the minute
    with pytest.raises(openai.RateLimitError) as ei:
        chat(fw, mini["key"])
    e = ei.value
    assert e.code == "rate_limit_exceeded" and e.body["type"] == "requests"
    assert 1 <= int(e.response.headers["retry-after"]) <= 60
    assert fw.wait_logged(e.response.headers["x-request-id"])["status"] == 429

    # Tokens per minute count the usage of answered requests: the first answer uses more than 5.
    chat(fw, tokens["key"], text="one two three four five six")
    with pytest.raises(openai.RateLimitError) as ei:
        chat(fw, tokens["key"])
    assert ei.value.body["type"] == "tokens" and 1 <= int(ei.value.response.headers["retry-after"]) <= 60

    # The budget: the first request's cost (priced by the daemon's table) spends it.
    spent = chat(fw, budget["key"])
    with pytest.raises(openai.RateLimitError) as ei:
        chat(fw, budget["key"])
    assert ei.value.code == "budget_exceeded" and ei.value.response.headers["retry-after"]
    assert ei.value.response.headers["x-should-retry"] == "false"
    # Rows are committed in the background (group commit): the report reads the log once these are there.
    fw.wait_logged(spent.headers["x-request-id"])
    fw.wait_logged(ei.value.response.headers["x-request-id"])
    for answered in mini_answered:
        fw.wait_logged(answered.headers["x-request-id"])
    # Per-key usage and spend in the report.
    p = fw.cli("report", "--db", str(fw.db), "--json")
    assert p.returncode == 0, p.stderr
    keys = {k["key"]: k for k in json.loads(p.stdout)["keys"]}
    assert keys[budget["id"]]["cost_usd"] > 0.0000001 and keys[mini["id"]]["requests"] >= 4
    assert budget["id"] in fw.cli("report", "--db", str(fw.db)).stdout

    # The spend survives a restart: it is summed from the log.
    assert fw.stop() == 0
    again = start_flywheel(base_config(fake.url, fake.url), name=fw.name)
    with pytest.raises(openai.RateLimitError) as ei:
        chat(again, budget["key"])
    assert ei.value.code == "budget_exceeded"


def test_an_expired_key_is_refused_and_config_keys_keep_working(start_flywheel, fake):
    cfg = base_config(fake.url, fake.url)
    cfg["auth"] = {"keys": [{"id": "team-a", "key": "sk-config-team-a"}]}
    fw = start_flywheel(cfg)
    assert "auth: on" in fw.stderr()
    key = create_key(fw, "--name", "temp", "--expires", "30d")
    wait_in_force(fw, key["key"])
    assert status_with(fw, "sk-config-team-a") == 200
    # Expire it in the log (as time would), then bump the change marker as any change does.
    with sqlite3.connect(fw.db) as db:
        db.execute("UPDATE api_keys SET expires_at = 1000 WHERE id = ?", (key["id"],))
        db.execute("INSERT INTO api_key_changes (created_at, key_id, action, source) VALUES (1, ?, 'test', 'test')", (key["id"],))
    poll(lambda: status_with(fw, key["key"]) == 401, timeout=10, what="the expired key refused")
    with pytest.raises(openai.AuthenticationError) as ei:
        chat(fw, key["key"])
    assert "expired" in ei.value.message
    assert status_with(fw, "sk-config-team-a") == 200


def test_hostile_keys_and_names(start_flywheel, fake):
    fw = start_flywheel(base_config(fake.url, fake.url))
    key = create_key(fw, "--name", "evil\x1b[2J\r\nname\u202e")
    poll(lambda: status_with(fw, None) == 401, timeout=10, what="auth on")
    out = fw.cli("keys", "list", "--db", str(fw.db)).stdout
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and "\\e[2J\\r\\n" in out
    # A reused live name is refused with a clear message.
    p = fw.cli("keys", "create", "--db", str(fw.db), "--name", "evil\x1b[2J\r\nname\u202e")
    assert p.returncode != 0 and "already exists" in p.stderr and "\x1b" not in p.stderr
    for bad in ("tomorrow", "2020-01-01", "99999999999d", "x" * 5000):
        p = fw.cli("keys", "create", "--db", str(fw.db), "--name", "n", "--expires", bad)
        assert p.returncode != 0 and "--expires" in p.stderr, (bad, p.stderr)
    with fw.http() as c:
        body = {"model": "gpt-4o-mini", "messages": user_msg("x")}
        for auth in ("Bearer " + "a" * 12000, "Bearer sk-" + key["key"][3:], "Bearer fw_" + key["id"],
                     "Bearer " + key["key"].upper(), "Bearer " + key["key"] + "0", "Basic !!!", "Bearer",
                     "Bearer " + key["key"][:-1] + "g", "Bearer  " + key["key"] + "\t" + key["key"]):
            r = c.post("/v1/chat/completions", headers={"authorization": auth}, json=body)
            assert_openai_error(r.status_code, r.headers, r.content, expect_status=401, code="invalid_api_key")
        r = c.post("/v1/chat/completions", headers={"authorization": "Bearer " + "a" * 20000}, json=body)
        assert r.status_code == 431
        # A control character in the header is the HTTP parser's 400, before any key is looked at.
        r = c.post("/v1/chat/completions", headers={"authorization": "Bearer " + key["key"][:-1] + "\x7f"}, json=body)
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=400)
        assert c.post("/v1/chat/completions", headers={"authorization": "Bearer " + key["key"]}, json=body).status_code == 200
    assert fw.alive()


def serve_raw(fw_bin, tmp_path, *args: str, env: dict | None = None) -> subprocess.Popen:
    import os
    full = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    full.update(env or {})
    return subprocess.Popen([str(fw_bin), "serve", "--upstream-url", "http://127.0.0.1:9/v1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full, cwd=tmp_path)


def test_without_keys_a_non_loopback_listener_is_refused_unless_allowed(flywheel_bin, tmp_path):
    db = tmp_path / "open.db"
    p = serve_raw(flywheel_bin, tmp_path, "--listen", "0.0.0.0:0", "--db", str(db))
    out, err = p.communicate(timeout=30)
    assert p.returncode == 78 and "no API keys exist" in err and "allow_open" in err, err
    # Allowed explicitly: it starts and says it is open.
    p = serve_raw(flywheel_bin, tmp_path, "--listen", "0.0.0.0:0", "--db", str(db), "--allow-open")
    try:
        line = poll(lambda: p.stderr.readline(), timeout=30, what="the daemon's first line")
        lines = [line, p.stderr.readline()]
        assert "listening on http://0.0.0.0:" in lines[0] and "auth: off" in lines[1], lines
    finally:
        p.terminate()
        p.communicate(timeout=30)
    # With a key in the log it starts without being told.
    assert run_cli(flywheel_bin, "keys", "create", "--name", "first", "--db", str(db)).returncode == 0
    p = serve_raw(flywheel_bin, tmp_path, "--listen", "0.0.0.0:0", "--db", str(db))
    try:
        lines = [p.stderr.readline(), p.stderr.readline()]
        assert "listening on" in lines[0] and "auth: on" in lines[1] and "1 virtual keys" in lines[1], lines
    finally:
        p.terminate()
        assert p.wait(timeout=30) == 0


ADMIN_KEY = "admin-key-must-not-leak-0123456789"
WEBHOOK_SECRET = "whsec-must-not-leak-0123456789"
CONFIG_KEY = "sk-config-key-must-not-leak"


def admin_config(fake, **auth) -> dict:
    cfg = base_config(fake.url, fake.url)
    cfg["auth"] = {"keys": [{"id": "app", "key": CONFIG_KEY}], "admin_key_env": "FLYWHEEL_ADMIN_KEY", **auth}
    return cfg


def test_the_admin_key_opens_the_dashboard_metrics_and_reload_and_client_keys_do_not(start_flywheel, fake):
    fw = start_flywheel(admin_config(fake, metrics_require_admin=True), env={"FLYWHEEL_ADMIN_KEY": ADMIN_KEY})
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    with fw.http() as c:
        page = c.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        page = c.get("/login")
        assert page.status_code == 200 and "<form" in page.text and 'action="/login"' in page.text
        assert c.get("/", headers={"authorization": f"Bearer {CONFIG_KEY}"}).status_code == 303
        assert c.get("/?key=" + CONFIG_KEY).status_code == 303
        r = c.get("/dashboard/data", headers={"authorization": f"Bearer {CONFIG_KEY}"})
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=401, code="admin_key_required")
        assert c.get("/", auth=("admin", ADMIN_KEY)).status_code == 200  # a browser's Basic prompt
        assert c.get("/dashboard/data", headers=admin).status_code == 200
        r = c.get("/metrics")
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=401, code="admin_key_required")
        assert c.get("/metrics", headers=admin).status_code == 200
        # The admin key is not a client key.
        r = c.post("/v1/chat/completions", headers=admin, json={"model": "gpt-4o-mini", "messages": user_msg("x")})
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=401, code="invalid_api_key")
        # The login form: a wrong key gets the form again, the right one an HttpOnly SameSite=Strict cookie.
        assert c.post("/login", data={"key": "wrong"}).status_code == 403
        r = c.post("/login", data={"key": ADMIN_KEY})
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and ADMIN_KEY not in cookie
        assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back (test_tls_listener: HTTPS)
    with fw.http() as browser:
        browser.cookies.set("flywheel_admin", cookie.split(";")[0].split("=", 1)[1])
        assert browser.get("/dashboard/data").status_code == 200
        assert browser.get("/").status_code == 200
        # The cookie does not reload: state changes take the key itself.
        assert browser.post("/admin/reload").status_code == 401
    with fw.http() as c:
        r = c.post("/admin/reload", headers={"authorization": f"Bearer {CONFIG_KEY}"})
        assert_openai_error(r.status_code, r.headers, r.content, expect_status=401, code="admin_key_required")
        r = c.post("/admin/reload", headers=admin)
        assert r.status_code == 200 and any(line.startswith("policies") for line in r.json()["reloaded"])
        # A broken configuration: 400 naming the problem, the old one stays in force.
        good = fw.config_path.read_text()
        fw.config_path.write_text(good + "\nbogus_section: 1\n")
        r = c.post("/admin/reload", headers=admin)
        err = assert_openai_error(r.status_code, r.headers, r.content, expect_status=400, code="invalid_config")
        assert "bogus_section" in err["message"] and ADMIN_KEY not in err["message"]
        fw.config_path.write_text(good)
        assert c.post("/v1/chat/completions", headers={"authorization": f"Bearer {CONFIG_KEY}"},
                      json={"model": "gpt-4o-mini", "messages": user_msg("x")}).status_code == 200


def test_without_an_admin_key_admin_endpoints_answer_loopback_as_before(start_flywheel, fake):
    fw = start_flywheel(base_config(fake.url, fake.url))
    with fw.http() as c:
        r = c.post("/admin/reload")
        assert r.status_code == 200 and r.json()["reloaded"]
        assert c.get("/metrics").status_code == 200
        assert c.get("/").status_code == 200
        r = c.post("/login", data={"key": "x"})
        assert r.status_code == 404


def test_secrets_never_reach_the_log_outputs_metrics_or_errors(start_flywheel, fake):
    """Every secret the daemon knows, after every path that handles one: a wrong key, the right keys (config and
    virtual), a revoked key, admin calls (right and wrong), signed and badly signed feedback, upstream failures."""
    cfg = admin_config(fake)
    cfg["feedback"] = {"webhook_secret_env": "FLYWHEEL_WEBHOOK"}
    fw = start_flywheel(cfg, env={"FLYWHEEL_ADMIN_KEY": ADMIN_KEY, "FLYWHEEL_WEBHOOK": WEBHOOK_SECRET})
    virtual = create_key(fw, "--name", "app2")
    revoked = create_key(fw, "--name", "gone")
    wait_in_force(fw, virtual["key"])
    wait_in_force(fw, revoked["key"])
    assert fw.cli("keys", "revoke", revoked["id"], "--db", str(fw.db)).returncode == 0
    poll(lambda: status_with(fw, revoked["key"]) == 401, timeout=10, what="the revoked key refused")
    secrets = [UPSTREAM_KEY, ADMIN_KEY, WEBHOOK_SECRET, CONFIG_KEY, virtual["key"], revoked["key"],
               virtual["key"].split("_")[2], revoked["key"].split("_")[2]]
    seen: list[str] = []
    ids = []
    with fw.http() as c:
        for auth in (CONFIG_KEY, virtual["key"], revoked["key"], "sk-wrong", ADMIN_KEY, CONFIG_KEY[:-1]):
            for stream in (False, True):
                r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {auth}"},
                           json={"model": "gpt-4o-mini", "messages": user_msg(f"secret test {stream}"), "stream": stream})
                seen.append(r.text + json.dumps(dict(r.headers)))
                ids.append(r.headers["x-request-id"])
        fake.fail(500, count=10)
        r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {CONFIG_KEY}"},
                   json={"model": "gpt-4o-mini", "messages": user_msg("upstream fails")})
        seen.append(r.text)
        body = json.dumps({"request_id": ids[0], "signal": "accepted"}).encode()
        good = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        for sig in (good, "sha256=" + "0" * 64, good[:-1]):
            r = c.post("/v1/feedback", content=body, headers={"content-type": "application/json", "x-flywheel-signature": sig})
            seen.append(r.text + json.dumps(dict(r.headers)))
        for headers in ({"authorization": f"Bearer {ADMIN_KEY}"}, {"authorization": f"Bearer {CONFIG_KEY}"}, {}):
            for method, path in (("GET", "/metrics"), ("GET", "/dashboard/data"), ("GET", "/"), ("POST", "/admin/reload")):
                r = c.request(method, path, headers=headers)
                seen.append(r.text + json.dumps({k: v for k, v in r.headers.items() if k != "set-cookie"}))
        # A reload of a file whose broken line holds a secret: the error names the place, never the line.
        good = fw.config_path.read_text()
        fw.config_path.write_text(good + f"\nextra: [{ADMIN_KEY}\n")
        r = c.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 400
        seen.append(r.text)
        fw.config_path.write_text(good)
        r = c.post("/login", data={"key": ADMIN_KEY})
        seen.append(r.text + r.headers["set-cookie"])
        seen.append(c.post("/login", data={"key": ADMIN_KEY + "x"}).text)
    fw.wait_logged(ids[-1])
    seen.append(json.dumps(fw.tail("-n", "100")))
    seen.append(fw.cli("tail", "--db", str(fw.db), "-n", "100").stdout)
    for rid in ids:
        seen.append(fw.cli("show", rid, "--db", str(fw.db)).stdout)
        seen.append(json.dumps(fw.show(rid)))
    seen.append(fw.cli("report", "--db", str(fw.db)).stdout)
    seen.append(fw.cli("keys", "list", "--db", str(fw.db)).stdout + fw.cli("keys", "list", "--db", str(fw.db), "--json").stdout)
    with fw.http() as c:
        seen.append(c.get("/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"}).text)
    assert fw.stop() == 0
    data = b"".join(p.read_bytes() for p in fw.db.parent.glob(fw.db.name + "*"))
    outputs = "\n".join(seen) + fw.stderr() + fw.stdout_path.read_text()
    for secret in secrets:
        assert secret.encode() not in data, f"a secret ({secret[:6]}...) is in the log database"
        assert secret not in outputs, f"a secret ({secret[:6]}...) reached an output"

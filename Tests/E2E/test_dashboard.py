"""The dashboard in a real headless Chromium: the page loads from the daemon with no external assets and no
console errors, renders its charts and tables from real traffic (live counters, the log's last hour, drift
checks and outliers), and updates when new requests arrive (server-sent events). A screenshot is kept in
.build/test-artifacts/dashboard.png."""
from __future__ import annotations

import json
import random

import pytest

from conftest import REPO_ROOT, base_config, run_cli
from helpers import httpx, poll

ARTIFACTS = REPO_ROOT / ".build" / "test-artifacts"


def send(fw, n: int, words: list[str], tag: str, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 20)))
        r = httpx.post(f"{fw.base_url}/v1/chat/completions", headers={"x-flywheel-tags": tag},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
        assert r.status_code == 200


def test_the_dashboard_renders_real_traffic_and_updates_live(start_flywheel, fake, tmp_path):
    pytest.importorskip("websocket")
    from browser import Browser
    cfg = base_config(fake.url, fake.url)
    first = start_flywheel(cfg, name="dash")
    english = ["invoice", "refund", "parcel", "late", "order", "please", "help", "my", "the", "is"]
    send(first, 60, english, "train", 1)
    p = run_cli(first.binary, "export", "--format", "sft", "--out", str(tmp_path / "t.jsonl"), "--db", str(first.db),
                "--validation-fraction", "0", "--keep-duplicates")
    assert p.returncode == 0, p.stderr
    assert first.stop() == 0
    cfg["drift"] = {"baseline": str(tmp_path / "t.jsonl"), "window": "1h", "interval": 1}
    fw = start_flywheel(cfg, name="dash")
    send(fw, 20, ["посылка", "заказ", "помогите", "не", "пришла"], "new", 2)
    poll(lambda: "drift" in fw.stderr(), timeout=60, what="a drift check")

    page = httpx.get(f"{fw.base_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "src=\"http" not in page.text and "href=\"http" not in page.text  # nothing fetched from elsewhere

    browser = Browser()
    try:
        browser.open(fw.base_url + "/")
        browser.wait_for("document.body && Number(document.body.dataset.updates || 0) >= 2", what="two live updates")
        # Charts and tables from the traffic: the live tail, a request-rate series, the routes table.
        assert browser.evaluate("document.querySelectorAll('#tail tbody tr').length") >= 20
        assert browser.evaluate("document.querySelectorAll('#chart-rps polyline.series').length") >= 1
        assert browser.evaluate("document.getElementById('c-total').textContent") == "20"  # since this daemon started
        browser.wait_for("document.getElementById('routes-note').textContent.startsWith('From the log')", timeout=60,
                         what="the log's figures (computed while someone watches)")
        assert "gpt-4o-mini" in browser.evaluate("document.getElementById('routes').textContent")
        browser.wait_for("document.querySelectorAll('#chart-drift polyline.series').length > 0", what="the drift chart")
        browser.wait_for("document.querySelectorAll('#outliers tbody tr').length > 0", what="the outliers")
        # New requests arrive: the page shows them without a reload.
        before = int(browser.evaluate("document.body.dataset.requests"))
        send(fw, 5, ["hello", "again"], "live", 3)
        browser.wait_for(f"Number(document.body.dataset.requests) >= {before + 5}", what="the new requests on the page")
        assert browser.evaluate("document.getElementById('c-total').textContent") == str(before + 5)
        browser.pump(0.5)
        shot = browser.screenshot(ARTIFACTS / "dashboard.png")
        assert shot.stat().st_size > 10_000
        errors = [c for c in browser.console if c["type"] in ("error", "assert")]
        assert not errors and not browser.exceptions, (errors, browser.exceptions)
    finally:
        browser.close()
    snapshot = httpx.get(f"{fw.base_url}/dashboard/data").json()
    assert snapshot["requests"] == 25 and snapshot["drift"]["history"] and json.dumps(snapshot)


def test_with_client_keys_the_dashboard_takes_one_in_its_address(start_flywheel, fake):
    cfg = base_config(fake.url, fake.url)
    cfg["auth"] = {"keys": [{"id": "ops", "key": "sk-dash-123"}]}
    fw = start_flywheel(cfg)
    assert httpx.get(f"{fw.base_url}/").status_code == 401
    assert httpx.get(f"{fw.base_url}/?key=wrong").status_code == 401
    page = httpx.get(f"{fw.base_url}/?key=sk-dash-123")
    assert page.status_code == 200 and "EventSource(\"dashboard/events\" + location.search)" in page.text
    assert httpx.get(f"{fw.base_url}/dashboard/data", headers={"Authorization": "Bearer sk-dash-123"}).status_code == 200
    assert httpx.get(f"{fw.base_url}/dashboard/data?key=sk-dash-123").json()["requests"] == 0
    # The API itself still takes keys in headers only.
    r = httpx.post(f"{fw.base_url}/v1/chat/completions?key=sk-dash-123", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401
    assert httpx.head(f"{fw.base_url}/?key=sk-dash-123").status_code == 200


def test_an_open_dashboard_does_not_hold_the_shutdown(start_flywheel, fake):
    """A live view never ends on its own: at SIGTERM its stream ends cleanly and the daemon exits well inside a
    long grace period (which is for requests in progress, not for dashboards)."""
    import threading
    cfg = base_config(fake.url, fake.url)
    cfg.setdefault("server", {})["shutdown_grace"] = 300
    fw = start_flywheel(cfg)
    got = {"events": 0, "ended": threading.Event(), "error": None}

    def watch():
        try:
            with httpx.stream("GET", f"{fw.base_url}/dashboard/events", timeout=httpx.Timeout(10, read=None)) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        got["events"] += 1
        except Exception as e:  # noqa: BLE001 - any error is reported by the assertion below
            got["error"] = repr(e)
        got["ended"].set()
    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    poll(lambda: got["events"] >= 1, timeout=30, what="the first dashboard event")
    # Well under the 300 s grace: a dashboard holding the drain would run into this limit and fail.
    assert fw.stop(timeout=60) == 0
    assert got["ended"].wait(30) and got["error"] is None, got["error"]
    assert "draining" in fw.stderr()


def test_with_an_admin_key_a_browser_logs_in_with_the_form_and_the_cookie_carries_the_live_view(start_flywheel, fake):
    """The admin key guards the dashboard: the browser is shown the login form, posts the key once, and from then
    on its HttpOnly cookie opens the page and its event stream (the key is never in an address or a script)."""
    pytest.importorskip("websocket")
    from browser import Browser
    admin_key = "dashboard-admin-key-0123456789"
    cfg = base_config(fake.url, fake.url)
    cfg["auth"] = {"admin_key": admin_key}
    fw = start_flywheel(cfg)
    send(fw, 3, ["hello", "there"], "before", 4)
    assert httpx.get(f"{fw.base_url}/dashboard/data").status_code == 401
    browser = Browser()
    try:
        browser.open(fw.base_url + "/")
        browser.wait_for("document.getElementById('key') !== null", what="the login form")
        browser.evaluate(f"document.getElementById('key').value = {json.dumps(admin_key)}; document.querySelector('form').submit(); true")
        browser.wait_for("document.body && Number(document.body.dataset.updates || 0) >= 1", what="the dashboard after logging in")
        assert browser.evaluate("document.getElementById('c-total').textContent") == "3"
        assert browser.evaluate("document.cookie") == ""  # HttpOnly: no script can read the session
        assert admin_key not in browser.evaluate("location.href")
        send(fw, 2, ["again"], "after", 5)
        browser.wait_for("document.getElementById('c-total').textContent === '5'", what="live updates over the cookie")
    finally:
        browser.close()

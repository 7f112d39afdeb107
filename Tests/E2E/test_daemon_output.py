"""The daemon's own output: levelled lines as text or JSON, every field escaped, and the access log (one line
per request, never a secret, a query string or a body)."""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time

from conftest import CLIENT_KEY, UPSTREAM_KEY, base_config, yaml_dump
from helpers import httpx, poll, user_msg

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) \S")
HOSTILE_MODEL = "gpt-evil\r\nINJECTED 2026-01-01T00:00:00.000Z error forged\x1b[31mred\x1b]0;title\x07\x9b2J"


def test_json_output_parses_line_by_line_with_time_level_and_message(start_flywheel, fake, fake_backup):
    cfg = base_config(fake.url, fake_backup.url, log_format="json", access_log=True)
    fw = start_flywheel(cfg)
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user_msg("hi")},
                   headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    poll(lambda: rid in fw.stderr(), timeout=10, what="the access line")
    lines = fw.stderr().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "msg"} <= record.keys()
        assert record["level"] in ("debug", "info", "warn", "error")
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", record["time"])
    assert any(rec["msg"].startswith("listening on http://127.0.0.1:") for rec in records)
    access = [rec for rec in records if rec["msg"] == "request" and rec.get("request_id") == rid]
    assert len(access) == 1
    line = access[0]
    assert line["method"] == "POST" and line["path"] == "/v1/chat/completions" and line["status"] == 200
    assert line["model"] == "gpt-4o-mini" and line["route"] == "upstream" and line["target"] == "primary"
    assert line["bytes"] == len(r.content) and isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["remote"].startswith("127.0.0.1:")
    assert fw.stop() == 0
    tail = [json.loads(line) for line in fw.stderr().splitlines()]
    assert tail[-1]["msg"] == "stopped"


def test_a_hostile_model_name_cannot_forge_lines_or_reach_the_terminal(start_flywheel, fake, fake_backup):
    cfg = base_config(fake.url, fake_backup.url, access_log=True)
    fw = start_flywheel(cfg)
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", json={"model": HOSTILE_MODEL, "messages": user_msg("hi")},
                   headers={"x-request-id": "hostile-1"})
    assert r.status_code == 200  # gpt-* routes it upstream: the name reaches route, log and output
    poll(lambda: "request_id=hostile-1" in fw.stderr(), timeout=10, what="the access line")
    raw = fw.stderr_path.read_bytes()
    for byte in (b"\r", b"\x1b", b"\x07", b"\xc2\x9b"):
        assert byte not in raw, f"{byte!r} reached the daemon's output"
    lines = raw.decode().split("\n")[:-1]
    assert all(TEXT_LINE.match(line) for line in lines), lines
    access = [line for line in lines if "request_id=hostile-1" in line]
    assert len(access) == 1
    assert "model=\"gpt-evil\\r\\nINJECTED 2026-01-01T00:00:00.000Z error forged\\e[31mred\\e]0;title\\x07\\u{9b}2J\"" in access[0]
    assert not any(line.startswith("INJECTED") for line in lines)

    # The same in JSON: one object per line, the name intact once decoded.
    fw2 = start_flywheel(base_config(fake.url, fake_backup.url, access_log=True, log_format="json"))
    httpx.post(f"{fw2.base_url}/v1/chat/completions", json={"model": HOSTILE_MODEL, "messages": user_msg("hi")},
               headers={"x-request-id": "hostile-2"})
    poll(lambda: "hostile-2" in fw2.stderr(), timeout=10, what="the access line")
    raw = fw2.stderr_path.read_bytes()
    assert b"\x1b" not in raw and b"\r" not in raw and b"\xc2\x9b" not in raw
    records = [json.loads(line) for line in raw.decode().splitlines()]
    assert [rec["model"] for rec in records if rec.get("request_id") == "hostile-2"] == [HOSTILE_MODEL]


def test_access_log_file_has_one_line_per_request_and_no_secret(start_flywheel, fake, fake_backup, tmp_path):
    path = tmp_path / "access.log"
    cfg = base_config(fake.url, fake_backup.url, access_log=str(path))
    cfg["auth"] = {"keys": [{"id": "app", "key": CLIENT_KEY}]}
    cfg["feedback"] = {"webhook_secret": "whsec-never-logged"}
    fw = start_flywheel(cfg)
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    with fw.http() as http:
        ids = []
        for i in range(3):
            r = http.post("/v1/chat/completions", headers=auth,
                          json={"model": "gpt-4o-mini", "messages": user_msg(f"secret prompt body {i}")})
            assert r.status_code == 200
            ids.append(r.headers["x-request-id"])
        assert http.get("/healthz").status_code == 200
        assert http.get(f"/?key={CLIENT_KEY}").status_code == 200
        assert http.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-wrong-key"},
                         json={"model": "gpt-4o-mini", "messages": user_msg("x")}).status_code == 401
    # A request that never parses still gets its line.
    with socket.create_connection(("127.0.0.1", fw.port)) as s:
        s.sendall(b"BROKEN\r\n\r\n")
        s.recv(4096)
    poll(lambda: path.exists() and len(path.read_text().splitlines()) >= 7, timeout=10, what="seven access lines")
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) == 7, lines
    for rid in ids:
        line = next(line for line in lines if f"request_id={rid}" in line)
        assert "method=POST path=/v1/chat/completions status=200" in line
        assert "key_id=app" in line and "model=gpt-4o-mini" in line and "route=upstream" in line
    assert any("path=/ status=200" in line for line in lines)
    assert any("status=401" in line for line in lines)
    assert any("method=- path=- status=400" in line for line in lines)
    for secret in (CLIENT_KEY, "sk-wrong-key", UPSTREAM_KEY, "whsec-never-logged", "secret prompt body", "key="):
        assert secret not in text, secret
        assert secret not in fw.stderr(), secret
    # A rotated file is let go at the reload: the next lines land in a new file at the same path.
    path.rename(tmp_path / "access.log.1")
    fw.config_path.write_text(yaml_dump({**cfg, "log": {"path": str(fw.db)}}))
    fw.send(signal.SIGHUP)
    poll(lambda: "reloaded changes=" in fw.stderr(), timeout=30, what="the reload")
    assert httpx.get(f"{fw.base_url}/healthz").status_code == 200
    poll(lambda: path.exists() and "path=/healthz" in path.read_text(), timeout=10, what="the reopened access log")


def test_log_level_warn_keeps_info_lines_out(flywheel_bin, fake, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = base_config(fake.url, fake.url, listen=f"127.0.0.1:{port}")
    cfg["log"] = {"path": str(tmp_path / "fw.db")}
    (tmp_path / "fw.yaml").write_text(yaml_dump(cfg))
    err = tmp_path / "stderr"
    with open(err, "wb") as out:
        proc = subprocess.Popen([str(flywheel_bin), "serve", "--config", str(tmp_path / "fw.yaml"), "--log-level", "warn"],
                                stdout=subprocess.DEVNULL, stderr=out, env={"OPENAI_API_KEY": UPSTREAM_KEY})
        try:
            def healthy() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
                except httpx.TransportError:
                    assert proc.poll() is None, err.read_text()
                    return False
            poll(healthy, timeout=20, what="the daemon to answer /healthz")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    said = err.read_text().splitlines()
    assert said and all(TEXT_LINE.match(line) and line.split(" ")[1] in ("warn", "error") for line in said), said

    bad = subprocess.run([str(flywheel_bin), "serve", "--config", str(tmp_path / "fw.yaml"), "--log-level", "loud"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 64 and "--log-level must be one of debug, info, warn, error" in bad.stderr
    time.sleep(0)  # nothing else to wait for: the process has exited

"""Graceful shutdown on SIGTERM / SIGINT."""
from __future__ import annotations

import signal
import socket
import threading
import time

from conftest import base_config
from helpers import httpx, poll, user_msg


def slow_stream_in_thread(fw, text: str, result: dict) -> threading.Thread:
    body = {"model": "gpt-4o-mini", "stream": True, "messages": user_msg(text)}

    def run() -> None:
        try:
            with httpx.Client(base_url=fw.base_url, timeout=30) as c, \
                    c.stream("POST", "/v1/chat/completions", json=body) as resp:
                result["status"] = resp.status_code
                result["id"] = resp.headers.get("x-request-id")
                result["lines"] = []
                for line in resp.iter_lines():
                    if line.strip():
                        result["lines"].append(line)
                        result.setdefault("first", time.monotonic())
        except Exception as e:  # noqa: BLE001
            result["exc"] = repr(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def test_sigterm_lets_in_flight_stream_finish_exit_0_and_logs_it(start_flywheel, fake, fake_backup):
    fake.chunk_delay = 0.25   # 2 + 8 words -> ~11 events, ~2.5 s
    fw = start_flywheel(base_config(fake.url, fake_backup.url, shutdown_grace=15))
    result: dict = {}
    text = "one two three four five six seven"
    t = slow_stream_in_thread(fw, text, result)
    poll(lambda: "first" in result or "exc" in result, timeout=10, what="first stream chunk")
    assert "exc" not in result, result
    fw.send(signal.SIGTERM)
    # no new connections while draining
    poll(lambda: refused(fw.port), timeout=3, interval=0.05, what="listener closed after SIGTERM")
    assert t.is_alive(), "stream ended before we could check the listener; make it slower"
    t.join(20)
    assert not t.is_alive() and "exc" not in result, result
    assert result["status"] == 200
    assert result["lines"][-1] == "data: [DONE]"
    import json
    content = "".join(json.loads(l[6:])["choices"][0]["delta"].get("content") or ""
                      for l in result["lines"][:-1] if json.loads(l[6:]).get("choices"))
    assert content == "echo: " + text
    assert fw.wait(20) == 0
    row = fw.show(result["id"])  # log flushed before exit: no polling needed
    assert row["status"] == 200
    assert row["response"]["choices"][0]["message"]["content"] == "echo: " + text


def test_idle_sigterm_exits_0_quickly(start_flywheel, fake, fake_backup):
    fw = start_flywheel(base_config(fake.url, fake_backup.url, shutdown_grace=30))
    fw.client().chat.completions.create(model="gpt-4o-mini", messages=user_msg("one"))
    t0 = time.monotonic()
    assert fw.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 5


def test_sigint_exits_0(start_flywheel, fake, fake_backup):
    fw = start_flywheel(base_config(fake.url, fake_backup.url))
    assert fw.stop(signal.SIGINT) == 0


def test_idle_keep_alive_connection_does_not_hold_shutdown(start_flywheel, fake, fake_backup):
    fw = start_flywheel(base_config(fake.url, fake_backup.url, shutdown_grace=30))
    with fw.http() as c:
        assert c.get("/healthz").status_code == 200   # connection now idle in the pool
        t0 = time.monotonic()
        fw.send(signal.SIGTERM)
        assert fw.wait(10) == 0
        assert time.monotonic() - t0 < 5, "an idle keep-alive connection delayed shutdown"


def test_grace_deadline_cuts_endless_stream_and_exits_0(start_flywheel, fake, fake_backup):
    fw = start_flywheel(base_config(fake.url, fake_backup.url, shutdown_grace=2))
    fake.slow_stream(delay=0.1)
    result: dict = {}
    t = slow_stream_in_thread(fw, "forever", result)
    poll(lambda: "first" in result or "exc" in result, timeout=10, what="first stream chunk")
    t0 = time.monotonic()
    fw.send(signal.SIGTERM)
    rc = fw.wait(15)
    elapsed = time.monotonic() - t0
    fake.reset()
    assert rc == 0
    assert 1.5 <= elapsed < 8, f"exited {elapsed:.1f}s after SIGTERM with shutdown_grace 2"
    t.join(5)
    fw.show(result["id"])  # the cut request is still logged


def run_serve(flywheel_bin, tmp_path, *args: str, timeout: float = 15):
    import subprocess
    return subprocess.run([str(flywheel_bin), "serve", "--db", str(tmp_path / "x.db"), *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_port_in_use_fails_fast_with_a_clear_error(flywheel_bin, tmp_path, fake):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        t0 = time.monotonic()
        r = run_serve(flywheel_bin, tmp_path, "--listen", f"127.0.0.1:{port}", "--upstream-url", fake.url)
    assert r.returncode != 0
    assert "bind" in r.stderr and "in use" in r.stderr
    assert time.monotonic() - t0 < 10


def test_bad_configuration_is_reported_not_crashed(flywheel_bin, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server:\n  shutdown_grase: 5\n")
    r = run_serve(flywheel_bin, tmp_path, "--config", str(cfg))
    assert r.returncode != 0 and "unknown key 'shutdown_grase'" in r.stderr
    r = run_serve(flywheel_bin, tmp_path, "--listen", "127.0.0.1:0")
    assert r.returncode != 0 and "--upstream-url" in r.stderr
    r = run_serve(flywheel_bin, tmp_path / "missing-dir", "--listen", "127.0.0.1:0", "--upstream-url", "http://127.0.0.1:9/v1")
    assert r.returncode != 0 and "does not exist" in r.stderr

"""The log's storage failing under a running daemon: a full disk (a real small tmpfs, and `log.max_size_mb`, which
needs no mount), and a file system that turns read-only (ext4 on a loop device after an error). The daemon keeps
serving, says so once in its output and in /metrics, refuses feedback with 503 + Retry-After (it cannot be stored
durably), holds the request rows in memory (bounded), and writes them once the storage has room again."""
from __future__ import annotations

import errno
import os
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import base_config, yaml_dump
from helpers import httpx, poll, user_msg


# ---------------------------------------------------------------- helpers

def metrics(fw) -> dict[str, float]:
    text = httpx.get(f"{fw.base_url}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(flywheel_log_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def chat(fw, text: str) -> str:
    r = httpx.post(f"{fw.base_url}/v1/chat/completions", timeout=20,
                   json={"model": "gpt-4o-mini", "messages": user_msg(text)})
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def feedback(fw, rid: str, key: str):
    return httpx.post(f"{fw.base_url}/v1/feedback", json={"request_id": rid, "signal": "accepted"},
                      headers={"Idempotency-Key": key}, timeout=20)


def stored_ids(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in con.execute("SELECT id FROM requests")}
    finally:
        con.close()


def until_unhealthy(fw, send) -> dict[str, float]:
    """Sends requests (each one gives the writer something to write) until /metrics says the log is unhealthy."""
    def check():
        send()
        m = metrics(fw)
        return m if m.get("flywheel_log_healthy") == 0 else None
    return poll(check, timeout=20, interval=0.05, what="flywheel_log_healthy 0")


def assert_refused_feedback(fw, rid: str) -> None:
    r = feedback(fw, rid, f"refused-{rid}")
    assert r.status_code == 503, r.text
    assert r.headers.get("retry-after"), r.headers
    body = r.json()["error"]
    assert "cannot be written" in body["message"], body


def mount_or_skip(args: list[str], what: str) -> None:
    p = subprocess.run(["mount", *args], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount {what} here ({p.stderr.strip() or p.returncode}); the max_size_mb test covers a full log")


@pytest.fixture
def small_tmpfs(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount_or_skip(["-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], "a tmpfs")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(directory: Path) -> Path:
    """Writes a file until the file system says ENOSPC; returns it."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


# ---------------------------------------------------------------- tests

def test_a_full_disk_keeps_the_daemon_serving_and_it_writes_what_it_held_when_there_is_room(start_flywheel, fake, small_tmpfs):
    db = small_tmpfs / "log.db"
    cfg = base_config(fake.url, fake.url)
    cfg["log"] = {"path": str(db), "flush_interval": 0.01}
    fw = start_flywheel(cfg, args=["--db", str(db)])
    before = chat(fw, "before the disk fills")
    assert feedback(fw, before, "fb-before").status_code == 200

    filler = fill(small_tmpfs)
    during: list[str] = []
    m = until_unhealthy(fw, lambda: during.append(chat(fw, "while the disk is full " + "x" * 2000)))
    assert m['flywheel_log_storage_errors_total{reason="disk_full"}'] >= 1, m
    for i in range(10):
        during.append(chat(fw, f"still serving {i}"))
    assert_refused_feedback(fw, before)
    assert metrics(fw)["flywheel_log_held_rows"] + metrics(fw)["flywheel_log_queue_depth"] > 0
    assert fw.stderr().count("cannot write the log") == 1, fw.stderr()
    assert "disk_full" in fw.stderr()

    filler.unlink()
    poll(lambda: metrics(fw).get("flywheel_log_healthy") == 1, timeout=20, what="flywheel_log_healthy back to 1")
    poll(lambda: set(during) <= stored_ids(db), timeout=10, what="every row answered while full in the log")
    assert metrics(fw)["flywheel_log_dropped_total"] == 0
    assert fw.stderr().count("is writing again") == 1, fw.stderr()
    assert feedback(fw, before, "fb-after").status_code == 200
    assert fw.stop() == 0


def test_the_size_cap_fills_like_a_disk_and_raising_it_on_reload_recovers(start_flywheel, fake):
    cfg = base_config(fake.url, fake.url)
    fw = start_flywheel(dict(cfg, log={"path": "placeholder", "max_size_mb": 1, "flush_interval": 0.01}), name="capped")
    # The launcher's --db wins over log.path; write the real path into the file the reload reads.
    cfg["log"] = {"path": str(fw.db), "max_size_mb": 1, "flush_interval": 0.01}
    fw.config_path.write_text(yaml_dump(cfg))

    first = chat(fw, "before the cap")
    answered = [first]
    big = "y" * 60000
    until_unhealthy(fw, lambda: answered.append(chat(fw, big)))
    for i in range(5):
        answered.append(chat(fw, f"served while capped {i}"))
    m = metrics(fw)
    assert m['flywheel_log_storage_errors_total{reason="disk_full"}'] >= 1, m
    assert m["flywheel_log_healthy"] == 0
    assert_refused_feedback(fw, first)
    assert fw.stderr().count("cannot write the log") == 1, fw.stderr()

    cfg["log"]["max_size_mb"] = 64
    fw.config_path.write_text(yaml_dump(cfg))
    fw.send(signal.SIGHUP)
    poll(lambda: "log size cap: 64 MiB" in fw.stderr(), timeout=10, what="the reload")
    poll(lambda: metrics(fw).get("flywheel_log_healthy") == 1, timeout=20, what="flywheel_log_healthy back to 1")
    poll(lambda: set(answered) <= stored_ids(fw.db), timeout=10, what="every answered request in the log")
    assert "is writing again" in fw.stderr()
    assert feedback(fw, first, "fb-after-cap").status_code == 200
    # A reload that leaves the cap as it is does not report it as changed.
    before = len(fw.stderr())
    fw.send(signal.SIGHUP)
    poll(lambda: "reloaded changes=" in fw.stderr()[before:], timeout=10, what="the second reload")
    assert "log size cap" not in fw.stderr()[before:]


def test_a_file_system_that_turns_read_only_keeps_the_daemon_serving(start_flywheel, fake, tmp_path):
    image = tmp_path / "ext4.img"
    disk = tmp_path / "ro"
    disk.mkdir()
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    if subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True).returncode != 0:
        pytest.skip("mkfs.ext4 is not available")
    mount_or_skip(["-o", "loop,errors=remount-ro", str(image), str(disk)], "an ext4 image on a loop device")
    try:
        device = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(disk)], capture_output=True, text=True).stdout.strip()
        trigger = Path("/sys/fs/ext4") / os.path.basename(device) / "trigger_fs_error"
        if not trigger.exists():
            pytest.skip(f"{trigger} is missing: this kernel cannot inject an ext4 error")
        db = disk / "log.db"
        cfg = base_config(fake.url, fake.url)
        cfg["log"] = {"path": str(db), "flush_interval": 0.01}
        fw = start_flywheel(cfg, args=["--db", str(db)])
        before = chat(fw, "before read-only")
        assert feedback(fw, before, "ro-before").status_code == 200

        # An ext4 error with errors=remount-ro: the kernel turns the file system read-only under the open files.
        trigger.write_text("flywheel test\n")
        m = until_unhealthy(fw, lambda: chat(fw, "after read-only"))
        refused = sum(v for k, v in m.items() if k.startswith("flywheel_log_storage_errors_total"))
        assert refused >= 1, m
        for i in range(5):
            chat(fw, f"still serving {i}")
        assert_refused_feedback(fw, before)
        assert fw.stderr().count("cannot write the log") == 1, fw.stderr()
        # No recovery in place (ext4 needs fsck after an error); shutdown still ends, saying what it could not write.
        assert fw.stop() == 0, fw.stderr()[-2000:]
        assert "request rows lost" in fw.stderr()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_immutable_log_files_refuse_writes_and_the_daemon_recovers_when_they_are_writable_again(start_flywheel, fake, tmp_path):
    """`chattr +i` is a read-only switch that root cannot write through, even on descriptors opened before it."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    cfg = base_config(fake.url, fake.url)
    fw = start_flywheel(dict(cfg, log={"path": "x", "flush_interval": 0.01}), name="immutable")
    before = chat(fw, "before the files turn read-only")
    fw.wait_logged(before)
    files = [str(fw.db), str(fw.db) + "-wal"]
    subprocess.run(["chattr", "+i", *files], check=True)
    try:
        during: list[str] = []
        m = until_unhealthy(fw, lambda: during.append(chat(fw, "while read-only")))
        assert sum(v for k, v in m.items() if k.startswith("flywheel_log_storage_errors_total")) >= 1, m
        for i in range(5):
            during.append(chat(fw, f"still serving {i}"))
        assert_refused_feedback(fw, before)
        assert fw.stderr().count("cannot write the log") == 1, fw.stderr()
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)
    poll(lambda: metrics(fw).get("flywheel_log_healthy") == 1, timeout=20, what="flywheel_log_healthy back to 1")
    poll(lambda: set(during) <= stored_ids(fw.db), timeout=10, what="every row answered while read-only in the log")
    assert "is writing again" in fw.stderr()
    assert feedback(fw, before, "immutable-after").status_code == 200
    con = sqlite3.connect(fw.db, timeout=10)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()

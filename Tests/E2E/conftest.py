"""Fixtures for Flywheel's black-box E2E suite.

The binary comes from $FLYWHEEL_BIN, default <repo>/.build/debug/flywheel.  Tests that need it
ERROR (not skip) with a clear message when it is missing.

Main pieces:
  * ``yaml_dump(obj)`` - tiny block-style YAML writer (stdlib only).
  * ``base_config(...)`` - the default config dict used by most tests.
  * ``Flywheel`` - one running ``flywheel serve`` (port parsed from stderr), with ``client()``,
    ``http()``, ``stop()``, and CLI helpers ``tail()``, ``show()``, ``wait_logged()``.
  * fixtures: ``flywheel_bin``, ``fake``/``fake_backup`` (fresh fake upstreams),
    ``start_flywheel`` (factory; everything it starts is stopped with SIGTERM at teardown and
    must exit 0), ``gw`` (a module-wide default gateway with two fake upstreams, fakes reset
    before each test).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import openai
import pytest

from fake_upstream import FakeUpstream
from helpers import httpx, poll

REPO_ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "sk-upstream-secret-from-env"
CLIENT_KEY = "sk-client-key-must-not-leak"
LISTEN_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 20.0
CLI_TIMEOUT = 15.0
LOG_TIMEOUT = 5.0   # contract: a finished request is in the log within ~1 s


def flywheel_path() -> Path:
    env = os.environ.get("FLYWHEEL_BIN")
    return Path(env) if env else REPO_ROOT / ".build" / "debug" / "flywheel"


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- YAML

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./:@-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _RESERVED:
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def yaml_dump(obj: Any, indent: int = 0) -> str:
    """Block-style YAML like the contract's example: mappings in block style, lists of
    scalars in flow style ([a, b]), lists of mappings as '- key: value' blocks."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict):
                out.append(f"{pad}{k}:\n{yaml_dump(v, indent + 1)}" if v else f"{pad}{k}: {{}}\n")
            elif isinstance(v, list) and v and any(isinstance(x, dict) for x in v):
                out.append(f"{pad}{k}:\n{yaml_dump(v, indent + 1)}")
            elif isinstance(v, list):
                out.append(f"{pad}{k}: [{', '.join(_scalar(x) for x in v)}]\n")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}\n")
    elif isinstance(obj, list):
        for item in obj:
            body = yaml_dump(item, indent + 1)
            out.append(f"{pad}- {body.lstrip()}")
    else:
        out.append(f"{pad}{_scalar(obj)}\n")
    return "".join(out)


def upstream_cfg(name: str, url: str, *, retries: int = 2, first_byte: float = 10, total: float = 30,
                 connect: float = 2, **extra: Any) -> dict:
    cfg = {"name": name, "base_url": url, "api_key_env": "OPENAI_API_KEY",
           "timeouts": {"connect": connect, "first_byte": first_byte, "total": total},
           "retries": {"max": retries, "initial_backoff": 0.01, "max_backoff": 0.05}}
    cfg.update(extra)
    return cfg


def base_config(primary_url: str, backup_url: str, **server: Any) -> dict:
    """Default config: two upstreams and these routes (first match wins)
         gpt-4o-mini            -> [primary, backup]
         renamed-model          -> [primary], upstream_model fake-upstream-model-2024
         text-embedding-3-small -> [primary]
         "gpt-*"                -> [primary]        (used for single-upstream cases)
       Anything else -> 404 model_not_found.  max_body_bytes is lowered to 64 KiB."""
    srv = {"listen": "127.0.0.1:0", "max_body_bytes": 65536, "max_header_bytes": 16384,
           "max_connections": 4096, "request_timeout": 10, "idle_timeout": 60, "shutdown_grace": 5}
    srv.update(server)
    return {
        "server": srv,
        "upstreams": [upstream_cfg("primary", primary_url), upstream_cfg("backup", backup_url)],
        "routes": [
            {"model": "gpt-4o-mini", "upstreams": ["primary", "backup"]},
            {"model": "renamed-model", "upstreams": ["primary"], "upstream_model": "fake-upstream-model-2024"},
            {"model": "text-embedding-3-small", "upstreams": ["primary"]},
            {"model": "gpt-*", "upstreams": ["primary"]},
        ],
        "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.60}},
    }


# ---------------------------------------------------------------- the daemon

class Flywheel:
    """A running `flywheel serve`."""

    def __init__(self, binary: Path, workdir: Path, name: str, config: dict | None, args: list[str],
                 env: dict | None):
        self.binary = binary
        self.workdir = workdir
        self.name = name
        self.db = workdir / f"{name}.db"
        self.stderr_path = workdir / f"{name}.stderr"
        self.stdout_path = workdir / f"{name}.stdout"
        self.config_path: Path | None = None
        self.config = config
        cmd = [str(binary), "serve"]
        if config is not None:
            config = dict(config)
            config.setdefault("log", {"path": str(self.db)})
            self.config_path = workdir / f"{name}.yaml"
            self.config_path.write_text(yaml_dump(config))
            cmd += ["--config", str(self.config_path)]
        cmd += ["--listen", "127.0.0.1:0", "--db", str(self.db)] + list(args)
        self.cmd = cmd
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        full_env["OPENAI_API_KEY"] = UPSTREAM_KEY
        full_env.update(env or {})
        self.env = full_env
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     env=full_env, cwd=workdir)
        self.returncode: int | None = None
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.stderr())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                pytest.fail(f"flywheel exited with {self.proc.returncode} before listening.\n"
                            f"cmd: {' '.join(self.cmd)}\nstderr:\n{self.stderr()}", pytrace=False)
            time.sleep(0.02)
        self.proc.kill()
        pytest.fail(f"flywheel did not print 'listening on http://127.0.0.1:PORT' within "
                    f"{START_TIMEOUT}s.\ncmd: {' '.join(self.cmd)}\nstderr:\n{self.stderr()}", pytrace=False)

    # --- addresses and clients
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def client(self, api_key: str = CLIENT_KEY, **kw: Any) -> openai.OpenAI:
        kw.setdefault("timeout", 20)
        return openai.OpenAI(base_url=self.v1, api_key=api_key, max_retries=0, **kw)

    def http(self, **kw: Any) -> "httpx.Client":
        kw.setdefault("timeout", 20)
        return httpx.Client(base_url=self.base_url, **kw)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    # --- lifecycle
    def send(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._close_files()
            raise AssertionError(f"flywheel did not exit within {timeout}s of the signal; killed.\n"
                                 f"stderr tail:\n{self.stderr()[-3000:]}")
        self._close_files()
        return self.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.send(sig)
        return self.wait(timeout)

    def _close_files(self) -> None:
        for f in (self._err, self._out):
            try:
                f.close()
            except OSError:
                pass

    # --- CLI
    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
        return run_cli(self.binary, *args, timeout=timeout)

    def tail(self, *args: str) -> list[dict]:
        return tail_json(self.binary, self.db, *args)

    def show(self, request_id: str) -> dict:
        return show_json(self.binary, self.db, request_id)

    def wait_logged(self, request_id: str, pred: Callable[[dict], bool] | None = None,
                    timeout: float = LOG_TIMEOUT) -> dict:
        return wait_logged(self.binary, self.db, request_id, pred, timeout)


def run_cli(binary: Path, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout, env=env)


def tail_json(binary: Path, db: Path, *args: str) -> list[dict]:
    p = run_cli(binary, "tail", "--db", str(db), "--json", *args)
    assert p.returncode == 0, f"flywheel tail {' '.join(args)} exited {p.returncode}: {p.stderr}"
    rows = []
    for line in p.stdout.splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"tail --json printed a non-JSON line: {line!r}")
    return rows


def show_json(binary: Path, db: Path, request_id: str) -> dict:
    p = run_cli(binary, "show", request_id, "--db", str(db), "--json")
    assert p.returncode == 0, f"flywheel show {request_id} exited {p.returncode}: {p.stderr}"
    return json.loads(p.stdout)


def wait_logged(binary: Path, db: Path, request_id: str, pred: Callable[[dict], bool] | None = None,
                timeout: float = LOG_TIMEOUT) -> dict:
    """Poll `flywheel show ID --json` until the row exists (and pred(row) holds)."""
    state: dict = {}

    def attempt() -> dict | None:
        p = run_cli(binary, "show", request_id, "--db", str(db), "--json")
        state["last"] = (p.returncode, p.stdout[-500:], p.stderr[-500:])
        if p.returncode != 0:
            return None
        row = json.loads(p.stdout)
        return row if pred is None or pred(row) else None

    return poll(attempt, timeout=timeout, interval=0.1,
                what=f"request {request_id} in the log (last show result: {state.get('last')})")


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def flywheel_bin() -> Path:
    path = flywheel_path()
    if not path.exists():
        pytest.fail(f"flywheel binary not found at {path}. Build it (swift build) or set FLYWHEEL_BIN "
                    f"to the binary. These E2E tests need the real daemon.", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not executable", pytrace=False)
    return path


class Launcher:
    """Starts daemons into a directory; stop_all() SIGTERMs them and returns exit-code problems."""

    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.started: list[Flywheel] = []

    def __call__(self, config: dict | None = None, *, args: list[str] = (), env: dict | None = None,
                 name: str | None = None) -> Flywheel:
        fw = Flywheel(self.binary, self.workdir, name or f"fw{len(self.started)}", config, list(args), env)
        self.started.append(fw)
        return fw

    def stop_all(self) -> list[str]:
        problems = []
        for fw in self.started:
            if fw.returncode is not None:  # a test stopped it and checked it itself
                continue
            try:
                rc = fw.stop()
            except AssertionError as e:
                problems.append(f"{fw.name}: {e}")
                continue
            if rc != 0:
                problems.append(f"{fw.name}: exit code {rc} after SIGTERM; stderr tail:\n{fw.stderr()[-2000:]}")
        return problems


@pytest.fixture
def start_flywheel(flywheel_bin, tmp_path):
    """Factory: start_flywheel(config_dict_or_None, args=[...], env={...}) -> Flywheel."""
    launcher = Launcher(flywheel_bin, tmp_path)
    yield launcher
    problems = launcher.stop_all()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def fake():
    with FakeUpstream() as f:
        yield f


@pytest.fixture
def fake_backup():
    with FakeUpstream() as f:
        yield f


@dataclass
class Gateway:
    fw: Flywheel
    primary: FakeUpstream
    backup: FakeUpstream

    def client(self, **kw: Any) -> openai.OpenAI:
        return self.fw.client(**kw)

    def chat(self, text: str, model: str = "gpt-4o-mini", client: openai.OpenAI | None = None,
             **kw: Any) -> tuple[Any, str]:
        """Non-stream chat through the gateway; returns (ChatCompletion, x-request-id)."""
        raw = (client or self.client()).chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}], **kw)
        return raw.parse(), raw.headers.get("x-request-id")


@pytest.fixture(scope="module")
def _module_gateway(flywheel_bin, tmp_path_factory):
    primary = FakeUpstream().start()
    backup = FakeUpstream().start()
    launcher = Launcher(flywheel_bin, tmp_path_factory.mktemp("gw"))
    try:
        fw = launcher(base_config(primary.url, backup.url), name="gateway")
        yield Gateway(fw, primary, backup)
    finally:
        primary.reset()
        backup.reset()
        problems = launcher.stop_all()
        primary.stop()
        backup.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def gw(_module_gateway) -> Gateway:
    """The module's default gateway (config: base_config); fakes are reset before each test."""
    _module_gateway.primary.reset()
    _module_gateway.backup.reset()
    assert _module_gateway.fw.alive(), f"gateway died:\n{_module_gateway.fw.stderr()[-3000:]}"
    yield _module_gateway
    _module_gateway.primary.reset()
    _module_gateway.backup.reset()

"""A headless Chromium driven over the DevTools protocol (Debian's `chromium` and PyPI's `websocket-client`):
open a page, read the console and uncaught exceptions, evaluate expressions, take a screenshot. Enough for the
dashboard test; no browser download, no test framework beyond pytest."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


class Browser:
    def __init__(self, width: int = 1280, height: int = 1100):
        import websocket  # websocket-client
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="flywheel-chromium-")
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError("chromium exited before it listened")
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                url = m.group(1)
        if url is None:
            raise RuntimeError("chromium did not print its DevTools address")
        port = int(re.search(r":(\d+)/", url).group(1))
        import urllib.request
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json").read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0
        self.console: list[dict] = []
        self.exceptions: list[dict] = []
        self.call("Runtime.enable")
        self.call("Page.enable")
        self.call("Log.enable")

    def _handle(self, message: dict) -> None:
        method = message.get("method")
        if method == "Runtime.consoleAPICalled":
            self.console.append({"type": message["params"]["type"],
                                 "text": " ".join(str(a.get("value", a.get("description", ""))) for a in message["params"]["args"])})
        elif method == "Runtime.exceptionThrown":
            self.exceptions.append(message["params"]["exceptionDetails"])
        elif method == "Log.entryAdded":
            entry = message["params"]["entry"]
            if entry.get("level") == "error":
                self.console.append({"type": "error", "text": entry.get("text", "")})

    def call(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._handle(message)

    def pump(self, seconds: float) -> None:
        """Reads events for up to `seconds` (console messages, exceptions)."""
        self.ws.settimeout(0.1)
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                try:
                    self._handle(json.loads(self.ws.recv()))
                except Exception:
                    pass
        finally:
            self.ws.settimeout(60)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None  # the page is still loading (no body yet)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} ({expression} = {value!r})")
            self.pump(0.1)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)

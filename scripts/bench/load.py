#!/usr/bin/env python3
"""Load on a local model through the gateway: N concurrent streaming clients on /v1/chat/completions.

For each concurrency level N (--concurrency 1,2,4,8) N client threads each run streamed chat completions one
after another (closed loop) until the level's --requests are done (or --duration has passed; requests started
before the deadline finish and count). Per level it prints:
  * out tok/s   aggregate output tokens per second: the completion tokens `usage` reports, summed over the
                level's successful requests, divided by the level's wall time (first request sent to last
                stream closed); `x1` is that figure divided by level 1's (or the lowest level's);
  * req/s       successful requests per second over the same wall time;
  * TTFT        time to first token: request sent -> first SSE chunk with non-empty content (p50/p99, ms);
                it includes waiting for a slot and the prompt's evaluation;
  * ITL         inter-token latency: the gaps between consecutive content chunks, pooled over the level's
                requests (p50/p99, ms); one chunk is one token when every token decodes to text (see below);
  * TPOT        time per output token per request: (last content chunk - first) / (completion tokens - 1)
                (p50/p99 over requests, ms), which does not depend on chunks being tokens;
  * tok/req     mean completion tokens per request (check it is --max-tokens: fixed length);
  * errors      non-200 answers, error events, broken streams, missing usage;
  * client CPU  this process's CPU time over the level's wall time (% of one core), and per output token;
  * daemon CPU  the same for the daemon when this script started it.

Fixed output length: the gateway has no `ignore_eos`, so the requests use greedy decoding (temperature 0) and
`logit_bias` -100 on the model's end-of-generation tokens (read from the GGUF file), so every generation runs
to max_tokens. The random-weight models of scripts/engine/make_model.py mostly pick [PADn] filler tokens, which
decode to no text, so their streams would carry almost no chunks; for such a file (more than half the
vocabulary UNUSED) the requests also add +100 to the ~200 tokens that decode to printable ASCII, so every token
is one content chunk, as with a real model (--text-bias auto|on|off). A prompt starts with a 6-digit request
number so no two requests share a cached prefix (the scheduler reuses finished sequences' KV caches and copies
running ones' prefixes).

The client is raw sockets in threads (HTTP/1.1, one connection per request, chunked decoding and SSE parsing by
hand): 50-150 us of CPU per output token in trials, the per-request cost included; reported per level. Before
and after the run, busy loops measure how many cores the machine really gives (a busy VM host gives fewer than
`nproc` without anything showing in `top`); compare runs only when that is full.

Usage:
  # start a daemon on a free port (temp dir for its config and log), one slot per client of the top level
  python3 scripts/bench/load.py --flywheel .build/release/flywheel --model /tmp/models/smollm2-135m-q8.gguf \\
      --concurrency 1,2,4,8 --requests 16 --max-tokens 128 --prompt-tokens 128
  # or a running gateway (its inference.slots must be >= the top concurrency)
  python3 scripts/bench/load.py --base-url http://127.0.0.1:8080 --model-name mymodel --gguf /path/model.gguf ...
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
LISTEN_RE = re.compile(r"listening on http://[^:]+:(\d+)")
WORDS = ("the quick brown fox jumps over the lazy dog while a flywheel keeps spinning and "
         "every request teaches the small model something new about the product ").split()
# llama.cpp's end-of-generation names (Flywheel's tokenizer uses the same rule).
EOG_NAMES = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>"}
VISIBLE_RE = re.compile(r"^[!-~\u0120\u2581]+$")   # printable ASCII, GPT-2's 'Ġ' (space), SentencePiece's '▁'


def cpu_advertises_amx() -> bool:
    """Whether /proc/cpuinfo lists AMX tiles (llama.cpp's weight repacking for AMX dies with SIGILL on VMs that
    do not grant the tile state; unreadable counts as yes, the safe side)."""
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_tile" in f.read()
    except OSError:
        return True


def make_prompt(words: int, nonce: int | None = None) -> str:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(words))
    return text if nonce is None else f"{nonce % 1000000:06d} {text}"


# ---------------------------------------------------------------- the machine

def _burn(seconds: float, out) -> None:
    c0, end = time.process_time(), time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    out.put(time.process_time() - c0)


def cores_available(processes: int | None = None, seconds: float = 0.5) -> float:
    """Cores this machine gives right now: `processes` busy loops (default: the CPUs we may use) for `seconds`,
    their CPU time summed over the wall time. Other tenants of a VM host do not show in `top` but do show here."""
    import multiprocessing as mp
    n = processes or len(os.sched_getaffinity(0))
    q = mp.Queue()
    ps = [mp.Process(target=_burn, args=(seconds, q)) for _ in range(n)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    return sum(q.get() for _ in ps) / seconds


def check_cores(label: str, log=sys.stderr) -> float:
    n = len(os.sched_getaffinity(0))
    got = cores_available(n)
    note = "" if got >= 0.9 * n else f"  WARNING: less than the {n} CPUs this process may use; the machine is busy"
    print(f"cores available ({label}): {got:.2f} of {n}{note}", file=log)
    return got


# ---------------------------------------------------------------- the model file

def model_token_info(path: str) -> dict:
    """End-of-generation token ids, the ids that decode to printable ASCII, and how much of the vocabulary is
    UNUSED (random benchmark models pad theirs with [PADn] fillers). Needs the `gguf` package."""
    import gguf
    r = gguf.GGUFReader(path)

    def scalar(key):
        f = r.fields.get(key)
        return int(f.parts[f.data[0]][0]) if f is not None and f.data else None
    tf, yf = r.fields["tokenizer.ggml.tokens"], r.fields["tokenizer.ggml.token_type"]
    tokens = [bytes(tf.parts[i]).decode("utf-8", "replace") for i in tf.data]
    types = [int(yf.parts[i][0]) for i in yf.data] if yf is not None else [1] * len(tokens)
    eog = {i for i in (scalar("tokenizer.ggml.eos_token_id"), scalar("tokenizer.ggml.eot_token_id"),
                       scalar("tokenizer.ggml.eom_token_id")) if i is not None and i >= 0}
    eog |= {i for i, t in enumerate(tokens) if t in EOG_NAMES}
    visible = [i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 1 and VISIBLE_RE.match(t)]
    unused = sum(1 for ty in types if ty == 5)
    return {"vocab": len(tokens), "eog": sorted(eog), "visible": visible, "unused_fraction": unused / len(tokens)}


def logit_bias_for(info: dict | None, text_bias: str) -> dict:
    if info is None:
        return {}
    bias = {}
    if text_bias == "on" or (text_bias == "auto" and info["unused_fraction"] > 0.5):
        bias.update({str(i): 100 for i in info["visible"][:1000]})
    bias.update({str(i): -100 for i in info["eog"]})
    return bias


# ---------------------------------------------------------------- the daemon

def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))   # a JSON string is a valid YAML double-quoted scalar


def yaml_dump(obj, indent: int = 0) -> str:
    pad, out = "  " * indent, []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
                out.append(f"{pad}{k}:\n{yaml_dump(v, indent + 1)}")
            elif isinstance(v, list):
                out.append(f"{pad}{k}: [{', '.join(_scalar(x) for x in v)}]\n")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}\n")
    else:
        for item in obj:
            out.append(f"{pad}- {yaml_dump(item, indent + 1).lstrip()}")
    return "".join(out)


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime
    except (OSError, IndexError, ValueError):
        return None


class Daemon:
    """`flywheel serve` with one local model, on a free port, its config and log in a temp dir."""

    def __init__(self, binary: str, model_path: str, *, name: str = "bench", slots: int = 8, threads: int | None = 2,
                 max_queued: int = 64, context_length: int | None = None, max_tokens_limit: int = 4096,
                 prompt_chunk: int | None = None, keep: bool = False, start_timeout: float = 60):
        self.name, self.keep = name, keep
        self.dir = Path(tempfile.mkdtemp(prefix="fw-load-"))
        model = {"name": name, "path": str(Path(model_path).resolve())}
        if context_length:
            model["context_length"] = context_length
        inference = {"slots": slots, "max_queued": max_queued, "max_tokens_limit": max_tokens_limit}
        if threads:
            inference["threads"] = threads
        if prompt_chunk:
            inference["prompt_chunk"] = prompt_chunk
        config = {"server": {"listen": "127.0.0.1:0", "shutdown_grace": 5, "write_timeout": 600},
                  "log": {"path": str(self.dir / "log.db")},
                  "local_models": [model], "inference": inference}
        self.config_path = self.dir / "flywheel.yaml"
        self.config_path.write_text(yaml_dump(config))
        self.stderr_path = self.dir / "stderr.log"
        self._err = open(self.stderr_path, "wb")
        self.cmd = [str(Path(binary).resolve()), "serve", "--config", str(self.config_path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        try:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=self._err, env=env, cwd=self.dir)
        except OSError:
            self._err.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        try:
            self.port = self._wait_listening(start_timeout)
            self.base_url = f"http://127.0.0.1:{self.port}"
            self._wait_healthy(start_timeout)
        except BaseException:
            self.stop()
            raise

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _wait_listening(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.stderr())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"flywheel exited with {self.proc.returncode}:\n{self.stderr()}")
            time.sleep(0.05)
        raise RuntimeError(f"flywheel did not report a port within {timeout} s:\n{self.stderr()}")

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _, _ = http_request(self.base_url, "GET", "/healthz", None, timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"/healthz did not answer 200 within {timeout} s")

    def cpu_seconds(self) -> float | None:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- the client

def _connect(base_url: str, timeout: float) -> tuple[socket.socket, str]:
    u = urlsplit(base_url)
    if u.scheme != "http":
        raise ValueError("only http:// base URLs")
    host, port = u.hostname or "127.0.0.1", u.port or 80
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, (u.path or "").rstrip("/")


class _Reader:
    """Incremental HTTP/1.1 response reader on a blocking socket; `now` is the time of the last recv."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf, self.now, self.eof = sock, b"", 0.0, False

    def fill(self) -> bool:
        data = self.sock.recv(65536)
        self.now = time.perf_counter()
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def head(self) -> tuple[int, dict]:
        while b"\r\n\r\n" not in self.buf:
            if not self.fill():
                raise ConnectionError("connection closed before the response head")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def body_pieces(self, headers: dict):
        """Yields the body as it arrives (chunked, Content-Length or until close)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in self.buf:
                    if not self.fill():
                        raise ConnectionError("stream ended inside a chunk header")
                size_line, rest = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                self.buf = rest
                while len(self.buf) < size + 2:
                    if not self.fill():
                        raise ConnectionError("stream ended inside a chunk")
                piece, self.buf = self.buf[:size], self.buf[size + 2:]
                if size == 0:
                    return
                yield piece
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                if not self.buf and not self.fill():
                    raise ConnectionError("body shorter than Content-Length")
                piece, self.buf = self.buf[:left], self.buf[left:]
                left -= len(piece)
                yield piece
        else:
            while True:
                if self.buf:
                    piece, self.buf = self.buf, b""
                    yield piece
                if not self.fill():
                    return


def http_request(base_url: str, method: str, path: str, body: dict | None, timeout: float = 60):
    """A plain request; returns (status, headers, body bytes)."""
    s, prefix = _connect(base_url, timeout)
    with s:
        data = json.dumps(body).encode() if body is not None else b""
        u = urlsplit(base_url)
        s.sendall(f"{method} {prefix}{path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        r = _Reader(s)
        status, headers = r.head()
        return status, headers, b"".join(r.body_pieces(headers))


def stream_chat(base_url: str, body: bytes, api_key: str | None, timeout: float) -> dict:
    """One streamed chat completion. Returns its timings (perf_counter seconds), usage and error."""
    res = {"ok": False, "error": None, "status": None, "t_start": time.perf_counter(), "t_first": None,
           "t_last": None, "t_end": None, "chunks": 0, "completion_tokens": None, "prompt_tokens": None, "gaps": []}
    try:
        s, prefix = _connect(base_url, timeout)
        with s:
            host = urlsplit(base_url).netloc
            auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
            res["t_start"] = time.perf_counter()
            s.sendall(f"POST {prefix}/v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{auth}"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            r = _Reader(s)
            status, headers = r.head()
            res["status"] = status
            if status != 200:
                text = b"".join(r.body_pieces(headers))
                res["error"] = f"HTTP {status}: {text[:200].decode(errors='replace')}"
                res["t_end"] = r.now
                return res
            pending, done, last = b"", False, None
            for piece in r.body_pieces(headers):
                pending += piece
                while b"\n\n" in pending:
                    event, pending = pending.split(b"\n\n", 1)
                    for line in event.split(b"\n"):
                        if not line.startswith(b"data:"):
                            continue
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            done = True
                            continue
                        obj = json.loads(data)
                        if obj.get("error"):
                            res["error"] = f"error event: {json.dumps(obj['error'])[:200]}"
                        for choice in obj.get("choices") or ():
                            if (choice.get("delta") or {}).get("content"):
                                now = r.now
                                if res["t_first"] is None:
                                    res["t_first"] = now
                                else:
                                    res["gaps"].append(now - last)
                                last = res["t_last"] = now
                                res["chunks"] += 1
                        usage = obj.get("usage")
                        if usage:
                            res["completion_tokens"] = usage.get("completion_tokens")
                            res["prompt_tokens"] = usage.get("prompt_tokens")
            res["t_end"] = r.now
            if res["error"] is None:
                if not done:
                    res["error"] = "stream ended without [DONE]"
                elif res["completion_tokens"] is None:
                    res["error"] = "no usage chunk"
                else:
                    res["ok"] = True
    except (OSError, ValueError, ConnectionError) as e:
        res["error"] = f"{type(e).__name__}: {e}"
        res["t_end"] = time.perf_counter()
    return res


def chat_body(model: str, prompt: str, max_tokens: int, logit_bias: dict) -> bytes:
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True},
            "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": prompt}]}
    if logit_bias:
        body["logit_bias"] = logit_bias
    return json.dumps(body).encode()


# ---------------------------------------------------------------- a level

def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def calibrate_prompt_words(base_url: str, model: str, target_tokens: int, api_key: str | None = None,
                           timeout: float = 300) -> tuple[int, int]:
    """The number of prompt words whose chat request (with its 6-digit request number) comes closest to
    `target_tokens` prompt tokens as the gateway counts them (usage.prompt_tokens, chat template included).
    Probes with max_tokens=1. Returns (words, prompt tokens)."""
    cache: dict[int, int] = {}

    def tokens(words: int) -> int:
        if words not in cache:
            r = stream_chat(base_url, chat_body(model, make_prompt(words, 999999 - len(cache)), 1, {}), api_key, timeout)
            if not r["ok"]:
                raise RuntimeError(f"calibration request failed: {r['error']}")
            cache[words] = r["prompt_tokens"]
        return cache[words]
    lo, hi = 0, max(8, target_tokens)
    if tokens(lo) >= target_tokens:
        return lo, tokens(lo)
    while tokens(hi) < target_tokens:
        lo, hi = hi, hi * 2
    while hi - lo > 1:   # tokens(lo) < target <= tokens(hi)
        mid = (lo + hi) // 2
        if tokens(mid) < target_tokens:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda w: (abs(tokens(w) - target_tokens), w))
    return best, tokens(best)


def run_level(base_url: str, model: str, concurrency: int, *, requests: int | None, duration: float | None,
              max_tokens: int, prompt_words: int, logit_bias: dict, api_key: str | None = None,
              timeout: float = 600, daemon: Daemon | None = None, nonce_start: int = 0) -> dict:
    lock = threading.Lock()
    issued = [0]
    results: list[dict] = []
    deadline = None

    def take() -> int | None:
        with lock:
            if requests is not None and issued[0] >= requests:
                return None
            if deadline is not None and time.perf_counter() >= deadline:
                return None
            issued[0] += 1
            return issued[0]

    def client():
        while (n := take()) is not None:
            body = chat_body(model, make_prompt(prompt_words, nonce_start + n), max_tokens, logit_bias)
            r = stream_chat(base_url, body, api_key, timeout)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    d0 = daemon.cpu_seconds() if daemon else None
    t0 = time.perf_counter()
    if duration is not None:
        deadline = t0 + duration
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    d1 = daemon.cpu_seconds() if daemon else None

    ok = [r for r in results if r["ok"]]
    wall = (max(r["t_end"] for r in results) - t0) if results else (t1 - t0)
    tokens = sum(r["completion_tokens"] for r in ok)
    client_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    ms = lambda xs: [x * 1000 for x in xs]
    ttft = ms([r["t_first"] - r["t_start"] for r in ok if r["t_first"] is not None])
    itl = ms([g for r in ok for g in r["gaps"]])
    tpot = ms([(r["t_last"] - r["t_first"]) / (r["completion_tokens"] - 1)
               for r in ok if r["t_first"] is not None and r["completion_tokens"] > 1])
    errors = [r["error"] for r in results if not r["ok"]]
    level = {
        "concurrency": concurrency, "requests": len(results), "ok": len(ok), "errors": len(errors),
        "error_samples": sorted(set(errors))[:5], "wall_s": wall, "output_tokens": tokens,
        "output_tps": tokens / wall if wall > 0 else 0.0, "rps": len(ok) / wall if wall > 0 else 0.0,
        "ttft_ms": {"p50": percentile(ttft, 50), "p99": percentile(ttft, 99)},
        "itl_ms": {"p50": percentile(itl, 50), "p99": percentile(itl, 99)},
        "tpot_ms": {"p50": percentile(tpot, 50), "p99": percentile(tpot, 99),
                    "mean": sum(tpot) / len(tpot) if tpot else None},
        "tokens_per_request": tokens / len(ok) if ok else None,
        "min_tokens": min((r["completion_tokens"] for r in ok), default=None),
        "chunks_per_token": sum(r["chunks"] for r in ok) / tokens if tokens else None,
        "prompt_tokens": (sum(r["prompt_tokens"] for r in ok) / len(ok)) if ok else None,
        "client_cpu_pct": 100 * client_cpu / wall if wall > 0 else None,
        "client_cpu_us_per_token": 1e6 * client_cpu / tokens if tokens else None,
        "daemon_cpu_pct": 100 * (d1 - d0) / wall if d0 is not None and d1 is not None and wall > 0 else None,
    }
    return level


def add_ratios(levels: list[dict]) -> None:
    """x1: aggregate tokens/s relative to level 1 (or to the lowest level run)."""
    if not levels:
        return
    base = min(levels, key=lambda l: l["concurrency"])
    for l in levels:
        l["ratio_to_base"] = l["output_tps"] / base["output_tps"] if base["output_tps"] else None
        l["ratio_base_concurrency"] = base["concurrency"]


def fmt(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def pct_text(v, spec) -> str:
    return "-" if v is None else format(v, spec) + "%"


def print_table(levels: list[dict], file=sys.stdout) -> None:
    base = levels[0]["ratio_base_concurrency"] if levels else 1
    print(f"{'conc':>4} {'ok/req':>7} {'err':>3} {'out tok/s':>9} {'x' + str(base):>5} {'req/s':>6} "
          f"{'TTFT p50':>8} {'p99':>7} {'ITL p50':>7} {'p99':>7} {'TPOT p50':>8} {'p99':>7} "
          f"{'tok/req':>7} {'prompt':>6} {'cli CPU':>7} {'us/tok':>6} {'fw CPU':>6}", file=file)
    for l in levels:
        print(f"{l['concurrency']:>4} {str(l['ok']) + '/' + str(l['requests']):>7} {l['errors']:>3} "
              f"{l['output_tps']:>9.1f} {fmt(l.get('ratio_to_base'), '.2f'):>5} {l['rps']:>6.2f} "
              f"{fmt(l['ttft_ms']['p50']):>8} {fmt(l['ttft_ms']['p99']):>7} "
              f"{fmt(l['itl_ms']['p50']):>7} {fmt(l['itl_ms']['p99']):>7} "
              f"{fmt(l['tpot_ms']['p50']):>8} {fmt(l['tpot_ms']['p99']):>7} "
              f"{fmt(l['tokens_per_request']):>7} {fmt(l['prompt_tokens'], '.0f'):>6} "
              f"{pct_text(l['client_cpu_pct'], '.1f'):>7} {fmt(l['client_cpu_us_per_token'], '.0f'):>6} "
              f"{pct_text(l['daemon_cpu_pct'], '.0f'):>6}", file=file)
        for e in l["error_samples"]:
            print(f"     error: {e}", file=file)
    print("times in ms; TTFT = request sent -> first content chunk; ITL = gaps between content chunks (pooled); "
          "TPOT = per request (last - first content chunk) / (tokens - 1); CPU in % of one core", file=file)


# ---------------------------------------------------------------- a whole run (used by batched.py too)

def int_list(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def add_load_arguments(ap: argparse.ArgumentParser, *, concurrency: bool = True) -> None:
    g = ap.add_argument_group("gateway")
    g.add_argument("--flywheel", default=str(REPO / ".build/release/flywheel"), help="binary to start (default %(default)s)")
    g.add_argument("--base-url", help="a running gateway instead of starting one (http://HOST:PORT)")
    g.add_argument("--model-name", default="bench", help="the local model's name at --base-url (default %(default)s)")
    g.add_argument("--api-key", help="Authorization: Bearer key, if the gateway requires one")
    g.add_argument("--slots", type=int, help="inference.slots of the started daemon (default: the top concurrency)")
    g.add_argument("--threads", type=int, default=2, help="inference.threads of the started daemon (default %(default)s)")
    g.add_argument("--context-length", type=int, help="context_length of the local model (default: the model's, at most 4096)")
    g.add_argument("--prompt-chunk", type=int, help="inference.prompt_chunk of the started daemon (default: Flywheel's)")
    g.add_argument("--keep-daemon-dir", action="store_true", help="keep the daemon's temp dir (config, log, stderr)")
    if concurrency:
        g.add_argument("--concurrency", type=int_list, default=[1, 2, 4, 8], help="levels, e.g. 1,2,4,8")
    n = g.add_mutually_exclusive_group()
    n.add_argument("--requests", type=int, help="requests per level (default: 4 x concurrency; at least the concurrency)")
    n.add_argument("--duration", type=float, help="seconds per level instead of a request count")
    g.add_argument("--max-tokens", type=int, default=128)
    p = g.add_mutually_exclusive_group()
    p.add_argument("--prompt-words", type=int, help="words of filler text in the user message (default 100)")
    p.add_argument("--prompt-tokens", type=int, help="pick the word count whose prompt the gateway counts closest to "
                                                      "this many tokens, chat template included (probe requests)")
    g.add_argument("--text-bias", choices=("auto", "on", "off"), default="auto",
                   help="+100 logit bias on printable-ASCII tokens so every token streams text (auto: only for "
                        "random models whose vocabulary is mostly [PADn] fillers)")
    g.add_argument("--gguf", help="the model file, for its token ids when using --base-url")
    g.add_argument("--warmup", type=int, default=1, help="requests before the first level, not counted (default 1)")
    g.add_argument("--timeout", type=float, default=600, help="socket timeout per request, seconds")


class LoadSession:
    """The gateway side of a run: starts the daemon (unless --base-url), calibrates the prompt and warms up on
    entry; `levels(...)` runs concurrency levels (as often as wanted); the daemon stops on exit."""

    def __init__(self, a, levels: list[int], *, model_path: str | None, log=sys.stderr):
        self.a, self.log, self.max_level = a, log, max(levels)
        self.path = model_path or a.gguf
        self.info = model_token_info(self.path) if self.path else None
        self.bias = logit_bias_for(self.info, a.text_bias)
        self.daemon: Daemon | None = None
        self.runs = 0
        if a.base_url:
            self.base_url, self.model = a.base_url.rstrip("/"), a.model_name
        else:
            if not model_path:
                raise SystemExit("give --model PATH.gguf (to start a daemon) or --base-url")
            if not os.path.exists(a.flywheel):
                raise SystemExit(f"no flywheel binary at {a.flywheel} (swift build -c release --product flywheel)")
            self.slots = a.slots or self.max_level
            self.daemon = Daemon(a.flywheel, model_path, slots=self.slots, threads=a.threads,
                                 max_queued=max(64, 2 * self.max_level), context_length=a.context_length,
                                 prompt_chunk=a.prompt_chunk, keep=a.keep_daemon_dir)
            self.base_url, self.model = self.daemon.base_url, self.daemon.name
            print(f"started {' '.join(self.daemon.cmd)} on port {self.daemon.port} (slots {self.slots}, "
                  f"threads {a.threads}; dir {self.daemon.dir})", file=log)
            for line in self.daemon.stderr().splitlines():
                if "local model" in line:
                    print("  " + line, file=log)
            if self.max_level > self.slots:
                print(f"warning: {self.slots} slots < concurrency {self.max_level}: requests will queue", file=log)
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _prepare(self) -> None:
        a, log = self.a, self.log
        self.words = a.prompt_words
        if a.prompt_tokens:
            self.words, got = calibrate_prompt_words(self.base_url, self.model, a.prompt_tokens, a.api_key, a.timeout)
            print(f"prompt: {self.words} words -> {got} prompt tokens (target {a.prompt_tokens})", file=log)
        elif self.words is None:
            self.words = 100
        if self.info:
            print(f"logit_bias: {sum(1 for v in self.bias.values() if v < 0)} end-of-generation tokens banned, "
                  f"{sum(1 for v in self.bias.values() if v > 0)} printable tokens +100 "
                  f"({self.info['unused_fraction']:.0%} of the vocabulary is UNUSED)", file=log)
        else:
            print("no GGUF given (--gguf): end-of-generation tokens are not banned; lengths may vary", file=log)
        for i in range(a.warmup):
            r = stream_chat(self.base_url, chat_body(self.model, make_prompt(self.words, 900000 + i),
                                                     min(a.max_tokens, 16), self.bias), a.api_key, a.timeout)
            if not r["ok"]:
                raise RuntimeError(f"warm-up request failed: {r['error']}")

    def levels(self, levels: list[int]) -> list[dict]:
        a, out = self.a, []
        for c in levels:
            self.runs += 1
            requests = None if a.duration else max(c, a.requests if a.requests else 4 * c)
            lvl = run_level(self.base_url, self.model, c, requests=requests, duration=a.duration,
                            max_tokens=a.max_tokens, prompt_words=self.words, logit_bias=self.bias,
                            api_key=a.api_key, timeout=a.timeout, daemon=self.daemon, nonce_start=self.runs * 10000)
            out.append(lvl)
            print(f"  flywheel concurrency {c}: {lvl['ok']}/{lvl['requests']} ok, {lvl['output_tps']:.1f} tok/s, "
                  f"TPOT p50 {fmt(lvl['tpot_ms']['p50'])} ms, {lvl['wall_s']:.1f} s", file=self.log)
            if self.daemon and self.daemon.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited ({self.daemon.proc.returncode}):\n{self.daemon.stderr()[-2000:]}")
        add_ratios(out)
        return out

    def config(self) -> dict:
        a, d = self.a, self.daemon
        return {"base_url": None if d else self.base_url, "model": self.path, "max_tokens": a.max_tokens,
                "prompt_words": self.words, "threads": a.threads if d else None,
                "slots": self.slots if d else None, "text_bias": a.text_bias,
                "logit_bias_entries": len(self.bias), "flywheel": a.flywheel if d else None}

    def close(self) -> None:
        if self.daemon:
            code = self.daemon.stop()
            if code not in (0, None):
                print(f"warning: the daemon exited with {code}", file=self.log)
            self.daemon = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_load(a, levels: list[int], *, model_path: str | None, log=sys.stderr) -> dict:
    """One session: every level once. Returns {"levels": [...], "config": {...}, "cores_available": [before, after]}."""
    before = check_cores("before", log)
    with LoadSession(a, levels, model_path=model_path, log=log) as session:
        result = {"levels": session.levels(levels), "config": session.config()}
    result["cores_available"] = [before, check_cores("after", log)]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF file: start a daemon serving it")
    add_load_arguments(ap)
    ap.add_argument("--json", help="also write the results as JSON to this file ('-' for stdout)")
    a = ap.parse_args()
    if not a.model and not a.base_url:
        ap.error("give --model PATH.gguf (and --flywheel) or --base-url URL")
    levels = sorted(set(a.concurrency))
    try:
        result = run_load(a, levels, model_path=a.model)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    c = result["config"]
    out = sys.stderr if a.json == "-" else sys.stdout   # stdout is the JSON then
    print(f"\n{os.path.basename(c['model'] or a.model_name)}: max_tokens {a.max_tokens}, prompt {c['prompt_words']} "
          f"words, greedy, {'daemon threads ' + str(c['threads']) + ', slots ' + str(c['slots']) if c['slots'] else a.base_url}",
          file=out)
    print_table(result["levels"], file=out)
    print(f"cores available before / after: {result['cores_available'][0]:.2f} / {result['cores_available'][1]:.2f} "
          f"of {len(os.sched_getaffinity(0))} (a busy VM host gives fewer; compare runs only when these are full)",
          file=out)
    if a.json:
        text = json.dumps(result, indent=2)
        if a.json == "-":
            print(text)
        else:
            Path(a.json).write_text(text + "\n")
    return 0 if all(l["errors"] == 0 for l in result["levels"]) else 1


if __name__ == "__main__":
    sys.exit(main())

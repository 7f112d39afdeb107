"""One turn of the flywheel on a real task, and a second turn with drift, on a CPU with nothing downloaded.

    scripts/demo [--quick] [--flywheel BIN] [--workdir DIR] [--json FILE]

A support desk (app.py) triages tickets (task.py) through `flywheel serve`, which sends them to a frontier
stand-in (frontier.py) that charges per token and gets some of the company's rules wrong. The desk's agents
accept, correct or regenerate the answers. Then, with Flywheel's own commands:

  turn 1   export (corrections applied, golden set held out) -> a tokenizer built for the task and a model of a
           few million random weights, fine-tuned with TRL on the CPU (and, for comparison, the same model on
           the frontier's raw answers) -> GGUF -> hot-loaded by the running daemon (POST /admin/reload) ->
           `flywheel eval` on the golden set, against the frontier -> the policy's progressive rollout moves
           the traffic by itself -> `flywheel report`: cost and acceptance, before and after
  turn 2   a new kind of ticket appears -> `flywheel drift` flags it -> the local model's acceptance falls and
           the rollout's guardrail moves the traffic back by itself -> the new traffic is exported, the model
           retrained, evaluated (also on the new kind alone) and promoted again

Every step is timed; the figures and whether each target was met are printed at the end (and written as JSON
with --json). Exit status 0 when every target was met, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import math
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "deploy", "train"))

import task  # noqa: E402
from app import App  # noqa: E402
from frontier import MODEL, Frontier  # noqa: E402

TARGET = "ticket-router"
PRICES = {MODEL: {"input": 2.0, "output": 8.0},  # USD per 1M tokens, a frontier model's list price
          TARGET: {"input": 0.01, "output": 0.01}}  # the CPU the local model runs on, as a price per token
FULL = dict(collect=2000, holdout=200, vocab=1024, hidden=256, layers=4, intermediate=672, heads=8, epochs=5,
            epochs2=3, lr=1e-3, latency=0.3, concurrency=12, tail=600, drift_share=0.5, collect2=1200,
            holdout2=300, steps=[10, 50, 95], step_seconds=5, window_seconds=30, min_requests=40, min_feedback=20,
            max_p95_ms=2000)
# Quick: a wider guardrail window with fewer verdicts needed, so that a slow machine (fewer requests a second)
# still gives the 5% comparison group enough feedback to judge by.
QUICK = dict(FULL, collect=1000, holdout=100, hidden=192, layers=3, intermediate=512, heads=6, epochs=8, epochs2=3,
             latency=0.1, tail=300, collect2=600, holdout2=300, window_seconds=60, min_feedback=10, max_p95_ms=10000)
LISTEN_RE = re.compile(r"listening on (http://\S+)")


class DemoFailure(Exception):
    pass


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(stamp: str) -> float:
    """Unix seconds of Flywheel's ISO 8601 timestamps (2026-12-01T02:56:54.815Z)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def prompt_of(line: str) -> str:
    """An export line's prompt (everything before the answer), as a comparable key."""
    return json.dumps(json.loads(line)["messages"][:-1], sort_keys=True)


class Timer:
    """Times the named steps of the run, printed as they end and in the summary."""

    def __init__(self):
        self.steps: list[tuple[str, float]] = []

    def __call__(self, name: str):
        timer = self

        class Step:
            def __enter__(self):
                self.start = time.monotonic()
                say(f"{name} ...")

            def __exit__(self, kind, value, tb):
                took = time.monotonic() - self.start
                timer.steps.append((name, took))
                say(f"{name}: {'done' if kind is None else 'FAILED'} in {took:.1f} s")
                return False

        return Step()


def _die_with_parent() -> None:
    """In the daemon's child process before exec: SIGTERM when the demo dies, however it dies (Linux prctl)."""
    import ctypes
    import signal as sig
    ctypes.CDLL(None, use_errno=True).prctl(1, int(sig.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


class Daemon:
    """`flywheel serve` with the demo's configuration (JSON, which is YAML), reloaded with POST /admin/reload."""

    def __init__(self, binary: str, workdir: str, config: dict):
        self.binary, self.workdir = binary, workdir
        self.path = os.path.join(workdir, "flywheel.yaml")
        self.db = os.path.join(workdir, "flywheel.db")
        self.config = config
        self.write()
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.log = open(os.path.join(workdir, "daemon.log"), "w")
        self.proc = subprocess.Popen([binary, "serve", "--config", self.path, "--db", self.db], preexec_fn=_die_with_parent,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            self.url = LISTEN_RE.search(self.wait_for(LISTEN_RE, 60)).group(1)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.log.write(line)
            self.log.flush()
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern: re.Pattern, timeout: float, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[after:]:
                    if pattern.search(line):
                        return line
                after = len(self.lines)
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise DemoFailure(f"flywheel never printed /{pattern.pattern}/; last lines:\n  "
                                      + "\n  ".join(self.lines[-15:]))
                self.cond.wait(1.0)

    def write(self) -> None:
        with open(self.path, "w") as f:
            json.dump(self.config, f, indent=2)

    def reload(self) -> dict:
        from app import httpx
        self.write()
        r = httpx.post(self.url + "/admin/reload", timeout=120)
        if r.status_code != 200:
            raise DemoFailure(f"reload refused: {r.status_code} {r.text}")
        return r.json()

    def cli(self, *args: str, ok=(0,)) -> subprocess.CompletedProcess:
        p = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=900)
        if p.returncode not in ok:
            raise DemoFailure(f"flywheel {' '.join(args)} exited {p.returncode}:\n{p.stderr[-3000:]}")
        return p

    def split(self) -> dict[str, float]:
        """The split in force: the newest policy change's weights by target."""
        p = self.cli("promotions", MODEL, "--db", self.db, "--json", "--limit", "1")
        last = json.loads(p.stdout.splitlines()[0])
        return {v["target"]: float(v["weight"]) for v in last["variants"]}

    def changes(self) -> list[dict]:
        p = self.cli("promotions", MODEL, "--db", self.db, "--json", "--limit", "200")
        return [json.loads(line) for line in p.stdout.splitlines()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(10)  # the rest of its output, before the file closes
        self.log.close()


def find_flywheel(given: str | None) -> str:
    candidates = [given] if given else [os.path.join(REPO, ".build", "release", "flywheel"),
                                        os.path.join(REPO, ".build", "debug", "flywheel")]
    found = [c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)]
    if found:  # the newer build, so that a stale release binary is not picked over a fresh debug one
        return os.path.abspath(max(found, key=os.path.getmtime))
    raise DemoFailure(f"no flywheel binary at {' or '.join(candidates)}: run scripts/setup (or swift build), "
                      "or pass --flywheel BIN")


class Traffic:
    """The desk sending tickets in the background until stopped."""

    def __init__(self, desk: App, tickets, concurrency: int):
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=desk.run, args=(tickets,),
                                       kwargs=dict(concurrency=concurrency, until=self.stop_event.is_set), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join()


def wait_until(condition, timeout: float, what: str, desk: App | None = None, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if desk is not None and desk.tally.failures:
            raise DemoFailure(f"the desk's requests failed while waiting for {what}: {desk.tally.failures[:3]}")
        time.sleep(every)
    raise DemoFailure(f"timed out after {timeout:.0f} s waiting for {what}")


# ---------------------------------------------------------------- models

def build_base(workdir: str, export: str, size: dict, seed: int) -> str:
    """A tokenizer trained on the export's text and a model of random weights for it, saved as a Hugging Face
    directory."""
    from smoke import build_model, build_tokenizer, export_texts
    from train import load_export

    rows = load_export(export)
    tokenizer = build_tokenizer("qwen2", export_texts(rows) + [task.render(t, p) for t in task.TEAMS for p in task.PRIORITIES],
                                size["vocab"])
    model = build_model("qwen2", tokenizer, seed, hidden=size["hidden"], layers=size["layers"],
                        intermediate=size["intermediate"], heads=size["heads"], init=0.02, noisy_biases=False)
    out = os.path.join(workdir, "models", "base")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def fine_tune(base: str, export: str, out: str, epochs: float, lr: float, seed: int) -> None:
    """train.py's full fine-tune on the CPU; the trainer's progress goes to models/train.log, its summary here."""
    import contextlib
    import io
    import warnings

    import datasets
    import transformers
    from train import train

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            warnings.simplefilter("ignore")
            train(base, export, out, epochs=epochs, lr=lr, no_lora=True, cpu=True, batch_size=16, grad_accum=1,
                  max_length=256, seed=seed, logging_steps=50)
    finally:
        with open(os.path.join(os.path.dirname(out), "train.log"), "a") as f:
            f.write(captured.getvalue())
    for line in captured.getvalue().splitlines():
        if line.startswith("train: trained") or line.startswith("train: validation"):
            say(line.removeprefix("train: "))


def to_gguf(model_dir: str, path: str) -> str:
    from to_gguf import convert
    convert(model_dir, path, "q8_0", name=os.path.basename(path).removesuffix(".gguf"))
    return path


def parameters(model_dir: str) -> int:
    from safetensors import safe_open
    with safe_open(os.path.join(model_dir, "model.safetensors"), "np") as f:
        return sum(int(__import__("numpy").prod(f.get_slice(k).get_shape())) for k in f.keys())


# ---------------------------------------------------------------- the run

def run(a, results: dict) -> None:
    """The whole run; `results` fills as it goes, so that a failure still leaves what was measured."""
    size = QUICK if a.quick else FULL
    binary = find_flywheel(a.flywheel)
    import torch
    torch.set_num_threads(a.threads)
    workdir = a.workdir or tempfile.mkdtemp(prefix="flywheel-demo-")
    os.makedirs(os.path.join(workdir, "data"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "models"), exist_ok=True)
    built = datetime.fromtimestamp(os.path.getmtime(binary)).strftime("%Y-%m-%d %H:%M")
    say(f"{'quick' if a.quick else 'full'} run in {workdir} with {binary} (built {built})")
    timer = Timer()
    results.update({"mode": "quick" if a.quick else "full", "workdir": workdir, "sizes": size, "binary": binary})
    frontier = Frontier(seed=a.seed, latency=size["latency"])
    say(f"frontier stand-in at {frontier.url} ({MODEL}: ${PRICES[MODEL]['input']} / ${PRICES[MODEL]['output']} per 1M "
        f"tokens in / out, {size['latency'] * 1000:.0f} ms)")
    config = {
        "server": {"listen": "127.0.0.1:0", "access_log": False},
        "upstreams": [{"name": "frontier", "base_url": frontier.url, "timeouts": {"first_byte": 30, "total": 60}}],
        "routes": [{"model": MODEL, "upstreams": ["frontier"]}],
        "prices": PRICES,
        "inference": {"slots": 4},
        "local_models": [],
        "policies": [],
    }
    daemon = desk = None
    try:
        daemon = Daemon(binary, workdir, config)
        desk = App(daemon.url, model=MODEL, seed=a.seed)
        turn_one(a, size, daemon, desk, frontier, timer, results, workdir)
        turn_two(a, size, daemon, desk, frontier, timer, results, workdir)
    finally:
        results["steps"] = [{"step": n, "seconds": round(s, 1)} for n, s in timer.steps]
        if desk is not None:
            desk.close()
        if daemon is not None:
            daemon.stop()
        frontier.stop()


def data(workdir: str, name: str) -> str:
    return os.path.join(workdir, "data", name)


def export(daemon: Daemon, out: str, holdout: int, *, corrections: bool, since: str | None = None) -> dict:
    args = ["export", "--db", daemon.db, "--format", "sft", "--out", out, "--holdout", str(holdout),
            "--validation-fraction", "0.05", "--model", MODEL]
    if corrections:
        args += ["--apply-corrections", "--exclude-rejected"]
    if since:
        args += ["--since", since]
    p = daemon.cli(*args)
    say((p.stderr.strip().splitlines() or ["flywheel export: done"])[-1])
    with open(out.removesuffix(".jsonl") + ".manifest.json") as f:
        return json.load(f)


def evaluate(daemon: Daemon, dataset: str, candidate: str, *, gate: float | None = None, baseline: str | None = None) -> dict:
    args = ["eval", "--gateway", daemon.url, "--db", daemon.db, "--dataset", dataset, "--candidate", candidate,
            "--concurrency", "8", "--max-tokens", "40", "--json"]  # as the desk asks: an answer is ~15 tokens
    if gate is not None:
        args += ["--min-pass-rate", str(gate)]
    if baseline:
        args += ["--baseline", baseline]
    p = daemon.cli(*args, ok=(0, 3))
    summary = json.loads(p.stdout)
    line = f"eval {candidate} on {os.path.basename(dataset)}: {summary['candidate']['passed']}/{summary['candidate']['checked']} " \
           f"({summary['candidate']['pass_rate'] * 100:.1f}%)"
    if baseline:
        b = summary["baseline"]
        line += f"; {baseline}: {b['passed']}/{b['checked']} ({b['pass_rate'] * 100:.1f}%)"
    say(line + f"; status {summary['status']}")
    return summary


def report(daemon: Daemon, since: float, until: float) -> dict:
    """The desk's traffic between two times: requests, acceptance and cost per 1,000 requests, per variant."""
    args = ["report", "--db", daemon.db, "--config", daemon.path, "--model", MODEL, "--tag", "desk",
            "--since", iso(since), "--until", iso(math.ceil(until))]
    r = json.loads(daemon.cli(*args, "--json").stdout)
    table = daemon.cli(*args).stdout.rstrip()
    total = r["total"]
    per_1k = total["cost_usd"] / total["requests"] * 1000 if total["requests"] else None
    local = sum(row["requests"] for row in r["rows"] if row["route"] == "local")
    return {"requests": total["requests"], "local_share_logged": local / total["requests"] if total["requests"] else None,
            "cost_usd": total["cost_usd"], "cost_per_1k_requests_usd": per_1k,
            "acceptance": total["feedback"]["acceptance_rate"], "saved_usd": total.get("saved_usd"),
            "rows": [{k: row[k] for k in ("variant", "route", "requests", "cost_usd")} | {"acceptance": row["feedback"]["acceptance_rate"]}
                     for row in r["rows"]], "table": table}


def policy(size: dict, local_weight: float) -> dict:
    return {"model": MODEL, "sticky": ["episode"], "fallback": [MODEL],
            "variants": [{"target": TARGET, "weight": local_weight}, {"target": MODEL, "weight": 100 - local_weight}],
            "rollout": {"target": TARGET, "steps": size["steps"], "step_seconds": size["step_seconds"],
                        "window_seconds": size["window_seconds"], "check_seconds": 1, "min_requests": size["min_requests"],
                        "min_feedback": size["min_feedback"], "max_error_rate": 0.02, "max_acceptance_drop": 0.1,
                        "min_acceptance": 0.85,
                        "max_p95_latency_ms": size["max_p95_ms"]}}


def wrong_references(golden: str) -> int:
    """Golden-set lines whose reference answer is not the policy's (a frontier mistake nobody corrected): the exact
    match a perfect model could reach is 1 - this / lines."""
    with open(golden) as f:
        rows = [json.loads(line)["messages"] for line in f]
    return sum(task.truth(m) is None or task.parse(m[-1].get("content") or "") != (task.truth(m).team, task.truth(m).priority)
               for m in rows)


def local_share(served) -> float:
    return sum(s.variant == TARGET for s in served) / max(1, len(served))


def rollout_to_the_top(daemon: Daemon, desk: App, size: dict, timer: Timer, name: str, tickets) -> tuple[list, float, float]:
    """Runs the desk's traffic while the rollout climbs its steps by itself, then `tail` more requests at the
    last step; returns those requests and the times they started and ended."""
    top = size["steps"][-1]
    applied = re.compile(re.escape(f"policy {MODEL}: rollout_step by daemon:rollout: {TARGET} {top}%"))
    mark = len(daemon.lines)
    since = time.time()
    traffic = Traffic(desk, tickets, size["concurrency"])
    try:
        with timer(name):
            wait_until(lambda: daemon.split().get(TARGET, 0) >= top - 0.01, 300, f"the rollout to reach {top}%", desk)
            daemon.wait_for(applied, 60, after=mark)  # the split in force on the request path
        start_index, started = len(desk.tally.served), time.time()
        wait_until(lambda: len(desk.tally.served) - start_index >= size["tail"], 300, "the requests at the last step", desk)
        ended = time.time()
    finally:
        traffic.stop()
    if desk.tally.failures:
        raise DemoFailure(f"the desk's requests failed: {desk.tally.failures[:3]}")
    rollbacks = [c for c in daemon.changes() if c["action"] == "rollout_rollback" and epoch(c["created_at"]) >= since]
    if rollbacks:
        raise DemoFailure(f"the guardrails rolled the model back during the rollout: {rollbacks[0]['reason']}")
    return desk.tally.window(start_index), started, ended


def turn_one(a, size, daemon: Daemon, desk: App, frontier: Frontier, timer: Timer, results: dict, workdir: str) -> None:
    say("turn 1: the desk's traffic goes to the frontier")
    before_start = time.time()
    with timer("traffic to the frontier"):
        desk.run(task.tickets(a.seed, size["collect"]), concurrency=size["concurrency"])
    if desk.tally.failures:
        raise DemoFailure(f"the desk's requests failed: {desk.tally.failures[:3]}")
    time.sleep(1.1)
    before_end = time.time()
    served = desk.tally.window()
    results["before"] = report(daemon, before_start, before_end)
    results["before"]["frontier_wrong"] = round(frontier.error_rate(), 4)
    fb = {k: sum(s.feedback == k for s in served) for k in ("accepted", "edited", "regenerated", "none")}
    results["before"]["feedback"] = fb
    say(f"{len(served)} requests; the frontier was wrong on {frontier.error_rate() * 100:.1f}%; feedback {fb}")

    train_file, raw_file = data(workdir, "turn1.jsonl"), data(workdir, "turn1-raw.jsonl")
    with timer("export (corrections applied, golden set held out)"):
        results["export1"] = export(daemon, train_file, size["holdout"], corrections=True)["files"]
        export(daemon, raw_file, size["holdout"], corrections=False)
    golden = train_file.removesuffix(".jsonl") + ".holdout.jsonl"
    results["golden1_wrong_references"] = wrong_references(golden)
    with timer("tokenizer and random-weight model"):
        base = build_base(workdir, train_file, size, a.seed)
        results["parameters"] = parameters(base)
        say(f"model: {results['parameters']:,} parameters (qwen2, {size['layers']} layers, d={size['hidden']})")
    with timer("fine-tune on the corrected export (TRL, CPU)"):
        fine_tune(base, train_file, os.path.join(workdir, "models", "turn1"), size["epochs"], size["lr"], a.seed)
    with timer("fine-tune on the raw frontier answers (for comparison)"):
        fine_tune(base, raw_file, os.path.join(workdir, "models", "turn1-raw"), size["epochs"], size["lr"], a.seed)
    with timer("convert to GGUF"):
        ggufs = {name: to_gguf(os.path.join(workdir, "models", d), os.path.join(workdir, "models", d + ".gguf"))
                 for name, d in ((TARGET + "-untrained", "base"), (TARGET + "-raw", "turn1-raw"), (TARGET, "turn1"))}
    with timer("hot-load into the running daemon"):
        daemon.config["local_models"] = [{"name": n, "path": p} for n, p in ggufs.items()]
        daemon.config["policies"] = [policy(size, 0)]
        results["reload1"] = daemon.reload()
    with timer("flywheel eval on the golden set"):
        results["eval_untrained"] = evaluate(daemon, golden, TARGET + "-untrained")
        results["eval_raw"] = evaluate(daemon, golden, TARGET + "-raw")
        results["eval1"] = evaluate(daemon, golden, TARGET, gate=0.8, baseline=MODEL)
    if results["eval1"]["status"] != "passed":
        raise DemoFailure("the turn-1 model failed its gate (80% on the golden set), so the rollout would never start")
    shares, started, ended = rollout_to_the_top(daemon, desk, size, timer, "progressive rollout (by the daemon)",
                                                task.tickets(a.seed + 1))
    results["after1"] = report(daemon, started, ended)
    results["after1"]["local_share"] = local_share(shares)
    results["after1"]["desk_right"] = sum(s.right for s in shares) / len(shares)
    results["rollout1"] = [c for c in reversed(daemon.changes()) if c["source"] == "daemon:rollout"]
    say(f"at the last step: {results['after1']['local_share'] * 100:.1f}% of {len(shares)} requests answered locally")


def turn_two(a, size, daemon: Daemon, desk: App, frontier: Frontier, timer: Timer, results: dict, workdir: str) -> None:
    say(f"turn 2: a new kind of ticket appears ({size['drift_share'] * 100:.0f}% of the traffic: deliveries)")
    # The drift starts on a whole second, after the last turn-1 request: `--window` then holds only drifted traffic.
    drift_start = math.ceil(time.time()) + 1
    time.sleep(max(0.0, drift_start - time.time()))
    mark = len(desk.tally.served)
    traffic = Traffic(desk, task.tickets(a.seed + 2, drift_share=size["drift_share"]), size["concurrency"])
    try:
        with timer("guardrail rollback (by the daemon)"):
            def rollback_since_drift():
                return next((c for c in daemon.changes()
                             if c["action"] == "rollout_rollback" and epoch(c["created_at"]) >= drift_start), None)
            rollback = wait_until(rollback_since_drift, 600, "the rollout's guardrails to move the traffic back", desk)
        results["rollback"] = {"reason": rollback["reason"], "at": rollback["created_at"],
                               "requests_since_drift": len(desk.tally.served) - mark}
        say(f"rolled back: {rollback['reason']}")
        with timer("flywheel drift"):
            p = daemon.cli("drift", "--db", daemon.db, "--baseline", data(workdir, "turn1.jsonl"), "--window", iso(drift_start),
                           "--model", MODEL, "--json", ok=(0, 2, 3, 4))
            verdict = json.loads(p.stdout)
            results["drift"] = {"exit": p.returncode, "status": verdict["status"],
                                "flagged": [s["name"] for s in verdict["signals"] if s["status"] in ("warn", "alert")]}
            say(f"drift: {verdict['status']} (exit {p.returncode}); flagged {results['drift']['flagged']}")
        new_start = len(desk.tally.served)
        with timer("traffic back on the frontier"):
            wait_until(lambda: len(desk.tally.served) - new_start >= size["collect2"], 900, "the new traffic", desk)
    finally:
        traffic.stop()
    local_new = [s for s in desk.tally.window(mark) if s.ticket.drift and s.variant == TARGET]
    results["local_on_new_kind_before_retraining"] = {
        "requests": len(local_new), "right": sum(s.right for s in local_new)}

    train_file = data(workdir, "turn2.jsonl")
    with timer("export the new traffic (all of the log)"):
        results["export2"] = export(daemon, train_file, size["holdout2"], corrections=True)["files"]
    # The retrained model starts from the turn-1 model: a turn-2 golden prompt it was trained on in turn 1 would be
    # memory, not skill. Those prompts leave the golden set (each export holds out its own lowest prompt hashes).
    seen_in_turn1 = set()
    for name in ("turn1.jsonl", "turn1.validation.jsonl"):
        with open(data(workdir, name)) as f:
            seen_in_turn1 |= {prompt_of(line) for line in f}
    golden = data(workdir, "turn2.golden.jsonl")
    golden_new = data(workdir, "turn2.golden-new-kind.jsonl")
    with open(train_file.removesuffix(".jsonl") + ".holdout.jsonl") as src:
        lines = src.readlines()
    kept = [line for line in lines if prompt_of(line) not in seen_in_turn1]
    results["turn2_golden_removed_as_seen_in_turn1"] = len(lines) - len(kept)
    with open(golden, "w") as all_kinds, open(golden_new, "w") as new_kind:
        for line in kept:
            all_kinds.write(line)
            if task.is_new_kind(json.loads(line)["messages"]):
                new_kind.write(line)
    say(f"turn-2 golden set: {len(kept)} prompts ({len(lines) - len(kept)} left out: the turn-1 model was trained on them)")
    with timer("retrain from the turn-1 model (TRL, CPU)"):
        fine_tune(os.path.join(workdir, "models", "turn1"), train_file, os.path.join(workdir, "models", "turn2"),
                  size["epochs2"], size["lr"], a.seed)
    with timer("convert and hot-load"):
        path = to_gguf(os.path.join(workdir, "models", "turn2"), os.path.join(workdir, "models", "turn2.gguf"))
        daemon.config["local_models"] = [m if m["name"] != TARGET else {"name": TARGET, "path": path}
                                         for m in daemon.config["local_models"]]
        results["reload2"] = daemon.reload()
    with timer("flywheel eval (new kind, then the whole golden set)"):
        results["eval2_new_kind"] = evaluate(daemon, golden_new, TARGET)
        results["eval2"] = evaluate(daemon, golden, TARGET, gate=0.8, baseline=MODEL)
    if results["eval2"]["status"] != "passed":
        raise DemoFailure("the retrained model failed its gate (80% on the golden set): nothing to promote")
    p = daemon.cli("promote", MODEL, "--db", daemon.db, "--route", TARGET, "--weight", str(size["steps"][0]),
                   "--reason", f"retrained on the drifted traffic; golden set {results['eval2']['candidate']['pass_rate'] * 100:.1f}%")
    say(p.stdout.strip())
    shares, started, ended = rollout_to_the_top(daemon, desk, size, timer, "rollout again (by the daemon)",
                                                task.tickets(a.seed + 3, drift_share=size["drift_share"]))
    results["after2"] = report(daemon, started, ended)
    results["after2"]["local_share"] = local_share(shares)
    new_kind = [s for s in shares if s.ticket.drift and s.variant == TARGET]
    results["after2"]["local_right_on_new_kind"] = sum(s.right for s in new_kind) / max(1, len(new_kind))


# ---------------------------------------------------------------- the verdict

def targets(r: dict) -> list[tuple[str, bool, str]]:
    pr = lambda s: s["candidate"]["pass_rate"]  # noqa: E731
    return [
        ("untrained model near 0 on the golden set", pr(r["eval_untrained"]) <= 0.05, f"{pr(r['eval_untrained']) * 100:.1f}%"),
        ("turn 1 model >= 80% exact match on the golden set", pr(r["eval1"]) >= 0.8, f"{pr(r['eval1']) * 100:.1f}%"),
        ("trained with corrections beats trained on raw frontier answers", pr(r["eval1"]) > pr(r["eval_raw"]),
         f"{pr(r['eval1']) * 100:.1f}% vs {pr(r['eval_raw']) * 100:.1f}%"),
        (">= 90% of the traffic served locally after turn 1", r["after1"]["local_share"] >= 0.9,
         f"{r['after1']['local_share'] * 100:.1f}%"),
        ("cost per 1,000 requests falls", (r["after1"]["cost_per_1k_requests_usd"] or 1e9) < (r["before"]["cost_per_1k_requests_usd"] or 0),
         f"${r['before']['cost_per_1k_requests_usd']:.4f} -> ${r['after1']['cost_per_1k_requests_usd']:.4f}"),
        ("drift flagged", r["drift"]["status"] in ("warn", "alert"), f"{r['drift']['status']} ({', '.join(r['drift']['flagged'])})"),
        ("guardrail rolled back by itself", bool(r.get("rollback")), r.get("rollback", {}).get("reason", "-")),
        ("retrained model >= 80% on the new kind", pr(r["eval2_new_kind"]) >= 0.8, f"{pr(r['eval2_new_kind']) * 100:.1f}%"),
        ("retrained model >= 80% on the whole golden set", pr(r["eval2"]) >= 0.8, f"{pr(r['eval2']) * 100:.1f}%"),
        (">= 90% served locally again after turn 2", r["after2"]["local_share"] >= 0.9, f"{r['after2']['local_share'] * 100:.1f}%"),
    ]


def summary(r: dict) -> bool:
    print("\n== the flywheel, one turn and a second with drift ==")
    pr = lambda s: s["candidate"]["pass_rate"] * 100  # noqa: E731
    b, a1, a2 = r["before"], r["after1"], r["after2"]
    print(f"model: {r['parameters']:,} parameters, trained from random weights on this CPU")
    print(f"golden set ({r['eval1']['items']} held-out tickets), exact match: untrained {pr(r['eval_untrained']):.1f}%, "
          f"raw frontier answers {pr(r['eval_raw']):.1f}%, with corrections {pr(r['eval1']):.1f}%; "
          f"the frontier itself {r['eval1']['baseline']['pass_rate'] * 100:.1f}%")
    print(f"golden set references that are frontier mistakes nobody corrected: {r['golden1_wrong_references']} of "
          f"{r['eval1']['items']}")
    print(f"cost per 1,000 requests: ${b['cost_per_1k_requests_usd']:.4f} before, ${a1['cost_per_1k_requests_usd']:.4f} after turn 1, "
          f"${a2['cost_per_1k_requests_usd']:.4f} after turn 2 (the local model priced at an assumed "
          f"${PRICES[TARGET]['input']} per 1M tokens for its CPU: `prices` in the config)")
    print(f"acceptance: {(b['acceptance'] or 0) * 100:.1f}% before, {(a1['acceptance'] or 0) * 100:.1f}% after turn 1, "
          f"{(a2['acceptance'] or 0) * 100:.1f}% after turn 2")
    print(f"served locally (x-flywheel-variant; the log's route): {a1['local_share'] * 100:.1f}% "
          f"({a1['local_share_logged'] * 100:.1f}%) after turn 1, {a2['local_share'] * 100:.1f}% ({a2['local_share_logged'] * 100:.1f}%) after turn 2")
    print(f"turn 2: the local model answered {r['local_on_new_kind_before_retraining']['requests']} tickets of the new kind before "
          f"the rollback, {r['local_on_new_kind_before_retraining']['right']} right; {r['turn2_golden_removed_as_seen_in_turn1']} "
          "turn-2 golden prompts left out as seen in turn-1 training")
    for title, window in (("before", b), ("after turn 1", a1), ("after turn 2", a2)):
        print(f"flywheel report, the desk's traffic {title}:")
        print("  " + window["table"].replace("\n", "\n  "))
    print("steps:")
    for s in r["steps"]:
        print(f"  {s['seconds']:7.1f} s  {s['step']}")
    print("targets:")
    ok = True
    for name, met, value in targets(r):
        ok &= met
        print(f"  [{'x' if met else ' '}] {name}: {value}")
    r["targets"] = [{"target": n, "met": m, "value": v} for n, m, v in targets(r)]
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description="One turn of the flywheel (and a second with drift) on a CPU, no download")
    p.add_argument("--quick", action="store_true", help="fewer requests, a smaller model, fewer epochs, a faster frontier (CI)")
    p.add_argument("--flywheel", help="the flywheel binary (default: .build/release/flywheel, else .build/debug)")
    p.add_argument("--workdir", help="where the log, the data sets and the models go (default: a new temp dir, kept)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=max(1, min(os.cpu_count() or 1, 4)), help="torch threads")
    a = p.parse_args()
    # SIGTERM (a CI timeout, an operator) unwinds like Ctrl-C: the daemon and the frontier are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    results: dict = {}
    ok = False
    try:
        run(a, results)
        ok = summary(results)
    except DemoFailure as e:
        results["failure"] = str(e)
        print(f"demo: FAILED: {e}", file=sys.stderr)
    finally:
        results["total_seconds"] = round(time.monotonic() - started, 1)
        if a.json:  # also after a failure: what was measured up to it
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2, default=str)
    print(f"total: {results['total_seconds']:.0f} s; everything is in {results.get('workdir')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

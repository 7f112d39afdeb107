#!/usr/bin/env python3
"""Summarise a Flywheel benchmark run made by run.sh.

Reads OUTDIR/wrk-<target>-c<conns>.txt (wrk --latency output; target = direct | flywheel),
prints a table (requests/s, p50/p99 for both targets, the latency Flywheel adds, the
requests/s ratio), checks how many rows landed in the bench SQLite log, and writes
OUTDIR/summary.json.

    report.py OUTDIR [--db bench.db] [--extra-requests N] [--metrics metrics.txt]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sqlite3
import sys

UNIT_US = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0, "h": 3_600_000_000.0}
PCT_RE = re.compile(r"^\s*(50|75|90|99(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$")
REQS_RE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)")
NON2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
SOCKERR_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
NAME_RE = re.compile(r"wrk-(direct|flywheel)-c(\d+)\.txt$")


def to_us(value: str, unit: str) -> float:
    return float(value) * UNIT_US[unit]


def parse_wrk(text: str) -> dict:
    """Parse wrk --latency output into {rps, requests, p50_us, p75_us, p90_us, p99_us, non2xx, socket_errors}."""
    out: dict = {"non2xx": 0, "socket_errors": 0}
    for line in text.splitlines():
        if m := PCT_RE.match(line):
            out[f"p{m.group(1)}_us"] = to_us(m.group(2), m.group(3))
        elif m := REQS_RE.match(line):
            out["requests"] = int(m.group(1))
        elif m := RPS_RE.match(line):
            out["rps"] = float(m.group(1))
        elif m := NON2XX_RE.search(line):
            out["non2xx"] = int(m.group(1))
        elif m := SOCKERR_RE.search(line):
            out["socket_errors"] = sum(int(g) for g in m.groups())
    missing = [k for k in ("rps", "requests", "p50_us", "p99_us") if k not in out]
    if missing:
        raise ValueError(f"wrk output lacks {missing} (was --latency given?)")
    return out


def fmt_us(us: float | None) -> str:
    if us is None:
        return "n/a"
    if abs(us) >= 1000:
        return f"{us / 1000:.2f}ms"
    return f"{us:.0f}us"


def db_rows(path: str) -> dict:
    """Row count of every table in the bench DB (schema-agnostic)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()


def metric_value(metrics_text: str, name: str) -> float | None:
    total = None
    for line in metrics_text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--db", help="Flywheel's bench SQLite log")
    ap.add_argument("--extra-requests", type=int, default=0,
                    help="requests sent through Flywheel outside the measured wrk runs (smoke checks)")
    ap.add_argument("--metrics", help="a /metrics scrape taken before shutdown")
    a = ap.parse_args()

    runs: dict[tuple[str, int], dict] = {}
    for path in sorted(glob.glob(os.path.join(a.outdir, "wrk-*-c*.txt"))):
        m = NAME_RE.search(path)
        if not m:
            continue
        with open(path) as f:
            runs[(m.group(1), int(m.group(2)))] = parse_wrk(f.read())
    if not runs:
        print(f"no wrk-*-c*.txt results in {a.outdir}", file=sys.stderr)
        return 1

    conns = sorted({c for _, c in runs})
    header = ["conns", "direct rps", "flywheel rps", "fw/direct", "direct p50", "flywheel p50", "added p50",
              "direct p99", "flywheel p99", "added p99", "fw non-2xx", "fw sock err"]
    rows, summary = [], []
    for c in conns:
        d, f = runs.get(("direct", c)), runs.get(("flywheel", c))
        entry = {"connections": c, "direct": d, "flywheel": f}
        if d and f:
            entry["rps_ratio"] = f["rps"] / d["rps"] if d["rps"] else None
            entry["added_p50_us"] = f["p50_us"] - d["p50_us"]
            entry["added_p99_us"] = f["p99_us"] - d["p99_us"]
        summary.append(entry)
        rows.append([
            str(c),
            f"{d['rps']:.0f}" if d else "n/a",
            f"{f['rps']:.0f}" if f else "n/a",
            f"{entry['rps_ratio']:.3f}" if entry.get("rps_ratio") is not None else "n/a",
            fmt_us(d and d["p50_us"]), fmt_us(f and f["p50_us"]), fmt_us(entry.get("added_p50_us")),
            fmt_us(d and d["p99_us"]), fmt_us(f and f["p99_us"]), fmt_us(entry.get("added_p99_us")),
            str(f["non2xx"]) if f else "n/a", str(f["socket_errors"]) if f else "n/a",
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    for (target, c), r in sorted(runs.items()):
        if r["non2xx"] or r["socket_errors"]:
            print(f"WARNING: {target} c{c}: {r['non2xx']} non-2xx responses, {r['socket_errors']} socket errors")

    result: dict = {"runs": summary}
    status = 0
    if a.db:
        sent = sum(r["requests"] for (t, _), r in runs.items() if t == "flywheel")
        for path in glob.glob(os.path.join(a.outdir, "warmup-flywheel*.txt")):
            with open(path) as fh:
                sent += parse_wrk(fh.read())["requests"]
        sent += a.extra_requests
        if not os.path.exists(a.db):
            print(f"\nlog check: {a.db} does not exist")
            status = 1
        else:
            counts = db_rows(a.db)
            req_tables = {t: n for t, n in counts.items() if "request" in t.lower()}
            logged = max(req_tables.values()) if req_tables else max(counts.values(), default=0)
            # wrk counts completed responses; up to <connections> requests still in flight when a run
            # stops also reach Flywheel and get logged, so a small surplus is expected.
            print(f"\nlog check: {logged} rows in {a.db} for {sent} requests wrk completed through Flywheel "
                  f"(+{a.extra_requests} smoke) -> {100.0 * logged / sent if sent else 0:.2f}%  tables: {counts}")
            result["log"] = {"tables": counts, "logged": logged, "sent": sent}
            if logged < sent:
                print(f"WARNING: {sent - logged} requests missing from the log")
    if a.metrics and os.path.exists(a.metrics):
        with open(a.metrics) as fh:
            text = fh.read()
        dropped = metric_value(text, "flywheel_log_dropped_total")
        depth = metric_value(text, "flywheel_log_queue_depth")
        print(f"metrics before shutdown: flywheel_log_dropped_total={dropped} flywheel_log_queue_depth={depth}")
        result["metrics"] = {"log_dropped_total": dropped, "log_queue_depth": depth}
    with open(os.path.join(a.outdir, "summary.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    return status


if __name__ == "__main__":
    sys.exit(main())

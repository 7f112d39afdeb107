#!/usr/bin/env python3
"""Group ThreadSanitizer reports by the pair of racing accesses and say which lie inside `Mutex.withLock`.

Swift's `Synchronization.Mutex` on Linux takes a contended lock through a futex in uninstrumented code, so TSan
misses the happens-before edge and reports accesses that the same mutex orders (scripts/sanitizers/
tsan_mutex_false_positive.swift reproduces it in 15 lines). An access whose innermost frame is a closure taking
`inout sending` state (mangled `...zYu...XEfU_`, `XEfU0_`, ...), or called from one, runs inside a `withLock`. A race between two such bodies on the
same mutex-owned state is that false positive; anything else deserves reading.
Usage: scripts/sanitizers/tsan_triage.py <report files...>   (exits 1 if any report is not of that kind)
"""
import collections
import re
import sys

ACCESS = re.compile(r"^  (?:Previous )?(?:atomic )?(?:[Rr]ead|[Ww]rite|[Mm]odifying access|[Aa]ccess)[^\n]*\n((?:    #\d+ [^\n]*\n)+)", re.M)
WITH_LOCK_BODY = re.compile(r"zYu.*XEfU\d*_$")
FRAMES = re.compile(r"#\d+ (?:0x[0-9a-f]+ )?(\S+) (\S+?)(?::\d+)?(?::\d+)? ")


def top(frames):
    """The innermost frame, and whether it runs inside a `withLock` body (that frame or one of its two callers)."""
    found = FRAMES.findall(frames)
    if not found:
        return ("?", "?", False)
    name, file = found[0]
    locked = any(WITH_LOCK_BODY.search(caller) for caller, _ in found[:3])
    return (name, file.rsplit("/", 1)[-1], locked)


def main(paths):
    groups = collections.Counter()
    for path in paths:
        text = open(path, errors="replace").read()
        for report in text.split("==================")[1:]:
            kind = re.search(r"WARNING: ThreadSanitizer: ([^(]+)", report)
            if not kind:
                continue
            accesses = [top(m.group(1)) for m in ACCESS.finditer(report)][:2]
            if len(accesses) < 2:
                accesses.append(("?", "?", False))
            locked = all(inside for _, _, inside in accesses)
            key = (kind.group(1).strip(), "both inside withLock" if locked else "READ ME",
                   tuple(sorted(f"{file} {name[:90]}" for name, file, _ in accesses)))
            groups[key] += 1
    for (kind, verdict, pair), count in sorted(groups.items(), key=lambda kv: (kv[0][1] != "READ ME", -kv[1])):
        print(f"{count:4d}  {kind:20s} {verdict}\n        {pair[0]}\n        {pair[1]}")
    unexplained = sum(count for (_, verdict, _), count in groups.items() if verdict == "READ ME")
    print(f"{sum(groups.values())} reports, {unexplained} not inside withLock on both sides")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

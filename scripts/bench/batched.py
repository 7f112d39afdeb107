#!/usr/bin/env python3
"""Batched decoding: llama.cpp with S parallel sequences against Flywheel's gateway at concurrency S, same file.

llama.cpp (llama-cpp-python's low-level API, no server): for each S in --streams, a fresh context with S sequences
(n_seq_max = S, n_threads = n_threads_batch = --threads). Each sequence gets its own --prompt-tokens-token prompt
(the same filler text after a different 6-digit number, cut to exactly that many tokens), evaluated one
sequence per llama_decode call and timed apart (the `prompt` columns). Then --warmup-steps untimed steps and
--max-tokens timed steps; a step is one llama_decode of a batch holding one token for every sequence (its own
seq_id and position, logits on), then greedy argmax of each sequence's row (llama_get_logits_ith). End of
generation is ignored, so every sequence decodes exactly --max-tokens tokens.
  decode tok/s = S x steps / (sum of step times); step p50/p99 = the time per output token of each stream.

Flywheel: scripts/bench/load.py's machinery (a daemon it starts with slots = max S, or --base-url) at concurrency
S with the same max_tokens, the prompt calibrated to the same token count (usage.prompt_tokens, chat template
included), greedy, end of generation banned. Its
  decode tok/s = S x 1000 / mean TPOT (ms), TPOT being each request's (last token - first token) / (tokens - 1),
the same definition as llama.cpp's while S streams decode together; `e2e tok/s` is load.py's aggregate (completion
tokens / wall time, prompts, queueing and HTTP included).

Printed per S: both decode rates, step time / TPOT p50 and p99, Flywheel / llama.cpp, and each side's ratio
S-streams / 1-stream (the batching gain: about 1.0 for a scheduler that takes turns, up to ~S while decoding
is bound by reading the weights).

--repeat N alternates the two sides N times (llama.cpp for every S, then Flywheel for every S) and keeps the
best run of each per S, as engine.py does. llama.cpp runs with its defaults otherwise: flash attention `auto`
(--flash-attn), and its extra buffer types (CPU weight repacking for batched matmuls) on unless the CPU advertises
AMX, where engine.py's workaround turns them off (--extra-bufts). Both sides use --threads (default 2).

Needs: llama-cpp-python (0.3.x), numpy, gguf.
Usage:
  python3 scripts/bench/batched.py --flywheel .build/release/flywheel --model /tmp/models/qwen2.5-0.5b-q8.gguf \\
      --streams 1,2,4,8 --prompt-tokens 128 --max-tokens 128
  python3 scripts/bench/batched.py --model M.gguf --skip-flywheel          # llama.cpp only
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402  (scripts/bench/load.py)


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quiet_log(level, text, user_data):
    pass


class LlamaCpp:
    """One model loaded with llama.cpp; `run(S, ...)` measures S sequences decoding together."""

    def __init__(self, path: str, threads: int, flash_attn: str, extra_bufts: str):
        import llama_cpp as L
        self.L = L
        L.llama_log_set(_quiet_log, None)
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        # As in engine.py: a native build on a CPU reporting AMX repacks Q8_0 for AMX tiles, which dies with
        # SIGILL on VMs that do not grant the tile state; without the extra buffer types llama.cpp uses its
        # regular CPU kernels (AVX2/AVX-512/VNNI). That also turns off its CPU weight repacking (interleaved
        # rows for batched matmuls), so `auto` keeps them on when the CPU does not advertise AMX.
        self.extra_bufts = extra_bufts == "on" or (extra_bufts == "auto" and not load.cpu_advertises_amx())
        if hasattr(mp, "use_extra_bufts"):
            mp.use_extra_bufts = self.extra_bufts
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.threads = threads
        self.flash_attn = {"auto": -1, "off": 0, "on": 1}[flash_attn]
        self.system_info = L.llama_print_system_info().decode(errors="replace").strip()

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buf = (self.L.llama_token * (len(data) + 16))()
        n = self.L.llama_tokenize(self.vocab, data, len(data), buf, len(buf), False, False)
        if n < 0:
            raise RuntimeError("tokenize failed")
        return list(buf[:n])

    def prompt(self, n_tokens: int, nonce: int) -> list[int]:
        words = max(16, n_tokens)
        while True:
            toks = self.tokenize(load.make_prompt(words, nonce))
            if len(toks) >= n_tokens:
                return toks[:n_tokens]
            words *= 2

    def run(self, S: int, prompt_tokens: int, steps: int, warmup_steps: int) -> dict:
        L = self.L
        per_seq = prompt_tokens + warmup_steps + steps + 8
        cp = L.llama_context_default_params()
        cp.n_seq_max = S
        cp.n_ctx = S * ((per_seq + 255) // 256 * 256)   # KV cells split evenly between the sequences
        cp.n_batch = max(prompt_tokens, S)
        cp.n_ubatch = min(cp.n_batch, 512)
        cp.n_threads = cp.n_threads_batch = self.threads
        cp.flash_attn_type = self.flash_attn
        ctx = L.llama_init_from_model(self.model, cp)
        if not ctx:
            raise RuntimeError(f"llama_init_from_model failed for {S} sequences")
        batch = L.llama_batch_init(max(prompt_tokens, S), 0, 1)
        try:
            def argmax(i: int) -> int:
                row = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(self.n_vocab,))
                return int(row.argmax())

            def decode(n: int) -> None:
                batch.n_tokens = n
                rc = L.llama_decode(ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode returned {rc} (S={S})")

            # Prompts: one sequence per call, logits for the last position only.
            nxt, pos = [], []
            t0 = time.perf_counter()
            for s in range(S):
                toks = self.prompt(prompt_tokens, s)
                for i, t in enumerate(toks):
                    batch.token[i] = t
                    batch.pos[i] = i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = s
                    batch.logits[i] = 1 if i == len(toks) - 1 else 0
                decode(len(toks))
                nxt.append(argmax(-1))
                pos.append(len(toks))
            prompt_seconds = time.perf_counter() - t0

            # Decode: every step, one token for each sequence in one llama_decode, then each one's argmax.
            times = []
            generated: list[list[int]] = [[t] for t in nxt]
            for step in range(warmup_steps + steps):
                t0 = time.perf_counter()
                for s in range(S):
                    batch.token[s] = nxt[s]
                    batch.pos[s] = pos[s]
                    batch.n_seq_id[s] = 1
                    batch.seq_id[s][0] = s
                    batch.logits[s] = 1
                decode(S)
                for s in range(S):
                    nxt[s] = argmax(s)
                    pos[s] += 1
                    generated[s].append(nxt[s])
                if step >= warmup_steps:
                    times.append(time.perf_counter() - t0)
        finally:
            L.llama_batch_free(batch)
            L.llama_free(ctx)
        ms = [t * 1000 for t in times]
        decode_seconds = sum(times)
        return {"streams": S, "prompt_tokens": prompt_tokens, "steps": steps,
                "prompt_tps": S * prompt_tokens / prompt_seconds,
                "decode_tps": S * steps / decode_seconds,
                "step_ms": {"p50": load.percentile(ms, 50), "p99": load.percentile(ms, 99), "mean": decode_seconds * 1000 / steps},
                "e2e_tps": S * steps / (prompt_seconds + decode_seconds),
                "seq0_tokens": generated[0]}   # greedy: the same for every S (prompt 0), up to float ties

    def close(self):
        self.L.llama_model_free(self.model)


def flywheel_decode_tps(level: dict) -> float | None:
    """S streams each producing a token every mean-TPOT milliseconds."""
    mean = level["tpot_ms"].get("mean")
    return level["concurrency"] * 1000 / mean if mean else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the GGUF file both engines run")
    ap.add_argument("--streams", type=load.int_list, default=[1, 2, 4, 8], help="S values, e.g. 1,2,4,8")
    ap.add_argument("--warmup-steps", type=int, default=2, help="untimed llama.cpp decode steps per S (default 2)")
    ap.add_argument("--flash-attn", choices=("auto", "on", "off"), default="auto",
                    help="llama.cpp's flash_attn_type (default auto, as llama.cpp's tools run)")
    ap.add_argument("--extra-bufts", choices=("auto", "on", "off"), default="auto",
                    help="llama.cpp's use_extra_bufts (CPU weight repacking, AMX): auto = off when the CPU advertises "
                         "AMX (SIGILL on VMs without the tile state, see engine.py), on otherwise")
    ap.add_argument("--skip-flywheel", action="store_true", help="only llama.cpp")
    ap.add_argument("--skip-llama", action="store_true", help="only Flywheel")
    ap.add_argument("--repeat", type=int, default=1, help="alternate llama.cpp and Flywheel this many times, "
                                                          "keep the best of each per S (default 1)")
    ap.add_argument("--json", help="also write the results as JSON to this file ('-' for stdout)")
    load.add_load_arguments(ap, concurrency=False)
    a = ap.parse_args()
    if a.prompt_words:
        ap.error("batched.py matches prompts by token count: use --prompt-tokens")
    if a.prompt_tokens is None:
        a.prompt_tokens = 128
    streams = sorted(set(a.streams))
    log = sys.stderr

    lc_rows: dict[int, dict] = {}
    fw_rows: dict[int, dict] = {}
    fw_config = None
    llama = session = None
    cores = [load.check_cores("before", log)]
    try:
        if a.skip_llama and a.skip_flywheel:
            ap.error("nothing to run")
        if not a.skip_llama:
            llama = LlamaCpp(a.model, a.threads, a.flash_attn, a.extra_bufts)
            print(f"llama.cpp: {a.threads} threads, flash_attn {a.flash_attn}, extra buffer types (repacking) "
                  f"{'on' if llama.extra_bufts else 'off'}; {llama.system_info}", file=log)
        if not a.skip_flywheel:
            session = load.LoadSession(a, streams, model_path=a.model, log=log)
            fw_config = session.config()
        # Each repeat: llama.cpp for every S, then Flywheel for every S; the best of the repeats is kept per S
        # and side (by decode tok/s), as engine.py keeps the best of its alternating runs.
        for rep in range(a.repeat):
            if llama:
                for S in streams:
                    r = llama.run(S, a.prompt_tokens, a.max_tokens, a.warmup_steps)
                    print(f"  llama.cpp S={S}: decode {r['decode_tps']:.1f} tok/s, step p50 {r['step_ms']['p50']:.1f} ms, "
                          f"prompt {r['prompt_tps']:.0f} tok/s", file=log)
                    if S not in lc_rows or r["decode_tps"] > lc_rows[S]["decode_tps"]:
                        lc_rows[S] = r
            if session:
                for lvl in session.levels(streams):
                    best = fw_rows.get(lvl["concurrency"])
                    if best is None or (flywheel_decode_tps(lvl) or 0) > (flywheel_decode_tps(best) or 0):
                        fw_rows[lvl["concurrency"]] = lvl
    except RuntimeError as e:
        print(f"error: {e}", file=log)
        return 1
    finally:
        if llama:
            llama.close()
        if session:
            session.close()
    cores.append(load.check_cores("after", log))

    def ratio(x, y):
        return x / y if x is not None and y else None

    rows = []
    for S in streams:
        lc, fw = lc_rows.get(S), fw_rows.get(S)
        row = {"streams": S, "llama.cpp": lc, "flywheel": fw}
        if fw:
            row["flywheel_decode_tps"] = flywheel_decode_tps(fw)
        rows.append(row)
    lc1, fw1 = lc_rows.get(min(streams)), fw_rows.get(min(streams))
    base = min(streams)
    for row in rows:
        lc, fw = row["llama.cpp"], row["flywheel"]
        row["llama_scaling"] = ratio(lc and lc["decode_tps"], lc1 and lc1["decode_tps"])
        row["flywheel_scaling"] = ratio(row.get("flywheel_decode_tps"), fw1 and rows[0].get("flywheel_decode_tps"))
        row["flywheel_e2e_scaling"] = ratio(fw and fw["output_tps"], fw1 and fw1["output_tps"])
        row["flywheel_over_llama"] = ratio(row.get("flywheel_decode_tps"), lc and lc["decode_tps"])
        row["flywheel_e2e_over_llama_e2e"] = ratio(fw and fw["output_tps"], lc and lc["e2e_tps"])

    f = load.fmt
    out = sys.stderr if a.json == "-" else sys.stdout   # stdout is the JSON then
    show = functools.partial(print, file=out)
    show(f"\n{os.path.basename(a.model)}: prompt {a.prompt_tokens} tokens, {a.max_tokens} tokens per stream, greedy, "
         f"{a.threads} threads each")
    if fw_config:
        fw_prompt = [r["flywheel"]["prompt_tokens"] for r in rows if r["flywheel"]]
        show(f"Flywheel prompt: {fw_config['prompt_words']} words -> {f(fw_prompt[0] if fw_prompt else None, '.0f')} "
             f"tokens (chat template included); requests per level: {a.requests or '4 x S'}")
    show(f"{'S':>3} | {'llama.cpp':>9} {'step p50':>8} {'p99':>6} {'xS/' + str(base):>6} | "
         f"{'flywheel':>8} {'TPOT p50':>8} {'p99':>6} {'xS/' + str(base):>6} | {'fw/lc':>5} | "
         f"{'fw e2e':>7} {'xS/' + str(base):>6} {'lc e2e':>7} {'fw/lc':>5} {'TTFT p50':>8} {'err':>3}")
    for row in rows:
        lc, fw = row["llama.cpp"] or {}, row["flywheel"] or {}
        show(f"{row['streams']:>3} | {f(lc.get('decode_tps')):>9} {f(lc.get('step_ms', {}).get('p50')):>8} "
             f"{f(lc.get('step_ms', {}).get('p99')):>6} {f(row['llama_scaling'], '.2f'):>6} | "
             f"{f(row.get('flywheel_decode_tps')):>8} {f(fw.get('tpot_ms', {}).get('p50')):>8} "
             f"{f(fw.get('tpot_ms', {}).get('p99')):>6} {f(row['flywheel_scaling'], '.2f'):>6} | "
             f"{f(row['flywheel_over_llama'], '.2f'):>5} | "
             f"{f(fw.get('output_tps')):>7} {f(row['flywheel_e2e_scaling'], '.2f'):>6} {f(lc.get('e2e_tps')):>7} "
             f"{f(row['flywheel_e2e_over_llama_e2e'], '.2f'):>5} {f(fw.get('ttft_ms', {}).get('p50')):>8} "
             f"{fw.get('errors', '-'):>3}")
    show("decode tok/s: llama.cpp = S x steps / sum of step times; flywheel = S x 1000 / mean TPOT (ms). "
         "step / TPOT in ms per output token of one stream. xS/1 = that column at S / at the smallest S. "
         "e2e: prompts included (llama.cpp: S prompts one by one, then the steps; flywheel: load.py's "
         "completion tokens / wall time).")
    show(f"cores available before / after: {cores[0]:.2f} / {cores[1]:.2f} of {len(os.sched_getaffinity(0))} "
         "(a busy VM host gives fewer; compare runs only when these are full)")
    for row in rows:
        fw = row["flywheel"]
        if fw and fw["min_tokens"] is not None and fw["min_tokens"] < a.max_tokens:
            show(f"warning: S={row['streams']}: a Flywheel request stopped at {fw['min_tokens']} tokens (< max_tokens)")
    if a.json:
        text = json.dumps({"model": a.model, "prompt_tokens": a.prompt_tokens, "max_tokens": a.max_tokens,
                           "threads": a.threads, "flash_attn": a.flash_attn,
                           "extra_bufts": None if a.skip_llama else llama.extra_bufts, "flywheel_config": fw_config,
                           "cores_available": cores,
                           "rows": rows}, indent=2)
        if a.json == "-":
            print(text)
        else:
            Path(a.json).write_text(text + "\n")
    return 0 if all((r["flywheel"] or {}).get("errors", 0) == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

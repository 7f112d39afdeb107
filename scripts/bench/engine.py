#!/usr/bin/env python3
"""Local-model speed: Flywheel's engine against llama.cpp (llama-cpp-python) on the same GGUF file, in one run.

Both run greedy decoding of the same prompt on the same number of threads; each reports prompt
(prefill) tokens/s and decode tokens/s from its own timers:
  * llama.cpp: prompt = wall-clock time of one llm.eval(prompt) (llama_perf_context's prompt figure proved
    unreliable: with logits_all=True it reported 3x the wall-clock rate); decode = llama_perf_context
    (t_eval_ms / n_eval), engine time only, no Python overhead;
  * Flywheel: the timings `flywheel generate` prints to stderr (prompt evaluation; decode from the
    first generated token to the last, sampling and detokenization included).
Runs alternate (llama.cpp, Flywheel, llama.cpp, ...) so background noise hits both; the best of
--repeat runs is reported for each, and the ratio Flywheel / llama.cpp.

Needs: pip install llama-cpp-python numpy gguf (llama-cpp-python builds llama.cpp from source, ~10 min).
Models: python3 scripts/engine/make_model.py --preset smollm2-135m /tmp/models/smollm2-135m-q8.gguf
        python3 scripts/engine/make_model.py --preset qwen2.5-0.5b /tmp/models/qwen2.5-0.5b-q8.gguf
Usage:  python3 scripts/bench/engine.py --flywheel .build/release/flywheel /tmp/models/*.gguf
"""
import argparse
import json

import numpy as np
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402  (scripts/bench/load.py: shared helpers)

PROMPT_WORDS = ("the quick brown fox jumps over the lazy dog while a flywheel keeps spinning and "
                "every request teaches the small model something new about the product ").split()


def make_prompt(words: int) -> str:
    return " ".join(PROMPT_WORDS[i % len(PROMPT_WORDS)] for i in range(words))


def set_llama_cpp_extra_buffers(enabled: bool):
    """llama.cpp's extra buffer types repack weights at load for its own kernels (Q8_0 rows interleaved for
    AVX2, AMX tiles). Built natively on a CPU that reports AMX, on VMs whose kernel does not grant the AMX
    tile state, that dies with SIGILL at the first matrix product: `--extra-bufts auto` turns them off there
    only. Off, llama.cpp uses its regular CPU kernels (AVX2 / AVX-512 / VNNI as built)."""
    import llama_cpp
    import llama_cpp.llama as high_level
    default = getattr(llama_cpp, "_flywheel_default_model_params", llama_cpp.llama_model_default_params)
    llama_cpp._flywheel_default_model_params = default

    def params():
        p = default()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = enabled
        return p
    llama_cpp.llama_model_default_params = params
    high_level.llama_cpp.llama_model_default_params = params


def run_llama_cpp(path, prompt, n_predict, threads, n_ctx, extra_bufts):
    import llama_cpp
    set_llama_cpp_extra_buffers(extra_bufts)
    llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx,
                          n_batch=512, verbose=False, logits_all=False)
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    ctx = llm._ctx.ctx
    llama_cpp.llama_perf_context_reset(ctx)
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    prompt_seconds = time.perf_counter() - started
    generated = 0
    eos = set(t for t in (llm.token_eos(),) if t >= 0)
    vocab = llm.n_vocab()

    def last_logits():
        # Only the last position's logits exist (logits_all=False, as llama.cpp's own tools run).
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(vocab,))
    while generated < n_predict:
        tok = int(last_logits().argmax())
        if tok in eos:
            break
        llm.eval([tok])
        generated += 1
    perf = llama_cpp.llama_perf_context(ctx)
    result = {
        "prompt_tokens": len(tokens), "prompt_tps": len(tokens) / prompt_seconds,
        "decode_tokens": perf.n_eval, "decode_tps": perf.n_eval / (perf.t_eval_ms / 1e3),
    }
    del llm
    return result


TIMING = re.compile(r"prompt (\d+) tokens in ([\d.]+) s \(([\d.]+) tokens/s\); generated (\d+) tokens in ([\d.]+) s \(([\d.]+) tokens/s\)")


def run_flywheel(binary, path, prompt, n_predict, threads, n_ctx):
    cmd = [binary, "generate", "--model", path, "--prompt", prompt, "--max-tokens", str(n_predict),
           "--temperature", "0", "--threads", str(threads), "--context-length", str(n_ctx)]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        sys.exit(f"flywheel generate failed ({proc.returncode}):\n{proc.stderr}")
    m = TIMING.search(proc.stderr)
    if not m:
        sys.exit(f"no timings in flywheel's stderr:\n{proc.stderr}")
    return {"prompt_tokens": int(m.group(1)), "prompt_tps": float(m.group(3)),
            "decode_tokens": int(m.group(4)), "decode_tps": float(m.group(6)),
            "kernels": re.search(r"kernels: (\w+)", proc.stderr).group(1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--flywheel", default=".build/release/flywheel")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-words", type=int, default=200)
    ap.add_argument("--n-predict", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--extra-bufts", choices=["auto", "on", "off"], default="auto",
                    help="llama.cpp's use_extra_bufts (weight repacking at load): auto = on unless the CPU advertises "
                         "AMX (SIGILL on VMs without the tile state)")
    ap.add_argument("--baseline", help="a second flywheel binary (e.g. an earlier commit's) run in the same "
                                       "alternation, reported as a ratio to it")
    a = ap.parse_args()

    prompt = make_prompt(a.prompt_words)
    extra_bufts = a.extra_bufts == "on" or (a.extra_bufts == "auto" and not load.cpu_advertises_amx())
    print(f"llama.cpp extra buffer types (weight repacking): {'on' if extra_bufts else 'off'}")
    results = []
    for path in a.models:
        best = {"llama.cpp": None, "flywheel": None, "baseline": None}
        runners = [("llama.cpp", lambda: run_llama_cpp(path, prompt, a.n_predict, a.threads, a.ctx, extra_bufts)),
                   ("flywheel", lambda: run_flywheel(a.flywheel, path, prompt, a.n_predict, a.threads, a.ctx))]
        if a.baseline:
            runners.append(("baseline", lambda: run_flywheel(a.baseline, path, prompt, a.n_predict, a.threads, a.ctx)))
        for _ in range(a.repeat):
            for name, fn in runners:
                r = fn()
                b = best[name]
                if b is None:
                    best[name] = r
                else:
                    b["prompt_tps"] = max(b["prompt_tps"], r["prompt_tps"])
                    b["decode_tps"] = max(b["decode_tps"], r["decode_tps"])
        lc, fw = best["llama.cpp"], best["flywheel"]
        row = {"model": os.path.basename(path), "threads": a.threads, "llama_extra_bufts": extra_bufts, "llama.cpp": lc, "flywheel": fw,
               "prompt_ratio": fw["prompt_tps"] / lc["prompt_tps"], "decode_ratio": fw["decode_tps"] / lc["decode_tps"]}
        results.append(row)
        print(f"{row['model']}: {a.threads} threads, prompt {lc['prompt_tokens']}/{fw['prompt_tokens']} tokens, "
              f"decode {lc['decode_tokens']}/{fw['decode_tokens']} tokens (llama.cpp/flywheel), kernels {fw['kernels']}")
        print(f"  prompt  llama.cpp {lc['prompt_tps']:8.1f} tok/s   flywheel {fw['prompt_tps']:8.1f} tok/s   ratio {row['prompt_ratio']:.2f}")
        print(f"  decode  llama.cpp {lc['decode_tps']:8.1f} tok/s   flywheel {fw['decode_tps']:8.1f} tok/s   ratio {row['decode_ratio']:.2f}")
        if best["baseline"]:
            bl = best["baseline"]
            row["baseline"] = bl
            print(f"  baseline prompt {bl['prompt_tps']:8.1f} tok/s (flywheel / baseline {fw['prompt_tps'] / bl['prompt_tps']:.2f}), "
                  f"decode {bl['decode_tps']:8.1f} tok/s (flywheel / baseline {fw['decode_tps'] / bl['decode_tps']:.2f})")
        sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

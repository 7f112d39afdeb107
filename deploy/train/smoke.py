#!/usr/bin/env python3
"""CPU smoke run of the whole training hand-off, with no download: export -> train -> convert -> serve.

  1. data:      an sft export (--data FILE), or a small synthetic one written in exactly the export's shape
                (messages + flywheel_request_id per line, X.validation.jsonl beside it);
  2. tokenizer: a byte-level BPE tokenizer trained on the export's text with the `tokenizers` library
                (ChatML specials <|im_start|> <|im_end|> <|endoftext|> and a ChatML chat template);
  3. model:     a tiny Qwen2 and/or Llama with random weights (a few hundred thousand parameters);
  4. train:     a few LoRA steps with train.py's code (TRL's SFTTrainer), merged and saved;
  5. convert:   to_gguf.py to Q8_0;
  6. serve:     `flywheel serve` on a free loopback port with the first model in its config's `local_models`;
                the second is added to the file and hot-loaded with SIGHUP; both called through the openai SDK;
  7. compare:   Flywheel's greedy answers (temperature 0) against the merged Hugging Face model's greedy tokens
                for the same chat prompts, token for token (end tokens banned on both sides so every answer
                runs its full length), plus the prompt token count.

The reference is the merged model loaded back from its saved directory and run in float32 the way the
engine computes: weights rounded through Q8_0 exactly as the GGUF file stores them, each matrix
product's input rounded through Q8_0 per token as the int8 kernels do, and keys (after RoPE) and values
rounded to f16 as the engine's KV cache stores them. What is left is float32 summation
order and the exp/sqrt of two implementations. Greedy answers must be equal; a divergence is accepted
only at a step where the reference's top-2 logits are within --tie-margin of each other (a genuine
near-tie), and reported. Agreement with the plain float32 model is printed as well.

    python3 deploy/train/smoke.py [--flywheel .build/release/flywheel] [--data export.jsonl] [--arch both]

Prints each step's time; exits non-zero on any failure. Needs torch, transformers, trl, peft, tokenizers,
datasets, gguf, numpy and openai.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LISTEN_RE = re.compile(r"listening on (http://\S+)")
T0 = time.monotonic()


class SmokeFailure(Exception):
    pass


def say(message: str) -> None:
    print(f"smoke: {message}", flush=True)


class Step:
    """Times one step and prints it."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.start = time.monotonic()
        say(f"{self.name} ...")
        return self

    def __exit__(self, kind, value, tb):
        took = time.monotonic() - self.start
        say(f"{self.name}: {'done' if kind is None else 'FAILED'} in {took:.1f} s")
        return False


# ---------------------------------------------------------------- 1. data

TEAMS = {"printer": "hardware", "laptop": "hardware", "screen": "hardware", "password": "identity",
         "login": "identity", "account": "identity", "invoice": "billing", "refund": "billing",
         "charge": "billing", "wifi": "network", "vpn": "network", "email": "messaging"}
PROBLEMS = ["is on fire", "does not work", "is slow", "keeps failing", "was lost", "is broken again",
            "needs a reset", "shows an error"]
URGENCY = {"is on fire": "high", "keeps failing": "high", "was lost": "high", "is broken again": "medium",
           "does not work": "medium", "shows an error": "medium", "is slow": "low", "needs a reset": "low"}
SYSTEM = "You route support tickets. Answer with the team and the priority."


def synthetic_export(path: str, count: int = 96, seed: int = 7) -> None:
    """Writes an sft export (train + validation) in exactly `flywheel export --format sft`'s shape."""
    rng = random.Random(seed)

    def line(i: int) -> str:
        thing, problem = rng.choice(sorted(TEAMS)), rng.choice(PROBLEMS)
        user = f"route ticket: my {thing} {problem}"
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        if i % 7 == 3:  # content as text parts, as some clients send it
            messages[1] = {"role": "user", "content": [{"type": "text", "text": user}]}
        messages.append({"role": "assistant", "content": f"team: {TEAMS[thing]}, priority: {URGENCY[problem]}"})
        return json.dumps({"messages": messages, "flywheel_request_id": str(uuid.UUID(int=rng.getrandbits(128)))})

    stem = path[:-len(".jsonl")] if path.endswith(".jsonl") else path
    with open(path, "w") as f:
        for i in range(count):
            f.write(line(i) + "\n")
    with open(stem + ".validation.jsonl", "w") as f:
        for i in range(count // 8):
            f.write(line(count + i) + "\n")


def export_texts(rows: list[dict]) -> list[str]:
    texts = []
    for row in rows:
        for m in row["messages"]:
            texts.append(m["role"])
            if m.get("content"):
                texts.append(m["content"])
    return texts


# ---------------------------------------------------------------- 2. tokenizer, 3. model

def build_tokenizer(arch: str, texts: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from to_gguf import LLAMA3_REGEX, QWEN2_REGEX  # the split rules the converter recognises

    llama = arch == "llama"
    tok = Tokenizer(models.BPE(ignore_merges=llama))  # Llama 3 tokenizers look whole words up first
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX if llama else QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHATML, clean_up_tokenization_spaces=False)


def build_model(arch: str, tokenizer, seed: int, *, hidden: int = 128, layers: int = 2, intermediate: int = 256,
                heads: int = 4, init: float = 0.05, noisy_biases: bool = True):
    """A random-weight model for `tokenizer`; the defaults are the smoke run's (a few hundred thousand
    parameters), the demo passes larger sizes. Sizes must be whole Q8_0 blocks (multiples of 32)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=2, max_position_embeddings=512,
                  eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                  bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                  pad_token_id=tokenizer.pad_token_id, initializer_range=init)
    if arch == "qwen2":  # as Qwen2.5's small models: tied embeddings, q/k/v biases
        config = Qwen2Config(tie_word_embeddings=True, rms_norm_eps=1e-6, **common)
    else:  # as Llama 3's: separate output matrix, no biases
        config = LlamaConfig(tie_word_embeddings=False, rms_norm_eps=1e-5, **common)
    config.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0 if arch == "llama" else 1000000.0}
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if arch == "qwen2" and noisy_biases:  # zero-initialised biases would leave the bias path untested
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.1)
    return model


# ---------------------------------------------------------------- 7. reference greedy

def _q8(x):
    """x (float32 numpy, last dimension whole blocks of 32) rounded through Q8_0 and back."""
    import gguf
    from gguf import GGMLQuantizationType as QT
    return gguf.quants.dequantize(gguf.quants.quantize(x, QT.Q8_0), QT.Q8_0)


def emulate_q8(model) -> None:
    """Makes `model` compute as the engine does: every matrix rounded through Q8_0 as the GGUF file stores
    it (blocks of 32 along the input dimension; llama's q/k row permutation moves whole rows, so the
    rounding is the same), and every matrix input rounded through Q8_0 per token before the product, as
    the engine's int8 kernels quantize activations; keys after RoPE and values rounded to f16, as the engine's
    KV cache holds them. Norms, RoPE, attention and softmax stay float32."""
    import numpy as np
    import torch

    _round_rotated_keys_when_emulating()
    model._flywheel_emulated = True

    done = set()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2 and id(p) not in done:
                done.add(id(p))
                p.copy_(torch.from_numpy(_q8(p.detach().cpu().numpy().astype(np.float32))))

    def round_input(module, args):
        x = args[0]
        shape = x.shape
        flat = x.detach().reshape(-1, shape[-1]).cpu().numpy().astype(np.float32)
        return (torch.from_numpy(_q8(flat)).reshape(shape).to(x.dtype),) + tuple(args[1:])

    def round_output_to_half(module, args, output):
        return output.to(torch.float16).to(output.dtype)

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(round_input)
            if name.endswith("v_proj"):
                module.register_forward_hook(round_output_to_half)


_EMULATING = {"on": False}


def _round_rotated_keys_when_emulating() -> None:
    """Wraps the llama and qwen2 modules' `apply_rotary_pos_emb` so that, while an emulated model runs, the rotated
    keys come back rounded to f16 (the other models in the process are untouched)."""
    import torch
    import transformers.models.llama.modeling_llama as llama
    import transformers.models.qwen2.modeling_qwen2 as qwen2

    for module in (llama, qwen2):
        original = module.apply_rotary_pos_emb
        if getattr(original, "_flywheel_wrapped", False):
            continue

        def rotate(q, k, *args, _original=original, **kwargs):
            q, k = _original(q, k, *args, **kwargs)
            if _EMULATING["on"]:
                k = k.to(torch.float16).to(k.dtype)
            return q, k
        rotate._flywheel_wrapped = True
        module.apply_rotary_pos_emb = rotate


def greedy(model, prompt_ids: list[int], steps: int, banned: list[int]) -> tuple[list[int], list[float]]:
    """Greedy tokens and, per step, the margin between the best and the second-best logit."""
    import torch

    ids = list(prompt_ids)
    out, margins = [], []
    _EMULATING["on"] = getattr(model, "_flywheel_emulated", False)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids])).logits[0, -1].double()
            logits[banned] = float("-inf")
            top = torch.topk(logits, 2)
            out.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            ids.append(out[-1])
    _EMULATING["on"] = False
    return out, margins


def divergence(tokenizer, tokens: list[int], text: str) -> int | None:
    """None when `tokens` decode to `text`; else the first step whose token no longer matches it."""
    def dec(k):
        return tokenizer.decode(tokens[:k], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if dec(len(tokens)) == text:
        return None
    for k in range(1, len(tokens) + 1):
        if not text.startswith(dec(k)):
            return k - 1
    return len(tokens)  # every token matches, but Flywheel's text is longer or shorter


# ---------------------------------------------------------------- 6. the daemon

class Daemon:
    """`flywheel serve --config FILE` on a free loopback port (port 0: the daemon picks one and prints it).

    The local models are the config file's `local_models`; `serve(models)` rewrites the file and sends SIGHUP,
    the documented way to add a model to a running daemon, then waits for the daemon to report the reload."""

    def __init__(self, binary: str, workdir: str, models: dict[str, str], threads: int, timeout: float = 60.0):
        self.config = os.path.join(workdir, "flywheel.yaml")
        self.timeout = timeout
        self.write_config(models)
        args = [binary, "serve", "--config", self.config, "--listen", "127.0.0.1:0",
                "--db", os.path.join(workdir, "flywheel.db"), "--threads", str(threads)]
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_for(LISTEN_RE, 0)
        self.url = LISTEN_RE.search(line).group(1)

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, pattern: re.Pattern, after: int) -> str:
        """The first stderr line from index `after` on that matches; fails if the daemon exits first."""
        deadline = time.monotonic() + self.timeout
        with self.changed:
            while True:
                for line in self.lines[after:]:
                    if pattern.search(line):
                        return line
                after = len(self.lines)
                left = deadline - time.monotonic()
                if self.proc.poll() is not None or left <= 0:
                    break
                self.changed.wait(min(left, 1.0))
        self.stop()
        raise SmokeFailure(f"flywheel never printed /{pattern.pattern}/:\n  " + "\n  ".join(self.lines[-20:]))

    def write_config(self, models: dict[str, str]) -> None:
        lines = ["local_models:"]
        for name, path in models.items():
            lines += [f"  - name: {json.dumps(name)}", f"    path: {json.dumps(path)}"]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def serve(self, models: dict[str, str]) -> None:
        """Hot-loads `models` (the whole set) with SIGHUP."""
        self.write_config(models)
        mark = len(self.lines)
        self.proc.send_signal(signal.SIGHUP)
        line = self.wait_for(re.compile(r"(reloaded changes=|reload failed)"), mark)
        if "reload failed" in line:
            raise SmokeFailure(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def find_flywheel(given: str | None) -> str:
    candidates = [given] if given else [os.path.join(REPO, ".build", "release", "flywheel"),
                                        os.path.join(REPO, ".build", "debug", "flywheel")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise SmokeFailure(f"no flywheel binary at {' or '.join(candidates)} (build it, or pass --flywheel BIN)")


# ---------------------------------------------------------------- the run

def run(a) -> None:
    import torch
    torch.set_num_threads(a.threads)
    import datasets
    from transformers.utils import logging as hf_logging
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    import train as trainlib
    import to_gguf

    binary = find_flywheel(a.flywheel)
    work = a.workdir or tempfile.mkdtemp(prefix="flywheel-train-smoke-")
    os.makedirs(work, exist_ok=True)
    say(f"work directory {work}; flywheel {binary}")
    archs = ["qwen2", "llama"] if a.arch == "both" else [a.arch]

    with Step("data"):
        data = a.data
        if data is not None and not os.path.isfile(data):
            raise SmokeFailure(f"--data {data}: no such file")
        if data is None:
            data = os.path.join(work, "sft.jsonl")
            synthetic_export(data)
            say(f"wrote a synthetic export {data} (+ validation)")
        rows = trainlib.load_export(data)
        val_file = trainlib.validation_path(data)
        val_rows = trainlib.load_export(val_file) if os.path.exists(val_file) else []
        if not rows:
            raise SmokeFailure(f"{data} has no usable examples")

    served, references = {}, {}
    for arch in archs:
        with Step(f"{arch}: tokenizer and random model"):
            tokenizer = build_tokenizer(arch, export_texts(rows + val_rows), a.vocab)
            model = build_model(arch, tokenizer, a.seed)
            base = {n: p.detach().clone() for n, p in model.named_parameters()}
            params = sum(p.numel() for p in model.parameters())
            say(f"{arch}: vocabulary {len(tokenizer)}, {params:,} parameters")

        merged_dir = os.path.join(work, f"{arch}-merged")
        with Step(f"{arch}: train {a.steps} LoRA steps (TRL) and merge"):
            trainlib.train(model, data, merged_dir, tokenizer=tokenizer, max_steps=a.steps, lr=a.lr,
                           lora_r=8, lora_alpha=16, lora_dropout=0.0, cpu=True, batch_size=8, grad_accum=1,
                           max_length=256, seed=a.seed, logging_steps=max(1, a.steps // 4))

        with Step(f"{arch}: convert to GGUF Q8_0"):
            gguf_path = os.path.join(work, f"{arch}-q8_0.gguf")
            info = to_gguf.convert(merged_dir, gguf_path, "q8_0", name=f"smoke-{arch}")
            say(f"{arch}: {gguf_path}: {info['tensors']} tensors, pre {info['pre']}, {info['bytes']:,} bytes")

        with Step(f"{arch}: reference greedy answers (merged model, reloaded)"):
            from transformers import AutoModelForCausalLM, AutoTokenizer
            tok = AutoTokenizer.from_pretrained(merged_dir)
            ref = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
            # LoRA must have changed the weights that were converted (else the run proves nothing about merging).
            changed = max(float((p.detach() - base[n]).abs().max()) for n, p in ref.named_parameters() if n in base)
            if changed == 0.0:
                raise SmokeFailure(f"{arch}: the merged weights equal the random base: LoRA was not merged")
            say(f"{arch}: LoRA changed the weights by up to {changed:.4f}")
            exact = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
            emulate_q8(ref)
            banned = [tok.convert_tokens_to_ids(t) for t in SPECIALS]
            prompts = [r["messages"][:-1] for r in (val_rows or rows)[:a.prompts - 1]]
            prompts.append([{"role": "user", "content": "route ticket: the coffee machine is haunted"}])
            cases = []
            for messages in prompts:
                ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"]
                tokens, margins = greedy(ref, ids, a.tokens, banned)
                exact_tokens, _ = greedy(exact, ids, a.tokens, banned)
                cases.append(dict(messages=messages, prompt_ids=list(ids), tokens=tokens, margins=margins,
                                  exact_tokens=exact_tokens))
            references[arch] = (tok, cases, banned)
            served[f"smoke-{arch}"] = gguf_path

    with Step("serve the GGUF files with flywheel and compare greedy answers"):
        import openai
        # The first model from the config file at start; any other added to the file and hot-loaded with SIGHUP.
        loaded = {f"smoke-{archs[0]}": served[f"smoke-{archs[0]}"]}
        daemon = Daemon(binary, work, loaded, a.threads)
        failures = []
        try:
            say(f"flywheel listening on {daemon.url}, serving smoke-{archs[0]} from {daemon.config}")
            client = openai.OpenAI(base_url=daemon.url + "/v1", api_key="smoke", max_retries=0, timeout=120)
            for arch in archs:
                name = f"smoke-{arch}"
                if name not in loaded:
                    loaded[name] = served[name]
                    daemon.serve(loaded)
                    if name not in [m.id for m in client.models.list()]:
                        raise SmokeFailure(f"{name} is not in /v1/models after the reload")
                    say(f"added {name} to {daemon.config} and sent SIGHUP: hot-loaded")
                tok, cases, banned = references[arch]
                for i, case in enumerate(cases):
                    raw = client.chat.completions.with_raw_response.create(
                        model=f"smoke-{arch}", messages=case["messages"], temperature=0, max_tokens=a.tokens,
                        logit_bias={str(t): -100 for t in banned})
                    resp = raw.parse()
                    text = resp.choices[0].message.content
                    label = f"{arch} prompt {i}"
                    if raw.headers.get("x-flywheel-route") != "local":
                        failures.append(f"{label}: route {raw.headers.get('x-flywheel-route')!r}, expected local")
                    if resp.usage.prompt_tokens != len(case["prompt_ids"]):
                        failures.append(f"{label}: flywheel counted {resp.usage.prompt_tokens} prompt tokens, "
                                        f"Hugging Face {len(case['prompt_ids'])} (tokenizer or template differs)")
                    if resp.usage.completion_tokens != a.tokens:
                        failures.append(f"{label}: {resp.usage.completion_tokens} completion tokens, "
                                        f"expected {a.tokens}")
                    step = divergence(tok, case["tokens"], text)
                    exact_step = divergence(tok, case["exact_tokens"], text)
                    exact_note = ("also equal to the plain fp32 model" if exact_step is None else
                                  f"the plain fp32 model diverges at step {exact_step}")
                    smallest = min(case["margins"])
                    if step is None:
                        say(f"{label}: greedy equal, {a.tokens} tokens, prompt {len(case['prompt_ids'])} tokens, "
                            f"smallest top-2 margin {smallest:.4f}; {exact_note}: {text!r}")
                    elif step < len(case["margins"]) and case["margins"][step] < a.tie_margin:
                        say(f"{label}: equal for {step} tokens, then a near-tie (top-2 margin "
                            f"{case['margins'][step]:.5f} < {a.tie_margin}) went the other way; {exact_note}")
                    else:
                        expected = tok.decode(case["tokens"], clean_up_tokenization_spaces=False)
                        margin = case["margins"][step] if step < len(case["margins"]) else float("nan")
                        failures.append(f"{label}: flywheel diverges from the reference at step {step} "
                                        f"(margin {margin:.4f}):\n    flywheel:  {text!r}\n    reference: {expected!r}")
        finally:
            code = daemon.stop()
        if code != 0:
            failures.append(f"flywheel exited {code} after SIGTERM:\n  " + "\n  ".join(daemon.lines[-20:]))
        if failures:
            raise SmokeFailure("\n".join(failures))

    if not a.keep and not a.workdir:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description="CPU smoke run: export -> train (LoRA, merged) -> GGUF -> flywheel")
    p.add_argument("--flywheel", help="the flywheel binary (default .build/release/flywheel, then .build/debug)")
    p.add_argument("--data", help="an sft export file; without it a synthetic one is written")
    p.add_argument("--arch", choices=["qwen2", "llama", "both"], default="both")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--vocab", type=int, default=400, help="target tokenizer vocabulary")
    p.add_argument("--prompts", type=int, default=4, help="prompts to compare")
    p.add_argument("--tokens", type=int, default=24, help="greedy tokens per prompt")
    p.add_argument("--tie-margin", type=float, default=0.01,
                   help="a divergence is accepted only where the reference's top-2 logits are closer than this")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", help="keep everything here (default: a temporary directory, removed on success)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = p.parse_args()
    try:
        run(a)
    except SmokeFailure as e:
        say(f"FAILED after {time.monotonic() - T0:.1f} s:\n{e}")
        return 1
    say(f"OK in {time.monotonic() - T0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

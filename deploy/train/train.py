#!/usr/bin/env python3
"""Fine-tune a causal LM on a `flywheel export --format sft` file with TRL's SFTTrainer: LoRA (peft), then
merged into the base weights and saved with the tokenizer, ready for to_gguf.py.

    python3 deploy/train/train.py --model Qwen/Qwen2.5-0.5B-Instruct --data data/sft.jsonl --out out/merged

Each line of the export is `{"messages": [...], "tools"?: [...], "flywheel_request_id": "..."}`; the
lineage field is dropped here. `X.validation.jsonl` beside `X.jsonl` is used for evaluation when present.
The last message of every line is the assistant answer; the loss covers only that answer (the prompt
turns are masked), which is what the logged traffic supervises.

Messages are given to the chat template the way Flywheel gives them at serving time, so the model is
trained on exactly the text it will later see: text parts joined with newlines, a null assistant content
as "", tool-call arguments that are a JSON object parsed into a mapping. Lines with image or audio parts
are skipped (counted on stderr): the local engine reads text only.

Needs: pip install torch transformers trl peft accelerate datasets
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time


def log(message: str) -> None:
    print(f"train: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the export

def _text_of(content, where: str):
    """OpenAI content (a string, null or text parts) as the string the local engine gives the template."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else part
                raise ValueError(f"{where}: a non-text content part ({kind!r})")
            texts.append(part.get("text", ""))
        return "\n".join(t for t in texts if t is not None)
    raise ValueError(f"{where}: content must be a string, text parts or null")


def _arguments(value):
    """Tool-call arguments: a JSON object string becomes a mapping (chat templates apply tojson to it)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def normalize_message(m: dict, where: str) -> dict:
    out = {"role": m["role"]}
    content = _text_of(m.get("content"), where)
    if content is None and m["role"] == "assistant":
        content = ""
    if content is not None:
        out["content"] = content
    if m.get("name") is not None:
        out["name"] = m["name"]
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {"id": c.get("id"), "type": c.get("type", "function"),
             "function": {"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments", "{}"))}}
            for c in m["tool_calls"]]
    if m.get("tool_call_id") is not None:
        out["tool_call_id"] = m["tool_call_id"]
    return out


def load_export(path: str) -> list[dict]:
    """The export's examples as {"messages", "tools"}; the lineage field (flywheel_request_id) is dropped."""
    rows, skipped = [], 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            row.pop("flywheel_request_id", None)
            where = f"{path}:{number}"
            try:
                messages = [normalize_message(m, where) for m in row["messages"]]
            except ValueError as e:
                skipped += 1
                log(f"skipping {e}")
                continue
            if not messages or messages[-1]["role"] != "assistant":
                raise SystemExit(f"{where}: the last message must be the assistant's answer (an sft export line)")
            rows.append({"messages": messages, "tools": row.get("tools") or None})
    log(f"{path}: {len(rows)} examples" + (f", {skipped} skipped (non-text content)" if skipped else ""))
    return rows


def validation_path(data: str) -> str:
    stem = data[:-len(".jsonl")] if data.endswith(".jsonl") else data
    return stem + ".validation.jsonl"


def tokenize(tokenizer, rows: list[dict], max_length: int | None):
    """input_ids and completion_mask (1 on the answer's tokens) per example, rendered with the chat template.

    Tokenized here rather than by TRL so that every row's own messages and tool definitions reach the
    template unchanged (a datasets table would unify the rows' JSON shapes, adding null fields)."""
    from datasets import Dataset

    ids, masks, truncated = [], [], 0
    for row in rows:
        kwargs = {"tools": row["tools"]} if row["tools"] else {}
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, tokenize=True,
                                               return_dict=True, **kwargs)["input_ids"]
        full = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True, **kwargs)["input_ids"]
        start = 0
        while start < min(len(prompt), len(full)) and prompt[start] == full[start]:
            start += 1
        if max_length and len(full) > max_length:
            truncated += 1
            full = full[:max_length]
        ids.append(list(full))
        masks.append([0] * min(start, len(full)) + [1] * max(0, len(full) - start))
    if truncated:
        log(f"{truncated} examples truncated to {max_length} tokens")
    return Dataset.from_dict({"input_ids": ids, "completion_mask": masks})


# ---------------------------------------------------------------- training

def train(model, data: str, out: str, *, tokenizer=None, epochs: float = 3.0, max_steps: int = -1,
          lr: float = 2e-4, lora_r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.05,
          no_lora: bool = False, cpu: bool = False, batch_size: int = 4, grad_accum: int = 4,
          max_length: int | None = 2048, seed: int = 42, gradient_checkpointing: bool = False,
          logging_steps: int = 10, report_to: str = "none") -> str:
    """Trains and saves the merged model + tokenizer in `out`; returns `out`.

    `model` is a path or hub id, or an already built model (the smoke run passes one); `tokenizer` defaults
    to the model's own."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    use_gpu = torch.cuda.is_available() and not cpu
    bf16 = use_gpu and torch.cuda.is_bf16_supported()
    fp16 = use_gpu and not bf16
    if isinstance(model, str):
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(model)
        # LoRA trains fp32 adapters over a bf16 base; a full fine-tune keeps fp32 master weights (bf16 autocast).
        dtype = torch.bfloat16 if bf16 and not no_lora else torch.float32
        model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
    if tokenizer is None:
        raise ValueError("a tokenizer is needed when the model is passed as an object")
    if not tokenizer.chat_template:
        raise SystemExit("the tokenizer has no chat template: use an instruct model's tokenizer "
                         "(or set tokenizer.chat_template) so that training and serving render the same text")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    train_rows = load_export(data)
    val_file = validation_path(data)
    val_rows = load_export(val_file) if os.path.exists(val_file) and os.path.getsize(val_file) > 0 else []
    train_set = tokenize(tokenizer, train_rows, max_length)
    val_set = tokenize(tokenizer, val_rows, max_length) if val_rows else None

    peft_config = None
    if not no_lora:
        from peft import LoraConfig
        peft_config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    scratch = tempfile.mkdtemp(prefix="flywheel-train-")  # the trainer's own output; nothing is kept there
    args = SFTConfig(
        output_dir=scratch, num_train_epochs=epochs, max_steps=max_steps,
        learning_rate=lr, per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, lr_scheduler_type="cosine", warmup_steps=0.03 if max_steps < 0 else 0,
        bf16=bf16, fp16=fp16, use_cpu=not use_gpu, seed=seed, logging_steps=logging_steps,
        eval_strategy="epoch" if val_set is not None and max_steps < 0 else "no",
        save_strategy="no", report_to=report_to, max_length=max_length, completion_only_loss=True,
        gradient_checkpointing=gradient_checkpointing, dataloader_num_workers=0, disable_tqdm=not sys.stderr.isatty())
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                         processing_class=tokenizer, peft_config=peft_config)
    started = time.monotonic()
    result = trainer.train()
    log(f"trained {result.global_step} steps in {time.monotonic() - started:.1f} s, "
        f"final train loss {result.training_loss:.4f}")
    if val_set is not None:
        metrics = trainer.evaluate()
        log(f"validation loss {metrics['eval_loss']:.4f} on {len(val_set)} examples")

    merged = trainer.model
    if peft_config is not None:
        merged = merged.merge_and_unload()  # W + (alpha/r) * B @ A folded into each linear layer
    merged.config.use_cache = True
    os.makedirs(out, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)  # tokenizer.json, tokenizer_config.json, chat template
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"saved the merged model and tokenizer to {out}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description="SFT (LoRA, merged) on a flywheel export, with TRL")
    p.add_argument("--model", required=True, help="base model: a local directory or a Hugging Face hub id")
    p.add_argument("--data", required=True, help="flywheel export --format sft file (X.validation.jsonl is "
                                                 "used for evaluation when it exists)")
    p.add_argument("--out", required=True, help="directory for the merged model and tokenizer")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (overrides epochs)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-4 with LoRA, 1e-5 without)")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--no-lora", action="store_true", help="full fine-tune instead of LoRA")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=4)
    p.add_argument("--max-length", type=int, default=2048, help="longest training sequence in tokens")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--gradient-checkpointing", action="store_true", help="less GPU memory, slower steps")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    p.add_argument("--report-to", default="none", help="trainer logging integration (none, tensorboard, wandb)")
    a = p.parse_args()
    lr = a.lr if a.lr is not None else (1e-5 if a.no_lora else 2e-4)
    train(a.model, a.data, a.out, epochs=a.epochs, max_steps=a.max_steps, lr=lr, lora_r=a.lora_r,
          lora_alpha=a.lora_alpha, lora_dropout=a.lora_dropout, no_lora=a.no_lora, cpu=a.cpu,
          batch_size=a.batch_size, grad_accum=a.grad_accum, max_length=a.max_length, seed=a.seed,
          gradient_checkpointing=a.gradient_checkpointing, report_to=a.report_to)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The training hand-off (deploy/train/): export -> TRL fine-tune (LoRA, merged) -> GGUF -> served by this daemon.

deploy/train/smoke.py runs the whole loop on the CPU with a tiny random-weight Qwen2 and Llama (no download)
and checks that Flywheel's greedy answers equal the merged Hugging Face model's, token for token. Here it runs
with the suite's daemon binary, once on an export of traffic actually logged by that daemon and once on its
own synthetic export. It takes about ten seconds on two cores. Skipped only when torch or trl is not
installed (pip install torch trl peft transformers datasets tokenizers gguf).
"""
from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, base_config, run_cli

SMOKE = REPO_ROOT / "deploy" / "train" / "smoke.py"
SMOKE_TIMEOUT = 600  # seconds; the run itself takes ~10 s, the margin is for a loaded CI machine


def need_trainer() -> None:
    missing = [name for name in ("torch", "trl") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the training smoke run needs {' and '.join(missing)}, which is not importable here "
                    "(pip install torch trl peft transformers datasets tokenizers gguf)")


def run_smoke(flywheel_bin, workdir, *args: str) -> str:
    p = subprocess.run([sys.executable, str(SMOKE), "--flywheel", str(flywheel_bin), "--workdir", str(workdir),
                        *args], capture_output=True, text=True, timeout=SMOKE_TIMEOUT)
    assert p.returncode == 0, \
        f"smoke.py exited {p.returncode}\n--- stdout\n{p.stdout[-6000:]}\n--- stderr\n{p.stderr[-4000:]}"
    assert "smoke: OK" in p.stdout, p.stdout[-4000:]
    for arch in ("qwen2", "llama"):
        # Every prompt is compared; a divergence is only accepted at a reported near-tie, which is rare, so at
        # least one prompt per model must be equal over its whole length.
        equal = [line for line in p.stdout.splitlines() if line.startswith(f"smoke: {arch} prompt")
                 and "greedy equal" in line]
        assert equal, p.stdout[-4000:]
    return p.stdout


def test_the_loop_on_an_export_of_logged_traffic(start_flywheel, fake, flywheel_bin, tmp_path):
    need_trainer()
    fw = start_flywheel(base_config(fake.url, fake.url))
    client = fw.client()
    rng = random.Random(5)
    things = ["printer", "laptop", "password", "invoice", "refund", "wifi", "vpn", "email"]
    problems = ["is on fire", "does not work", "is slow", "keeps failing", "was lost", "shows an error"]
    ids = []
    for _ in range(60):
        messages = [{"role": "system", "content": "You route support tickets."},
                    {"role": "user", "content": f"route ticket: my {rng.choice(things)} {rng.choice(problems)}"}]
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
        ids.append(raw.headers["x-request-id"])
    for rid in ids:
        fw.wait_logged(rid)

    out = tmp_path / "sft.jsonl"
    p = run_cli(flywheel_bin, "export", "--format", "sft", "--out", str(out), "--db", str(fw.db),
                "--validation-fraction", "0.2")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(rows) >= 20 and all("flywheel_request_id" in r for r in rows)  # the lineage train.py must drop
    assert (tmp_path / "sft.validation.jsonl").read_text().strip()

    stdout = run_smoke(flywheel_bin, tmp_path / "smoke", "--data", str(out))
    assert "wrote a synthetic export" not in stdout


def test_the_loop_on_a_synthetic_export(flywheel_bin, tmp_path):
    need_trainer()
    stdout = run_smoke(flywheel_bin, tmp_path / "smoke")
    assert "wrote a synthetic export" in stdout

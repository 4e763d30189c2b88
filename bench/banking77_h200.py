"""Approve -> evaluated report for the advised Banking77 plan, timed through the product's own commands.

Each plan runs as `tunewise train PLAN --data DATA --out RUN` and then `tunewise eval RUN --test TEST --baselines ""`
(base + tuned), each in a fresh process as the CLI runs them; printed per plan: wall time of each command, the
Trainer's training time, steps, tokens/s, accuracy of base and tuned with their 95% intervals, and the generation
and perplexity time per system. `--random-weights TOKENIZER_DIR` trains a random-initialized model of SmolLM2-135M's
shape instead of the bundled model (timings only, without the GGUF). `--variants rows=128,rows=256+epochs=3` adds
variants of the plan (rows per optimizer step, the learning rate scaled by the square root of the rows as the
advisor does; epochs).

    python bench/banking77_h200.py --plan PLAN.yaml --data BANKING --test TEST/test.jsonl --out OUT \
        [--variants rows=128]

The commands run as the `tunewise` CLI mounts them (executor/cli.py's train_command and eval_command), through
a small typer app, so the GPU machine needs none of the chat's packages.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLI = ("import typer; from executor.cli import eval_command, train_command; app = typer.Typer(); "
       "app.command('train')(train_command); app.command('eval')(eval_command); app()")
SMOL = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, tie_word_embeddings=True, rope_theta=100000.0, max_position_embeddings=8192)


def random_model(tokenizer_dir: Path, folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **SMOL)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def variant(plan: dict, spec: str) -> dict:
    """The plan with `rows=N` (rows per step, the learning rate scaled by the square root of the rows) and / or
    `epochs=E` changed, e.g. 'rows=128' or 'rows=256+epochs=3'."""
    plan = json.loads(json.dumps(plan))
    t = plan["training"]
    changes = dict(part.split("=") for part in filter(None, spec.split("+")))
    if "rows" in changes:
        rows = int(changes["rows"])
        before = t["per_device_batch_size"] * t["gradient_accumulation_steps"]
        micro = min(rows, 32)
        t["learning_rate"] = float(f"{t['learning_rate'] * math.sqrt(rows / before):.3g}")
        t["per_device_batch_size"], t["gradient_accumulation_steps"] = micro, rows // micro
    if "epochs" in changes:
        t["epochs"] = float(changes["epochs"])
    return plan


def command(args: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as handle:
        rc = subprocess.run([sys.executable, "-c", CLI, *args], stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
                            ).returncode
    wall = time.perf_counter() - start
    if rc:
        print(log.read_text()[-4000:])
        raise SystemExit(f"{' '.join(args[:2])} failed with exit code {rc}")
    return round(wall, 1)


def run(name: str, plan: dict, data: Path, test: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / f"{name}.yaml"
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))
    run_dir = out / name
    train_wall = command(["train", str(plan_path), "--data", str(data), "--out", str(run_dir)],
                         out / f"{name}.train.log")
    eval_wall = command(["eval", str(run_dir), "--test", str(test), "--baselines", ""], out / f"{name}.eval.log")
    result = json.loads((run_dir / "result.json").read_text())
    report = json.loads((run_dir / "report.json").read_text())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = sorted(m["tokens_per_second"] for m in metrics if m.get("tokens_per_second"))
    t = plan["training"]
    acc = {s: report["systems"][s]["accuracy"] for s in ("base", "tuned")}
    return {
        "plan": name, "rows_per_step": t["per_device_batch_size"] * t["gradient_accumulation_steps"],
        "learning_rate": t["learning_rate"], "epochs": t["epochs"], "steps": result["steps"],
        "train_wall_s": train_wall, "train_runtime_s": result.get("train_runtime_s"), "eval_wall_s": eval_wall,
        "total_wall_s": round(train_wall + eval_wall, 1), "speed": result.get("speed"),
        "median_tokens_per_second": rates[len(rates) // 2] if rates else None,
        "first_loss": result.get("first_loss"), "final_loss": result.get("final_loss"),
        "best_eval_loss": result.get("best_eval_loss"), "test_rows": report["n"],
        "accuracy": acc, "generation_seconds": report.get("generation_seconds"),
        "max_new_tokens": report["decoding"]["max_new_tokens"],
        "train_phase_seconds": result.get("phase_seconds"), "eval_phase_seconds": report.get("phase_seconds"),
    }


def import_seconds() -> dict[str, float]:
    """A fresh interpreter importing what each command imports before it does anything (part of its wall time)."""
    modules = {"train": "import executor.cli, executor.train.runner, executor.train.sft",
               "eval": "import executor.cli, executor.evaluate.runner; from transformers import AutoModelForCausalLM"}
    out = {}
    for name, code in modules.items():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        out[name] = round(time.perf_counter() - start, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default="", help="extra plans, comma-separated: rows=N, epochs=E, joined by +")
    parser.add_argument("--random-weights", type=Path, help="tokenizer folder: train a random SmolLM2-shape model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    plan = yaml.safe_load(args.plan.read_text())
    if args.random_weights:
        folder = random_model(args.random_weights, args.out / "random-smollm2")
        plan["base_model"] = {"id": str(folder), "source": "local", "path": str(folder)}
    plans = {"advised": variant(plan, "")}
    for spec in filter(None, args.variants.split(",")):
        plans[spec.replace("=", "").replace("+", "-")] = variant(plan, spec)
    print(json.dumps({"import_seconds": import_seconds()}), flush=True)
    results = []
    for name, p in plans.items():
        results.append(run(name, p, args.data, args.test, args.out))
        print(json.dumps(results[-1]), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    for r in results:
        acc = r["accuracy"]
        print(f"{r['plan']:9s} {r['rows_per_step']:4d} rows/step lr {r['learning_rate']:.3g}: {r['steps']} steps, "
              f"train {r['train_wall_s']} s wall ({r['train_runtime_s']} s in the Trainer), eval {r['eval_wall_s']} s "
              f"wall, total {r['total_wall_s']} s; accuracy base {acc['base']['value']:.3f} tuned "
              f"{acc['tuned']['value']:.3f} [{acc['tuned']['ci_low']:.3f}, {acc['tuned']['ci_high']:.3f}] on "
              f"{r['test_rows']} rows; generation s {r['generation_seconds']}")


if __name__ == "__main__":
    main()

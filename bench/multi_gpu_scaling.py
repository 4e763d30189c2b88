"""Multi-GPU scaling through the run queue's own launch path (issue #10): tokens/s per GPU, scaling efficiency
against one GPU, peak memory per GPU, and loss parity of an N-GPU run with a 1-GPU run of the same global batch.

Every run is `accelerate launch ... -m executor.train.rank`, the launch the worker makes (DDP, or FSDP when
`choose_launch` picks it or --mode forces it), on random-init models of real shapes with synthetic chat rows.
All runs, one GPU included, go through the same launcher and the same training path (DDP runs take the packed
fast path of #8, reducing gradients once per step; FSDP runs pad their batches), so the ratios compare like
with like.

    python bench/multi_gpu_scaling.py --shape 1b --methods lora,full --gpus 1,2 --steps 30 --tokenizer .gpu/tok
    python bench/multi_gpu_scaling.py --shape 8b --methods full --gpus 2 --mode fsdp --steps 15
    python bench/multi_gpu_scaling.py --shape tiny --device cpu --gpus 1,2 --steps 6    # CPU smoke test (gloo)

Throughput is the Trainer's own count of input tokens gathered over all processes (metrics.jsonl), divided by
the time between logged steps, after --warmup steps; peak memory is rank 0's torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.train_speed import SHAPES  # noqa: E402 - the same model shapes as the single-GPU benchmark

WORDS = ("order refund invoice account shipping delay password reset warranty contract clause liability "
         "patient dosage symptom policy premium claim deductible ticket escalation outage latency").split()


def chat_rows(n: int, seed: int = 0, median_words: int = 180) -> list[dict]:
    """Chat rows with lognormal lengths (a few hundred tokens, long tail), deterministic per seed."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = max(8, min(1400, int(rng.lognormvariate(0, 0.6) * median_words)))
        answer = " ".join(rng.choice(WORDS) for _ in range(words))
        rows.append({"messages": [{"role": "user", "content": f"Case {i}: summarise the ticket."},
                                  {"role": "assistant", "content": answer}]})
    return rows


def make_model(shape: str, tokenizer_dir: str, folder: Path, device: str) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").exists():
        return
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, **SHAPES[shape])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    LlamaForCausalLM(config).to(dtype).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def plan_for(method: str, model: Path, data: Path, gpus: int, per_device: int, seq: int, device: str):
    from executor.plan import TrainingPlan

    params_b = {"tiny": 0.003, "smol": 0.135, "1b": 1.24, "8b": 8.0}
    training = {"method": method, "epochs": 1, "learning_rate": 2e-4 if method == "lora" else 2e-5,
                "per_device_batch_size": per_device, "gradient_accumulation_steps": 1, "max_seq_length": seq,
                "warmup_ratio": 0.0, "gradient_checkpointing": "off"}
    if method == "lora":
        training["lora"] = {"r": 16, "alpha": 32}
    return TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": method, "training": training,
        "base_model": {"id": str(model), "source": "local", "path": str(model),
                       "params_b": params_b.get(model.name.split("-")[0])},
        "data": {"path": str(data)}, "hardware": {"device": device, "gpu_count": gpus}})


def run_one(plan, nproc: int, mode: str, out: Path, steps: int) -> dict:
    from executor.train.distributed import free_port, launch

    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.yaml").write_text(plan.with_overrides({"training.max_steps": steps}).to_yaml())
    code = launch(out / "plan.yaml", out / "run", nproc, port=free_port(), mode=mode)
    metrics = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()] \
        if (out / "run" / "metrics.jsonl").exists() else []
    return {"exit_code": code, "metrics": [m for m in metrics if m.get("loss") is not None]}


def summarise(result: dict, nproc: int, warmup: int) -> dict:
    steps = [m for m in result["metrics"] if m["step"] > warmup and m.get("tokens_per_second")]
    rate = statistics.median(m["tokens_per_second"] for m in steps) if steps else None
    return {"tokens_per_s": rate, "tokens_per_s_per_gpu": rate / nproc if rate else None,
            "peak_gb_rank0": max((m.get("memory_gb") or 0) for m in result["metrics"]) if result["metrics"] else None,
            "losses": [m["loss"] for m in result["metrics"]], "exit_code": result["exit_code"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="1b", choices=sorted(SHAPES))
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--gpus", default="1,2", help="process counts to compare; the first is the baseline")
    parser.add_argument("--mode", default="auto", choices=["auto", "ddp", "fsdp"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--per-device-batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tokenizer", default=".gpu/tok")
    parser.add_argument("--out", type=Path, default=Path("/tmp/tw-scaling"))
    parser.add_argument("--no-parity", action="store_true", help="skip the same-global-batch 1-GPU run")
    args = parser.parse_args()
    os.environ.setdefault("TUNEWISE_SPEED_OFF", "all")  # same padded path in 1 and N processes (see docstring)
    os.environ.setdefault("TUNEWISE_HOME", str(args.out / "home"))
    from executor.train.distributed import choose_launch

    counts = [int(x) for x in args.gpus.split(",")]
    data = args.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_rows(args.rows)))
    model = args.out / f"{args.shape}-model"
    make_model(args.shape, args.tokenizer, model, args.device)
    memory = None
    if args.device == "cuda":
        import torch

        memory = torch.cuda.get_device_properties(0).total_memory / 1e9
    report = {"shape": args.shape, "device": args.device, "steps": args.steps, "warmup": args.warmup,
              "per_device_batch": args.per_device_batch, "seq": args.seq, "runs": []}
    for method in args.methods.split(","):
        baseline = None
        for n in counts:
            plan = plan_for(method, model, data, n, args.per_device_batch, args.seq, args.device)
            mode = args.mode if args.mode != "auto" else choose_launch(plan, n, memory).mode
            mode = "ddp" if mode == "single" else mode
            entry = {"method": method, "gpus": n, "mode": mode,
                     **summarise(run_one(plan, n, mode, args.out / f"{method}-{n}", args.steps), n, args.warmup)}
            if baseline is None:
                baseline = entry
            if baseline["tokens_per_s_per_gpu"] and entry["tokens_per_s_per_gpu"]:
                entry["scaling_efficiency"] = round(entry["tokens_per_s_per_gpu"] / baseline["tokens_per_s_per_gpu"], 3)
            report["runs"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "losses"}), flush=True)
        top = max(counts)
        if not args.no_parity and top > 1:
            # Same global batch on one process: per-device batch x N, so each step sees the same rows.
            plan = plan_for(method, model, data, 1, args.per_device_batch * top, args.seq, args.device)
            parity = summarise(run_one(plan, 1, "ddp", args.out / f"{method}-parity", args.steps), 1, args.warmup)
            wide = next(r for r in report["runs"] if r["method"] == method and r["gpus"] == top)
            gaps = [abs(a - b) for a, b in zip(parity["losses"], wide["losses"], strict=False)]
            report["runs"].append({"method": method, "gpus": 1, "mode": "parity", "global_batch_of": top, **parity,
                                   "max_loss_gap_vs_multi": round(max(gaps), 4) if gaps else None})
            print(json.dumps({"method": method, "parity_max_loss_gap": report["runs"][-1]["max_loss_gap_vs_multi"],
                              "one_gpu_losses": parity["losses"][:8], "multi_gpu_losses": wide["losses"][:8]}),
                  flush=True)
    (args.out / "scaling.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out / 'scaling.json'}")


if __name__ == "__main__":
    main()

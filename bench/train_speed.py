"""Training speed: TRL SFTTrainer + PEFT defaults against Tunewise's executor path, side by side in one process.

Both train a random-initialized model of a real shape (same seed, same weights) on the same synthetic rows
(lognormal lengths, median 300 tokens, at most 2,048; token ids from a learnable Markov process so the loss
falls) for the same number of optimizer steps with the same rows per step, learning rate and schedule.
Tunewise runs through the product's own code: `build_model` and `make_trainer` from executor/train/sft.py,
which pick the fast path exactly as `tunewise train` does. Printed per config: real (non-pad) tokens/s over the
steps after warm-up, the ratio Tunewise / TRL, MFU (4·N FLOPs per token for adapters, 6·N for full fine-tuning,
N = every parameter the matmuls use; H200 dense bf16 peak 989 TFLOP/s), peak GPU memory, final loss (mean of
the last 3 logged), and the largest gap between the two loss curves.

    python bench/train_speed.py --configs smol-lora,1b-lora,1b-full --steps 40 --tokenizer .gpu/tok --out DIR
    python bench/train_speed.py --configs tiny-lora --steps 4 --device cpu      # smoke test on a CPU
    python bench/train_speed.py --configs 8b-lora,8b-qlora --steps 20 --tokenizer TOK   # QLoRA / LoRA ratios
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PEAK_FLOPS = 989e12  # H200 SXM dense bf16
SHAPES = {  # vocabulary: the SmolLM2 tokenizer's 49,152 everywhere
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "smol": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, tie_word_embeddings=True, rope_theta=100000.0),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, tie_word_embeddings=True, rope_theta=500000.0),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, tie_word_embeddings=False, rope_theta=500000.0),
}
# name: shape, technique, rows per step, learning rate, run TRL too, extra plan settings
CONFIGS = {
    "tiny-lora": ("tiny", "lora", 4, 2e-4, True, {}),
    "tiny-full": ("tiny", "full", 4, 2e-5, True, {}),
    "tiny-qlora": ("tiny", "qlora", 4, 2e-4, False, {}),
    "smol-lora": ("smol", "lora", 16, 2e-4, True, {}),
    "smol-lora-bs64": ("smol", "lora", 64, 2e-4, True, {}),
    "1b-lora": ("1b", "lora", 8, 2e-4, True, {}),
    "1b-full": ("1b", "full", 8, 2e-5, True, {}),
    "1b-lora-bs32": ("1b", "lora", 32, 2e-4, True, {}),
    "1b-full-bs32": ("1b", "full", 32, 2e-5, True, {}),
    "1b-full-bs64": ("1b", "full", 64, 2e-5, True, {}),
    "8b-lora": ("8b", "lora", 8, 2e-4, False, {"gradient_checkpointing": "on"}),
    "8b-qlora": ("8b", "qlora", 8, 2e-4, False, {"gradient_checkpointing": "on"}),
}
VOCAB = 49152


def synthetic_rows(n: int, seed: int = 0, median: float = 300.0, sigma: float = 0.6, max_len: int = 2048):
    """Token rows with lognormal lengths; each next token follows a fixed random successor table 70% of the time
    (learnable), else a Zipf-like draw over the vocabulary."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(math.log(median), sigma, n).astype(int), 16, max_len)
    successor = rng.integers(3, VOCAB, VOCAB)
    zipf = np.minimum(rng.zipf(1.2, size=int(lengths.sum())) + 2, VOCAB - 1)
    rows, used = [], 0
    for length in lengths:
        ids = np.empty(length, dtype=np.int64)
        ids[0] = zipf[used]
        follow = rng.random(length) < 0.7
        for i in range(1, length):
            ids[i] = successor[ids[i - 1]] if follow[i] else zipf[used + i]
        used += length
        rows.append(ids.tolist())
    return rows


def build_model(shape: str, device: str, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, max_position_embeddings=8192, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, **SHAPES[shape])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model


def matmul_params(model) -> int:
    """Parameters every token multiplies through: all of them, the tied embedding counted once as the LM head."""
    return sum(p.numel() for p in model.parameters())


class StepClock:
    """Wall time and tokens at the end of every optimizer step (the GPU synchronized first)."""

    def __init__(self, tokens):
        from transformers import TrainerCallback

        self.tokens = tokens  # () -> real tokens seen so far
        self.marks: list[tuple[int, float, int]] = []
        self.losses: dict[int, float] = {}
        clock = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                clock.marks.append((state.global_step, time.perf_counter(), clock.tokens()))

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    clock.losses[state.global_step] = float(logs["loss"])

        self.callback = Callback()

    def profile(self, first: int, steps: int, path: Path):
        """torch.profiler over `steps` optimizer steps from `first`: the busiest ops by GPU and by CPU time."""
        import torch
        from transformers import TrainerCallback

        clock = self

        class Profile(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == first:
                    clock.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                                    torch.profiler.ProfilerActivity.CUDA])
                    clock.prof.__enter__()
                    clock.prof_start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == first + steps and getattr(clock, "prof", None) is not None:
                    torch.cuda.synchronize()
                    wall = time.perf_counter() - clock.prof_start
                    clock.prof.__exit__(None, None, None)
                    events = clock.prof.key_averages()
                    gpu = sum(e.self_device_time_total for e in events) / 1e6
                    with path.open("a") as f:
                        f.write(f"\n===== {path.stem}: {steps} steps, wall {wall:.3f} s, GPU busy {gpu:.3f} s\n")
                        f.write(events.table(sort_by="self_device_time_total", row_limit=18))
                        f.write(events.table(sort_by="self_cpu_time_total", row_limit=18))
                    clock.prof = None

        return Profile()

    def rate(self, warmup: int) -> tuple[float, float]:
        start = next(m for m in self.marks if m[0] == warmup)
        end = self.marks[-1]
        return (end[2] - start[2]) / (end[1] - start[1]), end[1] - start[1]


def run_trl(cfg: dict, rows, tokenizer, device: str, steps: int, logging_steps: int, work: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model = build_model(cfg["shape"], device)
    params = matmul_params(model)
    args = SFTConfig(output_dir=str(work / "trl"), max_steps=steps, per_device_train_batch_size=cfg["rows"],
                     learning_rate=cfg["lr"], logging_steps=logging_steps, max_length=2048, report_to=[],
                     save_strategy="no", seed=42, use_cpu=device == "cpu", bf16=device == "cuda",
                     disable_tqdm=True)
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear") \
        if cfg["technique"] == "lora" else None
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"input_ids": r} for r in rows]),
                         processing_class=tokenizer, peft_config=peft)
    clock = StepClock(lambda: trainer._total_train_tokens)
    trainer.add_callback(clock.callback)
    return measure("trl", trainer, clock, params, cfg, device, steps, contextlib_null())


def contextlib_null():
    import contextlib

    return contextlib.nullcontext()


def run_tunewise(cfg: dict, rows, tokenizer, device: str, steps: int, work: Path, model_dir: Path | None,
                 variant: str = "default", profile: Path | None = None) -> dict:
    """`variant`: 'default', 'off:NAME[+NAME]' (TUNEWISE_SPEED_OFF=NAME,...), 'on:compile'."""
    from executor.models.loader import choose_placement
    from executor.plan import TrainingPlan
    from executor.train.common import RunContext
    from executor.train.sft import build_model as product_build_model
    from executor.train.sft import make_trainer, run_context

    os.environ.pop("TUNEWISE_SPEED_OFF", None)
    extra = dict(cfg["extra"])
    if cfg["technique"] != "qlora":
        # A run of a few dozen steps is not compiled by default (COMPILE_MIN_STEPS); these measure the steps of a long
        # run, which is, so compile is asked for (TUNEWISE_SPEED_OFF=compile still turns it off).
        extra["speed"] = {"compile": "on"}
    if variant.startswith("off:"):
        os.environ["TUNEWISE_SPEED_OFF"] = variant[4:].replace("+", ",")
    elif variant.startswith("on:"):
        extra["speed"] = {**extra.get("speed", {}), variant[3:]: "on"}
    training = {"method": cfg["technique"], "epochs": 1, "learning_rate": cfg["lr"],
                "per_device_batch_size": cfg["rows"], "gradient_accumulation_steps": 1, "max_seq_length": 2048,
                "warmup_ratio": 0.0, "lr_scheduler": "linear", "early_stopping_patience": None, **extra}
    if cfg["technique"] in ("lora", "qlora"):
        training["lora"] = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}
    if cfg["technique"] == "qlora":
        training["quantization"] = {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}
    base = {"id": str(model_dir), "source": "local", "path": str(model_dir)} if model_dir else \
        {"id": "smollm2-135m-instruct"}
    plan = TrainingPlan.model_validate({"approach": "fine_tuning", "technique": cfg["technique"],
                                        "base_model": base, "training": training})
    run_dir = work / f"tunewise-{cfg['name']}"
    run_dir.mkdir(parents=True, exist_ok=True)
    factory = None if model_dir else (lambda tok: build_model(cfg["shape"], device))
    ctx = RunContext(plan=plan.with_overrides({"data.path": str(work), "training.max_steps": steps}), run_dir=run_dir,
                     placement=choose_placement(device, "auto"), model_factory=factory)
    model = product_build_model(ctx, tokenizer)
    params = matmul_params(model.get_base_model() if hasattr(model, "get_base_model") else model)
    features = [{"input_ids": r, "labels": list(r), "attention_mask": [1] * len(r)} for r in rows]
    # No checkpoints in the timed steps on either side (TRL's side: save_strategy "no").
    trainer, _, speedups = make_trainer(ctx, model, tokenizer, features, None, save_strategy="no")
    clock = StepClock(lambda: trainer.state.num_input_tokens_seen)
    trainer.add_callback(clock.callback)
    if profile:
        trainer.add_callback(clock.profile(cfg["warmup"] + 2, 3, profile / f"profile-{cfg['name']}.txt"))
    result = measure("tunewise", trainer, clock, params, cfg, device, steps, run_context(model, speedups))
    result["speed"] = speedups.summary()
    result["notes"] = list(ctx.notes)
    result["variant"] = variant
    os.environ.pop("TUNEWISE_SPEED_OFF", None)
    return result


def measure(side: str, trainer, clock: StepClock, params: int, cfg: dict, device: str, steps: int, context) -> dict:
    import torch

    resident = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        resident = round(torch.cuda.memory_allocated() / 2**30, 2)  # the model as built, before the first step
    start = time.perf_counter()
    with context:
        trainer.train()
    wall = time.perf_counter() - start
    warmup = min(cfg["warmup"], steps - 1)
    rate, timed = clock.rate(warmup)
    flops_per_token = (6 if cfg["technique"] == "full" else 4) * params
    losses = [clock.losses[k] for k in sorted(clock.losses)]
    out = {"side": side, "tokens_per_second": round(rate, 1), "timed_seconds": round(timed, 2),
           "mfu": round(rate * flops_per_token / PEAK_FLOPS, 4) if device == "cuda" else None,
           "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
           "resident_gb": resident,
           "final_loss": round(sum(losses[-3:]) / len(losses[-3:]), 4) if losses else None,
           "losses": {k: round(v, 4) for k, v in sorted(clock.losses.items())}, "wall_seconds": round(wall, 1),
           "params": params}
    return out


def release(device: str) -> float | None:
    """Free what the last run left: the Trainer, model and optimizer sit in reference cycles that only the
    collector breaks, and compiled layers are held by dynamo's cache. Without this the next config's peak counted the
    previous model too (the 8B QLoRA run of 2026-12-03 started with the bf16 LoRA model's 14 GiB still allocated).
    Returns the GiB still allocated afterwards."""
    import torch

    gc.collect()
    torch._dynamo.reset()
    gc.collect()
    if device != "cuda":
        return None
    torch.cuda.empty_cache()
    return round(torch.cuda.memory_allocated() / 2**30, 2)


def save_model_folder(shape: str, device: str, folder: Path) -> None:
    model = build_model(shape, device)
    model.save_pretrained(folder)
    del model
    gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="smol-lora,1b-lora,1b-full")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None)
    parser.add_argument("--tokenizer", default=".gpu/tok", help="folder of the SmolLM2 tokenizer")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--variants", default="", help="extra Tunewise runs per config: off:NAME[+NAME], on:compile")
    parser.add_argument("--profile", action="store_true", help="torch.profiler tables of 3 steps into --out")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(tempfile.mkdtemp(prefix="tunewise-speed-"))
    results = []
    for name in args.configs.split(","):
        shape, technique, per_step, lr, with_trl, extra = CONFIGS[name]
        cfg = {"name": name, "shape": shape, "technique": technique, "rows": per_step, "lr": lr, "extra": extra,
               "warmup": args.warmup}
        rows = synthetic_rows(args.steps * per_step, seed=1)
        logging_steps = max(1, min(10, args.steps // 10))  # what the executor picks for this many steps
        model_dir = None
        if technique == "qlora" or shape == "8b":  # quantized loading needs a folder: the product's loader reads it
            model_dir = work / f"model-{shape}"
            if not model_dir.exists():
                save_model_folder(shape, device, model_dir)
        entry = {"config": name, "shape": shape, "technique": technique, "rows_per_step": per_step,
                 "steps": args.steps, "real_tokens": sum(len(r) for r in rows)}
        if device == "cuda":  # what earlier configs left before and after releasing it (after: must be ~0)
            entry["left_unreleased_gb"] = round(torch.cuda.memory_allocated() / 2**30, 2)
        entry["left_allocated_gb"] = release(device)
        if with_trl and not args.skip_trl:
            entry["trl"] = run_trl(cfg, rows, tokenizer, device, args.steps, logging_steps, work)
            release(device)
        profile = args.out if args.profile and args.out and device == "cuda" else None
        if profile:
            profile.mkdir(parents=True, exist_ok=True)
        entry["tunewise"] = run_tunewise(cfg, rows, tokenizer, device, args.steps, work, model_dir, profile=profile)
        release(device)
        for variant in filter(None, args.variants.split(",")):
            entry[f"tunewise[{variant}]"] = run_tunewise(cfg, rows, tokenizer, device, args.steps, work, model_dir,
                                                         variant)
            release(device)
            if "trl" in entry:
                entry[f"ratio[{variant}]"] = round(entry[f"tunewise[{variant}]"]["tokens_per_second"]
                                                   / entry["trl"]["tokens_per_second"], 2)
        if "trl" in entry:
            trl, tw = entry["trl"], entry["tunewise"]
            entry["ratio"] = round(tw["tokens_per_second"] / trl["tokens_per_second"], 2)
            common = sorted(set(trl["losses"]) & set(tw["losses"]))
            entry["max_loss_gap"] = round(max((abs(trl["losses"][k] - tw["losses"][k]) for k in common),
                                              default=float("nan")), 4)
        results.append(entry)
        print_row(entry, flush=True)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\n{'config':16s} {'side':30s} {'tokens/s':>10s}  {'ratio':6s} {'MFU':>6s} {'peak GiB':>8s}  "
          "final loss  max loss gap")
    for entry in results:
        print_row(entry)
    print_quantized_ratios(results)


def print_quantized_ratios(results: list[dict]) -> None:
    """QLoRA against bf16 LoRA of the same shape and settings, both measured in this process."""
    by_name = {e["config"]: e for e in results}
    for name, entry in by_name.items():
        lora = by_name.get(name.replace("qlora", "lora"))
        if "qlora" not in name or lora is None:
            continue
        q, b = entry["tunewise"], lora["tunewise"]
        if q["peak_gb"] is None or b["peak_gb"] is None:
            continue
        print(f"{name} / {lora['config']}: peak memory {q['peak_gb']:.2f} / {b['peak_gb']:.2f} GiB = "
              f"{q['peak_gb'] / b['peak_gb']:.3f}x (resident {q['resident_gb']:.2f} / {b['resident_gb']:.2f} GiB), "
              f"tokens/s {q['tokens_per_second']:,.0f} / {b['tokens_per_second']:,.0f} = "
              f"{q['tokens_per_second'] / b['tokens_per_second']:.3f}x; GiB left allocated before each: "
              f"{entry.get('left_allocated_gb')} / {lora.get('left_allocated_gb')}")


def print_row(entry: dict, flush: bool = False) -> None:
    for side in [k for k in entry if k == "trl" or k.startswith("tunewise")]:
        r = entry[side]
        key = "ratio" + side[len("tunewise"):]
        ratio = f"{entry[key]:5.2f}x" if side != "trl" and key in entry else "      "
        gap = f"{entry['max_loss_gap']:.4f}" if side == "tunewise" and "max_loss_gap" in entry else ""
        mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "    – "
        peak = f"{r['peak_gb']:8.2f}" if r["peak_gb"] is not None else "       –"
        print(f"{entry['config']:16s} {side:30s} {r['tokens_per_second']:10,.0f}  {ratio} {mfu} {peak}  "
              f"{r['final_loss']:10.4f}  {gap}", flush=flush)


if __name__ == "__main__":
    main()

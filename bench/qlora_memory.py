"""QLoRA vs LoRA through the product's own training path: peak GPU memory and tokens/s, side by side.

Builds a random-initialized model of a real shape (weights do not matter for memory and speed), saves it as
a local model folder with the SmolLM2 tokenizer, then trains the same plan with technique lora and qlora
(`executor.train.runner.train`, what `tunewise train` runs) for a few steps each and prints the ratios.

    python bench/qlora_memory.py --shape llama-1b --data PREPARED_DIR --tokenizer TOKENIZER_DIR [--steps 20]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES = {  # real configs (vocabulary: the SmolLM2 tokenizer's 49,152)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8),
}


def build_model_folder(shape: str, tokenizer_dir: Path, folder: Path) -> float:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=8192, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **SHAPES[shape])
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters()) / 1e9
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    gc.collect()
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return params


def run(technique: str, folder: Path, data: Path, out: Path, steps: int) -> dict:
    import torch

    from executor.plan import TrainingPlan
    from executor.train.common import read_metrics
    from executor.train.runner import train

    training = {"method": technique, "epochs": 1, "learning_rate": 2e-4, "per_device_batch_size": 8,
                "gradient_accumulation_steps": 1, "max_seq_length": 512, "eval_max_rows": 32,
                "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}}
    if technique == "qlora":
        training["quantization"] = {"bits": 4, "quant_type": "nf4", "double_quant": True,
                                    "compute_dtype": "bfloat16"}
    plan = TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": technique,
        "base_model": {"id": str(folder), "source": "local", "path": str(folder)},
        "training": training})
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = train(plan.with_overrides({"data.path": str(data), "training.max_steps": steps}), out / technique)
    metrics = read_metrics(out / technique / "metrics.jsonl")
    rates = sorted(m["tokens_per_second"] for m in metrics if m.get("tokens_per_second"))
    gc.collect()
    return {"technique": technique, "peak_gb": max(m["memory_gb"] for m in metrics), "wall_s":
            round(time.perf_counter() - start, 1), "median_tokens_per_second": rates[len(rates) // 2] if rates
            else None, "first_loss": result["first_loss"], "final_loss": result["final_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-1b")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunewise-qlora-bench-"))
    params = build_model_folder(args.shape, args.tokenizer, work / "model")
    rows = [run(t, work / "model", args.data, work / "runs", args.steps) for t in ("lora", "qlora")]
    lora, qlora = rows
    print(f"shape {args.shape}: {params:.2f} B parameters, {args.steps} steps, batch 8, max 512 tokens")
    for r in rows:
        print(f"  {r['technique']:6s} peak {r['peak_gb']:7.2f} GB  {r['median_tokens_per_second'] or 0:9.0f} tok/s  "
              f"loss {r['first_loss']:.3f} -> {r['final_loss']:.3f}  wall {r['wall_s']} s")
    mem = qlora["peak_gb"] / lora["peak_gb"]
    speed = (qlora["median_tokens_per_second"] or 0) / (lora["median_tokens_per_second"] or 1)
    print(f"  qlora/lora peak memory ratio {mem:.2f}   qlora/lora tokens/s ratio {speed:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"shape": args.shape, "params_b": params, "runs": rows,
                                         "memory_ratio": mem, "speed_ratio": speed}, indent=1))


if __name__ == "__main__":
    main()

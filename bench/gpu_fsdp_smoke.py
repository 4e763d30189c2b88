"""FSDP launch path on a GPU machine: the run queue's `accelerate launch --use_fsdp` command on a small Llama.

The multi-GPU machines are not lent yet, so this proves what one GPU can: the FSDP flags the worker passes are
accepted by accelerate and the Trainer, the model is really wrapped (the checkpoint is FSDP's), training
reduces the loss, and rank 0 saves a plain model folder that loads with AutoModelForCausalLM.

    python bench/gpu_fsdp_smoke.py --tokenizer .gpu/tok --out /tmp/fsdp [--nproc 1] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from executor.plan import TrainingPlan
    from executor.train.distributed import free_port, launch

    out = args.out
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    (out / "data").mkdir(parents=True, exist_ok=True)
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(256)]
    (out / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = TrainingPlan.model_validate({
        "approach": "fine_tuning", "technique": "full",
        "base_model": {"id": str(out / "model"), "source": "local", "path": str(out / "model")},
        "training": {"method": "full", "epochs": 1, "learning_rate": 1e-3, "per_device_batch_size": 8,
                     "gradient_accumulation_steps": 1, "max_seq_length": 64},
        "data": {"path": str(out / "data")}, "hardware": {"device": "cuda", "gpu_count": args.nproc}})
    plan = plan.with_overrides({"training.max_steps": args.steps})
    (out / "plan.yaml").write_text(plan.to_yaml())
    started = time.time()
    code = launch(out / "plan.yaml", out / "run", args.nproc, port=free_port(), mode="fsdp")
    result = json.loads((out / "run" / "result.json").read_text()) if code == 0 else {}
    checkpoints = sorted((out / "run" / "checkpoints").glob("checkpoint-*"))
    files = sorted(p.name for p in checkpoints[-1].iterdir()) if checkpoints else []
    reloaded = AutoModelForCausalLM.from_pretrained(out / "run" / "model") if code == 0 else None
    print(json.dumps({"exit_code": code, "seconds": round(time.time() - started, 1), "steps": result.get("steps"),
                      "first_loss": result.get("first_loss"), "final_loss": result.get("final_loss"),
                      "checkpoint_files": files, "fsdp_checkpoint": any("fsdp" in f for f in files),
                      "reloaded_params": sum(p.numel() for p in reloaded.parameters()) if reloaded else None},
                     indent=1))


if __name__ == "__main__":
    main()

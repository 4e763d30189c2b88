"""The first minute (issue #18): cold `tunewise --help`, cold `tunewise recommend`, in-process p50, side by side.

Targets on this 2-core machine: `tunewise --help` <= 1 s; `tunewise recommend "..."` in a new process, the
guidance index already built, <= 3 s; a recommendation in a running process p50 <= 50 ms (issue #2). Each cold
figure is a new process timed from start to exit (wall clock), run `--runs` times; the median is compared with
the target and the worst run is printed next to it. The first `recommend` in a fresh data directory builds the
Chroma index and the exemplar cache; it is reported on its own line and not counted as cold-with-index.

    .venv/bin/python bench/cold_start.py [--runs 5] [--rounds 3] [--torch-reference]

`--torch-reference` also times the in-process recommendation with the embedder this replaced (transformers'
BertModel, mean pooling, normalization: the pre-#18 path), interleaved round by round with the numpy one in the
same process, so both see the same machine load.

The machine is shared: the load average is printed at the start and the end, since a busy second core shows
in every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TARGET_HELP_S = 1.0
TARGET_RECOMMEND_S = 3.0
TARGET_IN_PROCESS_MS = 50.0
TEXT = ("Customer support for a bank: 12,000 past messages labeled with one of 77 intents; we want a model that "
        "routes new messages. One 24 GB GPU, and the data cannot leave our network.")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:2])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def row(name: str, values: list[float], target: float, unit: str = "s") -> None:
    median = statistics.median(values)
    verdict = "meets" if median <= target else "MISSES"
    print(f"{name:44s} n={len(values):2d}  median={median:6.2f} {unit}  worst={max(values):6.2f} {unit}  "
          f"target<={target:g} {unit}  ratio={median / target:.2f}  {verdict}")


class TorchMiniLM:
    """The embedder before #18: transformers' BertModel over the same folder, mean pooling, L2 normalization."""

    def __init__(self):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from executor.embeddings import MiniLMEmbedder, minilm_dir

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
        self.model = AutoModel.from_pretrained(minilm_dir()).eval()
        self.fingerprint = MiniLMEmbedder.shared().fingerprint  # same vectors to ~1e-7: the same cache entries

    def embed_array(self, texts, batch_size: int = 32):
        torch = self.torch
        with torch.inference_mode():
            batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def in_process_ms(rounds: int, torch_reference: bool) -> dict[str, list[float]]:
    from test_scenarios import SCENARIOS

    from assistant.quiet import quiet_libraries
    from assistant.recommend import Advisor
    from executor.embeddings import MiniLMEmbedder

    quiet_libraries()
    advisor = Advisor()
    texts = [s[1] for s in SCENARIOS]
    embedders = {"this checkout": MiniLMEmbedder.shared()}
    if torch_reference:
        embedders["torch (before)"] = TorchMiniLM()
    out: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(rounds):
        for name, embedder in embedders.items():
            # Both the meaning layer and the index's Chroma embedding function (which asks MiniLMEmbedder.shared()
            # for the default model) use this embedder for the round.
            advisor.extractor.matcher.embedder = embedder
            MiniLMEmbedder._shared[""] = embedder
            for text in texts[:3]:  # warm-up: every code path once
                advisor.recommend(text)
            for text in texts:
                start = time.perf_counter()
                advisor.recommend(text)
                out[name].append((time.perf_counter() - start) * 1000)
    MiniLMEmbedder._shared[""] = embedders["this checkout"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="cold processes per command")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the scenario texts in-process")
    parser.add_argument("--torch-reference", action="store_true",
                        help="also time the in-process recommendation with the transformers embedder (before #18)")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="tunewise-cold-")
    env = {**os.environ, "TUNEWISE_HOME": home, "HF_HUB_OFFLINE": "1"}
    env.pop("OPENAI_API_KEY", None), env.pop("ANTHROPIC_API_KEY", None)  # the offline default, as a new user has
    tunewise = str(Path(sys.executable).parent / "tunewise")
    print(f"data dir {home}; load average at start {load()}; {os.cpu_count()} CPUs")

    first = timed([tunewise, "recommend", TEXT], env)
    print(f"{'first recommend (builds index + cache)':44s} {first:6.2f} s  (once per data dir, not a target)")
    help_s = [timed([tunewise, "--help"], env) for _ in range(args.runs)]
    recommend_s = [timed([tunewise, "recommend", TEXT], env) for _ in range(args.runs)]

    os.environ["TUNEWISE_HOME"] = home  # the in-process advisor opens the same, already built, index
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    in_process = in_process_ms(args.rounds, args.torch_reference)

    row("cold tunewise --help", help_s, TARGET_HELP_S)
    row("cold tunewise recommend (index built)", recommend_s, TARGET_RECOMMEND_S)
    for name, values in in_process.items():
        row(f"in-process recommendation, {name}", values, TARGET_IN_PROCESS_MS, "ms")
    print(f"load average at end {load()}")


if __name__ == "__main__":
    main()

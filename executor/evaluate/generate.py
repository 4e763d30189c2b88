"""Batched greedy generation and assistant-token perplexity, the two model calls evaluation needs.

Lazy imports: torch is imported inside the functions that use it, so importing this module (from the CLI, the
chat or a run process) stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from executor.models.end_of_turn import stop_token_ids
from executor.train.data import IGNORE_INDEX, PadCollator, tokenize_chats

Progress = Callable[[int, int], None]

# On a GPU a batch is sized by tokens, not rows: a 135M model decodes 1,000 rows a step about as fast as 16 (each
# step is bound by launching the layers' kernels), so Banking77's 3,076 test rows take 4 batches instead of 193.
GPU_GENERATE_TOKENS = 131_072  # prompt + new tokens per batch (KV cache: ~4.5 GB for SmolLM2-135M, 17 GB for 1B)
GPU_SCORE_TOKENS = 16_384  # tokens per perplexity batch: their logits in fp32 over a 49k-128k vocabulary
CPU_BATCH_ROWS = {"generate": 16, "score": 8}


def token_batches(lengths: Sequence[int], budget: int | None, rows: int) -> list[list[int]]:
    """Indices grouped into batches, shortest first (little padding): at most `budget` padded tokens per batch
    when a budget is given, else `rows` rows."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        full = (len(current) + 1) * lengths[i] > budget if budget else len(current) >= rows  # i: the longest yet
        if current and full:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _on_gpu(model) -> bool:
    return next(model.parameters()).device.type == "cuda"


def generate(model, tokenizer, prompts: Sequence[list[dict[str, str]]], max_new_tokens: int,
             batch_size: int | None = None, progress: Progress | None = None) -> list[str]:
    """Greedy completions of chat prompts, left-padded in batches (same decoding for every system); every row
    stops at the end of its turn. On a GPU batches are sized by tokens (GPU_GENERATE_TOKENS) unless
    `batch_size` rows are asked for."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    outputs: list[str] = []
    try:
        texts = [tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True) for p in prompts]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        budget = None if batch_size or not _on_gpu(model) else GPU_GENERATE_TOKENS
        batches = token_batches([n + max_new_tokens for n in lengths], budget, batch_size or CPU_BATCH_ROWS["generate"])
        results: dict[int, str] = {}
        device = next(model.parameters()).device
        stop = stop_token_ids(tokenizer, model)
        done = 0
        for ids in batches:
            enc = tokenizer([texts[i] for i in ids], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=stop)
            new = out[:, enc["input_ids"].shape[1]:].tolist()  # one copy to the host per batch
            for row, i in enumerate(ids):
                results[i] = tokenizer.decode(new[row], skip_special_tokens=True).strip()
            done += len(ids)
            if progress:
                progress(done, len(prompts))
        outputs = [results[i] for i in range(len(prompts))]
    finally:
        tokenizer.padding_side = side
    return outputs


def _virtual_tokens(model) -> int:
    """Prompt tuning prepends learned tokens to the logits; their count, to slice them off."""
    config = getattr(model, "peft_config", {}).get("default") if hasattr(model, "peft_config") else None
    return getattr(config, "num_virtual_tokens", 0) if config is not None and config.is_prompt_learning else 0


def assistant_nll(model, tokenizer, conversations: Sequence[list[dict[str, str]]], max_length: int,
                  batch_size: int | None = None) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, token count) of the assistant tokens of each conversation; perplexity
    is exp(sum of NLL / sum of tokens), token-weighted. On a GPU batches hold GPU_SCORE_TOKENS tokens."""
    import torch

    collate = PadCollator(tokenizer.pad_token_id)
    skip = _virtual_tokens(model)
    device = next(model.parameters()).device
    results: list[tuple[float, int]] = [(math.nan, 0)] * len(conversations)
    features = tokenize_chats(tokenizer, list(conversations), max_length)
    present = [i for i, f in enumerate(features) if f is not None]
    budget = None if batch_size or not _on_gpu(model) else GPU_SCORE_TOKENS
    for group in token_batches([len(features[i]["input_ids"]) for i in present], budget,
                               batch_size or CPU_BATCH_ROWS["score"]):
        ids = [present[j] for j in group]
        batch = {k: v.to(device) for k, v in collate([features[i] for i in ids]).items()}
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, skip:, :].float()
        labels = batch["labels"]
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
        losses = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
            ignore_index=IGNORE_INDEX, reduction="none").view(shift_labels.shape)
        counts = (shift_labels != IGNORE_INDEX).sum(1)
        for i, score in zip(ids, zip(losses.sum(1).tolist(), counts.tolist(), strict=True), strict=True):
            results[i] = score
    return results
